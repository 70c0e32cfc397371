//! `oxpmd vf list | show | set | stats`: the PF service's client, in the style of
//! `ip link set DEV vf N ...`. One request per command over the control socket (JSON lines,
//! docs/sriov.md); `--json` prints the service's answer as it came.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

use oxpmd::pmd::sriov::control::{MAX_SETTINGS, Request, encode_request};
use oxpmd::pmd::sriov::{AdminChange, LinkState};
use serde_json::Value;

use crate::error::CliError;

/// Largest response read (a list of 7 VFs is a few KiB).
const MAX_RESPONSE: u64 = 1 << 20;

/// Parses `set` arguments: `mac M vlan N trust on|off spoofchk on|off state auto|enable|disable
/// max_frame N max_multicast N max_tx_rate N` (as `ip link set DEV vf N` spells them).
pub fn parse_settings(args: &[String]) -> Result<Vec<AdminChange>, CliError> {
    let usage = |m: String| CliError::Usage(m);
    if args.is_empty() || args.len() % 2 != 0 {
        return Err(usage(
            "vf set: expected KEY VALUE pairs: mac, vlan, trust, spoofchk, state, max_frame, max_multicast, \
             max_tx_rate (e.g. `mac 02:00:00:00:10:09 vlan 100`)"
                .into(),
        ));
    }
    if args.len() / 2 > MAX_SETTINGS {
        return Err(usage(format!("vf set: at most {MAX_SETTINGS} settings")));
    }
    let on_off = |k: &str, v: &str| match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(usage(format!("vf set: {k} {v}: expected on or off"))),
    };
    let num = |k: &str, v: &str| {
        v.parse::<u32>()
            .map_err(|_| usage(format!("vf set: {k} {v}: not a number")))
    };
    let mut out: Vec<AdminChange> = Vec::new();
    for kv in args.chunks(2) {
        let (k, v) = (kv[0].as_str(), kv[1].as_str());
        let c = match k {
            "mac" => AdminChange::Mac(v.parse().map_err(|e| usage(format!("vf set: mac {v}: {e}")))?),
            "vlan" => {
                let n = num(k, v)?;
                if n > 4094 {
                    return Err(usage(format!(
                        "vf set: vlan {n}: out of range 0..=4094 (0: none)"
                    )));
                }
                AdminChange::PortVlan((n != 0).then_some(n as u16))
            }
            "trust" => AdminChange::Trust(on_off(k, v)?),
            "spoofchk" => AdminChange::SpoofCheck(on_off(k, v)?),
            "state" => AdminChange::Link(
                LinkState::parse(v)
                    .ok_or_else(|| usage(format!("vf set: state {v}: expected auto, enable or disable")))?,
            ),
            "max_frame" => AdminChange::MaxFrame(num(k, v)?),
            "max_multicast" => AdminChange::MaxMulticast(
                u8::try_from(num(k, v)?).map_err(|_| usage(format!("vf set: max_multicast {v}: 0..=30")))?,
            ),
            "max_tx_rate" => AdminChange::MaxTxRate(num(k, v)?),
            _ => return Err(usage(format!("vf set: unknown setting `{k}`"))),
        };
        if out.iter().any(|o| o.name() == c.name()) {
            return Err(usage(format!("vf set: {k} given twice")));
        }
        out.push(c);
    }
    Ok(out)
}

/// Sends `req` to the service on `socket` and returns its answer (an error when it refused).
pub fn request(socket: &Path, req: &Request) -> Result<Value, CliError> {
    let mut s = oxpmd::pmd::sriov::control_client::connect(socket)?;
    let io = |op, e| CliError::io(op, socket, e);
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| io("set a time-out on", e))?;
    s.write_all(encode_request(req).as_bytes())
        .map_err(|e| io("send the request to", e))?;
    let mut line = String::new();
    BufReader::new((&s).take(MAX_RESPONSE))
        .read_line(&mut line)
        .map_err(|e| io("read the answer from", e))?;
    let v: Value = serde_json::from_str(&line).map_err(|e| {
        CliError::Service(format!(
            "{}: the answer is not JSON ({e}): {line:?}",
            socket.display()
        ))
    })?;
    if v["ok"] == Value::Bool(true) {
        return Ok(v);
    }
    Err(CliError::Refused {
        kind: v["error"]["kind"].as_str().unwrap_or("?").to_string(),
        message: v["error"]["message"].as_str().unwrap_or("?").to_string(),
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "on".into(),
        Value::Bool(false) => "off".into(),
        other => other.to_string(),
    }
}

/// The `list` table.
pub fn list_table(v: &Value) -> String {
    let mut out = format!(
        "{:<3} {:<13} {:<18} {:<5} {:<5} {:<8} {:<8} {:<9} {:<3} {:<9} {}\n",
        "VF", "ADDRESS", "MAC", "VLAN", "TRUST", "SPOOFCHK", "STATE", "MAX_FRAME", "MC", "PHASE", "DRIVER"
    );
    for vf in v["vfs"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<3} {:<13} {:<18} {:<5} {:<5} {:<8} {:<8} {:<9} {:<3} {:<9} {}\n",
            s(&vf["vf"]),
            s(&vf["address"]),
            s(&vf["mac"]),
            s(&vf["vlan"]),
            s(&vf["trust"]),
            s(&vf["spoofchk"]),
            s(&vf["state"]),
            s(&vf["max_frame"]),
            s(&vf["max_multicast"]),
            s(&vf["phase"]),
            s(&vf["driver"]),
        ));
    }
    out
}

/// The `show` lines.
pub fn show_text(vf: &Value) -> String {
    let mut out = format!("VF {} ({})\n", s(&vf["vf"]), s(&vf["address"]));
    for (k, label) in [
        ("mac", "mac"),
        ("admin_mac", "admin mac"),
        ("vlan", "port vlan"),
        ("trust", "trust"),
        ("spoofchk", "spoofchk"),
        ("state", "link state"),
        ("max_frame", "max frame (policy)"),
        ("frame", "max frame (VF asked)"),
        ("max_multicast", "multicast cap"),
        ("multicast", "multicast hashes"),
        ("max_vlans", "VLAN cap"),
        ("vlans", "VLANs"),
        ("phase", "phase"),
        ("driver", "driver"),
        ("holder_uid", "handed over to uid"),
    ] {
        out.push_str(&format!("  {label:<22} {}\n", s(&vf[k])));
    }
    let m = &vf["mailbox"];
    out.push_str(&format!(
        "  {:<22} messages {} acked {} nacked {} malformed {} rate_limited {} resets {} flrs {}\n",
        "mailbox",
        s(&m["messages"]),
        s(&m["acked"]),
        s(&m["nacked"]),
        s(&m["malformed"]),
        s(&m["rate_limited"]),
        s(&m["resets"]),
        s(&m["flrs"])
    ));
    out
}

/// The `stats` table.
pub fn stats_table(v: &Value) -> String {
    let mut out = format!(
        "{:<3} {:>12} {:>14} {:>10} {:>12} {:>14} {:>9} {:>7} {:>6}\n",
        "VF", "RX_PACKETS", "RX_BYTES", "RX_MCAST", "TX_PACKETS", "TX_BYTES", "MBX_MSGS", "NACKED", "RESETS"
    );
    for st in v["stats"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<3} {:>12} {:>14} {:>10} {:>12} {:>14} {:>9} {:>7} {:>6}\n",
            s(&st["vf"]),
            s(&st["rx_packets"]),
            s(&st["rx_bytes"]),
            s(&st["rx_multicast"]),
            s(&st["tx_packets"]),
            s(&st["tx_bytes"]),
            s(&st["mailbox"]["messages"]),
            s(&st["mailbox"]["nacked"]),
            s(&st["mailbox"]["resets"]),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn settings_like_ip_link() {
        let c = parse_settings(&args("mac 02:00:00:00:10:09 vlan 100 state disable trust on")).unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c[1], AdminChange::PortVlan(Some(100)));
        assert_eq!(
            parse_settings(&args("vlan 0")).unwrap(),
            vec![AdminChange::PortVlan(None)]
        );
        for bad in [
            "",
            "mac",
            "vlan 4095",
            "trust yes",
            "state up",
            "speed 10",
            "vlan 1 vlan 2",
            "max_multicast 300",
        ] {
            assert!(
                matches!(parse_settings(&args(bad)), Err(CliError::Usage(_))),
                "{bad}"
            );
        }
    }
}
