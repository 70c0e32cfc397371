//! The 82576 PF/VF mailbox protocol: message ids, flags, and a total parser of the 16 words a VF
//! leaves in its mailbox memory.
//!
//! Everything here is pure: [`VfRequest::parse`] takes the untrusted words and returns either a
//! typed request or a [`ParseError`] naming what was wrong; it never panics and never indexes out
//! of the 16 words, whatever they hold. Replies are built by [`Reply`].
#![forbid(unsafe_code)]

use std::fmt;

use crate::mac::MacAddr;

/// Words in one mailbox (VMBMEM): 64 bytes.
pub const MBX_WORDS: usize = 16;

/// Message ids (word 0 bits 15:0), VF to PF.
pub mod id {
    /// The VF finished its reset and asks for its MAC.
    pub const RESET: u16 = 0x01;
    /// Set the VF's MAC (info 0), or clear (info 1) / add (info 2) a secondary unicast filter.
    pub const SET_MAC_ADDR: u16 = 0x02;
    /// Multicast hash list: count in the info byte, 12-bit hashes as u16 from word 1 on.
    pub const SET_MULTICAST: u16 = 0x03;
    /// VLAN filter: info bit 0 = add, word 1 = VLAN id.
    pub const SET_VLAN: u16 = 0x04;
    /// Largest frame: word 1 = bytes.
    pub const SET_LPE: u16 = 0x05;
    /// Promiscuous modes: info bit 0 = unicast, bit 1 = multicast.
    pub const SET_PROMISC: u16 = 0x06;
    /// PF to VF: control message (the PF was reset; the VF must reset too).
    pub const PF_CONTROL: u16 = 0x0100;
}

/// The VF's view of its mailbox control (V2PMAILBOX), defined once for the VF driver and the
/// PF-side model.
pub mod v2p {
    /// Request: the VF posted a message.
    pub const REQ: u32 = 0x01;
    /// The VF acknowledges the PF's message.
    pub const ACK: u32 = 0x02;
    /// The VF holds the buffer.
    pub const VFU: u32 = 0x04;
    /// The PF holds the buffer.
    pub const PFU: u32 = 0x08;
    /// The PF posted a message (clear on read).
    pub const PFSTS: u32 = 0x10;
    /// The PF acknowledged the VF's message (clear on read).
    pub const PFACK: u32 = 0x20;
    /// Reset in progress.
    pub const RSTI: u32 = 0x40;
    /// Reset done (clear on read).
    pub const RSTD: u32 = 0x80;
}

/// Word 0 flag: the request was done.
pub const MSG_ACK: u32 = 0x8000_0000;
/// Word 0 flag: the request was refused.
pub const MSG_NACK: u32 = 0x4000_0000;
/// Word 0 flag: clear to send: the PF finished the VF's reset handshake.
pub const MSG_CTS: u32 = 0x2000_0000;
/// The flag bits a VF must never set in a request.
pub const MSG_FLAGS: u32 = MSG_ACK | MSG_NACK | MSG_CTS;
/// Mask of the message id.
pub const MSG_ID_MASK: u32 = 0xFFFF;
/// Shift of the info byte (bits 23:16).
pub const MSG_INFO_SHIFT: u32 = 16;
/// Word 0 bits that are neither id, info nor flags (28:24): must be zero.
pub const MSG_RESERVED: u32 = 0x1F00_0000;

/// SET_MAC_ADDR info: clear the secondary unicast filters.
pub const MAC_FILTER_CLR: u8 = 0x01;
/// SET_MAC_ADDR info: add a secondary unicast filter.
pub const MAC_FILTER_ADD: u8 = 0x02;
/// SET_VLAN info: add (else remove).
pub const VLAN_ADD: u8 = 0x01;
/// SET_PROMISC info: unicast promiscuous.
pub const PROMISC_UNICAST: u8 = 0x01;
/// SET_PROMISC info: multicast promiscuous.
pub const PROMISC_MULTICAST: u8 = 0x02;

/// Most multicast hashes one SET_MULTICAST carries (15 words of two u16 each).
pub const MAX_MC_HASHES: usize = 30;
/// Largest VLAN id.
pub const MAX_VLAN_ID: u32 = 4095;
/// Largest value a multicast hash may have (12 bits: an MTA bit index).
pub const MAX_MC_HASH: u16 = 0x0FFF;

/// A VF's request, parsed and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VfRequest {
    /// The reset handshake (word 0 = RESET, nothing else looked at).
    Reset,
    /// Set the VF's own MAC.
    SetMac(MacAddr),
    /// Clear the VF's secondary unicast filters.
    ClearMacFilters,
    /// Add a secondary unicast filter.
    AddMacFilter(MacAddr),
    /// Replace the VF's multicast hash list (`hashes[..count]`).
    SetMulticast {
        /// Number of valid hashes (0..=30).
        count: u8,
        /// The hashes; entries past `count` are zero.
        hashes: [u16; MAX_MC_HASHES],
    },
    /// Add or remove a VLAN filter.
    SetVlan {
        /// VLAN id, 0..=4095.
        vid: u16,
        /// Add (true) or remove.
        add: bool,
    },
    /// Set the largest frame the VF receives.
    SetLpe {
        /// Bytes (not yet checked against the policy's bounds).
        max_frame: u32,
    },
    /// Promiscuous modes.
    SetPromisc {
        /// Every unicast frame.
        unicast: bool,
        /// Every multicast frame.
        multicast: bool,
    },
}

impl VfRequest {
    /// The message id of the request.
    pub fn id(&self) -> u16 {
        match self {
            VfRequest::Reset => id::RESET,
            VfRequest::SetMac(_) | VfRequest::ClearMacFilters | VfRequest::AddMacFilter(_) => {
                id::SET_MAC_ADDR
            }
            VfRequest::SetMulticast { .. } => id::SET_MULTICAST,
            VfRequest::SetVlan { .. } => id::SET_VLAN,
            VfRequest::SetLpe { .. } => id::SET_LPE,
            VfRequest::SetPromisc { .. } => id::SET_PROMISC,
        }
    }

    /// Parses the words of a VF's mailbox. Total: any input gives `Ok` or a [`ParseError`].
    pub fn parse(words: &[u32; MBX_WORDS]) -> Result<VfRequest, ParseError> {
        let w0 = words[0];
        let msg_id = (w0 & MSG_ID_MASK) as u16;
        let info = ((w0 >> MSG_INFO_SHIFT) & 0xFF) as u8;
        if w0 & MSG_FLAGS != 0 {
            return Err(ParseError::FlagsSet {
                id: msg_id,
                word0: w0,
            });
        }
        if w0 & MSG_RESERVED != 0 {
            return Err(ParseError::ReservedBits {
                id: msg_id,
                word0: w0,
            });
        }
        let no_info = |info: u8| {
            if info == 0 {
                Ok(())
            } else {
                Err(ParseError::BadInfo { id: msg_id, info })
            }
        };
        match msg_id {
            id::RESET => {
                no_info(info)?;
                Ok(VfRequest::Reset)
            }
            id::SET_MAC_ADDR => {
                let mac = mac_from_words(words[1], words[2]);
                match info {
                    0 => {
                        check_unicast(mac)?;
                        Ok(VfRequest::SetMac(mac))
                    }
                    MAC_FILTER_CLR => Ok(VfRequest::ClearMacFilters),
                    MAC_FILTER_ADD => {
                        check_unicast(mac)?;
                        Ok(VfRequest::AddMacFilter(mac))
                    }
                    _ => Err(ParseError::BadInfo { id: msg_id, info }),
                }
            }
            id::SET_MULTICAST => {
                let count = usize::from(info);
                if count > MAX_MC_HASHES {
                    return Err(ParseError::TooManyHashes { count });
                }
                let mut hashes = [0u16; MAX_MC_HASHES];
                for (i, h) in hashes.iter_mut().enumerate().take(count) {
                    // Hash i is u16 number i of words 1..=15, little-endian halves.
                    let w = words.get(1 + i / 2).copied().unwrap_or(0);
                    let v = if i % 2 == 0 { w as u16 } else { (w >> 16) as u16 };
                    if v > MAX_MC_HASH {
                        return Err(ParseError::BadHash { index: i, value: v });
                    }
                    *h = v;
                }
                Ok(VfRequest::SetMulticast { count: info, hashes })
            }
            id::SET_VLAN => {
                if info & !VLAN_ADD != 0 {
                    return Err(ParseError::BadInfo { id: msg_id, info });
                }
                let vid = words[1];
                if vid > MAX_VLAN_ID {
                    return Err(ParseError::BadVlan { vid });
                }
                Ok(VfRequest::SetVlan {
                    vid: vid as u16,
                    add: info & VLAN_ADD != 0,
                })
            }
            id::SET_LPE => {
                no_info(info)?;
                Ok(VfRequest::SetLpe { max_frame: words[1] })
            }
            id::SET_PROMISC => {
                if info & !(PROMISC_UNICAST | PROMISC_MULTICAST) != 0 {
                    return Err(ParseError::BadInfo { id: msg_id, info });
                }
                Ok(VfRequest::SetPromisc {
                    unicast: info & PROMISC_UNICAST != 0,
                    multicast: info & PROMISC_MULTICAST != 0,
                })
            }
            _ => Err(ParseError::UnknownId { id: msg_id }),
        }
    }

    /// Encodes the request as a VF would send it (the VF driver's side, and tests).
    pub fn encode(&self) -> [u32; MBX_WORDS] {
        let mut w = [0u32; MBX_WORDS];
        let info = |i: u8| u32::from(i) << MSG_INFO_SHIFT;
        w[0] = u32::from(self.id());
        match self {
            VfRequest::Reset => {}
            VfRequest::SetMac(m) => (w[1], w[2]) = mac_to_words(*m),
            VfRequest::ClearMacFilters => w[0] |= info(MAC_FILTER_CLR),
            VfRequest::AddMacFilter(m) => {
                w[0] |= info(MAC_FILTER_ADD);
                (w[1], w[2]) = mac_to_words(*m);
            }
            VfRequest::SetMulticast { count, hashes } => {
                let n = usize::from(*count).min(MAX_MC_HASHES);
                w[0] |= info(n as u8);
                for (i, h) in hashes.iter().take(n).enumerate() {
                    w[1 + i / 2] |= u32::from(*h) << (16 * (i % 2));
                }
            }
            VfRequest::SetVlan { vid, add } => {
                if *add {
                    w[0] |= info(VLAN_ADD);
                }
                w[1] = u32::from(*vid);
            }
            VfRequest::SetLpe { max_frame } => w[1] = *max_frame,
            VfRequest::SetPromisc { unicast, multicast } => {
                let mut i = 0;
                if *unicast {
                    i |= PROMISC_UNICAST;
                }
                if *multicast {
                    i |= PROMISC_MULTICAST;
                }
                w[0] |= info(i);
            }
        }
        w
    }
}

/// Why a mailbox message was not a valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The id is not one the PF serves.
    #[error("unknown message id {id:#06x}")]
    UnknownId {
        /// The id.
        id: u16,
    },
    /// The VF set ACK / NACK / CTS, which only the PF may set.
    #[error("message {id:#06x}: PF-only flag bits set in word 0 ({word0:#010x})")]
    FlagsSet {
        /// The id.
        id: u16,
        /// Word 0.
        word0: u32,
    },
    /// Reserved bits 28:24 of word 0 set.
    #[error("message {id:#06x}: reserved bits set in word 0 ({word0:#010x})")]
    ReservedBits {
        /// The id.
        id: u16,
        /// Word 0.
        word0: u32,
    },
    /// The info byte has a value this message does not define.
    #[error("message {id:#06x}: undefined info value {info:#04x}")]
    BadInfo {
        /// The id.
        id: u16,
        /// Info byte.
        info: u8,
    },
    /// SET_MULTICAST with more hashes than a mailbox holds (a wrong length).
    #[error("SET_MULTICAST: {count} hashes announced, a mailbox holds at most {MAX_MC_HASHES}")]
    TooManyHashes {
        /// Announced count.
        count: usize,
    },
    /// A multicast hash wider than 12 bits.
    #[error("SET_MULTICAST: hash {index} = {value:#06x} is wider than 12 bits")]
    BadHash {
        /// Position.
        index: usize,
        /// Value.
        value: u16,
    },
    /// VLAN id above 4095.
    #[error("SET_VLAN: VLAN id {vid} out of range 0..=4095")]
    BadVlan {
        /// The id given.
        vid: u32,
    },
    /// A MAC that is zero or multicast.
    #[error("MAC {mac} is not a valid unicast address")]
    BadMac {
        /// The address.
        mac: MacAddr,
    },
}

fn check_unicast(mac: MacAddr) -> Result<(), ParseError> {
    if mac.is_valid_unicast() {
        Ok(())
    } else {
        Err(ParseError::BadMac { mac })
    }
}

/// The MAC in words 1..2 of a message (the byte order of the mailbox memory: little-endian).
pub fn mac_from_words(w1: u32, w2: u32) -> MacAddr {
    let a = w1.to_le_bytes();
    let b = w2.to_le_bytes();
    MacAddr([a[0], a[1], a[2], a[3], b[0], b[1]])
}

/// The two words that carry `mac` in a message.
pub fn mac_to_words(mac: MacAddr) -> (u32, u32) {
    let m = mac.0;
    (
        u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
        u32::from(u16::from_le_bytes([m[4], m[5]])),
    )
}

/// A PF reply: the words to write and how many.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Words (only `len` are written).
    pub words: [u32; MBX_WORDS],
    /// Number of words, 1..=16.
    pub len: usize,
}

impl Reply {
    /// A one-word reply to message `msg_id`: ACK or NACK, with CTS when the VF is clear to send.
    pub fn status(msg_id: u16, ack: bool, cts: bool) -> Reply {
        let mut words = [0u32; MBX_WORDS];
        words[0] = u32::from(msg_id) | if ack { MSG_ACK } else { MSG_NACK };
        if cts {
            words[0] |= MSG_CTS;
        }
        Reply { words, len: 1 }
    }

    /// The reply to RESET: ACK with the VF's MAC in words 1..2 (three words), or NACK alone
    /// when the VF has no MAC yet.
    pub fn reset(mac: Option<MacAddr>) -> Reply {
        let mut r = Reply::status(id::RESET, mac.is_some(), false);
        if let Some(m) = mac {
            (r.words[1], r.words[2]) = mac_to_words(m);
            r.len = 3;
        }
        r
    }

    /// The words written.
    pub fn as_slice(&self) -> &[u32] {
        &self.words[..self.len.min(MBX_WORDS)]
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reply{:08x?}", self.as_slice())
    }
}

/// What a VF's driver learns from a PF reply (the VF side of the protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyStatus {
    /// ACK for the expected message id.
    Ack,
    /// NACK for the expected message id.
    Nack,
    /// Neither, or a different id: a protocol error.
    Unexpected,
}

/// Classifies `word0` of a reply to message `expected`.
pub fn reply_status(word0: u32, expected: u16) -> ReplyStatus {
    if (word0 & MSG_ID_MASK) as u16 != expected {
        return ReplyStatus::Unexpected;
    }
    match (word0 & MSG_ACK != 0, word0 & MSG_NACK != 0) {
        (true, false) => ReplyStatus::Ack,
        (false, true) => ReplyStatus::Nack,
        _ => ReplyStatus::Unexpected,
    }
}

/// The 12-bit multicast hash of `mac` as the VF computes it (filter type 0: bits 47:36).
pub fn multicast_hash(mac: MacAddr) -> u16 {
    ((u16::from(mac.0[4]) >> 4) | (u16::from(mac.0[5]) << 4)) & MAX_MC_HASH
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(w0: u32, rest: &[u32]) -> [u32; MBX_WORDS] {
        let mut w = [0u32; MBX_WORDS];
        w[0] = w0;
        for (i, v) in rest.iter().enumerate() {
            w[1 + i] = *v;
        }
        w
    }

    #[test]
    fn parses_each_request() {
        assert_eq!(VfRequest::parse(&msg(1, &[])), Ok(VfRequest::Reset));
        let mac = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        let (a, b) = mac_to_words(mac);
        assert_eq!(a, 0x3322_1102);
        assert_eq!(b, 0x5544);
        assert_eq!(VfRequest::parse(&msg(2, &[a, b])), Ok(VfRequest::SetMac(mac)));
        assert_eq!(
            VfRequest::parse(&msg(0x0001_0002, &[])),
            Ok(VfRequest::ClearMacFilters)
        );
        assert_eq!(
            VfRequest::parse(&msg(0x0002_0002, &[a, b])),
            Ok(VfRequest::AddMacFilter(mac))
        );
        assert_eq!(
            VfRequest::parse(&msg(0x0001_0004, &[100])),
            Ok(VfRequest::SetVlan { vid: 100, add: true })
        );
        assert_eq!(
            VfRequest::parse(&msg(4, &[4095])),
            Ok(VfRequest::SetVlan {
                vid: 4095,
                add: false
            })
        );
        assert_eq!(
            VfRequest::parse(&msg(5, &[1522])),
            Ok(VfRequest::SetLpe { max_frame: 1522 })
        );
        assert_eq!(
            VfRequest::parse(&msg(0x0003_0006, &[])),
            Ok(VfRequest::SetPromisc {
                unicast: true,
                multicast: true
            })
        );
        let r = VfRequest::parse(&msg(0x0003_0003, &[0x0002_0001, 0x0fff])).unwrap();
        let mut hashes = [0u16; MAX_MC_HASHES];
        hashes[..3].copy_from_slice(&[1, 2, 0xfff]);
        assert_eq!(r, VfRequest::SetMulticast { count: 3, hashes });
    }

    #[test]
    fn refuses_malformed_messages() {
        use ParseError::*;
        let cases: &[([u32; MBX_WORDS], ParseError)] = &[
            (msg(0x0007, &[]), UnknownId { id: 7 }),
            (msg(0x0000, &[]), UnknownId { id: 0 }),
            (msg(0x0100, &[]), UnknownId { id: 0x100 }),
            (
                msg(0x8000_0001, &[]),
                FlagsSet {
                    id: 1,
                    word0: 0x8000_0001,
                },
            ),
            (
                msg(0x2000_0005, &[]),
                FlagsSet {
                    id: 5,
                    word0: 0x2000_0005,
                },
            ),
            (
                msg(0x0100_0001, &[]),
                ReservedBits {
                    id: 1,
                    word0: 0x0100_0001,
                },
            ),
            (msg(0x0001_0001, &[]), BadInfo { id: 1, info: 1 }),
            (msg(0x0003_0002, &[]), BadInfo { id: 2, info: 3 }),
            (msg(0x0002_0004, &[1]), BadInfo { id: 4, info: 2 }),
            (msg(0x0001_0005, &[1]), BadInfo { id: 5, info: 1 }),
            (msg(0x0004_0006, &[]), BadInfo { id: 6, info: 4 }),
            (msg(0x001F_0003, &[]), TooManyHashes { count: 31 }),
            (msg(0x00FF_0003, &[]), TooManyHashes { count: 255 }),
            (
                msg(0x0002_0003, &[0x1000_0001]),
                BadHash {
                    index: 1,
                    value: 0x1000,
                },
            ),
            (msg(0x0001_0004, &[4096]), BadVlan { vid: 4096 }),
            (msg(0x0001_0004, &[u32::MAX]), BadVlan { vid: u32::MAX }),
            (msg(0x0002, &[0, 0]), BadMac { mac: MacAddr::ZERO }),
            (
                msg(0x0002, &[0xffff_ffff, 0xffff]),
                BadMac {
                    mac: MacAddr([0xff; 6]),
                },
            ),
            (
                msg(0x0002, &[0x0000_5e01, 0x0100]),
                BadMac {
                    mac: MacAddr([0x01, 0x5e, 0, 0, 0, 1]),
                },
            ),
        ];
        for (m, want) in cases {
            assert_eq!(VfRequest::parse(m), Err(*want), "{m:08x?}");
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn thirty_hashes_fill_the_mailbox_exactly() {
        let mut w = [0u32; MBX_WORDS];
        w[0] = (30 << 16) | 3;
        for (i, x) in w.iter_mut().enumerate().skip(1) {
            *x = ((2 * i as u32) << 16) | (2 * i as u32 - 1);
        }
        let VfRequest::SetMulticast { count, hashes } = VfRequest::parse(&w).unwrap() else {
            panic!("not a multicast request");
        };
        assert_eq!(count, 30);
        assert_eq!(hashes[0], 1);
        assert_eq!(hashes[29], 30);
    }

    #[test]
    fn every_id_and_info_parses_without_panic_and_roundtrips() {
        // Exhaustive over word 0's id and info (2^24 would be slow in debug: every id with a
        // spread of info values, and every info value with every defined id).
        let mut rest = [0u32; MBX_WORDS];
        rest[1] = 0x3322_1102;
        rest[2] = 0x5544;
        for msg_id in 0..=0xFFFFu32 {
            for info in [0u32, 1, 2, 3, 4, 0x1E, 0x1F, 0x80, 0xFF] {
                rest[0] = msg_id | (info << 16);
                if let Ok(r) = VfRequest::parse(&rest) {
                    assert!((1..=6).contains(&msg_id), "id {msg_id:#x} accepted");
                    let again = VfRequest::parse(&r.encode()).expect("encoded request parses");
                    assert_eq!(again, r);
                }
            }
        }
        for msg_id in 1..=6u32 {
            for info in 0..=0xFFu32 {
                rest[0] = msg_id | (info << 16);
                let _ = VfRequest::parse(&rest);
            }
        }
    }

    #[test]
    fn random_mailboxes_never_panic() {
        // A deterministic fuzz loop (xorshift): random words, biased towards the known ids.
        let mut rng = crate::test_rng::TestRng::new(0x9E37_79B9_7F4A_7C15);
        let mut next = || rng.next_u64();
        let mut accepted = 0;
        for _ in 0..200_000 {
            let mut w = [0u32; MBX_WORDS];
            for x in w.iter_mut() {
                *x = next() as u32;
            }
            if next() % 2 == 0 {
                // Known ids with small info values and small operands.
                w[0] = (((next() % 4) as u32) << 16) | (next() % 8) as u32;
                w[1] &= 0x0FFF_0FFF;
                w[2] &= 0xFFFF;
            }
            if let Ok(r) = VfRequest::parse(&w) {
                accepted += 1;
                assert_eq!(VfRequest::parse(&r.encode()), Ok(r));
            }
        }
        assert!(
            accepted > 1000,
            "the generator reaches valid messages ({accepted})"
        );
    }

    #[test]
    fn replies() {
        let r = Reply::status(id::SET_VLAN, false, true);
        assert_eq!(r.as_slice(), &[0x6000_0004]);
        assert_eq!(reply_status(r.words[0], id::SET_VLAN), ReplyStatus::Nack);
        let r = Reply::status(id::SET_LPE, true, true);
        assert_eq!(reply_status(r.words[0], id::SET_LPE), ReplyStatus::Ack);
        assert_eq!(reply_status(r.words[0], id::SET_VLAN), ReplyStatus::Unexpected);
        assert_eq!(reply_status(id::RESET.into(), id::RESET), ReplyStatus::Unexpected);
        let mac = MacAddr([0x02, 0, 0, 0, 0, 7]);
        let r = Reply::reset(Some(mac));
        assert_eq!(r.len, 3);
        assert_eq!(r.words[0], 0x8000_0001);
        assert_eq!(mac_from_words(r.words[1], r.words[2]), mac);
        let r = Reply::reset(None);
        assert_eq!(r.as_slice(), &[0x4000_0001]);
    }

    #[test]
    fn multicast_hash_uses_the_top_twelve_bits() {
        let m = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
        assert_eq!(multicast_hash(m), 0xfb0);
        let m = MacAddr([0x33, 0x33, 0, 0, 0x12, 0x34]);
        assert_eq!(multicast_hash(m), 0x341);
    }
}
