//! pktgen: a traffic generator and checker on oxpmd ports.
//!
//! ```text
//! cargo run --release --example pktgen -- --tx-port DEV [--rx-port DEV] [--size 64 | 64-1518 | imix]
//!     [--rate PPS] [--count N | --duration SECS] [--drain SECS] [--streams N] [--dst-mac MAC|broadcast]
//!     [-P] [--link-speed MBPS] [--expect-all] [--burst N] [--ring-size N] [--cores LIST] [-T SECS]
//!     [--gap N:SECS]
//! cargo run --release --example pktgen -- --tx-port DEV --rx-port DEV --rfc2544 [--sizes LIST]
//!     [--trial SECS] [--loss-tolerance PCT] [--resolution PCT] [--max-rate PPS]
//!     [--latency-fraction F] [--json FILE]
//! ```
//! Frames are Ethernet + IPv4 + UDP (correct checksums) carrying an 18-byte test header at offset 42:
//! magic `0x0C5A` (u16), stream id (u16), sequence number (u32, per stream), TX timestamp (u64, ns
//! since pktgen started) and a 16-bit checksum of those fields and of the payload, whose bytes follow
//! a pattern derived from the sequence number. Sizes count the FCS (a 64-byte frame carries 60 bytes).
//!
//! The receive side (`--rx-port`, which may be the TX port itself) checks every frame: received,
//! lost (sent but seen neither intact nor corrupted), duplicates, reordered (seen after a later one of
//! its stream), corrupted (any bit after the Ethernet header wrong: markers, IPv4 header checksum and
//! length, UDP checksum, test checksum, pattern; or a hardware checksum error flag), and latency
//! min/avg/max. Over `fault:` ports (docs/port-api.md) it also prints what they injected, and
//! `--expect-injected` checks that each category found equals what was injected. The
//! summary prints Mpps, Gbit/s (frame bytes with FCS) and percent of line rate (the link speed, or
//! `--link-speed`), then a `pktgen-result:` line of key=value pairs for scripts. With `--expect-all`
//! the exit status is non-zero unless every frame arrived exactly once and intact.
//!
//! MACs: src = the TX port's MAC; dst = `--dst-mac`, else the RX port's MAC when it is another port,
//! else broadcast. A forwarder in between rewrites dst (l2fwd writes 02:00:00:00:00:<port>): give the
//! RX port `-P` (promiscuous) then.
//!
//! `--pcap FILE` captures, on the ports of `--pcap-ports` (default all), the frames pktgen sends
//! (port 0, as built and handed to the TX queue) and receives (the RX port, as received): the
//! workers copy them into preallocated records of `oxpmd::pmd::capture` and a writer thread writes
//! the file; when the writer is behind, frames are not captured and counted (`pcap_dropped`).
//! `--rfc2544` searches, per frame size, the highest rate a device under test forwards within a
//! loss tolerance, then measures the latency at a fraction of it, on the ports opened once
//! (rfc2544.rs the search, trial.rs one trial, histogram.rs the latencies, rfc2544_report.rs the
//! table and JSON; docs/rfc2544.md).
//!
//! `--stats-json` prints one JSON object per `-T` period (default 1 s) and a final one on stdout,
//! and sends every text line to stderr. Set-up steps print their durations on stderr. See
//! docs/capture.md.

mod checker;
#[path = "../common/mod.rs"]
mod common;
mod frame;
mod histogram;
mod options;
mod ports;
mod rate;
mod report;
mod rfc2544;
mod rfc2544_report;
mod rfc2544_run;
mod rx;
mod trial;
mod tx;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use checker::{Checker, RxResult};
use common::{BoxError, finish_capture, install_signal_handlers, ports_json, say, start_capture};
use options::{Options, USAGE, parse_args};
use oxpmd::pmd::PortStats;
use oxpmd::pmd::capture::{Capture, json_escape};
use ports::Setup;
use report::report;
use rx::{rx_loop, say_missing};
use tx::{Traffic, TxResult, tx_loop};

fn main() -> ExitCode {
    common::init_logger(log::LevelFilter::Warn);
    common::cli_main("pktgen", USAGE, parse_args, run, 3)
}

pub fn pin(cores: &[usize], i: usize, what: &str) {
    if cores.is_empty() {
        return;
    }
    let c = cores[i % cores.len()];
    if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
        log::warn!("{what}: could not pin to core {c}");
    }
}

/// Live counters shared by the threads and the printer.
#[derive(Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub received: AtomicU64,
    pub tx_done: AtomicBool,
}

fn run(opts: &Options) -> Result<bool, BoxError> {
    install_signal_handlers()?;
    common::JSON_MODE.store(opts.stats_json, Ordering::Relaxed);
    let setup = ports::open(opts)?;
    if let Some(r) = &opts.rfc2544 {
        return rfc2544_run::run(opts, r, setup);
    }
    let Setup {
        mut ports,
        pool,
        cfg,
        rx_idx,
        speed_mbps,
        src,
        dst,
        mut txq,
        mut rxqs,
        mut link_events,
    } = setup;
    // Capture: TX frames of port 0, RX frames of the RX port, each if chosen.
    let rx_port_id = rx_idx.map(|i| ports[i].id());
    let chosen = |id: u16| opts.pcap_ports.as_ref().is_none_or(|l| l.contains(&id));
    let capture = start_capture(
        "pktgen",
        opts.pcap.as_deref(),
        opts.pcap_slots,
        oxpmd::pmd::max_frame_len(opts.mtu()),
    )?;
    let tx_tap = capture.as_ref().filter(|_| chosen(0)).map(Capture::tap);
    let rx_tap = capture
        .as_ref()
        .filter(|_| rx_port_id.is_some_and(chosen))
        .map(Capture::tap);
    say!(
        "pktgen: {} -> {}: sizes {:?}, rate {}, {} stream(s), dst {dst}, src {src}, line rate {speed_mbps} Mbit/s",
        opts.tx_port,
        opts.rx_port.as_deref().unwrap_or("(no receiver)"),
        opts.sizes,
        opts.rate.map_or("max".to_string(), |r| format!("{r} pps")),
        opts.streams
    );
    let t0 = Instant::now();
    let live = Live::default();
    let traffic = Traffic::of(opts);
    let (txr, rxr) = std::thread::scope(|s| -> Result<(TxResult, Option<RxResult>), BoxError> {
        let tx_pool = pool.clone();
        let (live_ref, traffic, txq) = (&live, &traffic, &mut txq);
        let tx = std::thread::Builder::new()
            .name("pktgen-tx".into())
            .spawn_scoped(s, move || {
                tx_loop(txq, tx_pool, opts, traffic, dst, src, t0, live_ref, tx_tap)
            })?;
        let rx = match rxqs.as_deref_mut() {
            Some(q) => {
                let checker = Checker::new(opts.streams, opts.expect_rx_dst, opts.expect_rx_src);
                Some(
                    std::thread::Builder::new()
                        .name("pktgen-rx".into())
                        .spawn_scoped(s, move || rx_loop(q, checker, opts, t0, live_ref, rx_tap))?,
                )
            }
            None => None,
        };
        let mut last = (Instant::now(), 0u64, 0u64);
        let mut prev: Vec<Option<PortStats>> = ports.iter().map(|_| None).collect();
        while !tx.is_finished() || rx.as_ref().is_some_and(|h| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            common::print_link_events(&mut link_events);
            if opts.period > 0 && last.0.elapsed().as_secs() >= opts.period {
                let (sent, recv) = (
                    live.sent.load(Ordering::Relaxed),
                    live.received.load(Ordering::Relaxed),
                );
                let dt = last.0.elapsed().as_secs_f64();
                if opts.stats_json {
                    let (cap, drop) = capture.as_ref().map_or((0, 0), Capture::counts);
                    println!(
                        "{{\"type\":\"stats\",\"time_s\":{:.3},\"interval_s\":{dt:.3},\"sent\":{sent},\
                         \"received\":{recv},\"pcap_captured\":{cap},\"pcap_dropped\":{drop},\"ports\":{}}}",
                        t0.elapsed().as_secs_f64(),
                        ports_json(&mut ports, &mut prev, dt)
                    );
                }
                say!(
                    "  {:>8.1} s: sent {sent} ({:.3} Mpps), received {recv} ({:.3} Mpps)",
                    t0.elapsed().as_secs_f64(),
                    (sent - last.1) as f64 / dt / 1e6,
                    (recv - last.2) as f64 / dt / 1e6
                );
                last = (Instant::now(), sent, recv);
            }
        }
        let txr = tx.join().map_err(|_| "the TX thread panicked")?;
        let rxr = match rx {
            Some(h) => {
                let checker = h.join().map_err(|_| "the RX thread panicked")?;
                say_missing(&checker, txr.sent);
                Some(checker.r)
            }
            None => None,
        };
        Ok((txr, rxr))
    })?;
    drop(txq);
    drop(rxqs);
    let cap_report = finish_capture("pktgen: ", capture, opts.pcap.as_deref())?;
    let final_ports = if opts.stats_json {
        let mut none: Vec<Option<PortStats>> = ports.iter().map(|_| None).collect();
        Some(ports_json(
            &mut ports,
            &mut none,
            (t0.elapsed().as_secs_f64()).max(1e-9),
        ))
    } else {
        None
    };
    let injected = ports::stop(&mut ports)?;
    drop(ports);
    drop(cfg);
    oxpmd::dma::flush_thread_caches();
    let (ok, mut kv) = report(opts, &txr, rxr.as_ref(), speed_mbps, &pool, &injected);
    if let Some(r) = cap_report {
        kv.push_str(&format!(
            " pcap_captured={} pcap_dropped={} pcap_written={}",
            r.captured, r.dropped, r.written
        ));
    }
    say!("pktgen-result: {kv}");
    if let Some(ports_json) = final_ports {
        let fields: Vec<String> = kv
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| match v.parse::<f64>() {
                Ok(n) if n.is_finite() => format!("{}:{v}", json_escape(k)),
                _ => format!("{}:{}", json_escape(k), json_escape(v)),
            })
            .collect();
        println!(
            "{{\"type\":\"final\",\"time_s\":{:.3},\"ok\":{ok},\"result\":{{{}}},\"ports\":{ports_json}}}",
            t0.elapsed().as_secs_f64(),
            fields.join(",")
        );
    }
    Ok(ok)
}
