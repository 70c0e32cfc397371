//! The examples' `--stats-json` objects, written by hand (no JSON crate in the library).

use crate::stats::{PortStats, QueueCounters};

/// `s` as a JSON string literal, quotes included (RFC 8259 escaping: `"`, `\`, control characters).
pub fn json_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// One port's counters as a JSON object: totals (`ipackets`, `opackets`, `ibytes`, `obytes`,
/// `imissed`, `ierrors`, `oerrors`, `rx_nombuf`), rates since `prev` over `dt_s` seconds (from zero
/// without `prev`: `ipps`, `opps`, `ibps`, `obps`, bits per second) and per-queue `rx_queues` /
/// `tx_queues` (`packets`, `bytes`, `ierrors`, `rx_nombuf`, `pps`, `bps`).
pub fn port_stats_json(id: u16, name: &str, st: &PortStats, prev: Option<&PortStats>, dt_s: f64) -> String {
    let dt = if dt_s.is_finite() { dt_s.max(1e-9) } else { 1.0 };
    let rate = |now: u64, before: Option<u64>| now.saturating_sub(before.unwrap_or(0)) as f64 / dt;
    let queues = |qs: &[QueueCounters], lq: Option<&Vec<QueueCounters>>| {
        let v: Vec<String> = qs
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let lp = lq.and_then(|v| v.get(i));
                format!(
                    "{{\"queue\":{i},\"packets\":{},\"bytes\":{},\"ierrors\":{},\"rx_nombuf\":{},\
                     \"pps\":{:.1},\"bps\":{:.1}}}",
                    q.packets,
                    q.bytes,
                    q.ierrors,
                    q.rx_nombuf,
                    rate(q.packets, lp.map(|q| q.packets)),
                    8.0 * rate(q.bytes, lp.map(|q| q.bytes))
                )
            })
            .collect();
        format!("[{}]", v.join(","))
    };
    format!(
        "{{\"port\":{id},\"name\":{},\"ipackets\":{},\"opackets\":{},\"ibytes\":{},\"obytes\":{},\
         \"imissed\":{},\"ierrors\":{},\"oerrors\":{},\"rx_nombuf\":{},\"ipps\":{:.1},\"opps\":{:.1},\
         \"ibps\":{:.1},\"obps\":{:.1},\"rx_queues\":{},\"tx_queues\":{}}}",
        json_escape(name),
        st.ipackets,
        st.opackets,
        st.ibytes,
        st.obytes,
        st.imissed,
        st.ierrors,
        st.oerrors,
        st.rx_nombuf,
        rate(st.ipackets, prev.map(|s| s.ipackets)),
        rate(st.opackets, prev.map(|s| s.opackets)),
        8.0 * rate(st.ibytes, prev.map(|s| s.ibytes)),
        8.0 * rate(st.obytes, prev.map(|s| s.obytes)),
        queues(&st.rx_queues, prev.map(|s| &s.rx_queues)),
        queues(&st.tx_queues, prev.map(|s| &s.tx_queues))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_port_stats_json_fields_and_rates() {
        let prev = PortStats {
            ipackets: 100,
            ibytes: 6400,
            rx_queues: vec![QueueCounters {
                packets: 100,
                bytes: 6400,
                ..Default::default()
            }],
            ..Default::default()
        };
        let now = PortStats {
            ipackets: 300,
            ibytes: 19200,
            opackets: 7,
            imissed: 2,
            rx_nombuf: 1,
            rx_queues: vec![QueueCounters {
                packets: 300,
                bytes: 19200,
                ..Default::default()
            }],
            ..Default::default()
        };
        let j = port_stats_json(3, "ring:\"x\"", &now, Some(&prev), 2.0);
        assert!(
            j.starts_with("{\"port\":3,\"name\":\"ring:\\\"x\\\"\",\"ipackets\":300,"),
            "{j}"
        );
        for f in [
            "\"opackets\":7,",
            "\"imissed\":2,",
            "\"rx_nombuf\":1,",
            "\"ipps\":100.0,",
            "\"ibps\":51200.0,",
            "\"rx_queues\":[{\"queue\":0,\"packets\":300,\"bytes\":19200,",
            "\"tx_queues\":[]}",
        ] {
            assert!(j.contains(f), "{f} not in {j}");
        }
        assert_eq!(j.matches('{').count(), j.matches('}').count());
    }

    #[test]
    fn capture_json_escape() {
        assert_eq!(json_escape("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
        assert_eq!(json_escape(""), "\"\"");
    }
}
