//! `cargo xtask vm dpdk`: DPDK's testpmd in the guest on the topology's ports, non-interactively.
//!
//! The ports are bound to vfio-pci (driver_override + drivers_probe), testpmd runs with the given
//! application arguments and is stopped with SIGINT after `--duration` seconds, which makes it print its
//! final statistics; the rates are parsed from its periodic and final statistics.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use super::topology::Topology;
use super::{Args, GuestOptions, Paths, exit_code, guest, launch, parse_secs, setup, split_eq};

/// testpmd arguments used when none are given.
pub const DEFAULT_TESTPMD_ARGS: &[&str] = &[
    "--forward-mode=io",
    "--tx-first",
    "--auto-start",
    "--stats-period",
    "5",
];

/// A shell fragment that binds each PCI address in `$1...` to vfio-pci (unbinding a kernel driver first).
pub const BIND_VFIO_SH: &str = r#"bind_vfio() {
    for bdf in "$@"; do
        dev=/sys/bus/pci/devices/$bdf
        [ -e "$dev" ] || { echo "bind_vfio: no PCI device $bdf" >&2; return 1; }
        if [ -e "$dev/driver" ]; then
            cur=$(basename "$(readlink "$dev/driver")")
            [ "$cur" = vfio-pci ] && continue
            echo "$bdf" > "$dev/driver/unbind" || return 1
        fi
        echo vfio-pci > "$dev/driver_override" || return 1
        echo "$bdf" > /sys/bus/pci/drivers_probe
        [ "$(basename "$(readlink "$dev/driver")")" = vfio-pci ] \
            || { echo "bind_vfio: $bdf did not bind to vfio-pci (see dmesg)" >&2; return 1; }
        echo "bound $bdf to vfio-pci (IOMMU group $(basename "$(readlink "$dev/iommu_group")"))"
    done
}
"#;

/// Per-port figures from testpmd's output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PortStats {
    /// The MAC address testpmd printed for the port at start (`Port 0: 52:54:00:00:01:00`).
    pub mac: Option<String>,
    /// Final forward statistics: packets received.
    pub rx_packets: u64,
    /// Final forward statistics: packets sent.
    pub tx_packets: u64,
    /// `Rx-pps` of each periodic statistics print.
    pub rx_pps: Vec<u64>,
    /// `Tx-pps` of each periodic statistics print.
    pub tx_pps: Vec<u64>,
}

impl PortStats {
    /// Mean Rx-pps over the periodic samples, skipping the first (start-up) one when there are more.
    pub fn steady_rx_pps(&self) -> Option<u64> {
        steady_mean(&self.rx_pps)
    }

    /// Mean Tx-pps, same rule.
    pub fn steady_tx_pps(&self) -> Option<u64> {
        steady_mean(&self.tx_pps)
    }
}

fn steady_mean(samples: &[u64]) -> Option<u64> {
    let s = if samples.len() > 1 { &samples[1..] } else { samples };
    if s.is_empty() {
        None
    } else {
        Some(s.iter().sum::<u64>() / s.len() as u64)
    }
}

/// Removes ANSI escape sequences (testpmd clears the screen before each statistics print).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The number after `key` in a statistics line (`RX-packets: 123   RX-dropped: 0`).
fn field(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Parses testpmd's periodic NIC statistics and final forward statistics, per port id.
pub fn parse_testpmd_stats(output: &str) -> BTreeMap<u32, PortStats> {
    #[derive(PartialEq)]
    enum Section {
        None,
        Nic,
        Forward,
    }
    let mut stats: BTreeMap<u32, PortStats> = BTreeMap::new();
    let mut section = Section::None;
    let mut port = 0u32;
    for raw in output.lines() {
        let line = strip_ansi(raw);
        let l = line.trim();
        let port_after = |marker: &str| {
            l.find(marker)
                .and_then(|i| l[i + marker.len()..].split_whitespace().next())
                .and_then(|n| n.parse::<u32>().ok())
        };
        if let Some(p) = port_after("NIC statistics for port") {
            section = Section::Nic;
            port = p;
            continue;
        }
        if let Some(p) = port_after("Forward statistics for port") {
            section = Section::Forward;
            port = p;
            continue;
        }
        // testpmd numbers ports in PCI scan order, not in `-a` order: its MAC line tells which is which.
        if let Some((p, mac)) = l
            .strip_prefix("Port ")
            .and_then(|r| r.split_once(": "))
            .filter(|(_, mac)| mac.len() == 17 && mac.bytes().filter(|&b| b == b':').count() == 5)
            .and_then(|(p, mac)| p.parse::<u32>().ok().map(|p| (p, mac)))
        {
            stats.entry(p).or_default().mac = Some(mac.to_ascii_lowercase());
            continue;
        }
        if l.starts_with("+++") || l.starts_with("Accumulated forward statistics") {
            section = Section::None;
            continue;
        }
        match section {
            Section::Nic => {
                if let Some(v) = field(l, "Rx-pps:") {
                    stats.entry(port).or_default().rx_pps.push(v);
                }
                if let Some(v) = field(l, "Tx-pps:") {
                    stats.entry(port).or_default().tx_pps.push(v);
                }
                if l.starts_with("####") && !l.contains("statistics") {
                    section = Section::None;
                }
            }
            Section::Forward => {
                if let Some(v) = field(l, "RX-packets:") {
                    stats.entry(port).or_default().rx_packets = v;
                }
                if let Some(v) = field(l, "TX-packets:") {
                    stats.entry(port).or_default().tx_packets = v;
                }
            }
            Section::None => {}
        }
    }
    stats
}

/// A one-paragraph report of the rates; with the topology, each testpmd port is named by its MAC.
pub fn rate_report(stats: &BTreeMap<u32, PortStats>, topology: Option<&Topology>) -> String {
    if stats.is_empty() {
        return "testpmd printed no statistics".into();
    }
    let mut s = String::new();
    let mut sum_rx = 0u64;
    for (port, p) in stats {
        let rx = p.steady_rx_pps();
        sum_rx += rx.unwrap_or(0);
        let ours = topology
            .zip(p.mac.as_deref())
            .and_then(|(t, mac)| t.ports.iter().find(|q| q.mac() == mac))
            .map(|q| format!(" (port {} {} {})", q.index, q.pci_addr(), q.model.name()))
            .unwrap_or_default();
        s.push_str(&format!(
            "testpmd port {port}{ours}: RX {} packets, TX {} packets; steady Rx-pps {} Tx-pps {} ({} samples)\n",
            p.rx_packets,
            p.tx_packets,
            rx.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            p.steady_tx_pps()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            p.rx_pps.len()
        ));
    }
    s.push_str(&format!(
        "testpmd rate: {:.1} Kpps received per port on average, {:.1} Kpps in total\n",
        sum_rx as f64 / stats.len() as f64 / 1000.0,
        sum_rx as f64 / 1000.0
    ));
    s
}

/// The guest script: bind the ports, run testpmd under `timeout -s INT`.
pub fn testpmd_script(ports: &[String], duration: Duration, app_args: &[String]) -> String {
    let allow: Vec<String> = ports.iter().map(|p| format!("-a {p}")).collect();
    let app: Vec<String> = app_args.iter().map(|a| launch::shell_quote(a)).collect();
    let lcores = "0,1";
    format!(
        "set -e\n{BIND_VFIO_SH}bind_vfio {ports}\n\
         echo \"hugepages: $(cat /proc/sys/vm/nr_hugepages) x 2 MiB, memlock $(ulimit -l)\"\n\
         set +e\n\
         timeout -s INT -k 30 {secs} dpdk-testpmd -l {lcores} -n 1 --in-memory {allow} -- {app}\n\
         rc=$?\n\
         # 124: stopped by the timeout, which is how the run is meant to end.\n\
         [ $rc -eq 124 ] && rc=0\n\
         exit $rc\n",
        ports = ports.join(" "),
        secs = duration.as_secs(),
        allow = allow.join(" "),
        app = app.join(" "),
    )
}

/// `cargo xtask vm dpdk [--topology NAME] [--duration SECS] [--ports 0,1] [--timeout SECS] [-- ARGS]`.
pub fn cmd_dpdk(rest: &[String]) -> Result<ExitCode, String> {
    let mut args = Args { rest };
    let mut topology = "pair".to_string();
    let mut duration = Duration::from_secs(20);
    let mut port_sel: Option<String> = None;
    let mut timeout: Option<Duration> = None;
    let mut verbose = false;
    while let Some(raw) = args.next_opt() {
        let (opt, inline) = split_eq(raw);
        match opt {
            "--topology" => topology = args.value_or(opt, inline)?,
            "--duration" => duration = parse_secs(opt, &args.value_or(opt, inline)?)?,
            "--ports" => port_sel = Some(args.value_or(opt, inline)?),
            "--timeout" => timeout = Some(parse_secs(opt, &args.value_or(opt, inline)?)?),
            "--verbose" | "-v" => verbose = true,
            other => return Err(format!("unknown option {other}")),
        }
    }
    let topo = Topology::by_name(&topology)?;
    let ports: Vec<String> = match &port_sel {
        None => topo.ports.iter().map(|p| p.pci_addr()).collect(),
        Some(sel) => sel
            .split(',')
            .map(|i| {
                i.trim()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| topo.ports.get(i))
                    .map(|p| p.pci_addr())
                    .ok_or_else(|| format!("--ports: no port {i:?} in topology {}", topo.name))
            })
            .collect::<Result<_, _>>()?,
    };
    let mut app: Vec<String> = args.trailing().to_vec();
    if app.is_empty() {
        app = DEFAULT_TESTPMD_ARGS.iter().map(|s| s.to_string()).collect();
    }
    print!("{}", topo.describe());
    println!(
        "vm dpdk: dpdk-testpmd on {} for {} s: {}",
        ports.join(" "),
        duration.as_secs(),
        app.join(" ")
    );
    let paths = Paths::new();
    setup::check_ready(&paths)?;
    let script = testpmd_script(&ports, duration, &app);
    let opts = GuestOptions {
        timeout: timeout.unwrap_or(duration + Duration::from_secs(300)),
        echo: true,
        verbose,
        shell: true,
        label: "dpdk".into(),
        ..GuestOptions::default()
    };
    let out = guest::run(&paths, &topo, &[script], &opts)?;
    let stats = parse_testpmd_stats(&out.output);
    println!(
        "\nvm dpdk summary (boot to command {:.1} s, total {:.1} s, logs in {}):",
        out.boot_to_command.as_secs_f64(),
        out.total.as_secs_f64(),
        out.run_dir.display()
    );
    print!("{}", rate_report(&stats, Some(&topo)));
    if out.exit_code != 0 {
        println!("vm dpdk: testpmd exited with code {}", out.exit_code);
    }
    Ok(exit_code(out.exit_code))
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    const SAMPLE: &str = "\u{1b}[2J\u{1b}[1;1H
  ######################## NIC statistics for port 0  ########################
  RX-packets: 1000       RX-missed: 0          RX-bytes:  64000
  TX-packets: 1100       TX-errors: 0          TX-bytes:  70400

  Throughput (since last show)
  Rx-pps:          100          Rx-bps:        51200
  Tx-pps:          110          Tx-bps:        56320
  ############################################################################

  ######################## NIC statistics for port 1  ########################
  Rx-pps:          200          Rx-bps:        51200
  Tx-pps:          210          Tx-bps:        56320
  ############################################################################

  ######################## NIC statistics for port 0  ########################
  Rx-pps:          300          Rx-bps:        51200
  Tx-pps:          310          Tx-bps:        56320
  ############################################################################
Telling cores to stop...
  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 5000           RX-dropped: 0             RX-total: 5000
  TX-packets: 4900           TX-dropped: 0             TX-total: 4900
  ----------------------------------------------------------------------------

  ---------------------- Forward statistics for port 1  ----------------------
  RX-packets: 4900           RX-dropped: 0             RX-total: 4900
  TX-packets: 5000           TX-dropped: 0             TX-total: 5000
  ----------------------------------------------------------------------------

  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++
  RX-packets: 9900           RX-dropped: 0             RX-total: 9900
";

    #[test]
    fn testpmd_statistics_parse() {
        let s = parse_testpmd_stats(SAMPLE);
        assert_eq!(s.len(), 2);
        assert_eq!(s[&0].rx_pps, [100, 300]);
        assert_eq!(s[&0].tx_pps, [110, 310]);
        assert_eq!(s[&0].rx_packets, 5000);
        assert_eq!(s[&0].tx_packets, 4900);
        assert_eq!(s[&1].rx_packets, 4900);
        assert_eq!(s[&0].steady_rx_pps(), Some(300));
        assert_eq!(s[&1].steady_rx_pps(), Some(200));
        assert!(rate_report(&s, None).contains("0.5 Kpps in total"));
        let t = Topology::by_name("pair").unwrap();
        let named = parse_testpmd_stats(&format!(
            "Port 0: 52:54:00:00:01:01\nPort 1: 52:54:00:00:01:00\n{SAMPLE}"
        ));
        assert_eq!(named[&0].mac.as_deref(), Some("52:54:00:00:01:01"));
        let report = rate_report(&named, Some(&t));
        assert!(
            report.contains("testpmd port 0 (port 1 0000:00:06.0 igb)"),
            "{report}"
        );
    }

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(strip_ansi("\u{1b}[2J\u{1b}[1;1Hx"), "x");
    }

    #[test]
    fn script_allows_each_port() {
        let s = testpmd_script(
            &["0000:00:02.0".into(), "0000:00:06.0".into()],
            Duration::from_secs(9),
            &["--tx-first".into()],
        );
        assert!(s.contains("-a 0000:00:02.0 -a 0000:00:06.0 -- '--tx-first'"));
        assert!(s.contains("timeout -s INT -k 30 9 dpdk-testpmd"));
    }
}
