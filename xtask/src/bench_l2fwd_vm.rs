//! `cargo xtask bench l2fwd-vm`: our l2fwd against DPDK 22.11 `dpdk-testpmd` io forwarding in the
//! test VM, one after the other in the same VM, for two rows (`--rows`, default both), each in its
//! own VM boot:
//! - `igb`: the `quad` topology; the DUT ports are two emulated 82576 (igb) ports.
//! - `virtio`: the `virtio` topology; DUT port 0 is igb port 1 (linked to pktgen port A = igb 0),
//!   DUT port 1 is the virtio-net port 3 (linked to pktgen port B = igb 2). One DUT process drives
//!   both drivers: ours with one VFIO container and one mempool, DPDK with its igb and virtio PMDs.
//!
//! The traffic is identical for both, from the same generator: our `pktgen` (release build) sends
//! 64-byte UDP frames for `--duration` seconds from pktgen port A into DUT port 0, at each offered
//! rate of `--rates` (frames per second, or `max`: as fast as the generator can; default 50000 and max); the DUT forwards
//! them to DUT port 1, linked to pktgen port B, where pktgen counts and checks what arrives. Each
//! DUT forwards in io mode (no MAC rewrite: l2fwd `--no-mac-updating`, testpmd
//! `--forward-mode=io`) with bursts of 32 and 1024 RX / 1024 TX descriptors per port, one
//! forwarding core polling both ports: vCPU 1 (l2fwd `-q 2 --cores 1`; testpmd `-l 0,1`, whose
//! forwarding lcore is 1); pktgen's TX and RX threads are pinned to vCPU 0 in both runs. The frames
//! are addressed to DUT port 0's MAC, so neither DUT needs promiscuous mode to accept them
//! (testpmd turns it on anyway). Each DUT is started afresh for each rate and stopped with SIGINT;
//! the runs alternate ours / DPDK (`--runs`, default 3) so that both sides see the same changes of
//! load on the shared host.
//!
//! A DUT's rate is the number of frames it forwarded (its own final counters: l2fwd's total sent,
//! testpmd's accumulated TX-packets) divided by the traffic time; the table gives the median and
//! the best of the runs, and the ratio of the medians. Under TCG the emulation, not the
//! driver, sets the order of magnitude, and a busy DUT also slows the generator (device emulation
//! runs in the vCPU that touches the device): compare the ratio only. The last line is
//! `ratio: X`: the **worst** (lowest) of the rows' ratios (ours / DPDK, medians, at the highest
//! offered rate); the line before it gives each row's (`rows: igb X, virtio Y`).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use crate::dut::{BenchPorts, Dut, WAIT_FOR_SH, build_examples};
use crate::vm::{GuestOptions, Paths, Topology, run_in_guest};

const USAGE: &str = "\
usage: cargo xtask bench l2fwd-vm [--duration SECS] [--rates LIST] [--runs N] [--size BYTES] [--rows LIST] [--no-build]

  our examples/l2fwd against dpdk-testpmd io forwarding between two DUT ports of the test VM, both
  fed by examples/pktgen; rows: igb (quad topology, igb <-> igb) and virtio (virtio topology,
  igb <-> virtio-net); prints both rates per row and, last, `ratio: X` = the worst row's
  ours / DPDK

  --duration SECS   traffic time of each run (default 10)
  --rates LIST      offered rates, frames/s or `max`, comma-separated (default 50000,max)
  --runs N          alternate runs per side in the same VM; medians compared (default 3)
  --size BYTES      frame size with FCS, 64..=1518 (default 64)
  --rows LIST       igb, virtio, comma-separated (default igb,virtio)
  --no-build        use the release examples already built";

/// A row of the comparison: which DUT ports, in which topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    /// igb <-> igb (`quad`).
    Igb,
    /// igb <-> virtio-net (`virtio`).
    Virtio,
}

impl Row {
    fn name(self) -> &'static str {
        match self {
            Row::Igb => "igb",
            Row::Virtio => "virtio",
        }
    }

    fn topology(self) -> &'static str {
        match self {
            Row::Igb => "quad",
            Row::Virtio => "virtio",
        }
    }

    /// The DUT and generator ports of the row.
    fn ports(self) -> Result<BenchPorts, String> {
        let t = Topology::by_name(self.topology())?;
        match self {
            Row::Igb => BenchPorts::by_role(&t),
            // igb 1 (peer igb 0) and virtio-net 3 (peer igb 2).
            Row::Virtio => BenchPorts::new(&t, 1, 3),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Opts {
    duration: u64,
    rates: Vec<Option<u64>>,
    runs: u32,
    size: u32,
    rows: Vec<Row>,
    build: bool,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        duration: 10,
        rates: vec![Some(50_000), None],
        runs: 3,
        size: 64,
        rows: vec![Row::Igb, Row::Virtio],
        build: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |what: &str, lo: u64, hi: u64| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{what}: missing value"))?;
            let n: u64 = v.parse().map_err(|_| format!("{what}: `{v}` is not a number"))?;
            if !(lo..=hi).contains(&n) {
                return Err(format!("{what}: {n} out of range {lo}..={hi}"));
            }
            Ok(n)
        };
        match a.as_str() {
            "--duration" => o.duration = num("--duration", 3, 3600)?,
            "--runs" => o.runs = num("--runs", 1, 10)? as u32,
            "--size" => o.size = num("--size", 64, 1518)? as u32,
            "--no-build" => o.build = false,
            "--rows" => {
                let v = it.next().ok_or("--rows: missing value")?;
                o.rows = v
                    .split(',')
                    .map(|r| match r.trim() {
                        "igb" => Ok(Row::Igb),
                        "virtio" => Ok(Row::Virtio),
                        other => Err(format!("--rows: `{other}` is not a row (igb, virtio)")),
                    })
                    .collect::<Result<_, _>>()?;
                if o.rows.is_empty() {
                    return Err("--rows: empty list".into());
                }
            }
            "--rates" => {
                let v = it.next().ok_or("--rates: missing value")?;
                o.rates = v
                    .split(',')
                    .map(|r| match r.trim() {
                        "max" => Ok(None),
                        n => n
                            .parse::<u64>()
                            .ok()
                            .filter(|&n| (1..=100_000_000).contains(&n))
                            .map(Some)
                            .ok_or_else(|| format!("--rates: `{n}` is not a rate (1..=100000000 or max)")),
                    })
                    .collect::<Result<_, _>>()?;
                if o.rates.is_empty() {
                    return Err("--rates: empty list".into());
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(o)
}

/// The guest script: our drivers bind the unbound ports to vfio-pci themselves, testpmd finds
/// them bound. For each run and rate: ours, then DPDK, each section between `=== SIDE RATE RUN`.
fn guest_script(o: &Opts, ports: &BenchPorts) -> String {
    let rates: Vec<String> = o
        .rates
        .iter()
        .map(|r| r.map_or("max".to_string(), |n| n.to_string()))
        .collect();
    let sessions: String = Dut::ALL
        .iter()
        .map(|d| {
            format!(
                "    echo \"=== {} $rate $run\"\n{}",
                d.name(),
                d.session_sh(ports, "pktgen $rate")
            )
        })
        .collect();
    format!(
        r#"set -u
dur={dur}
size={size}
echo "bench: pktgen {tx} -> DUT {d0} => DUT {d1} -> pktgen {rx}, $size-byte frames, $dur s per rate"
{WAIT_FOR_SH}pktgen() {{
    if [ "$1" = max ]; then r=""; else r="--rate $1"; fi
    {pktgen} --size $size --duration $dur --drain 2 $r
}}
run=1
while [ $run -le {runs} ]; do
  for rate in {rates}; do
{sessions}  done
  run=$((run+1))
done
echo "=== end"
"#,
        dur = o.duration,
        size = o.size,
        runs = o.runs,
        rates = rates.join(" "),
        tx = ports.gen_tx,
        rx = ports.gen_rx,
        d0 = ports.dut[0],
        d1 = ports.dut[1],
        pktgen = ports.pktgen_command(),
    )
}

/// One measured run of one side at one rate.
#[derive(Debug, Clone, Default, PartialEq)]
struct Sample {
    /// pktgen's key/values.
    pktgen: HashMap<String, String>,
    /// Frames the DUT forwarded (its own counters).
    forwarded: Option<u64>,
}

/// The samples of `side` ("ours" / "dpdk") at `rate` ("max" or a number), in order.
fn samples(output: &str, side: &str, rate: &str) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    let mut cur = false;
    let mut accumulated = false;
    for l in output.lines() {
        if let Some(rest) = l.strip_prefix("=== ") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            cur = w.len() >= 2 && w[0] == side && w[1] == rate;
            accumulated = false;
            if cur {
                out.push(Sample::default());
            }
            continue;
        }
        let Some(s) = out.last_mut().filter(|_| cur) else {
            continue;
        };
        if let Some(kv) = l.strip_prefix("pktgen-result: ") {
            s.pktgen = kv
                .split_whitespace()
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
        let w: Vec<&str> = l.split_whitespace().collect();
        // l2fwd's final table: `all total RX TX DROPPED ...`.
        if w.len() >= 4 && w[0] == "all" && w[1] == "total" {
            s.forwarded = w[3].parse().ok();
        }
        if l.contains("Accumulated forward statistics") {
            accumulated = true;
        }
        if let (true, Some(i)) = (accumulated, w.iter().position(|x| *x == "TX-packets:")) {
            s.forwarded = w.get(i + 1).and_then(|v| v.parse().ok());
        }
    }
    out
}

fn field(r: &HashMap<String, String>, k: &str) -> f64 {
    r.get(k).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// The median of sorted values (mean of the two middle ones for an even count).
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The sample with the most frames forwarded.
fn best(rs: &[Sample]) -> Option<&Sample> {
    rs.iter().max_by_key(|s| s.forwarded.unwrap_or(0))
}

fn run(o: &Opts) -> Result<bool, String> {
    let paths = Paths::new();
    if o.build {
        build_examples(&paths.workspace)?;
    }
    let mut ratios = Vec::new();
    for &row in &o.rows {
        match run_row(o, row, &paths) {
            Ok(r) => ratios.push((row, r)),
            Err(e) => eprintln!("bench l2fwd-vm: row {}: {e}", row.name()),
        }
    }
    if ratios.len() != o.rows.len() {
        return Err("a row was not measured (see above)".into());
    }
    let each: Vec<String> = ratios
        .iter()
        .map(|(row, r)| format!("{} {r:.3}", row.name()))
        .collect();
    println!("\nrows: {}", each.join(", "));
    let worst = ratios.iter().map(|&(_, r)| r).fold(f64::INFINITY, f64::min);
    println!("ratio: {worst:.3}");
    Ok(true)
}

/// One row in its own VM boot; its ratio (medians, highest offered rate measured on both sides).
fn run_row(o: &Opts, row: Row, paths: &Paths) -> Result<f64, String> {
    let script = guest_script(o, &row.ports()?);
    let opts = GuestOptions {
        timeout: Duration::from_secs((2 * o.duration + 240) * u64::from(o.runs) + 120),
        cwd: Some(paths.workspace.clone()),
        echo: true,
        shell: true,
        label: format!("bench-l2fwd-vm-{}", row.name()),
        ..GuestOptions::default()
    };
    let out = run_in_guest(row.topology(), &[script], &opts)?;
    if out.exit_code != 0 {
        return Err(format!(
            "the guest script exited with {} (logs in {})",
            out.exit_code,
            out.run_dir.display()
        ));
    }
    println!(
        "\nl2fwd-vm row {}: {} topology, {}-byte frames, {} s of traffic per rate, {} alternating \
         run(s) per side; boot to command {:.1} s, logs in {}",
        row.name(),
        row.topology(),
        o.size,
        o.duration,
        o.runs,
        out.boot_to_command.as_secs_f64(),
        out.run_dir.display()
    );
    println!(
        "{:<9} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>9} {:>9} {:>8} {:>8}",
        "offered",
        "ours med",
        "DPDK med",
        "ratio",
        "ours best",
        "DPDK best",
        "ratio",
        "ours rx",
        "DPDK rx",
        "ours %l",
        "DPDK %l"
    );
    let secs = o.duration as f64;
    let mut last_ratio = None;
    for rate in &o.rates {
        let name = rate.map_or("max".to_string(), |n| n.to_string());
        let (a, b) = (
            samples(&out.output, "ours", &name),
            samples(&out.output, "dpdk", &name),
        );
        let rates = |v: &[Sample]| -> Vec<f64> {
            let mut r: Vec<f64> = v
                .iter()
                .filter_map(|s| s.forwarded)
                .map(|f| f as f64 / secs / 1e6)
                .collect();
            r.sort_by(f64::total_cmp);
            r
        };
        let (ra, rb) = (rates(&a), rates(&b));
        let (Some(ba), Some(bb)) = (best(&a), best(&b)) else {
            println!("{name:<9} (a side has no sample; see the logs)");
            continue;
        };
        if ra.is_empty() || rb.is_empty() {
            println!("{name:<9} (a DUT printed no final counters; see the logs)");
            continue;
        }
        let (ma, mb) = (median(&ra), median(&rb));
        let (xa, xb) = (ra[ra.len() - 1], rb[rb.len() - 1]);
        let loss = |s: &Sample| {
            let sent = field(&s.pktgen, "sent");
            if sent > 0.0 {
                100.0 * field(&s.pktgen, "lost") / sent
            } else {
                0.0
            }
        };
        let ratio = ma / mb.max(1e-12);
        println!(
            "{name:<9} {ma:>10.4} {mb:>10.4} {ratio:>7.3} {xa:>10.4} {xb:>10.4} {:>7.3} {:>9.4} {:>9.4} {:>8.2} {:>8.2}",
            xa / xb.max(1e-12),
            field(&ba.pktgen, "rx_mpps"),
            field(&bb.pktgen, "rx_mpps"),
            loss(ba),
            loss(bb)
        );
        last_ratio = Some(ratio);
    }
    println!(
        "(Mpps forwarded by each DUT, by its own counters; med = median of the runs, best = the best \
         run; rx / %l: pktgen's receive rate and loss in the best run)"
    );
    last_ratio.ok_or_else(|| {
        format!(
            "no rate was measured on both sides; logs in {}",
            out.run_dir.display()
        )
    })
}

/// Entry point of `cargo xtask bench l2fwd-vm ARGS`.
pub fn vm(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench l2fwd-vm: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench l2fwd-vm: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        assert_eq!(
            parse(&[]).unwrap(),
            Opts {
                duration: 10,
                rates: vec![Some(50_000), None],
                runs: 3,
                size: 64,
                rows: vec![Row::Igb, Row::Virtio],
                build: true
            }
        );
        let v: Vec<String> = ["--duration", "5", "--runs", "2", "--no-build"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse(&v).unwrap();
        assert_eq!((o.duration, o.runs, o.build), (5, 2, false));
        assert!(parse(&["--size".into(), "63".into()]).is_err());
        assert!(parse(&["--bogus".into()]).is_err());
        let r = parse(&["--rates".into(), "1000,max".into()]).unwrap();
        assert_eq!(r.rates, vec![Some(1000), None]);
        assert!(parse(&["--rates".into(), "0".into()]).is_err());
    }

    #[test]
    fn samples_are_split_by_side_and_rate() {
        let out = "=== ours max 1\npktgen-result: sent=10 rx_mpps=0.2 lost=0\n all total 5 7 0 0.1 0.1\n\
                   === dpdk max 1\npktgen-result: sent=10 rx_mpps=0.25\n\
                   +++ Accumulated forward statistics for all ports+++\n\
                   RX-packets: 9  RX-dropped: 0\nTX-packets: 8  TX-dropped: 0\n\
                   === ours 5000 1\npktgen-result: sent=10 rx_mpps=0.3\n all total 1 1 0 0 0\n=== end\n";
        let ours = samples(out, "ours", "max");
        let dpdk = samples(out, "dpdk", "max");
        assert_eq!((ours.len(), dpdk.len()), (1, 1));
        assert_eq!(ours[0].forwarded, Some(7));
        assert_eq!(dpdk[0].forwarded, Some(8));
        assert_eq!(field(&ours[0].pktgen, "rx_mpps"), 0.2);
        assert_eq!(samples(out, "ours", "5000")[0].forwarded, Some(1));
        assert_eq!(best(&ours).unwrap().forwarded, Some(7));
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 3.0]), 2.0);
        let script = guest_script(&parse(&[]).unwrap(), &Row::Igb.ports().unwrap());
        assert!(script.contains("--forward-mode=io") && script.contains("for rate in 50000 max"));
        assert!(script.contains("=== ours $rate $run\"\ntarget/release/examples/l2fwd --port 0000:00:0a.0"));
        let script = guest_script(&parse(&[]).unwrap(), &Row::Virtio.ports().unwrap());
        assert!(script.contains("--tx-port 0000:00:02.0 --rx-port 0000:00:0a.0"));
        let r = parse(&["--rows".into(), "virtio".into()]).unwrap();
        assert_eq!(r.rows, vec![Row::Virtio]);
        assert!(parse(&["--rows".into(), "ixgbe".into()]).is_err());
    }
}
