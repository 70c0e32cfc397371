//! sriov-pf: the PF manager. Holds an Intel 82576 PF through VFIO, creates its VFs, gives them
//! a fresh VF token and serves their mailboxes under a per-VF policy.
//!
//! ```text
//! cargo run --example sriov-pf -- --pf 0000:00:02.0 --vfs 2 \
//!     [--vf 0:mac=02:00:00:00:10:00,trust=off,spoof=on,vlans=8,mc=30,max-frame=1522,burst=64,rate=32]
//!     [--vf 1:kernel] [--token-file PATH] [--state-file PATH] [--restart]
//!     [--launch 'CMD']... [--duration SECS] [--stats SECS] [--keep-vfs | --remove-vfs]
//! ```
//!
//! Fresh start: the PF's VFs go to 0, the PF is bound to vfio-pci, opened and reset; a fresh VF
//! token (UUID v4) is set and stored in a 0600 file whose path is printed (`token file: PATH`);
//! N VFs are enabled through sysfs (vfio-pci captures them), VMDq pools are set up and the VFs
//! released. A VF with `kernel` is bound to the kernel igbvf driver (its driver_override is
//! rewritten; this is logged). Commands given with `--launch` run with `OXPMD_VF_TOKEN_FILE`,
//! `OXPMD_PF`, `OXPMD_VF<i>` set; the manager stops when they have all exited (else on SIGTERM /
//! SIGINT or after `--duration`). Every VF event is printed; counters every `--stats` seconds.
//!
//! Restart (`--restart`): the PF keeps its VFs; the token is read back from the token file and the
//! PF is opened with it (the kernel refuses the PF without it while a VF is open); the saved state
//! (`--state-file`) is validated (magic, version, lengths, checksum, identity) and the VFs' MACs,
//! policies and settings are restored. Anything inconsistent is refused with the reason.
//!
//! On exit the state is saved and the VFs stay enabled (so a restarted manager can serve them)
//! unless `--remove-vfs` is given.

// sriov-pf uses the stop flag and the logger only, not the JSON output (`say!`), step timing
// or option helpers the other examples share.
#[allow(dead_code, unused_imports, unused_macros)]
#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{STOP, install_signal_handlers};
use oxpmd::dma::{Mempool, MempoolConfig};
use oxpmd::pmd::sriov::pf_host::{PfDevice, PfHost, VfEvent};
use oxpmd::pmd::sriov::{Refusal, SavedState, VfPolicy, VfTable};
use oxpmd::pmd::{Burst, MacAddr, Port, PortConfig, RxQueue, TxQueue};
use oxpmd::vfio::{PciAddress, Sysfs, VfToken};

const USAGE: &str = "usage: sriov-pf --pf ADDR --vfs N [options]
  --pf ADDR            the 82576 PF (PCI address)
  --vfs N              VFs to create (1..=7; the PF keeps a pool)
  --vf I:SETTINGS      per-VF settings, comma-separated: mac=MAC, trust=on|off, spoof=on|off,
                       vlans=N (0..=32), mc=N (0..=30), max-frame=N (64..=9022), burst=N,
                       rate=N (messages per second), kernel (bind the VF to the kernel igbvf driver)
  --token-file PATH    where the VF token is stored, mode 0600 (default /run/oxpmd/sriov-ADDR.token)
  --state-file PATH    saved state (default /run/oxpmd/sriov-ADDR.state)
  --restart            serve VFs that are still enabled: open the PF with the saved token, restore
                       the saved state (--vf settings are then taken from the state)
  --launch CMD         run CMD (sh -c) with OXPMD_VF_TOKEN_FILE, OXPMD_PF, OXPMD_VF<i> set
  --duration SECS      stop after SECS seconds
  --stats SECS         print VF counters every SECS seconds (default 10; 0: never)
  --remove-vfs         on exit, set the VF count back to 0 (fails while a VF is open elsewhere)
  --pf-echo            the PF's own pool forwards its traffic: every frame it receives is sent
                       back to its source (MACs swapped), on the PF's own queue
  Environment: OXPMD_LOG=error|warn|info|debug (default info).";

#[derive(Debug)]
struct Options {
    pf: PciAddress,
    vfs: usize,
    policies: BTreeMap<usize, VfPolicy>,
    token_file: Option<PathBuf>,
    state_file: Option<PathBuf>,
    restart: bool,
    launch: Vec<String>,
    duration: Option<Duration>,
    stats: Duration,
    remove_vfs: bool,
    pf_echo: bool,
}

fn on_off(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("{k}={v}: expected on or off")),
    }
}

fn number<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{k}={v}: not a number"))
}

/// Parses `I:key=value,...`; bounds are checked by `VfPolicy::validate` afterwards.
fn parse_vf(s: &str, policies: &mut BTreeMap<usize, VfPolicy>) -> Result<(), String> {
    let (idx, settings) = s
        .split_once(':')
        .ok_or_else(|| format!("--vf {s}: expected I:SETTINGS (e.g. 0:mac=02:00:00:00:10:00,trust=off)"))?;
    let i: usize = idx
        .parse()
        .ok()
        .filter(|i| *i < 7)
        .ok_or_else(|| format!("--vf {s}: VF index `{idx}` is not in 0..=6"))?;
    let p = policies.entry(i).or_default();
    for kv in settings.split(',').filter(|x| !x.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "kernel" if v.is_empty() => p.kernel_driver = true,
            "mac" => p.mac = Some(v.parse().map_err(|e| format!("--vf {s}: {e}"))?),
            "trust" => p.trusted = on_off(k, v)?,
            "spoof" | "spoofchk" => p.spoof_check = on_off(k, v)?,
            "vlans" => p.max_vlans = number(k, v)?,
            "mc" => p.max_multicast = number(k, v)?,
            "max-frame" => p.max_frame = number(k, v)?,
            "burst" => p.msg_burst = number(k, v)?,
            "rate" => p.msg_per_sec = number(k, v)?,
            _ => return Err(format!("--vf {s}: unknown setting `{kv}`")),
        }
    }
    Ok(())
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut pf = None;
    let mut vfs = None;
    let mut o = Options {
        pf: PciAddress::new(0, 0, 0, 0).map_err(|e| e.to_string())?,
        vfs: 0,
        policies: BTreeMap::new(),
        token_file: None,
        state_file: None,
        restart: false,
        launch: Vec::new(),
        duration: None,
        stats: Duration::from_secs(10),
        remove_vfs: false,
        pf_echo: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--pf" => pf = Some(PciAddress::parse(&val()?).map_err(|e| format!("--pf: {e}"))?),
            "--vfs" => {
                let v = val()?;
                vfs = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=7).contains(n))
                        .ok_or_else(|| format!("--vfs {v}: expected 1..=7"))?,
                )
            }
            "--vf" => parse_vf(&val()?, &mut o.policies)?,
            "--token-file" => o.token_file = Some(PathBuf::from(val()?)),
            "--state-file" => o.state_file = Some(PathBuf::from(val()?)),
            "--restart" => o.restart = true,
            "--launch" => o.launch.push(val()?),
            "--duration" => {
                let v = val()?;
                let s: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && *s < 1e7)
                    .ok_or_else(|| format!("--duration {v}: expected seconds"))?;
                o.duration = Some(Duration::from_secs_f64(s));
            }
            "--stats" => {
                let v = val()?;
                o.stats =
                    Duration::from_secs(v.parse().map_err(|_| format!("--stats {v}: expected seconds"))?);
            }
            "--remove-vfs" => o.remove_vfs = true,
            "--pf-echo" => o.pf_echo = true,
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument `{a}`")),
        }
    }
    o.pf = pf.ok_or("--pf is required")?;
    o.vfs = vfs.ok_or("--vfs is required")?;
    if let Some(i) = o.policies.keys().find(|i| **i >= o.vfs) {
        return Err(format!("--vf {i}: only {} VF(s) are created", o.vfs));
    }
    // Bounds and MACs are checked before anything touches the device.
    for (i, p) in &o.policies {
        p.validate(*i).map_err(|e| format!("--vf {i}: {e}"))?;
    }
    let macs: Vec<_> = o.policies.values().filter_map(|p| p.mac).collect();
    for (n, m) in macs.iter().enumerate() {
        if macs[n + 1..].contains(m) {
            return Err(format!("--vf: MAC {m} given to two VFs"));
        }
    }
    Ok(o)
}

/// A MAC for a VF the administrator gave none: locally administered, derived from the PF's
/// address, the VF index and the process id (distinct per VF).
fn generated_mac(pf: PciAddress, vf: usize) -> MacAddr {
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

fn now_ms(t0: Instant) -> u64 {
    t0.elapsed().as_millis() as u64
}

fn print_counters(host: &PfHost<oxpmd::vfio::Bar>) {
    for (i, s) in host.table().iter().enumerate() {
        let c = s.counters;
        println!(
            "sriov-pf: counters VF {i}: phase={:?} mac={} messages={} acked={} nacked={} malformed={} \
             rate_limited={} resets={} flrs={} vlans={} mc={}",
            s.phase,
            s.mac.map(|m| m.to_string()).unwrap_or_else(|| "none".into()),
            c.messages,
            c.acked,
            c.nacked,
            c.malformed,
            c.rate_limited,
            c.resets,
            c.flrs,
            s.vlans.len(),
            s.mc_count
        );
    }
}

fn save_state(host: &PfHost<oxpmd::vfio::Bar>, pf: &PfDevice, path: &std::path::Path) {
    let st = SavedState {
        pf: pf.identity,
        pf_mac: host.table().pf_mac(),
        vfs: (0..host.table().len())
            .filter_map(|i| host.table().snapshot(i))
            .collect(),
    };
    if let Err(e) = st.save(path) {
        log::error!("saving the state to {}: {e}", path.display());
    }
}

fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    install_signal_handlers()?;
    let dir = PathBuf::from("/run/oxpmd");
    let token_file = o
        .token_file
        .clone()
        .unwrap_or_else(|| dir.join(format!("sriov-{}.token", o.pf)));
    let state_file = o
        .state_file
        .clone()
        .unwrap_or_else(|| dir.join(format!("sriov-{}.state", o.pf)));
    for p in [&token_file, &state_file] {
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
    }
    let sys = Sysfs::new();
    let t0 = Instant::now();
    let (pf, vf_addrs, table) = if o.restart {
        // Without the token file the PF is opened without a token: the kernel refuses it while a
        // VF is open, and the error says so.
        let token = match VfToken::load(&token_file) {
            Ok(t) => Some(t),
            Err(e) if !token_file.exists() => {
                log::warn!("{e}: opening the PF without a VF token");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let pf = PfDevice::open(o.pf, token.as_ref(), true)?;
        let vf_addrs = sys.device(o.pf)?.virtfns;
        let saved = pf.load_state(&state_file, vf_addrs.len())?;
        if vf_addrs.len() != o.vfs {
            return Err(format!(
                "--vfs {} but the PF has {} VFs enabled; a restart serves the VFs that exist",
                o.vfs,
                vf_addrs.len()
            )
            .into());
        }
        let mut table = VfTable::new(
            saved.vfs.iter().map(|v| v.policy.clone()).collect(),
            pf.mac,
            now_ms(t0),
        )?;
        for (i, v) in saved.vfs.iter().enumerate() {
            table.restore(i, v);
        }
        println!(
            "sriov-pf: restarted: PF opened with the saved token, state {} restored ({} VFs)",
            state_file.display(),
            saved.vfs.len()
        );
        (pf, vf_addrs, table)
    } else {
        let token = VfToken::generate();
        // A token file left from an earlier run is replaced: this token is the one that counts.
        match std::fs::remove_file(&token_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let _ = std::fs::remove_file(&state_file);
        token.save(&token_file)?;
        let pf = PfDevice::open(o.pf, Some(&token), false)?;
        let mut policies: Vec<VfPolicy> = (0..o.vfs)
            .map(|i| o.policies.get(&i).cloned().unwrap_or_default())
            .collect();
        for (i, p) in policies.iter_mut().enumerate() {
            if p.mac.is_none() {
                p.mac = Some(generated_mac(o.pf, i));
            }
        }
        let table = VfTable::new(policies, pf.mac, now_ms(t0))?;
        let vf_addrs = pf.enable_vfs(o.vfs as u16)?;
        (pf, vf_addrs, table)
    };
    println!("sriov-pf: token file: {}", token_file.display());
    println!("sriov-pf: state file: {}", state_file.display());
    let kernel_vfs: Vec<usize> = table
        .iter()
        .enumerate()
        .filter(|(_, s)| s.policy.kernel_driver)
        .map(|(i, _)| i)
        .collect();
    for (i, (a, s)) in vf_addrs.iter().zip(table.iter()).enumerate() {
        println!(
            "sriov-pf: VF {i}: {a} MAC {} trust={} spoof={} {}",
            s.mac.map(|m| m.to_string()).unwrap_or_else(|| "none".into()),
            if s.policy.trusted { "on" } else { "off" },
            if s.policy.spoof_check { "on" } else { "off" },
            if s.policy.kernel_driver {
                "kernel igbvf"
            } else {
                "vfio-pci"
            }
        );
    }
    let mut host = PfHost::new(pf.bar.clone(), &o.pf.to_string(), table)?;
    host.setup_vmdq()?;
    if !pf.wait_link(Duration::from_secs(10)) {
        log::warn!("{}: link still down after 10 s", o.pf);
    }
    save_state(&host, &pf, &state_file);
    // Kernel VFs: bind while the mailbox is served (igbvf's probe does the reset handshake).
    let binder = if kernel_vfs.is_empty() || o.restart {
        None
    } else {
        let addrs: Vec<(usize, PciAddress)> = kernel_vfs.iter().map(|&i| (i, vf_addrs[i])).collect();
        Some(std::thread::spawn(move || -> Result<(), String> {
            let sys = Sysfs::new();
            if !std::path::Path::new("/sys/bus/pci/drivers/igbvf").exists() {
                return Err("the kernel igbvf driver is not loaded (modprobe igbvf)".into());
            }
            for (i, a) in addrs {
                sys.keep_vf_on_kernel_driver(a, "igbvf")
                    .map_err(|e| format!("VF {i} ({a}): {e}"))?;
                println!(
                    "sriov-pf: VF {i}: {a} bound to the kernel igbvf driver (driver_override rewritten)"
                );
            }
            Ok(())
        }))
    };
    // The PF's own traffic, on its own pool's queue.
    let mut pf_port = None;
    let mut pf_queues: Option<(RxQueue, TxQueue)> = None;
    let mut pf_echoed = 0u64;
    if o.pf_echo {
        let mut port = Port::with_driver(Box::new(pf.pool_port(host.pf_pool() as u16)?), 0);
        let map = port.dma_map().ok_or("the PF pool port has no DMA map")?;
        let pool = Mempool::new(
            &MempoolConfig {
                cache_size: 32,
                ..MempoolConfig::new("pf-pool", 2048)
            },
            map,
        )?;
        port.configure(&PortConfig::new(pool).ring_sizes(256, 256))?;
        port.start()?;
        let (mut rx, mut tx) = port.take_queues()?;
        pf_queues = Some((rx.remove(0), tx.remove(0)));
        pf_port = Some(port);
        println!(
            "sriov-pf: PF pool {} forwards its own traffic (echo), MAC {}",
            host.pf_pool(),
            pf.mac
        );
    }
    let mut burst = Burst::new();
    let mut children: Vec<(String, Child)> = Vec::new();
    for cmd in &o.launch {
        let mut c = Command::new("sh");
        c.arg("-c").arg(cmd);
        c.env("OXPMD_VF_TOKEN_FILE", &token_file);
        c.env("OXPMD_PF", o.pf.to_string());
        for (i, a) in vf_addrs.iter().enumerate() {
            c.env(format!("OXPMD_VF{i}"), a.to_string());
        }
        let child = c.spawn().map_err(|e| format!("--launch {cmd}: {e}"))?;
        println!("sriov-pf: launched pid {}: {cmd}", child.id());
        children.push((cmd.clone(), child));
    }
    println!("sriov-pf: serving {} VF(s)", vf_addrs.len());
    let mut binder = binder;
    let mut last_stats = Instant::now();
    let mut failed_children = 0;
    let started = Instant::now();
    while !STOP.load(Ordering::Relaxed) {
        if let Some((rx, tx)) = pf_queues.as_mut() {
            if rx.rx_burst(&mut burst) > 0 {
                for p in burst.as_mut_slice() {
                    let d = p.data_mut();
                    if d.len() >= 12 {
                        let mut src = [0u8; 6];
                        src.copy_from_slice(&d[6..12]);
                        d[0..6].copy_from_slice(&src);
                        d[6..12].copy_from_slice(&pf.mac.0);
                    }
                }
                pf_echoed += tx.tx_burst(&mut burst) as u64;
                burst.clear();
            }
        }
        let events = host.poll(now_ms(t0))?;
        // Refusals change no saved state: a flooding VF must not make the manager write.
        let changed = events.iter().any(|e| !matches!(e, VfEvent::Refused { .. }));
        for e in &events {
            match e {
                VfEvent::Ready { vf, mac } => println!("sriov-pf: event VF {vf}: ready, MAC {mac}"),
                VfEvent::Done { vf, id } => println!("sriov-pf: event VF {vf}: message {id:#06x} done"),
                // Rate-limit refusals are counted and logged once a second by the PF host.
                VfEvent::Refused {
                    reason: Refusal::RateLimited,
                    ..
                } => {}
                VfEvent::Refused { vf, id, reason } => {
                    println!("sriov-pf: event VF {vf}: message {id:#06x} refused: {reason}")
                }
                VfEvent::Flr { vf } => println!("sriov-pf: event VF {vf}: function reset"),
            }
        }
        if changed {
            save_state(&host, &pf, &state_file);
        }
        if binder.as_ref().is_some_and(|b| b.is_finished()) {
            if let Some(b) = binder.take() {
                match b.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(format!("binding kernel VFs: {e}").into()),
                    Err(_) => return Err("the kernel-VF binding thread panicked".into()),
                }
            }
        }
        if !children.is_empty() {
            let mut i = 0;
            while i < children.len() {
                if let Some(st) = children[i].1.try_wait()? {
                    let (cmd, _) = children.remove(i);
                    println!("sriov-pf: launched command exited ({st}): {cmd}");
                    if !st.success() {
                        failed_children += 1;
                    }
                } else {
                    i += 1;
                }
            }
            if children.is_empty() {
                break;
            }
        }
        if !o.stats.is_zero() && last_stats.elapsed() >= o.stats {
            print_counters(&host);
            last_stats = Instant::now();
        }
        if o.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    for (cmd, mut c) in children {
        log::warn!("stopping launched command: {cmd}");
        let _ = c.kill();
        let _ = c.wait();
    }
    print_counters(&host);
    if o.pf_echo {
        println!("sriov-pf: PF pool echoed {pf_echoed} frame(s)");
    }
    drop(pf_queues);
    drop(pf_port);
    save_state(&host, &pf, &state_file);
    if o.remove_vfs {
        host.shutdown()?;
        drop(host);
        drop(pf);
        sys.set_num_vfs(o.pf, 0)?;
        println!("sriov-pf: VFs removed");
    } else {
        println!(
            "sriov-pf: stopped; VFs left enabled, state in {} (serve them again with --restart)",
            state_file.display()
        );
    }
    if failed_children > 0 {
        return Err(format!("{failed_children} launched command(s) failed").into());
    }
    Ok(())
}

fn main() -> ExitCode {
    common::init_logger(log::LevelFilter::Info);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse_args(&args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sriov-pf: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sriov-pf: error: {e}");
            ExitCode::FAILURE
        }
    }
}
