//! The guest's two serial ports as the host reads them: the command channel (ttyS1, QEMU's
//! stdout: init's markers and the command's output) and the kernel console (ttyS0, a file QEMU
//! writes and the host follows), merged into one stream of [`Event`]s.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ChildStdout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

/// The kernel console's file in the run directory (the first serial port; console.log merges it
/// with the command channel).
pub const KERNEL_CONSOLE_FILE: &str = "kernel-console.log";

/// QEMU's standard error, kept whole in the run directory (the failure text carries its tail).
pub const QEMU_STDERR_FILE: &str = "qemu-stderr.log";

/// Writes `contents` to `path` in the run directory, which the guest shares writable: whatever
/// the guest left there under that name (a symbolic link to a host file, say) is removed first
/// and the file is created anew (`create_new`: O_CREAT|O_EXCL, which follows no link), so the
/// harness never writes through a name the guest chose.
pub fn write_run_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?
        .write_all(contents.as_bytes())
}

/// The last `n` non-empty lines of `text`, joined by newlines.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub enum Event {
    /// A line of the command channel (the second serial port): init's markers and the command's output.
    Console(String),
    /// The command channel closed (QEMU exited).
    ConsoleClosed,
    /// A line the guest kernel printed on its console (the first serial port).
    Kernel(String),
}

/// Sends each line of the command channel, then [`Event::ConsoleClosed`] when QEMU closes it.
pub fn read_command_channel(stdout: ChildStdout, tx: mpsc::Sender<Event>) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if tx.send(Event::Console(clean_line(&buf))).is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(Event::ConsoleClosed);
}

/// Keeps the last 60 console lines (shown when the run fails before or outside the command).
pub fn push_tail(tail: &mut Vec<String>, line: &str) {
    tail.push(line.to_string());
    if tail.len() > 60 {
        tail.remove(0);
    }
}

/// Follows the kernel console file QEMU writes ([`KERNEL_CONSOLE_FILE`]), sending each whole line
/// as it appears; once `stop` is set it sends what is left and returns.
pub fn follow_kernel_console(path: PathBuf, tx: mpsc::Sender<Event>, stop: Arc<AtomicBool>) {
    let mut file = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let stopping = stop.load(Ordering::Acquire);
        if file.is_none() {
            file = fs::File::open(&path).ok();
        }
        let mut got = 0;
        if let Some(f) = file.as_mut() {
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got += n;
                pending.extend_from_slice(&buf[..n]);
            }
        }
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            if tx.send(Event::Kernel(clean_line(&line))).is_err() {
                return;
            }
        }
        if stopping {
            if !pending.is_empty() {
                let _ = tx.send(Event::Kernel(clean_line(&pending)));
            }
            return;
        }
        if got == 0 {
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A console line without its line ending and carriage returns.
fn clean_line(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim_end_matches(['\n', '\r'])
        .replace('\r', "")
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn a_run_file_replaces_a_link_instead_of_writing_through_it() {
        let dir = std::env::temp_dir().join(format!("oxpmd-run-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let name = dir.join("qemu-stderr.log");
        std::os::unix::fs::symlink(&victim, &name).unwrap();
        super::write_run_file(&name, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&name).unwrap(), "new");
        assert!(!std::fs::symlink_metadata(&name).unwrap().file_type().is_symlink());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn last_lines_keeps_the_tail_and_drops_blank_lines() {
        let text = "a\nb\n\nc\nd\n\n";
        assert_eq!(last_lines(text, 2), "c\nd");
        assert_eq!(last_lines(text, 10), "a\nb\nc\nd");
        assert_eq!(last_lines("", 3), "");
    }
}
