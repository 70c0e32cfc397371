//! The host packages the harness needs, installed with apt from the machine's own sources.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::super::run_checked;
use super::{is_root, qemu_ok};

/// Host packages the harness needs, with the binary that proves each is there.
pub(super) const PACKAGES: &[(&str, &str)] = &[
    ("busybox-static", "/bin/busybox"),
    ("cpio", "/usr/bin/cpio"),
    ("xz-utils", "/usr/bin/xz"),
    ("dpdk", "/usr/bin/dpdk-devbind.py"),
    ("dpdk-dev", "/usr/bin/dpdk-testpmd"),
    // Reads back the captures of `--pcap` (tests/vm_pcap.rs).
    ("tshark", "/usr/bin/tshark"),
    // Turns the kernel peer's GRO off, so a capture shows the segments that crossed the link
    // (pmd/tests/vm_tso.rs).
    ("ethtool", "/usr/sbin/ethtool"),
    // Runs the packet-memory tests under memcheck (`cargo xtask memcheck`, part of `test`).
    ("valgrind", "/usr/bin/valgrind"),
];

pub(super) fn package_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "install ok installed")
        .unwrap_or(false)
}

/// True if the ELF file at `path` has no program interpreter (a static binary).
pub(super) fn is_static_elf(path: &Path) -> Result<bool, String> {
    let data = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let bad = || format!("{} is not a 64-bit little-endian ELF file", path.display());
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let phoff = usize::try_from(u64_at(0x20).ok_or_else(bad)?).map_err(|_| bad())?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(bad)?);
    for i in 0..phnum {
        let off = phoff
            .checked_add(i.checked_mul(phentsize).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        let p_type = data.get(off..off + 4).ok_or_else(bad)?;
        if u32::from_le_bytes(p_type.try_into().expect("4 bytes")) == 3 {
            return Ok(false); // PT_INTERP
        }
    }
    Ok(true)
}

pub(super) fn apt_env(cmd: &mut Command) -> &mut Command {
    cmd.env("DEBIAN_FRONTEND", "noninteractive").stdin(Stdio::null())
}

/// The Debian codename from /etc/os-release (e.g. `bookworm`).
pub(super) fn codename() -> Result<String, String> {
    let text = fs::read_to_string("/etc/os-release").map_err(|e| format!("read /etc/os-release: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| "no VERSION_CODENAME in /etc/os-release: not a Debian system?".to_string())
}

/// Text of every apt source file.
pub(super) fn apt_sources() -> Vec<(PathBuf, String)> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
        .into_iter()
        .filter_map(|p| fs::read_to_string(&p).ok().map(|t| (p, t)))
        .collect()
}

/// The URI configured for the main Debian archive (the one that serves `codename`), from deb822 or
/// one-line sources. Nothing is hard-coded: the machine's own configuration is reused.
pub(super) fn debian_uri(codename: &str) -> Option<String> {
    apt_sources().iter().find_map(|(path, text)| {
        uri_from_source(path.extension().is_some_and(|x| x == "sources"), text, codename)
    })
}

/// The first `deb` URI serving `codename` in one source file (deb822 or one-line format).
pub(super) fn uri_from_source(deb822: bool, text: &str, codename: &str) -> Option<String> {
    if deb822 {
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) else {
                continue;
            };
            let types = field("Types:").unwrap_or_default();
            if types.split_whitespace().any(|t| t == "deb")
                && suites.split_whitespace().any(|s| s == codename)
            {
                return uris.split_whitespace().next().map(str::to_string);
            }
        }
    } else {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            // Skip an options block: deb [signed-by=...] URI suite ...
            let words: Vec<&str> = match words.iter().position(|w| w.ends_with(']')) {
                Some(i) if words.get(1).is_some_and(|w| w.starts_with('[')) => std::iter::once(words[0])
                    .chain(words[i + 1..].iter().copied())
                    .collect(),
                _ => words,
            };
            if words.len() >= 3 && words[0] == "deb" && words[2] == codename {
                return Some(words[1].to_string());
            }
        }
    }
    None
}

pub(super) fn backports_configured(codename: &str) -> bool {
    let suite = format!("{codename}-backports");
    apt_sources().iter().any(|(_, text)| {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.split_whitespace().any(|w| w == suite))
    })
}

pub(super) fn apt_update() -> Result<(), String> {
    println!("vm setup: apt-get update");
    run_checked(
        apt_env(Command::new("apt-get").args(["-q", "update"])),
        "apt-get update",
    )
}

/// Installs the missing host packages. Returns whether anything changed.
pub(super) fn ensure_packages() -> Result<bool, String> {
    let need_qemu = match qemu_ok() {
        Ok(()) => false,
        Err(e) => {
            println!("vm setup: {e}");
            true
        }
    };
    let mut missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(pkg, bin)| !package_installed(pkg) || !Path::new(bin).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if !missing.contains(&"busybox-static") && !is_static_elf(Path::new("/bin/busybox"))? {
        missing.push("busybox-static");
    }
    if !need_qemu && missing.is_empty() {
        println!(
            "vm setup: host packages up to date (QEMU with igb, busybox-static, cpio, xz, dpdk, tshark, ethtool, valgrind)"
        );
        return Ok(false);
    }
    if !is_root() {
        return Err(format!(
            "vm setup must install {}{}: run it as root",
            if need_qemu {
                "qemu-system-x86 (backports) "
            } else {
                ""
            },
            missing.join(" ")
        ));
    }
    let codename = codename()?;
    if need_qemu && !backports_configured(&codename) {
        let uri = debian_uri(&codename).ok_or_else(|| {
            format!("no apt source for Debian {codename} found to derive the {codename}-backports suite from")
        })?;
        let line = format!("deb {uri} {codename}-backports main\n");
        let file = "/etc/apt/sources.list.d/backports.list";
        fs::write(file, &line).map_err(|e| format!("write {file}: {e}"))?;
        println!("vm setup: added {codename}-backports to {file}");
    }
    apt_update()?;
    if need_qemu {
        let suite = format!("{codename}-backports");
        println!("vm setup: installing qemu-system-x86 from {suite}");
        run_checked(
            apt_env(Command::new("apt-get").args([
                "-q",
                "-y",
                "--no-install-recommends",
                "install",
                "-t",
                &suite,
                "qemu-system-x86",
            ])),
            "apt-get install qemu-system-x86",
        )?;
        qemu_ok()?;
    }
    if !missing.is_empty() {
        println!("vm setup: installing {}", missing.join(" "));
        let mut cmd = Command::new("apt-get");
        cmd.args(["-q", "-y", "--no-install-recommends", "install"])
            .args(&missing);
        run_checked(apt_env(&mut cmd), "apt-get install")?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_give_the_debian_uri() {
        let deb822 = "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n\n\
                      Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            uri_from_source(true, deb822, "bookworm").as_deref(),
            Some("http://mirror.invalid/debian")
        );
        assert_eq!(uri_from_source(true, deb822, "trixie"), None);
        let list =
            "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian bookworm main\n";
        assert_eq!(
            uri_from_source(false, list, "bookworm").as_deref(),
            Some("http://mirror.invalid/debian")
        );
        assert_eq!(
            uri_from_source(false, "deb-src http://m.invalid/d bookworm main", "bookworm"),
            None
        );
    }
}
