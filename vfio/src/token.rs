//! The SR-IOV VF token: a UUID shared between a PF's owner and the users of its VFs.
//!
//! It is a secret: `Display` and `Debug` show only a short prefix; [`VfToken::expose`] gives the
//! full string for the device name passed to the kernel. Files holding it are created 0600
//! (`O_EXCL | O_NOFOLLOW`: never through a link, never over an existing file) and read back only
//! when they are regular files (not followed through a symbolic link) owned by the effective
//! uid with no group or other permission bits, as checked on the opened descriptor.
#![deny(unsafe_code)]

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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
        // create_new is O_CREAT | O_EXCL: an existing file or link (even a dangling one) at
        // `path` makes it fail, so the token never lands in a file someone else prepared.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
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

    /// Reads a token file. Refused: a symbolic link (not followed), anything but a regular
    /// file, a file not owned by the effective uid (fix: `chown`), one that group or others have
    /// any permission on (fix: `chmod 600`). The checks are made on the opened descriptor, so
    /// the path cannot be swapped between the check and the read.
    pub fn load(path: &Path) -> Result<Self> {
        let subject = path.display().to_string();
        // O_NONBLOCK: a FIFO planted at the path must not block the open (it is refused below).
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP)
                    && fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
                {
                    return Error::TokenFileType {
                        path: path.to_owned(),
                        kind: "a symbolic link",
                    };
                }
                errno_error(Op::LoadToken, subject.clone(), e, Some(path), None)
            })?;
        // fstat of the descriptor we read from.
        let meta = f
            .metadata()
            .map_err(|e| errno_error(Op::LoadToken, subject.clone(), e, Some(path), None))?;
        let ft = meta.file_type();
        if !ft.is_file() {
            let kind = if ft.is_dir() {
                "a directory"
            } else if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_char_device() || ft.is_block_device() {
                "a device node"
            } else {
                "a special file"
            };
            return Err(Error::TokenFileType {
                path: path.to_owned(),
                kind,
            });
        }
        let euid = effective_uid();
        if meta.uid() != euid {
            return Err(Error::TokenFileOwner {
                path: path.to_owned(),
                owner: meta.uid(),
                euid,
            });
        }
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

/// This process's effective uid.
#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no argument, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
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
    fn symlink_is_not_followed_on_load() {
        let dir = TempDir::new("token");
        let real = dir.path().join("real.token");
        let link = dir.path().join("vf.token");
        let t = VfToken::generate();
        t.save(&real).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = VfToken::load(&link).unwrap_err();
        assert!(
            matches!(
                e,
                Error::TokenFileType {
                    kind: "a symbolic link",
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("symbolic link") && msg.contains("Fix:"), "{msg}");
        assert!(!msg.contains(&t.expose()));
        assert_eq!(VfToken::load(&real).unwrap(), t);
    }

    #[test]
    fn non_regular_files_are_refused() {
        let dir = TempDir::new("token");
        let d = dir.path().join("adir");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        let e = VfToken::load(&d).unwrap_err();
        assert!(
            matches!(
                e,
                Error::TokenFileType {
                    kind: "a directory",
                    ..
                }
            ),
            "{e:?}"
        );
        // A FIFO must be refused without blocking in open (O_NONBLOCK), when mkfifo exists.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg("-m")
            .arg("600")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success());
        if made {
            let e = VfToken::load(&fifo).unwrap_err();
            assert!(matches!(e, Error::TokenFileType { kind: "a FIFO", .. }), "{e:?}");
        } else {
            println!("mkfifo not available: FIFO case not run");
        }
    }

    #[test]
    fn file_of_another_owner_is_refused_with_the_fix() {
        let euid = effective_uid();
        let dir = TempDir::new("token");
        let p = dir.path().join("vf.token");
        let (path, owner) = if euid == 0 {
            // As root: a 0600 token file planted by uid 65534.
            fs::write(&p, format!("{T}\n")).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
            (p.clone(), 65534)
        } else {
            // Not root: a file root owns (the owner check comes before the mode check).
            (std::path::PathBuf::from("/etc/passwd"), 0)
        };
        let e = VfToken::load(&path).unwrap_err();
        assert!(
            matches!(e, Error::TokenFileOwner { owner: o, euid: u, .. } if o == owner && u == euid),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("chown {euid} {}", path.display())) && !msg.contains(T),
            "{msg}"
        );
        if euid == 0 {
            std::os::unix::fs::chown(&p, Some(0), None).unwrap();
            assert_eq!(VfToken::load(&p).unwrap().expose(), T, "after the fix");
        }
    }

    #[test]
    fn save_never_writes_through_a_link() {
        let dir = TempDir::new("token");
        let target = dir.path().join("target");
        let link = dir.path().join("vf.token");
        // A dangling link: O_EXCL refuses it, nothing is created at the target.
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(VfToken::generate().save(&link).is_err());
        assert!(
            fs::symlink_metadata(&target).is_err(),
            "target created through the link"
        );
        // A link to an existing file: refused, the file is unchanged.
        fs::write(&target, "keep").unwrap();
        assert!(VfToken::generate().save(&link).is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
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
