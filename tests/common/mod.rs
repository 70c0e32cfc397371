//! Helpers shared by the VM tests that run the example binaries (l2fwd, pktgen) as child
//! processes: the topology's ports from the environment, the built examples, pktgen's result line
//! and l2fwd's final statistics.

// Each test binary that includes this module uses a subset of it.
#![allow(dead_code)]

pub mod injected;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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

/// l2fwd running as a child, its stdout lines arriving on a channel.
pub struct L2fwd {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl L2fwd {
    pub fn start(ports: &[&str]) -> L2fwd {
        let mut cmd = Command::new(example("l2fwd"));
        for p in ports {
            cmd.args(["--port", p]);
        }
        // One worker on core 1 polls both ports; no periodic stats.
        let mut child = cmd
            .args(["-q", "2", "--cores", "1", "-T", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start l2fwd");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                println!("l2fwd| {l}");
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut l = L2fwd {
            child,
            lines,
            seen: Vec::new(),
        };
        l.wait_for(|s| s.starts_with("l2fwd: ") && s.contains("workers"));
        l
    }

    pub fn wait_for(&mut self, pred: impl Fn(&str) -> bool) {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(120)) {
                Ok(l) => {
                    let hit = pred(&l);
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    panic!("l2fwd: {e}; its output so far:\n{}", self.seen.join("\n"));
                }
            }
        }
    }

    /// SIGINT, then every remaining line and the exit status.
    pub fn stop(mut self) -> (Vec<String>, std::process::ExitStatus) {
        // SAFETY: kill(2) with the pid of our own child and SIGINT; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        assert_eq!(rc, 0, "signal l2fwd");
        let status = self.child.wait().expect("wait for l2fwd");
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(l);
        }
        (self.seen, status)
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

/// Runs pktgen (on core 0) sending `n` frames of 64-1518 bytes in 4 streams from port `tx` to
/// `dst_mac`, received on port `rx`; each frame must come back with destination `expect_dst` and
/// source `expect_src`. `extra`: more pktgen arguments (e.g. `--rate`). Returns what went wrong:
/// anything but exactly `n` sent and `n` received unique and intact, or a failed exit.
pub fn pktgen_exact(
    tx: &str,
    rx: &str,
    dst_mac: &str,
    expect_dst: &str,
    expect_src: &str,
    n: u64,
    extra: &[&str],
) -> Vec<String> {
    let mut failures = Vec::new();
    let out = Command::new(example("pktgen"))
        .args(["--tx-port", tx, "--rx-port", rx, "--dst-mac", dst_mac, "-P"])
        .args(["--count", &n.to_string(), "--size", "64-1518", "--streams", "4"])
        .args(["--expect-rx-dst", expect_dst, "--expect-rx-src", expect_src])
        .args(["--drain", "3", "--cores", "0", "--expect-all"])
        .args(extra)
        .output()
        .expect("run pktgen");
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
    failures
}
