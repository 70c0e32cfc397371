//! Opening the ports (one mempool, configure, start, link wait, queues) and stopping them with
//! their final counters.

use std::time::{Duration, Instant};

use crate::common::{self, BoxError, say, step};
use crate::options::Options;
use oxpmd::dma::Mempool;
use oxpmd::pmd::vport::fault::{self, FaultCounts};
use oxpmd::pmd::{
    DeviceSpec, LinkEvents, MAX_BURST, MacAddr, OpenOptions, Port, PortConfig, RxQueue, TxQueue,
};

/// The opened, started ports and what the TX and RX threads use.
pub struct Setup {
    /// The TX port (id 0), then the RX port (id 1) when it is another one.
    pub ports: Vec<Port>,
    pub pool: Mempool,
    pub cfg: PortConfig,
    /// Index in `ports` of the RX port (None: send only).
    pub rx_idx: Option<usize>,
    /// The line rate for percentages: `--link-speed`, else the TX port's link speed.
    pub speed_mbps: u64,
    pub src: MacAddr,
    pub dst: MacAddr,
    pub txq: TxQueue,
    pub rxqs: Option<Vec<RxQueue>>,
    pub link_events: Vec<(u16, LinkEvents)>,
}

fn innermost(spec: &DeviceSpec) -> &DeviceSpec {
    match spec {
        DeviceSpec::Fault { inner, .. } => innermost(inner),
        other => other,
    }
}

/// Opens `--tx-port` and `--rx-port` (once when they are the same device), configures and starts
/// them, waits for their links and takes the queues.
pub fn open(opts: &Options) -> Result<Setup, BoxError> {
    // The same device for TX and RX: one port. Two ring ports of one name are the pair's two ends.
    let tx_spec = DeviceSpec::parse(&opts.tx_port)?;
    let same = opts
        .rx_port
        .as_deref()
        .map(DeviceSpec::parse)
        .transpose()?
        .as_ref()
        == Some(&tx_spec)
        && !matches!(innermost(&tx_spec), DeviceSpec::Ring { .. });
    let mut ports: Vec<Port> = Vec::new();
    let t = Instant::now();
    ports.push(Port::open_spec(
        &tx_spec,
        &OpenOptions {
            port_id: 0,
            ..OpenOptions::default()
        },
    )?);
    if let (Some(rx), false) = (&opts.rx_port, same) {
        ports.push(Port::open_spec(
            &DeviceSpec::parse(rx)?,
            &OpenOptions {
                port_id: 1,
                ..OpenOptions::default()
            },
        )?);
    }
    step("pktgen", &format!("open {} port(s)", ports.len()), t);
    let t = Instant::now();
    let pool_size = (ports.len() * 2 * opts.ring_size + 4 * MAX_BURST + 2048).max(8192);
    let pool: Mempool = crate::common::ports_pool("pktgen", &ports, pool_size, 256, None)?;
    step(
        "pktgen",
        &format!("mempool of {pool_size} buffers (hugepage allocation, DMA mapping)"),
        t,
    );
    let t = Instant::now();
    let cfg = PortConfig::new(pool.clone())
        .ring_sizes(opts.ring_size, opts.ring_size)
        .mtu(opts.mtu());
    for p in ports.iter_mut() {
        p.configure(&cfg)?;
    }
    let rx_idx = if opts.rx_port.is_some() {
        Some(ports.len() - 1)
    } else {
        None
    };
    if let (Some(i), true) = (rx_idx, opts.promiscuous) {
        ports[i].set_promiscuous(true)?;
    }
    for p in ports.iter_mut() {
        p.start()?;
    }
    step("pktgen", "configure and start the ports", t);
    let mut speed = 0u64;
    for (i, p) in ports.iter_mut().enumerate() {
        let t = Instant::now();
        let l = p.wait_link_up(Duration::from_secs(30))?;
        say!(
            "port {} ({}): MAC {} link {l} (waited {:.3} s)",
            p.id(),
            p.name(),
            p.mac_addr(),
            t.elapsed().as_secs_f64()
        );
        step("pktgen", &format!("link wait, port {} ({})", p.id(), p.name()), t);
        if i == 0 {
            speed = u64::from(l.speed_mbps);
        }
    }
    let speed_mbps = opts.link_speed.unwrap_or(if speed == 0 { 10_000 } else { speed });
    let link_events = common::take_link_events(&mut ports);
    let src = ports[0].mac_addr();
    let dst = opts.dst_mac.unwrap_or_else(|| match (rx_idx, same) {
        (Some(i), false) => ports[i].mac_addr(),
        _ => MacAddr([0xFF; 6]),
    });
    let (rx0, mut txqs) = ports[0].take_queues()?;
    let rxqs: Option<Vec<RxQueue>> = match (rx_idx, same) {
        (Some(_), true) => Some(rx0),
        (Some(i), false) => {
            drop(rx0);
            let (r, t) = ports[i].take_queues()?;
            drop(t);
            Some(r)
        }
        (None, _) => {
            drop(rx0);
            None
        }
    };
    let txq = txqs.remove(0);
    drop(txqs);
    Ok(Setup {
        ports,
        pool,
        cfg,
        rx_idx,
        speed_mbps,
        src,
        dst,
        txq,
        rxqs,
        link_events,
    })
}

/// Stops every port, saying its final counters and what the `fault:` ports injected (summed).
pub fn stop(ports: &mut [Port]) -> Result<FaultCounts, BoxError> {
    let mut injected = FaultCounts::default();
    for p in ports.iter_mut() {
        p.stop()?;
        if let Some(c) = fault::injected(p.name()) {
            for (dir, d) in [("rx", &c.rx), ("tx", &c.tx)] {
                say!(
                    "port {} ({}): {dir} faults injected: seen {} dropped {} corrupted {} duplicated {} \
                     reordered {} rate_dropped {} dup_no_buffer {}",
                    p.id(),
                    p.name(),
                    d.seen,
                    d.dropped,
                    d.corrupted,
                    d.duplicated,
                    d.reordered,
                    d.rate_dropped,
                    d.dup_no_buffer
                );
                injected.seen += d.seen;
                injected.dropped += d.dropped;
                injected.corrupted += d.corrupted;
                injected.duplicated += d.duplicated;
                injected.reordered += d.reordered;
                injected.rate_dropped += d.rate_dropped;
                injected.dup_no_buffer += d.dup_no_buffer;
            }
        }
        match p.stats() {
            Ok(st) => say!(
                "port {} ({}): ipackets {} opackets {} imissed {} ierrors {} oerrors {} rx_nombuf {} \
                 rx_multiseg_dropped {}",
                p.id(),
                p.name(),
                st.ipackets,
                st.opackets,
                st.imissed,
                st.ierrors,
                st.oerrors,
                st.rx_nombuf,
                st.rx_multiseg_dropped
            ),
            Err(e) => say!("port {} ({}): statistics: {e}", p.id(), p.name()),
        }
    }
    Ok(injected)
}
