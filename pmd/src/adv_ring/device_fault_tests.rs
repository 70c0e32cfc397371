//! Fault injection: a device that writes whatever it is allowed to write (every byte of every
//! buffer of a pool, headroom included, and the write-back words of the descriptors it owns)
//! while the CPU holds, reads, grows, shrinks, moves and frees packets on several threads.
//!
//! What must hold whatever it writes (design invariant 6, docs/memory-model.md):
//! - no data slice leaves its buffer, and a packet's lengths and offsets are what the CPU last
//!   set (the metadata is out of the device's reach);
//! - no buffer goes back to another pool (a foreign put is refused), none is lost: every pool's
//!   count comes back whole;
//! - a completion the driver cannot trust (a length beyond the buffer, a frame without EOP, an
//!   error) is refused and counted ("quarantined": the buffer is recycled, never handed out).
//!
//! The "device" writes between CPU operations (a write lock against the workers' read locks),
//! which is what a device does from the CPU's point of view without making the test itself race.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};

use oxpmd_dma::{IdentityMap, Mempool, MempoolConfig, Packet, PageSize, RawBuffer, RegionOptions};
use proptest::prelude::*;

use super::desc::{rx_status, rx_wb};
use super::fake::FakeDevice;
use super::{AdvRxRing, HeapRingMemory, RingMemory};
use crate::QueueCounters;
use crate::burst::Burst;
use crate::test_rng::TestRng as Rng;

fn pool(name: &str, capacity: usize) -> Mempool {
    let cfg = MempoolConfig {
        cache_size: 16,
        region: RegionOptions {
            page_size: PageSize::Base4K,
            allow_4k_fallback: true,
        },
        ..MempoolConfig::new(name, capacity)
    };
    Mempool::new(&cfg, Arc::new(IdentityMap)).expect("test pool")
}

/// Writes `n` random bytes at random offsets of the pool's DMA region (IdentityMap: IOVA = VA),
/// and now and then a whole random run. Returns the number of bytes written.
///
/// # Safety
/// No CPU reference to the region's bytes may be live (the caller holds the write lock).
unsafe fn scribble(pool: &Mempool, rng: &mut Rng, n: usize) -> u64 {
    let (base, len) = (pool.region().as_ptr(), pool.region().len());
    let mut written = 0;
    for _ in 0..n {
        let off = rng.next_u64() as usize % len;
        let run = if rng.next_u64() % 8 == 0 {
            (rng.next_u64() as usize % 256).min(len - off)
        } else {
            1
        };
        for k in 0..run {
            // SAFETY: off + k < len: inside the region; no reference to it is live (contract).
            unsafe { base.add(off + k).write_volatile(rng.next_u64() as u8) };
        }
        written += run as u64;
    }
    written
}

/// One step of a worker.
#[derive(Debug, Clone)]
enum Op {
    Alloc,
    Append(usize),
    Prepend(usize),
    Trim(usize),
    Adjust(usize),
    SetLen(usize),
    Read,
    FreeForeign,
    Send,
    RawRoundTrip,
    Drop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Alloc),
        2 => (0usize..2400).prop_map(Op::Append),
        2 => (0usize..200).prop_map(Op::Prepend),
        1 => (0usize..2400).prop_map(Op::Trim),
        1 => (0usize..2400).prop_map(Op::Adjust),
        1 => (0usize..70000).prop_map(Op::SetLen),
        3 => Just(Op::Read),
        1 => Just(Op::FreeForeign),
        1 => Just(Op::Send),
        1 => Just(Op::RawRoundTrip),
        2 => Just(Op::Drop),
    ]
}

/// What the CPU last set for a packet: the device must not be able to change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shadow {
    len: usize,
    headroom: usize,
    tailroom: usize,
    buf: u64,
}

fn shadow(p: &Packet) -> Shadow {
    Shadow {
        len: p.len(),
        headroom: p.headroom(),
        tailroom: p.tailroom(),
        buf: p.buf_iova(),
    }
}

/// The data slice lies inside the packet's own buffer (IdentityMap: the IOVA is the address).
fn check_bounds(p: &Packet) {
    let d = p.data();
    let (start, end) = (d.as_ptr() as u64, d.as_ptr() as u64 + d.len() as u64);
    assert!(
        start >= p.buf_iova() && end <= p.buf_iova() + p.buffer_len() as u64,
        "slice leaves its buffer"
    );
    assert_eq!(p.headroom() + p.len() + p.tailroom(), p.buffer_len());
}

struct Totals {
    corruptions: AtomicU64,
    bytes: AtomicU64,
    refused_foreign: AtomicU64,
}

fn worker(
    ops: Vec<Op>,
    own: &Mempool,
    other: &Mempool,
    gate: &RwLock<()>,
    tx: mpsc::Sender<Packet>,
    rx: &Mutex<mpsc::Receiver<Packet>>,
    totals: &Totals,
) {
    let mut other_cache = other.cache();
    let mut held: Vec<(Packet, Shadow)> = Vec::new();
    for op in ops {
        let _cpu = gate.read().unwrap_or_else(|e| e.into_inner());
        // Whatever the device wrote since: the metadata is as the CPU left it.
        for (p, s) in &held {
            assert_eq!(shadow(p), *s, "metadata changed behind the CPU's back");
            check_bounds(p);
        }
        match op {
            Op::Alloc => {
                if let Some(p) = own.alloc() {
                    let s = shadow(&p);
                    held.push((p, s));
                }
            }
            Op::Append(n) => {
                if let Some((p, s)) = held.last_mut() {
                    let room = p.tailroom();
                    assert_eq!(p.append(n).is_some(), n <= room);
                    *s = shadow(p);
                }
            }
            Op::Prepend(n) => {
                if let Some((p, s)) = held.last_mut() {
                    let room = p.headroom();
                    assert_eq!(p.prepend(n).is_some(), n <= room);
                    *s = shadow(p);
                }
            }
            Op::Trim(n) => {
                if let Some((p, s)) = held.last_mut() {
                    let len = p.len();
                    assert_eq!(p.trim(n).is_some(), n <= len);
                    *s = shadow(p);
                }
            }
            Op::Adjust(n) => {
                if let Some((p, s)) = held.first_mut() {
                    let len = p.len();
                    assert_eq!(p.adjust(n).is_some(), n <= len);
                    *s = shadow(p);
                }
            }
            Op::SetLen(n) => {
                if let Some((p, s)) = held.last_mut() {
                    let room = p.buffer_len() - p.headroom();
                    assert_eq!(p.set_len(n).is_ok(), n <= room);
                    *s = shadow(p);
                }
            }
            Op::Read => {
                for (p, _) in &held {
                    // Bytes are whatever the device wrote: any value is fine, and any header
                    // view is a checked one.
                    let _ = p.data().iter().fold(0u8, |a, b| a ^ b);
                    let _ = p.eth();
                }
            }
            Op::FreeForeign => {
                // Packets cross threads (Op::Send), so a held packet may be of either pool: the
                // other pool's cache must refuse exactly its foreign ones.
                if let Some((p, _)) = held.pop() {
                    if other.owns(&p) {
                        assert!(other_cache.free(p).is_ok(), "its own pool's cache takes it");
                    } else {
                        let back = other_cache
                            .free(p)
                            .expect_err("another pool's cache must refuse it");
                        totals.refused_foreign.fetch_add(1, Ordering::Relaxed);
                        let s = shadow(&back);
                        held.push((back, s));
                    }
                }
            }
            Op::Send => {
                if let Some((p, _)) = held.pop() {
                    let _ = tx.send(p);
                }
                if let Ok(p) = rx.lock().unwrap_or_else(|e| e.into_inner()).try_recv() {
                    let s = shadow(&p);
                    held.push((p, s));
                }
            }
            Op::RawRoundTrip => {
                if let Some((p, s)) = held.pop() {
                    let raw: RawBuffer = p.into_raw();
                    // SAFETY: the buffer was just given up by a Packet and no device owns it.
                    let p = unsafe { Packet::from_raw(raw) };
                    assert_eq!(shadow(&p), s);
                    held.push((p, s));
                }
            }
            Op::Drop => {
                held.pop();
            }
        }
    }
    drop(held);
    drop(other_cache);
    oxpmd_dma::flush_thread_caches();
}

fn run_case(seed: u64, threads: Vec<Vec<Op>>, totals: &Totals) {
    let a = pool("faults-a", 256);
    let b = pool("faults-b", 256);
    let gate = RwLock::new(());
    let (tx, rx) = mpsc::channel::<Packet>();
    let rx = Mutex::new(rx);
    let done = AtomicU64::new(0);
    let n_threads = threads.len() as u64;
    std::thread::scope(|s| {
        for (i, ops) in threads.into_iter().enumerate() {
            let (own, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            let (gate, tx, rx, done) = (&gate, tx.clone(), &rx, &done);
            s.spawn(move || {
                worker(ops, own, other, gate, tx, rx, totals);
                done.fetch_add(1, Ordering::Release);
            });
        }
        // The device: writes over both pools' regions until the workers are done.
        s.spawn(|| {
            let mut rng = Rng::new(seed);
            while done.load(Ordering::Acquire) < n_threads {
                {
                    let _dev = gate.write().unwrap_or_else(|e| e.into_inner());
                    let mut bytes = 0;
                    for p in [&a, &b] {
                        // SAFETY: the write lock is held: no worker has a reference to any byte.
                        bytes += unsafe { scribble(p, &mut rng, 64) };
                    }
                    totals.corruptions.fetch_add(1, Ordering::Relaxed);
                    totals.bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                std::thread::yield_now();
            }
        });
    });
    drop(tx);
    // Packets still in the channel go back too.
    while let Ok(p) = rx.lock().unwrap().try_recv() {
        drop(p);
    }
    oxpmd_dma::flush_thread_caches();
    assert_eq!(
        (a.available(), b.available()),
        (256, 256),
        "every buffer back in its own pool"
    );
}

/// `cases` per property, unless `PROPTEST_CASES` says otherwise (`cargo xtask memcheck` runs a
/// sample under valgrind).
fn runner(cases: u32) -> proptest::test_runner::TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    })
}

#[test]
fn packets_survive_a_device_writing_every_byte_it_may() {
    let totals = Totals {
        corruptions: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        refused_foreign: AtomicU64::new(0),
    };
    let cases = AtomicU64::new(0);
    let strategy = (
        any::<u64>(),
        prop::collection::vec(prop::collection::vec(op(), 50..400), 2..5),
    );
    runner(48)
        .run(&strategy, |(seed, threads)| {
            run_case(seed, threads, &totals);
            cases.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    println!(
        "device faults (packets): {} cases on 2-4 threads, {} device write rounds, {} bytes written \
         over the pools' regions, {} frees into another pool's cache refused, every buffer back",
        cases.load(Ordering::Relaxed),
        totals.corruptions.load(Ordering::Relaxed),
        totals.bytes.load(Ordering::Relaxed),
        totals.refused_foreign.load(Ordering::Relaxed),
    );
}

/// What a hostile device does to one RX descriptor it owns.
#[derive(Debug, Clone)]
enum RxFault {
    /// A well-formed completion of `len` bytes.
    Good(u16),
    /// DD with random write-back words (length, status and errors, hash, VLAN).
    Random(u64, u64),
    /// DD and EOP with a length beyond any buffer.
    Long(u16),
}

fn rx_fault() -> impl Strategy<Value = RxFault> {
    prop_oneof![
        4 => (60u16..1515).prop_map(RxFault::Good),
        3 => (any::<u64>(), any::<u64>()).prop_map(|(a, b)| RxFault::Random(a, b)),
        1 => (2049u16..=u16::MAX).prop_map(RxFault::Long),
    ]
}

/// Counts of the RX ring case, over all cases.
#[derive(Default)]
struct RxTotals {
    cases: u64,
    completions: u64,
    handed_out: u64,
    quarantined: u64,
    bytes: u64,
}

#[test]
fn an_rx_ring_survives_a_device_writing_its_write_backs_and_buffers() {
    let totals = Mutex::new(RxTotals::default());
    let strategy = (any::<u64>(), prop::collection::vec(rx_fault(), 1..600));
    runner(64)
        .run(&strategy, |(seed, faults)| rx_case(seed, &faults, &totals))
        .unwrap();
    let t = totals.into_inner().unwrap();
    println!(
        "device faults (RX ring): {} cases, {} device completions, {} packets handed out, {} \
         quarantined (refused and recycled), {} bytes written over buffers, every buffer back",
        t.cases, t.completions, t.handed_out, t.quarantined, t.bytes
    );
}

fn rx_case(seed: u64, faults: &[RxFault], totals: &Mutex<RxTotals>) -> Result<(), TestCaseError> {
    {
        const COUNT: usize = 64;
        let p = pool("faults-rx", COUNT + 96);
        let mem = HeapRingMemory::new(COUNT);
        let base = mem.as_ptr();
        // SAFETY: the ring memory lives in the ring, which outlives every use of `dev` below.
        let dev = unsafe { FakeDevice::new(base, COUNT) };
        let mut ring = AdvRxRing::new(mem, dev.rx_regs(), &p, COUNT, 1, 0).unwrap();
        ring.arm();
        let mut rng = Rng::new(seed);
        let mut c = QueueCounters::default();
        let mut burst = Burst::new();
        let mut handed_out = 0u64;
        let mut bytes = 0u64;
        let mut completions = 0u64;
        for (k, f) in faults.iter().enumerate() {
            let mut st = dev.state();
            if st.head == st.tail {
                drop(st);
            } else {
                let i = st.head;
                // SAFETY: i < COUNT: a descriptor the device owns ([head, tail)); the ring is not
                // running (this thread), so nothing reads it meanwhile.
                unsafe {
                    let d = base.add(i * 16);
                    match *f {
                        RxFault::Good(len) => {
                            (d.add(rx_wb::LENGTH) as *mut u16).write_volatile(len.to_le());
                            (d.add(rx_wb::STATUS_ERROR) as *mut u32)
                                .write_volatile((rx_status::DD | rx_status::EOP).to_le());
                        }
                        RxFault::Random(a, b) => {
                            (d as *mut u64).write_volatile(a);
                            (d.add(8) as *mut u64).write_volatile(b | u64::from(rx_status::DD));
                        }
                        RxFault::Long(len) => {
                            (d.add(rx_wb::LENGTH) as *mut u16).write_volatile(len.to_le());
                            (d.add(rx_wb::STATUS_ERROR) as *mut u32)
                                .write_volatile((rx_status::DD | rx_status::EOP).to_le());
                        }
                    }
                }
                st.head = (i + 1) % COUNT;
                drop(st);
                completions += 1;
            }
            // And the buffers' bytes, the ones posted to the device included.
            // SAFETY: no reference to the region's bytes is live here (packets are in `burst`
            // only between rx_burst and the checks below).
            bytes += unsafe { scribble(&p, &mut rng, 16) };
            if k % 3 == 0 || k + 1 == faults.len() {
                ring.rx_burst(&mut burst, &mut c);
                for pkt in burst.drain() {
                    check_bounds(&pkt);
                    prop_assert!(pkt.len() <= p.data_room());
                    prop_assert_eq!(pkt.headroom(), p.headroom());
                    handed_out += 1;
                }
            }
        }
        let refused = c.ierrors + c.rx_multiseg_dropped;
        prop_assert_eq!(c.packets, handed_out);
        drop(ring);
        oxpmd_dma::flush_thread_caches();
        prop_assert_eq!(
            p.available(),
            p.capacity(),
            "every buffer back (quarantined ones too)"
        );
        prop_assert!(dev.state().violations.is_empty(), "{:?}", dev.state().violations);
        let mut t = totals.lock().unwrap();
        t.cases += 1;
        t.completions += completions;
        t.handed_out += handed_out;
        t.quarantined += refused;
        t.bytes += bytes;
    }
    Ok(())
}
