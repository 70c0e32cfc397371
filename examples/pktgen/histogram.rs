//! A latency histogram of fixed memory: log-linear buckets over nanoseconds (the scheme of HDR
//! histograms), and its percentiles.
//!
//! Values below 2^[`SUB_BITS`] ns (256 ns) have a bucket each; above, every power-of-two range
//! [2^k, 2^(k+1)) is split into 2^(SUB_BITS-1) = 128 equal buckets, so a bucket is at most 1/128
//! of its lower bound wide (better than two significant digits), from 1 us up to 2^40 ns (about
//! 18 minutes): 4352 counters, 34 KiB, whatever the number of samples. Larger values land in the
//! last bucket; the minimum and maximum are kept exactly.

/// Bits of the sub-bucket index: 2^SUB_BITS exact buckets, then 2^(SUB_BITS-1) per octave.
const SUB_BITS: u32 = 8;
const SUB: u64 = 1 << SUB_BITS;
const HALF: u64 = SUB / 2;
/// Values from 2^MAX_BITS ns on share the last bucket.
const MAX_BITS: u32 = 40;
/// Number of buckets: the exact ones, then HALF for each octave from SUB_BITS to MAX_BITS - 1.
const BUCKETS: usize = (SUB + (MAX_BITS - SUB_BITS) as u64 * HALF) as usize;

/// The bucket of value `v` (ns).
fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let v = v.min((1 << MAX_BITS) - 1);
    let msb = 63 - v.leading_zeros();
    // v >> shift keeps the SUB_BITS leading bits: in [HALF, SUB).
    let shift = msb - (SUB_BITS - 1);
    let sub = (v >> shift) - HALF;
    (SUB + u64::from(shift - 1) * HALF + sub) as usize
}

/// The smallest and largest value (ns) of bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, i);
    }
    let j = i - SUB;
    let shift = j / HALF + 1;
    let lo = (HALF + j % HALF) << shift;
    (lo, lo + (1 << shift) - 1)
}

/// Latencies in nanoseconds, counted per log-linear bucket.
pub struct LatencyHistogram {
    counts: Box<[u64]>,
    total: u64,
    min: u64,
    max: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    pub fn record(&mut self, ns: u64) {
        self.counts[index(ns)] += 1;
        self.total += 1;
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    /// Number of values recorded.
    pub fn samples(&self) -> u64 {
        self.total
    }

    /// Smallest value recorded (None when empty).
    pub fn min(&self) -> Option<u64> {
        (self.total > 0).then_some(self.min)
    }

    /// Largest value recorded (None when empty).
    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// The value below or at which `pct` percent of the values lie: the largest value of the
    /// bucket holding the value of rank ceil(pct / 100 * samples), kept within [min, max], and
    /// the maximum itself in the maximum's bucket (so percentiles are ordered and p100 is the
    /// maximum); p0 is the minimum. None when empty.
    pub fn percentile(&self, pct: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        if pct <= 0.0 {
            return Some(self.min);
        }
        let rank = ((pct.min(100.0) * self.total as f64 / 100.0).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                // The maximum's bucket: the maximum itself (exact, even beyond the range).
                if i == index(self.max) {
                    return Some(self.max);
                }
                return Some(bounds(i).1.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// The non-empty buckets in increasing order: (largest value of the bucket in ns, count).
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &c)| (bounds(i).1, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_range_and_each_holds_its_values() {
        assert_eq!(bounds(0), (0, 0));
        assert_eq!(bounds(BUCKETS - 1).1, (1 << MAX_BITS) - 1);
        for i in 1..BUCKETS {
            assert_eq!(
                bounds(i).0,
                bounds(i - 1).1 + 1,
                "bucket {i} follows bucket {}",
                i - 1
            );
            let (lo, hi) = bounds(i);
            assert!(
                (hi - lo) as f64 <= lo as f64 / 128.0,
                "bucket {i} [{lo}, {hi}] too wide"
            );
        }
        for k in 0..MAX_BITS {
            for v in [
                (1u64 << k).saturating_sub(1),
                1 << k,
                (1 << k) + 1,
                3 << k.saturating_sub(1),
            ] {
                let (lo, hi) = bounds(index(v));
                assert!(lo <= v && v <= hi, "{v} in bucket [{lo}, {hi}]");
            }
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn empty_has_no_percentiles() {
        let h = LatencyHistogram::new();
        assert_eq!((h.samples(), h.min(), h.max()), (0, None, None));
        assert_eq!(h.percentile(50.0), None);
        assert_eq!(h.buckets().count(), 0);
    }

    #[test]
    fn a_single_value_is_every_percentile() {
        let mut h = LatencyHistogram::new();
        for _ in 0..1000 {
            h.record(40_123);
        }
        for p in [0.0, 1.0, 50.0, 99.9, 100.0] {
            assert_eq!(h.percentile(p), Some(40_123), "p{p}");
        }
        assert_eq!(h.buckets().collect::<Vec<_>>().len(), 1);
        assert_eq!(h.buckets().next().unwrap().1, 1000);
    }

    #[test]
    fn uniform_percentiles_are_within_a_bucket_of_the_exact_ones() {
        let mut h = LatencyHistogram::new();
        // 1 us to 100 ms in steps of 1 us.
        for us in 1..=100_000u64 {
            h.record(us * 1000);
        }
        assert_eq!(h.samples(), 100_000);
        for p in [10.0, 50.0, 90.0, 99.0, 99.9] {
            let exact = p / 100.0 * 100_000.0 * 1000.0;
            let got = h.percentile(p).unwrap() as f64;
            assert!(
                got >= exact && got <= exact * (1.0 + 1.0 / 128.0),
                "p{p}: {got} vs {exact}"
            );
        }
        assert_eq!(h.percentile(0.0), Some(1000));
        assert_eq!(h.percentile(100.0), Some(100_000_000));
        assert_eq!(h.buckets().map(|b| b.1).sum::<u64>(), 100_000);
    }

    #[test]
    fn two_clusters_split_at_their_weights() {
        let mut h = LatencyHistogram::new();
        for i in 0..900 {
            h.record(10_000 + i % 10);
        }
        for i in 0..100 {
            h.record(1_000_000 + i);
        }
        let near = |v: u64, want: u64| (v as f64 - want as f64).abs() <= want as f64 / 100.0;
        // Rank 900 is the last of the first cluster, rank 901 the first of the second.
        assert!(near(h.percentile(50.0).unwrap(), 10_000));
        assert!(near(h.percentile(90.0).unwrap(), 10_000));
        assert!(near(h.percentile(90.1).unwrap(), 1_000_000));
        assert!(near(h.percentile(99.0).unwrap(), 1_000_000));
        assert_eq!(h.percentile(100.0), Some(1_000_099));
        assert_eq!((h.min(), h.max()), (Some(10_000), Some(1_000_099)));
        let b: Vec<(u64, u64)> = h.buckets().collect();
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0), "increasing upper bounds");
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 1000);
    }

    #[test]
    fn values_beyond_the_range_keep_an_exact_maximum() {
        let mut h = LatencyHistogram::new();
        h.record(5);
        h.record(1 << 50);
        assert_eq!(h.percentile(100.0), Some(1 << 50));
        assert_eq!(h.percentile(50.0), Some(5));
        assert_eq!(h.buckets().last().unwrap().0, (1 << MAX_BITS) - 1);
    }
}
