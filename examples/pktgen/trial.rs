//! One RFC 2544 trial on the opened ports, and its verdict.
//!
//! A trial waits until the RX side has been quiet for [`QUIET`] (the device under test has
//! drained its queues), sends rate x trial seconds frames of one size on the rate's schedule
//! with the TX and RX loops of a normal run (fresh threads on the same queues and pool; behind
//! schedule, TX catches up for up to [`CATCH_UP`] times the trial length), drains for
//! `--drain`, and counts. Each trial sends its own stream ids, from sequence number 0: trial `k`
//! uses the ids from `(k mod slots) * --streams` on, where `slots` is how many such ranges fit
//! below 64512 (the UDP source port is 1024 + the id), so a frame of an earlier trial arriving
//! late is told apart by its id and counted as stale, never as this trial's.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::Live;
use crate::checker::Checker;
use crate::common::{BoxError, STOP};
use crate::histogram::LatencyHistogram;
use crate::options::{Options, Sizes};
use crate::rx::rx_loop;
use crate::tx::{Traffic, tx_loop};
use oxpmd::dma::Mempool;
use oxpmd::pmd::{Burst, MacAddr, RxQueue, TxQueue};

/// How long the RX side must receive nothing before a trial starts.
pub const QUIET: Duration = Duration::from_millis(100);
/// Longest wait for that quiet; the trial then starts anyway (and says so).
pub const QUIET_LIMIT: Duration = Duration::from_secs(5);
/// A trial fails when pktgen sent less than this fraction of the frames its rate asks for: it did
/// not offer the rate, so the trial says nothing about the device at that rate.
pub const OFFERED_FRACTION: f64 = 0.99;
/// A trial sends rate x seconds frames on the rate's schedule; a generator that fell behind (its
/// thread not scheduled for a while) catches up, for up to this factor of the trial length.
pub const CATCH_UP: f64 = 1.1;
/// Stream ids below this keep the UDP source port (1024 + id) within 16 bits.
const STREAM_IDS: u32 = 65536 - 1024;

/// What a trial counted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrialCounts {
    /// Frames per second offered.
    pub rate: f64,
    /// Frames the rate asks for over the trial: rate x trial seconds.
    pub expected: u64,
    pub sent: u64,
    /// This trial's test frames received (intact or not, duplicates included).
    pub received: u64,
    /// Sent, and received neither intact nor corrupted.
    pub lost: u64,
    pub duplicates: u64,
    pub corrupted: u64,
    pub reordered: u64,
    /// Intact test frames of an earlier trial received during this one (not counted).
    pub stale: u64,
    /// Frames received and discarded while waiting for the quiet before the trial.
    pub drained: u64,
    /// The RX side was quiet before the trial started (false: [`QUIET_LIMIT`] passed first).
    pub quiet: bool,
    /// TX took no frame for `--tx-stall` seconds.
    pub stalled: bool,
}

impl TrialCounts {
    /// Percent of the frames sent that were lost.
    pub fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost as f64 * 100.0 / self.sent as f64
        }
    }

    /// Whether the trial passed with at most `tolerance_pct` percent lost, and why (every reason
    /// it failed, or its loss when it passed).
    pub fn verdict(&self, tolerance_pct: f64) -> (bool, String) {
        let mut why = Vec::new();
        if self.stalled {
            why.push("TX stalled (--tx-stall)".to_string());
        }
        if self.sent == 0 {
            why.push("nothing sent".to_string());
        } else if (self.sent as f64) < self.expected as f64 * OFFERED_FRACTION {
            why.push(format!(
                "pktgen sent only {} of the {} frames the rate asks for (its own limit, not the device's)",
                self.sent, self.expected
            ));
        }
        if self.corrupted > 0 {
            why.push(format!("corrupted {}", self.corrupted));
        }
        if self.duplicates > 0 {
            why.push(format!("duplicated {}", self.duplicates));
        }
        let loss = self.loss_pct();
        if loss > tolerance_pct {
            why.push(format!(
                "lost {} ({loss:.3} %) > tolerance {tolerance_pct} %",
                self.lost
            ));
        }
        if why.is_empty() {
            (
                true,
                format!("lost {} ({loss:.3} %) <= tolerance {tolerance_pct} %", self.lost),
            )
        } else {
            (false, why.join("; "))
        }
    }
}

/// The queues and pool trials run on, opened once for all of them.
pub struct TrialPorts<'a> {
    pub txq: &'a mut TxQueue,
    pub rxqs: &'a mut [RxQueue],
    pub pool: &'a Mempool,
    pub opts: &'a Options,
    pub dst: MacAddr,
    pub src: MacAddr,
    /// The clock of the frames' TX timestamps.
    pub t0: Instant,
    /// Trials run so far.
    pub trials: u32,
}

/// Receives and discards on `qs` until nothing came for `quiet`, or `limit` passed; returns the
/// frames discarded and whether it was quiet.
fn wait_quiet(qs: &mut [RxQueue], quiet: Duration, limit: Duration) -> (u64, bool) {
    let start = Instant::now();
    let mut last = start;
    let mut drained = 0u64;
    let mut burst = Burst::new();
    loop {
        for q in qs.iter_mut() {
            let n = q.rx_burst(&mut burst);
            if n > 0 {
                drained += n as u64;
                last = Instant::now();
                burst.clear();
            }
        }
        if last.elapsed() >= quiet {
            return (drained, true);
        }
        if start.elapsed() >= limit || STOP.load(Ordering::Relaxed) {
            return (drained, false);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl TrialPorts<'_> {
    /// Runs one trial of `size`-byte frames at `rate` frames/s for `secs`; with `latency`, also
    /// returns every received frame's latency in a histogram.
    pub fn run(
        &mut self,
        size: usize,
        rate: f64,
        secs: f64,
        latency: bool,
    ) -> Result<(TrialCounts, Option<LatencyHistogram>), BoxError> {
        if STOP.load(Ordering::Relaxed) {
            return Err("stopped by a signal".into());
        }
        let opts = self.opts;
        let (drained, quiet) = wait_quiet(self.rxqs, QUIET, QUIET_LIMIT);
        let streams = u32::from(opts.streams);
        let stream_base = (self.trials % (STREAM_IDS / streams) * streams) as u16;
        self.trials += 1;
        let expected = ((rate * secs).round() as u64).max(1);
        let traffic = Traffic {
            sizes: Sizes::Fixed(size),
            rate: Some(rate),
            count: Some(expected),
            duration: Some(secs * CATCH_UP),
            stream_base,
        };
        let checker = Checker::new(opts.streams, opts.expect_rx_dst, opts.expect_rx_src)
            .for_trial(stream_base, latency);
        let live = Live::default();
        let (txq, rxqs, pool, t0) = (&mut *self.txq, &mut *self.rxqs, self.pool.clone(), self.t0);
        let (dst, src) = (self.dst, self.src);
        let (tx, checker) = std::thread::scope(|s| -> Result<_, BoxError> {
            let (live, traffic) = (&live, &traffic);
            let tx = std::thread::Builder::new()
                .name("pktgen-tx".into())
                .spawn_scoped(s, move || {
                    tx_loop(txq, pool, opts, traffic, dst, src, t0, live, None)
                })?;
            let rx = std::thread::Builder::new()
                .name("pktgen-rx".into())
                .spawn_scoped(s, move || rx_loop(rxqs, checker, opts, t0, live, None))?;
            let tx = tx.join().map_err(|_| "the TX thread panicked")?;
            let rx = rx.join().map_err(|_| "the RX thread panicked")?;
            Ok((tx, rx))
        })?;
        let r = checker.r;
        let counts = TrialCounts {
            rate,
            expected,
            sent: tx.sent,
            received: r.received,
            lost: tx.sent.saturating_sub(r.unique + r.corrupted),
            duplicates: r.duplicates,
            corrupted: r.corrupted,
            reordered: r.reordered,
            stale: r.stale,
            drained,
            quiet,
            stalled: tx.stalled,
        };
        Ok((counts, checker.latency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(sent: u64, lost: u64) -> TrialCounts {
        TrialCounts {
            rate: 1000.0,
            expected: 1000,
            sent,
            received: sent - lost,
            lost,
            quiet: true,
            ..TrialCounts::default()
        }
    }

    #[test]
    fn loss_within_the_tolerance_passes() {
        assert_eq!(
            counts(1000, 0).verdict(0.0),
            (true, "lost 0 (0.000 %) <= tolerance 0 %".into())
        );
        assert!(counts(1000, 10).verdict(1.0).0);
        assert!(!counts(1000, 11).verdict(1.0).0);
        let (pass, why) = counts(123, 23).verdict(0.0);
        assert!(!pass);
        assert_eq!(
            why,
            "pktgen sent only 123 of the 1000 frames the rate asks for (its own limit, not the device's); lost 23 (18.699 %) > tolerance 0 %"
        );
    }

    #[test]
    fn corruption_duplicates_stalls_and_an_unoffered_rate_fail() {
        let bad = [
            (
                TrialCounts {
                    corrupted: 1,
                    ..counts(1000, 0)
                },
                "corrupted 1",
            ),
            (
                TrialCounts {
                    duplicates: 2,
                    ..counts(1000, 0)
                },
                "duplicated 2",
            ),
            (
                TrialCounts {
                    stalled: true,
                    ..counts(1000, 0)
                },
                "TX stalled",
            ),
            (counts(989, 0), "pktgen sent only 989 of the 1000"),
            (counts(0, 0), "nothing sent"),
        ];
        for (c, want) in bad {
            let (pass, why) = c.verdict(5.0);
            assert!(!pass && why.contains(want), "{c:?}: {why}");
        }
        // 99 % of the frames asked for is offering the rate; stale frames of an earlier trial
        // and reordering do not fail a trial.
        assert!(
            TrialCounts {
                stale: 7,
                reordered: 3,
                ..counts(990, 0)
            }
            .verdict(0.0)
            .0
        );
    }

    #[test]
    fn the_loss_of_nothing_sent_is_zero() {
        assert_eq!(counts(0, 0).loss_pct(), 0.0);
        assert_eq!(counts(200, 50).loss_pct(), 25.0);
    }
}
