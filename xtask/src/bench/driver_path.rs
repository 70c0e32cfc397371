//! The `driver path` block of `cargo xtask bench mempool`: the pool operations our drivers do per burst
//! (benches/mempool_driver_path.rs) against DPDK 22.11's `rte_pktmbuf_alloc_bulk` +
//! `rte_pktmbuf_free_bulk` (the C harness `driver_path.c` next to this file, built here with gcc and
//! `pkg-config --cflags --libs libdpdk`), measured the same way: same pool size, cache size and data
//! room, same memory kind (4 KiB pages: DPDK runs with `--no-huge`), same window, warm-up and clock.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{BenchError, Better, Figures, dpdk, mega, parse_ours, scratch_dir, summary};

/// The group of the machine-readable lines of both harnesses.
pub(crate) const GROUP: &str = "mempool-driver";
/// The case id both harnesses print the page size of their pool's memory under.
const MEMORY: &str = "memory/page_bytes";
/// Burst sizes of the block.
const BURSTS: [u32; 3] = [1, 4, 32];
/// The C harness, kept in the repository and compiled at bench time.
const C_SOURCE: &str = include_str!("driver_path.c");

/// Driver path cases (in the worst ratio): `(id, label)`.
pub(crate) fn cases() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for cores in [1u32, 2] {
        for n in BURSTS {
            v.push((
                format!("dp/{cores}core/n{n}"),
                format!(
                    "{cores} core{} refill + completion N={n:<2}",
                    if cores > 1 { "s" } else { " " }
                ),
            ));
        }
    }
    v
}

/// A command line, for the report (arguments have no spaces, so no quoting is needed).
pub(crate) fn command_line(program: &Path, args: &[String]) -> String {
    std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The built C harness and the command that built it.
pub(crate) struct DpdkHarness {
    exe: PathBuf,
    /// The compiler command line, printed in the report.
    pub build: String,
}

/// Writes `driver_path.c` into the scratch directory and compiles it against Debian's libdpdk.
pub(crate) fn build_dpdk_harness() -> Result<DpdkHarness, BenchError> {
    let dir = scratch_dir();
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::Io {
        what: format!("creating {}", dir.display()),
        source: e,
    })?;
    let src = dir.join("driver_path.c");
    let exe = dir.join("driver_path");
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "libdpdk"])
        .output()
        .map_err(|e| BenchError::Command {
            what: "running pkg-config --cflags --libs libdpdk".into(),
            detail: format!("{e}; install pkg-config and dpdk-dev"),
        })?;
    if !flags.status.success() {
        return Err(BenchError::Command {
            what: "pkg-config --cflags --libs libdpdk".into(),
            detail: format!(
                "exited with {}: {} (is dpdk-dev installed?)",
                flags.status,
                String::from_utf8_lossy(&flags.stderr).trim()
            ),
        });
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "gcc".into());
    let mut args: Vec<String> = ["-O3", "-Wall", "-Wextra", "-o"].map(String::from).into();
    args.push(exe.display().to_string());
    args.push(src.display().to_string());
    args.extend(
        String::from_utf8_lossy(&flags.stdout)
            .split_whitespace()
            .map(String::from),
    );
    let build = command_line(Path::new(&cc), &args);
    // The flags are part of what was built: a changed libdpdk rebuilds the harness.
    let stamp = dir.join("driver_path.cmd");
    let current = std::fs::read_to_string(&src).is_ok_and(|s| s == C_SOURCE)
        && std::fs::read_to_string(&stamp).is_ok_and(|s| s == build);
    if current && exe.is_file() {
        return Ok(DpdkHarness { exe, build });
    }
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|e| BenchError::Io {
            what: format!("writing {}", path.display()),
            source: e,
        })
    };
    write(&src, C_SOURCE)?;
    eprintln!("building the DPDK driver-path harness: {build}");
    let status = Command::new(&cc)
        .args(&args)
        .status()
        .map_err(|e| BenchError::Command {
            what: format!("compiling {} with `{cc}`", src.display()),
            detail: format!("{e}; install gcc or set CC"),
        })?;
    if !status.success() {
        return Err(BenchError::Command {
            what: format!("compiling {}", src.display()),
            detail: format!("{cc} exited with {status}"),
        });
    }
    write(&stamp, &build)?;
    Ok(DpdkHarness { exe, build })
}

impl DpdkHarness {
    /// The arguments of one run: EAL's, then ours after `--`; and the runtime directory EAL creates.
    pub(crate) fn args(&self, harness_args: &[String]) -> (Vec<String>, PathBuf) {
        let (mut args, runtime_dir) = dpdk::eal_args("oxpmd-bench-dp");
        args.push("--".into());
        args.extend(harness_args.iter().cloned());
        (args, runtime_dir)
    }

    /// The command line of one run, for the report.
    pub(crate) fn command_line(&self, harness_args: &[String]) -> String {
        command_line(&self.exe, &self.args(harness_args).0)
    }

    /// Runs the harness once and returns its figures.
    pub(crate) fn run(&self, harness_args: &[String]) -> Result<Figures, BenchError> {
        let (args, runtime_dir) = self.args(harness_args);
        let out = Command::new(&self.exe)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| BenchError::Command {
                what: format!("running {}", self.exe.display()),
                detail: e.to_string(),
            });
        let _ = std::fs::remove_dir(&runtime_dir);
        let out = out?;
        let text = String::from_utf8_lossy(&out.stdout);
        let figures = parse_ours(&text, GROUP);
        if !out.status.success() || !figures.contains_key(MEMORY) {
            return Err(BenchError::Command {
                what: format!("running {}", self.exe.display()),
                detail: format!(
                    "exited with {}; its output ends with:\n{}\n{}",
                    out.status,
                    dpdk::tail(&text, 10),
                    dpdk::tail(&String::from_utf8_lossy(&out.stderr), 10)
                ),
            });
        }
        Ok(figures)
    }
}

/// Best (highest) and median of a case over runs, or `None` if a run lacks it.
fn best_and_median(runs: &[Figures], case: &str) -> Option<(f64, f64)> {
    summary(runs, case, Better::Higher).map(|s| (s.best, s.median))
}

/// The page size every run of both sides reported, or why the sides cannot be compared.
fn common_memory(ours: &[Figures], theirs: &[Figures]) -> Result<u64, String> {
    let kinds = |runs: &[Figures]| {
        let mut k: Vec<Option<u64>> = runs.iter().map(|r| r.get(MEMORY).map(|&b| b as u64)).collect();
        k.sort();
        k.dedup();
        k
    };
    let (o, t) = (kinds(ours), kinds(theirs));
    match (&o[..], &t[..]) {
        ([Some(a)], [Some(b)]) if a == b => Ok(*a),
        _ => Err(format!(
            "the two sides ran on different kinds of memory (page bytes: ours {o:?}, DPDK {t:?})"
        )),
    }
}

fn pages(bytes: u64) -> String {
    match bytes {
        4096 => "4 KiB pages".into(),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB pages", b >> 20),
        b => format!("{b}-byte pages"),
    }
}

/// Prints the block and returns its worst ratio (DPDK / ours, best figures; < 1: ours faster).
pub(crate) fn report(
    ours: &[Figures],
    theirs: &[Figures],
    ours_cmd: &str,
    dpdk_cmd: &str,
    dpdk_build: &str,
) -> Result<f64, BenchError> {
    let memory = common_memory(ours, theirs);
    println!();
    println!(
        "driver path: ours = per burst of N, RX refill MempoolCache::get_bulk(N) (the RX queue's cache), per buffer \
         Packet::from_raw + reset + into_raw, TX completion PoolCaches::put_bulk(N) (the TX queue's caches); \
         DPDK = rte_pktmbuf_alloc_bulk(N) + rte_pktmbuf_free_bulk(N) (the lcore's cache); 4095 buffers of \
         128 + 2048 B, cache 512, {}; best and median of {} runs each; buffers through refill + completion per \
         second, higher is better; DPDK/ours < 1 means ours is faster",
        memory
            .as_ref()
            .map_or_else(|e| format!("MEMORY DIFFERS: {e}"), |&b| pages(b)),
        ours.len().min(theirs.len())
    );
    println!("  ours: {ours_cmd}");
    println!("  DPDK: {dpdk_cmd}");
    println!("  DPDK built with: {dpdk_build}");
    println!(
        "{:<38} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "case", "ours best", "median", "DPDK best", "median", "DPDK/ours", "(medians)"
    );
    let mut worst: Option<f64> = None;
    let mut missing = Vec::new();
    for (case, label) in cases() {
        let (o, t) = (best_and_median(ours, &case), best_and_median(theirs, &case));
        let ratios = match (o, t, &memory) {
            (Some(o), Some(t), Ok(_)) if o.0 > 0.0 && o.1 > 0.0 => Some((t.0 / o.0, t.1 / o.1)),
            _ => None,
        };
        match ratios {
            Some((r, _)) => worst = Some(worst.map_or(r, |w| w.max(r))),
            None => missing.push(case.clone()),
        }
        let fig = |f: Option<(f64, f64)>, pick: fn((f64, f64)) -> f64| {
            f.map_or_else(|| "-".into(), |f| mega(pick(f)))
        };
        println!(
            "{:<38} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
            label,
            fig(o, |f| f.0),
            fig(o, |f| f.1),
            fig(t, |f| f.0),
            fig(t, |f| f.1),
            ratios.map_or_else(|| "-".into(), |r| format!("{:.2}", r.0)),
            ratios.map_or_else(|| "-".into(), |r| format!("{:.2}", r.1)),
        );
    }
    println!(
        "-- per-buffer cost of the free path's checks, 1 core, not in the worst ratio (best figures; ns per buffer = \
         1e9/checked - 1e9/unchecked):"
    );
    println!(
        "   ours: PoolCaches::put_bulk (pool identity, one XOR/OR a buffer) vs MempoolCache::put_bulk_unchecked;"
    );
    println!(
        "   DPDK: rte_pktmbuf_free_bulk (reads each mbuf's refcount, flags, next, segments, pool) vs rte_mempool_put_bulk"
    );
    println!(
        "{:<6} {:>12} {:>12} {:>11} {:>12} {:>12} {:>11}",
        "N", "ours checked", "unchecked", "ns/buffer", "DPDK free", "mempool put", "ns/buffer"
    );
    for n in BURSTS {
        let (checked, unchecked) = (format!("dp/1core/n{n}"), format!("nocheck/1core/n{n}"));
        let side = |runs: &[Figures]| {
            let c = best_and_median(runs, &checked).map(|f| f.0);
            let u = best_and_median(runs, &unchecked).map(|f| f.0);
            let cost = match (c, u) {
                (Some(c), Some(u)) if c > 0.0 && u > 0.0 => format!("{:+.2}", 1e9 / c - 1e9 / u),
                _ => "-".into(),
            };
            (
                c.map_or_else(|| "-".into(), mega),
                u.map_or_else(|| "-".into(), mega),
                cost,
            )
        };
        let (oc, ou, ocost) = side(ours);
        let (tc, tu, tcost) = side(theirs);
        println!("N={n:<4} {oc:>12} {ou:>12} {ocost:>11} {tc:>12} {tu:>12} {tcost:>11}");
    }
    if let Err(e) = memory {
        return Err(BenchError::Parse {
            what: "the driver path figures".into(),
            detail: format!("{e}: no ratio is printed"),
        });
    }
    if !missing.is_empty() {
        return Err(BenchError::Parse {
            what: "the driver path figures".into(),
            detail: format!("no figure on one side for {missing:?} in some run, so no worst ratio"),
        });
    }
    worst.ok_or_else(|| BenchError::Parse {
        what: "the driver path figures".into(),
        detail: "no comparable row".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(pairs: &[(&str, f64)]) -> Figures {
        pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
    }

    #[test]
    fn six_cases_with_the_ids_both_harnesses_print() {
        let c = cases();
        assert_eq!(c.len(), 6);
        assert_eq!(c[0].0, "dp/1core/n1");
        assert_eq!(c[5].0, "dp/2core/n32");
        // The C harness prints the same ids.
        assert!(C_SOURCE.contains(r#"raw_put ? "nocheck" : "dp""#));
        assert!(C_SOURCE.contains("oxpmd-bench mempool-driver %s/%ucore/n%u"));
        assert!(C_SOURCE.contains("oxpmd-bench mempool-driver memory/page_bytes"));
    }

    #[test]
    fn best_is_the_highest_and_the_median_the_middle() {
        let runs = [
            figures(&[("a", 3.0)]),
            figures(&[("a", 1.0)]),
            figures(&[("a", 2.0)]),
        ];
        assert_eq!(best_and_median(&runs, "a"), Some((3.0, 2.0)));
        assert_eq!(best_and_median(&runs[..2], "a"), Some((3.0, 2.0)));
        assert_eq!(best_and_median(&runs, "b"), None);
        let partial = [figures(&[("a", 3.0)]), figures(&[])];
        assert_eq!(best_and_median(&partial, "a"), None);
    }

    #[test]
    fn different_memory_kinds_are_refused() {
        let small = figures(&[(MEMORY, 4096.0)]);
        let huge = figures(&[(MEMORY, 2097152.0)]);
        let both = [small.clone(), huge.clone()];
        let twice = [small.clone(), small.clone()];
        assert_eq!(common_memory(&twice, &both[..1]), Ok(4096));
        assert!(common_memory(&both[..1], &both[1..]).is_err());
        assert!(common_memory(&both, &both[..1]).is_err());
        assert!(common_memory(&both[..1], &[figures(&[])]).is_err());
        assert_eq!(pages(4096), "4 KiB pages");
        assert_eq!(pages(2097152), "2 MiB pages");
    }

    #[test]
    fn a_memory_mismatch_gives_no_worst_ratio() {
        let mut ours = figures(&[(MEMORY, 4096.0)]);
        let mut theirs = figures(&[(MEMORY, 2097152.0)]);
        for (case, _) in cases() {
            ours.insert(case.clone(), 2.0);
            theirs.insert(case, 1.0);
        }
        assert!(report(&[ours.clone()], &[theirs.clone()], "a", "b", "c").is_err());
        theirs.insert(MEMORY.into(), 4096.0);
        assert_eq!(report(&[ours], &[theirs], "a", "b", "c").unwrap(), 0.5);
    }
}
