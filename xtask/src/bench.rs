//! `cargo xtask bench ...`: our ring and mempool against DPDK's, measured the same way in one invocation.
//!
//! Each command builds and runs our harness (`benches/<name>_perf.rs`, a `harness = false` bench target of
//! the root package) and DPDK 22.11's `dpdk-test` autotest of the same name, alternately, a few times, keeps
//! the best figure of each side per case, and prints one row per case with the ratio. Method and latest
//! figures: `docs/benchmarks.md`.

mod dpdk;
mod driver_path;
mod mempool;
mod ring;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const USAGE: &str = "\
usage: cargo xtask bench <ring|mempool|help> [options]

  ring      cycles of our Ring against DPDK ring_perf_autotest (one core: cycles per bulk
            enqueue+dequeue; two cores: cycles per element, producer + consumer)
  mempool   objects per second of our Mempool (cache 512): raw cache rows against DPDK
            mempool_perf_autotest (bulk 1/4/32, n_keep 32/128, 1 and 2 cores), then the driver path
            (RX refill get_bulk + reset + TX completion PoolCaches::put_bulk, N = 1/4/32, 1 and 2
            cores) against rte_pktmbuf_alloc_bulk + rte_pktmbuf_free_bulk (a C harness built with
            gcc and pkg-config libdpdk); `worst ratio` (DPDK/ours) is over the driver path rows

options:
  --runs N         alternate runs of each side, best figure kept per case
                   (default 5 for ring, 3 for mempool)
  --window-ms MS   mempool only: measuring window per case, both sides (default 100;
                   DPDK's own is 5000, which makes its full matrix last about an hour)
  --no-install     do not install the Debian dpdk/dpdk-dev packages when dpdk-test is missing

Needs two CPUs for the two-core rows; DPDK runs with --no-huge --no-pci on lcores 0 and 1.
Method and figures: docs/benchmarks.md. (`bench l2fwd-null`, `bench l2fwd-vm`, `bench rfc2544-vm` and `bench rfc2544-chart`
are separate tasks, each with its own --help.)";

/// Options shared by the bench commands.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Alternate runs per side (the best figure per case is kept); `None`: the command's default.
    pub runs: Option<u32>,
    /// Mempool measuring window per case, in milliseconds.
    pub window_ms: u64,
    /// Install the Debian packages providing `dpdk-test` when it is missing.
    pub install: bool,
}

/// What can go wrong while benchmarking.
#[derive(Debug)]
pub(crate) enum BenchError {
    /// A command line argument is wrong.
    Usage(String),
    /// A program could not be started or failed.
    Command { what: String, detail: String },
    /// Output of a program did not contain what we need.
    Parse { what: String, detail: String },
    /// A file could not be written.
    Io { what: String, source: std::io::Error },
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(m) => write!(f, "{m}\n{USAGE}"),
            BenchError::Command { what, detail } => write!(f, "{what}: {detail}"),
            BenchError::Parse { what, detail } => write!(f, "parsing the output of {what}: {detail}"),
            BenchError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for BenchError {}

/// Entry point of `cargo xtask bench`.
pub fn main(args: &[String]) -> ExitCode {
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if matches!(cmd.as_str(), "help" | "-h" | "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let opts = match parse_options(rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("xtask bench: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd.as_str() {
        "ring" => ring::run(&opts),
        "mempool" => mempool::run(&opts),
        other => Err(BenchError::Usage(format!("unknown bench `{other}`"))),
    };
    match result {
        // The command printed its runtime before its last line, `worst ratio: X`.
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask bench {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_options(args: &[String]) -> Result<Options, BenchError> {
    let mut opts = Options {
        runs: None,
        window_ms: 100,
        install: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| BenchError::Usage(format!("{name} needs a value")))
                .and_then(|v| {
                    v.parse::<u64>()
                        .map_err(|_| BenchError::Usage(format!("{name}: `{v}` is not a number")))
                })
        };
        match a.as_str() {
            "--runs" => {
                let n = value("--runs")?;
                if !(1..=20).contains(&n) {
                    return Err(BenchError::Usage("--runs must be between 1 and 20".into()));
                }
                opts.runs = Some(n as u32);
            }
            "--window-ms" => {
                let ms = value("--window-ms")?;
                if !(10..=5000).contains(&ms) {
                    return Err(BenchError::Usage(
                        "--window-ms must be between 10 and 5000".into(),
                    ));
                }
                opts.window_ms = ms;
            }
            "--no-install" => opts.install = false,
            other => return Err(BenchError::Usage(format!("unknown option `{other}`"))),
        }
    }
    Ok(opts)
}

/// The workspace root (the parent of `xtask/`).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Where xtask keeps generated files (the target directory of the workspace).
pub(crate) fn scratch_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("xtask-bench")
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Figures of one run of one side, keyed by case id.
pub(crate) type Figures = BTreeMap<String, f64>;

/// Builds our harness `bench` (a bench target of the root package, bench profile) and returns the path
/// of its executable, which is then run directly: files other helpers edit meanwhile cannot trigger a
/// rebuild (or a build failure) between runs.
pub(crate) fn build_ours(bench: &str) -> Result<PathBuf, BenchError> {
    eprintln!("building benches/{bench}.rs (cargo bench --no-run) ...");
    let out = Command::new(cargo())
        .current_dir(workspace_root())
        .args(["bench", "-p", "oxpmd", "--bench", bench, "--no-run"])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| BenchError::Command {
            what: format!("running cargo bench --bench {bench} --no-run"),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(BenchError::Command {
            what: format!("building benches/{bench}.rs"),
            detail: format!("cargo bench --no-run exited with {} (errors above)", out.status),
        });
    }
    bench_executable(&String::from_utf8_lossy(&out.stdout), bench).ok_or_else(|| BenchError::Parse {
        what: format!("cargo bench --bench {bench} --no-run --message-format json"),
        detail: "no executable named for the bench target".into(),
    })
}

/// Finds the executable of bench target `bench` in cargo's JSON messages.
fn bench_executable(json_lines: &str, bench: &str) -> Option<PathBuf> {
    let name = format!("\"name\":\"{bench}\"");
    json_lines
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && l.contains(&name))
        .filter_map(|l| {
            let rest = &l[l.find("\"executable\":\"")? + "\"executable\":\"".len()..];
            Some(PathBuf::from(&rest[..rest.find('"')?]))
        })
        .next_back()
}

/// Runs our harness once and collects its `oxpmd-bench <group> <case> <value>` lines.
pub(crate) fn run_ours(exe: &Path, group: &str, harness_args: &[String]) -> Result<Figures, BenchError> {
    let out = Command::new(exe)
        .current_dir(workspace_root())
        .args(harness_args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| BenchError::Command {
            what: format!("running {}", exe.display()),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(BenchError::Command {
            what: format!("running {}", exe.display()),
            detail: format!("exited with {}", out.status),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let figures = parse_ours(&text, group);
    if figures.is_empty() {
        return Err(BenchError::Parse {
            what: exe.display().to_string(),
            detail: format!("no `oxpmd-bench {group} ...` line in its output"),
        });
    }
    Ok(figures)
}

/// Parses `oxpmd-bench <group> <case> <value>` lines (other lines are for humans and ignored).
pub(crate) fn parse_ours(text: &str, group: &str) -> Figures {
    let mut figures = Figures::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("oxpmd-bench") || words.next() != Some(group) {
            continue;
        }
        if let (Some(case), Some(value)) = (words.next(), words.next())
            && let Ok(v) = value.parse::<f64>()
            && v.is_finite()
        {
            figures.insert(case.to_string(), v);
        }
    }
    figures
}

/// Which figure of several runs is the best.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Better {
    Lower,
    Higher,
}

/// Merges `run` into `best`, keeping per case the best figure.
pub(crate) fn keep_best(best: &mut Figures, run: &Figures, better: Better) {
    for (case, &v) in run {
        best.entry(case.clone())
            .and_modify(|b| {
                *b = match better {
                    Better::Lower => b.min(v),
                    Better::Higher => b.max(v),
                }
            })
            .or_insert(v);
    }
}

/// A case over several runs: the best, the median and the worst figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    pub best: f64,
    pub median: f64,
    pub worst: f64,
}

impl Summary {
    /// Spread of the runs, worst minus best, in percent of the median.
    pub(crate) fn spread_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.worst - self.best).abs() / self.median * 100.0
        }
    }
}

/// Summary of `case` over `runs`, or `None` if a run lacks it.
pub(crate) fn summary(runs: &[Figures], case: &str, better: Better) -> Option<Summary> {
    let mut v: Vec<f64> = runs.iter().map(|r| r.get(case).copied()).collect::<Option<_>>()?;
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    let (lo, hi) = (v[0], v[v.len() - 1]);
    Some(match better {
        Better::Lower => Summary {
            best: lo,
            median,
            worst: hi,
        },
        Better::Higher => Summary {
            best: hi,
            median,
            worst: lo,
        },
    })
}

/// The 1-minute load average and the CPU count, for the report header (figures are noisy under load).
pub(crate) fn machine_load() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    format!("{cpus} CPUs, load average {load} at the end of the runs (above ~1 the figures are noisy)")
}

/// Formats a number of objects per second in millions.
pub(crate) fn mega(v: f64) -> String {
    format!("{:.1} M", v / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_lines_are_parsed_and_others_ignored() {
        let text = "one core\noxpmd-bench ring ptr/1core/spsc/bulk/8 26.50\n\
                    oxpmd-bench mempool x 1\noxpmd-bench ring bad nan\noxpmd-bench ring short\n";
        let f = parse_ours(text, "ring");
        assert_eq!(f.len(), 1);
        assert_eq!(f["ptr/1core/spsc/bulk/8"], 26.5);
    }

    #[test]
    fn the_bench_executable_is_found_in_cargo_messages() {
        let json = concat!(
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"oxpmd"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"ring_perf"},"#,
            r#""executable":"/w/target/release/deps/ring_perf-abc"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#
        );
        assert_eq!(
            bench_executable(json, "ring_perf"),
            Some(PathBuf::from("/w/target/release/deps/ring_perf-abc"))
        );
        assert_eq!(bench_executable(json, "mempool_perf"), None);
    }

    #[test]
    fn best_keeps_the_minimum_or_maximum() {
        let mut best = Figures::new();
        let a: Figures = [("x".to_string(), 3.0)].into();
        let b: Figures = [("x".to_string(), 2.0), ("y".to_string(), 5.0)].into();
        keep_best(&mut best, &a, Better::Lower);
        keep_best(&mut best, &b, Better::Lower);
        assert_eq!(best["x"], 2.0);
        assert_eq!(best["y"], 5.0);
        let mut hi = Figures::new();
        keep_best(&mut hi, &a, Better::Higher);
        keep_best(&mut hi, &b, Better::Higher);
        assert_eq!(hi["x"], 3.0);
    }

    #[test]
    fn options_are_checked() {
        let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let o = parse_options(&args(&["--runs", "2", "--window-ms", "50", "--no-install"])).unwrap();
        assert_eq!((o.runs, o.window_ms, o.install), (Some(2), 50, false));
        assert!(parse_options(&args(&["--runs", "0"])).is_err());
        assert!(parse_options(&args(&["--runs"])).is_err());
        assert!(parse_options(&args(&["--window-ms", "x"])).is_err());
        assert!(parse_options(&args(&["--fast"])).is_err());
    }
}
