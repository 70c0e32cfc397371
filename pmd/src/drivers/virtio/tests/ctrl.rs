//! The control queue against the fake device.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::fake::{FakeBell, FakeDevice, Kind, Split};
use crate::adv_ring::HeapRingMemory;
use crate::drivers::virtio::ctrl::{CtrlCommand, CtrlError, CtrlQueue};
use crate::drivers::virtio::split::DESC_F_WRITE;

#[test]
fn control_commands_are_three_descriptor_chains_and_acks_are_checked() {
    let size = 16;
    let bell = FakeBell::default();
    let mut q = CtrlQueue::new(Split::ring(size), HeapRingMemory::new(4), bell.clone()).unwrap();
    let dev = Arc::new(Mutex::new(FakeDevice::new(q.ring())));
    // The device: answers each command with ack = 0 for class 0, 1 otherwise, and records it.
    type Seen = Vec<(u8, u8, Vec<u8>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // The device thread reads the ring's memory: it is scoped and told to stop on every way out
    // of the driver's side (a failed assertion included), so it never outlives the ring.
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
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
                    unsafe { *(chain[2].0 as *mut u8) = u8::from(class != 0) };
                    seen.lock().unwrap().push((class, cmd, data));
                    d.push_used(u32::from(head), 1);
                }
                drop(d);
                std::thread::yield_now();
            }
        });
        let _stop = StopOnDrop(stop);
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
        assert!(matches!(q.command(0, 0, &[0; 9]), Err(CtrlError::Invalid { .. })));
    });
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(0, 0, vec![1]), (0, 1, vec![0]), (1, 1, vec![2, 0, 0, 0, 0, 7])]
    );
    assert_eq!(bell.state.lock().unwrap().notifies, 3, "one doorbell per command");
    assert_eq!(q.ring().num_free(), size);
    assert!(dev.lock().unwrap().violations.is_empty());
}
