//! Resets a VF's application did not ask for, while the VF forwards: the PF service
//! (`oxpmd sriov serve`) killed with SIGKILL and restarted with its saved state (vfio-pci resets
//! the PF when the killed process's fd closes and again when the new one opens it), and a
//! function reset of the VF through sysfs. Our igbvf, in a separate process (l2fwd on the VF),
//! must forward again by itself, losing frames only in one gap; the same PF restart is then
//! shown (measured, not asserted) with the kernel's igbvf and with DPDK's igbvf PMD (testpmd).
//! After each: no DMAR fault, hugepages back, nothing in /dev/hugepages, the device works.
//!
//! Topology `pair`: the service holds port 0's PF; port 1 is the wire, driven by our igb driver
//! in this process, promiscuous (the forwarders' frames carry a MAC no port has).
//!
//! vm-topology: pair

#[path = "../pmd/tests/vm_sriov_common/mod.rs"]
mod common;
mod fault_checks;
mod sriov_service;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use fault_checks::{dmar_faults_since, hugepage_files, hugepages_free, kernel_log};
use oxpmd::pmd::{Burst, MacAddr, Port};
use oxpmd_dma::Mempool;
use sriov_service::*;

const VF_MAC: &str = "02:00:00:00:79:00";
/// One frame to the VF every this long (about 330 frames a second: well within what the
/// emulated path forwards, so that nothing is lost outside the gap).
const PERIOD: Duration = Duration::from_millis(3);
/// Frames sent this recently may still be on their way back when the flow stops: not judged.
const IN_FLIGHT: Duration = Duration::from_millis(500);
/// How long our forwarder may take to forward again after the PF service serves again (a hang
/// guard: it ends as soon as frames come back).
const RECOVERY_LIMIT: Duration = Duration::from_secs(40);
/// How long the kernel's and DPDK's igbvf are watched after the PF service serves again. Neither
/// comes back, for a reason the test prints (the VF's command register reads 0: memory and bus
/// mastering off); a longer watch only lengthens the suite. Both have their own watchdog (the
/// kernel's every 2 s), which would have acted by then.
const PEER_WINDOW: Duration = Duration::from_secs(10);
const TAG: u16 = 0x79;

/// Prints a figure even when the test passes (libtest captures `eprintln!` of a passing test).
fn figure(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "vm_sriov_recovery: {text}");
}

/// The wire port, promiscuous.
struct Wire {
    // Kept open while its queues are used.
    _port: Port,
    pool: Mempool,
    rx: oxpmd::pmd::RxQueue,
    tx: oxpmd::pmd::TxQueue,
    mac: MacAddr,
}

fn wire() -> Wire {
    let mut port = Port::open(&env("OXPMD_PORT1"), 2).unwrap();
    let pool = pool_for(&port, "wire", 2048);
    let (rx, tx) = start(&mut port, &pool);
    port.set_promiscuous(true).unwrap();
    port.wait_link_up(DEADLINE).unwrap();
    let mac = port.mac_addr();
    Wire {
        _port: port,
        pool,
        rx,
        tx,
        mac,
    }
}

/// A paced flow of numbered frames to the VF and when each came back.
struct Flow {
    dst: MacAddr,
    sent: Vec<Instant>,
    back: Vec<Option<Instant>>,
    dups: usize,
}

impl Flow {
    fn new(dst: MacAddr) -> Flow {
        Flow {
            dst,
            sent: Vec::new(),
            back: Vec::new(),
            dups: 0,
        }
    }

    /// Sends one frame every [`PERIOD`] and takes what comes back, until `done` says so or
    /// `limit` passed; returns whether `done` said so.
    fn run(&mut self, w: &mut Wire, limit: Duration, mut done: impl FnMut(&Flow) -> bool) -> bool {
        let t = Instant::now();
        let mut next = Instant::now();
        let mut b = Burst::new();
        loop {
            if Instant::now() >= next {
                let seq = self.sent.len() as u32;
                let mut p = w.pool.alloc().expect("wire buffer");
                p.extend_from_slice(&frame(self.dst, w.mac, TAG, seq)).unwrap();
                b.push(p).unwrap();
                // A frame the wire cannot take now is dropped (and shows as a loss).
                w.tx.tx_burst(&mut b);
                b.clear();
                w.tx.reclaim();
                self.sent.push(Instant::now());
                self.back.push(None);
                next += PERIOD;
            }
            while w.rx.rx_burst(&mut b) > 0 {
                let now = Instant::now();
                for p in b.drain() {
                    let Some((tag, seq)) = parse(p.data()) else {
                        continue;
                    };
                    let i = seq as usize;
                    if tag != TAG || i >= self.back.len() {
                        continue;
                    }
                    if self.back[i].is_some() {
                        self.dups += 1;
                    } else {
                        self.back[i] = Some(now);
                    }
                }
            }
            if done(self) {
                return true;
            }
            if t.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_micros(300));
        }
    }

    /// The newest frame that came back.
    fn last_back(&self) -> Option<usize> {
        self.back.iter().rposition(Option::is_some)
    }

    /// Frames sent up to `IN_FLIGHT` before the end.
    fn judged(&self) -> usize {
        let end = *self.sent.last().expect("frames sent");
        self.sent.iter().take_while(|&&s| s + IN_FLIGHT <= end).count()
    }
}

/// What a flow across one loss shows.
#[derive(Debug)]
struct Gap {
    /// The first frame lost and the first that came back after it (None: none came back).
    first_lost: usize,
    first_back: Option<usize>,
    /// Frames lost after the first one back (outside the gap).
    lost_after: usize,
    lost_in_gap: usize,
}

fn gap_of(f: &Flow) -> Option<Gap> {
    let judged = f.judged();
    let first_lost = f.back[..judged].iter().position(Option::is_none)?;
    let first_back = (first_lost..judged).find(|&i| f.back[i].is_some());
    let lost_after = first_back.map_or(0, |b| (b..judged).filter(|&i| f.back[i].is_none()).count());
    Some(Gap {
        first_lost,
        first_back,
        lost_after,
        lost_in_gap: first_back.unwrap_or(judged) - first_lost,
    })
}

/// Vendor / device ids and command / status words of `addr`'s config space, as the kernel reads
/// them (for the report when a VF does not come back).
fn pci_words(addr: &str) -> String {
    match std::fs::read(format!("/sys/bus/pci/devices/{addr}/config")) {
        Ok(c) if c.len() >= 8 => format!(
            "{addr}: id {:02x}{:02x}:{:02x}{:02x} command {:02x}{:02x} status {:02x}{:02x}",
            c[1], c[0], c[3], c[2], c[5], c[4], c[7], c[6]
        ),
        Ok(c) => format!("{addr}: {} bytes of config space", c.len()),
        Err(e) => format!("{addr}: config space: {e}"),
    }
}

/// A forwarder in its own process on VF 0.
enum Forwarder {
    /// Our l2fwd (one port: it forwards back out of the same port, MACs rewritten).
    L2fwd,
    /// The same, sleeping on the VF's RX interrupt when idle (`--rx-interrupt`).
    L2fwdRxInterrupt,
    /// DPDK's testpmd (macswap).
    Testpmd,
}

fn start_forwarder(kind: &Forwarder, vf: &str, m: &Manager) -> Manager {
    let c = match kind {
        Forwarder::L2fwd | Forwarder::L2fwdRxInterrupt => {
            let mut c = Command::new(example("l2fwd"));
            if matches!(kind, Forwarder::L2fwdRxInterrupt) {
                c.arg("--rx-interrupt=50");
            }
            c.args(["--port", vf, "--cores", "1", "-T", "0", "--ring-size", "256"])
                .args(["--pool-size", "2048", "--xstats"])
                .env("OXPMD_VF_TOKEN_FILE", &m.token_file)
                .env("OXPMD_LOG", "info");
            c
        }
        Forwarder::Testpmd => {
            let mut c = Command::new("dpdk-testpmd");
            c.args(["-l", "0,1", "-n", "1", "--in-memory", "-a", vf])
                .arg(format!("--vfio-vf-token={}", token_of(m)))
                .args([
                    "--",
                    "--forward-mode=macswap",
                    "--auto-start",
                    "--stats-period",
                    "5",
                ]);
            c
        }
    };
    let f = Manager::with_limit(c, PathBuf::new(), PathBuf::new(), Duration::from_secs(400));
    let started = f.wait_line(
        |l| {
            (l.starts_with("l2fwd: ") && l.contains("workers"))
                || l.contains("Press enter")
                || l.contains("Port statistics")
        },
        DEADLINE,
    );
    assert!(started, "the forwarder did not start:\n{}", f.output());
    f
}

/// The value of xstat `name` in l2fwd's `--xstats` report (`  name: value`).
fn xstat(out: &str, name: &str) -> Option<u64> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
}

/// Sends warm-up frames until the forwarder returns one (its start may lose the first ones).
fn warm_up(w: &mut Wire, dst: MacAddr) {
    let mut f = Flow::new(dst);
    assert!(
        f.run(w, DEADLINE, |f| f.last_back().is_some()),
        "nothing came back through the VF"
    );
    std::thread::sleep(Duration::from_millis(300));
    drain(&mut w.rx);
}

/// SIGKILL of the service.
fn kill9(m: &Manager) {
    // SAFETY: a plain kill(2) of our own child's pid; no memory is involved.
    let r = unsafe { libc::kill(m.pid() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(r, 0, "kill -9 of the PF service");
}

/// The checks after a fault: no DMAR fault since `log_start`, hugepages as before, nothing left
/// in /dev/hugepages.
fn after_checks(log_start: usize, hp_before: u64, what: &str) {
    let faults = dmar_faults_since(log_start);
    assert!(
        faults.is_empty(),
        "DMAR faults after {what}:\n{}",
        faults.join("\n")
    );
    // Freed pages show in HugePages_Free a moment after the last process exits.
    let t = Instant::now();
    while hugepages_free() != hp_before && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let hp = hugepages_free();
    figure(&format!("{what}: HugePages_Free {hp_before} before, {hp} after"));
    assert_eq!(hp, hp_before, "hugepages not back after {what}");
    let files = hugepage_files();
    assert!(files.is_empty(), "left in /dev/hugepages after {what}: {files:?}");
}

/// The VF, opened again in this process, receives every frame sent to it: the device works.
fn device_works(m: &Manager, w: &mut Wire) {
    let vfs = vf_addrs(&pf());
    let token = Some(oxpmd_vfio::VfToken::load(&m.token_file).unwrap().expose());
    let mut vf = open_port(&vfs[0], 0, token).unwrap_or_else(|e| panic!("VF 0 again: {e}"));
    let pool = pool_for(&vf, "vf-again", 1024);
    let (mut rx, tx) = start(&mut vf, &pool);
    vf.wait_link_up(DEADLINE).unwrap();
    let vmac = vf.mac_addr();
    std::thread::sleep(Duration::from_millis(300));
    drain(&mut rx);
    send(&mut w.tx, &w.pool, vmac, w.mac, 0x7A, 100);
    let got = receive(&mut rx, 0x7A, 100, Duration::from_secs(20));
    assert!(
        exact(got.clone(), 100),
        "the VF opened again: {} of 100",
        got.len()
    );
    drop((rx, tx));
    drop(vf);
    drop(pool);
}

/// What a fault did: when it happened, when the PF answered again, and the restarted service.
type FaultDone = (Instant, Instant, Option<Manager>);

/// The VF forwards; `fault` (on its own thread, while the flow goes on) resets it and returns
/// when it happened and when the PF answered again; the flow goes on until frames come back
/// again (then 1.5 s more) or `limit_after` after the PF answered.
fn flow_across(
    w: &mut Wire,
    dst: MacAddr,
    limit_after: Duration,
    fault: impl FnOnce() -> FaultDone + Send + 'static,
) -> (Flow, FaultDone) {
    let mut f = Flow::new(dst);
    // 1.5 s of traffic before.
    let t = Instant::now();
    f.run(w, Duration::from_secs(5), |_| {
        t.elapsed() > Duration::from_millis(1500)
    });
    let before = f.sent.len();
    assert!(
        f.back[..f.judged()].iter().all(Option::is_some),
        "frames lost before the fault: {} of {before} back",
        f.back.iter().flatten().count()
    );
    let mut h = Some(std::thread::spawn(fault));
    let mut done: Option<FaultDone> = None;
    let mut first_back: Option<Instant> = None;
    let resumed = f.run(w, limit_after + Duration::from_secs(90), |f| {
        if done.is_none() && h.as_ref().is_some_and(|h| h.is_finished()) {
            let r = h.take().expect("fault thread").join();
            done = Some(r.unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        let Some((_, answered, _)) = &done else {
            return false;
        };
        if first_back.is_none() && f.back[before..].iter().flatten().any(|b| b > answered) {
            first_back = Some(Instant::now());
        }
        first_back.map_or(answered.elapsed() > limit_after, |t| {
            t.elapsed() > Duration::from_millis(1500)
        })
    });
    assert!(resumed, "the fault did not end within 90 s");
    if first_back.is_none() {
        figure(&format!(
            "no frame came back within {} s after the PF answered again",
            limit_after.as_secs()
        ));
    }
    (f, done.expect("the fault ended"))
}

/// The forwarding outage around the gap: from the last frame back before it to the first frame
/// back after it.
fn outage(f: &Flow, g: &Gap) -> Option<Duration> {
    let last_before = f.back[..g.first_lost].iter().rev().flatten().next()?;
    Some(f.back[g.first_back?]?.saturating_duration_since(*last_before))
}

/// Our igbvf forwarding on VF 0 (l2fwd, its own process) behind a fresh service, and what the
/// checks after the fault compare with.
struct Forwarding {
    log_start: usize,
    hp_before: u64,
    m: Manager,
    vf: String,
    w: Wire,
    fwd: Manager,
    vmac: MacAddr,
}

fn forwarding(kind: Forwarder) -> Forwarding {
    init_log();
    let log_start = kernel_log().len();
    let hp_before = hugepages_free();
    let m = serve(&["--vfs", "1", "--vf", &format!("0:mac={VF_MAC}")]);
    let vf = vf_addrs(&pf())[0].clone();
    let mut w = wire();
    let fwd = start_forwarder(&kind, &vf, &m);
    let vmac: MacAddr = VF_MAC.parse().unwrap();
    warm_up(&mut w, vmac);
    Forwarding {
        log_start,
        hp_before,
        m,
        vf,
        w,
        fwd,
        vmac,
    }
}

/// After the forwarder stopped: the VF works when opened again, the service stops cleanly, and
/// the checks after a fault hold.
fn wind_down(m: Manager, mut w: Wire, log_start: usize, hp_before: u64, what: &str) {
    device_works(&m, &mut w);
    drop(w);
    let (ok, out) = m.stop();
    assert!(ok, "the service failed after {what}:\n{out}");
    after_checks(log_start, hp_before, what);
}

/// Kills the service with SIGKILL, leaves it dead `down` long, restarts it with its saved
/// state.
fn kill_and_restart(m: Manager, down: Duration) -> FaultDone {
    kill9(&m);
    let at = Instant::now();
    let (ok, _) = m.wait_exit();
    assert!(!ok, "the killed service did not fail");
    std::thread::sleep(down);
    let m = serve(&["--vfs", "1", "--restart"]);
    (at, Instant::now(), Some(m))
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn our_igbvf_forwards_again_by_itself_after_the_pf_service_is_killed_and_restarted() {
    across_a_pf_restart(Forwarder::L2fwd, "our igbvf");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn our_igbvf_on_rx_interrupts_forwards_again_after_the_pf_service_is_killed_and_restarted() {
    across_a_pf_restart(Forwarder::L2fwdRxInterrupt, "our igbvf (l2fwd --rx-interrupt)");
}

/// l2fwd on VF 0 across kill -9 and restart of the PF service: it forwards again by itself,
/// losing frames in one gap only.
fn across_a_pf_restart(kind: Forwarder, who: &str) {
    let Forwarding {
        log_start,
        hp_before,
        m,
        vf,
        mut w,
        fwd,
        vmac,
    } = forwarding(kind);
    // The service is down a while (its fd closed: vfio-pci reset the PF).
    let (f, (killed_at, serving_at, m)) = flow_across(&mut w, vmac, RECOVERY_LIMIT, move || {
        kill_and_restart(m, Duration::from_millis(500))
    });
    let m = m.expect("restarted");
    let g = gap_of(&f).expect("the kill lost no frame: did the PF reset reach the VF?");
    figure(&format!("{g:?}"));
    figure(&format!(
        "after the restart: {}; {}",
        pci_words(&vf),
        pci_words(&pf())
    ));
    let first_back = g
        .first_back
        .unwrap_or_else(|| panic!("{who} never forwarded again:\n{}", fwd.output()));
    let back_at = f.back[first_back].expect("came back");
    figure(&format!(
        "{who} across kill -9 + restart of the PF service: {} frames lost in one gap \
         (forwarding outage {:.0} ms; first lost sent {:.0} ms before the kill); forwarding again \
         {:.0} ms after the kill, {:.0} ms after the restarted service served; {} lost outside \
         the gap, {} duplicates, {} frames sent",
        g.lost_in_gap,
        outage(&f, &g).unwrap_or_default().as_secs_f64() * 1e3,
        killed_at
            .saturating_duration_since(f.sent[g.first_lost])
            .as_secs_f64()
            * 1e3,
        back_at.saturating_duration_since(killed_at).as_secs_f64() * 1e3,
        back_at.saturating_duration_since(serving_at).as_secs_f64() * 1e3,
        g.lost_after,
        f.dups,
        f.sent.len()
    ));
    assert_eq!(g.lost_after, 0, "frames lost outside the gap: {g:?}");
    assert_eq!(f.dups, 0, "duplicated frames");
    assert!(
        fwd.has_line(|l| l.contains("igbvf lost its PF")) && fwd.has_line(|l| l.contains("igbvf recovered")),
        "the VF did not report the loss and its recovery:\n{}",
        fwd.output()
    );
    let (ok, out) = fwd.stop();
    assert!(ok, "l2fwd failed (or leaked buffers):\n{out}");
    let recoveries = xstat(&out, "reset_recoveries").expect("reset_recoveries in --xstats");
    let dropped = xstat(&out, "reset_tx_dropped_packets").expect("reset_tx_dropped_packets");
    let gap_us = xstat(&out, "reset_last_gap_us").expect("reset_last_gap_us");
    figure(&format!(
        "l2fwd xstats: reset_recoveries {recoveries}, reset_tx_dropped_packets {dropped}, \
         reset_last_gap_us {gap_us} (from noticing the loss to the RX queue running again)"
    ));
    assert!(recoveries >= 1, "no recovery counted:\n{out}");
    assert!(
        dropped as usize <= g.lost_in_gap,
        "the driver counts {dropped} TX drops, more than the {} frames lost",
        g.lost_in_gap
    );
    wind_down(
        m,
        w,
        log_start,
        hp_before,
        "kill -9 and restart of the PF service",
    );
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn our_igbvf_forwards_again_by_itself_after_a_function_reset_of_the_vf() {
    let fw = forwarding(Forwarder::L2fwd);
    let (log_start, hp_before, vmac) = (fw.log_start, fw.hp_before, fw.vmac);
    let (m, vf, mut w, fwd) = (fw.m, fw.vf, fw.w, fw.fwd);
    let vf2 = vf.clone();
    let (f, (reset_at, _, _)) = flow_across(&mut w, vmac, RECOVERY_LIMIT, move || {
        let at = Instant::now();
        std::fs::write(format!("/sys/bus/pci/devices/{vf2}/reset"), "1")
            .unwrap_or_else(|e| panic!("function reset of VF {vf2} through sysfs: {e}"));
        (at, Instant::now(), None)
    });
    let g = gap_of(&f).expect("the function reset lost no frame: did it reach the VF?");
    figure(&format!("{g:?}"));
    let first_back = g
        .first_back
        .expect("our igbvf never forwarded again after the VF reset");
    let back_at = f.back[first_back].expect("came back");
    figure(&format!(
        "our igbvf across a function reset of the VF (sysfs): {} frames lost in one gap \
         (forwarding outage {:.0} ms); forwarding again {:.0} ms after the reset; {} lost outside \
         the gap",
        g.lost_in_gap,
        outage(&f, &g).unwrap_or_default().as_secs_f64() * 1e3,
        back_at.saturating_duration_since(reset_at).as_secs_f64() * 1e3,
        g.lost_after
    ));
    assert_eq!(g.lost_after, 0, "frames lost outside the gap: {g:?}");
    assert!(
        fwd.has_line(|l| l.contains("igbvf lost its PF") && l.contains("queue"))
            && fwd.has_line(|l| l.contains("igbvf recovered")),
        "the VF did not report the reset and its recovery:\n{}",
        fwd.output()
    );
    assert!(
        m.has_line(|l| l.contains("VF 0") && l.to_lowercase().contains("reset")),
        "the service did not see the VF's reset:\n{}",
        m.output()
    );
    let (ok, out) = fwd.stop();
    assert!(ok, "l2fwd failed (or leaked buffers):\n{out}");
    assert!(xstat(&out, "reset_recoveries").is_some_and(|n| n >= 1), "{out}");
    wind_down(m, w, log_start, hp_before, "a function reset of the VF");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn dpdk_testpmd_across_a_pf_service_kill_and_restart_is_measured() {
    init_log();
    let log_start = kernel_log().len();
    let m = serve(&["--vfs", "1", "--vf", &format!("0:mac={VF_MAC}")]);
    let vf = vf_addrs(&pf())[0].clone();
    let mut w = wire();
    let tp = start_forwarder(&Forwarder::Testpmd, &vf, &m);
    let vmac: MacAddr = VF_MAC.parse().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    warm_up(&mut w, vmac);
    let (f, (_, serving_at, m)) = flow_across(&mut w, vmac, PEER_WINDOW, move || {
        kill_and_restart(m, Duration::from_millis(500))
    });
    let m = m.expect("restarted");
    let g = gap_of(&f).expect("the kill lost no frame");
    match g.first_back {
        Some(b) => figure(&format!(
            "DPDK testpmd (igbvf PMD) across kill -9 + restart: forwarding again {:.0} ms after \
             the restarted service served ({} lost in the gap, {} outside)",
            f.back[b]
                .unwrap()
                .saturating_duration_since(serving_at)
                .as_secs_f64()
                * 1e3,
            g.lost_in_gap,
            g.lost_after
        )),
        None => figure(&format!(
            "DPDK testpmd (igbvf PMD) across kill -9 + restart: no frame forwarded in the {:.0} s \
             after the restarted service served ({} frames lost since the kill)",
            f.sent
                .last()
                .unwrap()
                .saturating_duration_since(serving_at)
                .as_secs_f64(),
            g.lost_in_gap
        )),
    }
    let tail: Vec<String> = tp
        .output()
        .lines()
        .filter(|l| l.contains("reset") || l.contains("link") || l.contains("Port 0"))
        .map(str::to_string)
        .collect();
    figure(&format!("testpmd said: {tail:?}"));
    figure(&format!("after the restart: {}", pci_words(&vf)));
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(tp.pid().to_string())
        .status();
    let _ = tp.wait_exit();
    drop(w);
    let (ok, out) = m.stop();
    assert!(ok, "the restarted service failed:\n{out}");
    let faults = dmar_faults_since(log_start);
    assert!(faults.is_empty(), "DMAR faults:\n{}", faults.join("\n"));
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn kernel_igbvf_across_a_pf_service_kill_and_restart_is_measured() {
    init_log();
    let log_start = kernel_log().len();
    modprobe_igbvf();
    let m = serve(&["--vfs", "1", "--vf", &format!("0:kernel,mac={VF_MAC}")]);
    let vf = vf_addrs(&pf())[0].clone();
    let ifname = kernel_netdev(&vf);
    let ip = |a: &[&str]| assert!(Command::new("ip").args(a).status().unwrap().success(), "ip {a:?}");
    ip(&["link", "set", "dev", &ifname, "up"]);
    ip(&["addr", "add", "10.79.0.1/24", "dev", &ifname]);
    // A static neighbour: the kernel VF sends its pings without waiting for ARP.
    ip(&[
        "neigh",
        "replace",
        "10.79.0.2",
        "lladdr",
        "02:00:00:00:79:02",
        "dev",
        &ifname,
    ]);
    let mut w = wire();
    let vmac: MacAddr = VF_MAC.parse().unwrap();
    // The kernel VF pings every 20 ms; each echo request that reaches the wire is counted with
    // the time it arrived.
    let ping = ChildGuard::spawn(
        "busybox ping",
        Command::new("busybox").args(["ping", "-i", "0.02", "-W", "1", "10.79.0.2"]),
        Duration::from_secs(300),
    );
    let requests = |w: &mut Wire, until: Duration| -> Vec<Instant> {
        let mut seen = Vec::new();
        let mut b = Burst::new();
        let t = Instant::now();
        while t.elapsed() < until {
            if w.rx.rx_burst(&mut b) == 0 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            for p in b.drain() {
                let d = p.data();
                if d.len() >= 42 && d[6..12] == vmac.0 && d[12..14] == [0x08, 0x00] && d[23] == 1 {
                    seen.push(Instant::now());
                }
            }
        }
        seen
    };
    let before = requests(&mut w, Duration::from_secs(3));
    assert!(
        before.len() >= 10,
        "the kernel VF sent {} echo requests in 3 s",
        before.len()
    );
    kill9(&m);
    let killed_at = Instant::now();
    let _ = m.wait_exit();
    std::thread::sleep(Duration::from_millis(500));
    let m = serve(&["--vfs", "1", "--restart"]);
    let serving_at = Instant::now();
    let after = requests(&mut w, PEER_WINDOW);
    let carrier = std::fs::read_to_string(format!("/sys/class/net/{ifname}/operstate")).unwrap_or_default();
    match after
        .iter()
        .find(|&&t| t > serving_at + Duration::from_millis(100))
    {
        Some(t) => figure(&format!(
            "kernel igbvf across kill -9 + restart: sending again {:.0} ms after the kill, {:.0} ms \
             after the restarted service served; {} echo requests in the next {} s; operstate {}",
            t.saturating_duration_since(killed_at).as_secs_f64() * 1e3,
            t.saturating_duration_since(serving_at).as_secs_f64() * 1e3,
            after.len(),
            PEER_WINDOW.as_secs(),
            carrier.trim()
        )),
        None => figure(&format!(
            "kernel igbvf across kill -9 + restart: no echo request in the {} s after the restarted \
             service served; operstate {}",
            PEER_WINDOW.as_secs(),
            carrier.trim()
        )),
    }
    let klog: Vec<String> = kernel_log()[log_start..]
        .iter()
        .filter(|l| l.contains("igbvf"))
        .cloned()
        .collect();
    figure(&format!("kernel log (igbvf): {klog:?}"));
    figure(&format!("after the restart: {}", pci_words(&vf)));
    drop(ping);
    drop(w);
    let (ok, out) = m.stop();
    assert!(ok, "the restarted service failed:\n{out}");
    let faults = dmar_faults_since(log_start);
    assert!(faults.is_empty(), "DMAR faults:\n{}", faults.join("\n"));
}
