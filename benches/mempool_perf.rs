//! Our `Mempool` measured the way DPDK 22.11's `mempool_perf_autotest` measures `rte_mempool` with a
//! per-lcore cache, so that `cargo xtask bench mempool` can put the rates side by side (method:
//! docs/benchmarks.md).
//!
//! One pool of 2047 buffers (DPDK: lcores x (512 kept + 512 cached) - 1 with two lcores) and a cache of
//! 512 per thread. Each thread, for a fixed window, repeats: take `n_keep` buffers in bulks of
//! `n_get_bulk`, then give them back in bulks of `n_put_bulk`, 65536 buffers per round; the rate is the
//! buffers taken and given back by all threads divided by the window. Cases: bulk 1, 4 and 32 (get and
//! put alike, not compile-time constants), n_keep 32 and 128, on one thread (first CPU) and on two
//! (one per CPU); buffers given back with `put_bulk_unchecked` (no pool check, as DPDK's
//! `rte_mempool_generic_put`), then the same cases with the checked `put_bulk` (ids end in `-checked`).
//!
//! Machine-readable lines: `oxpmd-bench mempool <case> <objects per second>`; run it with
//! `cargo bench --bench mempool_perf [-- --cpus 0,1 --window-us 100000]`.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxpmd_dma::{IdentityMap, Mempool, MempoolCache, MempoolConfig, PageSize, RawBuffer, RegionOptions};

/// Buffers per round between two clock reads (DPDK: N).
const ROUND: u64 = 65536;
/// Per-thread cache size (DPDK: RTE_MEMPOOL_CACHE_MAX_SIZE).
const CACHE_SIZE: usize = 512;
/// Largest n_keep of DPDK's matrix (MAX_KEEP); sizes the pool.
const MAX_KEEP: usize = 512;
/// Threads the pool is sized for (DPDK sizes it by its lcore count, 2 here).
const LCORES: usize = 2;
const BULKS: [usize; 3] = [1, 4, 32];
const KEEPS: [usize; 2] = [32, 128];

const NAME: &str = "mempool_perf";

fn fail(msg: impl std::fmt::Display) -> ! {
    common::fail(NAME, msg)
}

/// One thread's share of a case: rounds until `window` has passed; returns buffers moved.
///
/// `CHECKED`: give back with `put_bulk` (checks every buffer's pool) instead of `put_bulk_unchecked`
/// (no check, like DPDK's `rte_mempool_generic_put`).
fn per_thread<const CHECKED: bool>(
    pool: &Mempool,
    keep: usize,
    get_bulk: usize,
    put_bulk: usize,
    window: Duration,
) -> u64 {
    let mut cache: MempoolCache = pool.cache();
    let mut table = [RawBuffer::NULL; MAX_KEEP];
    let mut moved = 0u64;
    let start = Instant::now();
    while start.elapsed() < window {
        for _ in 0..ROUND / keep as u64 {
            let (keep, get_bulk, put_bulk) = (black_box(keep), black_box(get_bulk), black_box(put_bulk));
            let mut idx = 0;
            while idx < keep {
                if cache.get_bulk(&mut table[idx..idx + get_bulk]).is_err() {
                    fail(format_args!(
                        "get of {get_bulk} failed: pool exhausted (n_keep {keep})"
                    ));
                }
                idx += get_bulk;
            }
            idx = 0;
            while idx < keep {
                let bufs = &table[idx..idx + put_bulk];
                if CHECKED {
                    // SAFETY: these buffers were just taken from this pool through this cache, are
                    // owned by this thread only, and no device has ever seen them.
                    if let Err(e) = unsafe { cache.put_bulk(bufs) } {
                        fail(e);
                    }
                } else {
                    // SAFETY: as above; they were taken from this very cache, so they belong to
                    // this pool.
                    unsafe { cache.put_bulk_unchecked(bufs) };
                }
                idx += put_bulk;
            }
        }
        moved += ROUND;
    }
    moved
}

/// Runs one case on `threads` threads (1 or 2) and returns the rate in buffers per second.
fn run_case<const CHECKED: bool>(
    pool: &Mempool,
    cpus: [usize; 2],
    threads: usize,
    bulk: usize,
    keep: usize,
    window: Duration,
) -> f64 {
    let total = common::on_threads(NAME, pool, cpus, threads, |pool| {
        per_thread::<CHECKED>(pool, keep, bulk, bulk, window)
    });
    total as f64 / window.as_secs_f64()
}

fn parse_args(args: &[String]) -> Result<([usize; 2], Duration), String> {
    let (mut cpus, mut window) = ([0, 1], Duration::from_millis(100));
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cpus" => cpus = common::parse_cpus(it.next())?,
            "--window-us" => {
                let v = it.next().ok_or("--window-us needs a value")?;
                match v.parse::<u64>() {
                    Ok(us) if (1000..=10_000_000).contains(&us) => window = Duration::from_micros(us),
                    _ => return Err(format!("--window-us `{v}`: give 1000 to 10000000 microseconds")),
                }
            }
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => {
                return Err(format!(
                    "unknown argument `{other}` (accepted: --cpus A,B --window-us N)"
                ));
            }
        }
    }
    Ok((cpus, window))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cpus, window) = parse_args(&args).unwrap_or_else(|e| {
        eprintln!("mempool_perf: {e}");
        std::process::exit(2);
    });
    let started = Instant::now();
    common::pin(NAME, cpus[0]);
    let config = MempoolConfig {
        cache_size: CACHE_SIZE,
        headroom: 0,
        data_room: 2048,
        // No hugepages, as DPDK runs with --no-huge; the buffers' memory is not touched by the test.
        region: RegionOptions {
            page_size: PageSize::Base4K,
            allow_4k_fallback: true,
        },
        ..MempoolConfig::new("mempool_perf", LCORES * (MAX_KEEP + CACHE_SIZE) - 1)
    };
    let pool = Mempool::new(&config, Arc::new(IdentityMap)).unwrap_or_else(|e| fail(e));
    println!(
        "# oxpmd mempool_perf: DPDK mempool_perf_autotest method, {} buffers of {} B, cache {CACHE_SIZE}, \
         {:.1} ms per case, CPUs {cpus:?}",
        pool.capacity(),
        pool.element_size(),
        window.as_secs_f64() * 1e3
    );
    for checked in [false, true] {
        for threads in [1, 2] {
            for bulk in BULKS {
                for keep in KEEPS {
                    let rate = if checked {
                        run_case::<true>(&pool, cpus, threads, bulk, keep, window)
                    } else {
                        run_case::<false>(&pool, cpus, threads, bulk, keep, window)
                    };
                    common::check_all_back(NAME, &pool);
                    let (suffix, put) = if checked {
                        ("-checked", "put_bulk")
                    } else {
                        ("", "put_bulk_unchecked")
                    };
                    println!(
                        "oxpmd-bench mempool {threads}core/bulk{bulk}/put{bulk}/keep{keep}/const0{suffix} {rate:.0}    \
                         # buffers got+put per second, {threads} thread(s), {put}"
                    );
                }
            }
        }
    }
    println!("# done in {:.1} s", started.elapsed().as_secs_f64());
}
