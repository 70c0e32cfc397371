//! `--rfc2544`: per frame size, the throughput search and the latency trial on the ports opened
//! once, then the results (docs/rfc2544.md).

use std::time::Instant;

use crate::common::{BoxError, say};
use crate::options::{Options, Rfc2544Options};
use crate::ports::{self, Setup};
use crate::rfc2544::throughput_search;
use crate::rfc2544_report::{
    LatencyRecord, SizeResult, TrialRecord, json_document, key_values, line_rate_pps, table, trial_line,
};
use crate::trial::TrialPorts;

/// Runs every size's search and latency trial; prints and writes the results. Returns whether
/// pktgen found every buffer back.
pub fn run(opts: &Options, r: &Rfc2544Options, setup: Setup) -> Result<bool, BoxError> {
    let Setup {
        mut ports,
        pool,
        cfg,
        speed_mbps,
        src,
        dst,
        mut txq,
        rxqs,
        ..
    } = setup;
    let mut rxqs = rxqs.ok_or("--rfc2544 needs --rx-port")?;
    let rx_port = opts.rx_port.as_deref().unwrap_or_default();
    say!(
        "pktgen: RFC 2544 {} -> {rx_port}: sizes {:?}, trials of {} s (+ drain {} s), loss tolerance {} %, \
         resolution {} %, latency at {} of the throughput, line rate {speed_mbps} Mbit/s, dst {dst}, src {src}",
        opts.tx_port,
        r.sizes,
        r.trial_secs,
        opts.drain,
        r.loss_tolerance_pct,
        r.resolution_pct,
        r.latency_fraction
    );
    let mut trials = TrialPorts {
        txq: &mut txq,
        rxqs: &mut rxqs,
        pool: &pool,
        opts,
        dst,
        src,
        t0: Instant::now(),
        trials: 0,
    };
    let mut results = Vec::new();
    for &size in &r.sizes {
        let line_rate = line_rate_pps(speed_mbps, size);
        let max_rate = r.max_rate.map_or(line_rate, |m| m.min(line_rate));
        let search = throughput_search(max_rate, r.resolution_pct, |rate| {
            let (counts, _) = trials.run(size, rate, r.trial_secs, false)?;
            let (pass, why) = counts.verdict(r.loss_tolerance_pct);
            eprintln!("{}", trial_line(size, "trial", &counts, pass, &why));
            Ok::<_, BoxError>((pass, TrialRecord { counts, why }))
        })?;
        let latency = if search.throughput > 0.0 {
            let rate = search.throughput * r.latency_fraction;
            let (counts, histogram) = trials.run(size, rate, r.trial_secs, true)?;
            let histogram = histogram.ok_or("the latency trial kept no histogram")?;
            let (pass, why) = counts.verdict(r.loss_tolerance_pct);
            let note = format!("{why}; {} latencies", histogram.samples());
            eprintln!("{}", trial_line(size, "latency trial", &counts, pass, &note));
            if histogram.samples() == 0 {
                eprintln!("rfc2544: {size} B: no latency: no frame of the latency trial came back");
                None
            } else {
                Some(LatencyRecord { counts, histogram })
            }
        } else {
            eprintln!("rfc2544: {size} B: no latency trial: the throughput is 0 (every trial failed)");
            None
        };
        results.push(SizeResult {
            frame_size: size,
            line_rate_pps: line_rate,
            max_rate_pps: max_rate,
            search,
            latency,
        });
    }
    drop(txq);
    drop(rxqs);
    ports::stop(&mut ports)?;
    drop(ports);
    drop(cfg);
    oxpmd::dma::flush_thread_caches();
    say!(
        "pktgen: RFC 2544 results ({} -> {rx_port}, frames with FCS, line rate {speed_mbps} Mbit/s):\n{}",
        opts.tx_port,
        table(&results)
    );
    if let Some(path) = &r.json {
        let doc = json_document(&opts.tx_port, rx_port, speed_mbps, r, &results);
        std::fs::write(path, format!("{doc}\n")).map_err(|e| format!("--json {}: {e}", path.display()))?;
        say!("pktgen: RFC 2544 results written to {}", path.display());
    }
    let (free, cap) = (pool.available(), pool.capacity());
    let ok = free == cap;
    if !ok {
        say!(
            "pktgen: buffer check: {free}/{cap} buffers back: LEAK of {}",
            cap - free
        );
    }
    say!("pktgen-rfc2544: {}", key_values(&results));
    Ok(ok)
}
