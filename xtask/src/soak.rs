//! `cargo xtask soak --minutes N`: a bounded soak in the test VM (topology `quad`; docs/testvm.md,
//! "Soak").
//!
//! The host builds the programs and boots one VM; in it this same xtask binary runs the soak
//! (`soak-guest`, [`guest`]): l2fwd between two pktgen streams, a VF of a userspace PF (`oxpmd
//! sriov serve`) forwarding a third, a hostile VF storming its mailbox, a PF service restart and a
//! VF process restart every few minutes, then a line per phase, the processes' memory, the buffer
//! checks and the IOMMU faults. `cargo xtask test` runs a 2-minute soak as one test.

mod guest;
mod proc;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use crate::vm::{GuestOptions, Paths, run_in_guest};

pub use guest::main as guest_main;

/// The soak's length when `--minutes` is not given.
const DEFAULT_MINUTES: u64 = 10;
/// The soak `cargo xtask test` runs.
pub const CI_MINUTES: u64 = 2;
/// Boot, set-up and shut-down time allowed on top of the soak's own minutes.
const GUEST_OVERHEAD: Duration = Duration::from_secs(600);

const USAGE: &str = "\
usage: cargo xtask soak [--minutes N] [--dev]
  l2fwd between pktgen streams, a VF forwarding through the userspace PF service, a hostile VF
  storming its mailbox, PF service and VF process restarts, for N minutes (1..=600, default 10)
  in the test VM; a line per phase, memory, buffers and IOMMU faults at the end; the exit status
  is non-zero on any loss outside a restart window, a leak, memory growth or an IOMMU fault.
  --dev: the programs built with the dev profile instead of --release";

/// What a soak run gave, as `cargo xtask test` counts it (one test).
pub struct Outcome {
    pub passed: bool,
}

/// How the soak's programs are built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Build {
    /// `--release`: what applications run (`cargo xtask soak` by default).
    Release,
    /// The dev profile that `cargo test` already built (the CI soak: it checks loss, leaks and
    /// memory at 500 frames/s, not speed, and a release build would add minutes to CI).
    Dev,
}

impl Build {
    /// The cargo profile directory under target/.
    fn dir(self) -> &'static str {
        match self {
            Build::Release => "release",
            Build::Dev => "debug",
        }
    }
}

fn parse(args: &[String]) -> Result<(u64, Build), String> {
    let mut minutes = DEFAULT_MINUTES;
    let mut build = Build::Release;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = match a.split_once('=') {
            Some(("--minutes", v)) => Some(v.to_string()),
            _ if a == "--minutes" => it.next().cloned(),
            _ if a == "--dev" => {
                build = Build::Dev;
                continue;
            }
            _ if a == "-h" || a == "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument `{a}`")),
        };
        minutes = v
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|m| (1..=600).contains(m))
            .ok_or_else(|| format!("--minutes: expected 1..=600, got {v:?}"))?;
    }
    Ok((minutes, build))
}

/// Entry point of `cargo xtask soak`.
pub fn main(args: &[String]) -> ExitCode {
    match parse(args) {
        Ok((minutes, build)) => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            if run(&cargo, minutes, build).passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            if !e.is_empty() {
                eprintln!("xtask soak: {e}");
            }
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Builds the programs the soak runs, boots the VM and runs it for `minutes`.
pub fn run(cargo: &str, minutes: u64, build: Build) -> Outcome {
    match try_run(cargo, minutes, build) {
        Ok(passed) => Outcome { passed },
        Err(e) => {
            eprintln!("xtask soak: {e}");
            Outcome { passed: false }
        }
    }
}

fn try_run(cargo: &str, minutes: u64, build: Build) -> Result<bool, String> {
    println!(
        "==> soak: building l2fwd, pktgen, vf-mailbox-storm and the oxpmd tool ({})",
        build.dir()
    );
    // One cargo invocation: the examples' dev-dependencies then unify features once, and the
    // libraries are not built a second time for the tool.
    let mut cmd = Command::new(cargo);
    cmd.arg("build");
    if build == Build::Release {
        cmd.arg("--release");
    }
    cmd.args([
        "--example",
        "l2fwd",
        "--example",
        "pktgen",
        "--example",
        "vf-mailbox-storm",
        "--bin",
        "oxpmd",
    ]);
    crate::vm::run_checked(&mut cmd, "building the soak's programs")?;
    let paths = Paths::new();
    let bin_dir = paths
        .testvm
        .parent()
        .map(|t| t.join(build.dir()))
        .unwrap_or_else(|| PathBuf::from("target").join(build.dir()));
    let xtask = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let cmd: Vec<String> = vec![
        xtask.display().to_string(),
        "soak-guest".into(),
        "--minutes".into(),
        minutes.to_string(),
        "--bin".into(),
        bin_dir.display().to_string(),
    ];
    println!("==> soak: booting the test VM (topology quad) for a {minutes}-minute soak");
    let opts = GuestOptions {
        timeout: Duration::from_secs(minutes * 60) + GUEST_OVERHEAD,
        echo: true,
        label: "soak".into(),
        ..GuestOptions::default()
    };
    let out = run_in_guest("quad", &cmd, &opts)?;
    println!(
        "==> soak: guest finished: exit {} (boot to command {:.1} s, total {:.1} min; logs in {})",
        out.exit_code,
        out.boot_to_command.as_secs_f64(),
        out.total.as_secs_f64() / 60.0,
        out.run_dir.display()
    );
    Ok(out.exit_code == 0)
}

#[cfg(test)]
mod tests {
    use super::{Build, parse};

    #[test]
    fn minutes_are_bounded() {
        let a = |v: &[&str]| parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(a(&[]).unwrap(), (10, Build::Release));
        assert_eq!(a(&["--minutes", "2"]).unwrap(), (2, Build::Release));
        assert_eq!(a(&["--minutes=3", "--dev"]).unwrap(), (3, Build::Dev));
        assert!(a(&["--minutes", "0"]).is_err());
        assert!(a(&["--minutes", "601"]).is_err());
        assert!(a(&["--minutes"]).is_err());
        assert!(a(&["--seconds", "3"]).is_err());
    }
}
