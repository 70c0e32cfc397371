//! [`IgbvfError`]: why the igbvf driver failed (inside `PortError::Driver`).

use std::time::Duration;

use super::mbx::MbxError;

/// Failures of the igbvf driver (inside [`PortError::Driver`](crate::PortError::Driver)).
#[derive(Debug, thiserror::Error)]
pub enum IgbvfError {
    /// A VFIO operation failed; for a token refusal, the hint says where the token comes from.
    #[error("{source}{hint}")]
    Vfio {
        /// The VFIO error (names the kernel's reason).
        source: Box<oxpmd_vfio::Error>,
        /// Extra advice.
        hint: &'static str,
    },
    /// The token in the environment is unusable.
    #[error("VF token from {var}: {source}")]
    Token {
        /// Where it came from.
        var: &'static str,
        /// Why.
        source: Box<oxpmd_vfio::Error>,
    },
    /// A mailbox exchange failed.
    #[error(transparent)]
    Mailbox(#[from] MbxError),
    /// More multicast groups than one mailbox message carries.
    #[error(
        "{asked} multicast groups asked for: the PF takes at most {max} from a VF; receive more with all-multicast mode"
    )]
    TooManyGroups {
        /// Groups asked for.
        asked: usize,
        /// The most the mailbox carries.
        max: usize,
    },
    /// A PF pool port has no mailbox: its MAC and filters belong to the PF host.
    #[error("this is the PF's own pool: its MAC, filters and modes are managed by the PF host")]
    PfPool,
    /// Every VF register reads 0: the VF's BAR is not decoded by the device.
    #[error(
        "every VF register reads 0 (STATUS, V2PMAILBOX): the device does not decode the VF's BAR. \
         QEMU 10.0's igb VFs do so when the VF BARs sit above 4 GiB (it truncates the address): \
         start QEMU with -global q35-pcihost.pci-hole64-size=0; on real hardware check that the PF \
         has VF MSE set (lspci -vvv: IOVCtl MSE+)"
    )]
    NotDecoded,
    /// The PF never released the VF from reset.
    #[error(
        "the PF did not release the VF from reset within {0:?} (V2PMAILBOX.RSTI stays set): start the \
         PF's driver first (`oxpmd sriov serve` for a userspace PF; with the kernel's igb as the PF, \
         bring its interface up: `ip link set dev PF up`, which releases its VFs)"
    )]
    NotReleased(Duration),
    /// The PF refused a request.
    #[error(
        "the PF refused {what} (NACK): `oxpmd sriov serve` logs the reason; the kernel's igb refuses a \
         VF's reset while it has no MAC for it (`ip link set dev PF vf N mac ...`)"
    )]
    Refused {
        /// The request.
        what: &'static str,
    },
    /// The PF's reply did not belong to the request.
    #[error("unexpected reply {word0:#010x} to {what}")]
    Protocol {
        /// The request.
        what: &'static str,
        /// Word 0 of the reply.
        word0: u32,
    },
    /// DMA mapping.
    #[error(transparent)]
    DmaMap(#[from] oxpmd_dma::DmaMapError),
    /// Ring setup.
    #[error("descriptor ring: {0}")]
    Ring(String),
    /// The PF service did not hand the VF over.
    #[error(transparent)]
    Service(#[from] crate::sriov::handover::VfServiceError),
}
