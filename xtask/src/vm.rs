//! `cargo xtask vm ...`: the test VM (see docs/testvm.md).
//!
//! - `setup`: host packages, the Debian 6.12 guest kernel and the initramfs (cached under target/testvm/).
//! - `run [--topology NAME] [--timeout SECS] [--results DIR] -- CMD...`: one command in a fresh VM.
//! - `test [--topology NAME] [-p PKG] [FILTER]`: every `vm_*` integration test binary, one VM each.
//! - `dpdk [--topology NAME] [--duration SECS] -- ARGS`: DPDK testpmd on the topology's ports.
//! - `stall-stress [--thread ..] [--smp N] ...`: boots with one machine variant, counting frozen guests.
//!
//! Other xtask modules run commands in the guest through [`run_in_guest`].

mod console;
mod dpdk;
mod freeze;
mod guest;
mod host_link;
mod launch;
mod qmp;
pub(crate) mod setup;
mod stall;
mod tests;
mod topology;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

pub(crate) use launch::shell_quote;
pub use qmp::{MMIO_TRACE_CUT, MMIO_TRACE_MAX_BYTES, mmio_trace_path};
pub use topology::Topology;

const USAGE: &str = "\
usage: cargo xtask vm <command> ...
  setup                          install QEMU (>= 8.1, igb), busybox-static, cpio, dpdk; fetch the guest
                                 kernel; build the initramfs (cached under target/testvm/)
  run [OPTIONS] -- CMD...        run CMD as root in a fresh VM (host root shared read-only, same cwd)
      --topology NAME            pair (default), quad or virtio
      --timeout SECS             kill the VM after SECS (default 600)
      --results DIR              writable share, mounted at the same path in the guest
      --shell                    run CMD as a shell script (`sh -c \"CMD...\"`)
      --verbose                  show the boot console too
  test [OPTIONS] [FILTER]        build the vm_* integration tests and run each binary in its own VM;
                                 FILTER picks binaries by name, else tests by name
      --topology NAME            override the topology the test files declare
      -p, --package PKG          only this package's tests (repeatable)
      --timeout SECS             per binary (default 900)
      --repeat N                 run the selection N times (1..=100), then a flake count per binary
      --verbose                  show the boot console too
  dpdk [OPTIONS] [-- ARGS]       dpdk-testpmd on the topology's ports (bound to vfio-pci)
      --topology NAME            default pair
      --duration SECS            stop testpmd with SIGINT after SECS (default 20)
      --ports 0,1                port indices to give testpmd (default: all of the topology)
      --timeout SECS             kill the VM after SECS (default: duration + 300)
      ARGS                       testpmd application arguments (default:
                                 --forward-mode=io --tx-first --auto-start --stats-period 5)
  stall-stress [OPTIONS]         boot the VM N times with one machine variant (TCG thread mode, CPU,
                                 -smp, -icount, clocksource) and count frozen guests (--help)
  topologies                     list the topologies and their ports";

/// Where the harness keeps its files.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The workspace root.
    pub workspace: PathBuf,
    /// `target/testvm` (or `$CARGO_TARGET_DIR/testvm`, or `$OXPMD_VM_DIR`: another guest kernel's
    /// set-up beside the usual one, see docs/testvm.md).
    pub testvm: PathBuf,
}

impl Paths {
    /// Paths of this workspace.
    pub fn new() -> Paths {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { workspace.join(t) })
            .unwrap_or_else(|| workspace.join("target"));
        // Relative to the workspace when relative (as CARGO_TARGET_DIR above), never ignored: a
        // set-up meant for another kernel must not land in the usual directory.
        let testvm = std::env::var_os("OXPMD_VM_DIR")
            .map(PathBuf::from)
            .map(|d| if d.is_absolute() { d } else { workspace.join(d) })
            .unwrap_or_else(|| target.join("testvm"));
        Paths { workspace, testvm }
    }

    /// The guest kernel image.
    pub fn kernel(&self) -> PathBuf {
        self.testvm.join("vmlinuz")
    }

    /// The initramfs archive.
    pub fn initramfs(&self) -> PathBuf {
        self.testvm.join("initramfs.cpio")
    }
}

impl Default for Paths {
    fn default() -> Self {
        Paths::new()
    }
}

/// How to run a command in the guest.
#[derive(Clone, Debug)]
pub struct GuestOptions {
    /// Kill the VM after this long (boot included).
    pub timeout: Duration,
    /// A host directory shared writable, mounted at the same path in the guest.
    pub results: Option<PathBuf>,
    /// Working directory of the command (default: the current directory).
    pub cwd: Option<PathBuf>,
    /// Extra environment variables for the command.
    pub env: Vec<(String, String)>,
    /// Print the command's output as it comes (it is captured in [`GuestOutput::output`] either way).
    pub echo: bool,
    /// Also print the boot console.
    pub verbose: bool,
    /// Run the words of the command as one `sh -c` script.
    pub shell: bool,
    /// Names the run directory (`target/testvm/runs/<label>-<id>`).
    pub label: String,
    /// The emulated machine's CPU, clock and accelerator settings (the stall study varies them).
    pub machine: Machine,
}

/// The settings of the emulated machine that bear on guest timers under TCG (docs/testvm.md, the
/// stall table). `Machine::default()` is the harness default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// `-accel tcg,thread=`: `multi` (one host thread per vCPU) or `single` (round-robin).
    pub tcg_thread: String,
    /// `-cpu`.
    pub cpu: String,
    /// `-smp`.
    pub cpus: u32,
    /// `-icount` (e.g. `shift=auto`), none by default.
    pub icount: Option<String>,
    /// `clocksource=` on the kernel command line, none (the kernel's choice) by default.
    pub clocksource: Option<String>,
    /// More kernel command-line words (e.g. `nohz=off`), none by default.
    pub append: Option<String>,
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            tcg_thread: "multi".into(),
            cpu: "max".into(),
            cpus: 2,
            icount: None,
            clocksource: None,
            append: None,
        }
    }
}

impl Default for GuestOptions {
    fn default() -> Self {
        GuestOptions {
            timeout: Duration::from_secs(600),
            results: None,
            cwd: None,
            env: Vec::new(),
            echo: false,
            verbose: false,
            shell: false,
            label: "run".into(),
            machine: Machine::default(),
        }
    }
}

/// What a guest command did.
#[derive(Clone, Debug)]
pub struct GuestOutput {
    /// The command's exit code (125: it could not be started, e.g. a missing working directory).
    pub exit_code: i32,
    /// Its stdout and stderr, interleaved as the serial console carried them, `\n` line ends.
    pub output: String,
    /// From QEMU's start to the command's start.
    pub boot_to_command: Duration,
    /// From QEMU's start to its exit.
    pub total: Duration,
    /// The run directory on the host: cmd.sh, console.log, dmesg.txt, qemu-args.txt.
    pub run_dir: PathBuf,
    /// The guest's kernel log after the command.
    #[allow(dead_code, reason = "for callers of run_in_guest")]
    pub dmesg: Option<String>,
}

/// Boots a fresh test VM with `topology` ("pair", "quad", "virtio"), runs `cmd` (program and arguments,
/// or a shell script with `opts.shell`) as root in the chroot of the host root, and returns its output and
/// exit code. Errors: setup missing, QEMU failed, the guest hung (timeout), the init failed.
#[allow(dead_code, reason = "the API other xtask modules (bench) call")]
pub fn run_in_guest(topology: &str, cmd: &[String], opts: &GuestOptions) -> Result<GuestOutput, String> {
    let topology = Topology::by_name(topology)?;
    let paths = Paths::new();
    setup::check_ready(&paths)?;
    guest::run(&paths, &topology, cmd, opts)
}

/// Runs `cmd`, inheriting stdout/stderr, and turns failure into an error naming `what`.
pub(crate) fn run_checked(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Parses `--name VALUE` / `--name=VALUE` options until `--` or a positional argument.
struct Args<'a> {
    rest: &'a [String],
}

impl<'a> Args<'a> {
    fn next_opt(&mut self) -> Option<&'a str> {
        let (first, rest) = self.rest.split_first()?;
        if first.starts_with('-') && first != "--" {
            self.rest = rest;
            Some(first.as_str())
        } else {
            None
        }
    }

    fn value(&mut self, opt: &str) -> Result<&'a str, String> {
        let (first, rest) = self
            .rest
            .split_first()
            .ok_or_else(|| format!("{opt} needs a value"))?;
        self.rest = rest;
        Ok(first)
    }

    /// The value of `opt`: given inline (`--opt=value`) or the next word.
    fn value_or(&mut self, opt: &str, inline: Option<&str>) -> Result<String, String> {
        match inline {
            Some(v) => Ok(v.to_string()),
            None => self.value(opt).map(str::to_string),
        }
    }

    /// The words after an optional `--`.
    fn trailing(&self) -> &'a [String] {
        match self.rest.split_first() {
            Some((d, rest)) if d == "--" => rest,
            _ => self.rest,
        }
    }
}

fn parse_secs(opt: &str, v: &str) -> Result<Duration, String> {
    v.parse::<u64>()
        .ok()
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{opt}: expected a positive number of seconds, got {v:?}"))
}

/// Splits `--opt=value` into (`--opt`, Some(value)).
fn split_eq(opt: &str) -> (&str, Option<&str>) {
    match opt.split_once('=') {
        Some((o, v)) if o.starts_with("--") => (o, Some(v)),
        _ => (opt, None),
    }
}

/// Entry point of `cargo xtask vm`.
pub fn main(args: &[String]) -> ExitCode {
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "setup" => setup::setup(&Paths::new()).map(|()| ExitCode::SUCCESS),
        "run" => cmd_run(rest),
        "test" => tests::cmd_test(rest),
        "dpdk" => dpdk::cmd_dpdk(rest),
        "stall-stress" => stall::cmd_stall_stress(rest),
        "topologies" => {
            for name in topology::NAMES {
                if let Ok(t) = Topology::by_name(name) {
                    print!("{}", t.describe());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown vm command `{other}`\n{USAGE}")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask vm {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Turns a guest exit code into this process's exit code.
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn cmd_run(rest: &[String]) -> Result<ExitCode, String> {
    let mut args = Args { rest };
    let mut topology = "pair".to_string();
    let mut opts = GuestOptions {
        echo: true,
        timeout: Duration::from_secs(600),
        ..GuestOptions::default()
    };
    while let Some(raw) = args.next_opt() {
        let (opt, inline) = split_eq(raw);
        match opt {
            "--topology" => topology = args.value_or(opt, inline)?,
            "--timeout" => opts.timeout = parse_secs(opt, &args.value_or(opt, inline)?)?,
            "--results" => opts.results = Some(PathBuf::from(args.value_or(opt, inline)?)),
            "--shell" => opts.shell = true,
            "--verbose" | "-v" => opts.verbose = true,
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    let cmd = args.trailing();
    if cmd.is_empty() {
        return Err(format!("no command given\n{USAGE}"));
    }
    let topo = Topology::by_name(&topology)?;
    print!("{}", topo.describe());
    let paths = Paths::new();
    setup::check_ready(&paths)?;
    let out = guest::run(&paths, &topo, cmd, &opts)?;
    println!(
        "vm: exit code {} (boot to command {:.1} s, total {:.1} s; logs in {})",
        out.exit_code,
        out.boot_to_command.as_secs_f64(),
        out.total.as_secs_f64(),
        out.run_dir.display()
    );
    Ok(exit_code(out.exit_code))
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn options_and_trailing_command() {
        let v: Vec<String> = ["--topology", "quad", "--timeout=5", "--", "ls", "-l"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut a = Args { rest: &v };
        assert_eq!(a.next_opt(), Some("--topology"));
        assert_eq!(a.value("--topology").unwrap(), "quad");
        assert_eq!(split_eq(a.next_opt().unwrap()), ("--timeout", Some("5")));
        assert_eq!(a.next_opt(), None);
        assert_eq!(a.trailing(), ["ls", "-l"]);
    }

    #[test]
    fn seconds_must_be_positive() {
        assert!(parse_secs("--timeout", "0").is_err());
        assert!(parse_secs("--timeout", "x").is_err());
        assert_eq!(parse_secs("--timeout", "7").unwrap(), Duration::from_secs(7));
    }

    #[test]
    fn exit_codes_map_to_u8() {
        assert_eq!(exit_code(3), ExitCode::from(3));
        assert_eq!(exit_code(-1), ExitCode::from(1));
    }
}
