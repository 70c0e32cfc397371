//! The PF service's control protocol: JSON lines over a UNIX socket (`oxpmd vf ...`).
//!
//! Every request is one JSON object on one line (UTF-8, at most [`MAX_REQUEST_LEN`] bytes with
//! its newline); every response is one JSON object on one line. Requests are untrusted input:
//! [`parse_request`] is total (any bytes give a request or a [`ProtocolError`] naming what was
//! wrong), refuses unknown operations and fields, wrong types and out-of-range numbers, and
//! never allocates beyond the bounded line. The protocol is in `docs/sriov.md`.
//!
//! | op | fields | response (`"ok": true`) |
//! |---|---|---|
//! | `list` | - | `"vfs": [VF, ...]` |
//! | `show` | `vf` | `"vf": VF` |
//! | `set` | `vf`, `set`: {`mac`, `vlan`, `trust`, `spoofchk`, `state`, `max_frame`, `max_multicast`, `max_tx_rate`} | `"vf": VF`, `"notes": [...]` |
//! | `stats` | `vf` (optional) | `"stats": [STATS, ...]` |
//! | `open` | `vf` | the VF's VFIO file descriptors (SCM_RIGHTS) and `"vf": VF` |
//!
//! A failure is `{"ok": false, "error": {"kind": KIND, "message": TEXT}}` with KIND one of
//! `bad-request`, `unknown-vf`, `refused`, `unsupported`, `permission`, `busy`, `internal`.
#![forbid(unsafe_code)]

use serde_json::{Map, Value, json};

use super::admin::{AdminChange, AdminError};
use super::policy::{LinkState, MAX_VFS, VfPhase, VfState};
use super::pool_stats::PoolCounters;
use crate::mac::MacAddr;

/// Longest request line, newline included.
pub const MAX_REQUEST_LEN: usize = 4096;
/// Most settings one `set` request carries.
pub const MAX_SETTINGS: usize = 8;

/// A parsed, bounded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Every VF.
    List,
    /// One VF.
    Show {
        /// VF index (not yet checked against the VF count).
        vf: usize,
    },
    /// Change one VF's settings, all or nothing.
    Set {
        /// VF index.
        vf: usize,
        /// The changes, in a fixed order (mac, vlan, trust, spoofchk, state, max_frame,
        /// max_multicast, max_tx_rate).
        changes: Vec<AdminChange>,
    },
    /// Per-VF counters.
    Stats {
        /// One VF, or all.
        vf: Option<usize>,
    },
    /// Hand the VF over as opened file descriptors.
    Open {
        /// VF index.
        vf: usize,
    },
}

/// Why a request was refused before anything looked at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Over [`MAX_REQUEST_LEN`].
    #[error("request longer than {MAX_REQUEST_LEN} bytes")]
    TooLong,
    /// Not UTF-8 or not JSON.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// A JSON value that is not an object.
    #[error("a request is a JSON object, e.g. {{\"op\": \"list\"}}")]
    NotObject,
    /// No `op`, or not a string.
    #[error("missing \"op\" (list, show, set, stats, open)")]
    NoOp,
    /// An operation we do not know.
    #[error("unknown op {0:?} (list, show, set, stats, open)")]
    UnknownOp(String),
    /// A field the operation does not take.
    #[error("op {op}: unknown field {field:?}")]
    UnknownField {
        /// Operation.
        op: &'static str,
        /// Field.
        field: String,
    },
    /// A field of the wrong type or out of range.
    #[error("{field}: {what}")]
    BadField {
        /// Field.
        field: &'static str,
        /// What was wrong.
        what: String,
    },
    /// A required field is missing.
    #[error("op {op}: missing field {field:?}")]
    Missing {
        /// Operation.
        op: &'static str,
        /// Field.
        field: &'static str,
    },
}

fn bad(field: &'static str, what: impl Into<String>) -> ProtocolError {
    ProtocolError::BadField {
        field,
        what: what.into(),
    }
}

fn uint(v: &Value, field: &'static str, max: u64) -> Result<u64, ProtocolError> {
    match v.as_u64() {
        Some(n) if n <= max => Ok(n),
        Some(n) => Err(bad(field, format!("{n} is over {max}"))),
        None => Err(bad(field, format!("expected an integer 0..={max}, got {v}"))),
    }
}

fn boolean(v: &Value, field: &'static str) -> Result<bool, ProtocolError> {
    v.as_bool()
        .ok_or_else(|| bad(field, format!("expected true or false, got {v}")))
}

fn vf_index(v: &Value) -> Result<usize, ProtocolError> {
    // Any index a VF could have on any PF: the service checks it against its VF count.
    uint(v, "vf", (MAX_VFS - 1) as u64 * 32).map(|n| n as usize)
}

/// The settings names of `set`, in the order they are applied.
pub const SETTINGS: [&str; 8] = [
    "mac",
    "vlan",
    "trust",
    "spoofchk",
    "state",
    "max_frame",
    "max_multicast",
    "max_tx_rate",
];

fn parse_setting(name: &str, v: &Value) -> Result<AdminChange, ProtocolError> {
    Ok(match name {
        "mac" => {
            let s = v
                .as_str()
                .ok_or_else(|| bad("mac", "expected a string like \"02:00:00:00:10:00\""))?;
            let m: MacAddr = s.parse().map_err(|e| bad("mac", format!("{e}")))?;
            AdminChange::Mac(m)
        }
        "vlan" => {
            let n = uint(v, "vlan", 4094)? as u16;
            AdminChange::PortVlan((n != 0).then_some(n))
        }
        "trust" => AdminChange::Trust(boolean(v, "trust")?),
        "spoofchk" => AdminChange::SpoofCheck(boolean(v, "spoofchk")?),
        "state" => {
            let s = v.as_str().unwrap_or("");
            AdminChange::Link(
                LinkState::parse(s)
                    .ok_or_else(|| bad("state", format!("expected auto, enable or disable, got {v}")))?,
            )
        }
        "max_frame" => AdminChange::MaxFrame(uint(v, "max_frame", u64::from(u32::MAX))? as u32),
        "max_multicast" => AdminChange::MaxMulticast(uint(v, "max_multicast", 255)? as u8),
        "max_tx_rate" => AdminChange::MaxTxRate(uint(v, "max_tx_rate", u64::from(u32::MAX))? as u32),
        _ => {
            return Err(ProtocolError::UnknownField {
                op: "set",
                field: name.chars().take(64).collect(),
            });
        }
    })
}

/// Parses one request line (with or without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, ProtocolError> {
    if line.len() > MAX_REQUEST_LEN {
        return Err(ProtocolError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    let v: Value =
        serde_json::from_str(text.trim_end()).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    let Value::Object(obj) = v else {
        return Err(ProtocolError::NotObject);
    };
    let op = obj.get("op").and_then(Value::as_str).ok_or(ProtocolError::NoOp)?;
    let (op, allowed): (&'static str, &[&str]) = match op {
        "list" => ("list", &["op"]),
        "show" => ("show", &["op", "vf"]),
        "set" => ("set", &["op", "vf", "set"]),
        "stats" => ("stats", &["op", "vf"]),
        "open" => ("open", &["op", "vf"]),
        other => return Err(ProtocolError::UnknownOp(other.chars().take(64).collect())),
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ProtocolError::UnknownField {
            op,
            field: k.chars().take(64).collect(),
        });
    }
    let vf = |obj: &Map<String, Value>| -> Result<usize, ProtocolError> {
        vf_index(obj.get("vf").ok_or(ProtocolError::Missing { op, field: "vf" })?)
    };
    Ok(match op {
        "list" => Request::List,
        "show" => Request::Show { vf: vf(&obj)? },
        "open" => Request::Open { vf: vf(&obj)? },
        "stats" => Request::Stats {
            vf: obj.get("vf").map(vf_index).transpose()?,
        },
        _ => {
            let vf = vf(&obj)?;
            let set = obj
                .get("set")
                .ok_or(ProtocolError::Missing { op, field: "set" })?
                .as_object()
                .ok_or_else(|| bad("set", "expected an object of settings"))?;
            if set.is_empty() || set.len() > MAX_SETTINGS {
                return Err(bad("set", format!("expected 1..={MAX_SETTINGS} settings")));
            }
            if let Some(k) = set.keys().find(|k| !SETTINGS.contains(&k.as_str())) {
                return Err(ProtocolError::UnknownField {
                    op: "set",
                    field: k.chars().take(64).collect(),
                });
            }
            let changes = SETTINGS
                .iter()
                .filter_map(|name| set.get(*name).map(|v| parse_setting(name, v)))
                .collect::<Result<Vec<_>, _>>()?;
            Request::Set { vf, changes }
        }
    })
}

/// Encodes a request as one line (newline included): what `oxpmd vf` sends.
pub fn encode_request(r: &Request) -> String {
    let v = match r {
        Request::List => json!({"op": "list"}),
        Request::Show { vf } => json!({"op": "show", "vf": vf}),
        Request::Open { vf } => json!({"op": "open", "vf": vf}),
        Request::Stats { vf: None } => json!({"op": "stats"}),
        Request::Stats { vf: Some(vf) } => json!({"op": "stats", "vf": vf}),
        Request::Set { vf, changes } => {
            let mut set = Map::new();
            for c in changes {
                let v = match c {
                    AdminChange::Mac(m) => json!(m.to_string()),
                    AdminChange::PortVlan(v) => json!(v.unwrap_or(0)),
                    AdminChange::Trust(b) | AdminChange::SpoofCheck(b) => json!(b),
                    AdminChange::Link(l) => json!(l.as_str()),
                    AdminChange::MaxFrame(n) | AdminChange::MaxTxRate(n) => json!(n),
                    AdminChange::MaxMulticast(n) => json!(n),
                };
                set.insert(c.name().to_string(), v);
            }
            json!({"op": "set", "vf": vf, "set": set})
        }
    };
    let mut s = v.to_string();
    s.push('\n');
    s
}

/// The kind of a failure, as the response names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request did not parse.
    BadRequest,
    /// No such VF.
    UnknownVf,
    /// The policy or the other VFs forbid it.
    Refused,
    /// The device lacks the feature.
    Unsupported,
    /// The client may not do this.
    Permission,
    /// Another client holds the VF.
    Busy,
    /// The service failed.
    Internal,
}

impl ErrorKind {
    /// The name in the response.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad-request",
            ErrorKind::UnknownVf => "unknown-vf",
            ErrorKind::Refused => "refused",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Permission => "permission",
            ErrorKind::Busy => "busy",
            ErrorKind::Internal => "internal",
        }
    }
}

impl From<&AdminError> for ErrorKind {
    fn from(e: &AdminError) -> ErrorKind {
        match e {
            AdminError::UnknownVf { .. } => ErrorKind::UnknownVf,
            AdminError::Unsupported { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::Refused,
        }
    }
}

/// A failure response line (newline included).
pub fn error_line(kind: ErrorKind, message: &str) -> String {
    let mut s = json!({"ok": false, "error": {"kind": kind.as_str(), "message": message}}).to_string();
    s.push('\n');
    s
}

/// A success response line: `{"ok": true}` with `fields` merged in.
pub fn ok_line(fields: Value) -> String {
    let mut obj = Map::new();
    obj.insert("ok".into(), Value::Bool(true));
    if let Value::Object(m) = fields {
        obj.extend(m);
    }
    let mut s = Value::Object(obj).to_string();
    s.push('\n');
    s
}

/// What `show` and `list` say about one VF.
pub fn vf_json(vf: usize, address: &str, s: &VfState, holder: Option<u32>) -> Value {
    let c = s.counters;
    json!({
        "vf": vf,
        "address": address,
        "mac": s.mac.map(|m| m.to_string()),
        "admin_mac": s.policy.mac.map(|m| m.to_string()),
        "trust": s.policy.trusted,
        "spoofchk": s.policy.spoof_check,
        "vlan": s.policy.port_vlan.unwrap_or(0),
        "state": s.policy.link.as_str(),
        "max_frame": s.policy.max_frame,
        "max_multicast": s.policy.max_multicast,
        "max_vlans": s.policy.max_vlans,
        "driver": if s.policy.kernel_driver { "kernel" } else { "vfio-pci" },
        "phase": if s.phase == VfPhase::Ready { "ready" } else { "resetting" },
        "frame": s.max_frame,
        "vlans": s.vlans,
        "multicast": s.mc_count,
        "multicast_promisc": s.mc_promisc,
        "holder_uid": holder,
        "mailbox": {
            "messages": c.messages, "acked": c.acked, "nacked": c.nacked,
            "malformed": c.malformed, "rate_limited": c.rate_limited,
            "resets": c.resets, "flrs": c.flrs,
        },
    })
}

/// What `stats` says about one VF: its pool's counters (the PF's view) and its mailbox's.
pub fn stats_json(vf: usize, s: &VfState, p: &PoolCounters) -> Value {
    let c = s.counters;
    json!({
        "vf": vf,
        "rx_packets": p.rx_packets, "rx_bytes": p.rx_bytes, "rx_multicast": p.rx_multicast,
        "tx_packets": p.tx_packets, "tx_bytes": p.tx_bytes,
        "mailbox": {
            "messages": c.messages, "acked": c.acked, "nacked": c.nacked,
            "malformed": c.malformed, "rate_limited": c.rate_limited,
            "resets": c.resets, "flrs": c.flrs,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Request, ProtocolError> {
        parse_request(s.as_bytes())
    }

    #[test]
    fn requests_parse_and_round_trip() {
        assert_eq!(p(r#"{"op":"list"}"#), Ok(Request::List));
        assert_eq!(p("{\"op\":\"show\",\"vf\":1}\n"), Ok(Request::Show { vf: 1 }));
        assert_eq!(p(r#"{"op":"stats"}"#), Ok(Request::Stats { vf: None }));
        let r = p(r#"{"op":"set","vf":0,"set":{"state":"disable","mac":"02:00:00:00:10:09","vlan":100}}"#)
            .unwrap();
        assert_eq!(
            r,
            Request::Set {
                vf: 0,
                changes: vec![
                    AdminChange::Mac("02:00:00:00:10:09".parse().unwrap()),
                    AdminChange::PortVlan(Some(100)),
                    AdminChange::Link(LinkState::Disable),
                ]
            }
        );
        for r in [
            r,
            Request::List,
            Request::Open { vf: 3 },
            Request::Stats { vf: Some(2) },
        ] {
            assert_eq!(parse_request(encode_request(&r).as_bytes()), Ok(r));
        }
    }

    #[test]
    fn malformed_requests_each_get_their_error() {
        type Case = (&'static str, fn(&ProtocolError) -> bool);
        let cases: &[Case] = &[
            ("", |e| matches!(e, ProtocolError::NotJson(_))),
            ("{", |e| matches!(e, ProtocolError::NotJson(_))),
            ("[1]", |e| matches!(e, ProtocolError::NotObject)),
            (r#"{"vf":0}"#, |e| matches!(e, ProtocolError::NoOp)),
            (r#"{"op":"reboot"}"#, |e| matches!(e, ProtocolError::UnknownOp(_))),
            (r#"{"op":"list","x":1}"#, |e| {
                matches!(e, ProtocolError::UnknownField { .. })
            }),
            (r#"{"op":"show"}"#, |e| matches!(e, ProtocolError::Missing { .. })),
            (r#"{"op":"show","vf":-1}"#, |e| {
                matches!(e, ProtocolError::BadField { .. })
            }),
            (r#"{"op":"show","vf":1.5}"#, |e| {
                matches!(e, ProtocolError::BadField { .. })
            }),
            (r#"{"op":"show","vf":1000}"#, |e| {
                matches!(e, ProtocolError::BadField { .. })
            }),
            (r#"{"op":"set","vf":0}"#, |e| {
                matches!(e, ProtocolError::Missing { .. })
            }),
            (r#"{"op":"set","vf":0,"set":{}}"#, |e| {
                matches!(e, ProtocolError::BadField { .. })
            }),
            (r#"{"op":"set","vf":0,"set":{"rate":1}}"#, |e| {
                matches!(e, ProtocolError::UnknownField { .. })
            }),
            (r#"{"op":"set","vf":0,"set":{"vlan":4095}}"#, |e| {
                matches!(e, ProtocolError::BadField { field: "vlan", .. })
            }),
            (r#"{"op":"set","vf":0,"set":{"mac":"zz"}}"#, |e| {
                matches!(e, ProtocolError::BadField { field: "mac", .. })
            }),
            (r#"{"op":"set","vf":0,"set":{"trust":"yes"}}"#, |e| {
                matches!(e, ProtocolError::BadField { field: "trust", .. })
            }),
            (r#"{"op":"set","vf":0,"set":{"state":"up"}}"#, |e| {
                matches!(e, ProtocolError::BadField { field: "state", .. })
            }),
        ];
        for (line, ok) in cases {
            let e = p(line).expect_err(line);
            assert!(ok(&e), "{line}: {e:?}");
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(
            parse_request(&vec![b' '; MAX_REQUEST_LEN + 1]),
            Err(ProtocolError::TooLong)
        );
        assert!(matches!(
            parse_request(&[0xff, 0xfe]),
            Err(ProtocolError::NotJson(_))
        ));
    }

    #[test]
    fn responses_are_one_line() {
        let l = error_line(ErrorKind::Busy, "VF 0 is held\nby uid 1000");
        assert_eq!(l.matches('\n').count(), 1);
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["error"]["kind"], "busy");
        let l = ok_line(json!({"vfs": []}));
        assert_eq!(l, "{\"ok\":true,\"vfs\":[]}\n");
    }
}
