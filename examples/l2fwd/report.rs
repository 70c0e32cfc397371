//! What l2fwd prints: the per-port counters, the stats table and its JSON, the extended statistics.

use std::sync::Arc;
use std::time::Duration;

use oxpmd::pmd::Port;
use oxpmd::pmd::capture::json_escape;
use oxpmd::pmd::forward::{FwdCounters, FwdSnapshot};

use crate::capture_loop::LoopCounters;
use crate::common::say;

/// One forwarding port: its id, device name and counters.
pub(crate) struct PortInfo {
    pub(crate) id: u16,
    pub(crate) name: String,
    pub(crate) counters: Arc<FwdCounters>,
    /// Counters of the capture-aware loop (`--pcap`); zero otherwise (as `counters` is then).
    pub(crate) cap_counters: Arc<LoopCounters>,
}

impl PortInfo {
    /// The port's forwarding counters, from whichever loop runs.
    pub(crate) fn snapshot(&self) -> FwdSnapshot {
        let (a, b) = (self.counters.snapshot(), self.cap_counters.snapshot());
        FwdSnapshot {
            rx: a.rx + b.rx,
            tx: a.tx + b.tx,
            dropped: a.dropped + b.dropped,
        }
    }
}

/// Says every extended statistic of each port (`port N (NAME) xstats:` then one `  name: value`
/// line each) and returns them as a JSON array of `{"port", "name", "xstats": {name: value}}`.
pub(crate) fn xstats_report(ports: &mut [Port]) -> String {
    let mut out = Vec::new();
    for p in ports.iter_mut() {
        match p.xstats() {
            Ok(xs) => {
                say!("port {} ({}) xstats:", p.id(), p.name());
                for x in &xs {
                    say!("  {}: {}", x.name, x.value);
                }
                let fields: Vec<String> = xs
                    .iter()
                    .map(|x| format!("{}:{}", json_escape(&x.name), x.value))
                    .collect();
                out.push(format!(
                    "{{\"port\":{},\"name\":{},\"xstats\":{{{}}}}}",
                    p.id(),
                    json_escape(p.name()),
                    fields.join(",")
                ));
            }
            Err(e) => {
                say!("port {} ({}) xstats: {e}", p.id(), p.name());
                out.push(format!(
                    "{{\"port\":{},\"name\":{},\"error\":{}}}",
                    p.id(),
                    json_escape(p.name()),
                    json_escape(&e.to_string())
                ));
            }
        }
    }
    format!("[{}]", out.join(","))
}

/// JSON array of the forwarding counters of every port (totals and rates since `last`).
pub(crate) fn fwd_json(infos: &[PortInfo], last: &[FwdSnapshot], dt: Duration) -> String {
    let secs = dt.as_secs_f64().max(1e-9);
    let v: Vec<String> = infos
        .iter()
        .zip(last)
        .map(|(info, prev)| {
            let s = info.snapshot();
            format!(
                "{{\"port\":{},\"name\":{},\"rx\":{},\"tx\":{},\"dropped\":{},\"rx_pps\":{:.1},\"tx_pps\":{:.1}}}",
                info.id,
                json_escape(&info.name),
                s.rx,
                s.tx,
                s.dropped,
                s.rx.saturating_sub(prev.rx) as f64 / secs,
                s.tx.saturating_sub(prev.tx) as f64 / secs
            )
        })
        .collect();
    format!("[{}]", v.join(","))
}

pub(crate) fn print_stats(infos: &[PortInfo], last: &mut [FwdSnapshot], dt: Duration) {
    let secs = dt.as_secs_f64().max(1e-9);
    say!("\nPort statistics ===============================================================");
    say!(
        "{:>4} {:<16} {:>16} {:>16} {:>12} {:>9} {:>9}",
        "port",
        "device",
        "received",
        "sent",
        "dropped",
        "rx Mpps",
        "tx Mpps"
    );
    let (mut rx, mut tx, mut dr, mut drx, mut dtx) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for (info, prev) in infos.iter().zip(last.iter_mut()) {
        let s = info.snapshot();
        let (d_rx, d_tx) = (s.rx - prev.rx, s.tx - prev.tx);
        say!(
            "{:>4} {:<16} {:>16} {:>16} {:>12} {:>9.3} {:>9.3}",
            info.id,
            info.name,
            s.rx,
            s.tx,
            s.dropped,
            d_rx as f64 / secs / 1e6,
            d_tx as f64 / secs / 1e6
        );
        rx += s.rx;
        tx += s.tx;
        dr += s.dropped;
        drx += d_rx;
        dtx += d_tx;
        *prev = s;
    }
    say!(
        "{:>4} {:<16} {:>16} {:>16} {:>12} {:>9.3} {:>9.3}",
        "all",
        "total",
        rx,
        tx,
        dr,
        drx as f64 / secs / 1e6,
        dtx as f64 / secs / 1e6
    );
    say!(
        "rate: rx {:.3} Mpps tx {:.3} Mpps over {:.2} s",
        drx as f64 / secs / 1e6,
        dtx as f64 / secs / 1e6,
        secs
    );
    say!("===============================================================================");
}
