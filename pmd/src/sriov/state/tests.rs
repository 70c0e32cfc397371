//! Tests of `state`.

use super::*;

fn sample() -> SavedState {
    let mut hashes = [0u16; MAX_MC_HASHES];
    hashes[0] = 0x123;
    hashes[1] = 0xfff;
    let v0 = SavedVf {
        policy: VfPolicy {
            mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            ..VfPolicy::default()
        },
        ready: true,
        mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
        mc_hashes: hashes,
        mc_count: 2,
        vlans: vec![5, 100, 4095],
        max_frame: 1522,
        mc_promisc: false,
    };
    let v1 = SavedVf {
        policy: VfPolicy {
            mac: None,
            trusted: true,
            kernel_driver: true,
            ..VfPolicy::default()
        },
        ready: false,
        mac: None,
        mc_hashes: [0; MAX_MC_HASHES],
        mc_count: 0,
        vlans: vec![],
        max_frame: 1518,
        mc_promisc: true,
    };
    SavedState {
        pf: PfIdentity {
            addr: PciAddress::parse("0000:00:02.0").unwrap(),
            vendor: 0x8086,
            device: 0x10c9,
        },
        pf_mac: MacAddr([0x52, 0x54, 0, 0, 1, 0]),
        vfs: vec![v0, v1],
    }
}

fn reseal(b: &mut [u8]) {
    let n = b.len() - CRC_LEN;
    let c = crc32(&b[..n]);
    b[n..].copy_from_slice(&c.to_le_bytes());
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn roundtrip_and_exact_length() {
    let s = sample();
    let b = encode(&s).unwrap();
    assert_eq!(b.len(), HEADER_LEN + 2 * VF_RECORD_LEN + CRC_LEN);
    assert_eq!(decode(&b).unwrap(), s);
    let empty = SavedState { vfs: vec![], ..s };
    assert_eq!(decode(&encode(&empty).unwrap()).unwrap(), empty);
}

#[test]
fn refuses_every_inconsistency() {
    let good = encode(&sample()).unwrap();
    // Every truncation and one extra byte.
    for n in 0..good.len() {
        assert!(decode(&good[..n]).is_err(), "truncated to {n} accepted");
    }
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(decode(&long), Err(StateError::Length { .. })));
    // Any single flipped bit is caught (checksum or a field check).
    for i in 0..good.len() {
        for bit in 0..8 {
            let mut b = good.clone();
            b[i] ^= 1 << bit;
            assert!(decode(&b).is_err(), "flip at byte {i} bit {bit} accepted");
        }
    }
    // Field checks behind a valid checksum.
    let edit = |i: usize, v: u8| {
        let mut b = good.clone();
        b[i] = v;
        reseal(&mut b);
        decode(&b)
    };
    assert!(matches!(edit(0, b'X'), Err(StateError::Magic)));
    assert!(matches!(edit(8, 3), Err(StateError::Version(3))));
    assert!(matches!(edit(8, 0), Err(StateError::Version(0))));
    assert!(matches!(edit(10, 33), Err(StateError::Header { .. })));
    assert!(matches!(edit(12, 0xff), Err(StateError::Length { .. })));
    assert!(matches!(edit(24, 3), Err(StateError::Header { .. })));
    assert!(matches!(edit(24, 200), Err(StateError::Header { .. })));
    assert!(matches!(edit(25, 1), Err(StateError::Header { .. })));
    assert!(matches!(edit(26, 0x01), Err(StateError::Header { .. })));
    let rec = HEADER_LEN;
    assert!(matches!(edit(rec, 1), Err(StateError::Record { vf: 0, .. })));
    assert!(matches!(edit(rec + 1, 0x80), Err(StateError::Record { .. })));
    // Untrusted VF whose MAC differs from its admin MAC.
    assert!(matches!(edit(rec + 13, 9), Err(StateError::Record { .. })));
    // max_vlans over 32.
    assert!(matches!(edit(rec + 14, 33), Err(StateError::Record { .. })));
    // VLAN count over the policy limit.
    assert!(matches!(edit(rec + 33, 9), Err(StateError::Record { .. })));
    // Unused hash entry non-zero.
    assert!(matches!(
        edit(rec + 34 + 2 * 5, 1),
        Err(StateError::Record { .. })
    ));
    // Unsorted VLANs: second VLAN (100) set to 1.
    assert!(matches!(
        edit(rec + 34 + 60 + 2, 1),
        Err(StateError::Record { .. })
    ));
    // Oversized body length with a consistent file length cannot overflow.
    let mut b = good.clone();
    b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut b);
    assert!(decode(&b).is_err());
}

#[test]
fn version_1_files_still_load_and_version_2_keeps_port_vlan_and_link() {
    let old = encode_version(&sample(), 1).unwrap();
    assert_eq!(u16::from_le_bytes([old[8], old[9]]), 1);
    assert_eq!(old.len(), HEADER_LEN + 2 * VF_RECORD_LEN_V1 + CRC_LEN);
    let st = decode(&old).unwrap();
    assert_eq!(st, sample());
    assert_eq!(st.vfs[0].policy.port_vlan, None);
    assert_eq!(st.vfs[0].policy.link, LinkState::Auto);
    // A version 1 header with version 2 records (or the reverse) is refused.
    let mut b = old.clone();
    b[8] = 2;
    reseal(&mut b);
    assert!(decode(&b).is_err());
    let mut s2 = sample();
    s2.vfs[0].policy.port_vlan = Some(100);
    s2.vfs[0].vlans.clear();
    s2.vfs[1].policy.link = LinkState::Disable;
    let new = encode(&s2).unwrap();
    assert_eq!(decode(&new).unwrap(), s2);
    assert!(
        encode_version(&s2, 1).is_err(),
        "version 1 cannot hold a port VLAN"
    );
    // Port VLAN out of range, unknown link code, reserved byte, VLANs beside a port VLAN.
    let rec0 = HEADER_LEN + VF_RECORD_LEN_V1;
    for (off, v) in [(rec0 + 1, 0x10), (rec0 + 2, 3), (rec0 + 3, 1)] {
        let mut b = new.clone();
        b[off] = v;
        reseal(&mut b);
        assert!(
            matches!(decode(&b), Err(StateError::Record { vf: 0, .. })),
            "edit at {off} accepted"
        );
    }
    let mut with_vlans = s2.clone();
    with_vlans.vfs[0].vlans = vec![5];
    assert!(decode(&encode(&with_vlans).unwrap()).is_err());
}

#[test]
fn identity_check() {
    let s = sample();
    let me = s.pf;
    assert!(s.check_identity(&me, 2).is_ok());
    assert!(matches!(
        s.check_identity(&me, 3),
        Err(StateError::VfCount { .. })
    ));
    let other = PfIdentity {
        addr: PciAddress::parse("0000:00:06.0").unwrap(),
        ..me
    };
    let e = s.check_identity(&other, 2).unwrap_err();
    assert!(e.to_string().contains("0000:00:06.0"), "{e}");
    let other = PfIdentity { device: 0x10ca, ..me };
    assert!(s.check_identity(&other, 2).is_err());
}

#[test]
fn random_bytes_never_panic() {
    let good = encode(&sample()).unwrap();
    let mut s = 0xDEAD_BEEF_1234_5678u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for _ in 0..20_000 {
        let len = (next() % (MAX_FILE_LEN as u64 + 8)) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if next() % 2 == 0 && b.len() >= 16 {
            b[..16].copy_from_slice(&good[..16]);
            reseal(&mut b);
        }
        let _ = decode(&b);
    }
    // Mutations of a good file that keep the checksum valid.
    for _ in 0..20_000 {
        let mut b = good.clone();
        for _ in 0..(1 + next() % 4) {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        reseal(&mut b);
        if let Ok(st) = decode(&b) {
            assert_eq!(decode(&encode(&st).unwrap()).unwrap(), st);
        }
    }
}

#[test]
fn save_and_load_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("oxpmd-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("pf.state");
    let s = sample();
    s.save(&p).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(SavedState::load(&p).unwrap(), s);
    std::fs::write(&p, b"garbage").unwrap();
    assert!(matches!(SavedState::load(&p), Err(StateError::Size { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}
