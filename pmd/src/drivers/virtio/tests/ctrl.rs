//! The control queue against the fake device: the chains it builds, the acks it checks, and the
//! bytes of the RX filter commands as the device reads them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::fake::{FakeBell, FakeDevice, Kind, Split};
use crate::adv_ring::HeapRingMemory;
use crate::drivers::virtio::ctrl::{self, CtrlCommand, CtrlError, CtrlQueue};
use crate::drivers::virtio::filters::{FilterCommand, MAX_MULTICAST, RxFilters};
use crate::drivers::virtio::regs::feature;
use crate::drivers::virtio::split::{DESC_F_WRITE, SplitRing};
use crate::mac::MacAddr;

/// A command as the device read it: class, command, data.
type Seen = Vec<(u8, u8, Vec<u8>)>;

type FakeCtrlQueue = CtrlQueue<FakeBell, SplitRing<HeapRingMemory>, HeapRingMemory>;

/// Entries of the control ring in these tests.
const SIZE: usize = 16;

/// Runs `driver` against a control queue whose device (a thread playing the device side of the
/// ring) checks each chain's shape, records the command and answers with `ack(class, cmd, data)`.
/// Returns what the device read, and checks that the ring is whole again and nothing the driver
/// did broke the protocol.
fn with_ctrl_device(ack: fn(u8, u8, &[u8]) -> u8, driver: impl FnOnce(&mut FakeCtrlQueue)) -> Seen {
    let bell = FakeBell::default();
    let mut q = CtrlQueue::new(
        Split::ring(SIZE),
        HeapRingMemory::new(ctrl::BUFFER_BYTES.div_ceil(16)),
        bell.clone(),
    )
    .unwrap();
    let dev = Mutex::new(FakeDevice::new(q.ring()));
    let seen: Mutex<Seen> = Mutex::default();
    let stop = AtomicBool::new(false);
    // The device thread reads the ring's memory: it is scoped and told to stop on every way out
    // of the driver's side (a failed assertion included), so it never outlives the ring.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let (dev, seen, stop) = (&dev, &seen, &stop);
        scope.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut d = dev.lock().unwrap();
                if let Some((head, chain)) = d.pop_avail() {
                    assert_eq!(chain.len(), 3, "header, data, ack");
                    assert_eq!(chain[0].1, 2);
                    assert_eq!(chain[0].2 & DESC_F_WRITE, 0);
                    assert_eq!(chain[1].2 & DESC_F_WRITE, 0);
                    assert_eq!((chain[2].1, chain[2].2 & DESC_F_WRITE), (1, DESC_F_WRITE));
                    // SAFETY: the driver posted these buffers (IOVA = VA in this test).
                    let (class, cmd, data) = unsafe {
                        let h = chain[0].0 as *const u8;
                        (
                            *h,
                            *h.add(1),
                            std::slice::from_raw_parts(chain[1].0 as *const u8, chain[1].1 as usize).to_vec(),
                        )
                    };
                    // SAFETY: the ack byte is device-writable.
                    unsafe { *(chain[2].0 as *mut u8) = ack(class, cmd, &data) };
                    seen.lock().unwrap().push((class, cmd, data));
                    d.push_used(u32::from(head), 1);
                }
                drop(d);
                std::thread::yield_now();
            }
        });
        let _stop = StopOnDrop(stop);
        driver(&mut q);
    });
    let seen = seen.into_inner().unwrap();
    assert_eq!(
        bell.state.lock().unwrap().notifies,
        seen.len(),
        "one doorbell per command"
    );
    assert_eq!(q.ring().num_free(), SIZE);
    assert!(dev.lock().unwrap().violations.is_empty());
    seen
}

#[test]
fn control_commands_are_three_descriptor_chains_and_acks_are_checked() {
    // The device answers ack = 0 for class 0, 1 otherwise.
    let seen = with_ctrl_device(
        |class, _, _| u8::from(class != 0),
        |q| {
            q.command(0, 0, &[1]).unwrap();
            q.command(0, 1, &[0]).unwrap();
            let e = q.command(1, 1, &[2, 0, 0, 0, 0, 7]).unwrap_err();
            assert_eq!(
                e,
                CtrlError::Refused {
                    class: 1,
                    cmd: 1,
                    ack: 1
                }
            );
            assert!(matches!(q.command(0, 0, &[]), Err(CtrlError::Invalid { .. })));
            let too_long = vec![0; ctrl::MAX_DATA + 1];
            assert!(matches!(
                q.command(0, 0, &too_long),
                Err(CtrlError::Invalid { .. })
            ));
        },
    );
    assert_eq!(
        seen,
        vec![(0, 0, vec![1]), (0, 1, vec![0]), (1, 1, vec![2, 0, 0, 0, 0, 7])]
    );
}

fn group(n: u8) -> MacAddr {
    MacAddr([0x01, 0x00, 0x5e, 0x01, 0x02, n])
}

/// The RX filter commands as the device reads them (virtio 1.2, 5.1.6.5.2 and 5.1.6.5.3):
/// VLAN_ADD / VLAN_DEL (class 2, commands 0 / 1) with a le16 VLAN id; MAC_TABLE_SET (class 1,
/// command 0) with an empty unicast table (le32 0) then the multicast one (le32 n, n addresses),
/// a full table of 64 groups in one command; the RX modes (class 0) as before.
#[test]
fn filter_commands_carry_the_specifications_bytes() {
    let groups: Vec<MacAddr> = (0..MAX_MULTICAST as u8).map(group).collect();
    let seen = with_ctrl_device(
        |_, _, _| 0,
        |q| {
            for c in [
                FilterCommand::vlan(100, true),
                FilterCommand::vlan(4095, true),
                FilterCommand::vlan(100, false),
                FilterCommand::mac_table(&[group(3), group(9)]),
                FilterCommand::mac_table(&[]),
                FilterCommand::mac_table(&groups),
                FilterCommand::all_multicast(true),
                FilterCommand::promiscuous(false),
            ] {
                c.send(q).unwrap_or_else(|e| panic!("{}: {e}", c.op));
            }
        },
    );
    let mut two = vec![0, 0, 0, 0, 2, 0, 0, 0];
    two.extend_from_slice(&group(3).0);
    two.extend_from_slice(&group(9).0);
    let mut full = vec![0, 0, 0, 0, 64, 0, 0, 0];
    for g in &groups {
        full.extend_from_slice(&g.0);
    }
    assert_eq!(
        full.len(),
        ctrl::MAX_DATA,
        "a full table is the most one command carries"
    );
    assert_eq!(
        seen,
        vec![
            (2, 0, vec![100, 0]),
            (2, 0, vec![0xff, 0x0f]),
            (2, 1, vec![100, 0]),
            (1, 0, two),
            (1, 0, vec![0; 8]),
            (1, 0, full),
            (0, 1, vec![1]),
            (0, 0, vec![0]),
        ]
    );
}

/// What the driver sends after DRIVER_OK, read by the device in order: every VLAN id (those of
/// the table added, the others removed), the multicast list, all-multicast and promiscuous mode;
/// through a device that refuses VLAN commands, the replay stops at the first refusal and names
/// it.
#[test]
fn filters_are_replayed_in_order_and_a_refusal_names_its_operation() {
    let mut f = RxFilters::default();
    f.set_vlan(7, true);
    f.set_vlan(300, true);
    f.set_multicast(&[group(1)]);
    f.promiscuous = true;
    let features = feature::NET_CTRL_VQ | feature::NET_CTRL_RX | feature::NET_CTRL_VLAN;
    let seen = with_ctrl_device(|_, _, _| 0, |q| f.replay(features, q).unwrap());
    let mut want: Seen = (0..=4095u16)
        .map(|v| (2, u8::from(v != 7 && v != 300), v.to_le_bytes().to_vec()))
        .collect();
    let mut table = vec![0, 0, 0, 0, 1, 0, 0, 0];
    table.extend_from_slice(&group(1).0);
    want.extend([(1, 0, table), (0, 1, vec![0]), (0, 0, vec![1])]);
    assert_eq!(seen.len(), want.len());
    assert_eq!(seen, want);
    assert_eq!(seen[300], (2, 0, vec![44, 1]), "VLAN_ADD 300 (le16)");
    let mut failed = None;
    let seen = with_ctrl_device(
        |class, _, _| u8::from(class == 2),
        |q| failed = f.replay(features, q).err(),
    );
    assert_eq!(seen, vec![(2, 1, vec![0, 0])], "nothing after the refusal");
    let (op, e) = failed.expect("the device refused");
    assert_eq!(op, "remove a VLAN filter");
    assert_eq!(
        e,
        CtrlError::Refused {
            class: 2,
            cmd: 1,
            ack: 1
        }
    );
}
