//! The two sides of the bench: where their threads run, their exact command lines, running them,
//! and reading their rates and their forwarding assignment back from their output.

use std::path::Path;
use std::process::{Command, Stdio};

use super::cpu_share::{Share, output_sampled};
use super::options::{Cores, Memory};

/// Where the threads of one core case run (CPU numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Placement {
    pub(super) cores: Cores,
    /// The forwarding CPUs, in worker order: the first forwards port 0 -> 1, the second (two
    /// cores) port 1 -> 0.
    pub(super) forwarding: Vec<usize>,
    /// DPDK's main lcore; with two cores also our main thread (l2fwd `--main-core`).
    pub(super) main: usize,
}

impl Placement {
    /// One core: `core` forwards, the main lcore is on the first other CPU. Two cores: `core` and
    /// a third CPU if there is one, else the main lcore's CPU (shared: a 2-CPU machine).
    pub(super) fn new(cores: Cores, core: usize, ncpu: usize) -> Result<Placement, String> {
        if ncpu < 2 || core >= ncpu {
            return Err(format!(
                "needs two CPUs and --core below {ncpu} (DPDK keeps its main lcore apart)"
            ));
        }
        let main = if core == 0 { 1 } else { 0 };
        let forwarding = match cores {
            Cores::One => vec![core],
            Cores::Two => {
                let second = (0..ncpu).find(|&c| c != core && c != main).unwrap_or(main);
                let mut v = vec![core, second];
                v.sort_unstable();
                v
            }
        };
        Ok(Placement {
            cores,
            forwarding,
            main,
        })
    }

    /// Whether the main lcore / main thread shares a CPU with a forwarding core.
    pub(super) fn main_shared(&self) -> bool {
        self.forwarding.contains(&self.main)
    }

    fn forwarding_list(&self) -> String {
        let v: Vec<String> = self.forwarding.iter().map(usize::to_string).collect();
        v.join(",")
    }

    /// testpmd's lcore ids of the forwarding cores, in its stream order.
    fn dpdk_lcores(&self) -> Vec<usize> {
        match self.cores {
            // `-l M,C`: lcore id = CPU.
            Cores::One => self.forwarding.clone(),
            // `--lcores 0@M,1@A,2@B`.
            Cores::Two => vec![1, 2],
        }
    }

    /// What each forwarding core must do: its id (our CPU or testpmd's lcore) and its
    /// (RX port, TX port) pairs.
    fn expected(&self, ids: &[usize]) -> Assignment {
        match self.cores {
            Cores::One => vec![(ids[0], vec![(0, 1), (1, 0)])],
            Cores::Two => vec![(ids[0], vec![(0, 1)]), (ids[1], vec![(1, 0)])],
        }
    }
}

/// Forwarding cores as a side reports them: (core or lcore id, [(RX port, TX port)]).
type Assignment = Vec<(usize, Vec<(u16, u16)>)>;

/// Our side's command: l2fwd over null0/null1, `-q 2` on one core, `-q 1` on two cores with its
/// main thread pinned (`--main-core`) to the main lcore's CPU, as DPDK's main lcore is.
pub(super) fn ours_command(l2fwd: &Path, p: &Placement, duration: u64, mem: Memory) -> Command {
    let mut cmd = Command::new(l2fwd);
    let per_core = match p.cores {
        Cores::One => "2",
        Cores::Two => "1",
    };
    cmd.args([
        "--port",
        "null0",
        "--port",
        "null1",
        "-q",
        per_core,
        "--no-mac-updating",
        "-T",
        "1",
    ])
    .args(["--cores", &p.forwarding_list()]);
    if p.cores == Cores::Two {
        cmd.args(["--main-core", &p.main.to_string()]);
    }
    cmd.args(["--duration", &duration.to_string(), "--pages", mem.ours().0]);
    cmd
}

/// DPDK's side: testpmd io forwarding over net_null0/net_null1 under `timeout -s INT` (stops it
/// like Ctrl-C, so it exits cleanly). One core: `-l M,C`; two cores: `--lcores 0@M,1@A,2@B`
/// (main lcore 0 on the main CPU, forwarding lcores 1 and 2 on the forwarding CPUs).
pub(super) fn dpdk_command(testpmd: &str, p: &Placement, duration: u64, mem: Memory) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "INT", &duration.to_string(), testpmd]).args([
        mem.dpdk(),
        "--no-pci",
        "--vdev",
        "net_null0",
        "--vdev",
        "net_null1",
        "-m",
        "1024",
    ]);
    match p.cores {
        Cores::One => cmd.args([
            "-l",
            &format!("{},{}", p.main, p.forwarding[0]),
            "--main-lcore",
            &p.main.to_string(),
        ]),
        Cores::Two => cmd.args([
            "--lcores",
            &format!("0@{},1@{},2@{}", p.main, p.forwarding[0], p.forwarding[1]),
            "--main-lcore",
            "0",
        ]),
    };
    cmd.args([
        "--log-level",
        "lib.eal:error",
        "--",
        "--forward-mode=io",
        "--stats-period",
        "1",
    ])
    .args([
        "--total-num-mbufs=16384",
        &format!("--nb-cores={}", p.cores.count()),
    ])
    .stdin(Stdio::null());
    cmd
}

/// The exact command line of a side, as printed before its first run.
pub(super) fn command_line(cmd: &Command) -> String {
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    format!("  $ {} {}", cmd.get_program().to_string_lossy(), args.join(" "))
}

fn check_assignment(side: &str, got: &Assignment, want: &Assignment, text: &str) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    Err(format!(
        "{side} did not forward as intended: (core, [(rx port, tx port)]) {got:?}, wanted {want:?}:\n{text}"
    ))
}

/// Runs our side once; its rate (Mpps) and its workers' CPU shares, after checking the pool's
/// pages, the buffer check, the workers' pinning and their ports.
pub(super) fn run_ours(
    l2fwd: &Path,
    p: &Placement,
    duration: u64,
    mem: Memory,
    print_command: bool,
) -> Result<(f64, Vec<Share>), String> {
    let printed = mem.ours().1;
    let mut cmd = ours_command(l2fwd, p, duration, mem);
    if print_command {
        println!("{}", command_line(&cmd));
    }
    let (out, shares) =
        output_sampled(&mut cmd, duration, "l2fwd-").map_err(|e| format!("{}: {e}", l2fwd.display()))?;
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // The pool's pages are what was asked (l2fwd does not fall back with --pages).
    if !err.contains(printed) {
        return Err(format!("l2fwd did not report its mempool {printed}:\n{err}"));
    }
    if !out.status.success() {
        return Err(format!("l2fwd failed ({}):\n{text}{err}", out.status));
    }
    if !text.contains("no leak") {
        return Err(format!("l2fwd did not report a clean buffer check:\n{text}"));
    }
    if err.contains("could not pin") {
        return Err(format!("l2fwd could not pin a worker to its core:\n{err}"));
    }
    check_assignment("l2fwd", &l2fwd_workers(&text), &p.expected(&p.forwarding), &text)?;
    let main_line = format!("main thread: core {}", p.main);
    if p.cores == Cores::Two && !text.lines().any(|l| l == main_line) {
        return Err(format!("l2fwd did not report `{main_line}`:\n{text}"));
    }
    let rates = parse_ours(&text);
    let rate = median_after_warmup(&rates)
        .ok_or_else(|| format!("no `rate:` lines in the l2fwd output:\n{text}"))?;
    Ok((rate, shares))
}

/// Runs DPDK's side once; its rate (Mpps) and its forwarding lcores' CPU shares, after checking
/// its streams' lcores and ports.
pub(super) fn run_dpdk(
    testpmd: &str,
    p: &Placement,
    duration: u64,
    mem: Memory,
    print_command: bool,
) -> Result<(f64, Vec<Share>), String> {
    let mut cmd = dpdk_command(testpmd, p, duration, mem);
    if print_command {
        println!("{}", command_line(&cmd));
    }
    // testpmd names its forwarding lcores' threads `rte-worker-N`.
    let mut attempt = 1;
    let (text, rate, shares) = loop {
        let (out, shares) =
            output_sampled(&mut cmd, duration, "rte-worker-").map_err(|e| format!("{testpmd}: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(rate) = median_after_warmup(&parse_testpmd(&text)) {
            break (text, rate, shares);
        }
        // `timeout` counts testpmd's start-up too: on a busy machine its EAL may spend the whole
        // run mapping memory. Said, and tried once more; a second failure is the bench's.
        if attempt == 2 {
            return Err(format!(
                "no throughput figures in the testpmd output, twice ({}):\n{text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        println!("  testpmd forwarded nothing within its {duration} s (a slow start?): running it again");
        attempt += 1;
    };
    check_assignment(
        "testpmd",
        &testpmd_streams(&text),
        &p.expected(&p.dpdk_lcores()),
        &text,
    )?;
    Ok((rate, shares))
}

/// testpmd's own count of the cycles it spends per forwarded packet, from one more run of the
/// case with `--record-core-cycles` (kept out of the timed runs: it reads the TSC around every
/// stream's poll, which costs DPDK some of its rate). Returns (cycles per packet, clock MHz).
pub(super) fn run_dpdk_core_cycles(
    testpmd: &str,
    p: &Placement,
    duration: u64,
    mem: Memory,
) -> Result<(f64, f64), String> {
    let mut cmd = dpdk_command(testpmd, p, duration, mem);
    cmd.arg("--record-core-cycles");
    println!("{}", command_line(&cmd));
    let out = cmd.output().map_err(|e| format!("{testpmd}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_core_cycles(&text).ok_or_else(|| {
        format!(
            "testpmd --record-core-cycles printed no `CPU cycles/packet=` line ({}):\n{text}",
            out.status
        )
    })
}

/// (cycles per packet, MHz) from testpmd's `CPU cycles/packet=69.05 (total cycles=... / total io
/// packets=...) at 2600 MHz Clock` line.
fn parse_core_cycles(text: &str) -> Option<(f64, f64)> {
    let line = text.lines().find(|l| l.contains("CPU cycles/packet="))?;
    let (_, rest) = line.split_once("CPU cycles/packet=")?;
    let cycles = rest.split_whitespace().next()?.parse().ok()?;
    let (_, clock) = rest.split_once(" at ")?;
    let mhz = clock.split_whitespace().next()?.parse().ok()?;
    Some((cycles, mhz))
}

/// l2fwd's workers from its `worker W: core C, ports A->B ...` lines, in worker order.
fn l2fwd_workers(text: &str) -> Assignment {
    text.lines()
        .filter_map(|l| {
            let (_, rest) = l.strip_prefix("worker ")?.split_once(": core ")?;
            let (core, rest) = rest.split_once(", ports ")?;
            let pairs = rest
                .split([' ', ','])
                .map_while(|w| {
                    let (a, b) = w.split_once("->")?;
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect();
            Some((core.parse().ok()?, pairs))
        })
        .collect()
}

/// testpmd's forwarding lcores and their streams, from its `Logical Core N (socket S) forwards
/// packets on K streams:` lines and the `RX P=a/Q=q (socket s) -> TX P=b/Q=q` lines after them.
fn testpmd_streams(text: &str) -> Assignment {
    let port_after = |l: &str, key: &str| -> Option<u16> {
        let (_, rest) = l.split_once(key)?;
        rest.split('/').next()?.parse().ok()
    };
    let mut out: Assignment = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("Logical Core ") {
            if let Some(id) = rest.split_whitespace().next().and_then(|w| w.parse().ok()) {
                out.push((id, Vec::new()));
            }
        } else if l.trim_start().starts_with("RX P=")
            && let (Some(rx), Some(tx), Some(last)) =
                (port_after(l, "RX P="), port_after(l, "TX P="), out.last_mut())
        {
            last.1.push((rx, tx));
        }
    }
    out
}

/// Per-period forwarded rates (Mpps) from l2fwd's `rate: rx X Mpps tx Y Mpps over S s` lines.
fn parse_ours(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("rate: "))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|x| *x == "tx")?;
            w.get(i + 1)?.parse().ok()
        })
        .collect::<Vec<f64>>()
        // The final summary repeats the whole run: drop it (it is the last line).
        .split_last()
        .map(|(_, rest)| rest.to_vec())
        .unwrap_or_default()
}

/// Per-period forwarded rates (Mpps) from testpmd's stats blocks: the sum of `Tx-pps` of all
/// ports of each `Port statistics` block.
fn parse_testpmd(text: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let mut cur: Option<f64> = None;
    for l in text.lines() {
        if l.contains("Port statistics ====") {
            if let Some(v) = cur.take() {
                out.push(v / 1e6);
            }
            cur = Some(0.0);
        } else if let Some(rest) = l.trim().strip_prefix("Tx-pps:") {
            let v: f64 = rest
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0.0);
            if let Some(c) = cur.as_mut() {
                *c += v;
            }
        }
    }
    if let Some(v) = cur {
        out.push(v / 1e6);
    }
    out
}

/// Median of the rates after the first non-zero one (warm-up).
fn median_after_warmup(rates: &[f64]) -> Option<f64> {
    let first = rates.iter().position(|r| *r > 0.0)?;
    let mut v: Vec<f64> = rates[first + 1..].iter().copied().filter(|r| *r > 0.0).collect();
    if v.is_empty() {
        v.push(rates[first]);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements() {
        // The 2-CPU machine: one core on CPU 1, main lcore on 0; two cores on 0 and 1, shared.
        let one = Placement::new(Cores::One, 1, 2).unwrap();
        assert_eq!(
            (one.forwarding.as_slice(), one.main, one.main_shared()),
            (&[1][..], 0, false)
        );
        let two = Placement::new(Cores::Two, 1, 2).unwrap();
        assert_eq!(
            (two.forwarding.as_slice(), two.main, two.main_shared()),
            (&[0, 1][..], 0, true)
        );
        let two = Placement::new(Cores::Two, 0, 2).unwrap();
        assert_eq!((two.forwarding.as_slice(), two.main), (&[0, 1][..], 1));
        // A third CPU keeps the main lcore apart.
        let two = Placement::new(Cores::Two, 1, 4).unwrap();
        assert_eq!(
            (two.forwarding.as_slice(), two.main, two.main_shared()),
            (&[1, 2][..], 0, false)
        );
        assert!(Placement::new(Cores::One, 0, 1).is_err());
        assert!(Placement::new(Cores::Two, 2, 2).is_err());
    }

    #[test]
    fn command_lines() {
        let l2fwd = Path::new("target/release/examples/l2fwd");
        let one = Placement::new(Cores::One, 1, 2).unwrap();
        let two = Placement::new(Cores::Two, 1, 2).unwrap();
        // One core: exactly the command the bench ran before it had core cases.
        assert_eq!(
            command_line(&ours_command(l2fwd, &one, 5, Memory::Huge2M)),
            "  $ target/release/examples/l2fwd --port null0 --port null1 -q 2 --no-mac-updating -T 1 \
             --cores 1 --duration 5 --pages 2m"
        );
        assert_eq!(
            command_line(&ours_command(l2fwd, &two, 10, Memory::Base4K)),
            "  $ target/release/examples/l2fwd --port null0 --port null1 -q 1 --no-mac-updating -T 1 \
             --cores 0,1 --main-core 0 --duration 10 --pages 4k"
        );
        assert_eq!(
            command_line(&dpdk_command("dpdk-testpmd", &one, 5, Memory::Huge2M)),
            "  $ timeout -s INT 5 dpdk-testpmd --in-memory --no-pci --vdev net_null0 --vdev net_null1 \
             -m 1024 -l 0,1 --main-lcore 0 --log-level lib.eal:error -- --forward-mode=io \
             --stats-period 1 --total-num-mbufs=16384 --nb-cores=1"
        );
        assert_eq!(
            command_line(&dpdk_command("dpdk-testpmd", &two, 10, Memory::Base4K)),
            "  $ timeout -s INT 10 dpdk-testpmd --no-huge --no-pci --vdev net_null0 --vdev net_null1 \
             -m 1024 --lcores 0@0,1@0,2@1 --main-lcore 0 --log-level lib.eal:error -- \
             --forward-mode=io --stats-period 1 --total-num-mbufs=16384 --nb-cores=2"
        );
    }

    #[test]
    fn assignments() {
        let ours_two = "l2fwd: 2 ports\nworker 0: core 0, ports 0->1\nworker 1: core 1, ports 1->0\n";
        let two = Placement::new(Cores::Two, 1, 2).unwrap();
        let got = l2fwd_workers(ours_two);
        assert_eq!(got, [(0, vec![(0, 1)]), (1, vec![(1, 0)])]);
        assert!(check_assignment("l2fwd", &got, &two.expected(&two.forwarding), "").is_ok());
        let one = Placement::new(Cores::One, 1, 2).unwrap();
        let got = l2fwd_workers("worker 0: core 1, ports 0->1 1->0, sleeps after 300 empty polls\n");
        assert_eq!(got, [(1, vec![(0, 1), (1, 0)])]);
        assert!(check_assignment("l2fwd", &got, &one.expected(&one.forwarding), "").is_ok());
        // Both directions on one worker is not the two-core case.
        assert!(check_assignment("l2fwd", &got, &two.expected(&two.forwarding), "").is_err());

        let dpdk_two = "io packet forwarding - ports=2 - cores=2 - streams=2\n\
            Logical Core 1 (socket 0) forwards packets on 1 streams:\n\
            \x20 RX P=0/Q=0 (socket 0) -> TX P=1/Q=0 (socket 0) peer=02:00:00:00:00:01\n\
            Logical Core 2 (socket 0) forwards packets on 1 streams:\n\
            \x20 RX P=1/Q=0 (socket 0) -> TX P=0/Q=0 (socket 0) peer=02:00:00:00:00:00\n\
            \x20 io packet forwarding packets/burst=32\n  port 0: RX queue number: 1 Tx queue number: 1\n";
        let got = testpmd_streams(dpdk_two);
        assert_eq!(got, [(1, vec![(0, 1)]), (2, vec![(1, 0)])]);
        assert_eq!(got, two.expected(&two.dpdk_lcores()));
        let dpdk_one = "Logical Core 1 (socket 0) forwards packets on 2 streams:\n\
            \x20 RX P=0/Q=0 (socket 0) -> TX P=1/Q=0 (socket 0) peer=02:00:00:00:00:01\n\
            \x20 RX P=1/Q=0 (socket 0) -> TX P=0/Q=0 (socket 0) peer=02:00:00:00:00:00\n";
        assert_eq!(testpmd_streams(dpdk_one), one.expected(&one.dpdk_lcores()));
        assert!(testpmd_streams("no streams here\n").is_empty());
    }

    #[test]
    fn parses_testpmds_cycle_count() {
        let text = "  RX-packets: 110162176\n\n  CPU cycles/packet=69.05 (total cycles=7606580734 / total io \
                    packets=110162176) at 2600 MHz Clock\n\nDone.\n";
        assert_eq!(parse_core_cycles(text), Some((69.05, 2600.0)));
        assert_eq!(parse_core_cycles("Done.\n"), None);
    }

    #[test]
    fn parses_both_outputs() {
        let ours = "x\nrate: rx 10.000 Mpps tx 9.000 Mpps over 1.00 s\nrate: rx 20.0 Mpps tx 21.5 Mpps over 1.0 s\n\
                    rate: rx 20.0 Mpps tx 20.5 Mpps over 1.0 s\nrate: rx 20.0 Mpps tx 30.0 Mpps over 1.0 s\n\
                    rate: rx 19.0 Mpps tx 19.0 Mpps over 4.0 s\n";
        let r = parse_ours(ours);
        assert_eq!(r, [9.0, 21.5, 20.5, 30.0]);
        assert_eq!(median_after_warmup(&r), Some(21.5));
        let dpdk = "Port statistics ====\n  Tx-pps:            0          Tx-bps: 0\n  Tx-pps: 0\n\
                    Port statistics ====\n  Tx-pps:     24154481          Tx-bps: 0\n  Tx-pps:     24154558\n\
                    Port statistics ====\n  Tx-pps:     25000000\n  Tx-pps:     25000000\n\
                    Port statistics ====\n  Tx-pps:     26000000\n  Tx-pps:     26000000\n";
        let d = parse_testpmd(dpdk);
        assert_eq!(d.len(), 4);
        assert_eq!(d[0], 0.0);
        assert!((median_after_warmup(&d).unwrap() - 52.0).abs() < 1e-9);
        assert_eq!(median_after_warmup(&[0.0, 0.0]), None);
    }
}
