//! The TX thread: builds the frames, paces them and sends them.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::{STOP, say};
use crate::frame::build_frame;
use crate::options::{Options, Sizes};
use crate::rate::allowed_now;
use crate::{Live, pin};
use oxpmd::dma::{ChainBuilder, Mempool, Packet};
use oxpmd::pmd::capture::{CaptureTap, now_ns as wall_ns};
use oxpmd::pmd::{Burst, MacAddr, TxQueue};

/// `frame` in `first` and as many more buffers of `pool` as it needs, chained; `None` (all given
/// back) when the pool runs out.
fn chained(mut first: Packet, frame: &[u8], pool: &Mempool) -> Option<Packet> {
    let mut parts = frame.chunks(first.tailroom().max(1));
    first.extend_from_slice(parts.next()?).ok()?;
    let mut chain = ChainBuilder::new();
    chain.push(first).ok()?;
    for part in parts {
        let mut seg = pool.alloc()?;
        seg.extend_from_slice(part).ok()?;
        chain.push(seg).ok()?;
    }
    chain.take()
}

/// What one run of the TX loop sends: frame sizes, pace, length and stream ids.
pub struct Traffic {
    pub sizes: Sizes,
    /// Frames per second (None: as fast as possible).
    pub rate: Option<f64>,
    pub count: Option<u64>,
    /// Seconds to send for (None: until `count`, or until stopped).
    pub duration: Option<f64>,
    /// Stream ids sent: `stream_base..stream_base + --streams`, each from sequence number 0.
    pub stream_base: u16,
}

impl Traffic {
    /// The traffic the command line asks for (`--size`, `--rate`, `--count`, `--duration`).
    pub fn of(opts: &Options) -> Traffic {
        Traffic {
            sizes: opts.sizes.clone(),
            rate: opts.rate.map(|r| r as f64),
            count: opts.count,
            duration: opts.duration,
            stream_base: 0,
        }
    }
}

pub struct TxResult {
    pub sent: u64,
    pub bytes: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    /// TX took no frame for `--tx-stall` seconds and pktgen stopped.
    pub stalled: bool,
}

/// How long the TX thread keeps calling a buffering queue at stop ([`TxQueue::held`]): past the
/// fault port's reorder hold, after which it lets a held packet go in order.
const HELD_FLUSH_MAX: Duration = Duration::from_millis(300);

#[allow(clippy::too_many_arguments)]
pub fn tx_loop(
    q: &mut TxQueue,
    pool: Mempool,
    opts: &Options,
    traffic: &Traffic,
    dst: MacAddr,
    src: MacAddr,
    t0: Instant,
    live: &Live,
    mut tap: Option<CaptureTap>,
) -> TxResult {
    pin(&opts.cores, 0, "pktgen tx");
    let mut burst = Burst::with_capacity(opts.burst).unwrap_or_default();
    let mut seqs = vec![0u32; usize::from(opts.streams)];
    // Where a frame larger than one buffer is built before it is split over a chain.
    let mut jumbo = vec![0u8; crate::frame::MAX_SIZE];
    let mut i = 0u64;
    let mut bytes = 0u64;
    let start = t0.elapsed();
    let start_ns = start.as_nanos() as u64;
    let deadline = traffic.duration.map(|d| start + Duration::from_secs_f64(d));
    let mut last_publish = 0u64;
    // Since when TX has taken nothing although frames were waiting (pool empty or ring full).
    let mut no_progress_since: Option<Duration> = None;
    let stall_limit = (opts.tx_stall > 0.0).then(|| Duration::from_secs_f64(opts.tx_stall));
    let mut stalled = false;
    // The frame count at which the last `--gap` pause was taken.
    let mut gap_done = 0u64;
    loop {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        if traffic.count.is_some_and(|c| i >= c) {
            break;
        }
        let now = t0.elapsed();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        // How many frames the rate allows now.
        let mut want = opts.burst as u64;
        if let Some(rate) = traffic.rate {
            want = want.min(allowed_now(rate, now - start, i));
            if want == 0 {
                std::hint::spin_loop();
                continue;
            }
        }
        if let Some(c) = traffic.count {
            want = want.min(c - i);
        }
        if let Some((every, idle)) = opts.gap {
            if i > 0 && i % every == 0 && gap_done != i {
                // A round ended: let the peer go idle. Sleeping in short steps keeps Ctrl-C prompt.
                gap_done = i;
                let until = Instant::now() + idle;
                while !STOP.load(Ordering::Relaxed) && Instant::now() < until {
                    std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
                }
                continue;
            }
            // A burst never crosses the end of a round.
            want = want.min(every - i % every);
        }
        let now_ns = now.as_nanos() as u64;
        // One clock read per burst for the capture timestamps (vDSO, no system call).
        let cap_ts = if tap.is_some() { wall_ns() } else { 0 };
        while burst.len() < want as usize {
            let Some(mut p) = pool.alloc() else { break };
            let size = traffic.sizes.nth(i + burst.len() as u64) - 4;
            let stream = ((i + burst.len() as u64) % u64::from(opts.streams)) as usize;
            if let Some(room) = p.append(size) {
                build_frame(
                    room,
                    dst,
                    src,
                    traffic.stream_base + stream as u16,
                    seqs[stream],
                    now_ns,
                );
                if let Some(t) = tap.as_mut() {
                    t.capture(room, cap_ts);
                }
            } else {
                // Larger than one buffer: built whole, then carried over a chain.
                let f = &mut jumbo[..size];
                build_frame(
                    f,
                    dst,
                    src,
                    traffic.stream_base + stream as u16,
                    seqs[stream],
                    now_ns,
                );
                if let Some(t) = tap.as_mut() {
                    t.capture(f, cap_ts);
                }
                match chained(p, f, &pool) {
                    Some(c) => p = c,
                    None => break,
                }
            }
            seqs[stream] = seqs[stream].wrapping_add(1);
            if burst.push(p).is_err() {
                break;
            }
        }
        if burst.is_empty() {
            // Pool empty: the TX ring holds every buffer; let it complete.
            q.reclaim();
            if tx_stalled(&mut no_progress_since, stall_limit, now, i) {
                stalled = true;
                break;
            }
            std::hint::spin_loop();
            continue;
        }
        let lens: u64 = burst.iter().take(burst.len()).map(|p| p.len() as u64 + 4).sum();
        let before = burst.len();
        let n = q.tx_burst(&mut burst) as u64;
        if n > 0 {
            // Bytes of the packets taken (the front of the burst).
            let left: u64 = burst.iter().map(|p| p.len() as u64 + 4).sum();
            bytes += lens - left;
            i += n;
            no_progress_since = None;
        } else if tx_stalled(&mut no_progress_since, stall_limit, now, i) {
            stalled = true;
            break;
        }
        if (n as usize) < before {
            q.reclaim();
        }
        if i - last_publish >= 256 || n == 0 {
            live.sent.store(i, Ordering::Relaxed);
            live.sent_bytes.store(bytes, Ordering::Relaxed);
            last_publish = i;
            if let Some(t) = tap.as_ref() {
                t.publish();
            }
        }
    }
    // Frames built but not taken are not sent: drop them (the sequence numbers are gaps the
    // receiver never expects, since `sent` counts only what the ring took).
    let unsent = burst.len();
    burst.clear();
    if unsent > 0 {
        log::debug!("pktgen tx: {unsent} built frames not sent at stop");
    }
    let end_ns = t0.elapsed().as_nanos() as u64;
    // A queue that buffers (a fault port: a packet held to reorder, packets its inner queue had
    // no room for) passes what it took on in later calls: make them, with nothing new, so that
    // every frame counted as sent leaves while the receiver still waits for stragglers. A
    // reclaim makes room in the ring and passes held frames on (counted in the port's
    // statistics), as an empty tx_burst would.
    let flush_until = Instant::now() + HELD_FLUSH_MAX;
    while q.held() > 0 && Instant::now() < flush_until {
        q.reclaim();
        std::thread::sleep(Duration::from_micros(200));
    }
    if q.held() > 0 {
        log::warn!(
            "pktgen tx: {} frames still held by the TX queue at stop",
            q.held()
        );
    }
    live.sent.store(i, Ordering::Relaxed);
    live.sent_bytes.store(bytes, Ordering::Relaxed);
    live.tx_done.store(true, Ordering::Release);
    drop(tap);
    oxpmd::dma::flush_thread_caches();
    TxResult {
        sent: i,
        bytes,
        start_ns,
        end_ns,
        stalled,
    }
}

/// One TX attempt that took nothing at `now`: true once that has lasted `limit` (logged).
pub fn tx_stalled(since: &mut Option<Duration>, limit: Option<Duration>, now: Duration, sent: u64) -> bool {
    let Some(limit) = limit else { return false };
    let since = *since.get_or_insert(now);
    if now.saturating_sub(since) < limit {
        return false;
    }
    say!(
        "pktgen: TX made no progress for {:.1} s after {sent} frames (ring full or no buffer back): stopping",
        limit.as_secs_f64()
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::parse_args;

    #[test]
    fn tx_stall_defaults_to_10_s_and_stops_only_after_that_long_without_progress() {
        let o = parse_args(&["--tx-port".to_string(), "null0".to_string()]).unwrap();
        assert_eq!(o.tx_stall, 10.0);
        let o = parse_args(&["--tx-port", "null0", "--tx-stall", "0"].map(String::from)).unwrap();
        assert_eq!(o.tx_stall, 0.0);
        let limit = Some(Duration::from_secs(10));
        let mut since = None;
        assert!(!tx_stalled(&mut since, limit, Duration::from_secs(5), 7));
        assert!(!tx_stalled(&mut since, limit, Duration::from_millis(14_999), 7));
        assert!(tx_stalled(&mut since, limit, Duration::from_secs(15), 7));
        // 0 turns it off.
        assert!(!tx_stalled(&mut None, None, Duration::from_secs(1000), 7));
    }
}
