//! The RX thread: receives and checks.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::checker::Checker;
use crate::common::say;
use crate::options::Options;
use crate::{Live, pin};
use oxpmd::pmd::capture::{CaptureTap, now_ns as wall_ns};
use oxpmd::pmd::{Burst, RxQueue};

/// Receives on `qs` and checks with `checker` until the TX side is done and the drain time
/// has passed (or every frame sent arrived); returns the checker.
pub fn rx_loop(
    qs: &mut [RxQueue],
    mut checker: Checker,
    opts: &Options,
    t0: Instant,
    live: &Live,
    mut tap: Option<CaptureTap>,
) -> Checker {
    pin(&opts.cores, 1, "pktgen rx");
    let mut burst = Burst::new();
    let mut tx_done_at: Option<Instant> = None;
    loop {
        let mut got = 0;
        for q in qs.iter_mut() {
            let n = q.rx_burst(&mut burst);
            if n > 0 {
                got += n;
                let now_ns = t0.elapsed().as_nanos() as u64;
                if let Some(t) = tap.as_mut() {
                    let ts = wall_ns();
                    for p in burst.iter() {
                        t.capture_packet(p, ts);
                    }
                    t.publish();
                }
                for p in burst.drain() {
                    checker.check(&p, now_ns);
                }
            }
        }
        if got > 0 {
            live.received.store(checker.r.received, Ordering::Relaxed);
        }
        if live.tx_done.load(Ordering::Acquire) {
            let at = *tx_done_at.get_or_insert_with(Instant::now);
            let all = checker.r.unique >= live.sent.load(Ordering::Relaxed);
            // Stop after the drain time, or at once when everything arrived and a short grace
            // period for duplicates has passed.
            let waited = at.elapsed().as_secs_f64();
            if waited >= opts.drain || (all && waited >= opts.drain.min(0.1)) {
                break;
            }
        }
        if got == 0 {
            std::hint::spin_loop();
        }
    }
    drop(tap);
    oxpmd::dma::flush_thread_caches();
    checker
}

/// Says the first frames of the `sent` that `checker` did not see.
pub fn say_missing(checker: &Checker, sent: u64) {
    let missing = checker.missing(sent, 10);
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|(s, q)| format!("{s}:{q}")).collect();
        say!("pktgen: first missing frames (stream:seq): {}", list.join(" "));
    }
}
