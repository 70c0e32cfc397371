//! The DPDK side: finding (or installing) `dpdk-test`, running its perf autotests, parsing what they print.
//!
//! `dpdk-test` (Debian package dpdk-dev, 22.11) runs the test named by the `DPDK_TEST` environment variable
//! and exits. It runs with `--no-huge --no-pci --no-shconf --no-telemetry` on lcores 0 and 1, so it needs
//! no hugepages, no device, and leaves no shared config or socket behind.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{BenchError, Figures, scratch_dir};
use crate::vm::setup::is_root;

/// CPUs both sides run on (lcore 0 is DPDK's main lcore, which runs the producer / the first worker).
pub(crate) const CPUS: [usize; 2] = [0, 1];

/// Debian packages that provide `dpdk-test` and its libraries.
const PACKAGES: [&str; 2] = ["dpdk", "dpdk-dev"];

/// A usable `dpdk-test` and the version of the package it came from.
pub(crate) struct DpdkTest {
    path: PathBuf,
    /// Debian version of dpdk-dev, for the report header.
    pub version: String,
}

/// Finds `dpdk-test`, installing the Debian packages first if it is missing and `install` is set.
pub(crate) fn locate(install: bool) -> Result<DpdkTest, BenchError> {
    let path = match find_in_path("dpdk-test") {
        Some(p) => p,
        None if !install => {
            return Err(BenchError::Command {
                what: "finding dpdk-test".into(),
                detail:
                    "not in PATH; install it with `apt-get install dpdk dpdk-dev` (Debian 12 ships 22.11) \
                         or drop --no-install"
                        .into(),
            });
        }
        None => {
            apt_install()?;
            find_in_path("dpdk-test").ok_or_else(|| BenchError::Command {
                what: "finding dpdk-test".into(),
                detail: format!("still not in PATH after installing {}", PACKAGES.join(" ")),
            })?
        }
    };
    let version = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "dpdk-dev"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown version".into());
    Ok(DpdkTest { path, version })
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn apt_install() -> Result<(), BenchError> {
    if !is_root() {
        return Err(BenchError::Command {
            what: "installing DPDK".into(),
            detail: format!(
                "dpdk-test is missing and installing it needs root: run `sudo apt-get install -y {}`",
                PACKAGES.join(" ")
            ),
        });
    }
    let install = || {
        eprintln!(
            "dpdk-test not found: apt-get install -y {} ...",
            PACKAGES.join(" ")
        );
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args([
                "-o",
                "DPkg::Lock::Timeout=600",
                "install",
                "-y",
                "--no-install-recommends",
            ])
            .args(PACKAGES)
            .stdin(Stdio::null())
            .status()
    };
    let failed = |e: String| BenchError::Command {
        what: format!("apt-get install {}", PACKAGES.join(" ")),
        detail: e,
    };
    if install().map_err(|e| failed(e.to_string()))?.success() {
        return Ok(());
    }
    // Stale package lists are the usual cause; refresh them once and retry.
    let _ = Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-o", "DPkg::Lock::Timeout=600", "update"])
        .stdin(Stdio::null())
        .status();
    let status = install().map_err(|e| failed(e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(failed(format!("exited with {status} (see its output above)")))
    }
}

/// The EAL arguments every DPDK program of the benches runs with (`--no-huge --no-pci --no-shconf
/// --no-telemetry --file-prefix <prefix>-<pid> -l 0,1`) and the runtime directory EAL creates for them.
///
/// EAL still creates an empty runtime directory named after the file prefix (no telemetry sockets, so
/// it stays empty even when the run is killed); callers remove it after the run.
pub(crate) fn eal_args(prefix: &str) -> (Vec<String>, PathBuf) {
    let prefix = format!("{prefix}-{}", std::process::id());
    let lcores = CPUS.map(|c| c.to_string()).join(",");
    let args = [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "--file-prefix",
    ]
    .map(String::from)
    .into_iter()
    .chain([prefix.clone(), "-l".into(), lcores])
    .collect();
    (args, Path::new("/var/run/dpdk").join(prefix))
}

impl DpdkTest {
    /// The EAL arguments and environment for one autotest run.
    fn command(&self, test: &str) -> (Command, PathBuf) {
        let (args, runtime_dir) = eal_args("oxpmd-bench");
        let mut cmd = Command::new(&self.path);
        cmd.env("DPDK_TEST", test).args(args).stdin(Stdio::null());
        (cmd, runtime_dir)
    }

    /// The shell command line of one autotest run, for the report.
    pub(crate) fn command_line(&self, test: &str) -> String {
        let (args, _) = eal_args("oxpmd-bench");
        format!("DPDK_TEST={test} {} {}", self.path.display(), args.join(" "))
    }

    /// Runs `ring_perf_autotest` once and returns its figures (see [`parse_ring`]).
    pub(crate) fn ring_perf(&self) -> Result<Figures, BenchError> {
        let (mut cmd, runtime_dir) = self.command("ring_perf_autotest");
        let out = cmd.output().map_err(|e| BenchError::Command {
            what: format!("running {} (ring_perf_autotest)", self.path.display()),
            detail: e.to_string(),
        });
        let _ = std::fs::remove_dir(&runtime_dir);
        let out = out?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !text.contains("Test OK") {
            return Err(BenchError::Command {
                what: "dpdk-test ring_perf_autotest".into(),
                detail: format!(
                    "exited with {} without `Test OK`; its output ends with:\n{}\n{}",
                    out.status,
                    tail(&text, 15),
                    tail(&String::from_utf8_lossy(&out.stderr), 10)
                ),
            });
        }
        let figures = parse_ring(&text);
        if !figures.contains_key("ptr/1core/spsc/bulk/8") {
            return Err(BenchError::Parse {
                what: "dpdk-test ring_perf_autotest".into(),
                detail: format!(
                    "no `legacy APIs: SP/SC: bulk (size: 8)` row:\n{}",
                    tail(&text, 20)
                ),
            });
        }
        Ok(figures)
    }

    /// Runs `mempool_perf_autotest` with a shortened window and returns the with-cache figures we compare.
    ///
    /// The test's window is a constant 5 s per case and its matrix has 720 cases (about an hour). A small
    /// preloaded library divides the TSC frequency that the test program itself reads (EAL's own calls
    /// see the true value): by `div` in the with-cache cases, which shortens their window to
    /// `5000 / div` ms (the printed rates, objects counted / 5, are multiplied back by `div`), and by
    /// 5000 (1 ms windows) in the no-cache cases that precede them and are not compared. The run is
    /// stopped as soon as the wanted with-cache cases have been printed. The time between two
    /// consecutive with-cache results is checked against the expected window, so a shim that did not
    /// act cannot go unnoticed.
    pub(crate) fn mempool_perf(&self, div: u64, wanted: &BTreeSet<String>) -> Result<Figures, BenchError> {
        let shim = build_tsc_shim()?;
        let (mut cmd, runtime_dir) = self.command("mempool_perf_autotest");
        cmd.env("LD_PRELOAD", &shim)
            .env(SHIM_ENV, div.to_string())
            .env(SHIM_ENV_UNCACHED, UNCACHED_DIV.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| BenchError::Command {
            what: format!("running {} (mempool_perf_autotest)", self.path.display()),
            detail: e.to_string(),
        })?;
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = e.read_to_string(&mut s);
                s
            })
        });
        let mut figures = Figures::new();
        let mut seen = Vec::new();
        let mut parser = MempoolParser::default();
        // Arrival times of consecutive with-cache results.
        let mut arrivals = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((case, printed)) = parser.feed(&line) {
                    arrivals.push(Instant::now());
                    if wanted.contains(&case) {
                        figures.insert(case, printed * div as f64);
                    }
                }
                if seen.len() < 40 {
                    seen.push(line);
                }
                if wanted.iter().all(|c| figures.contains_key(c)) || parser.done {
                    break;
                }
            }
        }
        // The rest of the matrix (max cores, user-owned cache) is not compared: stop the test here.
        let _ = child.kill();
        let status = child.wait();
        let _ = std::fs::remove_dir(&runtime_dir);
        let err_text = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
        let missing: Vec<&String> = wanted.iter().filter(|c| !figures.contains_key(*c)).collect();
        if !missing.is_empty() {
            return Err(BenchError::Parse {
                what: "dpdk-test mempool_perf_autotest".into(),
                detail: format!(
                    "cases {missing:?} not printed (exit: {status:?}); first lines:\n{}\nstderr:\n{}",
                    seen.join("\n"),
                    tail(&err_text, 10)
                ),
            });
        }
        if !err_text.contains(SHIM_MARK) {
            return Err(BenchError::Command {
                what: "shortening mempool_perf_autotest's window".into(),
                detail: format!(
                    "the preloaded {} was not used, so the rates would be wrong",
                    shim.display()
                ),
            });
        }
        check_windows(&arrivals, Duration::from_secs_f64(5.0 / div as f64))?;
        Ok(figures)
    }
}

/// Checks that with-cache cases lasted about `window` each (median gap between results).
fn check_windows(arrivals: &[Instant], window: Duration) -> Result<(), BenchError> {
    let mut gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1].duration_since(w[0])).collect();
    gaps.sort();
    let Some(&median) = gaps.get(gaps.len() / 2) else {
        return Ok(());
    };
    if median < window / 2 || median > window * 3 {
        return Err(BenchError::Command {
            what: "shortening mempool_perf_autotest's window".into(),
            detail: format!(
                "cases lasted {:.0} ms each, expected about {:.0} ms: the TSC frequency shim did not act as \
                 intended, so the rates cannot be trusted",
                median.as_secs_f64() * 1e3,
                window.as_secs_f64() * 1e3
            ),
        });
    }
    Ok(())
}

pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Parses `ring_perf_autotest` output into case ids `<elem>/<cores>/<mode>/<kind>/<size>`.
///
/// - `<elem>`: `ptr` for "legacy APIs" (pointer-sized elements), `16B` for "elem APIs: element size 16B".
/// - `<cores>`: `1core` in the single element / burst / bulk / empty sections (cycles per enqueue+dequeue
///   of one bulk, or per empty dequeue); `2core` in "two physical cores" (or "two hyperthreads" when
///   lcores 0 and 1 are siblings): cycles per element, producer's plus consumer's.
/// - `<mode>`: `spsc` or `mpmc`; `<kind>`: `single`, `burst`, `bulk` or `empty`; `<size>`: elements per call.
pub(crate) fn parse_ring(text: &str) -> Figures {
    let mut figures = Figures::new();
    let mut section: Option<(&str, &str)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(title) = line.strip_prefix("### Testing ") {
            section = if title.starts_with("single element") {
                Some(("1core", "single"))
            } else if title.starts_with("burst") {
                Some(("1core", "burst"))
            } else if title.starts_with("bulk") {
                Some(("1core", "bulk"))
            } else if title.starts_with("empty") {
                Some(("1core", "empty"))
            } else if title.starts_with("using two physical cores")
                || title.starts_with("using two hyperthreads")
            {
                Some(("2core", "bulk"))
            } else {
                None
            };
            continue;
        }
        let Some((cores, section_kind)) = section else {
            continue;
        };
        let (elem, rest) = if let Some(r) = line.strip_prefix("legacy APIs: ") {
            ("ptr", r)
        } else if let Some(r) = line.strip_prefix("elem APIs: element size ") {
            match r.split_once("B: ") {
                Some((size, r)) => (if size == "16" { "16B" } else { continue }, r),
                None => continue,
            }
        } else {
            continue;
        };
        let (mode, rest) = if let Some(r) = rest.strip_prefix("SP/SC: ") {
            ("spsc", r)
        } else if let Some(r) = rest.strip_prefix("MP/MC: ") {
            ("mpmc", r)
        } else {
            continue;
        };
        let Some((what, value)) = rest.rsplit_once(": ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let (kind, size) = if what == "single" {
            ("single", 1)
        } else if let Some((k, n)) = what.split_once(" (size: ") {
            let Ok(n) = n.trim_end_matches(')').parse::<u32>() else {
                continue;
            };
            (k, n)
        } else {
            continue;
        };
        let kind = if section_kind == "empty" { "empty" } else { kind };
        figures.insert(format!("{elem}/{cores}/{mode}/{kind}/{size}"), value);
    }
    figures
}

/// Follows `mempool_perf_autotest` output and yields the with-cache rows as `(case id, printed rate)`.
///
/// Case ids are `<cores>core/bulk<get>/put<put>/keep<n_keep>/const<0|1>`. Only the "with cache" section is
/// read, and in it only the 1-core block and the first 2-core block: with two lcores the "max cores"
/// block that follows repeats `cores=2`, and that repetition ends the parse.
#[derive(Default)]
pub(crate) struct MempoolParser {
    in_cache_section: bool,
    seen: BTreeSet<String>,
    /// Set once the with-cache section's 1- and 2-core blocks are over.
    pub done: bool,
}

impl MempoolParser {
    pub(crate) fn feed(&mut self, line: &str) -> Option<(String, f64)> {
        if line.starts_with("start performance test") {
            let was = self.in_cache_section;
            self.in_cache_section = line.trim() == "start performance test (with cache)";
            if was && !self.in_cache_section {
                self.done = true;
            }
            return None;
        }
        if !self.in_cache_section || self.done {
            return None;
        }
        let rest = line.strip_prefix("mempool_autotest ")?;
        let field = |name: &str| {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        };
        let cache: u32 = field("cache")?.parse().ok()?;
        let cores: u32 = field("cores")?.parse().ok()?;
        let get: u32 = field("n_get_bulk")?.parse().ok()?;
        let put: u32 = field("n_put_bulk")?.parse().ok()?;
        let keep: u32 = field("n_keep")?.parse().ok()?;
        let constant: u32 = field("constant_n")?.parse().ok()?;
        let rate: f64 = field("rate_persec")?.parse().ok()?;
        if cache == 0 {
            return None;
        }
        let case = format!("{cores}core/bulk{get}/put{put}/keep{keep}/const{constant}");
        if !self.seen.insert(case.clone()) {
            self.done = true;
            return None;
        }
        Some((case, rate))
    }
}

/// Environment variable the shim reads: the divisor applied to the TSC frequency.
const SHIM_ENV: &str = "OXPMD_TSC_HZ_DIV";
/// Environment variable for the divisor in cases without cache (not compared).
const SHIM_ENV_UNCACHED: &str = "OXPMD_TSC_HZ_DIV_UNCACHED";
/// Divisor for the no-cache cases: 1 ms windows.
const UNCACHED_DIV: u64 = 5000;
/// What the shim prints to stderr once, so a run can prove it was loaded.
const SHIM_MARK: &str = "oxpmd tsc-hz shim active";

/// A preloadable library overriding `rte_get_tsc_hz` for calls made from the main program only.
const SHIM_SOURCE: &str = r#"/* Generated by cargo xtask bench (oxpmd): see docs/benchmarks.md. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int __vprintf_chk(int flag, const char *fmt, va_list ap);

static uintptr_t text_lo, text_hi;
/* Set while the case being run is on a pool without cache (not compared: shortest window). */
static volatile int uncached_case;

/* Line-buffered stdout, so that the harness sees each case as it ends. */
__attribute__((constructor)) static void line_buffered_stdout(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
}

/* The test prints "mempool_autotest cache=%u ..." before it launches each case. */
static void note_case(const char *fmt, va_list ap)
{
    static const char prefix[] = "mempool_autotest cache=";
    if (strncmp(fmt, prefix, sizeof(prefix) - 1) == 0) {
        va_list copy;
        va_copy(copy, ap);
        uncached_case = va_arg(copy, unsigned int) == 0;
        va_end(copy);
    }
}

int __printf_chk(int flag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    note_case(fmt, ap);
    int n = __vprintf_chk(flag, fmt, ap);
    va_end(ap);
    return n;
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    note_case(fmt, ap);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

/* dl_iterate_phdr lists the main program first: remember its executable segment. */
static int main_program_text(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            text_lo = info->dlpi_addr + ph->p_vaddr;
            text_hi = text_lo + ph->p_memsz;
        }
    }
    return 1;
}

static uint64_t env_divisor(const char *name, uint64_t fallback)
{
    const char *d = getenv(name);
    uint64_t v = d != NULL ? strtoull(d, NULL, 10) : 0;
    return v > 0 ? v : fallback;
}

/* The test program (and only it: EAL's own calls are left alone) sees a slower TSC. */
uint64_t rte_get_tsc_hz(void)
{
    static uint64_t (*real_hz)(void);
    static uint64_t divisor = 1, uncached_divisor = 1;
    if (real_hz == NULL) {
        real_hz = (uint64_t (*)(void))dlsym(RTLD_NEXT, "rte_get_tsc_hz");
        dl_iterate_phdr(main_program_text, NULL);
        divisor = env_divisor("OXPMD_TSC_HZ_DIV", 1);
        uncached_divisor = env_divisor("OXPMD_TSC_HZ_DIV_UNCACHED", divisor);
        fprintf(stderr, "oxpmd tsc-hz shim active: test program sees TSC hz / %llu (/ %llu without cache)\n",
                (unsigned long long)divisor, (unsigned long long)uncached_divisor);
    }
    uintptr_t caller = (uintptr_t)__builtin_return_address(0);
    uint64_t hz = real_hz();
    if (caller < text_lo || caller >= text_hi)
        return hz;
    return hz / (uncached_case ? uncached_divisor : divisor);
}
"#;

/// Writes and compiles the shim (with the system C compiler) unless an up-to-date copy exists.
fn build_tsc_shim() -> Result<PathBuf, BenchError> {
    let dir = scratch_dir();
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::Io {
        what: format!("creating {}", dir.display()),
        source: e,
    })?;
    let src = dir.join("tsc_hz_shim.c");
    let lib = dir.join("tsc_hz_shim.so");
    let current = std::fs::read_to_string(&src).is_ok_and(|s| s == SHIM_SOURCE);
    if current && lib.is_file() {
        return Ok(lib);
    }
    std::fs::write(&src, SHIM_SOURCE).map_err(|e| BenchError::Io {
        what: format!("writing {}", src.display()),
        source: e,
    })?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-O2", "-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .status()
        .map_err(|e| BenchError::Command {
            what: format!("compiling {} with `{cc}`", src.display()),
            detail: format!("{e}; install a C compiler (apt-get install gcc) or set CC"),
        })?;
    if !status.success() {
        return Err(BenchError::Command {
            what: format!("compiling {}", src.display()),
            detail: format!("{cc} exited with {status}"),
        });
    }
    Ok(lib)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: &str = "RTE>>ring_perf_autotest\n\n### Testing single element enq/deq ###\n\
        legacy APIs: SP/SC: single: 13.52\nlegacy APIs: MP/MC: single: 18.60\n\n\
        ### Testing burst enq/deq ###\nlegacy APIs: SP/SC: burst (size: 8): 28.07\n\n\
        ### Testing bulk enq/deq ###\nlegacy APIs: SP/SC: bulk (size: 8): 26.97\n\
        legacy APIs: MP/MC: bulk (size: 32): 66.69\n\n### Testing empty bulk deq ###\n\
        legacy APIs: SP/SC: bulk (size: 8): 7.08\n\n### Testing using two physical cores ###\n\
        legacy APIs: SP/SC: bulk (size: 8): 15.57\nlegacy APIs: MP/MC: bulk (size: 32): 11.96\n\n\
        ### Testing using all worker nodes ###\n\nBulk enq/dequeue count on size 8\nCore [0] count = 679000\n\
        ### Testing bulk enq/deq ###\nelem APIs: element size 16B: SP/SC: bulk (size: 8): 27.70\nTest OK\n";

    #[test]
    fn ring_rows_map_to_case_ids() {
        let f = parse_ring(RING);
        assert_eq!(f["ptr/1core/spsc/single/1"], 13.52);
        assert_eq!(f["ptr/1core/mpmc/single/1"], 18.60);
        assert_eq!(f["ptr/1core/spsc/burst/8"], 28.07);
        assert_eq!(f["ptr/1core/spsc/bulk/8"], 26.97);
        assert_eq!(f["ptr/1core/mpmc/bulk/32"], 66.69);
        assert_eq!(f["ptr/1core/spsc/empty/8"], 7.08);
        assert_eq!(f["ptr/2core/spsc/bulk/8"], 15.57);
        assert_eq!(f["ptr/2core/mpmc/bulk/32"], 11.96);
        assert_eq!(f["16B/1core/spsc/bulk/8"], 27.70);
        assert_eq!(f.len(), 9);
    }

    #[test]
    fn mempool_reads_only_the_cache_section_up_to_the_repeated_block() {
        let mut p = MempoolParser::default();
        let line = |cache: u32, cores: u32, rate: u64| {
            format!(
                "mempool_autotest cache={cache} cores={cores} n_get_bulk=4 n_put_bulk=4 n_keep=32 \
                 constant_n=0 rate_persec={rate}"
            )
        };
        assert_eq!(p.feed("start performance test (without cache)"), None);
        assert_eq!(p.feed(&line(0, 1, 5)), None);
        assert_eq!(p.feed("start performance test (with cache)"), None);
        assert_eq!(
            p.feed(&line(512, 1, 7)),
            Some(("1core/bulk4/put4/keep32/const0".into(), 7.0))
        );
        assert_eq!(
            p.feed(&line(512, 2, 9)),
            Some(("2core/bulk4/put4/keep32/const0".into(), 9.0))
        );
        assert!(!p.done);
        assert_eq!(p.feed(&line(512, 2, 11)), None);
        assert!(p.done);
        assert_eq!(p.feed(&line(512, 1, 13)), None);
    }

    #[test]
    fn windows_are_checked_against_the_expected_length() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ok = [at(0), at(100), at(205), at(300), at(410)];
        assert!(check_windows(&ok, Duration::from_millis(100)).is_ok());
        let slow = [at(0), at(5000), at(10000), at(15000)];
        assert!(check_windows(&slow, Duration::from_millis(100)).is_err());
        let fast = [at(0), at(1), at(2), at(3)];
        assert!(check_windows(&fast, Duration::from_millis(100)).is_err());
        assert!(check_windows(&[at(0)], Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn mempool_section_change_ends_the_parse() {
        let mut p = MempoolParser::default();
        p.feed("start performance test (with cache)");
        p.feed("start performance test (with user-owned cache)");
        assert!(p.done);
        let l = "mempool_autotest cache=512 cores=1 n_get_bulk=1 n_put_bulk=1 n_keep=32 constant_n=0 rate_persec=1";
        assert_eq!(p.feed(l), None);
    }
}
