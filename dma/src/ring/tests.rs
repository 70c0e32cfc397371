//! Unit tests of the ring and its handles (the MP/MC orderings are model-checked in
//! `tests/loom_ring.rs`).

use super::*;
use std::sync::atomic::AtomicUsize as StdAtomic;

#[test]
fn bad_sizes_are_errors() {
    assert_eq!(Ring::<u32>::new(0).unwrap_err(), RingError::ZeroSize);
    assert_eq!(
        Ring::<u32>::new(1000).unwrap_err(),
        RingError::NotPowerOfTwo {
            size: 1000,
            suggestion: 1024
        }
    );
    assert!(matches!(
        Ring::<u8>::new(RING_MAX_SIZE * 2),
        Err(RingError::TooLarge { .. })
    ));
    assert!(Ring::<u32>::new(1).is_ok());
}

#[test]
fn bulk_is_all_or_nothing_burst_is_partial() {
    let r = Ring::<u64>::new(8).unwrap();
    assert!(r.enqueue_bulk(&[1, 2, 3, 4, 5]));
    assert!(!r.enqueue_bulk(&[6, 7, 8, 9]));
    assert_eq!(r.len(), 5);
    assert_eq!(r.enqueue_burst(&[6, 7, 8, 9]), 3);
    assert!(r.is_full());
    let mut out = [0u64; 10];
    assert!(!r.dequeue_bulk(&mut out));
    assert!(r.dequeue_bulk(&mut out[..2]));
    assert_eq!(&out[..2], &[1, 2]);
    assert_eq!(r.dequeue_burst(&mut out), 6);
    assert_eq!(&out[..6], &[3, 4, 5, 6, 7, 8]);
    assert!(r.is_empty());
    assert_eq!(r.dequeue(), None);
}

#[test]
fn wraparound_keeps_fifo_order() {
    let (mut p, mut c) = Ring::<u32>::new(16)
        .unwrap()
        .split(SyncMode::Single, SyncMode::Single);
    assert!(p.try_clone().is_none());
    let mut next_in = 0u32;
    let mut next_out = 0u32;
    for round in 0..1000u32 {
        let k = (round % 13 + 1) as usize;
        let items: Vec<u32> = (next_in..next_in + k as u32).collect();
        if p.enqueue_bulk(&items) {
            next_in += k as u32;
        }
        let mut out = [0u32; 11];
        let m = (round % 11 + 1) as usize;
        let got = c.dequeue_burst(&mut out[..m]);
        for v in &out[..got] {
            assert_eq!(*v, next_out);
            next_out += 1;
        }
    }
    assert!(next_out > 1000);
}

#[test]
fn every_bulk_size_copies_exactly_with_wraparound() {
    // Sizes 1..=40 cover every inline copy path (blocks of 8, 4, 2, 1); 300 covers the
    // large-copy path; the odd start offset forces both wrap-around chunks.
    let r = Ring::<u64>::new(512).unwrap();
    let mut next = 0u64;
    for n in (1..=40).chain([300, 511, 512]) {
        assert!(r.enqueue_bulk(&[u64::MAX; 3]));
        let mut skip = [0u64; 3];
        assert!(r.dequeue_bulk(&mut skip));
        let src: Vec<u64> = (next..next + n as u64).collect();
        assert!(r.enqueue_bulk(&src));
        let mut dst = vec![0u64; n];
        assert!(r.dequeue_bulk(&mut dst));
        assert_eq!(dst, src, "bulk of {n}");
        next += n as u64;
    }
}

struct Counted<'a>(u32, &'a StdAtomic);
impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn moves_without_clone_and_drop_drains() {
    let drops = StdAtomic::new(0);
    {
        let r = Ring::new(4).unwrap();
        let mut v: Vec<Counted> = (0..6).map(|i| Counted(i, &drops)).collect();
        assert!(!r.enqueue_bulk_from_vec(&mut v));
        assert_eq!(v.len(), 6);
        assert_eq!(r.enqueue_burst_from_vec(&mut v), 4);
        assert_eq!(v.iter().map(|c| c.0).collect::<Vec<_>>(), vec![4, 5]);
        drop(v);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        let mut out = Vec::with_capacity(1);
        assert!(!r.dequeue_bulk_into_vec(&mut out, 2), "spare capacity is 1");
        assert!(r.dequeue_bulk_into_vec(&mut out, 1));
        assert_eq!(out[0].0, 0);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        assert_eq!(r.dequeue().map(|c| c.0), Some(1));
        assert_eq!(drops.load(Ordering::Relaxed), 3);
        drop(out);
        assert_eq!(drops.load(Ordering::Relaxed), 4);
        // two remain in the ring
    }
    assert_eq!(drops.load(Ordering::Relaxed), 6);
}

#[test]
fn split_after_shared_use_respects_capacity_and_moves_each_once() {
    // Regression: `split` used to start the single-mode cached tails at 0, so after use
    // through `&self` the SP free room and the SC entry count wrapped around.
    const CAP: usize = 8;
    let drops = StdAtomic::new(0);
    let r = Ring::new(CAP).unwrap();
    let mut next = 0u32;
    // Move the indices far from 0 and leave the ring partly full (3 elements).
    for _ in 0..13 {
        for _ in 0..5 {
            assert!(r.enqueue(Counted(next, &drops)).is_ok());
            next += 1;
        }
        let mut out = Vec::with_capacity(5);
        assert!(r.dequeue_bulk_into_vec(&mut out, 5));
    }
    for _ in 0..3 {
        assert!(r.enqueue(Counted(next, &drops)).is_ok());
        next += 1;
    }
    let dropped_before = drops.load(Ordering::Relaxed);
    assert_eq!(dropped_before, 13 * 5);
    let mut first_out = next - 3;
    let (mut p, mut c) = r.split(SyncMode::Single, SyncMode::Single);
    for round in 0..3 {
        // More than the free room in one bulk: refused whole.
        let free = if round == 0 { CAP - 3 } else { CAP };
        let mut too_many: Vec<Counted> = (0..=free as u32).map(|i| Counted(1000 + i, &drops)).collect();
        assert!(!p.enqueue_bulk_from_vec(&mut too_many), "round {round}");
        assert_eq!(too_many.len(), free + 1);
        drop(too_many);
        // Fill one by one: exactly the free room is accepted.
        let mut accepted = 0;
        loop {
            match p.enqueue(Counted(next, &drops)) {
                Ok(()) => {
                    accepted += 1;
                    next += 1;
                }
                Err(v) => {
                    core::mem::forget(v); // not counted as a drop of a ring element
                    break;
                }
            }
            assert!(accepted <= free, "round {round}: more than capacity accepted");
        }
        assert_eq!(accepted, free, "round {round}");
        assert_eq!(c.len(), CAP);
        // Drain exactly to empty, in order, each once.
        let mut got = Vec::new();
        while let Some(v) = c.dequeue() {
            assert!(got.len() < CAP, "round {round}: more than capacity dequeued");
            got.push(v.0);
            drop(v);
        }
        assert_eq!(got, (first_out..next).collect::<Vec<_>>(), "round {round}");
        first_out = next;
        let mut none = Vec::with_capacity(4);
        assert!(!c.dequeue_bulk_into_vec(&mut none, 1));
        assert_eq!(c.dequeue_burst_into_vec(&mut none, 4), 0);
    }
    // Leave the ring full: its Drop drops the rest.
    let mut fill: Vec<Counted> = (0..CAP as u32).map(|i| Counted(next + i, &drops)).collect();
    assert!(p.enqueue_bulk_from_vec(&mut fill));
    let dropped_mid = drops.load(Ordering::Relaxed);
    drop(p);
    drop(c);
    assert_eq!(drops.load(Ordering::Relaxed), dropped_mid + CAP);
    // Every element created was dropped exactly once: the 13 * 5 + 3 before the split, the
    // refused bulks (6, 9, 9), the fills (5, 8, 8) and the final CAP.
    let created = 13 * 5 + 3 + (CAP - 3 + 1) + (CAP - 3) + 2 * (CAP + 1) + 2 * CAP + CAP;
    assert_eq!(drops.load(Ordering::Relaxed), created);
}

#[test]
fn single_value_enqueue_gives_back_when_full() {
    let r = Ring::new(1).unwrap();
    assert!(r.enqueue(String::from("a")).is_ok());
    assert_eq!(r.enqueue(String::from("b")), Err(String::from("b")));
    assert_eq!(r.dequeue().as_deref(), Some("a"));
}

#[test]
fn spsc_threads_keep_order() {
    const N: u64 = 200_000;
    let (mut p, mut c) = Ring::<u64>::new(32)
        .unwrap()
        .split(SyncMode::Single, SyncMode::Single);
    let h = std::thread::spawn(move || {
        let mut i = 0;
        while i < N {
            let batch: Vec<u64> = (i..(i + 5).min(N)).collect();
            if p.enqueue_bulk(&batch) {
                i += batch.len() as u64;
            } else {
                std::thread::yield_now();
            }
        }
    });
    let mut next = 0;
    let mut out = [0u64; 7];
    while next < N {
        let n = c.dequeue_burst(&mut out);
        for v in &out[..n] {
            assert_eq!(*v, next);
            next += 1;
        }
        if n == 0 {
            std::thread::yield_now();
        }
    }
    h.join().unwrap();
    assert!(c.is_empty());
}

#[test]
fn mpmc_threads_lose_nothing() {
    const PER: u64 = 20_000;
    const PRODUCERS: u64 = 3;
    let (p, c) = Ring::<u64>::new(64)
        .unwrap()
        .split(SyncMode::Multi, SyncMode::Multi);
    let total = std::sync::Arc::new(StdAtomic::new(0));
    let sum = std::sync::Arc::new(StdAtomic::new(0));
    let mut hs = Vec::new();
    for t in 0..PRODUCERS {
        let mut p = p.try_clone().unwrap();
        hs.push(std::thread::spawn(move || {
            let mut i = 0;
            while i < PER {
                let batch: Vec<u64> = (i..(i + 7).min(PER)).map(|x| t * PER + x + 1).collect();
                if p.enqueue_bulk(&batch) {
                    i += batch.len() as u64;
                } else {
                    std::thread::yield_now();
                }
            }
        }));
    }
    for _ in 0..2 {
        let mut c = c.try_clone().unwrap();
        let (total, sum) = (total.clone(), sum.clone());
        hs.push(std::thread::spawn(move || {
            let mut out = [0u64; 5];
            while total.load(Ordering::Relaxed) < (PER * PRODUCERS) as usize {
                let n = c.dequeue_burst(&mut out);
                if n == 0 {
                    std::thread::yield_now();
                }
                sum.fetch_add(out[..n].iter().sum::<u64>() as usize, Ordering::Relaxed);
                total.fetch_add(n, Ordering::Relaxed);
            }
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    let n = PER * PRODUCERS;
    assert_eq!(total.load(Ordering::Relaxed) as u64, n);
    assert_eq!(sum.load(Ordering::Relaxed) as u64, n * (n + 1) / 2);
    assert!(c.is_empty());
}
#[test]
fn slots_start_on_a_cache_line_pair_when_the_element_size_divides_it() {
    fn first_slot<T>(r: &Ring<T>) -> usize {
        r.meta.slots().as_ptr() as usize
    }
    for _ in 0..8 {
        let a = Ring::<usize>::new(4096).unwrap();
        assert_eq!(first_slot(&a) % SLOT_ALIGN, 0);
        assert!(a.meta.slots().len() >= 4096);
        // 16-byte elements: aligned whenever the allocation is 16-byte aligned (as malloc's are).
        let b = Ring::<[u64; 2]>::new(64).unwrap();
        if b.meta.storage.as_ptr() as usize % 16 == 0 {
            assert_eq!(first_slot(&b) % SLOT_ALIGN, 0);
        }
        // 24-byte elements cannot be placed so; the ring still holds its slots.
        let c = Ring::<[u64; 3]>::new(16).unwrap();
        assert!(c.meta.slots().len() >= 16);
    }
}

#[test]
fn multi_handles_reload_a_cached_tail_left_a_lap_behind() {
    // Two producer and two consumer handles of one side each: the first of each pair moves the
    // ring through several laps while the second's cached tail stays where it was (0), then the
    // ring is left full (producer side) or empty (consumer side). The idle handles' cached
    // values then show room or elements past the capacity, which must be reloaded: used as
    // they are, the producer would overwrite unread slots and the consumer read stale ones.
    let (mut p, mut c) = Ring::<u32>::new(4)
        .unwrap()
        .split(SyncMode::Multi, SyncMode::Multi);
    let mut p_idle = p.try_clone().unwrap();
    let mut c_idle = c.try_clone().unwrap();
    let mut next = 0u32;
    let mut out = [0u32; 4];
    for _ in 0..3 {
        assert!(p.enqueue_bulk(&[next, next + 1, next + 2, next + 3]));
        assert!(c.dequeue_bulk(&mut out));
        assert_eq!(out, [next, next + 1, next + 2, next + 3]);
        next += 4;
    }
    assert!(p.enqueue_bulk(&[100, 101, 102, 103]));
    assert!(!p_idle.enqueue_bulk(&[7]), "a full ring took an element");
    assert_eq!(p_idle.enqueue_burst(&[7, 8]), 0);
    // The idle consumer, a lap behind: it sees the four published elements, in order.
    assert!(c_idle.dequeue_bulk(&mut out));
    assert_eq!(out, [100, 101, 102, 103]);
    // And on an empty ring its stale value (now behind the head the other consumer moved)
    // gives nothing.
    assert!(p.enqueue_bulk(&[1, 2]));
    assert!(c.dequeue_bulk(&mut out[..2]));
    assert!(
        !c_idle.dequeue_bulk(&mut out[..1]),
        "an empty ring gave an element"
    );
    assert_eq!(c_idle.dequeue_burst(&mut out), 0);
    assert!(p_idle.enqueue_bulk(&[9, 9, 9, 9]));
    assert!(c_idle.dequeue_bulk(&mut out));
    assert_eq!(out, [9, 9, 9, 9]);
}
