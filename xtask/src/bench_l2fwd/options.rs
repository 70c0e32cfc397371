//! The bench's command line: its options, the memory kinds and the core cases.

pub(super) const USAGE: &str = "\
usage: cargo xtask bench l2fwd-null [--duration SECS] [--runs N] [--core N] [--cores 1|2|both]
                                    [--memory huge|4k|both] [--no-install]

  our examples/l2fwd over null0/null1 against dpdk-testpmd io forwarding over net_null0/net_null1,
  on one forwarding core and/or two (one per direction); prints both rates (Mpps), the two-core
  scaling factors and `ratio: X` (ours / DPDK on one core)

  --duration SECS   run time of each side per run (default 10, at least 3)
  --runs N          alternate runs per side, best median kept (default 1)
  --core N          forwarding core of both sides on one core (default 1; DPDK's main lcore
                    and our main thread on the other CPU)
  --cores CASE      1 (default): one forwarding core; 2: two forwarding cores, one per
                    direction (on two CPUs the main lcore / main thread shares the first);
                    both: each run does both cases, and the scaling (2 cores / 1 core) is printed
  --memory KIND     huge (2 MiB hugepages, reserved for the run as root), 4k, or both (default):
                    both sides on the same kind, a ratio per kind
  --no-install      do not install the Debian `dpdk` package when dpdk-testpmd is missing";

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Opts {
    pub(super) duration: u64,
    pub(super) runs: u32,
    pub(super) core: usize,
    pub(super) cases: Vec<Cores>,
    pub(super) install: bool,
    pub(super) memory: Vec<Memory>,
}

/// The memory both sides' packet buffers live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Memory {
    Huge2M,
    Base4K,
}

impl Memory {
    pub(super) fn label(self) -> &'static str {
        match self {
            Memory::Huge2M => "2 MiB hugepages",
            Memory::Base4K => "4 KiB pages",
        }
    }

    /// l2fwd's `--pages` value and the page text its set-up line prints.
    pub(super) fn ours(self) -> (&'static str, &'static str) {
        match self {
            Memory::Huge2M => ("2m", "on 2 MiB pages"),
            Memory::Base4K => ("4k", "on 4 KiB pages"),
        }
    }

    /// testpmd's EAL memory option.
    pub(super) fn dpdk(self) -> &'static str {
        match self {
            Memory::Huge2M => "--in-memory",
            Memory::Base4K => "--no-huge",
        }
    }
}

/// How many forwarding cores each side runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cores {
    /// One core forwards both directions (ours `-q 2`, testpmd `--nb-cores=1`).
    One,
    /// One core per direction (ours `-q 1` on two cores, testpmd `--nb-cores=2`).
    Two,
}

impl Cores {
    pub(super) fn count(self) -> usize {
        match self {
            Cores::One => 1,
            Cores::Two => 2,
        }
    }
}

pub(super) fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        duration: 10,
        runs: 1,
        core: 1,
        cases: vec![Cores::One],
        install: true,
        memory: vec![Memory::Huge2M, Memory::Base4K],
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |what: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{what}: missing value"))?;
            v.parse::<u64>()
                .map_err(|_| format!("{what}: `{v}` is not a number"))
        };
        match a.as_str() {
            "--duration" => {
                o.duration = num("--duration")?;
                if !(3..=3600).contains(&o.duration) {
                    return Err("--duration: 3..=3600 seconds".into());
                }
            }
            "--runs" => {
                let n = num("--runs")?;
                if !(1..=20).contains(&n) {
                    return Err("--runs: 1..=20".into());
                }
                o.runs = n as u32;
            }
            "--core" => {
                let n = num("--core")?;
                if n > 1023 {
                    return Err("--core: 0..=1023".into());
                }
                o.core = n as usize;
            }
            "--cores" => {
                o.cases = choice(
                    "--cores",
                    it.next(),
                    &[
                        ("1", &[Cores::One][..]),
                        ("2", &[Cores::Two]),
                        ("both", &[Cores::One, Cores::Two]),
                    ],
                )?
            }
            "--no-install" => o.install = false,
            "--memory" => {
                o.memory = choice(
                    "--memory",
                    it.next(),
                    &[
                        ("huge", &[Memory::Huge2M][..]),
                        ("4k", &[Memory::Base4K]),
                        ("both", &[Memory::Huge2M, Memory::Base4K]),
                    ],
                )?
            }
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(o)
}

/// The list named by `value`, the value of option `what`; the error names the choices.
fn choice<T: Clone>(what: &str, value: Option<&String>, choices: &[(&str, &[T])]) -> Result<Vec<T>, String> {
    let v = value.map_or("", String::as_str);
    choices
        .iter()
        .find(|(name, _)| *name == v)
        .map(|(_, list)| list.to_vec())
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            format!("{what}: `{v}`: expected one of {}", names.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options() {
        let defaults = parse(&[]).unwrap();
        assert_eq!(
            defaults,
            Opts {
                duration: 10,
                runs: 1,
                core: 1,
                cases: vec![Cores::One],
                install: true,
                memory: vec![Memory::Huge2M, Memory::Base4K],
            }
        );
        let a = args(&["--duration", "5", "--runs", "2", "--core", "0", "--no-install"]);
        assert_eq!(
            parse(&a).unwrap(),
            Opts {
                duration: 5,
                runs: 2,
                core: 0,
                install: false,
                ..defaults
            }
        );
        assert_eq!(
            parse(&args(&["--memory", "4k"])).unwrap().memory,
            vec![Memory::Base4K]
        );
        for bad in [
            &["--duration", "1"][..],
            &["--runs", "0"],
            &["--core", "x"],
            &["--what"],
            &["--duration"],
            &["--memory", "1g"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn core_cases() {
        for (v, want) in [
            ("1", &[Cores::One][..]),
            ("2", &[Cores::Two]),
            ("both", &[Cores::One, Cores::Two]),
        ] {
            let o = parse(&args(&["--cores", v, "--memory", "huge"])).unwrap();
            assert_eq!(o.cases, want, "--cores {v}");
            assert_eq!(o.memory, [Memory::Huge2M]);
        }
        // The last one given counts, as for --memory.
        assert_eq!(
            parse(&args(&["--cores", "2", "--cores", "1"])).unwrap().cases,
            [Cores::One]
        );
        for bad in [
            &["--cores"][..],
            &["--cores", "3"],
            &["--cores", "0"],
            &["--cores", "1,2"],
        ] {
            let e = parse(&args(bad)).unwrap_err();
            assert!(
                e.starts_with("--cores: `") && e.ends_with("expected one of 1, 2, both"),
                "{bad:?}: {e}"
            );
        }
        assert_eq!((Cores::One.count(), Cores::Two.count()), (1, 2));
    }
}
