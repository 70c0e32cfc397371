//! `cargo xtask vm setup`: host packages, the guest kernel and the initramfs, cached under target/testvm/.
//!
//! Idempotent: every step checks first; a second run changes nothing and says so.
//!
//! - [`packages`]: the host packages (QEMU, DPDK, tshark ...) from the machine's own apt sources;
//! - [`kernel`]: the Debian 6.12 guest kernel, downloaded and unpacked;
//! - [`modules`]: the guest's module set and its load order;
//! - [`initramfs`]: the init script and the archive.

mod initramfs;
mod kernel;
mod modules;
mod packages;

use std::fs;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::Paths;
use initramfs::{ensure_initramfs, initramfs_stamp};
use kernel::{ensure_kernel, read_kernel_info};
use packages::ensure_packages;

/// Lowest QEMU with `-device igb`.
const QEMU_MIN: (u32, u32) = (8, 1);
/// Runs the whole setup.
pub fn setup(paths: &Paths) -> Result<(), String> {
    let start = Instant::now();
    let mut changed = false;
    changed |= ensure_packages()?;
    let kernel = ensure_kernel(paths, &mut changed)?;
    changed |= ensure_initramfs(paths, &kernel)?;
    let secs = start.elapsed().as_secs_f64();
    if changed {
        println!("vm setup: done in {secs:.1} s ({})", paths.testvm.display());
    } else {
        println!("vm setup: up to date ({secs:.1} s, {})", paths.testvm.display());
    }
    Ok(())
}

/// What `run` needs, checked without installing anything.
pub fn check_ready(paths: &Paths) -> Result<(), String> {
    qemu_ok().map_err(|e| format!("{e}: run `cargo xtask vm setup`"))?;
    let stamp = paths.testvm.join("initramfs.stamp");
    if !paths.kernel().is_file() || !paths.initramfs().is_file() || !stamp.is_file() {
        return Err(format!(
            "no guest kernel/initramfs under {}: run `cargo xtask vm setup`",
            paths.testvm.display()
        ));
    }
    let kernel = read_kernel_info(paths)?;
    if fs::read_to_string(&stamp).ok().as_deref() != Some(initramfs_stamp(&kernel).as_str()) {
        // Only the init script or module list changed: rebuilding needs no network.
        println!("vm: the initramfs is out of date, rebuilding it");
        ensure_initramfs(paths, &kernel)?;
    }
    Ok(())
}

/// Whether this process runs as root (effective uid 0), read from /proc/self/status.
pub(crate) fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Parses "QEMU emulator version 10.0.2 (...)" into (major, minor).
fn parse_qemu_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.split("version ").nth(1)?;
    let mut it = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// QEMU is present, new enough, and has `-device igb`.
pub fn qemu_ok() -> Result<(), String> {
    let hint = "QEMU >= 8.1 with -device igb needed";
    let out = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{hint} (qemu-system-x86_64: {e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_qemu_version(&text)
        .ok_or_else(|| format!("{hint} (cannot parse `qemu-system-x86_64 --version`: {text:?})"))?;
    if version < QEMU_MIN {
        return Err(format!("{hint} (found {}.{})", version.0, version.1));
    }
    let out = Command::new("qemu-system-x86_64")
        .args(["-device", "help"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{hint} (qemu-system-x86_64 -device help: {e})"))?;
    if !String::from_utf8_lossy(&out.stdout).contains("name \"igb\"") {
        return Err(format!("{hint} (this QEMU has no igb device)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_version_parses() {
        assert_eq!(
            parse_qemu_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)\n"),
            Some((10, 0))
        );
        assert_eq!(parse_qemu_version("QEMU emulator version 7.2.15"), Some((7, 2)));
        assert_eq!(parse_qemu_version("garbage"), None);
        assert!(Some((7, 2)) < Some(QEMU_MIN) && Some((8, 1)) >= Some(QEMU_MIN));
    }
}
