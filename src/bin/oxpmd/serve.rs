//! `oxpmd sriov serve`: the PF service. Holds an 82576 PF through VFIO, creates and serves its
//! VFs under a per-VF policy, and is administered at run time through its control socket
//! (`oxpmd vf ...`), which can also hand VFs to unprivileged processes. See docs/sriov.md.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use oxpmd::pmd::signal::{STOP, install_stop_handlers};
use oxpmd::pmd::sriov::control_socket::{AccessPolicy, ControlServer};
use oxpmd::pmd::sriov::{PfService, Refusal, ServiceConfig, VfEvent};

use crate::error::CliError;

/// What `serve` was asked to do.
#[derive(Debug)]
pub struct ServeOptions {
    /// The service's configuration.
    pub config: ServiceConfig,
    /// The control socket.
    pub socket: PathBuf,
    /// A group that may connect (mode 0660).
    pub group: Option<u32>,
    /// Who may open which VF.
    pub access: AccessPolicy,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Set the VF count back to 0 on exit.
    pub remove_vfs: bool,
}

/// Parses `--allow VF:UID[,UID...]` into `access`.
pub fn parse_allow(s: &str, access: &mut AccessPolicy) -> Result<(), String> {
    let (vf, uids) = s
        .split_once(':')
        .ok_or_else(|| format!("--allow {s}: expected VF:UID[,UID...] (e.g. 0:1000)"))?;
    let vf: usize = vf
        .parse()
        .ok()
        .filter(|v| *v < 7)
        .ok_or_else(|| format!("--allow {s}: VF `{vf}` is not in 0..=6"))?;
    for u in uids.split(',') {
        let uid: u32 = u
            .parse()
            .map_err(|_| format!("--allow {s}: `{u}` is not a numeric uid"))?;
        let list = &mut access.open_allowed[vf];
        if !list.contains(&uid) {
            if list.len() >= 64 {
                return Err(format!("--allow {s}: at most 64 uids per VF"));
            }
            list.push(uid);
        }
    }
    Ok(())
}

/// A group given by number or by name (looked up in /etc/group).
pub fn parse_group(s: &str) -> Result<u32, String> {
    if let Ok(g) = s.parse() {
        return Ok(g);
    }
    let text =
        std::fs::read_to_string("/etc/group").map_err(|e| format!("--socket-group {s}: /etc/group: {e}"))?;
    text.lines()
        .take(100_000)
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(s)).then(|| f.nth(1).and_then(|g| g.parse().ok()))?
        })
        .ok_or_else(|| format!("--socket-group {s}: no such group"))
}

fn service_error(e: impl std::fmt::Display) -> CliError {
    CliError::Service(e.to_string())
}

/// Runs the service until SIGINT / SIGTERM or `--duration`.
pub fn serve(o: ServeOptions) -> Result<(), CliError> {
    install_stop_handlers().map_err(|e| service_error(format!("installing the signal handlers: {e}")))?;
    // The socket first: a live service on it is refused before the device is touched.
    let mut server = ControlServer::bind(&o.socket, o.group, o.access.clone()).map_err(service_error)?;
    let mut svc = PfService::start(o.config).map_err(service_error)?;
    let pf = svc.config().pf;
    println!(
        "oxpmd: PF {pf}: {} VF(s) served; control socket {} (mode {}); token file {}; state file {}",
        svc.vf_addrs().len(),
        server.path().display(),
        if o.group.is_some() { "0660" } else { "0600" },
        svc.config().token_file.display(),
        svc.config().state_file.display()
    );
    for (i, (a, s)) in svc.vf_addrs().iter().zip(svc.host().table().iter()).enumerate() {
        let allowed = &o.access.open_allowed[i];
        println!(
            "oxpmd: VF {i}: {a} MAC {} {}{}",
            s.mac.map(|m| m.to_string()).unwrap_or_else(|| "none".into()),
            if s.policy.kernel_driver {
                "kernel igbvf"
            } else {
                "vfio-pci"
            },
            if allowed.is_empty() {
                String::new()
            } else {
                format!(", may be opened by uid {allowed:?}")
            }
        );
    }
    println!("oxpmd: serving");
    let started = Instant::now();
    while !STOP.load(Ordering::Relaxed) {
        for e in svc.poll().map_err(service_error)? {
            // Rate-limit refusals are counted, and logged once a second by the PF host.
            if !matches!(
                e,
                VfEvent::Refused {
                    reason: Refusal::RateLimited,
                    ..
                }
            ) {
                println!("oxpmd: event {e}");
            }
        }
        server.poll(&mut svc);
        if o.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    drop(server);
    svc.stop(o.remove_vfs).map_err(service_error)?;
    println!(
        "oxpmd: stopped; {}",
        if o.remove_vfs {
            "VFs removed".to_string()
        } else {
            "VFs left enabled (serve them again with --restart)".to_string()
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists() {
        let mut a = AccessPolicy::default();
        parse_allow("0:1000,1001", &mut a).unwrap();
        parse_allow("0:1000", &mut a).unwrap();
        assert_eq!(a.open_allowed[0], vec![1000, 1001]);
        for bad in ["0", "7:1", "x:1", "0:bob", "0:"] {
            assert!(parse_allow(bad, &mut a).is_err(), "{bad}");
        }
        assert_eq!(parse_group("0"), Ok(0));
    }
}
