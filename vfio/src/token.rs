//! The SR-IOV VF token: a UUID shared between a PF's owner and the users of its VFs.
//!
//! It is a secret: `Display` and `Debug` show only a short prefix; [`VfToken::expose`] gives the
//! full string for the device name passed to the kernel. Files holding it are created 0600 and
//! refused when group or others can read them.
#![forbid(unsafe_code)]

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use uuid::Uuid;

use crate::error::{Error, Op, Result, errno_error};

/// How many hex digits `Display`/`Debug` reveal.
const SHOWN: usize = 4;

/// A VF token (UUID).
#[derive(Clone, PartialEq, Eq)]
pub struct VfToken(Uuid);

impl VfToken {
    /// A fresh random (v4) token.
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses the hyphenated form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (surrounding whitespace allowed).
    pub fn parse(s: &str) -> Result<Self> {
        Self::parse_from(s, "argument")
    }

    fn parse_from(s: &str, source_name: &str) -> Result<Self> {
        let t = s.trim();
        // Only the canonical hyphenated form: no braces, no urn: prefix, no simple form.
        let bad = || Error::BadToken {
            source_name: source_name.to_owned(),
        };
        if t.len() != 36 {
            return Err(bad());
        }
        Uuid::try_parse(t).map(Self).map_err(|_| bad())
    }

    /// The 16 bytes in string order, as `VFIO_DEVICE_FEATURE_PCI_VF_TOKEN` takes them.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The full hyphenated string. Only for handing it to the kernel or to a process that needs it:
    /// never log it.
    pub fn expose(&self) -> String {
        self.0.hyphenated().to_string()
    }

    /// Writes the token to a new file with mode 0600 (refuses to overwrite an existing file).
    pub fn save(&self, path: &Path) -> Result<()> {
        let subject = path.display().to_string();
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                let detail = (e.kind() == io::ErrorKind::AlreadyExists).then(|| {
                    "the file exists; a token file is never overwritten: remove it first".to_owned()
                });
                errno_error(Op::SaveToken, subject.clone(), e, Some(path), detail)
            })?;
        // The umask can only remove bits; make sure nothing else widened them.
        let mode = f
            .metadata()
            .map_err(|e| errno_error(Op::SaveToken, subject.clone(), e, Some(path), None))?;
        if mode.permissions().mode() & 0o077 != 0 {
            f.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(|e| errno_error(Op::SaveToken, subject.clone(), e, Some(path), None))?;
        }
        writeln!(f, "{}", self.expose())
            .and_then(|_| f.sync_all())
            .map_err(|e| errno_error(Op::SaveToken, subject, e, Some(path), None))
    }

    /// Reads a token file, refusing one that group or others can read (fix: `chmod 600`).
    pub fn load(path: &Path) -> Result<Self> {
        let subject = path.display().to_string();
        let f = fs::File::open(path)
            .map_err(|e| errno_error(Op::LoadToken, subject.clone(), e, Some(path), None))?;
        let meta = f
            .metadata()
            .map_err(|e| errno_error(Op::LoadToken, subject.clone(), e, Some(path), None))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(Error::TokenFileMode {
                path: path.to_owned(),
                mode,
            });
        }
        // Bounded read: a token file is 37 bytes; anything much larger is not one.
        let mut s = String::new();
        f.take(128).read_to_string(&mut s).map_err(|_| Error::BadToken {
            source_name: subject.clone(),
        })?;
        Self::parse_from(&s, &subject)
    }

    fn prefix(&self) -> String {
        let s = self.0.simple().to_string();
        s[..SHOWN].to_owned()
    }
}

impl fmt::Display for VfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…(redacted)", self.prefix())
    }
}

impl fmt::Debug for VfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VfToken({}…)", self.prefix())
    }
}

impl std::str::FromStr for VfToken {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    const T: &str = "4f2a9c1e-7b3d-4e8a-9f10-2c3d4e5f6a7b";

    #[test]
    fn parse_and_expose_round_trip() {
        let t = VfToken::parse(T).unwrap();
        assert_eq!(t.expose(), T);
        assert_eq!(VfToken::parse(&format!("  {T}\n")).unwrap(), t);
        assert_eq!(t.as_bytes()[0], 0x4f);
        assert_eq!(t.as_bytes()[15], 0x7b);
        for bad in [
            "",
            "4f2a9c1e7b3d4e8a9f102c3d4e5f6a7b",
            "{4f2a9c1e-7b3d-4e8a-9f10-2c3d4e5f6a7b}",
            "zz2a9c1e-7b3d-4e8a-9f10-2c3d4e5f6a7b",
        ] {
            assert!(VfToken::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_tokens_are_v4_and_distinct() {
        let a = VfToken::generate();
        let b = VfToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.0.get_version_num(), 4);
    }

    #[test]
    fn display_and_debug_redact() {
        let t = VfToken::parse(T).unwrap();
        let d = t.to_string();
        let g = format!("{t:?}");
        assert!(d.starts_with("4f2a") && g.contains("4f2a"), "{d} {g}");
        for s in [&d, &g] {
            assert!(!s.contains("9c1e") && !s.contains("2c3d4e5f6a7b"), "{s}");
        }
    }

    #[test]
    fn saved_file_is_0600_and_not_overwritten() {
        let dir = TempDir::new("token");
        let p = dir.path().join("vf.token");
        let t = VfToken::generate();
        t.save(&p).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(VfToken::load(&p).unwrap(), t);
        let e = VfToken::generate().save(&p).unwrap_err().to_string();
        assert!(e.contains("never overwritten"), "{e}");
        assert_eq!(VfToken::load(&p).unwrap(), t);
    }

    #[test]
    fn readable_file_is_refused_with_the_fix() {
        let dir = TempDir::new("token");
        let p = dir.path().join("vf.token");
        fs::write(&p, format!("{T}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = VfToken::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("0644") && e.contains(&format!("chmod 600 {}", p.display())),
            "{e}"
        );
        assert!(!e.contains(T));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(VfToken::load(&p).is_err());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(VfToken::load(&p).unwrap().expose(), T);
    }

    #[test]
    fn garbage_file_is_refused_without_echoing_it() {
        let dir = TempDir::new("token");
        let p = dir.path().join("vf.token");
        fs::write(&p, "x".repeat(10_000)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let e = VfToken::load(&p).unwrap_err().to_string();
        assert!(e.contains("not a UUID") && !e.contains("xxxx"), "{e}");
    }
}
