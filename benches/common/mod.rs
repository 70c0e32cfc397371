//! What the `harness = false` pool benches compared with DPDK share (`mod common;` in
//! benches/mempool_perf.rs and benches/mempool_driver_path.rs): failing, pinning, running a case on
//! one or two threads started together, checking the pool's count after a case, reading `--cpus`.

use std::sync::atomic::{AtomicBool, Ordering};

use oxpmd_dma::Mempool;

/// Prints `<bench>: <msg>` and exits with status 1.
pub fn fail(bench: &str, msg: impl std::fmt::Display) -> ! {
    eprintln!("{bench}: {msg}");
    std::process::exit(1);
}

/// Pins the calling thread to `cpu` (a warning if it cannot).
pub fn pin(bench: &str, cpu: usize) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        eprintln!("{bench}: cannot pin a thread to CPU {cpu}; figures will be unreliable");
    }
}

/// Runs `per_thread` on the calling thread (pinned to `cpus[0]` by the caller) and, when `threads`
/// is 2, at the same time on a second thread pinned to `cpus[1]`, which waits for a start flag as
/// DPDK's workers do; returns the sum of what they return.
pub fn on_threads(
    bench: &str,
    pool: &Mempool,
    cpus: [usize; 2],
    threads: usize,
    per_thread: impl Fn(&Mempool) -> u64 + Sync,
) -> u64 {
    let go = AtomicBool::new(false);
    std::thread::scope(|s| {
        let worker = (threads > 1).then(|| {
            let (pool, go, per_thread) = (pool.clone(), &go, &per_thread);
            s.spawn(move || {
                pin(bench, cpus[1]);
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                per_thread(&pool)
            })
        });
        go.store(true, Ordering::Release);
        let mine = per_thread(pool);
        mine + worker.map_or(0, |w| {
            w.join().unwrap_or_else(|_| fail(bench, "worker thread panicked"))
        })
    })
}

/// Exits with an error unless every buffer of `pool` is back (after a case).
pub fn check_all_back(bench: &str, pool: &Mempool) {
    if pool.available() != pool.capacity() {
        fail(
            bench,
            format_args!(
                "{} of {} buffers not back after a case",
                pool.in_use(),
                pool.capacity()
            ),
        );
    }
}

/// Reads the value of `--cpus`: two different CPU numbers such as `0,1`.
pub fn parse_cpus(v: Option<&String>) -> Result<[usize; 2], String> {
    let v = v.ok_or("--cpus needs a value such as 0,1")?;
    let parsed: Vec<usize> = v.split(',').filter_map(|c| c.trim().parse().ok()).collect();
    match parsed[..] {
        [a, b] if a != b => Ok([a, b]),
        _ => Err(format!(
            "--cpus `{v}`: give two different CPU numbers such as 0,1"
        )),
    }
}
