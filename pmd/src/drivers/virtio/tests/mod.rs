//! Unit tests of the virtio-net driver: feature negotiation, the rings, the RX / TX queues and
//! the control queue against a fake device that plays the device side over the same in-memory
//! rings, the RX filters, a hostile device, and teardown races.
//!
//! Buffer addresses are CPU addresses here (pools over `IdentityMap`, `HeapRingMemory`).

/// Runs a generic test (a `fn name<K: Kind>()` of the invoking module) for both ring kinds.
macro_rules! both_kinds {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn split() {
                    super::$name::<crate::drivers::virtio::tests::fake::Split>();
                }
                #[test]
                fn packed() {
                    super::$name::<crate::drivers::virtio::tests::fake::Packed>();
                }
            }
        )*
    };
}

mod ctrl;
mod fake;
mod filters;
mod hostile;
mod negotiation;
mod rings;
mod rx;
mod teardown;
mod tso;
mod tx;
