//! Telling a frozen TCG guest from a slow one, from two snapshots of its vCPUs' local APICs.
//!
//! Under TCG a vCPU sometimes stops taking timer interrupts for good (docs/testvm.md, "Frozen
//! guests: the stall study"). Two shapes have been dumped, both with the vCPU halted (`HLT=1`):
//!
//! - **lost one-shot event**: the LAPIC timer is one-shot, its count has run out
//!   (`current_count = 0`), and nothing is pending or in service. Linux believes the event it
//!   programmed is still to come, so it never reprograms the timer: every later timer on that CPU
//!   queues behind an expiry that has passed;
//! - **timer vector stuck in service**: the timer's vector is in `ISR`, so the processor priority
//!   blocks it and every device interrupt below it.
//!
//! A snapshot alone proves nothing (an idle NOHZ CPU with no timers queued looks like the first
//! shape), so the harness takes one when the kernel reports an RCU stall and another some seconds
//! later: a vCPU in one of these shapes in both, with the very same timer programming, after the
//! kernel reported a stall, is frozen (the vCPU is not matched to the one the report names: a
//! halted vCPU whose armed timer ran out without an interrupt for 15 s is a freeze whichever it
//! is). The second shape needs no
//! report (no healthy vCPU halts inside its timer handler), and a freeze may come without one
//! (seen in CI: the stuck vCPU was the one that would have reported): the harness also looks
//! when the console has been silent a while, and then counts only that shape. Both snapshots are the QEMU
//! monitor's text (`info lapic`, `info registers`; hw/intc/apic.c is where the LAPIC timer of a
//! TCG guest lives).

/// What one vCPU's local APIC timer and halt state looked like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuTimer {
    pub cpu: u32,
    pub halted: bool,
    /// Running user code (`CPL=3`).
    pub user_mode: bool,
    pub one_shot: bool,
    /// The timer's LVT masked (what Linux leaves on a CPU whose timer it stopped).
    pub masked: bool,
    /// The vector the timer's LVT delivers.
    pub vector: Option<u16>,
    pub initial_count: Option<u64>,
    pub current_count: Option<u64>,
    pub isr: Vec<u16>,
    pub irr: Vec<u16>,
}

impl VcpuTimer {
    /// Halted, or running user code, with the timer vector in service: a healthy vCPU never
    /// halts inside its timer handler, and Linux returns to user mode only after the handler's
    /// end of interrupt, so this alone, seen twice, is a freeze (a vCPU of a busy-polling worker
    /// was seen in user mode so, its tick gone, in a vm_l2fwd run).
    fn stuck_in_service(&self) -> bool {
        (self.halted || self.user_mode) && self.vector.is_some_and(|v| self.isr.contains(&v))
    }

    /// Halted with a one-shot event that ran out and nothing pending: also what an idle vCPU
    /// with no timer queued looks like, so a freeze only after the kernel's stall report.
    fn lost_event(&self) -> bool {
        // Armed (unmasked, a count programmed): Linux stops an idle CPU's timer with nothing
        // queued by masking it and writing a count of 0, which is healthy.
        self.halted
            && self.one_shot
            && !self.masked
            && self.initial_count.is_some_and(|c| c > 0)
            && self.current_count == Some(0)
            && self.irr.is_empty()
            && self.isr.is_empty()
    }

    fn looks_dead(&self) -> bool {
        self.stuck_in_service() || self.lost_event()
    }

    /// Which of the two shapes this vCPU shows (the stuck vector first: it holds whatever the
    /// timer's count says).
    fn shape(&self) -> Option<FreezeShape> {
        if self.stuck_in_service() {
            Some(FreezeShape::StuckInService)
        } else if self.lost_event() {
            Some(FreezeShape::LostEvent)
        } else {
            None
        }
    }
}

/// The two ways a frozen vCPU has been seen to sit (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreezeShape {
    /// Halted with the timer vector in service.
    StuckInService,
    /// Halted with an armed one-shot timer run out and nothing pending.
    LostEvent,
}

/// One frozen vCPU and the shape it showed in the second look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrozenVcpu {
    pub cpu: u32,
    pub shape: FreezeShape,
    /// Seen running user code rather than halted.
    pub user_mode: bool,
}

impl std::fmt::Display for FrozenVcpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.shape {
            FreezeShape::StuckInService if self.user_mode => {
                write!(
                    f,
                    "vCPU {} running user code with its timer vector in service",
                    self.cpu
                )
            }
            FreezeShape::StuckInService => {
                write!(f, "vCPU {} halted with its timer vector in service", self.cpu)
            }
            FreezeShape::LostEvent => write!(
                f,
                "vCPU {} halted with its one-shot timer run out and no interrupt raised",
                self.cpu
            ),
        }
    }
}

/// The frozen vCPUs as one clause: "vCPU 0 halted with ..., vCPU 1 halted with ...".
pub fn describe(frozen: &[FrozenVcpu]) -> String {
    frozen
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses the text [`super::qmp::frozen_state`] returns (`--- cpu N: info lapic` and
/// `--- cpu N: info registers` sections) into one entry per vCPU seen.
pub fn parse_snapshot(text: &str) -> Vec<VcpuTimer> {
    let mut out: Vec<VcpuTimer> = Vec::new();
    let mut current: Option<usize> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("--- cpu ") {
            let cpu = rest.split(':').next().and_then(|n| n.trim().parse::<u32>().ok());
            current = cpu.map(|cpu| match out.iter().position(|v| v.cpu == cpu) {
                Some(i) => i,
                None => {
                    out.push(VcpuTimer {
                        cpu,
                        halted: false,
                        user_mode: false,
                        one_shot: false,
                        masked: false,
                        vector: None,
                        initial_count: None,
                        current_count: None,
                        isr: Vec::new(),
                        irr: Vec::new(),
                    });
                    out.len() - 1
                }
            });
            continue;
        }
        let Some(v) = current.map(|i| &mut out[i]) else {
            continue;
        };
        let word = line.split_whitespace().next().unwrap_or("");
        match word {
            "LVTT" => {
                v.one_shot = line.contains("one-shot");
                v.masked = line.split_whitespace().any(|w| w == "masked");
                v.vector = number_after(line, "(vec ").map(|n| n as u16);
            }
            "Timer" => {
                v.initial_count = number_after(line, "initial_count = ");
                v.current_count = number_after(line, "current_count = ");
            }
            "ISR" => v.isr = vectors(line),
            "IRR" => v.irr = vectors(line),
            _ => {
                if line.contains(" HLT=") {
                    v.halted = line.contains(" HLT=1");
                    v.user_mode = line.split_whitespace().any(|w| w == "CPL=3");
                }
            }
        }
    }
    out
}

/// The vCPUs dead in both snapshots with the same timer programming: frozen, not slow. For
/// after the kernel's stall report.
pub fn frozen_vcpus(first: &[VcpuTimer], second: &[VcpuTimer]) -> Vec<FrozenVcpu> {
    dead_in_both(first, second, VcpuTimer::looks_dead)
}

/// The vCPUs halted with the timer vector in service in both snapshots: frozen even without a
/// stall report (when the stuck vCPU is the one that would have reported, or the other's tick
/// is stopped, none comes).
pub fn stuck_vcpus(first: &[VcpuTimer], second: &[VcpuTimer]) -> Vec<FrozenVcpu> {
    dead_in_both(first, second, VcpuTimer::stuck_in_service)
}

fn dead_in_both(first: &[VcpuTimer], second: &[VcpuTimer], dead: fn(&VcpuTimer) -> bool) -> Vec<FrozenVcpu> {
    first
        .iter()
        .filter(|a| dead(a))
        .filter_map(|a| {
            second.iter().find(|b| {
                b.cpu == a.cpu
                    && dead(b)
                    && b.initial_count == a.initial_count
                    && b.one_shot == a.one_shot
                    && b.isr == a.isr
            })
        })
        .filter_map(|b| {
            b.shape().map(|shape| FrozenVcpu {
                cpu: b.cpu,
                shape,
                user_mode: b.user_mode,
            })
        })
        .collect()
}

/// The decimal number right after `key` in `line`.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The vectors of an `ISR`/`IRR` line (`(none)` is none).
fn vectors(line: &str) -> Vec<u16> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped as the monitor prints it (a frozen vm_sriov_traffic guest, 2026-12-03): vCPU 0 lost
    /// its one-shot event, vCPU 1 is idle with its next event 4 s away.
    fn lost_event(cpu0_initial: u64, cpu1_current: u64) -> String {
        format!(
            "query-cpus-fast: []\n\
             --- cpu 0: info lapic\n\
             LVTT\t 0x000000ec active-hi edge                 one-shot     Fixed  (vec 236)\n\
             Timer\t DCR=0x3 (divide by 16) initial_count = {cpu0_initial} current_count = 0\n\
             ISR\t (none)\n\
             IRR\t (none)\n\
             --- cpu 0: info registers\n\
             RIP=ffffffffb88e705f RFL=00000206 [-----P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n\
             --- cpu 1: info lapic\n\
             LVTT\t 0x000000ec active-hi edge                 one-shot     Fixed  (vec 236)\n\
             Timer\t DCR=0x3 (divide by 16) initial_count = 249935713 current_count = {cpu1_current}\n\
             ISR\t (none)\n\
             IRR\t (none)\n\
             --- cpu 1: info registers\n\
             RIP=ffffffffb88e705f RFL=00000202 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=1\n"
        )
    }

    #[test]
    fn parses_the_monitors_text() {
        let s = parse_snapshot(&lost_event(34296, 84374346));
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            VcpuTimer {
                cpu: 0,
                halted: true,
                user_mode: false,
                one_shot: true,
                masked: false,
                vector: Some(236),
                initial_count: Some(34296),
                current_count: Some(0),
                isr: vec![],
                irr: vec![],
            }
        );
        assert_eq!(s[1].current_count, Some(84374346));
    }

    #[test]
    fn a_lost_event_unchanged_between_snapshots_is_frozen() {
        let a = parse_snapshot(&lost_event(34296, 84374346));
        let b = parse_snapshot(&lost_event(34296, 11));
        let frozen = frozen_vcpus(&a, &b);
        assert_eq!(
            frozen,
            vec![FrozenVcpu {
                cpu: 0,
                shape: FreezeShape::LostEvent,
                user_mode: false
            }]
        );
        assert_eq!(
            describe(&frozen),
            "vCPU 0 halted with its one-shot timer run out and no interrupt raised"
        );
    }

    #[test]
    fn a_timer_programmed_again_between_snapshots_is_alive() {
        // An idle CPU that ran its event and later got a new one is not frozen, though each
        // snapshot alone looks like the lost-event shape.
        let a = parse_snapshot(&lost_event(34296, 5));
        let b = parse_snapshot(&lost_event(51200, 5));
        assert!(frozen_vcpus(&a, &b).is_empty());
    }

    #[test]
    fn a_stopped_timer_is_an_idle_vcpu_not_a_lost_event() {
        // Linux's shutdown of the LAPIC timer: LVT masked, count 0.
        let stopped = lost_event(0, 5).replacen(
            "0x000000ec active-hi edge                 one-shot",
            "0x000100ec active-hi edge  masked         one-shot",
            1,
        );
        let a = parse_snapshot(&stopped);
        assert!(a[0].masked);
        assert!(frozen_vcpus(&a, &a).is_empty());
        let unmasked_zero = parse_snapshot(&lost_event(0, 5));
        assert!(frozen_vcpus(&unmasked_zero, &unmasked_zero).is_empty());
    }

    #[test]
    fn a_running_vcpu_or_a_pending_interrupt_is_alive() {
        let running = lost_event(34296, 5).replacen("HLT=1", "HLT=0", 1);
        let a = parse_snapshot(&running);
        assert!(frozen_vcpus(&a, &a).is_empty());
        let pending = lost_event(34296, 5).replacen("IRR\t (none)", "IRR\t 236", 1);
        let a = parse_snapshot(&pending);
        assert!(frozen_vcpus(&a, &a).is_empty());
    }

    #[test]
    fn without_a_stall_report_only_the_stuck_vector_counts() {
        let a = parse_snapshot(&lost_event(34296, 5));
        assert!(
            stuck_vcpus(&a, &a).is_empty(),
            "an idle vCPU without timers is not frozen"
        );
        let stuck = lost_event(34296, 5)
            .replacen("ISR\t (none)", "ISR\t 236", 1)
            .replacen("IRR\t (none)", "IRR\t 37 236", 1);
        let a = parse_snapshot(&stuck);
        assert_eq!(
            stuck_vcpus(&a, &a),
            vec![FrozenVcpu {
                cpu: 0,
                shape: FreezeShape::StuckInService,
                user_mode: false
            }]
        );
    }

    #[test]
    fn user_code_running_with_the_timer_vector_in_service_is_frozen() {
        // vCPU 1 of a frozen vm_l2fwd guest (2026-12-04): l2fwd's worker polling in user mode,
        // 236 in service and pending again, PPR 0xe0; a vCPU in the kernel so is its handler.
        let text = |cpl: u8| {
            format!(
                "--- cpu 1: info lapic\n\
                 LVTT\t 0x000000ec active-hi edge                 one-shot     Fixed  (vec 236)\n\
                 Timer\t DCR=0x3 (divide by 16) initial_count = 206999 current_count = 0\n\
                 ISR\t 236 \n\
                 IRR\t 36 236 \n\
                 --- cpu 1: info registers\n\
                 RIP=0000562a652442b0 RFL=00000216 [----AP-] CPL={cpl} II=0 A20=1 SMM=0 HLT=0\n"
            )
        };
        let user = parse_snapshot(&text(3));
        assert!(user[0].user_mode && !user[0].halted);
        let frozen = stuck_vcpus(&user, &user);
        assert_eq!(
            frozen,
            vec![FrozenVcpu {
                cpu: 1,
                shape: FreezeShape::StuckInService,
                user_mode: true
            }]
        );
        assert_eq!(
            describe(&frozen),
            "vCPU 1 running user code with its timer vector in service"
        );
        let kernel = parse_snapshot(&text(0));
        assert!(
            stuck_vcpus(&kernel, &kernel).is_empty(),
            "a handler running in the kernel is alive"
        );
    }

    #[test]
    fn the_timer_vector_stuck_in_service_is_frozen() {
        // The boot freeze of the stall study: periodic timer counting, 236 in service and pending.
        let text = "--- cpu 0: info lapic\n\
             LVTT\t 0x000200ec active-hi edge                 periodic     Fixed  (vec 236)\n\
             Timer\t DCR=0x3 (divide by 16) initial_count = 249996 current_count = 232413\n\
             ISR\t 236\n\
             IRR\t 33 34 36 236\n\
             --- cpu 0: info registers\n\
             RIP=ffffffffb40e705f RFL=00000212 [----A--] CPL=0 II=0 A20=1 SMM=0 HLT=1\n";
        let a = parse_snapshot(text);
        assert_eq!(a[0].isr, vec![236]);
        assert_eq!(a[0].irr, vec![33, 34, 36, 236]);
        // After a stall report too, the message names this shape, not the lost event.
        let frozen = frozen_vcpus(&a, &a);
        assert_eq!(
            frozen,
            vec![FrozenVcpu {
                cpu: 0,
                shape: FreezeShape::StuckInService,
                user_mode: false
            }]
        );
        assert_eq!(
            describe(&frozen),
            "vCPU 0 halted with its timer vector in service"
        );
    }
}
