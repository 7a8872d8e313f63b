//! What the conformance suite does not reach: two transports with separate protection
//! domains on one fabric, descriptors from the wrong domain or with any byte changed,
//! fabrics that must not meet, and the control plane's address checks.

mod common;

use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, Op, PostError, RemoteTarget, Transport,
};
use san_spi_core::WsaError;
use san_spi_inproc::{InprocEndpoint, InprocTransport, STAGING_BYTES};
use san_spi_testkit::{assert_quiet, wait_one, RegisteredBuf};

type Buf<'t> = RegisteredBuf<&'t InprocTransport>;
use std::net::SocketAddr;
use std::time::Duration;

/// Where the connections of this file listen.
const ADDR: &str = "198.18.0.1:5000";

fn write(ep: &InprocEndpoint, src: &Buf<'_>, d: &[u8], token: u64) -> Result<(), PostError> {
    let target = RemoteTarget {
        descriptor: d,
        offset: 0,
    };
    ep.rdma_write(&[src.sge(0..16)], target, token)
}

#[test]
fn descriptors_resolve_in_the_peers_domain_only() {
    let (ts, tc, c, s) = common::connected("domains-resolve", ADDR);
    let peer_region = Buf::new(&ts, 64, 0, MemAccess::READ_WRITE).unwrap();
    let own_region = Buf::new(&tc, 64, 0, MemAccess::READ_WRITE).unwrap();
    let other = InprocTransport::new("domains-resolve");
    let stranger = Buf::new(&other, 64, 0, MemAccess::READ_WRITE).unwrap();
    let src = Buf::new(&tc, 64, 9, MemAccess::READ).unwrap();
    // The server's region, from the client: the peer's domain.
    write(&c, &src, &peer_region.descriptor().unwrap(), 1).unwrap();
    assert_eq!(wait_one(&c), Completion::new(1, Op::RdmaWrite, Ok(16)));
    assert_eq!(peer_region.to_vec(0..16), [9; 16]);
    // The client's own region and a third domain's are not the peer's.
    for (token, region) in [(2, &own_region), (3, &stranger)] {
        write(&c, &src, &region.descriptor().unwrap(), token).unwrap();
        assert_eq!(
            wait_one(&c),
            Completion::new(token, Op::RdmaWrite, Err(WsaError::Fault))
        );
        assert!(
            region.all(0..region.len(), 0),
            "another domain's region written"
        );
    }
    // A clone shares the domain: its registrations are the server's.
    let clone = ts.clone();
    let shared = Buf::new(&clone, 64, 0, MemAccess::READ_WRITE).unwrap();
    write(&c, &src, &shared.descriptor().unwrap(), 4).unwrap();
    assert_eq!(wait_one(&c).result, Ok(16));
    // Local SGEs are checked in the poster's own domain: the peer's handle is unknown here.
    assert_eq!(
        s.post_send(&[src.sge(0..4)], 5),
        Err(PostError::InvalidSge { index: 0 })
    );
}

#[test]
fn a_descriptor_with_any_byte_changed_is_refused() {
    let (ts, tc, c, _s) = common::connected("domains-flip", ADDR);
    let region = Buf::new(&ts, 64, 0, MemAccess::READ_WRITE).unwrap();
    let src = Buf::new(&tc, 64, 7, MemAccess::READ_WRITE).unwrap();
    let d = region.descriptor().unwrap();
    assert_eq!(d.len(), ts.capabilities().descriptor_len);
    for i in 0..d.len() {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut bad = d.clone();
            bad[i] ^= flip;
            let token = (i * 4) as u64;
            match write(&c, &src, &bad, token) {
                Err(PostError::BadDescriptor) => {}
                Ok(()) => assert_eq!(
                    wait_one(&c).result,
                    Err(WsaError::Fault),
                    "byte {i} ^ {flip:#x}"
                ),
                Err(e) => panic!("byte {i}: {e}"),
            }
            let target = RemoteTarget {
                descriptor: &bad,
                offset: 0,
            };
            match c.rdma_read(&[src.sge(16..32)], target, token + 1) {
                Err(PostError::BadDescriptor) => {}
                Ok(()) => assert_eq!(wait_one(&c).result, Err(WsaError::Fault), "read, byte {i}"),
                Err(e) => panic!("byte {i}: {e}"),
            }
        }
    }
    // One byte short or long is malformed: refused at post time.
    let long = [&d[..], &[0]].concat();
    for bad in [&d[..d.len() - 1], &long[..]] {
        assert_eq!(write(&c, &src, bad, 1), Err(PostError::BadDescriptor));
    }
    assert!(region.all(0..region.len(), 0), "a changed descriptor wrote");
    assert!(src.all(0..src.len(), 7), "a changed descriptor read");
    write(&c, &src, &d, 9999).unwrap();
    assert_eq!(wait_one(&c).result, Ok(16), "the original still works");
}

#[test]
fn a_reused_key_makes_old_descriptors_stale() {
    let (ts, tc, c, _s) = common::connected("domains-reuse", ADDR);
    let src = Buf::new(&tc, 64, 3, MemAccess::READ).unwrap();
    let mut first = Buf::with_key(&ts, 64, 0, MemAccess::READ_WRITE, 77).unwrap();
    let old = first.descriptor().unwrap();
    first.deregister().unwrap();
    let second = Buf::with_key(&ts, 64, 0, MemAccess::READ_WRITE, 77).unwrap();
    write(&c, &src, &old, 1).unwrap();
    assert_eq!(wait_one(&c).result, Err(WsaError::Fault));
    assert!(second.all(0..second.len(), 0));
    write(&c, &src, &second.descriptor().unwrap(), 2).unwrap();
    assert_eq!(wait_one(&c).result, Ok(16));
}

#[test]
fn messages_cross_domains_staged_and_queued_in_order() {
    let (ts, tc, c, s) = common::connected("domains-messages", ADDR);
    // Enough 64 KiB messages to fill staging and queue the rest on the sender.
    let n = STAGING_BYTES / (64 << 10) + 4;
    let src = Buf::new(&tc, n << 16, 0, MemAccess::READ).unwrap();
    for i in 0..n {
        src.fill(i << 16..(i + 1) << 16, i as u8);
    }
    for i in 0..n {
        c.post_send(&[src.sge(i << 16..(i + 1) << 16)], i as u64)
            .unwrap();
    }
    let dst = Buf::new(&ts, 64 << 10, 0, MemAccess::WRITE).unwrap();
    for i in 0..n {
        s.post_recv(&[dst.sge(0..64 << 10)], i as u64).unwrap();
        assert_eq!(
            wait_one(&s),
            Completion::new(i as u64, Op::Recv, Ok(64 << 10))
        );
        assert!(dst.all(0..dst.len(), i as u8), "message {i}");
    }
    for i in 0..n {
        assert_eq!(
            wait_one(&c),
            Completion::new(i as u64, Op::Send, Ok(64 << 10))
        );
    }
}

#[test]
fn a_queued_send_whose_buffer_was_deregistered_fails_alone() {
    let (ts, tc, c, s) = common::connected("domains-dereg-queued", ADDR);
    let big = Buf::new(&tc, STAGING_BYTES + 1, 1, MemAccess::READ).unwrap();
    let mut gone = Buf::new(&tc, 8, 2, MemAccess::READ).unwrap();
    let ok = Buf::new(&tc, 8, 3, MemAccess::READ).unwrap();
    let dst = Buf::new(&ts, STAGING_BYTES + 1, 0, MemAccess::WRITE).unwrap();
    c.post_send(&[big.sge(0..STAGING_BYTES + 1)], 1).unwrap(); // too big to stage: queued
    c.post_send(&[gone.sge(0..8)], 2).unwrap(); // queued behind it
    c.post_send(&[ok.sge(0..8)], 3).unwrap();
    gone.deregister().unwrap();
    s.post_recv(&[dst.sge(0..STAGING_BYTES + 1)], 10).unwrap();
    s.post_recv(&[dst.sge(0..8)], 11).unwrap();
    assert_eq!(wait_one(&s).result, Ok(STAGING_BYTES as u32 + 1));
    assert_eq!(wait_one(&s), Completion::new(11, Op::Recv, Ok(8)));
    assert_eq!(dst.to_vec(0..8), [3; 8]);
    let sends: Vec<_> = (0..3).map(|_| wait_one(&c)).collect();
    assert_eq!(sends[1], Completion::new(2, Op::Send, Err(WsaError::Fault)));
    assert_eq!(sends[2], Completion::new(3, Op::Send, Ok(8)));
}

#[test]
fn close_aborts_queued_sends_and_resets_the_peers() {
    let (ts, tc, c, s) = common::connected("domains-close-queued", ADDR);
    let big = Buf::new(&tc, STAGING_BYTES + 1, 1, MemAccess::READ).unwrap();
    let back = Buf::new(&ts, STAGING_BYTES + 1, 1, MemAccess::READ).unwrap();
    c.post_send(&[big.sge(0..STAGING_BYTES + 1)], 1).unwrap();
    s.post_send(&[back.sge(0..STAGING_BYTES + 1)], 2).unwrap();
    c.close();
    assert_eq!(
        wait_one(&c),
        Completion::new(1, Op::Send, Err(WsaError::OperationAborted))
    );
    assert_eq!(
        wait_one(&s),
        Completion::new(2, Op::Send, Err(WsaError::ConnReset))
    );
    assert_quiet(&c, Duration::from_millis(20));
    assert_quiet(&s, Duration::from_millis(20));
}

#[test]
fn fabrics_and_addresses() {
    let addr: SocketAddr = "198.18.0.1:5001".parse().unwrap();
    let a = InprocTransport::new("fabric-a");
    let _l = block_on(a.listen(addr)).unwrap();
    let b = InprocTransport::new("fabric-b");
    assert_eq!(block_on(b.connect(addr)).err(), Some(WsaError::ConnRefused));
    assert_eq!(
        block_on(a.listen("192.0.2.1:1".parse().unwrap())).err(),
        Some(WsaError::AddrNotAvail)
    );
    // Port 0 picks a free port; the unspecified address accepts connections to any.
    let any = block_on(a.listen("0.0.0.0:0".parse().unwrap())).unwrap();
    let port = any.local_addr().port();
    assert_ne!(port, 0);
    let to = SocketAddr::from(([198, 18, 0, 1], port));
    let c = block_on(InprocTransport::new("fabric-a").connect(to)).unwrap();
    let s = block_on(any.accept()).unwrap();
    drop((c, s));
}
