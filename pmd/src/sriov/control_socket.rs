//! The PF service's control socket: a non-blocking UNIX listener served from the service loop
//! (no thread, no lock), JSON lines ([`super::control`]), each client identified by the
//! credentials the kernel recorded at connect time (SO_PEERCRED).
//!
//! - The socket is created mode 0600 (only the service's user connects), or 0660 with a group
//!   (`--socket-group`): members may list, show, read counters and open the VFs whose allow
//!   list names their uid; only root or the service's own uid may change settings.
//! - A socket file left by a dead service is detected (nothing accepts on it) and replaced; a
//!   live service on the path is never displaced; a path that is not a socket is refused.
//! - Bounded: at most [`MAX_CLIENTS`] connections, [`MAX_REQUEST_LEN`] bytes per request line,
//!   idle connections closed after [`IDLE_TIMEOUT`]; a client that does not read its responses
//!   is dropped rather than waited for.
#![forbid(unsafe_code)]

use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use super::control::{
    ErrorKind, MAX_REQUEST_LEN, Request, error_line, ok_line, parse_request, stats_json, vf_json,
};
use super::handover::{HandOver, HandOverError};
use super::policy::MAX_VFS;
use super::service::PfService;
use super::unix_fd::{PeerCred, peer_cred};

/// Most connections at once.
pub const MAX_CLIENTS: usize = 16;
/// A connection that holds no VF and sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Failures of the control socket itself.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another service answers on the path.
    #[error(
        "control socket {path}: another PF service is running and accepts on it; stop it first \
         (or give this one another --socket)"
    )]
    InUse {
        /// Path.
        path: String,
    },
    /// The path exists and is not a socket.
    #[error(
        "control socket {path}: exists and is not a socket; refusing to replace it (remove it if it is stale)"
    )]
    NotSocket {
        /// Path.
        path: String,
    },
    /// An I/O step failed.
    #[error("control socket {path}: {op}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Operation.
        op: &'static str,
        /// Cause.
        source: std::io::Error,
    },
}

struct Client {
    stream: UnixStream,
    cred: PeerCred,
    buf: Vec<u8>,
    last: Instant,
    /// The VF this client holds (opened through `open`), with the service's handle on it.
    held: Option<(usize, HandOver)>,
}

/// Who may do what, besides root and the service's own uid (which may do everything but open
/// a VF not on its list).
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// Per VF: the uids that may open it (deny by default).
    pub open_allowed: [Vec<u32>; MAX_VFS],
}

/// The listening socket and its clients.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Client>,
    admin_uid: u32,
    access: AccessPolicy,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl ControlServer {
    /// Binds `path` (mode 0600; 0660 and group `group` when given). Besides root, the uid
    /// that owns the socket (the service's) may change settings.
    pub fn bind(
        path: &Path,
        group: Option<u32>,
        access: AccessPolicy,
    ) -> Result<ControlServer, ControlError> {
        let p = path.display().to_string();
        let io = |op, source| ControlError::Io {
            path: p.clone(),
            op,
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => return Err(ControlError::InUse { path: p }),
                Err(e) if e.kind() == IoKind::ConnectionRefused => {
                    log::warn!("control socket {p}: left by a service that is gone; replacing it");
                    std::fs::remove_file(path).map_err(|e| io("remove the stale socket", e))?;
                }
                Err(e) => return Err(io("probe the existing socket", e)),
            },
            Ok(_) => return Err(ControlError::NotSocket { path: p }),
            Err(e) if e.kind() == IoKind::NotFound => {}
            Err(e) => return Err(io("stat", e)),
        }
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| io("create its directory", e))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| io("bind", e))?;
        // Until the mode is set only the owner could connect anyway: bind honours the umask
        // and /run/oxpmd is 0700; the mode is set before the first accept.
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("set the mode", e))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| io("set the group", e))?;
        }
        listener
            .set_nonblocking(true)
            .map_err(|e| io("set non-blocking", e))?;
        let admin_uid = std::fs::metadata(path).map_err(|e| io("stat", e))?.uid();
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
            clients: Vec::new(),
            admin_uid,
            access,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts, reads and answers whatever is ready; never blocks.
    pub fn poll(&mut self, svc: &mut PfService) {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => self.admit(s),
                Err(e) if e.kind() == IoKind::WouldBlock => break,
                Err(e) => {
                    log::warn!("control socket: accept: {e}");
                    break;
                }
            }
        }
        let mut i = 0;
        while i < self.clients.len() {
            if self.serve_client(i, svc) {
                i += 1;
            } else {
                let c = self.clients.swap_remove(i);
                self.release(c, svc);
            }
        }
    }

    fn admit(&mut self, s: UnixStream) {
        let cred = match peer_cred(&s) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("control socket: no peer credentials ({e}); connection closed");
                return;
            }
        };
        if self.clients.len() >= MAX_CLIENTS {
            let _ = (&s).write_all(
                error_line(
                    ErrorKind::Busy,
                    &format!("{MAX_CLIENTS} clients are connected; try again later"),
                )
                .as_bytes(),
            );
            log::warn!(
                "control socket: uid {} pid {} refused: too many clients",
                cred.uid,
                cred.pid
            );
            return;
        }
        if s.set_nonblocking(true).is_err() {
            return;
        }
        self.clients.push(Client {
            stream: s,
            cred,
            buf: Vec::new(),
            last: Instant::now(),
            held: None,
        });
    }

    /// Serves client `i`; false when it must go.
    fn serve_client(&mut self, i: usize, svc: &mut PfService) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            let c = &mut self.clients[i];
            match c.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    c.buf.extend_from_slice(&chunk[..n]);
                    c.last = Instant::now();
                }
                Err(e) if e.kind() == IoKind::WouldBlock => break,
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                Err(_) => return false,
            }
            if self.clients[i].buf.len() > MAX_REQUEST_LEN {
                break;
            }
        }
        while let Some(pos) = self.clients[i].buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.clients[i].buf.drain(..=pos).collect();
            if !self.answer(i, &line, svc) {
                return false;
            }
        }
        let c = &mut self.clients[i];
        if c.buf.len() > MAX_REQUEST_LEN {
            let _ = c.stream.write_all(
                error_line(
                    ErrorKind::BadRequest,
                    &format!("request longer than {MAX_REQUEST_LEN} bytes; connection closed"),
                )
                .as_bytes(),
            );
            return false;
        }
        c.held.is_some() || c.last.elapsed() < IDLE_TIMEOUT
    }

    /// Answers one request line of client `i`; false when the client must go.
    fn answer(&mut self, i: usize, line: &[u8], svc: &mut PfService) -> bool {
        let cred = self.clients[i].cred;
        let (reply, with_fds) = match parse_request(line) {
            Err(e) => (error_line(ErrorKind::BadRequest, &e.to_string()), false),
            Ok(req) => self.execute(i, &req, svc),
        };
        let c = &mut self.clients[i];
        let sent = match (&c.held, with_fds) {
            (Some((vf, h)), true) => h.send(&c.stream, reply.as_bytes()).map(|()| {
                log::info!(
                    "control: VF {vf} handed over to uid {} pid {} (container, group, device)",
                    cred.uid,
                    cred.pid
                );
            }),
            _ => c.stream.write_all(reply.as_bytes()),
        };
        if let Err(e) = sent {
            log::warn!(
                "control: uid {} pid {}: response not delivered ({e}); closed",
                cred.uid,
                cred.pid
            );
            return false;
        }
        true
    }

    fn may_admin(&self, cred: PeerCred) -> bool {
        cred.uid == 0 || cred.uid == self.admin_uid
    }

    fn holder(&self, vf: usize) -> Option<u32> {
        self.clients
            .iter()
            .find(|c| c.held.as_ref().is_some_and(|(v, _)| *v == vf))
            .map(|c| c.cred.uid)
    }

    fn execute(&mut self, i: usize, req: &Request, svc: &mut PfService) -> (String, bool) {
        let cred = self.clients[i].cred;
        let n = svc.host().table().len();
        let unknown = |vf: usize| {
            error_line(
                ErrorKind::UnknownVf,
                &format!(
                    "VF {vf} does not exist: the PF has {n} VF(s) (0..={})",
                    n.saturating_sub(1)
                ),
            )
        };
        let show = |s: &Self, svc: &PfService, vf: usize| {
            let t = svc.host().table();
            t.vf(vf).map(|st| {
                let addr = svc.vf_addrs().get(vf).map(|a| a.to_string()).unwrap_or_default();
                vf_json(vf, &addr, st, s.holder(vf))
            })
        };
        match req {
            Request::List => {
                let vfs: Vec<_> = (0..n).filter_map(|vf| show(self, svc, vf)).collect();
                (ok_line(json!({ "vfs": vfs })), false)
            }
            Request::Show { vf } => match show(self, svc, *vf) {
                Some(v) => (ok_line(json!({ "vf": v })), false),
                None => (unknown(*vf), false),
            },
            Request::Stats { vf } => {
                if let Err(e) = svc.refresh_counters() {
                    return (error_line(ErrorKind::Internal, &e.to_string()), false);
                }
                let which: Vec<usize> = match vf {
                    Some(v) if *v >= n => return (unknown(*v), false),
                    Some(v) => vec![*v],
                    None => (0..n).collect(),
                };
                let t = svc.host().table();
                let stats: Vec<_> = which
                    .iter()
                    .filter_map(|&v| Some(stats_json(v, t.vf(v)?, &svc.host().pool_counters(v)?)))
                    .collect();
                (ok_line(json!({ "stats": stats })), false)
            }
            Request::Set { vf, changes } => {
                if !self.may_admin(cred) {
                    return (
                        error_line(
                            ErrorKind::Permission,
                            &format!(
                                "uid {} may not change VF settings (root or uid {} only)",
                                cred.uid, self.admin_uid
                            ),
                        ),
                        false,
                    );
                }
                let what: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
                log::info!(
                    "control: uid {} pid {}: set VF {vf} {}",
                    cred.uid,
                    cred.pid,
                    what.join(" ")
                );
                match svc.admin(*vf, changes) {
                    Ok(outs) => {
                        let notes: Vec<&str> = outs.iter().filter_map(|o| o.note.as_deref()).collect();
                        let v = show(self, svc, *vf);
                        (ok_line(json!({ "vf": v, "notes": notes })), false)
                    }
                    Err(e) => {
                        log::warn!("control: set VF {vf} refused: {e}");
                        (error_line(ErrorKind::from(&e), &e.to_string()), false)
                    }
                }
            }
            Request::Open { vf } => self.open(i, *vf, svc),
        }
    }

    fn open(&mut self, i: usize, vf: usize, svc: &mut PfService) -> (String, bool) {
        let cred = self.clients[i].cred;
        let n = svc.host().table().len();
        let refuse = |kind, msg: String| {
            log::warn!(
                "control: uid {} pid {}: open VF {vf} refused: {msg}",
                cred.uid,
                cred.pid
            );
            (error_line(kind, &msg), false)
        };
        if vf >= n {
            return refuse(
                ErrorKind::UnknownVf,
                format!("VF {vf} does not exist: the PF has {n} VF(s)"),
            );
        }
        if !self.access.open_allowed[vf].contains(&cred.uid) {
            return refuse(
                ErrorKind::Permission,
                format!(
                    "uid {} is not on VF {vf}'s allow list (oxpmd sriov serve --allow {vf}:UID)",
                    cred.uid
                ),
            );
        }
        if let Some(uid) = self.holder(vf) {
            return refuse(
                ErrorKind::Busy,
                format!(
                    "VF {vf} is held by another client (uid {uid}); it is released when that client disconnects"
                ),
            );
        }
        if self.clients[i].held.is_some() {
            return refuse(ErrorKind::Busy, "this connection already holds a VF".into());
        }
        if svc.host().table().vf(vf).is_some_and(|s| s.policy.kernel_driver) {
            return refuse(
                ErrorKind::Refused,
                format!("VF {vf} is kept on the kernel igbvf driver"),
            );
        }
        let addr = svc.vf_addrs()[vf];
        let Some(token) = svc.token() else {
            return refuse(
                ErrorKind::Unsupported,
                "the service was restarted without the VF token file: it cannot open VFs".into(),
            );
        };
        match HandOver::open(vf, addr, token) {
            Ok(h) => {
                let v = show_static(svc, vf);
                let reply = ok_line(json!({
                    "vf": v,
                    "group": h.group(),
                    "fds": ["container", "group", "device"],
                }));
                self.clients[i].held = Some((vf, h));
                (reply, true)
            }
            Err(e @ HandOverError::Vfio { .. }) => refuse(ErrorKind::Internal, e.to_string()),
        }
    }

    /// A client went: the VF it held is reset (its DMA stops, the PF sees the FLR and turns
    /// its pool off until the next handshake) and the service's descriptors are closed.
    fn release(&mut self, c: Client, _svc: &mut PfService) {
        if let Some((vf, h)) = c.held {
            log::info!(
                "control: uid {} pid {} disconnected: VF {vf} released (reset)",
                c.cred.uid,
                c.cred.pid
            );
            h.release();
        }
    }
}

fn show_static(svc: &PfService, vf: usize) -> Option<serde_json::Value> {
    let st = svc.host().table().vf(vf)?;
    let addr = svc.vf_addrs().get(vf).map(|a| a.to_string()).unwrap_or_default();
    Some(vf_json(vf, &addr, st, None))
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
