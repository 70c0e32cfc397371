//! vm-topology: quad
//!
//! l2fwd between the two DUT ports of the `quad` topology, fed and checked by pktgen on the two
//! pktgen ports (each linked to one DUT port). Both are the example binaries, run as child
//! processes: `cargo test` builds the package's examples next to this test executable
//! (`target/<profile>/examples/`). For each direction N frames of mixed sizes go in on one DUT
//! port; exactly N must come out of the other, intact except for l2fwd's MAC rewrite (dst
//! 02:00:00:00:00:<tx port>, src = the DUT TX port's MAC), with no duplicate; l2fwd's own final
//! counters must agree, and it must find every buffer back in its pool.
//! Run with `cargo xtask vm test -p oxpmd vm_l2fwd`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const N: u64 = 3000;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run in the test VM"))
}

fn example(name: &str) -> PathBuf {
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
fn port(n: usize) -> (String, String, usize) {
    (
        env(&format!("OXPMD_PORT{n}")),
        env(&format!("OXPMD_PORT{n}_MAC")),
        env(&format!("OXPMD_PORT{n}_PEER")).parse().unwrap(),
    )
}

fn ports_with_role(role: &str) -> Vec<usize> {
    let n: usize = env("OXPMD_NUM_PORTS").parse().unwrap();
    (0..n)
        .filter(|i| env(&format!("OXPMD_PORT{i}_ROLE")) == role)
        .collect()
}

fn result(out: &str) -> HashMap<String, String> {
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
struct L2fwd {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl L2fwd {
    fn start(ports: &[&str]) -> L2fwd {
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

    fn wait_for(&mut self, pred: impl Fn(&str) -> bool) {
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
    fn stop(mut self) -> (Vec<String>, std::process::ExitStatus) {
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
fn final_row(lines: &[String], id: u16) -> (u64, u64, u64) {
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

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn l2fwd_forwards_every_frame_exactly_once_with_the_mac_rewrite() {
    let dut = ports_with_role("dut");
    assert_eq!(dut.len(), 2, "quad topology: two DUT ports");
    let (d0, d0_mac, p0) = port(dut[0]);
    let (d1, d1_mac, p1) = port(dut[1]);
    let (p0_addr, _, _) = port(p0);
    let (p1_addr, _, _) = port(p1);
    let l2fwd = L2fwd::start(&[&d0, &d1]);

    // Direction 0: pktgen port -> DUT port 0 (l2fwd id 0) -> DUT port 1 (id 1) -> pktgen port.
    // Direction 1: the reverse.
    let dirs = [
        (&p0_addr, &p1_addr, &d0_mac, 1u16, &d1_mac),
        (&p1_addr, &p0_addr, &d1_mac, 0u16, &d0_mac),
    ];
    let mut failures = Vec::new();
    for (tx, rx, dut_in_mac, out_id, out_mac) in dirs {
        let expect_dst = format!("02:00:00:00:00:{out_id:02x}");
        let out = Command::new(example("pktgen"))
            .args(["--tx-port", tx, "--rx-port", rx, "--dst-mac", dut_in_mac, "-P"])
            .args(["--count", &N.to_string(), "--size", "64-1518", "--streams", "4"])
            .args(["--expect-rx-dst", &expect_dst, "--expect-rx-src", out_mac])
            .args(["--drain", "3", "--cores", "0", "--expect-all"])
            .output()
            .expect("run pktgen");
        let text = String::from_utf8_lossy(&out.stdout);
        println!("{text}{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            failures.push(format!("pktgen {tx} -> {rx} failed ({})", out.status));
        }
        let r = result(&text);
        for (k, v) in [("sent", N), ("received", N), ("unique", N), ("lost", 0)] {
            if r[k] != v.to_string() {
                failures.push(format!("{tx} -> {rx}: {k} = {}, expected {v}", r[k]));
            }
        }
        for k in ["dup", "corrupt", "other"] {
            if r[k] != "0" {
                failures.push(format!("{tx} -> {rx}: {k} = {}", r[k]));
            }
        }
    }

    // l2fwd's own view (printed in any case, so that a failure above can be located).
    let (lines, status) = l2fwd.stop();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(status.success(), "l2fwd exit status {status}");
    let (rx0, tx0, drop0) = final_row(&lines, 0);
    let (rx1, tx1, drop1) = final_row(&lines, 1);
    assert_eq!((rx0, tx1), (N, N), "l2fwd: port 0 received N, port 1 sent N");
    assert_eq!((rx1, tx0), (N, N), "l2fwd: port 1 received N, port 0 sent N");
    assert_eq!((drop0, drop1), (0, 0));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("buffer check:") && l.contains("OK")),
        "l2fwd found every buffer back"
    );
}
