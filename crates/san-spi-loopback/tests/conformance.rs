//! The transport conformance suite, in one process.

use san_spi_loopback::LoopbackTransport;
use san_spi_testkit::{transport_conformance, Harness};

/// Fresh loopback transports, each in its own namespace.
struct InProcess;

impl Harness for InProcess {
    type T = LoopbackTransport;

    fn transport(test: &str) -> LoopbackTransport {
        LoopbackTransport::new(format!("conformance-{}-{}", std::process::id(), test))
    }
}

transport_conformance!(loopback_in_process, InProcess);
