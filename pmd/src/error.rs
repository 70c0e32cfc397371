//! Errors of the port layer: each names the device and the operation, with the fix where known.
#![forbid(unsafe_code)]

use std::time::Duration;

/// A boxed error from a lower layer (vfio, dma) or a driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while opening, configuring or running a port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The device string is neither a PCI address nor a virtual-port name.
    #[error(
        "`{spec}`: not a device: expected a PCI address (0000:00:02.0 or 00:02.0) or a virtual port \
         (null0, net_null0, ring:NAME, net_ring:NAME)"
    )]
    BadDeviceSpec {
        /// What the user gave.
        spec: String,
    },
    /// A `fault:` device string whose options do not parse.
    #[error(
        "`{spec}`: bad fault port: {reason}; expected \
         fault:drop=P%,corrupt=P%,dup=P%,reorder=P%,rate=PPS,seed=N,dir=rx|tx|both:DEVICE \
         (every option optional)"
    )]
    BadFaultSpec {
        /// What the user gave.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// No driver in the registry handles this vendor:device id.
    #[error(
        "{device}: no driver for PCI id {vendor:04x}:{device_id:04x} (known: {known}); \
         check the address with `lspci -nn -s {device}`"
    )]
    NoDriver {
        /// PCI address.
        device: String,
        /// PCI vendor id.
        vendor: u16,
        /// PCI device id.
        device_id: u16,
        /// The ids the registry knows.
        known: String,
    },
    /// The registry knows the id but its driver has not landed yet.
    #[error("{device}: driver `{driver}` for {vendor:04x}:{device_id:04x} is not built yet")]
    DriverNotBuilt {
        /// PCI address.
        device: String,
        /// Driver name.
        driver: &'static str,
        /// PCI vendor id.
        vendor: u16,
        /// PCI device id.
        device_id: u16,
    },
    /// A configuration value was refused.
    #[error("{device}: {op}: {reason}")]
    InvalidConfig {
        /// Device name.
        device: String,
        /// Operation, e.g. "configure".
        op: &'static str,
        /// What is wrong and the accepted range.
        reason: String,
    },
    /// The operation is not allowed in the port's current state.
    #[error("{device}: {op}: the port is {state}; {hint}")]
    WrongState {
        /// Device name.
        device: String,
        /// Operation.
        op: &'static str,
        /// Current state.
        state: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// The device does not support the operation.
    #[error("{device}: {op}: not supported by driver `{driver}`")]
    Unsupported {
        /// Device name.
        device: String,
        /// Operation.
        op: &'static str,
        /// Driver name.
        driver: &'static str,
    },
    /// The queue's driver has no RX interrupt.
    #[error("{device}: RX queue {queue}: the driver has no RX interrupt for it; poll the queue instead")]
    NoRxInterrupt {
        /// Device name.
        device: String,
        /// Queue.
        queue: u16,
    },
    /// RX interrupts were not enabled on a queue before waiting on it.
    #[error("{device}: RX queue {queue}: wait for RX: call enable_rx_interrupt() on the queue first")]
    RxInterruptNotEnabled {
        /// Device name.
        device: String,
        /// Queue.
        queue: u16,
    },
    /// The link stayed down for the whole wait.
    #[error(
        "{device}: wait for link: still down after {waited:?}; check the cable / peer (in the VM: QEMU netdev)"
    )]
    LinkTimeout {
        /// Device name.
        device: String,
        /// How long we waited.
        waited: Duration,
    },
    /// A virtual ring port name is already taken by two ports.
    #[error("{device}: open: ring `{name}` already has both ends open")]
    RingBusy {
        /// Device name.
        device: String,
        /// Ring name.
        name: String,
    },
    /// Reading PCI identity from sysfs failed.
    #[error("{device}: {op}: {source}; is the address right and is sysfs mounted?")]
    Sysfs {
        /// PCI address.
        device: String,
        /// Operation.
        op: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The mempool could not supply what the operation needed.
    #[error("{device}: {op}: mempool has {available} free buffers, {needed} needed; make the pool larger")]
    PoolTooSmall {
        /// Device name.
        device: String,
        /// Operation.
        op: &'static str,
        /// Free buffers.
        available: usize,
        /// Buffers needed.
        needed: usize,
    },
    /// A driver or lower layer (vfio, dma) failed.
    #[error("{device}: {op}: {source}")]
    Driver {
        /// Device name.
        device: String,
        /// Operation.
        op: &'static str,
        /// The underlying error.
        source: BoxError,
    },
}

/// Result alias of the port layer.
pub type Result<T, E = PortError> = std::result::Result<T, E>;
