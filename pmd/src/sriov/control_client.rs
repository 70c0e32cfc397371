//! The client side of the control socket: connecting to the PF service, with an error that
//! says what stands in the way and how to fix it. `oxpmd vf ...` and the VF hand-over client
//! ([`super::handover::open_from_service`]) connect through [`connect`].
#![forbid(unsafe_code)]

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Why the control socket could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The socket (or its directory) does not let this process in.
    #[error(
        "{}: permission denied ({source}): {what} is mode {mode:04o}, owner uid {owner_uid}, group gid \
         {owner_gid}; this process runs as uid {uid}, gid {gid}{groups}. Fix: start the service with \
         `oxpmd sriov serve --socket-group GROUP` for a group this user is in (the socket is then mode \
         0660), or run as the owner (uid {owner_uid})",
        .path.display()
    )]
    Permission {
        /// The socket.
        path: PathBuf,
        /// `the socket` or `its directory DIR`: what was inspected.
        what: String,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        owner_uid: u32,
        /// Its group.
        owner_gid: u32,
        /// The caller's effective uid.
        uid: u32,
        /// The caller's effective gid.
        gid: u32,
        /// `, groups G1 G2` (the caller's supplementary groups), or nothing.
        groups: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Nothing answers on the socket.
    #[error(
        "no PF service answers on {} ({source}). Fix: start it (`oxpmd sriov serve --pf ADDR --vfs N`, \
         with `--allow VF:UID` for a VF to hand over), or name its socket (--socket PATH, \
         vf-service:PATH:VF); a socket left by a dead service is replaced by the next one",
        .path.display()
    )]
    NoService {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Connects to the control socket at `path`.
pub fn connect(path: &Path) -> Result<UnixStream, ConnectError> {
    UnixStream::connect(path).map_err(|source| match source.kind() {
        ErrorKind::PermissionDenied => permission_error(path, source),
        _ => ConnectError::NoService {
            path: path.to_owned(),
            source,
        },
    })
}

/// EACCES / EPERM: the socket's mode and owner (or its directory's, when the socket cannot
/// even be looked at), and who the caller is.
fn permission_error(path: &Path, source: std::io::Error) -> ConnectError {
    let (what, meta) = match std::fs::metadata(path) {
        Ok(m) => ("the socket".to_string(), Some(m)),
        Err(_) => {
            let dir = path.parent().unwrap_or(Path::new("/"));
            (
                format!("its directory {}", dir.display()),
                std::fs::metadata(dir).ok(),
            )
        }
    };
    let (mode, owner_uid, owner_gid) =
        meta.map_or((0, u32::MAX, u32::MAX), |m| (m.mode() & 0o7777, m.uid(), m.gid()));
    let me = Credentials::of_this_process();
    ConnectError::Permission {
        path: path.to_owned(),
        what,
        mode,
        owner_uid,
        owner_gid,
        uid: me.uid,
        gid: me.gid,
        groups: if me.groups.is_empty() {
            String::new()
        } else {
            format!(
                ", groups {}",
                me.groups.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
            )
        },
        source,
    }
}

/// The caller's effective uid and gid and its supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credentials {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl Credentials {
    /// From /proc/self/status (no system call wrapper needed; u32::MAX where unreadable).
    fn of_this_process() -> Credentials {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Self::parse_status(&status)
    }

    /// `Uid:` / `Gid:` lines hold real, effective, saved and filesystem ids; `Groups:` the rest.
    fn parse_status(status: &str) -> Credentials {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|rest| {
                    rest.split_whitespace()
                        .filter_map(|w| w.parse::<u32>().ok())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        let effective = |v: Vec<u32>| v.get(1).copied().unwrap_or(u32::MAX);
        Credentials {
            uid: effective(field("Uid:")),
            gid: effective(field("Gid:")),
            groups: field("Groups:"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn credentials_are_the_effective_ids() {
        let c = Credentials::parse_status(
            "Name:\tx\nUid:\t1000\t1001\t1000\t1001\nGid:\t100\t101\t100\t101\nGroups:\t27 1000 \n",
        );
        assert_eq!(
            c,
            Credentials {
                uid: 1001,
                gid: 101,
                groups: vec![27, 1000]
            }
        );
        let me = Credentials::of_this_process();
        assert_ne!(me.uid, u32::MAX);
    }

    #[test]
    fn a_permission_error_names_the_socket_its_mode_owner_the_caller_and_the_fix() {
        let dir = std::env::temp_dir().join(format!("oxpmd-control-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("svc.sock");
        let _ = std::fs::remove_file(&path);
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = permission_error(&path, std::io::Error::from_raw_os_error(13)).to_string();
        let m = std::fs::metadata(&path).unwrap();
        let me = Credentials::of_this_process();
        std::fs::remove_dir_all(&dir).unwrap();
        for want in [
            path.display().to_string(),
            "permission denied".into(),
            "the socket is mode 0600".into(),
            format!("owner uid {}", m.uid()),
            format!("group gid {}", m.gid()),
            format!("runs as uid {}, gid {}", me.uid, me.gid),
            "oxpmd sriov serve --socket-group GROUP".into(),
            "or run as the owner".into(),
        ] {
            assert!(e.contains(&want), "`{want}` missing from: {e}");
        }
    }

    #[test]
    fn nothing_listening_is_no_service() {
        let path = std::env::temp_dir().join(format!("oxpmd-no-such-{}.sock", std::process::id()));
        let e = connect(&path).unwrap_err();
        assert!(matches!(e, ConnectError::NoService { .. }), "{e}");
        assert!(e.to_string().contains("oxpmd sriov serve"), "{e}");
    }
}
