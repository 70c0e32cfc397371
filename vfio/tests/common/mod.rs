//! Helpers shared by the VM tests (run in the test VM by `cargo xtask vm test`, see docs/testvm.md).
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use oxpmd_vfio::PciAddress;

/// The PCI address of port `n` of the VM topology (`OXPMD_PORTn`).
pub fn port(n: usize) -> PciAddress {
    let key = format!("OXPMD_PORT{n}");
    let v = std::env::var(&key)
        .unwrap_or_else(|_| panic!("{key} is not set: run this through `cargo xtask vm test`"));
    PciAddress::parse(&v).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// Loads a guest kernel module with the harness's helper (`$OXPMD_VM_MODPROBE NAME`).
pub fn modprobe(name: &str) -> Result<(), String> {
    if std::path::Path::new("/sys/module")
        .join(name.replace('-', "_"))
        .exists()
    {
        return Ok(());
    }
    let helper =
        std::env::var("OXPMD_VM_MODPROBE").map_err(|_| "OXPMD_VM_MODPROBE is not set".to_string())?;
    let out = Command::new(&helper)
        .arg(name)
        .output()
        .map_err(|e| format!("{helper} {name}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{helper} {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Every kernel log message currently in the ring buffer (from /dev/kmsg, non-blocking).
pub fn kernel_log() -> Vec<String> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .expect("open /dev/kmsg");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                // "prio,seq,usec,flags;message\n" (continuation lines start with a space).
                if let Some((_, msg)) = rec.split_once(';') {
                    out.push(msg.lines().next().unwrap_or_default().to_owned());
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            // EPIPE: a record was overwritten while we read; go on.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) => panic!("reading /dev/kmsg: {e}"),
        }
    }
    out
}

/// A logger that keeps every record, so that tests can check what the library logged.
struct Capture(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        let line = format!("{}", r.args());
        eprintln!("[{}] {line}", r.level());
        self.0.lock().unwrap().push((r.level(), line));
    }
    fn flush(&self) {}
}

static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();

/// Installs the capturing logger (once).
pub fn capture_logs() {
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).expect("no other logger");
        log::set_max_level(log::LevelFilter::Debug);
        c
    });
}

/// The messages logged at `level` so far.
pub fn logged(level: log::Level) -> Vec<String> {
    CAPTURE
        .get()
        .map(|c| {
            c.0.lock()
                .unwrap()
                .iter()
                .filter(|(l, _)| *l == level)
                .map(|(_, m)| m.clone())
                .collect()
        })
        .unwrap_or_default()
}
