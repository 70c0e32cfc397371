//! Property tests (a fuzz target run by `cargo test`) of the SR-IOV code that reads untrusted
//! input: the mailbox parser and handler (a VF's 16 words), the state-file decoder (bytes
//! from disk) and the control-socket request parser (a client's line). Nothing may panic; accepted input must round-trip; per-VF state must stay within
//! its policy and other VFs must not change.

use oxpmd_pmd::MacAddr;
use oxpmd_pmd::sriov::control::{encode_request, parse_request};
use oxpmd_pmd::sriov::mailbox::{MBX_WORDS, MSG_NACK, VfRequest};
use oxpmd_pmd::sriov::state::{self, PfIdentity, SavedState};
use oxpmd_pmd::sriov::{VfPolicy, VfTable};
use oxpmd_vfio::PciAddress;
use proptest::prelude::*;

/// Mailbox words biased towards valid ids, small info values and small operands.
fn mailbox() -> impl Strategy<Value = [u32; MBX_WORDS]> {
    (
        prop_oneof![0u32..8, any::<u32>().prop_map(|v| v & 0xFFFF), any::<u32>()],
        prop_oneof![0u32..4, 0u32..256],
        prop::array::uniform15(prop_oneof![0u32..0x1000, any::<u32>()]),
        any::<bool>(),
    )
        .prop_map(|(id, info, rest, raw)| {
            let mut w = [0u32; MBX_WORDS];
            w[0] = if raw { id } else { (id & 0xFFFF) | (info << 16) };
            w[1..].copy_from_slice(&rest);
            w
        })
}

/// Control-socket lines: JSON objects built from the protocol's own words (so that many parse
/// and reach the per-field checks), and raw bytes.
fn control_line() -> impl Strategy<Value = Vec<u8>> {
    let word = prop_oneof![
        Just("op"),
        Just("vf"),
        Just("set"),
        Just("list"),
        Just("show"),
        Just("stats"),
        Just("open"),
        Just("mac"),
        Just("vlan"),
        Just("trust"),
        Just("spoofchk"),
        Just("state"),
        Just("max_frame"),
        Just("max_tx_rate"),
        Just("multicast"),
        Just("auto"),
        Just("disable"),
        Just("02:00:00:00:10:09"),
        Just("ff:ff:ff:ff:ff:ff"),
    ];
    let value = prop_oneof![
        word.clone().prop_map(|w| format!("\"{w}\"")),
        any::<i64>().prop_map(|n| n.to_string()),
        (0u32..5000).prop_map(|n| n.to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("[1,2]".to_string()),
        Just("1e99".to_string()),
    ];
    let field = (word, value).prop_map(|(k, v)| format!("\"{k}\":{v}"));
    let object = prop::collection::vec(field.clone(), 0..5).prop_map(|f| format!("{{{}}}", f.join(",")));
    let nested = (
        prop::collection::vec(field.clone(), 0..3),
        prop::collection::vec(field, 0..4),
    )
        .prop_map(|(outer, inner)| {
            let mut f = outer;
            f.push(format!("\"set\":{{{}}}", inner.join(",")));
            format!("{{{}}}", f.join(","))
        });
    prop_oneof![
        object.prop_map(String::into_bytes),
        nested.prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

fn table(n: usize) -> VfTable {
    let policies = (0..n)
        .map(|i| VfPolicy {
            mac: Some(MacAddr([2, 0, 0, 0, 0x10, i as u8])),
            ..VfPolicy::default()
        })
        .collect();
    VfTable::new(policies, MacAddr([0x52, 0x54, 0, 0, 1, 0]), 0).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn parse_is_total_and_round_trips(w in mailbox()) {
        if let Ok(r) = VfRequest::parse(&w) {
            prop_assert_eq!(VfRequest::parse(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn handler_keeps_per_vf_invariants(
        msgs in prop::collection::vec((0usize..3, mailbox(), 0u64..5000), 1..200),
    ) {
        let mut t = table(3);
        // VF 2 completes its handshake and is then left alone.
        t.handle(2, &VfRequest::Reset.encode(), 0);
        let vf2 = t.vf(2).unwrap().clone();
        let mut now = 0u64;
        for (vf, w, dt) in msgs {
            let vf = vf % 2;
            now += dt;
            let o = t.handle(vf, &w, now);
            prop_assert!(o.reply.len >= 1 && o.reply.len <= MBX_WORDS);
            prop_assert_eq!(o.refusal.is_some(), o.reply.words[0] & MSG_NACK != 0);
            let s = t.vf(vf).unwrap();
            prop_assert!(s.vlans.len() <= usize::from(s.policy.max_vlans));
            prop_assert!(s.mc_count <= s.policy.max_multicast);
            prop_assert!(s.max_frame <= s.policy.max_frame.max(1518));
            prop_assert_eq!(s.mac, s.policy.mac, "an untrusted VF keeps its admin MAC");
        }
        prop_assert_eq!(t.vf(2).unwrap(), &vf2);
        // Out-of-range VF indexes are refused, never a panic.
        prop_assert!(t.handle(usize::MAX, &[0; MBX_WORDS], now).refusal.is_some());
    }

    #[test]
    fn control_requests_parse_totally_and_round_trip(line in control_line()) {
        if let Ok(r) = parse_request(&line) {
            prop_assert_eq!(parse_request(encode_request(&r).as_bytes()), Ok(r));
        }
    }

    #[test]
    fn state_decoder_is_total(bytes in prop::collection::vec(any::<u8>(), 0..1400)) {
        let _ = state::decode(&bytes);
    }

    #[test]
    fn mutated_state_is_refused_or_consistent(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        reseal in any::<bool>(),
    ) {
        let mut t = table(2);
        t.handle(0, &VfRequest::Reset.encode(), 0);
        let st = SavedState {
            pf: PfIdentity {
                addr: PciAddress::parse("0000:00:02.0").unwrap(),
                vendor: 0x8086,
                device: 0x10c9,
            },
            pf_mac: t.pf_mac(),
            vfs: (0..2).map(|i| t.snapshot(i).unwrap()).collect(),
        };
        let good = state::encode(&st).unwrap();
        prop_assert_eq!(state::decode(&good).unwrap(), st.clone());
        let mut b = good.clone();
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        if reseal {
            let n = b.len() - state::CRC_LEN;
            let c = state::crc32(&b[..n]);
            b[n..].copy_from_slice(&c.to_le_bytes());
        }
        match state::decode(&b) {
            Ok(d) => {
                prop_assert_eq!(state::decode(&state::encode(&d).unwrap()).unwrap(), d.clone());
                if !reseal {
                    // Without a recomputed checksum only a no-op edit can pass.
                    prop_assert_eq!(b, good);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
