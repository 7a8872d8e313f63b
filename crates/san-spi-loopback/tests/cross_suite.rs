//! The conformance suite across two processes (`san_spi_testkit::remote`), in both copy
//! modes.

mod common;

use san_spi_loopback::{CopyMode, LoopbackTransport};
use san_spi_testkit::{transport_conformance_cross_process, Harness};

/// Single-copy loopback; the namespace is the name alone so both processes meet.
struct XpSingleCopy;

#[global_allocator]
static ALLOCATOR: san_spi_testkit::CountingAllocator = san_spi_testkit::CountingAllocator;

impl Harness for XpSingleCopy {
    type T = LoopbackTransport;
    const ALLOCATION_FREE: bool = true;

    fn forge(descriptor: &[u8]) -> Option<Vec<u8>> {
        common::forge_key(descriptor)
    }

    fn transport(name: &str) -> LoopbackTransport {
        LoopbackTransport::new(name).with_copy_mode(CopyMode::SingleCopy)
    }
}

/// Bouncing loopback.
struct XpBounce;

impl Harness for XpBounce {
    type T = LoopbackTransport;
    const ALLOCATION_FREE: bool = true;

    fn forge(descriptor: &[u8]) -> Option<Vec<u8>> {
        common::forge_key(descriptor)
    }

    fn transport(name: &str) -> LoopbackTransport {
        LoopbackTransport::new(name).with_copy_mode(CopyMode::Bounce)
    }
}

transport_conformance_cross_process!(loopback_cross_single_copy, XpSingleCopy);
transport_conformance_cross_process!(loopback_cross_bounce, XpBounce);
