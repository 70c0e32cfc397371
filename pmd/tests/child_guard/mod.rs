//! A child process of a test, bounded in time ([`ChildGuard`], [`run_bounded`]): shared by the
//! VM tests of both packages (`#[path]`-included), so that no hung child holds a test binary
//! until the VM harness's timeout, and one that has to be killed leaves its threads' stacks.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long gdb may take to attach and print every thread's stack (symbols of a debug build
/// load slowly under TCG).
const STACKS_LIMIT: Duration = Duration::from_secs(120);

/// Every thread's stack of process `pid`, from `gdb -p PID -batch -ex "thread apply all bt"`
/// (the test VM shares the host's root, so gdb is there when the host has it), or why there is
/// none. Taken before a hung child is killed: what it waited for is the diagnosis.
pub fn thread_stacks(pid: u32) -> String {
    let spawned = Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-nx",
            "-ex",
            "thread apply all bt",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut gdb = match spawned {
        Ok(g) => g,
        Err(e) => return format!("no thread stacks of pid {pid}: gdb: {e} (install gdb for them)"),
    };
    let mut out = gdb.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let t = Instant::now();
    while matches!(gdb.try_wait(), Ok(None)) {
        if t.elapsed() >= STACKS_LIMIT {
            let _ = gdb.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = gdb.wait();
    let text = reader.join().unwrap_or_default();
    // gdb's own chatter (symbol loading, "[New LWP ...]") is not the stacks.
    text.lines()
        .filter(|l| l.starts_with('#') || l.starts_with("Thread "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Kills a child that outlived its limit, first printing its threads' stacks.
fn kill_hung(c: &mut Child, name: &str, pid: u32, why: &str) {
    eprintln!(
        "test guard: {name} (pid {pid}) {why}: its threads' stacks:\n{}",
        thread_stacks(pid)
    );
    let _ = c.kill();
    let _ = c.wait();
    eprintln!("test guard: {name} (pid {pid}) killed");
}

/// A child process of a test, bounded in time: a watchdog thread kills it when it outlives its
/// limit, and dropping the guard kills it and waits for it, so neither a hung child nor a
/// failing assertion leaves it running. Whatever it had to kill is printed (`test guard: ...`)
/// and reported by [`ChildGuard::timed_out`].
pub struct ChildGuard {
    name: String,
    pid: u32,
    child: Arc<Mutex<Child>>,
    done: Arc<AtomicBool>,
    timed_out: Arc<AtomicBool>,
    limit: Duration,
}

impl ChildGuard {
    /// Starts `c` as `name`, to be killed after `limit`.
    pub fn spawn(name: &str, c: &mut Command, limit: Duration) -> ChildGuard {
        let child = c.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let pid = child.id();
        let g = ChildGuard {
            name: name.to_string(),
            pid,
            child: Arc::new(Mutex::new(child)),
            done: Arc::new(AtomicBool::new(false)),
            timed_out: Arc::new(AtomicBool::new(false)),
            limit,
        };
        let (child, done, timed_out, name) = (
            g.child.clone(),
            g.done.clone(),
            g.timed_out.clone(),
            g.name.clone(),
        );
        std::thread::spawn(move || {
            let t = Instant::now();
            while !done.load(Ordering::Acquire) {
                if t.elapsed() >= limit {
                    let mut c = child.lock().unwrap_or_else(|p| p.into_inner());
                    if matches!(c.try_wait(), Ok(None)) {
                        let why = format!("still running after {} s", limit.as_secs());
                        kill_hung(&mut c, &name, pid, &why);
                        timed_out.store(true, Ordering::Release);
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        g
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its name in reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status once it exited.
    pub fn try_wait(&self) -> Option<ExitStatus> {
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        c.try_wait().ok().flatten()
    }

    /// Waits until it exits (at the latest when the watchdog kills it at its limit).
    pub fn wait(&self) -> ExitStatus {
        loop {
            if let Some(st) = self.try_wait() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for it to exit, else kills it (reported as timed out).
    pub fn wait_or_kill(&self, timeout: Duration) -> ExitStatus {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if let Some(st) = self.try_wait() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_timed_out(&format!("did not exit within {} s", timeout.as_secs()));
        self.wait()
    }

    /// Kills it now if it still runs, reporting why.
    fn kill_timed_out(&self, why: &str) {
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(c.try_wait(), Ok(None)) {
            kill_hung(&mut c, &self.name, self.pid, why);
            self.timed_out.store(true, Ordering::Release);
        }
    }

    /// True when the guard had to kill it (its limit, or a bounded wait, ran out).
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }

    /// `test guard: NAME timed out ...` when it did, for assertion messages.
    pub fn timeout_note(&self) -> String {
        if self.timed_out() {
            format!(
                "\ntest guard: {} timed out (limit {} s) and was killed",
                self.name,
                self.limit.as_secs()
            )
        } else {
            String::new()
        }
    }

    /// Its stdout and stderr pipes (when `Stdio::piped()`).
    pub fn take_pipes(
        &self,
    ) -> (
        Option<std::process::ChildStdout>,
        Option<std::process::ChildStderr>,
    ) {
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        (c.stdout.take(), c.stderr.take())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
            let _ = c.wait();
            eprintln!(
                "test guard: {} (pid {}) still running when its guard was dropped: killed",
                self.name, self.pid
            );
        }
    }
}

/// Runs `c` to completion like `Command::output`, but kills it after `limit`; a timeout is
/// printed and appended to its stderr, so the assertion on its result names it.
pub fn run_bounded(name: &str, c: &mut Command, limit: Duration) -> Output {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let g = ChildGuard::spawn(name, c, limit);
    let (out, err) = g.take_pipes();
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = read(out.map(|r| Box::new(r) as Box<dyn Read + Send>));
    let err = read(err.map(|r| Box::new(r) as Box<dyn Read + Send>));
    let status = g.wait();
    let stdout = out.join().unwrap_or_default();
    let mut stderr = err.join().unwrap_or_default();
    stderr.extend_from_slice(g.timeout_note().as_bytes());
    Output {
        status,
        stdout,
        stderr,
    }
}
