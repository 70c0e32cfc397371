//! The soak's child processes in the guest: each one's output goes to its own log file, which the
//! soak reads to see it ready, to follow its counters and to check its closing lines.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// One child process.
pub struct Proc {
    /// What it is in the soak (`l2fwd`, `vf-l2fwd`, `pf-service`, `hostile-vf`, ...).
    pub name: String,
    child: Child,
    log: PathBuf,
    /// Its resident memory once it was up, KiB.
    pub rss_start_kib: Option<u64>,
}

impl Proc {
    /// Starts `program args` with `env` added, its stdout and stderr to `dir/<name>-<n>.log`.
    pub fn spawn(
        name: &str,
        dir: &Path,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Proc, String> {
        let mut n = 0;
        let log = loop {
            let p = dir.join(format!("{name}-{n}.log"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let out = fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{name}: start {}: {e}", program.display()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log,
            rss_start_kib: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its output so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until a line of its output satisfies `pred` (true), it exits, or `timeout` passes.
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.output().lines().any(&pred) {
                return true;
            }
            if Instant::now() >= end || self.exited() {
                return self.output().lines().any(&pred);
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Its resident memory now (VmRSS), KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let s = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// Notes its resident memory as the start figure.
    pub fn mark_rss_start(&mut self) {
        self.rss_start_kib = self.rss_kib();
    }

    /// Sends `signal` (a `kill` name such as `INT`), waits up to `grace` for the exit, then kills
    /// it. Returns the exit status (None: it had to be killed) and its whole output.
    pub fn stop(mut self, signal: &str, grace: Duration) -> (Option<ExitStatus>, String) {
        if !self.exited() {
            let _ = Command::new("kill")
                .args([format!("-{signal}"), self.pid().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let end = Instant::now() + grace;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(100)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        (status, self.output())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of `key=` in a `key=value ...` line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// The number after `"key":` in a JSON text (the first one).
pub fn json_number(text: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let at = text.find(&pat)? + pat.len();
    let digits: String = text[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_json_numbers() {
        let l = "pktgen-result: sent=100 received=98 lost=2";
        assert_eq!(field(l, "sent"), Some("100"));
        assert_eq!(field(l, "lost"), Some("2"));
        assert_eq!(field(l, "dup"), None);
        let j = r#"[{"port":0,"name":"0000:00:1c.0","rx":1234,"tx":1200}]"#;
        assert_eq!(json_number(j, "rx"), Some(1234));
        assert_eq!(json_number(j, "tx"), Some(1200));
        assert_eq!(json_number(j, "dropped"), None);
    }
}
