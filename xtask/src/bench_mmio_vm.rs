//! `cargo xtask bench mmio-vm`: how many register accesses our igb driver and DPDK's make per
//! forwarded packet, in the test VM, on the same ports and traffic.
//!
//! Under TCG the cost of a packet is mostly device emulation, and each MMIO access of a driver is
//! an exit into QEMU's device model (on real PCIe a read costs about a microsecond too). One boot
//! of the `quad` topology; each DUT in turn (crate::dut: our l2fwd, DPDK testpmd, io forwarding
//! between the two DUT ports, the forwarding core on vCPU 1) forwards `--count` 64-byte frames
//! that pktgen (vCPU 0) sends at `--rate`. Around pktgen's run the guest asks the QMP relay for
//! `trace-mmio on DUT` / `off` (QEMU's `memory_region_ops_read/_write` events into
//! `mmio-DUT.log` beside the run directory), so the trace holds what happened while the traffic
//! flowed. The host then counts the
//! accesses to the two DUT ports' BAR 0 (their ranges read from the guest's sysfs) made by vCPU 1,
//! divides by the frames the DUT forwarded (what pktgen received) and prints, per DUT, reads and
//! writes per packet and the registers most accessed (crate::mmio_count).

use std::process::ExitCode;
use std::time::Duration;

use crate::dut::{BenchPorts, Dut, WAIT_FOR_SH, build_examples};
use crate::mmio_count::{Bar, Counts};
use crate::vm::{GuestOptions, Paths, Topology, run_in_guest};

const USAGE: &str = "\
usage: cargo xtask bench mmio-vm [--count N] [--rate PPS] [--no-build]

  register accesses per forwarded packet of our l2fwd and of dpdk-testpmd on the test VM's igb
  DUT ports (QEMU's MMIO trace while pktgen's frames flow); prints both and the registers

  --count N    frames pktgen sends through each DUT (default 20000)
  --rate PPS   their rate (default 5000: well below what both forward under TCG)
  --no-build   use the release examples already built";

const TOPOLOGY: &str = "quad";
/// The vCPU the DUTs' forwarding core runs on (crate::dut).
const DUT_CPU: u32 = 1;
/// Registers listed per DUT.
const TOP: usize = 8;

#[derive(Debug, Clone, PartialEq)]
struct Opts {
    count: u64,
    rate: u64,
    build: bool,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        count: 20_000,
        rate: 5_000,
        build: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |what: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| format!("{what} needs a positive number\n{USAGE}"))
        };
        match a.as_str() {
            "--count" => o.count = num("--count")?,
            "--rate" => o.rate = num("--rate")?,
            "--no-build" => o.build = false,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
    Ok(o)
}

/// Shell: `qmp_req WORDS...` asks the QMP relay (docs/testvm.md) and waits for its answer.
const QMP_REQ_SH: &str = "qmp_req() { id=mmio-$$-$req_n; req_n=$((req_n+1)); d=$OXPMD_VM_RUN_DIR/qmp; \
     echo \"$*\" > $d/.req-$id.tmp && mv $d/.req-$id.tmp $d/req-$id; n=0; \
     while [ ! -f $d/resp-$id ]; do n=$((n+1)); [ $n -gt 200 ] && { echo \"bench: no QMP answer\"; return 1; }; \
     sleep 0.05; done; a=$(cat $d/resp-$id); rm -f $d/resp-$id; echo \"qmp $*: $a\"; [ \"$a\" = ok ]; }\n\
     req_n=0\n";

/// The guest script: the DUT ports' BAR 0, then each DUT with the trace around pktgen's run,
/// its trace renamed after it.
fn guest_script(o: &Opts, ports: &BenchPorts) -> String {
    let mut s = format!("set -u\n{WAIT_FOR_SH}{QMP_REQ_SH}");
    for d in &ports.dut {
        s.push_str(&format!(
            "echo \"bar0 {d} $(head -1 /sys/bus/pci/devices/{d}/resource)\"\n"
        ));
    }
    for dut in Dut::ALL {
        let traffic = format!(
            "qmp_req trace-mmio on {}\n\
             {} --count {} --rate {} --size 64 --drain 2\n\
             echo \"pktgen exit $?\"\n\
             qmp_req trace-mmio off",
            dut.name(),
            ports.pktgen_command(),
            o.count,
            o.rate
        );
        s.push_str(&format!("echo \"=== {}\"\n", dut.name()));
        s.push_str(&dut.session_sh(ports, &traffic));
    }
    s.push_str("echo \"=== end\"\n");
    s
}

/// The DUT ports' BAR 0 from the guest's `bar0 ADDR START END FLAGS` lines.
fn bars(output: &str) -> Vec<Bar> {
    output
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.strip_prefix("bar0 ")?.split_whitespace().collect();
            let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
            let (start, end) = (hex(w.get(1)?)?, hex(w.get(2)?)?);
            Some(Bar {
                label: w[0].to_string(),
                base: start,
                len: end.checked_sub(start)? + 1,
            })
        })
        .collect()
}

/// What pktgen received in the section of `dut` (`pktgen-result: ... received=N ...`).
fn received(output: &str, dut: Dut) -> Option<u64> {
    let marker = format!("=== {}", dut.name());
    let section = &output[output.find(&marker)?..];
    let section = section[marker.len()..].split("=== ").next().unwrap_or_default();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("pktgen-result: "))
        .flat_map(|l| l.split_whitespace())
        .find_map(|kv| kv.strip_prefix("received=")?.parse().ok())
}

/// The report of one DUT: accesses per forwarded packet and the registers most accessed.
fn report(dut: Dut, c: &Counts, forwarded: u64) -> String {
    let t = c.totals();
    let per = |n: u64| n as f64 / forwarded.max(1) as f64;
    let mut s = format!(
        "{:<13} {forwarded:>7} forwarded: {:.3} reads + {:.3} writes = {:.3} register accesses per packet \
         (vCPU {DUT_CPU}; {} more from other vCPUs)\n",
        dut.program(),
        per(t.reads),
        per(t.writes),
        per(t.reads + t.writes),
        c.other_cpus
    );
    for (name, n) in c.by_register().into_iter().take(TOP) {
        s.push_str(&format!(
            "    {name:<12} {:>9} reads {:>9} writes  ({:.3} per packet)\n",
            n.reads,
            n.writes,
            per(n.reads + n.writes)
        ));
    }
    s
}

pub fn main(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench mmio-vm: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(o: &Opts) -> Result<(), String> {
    let paths = Paths::new();
    if o.build {
        build_examples(&paths.workspace)?;
    }
    let ports = BenchPorts::by_role(&Topology::by_name(TOPOLOGY)?)?;
    println!(
        "bench mmio-vm: {TOPOLOGY} topology; guest commands (in {}):",
        paths.workspace.display()
    );
    for dut in Dut::ALL {
        println!("  DUT {}: {}", dut.name(), dut.command(&ports));
    }
    println!(
        "  pktgen: {} --count {} --rate {} --size 64 --drain 2, between `trace-mmio on` and `off`",
        ports.pktgen_command(),
        o.count,
        o.rate
    );
    let opts = GuestOptions {
        timeout: Duration::from_secs(600 + 4 * o.count / o.rate),
        cwd: Some(paths.workspace.clone()),
        echo: true,
        shell: true,
        label: "bench-mmio-vm".into(),
        ..GuestOptions::default()
    };
    let out = run_in_guest(TOPOLOGY, &[guest_script(o, &ports)], &opts)?;
    let bars = bars(&out.output);
    if bars.len() != 2 {
        return Err(format!(
            "the guest gave {} BAR 0 ranges of the DUT ports, not 2",
            bars.len()
        ));
    }
    println!("\nbench mmio-vm: DUT ports' BAR 0: {bars:?}");
    for dut in Dut::ALL {
        let trace_file = crate::vm::mmio_trace_path(&out.run_dir, dut.name());
        let trace = std::fs::read_to_string(&trace_file).map_err(|e| {
            format!(
                "{}: {e} (did the guest's trace-mmio requests work?)",
                trace_file.display()
            )
        })?;
        if trace.lines().any(|l| l == crate::vm::MMIO_TRACE_CUT) {
            return Err(format!(
                "{}: the harness stopped this trace at its size limit ({} bytes), so its counts \
                 are partial: measure a shorter window",
                trace_file.display(),
                crate::vm::MMIO_TRACE_MAX_BYTES
            ));
        }
        let forwarded = received(&out.output, dut)
            .ok_or_else(|| format!("no pktgen result in the {} section", dut.name()))?;
        let counts = Counts::from_trace(&trace, &bars, DUT_CPU);
        let t = counts.totals();
        if t.reads + t.writes == 0 {
            return Err(format!(
                "{}: no access to the DUT ports' registers in {} ({} bytes): was the trace on \
                 while pktgen ran? (the guest's `qmp trace-mmio` lines above say)",
                dut.program(),
                trace_file.display(),
                trace.len()
            ));
        }
        print!("{}", report(dut, &counts, forwarded));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        assert_eq!(
            parse(&[]).unwrap(),
            Opts {
                count: 20_000,
                rate: 5_000,
                build: true
            }
        );
        let a: Vec<String> = ["--count", "100", "--rate", "7", "--no-build"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            parse(&a).unwrap(),
            Opts {
                count: 100,
                rate: 7,
                build: false
            }
        );
        assert!(parse(&["--rate".into(), "0".into()]).is_err());
        assert!(parse(&["--bogus".into()]).is_err());
    }

    #[test]
    fn the_script_traces_each_dut_around_pktgen() {
        let ports = BenchPorts::by_role(&Topology::by_name(TOPOLOGY).unwrap()).unwrap();
        let s = guest_script(&parse(&[]).unwrap(), &ports);
        assert_eq!(s.matches("qmp_req trace-mmio on ").count(), 2);
        assert_eq!(s.matches("qmp_req trace-mmio off").count(), 2);
        let on = s.find("trace-mmio on").unwrap();
        let pktgen = s[on..].find("examples/pktgen").unwrap() + on;
        let off = s[on..].find("trace-mmio off").unwrap() + on;
        assert!(on < pktgen && pktgen < off);
        assert!(s.contains("trace-mmio on ours") && s.contains("trace-mmio on dpdk"));
        assert!(s.contains("/sys/bus/pci/devices/0000:00:0a.0/resource"));
    }

    #[test]
    fn reads_the_bars_and_the_forwarded_counts() {
        let out = "bar0 0000:00:0a.0 0x00000000fe800000 0x00000000fe81ffff 0x0000000000040200\n\
                   bar0 0000:00:0c.0 0x00000000fe840000 0x00000000fe85ffff 0x0000000000040200\n\
                   === ours\npktgen-result: sent=100 received=98 lost=2\n\
                   === dpdk\npktgen-result: sent=100 received=100 lost=0\n=== end\n";
        let b = bars(out);
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].base, b[0].len), (0xfe80_0000, 0x2_0000));
        assert_eq!(received(out, Dut::Ours), Some(98));
        assert_eq!(received(out, Dut::Dpdk), Some(100));
    }
}
