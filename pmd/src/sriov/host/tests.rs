//! Tests of `host`.

use std::sync::Arc;

use super::super::mailbox::v2p;
use super::super::model::MailboxModel;
use super::*;
use crate::sriov::admin::AdminChange;
use crate::sriov::mailbox::{self, MSG_ACK, MSG_CTS, MSG_NACK, VfRequest};
use crate::sriov::policy::VfPolicy;

const PF_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 1, 0]);

fn vmac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0x10, n])
}

fn host(n: usize) -> (Arc<MailboxModel>, PfHost<Arc<MailboxModel>>) {
    let m = Arc::new(MailboxModel::new());
    let policies = (0..n)
        .map(|i| VfPolicy {
            mac: Some(vmac(i as u8)),
            ..VfPolicy::default()
        })
        .collect();
    let t = VfTable::new(policies, PF_MAC, 0).unwrap();
    let mut h = PfHost::new(m.clone(), "test-pf", t).unwrap();
    h.setup_vmdq().unwrap();
    (m, h)
}

/// The VF's side: lock, write, request.
fn vf_send(m: &MailboxModel, vf: usize, r: &[u32; MBX_WORDS]) {
    m.vf_write_mailbox(vf, v2p::VFU);
    assert!(m.vf_read_mailbox(vf) & v2p::VFU != 0);
    for (i, w) in r.iter().enumerate() {
        m.vf_write_mem(vf, i, *w);
    }
    m.vf_write_mailbox(vf, v2p::REQ);
}

/// The VF's side: wait for PFSTS, read, ack.
fn vf_recv(m: &MailboxModel, vf: usize) -> [u32; 3] {
    let s = m.vf_read_mailbox(vf);
    assert!(s & v2p::PFSTS != 0, "no reply for VF {vf}: {s:#x}");
    let r = [m.vf_read_mem(vf, 0), m.vf_read_mem(vf, 1), m.vf_read_mem(vf, 2)];
    m.vf_write_mailbox(vf, v2p::ACK);
    r
}

#[test]
fn vmdq_setup_registers() {
    let (m, h) = host(2);
    assert_eq!(h.pf_pool(), 2);
    assert_eq!(m.get(regs::MRQC), regs::MRQC_VMDQ);
    assert_eq!(m.get(regs::VT_CTL), 2 << 7);
    assert_eq!(m.get(regs::VFRE), 1 << 2);
    assert_eq!(m.get(regs::VFTE), 1 << 2);
    assert_eq!(m.get(regs::rah(0)) & regs::rah_pool(2), regs::rah_pool(2));
    assert_eq!(m.get(regs::rah(0)) & filter::RAH_AV, filter::RAH_AV);
    assert_eq!(m.get(regs::rah(1)), 0, "VF 0 has no filter before its reset");
    assert_eq!(
        m.get(regs::DTXSWC),
        regs::DTXSWC_LOOPBACK | regs::dtxswc_mac_spoof(0) | regs::dtxswc_mac_spoof(1)
    );
    assert_ne!(m.get(general::CTRL_EXT.off()) & general::CTRL_EXT_PFRSTD, 0);
    assert_ne!(m.get(rx::RCTL.off()) & rx::RCTL_EN, 0);
}

#[test]
fn reset_handshake_through_the_mailbox() {
    let (m, mut h) = host(2);
    vf_send(&m, 1, &VfRequest::Reset.encode());
    let ev = h.poll(0).unwrap();
    assert_eq!(ev, vec![VfEvent::Ready { vf: 1, mac: vmac(1) }]);
    let r = vf_recv(&m, 1);
    assert_eq!(r[0], MSG_ACK | 1);
    assert_eq!(mailbox::mac_from_words(r[1], r[2]), vmac(1));
    assert_eq!(m.get(regs::VFRE), (1 << 2) | (1 << 1));
    assert_eq!(m.get(regs::VFTE), (1 << 2) | (1 << 1));
    let rah = m.get(regs::rah(2));
    assert_eq!(rah & regs::rah_pool(1), regs::rah_pool(1));
    assert_eq!(rah & (regs::rah_pool(0) | regs::rah_pool(2)), 0);
    assert_ne!(m.get(regs::vmolr(1)) & regs::VMOLR_BAM, 0);
    assert_eq!(m.get(regs::vmolr(0)), 0, "VF 0 untouched");
    // The VF's ACK is cleared by the next poll.
    assert_ne!(m.get(regs::MBVFICR) & regs::mbvficr_ack(1), 0);
    assert!(h.poll(1).unwrap().is_empty());
    assert_eq!(m.get(regs::MBVFICR), 0);
    // A later request gets CTS.
    vf_send(&m, 1, &VfRequest::SetLpe { max_frame: 1522 }.encode());
    h.poll(2).unwrap();
    assert_eq!(vf_recv(&m, 1)[0], MSG_ACK | MSG_CTS | 5);
    assert_eq!(m.get(regs::vmolr(1)) & regs::VMOLR_RLPML_MASK, 1522);
}

#[test]
fn refusals_are_nacked_and_a_locked_mailbox_is_retried() {
    let (m, mut h) = host(2);
    // Before the reset: NACK without CTS.
    vf_send(&m, 0, &VfRequest::SetMac(vmac(9)).encode());
    let ev = h.poll(0).unwrap();
    assert!(matches!(
        ev[0],
        VfEvent::Refused {
            vf: 0,
            reason: Refusal::NotReady { .. },
            ..
        }
    ));
    assert_eq!(vf_recv(&m, 0)[0], MSG_NACK | 2);
    // A VF that keeps its lock is skipped, not waited for.
    m.vf_write_mailbox(0, v2p::VFU);
    m.vf_write_mem(0, 0, 1);
    m.set(regs::MBVFICR, regs::mbvficr_req(0));
    // Keep VFU: the model refuses the PF's lock.
    let mut p2v = m.get(regs::p2vmailbox(0));
    p2v |= regs::P2V_VFU;
    m.set(regs::p2vmailbox(0), p2v);
    assert!(h.poll(1).unwrap().is_empty());
    assert_ne!(m.get(regs::MBVFICR) & regs::mbvficr_req(0), 0, "still pending");
    m.vf_write_mailbox(0, 0);
    let ev = h.poll(2).unwrap();
    assert_eq!(ev, vec![VfEvent::Ready { vf: 0, mac: vmac(0) }]);
}

#[test]
fn flr_disables_the_pool_and_requests_from_absent_vfs_are_dropped() {
    let (m, mut h) = host(2);
    vf_send(&m, 0, &VfRequest::Reset.encode());
    h.poll(0).unwrap();
    vf_recv(&m, 0);
    assert_ne!(m.get(regs::VFRE) & 1, 0);
    m.set(regs::VFLRE, 1 | (1 << 6));
    let ev = h.poll(1).unwrap();
    assert_eq!(ev, vec![VfEvent::Flr { vf: 0 }]);
    assert_eq!(m.get(regs::VFRE) & 1, 0);
    assert_eq!(m.get(regs::VFLRE), 0);
    // VF 5 does not exist: its request bit is cleared, nothing else.
    m.set(regs::MBVFICR, regs::mbvficr_req(5) | (1 << 10));
    assert!(h.poll(2).unwrap().is_empty());
    assert_eq!(m.get(regs::MBVFICR), 0);
}

#[test]
fn multicast_table_is_the_union_and_a_flood_is_contained() {
    let (m, mut h) = host(2);
    for vf in 0..2 {
        vf_send(&m, vf, &VfRequest::Reset.encode());
        h.poll(0).unwrap();
        vf_recv(&m, vf);
    }
    let mut hashes = [0u16; 30];
    hashes[0] = 0x0fb0;
    vf_send(&m, 0, &VfRequest::SetMulticast { count: 1, hashes }.encode());
    h.poll(1).unwrap();
    vf_recv(&m, 0);
    assert_eq!(m.get(filter::MTA.off() + 4 * (0xfb0 >> 5)), 1 << (0xfb0 & 31));
    assert_ne!(m.get(regs::vmolr(0)) & regs::VMOLR_ROMPE, 0);
    assert_eq!(m.get(regs::vmolr(1)) & regs::VMOLR_ROMPE, 0);
    let vmolr1 = m.get(regs::vmolr(1));
    // VF 0 floods VLAN adds and garbage.
    for i in 0..500u32 {
        let w = if i % 2 == 0 {
            VfRequest::SetVlan {
                vid: (i % 4000) as u16 + 1,
                add: true,
            }
            .encode()
        } else {
            let mut w = [0xdead_beefu32; MBX_WORDS];
            w[0] = 0x77;
            w
        };
        vf_send(&m, 0, &w);
        h.poll(2).unwrap();
        vf_recv(&m, 0);
    }
    let c = h.counters();
    assert_eq!(c[0].messages, 502);
    assert!(c[0].nacked >= 250);
    assert_eq!(c[1].messages, 1);
    assert_eq!(m.get(regs::vmolr(1)), vmolr1, "VF 1's pool untouched");
    assert!(h.table().vf(0).unwrap().vlans.len() <= 8);
}

/// VF 0 and VF 1 ready (handshake done, replies read).
fn ready_host() -> (Arc<MailboxModel>, PfHost<Arc<MailboxModel>>) {
    let (m, mut h) = host(2);
    for vf in 0..2 {
        vf_send(&m, vf, &VfRequest::Reset.encode());
        h.poll(0).unwrap();
        vf_recv(&m, vf);
    }
    h.poll(0).unwrap();
    (m, h)
}

#[test]
fn admin_mac_change_reprograms_the_filter_at_once_and_asks_the_vf_to_reset() {
    let (m, mut h) = ready_host();
    let vf1_rah = m.get(regs::rah(2));
    let new = vmac(9);
    h.admin(0, AdminChange::Mac(new)).unwrap();
    let (lo, hi) = (m.get(regs::ral(1)), m.get(regs::rah(1)));
    assert_eq!(lo, u32::from_le_bytes([2, 0, 0, 0]));
    assert_eq!(hi & 0xFFFF, u32::from(u16::from_le_bytes([0x10, 9])));
    assert_eq!(
        hi & (filter::RAH_AV | regs::rah_pool(0)),
        filter::RAH_AV | regs::rah_pool(0)
    );
    assert_eq!(m.get(regs::rah(2)), vf1_rah, "VF 1's filter untouched");
    // The CONTROL message goes out with the next poll.
    h.poll(1).unwrap();
    let r = vf_recv(&m, 0);
    assert_eq!(r[0], u32::from(mailbox::id::PF_CONTROL) | MSG_NACK);
    assert_eq!(m.vf_read_mailbox(1) & v2p::PFSTS, 0, "VF 1 is told nothing");
    // Refused: another VF's MAC; nothing changes.
    assert!(h.admin(0, AdminChange::Mac(vmac(1))).is_err());
    assert_eq!(m.get(regs::rah(1)), hi);
}

#[test]
fn admin_link_disable_turns_the_pool_off_and_signals_without_cts() {
    let (m, mut h) = ready_host();
    h.admin(1, AdminChange::Link(LinkState::Disable)).unwrap();
    assert_eq!(m.get(regs::VFRE) & (1 << 1), 0);
    assert_eq!(m.get(regs::VFTE) & (1 << 1), 0);
    assert_ne!(m.get(regs::VFRE) & 1, 0, "VF 0 still on");
    h.poll(1).unwrap();
    assert_eq!(vf_recv(&m, 1)[0], u32::from(mailbox::id::PF_CONTROL));
    // A reset of the VF while down keeps its pool off.
    vf_send(&m, 1, &VfRequest::Reset.encode());
    h.poll(2).unwrap();
    vf_recv(&m, 1);
    assert_eq!(m.get(regs::VFRE) & (1 << 1), 0);
    h.admin(1, AdminChange::Link(LinkState::Auto)).unwrap();
    assert_ne!(m.get(regs::VFRE) & (1 << 1), 0);
    h.poll(3).unwrap();
    assert_eq!(vf_recv(&m, 1)[0], u32::from(mailbox::id::PF_CONTROL) | MSG_CTS);
}

#[test]
fn admin_port_vlan_programs_vmvir_vlvf_and_the_pool_options() {
    let (m, mut h) = ready_host();
    assert_eq!(
        m.get(rx::RCTL.off()) & regs::RCTL_VFE,
        0,
        "no VLAN filtering before"
    );
    h.admin(0, AdminChange::PortVlan(Some(100))).unwrap();
    assert_eq!(m.get(regs::vmvir(0)), regs::VMVIR_VLANA_DEFAULT | 100);
    assert_eq!(m.get(regs::vmvir(1)), 0);
    assert_eq!(m.get(regs::vlvf(0)), regs::VLVF_VI_EN | regs::vlvf_pool(0) | 100);
    assert_eq!(m.get(regs::vfta(100 >> 5)), 1 << (100 & 31));
    assert_ne!(m.get(rx::RCTL.off()) & regs::RCTL_VFE, 0);
    let vmolr = m.get(regs::vmolr(0));
    assert_eq!(vmolr & regs::VMOLR_AUPE, 0, "no untagged frames for VF 0");
    assert_ne!(vmolr & regs::VMOLR_STRVLAN, 0);
    assert_ne!(
        m.get(regs::vmolr(1)) & regs::VMOLR_AUPE,
        0,
        "VF 1 still takes untagged frames"
    );
    // Removing it restores everything.
    h.admin(0, AdminChange::PortVlan(None)).unwrap();
    assert_eq!(m.get(regs::vmvir(0)), 0);
    assert_eq!(m.get(regs::vlvf(0)), 0);
    assert_eq!(m.get(rx::RCTL.off()) & regs::RCTL_VFE, 0);
    assert_ne!(m.get(regs::vmolr(0)) & regs::VMOLR_AUPE, 0);
}

#[test]
fn pool_counters_come_from_the_per_pool_registers() {
    let (m, mut h) = ready_host();
    m.set(regs::pool_stats::gprc(1), 7);
    m.set(regs::pool_stats::gotc(1), 640);
    h.refresh_pool_counters().unwrap();
    let c = h.pool_counters(1).unwrap();
    assert_eq!((c.rx_packets, c.tx_bytes), (7, 640));
    assert_eq!(h.pool_counters(0).unwrap().rx_packets, 0);
    assert!(h.pool_counters(2).is_none());
}

/// A ready VF resets (VFLRE) and at once sends RESET, right after the service loop's `k`-th
/// read of VFLRE or MBVFICR: wherever that falls between the loop's reads, the reset is
/// handled before the RESET, and the VF ends ready with its pool on. With VFLRE read before
/// MBVFICR, `k = 1` (both between the two reads) left the pool off for good.
#[test]
fn a_reset_and_its_reset_message_between_the_loops_reads_leave_the_pool_on() {
    for k in 1..=6 {
        let (m, mut h) = ready_host();
        m.after_reads(&[regs::VFLRE, regs::MBVFICR], k, |m| {
            m.set(regs::VFLRE, m.get(regs::VFLRE) | 1);
            m.set(regs::VFRE, m.get(regs::VFRE) & !1);
            m.set(regs::VFTE, m.get(regs::VFTE) & !1);
            vf_send(m, 0, &VfRequest::Reset.encode());
        });
        let mut events = Vec::new();
        for t in 0..4 {
            events.extend(h.poll(10 + t).unwrap());
        }
        let flr = events.iter().position(|e| *e == VfEvent::Flr { vf: 0 });
        let ready = events
            .iter()
            .rposition(|e| *e == VfEvent::Ready { vf: 0, mac: vmac(0) });
        assert!(
            matches!((flr, ready), (Some(f), Some(r)) if f < r),
            "k = {k}: the reset is handled before the RESET: {events:?}"
        );
        let r = vf_recv(&m, 0);
        assert_eq!(r[0], MSG_ACK | 1, "k = {k}");
        assert_eq!(h.table().vf(0).unwrap().phase, VfPhase::Ready, "k = {k}");
        assert_ne!(m.get(regs::VFRE) & 1, 0, "k = {k}: VF 0's receive left off");
        assert_ne!(m.get(regs::VFTE) & 1, 0, "k = {k}: VF 0's transmit left off");
        assert_ne!(m.get(regs::VFRE) & 2, 0, "k = {k}: VF 1 untouched");
    }
}

/// A VF with a message pending resets and writes RESET over it after the loop read VFLRE but
/// before it read the words: the reset is still handled first.
#[test]
fn a_reset_that_overwrites_a_noted_message_is_handled_before_it() {
    let (m, mut h) = ready_host();
    vf_send(&m, 0, &VfRequest::SetLpe { max_frame: 1522 }.encode());
    // MBVFICR is read first, VFLRE second: after that, the VF resets and writes RESET.
    m.after_reads(&[regs::VFLRE], 1, |m| {
        m.set(regs::VFLRE, m.get(regs::VFLRE) | 1);
        for (i, w) in VfRequest::Reset.encode().iter().enumerate() {
            m.vf_write_mem(0, i, *w);
        }
        m.vf_write_mailbox(0, v2p::REQ);
    });
    let mut events = h.poll(10).unwrap();
    events.extend(h.poll(11).unwrap());
    assert_eq!(
        events,
        vec![VfEvent::Flr { vf: 0 }, VfEvent::Ready { vf: 0, mac: vmac(0) }]
    );
    assert_ne!(m.get(regs::VFRE) & 1, 0, "VF 0's pool left off");
}
