//! SR-IOV from userspace: the PF side of the 82576 VF mailbox.
//!
//! - [`mailbox`]: the protocol (ids, flags, replies) and a total parser of the 16 untrusted words
//!   a VF leaves in its mailbox.
//! - [`policy`]: the per-VF policy (administrator MAC, trust, spoof check, VLAN / multicast
//!   limits, max-frame bounds, message rate) and [`VfTable::handle`], the pure decision for
//!   each message: reply, hardware actions for that VF only, and the refusal reason.
//! - [`state`]: the versioned, checksummed state file a restarted PF manager validates before use.
//! - [`pf_host`]: the igb PF host: VMDq pools, VF enable through sysfs, the mailbox service loop.
//!
//! The operating model and its security rules are in `docs/sriov.md`.

pub mod mailbox;
pub mod pf_host;
pub mod policy;
pub mod state;

pub use mailbox::{ParseError, Reply, VfRequest};
pub use policy::{HwAction, Outcome, Refusal, SavedVf, VfCounters, VfPhase, VfPolicy, VfState, VfTable};
pub use state::{PfIdentity, SavedState, StateError};
