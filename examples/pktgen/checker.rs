//! The receive-side check: loss, duplicates, reordering, corruption and latency per stream.

use crate::frame::parse_frame;
use crate::histogram::LatencyHistogram;
use oxpmd::dma::{OffloadFlags, Packet};
use oxpmd::pmd::MacAddr;

/// Longest sequence gap tracked exactly for duplicates and reordering.
pub const WINDOW: u64 = 1 << 16;

#[derive(Default)]
pub struct StreamRx {
    max: Option<u64>,
    seen: Vec<u64>,
}

/// Receive-side results.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxResult {
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub corrupted: u64,
    pub foreign: u64,
    /// Intact test frames of other stream ids than this run's (an earlier trial's, arriving
    /// late): not counted as received. Only in a trial ([`Checker::for_trial`]).
    pub stale: u64,
    pub bytes: u64,
    pub lat_min_ns: u64,
    pub lat_max_ns: u64,
    pub lat_sum_ns: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

#[derive(Default)]
pub struct Checker {
    pub streams: Vec<StreamRx>,
    pub r: RxResult,
    pub dst: Option<MacAddr>,
    pub src: Option<MacAddr>,
    /// A chained frame, copied out whole to be checked.
    jumbo: Vec<u8>,
    /// In a trial: the first stream id of this trial (other ids are stale, not corrupted).
    stream_base: Option<u16>,
    /// Every intact frame's latency, when asked for.
    pub latency: Option<LatencyHistogram>,
}

impl Checker {
    pub fn new(streams: u16, dst: Option<MacAddr>, src: Option<MacAddr>) -> Self {
        Checker {
            dst,
            src,
            jumbo: Vec::with_capacity(crate::frame::MAX_SIZE),
            streams: (0..streams)
                .map(|_| StreamRx {
                    max: None,
                    seen: vec![0; (WINDOW / 64) as usize],
                })
                .collect(),
            r: RxResult {
                lat_min_ns: u64::MAX,
                ..RxResult::default()
            },
            stream_base: None,
            latency: None,
        }
    }

    /// The checker of one trial, whose frames carry the stream ids from `stream_base` on; with
    /// `latency`, it also counts every intact frame's latency in a histogram.
    pub fn for_trial(mut self, stream_base: u16, latency: bool) -> Self {
        self.stream_base = Some(stream_base);
        self.latency = latency.then(LatencyHistogram::new);
        self
    }

    /// Up to `limit` (stream, seq) pairs sent but not seen, given `sent` frames spread
    /// round-robin over the streams (only within the tracked window of each stream).
    pub fn missing(&self, sent: u64, limit: usize) -> Vec<(u16, u64)> {
        let n = self.streams.len() as u64;
        let mut out = Vec::new();
        for (s, st) in self.streams.iter().enumerate() {
            let count = sent / n + u64::from((s as u64) < sent % n);
            let lo = st.max.map_or(0, |m| m.saturating_sub(WINDOW - 1));
            for seq in lo..count {
                let seen = st.max.is_some_and(|m| seq <= m)
                    && st.seen[(seq % WINDOW / 64) as usize] & (1u64 << (seq % 64)) != 0;
                if !seen {
                    out.push((s as u16, seq));
                    if out.len() >= limit {
                        return out;
                    }
                }
            }
        }
        out
    }

    pub fn check(&mut self, pkt: &Packet, now_ns: u64) {
        let flags = pkt.flags();
        let hw_bad =
            flags.contains(OffloadFlags::RX_IP_CKSUM_BAD) || flags.contains(OffloadFlags::RX_L4_CKSUM_BAD);
        // A chained frame is read whole from a copy (its header may span segments).
        let whole;
        let d: &[u8] = if pkt.is_contiguous() {
            pkt.data()
        } else {
            self.jumbo.resize(pkt.len(), 0);
            if pkt.copy_out(0, &mut self.jumbo).is_err() {
                self.r.foreign += 1;
                return;
            }
            whole = &self.jumbo[..];
            whole
        };
        let f = match parse_frame(d) {
            None => {
                self.r.foreign += 1;
                return;
            }
            Some(Err(_)) => {
                self.r.received += 1;
                self.r.corrupted += 1;
                return;
            }
            Some(Ok(f)) => f,
        };
        let stream = match self.stream_base {
            Some(base) => {
                let s = f.stream.wrapping_sub(base);
                if usize::from(s) >= self.streams.len() {
                    self.r.stale += 1;
                    return;
                }
                s
            }
            None => f.stream,
        };
        self.r.received += 1;
        self.r.bytes += pkt.len() as u64 + 4;
        if self.r.first_ns == 0 {
            self.r.first_ns = now_ns;
        }
        self.r.last_ns = now_ns;
        let mac_bad = self.dst.is_some_and(|m| d[0..6] != m.0) || self.src.is_some_and(|m| d[6..12] != m.0);
        if hw_bad || mac_bad {
            self.r.corrupted += 1;
            return;
        }
        let Some(st) = self.streams.get_mut(usize::from(stream)) else {
            self.r.corrupted += 1;
            return;
        };
        let lat = now_ns.saturating_sub(f.ts);
        self.r.lat_min_ns = self.r.lat_min_ns.min(lat);
        self.r.lat_max_ns = self.r.lat_max_ns.max(lat);
        self.r.lat_sum_ns += lat;
        if let Some(h) = self.latency.as_mut() {
            h.record(lat);
        }
        let seq = u64::from(f.seq);
        let bit = |s: u64| ((s % WINDOW / 64) as usize, 1u64 << (s % 64));
        match st.max {
            Some(max) if seq <= max => {
                if max - seq >= WINDOW {
                    // Too old to tell: count as reordered.
                    self.r.reordered += 1;
                    self.r.unique += 1;
                    return;
                }
                let (w, b) = bit(seq);
                if st.seen[w] & b != 0 {
                    self.r.duplicates += 1;
                } else {
                    st.seen[w] |= b;
                    self.r.reordered += 1;
                    self.r.unique += 1;
                }
            }
            _ => {
                // Clear the bits of the sequence numbers skipped over (they are now in the window).
                let from = st.max.map_or(0, |m| m + 1);
                if seq - from >= WINDOW {
                    st.seen.iter_mut().for_each(|w| *w = 0);
                } else {
                    for s in from..seq {
                        let (w, b) = bit(s);
                        st.seen[w] &= !b;
                    }
                }
                let (w, b) = bit(seq);
                st.seen[w] |= b;
                st.max = Some(seq);
                self.r.unique += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::build_frame;
    use oxpmd::pmd::vport::virtual_pool;

    #[test]
    fn a_trial_counts_other_stream_ids_as_stale_and_keeps_its_latencies() {
        let pool = virtual_pool("checker-test", 64, 0).unwrap();
        let (dst, src) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let frame = |stream: u16, seq: u32, ts: u64| {
            let mut p = pool.alloc().unwrap();
            build_frame(p.append(60).unwrap(), dst, src, stream, seq, ts);
            p
        };
        // Trial with 2 streams from id 10: ids 10 and 11 are its own, 8 (an earlier trial's) is stale.
        let mut c = Checker::new(2, None, None).for_trial(10, true);
        c.check(&frame(10, 0, 1_000), 5_000);
        c.check(&frame(11, 0, 1_000), 9_000);
        c.check(&frame(8, 0, 1_000), 9_000);
        c.check(&frame(12, 0, 1_000), 9_000);
        assert_eq!((c.r.received, c.r.unique, c.r.stale, c.r.corrupted), (2, 2, 2, 0));
        let h = c.latency.as_ref().unwrap();
        assert_eq!((h.samples(), h.min(), h.max()), (2, Some(4_000), Some(8_000)));
        // Outside a trial, an unknown stream id is a corruption, as before.
        let mut c = Checker::new(2, None, None);
        c.check(&frame(8, 0, 1_000), 9_000);
        assert_eq!((c.r.received, c.r.corrupted, c.r.stale), (1, 1, 0));
        assert!(c.latency.is_none());
    }
}
