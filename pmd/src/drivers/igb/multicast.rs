//! The 82576's multicast table (MTA): 4096 bits indexed by a 12-bit hash of the destination
//! MAC (filter type 0, RCTL.MO = 0: address bits 47:36). Imperfect: a frame whose address hashes
//! to a set bit is accepted, so two groups of the same hash both pass.

use crate::mac::MacAddr;
use crate::sriov::mailbox::multicast_hash;

use super::regs::filter::MTA_LEN;

/// The MTA words with the bit of every hash in `hashes` set.
pub(crate) fn mta_words(hashes: impl IntoIterator<Item = u16>) -> [u32; MTA_LEN] {
    let mut mta = [0u32; MTA_LEN];
    for h in hashes {
        let h = usize::from(h) & 0xFFF;
        mta[h >> 5] |= 1 << (h & 31);
    }
    mta
}

/// The MTA words that accept the groups of `addrs`.
pub(crate) fn mta_for(addrs: &[MacAddr]) -> [u32; MTA_LEN] {
    mta_words(addrs.iter().map(|m| multicast_hash(*m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_sets_the_bit_of_its_hash() {
        // 01:00:5e:01:02:03 (239.1.2.3): hash (0x02 >> 4) | (0x03 << 4) = 0x030: word 1, bit 16.
        let m = mta_for(&["01:00:5e:01:02:03".parse().unwrap()]);
        assert_eq!(m[1], 1 << 16);
        assert_eq!(m.iter().filter(|w| **w != 0).count(), 1);
        assert!(mta_for(&[]).iter().all(|w| *w == 0));
    }
}
