//! `xtask soak-guest`: the soak itself, run in the test VM (topology `quad`) by `cargo xtask soak`.
//!
//! Ports: pktgen 0 <-> l2fwd 2 (stream `l2fwd`: l2fwd on port 2 alone sends every frame back out
//! of it, l2fwd's pairing of an odd port); pktgen 1 <-> PF 3, served by `oxpmd sriov serve` with
//! two VFs: VF 0 runs l2fwd the same way (stream `vf`: frames to VF 0's MAC come back from it),
//! VF 1 runs `vf-mailbox-storm`. The long-lived processes run all along; pktgen runs once per
//! phase and per stream, so each phase has its own sent / received / lost. Phases, repeated until
//! the minutes are up: steady, PF service restart, steady, VF process restart. Loss is allowed
//! only on stream `vf` and only in a restart phase (the restart window); stream `l2fwd` never
//! loses a frame, since nothing restarts on its ports.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use super::proc::{Proc, field, json_number};

/// Each stream's rate (frames/s): well within what TCG forwards with six busy processes on two
/// vCPUs (at 1000/s a loaded host starved a poller long enough to overflow 1024 descriptors).
const RATE: u32 = 500;
/// RX/TX descriptors of every port: with [`RATE`], 8 s of frames ride out a starved poller (a
/// process starting up next to it maps its memory through the emulated IOMMU, which is slow).
const RING: &str = "4096";
/// Growth of a process's resident memory between its start and its end above which the soak fails.
const RSS_GROWTH_BOUND_KIB: u64 = 4096;
/// How long the PF restart phase waits for the VF's traffic to resume by itself before it
/// restarts the VF process.
const RESUME_WAIT: Duration = Duration::from_secs(20);
/// How long a (re)started VF process gets to forward again.
const REOPEN_WAIT: Duration = Duration::from_secs(30);
/// Seconds of traffic in a restart phase before the restart.
const BEFORE_RESTART: Duration = Duration::from_secs(5);
/// Length of a PF restart phase (the restart window): the restart, [`RESUME_WAIT`], a reopen.
const PF_PHASE_SECS: u64 = 60;
/// Length of a VF process restart phase.
const VF_PHASE_SECS: u64 = 25;
/// pktgen's drain after sending.
const DRAIN_SECS: u64 = 2;
/// How long a process gets to start serving or forwarding.
const START_WAIT: Duration = Duration::from_secs(90);

struct Opts {
    minutes: u64,
    bin: PathBuf,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        minutes: 10,
        bin: PathBuf::from("target/release"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or_else(|| format!("{a}: missing value"))?;
        match a.as_str() {
            "--minutes" => o.minutes = v.parse().map_err(|_| format!("--minutes: {v:?}"))?,
            "--bin" => o.bin = PathBuf::from(v),
            _ => return Err(format!("unknown argument `{a}`")),
        }
    }
    Ok(o)
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name)
        .map_err(|_| format!("{name} is not set: soak-guest runs in the test VM (cargo xtask soak)"))
}

/// The phase kinds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Steady,
    PfRestart,
    VfRestart,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Steady => "steady",
            Kind::PfRestart => "pf-restart",
            Kind::VfRestart => "vf-restart",
        }
    }
}

/// One stream's figures in one phase (pktgen's result line).
struct StreamResult {
    sent: u64,
    received: u64,
    lost: u64,
    bad: u64,
    buffers_back: bool,
}

struct Soak {
    dir: PathBuf,
    bin: PathBuf,
    oxpmd: PathBuf,
    ports: [String; 4],
    token_env: Vec<(String, String)>,
    vf0: String,
    vf0_mac: String,
    vf1: String,
    pf: Option<Proc>,
    l2fwd: Option<Proc>,
    vf_l2fwd: Option<Proc>,
    storm: Option<Proc>,
    /// (process, pid, RSS at start, RSS at end) of every process instance that ended.
    memory: Vec<(String, u32, Option<u64>, Option<u64>)>,
    /// What went wrong (the exit status is non-zero when not empty).
    failures: Vec<String>,
    /// Notes for the closing lines (allowed events).
    buffer_lines: Vec<String>,
}

impl Soak {
    fn example(&self, name: &str) -> PathBuf {
        self.bin.join("examples").join(name)
    }

    fn token_env(&self) -> Vec<(&str, &str)> {
        self.token_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn start_pf(&mut self, restart: bool) -> Result<(), String> {
        let mut args = vec!["sriov", "serve", "--pf", self.ports[3].as_str(), "--vfs", "2"];
        if restart {
            args.push("--restart");
        }
        let mut p = Proc::spawn("pf-service", &self.dir, &self.oxpmd, &args, &[])?;
        if !p.wait_line(|l| l.contains("oxpmd: serving"), START_WAIT) {
            return Err(format!("the PF service did not start serving:\n{}", p.output()));
        }
        self.pf = Some(p);
        Ok(())
    }

    fn start_l2fwd(&self, name: &str, port: &str, core: &str, env: &[(&str, &str)]) -> Result<Proc, String> {
        let args = [
            "--port",
            port,
            "-T",
            "1",
            "--stats-json",
            "--cores",
            core,
            "--ring-size",
            RING,
        ];
        let mut p = Proc::spawn(name, &self.dir, &self.example("l2fwd"), &args, env)?;
        if !p.wait_line(|l| l.starts_with("l2fwd: ") && l.contains(" workers"), START_WAIT) {
            return Err(format!("{name} on {port} did not start:\n{}", p.output()));
        }
        Ok(p)
    }

    fn start_vf_l2fwd(&mut self) -> Result<(), String> {
        let env = self.token_env();
        let p = self.start_l2fwd("vf-l2fwd", &self.vf0, "0", &env)?;
        self.vf_l2fwd = Some(p);
        Ok(())
    }

    /// Stops a process, checks its closing lines, and records its memory.
    fn finish(&mut self, p: Proc, signal: &str, expect_buffer_check: bool, buffers_may_leak: bool) -> String {
        let rss_end = p.rss_kib();
        let (name, pid, rss_start) = (p.name.clone(), p.pid(), p.rss_start_kib);
        let (status, out) = p.stop(signal, Duration::from_secs(15));
        if status.is_none_or(|s| !s.success()) {
            self.failures.push(format!(
                "{name} (pid {pid}) did not exit cleanly ({}); last lines:\n{}",
                status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "killed after 15 s".into()),
                tail(&out, 8)
            ));
        }
        if expect_buffer_check {
            let checks: Vec<&str> = out.lines().filter(|l| l.starts_with("buffer check:")).collect();
            if checks.is_empty() {
                self.failures
                    .push(format!("{name} (pid {pid}) printed no buffer check"));
            }
            for c in checks {
                let ok = c.contains(": OK, no leak");
                if !ok && !buffers_may_leak {
                    self.failures.push(format!("{name} (pid {pid}): {c}"));
                }
                self.buffer_lines.push(format!(
                    "soak: {name} (pid {pid}): {c}{}",
                    if !ok && buffers_may_leak {
                        " (allowed: its VF was reset under it by the PF restart)"
                    } else {
                        ""
                    }
                ));
            }
        }
        self.memory.push((name, pid, rss_start, rss_end));
        out
    }

    /// VF 0's forwarded-frame count (its l2fwd's latest stats line).
    fn vf_rx(&self) -> Option<u64> {
        let out = self.vf_l2fwd.as_ref()?.output();
        // `{"type":"stats",...,"forwarding":[{"port":0,...,"rx":N,...}],...}`: the first "rx".
        out.lines()
            .rev()
            .find(|l| l.starts_with("{\"type\":\"stats\""))
            .and_then(|l| json_number(l, "rx"))
    }

    /// Waits until VF 0's l2fwd forwards again (its count grows by 20 frames), up to `limit`.
    fn wait_vf_forwarding(&self, limit: Duration) -> Option<Duration> {
        let t = Instant::now();
        // Its stats line comes every second: the count seen now may be up to a second old.
        let base = self.vf_rx().unwrap_or(0);
        while t.elapsed() < limit {
            thread::sleep(Duration::from_millis(250));
            if self.vf_rx().is_some_and(|rx| rx >= base + 20) {
                return Some(t.elapsed());
            }
        }
        None
    }

    /// Stops VF 0's l2fwd (SIGINT: its closing lines are checked; `may_leak`: its VF was reset
    /// under it), starts it again, and returns how long it took to forward again (None: not within
    /// [`REOPEN_WAIT`]).
    fn restart_vf_process(&mut self, may_leak: bool) -> Result<Option<Duration>, String> {
        let old = self.vf_l2fwd.take().ok_or("no VF l2fwd running")?;
        let _ = self.finish(old, "INT", true, may_leak);
        self.start_vf_l2fwd()?;
        let back = self.wait_vf_forwarding(REOPEN_WAIT);
        if let Some(p) = self.vf_l2fwd.as_mut() {
            p.mark_rss_start();
        }
        Ok(back)
    }

    fn pktgen(&self, stream: &str, port: &str, dst: &str, secs: u64) -> Result<Proc, String> {
        let rate = RATE.to_string();
        let secs = secs.to_string();
        let drain = DRAIN_SECS.to_string();
        let args = [
            "--tx-port",
            port,
            "--rx-port",
            port,
            "-P",
            "--dst-mac",
            dst,
            "--rate",
            &rate,
            "--duration",
            &secs,
            "--drain",
            &drain,
            "-T",
            "0",
            "--ring-size",
            RING,
        ];
        Proc::spawn(
            &format!("pktgen-{stream}"),
            &self.dir,
            &self.example("pktgen"),
            &args,
            &[],
        )
    }

    /// Waits for a phase's pktgen and reads its result line.
    fn stream_result(&mut self, p: Proc, limit: Duration) -> Result<StreamResult, String> {
        let name = p.name.clone();
        let mut p = p;
        let end = Instant::now() + limit;
        while !p.exited() && Instant::now() < end {
            thread::sleep(Duration::from_millis(200));
        }
        let (status, out) = p.stop("INT", Duration::from_secs(10));
        let line = out
            .lines()
            .find(|l| l.starts_with("pktgen-result:"))
            .ok_or_else(|| format!("{name} gave no result ({status:?}):\n{}", tail(&out, 10)))?;
        let n = |k: &str| field(line, k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok(StreamResult {
            sent: n("sent"),
            received: n("unique"),
            lost: n("lost"),
            bad: n("dup") + n("corrupt"),
            buffers_back: field(line, "pool_free").is_some() && n("pool_free") == n("pool_capacity"),
        })
    }

    /// Runs one phase; returns its line.
    fn phase(&mut self, index: usize, kind: Kind, secs: u64) -> Result<String, String> {
        let t = Instant::now();
        let l2 = self.pktgen("l2fwd", &self.ports[0], &mac_of(2)?, secs)?;
        let vf = self.pktgen("vf", &self.ports[1], &self.vf0_mac, secs)?;
        let mut note = String::new();
        match kind {
            Kind::Steady => {}
            Kind::PfRestart => {
                thread::sleep(BEFORE_RESTART);
                let pf = self.pf.take().ok_or("no PF service running")?;
                let _ = self.finish(pf, "TERM", false, false);
                self.start_pf(true)?;
                if let Some(p) = self.pf.as_mut() {
                    p.mark_rss_start();
                }
                match self.wait_vf_forwarding(RESUME_WAIT) {
                    Some(d) => {
                        note = format!(
                            "VF traffic resumed by itself {:.1} s after the PF restart",
                            d.as_secs_f64()
                        )
                    }
                    None => match self.restart_vf_process(true)? {
                        Some(d) => {
                            note = format!(
                                "VF reopened after PF restart (no traffic {} s after it; forwarding again {:.1} s after the reopen)",
                                RESUME_WAIT.as_secs(),
                                d.as_secs_f64()
                            )
                        }
                        None => {
                            note = "VF reopened after PF restart, and still no traffic".into();
                            self.failures
                                .push(format!("phase {index} {}: {note}", kind.name()));
                        }
                    },
                }
            }
            Kind::VfRestart => {
                thread::sleep(BEFORE_RESTART);
                match self.restart_vf_process(false)? {
                    Some(d) => {
                        note = format!(
                            "VF process restarted, forwarding again {:.1} s later",
                            d.as_secs_f64()
                        )
                    }
                    None => {
                        note = "VF process restarted, and no traffic since".into();
                        self.failures
                            .push(format!("phase {index} {}: {note}", kind.name()));
                    }
                }
            }
        }
        let limit = Duration::from_secs(secs + DRAIN_SECS + 60);
        let r_l2 = self.stream_result(l2, limit)?;
        let r_vf = self.stream_result(vf, limit)?;
        let window = kind != Kind::Steady;
        let mut verdict = "ok";
        for (stream, r, allowed) in [("l2fwd", &r_l2, false), ("vf", &r_vf, window)] {
            if (r.lost > 0 && !allowed) || r.bad > 0 || r.sent == 0 {
                verdict = "FAIL";
                self.failures.push(format!(
                    "phase {index} {} stream {stream}: sent {} received {} lost {} duplicated/corrupted {}",
                    kind.name(),
                    r.sent,
                    r.received,
                    r.lost,
                    r.bad
                ));
            }
            if !r.buffers_back {
                verdict = "FAIL";
                self.failures.push(format!(
                    "phase {index} {} stream {stream}: pktgen's buffers not all back",
                    kind.name()
                ));
            }
        }
        let fmt = |r: &StreamResult| format!("sent {} received {} lost {}", r.sent, r.received, r.lost);
        Ok(format!(
            "soak: phase {index} {:<10} {:>3} s: l2fwd {}; vf {}{}{}; {verdict}",
            kind.name(),
            t.elapsed().as_secs(),
            fmt(&r_l2),
            fmt(&r_vf),
            if window && r_vf.lost > 0 {
                " (restart window: allowed)"
            } else {
                ""
            },
            if note.is_empty() {
                String::new()
            } else {
                format!("; {note}")
            }
        ))
    }
}

fn mac_of(port: usize) -> Result<String, String> {
    env(&format!("OXPMD_PORT{port}_MAC"))
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The value after `key` in the first line of `text` that contains `key` (up to a space, `;` or `,`).
fn after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let l = text.lines().find(|l| l.contains(key))?;
    let rest = &l[l.find(key)? + key.len()..];
    rest.split([' ', ';', ',']).next()
}

/// The IOMMU fault lines of the guest kernel log.
fn dmar_faults() -> Result<Vec<String>, String> {
    let out = Command::new("dmesg")
        .output()
        .map_err(|e| format!("dmesg: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("DMAR") && (l.contains("fault") || l.contains("[DMA ") || l.contains("PTE")))
        .map(str::to_string)
        .collect())
}

/// The phase plan for `minutes`: steady, PF restart, steady, VF restart, ... until the time is up.
fn plan(minutes: u64) -> Vec<(Kind, u64)> {
    let total = minutes * 60;
    // Steady phases: a sixth of the soak, 20 s to 90 s, so a 2-minute soak has both restarts and a
    // 10-minute one restarts each every few minutes.
    let steady = (total / 6).clamp(20, 90);
    let cycle = [
        (Kind::Steady, steady),
        (Kind::PfRestart, PF_PHASE_SECS),
        (Kind::Steady, steady),
        (Kind::VfRestart, VF_PHASE_SECS),
    ];
    let mut out = Vec::new();
    let mut used = 0;
    for (k, s) in cycle.iter().cycle() {
        if used + s > total && out.len() >= cycle.len() {
            break;
        }
        out.push((*k, *s));
        used += s;
    }
    out
}

/// Entry point of `xtask soak-guest`.
pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            println!("soak: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<bool, String> {
    let o = parse(args)?;
    let ports = [0, 1, 2, 3].map(|i| env(&format!("OXPMD_PORT{i}")));
    let [Ok(p0), Ok(p1), Ok(p2), Ok(p3)] = ports else {
        return Err("the soak needs the quad topology's four ports (OXPMD_PORT0..3)".into());
    };
    let dir = Path::new("/tmp/soak");
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let faults_before = dmar_faults()?.len();
    let mut s = Soak {
        dir: dir.to_path_buf(),
        oxpmd: o.bin.join("oxpmd"),
        bin: o.bin.clone(),
        ports: [p0, p1, p2, p3],
        token_env: Vec::new(),
        vf0: String::new(),
        vf0_mac: String::new(),
        vf1: String::new(),
        pf: None,
        l2fwd: None,
        vf_l2fwd: None,
        storm: None,
        memory: Vec::new(),
        failures: Vec::new(),
        buffer_lines: Vec::new(),
    };
    let plan = plan(o.minutes);
    println!(
        "soak: {} min: pktgen {} <-> l2fwd {} (stream l2fwd); pktgen {} <-> PF {} (oxpmd sriov serve, 2 VFs) \
         with l2fwd on VF 0 (stream vf) and vf-mailbox-storm on VF 1; {RATE} frames/s per stream; {} phases",
        o.minutes,
        s.ports[0],
        s.ports[2],
        s.ports[1],
        s.ports[3],
        plan.len()
    );
    s.start_pf(false)?;
    let out = s.pf.as_ref().map(Proc::output).unwrap_or_default();
    let token =
        after(&out, "token file ").ok_or_else(|| format!("the PF service named no token file:\n{out}"))?;
    s.token_env = vec![("OXPMD_VF_TOKEN_FILE".into(), token.to_string())];
    s.vf0 = after(&out, "oxpmd: VF 0: ")
        .ok_or("the PF service named no VF 0")?
        .to_string();
    s.vf1 = after(&out, "oxpmd: VF 1: ")
        .ok_or("the PF service named no VF 1")?
        .to_string();
    let vf0_line = out
        .lines()
        .find(|l| l.contains("oxpmd: VF 0: "))
        .unwrap_or_default();
    s.vf0_mac = after(vf0_line, " MAC ")
        .ok_or("the PF service gave VF 0 no MAC")?
        .to_string();
    println!(
        "soak: VF 0 {} (MAC {}), VF 1 {} (hostile)",
        s.vf0, s.vf0_mac, s.vf1
    );
    let l2fwd = s.start_l2fwd("l2fwd", &s.ports[2], "1", &[])?;
    s.l2fwd = Some(l2fwd);
    s.start_vf_l2fwd()?;
    let env = s.token_env();
    let mut storm = Proc::spawn(
        "hostile-vf",
        dir,
        &s.example("vf-mailbox-storm"),
        &["--vf", &s.vf1, "--rate", "200"],
        &env,
    )?;
    if !storm.wait_line(|l| l.contains("storming"), START_WAIT) {
        return Err(format!("the hostile VF did not start:\n{}", storm.output()));
    }
    s.storm = Some(storm);
    thread::sleep(Duration::from_secs(3));
    for p in [&mut s.pf, &mut s.l2fwd, &mut s.vf_l2fwd, &mut s.storm]
        .into_iter()
        .flatten()
    {
        p.mark_rss_start();
    }

    let started = Instant::now();
    let mut lines = Vec::new();
    for (i, (kind, secs)) in plan.iter().enumerate() {
        let line = s.phase(i + 1, *kind, *secs)?;
        println!("{line}");
        lines.push(line);
        for p in [&mut s.pf, &mut s.l2fwd, &mut s.vf_l2fwd, &mut s.storm]
            .into_iter()
            .flatten()
        {
            if p.exited() {
                let name = p.name.clone();
                s.failures.push(format!(
                    "{name} exited during phase {}:\n{}",
                    i + 1,
                    tail(&p.output(), 8)
                ));
            }
        }
    }

    let mut storm_end = String::new();
    let last = [
        (s.storm.take(), "INT", false),
        (s.vf_l2fwd.take(), "INT", true),
        (s.l2fwd.take(), "INT", true),
        (s.pf.take(), "TERM", false),
    ];
    for (i, (p, sig, check)) in last.into_iter().enumerate() {
        if let Some(p) = p {
            let out = s.finish(p, sig, check, false);
            if i == 0 {
                storm_end = out;
            }
        }
    }
    let faults = dmar_faults()?;

    println!(
        "soak: --- summary ({:.1} min of phases) ---",
        started.elapsed().as_secs_f64() / 60.0
    );
    for l in &lines {
        println!("{l}");
    }
    if let Some(l) = storm_end
        .lines()
        .find(|l| l.starts_with("vf-mailbox-storm: sent="))
    {
        println!("soak: hostile VF: {}", l.trim_start_matches("vf-mailbox-storm: "));
    }
    for l in &s.buffer_lines {
        println!("{l}");
    }
    for (name, pid, start, end) in &s.memory {
        let kib = |v: &Option<u64>| v.map(|k| format!("{k} KiB")).unwrap_or_else(|| "?".into());
        let growth = match (start, end) {
            (Some(a), Some(b)) => b.saturating_sub(*a),
            _ => 0,
        };
        let ok = growth <= RSS_GROWTH_BOUND_KIB;
        if !ok {
            s.failures
                .push(format!("{name} (pid {pid}) grew by {growth} KiB"));
        }
        println!(
            "soak: memory {name:<10} pid {pid:<5} RSS start {} end {} (+{growth} KiB; bound {RSS_GROWTH_BOUND_KIB} KiB): {}",
            kib(start),
            kib(end),
            if ok { "ok" } else { "FAIL" }
        );
    }
    let new_faults = &faults[faults_before.min(faults.len())..];
    println!("soak: DMAR faults in dmesg: {}", new_faults.len());
    for f in new_faults {
        println!("soak:   {f}");
        s.failures.push(format!("DMAR fault: {f}"));
    }
    if s.failures.is_empty() {
        println!("soak: PASSED");
        Ok(true)
    } else {
        for f in &s.failures {
            println!("soak: failure: {f}");
        }
        println!("soak: FAILED ({} failures)", s.failures.len());
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_has_both_restarts_and_fits_the_minutes() {
        let p = plan(2);
        let kinds: Vec<Kind> = p.iter().map(|x| x.0).collect();
        assert!(kinds.contains(&Kind::PfRestart) && kinds.contains(&Kind::VfRestart));
        assert_eq!(p.iter().map(|x| x.1).sum::<u64>(), 20 + 60 + 20 + 25);
        let p = plan(10);
        assert!(p.iter().map(|x| x.1).sum::<u64>() <= 600);
        assert!(p.iter().filter(|x| x.0 == Kind::PfRestart).count() >= 2);
    }

    #[test]
    fn service_lines_are_read() {
        let out = "oxpmd: PF 0000:00:0c.0: 2 VF(s) served; control socket /run/x.sock (mode 0600); token file /run/oxpmd/t.token; state file /s\n\
                   oxpmd: VF 0: 0000:00:1c.0 MAC 02:00:00:00:66:00 vfio-pci\n";
        assert_eq!(after(out, "token file "), Some("/run/oxpmd/t.token"));
        assert_eq!(after(out, "oxpmd: VF 0: "), Some("0000:00:1c.0"));
        assert_eq!(after(out, " MAC "), Some("02:00:00:00:66:00"));
    }
}
