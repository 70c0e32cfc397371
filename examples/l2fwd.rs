//! l2fwd: DPDK's `examples/l2fwd` on oxpmd.
//!
//! ```text
//! cargo run --release --example l2fwd -- --port null0 --port null1 [-p PORTMASK] [-q N] [-T SECS]
//!     [--no-mac-updating] [-P] [--cores LIST] [--duration SECS] [--burst N] [--ring-size N]
//!     [--pool-size N] [--rx-interrupt[=N]]
//! ```
//! Ports are given by PCI address (`0000:00:02.0`) or virtual name (`null0`, `net_null1`,
//! `ring:NAME`), and numbered 0, 1, ... in the order given. Enabled ports (PORTMASK, default all)
//! are paired 0<->1, 2<->3; each worker (one per core, pinned) polls `-q` ports and forwards what
//! they receive to their partners, rewriting MACs (src = TX port MAC, dst = 02:00:00:00:00:<txport>)
//! unless `--no-mac-updating`. TX is buffered per port and drained every 100 us. Every `-T`
//! seconds a stats table is printed; Ctrl-C (SIGINT / SIGTERM) or `--duration` stops it with final
//! stats and a check that every buffer is back in the pool.
//!
//! `--rx-interrupt[=N]` (like DPDK's l3fwd-power): a worker busy-polls while frames flow; after N
//! consecutive rounds in which none of its RX queues had a frame (default 300) it sends what its
//! TX buffers hold and sleeps on its queues' RX interrupts (`oxpmd::pmd::wait_for_rx`, at most
//! 100 ms at a time so that Ctrl-C is seen), until a frame arrives. Every port's driver must offer
//! RX interrupts: a port without them is an error at start, never a silent fall-back to polling.
//!
//! `--pcap FILE` captures the frames **received** on the ports of `--pcap-ports` (default: all
//! enabled), as they arrived (before the MAC rewrite). With it the workers run a capture-aware
//! loop (each RX burst is copied into preallocated records of `oxpmd::pmd::capture`, then sent
//! to the partner port at once, without l2fwd's TX buffering); a writer thread writes the file;
//! frames the writer has no record for are not captured and are counted. `--stats-json` prints
//! one JSON object per stats period and a final one on stdout, and sends the text to stderr.
//! Set-up steps print their durations on stderr. See docs/capture.md.

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    BoxError, STOP, finish_capture, install_signal_handlers, parse_num, ports_json, say, start_capture, step,
};
use oxpmd::dma::{Mempool, MempoolConfig, PageSize, RegionOptions};
use oxpmd::pmd::capture::{Capture, CaptureTap, json_escape, now_ns};
use oxpmd::pmd::forward::{Forwarder, FwdConfig, FwdCounters, FwdSnapshot, l2fwd_pairs};
use oxpmd::pmd::forward::{l2fwd_dst_mac, rewrite_macs};
use oxpmd::pmd::vport::virtual_pool;
use oxpmd::pmd::{
    Burst, DeviceSpec, MAX_BURST, MacAddr, OpenOptions, Port, PortConfig, PortStats, RxQueue, TxQueue,
};

const USAGE: &str = "usage: l2fwd --port DEV [--port DEV ...] [options]
  --port DEV          a PCI address (0000:00:02.0) or a virtual port (null0, net_null0, ring:NAME)
  -p PORTMASK         hexadecimal mask of the ports to use (default: all)
  -q N                ports polled per core (default 1)
  -T SECS             stats period in seconds (default 10, 0 disables)
  --no-mac-updating   forward frames unchanged
  --mac-updating      rewrite MACs (the default)
  -P                  promiscuous mode on every port
  --cores LIST        cores for the workers, e.g. 1 or 0,2-3 (default: all, in order)
  --duration SECS     stop after SECS seconds (default: run until Ctrl-C)
  --burst N           RX burst and TX buffer size, 1..=512 (default 32)
  --ring-size N       RX/TX descriptors per queue (default 1024)
  --pool-size N       mempool buffers (default: as DPDK l2fwd computes it, at least 8192)
  --mtu N             the ports' MTU (default 1500; igb takes up to 9190, virtio-net 9698): a
                      frame larger than one buffer (2048 bytes of data) arrives and leaves as a
                      chained packet
  --pages 2m|4k       the mempool's pages: 2 MiB hugepages (an error if none can be had) or 4 KiB
                      pages (like DPDK's --no-huge); default: hugepages, for virtual ports falling
                      back to 4 KiB pages with a warning
  --tx-first          each port first sends one burst of 64-byte frames (like testpmd's
                      --tx-first): starts traffic on ring pairs (--port ring:x --port ring:x)
  --pcap FILE         capture the frames received on the chosen ports to FILE (pcap, ns stamps)
  --pcap-ports LIST   port ids to capture, e.g. 0,1 (default: all enabled ports)
  --pcap-slots N      capture records in flight, a power of two (default 4096)
  --stats-json        stdout: one JSON object per stats period (-T) and a final one; text to stderr
  --rx-interrupt[=N]  sleep when idle: after N consecutive empty polls of all its RX queues
                      (default 300) a worker flushes its TX buffers and sleeps on the queues'
                      RX interrupts until a frame arrives (like DPDK's l3fwd-power); every port
                      needs a driver with RX interrupts (igb, virtio-net); not with --pcap
  --xstats            at the end, every extended statistic of each port (Port::xstats: DPDK's
                      names; igb: every statistics register), also in the final JSON object
  Environment: OXPMD_LOG=error|warn|info|debug|trace (default warn).";

#[derive(Debug)]
struct Options {
    ports: Vec<String>,
    portmask: Option<u64>,
    per_core: usize,
    period: u64,
    mac_updating: bool,
    promiscuous: bool,
    cores: Option<Vec<usize>>,
    duration: Option<u64>,
    burst: usize,
    ring_size: usize,
    pool_size: Option<usize>,
    /// `--mtu`.
    mtu: u16,
    /// `--pages`: the pool's page size (None: the default).
    pages: Option<PageSize>,
    tx_first: bool,
    pcap: Option<std::path::PathBuf>,
    pcap_ports: Option<Vec<u16>>,
    pcap_slots: usize,
    stats_json: bool,
    xstats: bool,
    /// `--rx-interrupt[=N]`: empty polls before a worker sleeps.
    rx_interrupt: Option<u32>,
}

/// Empty polls before a worker sleeps, as DPDK l3fwd-power's idle heuristic counts them.
const DEFAULT_IDLE_POLLS: u32 = 300;
/// Longest sleep of an idle worker: it sees the stop flag within this.
const MAX_SLEEP: Duration = Duration::from_millis(100);

fn parse_cores(s: &str) -> Result<Vec<usize>, String> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: usize = a
            .trim()
            .parse()
            .map_err(|_| format!("--cores: bad core `{part}`"))?;
        let b: usize = b
            .trim()
            .parse()
            .map_err(|_| format!("--cores: bad core `{part}`"))?;
        if a > b || b >= 4096 {
            return Err(format!("--cores: bad range `{part}`"));
        }
        for c in a..=b {
            if !v.contains(&c) {
                v.push(c);
            }
        }
    }
    Ok(v)
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        ports: Vec::new(),
        portmask: None,
        per_core: 1,
        period: 10,
        mac_updating: true,
        promiscuous: false,
        cores: None,
        duration: None,
        burst: 32,
        ring_size: 1024,
        pool_size: None,
        mtu: oxpmd::pmd::DEFAULT_MTU,
        pages: None,
        tx_first: false,
        pcap: None,
        pcap_ports: None,
        pcap_slots: 4096,
        stats_json: false,
        xstats: false,
        rx_interrupt: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => o.ports.push(it.next().ok_or("--port: missing device")?.clone()),
            "-p" => {
                let v = it.next().ok_or("-p: missing mask")?;
                let hex = v.trim_start_matches("0x").trim_start_matches("0X");
                let m = u64::from_str_radix(hex, 16).map_err(|_| format!("-p: `{v}` is not a hex mask"))?;
                if m == 0 {
                    return Err("-p: the mask enables no port".into());
                }
                o.portmask = Some(m);
            }
            "-q" => o.per_core = parse_num("-q", it.next(), 1..=64)?,
            "-T" => o.period = parse_num("-T", it.next(), 0..=86_400)?,
            "--no-mac-updating" => o.mac_updating = false,
            "--mac-updating" => o.mac_updating = true,
            "-P" => o.promiscuous = true,
            "--cores" => o.cores = Some(parse_cores(it.next().ok_or("--cores: missing list")?)?),
            "--duration" => o.duration = Some(parse_num("--duration", it.next(), 1..=31_536_000)?),
            "--burst" => o.burst = parse_num("--burst", it.next(), 1..=MAX_BURST)?,
            "--ring-size" => o.ring_size = parse_num("--ring-size", it.next(), 64..=4096)?,
            "--pool-size" => o.pool_size = Some(parse_num("--pool-size", it.next(), 1024..=1 << 24)?),
            "--mtu" => o.mtu = parse_num("--mtu", it.next(), 68..=9728)?,
            "--pages" => {
                o.pages = Some(match it.next().map(String::as_str) {
                    Some("2m") => PageSize::Huge2M,
                    Some("4k") => PageSize::Base4K,
                    other => return Err(format!("--pages: `{}`: expected 2m or 4k", other.unwrap_or(""))),
                })
            }
            "--tx-first" => o.tx_first = true,
            "--pcap" => o.pcap = Some(it.next().ok_or("--pcap: missing file")?.into()),
            "--pcap-ports" => {
                let v = it.next().ok_or("--pcap-ports: missing list")?;
                let mut l = Vec::new();
                for c in v.split(',') {
                    l.push(parse_num("--pcap-ports", Some(&c.trim().to_string()), 0..=63u16)?);
                }
                o.pcap_ports = Some(l);
            }
            "--pcap-slots" => {
                o.pcap_slots = parse_num("--pcap-slots", it.next(), 2..=65536)?;
                if !o.pcap_slots.is_power_of_two() {
                    return Err(format!("--pcap-slots: {} is not a power of two", o.pcap_slots));
                }
            }
            "--stats-json" => o.stats_json = true,
            "--xstats" => o.xstats = true,
            "--rx-interrupt" => o.rx_interrupt = Some(DEFAULT_IDLE_POLLS),
            s if s.starts_with("--rx-interrupt=") => {
                let n = &s["--rx-interrupt=".len()..];
                o.rx_interrupt = Some(parse_num("--rx-interrupt", Some(n), 1..=1_000_000_000)?);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if o.ports.is_empty() {
        return Err("no port given (--port DEV)".into());
    }
    if o.ports.len() > 64 {
        return Err("at most 64 ports".into());
    }
    if o.pcap.is_none() && o.pcap_ports.is_some() {
        return Err("--pcap-ports needs --pcap FILE".into());
    }
    if o.pcap.is_some() && o.rx_interrupt.is_some() {
        return Err("--rx-interrupt does not apply to the capture loop of --pcap; give one of them".into());
    }
    if let Some(bad) = o
        .pcap_ports
        .iter()
        .flatten()
        .find(|&&p| usize::from(p) >= o.ports.len())
    {
        return Err(format!("--pcap-ports: no port {bad} ({} given)", o.ports.len()));
    }
    Ok(o)
}

fn main() -> ExitCode {
    common::init_logger(log::LevelFilter::Warn);
    common::cli_main("l2fwd", USAGE, parse_args, run, 1)
}

/// One forwarding port: its id, device name and counters.
struct PortInfo {
    id: u16,
    name: String,
    counters: Arc<FwdCounters>,
    /// Counters of the capture-aware loop (`--pcap`); zero otherwise (as `counters` is then).
    cap_counters: Arc<LoopCounters>,
}

impl PortInfo {
    /// The port's forwarding counters, from whichever loop runs.
    fn snapshot(&self) -> FwdSnapshot {
        let (a, b) = (self.counters.snapshot(), self.cap_counters.snapshot());
        FwdSnapshot {
            rx: a.rx + b.rx,
            tx: a.tx + b.tx,
            dropped: a.dropped + b.dropped,
        }
    }
}

/// Per-port counters of the capture-aware loop, published with relaxed stores by their worker.
#[derive(Debug, Default)]
#[repr(align(64))]
struct LoopCounters {
    rx: AtomicU64,
    tx: AtomicU64,
    dropped: AtomicU64,
}

impl LoopCounters {
    fn snapshot(&self) -> FwdSnapshot {
        FwdSnapshot {
            rx: self.rx.load(Ordering::Relaxed),
            tx: self.tx.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

struct CapRx {
    queue: RxQueue,
    /// Index into the worker's TX list.
    tx: usize,
    capture: bool,
    counters: Arc<LoopCounters>,
    rx: u64,
}

struct CapTx {
    queue: TxQueue,
    src: MacAddr,
    dst: MacAddr,
    counters: Arc<LoopCounters>,
    tx: u64,
    dropped: u64,
}

/// The capture-aware forwarding loop (`--pcap`): RX burst, copy chosen ports' frames into capture
/// records (no syscall, no allocation; a full capture ring only counts a drop), MAC rewrite, TX
/// burst to the partner; what TX refuses is dropped and counted.
fn capture_loop(
    rx: &mut [CapRx],
    tx: &mut [CapTx],
    tap: &mut CaptureTap,
    mac_updating: bool,
    burst: usize,
    stop: &AtomicBool,
) {
    let Ok(mut b) = Burst::with_capacity(burst) else {
        return;
    };
    let publish = |rx: &[CapRx], tx: &[CapTx], tap: &CaptureTap| {
        for e in rx {
            e.counters.rx.store(e.rx, Ordering::Relaxed);
        }
        for t in tx {
            t.counters.tx.store(t.tx, Ordering::Relaxed);
            t.counters.dropped.store(t.dropped, Ordering::Relaxed);
        }
        tap.publish();
    };
    let mut round = 0u32;
    loop {
        for e in rx.iter_mut() {
            let n = e.queue.rx_burst(&mut b);
            if n == 0 {
                continue;
            }
            e.rx += n as u64;
            if e.capture {
                let ts = now_ns();
                for p in b.iter() {
                    tap.capture_packet(p, ts);
                }
            }
            let t = &mut tx[e.tx];
            if mac_updating {
                for p in b.iter_mut() {
                    rewrite_macs(p, t.dst, t.src);
                }
            }
            t.tx += t.queue.tx_burst(&mut b) as u64;
            if !b.is_empty() {
                t.dropped += b.len() as u64;
                b.clear();
            }
        }
        round = round.wrapping_add(1);
        if round % 256 == 0 {
            publish(rx, tx, tap);
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    publish(rx, tx, tap);
}

fn run(opts: &Options) -> Result<bool, BoxError> {
    install_signal_handlers()?;
    common::JSON_MODE.store(opts.stats_json, Ordering::Relaxed);
    // Enabled ports, by id (= position in the --port list).
    let enabled: Vec<u16> = (0..opts.ports.len() as u16)
        .filter(|i| opts.portmask.is_none_or(|m| m & (1u64 << i) != 0))
        .collect();
    if enabled.is_empty() {
        return Err(format!(
            "the port mask enables none of the {} ports given",
            opts.ports.len()
        )
        .into());
    }
    if let Some(m) = opts.portmask {
        if m >> opts.ports.len().min(63) != 0 && opts.ports.len() < 64 {
            return Err(format!(
                "port mask {m:#x} names ports beyond the {} given",
                opts.ports.len()
            )
            .into());
        }
    }
    let workers_needed = enabled.len().div_ceil(opts.per_core);
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let cores = match &opts.cores {
        Some(c) => {
            if let Some(bad) = c.iter().find(|c| !available.contains(c)) {
                return Err(format!("--cores: core {bad} is not available (have {available:?})").into());
            }
            c.clone()
        }
        None => available.clone(),
    };
    if cores.len() < workers_needed {
        return Err(format!(
            "{} ports at {} per core need {workers_needed} cores, {} given/available; raise -q or --cores",
            enabled.len(),
            opts.per_core,
            cores.len()
        )
        .into());
    }

    // Open the ports.
    let t = Instant::now();
    let mut ports: Vec<Port> = Vec::new();
    for &id in &enabled {
        let spec = DeviceSpec::parse(&opts.ports[usize::from(id)])?;
        ports.push(Port::open_spec(
            &spec,
            &OpenOptions {
                port_id: id,
                ..OpenOptions::default()
            },
        )?);
    }
    step("l2fwd", &format!("open {} port(s)", ports.len()), t);
    let t = Instant::now();
    // One pool for all ports (DPDK l2fwd: nb_ports * (rxd + txd + burst + lcores * cache), >= 8192).
    let cache = 256usize;
    let pool_size = opts.pool_size.unwrap_or_else(|| {
        (enabled.len() * (2 * opts.ring_size + opts.burst + workers_needed * cache)
            + workers_needed * 2 * MAX_BURST)
            .max(8192)
    });
    let map = ports.iter().find_map(|p| p.dma_map());
    let pool: Mempool = match (opts.pages, map) {
        (Some(page_size), map) => Mempool::new(
            &MempoolConfig {
                cache_size: cache,
                region: RegionOptions {
                    page_size,
                    allow_4k_fallback: false,
                },
                ..MempoolConfig::new("l2fwd", pool_size)
            },
            map.unwrap_or_else(|| std::sync::Arc::new(oxpmd::dma::IdentityMap)),
        )?,
        (None, Some(map)) => Mempool::new(
            &MempoolConfig {
                cache_size: cache,
                region: RegionOptions::default(),
                ..MempoolConfig::new("l2fwd", pool_size)
            },
            map,
        )?,
        (None, None) => virtual_pool("l2fwd", pool_size, cache)?,
    };
    let pages = match pool.region().page_size() {
        PageSize::Huge2M => "2 MiB pages",
        PageSize::Huge1G => "1 GiB pages",
        PageSize::Base4K => "4 KiB pages",
    };
    step(
        "l2fwd",
        &format!("mempool of {pool_size} buffers on {pages} (allocation, DMA mapping)"),
        t,
    );
    let t = Instant::now();
    let cfg = PortConfig::new(pool.clone())
        .ring_sizes(opts.ring_size, opts.ring_size)
        .mtu(opts.mtu);
    let mut infos = Vec::new();
    for p in ports.iter_mut() {
        p.configure(&cfg)?;
        if opts.promiscuous {
            p.set_promiscuous(true)?;
        }
        p.start()?;
        infos.push(PortInfo {
            id: p.id(),
            name: p.name().to_string(),
            counters: Arc::new(FwdCounters::default()),
            cap_counters: Arc::new(LoopCounters::default()),
        });
    }
    step("l2fwd", "configure and start the ports", t);
    for p in ports.iter_mut() {
        let t = Instant::now();
        match p.wait_link_up(Duration::from_secs(10)) {
            Ok(l) => say!("port {} ({}): MAC {} link {l}", p.id(), p.name(), p.mac_addr()),
            Err(e) => say!("port {} ({}): MAC {} {e}", p.id(), p.name(), p.mac_addr()),
        }
        step("l2fwd", &format!("link wait, port {} ({})", p.id(), p.name()), t);
    }
    let mut link_events = common::take_link_events(&mut ports);
    let capture = start_capture(
        "l2fwd",
        opts.pcap.as_deref(),
        opts.pcap_slots,
        oxpmd::pmd::max_frame_len(opts.mtu),
    )?;

    // Hand the queues to the workers: worker w polls ports [w*q, (w+1)*q) and owns the TX queues
    // of their partners.
    let pairs = l2fwd_pairs(&enabled);
    let dst_of = |id: u16| {
        pairs
            .iter()
            .find(|(p, _)| *p == id)
            .map(|(_, d)| *d)
            .unwrap_or(id)
    };
    let idx_of = |id: u16| enabled.iter().position(|&e| e == id).unwrap_or(0);
    let mut rxq: Vec<Option<oxpmd::pmd::RxQueue>> = Vec::new();
    let mut txq: Vec<Option<oxpmd::pmd::TxQueue>> = Vec::new();
    let mut macs = Vec::new();
    for p in ports.iter_mut() {
        let (mut r, mut t) = p.take_queues()?;
        rxq.push(Some(r.remove(0)));
        txq.push(Some(t.remove(0)));
        macs.push(p.mac_addr());
    }
    if opts.tx_first {
        for (i, t) in txq.iter_mut().enumerate() {
            if let Some(t) = t.as_mut() {
                let sent = send_first_burst(t, &pool, macs[i], opts.burst)?;
                say!("port {}: sent {sent} frames first", enabled[i]);
            }
        }
    }
    let fwd_cfg = FwdConfig {
        mac_updating: opts.mac_updating,
        burst: opts.burst,
        ..FwdConfig::default()
    };
    let mut handles = Vec::new();
    let stop_workers = Arc::new(AtomicBool::new(false));
    for (w, chunk) in enabled.chunks(opts.per_core).enumerate() {
        let core = cores[w];
        if let Some(cap) = &capture {
            let mut crx = Vec::new();
            let mut ctx: Vec<CapTx> = Vec::new();
            for &id in chunk {
                let di = idx_of(dst_of(id));
                if let Some(t) = txq[di].take() {
                    ctx.push(CapTx {
                        dst: l2fwd_dst_mac(t.port_id()),
                        queue: t,
                        src: macs[di],
                        counters: infos[di].cap_counters.clone(),
                        tx: 0,
                        dropped: 0,
                    });
                }
            }
            for &id in chunk {
                let i = idx_of(id);
                let d = dst_of(id);
                let queue = rxq[i].take().ok_or("rx queue assigned twice")?;
                let tx = ctx
                    .iter()
                    .position(|t| t.queue.port_id() == d)
                    .ok_or("l2fwd: an RX port's partner TX queue is in another worker")?;
                crx.push(CapRx {
                    queue,
                    tx,
                    capture: opts.pcap_ports.as_ref().is_none_or(|l| l.contains(&id)),
                    counters: infos[i].cap_counters.clone(),
                    rx: 0,
                });
            }
            let list: Vec<String> = chunk.iter().map(|p| format!("{p}->{}", dst_of(*p))).collect();
            say!("worker {w}: core {core}, ports {} (capture loop)", list.join(" "));
            let stop = stop_workers.clone();
            let mut tap = cap.tap();
            let (mac_updating, burst) = (opts.mac_updating, opts.burst);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("l2fwd-{w}"))
                    .spawn(move || {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                            log::warn!("worker {w}: could not pin to core {core}");
                        }
                        capture_loop(&mut crx, &mut ctx, &mut tap, mac_updating, burst, &stop);
                        drop(tap);
                        drop(crx);
                        drop(ctx);
                        oxpmd::dma::flush_thread_caches();
                        Ok(())
                    })?,
            );
            continue;
        }
        let mut fwd = Forwarder::new(fwd_cfg.clone())?;
        for &id in chunk {
            let d = dst_of(id);
            let di = idx_of(d);
            if let Some(t) = txq[di].take() {
                fwd.add_tx(t, macs[di], infos[di].counters.clone())?;
            }
        }
        for &id in chunk {
            let i = idx_of(id);
            let mut r = rxq[i].take().ok_or("rx queue assigned twice")?;
            if opts.rx_interrupt.is_some() {
                r.enable_rx_interrupt().map_err(|e| {
                    format!(
                        "port {id} ({}): --rx-interrupt needs RX interrupts on every port, and this one \
                         has none: {e}",
                        infos[i].name
                    )
                })?;
            }
            fwd.add_rx(r, dst_of(id), infos[i].counters.clone())?;
        }
        let list: Vec<String> = chunk.iter().map(|p| format!("{p}->{}", dst_of(*p))).collect();
        let mode = opts
            .rx_interrupt
            .map_or(String::new(), |n| format!(", sleeps after {n} empty polls"));
        say!("worker {w}: core {core}, ports {}{mode}", list.join(" "));
        let stop = stop_workers.clone();
        let idle_polls = opts.rx_interrupt;
        handles.push(
            std::thread::Builder::new()
                .name(format!("l2fwd-{w}"))
                .spawn(move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        log::warn!("worker {w}: could not pin to core {core}");
                    }
                    let result = match idle_polls {
                        Some(n) => fwd.run_rx_interrupt(&stop, n, MAX_SLEEP).map(|sleeps| {
                            say!("worker {w}: slept {sleeps} times on RX interrupts");
                        }),
                        None => {
                            fwd.run(&stop);
                            Ok(())
                        }
                    };
                    drop(fwd); // queues dropped on their own thread
                    oxpmd::dma::flush_thread_caches();
                    result.map_err(|e| {
                        // Stop the whole run: a worker that cannot wait no longer forwards.
                        STOP.store(true, Ordering::Relaxed);
                        format!("worker {w}: {e}")
                    })
                })?,
        );
    }
    // Any TX queue no worker took (cannot happen with l2fwd pairing) is dropped here.
    drop(txq);
    drop(rxq);

    say!(
        "l2fwd: {} ports, {} workers, burst {}, MAC updating {}, stats every {} s",
        enabled.len(),
        handles.len(),
        opts.burst,
        if opts.mac_updating { "on" } else { "off" },
        opts.period
    );
    let start = Instant::now();
    let mut last_print = start;
    let mut last: Vec<FwdSnapshot> = infos.iter().map(|_| FwdSnapshot::default()).collect();
    let mut last_port: Vec<Option<PortStats>> = infos.iter().map(|_| None).collect();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        common::print_link_events(&mut link_events);
        let now = Instant::now();
        let done = STOP.load(Ordering::Relaxed)
            || opts
                .duration
                .is_some_and(|d| now.duration_since(start).as_secs() >= d);
        if opts.period > 0 && now.duration_since(last_print).as_secs() >= opts.period {
            if opts.stats_json {
                let dt = now.duration_since(last_print);
                let fwd = fwd_json(&infos, &last, dt);
                let p = ports_json(&mut ports, &mut last_port, dt.as_secs_f64());
                let (c, d) = capture.as_ref().map_or((0, 0), Capture::counts);
                println!(
                    "{{\"type\":\"stats\",\"time_s\":{:.3},\"interval_s\":{:.3},\"pcap_captured\":{c},\
                     \"pcap_dropped\":{d},\"forwarding\":{fwd},\"ports\":{p}}}",
                    now.duration_since(start).as_secs_f64(),
                    dt.as_secs_f64()
                );
            }
            print_stats(&infos, &mut last, now.duration_since(last_print));
            last_print = now;
        }
        if done {
            break;
        }
    }
    stop_workers.store(true, Ordering::Relaxed);
    let mut workers_ok = true;
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("l2fwd: {e}");
                workers_ok = false;
            }
            Err(_) => {
                eprintln!("l2fwd: a worker panicked");
                workers_ok = false;
            }
        }
    }
    let elapsed = start.elapsed();
    let cap_report = finish_capture("", capture, opts.pcap.as_deref())?;
    let mut zero: Vec<FwdSnapshot> = infos.iter().map(|_| FwdSnapshot::default()).collect();
    let final_json = if opts.stats_json {
        let fwd = fwd_json(&infos, &zero, elapsed);
        let mut none: Vec<Option<PortStats>> = infos.iter().map(|_| None).collect();
        let p = ports_json(&mut ports, &mut none, elapsed.as_secs_f64());
        let cap = cap_report.map_or("null".to_string(), |r| {
            format!(
                "{{\"captured\":{},\"dropped\":{},\"written\":{}}}",
                r.captured, r.dropped, r.written
            )
        });
        Some(format!(
            "{{\"type\":\"final\",\"time_s\":{:.3},\"pcap\":{cap},\"forwarding\":{fwd},\"ports\":{p}",
            elapsed.as_secs_f64()
        ))
    } else {
        None
    };
    say!("\nFinal statistics after {:.1} s:", elapsed.as_secs_f64());
    print_stats(&infos, &mut zero, elapsed);
    let xstats_json = if opts.xstats {
        Some(xstats_report(&mut ports))
    } else {
        None
    };
    // Teardown: queues are gone (workers), now the ports: stop, then drop (device off).
    for p in ports.iter_mut() {
        p.stop()?;
    }
    drop(ports);
    drop(cfg);
    oxpmd::dma::flush_thread_caches();
    let (free, cap) = (pool.available(), pool.capacity());
    if let Some(j) = final_json {
        let x = xstats_json.map_or(String::new(), |x| format!(",\"xstats\":{x}"));
        println!("{j},\"pool_free\":{free},\"pool_capacity\":{cap}{x}}}");
    }
    if free == cap {
        say!(
            "buffer check: pool `{}`: {free}/{cap} buffers back: OK, no leak",
            pool.name()
        );
        Ok(workers_ok)
    } else {
        say!(
            "buffer check: pool `{}`: {free}/{cap} buffers back: LEAK of {}",
            pool.name(),
            cap - free
        );
        Ok(false)
    }
}

/// Says every extended statistic of each port (`port N (NAME) xstats:` then one `  name: value`
/// line each) and returns them as a JSON array of `{"port", "name", "xstats": {name: value}}`.
pub fn xstats_report(ports: &mut [Port]) -> String {
    let mut out = Vec::new();
    for p in ports.iter_mut() {
        match p.xstats() {
            Ok(xs) => {
                say!("port {} ({}) xstats:", p.id(), p.name());
                for x in &xs {
                    say!("  {}: {}", x.name, x.value);
                }
                let fields: Vec<String> = xs
                    .iter()
                    .map(|x| format!("{}:{}", json_escape(&x.name), x.value))
                    .collect();
                out.push(format!(
                    "{{\"port\":{},\"name\":{},\"xstats\":{{{}}}}}",
                    p.id(),
                    json_escape(p.name()),
                    fields.join(",")
                ));
            }
            Err(e) => {
                say!("port {} ({}) xstats: {e}", p.id(), p.name());
                out.push(format!(
                    "{{\"port\":{},\"name\":{},\"error\":{}}}",
                    p.id(),
                    json_escape(p.name()),
                    json_escape(&e.to_string())
                ));
            }
        }
    }
    format!("[{}]", out.join(","))
}

/// Sends one burst of 64-byte frames (dst = the l2fwd MAC of this port, src = its MAC).
fn send_first_burst(
    tx: &mut oxpmd::pmd::TxQueue,
    pool: &Mempool,
    src: oxpmd::pmd::MacAddr,
    n: usize,
) -> Result<usize, BoxError> {
    let mut b = oxpmd::pmd::Burst::with_capacity(n)?;
    let dst = oxpmd::pmd::forward::l2fwd_dst_mac(tx.port_id());
    for _ in 0..n {
        let mut p = pool.alloc().ok_or("mempool empty before forwarding started")?;
        let mut f = [0u8; 64];
        f[..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        p.extend_from_slice(&f)?;
        let _ = b.push(p);
    }
    Ok(tx.tx_burst(&mut b))
}

/// JSON array of the forwarding counters of every port (totals and rates since `last`).
fn fwd_json(infos: &[PortInfo], last: &[FwdSnapshot], dt: Duration) -> String {
    let secs = dt.as_secs_f64().max(1e-9);
    let v: Vec<String> = infos
        .iter()
        .zip(last)
        .map(|(info, prev)| {
            let s = info.snapshot();
            format!(
                "{{\"port\":{},\"name\":{},\"rx\":{},\"tx\":{},\"dropped\":{},\"rx_pps\":{:.1},\"tx_pps\":{:.1}}}",
                info.id,
                json_escape(&info.name),
                s.rx,
                s.tx,
                s.dropped,
                s.rx.saturating_sub(prev.rx) as f64 / secs,
                s.tx.saturating_sub(prev.tx) as f64 / secs
            )
        })
        .collect();
    format!("[{}]", v.join(","))
}

fn print_stats(infos: &[PortInfo], last: &mut [FwdSnapshot], dt: Duration) {
    let secs = dt.as_secs_f64().max(1e-9);
    say!("\nPort statistics ===============================================================");
    say!(
        "{:>4} {:<16} {:>16} {:>16} {:>12} {:>9} {:>9}",
        "port",
        "device",
        "received",
        "sent",
        "dropped",
        "rx Mpps",
        "tx Mpps"
    );
    let (mut rx, mut tx, mut dr, mut drx, mut dtx) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for (info, prev) in infos.iter().zip(last.iter_mut()) {
        let s = info.snapshot();
        let (d_rx, d_tx) = (s.rx - prev.rx, s.tx - prev.tx);
        say!(
            "{:>4} {:<16} {:>16} {:>16} {:>12} {:>9.3} {:>9.3}",
            info.id,
            info.name,
            s.rx,
            s.tx,
            s.dropped,
            d_rx as f64 / secs / 1e6,
            d_tx as f64 / secs / 1e6
        );
        rx += s.rx;
        tx += s.tx;
        dr += s.dropped;
        drx += d_rx;
        dtx += d_tx;
        *prev = s;
    }
    say!(
        "{:>4} {:<16} {:>16} {:>16} {:>12} {:>9.3} {:>9.3}",
        "all",
        "total",
        rx,
        tx,
        dr,
        drx as f64 / secs / 1e6,
        dtx as f64 / secs / 1e6
    );
    say!(
        "rate: rx {:.3} Mpps tx {:.3} Mpps over {:.2} s",
        drx as f64 / secs / 1e6,
        dtx as f64 / secs / 1e6,
        secs
    );
    say!("===============================================================================");
}
