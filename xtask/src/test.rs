//! `cargo xtask test`: the project's whole test suite, the command the README and `.ci/run` give.
//!
//! 1. `cargo test --workspace` (unit and integration tests; VM tests are listed as ignored there);
//! 2. the loom model test of the ring's multi-producer / multi-consumer paths;
//! 3. the loom model test of the mempool's reference count and close protocol;
//! 4. `cargo xtask memcheck`: the packet-memory tests under valgrind (each binary one test);
//! 5. `cargo xtask vm test`: every `vm_*` test binary in the test VM.
//!
//! Each step's output streams through; the libtest summaries are added up into one closing line
//! `tests: N passed, M failed, K skipped`. Skipped counts the tests libtest ignored (VM tests only with
//! `--no-vm`: otherwise the VM step runs them) and the tests that reported themselves skipped at run
//! time (crate `oxpmd-test-skip`, through the skips file this runner gives them; see `skips.rs`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use crate::skips::{PassedTests, SKIPS_FILE_ENV, Skips};

/// The reason every VM test gives in its `#[ignore = "..."]` (docs/testvm.md).
const VM_IGNORE_REASON: &str = "needs the test VM";

/// How a step's output is counted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Counting {
    /// libtest's `test result:` summaries and per-test lines (host test binaries).
    Libtest,
    /// The VM harness's closing `vm tests: N passed, M failed, K skipped` line (it has already
    /// settled the runtime skips of the guests' tests).
    VmSummary,
}

#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    /// Tests libtest listed as ignored because they need the test VM (the VM step runs them).
    ignored_vm: u64,
    /// Other ignored tests.
    ignored_other: u64,
    /// Tests skipped at run time (host records settled, plus the VM harness's count).
    skipped: u64,
    /// The VM harness printed its summary line.
    vm_summary_seen: bool,
    /// The host tests libtest reported `ok`, to settle the skip records against.
    passed_tests: PassedTests,
}

impl Tally {
    /// Adds one output line of a step.
    fn add_line(&mut self, line: &str, counting: Counting) {
        let line = line.trim();
        if counting == Counting::VmSummary {
            if let Some(rest) = line.strip_prefix("vm tests: ") {
                self.vm_summary_seen = true;
                for part in rest.split(',') {
                    let mut words = part.split_whitespace();
                    let (Some(n), Some(what)) = (words.next(), words.next()) else {
                        continue;
                    };
                    let Ok(n) = n.parse::<u64>() else { continue };
                    match what {
                        "passed" => self.passed += n,
                        "failed" => self.failed += n,
                        "skipped" => self.skipped += n,
                        _ => {}
                    }
                }
            }
            return;
        }
        self.passed_tests.add_line(line);
        if let Some((_, outcome)) = line.strip_prefix("test ").and_then(|r| r.rsplit_once(" ... "))
            && (outcome == "ignored" || outcome.starts_with("ignored,"))
        {
            if outcome.contains(VM_IGNORE_REASON) {
                self.ignored_vm += 1;
            } else {
                self.ignored_other += 1;
            }
        }
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<u64>() else { continue };
                match what {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    _ => {}
                }
            }
        }
    }

    /// Moves the host tests that recorded a skip from passed to skipped.
    fn settle_skips(&mut self, skips_file: &std::path::Path) -> Result<Skips, String> {
        let s = Skips::settle_file(skips_file, &mut self.passed_tests)?;
        let n = s.counted.len() as u64;
        self.passed = self.passed.saturating_sub(n);
        self.skipped += n;
        Ok(s)
    }
}

/// Runs `cmd` with its stdout piped: prints and hands each line to `on_line`, stderr streams
/// through; returns how it exited.
pub(crate) fn run_streaming(
    cmd: &mut Command,
    mut on_line: impl FnMut(&str),
) -> std::io::Result<std::process::ExitStatus> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn()?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            on_line(&line);
        }
    }
    child.wait()
}

/// Runs `cmd`, streaming its stdout and stderr, counting its tests; true when it exited 0.
fn run_step(name: &str, cmd: &mut Command, tally: &mut Tally, counting: Counting) -> bool {
    println!("==> {name}: {cmd:?}");
    match run_streaming(cmd, |line| tally.add_line(line, counting)) {
        Ok(status) if status.success() => true,
        Ok(status) => {
            eprintln!("xtask test: {name} failed ({status})");
            false
        }
        Err(e) => {
            eprintln!("xtask test: running {name}: {e}");
            false
        }
    }
}

/// A fresh skips file for this run (under the target directory).
fn fresh_skips_file() -> Result<PathBuf, String> {
    let paths = crate::vm::Paths::new();
    let dir = paths
        .testvm
        .parent()
        .map(|t| t.join("xtask-test"))
        .unwrap_or_else(|| paths.workspace.join("target/xtask-test"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let file = dir.join("skipped-tests.txt");
    match std::fs::remove_file(&file) {
        Ok(()) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(file),
        Err(e) => Err(format!("remove the old {}: {e}", file.display())),
    }
}

pub fn main(args: &[String]) -> ExitCode {
    let skip_vm = args.iter().any(|a| a == "--no-vm");
    if let Some(bad) = args.iter().find(|a| *a != "--no-vm") {
        eprintln!("usage: cargo xtask test [--no-vm]\nunknown argument `{bad}`");
        return ExitCode::from(2);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let skips_file = match fresh_skips_file() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("xtask test: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut tally = Tally::default();
    let mut ok = true;

    ok &= run_step(
        "unit and integration tests",
        Command::new(&cargo)
            .args(["test", "--workspace", "--no-fail-fast"])
            .env(SKIPS_FILE_ENV, &skips_file),
        &mut tally,
        Counting::Libtest,
    );
    // pktgen's frame, rate and option logic has unit tests, which `cargo test` does not run for
    // an example; `test = true` in the manifest would run them but then build pktgen only as a
    // test, and the integration tests run the plain binary.
    ok &= run_step(
        "pktgen's unit tests",
        Command::new(&cargo)
            .args(["test", "--example", "pktgen"])
            .env(SKIPS_FILE_ENV, &skips_file),
        &mut tally,
        Counting::Libtest,
    );
    for (what, test) in [
        ("loom model test of the ring", "loom_ring"),
        ("loom model test of the mempool's lifetime", "loom_mempool"),
    ] {
        ok &= run_step(
            what,
            Command::new(&cargo)
                .args(["test", "-p", "oxpmd-dma", "--release", "--test", test])
                .env("RUSTFLAGS", "--cfg loom")
                .env("CARGO_TARGET_DIR", "target/loom")
                .env(SKIPS_FILE_ENV, &skips_file),
            &mut tally,
            Counting::Libtest,
        );
    }
    let memcheck = crate::memcheck::run(&cargo);
    tally.passed += memcheck.passed;
    tally.failed += memcheck.failed;
    tally.skipped += memcheck.skipped;
    match tally.settle_skips(&skips_file) {
        Ok(s) => s.print("xtask test: "),
        Err(e) => {
            eprintln!("xtask test: {e}");
            ok = false;
        }
    }
    if skip_vm {
        println!("==> VM tests and the soak skipped (--no-vm)");
        tally.skipped += 1;
    } else {
        ok &= run_step(
            "VM tests",
            Command::new(&cargo)
                .args(["xtask", "vm", "test"])
                .env_remove(SKIPS_FILE_ENV),
            &mut tally,
            Counting::VmSummary,
        );
        if !tally.vm_summary_seen {
            eprintln!("xtask test: the VM tests printed no `vm tests:` summary: counted as one failure");
            tally.failed += 1;
        }
        // The soak counts as one test: passed when every phase, buffer, memory and IOMMU check held.
        println!("==> soak ({} minutes)", crate::soak::CI_MINUTES);
        if crate::soak::run(&cargo, crate::soak::CI_MINUTES, crate::soak::Build::Dev).passed {
            tally.passed += 1;
        } else {
            eprintln!("xtask test: the soak failed");
            tally.failed += 1;
            ok = false;
        }
    }
    // VM tests are ignored by the host run; they count as skipped only when the VM step did not run.
    let ignored = tally.ignored_other + if skip_vm { tally.ignored_vm } else { 0 };
    println!(
        "tests: {} passed, {} failed, {} skipped",
        tally.passed,
        tally.failed,
        tally.skipped + ignored
    );
    if ok && tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::{Counting, Tally};

    #[test]
    fn adds_libtest_summaries_and_ignored_tests() {
        let mut t = Tally::default();
        for l in [
            "test a ... ok",
            "test vm_x ... ignored, needs the test VM: cargo xtask vm test",
            "test slow ... ignored",
            "test other ... ignored, too slow",
            "test result: ok. 12 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
            "running 3 tests",
        ] {
            t.add_line(l, Counting::Libtest);
        }
        assert_eq!((t.passed, t.failed, t.ignored_vm, t.ignored_other), (13, 2, 1, 2));
        // The VM step counts its own closing line only (not the guests' libtest lines).
        t.add_line(
            "test result: ok. 5 passed; 0 failed; 0 ignored",
            Counting::VmSummary,
        );
        assert!(!t.vm_summary_seen);
        t.add_line("vm tests: 5 passed, 1 failed, 2 skipped", Counting::VmSummary);
        assert!(t.vm_summary_seen);
        assert_eq!((t.passed, t.failed, t.skipped), (18, 3, 2));
    }

    #[test]
    fn a_recorded_skip_moves_a_passed_test_to_skipped() {
        let dir = std::env::temp_dir().join(format!("xtask-test-skips-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("skips");
        std::fs::write(&file, "dma-1\tregion::tests::a\tno 1 GiB pages\n").unwrap();
        let mut t = Tally::default();
        t.add_line("test region::tests::a ... ok", Counting::Libtest);
        t.add_line("test region::tests::b ... ok", Counting::Libtest);
        t.add_line(
            "test result: ok. 2 passed; 0 failed; 0 ignored",
            Counting::Libtest,
        );
        let s = t.settle_skips(&file).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(s.counted.len(), 1);
        assert_eq!((t.passed, t.skipped), (1, 1));
    }
}
