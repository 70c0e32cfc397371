//! `cargo xtask vm stall-stress`: boots the test VM again and again with one machine variant and
//! counts the boots whose guest froze (a halted vCPU whose timer never fires under TCG; see
//! docs/testvm.md, "Frozen guests" and the stall table).
//!
//! Each boot runs a short workload of the kind the freezes followed in suite runs: the RX
//! interrupt test binary (interrupt-mode waits with idle gaps between bursts), l2fwd in
//! `--rx-interrupt` mode idle (its worker asleep on the MSI-X vectors), then a few seconds of
//! pktgen traffic between the pair's ports. Boots run one after another, never two at once, and
//! without the harness's reruns: every boot is one sample. One line per boot goes to stdout and
//! to the raw log (appended), then a summary line with the exact QEMU and kernel options.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use super::topology::Topology;
use super::{Args, GuestOptions, Machine, Paths, guest, parse_secs, setup, split_eq};

pub const USAGE: &str = "\
usage: cargo xtask vm stall-stress [OPTIONS]
  --boots N              boots to run, one at a time (default 30)
  --thread multi|single  -accel tcg,thread= (default multi)
  --cpu MODEL            -cpu (default max)
  --smp N                -smp (default 2)
  --icount OPTS          -icount OPTS, e.g. shift=auto (default: none)
  --clocksource NAME     guest clocksource= (tsc, hpet, acpi_pm; default: the kernel's choice)
  --append WORDS         more guest kernel command line (e.g. nohz=off)
  --idle SECS            how long l2fwd --rx-interrupt sits idle in each boot (default 20)
  --log FILE             raw log, appended (default target/stall-stress.log)
  --timeout SECS         per boot (default 420)";

/// How one boot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The workload finished, passing, and the kernel reported no stall.
    Ok,
    /// The workload finished, but the kernel reported an RCU stall on the way (a freeze that
    /// thawed).
    StallThawed,
    /// The harness found the guest frozen (or stuck in boot) and killed it.
    Frozen,
    /// The workload failed without a freeze (a different problem: reported, not counted as one).
    Failed,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::StallThawed => "stall-thawed",
            Outcome::Frozen => "FROZEN",
            Outcome::Failed => "failed",
        }
    }
}

struct Options {
    boots: u32,
    machine: Machine,
    idle: u64,
    log: PathBuf,
    timeout: Duration,
}

fn parse(rest: &[String], paths: &Paths) -> Result<Options, String> {
    let mut o = Options {
        boots: 30,
        machine: Machine::default(),
        idle: 20,
        log: paths
            .testvm
            .parent()
            .map(|t| t.join("stall-stress.log"))
            .unwrap_or_else(|| PathBuf::from("stall-stress.log")),
        timeout: Duration::from_secs(420),
    };
    let mut args = Args { rest };
    while let Some(raw) = args.next_opt() {
        let (opt, inline) = split_eq(raw);
        if opt == "--help" || opt == "-h" {
            return Err(USAGE.into());
        }
        let v = args.value_or(opt, inline)?;
        let num = |lo: u64, hi: u64| -> Result<u64, String> {
            v.parse::<u64>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| format!("{opt}: expected {lo}..={hi}, got {v:?}"))
        };
        match opt {
            "--boots" => o.boots = num(1, 10_000)? as u32,
            "--thread" if v == "multi" || v == "single" => o.machine.tcg_thread = v,
            "--thread" => return Err(format!("--thread: multi or single, got {v:?}")),
            "--cpu" => o.machine.cpu = v,
            "--smp" => o.machine.cpus = num(1, 8)? as u32,
            "--icount" => o.machine.icount = Some(v),
            "--clocksource" => o.machine.clocksource = Some(v),
            "--append" => o.machine.append = Some(v),
            "--idle" => o.idle = num(1, 600)?,
            "--log" => o.log = PathBuf::from(v),
            "--timeout" => o.timeout = parse_secs(opt, &v)?,
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if !args.trailing().is_empty() {
        return Err(format!("unexpected arguments {:?}\n{USAGE}", args.trailing()));
    }
    Ok(o)
}

/// The variant's options as they reach QEMU and the kernel: the table's row.
fn describe(m: &Machine) -> String {
    let mut s = format!(
        "-accel tcg,thread={} -cpu {} -smp {}",
        m.tcg_thread, m.cpu, m.cpus
    );
    if let Some(ic) = &m.icount {
        s.push_str(&format!(" -icount {ic}"));
    }
    match &m.clocksource {
        Some(cs) => s.push_str(&format!(" clocksource={cs}")),
        None => s.push_str(" (kernel's clocksource)"),
    }
    if let Some(more) = &m.append {
        s.push_str(&format!(" {more}"));
    }
    s
}

/// Builds the workload's binaries and returns the RX interrupt test executable.
fn build(cargo: &str) -> Result<PathBuf, String> {
    super::run_checked(
        Command::new(cargo).args(["build", "--release", "--example", "l2fwd", "--example", "pktgen"]),
        "building l2fwd and pktgen",
    )?;
    let out = Command::new(cargo)
        .args([
            "test",
            "-p",
            "oxpmd-pmd",
            "--test",
            "vm_rx_interrupt",
            "--no-run",
            "--message-format=json",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {cargo}: {e}"))?;
    if !out.status.success() {
        return Err(format!("building vm_rx_interrupt failed ({})", out.status));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "vm_rx_interrupt")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo named no vm_rx_interrupt executable".into())
}

/// The guest script of one boot. Exits non-zero when a step fails. The traffic's loss is printed,
/// not checked: on one vCPU pktgen's own workers drop frames, and a freeze is what is counted.
fn workload(paths: &Paths, rx_interrupt_test: &std::path::Path, idle: u64) -> String {
    let target = paths
        .testvm
        .parent()
        .map(|t| t.display().to_string())
        .unwrap_or_default();
    format!(
        r#"set -u
rc=0
{test} --ignored --test-threads=1 > /tmp/rxi.log 2>&1 || {{ rc=1; cat /tmp/rxi.log; }}
tail -n 2 /tmp/rxi.log
# One vCPU: one worker polls (and sleeps on) both ports.
q=1; [ "$(nproc)" -ge 2 ] || q=2
{target}/release/examples/l2fwd --port "$OXPMD_PORT0" --port "$OXPMD_PORT1" -q $q -P --rx-interrupt --duration {idle} -T 0 > /tmp/l2fwd.log 2>&1 || {{ rc=1; cat /tmp/l2fwd.log; }}
grep "slept" /tmp/l2fwd.log
{target}/release/examples/pktgen --tx-port "$OXPMD_PORT0" --rx-port "$OXPMD_PORT1" --rate 5000 --count 25000 --drain 2 > /tmp/pktgen.log 2>&1 || {{ rc=1; cat /tmp/pktgen.log; }}
grep "^pktgen-result:" /tmp/pktgen.log | cut -c1-160
exit $rc
"#,
        test = rx_interrupt_test.display(),
    )
}

/// Entry point of `cargo xtask vm stall-stress`.
pub fn cmd_stall_stress(rest: &[String]) -> Result<ExitCode, String> {
    let paths = Paths::new();
    let o = parse(rest, &paths)?;
    setup::check_ready(&paths)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let test = build(&cargo)?;
    let script = workload(&paths, &test, o.idle);
    let topo = Topology::by_name("pair")?;
    let variant = describe(&o.machine);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&o.log)
        .map_err(|e| format!("open {}: {e}", o.log.display()))?;
    let mut say = |line: &str| {
        println!("{line}");
        let _ = writeln!(log, "{line}");
    };
    say(&format!("stall-stress: start {} boots of [{variant}]", o.boots));
    let mut counts = [0u32; 4];
    let started = Instant::now();
    for boot in 1..=o.boots {
        let opts = GuestOptions {
            timeout: o.timeout,
            shell: true,
            label: "stall".into(),
            machine: o.machine.clone(),
            ..GuestOptions::default()
        };
        let t = Instant::now();
        let (outcome, detail, run_dir) =
            match guest::run_once(&paths, &topo, std::slice::from_ref(&script), &opts) {
                Ok(out) => {
                    let console =
                        std::fs::read_to_string(out.run_dir.join("console.log")).unwrap_or_default();
                    let outcome = if guest::has_stall_report(&console) {
                        Outcome::StallThawed
                    } else if out.exit_code == 0 {
                        Outcome::Ok
                    } else {
                        Outcome::Failed
                    };
                    let detail = format!(
                        "exit {} boot {:.1} s",
                        out.exit_code,
                        out.boot_to_command.as_secs_f64()
                    );
                    if outcome == Outcome::Failed {
                        eprintln!("{}", out.output);
                    }
                    (outcome, detail, out.run_dir.display().to_string())
                }
                Err(e) if guest::is_freeze(&e) => {
                    let first = e.lines().next().unwrap_or_default().to_string();
                    let dir = first
                        .rsplit_once("Console log: ")
                        .map(|(_, p)| p.trim_end_matches("/console.log").to_string())
                        .unwrap_or_default();
                    (Outcome::Frozen, first, dir)
                }
                Err(e) => return Err(format!("boot {boot}: {e}")),
            };
        counts[outcome as usize] += 1;
        say(&format!(
            "stall-stress: boot {boot}/{} {} ({detail}; {:.0} s) [{variant}] {run_dir}",
            o.boots,
            outcome.name(),
            t.elapsed().as_secs_f64()
        ));
    }
    let [ok, thawed, frozen, failed] = counts;
    let freezes = thawed + frozen;
    say(&format!(
        "stall-stress: [{variant}] boots {}, frozen {frozen}, stall-thawed {thawed}, failed (no freeze) {failed}, \
         ok {ok}: freeze rate {:.1}% ({:.1} min)",
        o.boots,
        100.0 * f64::from(freezes) / f64::from(o.boots),
        started.elapsed().as_secs_f64() / 60.0
    ));
    Ok(if freezes + failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn variant_options_reach_the_machine() {
        let p = Paths::new();
        let o = parse(
            &args(&[
                "--thread",
                "single",
                "--smp=1",
                "--icount",
                "shift=auto",
                "--clocksource",
                "hpet",
            ]),
            &p,
        )
        .unwrap();
        assert_eq!(o.machine.tcg_thread, "single");
        assert_eq!(o.machine.cpus, 1);
        assert_eq!(
            describe(&o.machine),
            "-accel tcg,thread=single -cpu max -smp 1 -icount shift=auto clocksource=hpet"
        );
        assert!(parse(&args(&["--thread", "many"]), &p).is_err());
        assert!(parse(&args(&["--smp", "0"]), &p).is_err());
    }
}
