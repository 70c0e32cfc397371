//! The RX queue against the fake device.

use oxpmd_dma::{OffloadFlags, flush_thread_caches};

use super::fake::{Dev, FakeBell, Kind, Split, frame, hdr, rx_queue};
use crate::burst::Burst;
use crate::drivers::virtio::queue::VirtioRxQueue;
use crate::drivers::virtio::regs::nethdr;
use crate::drivers::virtio::split::Virtqueue;
use crate::stats::QueueCounters;
use crate::vport::virtual_pool;

both_kinds!(
    rx_chains_merged_buffers_into_one_packet,
    rx_delivers_frames_unchanged_across_wrap_around,
    rx_reports_validated_checksums_and_rings_only_when_asked,
    rx_drops_merged_frames_bad_lengths_and_counts_empty_pools,
    rx_arming_finds_frames_written_while_suppressed,
);

/// RX interrupts: suppressed until armed and again after; arming looks at the ring after
/// turning them on, so a frame that landed while they were off is reported, not slept on. Polling
/// never changes the suppression.
fn rx_arming_finds_frames_written_while_suppressed<K: Kind>() {
    let pool = virtual_pool("vio-rx-irq", 128, 32).unwrap();
    let bell = FakeBell::default();
    let mut q = rx_queue::<K>(&pool, 16, &bell);
    let mut dev = K::dev(q.ring());
    let (mut c, mut burst) = (QueueCounters::default(), Burst::new());
    assert!(!dev.interrupts_wanted(), "interrupts on before any arm");
    assert!(!q.arm_interrupt(), "an empty ring reported a frame");
    assert!(dev.interrupts_wanted());
    q.disarm_interrupt();
    assert!(!dev.interrupts_wanted());
    // A frame lands while suppressed (between the last empty poll and the arm).
    assert!(dev.deliver(hdr(1, 0), &frame(7, 60)));
    assert!(q.arm_interrupt(), "the look after arming missed the frame");
    q.disarm_interrupt();
    assert_eq!(q.rx_burst(&mut burst, &mut c), 1);
    assert!(!dev.interrupts_wanted(), "polling turned interrupts on");
    assert_eq!(burst.drain().next().unwrap().data(), &frame(7, 60)[..]);
    assert!(!q.arm_interrupt());
    q.disarm_interrupt();
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

fn rx_delivers_frames_unchanged_across_wrap_around<K: Kind>() {
    let pool = virtual_pool("vio-rx", 512, 32).unwrap();
    let bell = FakeBell::default();
    let mut q = rx_queue::<K>(&pool, 64, &bell);
    let mut dev = K::dev(q.ring());
    // Every buffer is posted device-writable, 12 bytes before the data offset.
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    let mut next = 0u32;
    let total = 1000u32;
    let mut sent = 0u32;
    while next < total {
        // The device fills up to 40 buffers, the driver takes bursts of 32.
        for _ in 0..40 {
            if sent < total && dev.deliver(hdr(1, 0), &frame(sent, 60 + (sent as usize % 1400))) {
                sent += 1;
            }
        }
        while q.rx_burst(&mut burst, &mut c) > 0 {
            for p in burst.drain() {
                assert_eq!(
                    p.data(),
                    &frame(next, 60 + (next as usize % 1400))[..],
                    "frame {next}"
                );
                assert_eq!(p.port(), 3);
                assert!(p.flags().is_empty());
                next += 1;
            }
        }
    }
    assert_eq!(c.packets, u64::from(total));
    let bytes: u64 = (0..total).map(|s| 60 + (s as u64 % 1400)).sum();
    assert_eq!(c.bytes, bytes);
    assert_eq!((c.ierrors, c.rx_nombuf, c.rx_multiseg_dropped), (0, 0, 0));
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    // The ring stays full: every buffer taken was replaced.
    assert_eq!(q.ring().num_free(), 0);
    drop(q);
    flush_thread_caches();
    let st = bell.state.lock().unwrap();
    assert_eq!(st.stops, 1);
    assert!(
        st.free_at_stop.unwrap() < pool.capacity(),
        "buffers were still held when the device was stopped"
    );
    assert_eq!(pool.available(), pool.capacity(), "no buffer leaked");
}

fn rx_reports_validated_checksums_and_rings_only_when_asked<K: Kind>() {
    let pool = virtual_pool("vio-rx-csum", 256, 0).unwrap();
    let bell = FakeBell::default();
    let mut q = rx_queue::<K>(&pool, 16, &bell);
    let mut dev = K::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    dev.set_no_notify(true);
    assert!(dev.deliver(hdr(1, nethdr::F_DATA_VALID), &frame(1, 100)));
    assert_eq!(q.rx_burst(&mut burst, &mut c), 1);
    assert_eq!(burst.as_slice()[0].flags(), OffloadFlags::RX_L4_CKSUM_GOOD);
    assert_eq!(
        bell.state.lock().unwrap().notifies,
        0,
        "the device asked for no notification"
    );
    dev.set_no_notify(false);
    assert!(dev.deliver(hdr(1, 0), &frame(2, 100)));
    assert_eq!(q.rx_burst(&mut burst, &mut c), 1);
    assert_eq!(
        bell.state.lock().unwrap().notifies,
        1,
        "buffers reposted: the device is told"
    );
    // Nothing new: no ring access beyond the used index, no notification.
    assert_eq!(q.rx_burst(&mut burst, &mut c), 0);
    assert_eq!(bell.state.lock().unwrap().notifies, 1);
}

fn rx_drops_merged_frames_bad_lengths_and_counts_empty_pools<K: Kind>() {
    let pool = virtual_pool("vio-rx-bad", 64 + 8, 0).unwrap();
    let bell = FakeBell::default();
    let mut q = rx_queue::<K>(&pool, 64, &bell);
    let mut dev = K::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    // A frame merged over 3 buffers: all three dropped, counted once.
    assert!(dev.deliver(hdr(3, 0), &frame(1, 1500)));
    assert!(dev.deliver(hdr(0, 0), &frame(2, 1500)));
    assert!(dev.deliver(hdr(0, 0), &frame(3, 100)));
    // A used length shorter than the header (a device bug).
    let (head, _) = dev.pop_avail().unwrap();
    dev.push_used(u32::from(head), 5);
    // A good one.
    assert!(dev.deliver(hdr(1, 0), &frame(4, 80)));
    assert_eq!(q.rx_burst(&mut burst, &mut c), 1);
    assert_eq!(burst.as_slice()[0].data(), &frame(4, 80)[..]);
    assert_eq!(c.rx_multiseg_dropped, 1);
    assert_eq!(c.ierrors, 1);
    assert_eq!(q.ring().num_free(), 0, "dropped buffers were reposted");
    // Empty pool: frames are dropped, counted, the buffers stay posted.
    let mut hold = Vec::new();
    while let Some(p) = pool.alloc() {
        hold.push(p);
    }
    burst.clear();
    for s in 0..5 {
        assert!(dev.deliver(hdr(1, 0), &frame(10 + s, 64)));
    }
    let got = q.rx_burst(&mut burst, &mut c);
    // Spare buffers taken before the pool ran dry may still deliver a few.
    assert_eq!(got as u64 + c.rx_nombuf, 5);
    assert!(c.rx_nombuf > 0);
    assert_eq!(q.ring().num_free(), 0);
    burst.clear();
    drop(hold);
    drop(q);
    flush_thread_caches();
    assert_eq!(pool.available(), pool.capacity(), "no buffer leaked");
}

/// MRG_RXBUF: a frame over several buffers becomes one chained packet, byte-exact; a frame whose
/// `num_buffers` exceeds what the largest frame needs is dropped whole and counted.
fn rx_chains_merged_buffers_into_one_packet<K: Kind>() {
    let pool = virtual_pool("vio-rx-mrg", 256, 0).unwrap();
    let bell = FakeBell::default();
    let mut q = rx_queue::<K>(&pool, 64, &bell);
    q.set_max_frame(9018);
    let mut dev = K::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    let jumbo = frame(1, 9014);
    let room = pool.data_room();
    let n = (9014usize + 12).div_ceil(room + 12) as u16;
    assert_eq!(dev.deliver_merged(&jumbo, n), usize::from(n));
    assert!(dev.deliver(hdr(1, 0), &frame(2, 80)));
    // A frame over 40 buffers: more than 9018 bytes need. The device's count is followed for
    // the buffers to drop (frame 4's buffer is the third of them), not for a packet.
    assert_eq!(dev.deliver_merged(&frame(3, 3000), 40), 2);
    assert!(dev.deliver(hdr(1, 0), &frame(4, 80)));
    assert_eq!(q.rx_burst(&mut burst, &mut c), 2);
    let v = burst.as_slice();
    assert_eq!((v[0].nb_segs(), v[0].len()), (usize::from(n), 9014));
    let got: Vec<u8> = v[0].segments().flatten().copied().collect();
    assert_eq!(got, jumbo);
    assert_eq!(v[1].data(), &frame(2, 80)[..]);
    assert_eq!((c.packets, c.bytes, c.rx_multiseg_dropped), (2, 9014 + 80, 1));
    burst.clear();
    assert_eq!(q.rx_burst(&mut burst, &mut c), 0);
    drop(burst);
    assert_eq!(q.ring().num_free(), 0, "every buffer went back to the device");
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    drop(q);
    flush_thread_caches();
    assert_eq!(pool.available(), pool.capacity(), "no buffer leaked");
}

#[test]
fn rx_refuses_pools_without_room_for_the_header() {
    let pool = virtual_pool("vio-rx-pool", 16, 0).unwrap();
    let bell = FakeBell::default();
    match VirtioRxQueue::new(Split::ring(32), bell, &pool, 0, 0, false) {
        Err(e) => assert!(e.to_string().contains("32 buffers"), "{e}"),
        Ok(_) => panic!("a 16-buffer pool cannot fill 32 entries"),
    }
    flush_thread_caches();
    assert_eq!(pool.available(), pool.capacity());
}
