//! Helpers shared by the VM tests that run the example binaries (l2fwd, pktgen) as child
//! processes: the topology's ports from the environment, the built examples, pktgen's result line
//! and l2fwd's final statistics.

// Each test binary that includes this module uses a subset of it.
#![allow(dead_code)]

#[path = "../../pmd/tests/child_guard/mod.rs"]
pub mod child_guard;
pub mod injected;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use child_guard::run_bounded;

/// How long one pktgen (or tshark) run of a test may take: far longer than any does (seconds),
/// far shorter than the VM harness's limit for a whole test binary, so a hung one fails its own
/// test with its threads' stacks (a hang guard, never a timing assertion).
pub const PKTGEN_LIMIT: Duration = Duration::from_secs(300);

/// Runs pktgen with `args` (stdin closed, output captured), killed after [`PKTGEN_LIMIT`].
pub fn run_pktgen(args: &[&str]) -> std::process::Output {
    run_bounded("pktgen", Command::new(example("pktgen")).args(args), PKTGEN_LIMIT)
}

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run in the test VM"))
}

pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let p = dir.join("examples").join(name);
    assert!(
        p.exists(),
        "{} is missing: `cargo test` (and `cargo xtask vm test`) builds the examples of the root package",
        p.display()
    );
    p
}

/// (PCI address, MAC, peer index) of port `n`.
pub fn port(n: usize) -> (String, String, usize) {
    (
        env(&format!("OXPMD_PORT{n}")),
        env(&format!("OXPMD_PORT{n}_MAC")),
        env(&format!("OXPMD_PORT{n}_PEER")).parse().unwrap(),
    )
}

pub fn ports_with_role(role: &str) -> Vec<usize> {
    let n: usize = env("OXPMD_NUM_PORTS").parse().unwrap();
    (0..n)
        .filter(|i| env(&format!("OXPMD_PORT{i}_ROLE")) == role)
        .collect()
}

pub fn result(out: &str) -> HashMap<String, String> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("pktgen-result: "))
        .unwrap_or_else(|| panic!("no pktgen-result line in:\n{out}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A child process whose stdout lines arrive on a channel (and are echoed, prefixed with its
/// name). Dropping it kills the child and waits for it, so a failing assertion never leaves one
/// running.
pub struct Running {
    name: &'static str,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                println!("{name}| {l}");
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Running {
            name,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (up to 120 s) for a line that `pred` accepts and returns it.
    pub fn wait_for(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(120)) {
                Ok(l) => {
                    let hit = pred(&l);
                    self.seen.push(l.clone());
                    if hit {
                        return l;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    panic!("{}: {e}; its output so far:\n{}", self.name, self.seen.join("\n"));
                }
            }
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to the child.
    pub fn signal(&mut self, sig: libc::c_int) {
        // SAFETY: kill(2) with the pid of our own child (not reaped yet: `wait` consumes the
        // Running) and a signal number; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "signal {} ({sig})", self.name);
    }

    /// Waits for the child to exit; returns every line it printed and its exit status.
    pub fn wait(mut self) -> (Vec<String>, std::process::ExitStatus) {
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("wait for {}: {e}", self.name));
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(l);
        }
        (std::mem::take(&mut self.seen), status)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Both fail harmlessly once the child was waited for.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// l2fwd running as a child (see [`Running`]: killed and waited for when dropped).
pub struct L2fwd(Running);

impl L2fwd {
    pub fn start(ports: &[&str]) -> L2fwd {
        L2fwd::start_with(ports, &[])
    }

    /// [`start`](Self::start) with more l2fwd arguments (e.g. `--rx-interrupt`).
    pub fn start_with(ports: &[&str], extra: &[&str]) -> L2fwd {
        let mut cmd = Command::new(example("l2fwd"));
        for p in ports {
            cmd.args(["--port", p]);
        }
        // One worker on core 1 polls both ports; no periodic stats.
        let mut l = L2fwd(Running::spawn(
            "l2fwd",
            cmd.args(["-q", "2", "--cores", "1", "-T", "0"]).args(extra),
        ));
        l.wait_for(|s| s.starts_with("l2fwd: ") && s.contains("workers"));
        l
    }

    pub fn wait_for(&mut self, pred: impl Fn(&str) -> bool) {
        self.0.wait_for(pred);
    }

    /// CPU time (user + system) the process has used so far, from /proc/PID/stat.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).expect("/proc/PID/stat");
        // Fields after the command name (which may hold spaces, so split after its `)`): state is
        // field 3, utime and stime fields 14 and 15, in clock ticks.
        let rest = &stat[stat.rfind(')').expect("comm field") + 2..];
        let f: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|v| v.parse().expect("a tick count"))
            .collect();
        // SAFETY: sysconf reads a configuration value; no memory is involved.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_secs_f64((f[0] + f[1]) as f64 / hz as f64)
    }

    /// SIGINT, then every remaining line and the exit status.
    pub fn stop(mut self) -> (Vec<String>, std::process::ExitStatus) {
        self.0.signal(libc::SIGINT);
        self.0.wait()
    }

    /// Stops l2fwd ([`stop`](Self::stop)), then asserts that `failures` (of the traffic sent
    /// through it) is empty, that it exited successfully, that its final counters show `rx[i]`
    /// frames received on port i and sent on the other port with no drop, and that it found
    /// every buffer back in its pool. Returns every line it printed. l2fwd is stopped first so
    /// that its own view is printed even when the traffic failed.
    pub fn stop_and_check(self, rx: [u64; 2], failures: &[String]) -> Vec<String> {
        let (lines, status) = self.stop();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(status.success(), "l2fwd exit status {status}");
        let (rx0, tx0, drop0) = final_row(&lines, 0);
        let (rx1, tx1, drop1) = final_row(&lines, 1);
        assert_eq!((rx0, tx1), (rx[0], rx[0]), "l2fwd: port 0 received, port 1 sent");
        assert_eq!((rx1, tx0), (rx[1], rx[1]), "l2fwd: port 1 received, port 0 sent");
        assert_eq!((drop0, drop1), (0, 0));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("buffer check:") && l.contains("OK")),
            "l2fwd found every buffer back"
        );
        lines
    }

    /// SIGKILL (no chance to clean up: the kernel alone releases its devices and memory), then
    /// the exit status.
    pub fn kill9(mut self) -> std::process::ExitStatus {
        self.0.signal(libc::SIGKILL);
        self.0.wait().1
    }
}

/// (received, sent, dropped) of l2fwd port `id` in its final statistics table.
pub fn final_row(lines: &[String], id: u16) -> (u64, u64, u64) {
    let start = lines
        .iter()
        .position(|l| l.starts_with("Final statistics"))
        .expect("l2fwd printed its final statistics");
    for l in &lines[start..] {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() >= 5 && w[0] == id.to_string() {
            return (
                w[2].parse().unwrap(),
                w[3].parse().unwrap(),
                w[4].parse().unwrap(),
            );
        }
    }
    panic!("no final row for port {id}:\n{}", lines.join("\n"));
}

/// The `quad` topology's two DUT ports (l2fwd's, ids 0 and 1 in this order), their MACs, and the
/// pktgen port linked to each.
pub struct Quad {
    pub dut: [String; 2],
    pub dut_mac: [String; 2],
    pub gen_port: [String; 2],
}

pub fn quad() -> Quad {
    let dut = ports_with_role("dut");
    assert_eq!(dut.len(), 2, "quad topology: two DUT ports");
    let (d0, d0_mac, p0) = port(dut[0]);
    let (d1, d1_mac, p1) = port(dut[1]);
    Quad {
        dut: [d0, d1],
        dut_mac: [d0_mac, d1_mac],
        gen_port: [port(p0).0, port(p1).0],
    }
}

impl Quad {
    pub fn both_ways(&self) -> [Through<'_>; 2] {
        both_ways(
            [&self.gen_port[0], &self.gen_port[1]],
            [&self.dut_mac[0], &self.dut_mac[1]],
        )
    }
}

/// One direction through l2fwd: pktgen sends on `tx` to l2fwd's port of MAC `dut_in_mac`; l2fwd
/// sends it out of its port `out_id` (MAC `out_mac`), with destination 02:00:00:00:00:<out_id>,
/// to pktgen's `rx`.
pub struct Through<'a> {
    pub tx: &'a str,
    pub rx: &'a str,
    pub dut_in_mac: &'a str,
    pub out_id: u16,
    pub out_mac: &'a str,
}

/// Both directions through an l2fwd whose ports 0 and 1 have the MACs `dut_mac`, fed by the
/// pktgen ports `gen_port` linked to them.
pub fn both_ways<'a>(gen_port: [&'a str; 2], dut_mac: [&'a str; 2]) -> [Through<'a>; 2] {
    [0, 1].map(|i| Through {
        tx: gen_port[i],
        rx: gen_port[1 - i],
        dut_in_mac: dut_mac[i],
        out_id: 1 - i as u16,
        out_mac: dut_mac[1 - i],
    })
}

impl Through<'_> {
    /// pktgen (on core 0) sending `n` frames of 64-1518 bytes in 4 streams this way (the RX port
    /// promiscuous), checking that each comes back with l2fwd's MAC rewrite.
    pub fn pktgen(&self, n: u64) -> Command {
        let expect_dst = format!("02:00:00:00:00:{:02x}", self.out_id);
        let mut cmd = Command::new(example("pktgen"));
        cmd.args(["--tx-port", self.tx, "--rx-port", self.rx])
            .args(["--dst-mac", self.dut_in_mac, "-P"])
            .args(["--count", &n.to_string(), "--size", "64-1518", "--streams", "4"])
            .args(["--expect-rx-dst", &expect_dst, "--expect-rx-src", self.out_mac])
            .args(["--cores", "0"]);
        cmd
    }
}

/// Runs pktgen sending `n` frames `way` (see [`Through::pktgen`]). `extra`: more pktgen
/// arguments (e.g. `--rate`). Returns what went wrong: anything but exactly `n` sent and `n`
/// received unique and intact, or a failed exit.
pub fn pktgen_exact(way: &Through, n: u64, extra: &[&str]) -> Vec<String> {
    pktgen_exact_result(way, n, extra).0
}

/// [`pktgen_exact`], also returning pktgen's `pktgen-result:` fields.
pub fn pktgen_exact_result(way: &Through, n: u64, extra: &[&str]) -> (Vec<String>, HashMap<String, String>) {
    let (tx, rx) = (way.tx, way.rx);
    let mut failures = Vec::new();
    let out = run_bounded(
        "pktgen",
        way.pktgen(n).args(["--drain", "3", "--expect-all"]).args(extra),
        PKTGEN_LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        failures.push(format!("pktgen {tx} -> {rx} failed ({})", out.status));
    }
    let r = result(&text);
    for (k, v) in [("sent", n), ("received", n), ("unique", n), ("lost", 0)] {
        if r[k] != v.to_string() {
            failures.push(format!("{tx} -> {rx}: {k} = {}, expected {v}", r[k]));
        }
    }
    for k in ["dup", "corrupt", "other"] {
        if r[k] != "0" {
            failures.push(format!("{tx} -> {rx}: {k} = {}", r[k]));
        }
    }
    (failures, r)
}
