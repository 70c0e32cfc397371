//! Chained packets against real pools (logic: lengths, links, copies, and that every segment
//! goes back to its own pool).

use std::sync::Arc;

use super::*;
use crate::map::IdentityMap;
use crate::mempool::{Mempool, MempoolConfig};
use crate::region::{PageSize, RegionOptions};

fn pool(name: &str, capacity: usize, data_room: usize) -> Mempool {
    let config = MempoolConfig {
        cache_size: 0,
        data_room,
        region: RegionOptions {
            page_size: PageSize::Base4K,
            allow_4k_fallback: true,
        },
        ..MempoolConfig::new(name, capacity)
    };
    Mempool::new(&config, Arc::new(IdentityMap)).unwrap()
}

/// A packet of `pool` holding `bytes`.
fn seg(pool: &Mempool, bytes: &[u8]) -> Packet {
    let mut p = pool.alloc().unwrap();
    p.extend_from_slice(bytes).unwrap();
    p
}

/// A chain of segments of `sizes` bytes over `pool`, holding 0, 1, 2, ... (mod 251).
fn chain_of(pool: &Mempool, sizes: &[usize]) -> (Packet, Vec<u8>) {
    let all: Vec<u8> = (0..sizes.iter().sum::<usize>())
        .map(|i| (i % 251) as u8)
        .collect();
    let mut b = ChainBuilder::new();
    let mut at = 0;
    for &n in sizes {
        b.push(seg(pool, &all[at..at + n])).unwrap();
        at += n;
    }
    (b.take().unwrap(), all)
}

fn bytes_of(p: &Packet) -> Vec<u8> {
    p.segments().flatten().copied().collect()
}

#[test]
fn metadata_is_two_cache_lines_with_the_link_in_the_second() {
    assert_eq!(META_SIZE, 128);
    assert_eq!(core::mem::offset_of!(BufMeta, next), 64);
    assert!(core::mem::offset_of!(BufMeta, nb_segs) < 64 && core::mem::offset_of!(BufMeta, pkt_len) < 64);
}

#[test]
fn a_chain_counts_its_segments_and_bytes_and_frees_them_all() {
    let p = pool("chain", 16, 2048);
    let (pkt, all) = chain_of(&p, &[2000, 2048, 1000, 1]);
    assert_eq!(pkt.nb_segs(), 4);
    assert_eq!(pkt.len(), 5049);
    assert_eq!(pkt.seg_len(), 2000);
    assert!(!pkt.is_contiguous());
    assert_eq!(
        pkt.segments().map(<[u8]>::len).collect::<Vec<_>>(),
        [2000, 2048, 1000, 1]
    );
    assert_eq!(bytes_of(&pkt), all);
    assert_eq!(p.in_use(), 4);
    drop(pkt);
    assert_eq!(p.in_use(), 0);
    // Every buffer went back single: allocating them all again gives one-segment packets.
    let again: Vec<Packet> = (0..16).map(|_| p.alloc().unwrap()).collect();
    assert!(again.iter().all(|q| q.nb_segs() == 1 && q.is_empty()));
}

#[test]
fn segments_of_different_pools_each_return_to_their_own() {
    let a = pool("head", 4, 256);
    let b = pool("body", 4, 3968);
    let mut pkt = seg(&a, &[1; 54]);
    pkt.chain(seg(&b, &[2; 3900])).unwrap();
    pkt.chain(seg(&b, &[3; 10])).unwrap();
    assert_eq!((pkt.nb_segs(), pkt.len()), (3, 3964));
    assert_eq!((a.in_use(), b.in_use()), (1, 2));
    drop(pkt);
    assert_eq!((a.in_use(), b.in_use()), (0, 0));
}

#[test]
fn chaining_a_chain_links_all_of_it() {
    let p = pool("cc", 8, 512);
    let (mut x, xa) = chain_of(&p, &[100, 200]);
    let (y, ya) = chain_of(&p, &[300, 50, 7]);
    x.chain(y).unwrap();
    assert_eq!((x.nb_segs(), x.len()), (5, 657));
    let mut want = xa;
    want.extend(ya);
    assert_eq!(bytes_of(&x), want);
}

#[test]
fn copy_out_and_in_cross_segment_boundaries_and_refuse_ranges_outside() {
    let p = pool("copy", 8, 512);
    let (mut pkt, all) = chain_of(&p, &[10, 3, 500, 1]);
    for (off, n) in [(0, 514), (9, 2), (10, 3), (12, 490), (513, 1), (514, 0), (7, 0)] {
        let mut out = vec![0; n];
        pkt.copy_out(off, &mut out).unwrap();
        assert_eq!(out, all[off..off + n], "range {off}+{n}");
    }
    assert!(matches!(
        pkt.copy_out(510, &mut [0; 5]),
        Err(PacketError::OutOfRange {
            offset: 510,
            end: 515,
            len: 514
        })
    ));
    assert!(pkt.copy_out(usize::MAX, &mut [0; 2]).is_err());
    pkt.copy_in(8, &[0xAA; 8]).unwrap();
    let mut want = all.clone();
    want[8..16].fill(0xAA);
    assert_eq!(bytes_of(&pkt), want);
    assert!(pkt.copy_in(510, &[0; 5]).is_err());
    assert_eq!(bytes_of(&pkt), want, "a refused copy changes nothing");
}

#[test]
fn length_operations_keep_the_total_in_step() {
    let p = pool("lens", 8, 512);
    let (mut pkt, _) = chain_of(&p, &[100, 100]);
    pkt.prepend(14).unwrap().fill(0xEE);
    assert_eq!((pkt.len(), pkt.seg_len()), (214, 114));
    pkt.append(20).unwrap().fill(0xDD);
    assert_eq!(pkt.len(), 234);
    assert_eq!(
        pkt.segments().last().unwrap().len(),
        120,
        "append goes to the last segment"
    );
    pkt.trim(120).unwrap();
    assert_eq!(pkt.len(), 114);
    assert!(pkt.trim(1).is_none(), "trim stays inside the last segment");
    assert_eq!(pkt.nb_segs(), 2, "an emptied last segment stays linked");
    pkt.adjust(14).unwrap();
    assert_eq!((pkt.len(), pkt.seg_len()), (100, 100));
    assert!(pkt.adjust(101).is_none(), "adjust stays inside the head segment");
    assert!(matches!(
        pkt.set_len(10),
        Err(PacketError::Chained { nb_segs: 2, .. })
    ));
    assert!(matches!(
        pkt.extend_from_slice(&[0; 513]),
        Err(PacketError::TooLong { .. })
    ));
    assert_eq!(pkt.len(), 100, "a refused append changes nothing");
}

#[test]
fn split_first_segment_gives_single_packets_that_free_alone() {
    let p = pool("split", 8, 512);
    let (mut pkt, all) = chain_of(&p, &[64, 128, 256]);
    pkt.set_port(3);
    let (first, rest) = pkt.split_first_segment();
    assert_eq!((first.nb_segs(), first.len(), first.port()), (1, 64, 3));
    assert_eq!(first.data(), &all[..64]);
    let rest = rest.unwrap();
    assert_eq!((rest.nb_segs(), rest.len()), (2, 384));
    assert_eq!(bytes_of(&rest), all[64..]);
    drop(first);
    assert_eq!(p.in_use(), 2);
    let (second, rest) = rest.split_first_segment();
    let (third, none) = rest.unwrap().split_first_segment();
    assert!(none.is_none());
    assert_eq!((second.len(), third.len()), (128, 256));
    drop((second, third));
    assert_eq!(p.in_use(), 0);
}

#[test]
fn linearize_moves_the_frame_into_the_head_when_it_fits() {
    let p = pool("lin", 8, 3000);
    let (mut pkt, all) = chain_of(&p, &[1000, 1000, 96]);
    pkt.linearize().unwrap();
    assert!(pkt.is_contiguous());
    assert_eq!(pkt.data(), &all[..]);
    assert_eq!(p.in_use(), 1, "the other segments were freed");

    let (mut big, all) = chain_of(&p, &[2000, 2000]);
    assert!(matches!(
        big.linearize(),
        Err(PacketError::TooLong { len: 4000, .. })
    ));
    assert_eq!(bytes_of(&big), all, "a refused linearize changes nothing");
}

#[test]
fn reset_frees_the_segments_after_the_head() {
    let p = pool("reset", 4, 512);
    let (mut pkt, _) = chain_of(&p, &[10, 20, 30]);
    pkt.reset();
    assert_eq!((pkt.nb_segs(), pkt.len(), p.in_use()), (1, 0, 1));
}

#[test]
fn the_builder_refuses_a_chain_as_a_segment() {
    let p = pool("b", 4, 512);
    let (c, _) = chain_of(&p, &[10, 10]);
    let mut b = ChainBuilder::new();
    assert!(b.is_empty());
    assert!(matches!(b.push(c), Err(PacketError::Chained { nb_segs: 2, .. })));
    assert_eq!(p.in_use(), 0, "the refused segment was freed");
    b.push(seg(&p, &[1; 5])).unwrap();
    b.push(seg(&p, &[2; 6])).unwrap();
    assert_eq!((b.nb_segs(), b.len()), (2, 11));
    drop(b);
    assert_eq!(p.in_use(), 0, "a dropped builder frees its partial packet");
}

#[test]
fn segments_mut_writes_every_segment() {
    let p = pool("m", 4, 512);
    let (mut pkt, _) = chain_of(&p, &[3, 4, 5]);
    for (i, s) in pkt.segments_mut().enumerate() {
        s.fill(i as u8 + 1);
    }
    assert_eq!(bytes_of(&pkt), [1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3]);
}

#[test]
fn dma_segments_name_each_segment_data() {
    let p = pool("dma", 4, 512);
    let (mut pkt, _) = chain_of(&p, &[30, 40]);
    pkt.adjust(10).unwrap();
    let segs: Vec<(u64, usize)> = pkt.dma_segments().collect();
    assert_eq!(segs.len(), 2);
    assert_eq!(segs[0], (pkt.data_iova(), 20));
    assert_eq!(segs[1].1, 40);
}

#[test]
fn dropping_packets_in_bulk_gives_every_buffer_back_to_its_own_pool() {
    // Cached pools (the bulk path goes through the thread's cache), runs longer than one bulk
    // return, pools interleaved, and chains among them.
    let cached = |name: &str| {
        Mempool::new(
            &MempoolConfig {
                cache_size: 32,
                region: RegionOptions {
                    page_size: PageSize::Base4K,
                    allow_4k_fallback: true,
                },
                ..MempoolConfig::new(name, 600)
            },
            Arc::new(IdentityMap),
        )
        .unwrap()
    };
    let (a, b) = (cached("bulk-a"), cached("bulk-b"));
    let mut v = Vec::new();
    for i in 0..300 {
        v.push(seg(&a, &[i as u8; 60]));
    }
    for i in 0..50 {
        v.push(seg(if i % 2 == 0 { &a } else { &b }, &[1; 60]));
        if i % 10 == 0 {
            v.push(chain_of(&b, &[100, 200, 300]).0);
        }
    }
    for _ in 0..100 {
        v.push(seg(&b, &[2; 60]));
    }
    assert!(a.in_use() > 0 && b.in_use() > 0);
    drop_packets(&mut v);
    assert!(v.is_empty());
    assert_eq!((a.in_use(), b.in_use()), (0, 0));
    // Nothing was given back twice: every buffer can be taken again, once.
    let all: Vec<Packet> = (0..600).map(|_| a.alloc().expect("a buffer")).collect();
    assert!(a.alloc().is_none());
    drop(all);
}

#[test]
fn dropping_packets_in_bulk_after_their_pool_handle_is_gone() {
    let p = pool("bulk-closed", 64, 2048);
    let mut v: Vec<Packet> = (0..40).map(|_| seg(&p, &[3; 64])).collect();
    // The last handle goes while buffers are out: the pool lives on until they are back.
    drop(p);
    drop_packets(&mut v);
    assert!(v.is_empty());
}
