//! Registered memory used the way the registration contract asks, so that Miri can check
//! the copying of `mem.rs`: every buffer is a `Vec` whose pointer is taken once and never
//! touched through the `Vec` again until it is freed (a `Box` would assert it is the only
//! way to its bytes, which a registered buffer is not).
//!
//! `cargo +nightly miri test -p san-spi-inproc --test raw_memory`

use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, Memory, MemoryHandle, Op, RemoteTarget,
    Sge, Transport,
};
use san_spi_inproc::{InprocEndpoint, InprocTransport, STAGING_BYTES};

/// Registered bytes, reached only through `ptr`.
struct Raw {
    ptr: *mut u8,
    len: usize,
    handle: MemoryHandle,
    _owner: Vec<u8>,
}

impl Raw {
    fn new(t: &InprocTransport, len: usize, fill: u8, access: MemAccess) -> Raw {
        let mut owner = vec![fill; len];
        let ptr = owner.as_mut_ptr();
        // SAFETY: `owner`'s heap buffer stays allocated (and is not used through `owner`)
        // until `Raw` is dropped, after every test has deregistered or finished with it.
        let handle = unsafe { t.register(ptr, len, access) }.unwrap();
        Raw {
            ptr,
            len,
            handle,
            _owner: owner,
        }
    }

    fn sge(&self, at: usize, len: usize) -> Sge {
        assert!(at + len <= self.len);
        Sge {
            handle: self.handle,
            addr: self.ptr as u64 + at as u64,
            len: len as u32,
        }
    }

    fn get(&self, at: usize) -> u8 {
        assert!(at < self.len);
        // SAFETY: in bounds; no operation on this buffer is in flight when tests read.
        unsafe { self.ptr.add(at).read() }
    }
}

fn pair(
    name: &str,
) -> (
    InprocTransport,
    InprocTransport,
    InprocEndpoint,
    InprocEndpoint,
) {
    let (ts, tc) = (InprocTransport::new(name), InprocTransport::new(name));
    let addr = "198.18.0.1:6000".parse().unwrap();
    let l = block_on(ts.listen(addr)).unwrap();
    let c = block_on(tc.connect(addr)).unwrap();
    let s = block_on(l.accept()).unwrap();
    (ts, tc, c, s)
}

fn one(ep: &InprocEndpoint) -> Completion {
    let mut c = [Completion::default()];
    assert_eq!(ep.poll(&mut c), 1, "no completion");
    c[0]
}

#[test]
fn messages_direct_staged_and_queued() {
    let (ts, tc, c, s) = pair("raw-messages");
    let src = Raw::new(&tc, STAGING_BYTES + 8, 5, MemAccess::READ);
    let dst = Raw::new(&ts, STAGING_BYTES + 8, 0, MemAccess::WRITE);
    // Direct: a receive is waiting.
    s.post_recv(&[dst.sge(0, 4)], 1).unwrap();
    c.post_send(&[src.sge(0, 4)], 2).unwrap();
    assert_eq!(one(&s), Completion::new(1, Op::Recv, Ok(4)));
    assert_eq!(one(&c), Completion::new(2, Op::Send, Ok(4)));
    // Staged (wrapping the ring on the second lap), then queued behind a full ring.
    for lap in 0..2u64 {
        c.post_send(&[src.sge(0, STAGING_BYTES - 4)], 3).unwrap();
        assert_eq!(one(&c).result, Ok(STAGING_BYTES as u32 - 4));
        c.post_send(&[src.sge(0, 8)], 4).unwrap(); // does not fit: queued
        s.post_recv(&[dst.sge(0, STAGING_BYTES)], 5 + lap).unwrap();
        assert_eq!(one(&s).result, Ok(STAGING_BYTES as u32 - 4));
        s.post_recv(&[dst.sge(STAGING_BYTES, 8)], 7).unwrap();
        assert_eq!(one(&s).result, Ok(8));
        assert_eq!(one(&c), Completion::new(4, Op::Send, Ok(8)));
    }
    assert_eq!(dst.get(STAGING_BYTES - 5), 5);
    assert_eq!(dst.get(STAGING_BYTES + 7), 5);
}

#[test]
fn rdma_write_and_read_overlapping() {
    let (ts, tc, c, _s) = pair("raw-rdma");
    let region = Raw::new(&ts, 32, 0, MemAccess::READ_WRITE);
    let mut d = [0u8; 64];
    let n = ts.export(region.handle, &mut d).unwrap();
    let local = Raw::new(&tc, 32, 9, MemAccess::READ_WRITE);
    let target = RemoteTarget {
        descriptor: &d[..n],
        offset: 8,
    };
    c.rdma_write(&[local.sge(0, 4), local.sge(2, 4)], target, 1)
        .unwrap();
    assert_eq!(one(&c).result, Ok(8));
    assert_eq!((region.get(7), region.get(8), region.get(15)), (0, 9, 9));
    c.rdma_read(&[local.sge(16, 16)], target, 2).unwrap();
    assert_eq!(one(&c).result, Ok(16));
    assert_eq!((local.get(16), local.get(24)), (9, 0));
    ts.deregister(region.handle).unwrap();
    c.rdma_read(&[local.sge(16, 16)], target, 3).unwrap();
    assert!(one(&c).result.is_err());
}
