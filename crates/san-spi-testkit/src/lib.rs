//! `san-spi-testkit` — the conformance suite every san-spi transport passes, and the
//! helpers its tests are written with. A vendor writing a transport starts at the
//! repository's `docs/transport-guide.md`; this crate is its section 4, running the suite:
//! implement [`Harness`] (how to make your transport for a test) and instantiate it:
//!
//! ```
//! use san_spi_inproc::InprocTransport;
//! use san_spi_testkit::Harness;
//!
//! struct MyHarness;
//!
//! impl Harness for MyHarness {
//!     type T = InprocTransport; // your transport here
//!     // Called once per end of each connection: the two ends meet, but each has its
//!     // own registrations, as two processes would.
//!     fn transport(name: &str) -> InprocTransport {
//!         InprocTransport::new(name)
//!     }
//! }
//!
//! // In `tests/conformance.rs`: every behaviour becomes a `#[test]` here.
//! san_spi_testkit::transport_conformance!(MyHarness);
//! # fn main() {}
//! ```
//!
//! # What the suite does
//!
//! Each behaviour ([`suite`]) holds one endpoint itself — the *local* end, with its own
//! transport — and drives the far end through [`Peer`]. [`transport_conformance!`] runs
//! every behaviour with the far end in this process ([`peer::LocalPeer`]);
//! [`transport_conformance_cross_process!`] runs the same functions with the far end in a
//! second process ([`remote`]), for transports that cross address spaces. Every wait is
//! bounded ([`TIMEOUT`]); completions are checked exactly (token, operation, bytes or
//! error).
//!
//! Sizes, SGE counts and RDMA read follow the transport's `Capabilities`
//! ([`san_spi_core::transport::Capabilities`]). A part of a behaviour whose
//! capability the transport lacks is **not applicable**: the test says so by name on
//! standard error (shown even when cargo captures output) and the `not_applicable_summary`
//! test lists all of them with the reason; [`not_applicable`] returns the same list, so a
//! transport's own tests can require it to be empty.
//!
//! Also here: [`RegisteredBuf`], the one registered-buffer type (bytes reached only by
//! copy); [`CountingAllocator`], which holds an allocation-free data plane to its word;
//! [`fault::FaultInjector`]; and the core's recording fake switch ([`FakeSwitch`]).

use san_spi_core::transport::{Capabilities, Completion, Endpoint, Transport, TransportControl};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use san_spi_core::testing::{FakeSwitch, FakeTransport, Upcall};

mod alloc;
mod buf;
pub mod fault;
pub mod peer;
pub mod remote;
pub mod suite;

pub use alloc::{allocations_during, CountingAllocator};
pub use buf::RegisteredBuf;
pub use peer::Peer;

/// How to make the transport under test. Only [`transport`](Harness::transport) is
/// required; the rest has defaults that fit a transport reachable on 127.0.0.1.
pub trait Harness: 'static {
    /// The transport under test.
    type T: Transport + Send + Sync + 'static;

    /// Whether the transport's data plane (posts, `poll`, `wait`) never allocates once
    /// warmed up. When true, `data_plane_allocation_free` counts the allocations of those
    /// calls and requires none; the test binary must then install [`CountingAllocator`].
    const ALLOCATION_FREE: bool = false;

    /// A transport for one end of a connection of test `name`. Calls with the same `name`
    /// — in this process or in the peer process of the cross-process suite — must give
    /// transports that reach each other's listeners; each call must have its own
    /// registrations (a descriptor is resolved by the far end, never in the local table).
    /// `name` is unique per connection and carries no characters but `[A-Za-z0-9_-]`.
    fn transport(name: &str) -> Self::T;

    /// The address to listen on (and connect to) for a connection: by default the first
    /// of `t`'s local addresses, or 127.0.0.1, with `port`. A fabric transport returns an
    /// interface of its test network here.
    fn listen_addr(t: &Self::T, port: u16) -> SocketAddr {
        let ip = t
            .local_addresses()
            .ok()
            .and_then(|a| a.first().map(|a| a.addr.ip()))
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        SocketAddr::new(ip, port)
    }

    /// A corrupted copy of `descriptor` that the transport must refuse (wrong key, wrong
    /// check value), if the harness knows how to make one. `None` (the default): the
    /// suite corrupts every byte position in turn and truncates to every shorter length,
    /// and requires each to be refused — a descriptor must be self-checking.
    fn forge(descriptor: &[u8]) -> Option<Vec<u8>> {
        let _ = descriptor;
        None
    }
}

/// The endpoint type of a harness.
pub type EndpointOf<H> = <<H as Harness>::T as Transport>::Endpoint;

/// How long any single completion may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A connection under test: the local end (transport and endpoint) and the far end.
pub struct Pair<H: Harness> {
    /// Unique name of this connection (what [`Harness::transport`] was given).
    pub name: String,
    /// Round of a behaviour that runs on several fresh connections, from 0.
    pub round: u64,
    /// The local end's transport.
    pub t: H::T,
    /// The local endpoint.
    pub ep: EndpointOf<H>,
    /// The far end.
    pub peer: Box<dyn Peer>,
    /// The transport's capabilities.
    pub caps: Capabilities,
}

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static PORT: AtomicU16 = AtomicU16::new(0);

/// A name no other connection of this run has: the test, this process, a counter.
pub(crate) fn unique_name(test: &str) -> String {
    let n = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let test: String = test
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{test}-{}-{n}", std::process::id())
}

/// The next port, from a range chosen by this process's id (so that two test binaries
/// running at once seldom meet), within 20000..60000.
pub(crate) fn next_port() -> u16 {
    let n = PORT.fetch_add(1, Ordering::Relaxed);
    let base = (std::process::id() % 40) as u16 * 1000;
    20_000 + (base + n % 1000)
}

/// Connects a local end to a [`peer::LocalPeer`] in this process: `round` of `test`.
pub fn in_process<H: Harness>(test: &str, round: u64) -> Pair<H> {
    let name = unique_name(test);
    let far = H::transport(&name);
    let t = H::transport(&name);
    let addr = H::listen_addr(&t, next_port());
    let accept = peer::LocalPeer::listen(far, addr)
        .unwrap_or_else(|e| panic!("the far end cannot listen on {addr}: {e}"));
    let far = std::thread::spawn(accept);
    let ep = san_spi_core::transport::block_on(t.connect(addr))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let far = far.join().expect("the accepting thread panicked");
    let caps = t.capabilities();
    Pair {
        name,
        round,
        t,
        ep,
        peer: Box::new(far),
        caps,
    }
}

/// Runs `behaviour` of the suite `rounds` times, each on a fresh in-process connection.
pub fn run_in_process<H: Harness>(test: &str, rounds: u64, behaviour: fn(&mut Pair<H>)) {
    for round in 0..rounds {
        let mut x = in_process::<H>(test, round);
        behaviour(&mut x);
    }
}

/// Waits for exactly one completion; fails the test after [`TIMEOUT`].
pub fn wait_one<E: Endpoint>(ep: &E) -> Completion {
    wait_within(ep, TIMEOUT)
}

/// The next completion of `ep`; panics if none comes within `timeout`.
pub fn wait_within<E: Endpoint>(ep: &E, timeout: Duration) -> Completion {
    let deadline = Instant::now() + timeout;
    let mut c = [Completion::default(); 1];
    loop {
        if ep.poll(&mut c) == 1 {
            return c[0];
        }
        assert!(
            Instant::now() < deadline,
            "no completion within {timeout:?}"
        );
        ep.wait(Duration::from_millis(20));
    }
}

/// Asserts no completion arrives within `d`.
pub fn assert_quiet<E: Endpoint>(ep: &E, d: Duration) {
    let deadline = Instant::now() + d;
    let mut c = [Completion::default(); 1];
    while Instant::now() < deadline {
        assert_eq!(ep.poll(&mut c), 0, "unexpected completion {:?}", c[0]);
        ep.wait(Duration::from_millis(10));
    }
}

/// Deterministic test bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed as u32) as u8
        })
        .collect()
}

pub(crate) const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

pub(crate) fn fnv(h: u64, b: &[u8]) -> u64 {
    b.iter()
        .fold(h, |h, &x| (h ^ x as u64).wrapping_mul(0x100_0000_01b3))
}

/// FNV-1a of `b`, to compare buffers across processes.
pub fn checksum(b: &[u8]) -> u64 {
    fnv(FNV_START, b)
}

/// A part of the suite that does not apply to a transport, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotApplicable {
    /// The test.
    pub test: &'static str,
    /// What of it does not run.
    pub part: &'static str,
    /// The capability that is absent.
    pub reason: String,
}

impl std::fmt::Display for NotApplicable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "not applicable: {}: {}: {}",
            self.test, self.part, self.reason
        )
    }
}

/// Every part of the suite that does not apply to `H`'s transport (empty when it has
/// every capability the suite tests).
pub fn not_applicable<H: Harness>() -> Vec<NotApplicable> {
    let t = H::transport(&unique_name("not_applicable"));
    let caps = t.capabilities();
    suite::NEEDS
        .iter()
        .filter_map(|&(test, need, part)| {
            need.lacking(&caps, H::ALLOCATION_FREE)
                .map(|reason| NotApplicable { test, part, reason })
        })
        .collect()
}

/// Writes `line` to the process's standard error directly, past cargo's output capture, so
/// that it shows in the test output whether the test passes or not.
pub(crate) fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The `not_applicable_summary` test: lists [`not_applicable`] for `H` (or says that
/// everything applies), and checks that the transport's capabilities and the extension
/// functions it offers agree (R-EXT-5: RDMA read offered exactly when supported).
pub fn not_applicable_summary<H: Harness>(suite_name: &str) {
    let list = not_applicable::<H>();
    if list.is_empty() {
        report(&format!("{suite_name}: every test of the suite applies"));
    } else {
        report(&format!(
            "{suite_name}: {} part(s) of the suite not applicable:",
            list.len()
        ));
        for n in &list {
            report(&format!("  {n}"));
        }
    }
    let t = H::transport(&unique_name("summary"));
    let caps = t.capabilities();
    let rdma_read = san_spi_core::guid::ExtensionFunction::RdmaRead;
    assert_eq!(
        t.offers(0, rdma_read),
        caps.rdma_read,
        "TransportControl::offers(RdmaRead) disagrees with Capabilities::rdma_read"
    );
    assert!(caps.max_sge >= 1, "Capabilities::max_sge is 0");
    assert!(
        caps.descriptor_len >= 1,
        "Capabilities::descriptor_len is 0"
    );
}

/// Instantiates the whole suite for a harness, with the far end in this process.
///
/// `transport_conformance!(MyHarness);` defines one `#[test]` per behaviour where it is
/// invoked (put it in its own test file or module). `transport_conformance!(name,
/// MyHarness);` puts them in a new module `name` — handy for several harnesses in one file;
/// the name must not be a crate's name (a module named like a crate hides the crate in
/// that file).
#[macro_export]
macro_rules! transport_conformance {
    ($harness:ty) => {
        $crate::__behaviours!(__conformance_tests!(in_process, $harness));
        #[test]
        fn connect_and_listen_errors() {
            $crate::suite::connect_and_listen_errors::<$harness>();
        }
        #[test]
        fn not_applicable_summary() {
            $crate::not_applicable_summary::<$harness>(module_path!());
        }
    };
    ($name:ident, $harness:ty) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::transport_conformance!($harness);
        }
    };
}

/// Instantiates the cross-process suite: the same behaviours as
/// [`transport_conformance!`], the far end in a second process (this test binary run
/// again, see [`remote`]), plus the one behaviour only a second process can show
/// (`peer_death_keeps_what_it_sent`). Both processes call [`Harness::transport`] with the
/// same name, so it must not put anything process-specific into the transport's
/// rendezvous. Same two forms as [`transport_conformance!`].
#[macro_export]
macro_rules! transport_conformance_cross_process {
    ($harness:ty) => {
        $crate::__behaviours!(__conformance_tests!(cross_process, $harness));
        $crate::__conformance_tests!(cross_process, $harness; peer_death_keeps_what_it_sent);
        #[test]
        fn not_applicable_summary() {
            $crate::not_applicable_summary::<$harness>(module_path!());
        }
    };
    ($name:ident, $harness:ty) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::transport_conformance_cross_process!($harness);
        }
    };
}

/// The behaviours both suite macros run, once: calls `$crate::$mac!($args; b1, b2, …)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __behaviours {
    ($mac:ident!($($args:tt)*)) => {
        $crate::$mac!($($args)*;
            connect_accept_exchange,
            messages_keep_order_and_boundaries,
            send_before_recv_waits,
            oversized_message_fails_the_receive,
            rdma_write_read_with_offsets_and_many_sges,
            access_rights_are_enforced,
            bad_remote_accesses_touch_nothing,
            forged_descriptors_are_refused,
            local_sges_are_checked,
            deregistration_while_in_flight,
            cache_callback_drops_every_overlapping,
            close_aborts_pending_exactly_once,
            posts_racing_a_close_complete_exactly_once,
            peer_close_fails_pending,
            messages_sent_before_close_are_delivered,
            graceful_close_delivers_everything_then_disconnects,
            large_transfers_verify_by_checksum,
            full_queue_is_back_pressure,
            full_receive_queue_is_back_pressure,
            provider_chosen_keys,
            data_plane_allocation_free,
        );
    };
}

/// One `#[test]` per behaviour, for the two suite macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    (in_process, $harness:ty; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $crate::run_in_process::<$harness>(
                    stringify!($test),
                    $crate::suite::rounds(stringify!($test), false),
                    $crate::suite::$test::<$harness>,
                );
            }
        )*
    };
    (cross_process, $harness:ty; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $crate::remote::run_cross_process::<$harness>(
                    concat!(module_path!(), "::", stringify!($test)),
                    $crate::suite::rounds(stringify!($test), true),
                    $crate::suite::$test::<$harness>,
                );
            }
        )*
    };
}
