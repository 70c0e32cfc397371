//! Model check of the ring's multi-producer / multi-consumer paths with loom: every
//! interleaving (up to the preemption bound) must deliver each element exactly once, in order
//! per producer, with no data race on the slots (loom tracks slot accesses).
//!
//! Run with:
//!     RUSTFLAGS="--cfg loom" cargo test -p oxpmd-dma --release --test loom_ring
//! (LOOM_MAX_PREEMPTIONS overrides the bound of 3 used here.)
#![cfg(loom)]

use loom::thread;
use oxpmd_dma::{Ring, SyncMode};
use std::sync::Arc;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// Checks that `got` holds each of `expected` once and keeps each producer's order.
fn check(mut got: Vec<u32>, producers: u32, per: u32) {
    for p in 0..producers {
        let mine: Vec<u32> = got.iter().copied().filter(|v| v / 100 == p).collect();
        let want: Vec<u32> = (0..per).map(|i| p * 100 + i).collect();
        assert_eq!(mine, want, "producer {p}: lost, duplicated or reordered: {got:?}");
    }
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len() as u32, producers * per);
}

#[test]
fn two_producers_bulk_then_drain() {
    model(|| {
        let ring = Arc::new(Ring::<u32>::new(4).unwrap());
        let hs: Vec<_> = (0..2u32)
            .map(|p| {
                let r = ring.clone();
                thread::spawn(move || assert!(r.enqueue_bulk(&[p * 100, p * 100 + 1])))
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let mut out = [0u32; 4];
        assert!(ring.dequeue_bulk(&mut out));
        check(out.to_vec(), 2, 2);
    });
}

#[test]
fn two_consumers_race_for_elements() {
    model(|| {
        let ring = Arc::new(Ring::<u32>::new(4).unwrap());
        assert!(ring.enqueue_bulk(&[0, 1, 2]));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let r = ring.clone();
                thread::spawn(move || {
                    let mut out = [0u32; 2];
                    let n = r.dequeue_burst(&mut out);
                    out[..n].to_vec()
                })
            })
            .collect();
        let mut got: Vec<u32> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        while let Some(v) = ring.dequeue() {
            got.push(v);
        }
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 2]);
    });
}

#[test]
fn producers_and_consumers_concurrently_with_wraparound() {
    model(|| {
        // Size 2 with 2 + 2 elements forces wrap-around and full-ring refusals.
        let (p, c) = Ring::<u32>::new(2)
            .unwrap()
            .split(SyncMode::Multi, SyncMode::Multi);
        let mut hs = Vec::new();
        for id in 0..2u32 {
            let mut p = p.try_clone().unwrap();
            hs.push(thread::spawn(move || {
                let mut i = 0;
                let mut tries = 0;
                while i < 2 && tries < 3 {
                    if p.enqueue(id * 100 + i).is_ok() {
                        i += 1;
                    } else {
                        thread::yield_now();
                    }
                    tries += 1;
                }
                i
            }));
        }
        let mut c2 = c.try_clone().unwrap();
        let consumer = thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..2 {
                let mut out = [0u32; 2];
                let n = c2.dequeue_burst(&mut out);
                got.extend_from_slice(&out[..n]);
                thread::yield_now();
            }
            got
        });
        let sent: Vec<u32> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        let mut got = consumer.join().unwrap();
        let mut c = c;
        while let Some(v) = c.dequeue() {
            got.push(v);
        }
        // Exactly what was accepted came out, once each, in per-producer order.
        for (id, &n) in sent.iter().enumerate() {
            let id = id as u32;
            let mine: Vec<u32> = got.iter().copied().filter(|v| v / 100 == id).collect();
            assert_eq!(mine, (0..n).map(|i| id * 100 + i).collect::<Vec<_>>(), "{got:?}");
        }
        assert_eq!(got.len() as u32, sent.iter().sum::<u32>());
    });
}

#[test]
fn single_producer_single_consumer_with_cached_tails() {
    model(|| {
        // The SP/SC handles cache the opposite tail; size 2 with 3 elements forces refreshes,
        // refusals and wrap-around.
        let (mut p, mut c) = Ring::<u32>::new(2)
            .unwrap()
            .split(SyncMode::Single, SyncMode::Single);
        let producer = thread::spawn(move || {
            let mut sent = 0;
            for _ in 0..4 {
                if sent < 3 && p.enqueue_bulk(&[sent]) {
                    sent += 1;
                } else {
                    thread::yield_now();
                }
            }
            sent
        });
        let mut got = Vec::new();
        for _ in 0..3 {
            let mut out = [0u32; 2];
            let n = c.dequeue_burst(&mut out);
            got.extend_from_slice(&out[..n]);
            thread::yield_now();
        }
        let sent = producer.join().unwrap();
        while let Some(v) = c.dequeue() {
            got.push(v);
        }
        assert_eq!(got, (0..sent).collect::<Vec<_>>());
    });
}

#[test]
fn split_after_shared_use_single_producer_single_consumer() {
    model(|| {
        // The ring is used through `&self` first (indices 3, one element left), then split:
        // the SP/SC cached tails must start from the ring's state, not from 0.
        let ring = Ring::<u32>::new(2).unwrap();
        assert!(ring.enqueue_bulk(&[90, 91]));
        assert_eq!(ring.dequeue(), Some(90));
        assert!(ring.enqueue_bulk(&[0]));
        assert_eq!(ring.dequeue(), Some(91));
        let (mut p, mut c) = ring.split(SyncMode::Single, SyncMode::Single);
        assert!(
            !p.enqueue_bulk(&[7, 7]),
            "one slot is taken: a bulk of 2 must not fit"
        );
        let producer = thread::spawn(move || {
            let mut sent = 1;
            for _ in 0..3 {
                if sent < 3 && p.enqueue_bulk(&[sent]) {
                    sent += 1;
                } else {
                    thread::yield_now();
                }
            }
            sent
        });
        let mut got = Vec::new();
        for _ in 0..2 {
            let mut out = [0u32; 2];
            let n = c.dequeue_burst(&mut out);
            got.extend_from_slice(&out[..n]);
            thread::yield_now();
        }
        let sent = producer.join().unwrap();
        while let Some(v) = c.dequeue() {
            got.push(v);
        }
        assert_eq!(got, (0..sent).collect::<Vec<_>>());
    });
}
