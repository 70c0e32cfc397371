//! The bindings `oxpmd bind` replaced, kept across invocations in `/run/oxpmd/bindings` so that
//! `oxpmd unbind` can give each device back to its previous driver.
//!
//! The file is untrusted input when it is read back (anyone with access to the directory could have
//! written it; an older tool version could have): it must be a regular file of this user, not writable
//! by others, at most [`MAX_LEN`] bytes, start with the format line, and every entry must parse (a PCI
//! address, its `vendor:device` id, driver names made of `[A-Za-z0-9_.:-]`), with no address twice.
//! Anything else refuses the whole file, naming the line. An entry is used only for the device with
//! the recorded id.
//!
//! Format (text, one entry per line):
//! ```text
//! oxpmd-bindings 1
//! 0000:00:02.0 8086:10c9 driver=igb override=-
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oxpmd::vfio::{PciAddress, PreviousBinding};

use crate::error::CliError;
use crate::host::is_safe_name;

/// The first line of the file.
pub const MAGIC: &str = "oxpmd-bindings 1";
/// Largest accepted file.
pub const MAX_LEN: u64 = 64 * 1024;
/// Most entries accepted.
pub const MAX_ENTRIES: usize = 1024;

/// One remembered binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `vendor:device` of the device when it was bound.
    pub id: (u16, u16),
    /// Its driver before `bind`.
    pub driver: Option<String>,
    /// Its `driver_override` before `bind`.
    pub driver_override: Option<String>,
}

impl Entry {
    /// The vfio crate's form, for `Sysfs::restore`.
    pub fn previous(&self, address: PciAddress) -> PreviousBinding {
        PreviousBinding {
            address,
            driver: self.driver.clone(),
            driver_override: self.driver_override.clone(),
        }
    }
}

/// The state file and its entries.
#[derive(Debug)]
pub struct Bindings {
    path: PathBuf,
    /// Entries by address.
    pub entries: BTreeMap<PciAddress, Entry>,
}

fn bad(path: &Path, line: usize, why: impl Into<String>) -> CliError {
    CliError::BadState {
        path: path.to_owned(),
        line,
        why: why.into(),
    }
}

fn effective_uid() -> Option<u32> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

impl Bindings {
    /// Loads `DIR/bindings` (an absent file is an empty state).
    pub fn load(dir: &Path) -> Result<Self, CliError> {
        let path = dir.join("bindings");
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Bindings {
                    path,
                    entries: BTreeMap::new(),
                });
            }
            Err(e) => return Err(CliError::io("reading the state file", &path, e)),
        };
        if !meta.file_type().is_file() {
            return Err(bad(&path, 0, "not a regular file"));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(bad(
                &path,
                0,
                format!("mode {:04o}: writable by group or others", meta.mode() & 0o7777),
            ));
        }
        if let Some(uid) = effective_uid()
            && meta.uid() != uid
        {
            return Err(bad(
                &path,
                0,
                format!("owned by uid {}, not by this user (uid {uid})", meta.uid()),
            ));
        }
        if meta.len() > MAX_LEN {
            return Err(bad(
                &path,
                0,
                format!("{} bytes, at most {MAX_LEN} accepted", meta.len()),
            ));
        }
        let mut text = String::new();
        fs::File::open(&path)
            .and_then(|f| f.take(MAX_LEN + 1).read_to_string(&mut text))
            .map_err(|e| CliError::io("reading the state file", &path, e))?;
        let entries = parse(&text).map_err(|(line, why)| bad(&path, line, why))?;
        Ok(Bindings { path, entries })
    }

    /// Writes the state atomically (a 0600 temporary file renamed over the old one), creating the
    /// directory (0700) if needed; removes the file when no entry is left.
    pub fn save(&self) -> Result<(), CliError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if self.entries.is_empty() {
            return match fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(CliError::io("removing the state file", &self.path, e))
                }
                _ => Ok(()),
            };
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CliError::io("creating the state directory", dir, e))?;
        let tmp = dir.join(format!(".bindings.{}", std::process::id()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| CliError::io("writing the state file", &tmp, e))?;
        f.write_all(render(&self.entries).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                CliError::io("writing the state file", &tmp, e)
            })?;
        fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            CliError::io("writing the state file", &self.path, e)
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn opt(s: &str, line: usize, what: &str) -> Result<Option<String>, (usize, String)> {
    if s == "-" {
        Ok(None)
    } else if is_safe_name(s) {
        Ok(Some(s.to_owned()))
    } else {
        Err((line, format!("{what} {s:?} is not a driver name")))
    }
}

fn parse_id(s: &str) -> Option<(u16, u16)> {
    let (v, d) = s.split_once(':')?;
    if v.len() != 4 || d.len() != 4 {
        return None;
    }
    Some((u16::from_str_radix(v, 16).ok()?, u16::from_str_radix(d, 16).ok()?))
}

/// Parses the file's text; the error is (1-based line, reason).
pub fn parse(text: &str) -> Result<BTreeMap<PciAddress, Entry>, (usize, String)> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, l)) if l == MAGIC => {}
        Some((_, l)) => return Err((1, format!("expected {MAGIC:?}, found {:?}", truncate(l)))),
        None => return Err((1, "empty file".to_owned())),
    }
    let mut out = BTreeMap::new();
    for (i, l) in lines {
        let n = i + 1;
        if l.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = l.split(' ').collect();
        let [addr, id, driver, over] = f.as_slice() else {
            return Err((n, format!("expected 4 fields, found {:?}", truncate(l))));
        };
        let address =
            PciAddress::parse(addr).map_err(|_| (n, format!("bad PCI address {:?}", truncate(addr))))?;
        let id = parse_id(id).ok_or_else(|| (n, format!("bad vendor:device id {:?}", truncate(id))))?;
        let driver = driver
            .strip_prefix("driver=")
            .ok_or_else(|| (n, "third field must be driver=NAME or driver=-".to_owned()))?;
        let over = over
            .strip_prefix("override=")
            .ok_or_else(|| (n, "fourth field must be override=NAME or override=-".to_owned()))?;
        let entry = Entry {
            id,
            driver: opt(driver, n, "driver")?,
            driver_override: opt(over, n, "override")?,
        };
        if out.insert(address, entry).is_some() {
            return Err((n, format!("{address} appears twice")));
        }
        if out.len() > MAX_ENTRIES {
            return Err((n, format!("more than {MAX_ENTRIES} entries")));
        }
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The file's text for `entries`.
pub fn render(entries: &BTreeMap<PciAddress, Entry>) -> String {
    let mut s = format!("{MAGIC}\n");
    for (a, e) in entries {
        s.push_str(&format!(
            "{a} {:04x}:{:04x} driver={} override={}\n",
            e.id.0,
            e.id.1,
            e.driver.as_deref().unwrap_or("-"),
            e.driver_override.as_deref().unwrap_or("-"),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let mut m = BTreeMap::new();
        m.insert(
            PciAddress::parse("0000:00:02.0").unwrap(),
            Entry {
                id: (0x8086, 0x10c9),
                driver: Some("igb".into()),
                driver_override: None,
            },
        );
        m.insert(
            PciAddress::parse("0000:00:06.0").unwrap(),
            Entry {
                id: (0x8086, 0x10c9),
                driver: None,
                driver_override: Some("vfio-pci".into()),
            },
        );
        let t = render(&m);
        assert_eq!(parse(&t).unwrap(), m);
        for (text, line, why) in [
            ("", 1, "empty"),
            ("oxpmd-bindings 2\n", 1, "expected"),
            (
                "oxpmd-bindings 1\n0000:00:02.0 8086:10c9 driver=igb\n",
                2,
                "4 fields",
            ),
            (
                "oxpmd-bindings 1\n0000:00:02.0 8086:10c9 driver=../x override=-\n",
                2,
                "not a driver name",
            ),
            (
                "oxpmd-bindings 1\nzz 8086:10c9 driver=igb override=-\n",
                2,
                "bad PCI address",
            ),
            (
                "oxpmd-bindings 1\n0000:00:02.0 8086-10c9 driver=igb override=-\n",
                2,
                "vendor:device",
            ),
            (
                "oxpmd-bindings 1\n0000:00:02.0 8086:10c9 drv=igb override=-\n",
                2,
                "driver=NAME",
            ),
            (
                "oxpmd-bindings 1\n0000:00:02.0 8086:10c9 driver=igb override=-\n0000:00:02.0 8086:10c9 driver=- override=-\n",
                3,
                "twice",
            ),
        ] {
            let (l, w) = parse(text).unwrap_err();
            assert_eq!(l, line, "{text:?}: {w}");
            assert!(w.contains(why), "{text:?}: {w}");
        }
    }
}
