//! How much CPU each side's forwarding threads got during a run: on a shared machine a busy
//! neighbour takes time from a spinning thread, and a rate alone does not show it. Read from
//! `/proc/PID/task/TID/schedstat` (time on a CPU, time waiting for one) at two points of the run.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One thread at one moment: its name and its nanoseconds on a CPU and runnable but waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ThreadTime {
    tid: u32,
    name: String,
    on_cpu_ns: u64,
    waiting_ns: u64,
}

/// A forwarding thread's share of the sampled wall time, on a CPU and waiting for one.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Share {
    pub(super) name: String,
    pub(super) on_cpu: f64,
    pub(super) waiting: f64,
}

/// `/proc/PID/task/TID/schedstat`: `on-cpu-ns waiting-ns timeslices`.
fn parse_schedstat(s: &str) -> Option<(u64, u64)> {
    let mut w = s.split_whitespace();
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

fn snapshot(pid: u32) -> Vec<ThreadTime> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let tid = e.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let (on_cpu_ns, waiting_ns) =
                parse_schedstat(&std::fs::read_to_string(e.path().join("schedstat")).ok()?)?;
            Some(ThreadTime {
                tid,
                name: name.trim_end().to_string(),
                on_cpu_ns,
                waiting_ns,
            })
        })
        .collect()
}

/// The shares of `wall` of the threads named `prefix...` present in both snapshots, by name.
fn shares(before: &[ThreadTime], after: &[ThreadTime], wall: Duration, prefix: &str) -> Vec<Share> {
    let wall = wall.as_nanos().max(1) as f64;
    let mut v: Vec<Share> = after
        .iter()
        .filter(|t| t.name.starts_with(prefix))
        .filter_map(|t| {
            let b = before.iter().find(|b| b.tid == t.tid)?;
            Some(Share {
                name: t.name.clone(),
                on_cpu: t.on_cpu_ns.saturating_sub(b.on_cpu_ns) as f64 / wall,
                waiting: t.waiting_ns.saturating_sub(b.waiting_ns) as f64 / wall,
            })
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The shares as printed after a run's `rate` (Mpps): `forwarding threads on CPU 99% 97%,
/// waiting for one 0% 2%: 150.1 Mpps per CPU`, the last the rate over the threads' summed
/// on-CPU share: what the forwarding costs, whatever time a neighbour took.
pub(super) fn describe(rate: f64, v: &[Share]) -> String {
    if v.is_empty() {
        return "forwarding threads not sampled".into();
    }
    let pct = |f: &dyn Fn(&Share) -> f64| {
        let p: Vec<String> = v.iter().map(|s| format!("{:.0}%", 100.0 * f(s))).collect();
        p.join(" ")
    };
    let cpus: f64 = v.iter().map(|s| s.on_cpu).sum();
    let per_cpu = if cpus > 0.0 {
        format!("{:.1} Mpps per CPU", rate / cpus)
    } else {
        "never on a CPU".into()
    };
    format!(
        "forwarding threads on CPU {}, waiting for one {}: {per_cpu}",
        pct(&|s| s.on_cpu),
        pct(&|s| s.waiting)
    )
}

/// The process doing the work: `pid`, or its child when `pid` is `timeout` (DPDK's side).
fn worker_process(pid: u32) -> u32 {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim_end() != "timeout" {
        return pid;
    }
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|c| c.split_whitespace().next()?.parse().ok())
        .unwrap_or(pid)
}

fn collect(mut child: Child) -> std::io::Result<Output> {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut v);
        }
        v
    });
    let mut stdout = Vec::new();
    if let Some(o) = out.as_mut() {
        o.read_to_end(&mut stdout)?;
    }
    let stderr = reader.join().unwrap_or_default();
    Ok(Output {
        status: child.wait()?,
        stdout,
        stderr,
    })
}

/// Runs `cmd` (which stops itself after `duration` seconds) to its end, like `Command::output`,
/// and samples the threads named `prefix...` from 1.5 s after the start (or from when they
/// appear) to 0.5 s before the end.
pub(super) fn output_sampled(
    cmd: &mut Command,
    duration: u64,
    prefix: &str,
) -> std::io::Result<(Output, Vec<Share>)> {
    let start = Instant::now();
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id();
    let sampler = {
        let prefix = prefix.to_string();
        std::thread::spawn(move || {
            let end = Duration::from_millis(duration * 1000 - 500);
            std::thread::sleep(Duration::from_millis(1500));
            // A slow start (DPDK's EAL mapping its memory on a busy machine) may not have
            // made the forwarding threads yet: wait for them, until a second before the end.
            let (mut p, mut t0, mut before) = (pid, Instant::now(), Vec::new());
            while start.elapsed() + Duration::from_secs(1) < end {
                p = worker_process(pid);
                (t0, before) = (Instant::now(), snapshot(p));
                if before.iter().any(|t| t.name.starts_with(&prefix)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(end.saturating_sub(start.elapsed()));
            let (t1, after) = (Instant::now(), snapshot(p));
            shares(&before, &after, t1 - t0, &prefix)
        })
    };
    let out = collect(child)?;
    Ok((out, sampler.join().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tid: u32, name: &str, on: u64, wait: u64) -> ThreadTime {
        ThreadTime {
            tid,
            name: name.into(),
            on_cpu_ns: on,
            waiting_ns: wait,
        }
    }

    #[test]
    fn schedstat_lines() {
        assert_eq!(
            parse_schedstat("2881430531 1523190 117\n"),
            Some((2881430531, 1523190))
        );
        assert_eq!(parse_schedstat("12"), None);
        assert_eq!(parse_schedstat("a b c"), None);
    }

    #[test]
    fn shares_of_the_forwarding_threads() {
        let before = [
            t(10, "l2fwd", 5, 0),
            t(11, "l2fwd-1", 1_000, 0),
            t(12, "l2fwd-0", 0, 0),
        ];
        let after = [
            t(10, "l2fwd", 7, 0),
            t(11, "l2fwd-1", 1_000 + 900_000_000, 100_000_000),
            t(12, "l2fwd-0", 500_000_000, 250_000_000),
            // Not there at the first snapshot: not counted.
            t(13, "l2fwd-2", 1_000_000_000, 0),
        ];
        let s = shares(&before, &after, Duration::from_secs(1), "l2fwd-");
        assert_eq!(
            s,
            [
                Share {
                    name: "l2fwd-0".into(),
                    on_cpu: 0.5,
                    waiting: 0.25
                },
                Share {
                    name: "l2fwd-1".into(),
                    on_cpu: 0.9,
                    waiting: 0.1
                },
            ]
        );
        assert_eq!(
            describe(140.0, &s),
            "forwarding threads on CPU 50% 90%, waiting for one 25% 10%: 100.0 Mpps per CPU"
        );
        assert_eq!(describe(1.0, &[]), "forwarding threads not sampled");
        let idle = shares(&before[1..2], &before[1..2], Duration::from_secs(1), "l2fwd-");
        assert_eq!(
            describe(1.0, &idle),
            "forwarding threads on CPU 0%, waiting for one 0%: never on a CPU"
        );
    }

    #[test]
    fn samples_a_real_process() {
        // This process's own threads exist, so a snapshot of itself is not empty.
        let me = snapshot(std::process::id());
        assert!(me.iter().any(|t| t.tid == std::process::id()), "{me:?}");
        assert_eq!(worker_process(std::process::id()), std::process::id());
    }
}
