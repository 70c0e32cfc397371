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

mod vf_policy;

pub use vf_policy::{
    LinkState, MAX_FRAME_HW, MAX_PORT_VLAN, MAX_VFS, MAX_VLANS_CAP, MIN_FRAME, PolicyError, VfPolicy,
};

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
    /// The 32 VLAN filter entries of the port are all in use.
    VlanTableFull,
    /// The administrator set a port VLAN: the VF's own VLAN filters are refused.
    PortVlanSet {
        /// The port VLAN.
        vlan: u16,
    },
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
            Refusal::VlanTableFull => write!(
                f,
                "VLAN filter table full ({} entries shared by all functions)",
                super::regs::VLVF_ENTRIES
            ),
            Refusal::PortVlanSet { vlan } => write!(
                f,
                "VLAN filters refused: the administrator set port VLAN {vlan} for this VF"
            ),
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
    /// The VLAN set or the port VLAN changed: the PF recomputes the VLAN filters (VLVF, VFTA,
    /// RCTL.VFE), this VF's VMVIR and its VMOLR (untagged frames, tag stripping).
    UpdateVlans,
    /// The spoof-check setting changed (DTXSWC's MAC anti-spoof bit of this pool).
    UpdateSpoofCheck,
    /// The administrator's link state changed: the pool goes on (when the VF is ready) or off.
    UpdateLink,
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

    /// Decides on message `words` from VF `vf` at time `now_ms`. While the administrator holds
    /// the VF's link down, replies carry no CTS and its pool stays off.
    pub fn handle(&mut self, vf: usize, words: &[u32; MBX_WORDS], now_ms: u64) -> Outcome {
        let mut out = self.decide(vf, words, now_ms);
        if self
            .vfs
            .get(vf)
            .is_some_and(|s| s.policy.link == LinkState::Disable)
        {
            out.reply.words[0] &= !mailbox::MSG_CTS;
            out.actions.retain(|a| *a != HwAction::EnablePool);
        }
        out
    }

    /// Mutable access for the administrator's changes (`super::admin`).
    pub(super) fn vf_mut(&mut self, vf: usize) -> Option<&mut VfState> {
        self.vfs.get_mut(vf)
    }

    fn decide(&mut self, vf: usize, words: &[u32; MBX_WORDS], now_ms: u64) -> Outcome {
        let msg_id = (words[0] & mailbox::MSG_ID_MASK) as u16;
        let vlans_in_use = super::vlan::vlan_entries(self);
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
                if let Some(vlan) = s.policy.port_vlan {
                    return refuse(s, Refusal::PortVlanSet { vlan }, true);
                }
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
                        if !vlans_in_use.iter().any(|(v, _)| *v == vid)
                            && vlans_in_use.len() >= super::regs::VLVF_ENTRIES
                        {
                            return refuse(s, Refusal::VlanTableFull, true);
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
mod tests;
