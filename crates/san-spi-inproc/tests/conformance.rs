//! The whole transport conformance suite against the in-process transport, with no part
//! of it skipped.

use san_spi_inproc::InprocTransport;
use san_spi_testkit::{not_applicable, Harness};

#[global_allocator]
static ALLOCATOR: san_spi_testkit::CountingAllocator = san_spi_testkit::CountingAllocator;

/// Both ends of a connection share a fabric (the connection's name) and each has its own
/// domain; the descriptor is self-checking, so the suite forges it byte by byte.
struct InprocHarness;

impl Harness for InprocHarness {
    type T = InprocTransport;
    const ALLOCATION_FREE: bool = true;

    fn transport(name: &str) -> InprocTransport {
        InprocTransport::new(name)
    }
}

san_spi_testkit::transport_conformance!(InprocHarness);

#[test]
fn every_part_of_the_suite_applies() {
    assert_eq!(not_applicable::<InprocHarness>(), vec![]);
}
