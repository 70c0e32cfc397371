//! SR-IOV from userspace: the PF side of the 82576 VF mailbox.
//!
//! - [`mailbox`]: the protocol (ids, flags, replies, the VF's mailbox bits) and a total parser of
//!   the 16 untrusted words a VF leaves in its mailbox.
//! - [`policy`]: the per-VF policy (administrator MAC, trust, spoof check, VLAN / multicast
//!   limits, max-frame bounds, message rate) and [`VfTable::handle`], the pure decision for
//!   each message: reply, hardware actions for that VF only, and the refusal reason.
//! - [`state`]: the versioned, checksummed state file a restarted PF manager validates before use.
//! - [`regs`]: the PF-side register map (mailboxes, pools, VLAN filters, per-pool counters).
//! - [`control`]: the control-socket protocol (JSON lines) of the PF service.
//! - [`control_client`]: connecting to the control socket (with the fix when it is refused).
//! - [`admin`]: the administrator's run-time changes of a VF and what the VF is told.
//! - [`vlan`]: the VLAN filters (VLVF, VFTA) computed from the VF table.
//! - [`host`]: the PF host: VMDq pools, the mailbox service loop, run-time administration.
//! - [`device`]: the PF opened through VFIO (bring-up, token, VF enable).
//! - [`service`]: the PF service a PF manager runs (open, serve, administer, save).
//!
//! The operating model and its security rules are in `docs/sriov.md`.

pub mod admin;
pub mod control;
pub mod control_client;
pub mod control_socket;
pub mod device;
pub mod error;
pub mod handover;
pub mod host;
pub mod mailbox;
#[cfg(any(test, feature = "test-support"))]
pub mod model;
pub mod policy;
pub mod pool_stats;
pub mod regs;
pub mod service;
pub mod state;
pub mod unix_fd;
pub mod vlan;

pub use admin::{AdminChange, AdminError, AdminOutcome, VfSignal};
pub use device::PfDevice;
pub use error::PfHostError;
pub use host::{PfHost, PfRegs, VfEvent};
pub use mailbox::{ParseError, Reply, VfRequest};
pub use policy::{
    HwAction, LinkState, Outcome, Refusal, SavedVf, VfCounters, VfPhase, VfPolicy, VfState, VfTable,
};
pub use service::{PfService, ServiceConfig};
pub use state::{PfIdentity, SavedState, StateError};
