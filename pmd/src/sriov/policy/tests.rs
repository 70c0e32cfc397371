//! Tests of `policy`.

use super::*;
use crate::sriov::mailbox::{MSG_ACK, MSG_CTS, MSG_NACK, id};

const PF: MacAddr = MacAddr([0x52, 0x54, 0, 0, 1, 0]);

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn table(n: usize) -> VfTable {
    let policies = (0..n)
        .map(|i| VfPolicy {
            mac: Some(mac(i as u8 + 1)),
            ..VfPolicy::default()
        })
        .collect();
    VfTable::new(policies, PF, 0).unwrap()
}

fn send(t: &mut VfTable, vf: usize, r: VfRequest) -> Outcome {
    t.handle(vf, &r.encode(), 0)
}

fn ready(t: &mut VfTable, vf: usize) {
    let o = send(t, vf, VfRequest::Reset);
    assert!(o.refusal.is_none(), "{o:?}");
}

#[test]
fn reset_handshake_gives_the_admin_mac_and_cts_afterwards() {
    let mut t = table(2);
    let o = send(&mut t, 1, VfRequest::Reset);
    assert_eq!(o.reply.len, 3);
    assert_eq!(o.reply.words[0], MSG_ACK | 1);
    assert_eq!(
        mailbox::mac_from_words(o.reply.words[1], o.reply.words[2]),
        mac(2)
    );
    assert!(o.actions.contains(&HwAction::SetMac(mac(2))));
    assert!(o.actions.contains(&HwAction::EnablePool));
    assert_eq!(o.actions.first(), Some(&HwAction::DisablePool));
    let o = send(&mut t, 1, VfRequest::SetLpe { max_frame: 1522 });
    assert_eq!(o.reply.words[0], MSG_ACK | MSG_CTS | u32::from(id::SET_LPE));
    assert_eq!(o.actions, vec![HwAction::SetMaxFrame(1522)]);
    // VF 0 untouched.
    assert_eq!(t.vf(0).unwrap().phase, VfPhase::Resetting);
    assert_eq!(t.vf(0).unwrap().counters, VfCounters::default());
}

#[test]
fn nothing_but_reset_before_the_handshake() {
    let mut t = table(1);
    for r in [
        VfRequest::SetMac(mac(9)),
        VfRequest::SetVlan { vid: 5, add: true },
        VfRequest::SetLpe { max_frame: 1500 },
        VfRequest::SetPromisc {
            unicast: false,
            multicast: false,
        },
        VfRequest::SetMulticast {
            count: 0,
            hashes: [0; 30],
        },
    ] {
        let o = send(&mut t, 0, r);
        assert!(matches!(o.refusal, Some(Refusal::NotReady { .. })), "{o:?}");
        assert_eq!(o.reply.words[0] & (MSG_NACK | MSG_CTS), MSG_NACK);
        assert!(o.actions.is_empty());
    }
    // FLR puts a ready VF back to Resetting.
    ready(&mut t, 0);
    let a = t.flr(0);
    assert!(a.contains(&HwAction::DisablePool));
    let o = send(&mut t, 0, VfRequest::SetLpe { max_frame: 1500 });
    assert!(matches!(o.refusal, Some(Refusal::NotReady { .. })));
    assert_eq!(t.vf(0).unwrap().counters.flrs, 1);
}

#[test]
fn mac_policy() {
    let mut t = table(2);
    ready(&mut t, 0);
    // Untrusted with an admin MAC: refused (spoofing), the same MAC is fine.
    let o = send(&mut t, 0, VfRequest::SetMac(mac(0x42)));
    assert!(matches!(o.refusal, Some(Refusal::MacLocked { .. })), "{o:?}");
    assert_eq!(t.vf(0).unwrap().mac, Some(mac(1)));
    assert!(send(&mut t, 0, VfRequest::SetMac(mac(1))).refusal.is_none());
    // Trusted: may change, but never to another function's MAC.
    let mut p = VfPolicy {
        mac: Some(mac(1)),
        trusted: true,
        ..VfPolicy::default()
    };
    let mut t = VfTable::new(
        vec![
            p.clone(),
            VfPolicy {
                mac: Some(mac(2)),
                ..VfPolicy::default()
            },
        ],
        PF,
        0,
    )
    .unwrap();
    ready(&mut t, 0);
    assert!(matches!(
        send(&mut t, 0, VfRequest::SetMac(mac(2))).refusal,
        Some(Refusal::MacInUse { .. })
    ));
    assert!(matches!(
        send(&mut t, 0, VfRequest::SetMac(PF)).refusal,
        Some(Refusal::MacInUse { .. })
    ));
    let o = send(&mut t, 0, VfRequest::SetMac(mac(7)));
    assert_eq!(o.actions, vec![HwAction::SetMac(mac(7))]);
    // No admin MAC, untrusted: RESET is NACKed, then the VF may pick one.
    p.mac = None;
    p.trusted = false;
    let mut t = VfTable::new(vec![p], PF, 0).unwrap();
    let o = send(&mut t, 0, VfRequest::Reset);
    assert_eq!(o.refusal, Some(Refusal::NoMac));
    assert_eq!(o.reply.as_slice(), &[MSG_NACK | 1]);
    // Still not ready: a MAC cannot be set before a successful reset.
    assert!(matches!(
        send(&mut t, 0, VfRequest::SetMac(mac(3))).refusal,
        Some(Refusal::NotReady { .. })
    ));
    assert!(matches!(
        send(&mut t, 0, VfRequest::AddMacFilter(mac(3))).refusal,
        Some(Refusal::NotReady { .. })
    ));
}

#[test]
fn vlan_limit_and_idempotence() {
    let mut t = table(2);
    ready(&mut t, 0);
    ready(&mut t, 1);
    let mut refused = 0;
    for vid in 1..=300u16 {
        // One message a second: under the rate limit.
        let o = t.handle(
            0,
            &VfRequest::SetVlan { vid, add: true }.encode(),
            u64::from(vid) * 1000,
        );
        if o.refusal.is_some() {
            refused += 1;
            assert_eq!(o.refusal, Some(Refusal::VlanLimit { limit: 8 }));
        }
    }
    assert_eq!(refused, 292);
    assert_eq!(t.vf(0).unwrap().vlans.len(), 8);
    assert!(t.vf(1).unwrap().vlans.is_empty(), "VF 1 untouched");
    assert!(
        send(&mut t, 0, VfRequest::SetVlan { vid: 0, add: true })
            .refusal
            .is_none()
    );
    assert!(
        send(&mut t, 0, VfRequest::SetVlan { vid: 3, add: true })
            .refusal
            .is_none()
    );
    assert!(
        send(&mut t, 0, VfRequest::SetVlan { vid: 3, add: false })
            .refusal
            .is_none()
    );
    assert!(
        send(&mut t, 0, VfRequest::SetVlan { vid: 300, add: true })
            .refusal
            .is_none()
    );
    assert!(
        send(&mut t, 0, VfRequest::SetVlan { vid: 999, add: false })
            .refusal
            .is_none()
    );
}

#[test]
fn multicast_frame_and_promisc_bounds() {
    let mut t = table(2);
    ready(&mut t, 0);
    ready(&mut t, 1);
    let mut hashes = [0u16; 30];
    hashes[0] = 0x10;
    hashes[1] = 0x20;
    let o = send(&mut t, 0, VfRequest::SetMulticast { count: 2, hashes });
    assert_eq!(o.actions, vec![HwAction::UpdateMulticast]);
    let mut h1 = [0u16; 30];
    h1[0] = 0x20;
    h1[1] = 0x30;
    send(&mut t, 1, VfRequest::SetMulticast { count: 2, hashes: h1 });
    assert_eq!(t.multicast_union(), vec![0x10, 0x20, 0x30]);
    assert_eq!(t.vf(1).unwrap().multicast(), &[0x20, 0x30]);
    // Policy limit below 30.
    let mut t2 = VfTable::new(
        vec![VfPolicy {
            mac: Some(mac(1)),
            max_multicast: 4,
            ..VfPolicy::default()
        }],
        PF,
        0,
    )
    .unwrap();
    ready(&mut t2, 0);
    assert_eq!(
        send(&mut t2, 0, VfRequest::SetMulticast { count: 5, hashes }).refusal,
        Some(Refusal::MulticastLimit { count: 5, limit: 4 })
    );
    for (f, ok) in [
        (63, false),
        (64, true),
        (1518, true),
        (1522, true),
        (1526, true),
        (9022, true),
        (9023, false),
        (u32::MAX, false),
    ] {
        let o = send(&mut t, 0, VfRequest::SetLpe { max_frame: f });
        assert_eq!(o.refusal.is_none(), ok, "{f}");
    }
    assert_eq!(t.vf(0).unwrap().max_frame, 9022);
    assert_eq!(
        send(
            &mut t,
            0,
            VfRequest::SetPromisc {
                unicast: true,
                multicast: false
            }
        )
        .refusal,
        Some(Refusal::UnicastPromiscUnsupported)
    );
    assert_eq!(
        send(
            &mut t,
            0,
            VfRequest::SetPromisc {
                unicast: false,
                multicast: true
            }
        )
        .refusal,
        Some(Refusal::PromiscNotTrusted)
    );
    assert!(
        send(
            &mut t,
            0,
            VfRequest::SetPromisc {
                unicast: false,
                multicast: false
            }
        )
        .refusal
        .is_none()
    );
}

#[test]
fn rate_limit_per_vf() {
    let mut t = table(2);
    ready(&mut t, 0);
    ready(&mut t, 1);
    let lpe = VfRequest::SetLpe { max_frame: 1500 }.encode();
    let mut limited = 0;
    for _ in 0..1000 {
        if t.handle(0, &lpe, 0).refusal == Some(Refusal::RateLimited) {
            limited += 1;
        }
    }
    // Burst of 64, one used by the reset.
    assert_eq!(limited, 1000 - 63);
    assert_eq!(t.vf(0).unwrap().counters.rate_limited, 937);
    // VF 1 is not affected by VF 0's flood.
    assert!(t.handle(1, &lpe, 0).refusal.is_none());
    // Refill: 32 per second.
    assert!(t.handle(0, &lpe, 1000).refusal.is_none());
    let mut ok = 1;
    while t.handle(0, &lpe, 1000).refusal.is_none() {
        ok += 1;
    }
    assert_eq!(ok, 32);
    // A clock going backwards refills nothing and does not panic.
    assert_eq!(t.handle(0, &lpe, 0).refusal, Some(Refusal::RateLimited));
}

#[test]
fn out_of_range_vf_and_policy_validation() {
    let mut t = table(2);
    let o = t.handle(7, &VfRequest::Reset.encode(), 0);
    assert!(o.refusal.is_some());
    let o = t.handle(usize::MAX, &VfRequest::Reset.encode(), 0);
    assert!(o.refusal.is_some());
    assert!(t.flr(9).is_empty());
    let bad = VfPolicy {
        max_frame: 20_000,
        ..VfPolicy::default()
    };
    assert!(matches!(
        bad.validate(0),
        Err(PolicyError::OutOfRange {
            field: "max_frame",
            ..
        })
    ));
    let bad = VfPolicy {
        mac: Some(MacAddr([1, 0, 0, 0, 0, 1])),
        ..VfPolicy::default()
    };
    assert!(matches!(bad.validate(0), Err(PolicyError::BadMac { .. })));
    let dup = VfPolicy {
        mac: Some(mac(1)),
        ..VfPolicy::default()
    };
    assert!(matches!(
        VfTable::new(vec![dup.clone(), dup], PF, 0),
        Err(PolicyError::DuplicateMac { .. })
    ));
    assert!(matches!(
        VfTable::new(vec![VfPolicy::default(); 9], PF, 0),
        Err(PolicyError::TooManyVfs { count: 9 })
    ));
}

#[test]
fn random_traffic_never_panics_and_stays_per_vf() {
    let mut t = table(3);
    ready(&mut t, 2);
    let before = t.vf(2).unwrap().clone();
    let mut s = 0x1234_5678_9ABC_DEF1u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for i in 0..100_000u64 {
        let mut w = [0u32; MBX_WORDS];
        for x in w.iter_mut() {
            *x = next() as u32;
        }
        if next() % 2 == 0 {
            w[0] = (w[0] & 0x00FF_0000) | (next() % 8) as u32;
        }
        let vf = (next() % 2) as usize; // VFs 0 and 1 only
        let o = t.handle(vf, &w, i);
        assert!(o.reply.len >= 1 && o.reply.len <= MBX_WORDS);
        assert_eq!(o.refusal.is_some(), o.reply.words[0] & MSG_NACK != 0, "{o:?}");
        let st = t.vf(vf).unwrap();
        assert!(st.vlans.len() <= usize::from(st.policy.max_vlans));
        assert!(st.max_frame <= st.policy.max_frame);
        assert_eq!(st.mac, Some(mac(vf as u8 + 1)), "untrusted VF kept its MAC");
    }
    assert_eq!(t.vf(2).unwrap(), &before, "VF 2 untouched by the others");
}
