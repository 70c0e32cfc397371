//! The `xdp:` port on a veth pair of this machine's kernel (skipped where interfaces cannot be
//! created: not root, no veth). The same checks run in the test VM as `vm_xdp_veth`.

mod xdp_common;

use xdp_common::*;

/// Held by each test: the descriptor count of `bad_input_is_a_clear_error_and_leaks_nothing`
/// is the process's, which a test running beside it would change.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reports the calling test skipped (the runner counts it so, not as passed).
fn skip() {
    oxpmd_test_skip::skip("cannot create a veth pair here (needs CAP_NET_ADMIN and the veth driver)");
}

#[test]
fn veth_copy_mode_round_trip() {
    let _one = serial();
    if !veth_round_trip(",mode=copy") {
        skip();
    }
}

#[test]
fn veth_auto_mode_round_trip() {
    let _one = serial();
    if !veth_round_trip("") {
        skip();
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn config(pool: &oxpmd_dma::Mempool) -> oxpmd_pmd::PortConfig {
    oxpmd_pmd::PortConfig::new(pool.clone())
        .queues(1, 1)
        .ring_sizes(256, 256)
}

#[test]
fn bad_input_is_a_clear_error_and_leaks_nothing() {
    let _one = serial();
    let Some(veth) = Veth::create("b") else {
        return skip();
    };
    let pool = umem_pool("xdp-bad", 512);
    let fds = open_fds();

    let e = oxpmd_pmd::Port::open("xdp:oxnosuch0", 0).unwrap_err().to_string();
    assert!(e.contains("no network interface `oxnosuch0`"), "{e}");
    let e = oxpmd_pmd::Port::open(&format!("xdp:{}:1", veth.a), 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("queue 1 is out of range") && e.contains("ethtool -L"),
        "{e}"
    );
    let e = oxpmd_pmd::Port::open("xdp:eth0:2-1", 0).unwrap_err().to_string();
    assert!(e.contains("queue range `2-1` is empty"), "{e}");

    // A pool that cannot be a UMEM: refused before anything is attached.
    let plain = oxpmd_pmd::vport::virtual_pool("xdp-plain", 512, 0).unwrap();
    let mut port = oxpmd_pmd::Port::open(&format!("xdp:{}", veth.a), 0).unwrap();
    let e = port.configure(&config(&plain)).unwrap_err().to_string();
    assert!(
        e.contains("cannot be the UMEM") && e.contains("chunk_aligned"),
        "{e}"
    );
    drop(port);

    // An XDP program already attached (another port's): refused, naming the fix.
    let first = start_port(&format!("xdp:{}", veth.a), &pool);
    let mut second = oxpmd_pmd::Port::open(&format!("xdp:{}", veth.a), 1).unwrap();
    let e = second.configure(&config(&pool)).unwrap_err().to_string();
    assert!(
        e.contains("another XDP program is already attached") && e.contains("xdp off"),
        "{e}"
    );
    drop(second);
    // The bpf_link goes with its port: the interface is free again.
    drop(first);
    drop(start_port(&format!("xdp:{}", veth.a), &pool));

    // Without CAP_NET_ADMIN / CAP_BPF / CAP_NET_RAW (dropped on one thread only: capabilities
    // are per thread).
    let (a, p) = (veth.a.clone(), pool.clone());
    let e = std::thread::spawn(move || {
        drop_capabilities();
        let mut port = oxpmd_pmd::Port::open(&format!("xdp:{a}"), 0).unwrap();
        port.configure(&config(&p)).unwrap_err().to_string()
    })
    .join()
    .unwrap();
    assert!(
        e.contains("CAP_NET_ADMIN") && e.contains("CAP_BPF") && e.contains("setcap"),
        "{e}"
    );

    // A frame larger than a UMEM frame: refused at TX (counted), not sent, not kept.
    let big_pool = oxpmd_dma::Mempool::new(
        &oxpmd_dma::MempoolConfig {
            data_room: 3900,
            cache_size: 0,
            region: oxpmd_dma::RegionOptions {
                page_size: oxpmd_dma::PageSize::Base4K,
                allow_4k_fallback: true,
            },
            ..oxpmd_dma::MempoolConfig::new("xdp-big", 8)
        },
        std::sync::Arc::new(oxpmd_dma::IdentityMap),
    )
    .unwrap();
    let mut port = start_port(&format!("xdp:{}", veth.a), &pool);
    let (rxq, mut txq) = port.take_queues().unwrap();
    let mut burst = oxpmd_pmd::Burst::new();
    let mut p = big_pool.alloc().unwrap();
    p.extend_from_slice(&frame(1, 3000)).unwrap();
    burst.push(p).unwrap();
    assert_eq!(txq[0].tx_burst(&mut burst), 1, "taken (and dropped)");
    assert!(burst.is_empty());
    let stats = port.stats().unwrap();
    assert_eq!((stats.opackets, stats.tx_queues[0].ierrors), (0, 1), "{stats:?}");
    drop((rxq, txq, port));

    oxpmd_dma::flush_thread_caches();
    assert_eq!(pool.available(), pool.capacity());
    assert_eq!(big_pool.available(), big_pool.capacity());
    assert_eq!(open_fds(), fds, "every descriptor closed");
}

/// Clears this thread's effective capabilities.
fn drop_capabilities() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget with a v3 header and room for its two data words.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) };
    assert_eq!(r, 0);
    for w in &mut d {
        w.effective = 0;
    }
    // SAFETY: capset of this thread (pid 0) with the words just read, effective cleared.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) };
    assert_eq!(r, 0);
}
