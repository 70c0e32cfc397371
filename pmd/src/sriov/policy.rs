//! The per-VF policy and the PF's decision for each mailbox message.
//!
//! [`VfTable::handle`] is pure: given the VF's index, the 16 untrusted words and the time, it
//! returns the reply to write, the hardware changes to make (for this VF only) and, when the
//! request is refused, why. State is indexed strictly by VF; a VF index out of range is refused
//! before anything is looked at. Deny by default: nothing but RESET is acted on before the VF
//! finished its reset handshake, and every setting outside the VF's policy is NACKed.
#![forbid(unsafe_code)]

use std::fmt;

use super::mailbox::{self, MAX_MC_HASHES, MBX_WORDS, ParseError, Reply, VfRequest};
use crate::mac::MacAddr;

/// Most VFs an 82576 has.
pub const MAX_VFS: usize = 8;
/// Most VLAN filters a VF may ever hold (the hardware's VLVF has 32 entries for everyone).
pub const MAX_VLANS_CAP: usize = 32;
/// Smallest max-frame value a VF may ask for (a minimum Ethernet frame with FCS).
pub const MIN_FRAME: u32 = 64;
/// Largest max-frame value the 82576 supports (RLPML is 14 bits, jumbo up to 9018 + VLAN).
pub const MAX_FRAME_HW: u32 = 9_022;

/// The administrator's settings for one VF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfPolicy {
    /// The MAC the administrator gave the VF (None: the VF has none until it sets one, which an
    /// untrusted VF may do only when no MAC was given).
    pub mac: Option<MacAddr>,
    /// A trusted VF may change its MAC, add secondary filters and use multicast promiscuous mode.
    pub trusted: bool,
    /// Transmit anti-spoofing: the VF may only send from its MAC (DTXSWC MAC anti-spoof bit).
    pub spoof_check: bool,
    /// Most VLAN filters the VF may add (0..=32).
    pub max_vlans: u8,
    /// Most multicast hashes the VF may set (0..=30).
    pub max_multicast: u8,
    /// Largest max frame the VF may ask for (bytes, `MIN_FRAME..=MAX_FRAME_HW`).
    pub max_frame: u32,
    /// Messages the VF may send in a burst (token bucket size, >= 1).
    pub msg_burst: u32,
    /// Messages per second the bucket refills.
    pub msg_per_sec: u32,
    /// Keep this VF on the kernel igbvf driver (the manager rewrites its driver_override).
    pub kernel_driver: bool,
}

impl Default for VfPolicy {
    /// Deny by default: untrusted, spoof-checked, no admin MAC (the manager assigns one),
    /// 8 VLANs, 30 multicast hashes, standard frames (1522 with a VLAN tag), 64 messages burst
    /// refilled at 32 per second.
    fn default() -> Self {
        VfPolicy {
            mac: None,
            trusted: false,
            spoof_check: true,
            max_vlans: 8,
            max_multicast: MAX_MC_HASHES as u8,
            max_frame: 1522,
            msg_burst: 64,
            msg_per_sec: 32,
            kernel_driver: false,
        }
    }
}

/// A policy setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A value outside its bounds.
    #[error("VF {vf}: {field} = {value} is out of range {range}")]
    OutOfRange {
        /// VF.
        vf: usize,
        /// Setting.
        field: &'static str,
        /// Value.
        value: u64,
        /// Allowed range.
        range: &'static str,
    },
    /// The administrator MAC is not unicast.
    #[error("VF {vf}: MAC {mac} is not a valid unicast address")]
    BadMac {
        /// VF.
        vf: usize,
        /// Address.
        mac: MacAddr,
    },
    /// Two VFs would share a MAC.
    #[error("VFs {a} and {b} both have MAC {mac}; each VF needs its own")]
    DuplicateMac {
        /// First VF.
        a: usize,
        /// Second VF.
        b: usize,
        /// Address.
        mac: MacAddr,
    },
    /// More VFs than the device has.
    #[error("{count} VFs configured; the 82576 has at most {MAX_VFS}")]
    TooManyVfs {
        /// Count.
        count: usize,
    },
}

impl VfPolicy {
    /// Checks every field's bounds.
    pub fn validate(&self, vf: usize) -> Result<(), PolicyError> {
        let range = |field, value: u64, ok: bool, range| {
            if ok {
                Ok(())
            } else {
                Err(PolicyError::OutOfRange {
                    vf,
                    field,
                    value,
                    range,
                })
            }
        };
        if let Some(mac) = self.mac {
            if !mac.is_valid_unicast() {
                return Err(PolicyError::BadMac { vf, mac });
            }
        }
        range(
            "max_vlans",
            self.max_vlans.into(),
            usize::from(self.max_vlans) <= MAX_VLANS_CAP,
            "0..=32",
        )?;
        range(
            "max_multicast",
            self.max_multicast.into(),
            usize::from(self.max_multicast) <= MAX_MC_HASHES,
            "0..=30",
        )?;
        range(
            "max_frame",
            self.max_frame.into(),
            (MIN_FRAME..=MAX_FRAME_HW).contains(&self.max_frame),
            "64..=9022",
        )?;
        range(
            "msg_burst",
            self.msg_burst.into(),
            (1..=100_000).contains(&self.msg_burst),
            "1..=100000",
        )?;
        range(
            "msg_per_sec",
            self.msg_per_sec.into(),
            self.msg_per_sec <= 100_000,
            "0..=100000",
        )
    }
}

/// Why a request was refused (each refusal is NACKed and logged with the VF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The message did not parse.
    Malformed(ParseError),
    /// Not RESET, and the VF has not finished its reset handshake.
    NotReady {
        /// Message id.
        id: u16,
    },
    /// Over the message-rate limit.
    RateLimited,
    /// RESET while the VF has no MAC to be given.
    NoMac,
    /// An untrusted VF tried to change the MAC the administrator set.
    MacLocked {
        /// What it asked for.
        requested: MacAddr,
        /// What it has.
        assigned: MacAddr,
    },
    /// The MAC is another VF's or the PF's.
    MacInUse {
        /// The address.
        mac: MacAddr,
    },
    /// Secondary unicast filters need trust.
    MacFilterNotAllowed,
    /// More VLANs than the policy allows.
    VlanLimit {
        /// The limit.
        limit: u8,
    },
    /// More multicast hashes than the policy allows.
    MulticastLimit {
        /// Asked.
        count: u8,
        /// Limit.
        limit: u8,
    },
    /// Max frame outside `MIN_FRAME..=policy.max_frame`.
    FrameOutOfBounds {
        /// Asked.
        asked: u32,
        /// Upper bound of the policy.
        max: u32,
    },
    /// Unicast promiscuous: the 82576 has no per-pool unicast promiscuous mode.
    UnicastPromiscUnsupported,
    /// Multicast promiscuous needs trust.
    PromiscNotTrusted,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Malformed(e) => write!(f, "malformed message: {e}"),
            Refusal::NotReady { id } => write!(
                f,
                "message {id:#06x} before the reset handshake completed (only RESET is served)"
            ),
            Refusal::RateLimited => write!(f, "message rate limit exceeded"),
            Refusal::NoMac => write!(f, "reset: no MAC assigned to this VF"),
            Refusal::MacLocked { requested, assigned } => write!(
                f,
                "MAC change to {requested} refused: the administrator assigned {assigned} and the VF \
                 is not trusted (spoofing attempt?)"
            ),
            Refusal::MacInUse { mac } => write!(f, "MAC {mac} belongs to another function"),
            Refusal::MacFilterNotAllowed => {
                write!(f, "secondary unicast filters are refused to an untrusted VF")
            }
            Refusal::VlanLimit { limit } => write!(f, "VLAN limit {limit} reached"),
            Refusal::MulticastLimit { count, limit } => {
                write!(f, "{count} multicast hashes asked, limit {limit}")
            }
            Refusal::FrameOutOfBounds { asked, max } => {
                write!(f, "max frame {asked} outside {MIN_FRAME}..={max}")
            }
            Refusal::UnicastPromiscUnsupported => write!(
                f,
                "unicast promiscuous refused: it would receive other functions' traffic"
            ),
            Refusal::PromiscNotTrusted => {
                write!(f, "multicast promiscuous refused to an untrusted VF")
            }
        }
    }
}

/// A hardware change for one VF that the PF host applies after a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HwAction {
    /// Program the VF's receive-address entry (its pool bit) with `mac`.
    SetMac(MacAddr),
    /// Enable the VF's receive and transmit (VFRE / VFTE bits) and its pool's VMOLR.
    EnablePool,
    /// Disable the VF's receive and transmit and clear its filters (VF reset / FLR).
    DisablePool,
    /// Recompute the shared multicast table from every VF's hashes; this VF's ROMPE on or off.
    UpdateMulticast,
    /// The VF's largest frame (VMOLR.RLPML / LPE).
    SetMaxFrame(u32),
    /// Multicast promiscuous for this VF's pool.
    SetMulticastPromisc(bool),
    /// The VLAN set changed (accounted; see docs/sriov.md for the filtering model).
    UpdateVlans,
}

/// Where a VF is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfPhase {
    /// Created or reset: only RESET is served.
    Resetting,
    /// Handshake done (CTS): requests are served within the policy.
    Ready,
}

/// Counters of one VF's mailbox traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VfCounters {
    /// Messages received.
    pub messages: u64,
    /// Requests done (ACK).
    pub acked: u64,
    /// Requests refused (NACK).
    pub nacked: u64,
    /// Malformed messages (counted in `nacked` too).
    pub malformed: u64,
    /// Messages over the rate limit (counted in `nacked` too).
    pub rate_limited: u64,
    /// Completed reset handshakes.
    pub resets: u64,
    /// Function-level resets seen (VFLRE).
    pub flrs: u64,
}

/// A token bucket in milli-tokens, driven by the caller's clock (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TokenBucket {
    milli: u64,
    last_ms: u64,
}

impl TokenBucket {
    fn full(burst: u32, now_ms: u64) -> Self {
        TokenBucket {
            milli: u64::from(burst) * 1000,
            last_ms: now_ms,
        }
    }

    fn take(&mut self, burst: u32, per_sec: u32, now_ms: u64) -> bool {
        let cap = u64::from(burst) * 1000;
        let dt = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        // per_sec tokens per 1000 ms = per_sec milli-tokens per ms.
        self.milli = self
            .milli
            .saturating_add(dt.saturating_mul(u64::from(per_sec)))
            .min(cap);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// Everything the PF knows about one VF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfState {
    /// The administrator's policy.
    pub policy: VfPolicy,
    /// Life-cycle phase.
    pub phase: VfPhase,
    /// The VF's current MAC (the admin MAC, or one a permitted VF set).
    pub mac: Option<MacAddr>,
    /// Multicast hashes (`mc_hashes[..mc_count]`).
    pub mc_hashes: [u16; MAX_MC_HASHES],
    /// Valid multicast hashes.
    pub mc_count: u8,
    /// VLAN filters (sorted, unique, at most `policy.max_vlans`).
    pub vlans: Vec<u16>,
    /// Largest frame the VF receives.
    pub max_frame: u32,
    /// Multicast promiscuous on.
    pub mc_promisc: bool,
    /// Counters.
    pub counters: VfCounters,
    bucket: TokenBucket,
}

impl VfState {
    fn new(policy: VfPolicy, now_ms: u64) -> Self {
        VfState {
            mac: policy.mac,
            bucket: TokenBucket::full(policy.msg_burst, now_ms),
            policy,
            phase: VfPhase::Resetting,
            mc_hashes: [0; MAX_MC_HASHES],
            mc_count: 0,
            vlans: Vec::new(),
            max_frame: 1518,
            mc_promisc: false,
            counters: VfCounters::default(),
        }
    }

    /// Forgets what the VF set (filters, modes), keeps policy, MAC and counters.
    fn clear_settings(&mut self) {
        self.mc_hashes = [0; MAX_MC_HASHES];
        self.mc_count = 0;
        self.vlans.clear();
        self.max_frame = 1518;
        self.mc_promisc = false;
    }

    /// The valid multicast hashes.
    pub fn multicast(&self) -> &[u16] {
        &self.mc_hashes[..usize::from(self.mc_count).min(MAX_MC_HASHES)]
    }
}

/// The part of a VF's state saved across a PF restart (see [`crate::sriov::state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedVf {
    /// Policy.
    pub policy: VfPolicy,
    /// The handshake was done.
    pub ready: bool,
    /// Current MAC.
    pub mac: Option<MacAddr>,
    /// Multicast hashes.
    pub mc_hashes: [u16; MAX_MC_HASHES],
    /// Valid hashes.
    pub mc_count: u8,
    /// VLANs, sorted.
    pub vlans: Vec<u16>,
    /// Max frame.
    pub max_frame: u32,
    /// Multicast promiscuous.
    pub mc_promisc: bool,
}

/// The PF's decision on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Message id (0 when the index was refused).
    pub id: u16,
    /// Reply to write to the VF's mailbox.
    pub reply: Reply,
    /// Hardware changes, for this VF only, in order.
    pub actions: Vec<HwAction>,
    /// Why the request was refused, if it was.
    pub refusal: Option<Refusal>,
}

/// The state of every VF of one PF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfTable {
    vfs: Vec<VfState>,
    /// The PF's own MAC (no VF may take it).
    pf_mac: MacAddr,
}

impl VfTable {
    /// One state per policy (VF i gets `policies[i]`); every policy is validated and MACs must
    /// be distinct.
    pub fn new(policies: Vec<VfPolicy>, pf_mac: MacAddr, now_ms: u64) -> Result<Self, PolicyError> {
        if policies.len() > MAX_VFS {
            return Err(PolicyError::TooManyVfs {
                count: policies.len(),
            });
        }
        for (i, p) in policies.iter().enumerate() {
            p.validate(i)?;
            for (j, q) in policies.iter().enumerate().skip(i + 1) {
                if let (Some(a), Some(b)) = (p.mac, q.mac) {
                    if a == b {
                        return Err(PolicyError::DuplicateMac { a: i, b: j, mac: a });
                    }
                }
            }
        }
        Ok(VfTable {
            vfs: policies.into_iter().map(|p| VfState::new(p, now_ms)).collect(),
            pf_mac,
        })
    }

    /// Number of VFs.
    pub fn len(&self) -> usize {
        self.vfs.len()
    }

    /// True with no VF.
    pub fn is_empty(&self) -> bool {
        self.vfs.is_empty()
    }

    /// VF `vf`'s state.
    pub fn vf(&self, vf: usize) -> Option<&VfState> {
        self.vfs.get(vf)
    }

    /// Every VF's state.
    pub fn iter(&self) -> impl Iterator<Item = &VfState> {
        self.vfs.iter()
    }

    /// The PF's MAC.
    pub fn pf_mac(&self) -> MacAddr {
        self.pf_mac
    }

    /// The union of every ready VF's multicast hashes (what the shared MTA must hold).
    pub fn multicast_union(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .vfs
            .iter()
            .filter(|s| s.phase == VfPhase::Ready)
            .flat_map(|s| s.multicast().iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Restores what a previous PF process saved for VF `vf` (its MAC and settings; the policy
    /// comes from the saved state too). Counters start again. False if `vf` is out of range.
    pub fn restore(&mut self, vf: usize, saved: &SavedVf) -> bool {
        let Some(s) = self.vfs.get_mut(vf) else {
            return false;
        };
        s.policy = saved.policy.clone();
        s.bucket = TokenBucket::full(saved.policy.msg_burst, s.bucket.last_ms);
        s.phase = if saved.ready {
            VfPhase::Ready
        } else {
            VfPhase::Resetting
        };
        s.mac = saved.mac;
        s.mc_hashes = saved.mc_hashes;
        s.mc_count = saved.mc_count;
        s.vlans = saved.vlans.clone();
        s.max_frame = saved.max_frame;
        s.mc_promisc = saved.mc_promisc;
        true
    }

    /// What must survive a PF restart for VF `vf`.
    pub fn snapshot(&self, vf: usize) -> Option<SavedVf> {
        let s = self.vfs.get(vf)?;
        Some(SavedVf {
            policy: s.policy.clone(),
            ready: s.phase == VfPhase::Ready,
            mac: s.mac,
            mc_hashes: s.mc_hashes,
            mc_count: s.mc_count,
            vlans: s.vlans.clone(),
            max_frame: s.max_frame,
            mc_promisc: s.mc_promisc,
        })
    }

    /// A function-level reset of VF `vf` (VFLRE): back to Resetting, settings cleared. Returns
    /// the hardware changes.
    pub fn flr(&mut self, vf: usize) -> Vec<HwAction> {
        let Some(s) = self.vfs.get_mut(vf) else {
            return Vec::new();
        };
        s.counters.flrs += 1;
        s.phase = VfPhase::Resetting;
        s.clear_settings();
        vec![HwAction::DisablePool, HwAction::UpdateMulticast]
    }

    /// Decides on message `words` from VF `vf` at time `now_ms`.
    pub fn handle(&mut self, vf: usize, words: &[u32; MBX_WORDS], now_ms: u64) -> Outcome {
        let msg_id = (words[0] & mailbox::MSG_ID_MASK) as u16;
        let others_macs: Vec<MacAddr> = self
            .vfs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != vf)
            .filter_map(|(_, s)| s.mac)
            .chain(std::iter::once(self.pf_mac))
            .collect();
        let Some(s) = self.vfs.get_mut(vf) else {
            return Outcome {
                id: msg_id,
                reply: Reply::status(msg_id, false, false),
                actions: Vec::new(),
                refusal: Some(Refusal::NotReady { id: msg_id }),
            };
        };
        s.counters.messages += 1;
        let cts = s.phase == VfPhase::Ready;
        let refuse = |s: &mut VfState, r: Refusal, cts: bool| {
            s.counters.nacked += 1;
            match r {
                Refusal::Malformed(_) => s.counters.malformed += 1,
                Refusal::RateLimited => s.counters.rate_limited += 1,
                _ => {}
            }
            let reply = if msg_id == mailbox::id::RESET && !matches!(r, Refusal::Malformed(_)) {
                Reply::reset(None)
            } else {
                Reply::status(msg_id, false, cts)
            };
            Outcome {
                id: msg_id,
                reply,
                actions: Vec::new(),
                refusal: Some(r),
            }
        };
        if !s.bucket.take(s.policy.msg_burst, s.policy.msg_per_sec, now_ms) {
            return refuse(s, Refusal::RateLimited, cts);
        }
        let req = match VfRequest::parse(words) {
            Ok(r) => r,
            Err(e) => return refuse(s, Refusal::Malformed(e), cts),
        };
        if req != VfRequest::Reset && s.phase != VfPhase::Ready {
            return refuse(s, Refusal::NotReady { id: msg_id }, false);
        }
        let ack = |s: &mut VfState, actions: Vec<HwAction>| {
            s.counters.acked += 1;
            Outcome {
                id: msg_id,
                reply: Reply::status(msg_id, true, true),
                actions,
                refusal: None,
            }
        };
        match req {
            VfRequest::Reset => {
                let Some(mac) = s.mac else {
                    return refuse(s, Refusal::NoMac, false);
                };
                s.clear_settings();
                s.phase = VfPhase::Ready;
                s.counters.resets += 1;
                s.counters.acked += 1;
                Outcome {
                    id: msg_id,
                    reply: Reply::reset(Some(mac)),
                    actions: vec![
                        HwAction::DisablePool,
                        HwAction::SetMac(mac),
                        HwAction::SetMaxFrame(s.max_frame),
                        HwAction::UpdateMulticast,
                        HwAction::EnablePool,
                    ],
                    refusal: None,
                }
            }
            VfRequest::SetMac(mac) => {
                if s.mac == Some(mac) {
                    return ack(s, Vec::new());
                }
                if let (Some(assigned), false) = (s.policy.mac, s.policy.trusted) {
                    return refuse(
                        s,
                        Refusal::MacLocked {
                            requested: mac,
                            assigned,
                        },
                        true,
                    );
                }
                if others_macs.contains(&mac) {
                    return refuse(s, Refusal::MacInUse { mac }, true);
                }
                s.mac = Some(mac);
                ack(s, vec![HwAction::SetMac(mac)])
            }
            VfRequest::ClearMacFilters => ack(s, Vec::new()),
            VfRequest::AddMacFilter(_) => refuse(s, Refusal::MacFilterNotAllowed, true),
            VfRequest::SetMulticast { count, hashes } => {
                if count > s.policy.max_multicast {
                    return refuse(
                        s,
                        Refusal::MulticastLimit {
                            count,
                            limit: s.policy.max_multicast,
                        },
                        true,
                    );
                }
                s.mc_hashes = hashes;
                s.mc_count = count;
                ack(s, vec![HwAction::UpdateMulticast])
            }
            VfRequest::SetVlan { vid, add } => {
                if vid == 0 {
                    // VLAN 0 is priority tagging: always allowed, never counted.
                    return ack(s, Vec::new());
                }
                let pos = s.vlans.binary_search(&vid);
                match (add, pos) {
                    (true, Ok(_)) | (false, Err(_)) => ack(s, Vec::new()),
                    (true, Err(i)) => {
                        if s.vlans.len() >= usize::from(s.policy.max_vlans) {
                            let limit = s.policy.max_vlans;
                            return refuse(s, Refusal::VlanLimit { limit }, true);
                        }
                        s.vlans.insert(i, vid);
                        ack(s, vec![HwAction::UpdateVlans])
                    }
                    (false, Ok(i)) => {
                        s.vlans.remove(i);
                        ack(s, vec![HwAction::UpdateVlans])
                    }
                }
            }
            VfRequest::SetLpe { max_frame } => {
                if !(MIN_FRAME..=s.policy.max_frame).contains(&max_frame) {
                    let max = s.policy.max_frame;
                    return refuse(
                        s,
                        Refusal::FrameOutOfBounds {
                            asked: max_frame,
                            max,
                        },
                        true,
                    );
                }
                s.max_frame = max_frame;
                ack(s, vec![HwAction::SetMaxFrame(max_frame)])
            }
            VfRequest::SetPromisc { unicast, multicast } => {
                if unicast {
                    return refuse(s, Refusal::UnicastPromiscUnsupported, true);
                }
                if multicast && !s.policy.trusted {
                    return refuse(s, Refusal::PromiscNotTrusted, true);
                }
                s.mc_promisc = multicast;
                ack(s, vec![HwAction::SetMulticastPromisc(multicast)])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sriov::mailbox::{MSG_ACK, MSG_CTS, MSG_NACK, id};

    const PF: MacAddr = MacAddr([0x52, 0x54, 0, 0, 1, 0]);

    fn mac(n: u8) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, n])
    }

    fn table(n: usize) -> VfTable {
        let policies = (0..n)
            .map(|i| VfPolicy {
                mac: Some(mac(i as u8 + 1)),
                ..VfPolicy::default()
            })
            .collect();
        VfTable::new(policies, PF, 0).unwrap()
    }

    fn send(t: &mut VfTable, vf: usize, r: VfRequest) -> Outcome {
        t.handle(vf, &r.encode(), 0)
    }

    fn ready(t: &mut VfTable, vf: usize) {
        let o = send(t, vf, VfRequest::Reset);
        assert!(o.refusal.is_none(), "{o:?}");
    }

    #[test]
    fn reset_handshake_gives_the_admin_mac_and_cts_afterwards() {
        let mut t = table(2);
        let o = send(&mut t, 1, VfRequest::Reset);
        assert_eq!(o.reply.len, 3);
        assert_eq!(o.reply.words[0], MSG_ACK | 1);
        assert_eq!(
            mailbox::mac_from_words(o.reply.words[1], o.reply.words[2]),
            mac(2)
        );
        assert!(o.actions.contains(&HwAction::SetMac(mac(2))));
        assert!(o.actions.contains(&HwAction::EnablePool));
        assert_eq!(o.actions.first(), Some(&HwAction::DisablePool));
        let o = send(&mut t, 1, VfRequest::SetLpe { max_frame: 1522 });
        assert_eq!(o.reply.words[0], MSG_ACK | MSG_CTS | u32::from(id::SET_LPE));
        assert_eq!(o.actions, vec![HwAction::SetMaxFrame(1522)]);
        // VF 0 untouched.
        assert_eq!(t.vf(0).unwrap().phase, VfPhase::Resetting);
        assert_eq!(t.vf(0).unwrap().counters, VfCounters::default());
    }

    #[test]
    fn nothing_but_reset_before_the_handshake() {
        let mut t = table(1);
        for r in [
            VfRequest::SetMac(mac(9)),
            VfRequest::SetVlan { vid: 5, add: true },
            VfRequest::SetLpe { max_frame: 1500 },
            VfRequest::SetPromisc {
                unicast: false,
                multicast: false,
            },
            VfRequest::SetMulticast {
                count: 0,
                hashes: [0; 30],
            },
        ] {
            let o = send(&mut t, 0, r);
            assert!(matches!(o.refusal, Some(Refusal::NotReady { .. })), "{o:?}");
            assert_eq!(o.reply.words[0] & (MSG_NACK | MSG_CTS), MSG_NACK);
            assert!(o.actions.is_empty());
        }
        // FLR puts a ready VF back to Resetting.
        ready(&mut t, 0);
        let a = t.flr(0);
        assert!(a.contains(&HwAction::DisablePool));
        let o = send(&mut t, 0, VfRequest::SetLpe { max_frame: 1500 });
        assert!(matches!(o.refusal, Some(Refusal::NotReady { .. })));
        assert_eq!(t.vf(0).unwrap().counters.flrs, 1);
    }

    #[test]
    fn mac_policy() {
        let mut t = table(2);
        ready(&mut t, 0);
        // Untrusted with an admin MAC: refused (spoofing), the same MAC is fine.
        let o = send(&mut t, 0, VfRequest::SetMac(mac(0x42)));
        assert!(matches!(o.refusal, Some(Refusal::MacLocked { .. })), "{o:?}");
        assert_eq!(t.vf(0).unwrap().mac, Some(mac(1)));
        assert!(send(&mut t, 0, VfRequest::SetMac(mac(1))).refusal.is_none());
        // Trusted: may change, but never to another function's MAC.
        let mut p = VfPolicy {
            mac: Some(mac(1)),
            trusted: true,
            ..VfPolicy::default()
        };
        let mut t = VfTable::new(
            vec![
                p.clone(),
                VfPolicy {
                    mac: Some(mac(2)),
                    ..VfPolicy::default()
                },
            ],
            PF,
            0,
        )
        .unwrap();
        ready(&mut t, 0);
        assert!(matches!(
            send(&mut t, 0, VfRequest::SetMac(mac(2))).refusal,
            Some(Refusal::MacInUse { .. })
        ));
        assert!(matches!(
            send(&mut t, 0, VfRequest::SetMac(PF)).refusal,
            Some(Refusal::MacInUse { .. })
        ));
        let o = send(&mut t, 0, VfRequest::SetMac(mac(7)));
        assert_eq!(o.actions, vec![HwAction::SetMac(mac(7))]);
        // No admin MAC, untrusted: RESET is NACKed, then the VF may pick one.
        p.mac = None;
        p.trusted = false;
        let mut t = VfTable::new(vec![p], PF, 0).unwrap();
        let o = send(&mut t, 0, VfRequest::Reset);
        assert_eq!(o.refusal, Some(Refusal::NoMac));
        assert_eq!(o.reply.as_slice(), &[MSG_NACK | 1]);
        // Still not ready: a MAC cannot be set before a successful reset.
        assert!(matches!(
            send(&mut t, 0, VfRequest::SetMac(mac(3))).refusal,
            Some(Refusal::NotReady { .. })
        ));
        assert!(matches!(
            send(&mut t, 0, VfRequest::AddMacFilter(mac(3))).refusal,
            Some(Refusal::NotReady { .. })
        ));
    }

    #[test]
    fn vlan_limit_and_idempotence() {
        let mut t = table(2);
        ready(&mut t, 0);
        ready(&mut t, 1);
        let mut refused = 0;
        for vid in 1..=300u16 {
            // One message a second: under the rate limit.
            let o = t.handle(
                0,
                &VfRequest::SetVlan { vid, add: true }.encode(),
                u64::from(vid) * 1000,
            );
            if o.refusal.is_some() {
                refused += 1;
                assert_eq!(o.refusal, Some(Refusal::VlanLimit { limit: 8 }));
            }
        }
        assert_eq!(refused, 292);
        assert_eq!(t.vf(0).unwrap().vlans.len(), 8);
        assert!(t.vf(1).unwrap().vlans.is_empty(), "VF 1 untouched");
        assert!(
            send(&mut t, 0, VfRequest::SetVlan { vid: 0, add: true })
                .refusal
                .is_none()
        );
        assert!(
            send(&mut t, 0, VfRequest::SetVlan { vid: 3, add: true })
                .refusal
                .is_none()
        );
        assert!(
            send(&mut t, 0, VfRequest::SetVlan { vid: 3, add: false })
                .refusal
                .is_none()
        );
        assert!(
            send(&mut t, 0, VfRequest::SetVlan { vid: 300, add: true })
                .refusal
                .is_none()
        );
        assert!(
            send(&mut t, 0, VfRequest::SetVlan { vid: 999, add: false })
                .refusal
                .is_none()
        );
    }

    #[test]
    fn multicast_frame_and_promisc_bounds() {
        let mut t = table(2);
        ready(&mut t, 0);
        ready(&mut t, 1);
        let mut hashes = [0u16; 30];
        hashes[0] = 0x10;
        hashes[1] = 0x20;
        let o = send(&mut t, 0, VfRequest::SetMulticast { count: 2, hashes });
        assert_eq!(o.actions, vec![HwAction::UpdateMulticast]);
        let mut h1 = [0u16; 30];
        h1[0] = 0x20;
        h1[1] = 0x30;
        send(&mut t, 1, VfRequest::SetMulticast { count: 2, hashes: h1 });
        assert_eq!(t.multicast_union(), vec![0x10, 0x20, 0x30]);
        assert_eq!(t.vf(1).unwrap().multicast(), &[0x20, 0x30]);
        // Policy limit below 30.
        let mut t2 = VfTable::new(
            vec![VfPolicy {
                mac: Some(mac(1)),
                max_multicast: 4,
                ..VfPolicy::default()
            }],
            PF,
            0,
        )
        .unwrap();
        ready(&mut t2, 0);
        assert_eq!(
            send(&mut t2, 0, VfRequest::SetMulticast { count: 5, hashes }).refusal,
            Some(Refusal::MulticastLimit { count: 5, limit: 4 })
        );
        for (f, ok) in [
            (63, false),
            (64, true),
            (1518, true),
            (1522, true),
            (1523, false),
            (u32::MAX, false),
        ] {
            let o = send(&mut t, 0, VfRequest::SetLpe { max_frame: f });
            assert_eq!(o.refusal.is_none(), ok, "{f}");
        }
        assert_eq!(t.vf(0).unwrap().max_frame, 1522);
        assert_eq!(
            send(
                &mut t,
                0,
                VfRequest::SetPromisc {
                    unicast: true,
                    multicast: false
                }
            )
            .refusal,
            Some(Refusal::UnicastPromiscUnsupported)
        );
        assert_eq!(
            send(
                &mut t,
                0,
                VfRequest::SetPromisc {
                    unicast: false,
                    multicast: true
                }
            )
            .refusal,
            Some(Refusal::PromiscNotTrusted)
        );
        assert!(
            send(
                &mut t,
                0,
                VfRequest::SetPromisc {
                    unicast: false,
                    multicast: false
                }
            )
            .refusal
            .is_none()
        );
    }

    #[test]
    fn rate_limit_per_vf() {
        let mut t = table(2);
        ready(&mut t, 0);
        ready(&mut t, 1);
        let lpe = VfRequest::SetLpe { max_frame: 1500 }.encode();
        let mut limited = 0;
        for _ in 0..1000 {
            if t.handle(0, &lpe, 0).refusal == Some(Refusal::RateLimited) {
                limited += 1;
            }
        }
        // Burst of 64, one used by the reset.
        assert_eq!(limited, 1000 - 63);
        assert_eq!(t.vf(0).unwrap().counters.rate_limited, 937);
        // VF 1 is not affected by VF 0's flood.
        assert!(t.handle(1, &lpe, 0).refusal.is_none());
        // Refill: 32 per second.
        assert!(t.handle(0, &lpe, 1000).refusal.is_none());
        let mut ok = 1;
        while t.handle(0, &lpe, 1000).refusal.is_none() {
            ok += 1;
        }
        assert_eq!(ok, 32);
        // A clock going backwards refills nothing and does not panic.
        assert_eq!(t.handle(0, &lpe, 0).refusal, Some(Refusal::RateLimited));
    }

    #[test]
    fn out_of_range_vf_and_policy_validation() {
        let mut t = table(2);
        let o = t.handle(7, &VfRequest::Reset.encode(), 0);
        assert!(o.refusal.is_some());
        let o = t.handle(usize::MAX, &VfRequest::Reset.encode(), 0);
        assert!(o.refusal.is_some());
        assert!(t.flr(9).is_empty());
        let bad = VfPolicy {
            max_frame: 20_000,
            ..VfPolicy::default()
        };
        assert!(matches!(
            bad.validate(0),
            Err(PolicyError::OutOfRange {
                field: "max_frame",
                ..
            })
        ));
        let bad = VfPolicy {
            mac: Some(MacAddr([1, 0, 0, 0, 0, 1])),
            ..VfPolicy::default()
        };
        assert!(matches!(bad.validate(0), Err(PolicyError::BadMac { .. })));
        let dup = VfPolicy {
            mac: Some(mac(1)),
            ..VfPolicy::default()
        };
        assert!(matches!(
            VfTable::new(vec![dup.clone(), dup], PF, 0),
            Err(PolicyError::DuplicateMac { .. })
        ));
        assert!(matches!(
            VfTable::new(vec![VfPolicy::default(); 9], PF, 0),
            Err(PolicyError::TooManyVfs { count: 9 })
        ));
    }

    #[test]
    fn random_traffic_never_panics_and_stays_per_vf() {
        let mut t = table(3);
        ready(&mut t, 2);
        let before = t.vf(2).unwrap().clone();
        let mut s = 0x1234_5678_9ABC_DEF1u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for i in 0..100_000u64 {
            let mut w = [0u32; MBX_WORDS];
            for x in w.iter_mut() {
                *x = next() as u32;
            }
            if next() % 2 == 0 {
                w[0] = (w[0] & 0x00FF_0000) | (next() % 8) as u32;
            }
            let vf = (next() % 2) as usize; // VFs 0 and 1 only
            let o = t.handle(vf, &w, i);
            assert!(o.reply.len >= 1 && o.reply.len <= MBX_WORDS);
            assert_eq!(o.refusal.is_some(), o.reply.words[0] & MSG_NACK != 0, "{o:?}");
            let st = t.vf(vf).unwrap();
            assert!(st.vlans.len() <= usize::from(st.policy.max_vlans));
            assert!(st.max_frame <= st.policy.max_frame);
            assert_eq!(st.mac, Some(mac(vf as u8 + 1)), "untrusted VF kept its MAC");
        }
        assert_eq!(t.vf(2).unwrap(), &before, "VF 2 untouched by the others");
    }
}
