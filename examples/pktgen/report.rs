//! The summary: rates, loss and latency, and the `pktgen-result` line.

use crate::checker::RxResult;
use crate::common::say;
use crate::options::Options;
use crate::tx::TxResult;
use oxpmd::dma::Mempool;
use oxpmd::pmd::vport::fault::FaultCounts;

pub fn rates(frames: u64, bytes: u64, ns: u64, speed_mbps: u64) -> (f64, f64, f64) {
    let secs = (ns as f64 / 1e9).max(1e-9);
    let mpps = frames as f64 / secs / 1e6;
    let gbps = bytes as f64 * 8.0 / secs / 1e9;
    // On the wire each frame also takes 20 bytes: preamble and start delimiter (8), gap (12).
    let wire = (bytes + 20 * frames) as f64 * 8.0 / secs / 1e6;
    (mpps, gbps, wire / speed_mbps as f64 * 100.0)
}

/// Prints the summary; returns whether the run passed and the `pktgen-result` key=value pairs.
pub fn report(
    opts: &Options,
    tx: &TxResult,
    rx: Option<&RxResult>,
    speed_mbps: u64,
    pool: &Mempool,
    injected: &FaultCounts,
) -> (bool, String) {
    let (mpps, gbps, pct) = rates(tx.sent, tx.bytes, tx.end_ns - tx.start_ns, speed_mbps);
    say!(
        "pktgen: sent {} frames ({} bytes) in {:.3} s: {mpps:.4} Mpps, {gbps:.4} Gbit/s, {pct:.2}% of {speed_mbps} Mbit/s line rate",
        tx.sent,
        tx.bytes,
        (tx.end_ns - tx.start_ns) as f64 / 1e9
    );
    let mut ok = true;
    let mut kv = format!(
        "sent={} tx_mpps={mpps:.6} tx_gbps={gbps:.6} tx_line_pct={pct:.3} tx_stalled={}",
        tx.sent, tx.stalled
    );
    if tx.stalled {
        say!(
            "pktgen: FAILED: TX stalled (no frame taken for {} s; --tx-stall)",
            opts.tx_stall
        );
        ok = false;
    }
    if let Some(r) = rx {
        // Lost: sent, and neither received intact nor received corrupted (a corrupted frame
        // stands for the one sent frame it was; its sequence number cannot be trusted).
        let lost = tx.sent.saturating_sub(r.unique + r.corrupted);
        let span = r.last_ns.saturating_sub(r.first_ns);
        // The receive rate over the span from the first to the last frame received.
        let (rmpps, rgbps, rpct) = rates(r.received.saturating_sub(1), r.bytes, span, speed_mbps);
        let valid = r.received - r.corrupted;
        let (lmin, lavg, lmax) = if valid > 0 && r.lat_min_ns != u64::MAX {
            (
                r.lat_min_ns as f64 / 1e3,
                r.lat_sum_ns as f64 / valid as f64 / 1e3,
                r.lat_max_ns as f64 / 1e3,
            )
        } else {
            (0.0, 0.0, 0.0)
        };
        say!(
            "pktgen: received {} frames ({} unique): {rmpps:.4} Mpps, {rgbps:.4} Gbit/s, {rpct:.2}% of line rate",
            r.received,
            r.unique
        );
        say!(
            "pktgen: lost {lost}, duplicates {}, reordered {}, corrupted {}, other frames {}; latency min {lmin:.1} us, avg {lavg:.1} us, max {lmax:.1} us",
            r.duplicates,
            r.reordered,
            r.corrupted,
            r.foreign
        );
        kv.push_str(&format!(
            " received={} unique={} lost={lost} dup={} reordered={} corrupt={} other={} rx_mpps={rmpps:.6} rx_gbps={rgbps:.6} rx_line_pct={rpct:.3} lat_min_us={lmin:.1} lat_avg_us={lavg:.1} lat_max_us={lmax:.1}",
            r.received, r.unique, r.duplicates, r.reordered, r.corrupted, r.foreign
        ));
        if opts.expect_all && (lost > 0 || r.duplicates > 0 || r.corrupted > 0) {
            say!("pktgen: --expect-all: FAILED (loss, duplicates or corruption)");
            ok = false;
        }
        let i = injected;
        if opts.expect_injected {
            let pairs = [
                ("lost", lost, "dropped + rate_dropped", i.dropped + i.rate_dropped),
                ("duplicates", r.duplicates, "duplicated", i.duplicated),
                ("reordered", r.reordered, "reordered", i.reordered),
                ("corrupted", r.corrupted, "corrupted", i.corrupted),
            ];
            let wrong: Vec<String> = pairs
                .iter()
                .filter(|(_, found, _, inj)| found != inj)
                .map(|(what, found, name, inj)| format!("{what} {found} != injected {name} {inj}"))
                .collect();
            if wrong.is_empty() {
                say!(
                    "pktgen: --expect-injected: found exactly what was injected (lost {lost}, duplicates {}, \
                     reordered {}, corrupted {})",
                    r.duplicates,
                    r.reordered,
                    r.corrupted
                );
            } else {
                say!("pktgen: --expect-injected: FAILED: {}", wrong.join(", "));
                ok = false;
            }
        }
    }
    let i = injected;
    kv.push_str(&format!(
        " fault_seen={} fault_dropped={} fault_rate_dropped={} fault_corrupted={} fault_duplicated={} \
         fault_reordered={} fault_dup_no_buffer={}",
        i.seen, i.dropped, i.rate_dropped, i.corrupted, i.duplicated, i.reordered, i.dup_no_buffer
    ));
    let (free, cap) = (pool.available(), pool.capacity());
    kv.push_str(&format!(" pool_free={free} pool_capacity={cap}"));
    if free != cap {
        say!(
            "pktgen: buffer check: {free}/{cap} buffers back: LEAK of {}",
            cap - free
        );
        ok = false;
    }
    (ok, kv)
}
