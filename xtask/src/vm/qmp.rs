//! The QEMU monitor (QMP) of a test VM, and the relay that lets the guest use it.
//!
//! Each VM gets `-qmp unix:SOCKET,server=on,wait=off`. The guest cannot reach a host UNIX socket,
//! but it shares the run directory (writable over 9p), so a host thread watches
//! `RUN_DIR/qmp/` for request files and answers each one:
//!
//! - the guest writes `qmp/req-ID` (ID: 1..=64 of `[A-Za-z0-9_-]`; written under another name and
//!   renamed, so the relay never reads half a request) holding one line: `set_link NIC on|off`,
//!   NIC being one of the topology's NIC ids (`OXPMD_PORTn_NIC`),
//!   or `trace-mmio on LABEL` / `trace-mmio off` (QEMU's trace of every MMIO access into
//!   `mmio-LABEL.log` of `RUN_DIR.host`, which the guest cannot reach, LABEL as an ID, for the
//!   register counts of `cargo xtask bench mmio-vm`). When a run's trace files together pass
//!   [`MMIO_TRACE_MAX_BYTES`], the relay stops the trace, appends [`MMIO_TRACE_CUT`] to each
//!   and refuses `trace-mmio on` for the rest of the run: a guest that never sends `off`, or
//!   asks for one label after another, cannot fill the host's disk;
//! - the relay removes the request, sends the QMP commands, and writes `qmp/resp-ID` (again by a
//!   rename): `ok`, or `error: WHY`.
//!
//! Anything else in a request (another command, an unknown NIC, more than one line) is refused
//! with an error response: the guest's test code is no more trusted here than any other input.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The bytes of MMIO trace one run may write, all its trace files together (about 10 million
/// accesses: a bench's measured window at its rates writes a few hundred thousand).
pub const MMIO_TRACE_MAX_BYTES: u64 = 1 << 30;

/// The line the relay appends to an MMIO trace it stopped at [`MMIO_TRACE_MAX_BYTES`].
pub const MMIO_TRACE_CUT: &str = "# oxpmd: trace stopped by the harness at its size limit";

/// The run directory's subdirectory for requests and responses.
pub const REQUEST_DIR: &str = "qmp";
/// How often the relay looks for requests.
const POLL: Duration = Duration::from_millis(20);
/// How long one QMP exchange may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request file read.
const MAX_REQUEST: u64 = 256;
/// The longest UNIX socket path (sun_path holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Where the VM's QMP socket goes: in the run directory, or (a path too long for a UNIX socket)
/// in the temporary directory under the run's nonce.
pub fn socket_path(run_dir: &Path, nonce: &str) -> PathBuf {
    let p = run_dir.join("qmp.sock");
    if p.as_os_str().len() <= MAX_SOCKET_PATH {
        p
    } else {
        std::env::temp_dir().join(format!("oxpmd-vm-{nonce}.qmp"))
    }
}

/// The QEMU arguments for the monitor socket.
pub fn qemu_args(socket: &Path) -> Vec<String> {
    vec![
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", socket.display()),
    ]
}

/// The running relay; [`Relay::stop`] ends it.
pub struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    socket: PathBuf,
}

impl Relay {
    /// Creates `RUN_DIR/qmp/` and starts watching it; `nics` are the ids `set_link` may name.
    pub fn start(run_dir: &Path, socket: PathBuf, nics: Vec<String>) -> Result<Relay, String> {
        let dir = run_dir.join(REQUEST_DIR);
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sock = socket.clone();
        let nics: HashSet<String> = nics.into_iter().collect();
        let thread = thread::Builder::new()
            .name("qmp-relay".into())
            .spawn(move || {
                let mut traces = TraceBudget::default();
                while !flag.load(Ordering::Relaxed) {
                    serve_pending(&dir, &sock, &nics, &mut traces);
                    if traces.stop_pending || (!traces.cut && traces.bytes() > MMIO_TRACE_MAX_BYTES) {
                        traces.cut(&sock);
                    }
                    thread::sleep(POLL);
                }
            })
            .map_err(|e| format!("start the QMP relay thread: {e}"))?;
        Ok(Relay {
            stop,
            thread: Some(thread),
            socket,
        })
    }

    /// Stops the relay and removes the socket (dropping it does the same, e.g. on an early error).
    pub fn stop(self) {}
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.socket);
    }
}

/// Whether `id` may name a request (and so a file in the request directory).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The MMIO trace files of a run and whether they used up [`MMIO_TRACE_MAX_BYTES`].
#[derive(Default)]
struct TraceBudget {
    /// Every file a `trace-mmio on` named (QEMU may be writing to any of them: a monitor command
    /// that failed half-way may have switched the file and left the events on).
    files: Vec<PathBuf>,
    /// The budget was used up: `on` is refused from now on.
    cut: bool,
    /// The stop was asked for and QEMU has not confirmed it: asked again at every poll.
    stop_pending: bool,
}

impl TraceBudget {
    fn bytes(&self) -> u64 {
        self.files
            .iter()
            .filter_map(|f| fs::metadata(f).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Stops the trace; once QEMU confirmed, appends the marker to every file.
    fn cut(&mut self, socket: &Path) {
        if !self.cut {
            eprintln!(
                "vm: QMP relay: the run's MMIO traces passed {MMIO_TRACE_MAX_BYTES} bytes: stopping them"
            );
        }
        self.cut = true;
        if let Err(e) = trace_mmio(socket, None) {
            if !self.stop_pending {
                eprintln!("vm: QMP relay: stopping the MMIO trace: {e} (asked again at every poll)");
            }
            self.stop_pending = true;
            return;
        }
        self.stop_pending = false;
        for file in &self.files {
            let marked = fs::OpenOptions::new()
                .append(true)
                .open(file)
                .and_then(|mut f| writeln!(f, "{MMIO_TRACE_CUT}"));
            if let Err(e) = marked {
                eprintln!("vm: QMP relay: marking {} as cut: {e}", file.display());
            }
        }
    }
}

/// Answers every complete request in `dir`; `traces` follows the MMIO trace files.
fn serve_pending(dir: &Path, socket: &Path, nics: &HashSet<String>, traces: &mut TraceBudget) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_prefix("req-")) else {
            continue;
        };
        if !valid_id(id) {
            continue;
        }
        let path = e.path();
        let text = read_bounded(&path);
        let _ = fs::remove_file(&path);
        let reply = match text {
            Ok(t) => match parse_request(&t, nics) {
                Ok(Request::SetLink(nic, up)) => set_link(socket, &nic, up).map(|()| "ok".to_string()),
                Ok(Request::TraceMmio(label)) => {
                    let file = label.map(|l| mmio_trace_path(dir.parent().unwrap_or(dir), &l));
                    if file.is_some() && traces.cut {
                        Err(format!(
                            "the MMIO traces of this run passed {MMIO_TRACE_MAX_BYTES} bytes and were stopped; \
                             no more tracing in this run"
                        ))
                    } else {
                        if let Some(f) = &file
                            && !traces.files.contains(f)
                        {
                            traces.files.push(f.clone());
                        }
                        trace_mmio(socket, file.as_deref()).map(|()| "ok".to_string())
                    }
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
        .unwrap_or_else(|e| format!("error: {e}"));
        let tmp = dir.join(format!(".resp-{id}.tmp"));
        let done = dir.join(format!("resp-{id}"));
        if let Err(e) = fs::write(&tmp, format!("{reply}\n")).and_then(|()| fs::rename(&tmp, &done)) {
            eprintln!("vm: QMP relay: answering request {id}: {e}");
        }
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let f = fs::File::open(path).map_err(|e| format!("read the request: {e}"))?;
    let mut s = String::new();
    f.take(MAX_REQUEST + 1)
        .read_to_string(&mut s)
        .map_err(|e| format!("read the request: {e}"))?;
    if s.len() as u64 > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    Ok(s)
}

/// What the guest may ask of the monitor.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// `set_link NIC on|off`.
    SetLink(String, bool),
    /// `trace-mmio on LABEL` / `trace-mmio off`: QEMU's trace of every MMIO access
    /// (`memory_region_ops_read` and `_write`: vCPU, absolute address, value, size, region name)
    /// into [`mmio_trace_path`]`(RUN_DIR, LABEL)`, for counting a driver's register accesses
    /// (`cargo xtask bench mmio-vm`).
    TraceMmio(Option<String>),
}

/// Where `trace-mmio on LABEL` writes: `mmio-LABEL.log` in a directory beside the run directory
/// (`RUN_DIR.host`) that the guest does not share, since QEMU opens the file by name and would
/// follow a link the guest made in a directory it can write.
pub fn mmio_trace_path(run_dir: &Path, label: &str) -> PathBuf {
    let mut host = run_dir.as_os_str().to_owned();
    host.push(".host");
    PathBuf::from(host).join(format!("mmio-{label}.log"))
}

/// One request line → what it asks.
fn parse_request(text: &str, nics: &HashSet<String>) -> Result<Request, String> {
    let line = text.strip_suffix('\n').unwrap_or(text);
    if line.contains('\n') {
        return Err("one request per file, one line".into());
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["set_link", nic, state] => {
            if !nics.contains(*nic) {
                let mut known: Vec<&String> = nics.iter().collect();
                known.sort();
                return Err(format!("unknown NIC {nic:?}; this VM has {known:?}"));
            }
            let up = match *state {
                "on" => true,
                "off" => false,
                other => return Err(format!("link state {other:?}: expected on or off")),
            };
            Ok(Request::SetLink(nic.to_string(), up))
        }
        ["trace-mmio", "on", label] if valid_id(label) => Ok(Request::TraceMmio(Some(label.to_string()))),
        ["trace-mmio", "off"] => Ok(Request::TraceMmio(None)),
        [cmd, ..] => Err(format!(
            "command {cmd:?} is not relayed; only `set_link NIC on|off`, `trace-mmio on LABEL` and \
             `trace-mmio off`"
        )),
        [] => Err("empty request".into()),
    }
}

/// One QMP session: greeting, capabilities negotiation, `set_link`.
fn set_link(socket: &Path, nic: &str, up: bool) -> Result<(), String> {
    let (mut writer, mut reader) = connect(socket)?;
    exchange(
        &mut writer,
        &mut reader,
        &serde_json::json!({"execute": "set_link", "arguments": {"name": nic, "up": up}}),
    )
    .map(|_| ())
}

/// Starts QEMU's MMIO trace into `file`, or stops it (`None`). Its log backend writes trace
/// events to the monitor's log file; switching the log file away closes and flushes the trace.
fn trace_mmio(socket: &Path, file: Option<&Path>) -> Result<(), String> {
    let on = file.is_some();
    if let Some(f) = file {
        // The monitor's command line splits on blanks and reads quotes: a path it would take
        // apart is refused, not passed.
        let text = f.to_string_lossy();
        if text.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
            return Err(format!(
                "trace file {text:?}: a path with blanks, quotes or backslashes"
            ));
        }
        let dir = f.parent().ok_or("trace file without a directory")?;
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let (mut w, mut r) = connect(socket)?;
    // A monitor command's failure comes back as its text, with QMP's success: any text is one.
    let hmp = |w: &mut UnixStream, r: &mut BufReader<UnixStream>, line: String| {
        let out = exchange(
            w,
            r,
            &serde_json::json!({"execute": "human-monitor-command", "arguments": {"command-line": line}}),
        )?;
        match out.as_str().map(str::trim) {
            Some("") | None => Ok(()),
            Some(err) => Err(format!("monitor `{line}`: {err}")),
        }
    };
    if let Some(file) = file {
        hmp(&mut w, &mut r, format!("logfile {}", file.display()))?;
    }
    exchange(
        &mut w,
        &mut r,
        &serde_json::json!({"execute": "trace-event-set-state",
            "arguments": {"name": "memory_region_ops_*", "enable": on}}),
    )?;
    if !on {
        hmp(&mut w, &mut r, "logfile /dev/null".into())?;
    }
    Ok(())
}

/// A QMP connection past the greeting and the capabilities negotiation.
fn connect(socket: &Path) -> Result<(UnixStream, BufReader<UnixStream>), String> {
    let stream = UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(QMP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(QMP_TIMEOUT)))
        .map_err(|e| format!("QMP socket timeouts: {e}"))?;
    let mut writer = stream.try_clone().map_err(|e| format!("QMP socket: {e}"))?;
    let mut reader = BufReader::new(stream);
    let greeting = read_message(&mut reader)?;
    if greeting.get("QMP").is_none() {
        return Err(format!("no QMP greeting: {greeting}"));
    }
    exchange(
        &mut writer,
        &mut reader,
        &serde_json::json!({"execute": "qmp_capabilities"}),
    )?;
    Ok((writer, reader))
}

/// What a frozen guest's vCPUs and local APICs look like (the stall study in docs/testvm.md):
/// QMP `query-cpus-fast`, then per vCPU the monitor's `info lapic` (the timer's LVT, initial and
/// current count, IRR/ISR) and `info registers` (RIP, HLT state, EFLAGS.IF).
pub fn frozen_state(socket: &Path, cpus: u32) -> Result<String, String> {
    let (mut w, mut r) = connect(socket)?;
    let mut out = String::new();
    let cpus_fast = exchange(&mut w, &mut r, &serde_json::json!({"execute": "query-cpus-fast"}))?;
    out.push_str(&format!("query-cpus-fast: {cpus_fast}\n"));
    for cpu in 0..cpus {
        for what in ["info lapic", "info registers"] {
            let v = exchange(
                &mut w,
                &mut r,
                &serde_json::json!({"execute": "human-monitor-command",
                    "arguments": {"command-line": what, "cpu-index": cpu}}),
            )?;
            out.push_str(&format!(
                "--- cpu {cpu}: {what}\n{}\n",
                v.as_str().unwrap_or_default()
            ));
        }
    }
    Ok(out)
}

/// Sends a command and reads until its answer, which it returns (events in between are skipped).
fn exchange(
    writer: &mut UnixStream,
    reader: &mut BufReader<UnixStream>,
    cmd: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    writeln!(writer, "{cmd}").map_err(|e| format!("QMP write: {e}"))?;
    loop {
        let msg = read_message(reader)?;
        if let Some(v) = msg.get("return") {
            return Ok(v.clone());
        }
        if let Some(err) = msg.get("error") {
            return Err(format!("QMP {}: {err}", cmd["execute"]));
        }
    }
}

fn read_message(reader: &mut BufReader<UnixStream>) -> Result<serde_json::Value, String> {
    let mut line = String::new();
    let n = reader
        .read_line(&mut line)
        .map_err(|e| format!("QMP read: {e}"))?;
    if n == 0 {
        return Err("QMP closed the connection".into());
    }
    serde_json::from_str(&line).map_err(|e| format!("QMP sent {line:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nics() -> HashSet<String> {
        ["nic0", "nic1"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_set_link_on_a_known_nic_is_relayed() {
        assert_eq!(
            parse_request("set_link nic1 off\n", &nics()),
            Ok(Request::SetLink("nic1".into(), false))
        );
        assert_eq!(
            parse_request("set_link nic0 on", &nics()),
            Ok(Request::SetLink("nic0".into(), true))
        );
        assert_eq!(
            parse_request("trace-mmio on ours\n", &nics()),
            Ok(Request::TraceMmio(Some("ours".into())))
        );
        assert_eq!(
            parse_request("trace-mmio off", &nics()),
            Ok(Request::TraceMmio(None))
        );
        for bad in [
            "",
            "quit",
            "set_link nic9 on",
            "set_link nic0 up",
            "set_link nic0",
            "set_link nic0 on\nquit",
            "system_powerdown nic0 on",
            "trace-mmio",
            "trace-mmio on",
            "trace-mmio maybe",
            "trace-mmio on ../../etc/passwd",
            "trace-mmio on a b",
        ] {
            assert!(parse_request(bad, &nics()).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn request_ids_are_plain_names() {
        assert!(valid_id("42-a_b"));
        for bad in ["", "../x", "a b", "x.tmp", &"a".repeat(65)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_long_run_directory_moves_the_socket_to_the_temporary_directory() {
        assert_eq!(socket_path(Path::new("/r"), "n"), PathBuf::from("/r/qmp.sock"));
        let long = PathBuf::from(format!("/{}", "d".repeat(120)));
        assert!(socket_path(&long, "abc").ends_with("oxpmd-vm-abc.qmp"));
    }

    #[test]
    fn tracing_is_refused_once_the_runs_budget_is_used_up() {
        let dir = std::env::temp_dir().join(format!("oxpmd-qmp-budget-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut traces = TraceBudget::default();
        // Before the cut an `on` is tried (QEMU is absent here: a connect error) and its file
        // is followed from then on, whatever QEMU answered.
        fs::write(dir.join("req-a"), "trace-mmio on first\n").unwrap();
        serve_pending(&dir, &dir.join("absent.sock"), &nics(), &mut traces);
        assert!(
            fs::read_to_string(dir.join("resp-a"))
                .unwrap()
                .starts_with("error: connect")
        );
        assert_eq!(traces.files.len(), 1);
        traces.cut = true;
        fs::write(dir.join("req-b"), "trace-mmio on second\n").unwrap();
        serve_pending(&dir, &dir.join("absent.sock"), &nics(), &mut traces);
        let refused = fs::read_to_string(dir.join("resp-b")).unwrap();
        assert!(refused.contains("no more tracing in this run"), "{refused}");
        assert_eq!(traces.files.len(), 1, "a refused trace is not followed");
        // A stop QEMU does not confirm is asked for again.
        traces.cut(&dir.join("absent.sock"));
        assert!(traces.stop_pending);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_request_is_answered_with_an_error_when_qemu_is_not_there() {
        let dir = std::env::temp_dir().join(format!("oxpmd-qmp-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("req-1"), "set_link nic0 off\n").unwrap();
        fs::write(dir.join("req-2"), "quit\n").unwrap();
        serve_pending(
            &dir,
            &dir.join("absent.sock"),
            &nics(),
            &mut TraceBudget::default(),
        );
        let r1 = fs::read_to_string(dir.join("resp-1")).unwrap();
        let r2 = fs::read_to_string(dir.join("resp-2")).unwrap();
        assert!(r1.starts_with("error: connect"), "{r1}");
        assert!(r2.contains("not relayed"), "{r2}");
        assert!(!dir.join("req-1").exists() && !dir.join("req-2").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
