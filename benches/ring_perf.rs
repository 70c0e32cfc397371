//! Our `Ring` measured the way DPDK 22.11's `ring_perf_autotest` measures `rte_ring`, so that
//! `cargo xtask bench ring` can put the figures side by side (method: docs/benchmarks.md).
//!
//! One core: TSC cycles per iteration of a loop that enqueues then dequeues one bulk (or burst, or
//! single element) on the same thread; an empty-ring bulk dequeue attempt. Two cores: the producer on
//! the first CPU and the consumer on the second move 2^15 bulks each, retrying a full / empty ring;
//! each side's cycles per element are summed. Sizes 8 and 32, a 4096-slot ring, pointer-sized
//! (`usize`) and 16-byte elements. A crossbeam `ArrayQueue` is measured the same way as a reference.
//!
//! Machine-readable lines: `oxpmd-bench ring <case> <value>`; run it with
//! `cargo bench --bench ring_perf [-- --cpus 0,1]`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use oxpmd_dma::{Consumer, Producer, Ring, SyncMode};

/// Slots of every ring (DPDK: RING_SIZE).
const RING_SIZE: usize = 4096;
/// Largest bulk (DPDK: MAX_BURST).
const MAX_BURST: usize = 32;
/// Bulk and burst sizes; read through `black_box` so they are not compile-time constants (DPDK reads
/// them from a volatile array).
const BULK_SIZES: [usize; 2] = [8, 32];
/// Iterations of each test (DPDK's shifts: single 24, bulk / burst 23, empty 26, two cores 15).
const SINGLE_ITERS: u64 = 1 << 24;
const BULK_ITERS: u64 = 1 << 23;
const EMPTY_ITERS: u64 = 1 << 26;
const PAIR_ITERS: u64 = 1 << 15;

/// Time stamp counter (what DPDK's `rte_rdtsc` reads: plain RDTSC, no fence).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn tsc() -> u64 {
    // SAFETY: RDTSC exists on every x86_64 CPU and only reads the time stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Elsewhere: nanoseconds since the first call (the figures are then ns, not cycles).
#[cfg(not(target_arch = "x86_64"))]
fn tsc() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Exits with an error when a timed loop did not move what it should have.
fn expect_moved(test: &str, moved: u64, expected: u64) {
    if moved != expected {
        eprintln!("ring_perf: {test}: moved {moved} elements, expected {expected}: the ring is broken");
        std::process::exit(1);
    }
}

fn emit(case: &str, value: f64, what: &str) {
    println!("oxpmd-bench ring {case} {value:.2}    # {what}");
}

/// An element type under test and the DPDK label of its API.
trait Elem: Copy + Default + Send + 'static {
    /// Case id prefix: `ptr` (DPDK's legacy API, pointer-sized) or `16B` (elem API, 16 bytes).
    const ID: &'static str;
}
impl Elem for usize {
    const ID: &'static str = "ptr";
}
impl Elem for [u64; 2] {
    const ID: &'static str = "16B";
}

fn split<T>(mode: SyncMode) -> (Producer<T>, Consumer<T>) {
    match Ring::new(RING_SIZE) {
        Ok(r) => r.split(mode, mode),
        Err(e) => {
            eprintln!("ring_perf: {e}");
            std::process::exit(1);
        }
    }
}

fn mode_id(mode: SyncMode) -> &'static str {
    match mode {
        SyncMode::Single => "spsc",
        SyncMode::Multi => "mpmc",
    }
}

/// One element enqueued then dequeued, per iteration.
fn single<T: Elem>(mode: SyncMode) {
    let (mut p, mut c) = split::<T>(mode);
    let mut moved = 0u64;
    let start = tsc();
    for _ in 0..SINGLE_ITERS {
        moved += p.enqueue(T::default()).is_ok() as u64;
        moved += c.dequeue().is_some() as u64;
    }
    let cycles = (tsc() - start) as f64 / SINGLE_ITERS as f64;
    expect_moved("single", moved, 2 * SINGLE_ITERS);
    emit(
        &format!("{}/1core/{}/single/1", T::ID, mode_id(mode)),
        cycles,
        "cycles per enqueue+dequeue of one",
    );
}

/// One bulk (all or nothing) or burst (as many as possible) enqueued then dequeued, per iteration.
fn bulk_or_burst<T: Elem>(mode: SyncMode, burst: bool) {
    let (mut p, mut c) = split::<T>(mode);
    let mut buf = [T::default(); MAX_BURST];
    for size in BULK_SIZES {
        // Elements moved in and out, checked after the timed loop (a broken ring must not look fast).
        let mut moved = 0u64;
        let start = tsc();
        for _ in 0..BULK_ITERS {
            let n = black_box(size);
            if burst {
                moved += p.enqueue_burst(&buf[..n]) as u64;
                moved += c.dequeue_burst(&mut buf[..n]) as u64;
            } else {
                moved += p.enqueue_bulk(&buf[..n]) as u64 * n as u64;
                moved += c.dequeue_bulk(&mut buf[..n]) as u64 * n as u64;
            }
        }
        let cycles = (tsc() - start) as f64 / BULK_ITERS as f64;
        let kind = if burst { "burst" } else { "bulk" };
        expect_moved(kind, moved, 2 * BULK_ITERS * size as u64);
        emit(
            &format!("{}/1core/{}/{kind}/{size}", T::ID, mode_id(mode)),
            cycles,
            &format!("cycles per {kind} enqueue+dequeue of {size}"),
        );
    }
}

/// A bulk dequeue of the first size from an empty ring, per iteration.
fn empty_dequeue<T: Elem>(mode: SyncMode) {
    let (_p, mut c) = split::<T>(mode);
    let mut buf = [T::default(); MAX_BURST];
    let mut moved = 0u64;
    let start = tsc();
    for _ in 0..EMPTY_ITERS {
        moved += c.dequeue_bulk(&mut buf[..black_box(BULK_SIZES[0])]) as u64;
    }
    let cycles = (tsc() - start) as f64 / EMPTY_ITERS as f64;
    expect_moved("empty dequeue", moved, 0);
    emit(
        &format!("{}/1core/{}/empty/{}", T::ID, mode_id(mode), BULK_SIZES[0]),
        cycles,
        "cycles per bulk dequeue attempt on an empty ring",
    );
}

fn pin(cpu: usize) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        eprintln!("ring_perf: cannot pin a thread to CPU {cpu}; two-core figures will be unreliable");
    }
}

/// Both sides check in, then start together (DPDK: lcore_count).
fn rendezvous(count: &AtomicU32) {
    count.fetch_add(1, Ordering::AcqRel);
    while count.load(Ordering::Acquire) != 2 {
        std::hint::spin_loop();
    }
}

/// Cycles per element on one side of a two-core run: first the SP/SC ring, then the MP/MC ring.
struct SideTimes {
    spsc: f64,
    mpmc: f64,
}

/// Runs `f` for `PAIR_ITERS` bulks, returns cycles per element.
fn timed_bulks(size: usize, mut f: impl FnMut(usize) -> bool) -> f64 {
    let start = tsc();
    for _ in 0..PAIR_ITERS {
        while !f(black_box(size)) {
            std::hint::spin_loop();
        }
    }
    (tsc() - start) as f64 / (PAIR_ITERS * size as u64) as f64
}

/// `PAIR_ITERS / 4` untimed bulks of `size`, retrying while full / empty.
fn warm_up(size: usize, mut f: impl FnMut(usize) -> bool) {
    for _ in 0..PAIR_ITERS / 4 {
        while !f(black_box(size)) {
            std::hint::spin_loop();
        }
    }
}

/// Producer on `cpus[0]` (this thread), consumer on `cpus[1]`; per size, the SP/SC then MP/MC rings.
///
/// Each side owns its handles (moved into its thread, so the consumer's handles, whose cached
/// index it writes, do not share a cache line of the producer's stack), and both sides first move
/// `PAIR_ITERS / 4` untimed bulks through each ring (its slots and indices then sit in the caches
/// as in a running application), meet again, then time.
fn two_cores<T: Elem>(cpus: [usize; 2]) {
    for size in BULK_SIZES {
        let (mut sp, sc) = split::<T>(SyncMode::Single);
        let (mut mp, mc) = split::<T>(SyncMode::Multi);
        let (count, warm) = (AtomicU32::new(0), AtomicU32::new(0));
        let (prod, cons) = std::thread::scope(|s| {
            let (count, warm) = (&count, &warm);
            let consumer = s.spawn(move || {
                let (mut sc, mut mc) = (sc, mc);
                pin(cpus[1]);
                let mut buf = [T::default(); MAX_BURST];
                rendezvous(count);
                warm_up(size, |n| sc.dequeue_bulk(&mut buf[..n]));
                warm_up(size, |n| mc.dequeue_bulk(&mut buf[..n]));
                rendezvous(warm);
                let spsc = timed_bulks(size, |n| sc.dequeue_bulk(&mut buf[..n]));
                let mpmc = timed_bulks(size, |n| mc.dequeue_bulk(&mut buf[..n]));
                SideTimes { spsc, mpmc }
            });
            let buf = [T::default(); MAX_BURST];
            rendezvous(count);
            warm_up(size, |n| sp.enqueue_bulk(&buf[..n]));
            warm_up(size, |n| mp.enqueue_bulk(&buf[..n]));
            rendezvous(warm);
            let spsc = timed_bulks(size, |n| sp.enqueue_bulk(&buf[..n]));
            let mpmc = timed_bulks(size, |n| mp.enqueue_bulk(&buf[..n]));
            let producer = SideTimes { spsc, mpmc };
            match consumer.join() {
                Ok(c) => (producer, c),
                Err(_) => {
                    eprintln!("ring_perf: consumer thread panicked");
                    std::process::exit(1);
                }
            }
        });
        let what = "cycles per element, producer's + consumer's";
        emit(
            &format!("{}/2core/spsc/bulk/{size}", T::ID),
            prod.spsc + cons.spsc,
            what,
        );
        emit(
            &format!("{}/2core/mpmc/bulk/{size}", T::ID),
            prod.mpmc + cons.mpmc,
            what,
        );
    }
}

/// Every ring test for one element type, in DPDK's order.
fn ring_tests<T: Elem>(cpus: [usize; 2]) {
    single::<T>(SyncMode::Single);
    single::<T>(SyncMode::Multi);
    bulk_or_burst::<T>(SyncMode::Single, true);
    bulk_or_burst::<T>(SyncMode::Multi, true);
    bulk_or_burst::<T>(SyncMode::Single, false);
    bulk_or_burst::<T>(SyncMode::Multi, false);
    empty_dequeue::<T>(SyncMode::Single);
    empty_dequeue::<T>(SyncMode::Multi);
    two_cores::<T>(cpus);
}

/// crossbeam ArrayQueue: `size` pushes then `size` pops per iteration; then two cores in batches.
fn array_queue(cpus: [usize; 2]) {
    for size in BULK_SIZES {
        let q = ArrayQueue::<usize>::new(RING_SIZE);
        let start = tsc();
        for _ in 0..BULK_ITERS {
            let n = black_box(size);
            for i in 0..n {
                let _ = black_box(q.push(i));
            }
            for _ in 0..n {
                black_box(q.pop());
            }
        }
        let cycles = (tsc() - start) as f64 / BULK_ITERS as f64;
        emit(
            &format!("arrayqueue/1core/mpmc/pushpop/{size}"),
            cycles,
            "cycles per size pushes + size pops",
        );
    }
    for size in BULK_SIZES {
        let q = ArrayQueue::<usize>::new(RING_SIZE);
        let count = AtomicU32::new(0);
        let (prod, cons) = std::thread::scope(|s| {
            let consumer = s.spawn(|| {
                pin(cpus[1]);
                rendezvous(&count);
                timed_bulks(size, |n| {
                    for _ in 0..n {
                        while q.pop().is_none() {
                            std::hint::spin_loop();
                        }
                    }
                    true
                })
            });
            rendezvous(&count);
            let prod = timed_bulks(size, |n| {
                for i in 0..n {
                    while q.push(i).is_err() {
                        std::hint::spin_loop();
                    }
                }
                true
            });
            (prod, consumer.join().unwrap_or(f64::NAN))
        });
        emit(
            &format!("arrayqueue/2core/mpmc/pushpop/{size}"),
            prod + cons,
            "cycles per element, producer's + consumer's, batches of size",
        );
    }
}

fn parse_cpus(args: &[String]) -> Result<[usize; 2], String> {
    let mut cpus = [0, 1];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cpus" => {
                let v = it.next().ok_or("--cpus needs a value such as 0,1")?;
                let parsed: Vec<usize> = v.split(',').filter_map(|c| c.trim().parse().ok()).collect();
                match parsed[..] {
                    [a, b] if a != b => cpus = [a, b],
                    _ => {
                        return Err(format!(
                            "--cpus `{v}`: give two different CPU numbers such as 0,1"
                        ));
                    }
                }
            }
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => return Err(format!("unknown argument `{other}` (accepted: --cpus A,B)")),
        }
    }
    Ok(cpus)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cpus = match parse_cpus(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ring_perf: {e}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    pin(cpus[0]);
    let unit = if cfg!(target_arch = "x86_64") {
        "TSC cycles"
    } else {
        "nanoseconds (no TSC here)"
    };
    println!("# oxpmd ring_perf: DPDK ring_perf_autotest method, {unit}, CPUs {cpus:?}, ring of {RING_SIZE}");
    ring_tests::<usize>(cpus);
    ring_tests::<[u64; 2]>(cpus);
    array_queue(cpus);
    println!("# done in {:.1} s", started.elapsed().as_secs_f64());
}
