//! The PF manager's saved state: what a restarted PF process needs to serve VFs that are still
//! open (their MACs, policies and settings), in a versioned binary file.
//!
//! Layout (little-endian, exact lengths):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `OXSRIOV1` |
//! | 8 | 2 | format version (2; version 1 files still load) |
//! | 10 | 2 | header length (32) |
//! | 12 | 4 | body length = VF count x record length |
//! | 16 | 2 | PF PCI domain |
//! | 18 | 1 | PF bus |
//! | 19 | 1 | PF device << 3 \| function |
//! | 20 | 2 | PF vendor id |
//! | 22 | 2 | PF device id |
//! | 24 | 1 | VF count (0..=8) |
//! | 25 | 1 | reserved (0) |
//! | 26 | 6 | PF MAC |
//! | 32 | body | one record per VF, in VF order ([`VF_RECORD_LEN`] bytes; [`VF_RECORD_LEN_V1`] in version 1) |
//! | end | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! VF record: index (1), flags (1: trusted, spoof check, kernel driver, admin MAC present, MAC
//! present, ready, multicast promiscuous), admin MAC (6), MAC (6), max VLANs (1), max multicast
//! (1), max frame bound (4), message burst (4), messages per second (4), current max frame (4),
//! multicast count (1), VLAN count (1), 30 hashes (60), 32 VLANs (64); from version 2: port
//! VLAN (2; 0 = none, else 1..=4094), link state (1: 0 auto, 1 enable, 2 disable), reserved (1,
//! zero). A version 1 record loads with no port VLAN and link auto.
//!
//! [`decode`] refuses anything inconsistent, each with its own [`StateError`]: a short or long
//! file, wrong magic / version / lengths, a checksum mismatch, records out of order, unknown flag
//! bits, invalid MACs, values outside the policy bounds, unsorted or out-of-range VLANs, unused
//! entries that are not zero. [`SavedState::check_identity`] then compares it with the device it
//! is loaded for. Nothing is used before both pass.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::Path;

use oxpmd_vfio::PciAddress;

use super::mailbox::{MAX_MC_HASH, MAX_MC_HASHES};
use super::policy::{LinkState, MAX_VFS, MAX_VLANS_CAP, MIN_FRAME, SavedVf, VfPolicy};
use crate::mac::MacAddr;

/// File magic.
pub const MAGIC: [u8; 8] = *b"OXSRIOV1";
/// Format version written.
pub const VERSION: u16 = 2;
/// The oldest version read.
pub const VERSION_MIN: u16 = 1;
/// Header length.
pub const HEADER_LEN: usize = 32;
/// Length of one VF record.
pub const VF_RECORD_LEN: usize = VF_RECORD_LEN_V1 + 4;
/// Length of one VF record in version 1 files.
pub const VF_RECORD_LEN_V1: usize = 34 + 2 * MAX_MC_HASHES + 2 * MAX_VLANS_CAP;

/// The record length of format `version` (a supported one).
fn record_len(version: u16) -> usize {
    if version >= 2 {
        VF_RECORD_LEN
    } else {
        VF_RECORD_LEN_V1
    }
}
/// Checksum length.
pub const CRC_LEN: usize = 4;
/// Largest valid file.
pub const MAX_FILE_LEN: usize = HEADER_LEN + MAX_VFS * VF_RECORD_LEN + CRC_LEN;

const F_TRUSTED: u8 = 1 << 0;
const F_SPOOF: u8 = 1 << 1;
const F_KERNEL: u8 = 1 << 2;
const F_ADMIN_MAC: u8 = 1 << 3;
const F_MAC: u8 = 1 << 4;
const F_READY: u8 = 1 << 5;
const F_MC_PROMISC: u8 = 1 << 6;
const F_ALL: u8 = 0x7F;

/// Which PF a state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PfIdentity {
    /// PCI address.
    pub addr: PciAddress,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
}

/// The decoded state of one PF and its VFs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    /// The PF.
    pub pf: PfIdentity,
    /// The PF's MAC when saved.
    pub pf_mac: MacAddr,
    /// One entry per VF, VF 0 first.
    pub vfs: Vec<SavedVf>,
}

/// Why a state file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Shorter or longer than its header says.
    #[error("state file is {actual} bytes, its header requires {expected}")]
    Length {
        /// Expected.
        expected: usize,
        /// Actual.
        actual: usize,
    },
    /// Too short to hold a header, or larger than any valid state.
    #[error("state file is {actual} bytes; a valid one is {HEADER_LEN}..={MAX_FILE_LEN}")]
    Size {
        /// Actual.
        actual: usize,
    },
    /// Not our file.
    #[error("not an oxpmd SR-IOV state file (bad magic)")]
    Magic,
    /// A version this build does not read.
    #[error("state file version {0} is not supported (this build reads versions {VERSION_MIN}..={VERSION})")]
    Version(u16),
    /// A header field with a wrong value.
    #[error("state header: {field} = {value}, expected {expected}")]
    Header {
        /// Field.
        field: &'static str,
        /// Value.
        value: u64,
        /// What it must be.
        expected: &'static str,
    },
    /// Checksum mismatch: truncated, corrupted or edited.
    #[error(
        "state checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is corrupted"
    )]
    Checksum {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// A VF record is inconsistent.
    #[error("state record of VF {vf}: {what}")]
    Record {
        /// VF.
        vf: usize,
        /// What is wrong.
        what: String,
    },
    /// The PF address in the file is not a valid PCI address.
    #[error("state header: invalid PF address")]
    Address,
    /// Saved for another device.
    #[error("state was saved for {saved}, not for {actual}: refusing to apply it")]
    Identity {
        /// Saved identity.
        saved: String,
        /// This device.
        actual: String,
    },
    /// VF count differs from the device's.
    #[error("state holds {saved} VFs but the PF has {actual} enabled")]
    VfCount {
        /// Saved.
        saved: usize,
        /// Enabled now.
        actual: usize,
    },
    /// File I/O.
    #[error("{op} {path}: {msg}")]
    Io {
        /// Operation.
        op: &'static str,
        /// Path.
        path: String,
        /// Error.
        msg: String,
    },
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Encodes a state; fails only if it could not be decoded again (more than 8 VFs, a VF whose
/// lists exceed the format).
pub fn encode(state: &SavedState) -> Result<Vec<u8>, StateError> {
    encode_version(state, VERSION)
}

/// Encodes in format `version` (1 or 2); version 1 has no place for a port VLAN or a link state
/// other than auto, and refuses a state that has them.
pub fn encode_version(state: &SavedState, version: u16) -> Result<Vec<u8>, StateError> {
    if !(VERSION_MIN..=VERSION).contains(&version) {
        return Err(StateError::Version(version));
    }
    let rec_len = record_len(version);
    if state.vfs.len() > MAX_VFS {
        return Err(StateError::Header {
            field: "VF count",
            value: state.vfs.len() as u64,
            expected: "0..=8",
        });
    }
    let body = state.vfs.len() * rec_len;
    let mut b = Vec::with_capacity(HEADER_LEN + body + CRC_LEN);
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    b.extend_from_slice(&(body as u32).to_le_bytes());
    let a = state.pf.addr;
    b.extend_from_slice(&a.domain.to_le_bytes());
    b.push(a.bus);
    b.push((a.device << 3) | (a.function & 7));
    b.extend_from_slice(&state.pf.vendor.to_le_bytes());
    b.extend_from_slice(&state.pf.device.to_le_bytes());
    b.push(state.vfs.len() as u8);
    b.push(0);
    b.extend_from_slice(&state.pf_mac.0);
    for (i, v) in state.vfs.iter().enumerate() {
        if usize::from(v.mc_count) > MAX_MC_HASHES || v.vlans.len() > MAX_VLANS_CAP {
            return Err(StateError::Record {
                vf: i,
                what: "lists exceed the format".into(),
            });
        }
        let start = b.len();
        b.push(i as u8);
        let p = &v.policy;
        let mut flags = 0u8;
        for (on, f) in [
            (p.trusted, F_TRUSTED),
            (p.spoof_check, F_SPOOF),
            (p.kernel_driver, F_KERNEL),
            (p.mac.is_some(), F_ADMIN_MAC),
            (v.mac.is_some(), F_MAC),
            (v.ready, F_READY),
            (v.mc_promisc, F_MC_PROMISC),
        ] {
            if on {
                flags |= f;
            }
        }
        b.push(flags);
        b.extend_from_slice(&p.mac.unwrap_or(MacAddr::ZERO).0);
        b.extend_from_slice(&v.mac.unwrap_or(MacAddr::ZERO).0);
        b.push(p.max_vlans);
        b.push(p.max_multicast);
        b.extend_from_slice(&p.max_frame.to_le_bytes());
        b.extend_from_slice(&p.msg_burst.to_le_bytes());
        b.extend_from_slice(&p.msg_per_sec.to_le_bytes());
        b.extend_from_slice(&v.max_frame.to_le_bytes());
        b.push(v.mc_count);
        b.push(v.vlans.len() as u8);
        for (j, h) in v.mc_hashes.iter().enumerate() {
            let h = if j < usize::from(v.mc_count) { *h } else { 0 };
            b.extend_from_slice(&h.to_le_bytes());
        }
        for j in 0..MAX_VLANS_CAP {
            b.extend_from_slice(&v.vlans.get(j).copied().unwrap_or(0).to_le_bytes());
        }
        if version >= 2 {
            b.extend_from_slice(&p.port_vlan.unwrap_or(0).to_le_bytes());
            b.push(link_code(p.link));
            b.push(0);
        } else if p.port_vlan.is_some() || p.link != LinkState::Auto {
            return Err(StateError::Record {
                vf: i,
                what: "a port VLAN or link state needs format version 2".into(),
            });
        }
        debug_assert_eq!(b.len() - start, rec_len);
    }
    let crc = crc32(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    Ok(b)
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn mac(&mut self) -> Option<MacAddr> {
        self.take(6).map(|s| {
            let mut m = [0u8; 6];
            m.copy_from_slice(s);
            MacAddr(m)
        })
    }
}

/// Decodes and validates a state file's bytes (see the module documentation for every check).
pub fn decode(data: &[u8]) -> Result<SavedState, StateError> {
    if data.len() < HEADER_LEN + CRC_LEN || data.len() > MAX_FILE_LEN {
        return Err(StateError::Size { actual: data.len() });
    }
    let short = || StateError::Size { actual: data.len() };
    let mut r = Reader { data, pos: 0 };
    if r.take(8).ok_or_else(short)? != MAGIC {
        return Err(StateError::Magic);
    }
    let version = r.u16().ok_or_else(short)?;
    if !(VERSION_MIN..=VERSION).contains(&version) {
        return Err(StateError::Version(version));
    }
    let rec_len = record_len(version);
    let header_len = r.u16().ok_or_else(short)?;
    if usize::from(header_len) != HEADER_LEN {
        return Err(StateError::Header {
            field: "header length",
            value: header_len.into(),
            expected: "32",
        });
    }
    let body_len = r.u32().ok_or_else(short)?;
    let expected = usize::try_from(body_len)
        .ok()
        .and_then(|b| b.checked_add(HEADER_LEN + CRC_LEN))
        .ok_or(StateError::Header {
            field: "body length",
            value: body_len.into(),
            expected: "VF count x record length",
        })?;
    if expected != data.len() {
        return Err(StateError::Length {
            expected,
            actual: data.len(),
        });
    }
    let (payload, crc_bytes) = data.split_at(data.len() - CRC_LEN);
    let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let computed = crc32(payload);
    if stored != computed {
        return Err(StateError::Checksum { stored, computed });
    }
    let domain = r.u16().ok_or_else(short)?;
    let bus = r.u8().ok_or_else(short)?;
    let devfn = r.u8().ok_or_else(short)?;
    let addr = PciAddress::new(domain, bus, devfn >> 3, devfn & 7).map_err(|_| StateError::Address)?;
    let vendor = r.u16().ok_or_else(short)?;
    let device = r.u16().ok_or_else(short)?;
    let count = usize::from(r.u8().ok_or_else(short)?);
    if count > MAX_VFS {
        return Err(StateError::Header {
            field: "VF count",
            value: count as u64,
            expected: "0..=8",
        });
    }
    if count.checked_mul(rec_len) != usize::try_from(body_len).ok() {
        return Err(StateError::Header {
            field: "body length",
            value: body_len.into(),
            expected: "VF count x record length",
        });
    }
    let reserved = r.u8().ok_or_else(short)?;
    if reserved != 0 {
        return Err(StateError::Header {
            field: "reserved",
            value: reserved.into(),
            expected: "0",
        });
    }
    let pf_mac = r.mac().ok_or_else(short)?;
    if !pf_mac.is_valid_unicast() {
        return Err(StateError::Header {
            field: "PF MAC (not unicast)",
            value: 0,
            expected: "a unicast MAC",
        });
    }
    let mut vfs = Vec::with_capacity(count);
    for vf in 0..count {
        let rec = r.take(rec_len).ok_or_else(short)?;
        let v = decode_record(vf, rec, version)?;
        // MACs unique across VFs and the PF.
        if let Some(m) = v.mac {
            if m == pf_mac || vfs.iter().any(|o: &SavedVf| o.mac == Some(m)) {
                return Err(StateError::Record {
                    vf,
                    what: format!("MAC {m} is used twice"),
                });
            }
        }
        vfs.push(v);
    }
    Ok(SavedState {
        pf: PfIdentity { addr, vendor, device },
        pf_mac,
        vfs,
    })
}

fn link_code(l: LinkState) -> u8 {
    match l {
        LinkState::Auto => 0,
        LinkState::Enable => 1,
        LinkState::Disable => 2,
    }
}

fn decode_record(vf: usize, rec: &[u8], version: u16) -> Result<SavedVf, StateError> {
    let bad = |what: String| StateError::Record { vf, what };
    let mut r = Reader { data: rec, pos: 0 };
    let short = || StateError::Record {
        vf,
        what: "truncated".into(),
    };
    let index = usize::from(r.u8().ok_or_else(short)?);
    if index != vf {
        return Err(bad(format!("index {index} out of order")));
    }
    let flags = r.u8().ok_or_else(short)?;
    if flags & !F_ALL != 0 {
        return Err(bad(format!("unknown flag bits {flags:#04x}")));
    }
    let admin = r.mac().ok_or_else(short)?;
    let mac = r.mac().ok_or_else(short)?;
    let opt_mac = |present: bool, m: MacAddr, what: &str| -> Result<Option<MacAddr>, StateError> {
        match (present, m.is_valid_unicast(), m == MacAddr::ZERO) {
            (true, true, _) => Ok(Some(m)),
            (false, _, true) => Ok(None),
            (true, false, _) => Err(bad(format!("{what} {m} is not unicast"))),
            (false, _, false) => Err(bad(format!("{what} set without its flag"))),
        }
    };
    let admin = opt_mac(flags & F_ADMIN_MAC != 0, admin, "admin MAC")?;
    let mac = opt_mac(flags & F_MAC != 0, mac, "MAC")?;
    let mut policy = VfPolicy {
        mac: admin,
        trusted: flags & F_TRUSTED != 0,
        spoof_check: flags & F_SPOOF != 0,
        kernel_driver: flags & F_KERNEL != 0,
        max_vlans: r.u8().ok_or_else(short)?,
        max_multicast: r.u8().ok_or_else(short)?,
        max_frame: r.u32().ok_or_else(short)?,
        msg_burst: r.u32().ok_or_else(short)?,
        msg_per_sec: r.u32().ok_or_else(short)?,
        port_vlan: None,
        link: LinkState::Auto,
    };
    if let (Some(a), Some(m), false) = (admin, mac, policy.trusted) {
        if a != m {
            return Err(bad(format!(
                "MAC {m} differs from the admin MAC {a} of an untrusted VF"
            )));
        }
    }
    let max_frame = r.u32().ok_or_else(short)?;
    if !(MIN_FRAME..=policy.max_frame.max(1518)).contains(&max_frame) {
        return Err(bad(format!("max frame {max_frame} outside its policy")));
    }
    let mc_count = r.u8().ok_or_else(short)?;
    let vlan_count = usize::from(r.u8().ok_or_else(short)?);
    if mc_count > policy.max_multicast {
        return Err(bad(format!(
            "{mc_count} multicast hashes over the limit {}",
            policy.max_multicast
        )));
    }
    if vlan_count > usize::from(policy.max_vlans) {
        return Err(bad(format!(
            "{vlan_count} VLANs over the limit {}",
            policy.max_vlans
        )));
    }
    let mut mc_hashes = [0u16; MAX_MC_HASHES];
    for (j, h) in mc_hashes.iter_mut().enumerate() {
        let v = r.u16().ok_or_else(short)?;
        if j < usize::from(mc_count) {
            if v > MAX_MC_HASH {
                return Err(bad(format!("multicast hash {v:#x} wider than 12 bits")));
            }
            *h = v;
        } else if v != 0 {
            return Err(bad("unused multicast entries are not zero".into()));
        }
    }
    let mut vlans = Vec::with_capacity(vlan_count);
    for j in 0..MAX_VLANS_CAP {
        let v = r.u16().ok_or_else(short)?;
        if j < vlan_count {
            if v == 0 || v > 4095 || vlans.last().is_some_and(|&l| l >= v) {
                return Err(bad(format!("VLAN list not sorted within 1..=4095 at {v}")));
            }
            vlans.push(v);
        } else if v != 0 {
            return Err(bad("unused VLAN entries are not zero".into()));
        }
    }
    if version >= 2 {
        let pv = r.u16().ok_or_else(short)?;
        policy.port_vlan = (pv != 0).then_some(pv);
        policy.link = match r.u8().ok_or_else(short)? {
            0 => LinkState::Auto,
            1 => LinkState::Enable,
            2 => LinkState::Disable,
            l => return Err(bad(format!("link state {l} is not 0, 1 or 2"))),
        };
        if r.u8().ok_or_else(short)? != 0 {
            return Err(bad("reserved byte not zero".into()));
        }
        if policy.port_vlan.is_some() && !vlans.is_empty() {
            return Err(bad("VLAN filters listed beside a port VLAN".into()));
        }
    }
    policy.validate(vf).map_err(|e| bad(e.to_string()))?;
    let ready = flags & F_READY != 0;
    if ready && mac.is_none() {
        return Err(bad("ready without a MAC".into()));
    }
    Ok(SavedVf {
        policy,
        ready,
        mac,
        mc_hashes,
        mc_count,
        vlans,
        max_frame,
        mc_promisc: flags & F_MC_PROMISC != 0,
    })
}

impl SavedState {
    /// Refuses a state saved for another device, or for another VF count than `num_vfs`.
    pub fn check_identity(&self, actual: &PfIdentity, num_vfs: usize) -> Result<(), StateError> {
        if self.pf != *actual {
            let show = |p: &PfIdentity| format!("{} ({:04x}:{:04x})", p.addr, p.vendor, p.device);
            return Err(StateError::Identity {
                saved: show(&self.pf),
                actual: show(actual),
            });
        }
        if self.vfs.len() != num_vfs {
            return Err(StateError::VfCount {
                saved: self.vfs.len(),
                actual: num_vfs,
            });
        }
        Ok(())
    }

    /// Writes the state to `path` (mode 0600) through a temporary file and a rename, so a crash
    /// leaves either the old or the new state.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |op, e: std::io::Error| StateError::Io {
            op,
            path: path.display().to_string(),
            msg: e.to_string(),
        };
        let bytes = encode(self)?;
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("create", e))?;
        f.write_all(&bytes).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("sync", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
        Ok(())
    }

    /// Reads and validates a state file (at most [`MAX_FILE_LEN`] bytes are read).
    pub fn load(path: &Path) -> Result<SavedState, StateError> {
        use std::io::Read;
        let io = |op, e: std::io::Error| StateError::Io {
            op,
            path: path.display().to_string(),
            msg: e.to_string(),
        };
        let f = std::fs::File::open(path).map_err(|e| io("open", e))?;
        let mut data = Vec::new();
        f.take(MAX_FILE_LEN as u64 + 1)
            .read_to_end(&mut data)
            .map_err(|e| io("read", e))?;
        decode(&data)
    }
}

#[cfg(test)]
mod tests;
