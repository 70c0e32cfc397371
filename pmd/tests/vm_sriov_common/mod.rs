//! Shared helpers of the SR-IOV VM tests: the PF manager (`examples/sriov-pf`) as a child
//! process, VF ports, frames, send and receive.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxpmd_dma::{DmaMap, Mempool, MempoolConfig, Packet};
use oxpmd_pmd::{Burst, DeviceSpec, MacAddr, OpenOptions, Port, PortConfig, RxQueue, TxQueue};

/// Hang guard only (never a speed assertion).
pub const DEADLINE: Duration = Duration::from_secs(60);
pub const RING: usize = 256;
/// How long a PF manager or service may run: longer than any test that starts one (a hang
/// guard, never a timing assertion).
pub const SERVICE_LIMIT: Duration = Duration::from_secs(600);
/// How long a short command (`oxpmd vf ...`, modprobe, a refused client) may run.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

#[path = "../child_guard/mod.rs"]
mod child_guard;
// Each test binary that includes this module uses a subset of it.
#[allow(unused_imports)]
pub use child_guard::{ChildGuard, run_bounded};

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run in the test VM"))
}

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        eprintln!("[{} {}] {}", r.level(), r.target(), r.args());
    }
    fn flush(&self) {}
}

pub fn init_log() {
    if log::set_logger(&StderrLogger).is_ok() {
        let debug = std::env::var("RUST_LOG").is_ok_and(|v| v == "debug");
        log::set_max_level(if debug {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Info
        });
    }
}

/// target/<profile>/examples/<name>, next to this test binary's deps directory.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>");
    let p = dir.join("examples").join(name);
    assert!(
        p.exists(),
        "{} missing: build the examples (cargo build --examples) before the VM tests",
        p.display()
    );
    p
}

/// The PF manager running as a child process; its stdout and stderr lines are collected.
pub struct Manager {
    child: ChildGuard,
    lines: Arc<Mutex<Vec<String>>>,
    pub token_file: PathBuf,
    pub state_file: PathBuf,
}

impl Manager {
    /// Starts `sriov-pf` with `args` (plus --token-file / --state-file under /run/oxpmd-test)
    /// and waits until it serves (or exits).
    pub fn start(args: &[&str]) -> Manager {
        let m = Self::spawn(args);
        let ok = m.wait_line(|l| l.contains("sriov-pf: serving"), DEADLINE);
        assert!(ok, "the PF manager did not start:\n{}", m.output());
        m
    }

    /// Starts it without waiting.
    pub fn spawn(args: &[&str]) -> Manager {
        let dir = PathBuf::from("/run/oxpmd-test");
        std::fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join("pf.token");
        let state_file = dir.join("pf.state");
        let mut c = Command::new(example("sriov-pf"));
        c.args(args);
        if !args.contains(&"--token-file") {
            c.arg("--token-file").arg(&token_file);
        }
        c.arg("--state-file")
            .arg(&state_file)
            .arg("--stats")
            .arg("0")
            .env("OXPMD_LOG", "info");
        Self::from_command(c, token_file, state_file)
    }

    /// Runs `c` (a PF manager or service) with its output collected, for at most
    /// [`SERVICE_LIMIT`].
    pub fn from_command(c: Command, token_file: PathBuf, state_file: PathBuf) -> Manager {
        Self::with_limit(c, token_file, state_file, SERVICE_LIMIT)
    }

    /// Runs `c` with its output collected, killed after `limit` (see [`ChildGuard`]).
    pub fn with_limit(mut c: Command, token_file: PathBuf, state_file: PathBuf, limit: Duration) -> Manager {
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let name = std::path::Path::new(c.get_program())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "child".into());
        let child = ChildGuard::spawn(&name, &mut c, limit);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (out, err) = child.take_pipes();
        for r in [
            Box::new(out.unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(err.unwrap()),
        ] {
            let l = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    eprintln!("  | {line}");
                    l.lock().unwrap().push(line);
                }
            });
        }
        Manager {
            child,
            lines,
            token_file,
            state_file,
        }
    }

    /// Everything it printed so far, and whether the guard had to kill it.
    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n") + &self.child.timeout_note()
    }

    pub fn has_line(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.lines.lock().unwrap().iter().any(|l| pred(l))
    }

    pub fn count_lines(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| pred(l)).count()
    }

    /// Waits until a line matches; false if the manager exited first or at the timeout.
    pub fn wait_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if self.has_line(&pred) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().is_none()
    }

    /// The MAC the manager printed for VF `i`.
    pub fn vf_mac(&self, i: usize) -> MacAddr {
        let prefix = format!("sriov-pf: VF {i}: ");
        let lines = self.lines.lock().unwrap();
        let l = lines
            .iter()
            .find(|l| l.starts_with(&prefix) && l.contains(" MAC "))
            .unwrap_or_else(|| panic!("no line for VF {i}"));
        let mac = l
            .split(" MAC ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        mac.parse().unwrap()
    }

    /// SIGTERM, then the exit status (killed when it does not exit within [`DEADLINE`]).
    pub fn stop(self) -> (bool, String) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.pid().to_string())
            .status();
        self.finish()
    }

    /// Waits for the process to exit by itself (killed when it does not within [`DEADLINE`]).
    pub fn wait_exit(self) -> (bool, String) {
        self.finish()
    }

    fn finish(self) -> (bool, String) {
        let st = self.child.wait_or_kill(DEADLINE);
        // Its last lines are still on their way through the reader threads.
        std::thread::sleep(Duration::from_millis(100));
        (st.success() && !self.child.timed_out(), self.output())
    }
}

/// The PF's VF addresses from sysfs.
pub fn vf_addrs(pf: &str) -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..8 {
        let link = format!("/sys/bus/pci/devices/{pf}/virtfn{i}");
        if let Ok(p) = std::fs::read_link(&link) {
            v.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    v
}

/// Opens a port by PCI address with an optional explicit token.
pub fn open_port(addr: &str, port_id: u16, token: Option<String>) -> oxpmd_pmd::Result<Port> {
    Port::open_spec(
        &DeviceSpec::parse(addr)?,
        &OpenOptions {
            port_id,
            vf_token: token,
        },
    )
}

pub fn pool_for(port: &Port, name: &str, n: usize) -> Mempool {
    let map: Arc<dyn DmaMap> = port.dma_map().expect("the port has a DMA map");
    Mempool::new(
        &MempoolConfig {
            cache_size: 32,
            ..MempoolConfig::new(name, n)
        },
        map,
    )
    .expect("mempool")
}

/// Configures and starts a one-queue port, returns its queues.
pub fn start(port: &mut Port, pool: &Mempool) -> (RxQueue, TxQueue) {
    port.configure(&PortConfig::new(pool.clone()).ring_sizes(RING, RING))
        .unwrap_or_else(|e| panic!("configure {}: {e}", port.name()));
    port.start().unwrap();
    let (mut rx, mut tx) = port.take_queues().unwrap();
    (rx.remove(0), tx.remove(0))
}

/// A 128-byte test frame: magic, tag, sequence.
pub fn frame(dst: MacAddr, src: MacAddr, tag: u16, seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; 128];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&0x88B5u16.to_be_bytes());
    f[14..16].copy_from_slice(&0x5A5Au16.to_be_bytes());
    f[16..18].copy_from_slice(&tag.to_be_bytes());
    f[18..22].copy_from_slice(&seq.to_be_bytes());
    f
}

/// (tag, seq) of a test frame.
pub fn parse(d: &[u8]) -> Option<(u16, u32)> {
    if d.len() < 22 || d[12..14] != 0x88B5u16.to_be_bytes() || d[14..16] != 0x5A5Au16.to_be_bytes() {
        return None;
    }
    Some((
        u16::from_be_bytes([d[16], d[17]]),
        u32::from_be_bytes([d[18], d[19], d[20], d[21]]),
    ))
}

/// Sends `n` frames (tag, 0..n) from `src` to `dst`, in small paced bursts.
pub fn send(tx: &mut TxQueue, pool: &Mempool, dst: MacAddr, src: MacAddr, tag: u16, n: u32) {
    let mut burst = Burst::new();
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        for &s in chunk {
            let mut p: Packet = pool.alloc().expect("pool buffer");
            p.extend_from_slice(&frame(dst, src, tag, s)).unwrap();
            burst.push(p).unwrap();
        }
        while !burst.is_empty() {
            tx.tx_burst(&mut burst);
            assert!(t.elapsed() < DEADLINE, "TX never drained");
            if !burst.is_empty() {
                tx.reclaim();
                std::thread::yield_now();
            }
        }
        // Let the (emulated) receiver keep up: no ring overrun, so delivery can be exact.
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Receives test frames with `tag` until `n` arrived or `wait` passed (after the last one,
/// 300 ms more for extras); returns the sequence numbers seen.
pub fn receive(rx: &mut RxQueue, tag: u16, n: usize, wait: Duration) -> Vec<u32> {
    let mut seqs = Vec::new();
    let mut burst = Burst::new();
    let t = Instant::now();
    let mut extra_until: Option<Instant> = None;
    loop {
        if rx.rx_burst(&mut burst) > 0 {
            for p in burst.drain() {
                if let Some((tg, s)) = parse(p.data()) {
                    if tg == tag {
                        seqs.push(s);
                    }
                }
            }
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
        if seqs.len() >= n && extra_until.is_none() {
            extra_until = Some(Instant::now() + Duration::from_millis(300));
        }
        if extra_until.is_some_and(|u| Instant::now() > u) || t.elapsed() > wait {
            break;
        }
    }
    seqs
}

/// Drains whatever is queued.
pub fn drain(rx: &mut RxQueue) {
    let mut burst = Burst::new();
    while rx.rx_burst(&mut burst) > 0 {
        burst.clear();
    }
}

/// Exactly 0..n, once each.
pub fn exact(mut seqs: Vec<u32>, n: u32) -> bool {
    seqs.sort_unstable();
    seqs == (0..n).collect::<Vec<_>>()
}

/// A PF manager serving one VF of `pf` and our igbvf on it: opened with the token, configured,
/// started and its link up.
pub fn started_vf(pf: &str) -> (Manager, Port, Mempool, RxQueue, TxQueue) {
    let m = Manager::start(&["--pf", pf, "--vfs", "1"]);
    let vfs = vf_addrs(pf);
    let token = Some(oxpmd_vfio::VfToken::load(&m.token_file).unwrap().expose());
    let mut vf = open_port(&vfs[0], 0, token).unwrap_or_else(|e| panic!("VF 0: {e}"));
    let pool = pool_for(&vf, "vf", 1024);
    let (rx, tx) = start(&mut vf, &pool);
    vf.wait_link_up(DEADLINE).unwrap();
    (m, vf, pool, rx, tx)
}
