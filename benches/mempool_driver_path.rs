//! The pool operations our drivers do per burst, measured so that `cargo xtask bench mempool` can put
//! them next to DPDK 22.11's `rte_pktmbuf_alloc_bulk` + `rte_pktmbuf_free_bulk` (the C harness
//! `xtask/src/bench/driver_path.c`, same pool, same window, same warm-up; method: docs/benchmarks.md).
//!
//! Per burst of N, exactly what the RX and TX queues run:
//! - RX refill: the RX queue's own [`MempoolCache`] (`pool.cache()`) takes N raw buffers with
//!   [`MempoolCache::get_bulk`] (no metadata reset);
//! - RX completion: per buffer, [`Packet::from_raw`], [`Packet::reset`] (the reset the RX ring does
//!   when it hands a received buffer out), [`Packet::into_raw`] (the packet goes to the application
//!   and comes back to TX);
//! - TX completion: the TX queue's own [`PoolCaches`] (`PoolCaches::new()`) frees the N buffers with
//!   [`PoolCaches::put_bulk`] (each buffer's pool identity checked with one XOR/OR).
//!
//! The RX cache and the TX caches are distinct caches of the same pool, as in a driver: the RX cache
//! drains and refills from the pool's ring, the TX cache fills and flushes to it.
//!
//! One pool of 4095 buffers of 128 B headroom + 2048 B data room on 4 KiB pages (DPDK runs with
//! `--no-huge`), cache 512. Each thread warms up for `--warmup-us`, then repeats, until `--window-us`
//! has passed, rounds of 65536 buffers (65536 / N bursts; the clock is read between rounds). Rate =
//! buffers taken and freed by all threads / window. Cases: N = 1, 4, 32 on one thread (first CPU) and on
//! two (one per CPU, same pool, each with its own RX cache and TX caches); then, one thread, the same
//! loop with the TX side freeing through a second `MempoolCache` with `put_bulk_unchecked` (no identity
//! check), to show what the check costs per buffer.
//!
//! Machine-readable lines: `oxpmd-bench mempool-driver <case> <value>`, cases `dp/<T>core/n<N>` and
//! `nocheck/1core/n<N>` (buffers per second), and `memory/page_bytes` (page size of the pool's
//! region); run it with `cargo bench --bench mempool_driver_path [-- --cpus 0,1 --window-us 100000
//! --warmup-us 10000]`.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxpmd_dma::{
    IdentityMap, Mempool, MempoolCache, MempoolConfig, Packet, PageSize, PoolCaches, RawBuffer, RegionOptions,
};

/// Buffers per round between two clock reads (as in benches/mempool_perf.rs).
const ROUND: usize = 65536;
/// Buffers in the pool (2^12 - 1). A thread holds up to 512 + N in its RX cache, 768 (the flush
/// threshold, 1.5 x 512) in its TX cache and N in flight: 2 x 1344 with two threads, more than the
/// 2047 of benches/mempool_perf.rs (where a thread has one cache).
const CAPACITY: usize = 4095;
/// Cache size of every cache (DPDK: RTE_MEMPOOL_CACHE_MAX_SIZE).
const CACHE_SIZE: usize = 512;
/// Headroom and data room (DPDK: RTE_PKTMBUF_HEADROOM and a data room of 128 + 2048).
const HEADROOM: usize = 128;
const DATA_ROOM: usize = 2048;
const BURSTS: [usize; 3] = [1, 4, 32];
const MAX_BURST: usize = 32;

const NAME: &str = "mempool_driver_path";

fn fail(msg: impl std::fmt::Display) -> ! {
    common::fail(NAME, msg)
}

/// Where the TX completion frees the buffers.
enum TxSide {
    /// What the drivers do: the TX queue's `PoolCaches`, every buffer's pool checked.
    Driver(PoolCaches),
    /// Reference only: a `MempoolCache` of the pool, `put_bulk_unchecked` (no check).
    Unchecked(MempoolCache),
}

/// One burst: RX refill of `bufs.len()` buffers, RX completion of each, TX completion of all.
#[inline(always)]
fn burst(rx: &mut MempoolCache, tx: &mut TxSide, bufs: &mut [RawBuffer]) {
    if rx.get_bulk(bufs).is_err() {
        fail(format_args!("RX refill of {} failed: pool exhausted", bufs.len()));
    }
    for b in bufs.iter_mut() {
        // SAFETY: `b` was just taken from the pool by this thread's RX cache: a live buffer of a
        // live pool (this thread holds a handle), owned by us only, never seen by a device.
        let mut pkt = unsafe { Packet::from_raw(*b) };
        pkt.reset();
        *b = pkt.into_raw();
    }
    match tx {
        // SAFETY: every buffer is a live buffer of the pool, owned by this thread (taken above and
        // given up by its Packet with into_raw), freed once, and no device has ever seen it.
        TxSide::Driver(caches) => unsafe { caches.put_bulk(bufs) },
        // SAFETY: as above, and every buffer belongs to this cache's pool (taken from it above).
        TxSide::Unchecked(cache) => unsafe { cache.put_bulk_unchecked(bufs) },
    }
}

/// One thread's share of a case: warm-up, then rounds until `window` has passed; returns the
/// buffers that went through the whole path during the window.
fn per_thread(pool: &Mempool, n: usize, checked: bool, warmup: Duration, window: Duration) -> u64 {
    let mut rx = pool.cache();
    let mut tx = if checked {
        TxSide::Driver(PoolCaches::new())
    } else {
        TxSide::Unchecked(pool.cache())
    };
    let mut table = [RawBuffer::NULL; MAX_BURST];
    // Not a compile-time constant (DPDK's constant_n=0).
    let n = black_box(n);
    let bufs = &mut table[..n];
    let bursts_per_round = ROUND / n;
    for (length, count) in [(warmup, false), (window, true)] {
        let mut moved = 0u64;
        let start = Instant::now();
        while start.elapsed() < length {
            for _ in 0..bursts_per_round {
                burst(&mut rx, &mut tx, bufs);
            }
            moved += (bursts_per_round * n) as u64;
        }
        if count {
            return moved;
        }
    }
    unreachable!("the second pass returns")
}

/// Runs one case on `threads` threads (1 or 2) and returns buffers per second.
fn run_case(
    pool: &Mempool,
    cpus: [usize; 2],
    threads: usize,
    n: usize,
    checked: bool,
    warmup: Duration,
    window: Duration,
) -> f64 {
    let total = common::on_threads(NAME, pool, cpus, threads, |pool| {
        per_thread(pool, n, checked, warmup, window)
    });
    total as f64 / window.as_secs_f64()
}

struct Args {
    cpus: [usize; 2],
    window: Duration,
    warmup: Duration,
}

fn micros(name: &str, v: Option<&String>, min: u64) -> Result<Duration, String> {
    let v = v.ok_or(format!("{name} needs a value"))?;
    match v.parse::<u64>() {
        Ok(us) if (min..=10_000_000).contains(&us) => Ok(Duration::from_micros(us)),
        _ => Err(format!("{name} `{v}`: give {min} to 10000000 microseconds")),
    }
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        cpus: [0, 1],
        window: Duration::from_millis(100),
        warmup: Duration::from_millis(10),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--cpus" => a.cpus = common::parse_cpus(it.next())?,
            "--window-us" => a.window = micros("--window-us", it.next(), 1000)?,
            "--warmup-us" => a.warmup = micros("--warmup-us", it.next(), 0)?,
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => {
                return Err(format!(
                    "unknown argument `{other}` (accepted: --cpus A,B --window-us N --warmup-us N)"
                ));
            }
        }
    }
    Ok(a)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Args { cpus, window, warmup } = parse_args(&args).unwrap_or_else(|e| {
        eprintln!("mempool_driver_path: {e}");
        std::process::exit(2);
    });
    let started = Instant::now();
    common::pin(NAME, cpus[0]);
    let config = MempoolConfig {
        cache_size: CACHE_SIZE,
        headroom: HEADROOM,
        data_room: DATA_ROOM,
        // 4 KiB pages, as DPDK's side runs with --no-huge (the bench reserves no hugepages).
        region: RegionOptions {
            page_size: PageSize::Base4K,
            allow_4k_fallback: false,
        },
        ..MempoolConfig::new("mempool_driver_path", CAPACITY)
    };
    let pool = Mempool::new(&config, Arc::new(IdentityMap)).unwrap_or_else(|e| fail(e));
    println!(
        "# oxpmd mempool_driver_path: {} buffers of {} B headroom + {} B data room, cache {CACHE_SIZE}, \
         {:.1} ms per case after {:.1} ms of warm-up, CPUs {cpus:?}",
        pool.capacity(),
        pool.headroom(),
        pool.data_room(),
        window.as_secs_f64() * 1e3,
        warmup.as_secs_f64() * 1e3
    );
    println!(
        "oxpmd-bench mempool-driver memory/page_bytes {}    # page size of the pool's region",
        pool.region().page_size().bytes()
    );
    let cases = [1, 2]
        .into_iter()
        .flat_map(|t| BURSTS.map(|n| (t, n, true)))
        .chain(BURSTS.map(|n| (1, n, false)));
    for (threads, n, checked) in cases {
        let rate = run_case(&pool, cpus, threads, n, checked, warmup, window);
        common::check_all_back(NAME, &pool);
        let (kind, tx) = if checked {
            ("dp", "PoolCaches::put_bulk")
        } else {
            ("nocheck", "MempoolCache::put_bulk_unchecked")
        };
        println!(
            "oxpmd-bench mempool-driver {kind}/{threads}core/n{n} {rate:.0}    \
             # buffers per second, {threads} thread(s), get_bulk + reset + {tx}"
        );
    }
    println!("# done in {:.1} s", started.elapsed().as_secs_f64());
}
