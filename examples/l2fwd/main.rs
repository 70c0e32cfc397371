//! l2fwd: DPDK's `examples/l2fwd` on oxpmd.
//!
//! ```text
//! cargo run --release --example l2fwd -- --port null0 --port null1 [-p PORTMASK] [-q N] [-T SECS]
//!     [--no-mac-updating] [-P] [--cores LIST] [--main-core N] [--duration SECS] [--burst N]
//!     [--ring-size N] [--pool-size N] [--rx-interrupt[=N]]
//! ```
//! Ports are given by PCI address (`0000:00:02.0`) or virtual name (`null0`, `net_null1`,
//! `ring:NAME`), and numbered 0, 1, ... in the order given. Enabled ports (PORTMASK, default all)
//! are paired 0<->1, 2<->3; each worker (one per core, pinned) polls `-q` ports and forwards what
//! they receive to their partners, rewriting MACs (src = TX port MAC, dst = 02:00:00:00:00:<txport>)
//! unless `--no-mac-updating`. TX is buffered per port and drained every 100 us. `--main-core N`
//! pins the main thread (set-up, stats) like DPDK's main lcore, alone or beside a worker. Every `-T`
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

#[path = "../common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{BoxError, STOP, finish_capture, install_signal_handlers, ports_json, say, start_capture, step};
use oxpmd::dma::{Mempool, PageSize};
use oxpmd::pmd::capture::Capture;
use oxpmd::pmd::forward::l2fwd_dst_mac;
use oxpmd::pmd::forward::{Forwarder, FwdConfig, FwdCounters, FwdSnapshot, l2fwd_pairs};
use oxpmd::pmd::{DeviceSpec, MAX_BURST, OpenOptions, Port, PortConfig, PortStats};

mod capture_loop;
mod options;
mod report;

use capture_loop::{CapRx, CapTx, LoopCounters, capture_loop};
use options::{MAX_SLEEP, Options, USAGE, parse_args};
use report::{PortInfo, fwd_json, print_stats, xstats_report};

fn main() -> ExitCode {
    common::init_logger(log::LevelFilter::Warn);
    common::cli_main("l2fwd", USAGE, parse_args, run, 1)
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
    // The main thread where DPDK's main lcore would be. The workers pin themselves to their own
    // cores, whatever mask they inherit from it.
    if let Some(m) = opts.main_core {
        if !available.contains(&m) {
            return Err(format!("--main-core: core {m} is not available (have {available:?})").into());
        }
        if !core_affinity::set_for_current(core_affinity::CoreId { id: m }) {
            return Err(format!("--main-core: could not pin the main thread to core {m}").into());
        }
        say!("main thread: core {m}");
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
    let pool: Mempool = common::ports_pool("l2fwd", &ports, pool_size, cache, opts.pages)?;
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
            handles.push(spawn_worker(w, core, move || {
                capture_loop(&mut crx, &mut ctx, &mut tap, mac_updating, burst, &stop);
                drop(tap);
                drop(crx);
                drop(ctx);
                Ok(())
            })?);
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
        handles.push(spawn_worker(w, core, move || {
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
            result.map_err(|e| {
                // Stop the whole run: a worker that cannot wait no longer forwards.
                STOP.store(true, Ordering::Relaxed);
                format!("worker {w}: {e}")
            })
        })?);
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

/// Starts worker `w` on its own thread pinned to `core`; `work` owns the worker's queues and drops
/// them before it returns, and the thread's mempool caches are flushed after it.
fn spawn_worker<T: Send + 'static>(
    w: usize,
    core: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(format!("l2fwd-{w}"))
        .spawn(move || {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                log::warn!("worker {w}: could not pin to core {core}");
            }
            let out = work();
            oxpmd::dma::flush_thread_caches();
            out
        })
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
