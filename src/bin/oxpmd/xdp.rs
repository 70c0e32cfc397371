//! The AF_XDP parts of `oxpmd doctor` (kernel support, capabilities, the interfaces named with
//! `--xdp`: queues, driver, zero copy) and of `oxpmd devices` (kernel interfaces usable as
//! `xdp:IFACE`).

use oxpmd::pmd::vport::xdp::{Interface, XdpError, probe};
use serde_json::{Value, json};

use crate::doctor::{Check, Status};

fn check(name: String, status: Status, detail: String, fix: Option<String>) -> Check {
    Check {
        name,
        status,
        detail,
        fix,
    }
}

/// Capability bits AF_XDP needs (linux/capability.h).
const CAPS: [(u32, &str); 3] = [(12, "CAP_NET_ADMIN"), (13, "CAP_NET_RAW"), (39, "CAP_BPF")];

/// The effective capabilities of this process (`CapEff` of /proc/self/status).
fn effective_caps() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// The checks. Without `--xdp` interfaces, a missing piece is a warning (AF_XDP is optional);
/// with them, a failure.
pub fn checks(ifaces: &[String]) -> Vec<Check> {
    let mut out = Vec::new();
    let bad = if ifaces.is_empty() {
        Status::Warn
    } else {
        Status::Fail
    };
    const SETCAP: &str =
        "run as root, or `sudo setcap cap_net_admin,cap_net_raw,cap_bpf,cap_ipc_lock+ep BINARY`";
    let missing: Vec<&str> = match effective_caps() {
        Some(eff) => CAPS
            .iter()
            .filter(|(b, _)| eff & (1 << b) == 0)
            .map(|c| c.1)
            .collect(),
        None => Vec::new(),
    };
    out.push(if missing.is_empty() {
        check(
            "AF_XDP capabilities".into(),
            Status::Pass,
            "CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF effective".into(),
            None,
        )
    } else {
        check(
            "AF_XDP capabilities".into(),
            bad,
            format!("missing {}", missing.join(", ")),
            Some(SETCAP.into()),
        )
    });
    out.push(match probe::kernel_support() {
        Ok(()) => check(
            "AF_XDP kernel support".into(),
            Status::Pass,
            "an AF_XDP socket and an XSKMAP can be created".into(),
            None,
        ),
        Err(e @ XdpError::NoKernelSupport { .. }) => check(
            "AF_XDP kernel support".into(),
            bad,
            e.to_string(),
            Some("use a kernel built with CONFIG_XDP_SOCKETS=y and CONFIG_BPF_SYSCALL=y (Linux 5.4+)".into()),
        ),
        Err(e) => check(
            "AF_XDP kernel support".into(),
            bad,
            e.to_string(),
            Some(SETCAP.into()),
        ),
    });
    for name in ifaces {
        out.extend(interface_checks(name));
    }
    out
}

fn interface_checks(name: &str) -> Vec<Check> {
    let title = format!("xdp:{name}");
    let iface = match Interface::lookup(name) {
        Ok(i) => i,
        Err(e) => {
            return vec![check(
                title,
                Status::Fail,
                e.to_string(),
                Some("name an interface of `ip -br link`".into()),
            )];
        }
    };
    let mut out = vec![check(
        title.clone(),
        Status::Pass,
        format!(
            "driver {}, {} RX / {} TX queues (queues 0-{} usable), link {}, MTU {}",
            iface.driver.as_deref().unwrap_or("-"),
            iface.rx_queues,
            iface.tx_queues,
            iface.rx_queues.min(iface.tx_queues).max(1) - 1,
            iface.link(),
            iface.mtu().map_or("?".into(), |m| m.to_string())
        ),
        None,
    )];
    if iface.mtu().is_some_and(|m| m + 18 + 256 > 2048) {
        out.push(check(
            format!("{title} MTU"),
            Status::Warn,
            format!(
                "MTU {} needs 4096-byte UMEM frames (headroom + data room up to 4096)",
                iface.mtu().unwrap_or(0)
            ),
            Some(format!(
                "use a chunk-aligned pool of 4096-byte buffers, or `ip link set dev {name} mtu 1500`"
            )),
        ));
    }
    out.push(match probe::zero_copy_support(&iface, 0) {
        Ok(true) => check(format!("{title} zero copy"), Status::Pass, "the driver binds in zero-copy mode".into(), None),
        Ok(false) => check(
            format!("{title} zero copy"),
            Status::Warn,
            format!(
                "driver {} has no AF_XDP zero copy: the port runs in copy mode (one copy per frame each way)",
                iface.driver.as_deref().unwrap_or("-")
            ),
            Some("use a NIC whose kernel driver supports AF_XDP zero copy (ice, i40e, ixgbe, mlx5, ...) for the fastest path".into()),
        ),
        Err(e) => check(
            format!("{title} zero copy"),
            Status::Fail,
            e.to_string(),
            Some("see the error; `oxpmd doctor` probes by binding a socket to queue 0".into()),
        ),
    });
    out
}

/// Kernel interfaces usable as `xdp:IFACE` (every one but loopback), as a table.
pub fn to_table(ifaces: &[Interface]) -> String {
    let mut s = String::from("\nKernel interfaces (usable through AF_XDP as xdp:IFACE[:QUEUES]):\n");
    s.push_str(&format!(
        "{:<16} {:<12} {:>6} {:>6}  {:<24} SPEC\n",
        "IFACE", "DRIVER", "RXQ", "TXQ", "LINK"
    ));
    for i in ifaces {
        let last = i.rx_queues.min(i.tx_queues).max(1) - 1;
        s.push_str(&format!(
            "{:<16} {:<12} {:>6} {:>6}  {:<24} xdp:{}{}\n",
            i.name,
            i.driver.as_deref().unwrap_or("-"),
            i.rx_queues,
            i.tx_queues,
            i.link().to_string(),
            i.name,
            if last > 0 {
                format!(":0-{last}")
            } else {
                String::new()
            }
        ));
    }
    s
}

/// The same as JSON values.
pub fn to_json(ifaces: &[Interface]) -> Value {
    Value::Array(
        ifaces
            .iter()
            .map(|i| {
                json!({
                    "name": i.name,
                    "driver": i.driver,
                    "rx_queues": i.rx_queues,
                    "tx_queues": i.tx_queues,
                    "link_up": i.link().up,
                    "spec": format!("xdp:{}", i.name),
                })
            })
            .collect(),
    )
}
