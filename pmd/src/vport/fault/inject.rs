//! The per-queue fault injector of a `fault:` port: one seeded pseudo-random draw per packet picks
//! its fault; counts what it did.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oxpmd_dma::{Mempool, Packet};

use super::spec::{FaultSpec, PROBABILITY_SCALE};
use crate::burst::Burst;

/// Bytes at the front of a frame that corruption leaves alone: the Ethernet header (a flipped
/// destination MAC would turn the corruption into a loss at the receiving NIC's filter).
pub const CORRUPT_SKIP: usize = 14;

/// What one direction of a `fault:` port did, summed over its queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Packets that went through the injector.
    pub seen: u64,
    /// Dropped (the `drop` probability).
    pub dropped: u64,
    /// Delivered with one bit flipped.
    pub corrupted: u64,
    /// Delivered twice (the copy is counted here, the original is not counted elsewhere).
    pub duplicated: u64,
    /// Delivered after a later intact packet of the same queue.
    pub reordered: u64,
    /// Dropped because they exceeded `rate`.
    pub rate_dropped: u64,
    /// Drawn for duplication but delivered once: the mempool had no buffer for the copy.
    pub dup_no_buffer: u64,
}

impl FaultCounts {
    fn fields(&self) -> [u64; 7] {
        [
            self.seen,
            self.dropped,
            self.corrupted,
            self.duplicated,
            self.reordered,
            self.rate_dropped,
            self.dup_no_buffer,
        ]
    }
}

/// The shared counters of one direction (every queue of it adds to them once per burst).
#[derive(Debug, Default)]
pub(super) struct SharedCounts([AtomicU64; 7]);

impl SharedCounts {
    fn add(&self, d: &FaultCounts) {
        for (a, v) in self.0.iter().zip(d.fields()) {
            if v != 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        }
    }

    /// A snapshot.
    pub(super) fn get(&self) -> FaultCounts {
        let v: Vec<u64> = self.0.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        FaultCounts {
            seen: v[0],
            dropped: v[1],
            corrupted: v[2],
            duplicated: v[3],
            reordered: v[4],
            rate_dropped: v[5],
            dup_no_buffer: v[6],
        }
    }
}

/// SplitMix64: small, fast, and every seed gives a full-period stream; enough for choosing faults.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0; the modulo bias is below 2^-32 for the n used here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A token bucket of `rate` packets per second holding at most 10 ms worth (at least 32).
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u64, now: Instant) -> TokenBucket {
        let capacity = (rate as f64 / 100.0).max(32.0);
        TokenBucket {
            rate: rate as f64,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The fault drawn for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Pass,
    Drop,
    Corrupt,
    Dup,
    Reorder,
}

/// The fault injector of one queue.
pub(super) struct Injector {
    rng: SplitMix64,
    /// Cumulative thresholds in parts per PROBABILITY_SCALE: drop, +corrupt, +dup, +reorder.
    thresholds: [u64; 4],
    bucket: Option<TokenBucket>,
    rate: Option<u64>,
    /// A packet held back for reordering, and since when.
    held: Option<(Packet, Instant)>,
    delta: FaultCounts,
    shared: Arc<SharedCounts>,
}

impl Injector {
    /// The injector of queue `queue` of direction `dir_tag` (0 RX, 1 TX): its stream is derived
    /// from the seed, the direction and the queue, so each is reproducible on its own.
    pub(super) fn new(spec: &FaultSpec, dir_tag: u64, queue: u16, shared: Arc<SharedCounts>) -> Injector {
        let mut mix =
            SplitMix64(spec.seed ^ (dir_tag << 32 | u64::from(queue)).wrapping_mul(0xD605_BBB5_8C8A_BBDB));
        let state = mix.next();
        let mut acc = 0u64;
        let mut thresholds = [0u64; 4];
        for (t, p) in thresholds
            .iter_mut()
            .zip([spec.drop, spec.corrupt, spec.dup, spec.reorder])
        {
            acc += u64::from(p.parts());
            *t = acc;
        }
        Injector {
            rng: SplitMix64(state),
            thresholds,
            bucket: None,
            rate: spec.rate,
            held: None,
            delta: FaultCounts::default(),
            shared,
        }
    }

    fn draw(&mut self) -> Fault {
        let r = self.rng.below(u64::from(PROBABILITY_SCALE));
        match self.thresholds.iter().position(|&t| r < t) {
            Some(0) => Fault::Drop,
            Some(1) => Fault::Corrupt,
            Some(2) => Fault::Dup,
            Some(3) => Fault::Reorder,
            _ => Fault::Pass,
        }
    }

    /// Whether the injector needs the time (a rate limit, or a held packet).
    pub(super) fn needs_clock(&self) -> bool {
        self.rate.is_some() || self.held.is_some()
    }

    /// Runs one packet through the injector, appending what it delivers to `out` (which must have
    /// room for 3 packets: the packet, its copy, a released held packet).
    pub(super) fn apply(&mut self, mut p: Packet, out: &mut Burst, pool: &Mempool, now: Instant) {
        debug_assert!(out.room() >= 3, "the fault port leaves room for three packets");
        self.delta.seen += 1;
        // The draw comes first for every packet, so the faults of packet N do not depend on
        // timing (the rate limit) or on earlier faults.
        let fault = self.draw();
        if fault == Fault::Drop {
            self.delta.dropped += 1;
            return;
        }
        if let Some(rate) = self.rate {
            let bucket = self.bucket.get_or_insert_with(|| TokenBucket::new(rate, now));
            if !bucket.take(now) {
                self.delta.rate_dropped += 1;
                return;
            }
        }
        match fault {
            Fault::Corrupt if !p.is_empty() => {
                let len = p.len() as u64;
                let from = if len > CORRUPT_SKIP as u64 {
                    CORRUPT_SKIP as u64
                } else {
                    0
                };
                let at = (from + self.rng.below(len - from)) as usize;
                let bit = 1u8 << self.rng.below(8);
                let mut byte = [0u8];
                // `at < len`: inside the packet, whichever segment holds it.
                if p.copy_out(at, &mut byte).is_ok() {
                    let _ = p.copy_in(at, &[byte[0] ^ bit]);
                }
                self.delta.corrupted += 1;
                // A corrupted packet does not release a held one: the receiver could not tell
                // that the held packet came after it.
                put(out, p);
            }
            Fault::Dup => {
                let copy = copy_of(&p, pool);
                put(out, p);
                match copy {
                    Some(c) => {
                        put(out, c);
                        self.delta.duplicated += 1;
                    }
                    None => self.delta.dup_no_buffer += 1,
                }
                self.release_after(out);
            }
            Fault::Reorder if self.held.is_none() => self.held = Some((p, now)),
            // Reorder while one packet is already held, Pass, or an empty packet to corrupt.
            _ => {
                put(out, p);
                self.release_after(out);
            }
        }
    }

    /// After an intact packet: the held packet follows it, reordered.
    fn release_after(&mut self, out: &mut Burst) {
        if let Some((h, _)) = self.held.take() {
            put(out, h);
            self.delta.reordered += 1;
        }
    }

    /// Delivers a held packet in order (no later packet came): not counted as reordered.
    pub(super) fn release_in_order(&mut self, out: &mut Burst) {
        if out.room() > 0 {
            if let Some((h, _)) = self.held.take() {
                put(out, h);
            }
        }
    }

    /// Whether a packet is held for reordering.
    pub(super) fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// How long the held packet has waited, if there is one.
    pub(super) fn held_for(&self, now: Instant) -> Option<Duration> {
        self.held
            .as_ref()
            .map(|(_, since)| now.saturating_duration_since(*since))
    }

    /// Adds this burst's counts to the port's.
    pub(super) fn publish(&mut self) {
        if self.delta.seen != 0 {
            self.shared.add(&self.delta);
            self.delta = FaultCounts::default();
        }
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        self.publish();
    }
}

fn put(out: &mut Burst, p: Packet) {
    // Room was checked by the caller; a full burst would free the packet (never silently kept).
    if let Err(p) = out.push(p) {
        debug_assert!(false, "fault port: burst full");
        drop(p);
    }
}

/// A copy of `p` (data and metadata) in new buffers of `pool`, one per segment of `p`.
fn copy_of(p: &Packet, pool: &Mempool) -> Option<Packet> {
    let mut chain = oxpmd_dma::ChainBuilder::new();
    for seg in p.segments() {
        let mut s = pool.alloc()?;
        s.extend_from_slice(seg).ok()?;
        chain.push(s).ok()?;
    }
    let mut c = chain.take()?;
    c.set_port(p.port());
    c.set_queue(p.queue());
    c.set_flags(p.flags());
    c.set_rss_hash(p.rss_hash());
    c.set_vlan_tci(p.vlan_tci());
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::super::spec::FaultSpec;
    use super::*;

    fn pool() -> Mempool {
        crate::vport::virtual_pool("fault-inject-test", 4096, 0).unwrap()
    }

    /// A 60-byte frame carrying `seq` twice (plain and inverted): a flipped bit anywhere shows.
    fn frame(seq: u32) -> Vec<u8> {
        let mut frame = vec![0u8; 60];
        frame[20..24].copy_from_slice(&seq.to_be_bytes());
        frame[24..28].copy_from_slice(&(!seq).to_be_bytes());
        frame
    }

    fn packet(pool: &Mempool, seq: u32) -> Packet {
        let mut p = pool.alloc().unwrap();
        p.extend_from_slice(&frame(seq)).unwrap();
        p
    }

    fn seq(p: &Packet) -> u32 {
        u32::from_be_bytes(p.data()[20..24].try_into().unwrap())
    }

    /// Runs `n` packets through an injector of `spec`; returns the delivered sequence numbers,
    /// the number of corrupted deliveries, and the counts.
    fn run(spec: &str, n: u32) -> (Vec<u32>, u64, FaultCounts) {
        let pool = pool();
        let shared = Arc::new(SharedCounts::default());
        let mut inj = Injector::new(&FaultSpec::parse(spec).unwrap(), 1, 0, shared.clone());
        let mut out = Burst::new();
        let mut seqs = Vec::new();
        let mut corrupted = 0;
        let now = Instant::now();
        let mut collect = |out: &mut Burst| {
            for p in out.drain() {
                if p.data() != frame(seq(&p)).as_slice() {
                    corrupted += 1;
                } else {
                    seqs.push(seq(&p));
                }
            }
        };
        for i in 0..n {
            inj.apply(packet(&pool, i), &mut out, &pool, now);
            collect(&mut out);
        }
        inj.release_in_order(&mut out);
        collect(&mut out);
        inj.publish();
        drop(inj);
        assert_eq!(pool.available(), pool.capacity(), "every buffer back");
        (seqs, corrupted, shared.get())
    }

    #[test]
    fn each_fault_is_what_its_count_says() {
        let (seqs, corrupted, c) = run("drop=2%,corrupt=1%,dup=3%,reorder=4%,seed=42", 20_000);
        assert_eq!(c.seen, 20_000);
        // Roughly the asked rates (binomial: far inside 5 sigma).
        for (got, p) in [(c.dropped, 0.02), (c.corrupted, 0.01), (c.duplicated, 0.03)] {
            let want = 20_000.0 * p;
            assert!(
                (got as f64 - want).abs() < 5.0 * (want * (1.0 - p)).sqrt() + 1.0,
                "{c:?}"
            );
        }
        assert!(c.reordered > 0 && c.reordered <= c.seen / 20, "{c:?}");
        assert_eq!(corrupted, c.corrupted);
        // Intact deliveries: every packet not dropped nor corrupted, once, plus the copies.
        assert_eq!(seqs.len() as u64, c.seen - c.dropped - c.corrupted + c.duplicated);
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        let dups = sorted.windows(2).filter(|w| w[0] == w[1]).count() as u64;
        assert_eq!(dups, c.duplicated);
        // A reordered packet arrives after a later one: count arrivals below the highest so far.
        let mut max = None;
        let mut late = 0u64;
        for &s in &seqs {
            match max {
                Some(m) if s < m => late += 1,
                Some(m) if s == m => {}
                _ => max = Some(s),
            }
        }
        assert_eq!(late, c.reordered);
    }

    #[test]
    fn the_same_seed_gives_the_same_faults_and_another_does_not() {
        let a = run("drop=5%,dup=5%,reorder=5%,corrupt=5%,seed=1", 5000);
        let b = run("drop=5%,dup=5%,reorder=5%,corrupt=5%,seed=1", 5000);
        let c = run("drop=5%,dup=5%,reorder=5%,corrupt=5%,seed=2", 5000);
        assert_eq!(a, b);
        assert_ne!(a.0, c.0);
    }

    #[test]
    fn nothing_asked_nothing_done() {
        let (seqs, corrupted, c) = run("seed=3", 1000);
        assert_eq!(seqs, (0..1000).collect::<Vec<_>>());
        assert_eq!(corrupted, 0);
        assert_eq!(
            c,
            FaultCounts {
                seen: 1000,
                ..FaultCounts::default()
            }
        );
    }

    #[test]
    fn rate_limit_drops_the_excess_and_counts_it() {
        // All packets arrive at one instant: the bucket lets its capacity (32 at this rate) through.
        let (seqs, _, c) = run("rate=100,seed=1", 100);
        assert_eq!(seqs.len(), 32);
        assert_eq!(c.rate_dropped, 68);
    }

    #[test]
    fn corruption_spares_the_ethernet_header_and_flips_one_bit() {
        let pool = pool();
        let shared = Arc::new(SharedCounts::default());
        let mut inj = Injector::new(&FaultSpec::parse("corrupt=100%").unwrap(), 0, 0, shared);
        let mut out = Burst::new();
        for i in 0..200 {
            inj.apply(packet(&pool, i), &mut out, &pool, Instant::now());
            let p = out.pop().unwrap();
            let clean = frame(i);
            let flipped: u32 = p
                .data()
                .iter()
                .zip(&clean)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(flipped, 1);
            assert_eq!(&p.data()[..CORRUPT_SKIP], &clean[..CORRUPT_SKIP]);
        }
    }
}
