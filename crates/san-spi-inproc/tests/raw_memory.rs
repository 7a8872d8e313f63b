//! Registered memory used the way the registration contract asks, so that Miri can check
//! the copying of `mem.rs`: every buffer is a `RegisteredBuf`, a raw allocation whose
//! pointer is taken once and never covered by a reference (a `Box` would assert it is the
//! only way to its bytes, which a registered buffer is not).
//!
//! `cargo +nightly miri test -p san-spi-inproc --test raw_memory`

mod common;

use san_spi_core::transport::{Completion, Endpoint, MemAccess, Memory, Op, RemoteTarget};
use san_spi_inproc::{InprocEndpoint, InprocTransport, STAGING_BYTES};
use san_spi_testkit::RegisteredBuf;

/// Registered bytes reached only through the pointer taken when they were allocated.
type Raw<'t> = RegisteredBuf<&'t InprocTransport>;

/// `len` bytes of `fill` registered with `t`.
fn raw(t: &InprocTransport, len: usize, fill: u8, access: MemAccess) -> Raw<'_> {
    RegisteredBuf::new(t, len, fill, access).unwrap()
}

/// Byte `at` of `b`.
fn get(b: &Raw<'_>, at: usize) -> u8 {
    b.to_vec(at..at + 1)[0]
}

/// Where the connections of this file listen.
const ADDR: &str = "198.18.0.1:6000";

fn one(ep: &InprocEndpoint) -> Completion {
    let mut c = [Completion::default()];
    assert_eq!(ep.poll(&mut c), 1, "no completion");
    c[0]
}

#[test]
fn messages_direct_staged_and_queued() {
    let (ts, tc, c, s) = common::connected("raw-messages", ADDR);
    let src = raw(&tc, STAGING_BYTES + 8, 5, MemAccess::READ);
    let dst = raw(&ts, STAGING_BYTES + 8, 0, MemAccess::WRITE);
    // Direct: a receive is waiting.
    s.post_recv(&[dst.sge(0..4)], 1).unwrap();
    c.post_send(&[src.sge(0..4)], 2).unwrap();
    assert_eq!(one(&s), Completion::new(1, Op::Recv, Ok(4)));
    assert_eq!(one(&c), Completion::new(2, Op::Send, Ok(4)));
    // Staged (wrapping the ring on the second lap), then queued behind a full ring.
    for lap in 0..2u64 {
        c.post_send(&[src.sge(0..STAGING_BYTES - 4)], 3).unwrap();
        assert_eq!(one(&c).result, Ok(STAGING_BYTES as u32 - 4));
        c.post_send(&[src.sge(0..8)], 4).unwrap(); // does not fit: queued
        s.post_recv(&[dst.sge(0..STAGING_BYTES)], 5 + lap).unwrap();
        assert_eq!(one(&s).result, Ok(STAGING_BYTES as u32 - 4));
        s.post_recv(&[dst.sge(STAGING_BYTES..STAGING_BYTES + 8)], 7)
            .unwrap();
        assert_eq!(one(&s).result, Ok(8));
        assert_eq!(one(&c), Completion::new(4, Op::Send, Ok(8)));
    }
    assert_eq!(get(&dst, STAGING_BYTES - 5), 5);
    assert_eq!(get(&dst, STAGING_BYTES + 7), 5);
}

#[test]
fn rdma_write_and_read_overlapping() {
    let (ts, tc, c, _s) = common::connected("raw-rdma", ADDR);
    let mut region = raw(&ts, 32, 0, MemAccess::READ_WRITE);
    let mut d = [0u8; 64];
    let n = ts.export(region.handle(), &mut d).unwrap();
    let local = raw(&tc, 32, 9, MemAccess::READ_WRITE);
    let target = RemoteTarget {
        descriptor: &d[..n],
        offset: 8,
    };
    c.rdma_write(&[local.sge(0..4), local.sge(2..6)], target, 1)
        .unwrap();
    assert_eq!(one(&c).result, Ok(8));
    assert_eq!(
        (get(&region, 7), get(&region, 8), get(&region, 15)),
        (0, 9, 9)
    );
    c.rdma_read(&[local.sge(16..32)], target, 2).unwrap();
    assert_eq!(one(&c).result, Ok(16));
    assert_eq!((get(&local, 16), get(&local, 24)), (9, 0));
    region.deregister().unwrap();
    c.rdma_read(&[local.sge(16..32)], target, 3).unwrap();
    assert!(one(&c).result.is_err());
}
