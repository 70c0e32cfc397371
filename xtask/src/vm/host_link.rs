//! A link of the test VM that runs through the host: two tap devices in a bridge, made before
//! QEMU starts and removed when the run ends ([`Topology::host_link`](super::topology::Topology)).
//!
//! The bridge and the taps carry no address and no IPv6 (nothing of the host's own leaks onto
//! the link); the bridge runs no STP, so its ports forward at once.

use std::process::{Command, Stdio};

/// The taps and the bridge of one run; dropping it deletes them.
pub struct HostLink {
    /// The bridge.
    bridge: String,
    /// The taps: the lower port's, then the higher port's.
    taps: [String; 2],
}

/// Runs `ip ARGS`; the error names the command and what it said.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Turns IPv6 off on `dev` (no link-local address, no router or neighbour solicitations).
fn no_ipv6(dev: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
}

impl HostLink {
    /// Makes the bridge `oxb<tag>` and the taps `oxa<tag>` / `oxc<tag>` (`tag`: up to 8
    /// characters, so that the names fit IFNAMSIZ), the taps in the bridge, all up.
    pub fn create(tag: &str) -> Result<HostLink, String> {
        if !super::setup::is_root() {
            return Err(
                "a topology with a host link needs root on the host (tap devices and a bridge)".into(),
            );
        }
        let tag: String = tag.chars().take(8).collect();
        let link = HostLink {
            bridge: format!("oxb{tag}"),
            taps: [format!("oxa{tag}"), format!("oxc{tag}")],
        };
        // From here on a failure removes what was made (Drop).
        ip(&[
            "link",
            "add",
            "name",
            &link.bridge,
            "type",
            "bridge",
            "stp_state",
            "0",
        ])?;
        no_ipv6(&link.bridge);
        for tap in &link.taps {
            ip(&["tuntap", "add", "dev", tap, "mode", "tap"])?;
            no_ipv6(tap);
            ip(&["link", "set", "dev", tap, "master", &link.bridge])?;
            ip(&["link", "set", "dev", tap, "up"])?;
        }
        ip(&["link", "set", "dev", &link.bridge, "up"])?;
        Ok(link)
    }

    /// The taps' names (lower port's, higher port's), for QEMU's `-netdev tap,ifname=`.
    pub fn taps(&self) -> [&str; 2] {
        [&self.taps[0], &self.taps[1]]
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        for dev in self.taps.iter().chain(std::iter::once(&self.bridge)) {
            // Absent when creation stopped before it: nothing to say then.
            let _ = ip(&["link", "del", "dev", dev]);
        }
    }
}
