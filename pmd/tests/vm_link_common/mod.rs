//! What the link-event and RX-interrupt VM tests share: the QMP `set_link` request (through the
//! harness's relay, docs/testvm.md "QMP"), opening a started port, and the down/up check.
// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oxpmd_dma::{DmaMap, Mempool, MempoolConfig};
use oxpmd_pmd::{LinkEvent, LinkEvents, Port, PortConfig};

/// Hang guard for one link change to be seen (never a speed assertion).
pub const EVENT_BOUND: Duration = Duration::from_secs(30);
/// How long the handle must stay quiet after each change (no second event for it).
pub const QUIET: Duration = Duration::from_secs(2);
/// How long the relay may take to answer a request.
const RELAY_TIMEOUT: Duration = Duration::from_secs(30);

/// A figure of the run: on stderr past libtest's capture (so `vm test` shows it for a passing
/// test too) and appended to `RUN_DIR/vm_link-figures.txt`.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Ok(dir) = std::env::var("OXPMD_VM_RUN_DIR") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{dir}/vm_link-figures.txt"))
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run in the test VM"))
}

/// The first port of `model` in the topology.
pub fn port_of_model(model: &str) -> usize {
    let n: usize = env("OXPMD_NUM_PORTS").parse().unwrap();
    (0..n)
        .find(|i| env(&format!("OXPMD_PORT{i}_MODEL")) == model)
        .unwrap_or_else(|| panic!("the topology has no {model} port"))
}

/// Asks QEMU (QMP `set_link`) to take port `n`'s link up or down; returns how long the relay
/// took to answer. Panics with the relay's error.
pub fn set_link(n: usize, up: bool) -> Duration {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = PathBuf::from(env("OXPMD_VM_RUN_DIR")).join("qmp");
    let nic = env(&format!("OXPMD_PORT{n}_NIC"));
    let id = format!("{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    let tmp = dir.join(format!(".req-{id}.tmp"));
    let req = dir.join(format!("req-{id}"));
    let resp = dir.join(format!("resp-{id}"));
    let state = if up { "on" } else { "off" };
    let t = Instant::now();
    std::fs::write(&tmp, format!("set_link {nic} {state}\n")).expect("write the QMP request");
    std::fs::rename(&tmp, &req).expect("publish the QMP request");
    loop {
        if let Ok(answer) = std::fs::read_to_string(&resp) {
            let _ = std::fs::remove_file(&resp);
            assert_eq!(answer.trim(), "ok", "set_link {nic} {state}: {answer}");
            return t.elapsed();
        }
        assert!(
            t.elapsed() < RELAY_TIMEOUT,
            "set_link {nic} {state}: no answer from the QMP relay within {RELAY_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Puts port `n`'s link back up when dropped, so a failed test leaves the VM as it found it.
pub struct LinkRestore(pub usize);

impl Drop for LinkRestore {
    fn drop(&mut self) {
        if std::thread::panicking() {
            set_link(self.0, true);
        }
    }
}

/// Opens port `n`, configures one queue pair, starts it and waits for its link.
pub fn open_started(n: usize) -> (Port, Mempool) {
    let mut port = Port::open(&env(&format!("OXPMD_PORT{n}")), n as u16)
        .unwrap_or_else(|e| panic!("open port {n}: {e}"));
    let map: Arc<dyn DmaMap> = port.dma_map().expect("a PCI port has a DMA map");
    let pool = Mempool::new(&MempoolConfig::new(format!("link-{n}"), 1024), map).expect("mempool");
    start(&mut port, &pool, n);
    (port, pool)
}

/// Configures and starts an opened port, waits for its link.
pub fn start(port: &mut Port, pool: &Mempool, n: usize) {
    port.configure(&PortConfig::new(pool.clone()).ring_sizes(256, 256))
        .unwrap_or_else(|e| panic!("configure port {n}: {e}"));
    port.start().unwrap();
    port.wait_link_up(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("port {n} link: {e}"));
}

/// Takes port `n`'s link down, then up, through QMP while a thread waits on `events`: each change
/// must arrive as exactly one event (within [`EVENT_BOUND`], then nothing for [`QUIET`]). Prints
/// each latency, measured from the request to the event.
pub fn down_then_up_once_each(mut events: LinkEvents, n: usize) {
    assert!(events.current().up, "port {n}: the link is up before the test");
    println!("port {n}: link events through {}", events.describe());
    let _restore = LinkRestore(n);
    let (tx, rx) = mpsc::channel::<LinkEvent>();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_waiter = stop.clone();
    let waiter = std::thread::spawn(move || {
        while !stop_waiter.load(Ordering::Relaxed) {
            match events.wait(Duration::from_millis(100)) {
                Ok(Some(e)) => tx.send(e).unwrap(),
                Ok(None) => {}
                Err(e) => panic!("waiting for link events: {e}"),
            }
        }
        events
    });
    let mut seen = Vec::new();
    for up in [false, true] {
        let what = if up { "up" } else { "down" };
        let asked = Instant::now();
        let relay = set_link(n, up);
        let ev = rx
            .recv_timeout(EVENT_BOUND.saturating_sub(asked.elapsed()))
            .unwrap_or_else(|_| panic!("port {n}: no link-{what} event within {EVENT_BOUND:?}"));
        let latency = ev.at.saturating_duration_since(asked);
        report(&format!(
            "LATENCY port {n} ({}) link {what}: event {:.1} ms after the set_link request (relay \
             answered in {:.1} ms), link now {}",
            env(&format!("OXPMD_PORT{n}_MODEL")),
            latency.as_secs_f64() * 1e3,
            relay.as_secs_f64() * 1e3,
            ev.status
        ));
        assert_eq!(
            ev.status.up, up,
            "port {n}: link-{what} expected, got {}",
            ev.status
        );
        seen.push(ev);
        if let Ok(extra) = rx.recv_timeout(QUIET) {
            panic!("port {n}: a second event after link {what}: {}", extra.status);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let events = waiter.join().expect("the waiter thread");
    let late: Vec<LinkEvent> = rx.try_iter().collect();
    assert!(late.is_empty(), "port {n}: events after the test: {late:?}");
    assert_eq!(seen.len(), 2);
    report(&format!(
        "port {n}: exactly 2 events (1 down, 1 up) from {} interrupts",
        events.wakeups()
    ));
    assert!(events.current().up);
}
