//! sriov-pf: a PF manager built on the library's `PfService`. Holds an Intel 82576 PF through
//! VFIO, creates its VFs, gives them a fresh VF token and serves their mailboxes under a per-VF
//! policy. `oxpmd sriov serve` is the administered service (control socket, `oxpmd vf ...`);
//! this example adds `--launch` and `--pf-echo` for tests and demonstrations.
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
use oxpmd::pmd::sriov::service::parse_vf_option;
use oxpmd::pmd::sriov::{PfHost, PfService, Refusal, ServiceConfig, VfEvent, VfPolicy};
use oxpmd::pmd::{Burst, Port, PortConfig, RxQueue, TxQueue};
use oxpmd::vfio::PciAddress;

const USAGE: &str = "usage: sriov-pf --pf ADDR --vfs N [options]
  --pf ADDR            the 82576 PF (PCI address)
  --vfs N              VFs to create (1..=7; the PF keeps a pool)
  --vf I:SETTINGS      per-VF settings, comma-separated: mac=MAC, trust=on|off, spoof=on|off,
                       vlans=N (0..=32), mc=N (0..=30), max-frame=N (64..=9022), burst=N,
                       rate=N (messages per second), vlan=N (port VLAN, 0: none),
                       state=auto|enable|disable, kernel (bind the VF to the kernel igbvf driver)
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
            "--vf" => parse_vf_option(&val()?, &mut o.policies)?,
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

fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    install_signal_handlers()?;
    let mut config = ServiceConfig::new(o.pf, o.vfs);
    config.policies = o.policies.clone().into_iter().collect();
    config.restart = o.restart;
    if let Some(t) = &o.token_file {
        config.token_file = t.clone();
    }
    if let Some(s) = &o.state_file {
        config.state_file = s.clone();
    }
    let mut svc = PfService::start(config)?;
    if o.restart {
        println!(
            "sriov-pf: restarted: PF opened with the saved token, state {} restored ({} VFs)",
            svc.config().state_file.display(),
            svc.vf_addrs().len()
        );
    }
    let token_file = svc.config().token_file.clone();
    println!("sriov-pf: token file: {}", token_file.display());
    println!("sriov-pf: state file: {}", svc.config().state_file.display());
    for (i, (a, s)) in svc.vf_addrs().iter().zip(svc.host().table().iter()).enumerate() {
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
    // The PF's own traffic, on its own pool's queue.
    let pf_mac = svc.pf.mac;
    let mut pf_port = None;
    let mut pf_queues: Option<(RxQueue, TxQueue)> = None;
    let mut pf_echoed = 0u64;
    if o.pf_echo {
        let pool_q = svc.host().pf_pool() as u16;
        let mut port = Port::with_driver(Box::new(svc.pf.pool_port(pool_q)?), 0);
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
        println!("sriov-pf: PF pool {pool_q} forwards its own traffic (echo), MAC {pf_mac}");
    }
    let mut burst = Burst::new();
    let mut children: Vec<(String, Child)> = Vec::new();
    for cmd in &o.launch {
        let mut c = Command::new("sh");
        c.arg("-c").arg(cmd);
        c.env("OXPMD_VF_TOKEN_FILE", &token_file);
        c.env("OXPMD_PF", o.pf.to_string());
        for (i, a) in svc.vf_addrs().iter().enumerate() {
            c.env(format!("OXPMD_VF{i}"), a.to_string());
        }
        let child = c.spawn().map_err(|e| format!("--launch {cmd}: {e}"))?;
        println!("sriov-pf: launched pid {}: {cmd}", child.id());
        children.push((cmd.clone(), child));
    }
    println!("sriov-pf: serving {} VF(s)", svc.vf_addrs().len());
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
                        d[6..12].copy_from_slice(&pf_mac.0);
                    }
                }
                pf_echoed += tx.tx_burst(&mut burst) as u64;
                burst.clear();
            }
        }
        for e in &svc.poll()? {
            // Rate-limit refusals are counted and logged once a second by the PF host.
            if !matches!(
                e,
                VfEvent::Refused {
                    reason: Refusal::RateLimited,
                    ..
                }
            ) {
                println!("sriov-pf: event {e}");
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
            print_counters(svc.host());
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
    print_counters(svc.host());
    if o.pf_echo {
        println!("sriov-pf: PF pool echoed {pf_echoed} frame(s)");
    }
    drop(pf_queues);
    drop(pf_port);
    let state_file = svc.config().state_file.clone();
    svc.stop(o.remove_vfs)?;
    if o.remove_vfs {
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
