//! Booting the test VM and running one command in it.
//!
//! The host writes the command to `cmd.sh` in a per-run directory under target/testvm/runs/, which the
//! guest sees through the read-only root share and, writable, through a second 9p share mounted at the
//! same path. The guest has two serial ports: the kernel console (ttyS0, a file the host follows)
//! and the command channel (ttyS1, QEMU's stdout), where init prints `oxpmd-vm:<nonce>:start`
//! before the command and `oxpmd-vm:<nonce>:exit=<code>` after it; the host streams the command
//! channel between the two markers. console.log in the run directory holds both.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::console::{
    Event, KERNEL_CONSOLE_FILE, QEMU_STDERR_FILE, follow_kernel_console, last_lines, push_tail,
    read_command_channel, write_run_file,
};
use super::launch::{qemu_args, unique_run_dir, write_cmd_script};
use super::topology::Topology;
use super::{GuestOptions, GuestOutput, Paths};

/// How long QEMU may take to exit after the guest reported the command's exit status.
const POWEROFF_GRACE: Duration = Duration::from_secs(20);

/// A guest that has not started the command this long after QEMU started is stuck in boot
/// (boots take 5 to 20 s, more under load). Seen rarely under TCG: an early-boot RCU stall where a
/// vCPU's timer never fires. Such a boot is killed and tried once more.
const BOOT_TIMEOUT: Duration = Duration::from_secs(150);
/// How the error of a stuck boot starts (the retry looks for it).
const BOOT_STALL: &str = "the guest did not reach the command within";

/// After the guest kernel reports an RCU stall (a vCPU whose timer never fires under TCG, seen
/// mid-test too), the command gets this long to finish; a guest that has not by then is frozen
/// (it repeats the stall report every ~21 s and makes no progress) and is killed.
const FROZEN_AFTER_STALL: Duration = Duration::from_secs(180);
/// After a stall report, the local APICs are read at once and again this much later: a vCPU
/// halted with a lost timer event in both, its timer not programmed again in between, is frozen
/// and the guest is killed then, without waiting out [`FROZEN_AFTER_STALL`] (`super::freeze`).
const STALL_CONFIRM: Duration = Duration::from_secs(15);
/// A console silent this long while the command runs gets the same two looks, counting only a
/// vCPU halted with its timer vector in service (no healthy vCPU is seen so, and such a freeze
/// can come without a stall report: seen in CI, the stuck vCPU being the one that would report).
const SILENT_LOOK: Duration = Duration::from_secs(30);
/// A guest whose QEMU used less than [`IDLE_CPU`] of CPU time over this long, with no console
/// output, while the command runs, is frozen too: halted vCPUs waiting for a timer interrupt that
/// never comes (the TCG stall seen in CI, sometimes without any stall report). A running test
/// keeps QEMU busy (poll-mode drivers, device emulation), so an idle QEMU is not a slow test.
const IDLE_WINDOW: Duration = Duration::from_secs(120);
/// CPU time below which QEMU counts as idle over [`IDLE_WINDOW`].
const IDLE_CPU: Duration = Duration::from_secs(2);
/// Where a frozen guest's vCPU and local APIC state goes in the run directory (QMP, before the kill).
pub const FROZEN_STATE_FILE: &str = "frozen-state.txt";
/// What the kernel prints for such a stall.
const RCU_STALL_LINE: &str = "rcu_preempt detected stalls";
/// How the error of a frozen guest starts (the retry looks for it).
const FROZEN: &str = "the guest froze (RCU stall) while running the command";

/// How the error of a QEMU that died of a signal it did not get from the harness starts (an
/// assertion of a device model aborts it: its last words are in the error). Seen once in CI
/// (SIGABRT during vm_sriov_traffic, its stderr not kept then; none in the runs since), so the
/// run is tried again like a frozen guest, and the error with QEMU's words is printed first.
const QEMU_CRASHED: &str = "QEMU died";

/// How many times a stuck boot or a frozen guest is tried again, each in a fresh VM. Two: the
/// TCG freeze (a halted vCPU whose timer never fires) was seen twice in one suite run of about 30
/// VMs on an idle host, so one retry leaves a suite failure every few runs; the cause is open
/// (docs/testvm.md).
const MAX_RERUNS: u32 = 2;

/// Boots the VM, runs `cmd`, streams or captures its output. See [`super::run_in_guest`].
/// A boot that stalls before the command starts (see [`BOOT_TIMEOUT`]) is retried, in a fresh
/// VM. A guest that freezes while the command runs (an RCU stall with no progress after
/// [`FROZEN_AFTER_STALL`], or QEMU idle with a silent console for [`IDLE_WINDOW`]) is killed and
/// the command run once more in a fresh VM, which is said on stderr (`RERUN`): at most
/// [`MAX_RERUNS`] times, so a VM test binary runs at most three times, each in a fresh VM.
pub fn run(
    paths: &Paths,
    topology: &Topology,
    cmd: &[String],
    opts: &GuestOptions,
) -> Result<GuestOutput, String> {
    run_resuming(paths, topology, cmd, opts, &|_, _| None).map(|(out, _)| out)
}

/// What an attempt the harness gave up on (a frozen guest, a QEMU that died) had done: the
/// command's output until then and its run directory.
#[derive(Debug)]
pub struct Attempt {
    pub output: String,
    pub run_dir: PathBuf,
}

/// How a rerun takes up after a frozen attempt: given the command and its output so far, the
/// command to run instead and a phrase saying what it leaves out.
pub type Resume<'a> = dyn Fn(&[String], &str) -> Option<(Vec<String>, String)> + 'a;

/// [`run`], where the command of a rerun may take up after what the frozen attempt finished:
/// `resume(command, output so far)` gives the command to run instead (a test binary skipping the
/// tests that passed) and what it leaves out, or `None` to run the same one again. Returns the last attempt's output
/// with the attempts whose work a resumed command skipped, oldest first.
pub fn run_resuming(
    paths: &Paths,
    topology: &Topology,
    cmd: &[String],
    opts: &GuestOptions,
    resume: &Resume<'_>,
) -> Result<(GuestOutput, Vec<Attempt>), String> {
    let mut cmd = cmd.to_vec();
    let mut taken_up = Vec::new();
    let mut attempt = 1;
    loop {
        let mut partial = Attempt {
            output: String::new(),
            run_dir: PathBuf::new(),
        };
        match run_attempt(paths, topology, &cmd, opts, &mut partial) {
            Err(e) if e.starts_with(BOOT_STALL) && attempt <= MAX_RERUNS => {
                eprintln!("vm: {e}\nvm: booting a fresh VM once more ({attempt} of {MAX_RERUNS})");
            }
            Err(e) if (e.starts_with(FROZEN) || e.starts_with(QEMU_CRASHED)) && attempt <= MAX_RERUNS => {
                let how = match resume(&cmd, &partial.output) {
                    Some((next, left_out)) => {
                        cmd = next;
                        taken_up.push(partial);
                        format!(", {left_out}")
                    }
                    None => String::new(),
                };
                eprintln!(
                    "vm: {e}\nvm: RERUN: running the command once more in a fresh VM ({attempt} of {MAX_RERUNS}){how}"
                );
            }
            Err(e) => return Err(e),
            Ok(out) => return Ok((out, taken_up)),
        }
        attempt += 1;
    }
}

/// Whether an error of [`run_once`] is a frozen guest or a stuck boot (what [`run`] reruns).
pub fn is_freeze(err: &str) -> bool {
    err.starts_with(FROZEN) || err.starts_with(BOOT_STALL)
}

/// Whether a console log holds the kernel's RCU stall report.
pub fn has_stall_report(console: &str) -> bool {
    console.contains(RCU_STALL_LINE)
}

/// One boot, one command, no rerun: [`run`] without its retries (the stall study counts each boot).
pub fn run_once(
    paths: &Paths,
    topology: &Topology,
    cmd: &[String],
    opts: &GuestOptions,
) -> Result<GuestOutput, String> {
    let mut partial = Attempt {
        output: String::new(),
        run_dir: PathBuf::new(),
    };
    run_attempt(paths, topology, cmd, opts, &mut partial)
}

/// [`run_once`], leaving in `partial` the command's output and the run directory whatever the
/// outcome (what a rerun of a frozen attempt may take up after).
fn run_attempt(
    paths: &Paths,
    topology: &Topology,
    cmd: &[String],
    opts: &GuestOptions,
    partial: &mut Attempt,
) -> Result<GuestOutput, String> {
    if cmd.is_empty() {
        return Err("no command to run in the guest".into());
    }
    let results = match &opts.results {
        Some(r) => {
            fs::create_dir_all(r).map_err(|e| format!("create results directory {}: {e}", r.display()))?;
            let r = fs::canonicalize(r).map_err(|e| format!("resolve {}: {e}", r.display()))?;
            if r == Path::new("/") {
                return Err("--results cannot be / (it would hide the read-only host root)".into());
            }
            Some(r)
        }
        None => None,
    };
    let (run_dir, nonce) = unique_run_dir(paths, &opts.label)?;
    let run_dir = fs::canonicalize(&run_dir).map_err(|e| format!("resolve {}: {e}", run_dir.display()))?;
    partial.run_dir = run_dir.clone();
    for (what, p) in [("run directory", &run_dir), ("workspace", &paths.workspace)]
        .into_iter()
        .chain(results.as_ref().map(|r| ("results directory", r)))
    {
        let s = p.display().to_string();
        if s.contains(|c: char| c.is_whitespace() || c == ',') {
            return Err(format!(
                "the {what} path {s:?} contains a space or comma, which the kernel command line and QEMU's \
                 -fsdev option cannot carry"
            ));
        }
    }
    write_cmd_script(&run_dir, topology, cmd, opts)?;
    // Lives until QEMU is gone (the end of this function), then removes the taps and the bridge.
    let host_link = match topology.host_link {
        Some(_) => Some(super::host_link::HostLink::create(
            &nonce[nonce.len().saturating_sub(8)..],
        )?),
        None => None,
    };
    let args = qemu_args(
        paths,
        topology,
        &run_dir,
        &nonce,
        results.as_deref(),
        &opts.machine,
        host_link.as_ref().map(super::host_link::HostLink::taps),
    );
    fs::write(run_dir.join("qemu-args.txt"), args.join("\n") + "\n")
        .map_err(|e| format!("write qemu-args.txt: {e}"))?;

    let relay = super::qmp::Relay::start(
        &run_dir,
        super::qmp::socket_path(&run_dir, &nonce),
        topology.nic_ids(),
    )?;
    let start = Instant::now();
    let mut child: Child = Command::new("qemu-system-x86_64")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start qemu-system-x86_64: {e}: QEMU >= 8.1 with -device igb needed: run `cargo xtask vm setup`"))?;
    let stdout = child.stdout.take().ok_or("qemu: no stdout pipe")?;
    let stderr = child.stderr.take().ok_or("qemu: no stderr pipe")?;
    let (tx, rx) = mpsc::channel::<Event>();
    let stop_following = Arc::new(AtomicBool::new(false));
    let kernel_thread = {
        let (path, tx, stop) = (
            run_dir.join(KERNEL_CONSOLE_FILE),
            tx.clone(),
            Arc::clone(&stop_following),
        );
        thread::spawn(move || follow_kernel_console(path, tx, stop))
    };
    let console_thread = thread::spawn(move || read_command_channel(stdout, tx));
    let echo_stderr = opts.echo;
    let stderr_thread = thread::spawn(move || {
        // Streamed as it comes (IOMMU faults show next to the output that caused them), and kept.
        let mut text = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // Each link is a hub with no host network on purpose: QEMU's warning about it is noise.
            if line.contains("is not connected to host network") {
                continue;
            }
            if echo_stderr {
                eprintln!("qemu: {line}");
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    let start_marker = format!("oxpmd-vm:{nonce}:start");
    let exit_prefix = format!("oxpmd-vm:{nonce}:exit=");
    let mut console_log =
        fs::File::create(run_dir.join("console.log")).map_err(|e| format!("create console.log: {e}"))?;
    let mut deadline = start + opts.timeout;
    let mut started: Option<Duration> = None;
    let mut exit_code: Option<i32> = None;
    let mut output = String::new();
    let mut timed_out = false;
    let mut stop_now = false;
    let mut boot_stalled = false;
    let mut frozen = false;
    let mut stall_seen: Option<Instant> = None;
    // The local APICs when the stall was reported, until the second look (STALL_CONFIRM).
    let mut stall_snapshot: Option<String> = None;
    let mut frozen_vcpus: Vec<super::freeze::FrozenVcpu> = Vec::new();
    // Last console or kernel line, and the local APICs read once the console was silent for
    // SILENT_LOOK (with when), until the second look.
    let mut last_output = Instant::now();
    let mut silent_snapshot: Option<(Instant, String)> = None;
    let qmp_socket = super::qmp::socket_path(&run_dir, &nonce);
    let qemu_pid = child.id();
    // (when, QEMU CPU time then) at the start of the current idle window; reset by console output.
    let mut idle_since: Option<(Instant, Duration)> = None;
    let mut tail: Vec<String> = Vec::new();
    // The exit code after the marker; a damaged number still ends the run, as a failure.
    let parse_code = |s: &str| s.trim().parse::<i32>().unwrap_or(1);
    loop {
        let now = Instant::now();
        if exit_code.is_some() {
            deadline = deadline.min(now + POWEROFF_GRACE);
        }
        if now >= deadline {
            timed_out = exit_code.is_none();
            stop_now = true;
            break;
        }
        // Before the command starts, a stuck boot is given up on at BOOT_TIMEOUT.
        let boot_deadline = start + BOOT_TIMEOUT;
        if started.is_none() && exit_code.is_none() && now >= boot_deadline && boot_deadline < deadline {
            boot_stalled = true;
            stop_now = true;
            break;
        }
        if let Some(t) = stall_seen
            && exit_code.is_none()
            && now >= t + FROZEN_AFTER_STALL
        {
            frozen = true;
            stop_now = true;
            break;
        }
        if let Some(t) = stall_seen
            && exit_code.is_none()
            && now >= t + STALL_CONFIRM
            && let Some(first) = stall_snapshot.take()
        {
            let second = super::qmp::frozen_state(&qmp_socket, opts.machine.cpus).unwrap_or_default();
            frozen_vcpus = super::freeze::frozen_vcpus(
                &super::freeze::parse_snapshot(&first),
                &super::freeze::parse_snapshot(&second),
            );
            if !frozen_vcpus.is_empty() {
                let _ = write_run_file(
                    &run_dir.join(FROZEN_STATE_FILE),
                    &format!(
                        "=== at the stall report\n{first}\n=== {} s later\n{second}",
                        STALL_CONFIRM.as_secs()
                    ),
                );
                frozen = true;
                stop_now = true;
                break;
            }
        }
        if started.is_some() && exit_code.is_none() && stall_seen.is_none() {
            match silent_snapshot.take() {
                None if now >= last_output + SILENT_LOOK => {
                    silent_snapshot = super::qmp::frozen_state(&qmp_socket, opts.machine.cpus)
                        .ok()
                        .map(|t| (now, t));
                }
                Some((at, first)) if now >= at + STALL_CONFIRM => {
                    let second = super::qmp::frozen_state(&qmp_socket, opts.machine.cpus).unwrap_or_default();
                    frozen_vcpus = super::freeze::stuck_vcpus(
                        &super::freeze::parse_snapshot(&first),
                        &super::freeze::parse_snapshot(&second),
                    );
                    if !frozen_vcpus.is_empty() && last_output < at {
                        let _ = write_run_file(
                            &run_dir.join(FROZEN_STATE_FILE),
                            &format!(
                                "=== the console silent {} s\n{first}\n=== {} s later\n{second}",
                                SILENT_LOOK.as_secs(),
                                STALL_CONFIRM.as_secs()
                            ),
                        );
                        frozen = true;
                        stop_now = true;
                        break;
                    }
                    frozen_vcpus.clear();
                    // Looked: the next pair of looks after another silent SILENT_LOOK.
                    last_output = now;
                }
                other => silent_snapshot = other,
            }
        }
        let wait_until = if started.is_none() && exit_code.is_none() {
            deadline.min(boot_deadline.max(now + Duration::from_millis(10)))
        } else {
            deadline
        };
        if started.is_some() && exit_code.is_none() {
            match (idle_since, process_cpu_time(qemu_pid)) {
                (Some((t, cpu0)), Some(cpu)) if now >= t + IDLE_WINDOW => {
                    if cpu.saturating_sub(cpu0) < IDLE_CPU {
                        frozen = true;
                        stop_now = true;
                        break;
                    }
                    idle_since = Some((now, cpu));
                }
                (None, Some(cpu)) => idle_since = Some((now, cpu)),
                _ => {}
            }
        }
        // Wake up now and then to look at QEMU's CPU time.
        let wait_until = wait_until.min(now + Duration::from_secs(5));
        let wait_until = match stall_seen {
            Some(t) if exit_code.is_none() => {
                let next_look = if stall_snapshot.is_some() {
                    t + STALL_CONFIRM
                } else {
                    t + FROZEN_AFTER_STALL
                };
                wait_until.min(next_look.max(now))
            }
            _ => wait_until,
        };
        match rx.recv_timeout(wait_until - now) {
            Ok(Event::Kernel(line)) => {
                let _ = writeln!(console_log, "{line}");
                if !line.contains(RCU_STALL_LINE) {
                    last_output = Instant::now();
                    silent_snapshot = None;
                }
                // Kernel output: not idle (the window starts again), but a stall report is no sign
                // of life.
                if line.contains(RCU_STALL_LINE) {
                    if started.is_some() && stall_seen.is_none() {
                        stall_seen = Some(Instant::now());
                        stall_snapshot = super::qmp::frozen_state(&qmp_socket, opts.machine.cpus).ok();
                    }
                } else {
                    idle_since = None;
                }
                if exit_code.is_none() {
                    push_tail(&mut tail, &line);
                }
                // Kernel messages during the command (an IOMMU fault, a driver warning) are shown next
                // to the output that caused them, on lines of their own, but are not the command's output.
                if (started.is_some() && exit_code.is_none() && opts.echo) || opts.verbose {
                    println!("guest kernel: {line}");
                }
            }
            Ok(Event::Console(line)) => {
                let _ = writeln!(console_log, "{line}");
                idle_since = None;
                last_output = Instant::now();
                silent_snapshot = None;
                if exit_code.is_none() {
                    push_tail(&mut tail, &line);
                }
                if started.is_none() {
                    if line.contains(&start_marker) {
                        started = Some(start.elapsed());
                        tail.clear();
                        if opts.echo && opts.verbose {
                            println!(
                                "vm: command started {:.1} s after boot",
                                start.elapsed().as_secs_f64()
                            );
                        }
                        continue;
                    }
                    if opts.verbose {
                        println!("{line}");
                    }
                    if let Some(pos) = line.find(&exit_prefix) {
                        exit_code = Some(parse_code(&line[pos + exit_prefix.len()..]));
                    }
                    continue;
                }
                if exit_code.is_none() {
                    if let Some(pos) = line.find(&exit_prefix) {
                        let before = &line[..pos];
                        if !before.is_empty() {
                            emit(opts, &mut output, before);
                        }
                        exit_code = Some(parse_code(&line[pos + exit_prefix.len()..]));
                        continue;
                    }
                    emit(opts, &mut output, &line);
                } else if opts.verbose {
                    println!("{line}");
                }
            }
            Ok(Event::ConsoleClosed) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // A guest that reported its exit status but did not power off is simply stopped.
                timed_out = exit_code.is_none();
                stop_now = true;
                break;
            }
        }
    }
    if (frozen && frozen_vcpus.is_empty()) || boot_stalled || timed_out {
        // Before QEMU goes: the vCPUs' and local APICs' state, for the stall study (and, for a
        // command that ran out of time, to tell a guest that froze in a shape not yet known
        // from one whose command hung).
        let state = super::qmp::frozen_state(&super::qmp::socket_path(&run_dir, &nonce), opts.machine.cpus)
            .unwrap_or_else(|e| format!("QMP: {e}\n"));
        let _ = write_run_file(&run_dir.join(FROZEN_STATE_FILE), &state);
    }
    if stop_now {
        let _ = child.kill();
    }
    // After the exit marker the guest powers off; give QEMU a moment, then stop it.
    let status = wait_or_kill(&mut child, POWEROFF_GRACE);
    relay.stop();
    let _ = console_thread.join();
    stop_following.store(true, Ordering::Release);
    let _ = kernel_thread.join();
    // The kernel's last words (a panic, say) arrive after the loop: into the log and the tail.
    while let Ok(event) = rx.try_recv() {
        if let Event::Kernel(line) | Event::Console(line) = event {
            let _ = writeln!(console_log, "{line}");
            if exit_code.is_none() {
                push_tail(&mut tail, &line);
            }
        }
    }
    let qemu_stderr = stderr_thread.join().unwrap_or_default();
    let _ = write_run_file(&run_dir.join(QEMU_STDERR_FILE), &qemu_stderr);
    partial.output.clone_from(&output);
    let total = start.elapsed();
    let dmesg_path = run_dir.join("dmesg.txt");
    let boot_to_command = started.unwrap_or_default();
    if frozen {
        return Err(format!(
            "{FROZEN}: {}; QEMU killed. Console log: {}",
            if !frozen_vcpus.is_empty() && stall_seen.is_none() {
                format!(
                    "{}, unchanged over {} s of a console silent for {} s",
                    super::freeze::describe(&frozen_vcpus),
                    STALL_CONFIRM.as_secs(),
                    SILENT_LOOK.as_secs()
                )
            } else if !frozen_vcpus.is_empty() {
                format!(
                    "{}, unchanged {} s after the kernel's stall report",
                    super::freeze::describe(&frozen_vcpus),
                    STALL_CONFIRM.as_secs()
                )
            } else if stall_seen.is_some() {
                format!(
                    "no exit {} s after the kernel's stall report",
                    FROZEN_AFTER_STALL.as_secs()
                )
            } else {
                format!(
                    "QEMU idle (< {} s CPU) and the console silent for {} s",
                    IDLE_CPU.as_secs(),
                    IDLE_WINDOW.as_secs()
                )
            },
            run_dir.join("console.log").display(),
        ));
    }
    if boot_stalled {
        return Err(format!(
            "{BOOT_STALL} {} s (boot stalled); QEMU killed. Console log: {}\nlast console lines:\n{}",
            BOOT_TIMEOUT.as_secs(),
            run_dir.join("console.log").display(),
            tail.join("\n")
        ));
    }
    if timed_out {
        let phase = if started.is_some() {
            "the command did not finish"
        } else {
            "the guest did not reach the command"
        };
        return Err(format!(
            "guest timed out after {} s ({phase}); QEMU killed. Console log: {}; vCPU state: {}{}",
            opts.timeout.as_secs(),
            run_dir.join("console.log").display(),
            run_dir.join(FROZEN_STATE_FILE).display(),
            if started.is_none() || !opts.echo {
                format!("\nlast console lines:\n{}", tail.join("\n"))
            } else {
                String::new()
            }
        ));
    }
    let qemu_failed = match &status {
        Some(s) => !s.success(),
        None => true,
    };
    match exit_code {
        Some(code) if started.is_some() => {
            if qemu_failed && !qemu_stderr.trim().is_empty() && !opts.echo {
                eprintln!("qemu: {}", qemu_stderr.trim());
            }
            Ok(GuestOutput {
                exit_code: code,
                output,
                boot_to_command,
                total,
                run_dir: run_dir.clone(),
                dmesg: fs::read_to_string(&dmesg_path).ok(),
            })
        }
        Some(code) => Err(format!(
            "the guest init failed before running the command (code {code}):\n{}\nconsole log: {}",
            tail.join("\n"),
            run_dir.join("console.log").display()
        )),
        None => Err(format!(
            "{}{}{}\nconsole log: {}",
            match &status {
                Some(s) if s.signal().is_some() => format!("{QEMU_CRASHED} ({s})"),
                Some(s) if !s.success() => format!("QEMU failed ({s})"),
                Some(_) => "the guest stopped without reporting the command's exit status \
                            (a kernel panic or reboot?)"
                    .to_string(),
                None => "QEMU did not exit and was killed".to_string(),
            },
            // Even when echoed: a CI log may show only the summary, and an abort's reason
            // (a device model's assertion) is QEMU's last words.
            if qemu_stderr.trim().is_empty() {
                String::new()
            } else {
                format!("\nQEMU said (last lines): {}", last_lines(&qemu_stderr, 6))
            },
            if tail.is_empty() || (started.is_some() && opts.echo) {
                String::new()
            } else {
                format!("\nlast console lines:\n{}", tail.join("\n"))
            },
            run_dir.join("console.log").display()
        )),
    }
}

fn emit(opts: &GuestOptions, output: &mut String, line: &str) {
    if opts.echo {
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
    output.push_str(line);
    output.push('\n');
}

/// Waits for the child up to `grace`, then kills it. Returns its status if it exited by itself.
fn wait_or_kill(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// User + system CPU time of process `pid` (from /proc/PID/stat), if it can be read.
fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the name.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // /proc reports clock ticks of USER_HZ, which is 100 on x86-64 Linux (an ABI constant).
    Some(Duration::from_millis(ticks * 10))
}
