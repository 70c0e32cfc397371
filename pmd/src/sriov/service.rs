//! The PF service: everything a PF manager does between its command line and its main loop.
//! It opens the PF (fresh, with a new VF token in a 0600 file, or restarted with the saved
//! token and state), enables the VFs, sets up the pools, binds the VFs kept on the kernel
//! driver, serves the mailboxes, applies the administrator's changes atomically, and saves the
//! state after every change. `oxpmd sriov serve` and `examples/sriov-pf.rs` are built on it.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oxpmd_vfio::{Bar, PciAddress, Sysfs, VfToken};

use super::admin::{AdminChange, AdminError, AdminOutcome};
use super::device::PfDevice;
use super::error::PfHostError;
use super::host::{PfHost, VfEvent};
use super::policy::{LinkState, MAX_VFS, VfPolicy, VfTable};
use super::state::SavedState;
use crate::mac::MacAddr;

/// How to start the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The PF.
    pub pf: PciAddress,
    /// VFs to create (1..=7).
    pub vfs: usize,
    /// Per-VF policies (missing entries: the default; a VF without MAC gets a generated one).
    pub policies: Vec<(usize, VfPolicy)>,
    /// The token file (mode 0600).
    pub token_file: PathBuf,
    /// The state file.
    pub state_file: PathBuf,
    /// Serve VFs that are still enabled, with the saved token and state.
    pub restart: bool,
}

impl ServiceConfig {
    /// `/run/oxpmd/sriov-ADDR.token` and `.state`.
    pub fn new(pf: PciAddress, vfs: usize) -> ServiceConfig {
        let dir = Path::new(DEFAULT_DIR);
        ServiceConfig {
            pf,
            vfs,
            policies: Vec::new(),
            token_file: dir.join(format!("sriov-{pf}.token")),
            state_file: dir.join(format!("sriov-{pf}.state")),
            restart: false,
        }
    }
}

/// Parses a `--vf I:SETTINGS` option (`0:mac=02:00:00:00:10:00,trust=off,vlan=100,...`) into
/// `policies`; bounds are checked by [`VfPolicy::validate`] afterwards. Settings: mac, trust,
/// spoof (spoofchk), vlans (the VF's own VLAN cap), mc, max-frame, burst, rate, vlan (the port
/// VLAN), state (auto, enable, disable), kernel.
pub fn parse_vf_option(s: &str, policies: &mut BTreeMap<usize, VfPolicy>) -> Result<(), String> {
    let (idx, settings) = s
        .split_once(':')
        .ok_or_else(|| format!("--vf {s}: expected I:SETTINGS (e.g. 0:mac=02:00:00:00:10:00,trust=off)"))?;
    let i: usize = idx
        .parse()
        .ok()
        .filter(|i| *i < MAX_VFS - 1)
        .ok_or_else(|| format!("--vf {s}: VF index `{idx}` is not in 0..=6"))?;
    let on_off = |k: &str, v: &str| match v {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("--vf {s}: {k}={v}: expected on or off")),
    };
    fn number<T: std::str::FromStr>(s: &str, k: &str, v: &str) -> Result<T, String> {
        v.parse().map_err(|_| format!("--vf {s}: {k}={v}: not a number"))
    }
    let p = policies.entry(i).or_default();
    for kv in settings.split(',').filter(|x| !x.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "kernel" if v.is_empty() => p.kernel_driver = true,
            "mac" => p.mac = Some(v.parse().map_err(|e| format!("--vf {s}: {e}"))?),
            "trust" => p.trusted = on_off(k, v)?,
            "spoof" | "spoofchk" => p.spoof_check = on_off(k, v)?,
            "vlans" => p.max_vlans = number(s, k, v)?,
            "mc" => p.max_multicast = number(s, k, v)?,
            "max-frame" => p.max_frame = number(s, k, v)?,
            "burst" => p.msg_burst = number(s, k, v)?,
            "rate" => p.msg_per_sec = number(s, k, v)?,
            "vlan" => {
                let n: u16 = number(s, k, v)?;
                p.port_vlan = (n != 0).then_some(n);
            }
            "state" => {
                p.link = LinkState::parse(v)
                    .ok_or_else(|| format!("--vf {s}: state={v}: expected auto, enable or disable"))?
            }
            _ => return Err(format!("--vf {s}: unknown setting `{kv}`")),
        }
    }
    Ok(())
}

/// The default control socket of the service for `pf`: `/run/oxpmd/sriov-ADDR.sock`.
pub fn default_socket(pf: PciAddress) -> PathBuf {
    Path::new(DEFAULT_DIR).join(format!("sriov-{pf}.sock"))
}

/// Where the service keeps its files by default.
pub const DEFAULT_DIR: &str = "/run/oxpmd";

/// A MAC for a VF the administrator gave none: locally administered, derived from the PF's
/// address, the VF index and the process id (distinct per VF).
pub fn generated_mac(pf: PciAddress, vf: usize) -> MacAddr {
    let pid = std::process::id();
    MacAddr([
        0x02,
        0x0f,
        pf.bus ^ (pid as u8),
        pf.device,
        (pf.function << 4) | 0x0a,
        vf as u8,
    ])
}

/// The running service.
pub struct PfService {
    /// The PF device (BAR, container, MAC).
    pub pf: PfDevice,
    host: PfHost<Bar>,
    vf_addrs: Vec<PciAddress>,
    config: ServiceConfig,
    t0: Instant,
    binder: Option<JoinHandle<Result<(), String>>>,
    last_counters: Instant,
    /// The VF token, kept in memory: VFs are opened with it for hand-over without reading the
    /// token file again (None: restarted without one).
    token: Option<VfToken>,
}

impl std::fmt::Debug for PfService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PfService").field("pf", &self.config.pf).finish()
    }
}

impl PfService {
    /// Opens the PF and its VFs as `config` says, sets up the pools, starts binding the kernel
    /// VFs (their probe needs the mailbox served: call [`PfService::poll`] at once), and saves
    /// the state.
    pub fn start(config: ServiceConfig) -> Result<PfService, PfHostError> {
        let name = config.pf.to_string();
        let io = |what: &str, p: &Path, e: std::io::Error| PfHostError::Config {
            device: name.clone(),
            what: format!("{what} {}: {e}", p.display()),
        };
        for p in [&config.token_file, &config.state_file] {
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).map_err(|e| io("creating", d, e))?;
            }
        }
        let t0 = Instant::now();
        let (pf, vf_addrs, table, token) = if config.restart {
            // Without the token file the PF is opened without a token: the kernel refuses it
            // while a VF is open, and the error says so.
            let token = match VfToken::load(&config.token_file) {
                Ok(t) => Some(t),
                Err(e) if !config.token_file.exists() => {
                    log::warn!("{e}: opening the PF without a VF token");
                    None
                }
                Err(e) => return Err(e.into()),
            };
            let pf = PfDevice::open(config.pf, token.as_ref(), true)?;
            let vf_addrs = Sysfs::new().device(config.pf)?.virtfns;
            let saved = pf.load_state(&config.state_file, vf_addrs.len())?;
            if vf_addrs.len() != config.vfs {
                return Err(PfHostError::Config {
                    device: name,
                    what: format!(
                        "--vfs {} but the PF has {} VFs enabled; a restart serves the VFs that exist",
                        config.vfs,
                        vf_addrs.len()
                    ),
                });
            }
            let mut table = Self::table(
                &name,
                saved.vfs.iter().map(|v| v.policy.clone()).collect(),
                pf.mac,
            )?;
            for (i, v) in saved.vfs.iter().enumerate() {
                table.restore(i, v);
            }
            log::info!(
                "{name}: restarted: PF opened with the saved token, state {} restored ({} VFs)",
                config.state_file.display(),
                saved.vfs.len()
            );
            (pf, vf_addrs, table, token)
        } else {
            let token = VfToken::generate();
            // A token file left from an earlier run is replaced: this token is the one that counts.
            match std::fs::remove_file(&config.token_file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("removing", &config.token_file, e));
                }
                _ => {}
            }
            let _ = std::fs::remove_file(&config.state_file);
            token.save(&config.token_file)?;
            let pf = PfDevice::open(config.pf, Some(&token), false)?;
            let mut policies: Vec<VfPolicy> = (0..config.vfs)
                .map(|i| {
                    config
                        .policies
                        .iter()
                        .find(|(j, _)| *j == i)
                        .map(|(_, p)| p.clone())
                        .unwrap_or_default()
                })
                .collect();
            for (i, p) in policies.iter_mut().enumerate() {
                if p.mac.is_none() {
                    p.mac = Some(generated_mac(config.pf, i));
                }
            }
            let table = Self::table(&name, policies, pf.mac)?;
            let vf_addrs = pf.enable_vfs(config.vfs as u16)?;
            (pf, vf_addrs, table, Some(token))
        };
        let kernel_vfs: Vec<(usize, PciAddress)> = table
            .iter()
            .enumerate()
            .filter(|(_, s)| s.policy.kernel_driver)
            .map(|(i, _)| (i, vf_addrs[i]))
            .collect();
        let mut host = PfHost::new(pf.bar.clone(), &name, table)?;
        host.setup_vmdq()?;
        if !pf.wait_link(Duration::from_secs(10)) {
            log::warn!("{name}: link still down after 10 s");
        }
        let binder = (!kernel_vfs.is_empty() && !config.restart).then(|| {
            std::thread::spawn(move || -> Result<(), String> {
                let sys = Sysfs::new();
                if !Path::new("/sys/bus/pci/drivers/igbvf").exists() {
                    return Err("the kernel igbvf driver is not loaded (modprobe igbvf)".into());
                }
                for (i, a) in kernel_vfs {
                    sys.keep_vf_on_kernel_driver(a, "igbvf")
                        .map_err(|e| format!("VF {i} ({a}): {e}"))?;
                    log::info!("VF {i}: {a} bound to the kernel igbvf driver (driver_override rewritten)");
                }
                Ok(())
            })
        });
        let s = PfService {
            pf,
            host,
            vf_addrs,
            config,
            t0,
            binder,
            last_counters: Instant::now(),
            token,
        };
        s.save_state();
        Ok(s)
    }

    fn table(name: &str, policies: Vec<VfPolicy>, pf_mac: MacAddr) -> Result<VfTable, PfHostError> {
        VfTable::new(policies, pf_mac, 0).map_err(|e| PfHostError::Config {
            device: name.to_string(),
            what: e.to_string(),
        })
    }

    /// The PF host (table, counters).
    pub fn host(&self) -> &PfHost<Bar> {
        &self.host
    }

    /// The VFs' PCI addresses, by VF index.
    pub fn vf_addrs(&self) -> &[PciAddress] {
        &self.vf_addrs
    }

    /// The VF token the service holds (None after a restart without the token file).
    pub fn token(&self) -> Option<&VfToken> {
        self.token.as_ref()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Milliseconds since the start (the mailbox rate limiter's clock).
    pub fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// One service pass: the mailboxes (the state is saved when a VF changed something; a
    /// refusal never makes the service write), the pool counters once a second, and the
    /// kernel-VF binding's result. Never blocks on a VF.
    pub fn poll(&mut self) -> Result<Vec<VfEvent>, PfHostError> {
        let events = self.host.poll(self.now_ms())?;
        if events.iter().any(|e| !matches!(e, VfEvent::Refused { .. })) {
            self.save_state();
        }
        if self.last_counters.elapsed() >= Duration::from_secs(1) {
            self.host.refresh_pool_counters()?;
            self.last_counters = Instant::now();
        }
        if self.binder.as_ref().is_some_and(|b| b.is_finished()) {
            if let Some(b) = self.binder.take() {
                let r = b
                    .join()
                    .unwrap_or_else(|_| Err("the kernel-VF binding thread panicked".into()));
                r.map_err(|what| PfHostError::Config {
                    device: self.config.pf.to_string(),
                    what: format!("binding kernel VFs: {what}"),
                })?;
            }
        }
        Ok(events)
    }

    /// Applies `changes` to VF `vf` all or nothing: each is first tried on a copy of the table,
    /// so a refused one leaves every setting as it was. Saves the state.
    pub fn admin(&mut self, vf: usize, changes: &[AdminChange]) -> Result<Vec<AdminOutcome>, AdminError> {
        let mut trial = self.host.table().clone();
        for c in changes {
            trial.admin(vf, *c)?;
        }
        let mut out = Vec::with_capacity(changes.len());
        for c in changes {
            out.push(self.host.admin(vf, *c)?);
        }
        self.save_state();
        Ok(out)
    }

    /// Reads the pool counters now.
    pub fn refresh_counters(&mut self) -> Result<(), PfHostError> {
        self.host.refresh_pool_counters()
    }

    /// Writes the state file (errors are logged: the service keeps serving).
    pub fn save_state(&self) {
        let t = self.host.table();
        let st = SavedState {
            pf: self.pf.identity,
            pf_mac: t.pf_mac(),
            vfs: (0..t.len()).filter_map(|i| t.snapshot(i)).collect(),
        };
        if let Err(e) = st.save(&self.config.state_file) {
            log::error!("saving the state to {}: {e}", self.config.state_file.display());
        }
    }

    /// Saves the state and, with `remove_vfs`, takes the pools down and sets the VF count back
    /// to 0 (which waits until no VF is open).
    pub fn stop(self, remove_vfs: bool) -> Result<(), PfHostError> {
        self.save_state();
        if remove_vfs {
            self.host.shutdown()?;
            let pf = self.config.pf;
            drop(self.host);
            drop(self.pf);
            Sysfs::new().set_num_vfs(pf, 0)?;
        }
        Ok(())
    }
}
