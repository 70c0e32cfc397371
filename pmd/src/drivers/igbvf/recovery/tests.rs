//! The reset watchdog's logic: its state machine fed with observations, and the mailbox's record
//! of RSTI / RSTD against the mailbox model with the PF host serving it (logic only; the VM tests
//! prove it against QEMU's igb).

use std::sync::Arc;

use super::*;
use crate::drivers::igbvf::mbx::{MbxError, ModelVf, VfMailbox, serve_model};
use crate::sriov::host::PfHost;
use crate::sriov::mailbox::{self, MSG_ACK, VfRequest};
use crate::sriov::model::MailboxModel;
use crate::sriov::policy::{VfPolicy, VfTable};

const RSTI: u32 = regs::mbx::RSTI;
const RSTD: u32 = regs::mbx::RSTD;
/// STATUS of a running 82576 VF (link up, full duplex, speed bits).
const STATUS_UP: u32 = 0x83;

fn seen(v2p: u32) -> Observation {
    Observation {
        v2p: Some(v2p),
        reset_bits: 0,
        status: STATUS_UP,
        queue_lost: false,
    }
}

#[test]
fn a_running_vf_stays_running_on_quiet_and_message_bits() {
    let mut d = Detector::new();
    let t = Instant::now();
    for v in [0, regs::mbx::PFSTS, regs::mbx::PFACK, regs::mbx::PFU] {
        assert_eq!(d.observe(&seen(v), t), Step::Nothing, "V2PMAILBOX {v:#x}");
    }
    assert!(!d.is_down());
}

#[test]
fn a_pf_reset_is_waited_out_then_the_handshake_runs_once_the_pf_released_the_vf() {
    let mut d = Detector::new();
    let t0 = Instant::now();
    assert_eq!(d.observe(&seen(RSTI), t0), Step::Down(Cause::PfReset));
    assert!(d.is_down());
    // While RSTI stays (the PF service is dead or starting), nothing is tried.
    for k in 1..50 {
        assert_eq!(
            d.observe(&seen(RSTI), t0 + Duration::from_millis(10 * k)),
            Step::Wait
        );
    }
    // PFRSTD: RSTI clear (RSTD seen once): the handshake is due.
    let t1 = t0 + Duration::from_millis(600);
    assert_eq!(d.observe(&seen(RSTD), t1), Step::Handshake);
    let gap = d.handshake_done(true, t1 + Duration::from_millis(5)).unwrap();
    assert_eq!(gap, Duration::from_millis(605));
    assert!(!d.is_down());
    assert_eq!(d.observe(&seen(0), t1), Step::Nothing);
}

#[test]
fn rstd_seen_by_another_read_counts_as_a_pf_reset() {
    let mut d = Detector::new();
    let t = Instant::now();
    let o = Observation {
        reset_bits: RSTD,
        ..seen(0)
    };
    assert_eq!(d.observe(&o, t), Step::Down(Cause::PfReset));
    // The PF already released the VF: the handshake is due at the next look.
    assert_eq!(d.observe(&seen(0), t), Step::Handshake);
}

#[test]
fn registers_that_do_not_answer_are_a_reset_in_progress() {
    for o in [
        Observation {
            v2p: Some(u32::MAX),
            ..seen(0)
        },
        Observation { v2p: None, ..seen(0) },
        Observation {
            v2p: Some(0),
            status: 0,
            ..seen(0)
        },
    ] {
        let mut d = Detector::new();
        let t = Instant::now();
        assert_eq!(d.observe(&o, t), Step::Down(Cause::NoAnswer), "{o:?}");
        assert_eq!(
            d.observe(&o, t),
            Step::Wait,
            "no handshake while it does not answer"
        );
        assert_eq!(d.observe(&seen(RSTI), t), Step::Wait, "nor while the PF holds it");
        assert_eq!(d.observe(&seen(0), t), Step::Handshake);
    }
}

#[test]
fn a_queue_that_reads_disabled_is_a_vf_reset() {
    let mut d = Detector::new();
    let t = Instant::now();
    let o = Observation {
        queue_lost: true,
        ..seen(0)
    };
    assert_eq!(d.observe(&o, t), Step::Down(Cause::QueueDisabled));
    assert_eq!(d.observe(&o, t), Step::Handshake, "no mailbox bit holds it back");
}

#[test]
fn a_failed_handshake_is_tried_again_after_the_retry_delay_and_counted() {
    let mut d = Detector::new();
    let t0 = Instant::now();
    assert_eq!(d.observe(&seen(RSTI), t0), Step::Down(Cause::PfReset));
    assert_eq!(d.observe(&seen(0), t0), Step::Handshake);
    assert_eq!(d.handshake_done(false, t0), None);
    assert_eq!(d.failures(), 1);
    assert_eq!(d.observe(&seen(0), t0 + RETRY_AFTER / 2), Step::Wait);
    assert_eq!(d.observe(&seen(0), t0 + RETRY_AFTER), Step::Handshake);
    assert_eq!(d.handshake_done(false, t0 + RETRY_AFTER), None);
    assert_eq!(d.failures(), 2);
    let t2 = t0 + 2 * RETRY_AFTER;
    assert_eq!(d.observe(&seen(0), t2), Step::Handshake);
    assert_eq!(d.handshake_done(true, t2), Some(2 * RETRY_AFTER));
    assert_eq!(d.failures(), 0);
    // Outside a loss a handshake outcome changes nothing.
    assert_eq!(d.handshake_done(true, t2), None);
}

#[test]
fn queues_see_the_epoch_before_down_clears_and_live_flags_are_per_queue() {
    let r = Recovery::default();
    let e0 = r.epoch();
    r.set_live(Dir::Rx, 0);
    r.set_live(Dir::Tx, 0);
    assert!(r.is_live(Dir::Rx, 0) && r.is_live(Dir::Tx, 0));
    r.clear_live_one(Dir::Rx, 0);
    assert!(!r.is_live(Dir::Rx, 0) && r.is_live(Dir::Tx, 0));
    r.mark_down();
    assert!(r.is_down());
    r.add_tx_dropped(7);
    r.bump();
    assert!(!r.is_down());
    assert_eq!(r.epoch(), e0 + 1);
    r.queue_back();
    let mut v = Vec::new();
    r.append(&mut v);
    assert_eq!(crate::xstats::get(&v, "reset_tx_dropped_packets"), Some(7));
    assert!(crate::xstats::get(&v, "reset_last_gap_us").is_some());
    assert_eq!(crate::xstats::get(&v, "reset_recoveries"), Some(0));
}

#[test]
fn a_pf_reset_through_the_mailbox_model_is_noticed_waited_out_and_recovered() {
    use std::sync::atomic::Ordering;
    let m = Arc::new(MailboxModel::new());
    let mac = crate::mac::MacAddr([2, 0, 0, 0, 0x30, 1]);
    let table = VfTable::new(
        vec![VfPolicy {
            mac: Some(mac),
            ..VfPolicy::default()
        }],
        crate::mac::MacAddr([0x52, 0x54, 0, 0, 1, 0]),
        0,
    )
    .unwrap();
    let mut host = PfHost::new(m.clone(), "model-pf", table).unwrap();
    host.setup_vmdq().unwrap();
    let (stop, pf) = serve_model(host);
    let vf = VfMailbox::new(ModelVf(m.clone(), 0), Duration::from_millis(500));
    let look = |vf: &VfMailbox<ModelVf>| Observation {
        v2p: vf.poll_ctl().ok(),
        reset_bits: vf.take_reset_bits(),
        status: STATUS_UP,
        queue_lost: false,
    };
    let r = vf.request(&VfRequest::Reset.encode()[..1]).unwrap();
    assert_eq!(r[0], MSG_ACK | 1);
    vf.take_reset_bits();
    let mut d = Detector::new();
    assert_eq!(d.observe(&look(&vf), Instant::now()), Step::Nothing);

    // The PF is reset (its service killed: vfio-pci resets it): RSTI.
    m.vf_pf_reset(0, false);
    assert_eq!(d.observe(&look(&vf), Instant::now()), Step::Down(Cause::PfReset));
    // A request meanwhile fails as a PF reset, not as a timeout.
    let e = vf
        .request(&VfRequest::SetLpe { max_frame: 1522 }.encode()[..2])
        .unwrap_err();
    assert!(matches!(e, MbxError::PfReset), "{e}");
    assert_eq!(d.observe(&look(&vf), Instant::now()), Step::Wait);

    // RSTD is read (and cleared) by another reader first: the record keeps it.
    m.vf_pf_reset(0, true);
    let v = vf.poll_ctl().unwrap();
    assert_eq!(v & (RSTI | RSTD), RSTD);
    assert_eq!(m.vf_read_mailbox(0) & RSTD, 0, "RSTD cleared on read");
    let o = look(&vf);
    assert_eq!(o.v2p.unwrap() & RSTD, 0);
    assert_eq!(
        o.reset_bits, RSTD,
        "the earlier reader's RSTD is kept for the watchdog"
    );
    assert_eq!(d.observe(&o, Instant::now()), Step::Handshake);

    // The handshake against the (restarted) PF: RESET gets the MAC again.
    let r = vf.request(&VfRequest::Reset.encode()[..1]).unwrap();
    assert_eq!(r[0], MSG_ACK | 1);
    assert_eq!(mailbox::mac_from_words(r[1], r[2]), mac);
    assert!(d.handshake_done(true, Instant::now()).is_some());
    vf.take_reset_bits();
    assert_eq!(d.observe(&look(&vf), Instant::now()), Step::Nothing);
    stop.store(true, Ordering::Relaxed);
    pf.join().unwrap();
}
