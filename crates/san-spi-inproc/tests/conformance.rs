//! The whole transport conformance suite against the in-process transport.

use san_spi_inproc::InprocTransport;
use san_spi_testkit::Harness;

/// A fresh fabric per test, so tests never see each other's listeners.
struct InprocHarness;

impl Harness for InprocHarness {
    type T = InprocTransport;

    fn transport(test: &str) -> InprocTransport {
        InprocTransport::new(format!("conformance-{test}"))
    }
}

san_spi_testkit::transport_conformance!(inproc, InprocHarness);
