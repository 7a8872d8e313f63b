//! The transport conformance suite, in one process, once per copy mode.

mod common;

use san_spi_loopback::{CopyMode, LoopbackTransport};
use san_spi_testkit::fault::FaultInjector;
use san_spi_testkit::{not_applicable, transport_conformance, Harness};

#[global_allocator]
static ALLOCATOR: san_spi_testkit::CountingAllocator = san_spi_testkit::CountingAllocator;

/// Fresh loopback transports in single-copy mode.
struct SingleCopy;

impl Harness for SingleCopy {
    type T = LoopbackTransport;
    const ALLOCATION_FREE: bool = true;

    fn transport(name: &str) -> LoopbackTransport {
        LoopbackTransport::new(format!("conformance-sc-{name}"))
            .with_copy_mode(CopyMode::SingleCopy)
    }

    fn forge(descriptor: &[u8]) -> Option<Vec<u8>> {
        common::forge_key(descriptor)
    }
}

/// Fresh loopback transports that bounce RDMA through the ring.
struct Bounce;

impl Harness for Bounce {
    type T = LoopbackTransport;
    const ALLOCATION_FREE: bool = true;

    fn transport(name: &str) -> LoopbackTransport {
        LoopbackTransport::new(format!("conformance-bb-{name}")).with_copy_mode(CopyMode::Bounce)
    }

    fn forge(descriptor: &[u8]) -> Option<Vec<u8>> {
        common::forge_key(descriptor)
    }
}

/// The loopback behind the fault injector: completions late, in small batches, with
/// spurious wake-ups. The seed is derived from the connection's name and printed.
struct Faulty;

impl Harness for Faulty {
    type T = FaultInjector<LoopbackTransport>;
    const ALLOCATION_FREE: bool = true;

    fn transport(name: &str) -> FaultInjector<LoopbackTransport> {
        let seed = san_spi_testkit::checksum(name.as_bytes());
        FaultInjector::new(
            LoopbackTransport::new(format!("conformance-fi-{name}")),
            seed,
        )
    }

    fn forge(descriptor: &[u8]) -> Option<Vec<u8>> {
        common::forge_key(descriptor)
    }
}

transport_conformance!(loopback_single_copy, SingleCopy);
transport_conformance!(loopback_bounce, Bounce);
transport_conformance!(faulty_loopback, Faulty);

/// The loopback has every capability the suite tests: nothing is skipped.
#[test]
fn every_part_of_the_suite_applies() {
    assert_eq!(not_applicable::<SingleCopy>(), vec![]);
    assert_eq!(not_applicable::<Bounce>(), vec![]);
    assert_eq!(not_applicable::<Faulty>(), vec![]);
}

/// Each harness really runs the mode it is named after (in one process, cross-memory
/// attach to oneself always works).
#[test]
fn harnesses_negotiate_their_modes() {
    let x = san_spi_testkit::in_process::<SingleCopy>("modes", 0);
    assert_eq!(x.ep.copy_mode(), CopyMode::SingleCopy);
    assert_eq!(x.ep.peer_copy_mode(), CopyMode::SingleCopy);
    let x = san_spi_testkit::in_process::<Bounce>("modes", 0);
    assert_eq!(x.ep.copy_mode(), CopyMode::Bounce);
    assert_eq!(x.ep.peer_copy_mode(), CopyMode::Bounce);
}

/// One side asking for bounce makes the whole connection bounce, whichever side it is.
#[test]
fn either_side_choosing_bounce_wins() {
    use san_spi_core::transport::{block_on, Listener, Transport};
    for (port, listener_mode) in [(9700u16, CopyMode::Bounce), (9701, CopyMode::SingleCopy)] {
        let ns = format!("mixed-{}-{port}", std::process::id());
        let other = match listener_mode {
            CopyMode::Bounce => CopyMode::SingleCopy,
            CopyMode::SingleCopy => CopyMode::Bounce,
        };
        let a = LoopbackTransport::new(ns.clone()).with_copy_mode(listener_mode);
        let b = LoopbackTransport::new(ns).with_copy_mode(other);
        let addr = std::net::SocketAddr::from(([198, 18, 0, 1], port));
        let listener = block_on(a.listen(addr)).unwrap();
        let server = std::thread::spawn(move || block_on(listener.accept()).unwrap());
        let client = block_on(b.connect(addr)).unwrap();
        let server = server.join().unwrap();
        for ep in [&client, &server] {
            assert_eq!(ep.copy_mode(), CopyMode::Bounce);
            assert_eq!(ep.peer_copy_mode(), CopyMode::Bounce);
        }
    }
}

/// Namespaces of any length work: one longer than a socket address holds still meets its
/// own listeners, from another transport as from another process, and not another's.
#[test]
fn long_namespaces_meet_only_their_own_listeners() {
    use san_spi_core::transport::{block_on, Listener, Transport};
    use san_spi_core::WsaError;
    let long = |tag: &str| format!("{}-{}-{tag}", "n".repeat(150), std::process::id());
    let addr = "198.18.0.1:7001".parse().unwrap();
    let a = LoopbackTransport::new(long("a"));
    let listener = block_on(a.listen(addr)).expect("a long namespace listens");
    let server = std::thread::spawn(move || {
        let ep = block_on(listener.accept());
        (listener, ep)
    });
    let a2 = LoopbackTransport::new(long("a"));
    let ep = block_on(a2.connect(addr)).expect("the same long namespace connects");
    let (listener, accepted) = server.join().unwrap();
    accepted.expect("accepted");
    let b = LoopbackTransport::new(long("b"));
    assert_eq!(
        block_on(b.connect(addr)).err(),
        Some(WsaError::ConnRefused),
        "another long namespace reached the listener"
    );
    drop((ep, listener));
}

/// The RDMA path is chosen per transfer: by default every transfer bounces (the faster path
/// where measured), asking for single copy sends every transfer it can single copy, and
/// `Limits::single_copy_max` splits by size; the data arrives whichever path it took.
#[test]
fn the_rdma_path_is_chosen_per_transfer_by_size() {
    use san_spi_core::transport::{
        block_on, Endpoint, Listener, MemAccess, RemoteTarget, Transport,
    };
    use san_spi_loopback::Limits;
    use san_spi_testkit::{wait_one, RegisteredBuf};
    type Setup = fn(LoopbackTransport) -> LoopbackTransport;
    let setups: [(&str, Setup, [u64; 2]); 3] = [
        ("default", |t| t, [0, 0]),
        ("asked", |t| t.with_copy_mode(CopyMode::SingleCopy), [1, 1]),
        (
            "split",
            |t| {
                t.with_limits(Limits {
                    single_copy_max: 64 << 10,
                    ..Limits::default()
                })
            },
            [1, 0],
        ),
    ];
    for (i, (name, make, expect)) in setups.into_iter().enumerate() {
        let ns = format!("path-{}-{name}", std::process::id());
        let (st, ct) = (
            make(LoopbackTransport::new(ns.clone())),
            make(LoopbackTransport::new(ns)),
        );
        let addr = std::net::SocketAddr::from(([198, 18, 0, 1], 9720 + i as u16));
        let listener = block_on(st.listen(addr)).unwrap();
        let server = std::thread::spawn(move || block_on(listener.accept()).unwrap());
        let c = block_on(ct.connect(addr)).unwrap();
        let s = server.join().unwrap();
        assert_eq!(c.copy_mode(), CopyMode::SingleCopy, "{name}: negotiated");
        let region = RegisteredBuf::new(&st, 1 << 20, 0, MemAccess::WRITE).unwrap();
        let d = region.descriptor().unwrap();
        let src = RegisteredBuf::new(&ct, 1 << 20, 0x5A, MemAccess::READ).unwrap();
        let mut posts = Vec::new();
        for (k, len) in [4096usize, 1 << 20].into_iter().enumerate() {
            let target = RemoteTarget {
                descriptor: &d,
                offset: 0,
            };
            let before = c.single_copy_posts();
            c.rdma_write(&[src.sge(0..len)], target, k as u64).unwrap();
            assert_eq!(wait_one(&c).result, Ok(len as u32), "{name}: {len} B");
            posts.push(c.single_copy_posts() - before);
            assert!(region.all(0..len, 0x5A), "{name}: {len} B arrived");
        }
        assert_eq!(
            posts, expect,
            "{name}: single-copy posts for 4 KiB and 1 MiB"
        );
        drop((c, s));
    }
}
