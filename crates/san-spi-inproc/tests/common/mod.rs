//! Helpers shared by the reference transport's own tests.

use san_spi_core::transport::{block_on, Listener, Transport};
use san_spi_inproc::{InprocEndpoint, InprocTransport};

/// Two transports on fabric `name` (each its own domain), connected at `addr`:
/// `(server transport, client transport, client endpoint, server endpoint)`.
pub fn connected(
    name: &str,
    addr: &str,
) -> (
    InprocTransport,
    InprocTransport,
    InprocEndpoint,
    InprocEndpoint,
) {
    let (ts, tc) = (InprocTransport::new(name), InprocTransport::new(name));
    assert_ne!(ts.domain_id(), tc.domain_id());
    let addr = addr.parse().expect("an address");
    let l = block_on(ts.listen(addr)).unwrap();
    let c = block_on(tc.connect(addr)).unwrap();
    let s = block_on(l.accept()).unwrap();
    (ts, tc, c, s)
}
