//! RSS of the igb PF: the 40-byte key (RSSRK), the 128-entry redirection table (RETA) and the
//! hashed header fields (MRQC), as the port configures them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use super::regs::rss;
use crate::rss::RssHash;

/// Bytes of the key.
pub(crate) const KEY_LEN: usize = 4 * rss::RSSRK_LEN;

/// Every field the 82576 hashes, and its MRQC bit.
const FIELDS: [(RssHash, u32); 8] = [
    (RssHash::IPV4, rss::MRQC_FIELD_IPV4),
    (RssHash::IPV4_TCP, rss::MRQC_FIELD_IPV4_TCP),
    (RssHash::IPV4_UDP, rss::MRQC_FIELD_IPV4_UDP),
    (RssHash::IPV6, rss::MRQC_FIELD_IPV6),
    (RssHash::IPV6_TCP, rss::MRQC_FIELD_IPV6_TCP),
    (RssHash::IPV6_UDP, rss::MRQC_FIELD_IPV6_UDP),
    (RssHash::IPV6_EX, rss::MRQC_FIELD_IPV6_EX),
    (RssHash::IPV6_TCP_EX, rss::MRQC_FIELD_IPV6_TCP_EX),
];

/// The hash types the 82576 offers.
pub(crate) fn supported() -> RssHash {
    FIELDS.iter().fold(RssHash::NONE, |a, (h, _)| a | *h)
}

/// The MRQC field bits for `hash`.
pub(crate) fn mrqc_fields(hash: RssHash) -> u32 {
    FIELDS
        .iter()
        .filter(|(h, _)| hash.contains(*h))
        .fold(0, |a, (_, bit)| a | bit)
}

/// 40 random bytes, from the standard library's per-process random hasher keys.
pub(crate) fn random_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    for chunk in key.chunks_mut(8) {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(chunk.as_ptr() as u64);
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    key
}

/// The RSSRK registers of `key`: byte `4n` is the low byte of register `n` (the order the
/// hash consumes the key in).
pub(crate) fn key_registers(key: &[u8; KEY_LEN]) -> [u32; rss::RSSRK_LEN] {
    let mut r = [0u32; rss::RSSRK_LEN];
    for (reg, b) in r.iter_mut().zip(key.chunks(4)) {
        *reg = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    r
}

/// The RETA registers of a table of 128 queue indices: entry `4n + b` in byte `b` of register
/// `n` (the queue in its low 4 bits).
pub(crate) fn reta_registers(reta: &[u16]) -> [u32; rss::RETA_ENTRIES / 4] {
    let mut regs = [0u32; rss::RETA_ENTRIES / 4];
    for (i, q) in reta.iter().take(rss::RETA_ENTRIES).enumerate() {
        regs[i / 4] |= (u32::from(*q) & 0xF) << (8 * (i % 4));
    }
    regs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rss::round_robin_reta;

    #[test]
    fn reta_registers_hold_one_entry_a_byte() {
        let one = reta_registers(&round_robin_reta(128, 1));
        assert!(one.iter().all(|&r| r == 0));
        let four = reta_registers(&round_robin_reta(128, 4));
        assert!(four.iter().all(|&r| r == 0x0302_0100));
        let three = reta_registers(&round_robin_reta(128, 3));
        // Entries 0..8: 0 1 2 0 | 1 2 0 1
        assert_eq!((three[0], three[1]), (0x0002_0100, 0x0100_0201));
        let mut custom = vec![0u16; 128];
        custom[5] = 9;
        custom[127] = 15;
        let r = reta_registers(&custom);
        assert_eq!((r[1], r[31]), (0x0000_0900, 0x0F00_0000));
    }

    #[test]
    fn keys_are_little_endian_per_register_and_random_ones_differ() {
        let mut k = [0u8; KEY_LEN];
        k[..4].copy_from_slice(&[0x6d, 0x5a, 0x56, 0xda]);
        assert_eq!(key_registers(&k)[0], 0xda56_5a6d);
        assert_ne!(
            random_key(),
            random_key(),
            "each configure gets a fresh random key"
        );
    }

    #[test]
    fn every_hash_type_has_its_bit() {
        assert_eq!(mrqc_fields(supported()), 0x00FF_0000);
        assert_eq!(
            mrqc_fields(RssHash::IPV4 | RssHash::IPV4_UDP),
            rss::MRQC_FIELD_IPV4 | rss::MRQC_FIELD_IPV4_UDP
        );
    }
}
