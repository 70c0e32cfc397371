//! VLAN offloads of the igb PF: RX stripping (CTRL.VME), the RX filter table (RCTL.VFE and the
//! 4096-bit VFTA) and TX insertion (per packet: `TX_VLAN_INSERT` becomes a context descriptor
//! with VLE, in the advanced TX ring).

use super::IgbShared;
use super::regs::{filter, general, rx};
use crate::sriov::regs::{RCTL_VFE, VFTA_WORDS};

/// The filter table as last written (VFTA is write-only in effect: reading it back would cost a
/// register read per change).
#[derive(Debug, Clone)]
pub(crate) struct VlanFilter {
    words: [u32; VFTA_WORDS],
}

impl Default for VlanFilter {
    fn default() -> Self {
        VlanFilter {
            words: [0; VFTA_WORDS],
        }
    }
}

impl VlanFilter {
    /// Turns stripping and filtering on or off. With filtering on, the table is cleared first
    /// (its contents after a reset are undefined): only VLAN ids added afterwards pass.
    pub(crate) fn configure(&mut self, s: &IgbShared, strip: bool, filtering: bool) {
        let (set, clear) = if strip {
            (general::CTRL_VME, 0)
        } else {
            (0, general::CTRL_VME)
        };
        s.modify(general::CTRL, set, clear);
        if filtering {
            self.words = [0; VFTA_WORDS];
            for n in 0..VFTA_WORDS {
                s.write(filter::vfta(n), 0);
            }
            s.modify(rx::RCTL, RCTL_VFE, 0);
        } else {
            s.modify(rx::RCTL, 0, RCTL_VFE);
        }
    }

    /// Lets tagged frames of `vid` (0..=4095) through, or not.
    pub(crate) fn set(&mut self, s: &IgbShared, vid: u16, on: bool) {
        let (word, bit) = (usize::from(vid >> 5), 1u32 << (vid & 31));
        let w = if on {
            self.words[word] | bit
        } else {
            self.words[word] & !bit
        };
        s.write(filter::vfta(word), w);
        self.words[word] = w;
    }
}
