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
mod sriov;
mod state;

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
                .about("Set the VF count of an SR-IOV PF (through 0, as the kernel requires)")
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
        .subcommand(
            Command::new("doctor")
                .about(
                    "Check the host (IOMMU, interrupt remapping, vfio, hugepages, memlock, CPUs) and devices",
                )
                .arg(addr_arg(false))
                .arg(json_arg()),
        )
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
            if s.get_flag("json") {
                print_json(&devices::to_json(&views));
            } else {
                print!("{}", devices::to_table(&views));
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
        Some(("sriov", s)) => {
            let pf = addrs(s)[0];
            let opts = sriov::SriovOptions {
                vfs: *s.get_one::<u16>("vfs").unwrap_or(&0),
                kernel_vfs: s.get_one::<Vec<u16>>("kernel-vfs").cloned().unwrap_or_default(),
                vf_driver: s.get_one::<String>("vf-driver").cloned(),
            };
            sriov::sriov(&host, pf, &opts).map(|()| 0)
        }
        Some(("doctor", s)) => {
            let checks = doctor::run(&host, &addrs(s));
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
    #[test]
    fn cli_is_consistent() {
        super::cli().debug_assert();
    }
}
