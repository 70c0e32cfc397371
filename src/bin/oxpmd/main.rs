//! `oxpmd`: set-up tool for oxpmd and DPDK users: list NICs, bind them to vfio-pci and back, set
//! SR-IOV VF counts, and check the host (`doctor`). See docs/cli.md.
#![forbid(unsafe_code)]

mod bind;
mod devices;
mod doctor;
mod error;
mod group;
mod host;
mod names;
mod serve;
mod sriov;
mod state;
mod vf;
mod xdp;

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use oxpmd::vfio::PciAddress;

use crate::error::CliError;
use crate::host::Host;

fn pci_address(s: &str) -> Result<PciAddress, String> {
    PciAddress::parse(s).map_err(|e| e.to_string())
}

fn addr_arg(required: bool) -> Arg {
    Arg::new("ADDR")
        .help("PCI address, DDDD:BB:DD.F or BB:DD.F (see `oxpmd devices`)")
        .num_args(1..)
        .required(required)
        .value_parser(pci_address)
}

fn json_arg() -> Arg {
    Arg::new("json")
        .long("json")
        .action(ArgAction::SetTrue)
        .help("Print JSON instead of text")
}

/// The command-line interface.
fn cli() -> Command {
    Command::new("oxpmd")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Set up NICs for oxpmd and DPDK: list, bind to vfio-pci and back, SR-IOV, and check the host")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Also print the library's informational log lines"),
        )
        .subcommand(
            Command::new("devices")
                .about("List network PCI devices: ids, drivers, IOMMU groups, NUMA node, VFs, oxpmd support")
                .arg(json_arg())
                .arg(
                    Arg::new("all")
                        .long("all")
                        .action(ArgAction::SetTrue)
                        .help("List every PCI function, not only network controllers"),
                ),
        )
        .subcommand(
            Command::new("bind")
                .about("Bind devices to vfio-pci, remembering their previous driver for `unbind`")
                .arg(addr_arg(true))
                .arg(
                    Arg::new("group")
                        .long("group")
                        .action(ArgAction::SetTrue)
                        .help("Bind every member of each device's IOMMU group (VFIO needs the whole group)"),
                )
                .arg(
                    Arg::new("force")
                        .long("force")
                        .action(ArgAction::SetTrue)
                        .help("Bind even a device whose interface is up and carries the host's routes"),
                ),
        )
        .subcommand(
            Command::new("unbind")
                .about("Give devices back to the driver they had before `oxpmd bind`")
                .arg(addr_arg(true))
                .arg(
                    Arg::new("group")
                        .long("group")
                        .action(ArgAction::SetTrue)
                        .help("Also give back the other group members `oxpmd bind --group` took"),
                )
                .arg(
                    Arg::new("driver").long("driver").value_name("DRIVER").help(
                        "Bind to DRIVER instead of the remembered one (`none`: leave the device unbound)",
                    ),
                ),
        )
        .subcommand(
            Command::new("sriov")
                .about("Set the VF count of an SR-IOV PF (through 0, as the kernel requires); `serve`: the PF service")
                .args_conflicts_with_subcommands(true)
                .subcommand_negates_reqs(true)
                .subcommand(serve_command())
                .arg(
                    Arg::new("ADDR")
                        .help("PCI address of the PF")
                        .required(true)
                        .value_parser(pci_address),
                )
                .arg(
                    Arg::new("vfs")
                        .long("vfs")
                        .value_name("N")
                        .required(true)
                        .value_parser(value_parser!(u16))
                        .help("Number of VFs (0 removes them)"),
                )
                .arg(
                    Arg::new("kernel-vfs")
                        .long("kernel-vfs")
                        .value_name("LIST")
                        .value_parser(sriov::parse_vf_list)
                        .help("VF indices to keep on their kernel driver (e.g. igbvf), like 1 or 0,2-3"),
                )
                .arg(
                    Arg::new("vf-driver")
                        .long("vf-driver")
                        .value_name("DRIVER")
                        .requires("kernel-vfs")
                        .help("Kernel driver for --kernel-vfs when the VF id is not a known one"),
                ),
        )
        .subcommand(vf_command())
        .subcommand(
            Command::new("doctor")
                .about(
                    "Check the host (IOMMU, interrupt remapping, vfio, hugepages, memlock, CPUs) and devices",
                )
                .arg(addr_arg(false))
                .arg(
                    Arg::new("xdp")
                        .long("xdp")
                        .value_name("IFACE")
                        .action(ArgAction::Append)
                        .help(
                            "Check AF_XDP on this kernel interface (queues, driver, zero copy: probed by \
                             binding a socket to queue 0, which a zero-copy driver restarts briefly)",
                        ),
                )
                .arg(json_arg()),
        )
}

fn socket_arg() -> Arg {
    Arg::new("socket")
        .long("socket")
        .value_name("PATH")
        .value_parser(value_parser!(PathBuf))
        .help("The service's control socket (default /run/oxpmd/sriov-PF.sock)")
}

fn pf_arg() -> Arg {
    Arg::new("PF")
        .help("PCI address of the PF the service holds")
        .required(true)
        .value_parser(pci_address)
}

fn vf_index_arg(required: bool) -> Arg {
    Arg::new("VF")
        .help("VF index")
        .required(required)
        .value_parser(value_parser!(u16).range(0..=255))
}

fn serve_command() -> Command {
    let path = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name("PATH")
            .value_parser(value_parser!(PathBuf))
            .help(help)
    };
    Command::new("serve")
        .about("The PF service: hold an 82576 PF, create and serve its VFs, administer them through a control socket")
        .arg(
            Arg::new("pf")
                .long("pf")
                .value_name("ADDR")
                .required(true)
                .value_parser(pci_address)
                .help("The 82576 PF"),
        )
        .arg(
            Arg::new("vfs")
                .long("vfs")
                .value_name("N")
                .required(true)
                .value_parser(value_parser!(u16).range(1..=7))
                .help("VFs to create (1..=7; the PF keeps a pool)"),
        )
        .arg(Arg::new("vf").long("vf").value_name("I:SETTINGS").action(ArgAction::Append).help(
            "Per-VF policy: mac=MAC, trust=on|off, spoof=on|off, vlan=N (port VLAN), state=auto|enable|disable, \
             vlans=N, mc=N, max-frame=N, burst=N, rate=N, kernel",
        ))
        .arg(socket_arg())
        .arg(
            Arg::new("socket-group")
                .long("socket-group")
                .value_name("GROUP")
                .help("Let this group connect (socket mode 0660): members may list, show, read counters and open allowed VFs"),
        )
        .arg(
            Arg::new("allow")
                .long("allow")
                .value_name("VF:UID[,UID]")
                .action(ArgAction::Append)
                .help("Uids that may open VF (its descriptors are handed over; no token needed)"),
        )
        .arg(path("token-file", "The 0600 VF token file (default /run/oxpmd/sriov-ADDR.token)"))
        .arg(path("state-file", "The saved state (default /run/oxpmd/sriov-ADDR.state)"))
        .arg(
            Arg::new("restart")
                .long("restart")
                .action(ArgAction::SetTrue)
                .help("Serve VFs that are still enabled: the saved token and state"),
        )
        .arg(
            Arg::new("duration")
                .long("duration")
                .value_name("SECS")
                .value_parser(value_parser!(u64).range(1..=10_000_000))
                .help("Stop after SECS seconds (else on SIGINT / SIGTERM)"),
        )
        .arg(
            Arg::new("remove-vfs")
                .long("remove-vfs")
                .action(ArgAction::SetTrue)
                .help("On exit, set the VF count back to 0"),
        )
}

fn vf_command() -> Command {
    Command::new("vf")
        .about("Administer the VFs of a running PF service (like `ip link set DEV vf N ...`)")
        .subcommand_required(true)
        .subcommand(
            Command::new("list")
                .about("Every VF: MAC, port VLAN, trust, spoof check, link state, limits")
                .arg(pf_arg())
                .arg(socket_arg())
                .arg(json_arg()),
        )
        .subcommand(
            Command::new("show")
                .about("One VF in detail, with its mailbox counters")
                .arg(pf_arg())
                .arg(vf_index_arg(true))
                .arg(socket_arg())
                .arg(json_arg()),
        )
        .subcommand(
            Command::new("set")
                .about("Change a VF at run time: mac M, vlan N (0: none), trust on|off, spoofchk on|off, state auto|enable|disable, max_frame N, max_multicast N")
                .arg(pf_arg())
                .arg(vf_index_arg(true))
                // No value of a setting starts with `-`: options after the settings (`--socket
                // PATH`, `--json`) stay options instead of being taken as settings.
                .arg(
                    Arg::new("SETTINGS")
                        .help("KEY VALUE pairs")
                        .required(true)
                        .num_args(1..),
                )
                .arg(socket_arg())
                .arg(json_arg()),
        )
        .subcommand(
            Command::new("stats")
                .about("Per-VF counters from the PF side (its pool's packets and bytes) and its mailbox counters")
                .arg(pf_arg())
                .arg(vf_index_arg(false))
                .arg(socket_arg())
                .arg(json_arg()),
        )
}

fn run_serve(s: &ArgMatches) -> Result<i32, CliError> {
    // A service logs what it does: every VF event and every administrative change.
    log::set_max_level(log::LevelFilter::Info);
    use oxpmd::pmd::sriov::control_socket::AccessPolicy;
    use oxpmd::pmd::sriov::service::{ServiceConfig, default_socket, parse_vf_option};
    let pf = *s
        .get_one::<PciAddress>("pf")
        .ok_or_else(|| CliError::Usage("--pf is required".into()))?;
    let vfs = usize::from(*s.get_one::<u16>("vfs").unwrap_or(&1));
    let mut policies = std::collections::BTreeMap::new();
    for v in s.get_many::<String>("vf").into_iter().flatten() {
        parse_vf_option(v, &mut policies).map_err(CliError::Usage)?;
    }
    if let Some(i) = policies.keys().find(|i| **i >= vfs) {
        return Err(CliError::Usage(format!("--vf {i}: only {vfs} VF(s) are created")));
    }
    for (i, p) in &policies {
        p.validate(*i)
            .map_err(|e| CliError::Usage(format!("--vf {i}: {e}")))?;
    }
    let mut access = AccessPolicy::default();
    for a in s.get_many::<String>("allow").into_iter().flatten() {
        serve::parse_allow(a, &mut access).map_err(CliError::Usage)?;
    }
    if let Some(i) = access
        .open_allowed
        .iter()
        .rposition(|l| !l.is_empty())
        .filter(|i| *i >= vfs)
    {
        return Err(CliError::Usage(format!(
            "--allow {i}: only {vfs} VF(s) are created"
        )));
    }
    let group = s
        .get_one::<String>("socket-group")
        .map(|g| serve::parse_group(g))
        .transpose()
        .map_err(CliError::Usage)?;
    let mut config = ServiceConfig::new(pf, vfs);
    config.policies = policies.into_iter().collect();
    config.restart = s.get_flag("restart");
    if let Some(p) = s.get_one::<PathBuf>("token-file") {
        config.token_file = p.clone();
    }
    if let Some(p) = s.get_one::<PathBuf>("state-file") {
        config.state_file = p.clone();
    }
    let o = serve::ServeOptions {
        config,
        socket: s
            .get_one::<PathBuf>("socket")
            .cloned()
            .unwrap_or_else(|| default_socket(pf)),
        group,
        access,
        duration: s
            .get_one::<u64>("duration")
            .map(|d| std::time::Duration::from_secs(*d)),
        remove_vfs: s.get_flag("remove-vfs"),
    };
    serve::serve(o).map(|()| 0)
}

/// What `oxpmd vf CMD ...` asks: the subcommand, its arguments, the socket and the request.
fn vf_request(
    m: &ArgMatches,
) -> Result<(&str, &ArgMatches, PathBuf, oxpmd::pmd::sriov::control::Request), CliError> {
    use oxpmd::pmd::sriov::control::Request;
    use oxpmd::pmd::sriov::service::default_socket;
    let Some((cmd, s)) = m.subcommand() else {
        return Err(CliError::Usage("vf: list, show, set or stats".into()));
    };
    let pf = *s
        .get_one::<PciAddress>("PF")
        .ok_or_else(|| CliError::Usage("PF is required".into()))?;
    let socket = s
        .get_one::<PathBuf>("socket")
        .cloned()
        .unwrap_or_else(|| default_socket(pf));
    let vf = s.try_get_one::<u16>("VF").ok().flatten().map(|v| usize::from(*v));
    let req = match (cmd, vf) {
        ("list", _) => Request::List,
        ("show", Some(vf)) => Request::Show { vf },
        ("stats", vf) => Request::Stats { vf },
        ("set", Some(vf)) => {
            let args: Vec<String> = s
                .get_many::<String>("SETTINGS")
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            Request::Set {
                vf,
                changes: vf::parse_settings(&args)?,
            }
        }
        _ => return Err(CliError::Usage(format!("vf {cmd}: a VF index is needed"))),
    };
    Ok((cmd, s, socket, req))
}

fn run_vf(m: &ArgMatches) -> Result<i32, CliError> {
    let (cmd, s, socket, req) = vf_request(m)?;
    let v = vf::request(&socket, &req)?;
    if s.get_flag("json") {
        print_json(&v);
        return Ok(0);
    }
    match cmd {
        "list" => print!("{}", vf::list_table(&v)),
        "stats" => print!("{}", vf::stats_table(&v)),
        _ => {
            print!("{}", vf::show_text(&v["vf"]));
            for n in v["notes"].as_array().into_iter().flatten() {
                println!("note: {}", n.as_str().unwrap_or_default());
            }
        }
    }
    Ok(0)
}

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let level = match r.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                _ => "info",
            };
            eprintln!("oxpmd: {level}: {}", r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

fn addrs(m: &ArgMatches) -> Vec<PciAddress> {
    m.get_many::<PciAddress>("ADDR")
        .map(|v| v.copied().collect())
        .unwrap_or_default()
}

fn print_json(v: &serde_json::Value) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("oxpmd: error: serializing JSON: {e}"),
    }
}

fn run(m: &ArgMatches) -> Result<i32, CliError> {
    let host = Host::from_env();
    match m.subcommand() {
        Some(("devices", s)) => {
            let views = devices::collect(&host, s.get_flag("all"))?;
            let ifaces = oxpmd::pmd::vport::xdp::Interface::all();
            if s.get_flag("json") {
                let mut v = devices::to_json(&views);
                v["xdp_interfaces"] = xdp::to_json(&ifaces);
                print_json(&v);
            } else {
                print!("{}", devices::to_table(&views));
                print!("{}", xdp::to_table(&ifaces));
            }
            Ok(0)
        }
        Some(("bind", s)) => {
            let opts = bind::BindOptions {
                group: s.get_flag("group"),
                force: s.get_flag("force"),
            };
            bind::bind(&host, &addrs(s), &opts).map(|()| 0)
        }
        Some(("unbind", s)) => {
            let opts = bind::UnbindOptions {
                group: s.get_flag("group"),
                driver: s.get_one::<String>("driver").cloned(),
            };
            bind::unbind(&host, &addrs(s), &opts).map(|()| 0)
        }
        Some(("sriov", s)) if s.subcommand_matches("serve").is_some() => {
            run_serve(s.subcommand_matches("serve").unwrap_or(s))
        }
        Some(("vf", s)) => run_vf(s),
        Some(("sriov", s)) => {
            let pf = *s
                .get_one::<PciAddress>("ADDR")
                .ok_or_else(|| CliError::Usage("sriov: a PF address is needed".into()))?;
            let opts = sriov::SriovOptions {
                vfs: *s.get_one::<u16>("vfs").unwrap_or(&0),
                kernel_vfs: s.get_one::<Vec<u16>>("kernel-vfs").cloned().unwrap_or_default(),
                vf_driver: s.get_one::<String>("vf-driver").cloned(),
            };
            sriov::sriov(&host, pf, &opts).map(|()| 0)
        }
        Some(("doctor", s)) => {
            let mut checks = doctor::run(&host, &addrs(s));
            let ifaces: Vec<String> = s
                .get_many::<String>("xdp")
                .map(|v| v.cloned().collect())
                .unwrap_or_default();
            checks.extend(xdp::checks(&ifaces));
            let failed = if s.get_flag("json") {
                let v = doctor::to_json(&checks);
                print_json(&v);
                checks.iter().filter(|c| c.status == doctor::Status::Fail).count()
            } else {
                doctor::print(&checks)
            };
            Ok(if failed > 0 { 1 } else { 0 })
        }
        _ => Err(CliError::Usage("no command given: see `oxpmd --help`".to_owned())),
    }
}

fn main() {
    let m = cli().get_matches();
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if m.get_flag("verbose") {
        log::LevelFilter::Info
    } else {
        log::LevelFilter::Warn
    });
    let code = match run(&m) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oxpmd: error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use oxpmd::pmd::sriov::AdminChange;
    use oxpmd::pmd::sriov::control::Request;

    #[test]
    fn cli_is_consistent() {
        super::cli().debug_assert();
    }

    /// `oxpmd ARGS` parsed down to the `vf` request: (subcommand, socket, request, --json).
    fn vf(args: &[&str]) -> (String, PathBuf, Request, bool) {
        let m = super::cli()
            .try_get_matches_from(std::iter::once("oxpmd").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Some(("vf", m)) = m.subcommand() else {
            panic!("not vf")
        };
        let (cmd, s, socket, req) = super::vf_request(m).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        (cmd.to_string(), socket, req, s.get_flag("json"))
    }

    #[test]
    fn every_vf_subcommand_takes_socket_before_or_after_its_arguments() {
        let pf = "0000:00:02.0";
        let sock = PathBuf::from("/tmp/t.sock");
        let mac = "02:00:00:00:10:09";
        let set = Request::Set {
            vf: 0,
            changes: vec![AdminChange::Mac(mac.parse().unwrap())],
        };
        for (args, want) in [
            (vec!["vf", "list", pf, "--socket", "/tmp/t.sock"], Request::List),
            (vec!["vf", "list", "--socket", "/tmp/t.sock", pf], Request::List),
            (
                vec!["vf", "show", pf, "1", "--socket", "/tmp/t.sock"],
                Request::Show { vf: 1 },
            ),
            (
                vec!["vf", "show", "--socket", "/tmp/t.sock", pf, "1"],
                Request::Show { vf: 1 },
            ),
            (
                vec!["vf", "stats", pf, "--socket", "/tmp/t.sock"],
                Request::Stats { vf: None },
            ),
            (
                vec!["vf", "stats", pf, "2", "--socket", "/tmp/t.sock"],
                Request::Stats { vf: Some(2) },
            ),
            (
                vec!["vf", "set", pf, "0", "mac", mac, "--socket", "/tmp/t.sock"],
                set.clone(),
            ),
            (
                vec!["vf", "set", "--socket", "/tmp/t.sock", pf, "0", "mac", mac],
                set.clone(),
            ),
            (
                vec!["vf", "set", pf, "--socket", "/tmp/t.sock", "0", "mac", mac],
                set.clone(),
            ),
        ] {
            let (_, socket, req, json) = vf(&args);
            assert_eq!(socket, sock, "{args:?}");
            assert_eq!(req, want, "{args:?}");
            assert!(!json, "{args:?}");
        }
        // --json and --socket after the settings, in either order.
        let (cmd, socket, req, json) = vf(&[
            "vf",
            "set",
            pf,
            "0",
            "mac",
            mac,
            "--json",
            "--socket",
            "/tmp/t.sock",
        ]);
        assert_eq!(
            (cmd.as_str(), socket, req, json),
            ("set", sock.clone(), set.clone(), true)
        );
        // Without --socket: the PF's default socket.
        let (_, socket, _, _) = vf(&["vf", "set", pf, "0", "mac", mac]);
        assert_eq!(socket, PathBuf::from("/run/oxpmd/sriov-0000:00:02.0.sock"));
    }
}
