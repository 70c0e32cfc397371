//! `cargo xtask memcheck`: the unit tests of the crates that hold the packet memory (dma, and pmd's
//! modules that share memory with a device or the kernel, the descriptor rings' device
//! fault-injection tests among them), run under valgrind's memcheck.
//!
//! Those tests drive every `unsafe` access to buffer and ring memory, with fake devices writing
//! into it from other threads; memcheck reports any read of freed or unmapped memory, any
//! uninitialised value a branch depends on, and any invalid free, which a passing test alone
//! would not show. Each test binary counts as one test: passed when every test in it passed and
//! memcheck found no error, failed otherwise. Without valgrind the binaries are reported as
//! skipped, with the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// The packages and test targets run under memcheck.
const CARGO_TEST_ARGS: &[&str] = &["test", "-p", "oxpmd-dma", "-p", "oxpmd-pmd", "--lib"];

/// The exit status valgrind gives when memcheck found an error (distinct from a test failure's 101).
const VALGRIND_ERROR_EXIT: i32 = 99;

/// Proptest cases per property under memcheck: about 50 times slower there, the fault-injection
/// test checks the memory accesses of a sample of its cases; the full count runs natively in
/// `cargo test`.
const PROPTEST_CASES_UNDER_MEMCHECK: &str = "12";

/// What one memcheck run found.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Test binaries whose tests passed with no memcheck error.
    pub passed: u64,
    /// Test binaries with a failed test or a memcheck error.
    pub failed: u64,
    /// Test binaries not run (valgrind missing).
    pub skipped: u64,
}

fn valgrind() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("valgrind"))
            .find(|p| p.is_file())
    })
}

/// The test executables cargo built, from its JSON messages.
fn test_executables(cargo: &str) -> Result<Vec<(String, PathBuf)>, String> {
    let out = Command::new(cargo)
        .args(CARGO_TEST_ARGS)
        .args(["--no-run", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {cargo}: {e}"))?;
    if !out.status.success() {
        return Err(format!("building the test binaries failed ({})", out.status));
    }
    let mut exes = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        if let (Some(exe), Some(name)) = (msg["executable"].as_str(), msg["target"]["name"].as_str()) {
            exes.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    if exes.is_empty() {
        return Err("cargo named no test executable".into());
    }
    Ok(exes)
}

/// The tests of a binary run under memcheck: for the pmd crate, its modules that touch memory a
/// device or the kernel shares (the descriptor rings, the drivers' queues, AF_XDP's rings, the
/// IOMMU mappings, passed file descriptors); the rest of its tests (policies, state files, the
/// fault port's statistics) hold no `unsafe` and, under memcheck's slowdown, took most of its
/// minutes. Every test of the other binaries runs.
fn memcheck_filters(name: &str) -> &'static [&'static str] {
    match name {
        "oxpmd_pmd" => &[
            "adv_ring::",
            "drivers::",
            "vport::xdp::",
            "iommu::",
            "sriov::unix_fd::",
        ],
        _ => &[],
    }
}

/// Runs one test binary under memcheck, streaming its output; true when it passed cleanly.
fn run_one(valgrind: &Path, name: &str, exe: &Path) -> bool {
    let mut cmd = Command::new(valgrind);
    cmd.args([
        "-q",
        "--tool=memcheck",
        &format!("--error-exitcode={VALGRIND_ERROR_EXIT}"),
        // Threads take turns in order: the tests' device threads poll while the driver side
        // waits, and valgrind's default lock lets one spinner starve the other.
        "--fair-sched=yes",
        // Leaks are not soundness: a leaked buffer is what a failed device stop must do.
        "--leak-check=no",
    ])
    .arg(exe)
    .arg("--test-threads=2")
    .args(memcheck_filters(name))
    .env("PROPTEST_CASES", PROPTEST_CASES_UNDER_MEMCHECK);
    println!("==> memcheck {name}: {cmd:?}");
    match crate::test::run_streaming(&mut cmd, |_| {}) {
        Ok(s) if s.success() => {
            println!("memcheck {name} ... ok");
            true
        }
        Ok(s) if s.code() == Some(VALGRIND_ERROR_EXIT) => {
            eprintln!("memcheck {name} ... FAILED: memcheck reported errors (above)");
            false
        }
        Ok(s) => {
            eprintln!("memcheck {name} ... FAILED: a test failed under memcheck ({s})");
            false
        }
        Err(e) => {
            eprintln!("memcheck {name} ... FAILED: running valgrind: {e}");
            false
        }
    }
}

/// Builds the test binaries and runs each under memcheck.
pub fn run(cargo: &str) -> Outcome {
    let exes = match test_executables(cargo) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("xtask memcheck: {e}");
            return Outcome {
                failed: 1,
                ..Outcome::default()
            };
        }
    };
    let Some(valgrind) = valgrind() else {
        println!(
            "xtask memcheck: SKIPPED {} test binaries: valgrind is not installed (`cargo xtask vm setup` \
             installs it, or apt-get install valgrind)",
            exes.len()
        );
        return Outcome {
            skipped: exes.len() as u64,
            ..Outcome::default()
        };
    };
    let mut o = Outcome::default();
    for (name, exe) in &exes {
        if run_one(&valgrind, name, exe) {
            o.passed += 1;
        } else {
            o.failed += 1;
        }
    }
    println!(
        "memcheck: {} passed, {} failed, {} skipped (test binaries)",
        o.passed, o.failed, o.skipped
    );
    o
}

pub fn main(args: &[String]) -> ExitCode {
    if let Some(bad) = args.first() {
        eprintln!("usage: cargo xtask memcheck\nunknown argument `{bad}`");
        return ExitCode::from(2);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = run(&cargo);
    if o.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
