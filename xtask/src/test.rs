//! `cargo xtask test`: the project's whole test suite, the command the README and `.ci/run` give.
//!
//! 1. `cargo test --workspace` (unit and integration tests; VM tests are listed as ignored there);
//! 2. the loom model test of the ring's multi-producer / multi-consumer paths;
//! 3. `cargo xtask vm test`: every `vm_*` test binary in the test VM.
//!
//! Each step's output streams through; the libtest summaries are added up into one closing line
//! `tests: N passed, M failed`.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Tally {
    /// Adds a libtest summary line (`test result: ok. 3 passed; 0 failed; 1 ignored; ...`) or the
    /// VM harness's `vm tests: N passed, M failed`.
    fn add_line(&mut self, line: &str) {
        let line = line.trim();
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
                    "ignored" => self.ignored += n,
                    _ => {}
                }
            }
        }
    }
}

/// Runs `cmd`, streaming its stdout and stderr, counting libtest summaries; true when it exited 0.
fn run_step(name: &str, cmd: &mut Command, tally: &mut Tally) -> bool {
    println!("==> {name}: {cmd:?}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask test: cannot start {name}: {e}");
            return false;
        }
    };
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            tally.add_line(&line);
        }
    }
    match child.wait() {
        Ok(status) if status.success() => true,
        Ok(status) => {
            eprintln!("xtask test: {name} failed ({status})");
            false
        }
        Err(e) => {
            eprintln!("xtask test: waiting for {name}: {e}");
            false
        }
    }
}

pub fn main(args: &[String]) -> ExitCode {
    let skip_vm = args.iter().any(|a| a == "--no-vm");
    if let Some(bad) = args.iter().find(|a| *a != "--no-vm") {
        eprintln!("usage: cargo xtask test [--no-vm]\nunknown argument `{bad}`");
        return ExitCode::from(2);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut tally = Tally::default();
    let mut ok = true;

    ok &= run_step(
        "unit and integration tests",
        Command::new(&cargo).args(["test", "--workspace", "--no-fail-fast"]),
        &mut tally,
    );
    ok &= run_step(
        "loom model test of the ring",
        Command::new(&cargo)
            .args(["test", "-p", "oxpmd-dma", "--release", "--test", "loom_ring"])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", "target/loom"),
        &mut tally,
    );
    if skip_vm {
        println!("==> VM tests skipped (--no-vm)");
    } else {
        ok &= run_step(
            "VM tests",
            Command::new(&cargo).args(["xtask", "vm", "test"]),
            &mut tally,
        );
    }
    println!(
        "tests: {} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.ignored
    );
    if ok && tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn adds_libtest_summaries() {
        let mut t = Tally::default();
        t.add_line(
            "test result: ok. 12 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        );
        t.add_line("test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out");
        t.add_line("running 3 tests");
        assert_eq!((t.passed, t.failed, t.ignored), (13, 2, 3));
    }
}
