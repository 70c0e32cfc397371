//! Sleeping until frames arrive: [`wait_for_rx`] over the RX interrupts of several queues (of one
//! port or of several), with a timeout.
//!
//! The loop it serves: poll a queue until it is empty, then wait; on a wake-up, poll again. The
//! wait arms each queue's interrupt and only then looks at each ring once more: a frame that
//! landed between the last empty poll and the unmask raised no interrupt, and is found by that
//! look instead (no frame is stranded until the next one arrives). Every queue is masked again
//! before the wait returns, so frames that arrive while the caller polls cost no interrupts.
#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::time::Duration;

use crate::error::{PortError, Result};
use crate::port::RxQueue;

/// Waits until at least one of `queues` has a frame, or `timeout` passes. Returns the indices
/// (into `queues`) of the queues that have frames or were woken by their interrupt (empty: the
/// timeout passed). Each queue needs [`RxQueue::enable_rx_interrupt`] first.
pub fn wait_for_rx(queues: &mut [&mut RxQueue], timeout: Duration) -> Result<Vec<usize>> {
    let mut ready = Vec::new();
    let armed = arm_all(queues, &mut ready);
    if armed.is_ok() && ready.is_empty() {
        let woken = {
            let fds: Vec<BorrowedFd<'_>> = queues.iter().filter_map(|q| q.rx_interrupt_fd()).collect();
            oxpmd_vfio::wait_readable(&fds, timeout)
        };
        match woken {
            Ok(w) => ready = w,
            Err(e) => {
                disarm_all(queues)?;
                return Err(PortError::Driver {
                    device: queues.first().map_or(String::new(), |q| q.device().to_string()),
                    op: "wait for RX interrupts",
                    source: Box::new(e),
                });
            }
        }
    }
    disarm_all(queues)?;
    armed.map(|()| ready)
}

/// Arms every queue; notes those that already hold a frame. A failure stops at that queue (the
/// caller disarms all).
fn arm_all(queues: &mut [&mut RxQueue], ready: &mut Vec<usize>) -> Result<()> {
    for (i, q) in queues.iter_mut().enumerate() {
        if q.rx_interrupt_fd().is_none() {
            return Err(PortError::RxInterruptNotEnabled {
                device: q.device().to_string(),
                queue: q.queue_id(),
            });
        }
        if q.arm_rx_interrupt()? {
            ready.push(i);
        }
    }
    Ok(())
}

fn disarm_all(queues: &mut [&mut RxQueue]) -> Result<()> {
    for q in queues.iter_mut() {
        q.disarm_rx_interrupt()?;
    }
    Ok(())
}
