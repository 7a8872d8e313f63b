//! The socket layer of the core (`san_spi_core::socket`) over the loopback transport,
//! driven by the fake switch.

use san_spi_core::addr::Width;
use san_spi_core::dispatch::{IoctlRequest, IoctlReturn};
use san_spi_core::ioctl::SIO_ADDRESS_LIST_QUERY;
use san_spi_core::overlapped::{get_overlapped_result, OverlappedRequest, OverlappedResult};
use san_spi_core::socket::{
    DataReturn, SanSockets, SOL_SOCKET, SO_MAX_RDMA_SIZE, SO_RDMA_THRESHOLD_SIZE,
};
use san_spi_core::transport::{MemAccess, Memory, RemoteTarget, Sge};
use san_spi_core::upcall::ThreadId;
use san_spi_core::WsaError;
use san_spi_loopback::LoopbackTransport;
use san_spi_testkit::{FakeSwitch, Upcall};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const THREAD: ThreadId = ThreadId {
    thread_handle: 9,
    reserved: 0,
};

fn sockets(test: &str) -> Arc<SanSockets<LoopbackTransport>> {
    let t = LoopbackTransport::new(format!("sockets-{}-{}", std::process::id(), test));
    Arc::new(SanSockets::new(t, Width::W64))
}

/// Server socket 1 listening on `addr`, client socket 2 connected, accepted as socket 3.
fn connected(s: &Arc<SanSockets<LoopbackTransport>>, port: u16) {
    let addr: SocketAddr = SocketAddr::from(([198, 18, 0, 1], port));
    s.socket(1).unwrap();
    s.bind(1, addr).unwrap();
    s.listen(1).unwrap();
    let s2 = s.clone();
    let acceptor = std::thread::spawn(move || s2.accept(1, 3));
    s.socket(2).unwrap();
    s.connect(2, addr).unwrap();
    acceptor.join().unwrap().unwrap();
}

struct Mem {
    bytes: Box<[u8]>,
    handle: san_spi_core::transport::MemoryHandle,
}

fn reg(s: &SanSockets<LoopbackTransport>, len: usize, fill: u8, access: MemAccess) -> Mem {
    let mut bytes = vec![fill; len].into_boxed_slice();
    // SAFETY: the box lives in the returned value, which the tests keep until the end.
    let handle = unsafe { s.transport().register(bytes.as_mut_ptr(), len, access) }.unwrap();
    Mem { bytes, handle }
}

impl Mem {
    fn sge(&self, len: usize) -> Sge {
        Sge {
            handle: self.handle,
            addr: self.bytes.as_ptr() as u64,
            len: len as u32,
        }
    }
}

fn progress_until(
    s: &SanSockets<LoopbackTransport>,
    sw: &FakeSwitch,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "no progress within 10 s");
        if s.progress(sw) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn lifecycle_errors_follow_winsock() {
    let s = sockets("lifecycle");
    s.socket(10).unwrap();
    assert_eq!(s.socket(10), Err(WsaError::Inval), "descriptor reused");
    assert_eq!(
        s.bind(10, "203.0.113.5:80".parse().unwrap()),
        Err(WsaError::AddrNotAvail)
    );
    assert_eq!(
        s.connect(10, "198.18.0.1:1".parse().unwrap()),
        Err(WsaError::ConnRefused)
    );
    let sw = FakeSwitch::new();
    assert_eq!(s.send(10, &[], None, &sw), Err(WsaError::NotConn));
    assert_eq!(s.listen(10), Err(WsaError::Inval), "listen before bind");
    assert_eq!(s.send(77, &[], None, &sw), Err(WsaError::NotSock));
    connected(&s, 9301);
    assert_eq!(
        s.connect(2, "198.18.0.1:9301".parse().unwrap()),
        Err(WsaError::IsConn)
    );
    // A second listener on the same address is refused.
    s.socket(11).unwrap();
    s.bind(11, "198.18.0.1:9301".parse().unwrap()).unwrap();
    assert_eq!(s.listen(11), Err(WsaError::AddrInUse));
}

/// R-OVL-2 over the data path: an overlapped receive is pending until the transport
/// delivers, then notified once through the switch with the byte count.
#[test]
fn r_ovl_2_overlapped_recv_completes_through_the_switch() {
    let s = sockets("overlapped");
    connected(&s, 9302);
    let sw = FakeSwitch::new();
    let mut src = reg(&s, 64, 0, MemAccess::READ);
    src.bytes[..5].copy_from_slice(b"hello");
    let dst = reg(&s, 64, 0, MemAccess::WRITE);
    let ov = OverlappedRequest {
        overlapped: 0x1000,
        event: 0x44,
        completion_routine: 0,
        thread_id: None,
    };
    assert_eq!(
        s.recv(3, &[dst.sge(64)], Some(ov), &sw),
        Ok(DataReturn::Pending)
    );
    assert_eq!(
        get_overlapped_result(&sw, 0x1000),
        OverlappedResult::Incomplete
    );
    assert_eq!(
        s.send(2, &[src.sge(5)], None, &sw),
        Ok(DataReturn::Complete { bytes: 5 })
    );
    progress_until(&s, &sw, || sw.completions_of(0x1000) == 1);
    assert_eq!(
        sw.upcalls(),
        vec![Upcall::CompleteOverlapped {
            socket: 3,
            overlapped: 0x1000,
            error: 0,
            bytes: 5
        }]
    );
    assert_eq!(&dst.bytes[..5], b"hello");
}

/// R-SAN-3: RDMA write and read through the sockets, blocking and overlapped (APC and
/// poll-only), verified by content.
#[test]
fn r_san_3_rdma_through_sockets_every_completion_mode() {
    let s = sockets("rdma");
    connected(&s, 9303);
    let sw = FakeSwitch::new();
    let region = reg(&s, 4096, 0, MemAccess::READ_WRITE);
    let mut desc = [0u8; 32];
    s.transport().export(region.handle, &mut desc).unwrap();
    let mut src = reg(&s, 1000, 0, MemAccess::READ);
    for (i, b) in src.bytes.iter_mut().enumerate() {
        *b = i as u8;
    }
    let target = RemoteTarget {
        descriptor: &desc,
        offset: 100,
    };
    assert_eq!(
        s.rdma_write(2, &[src.sge(1000)], target, None, &sw),
        Ok(DataReturn::Complete { bytes: 1000 })
    );
    assert!(region.bytes[100..1100] == src.bytes[..]);
    // Read back, APC mode.
    let back = reg(&s, 1000, 0, MemAccess::WRITE);
    let apc = OverlappedRequest {
        overlapped: 0x2000,
        event: 0,
        completion_routine: 0x7777,
        thread_id: Some(THREAD),
    };
    assert_eq!(
        s.rdma_read(2, &[back.sge(1000)], target, Some(apc), &sw),
        Ok(DataReturn::Pending)
    );
    progress_until(&s, &sw, || sw.apcs_queued() == 1);
    let call = s
        .dispatcher()
        .operations()
        .take_apc(sw.run_apcs(&THREAD)[0])
        .unwrap();
    assert_eq!((call.routine, call.bytes, call.error), (0x7777, 1000, 0));
    assert!(back.bytes[..] == src.bytes[..]);
    // Poll-only.
    let poll = OverlappedRequest {
        overlapped: 0x3000,
        event: 1,
        completion_routine: 0,
        thread_id: None,
    };
    assert_eq!(
        s.rdma_read(2, &[back.sge(10)], target, Some(poll), &sw),
        Ok(DataReturn::Pending)
    );
    progress_until(&s, &sw, || {
        get_overlapped_result(&sw, 0x3000) != OverlappedResult::Incomplete
    });
    assert_eq!(
        get_overlapped_result(&sw, 0x3000),
        OverlappedResult::Done {
            bytes: 10,
            flags: 0,
            error: 0
        }
    );
    assert_eq!(sw.upcalls().len(), 1, "only the APC was an upcall");
}

/// R-OVL-6 over the data path: closing a socket aborts its pending receive once, and the
/// transport's own abort of the same receive is not notified again.
#[test]
fn r_ovl_6_close_aborts_pending_recv_once() {
    let s = sockets("close");
    connected(&s, 9304);
    let sw = FakeSwitch::new();
    let dst = reg(&s, 64, 0, MemAccess::WRITE);
    let ov = OverlappedRequest {
        overlapped: 0x4000,
        event: 0x10,
        completion_routine: 0,
        thread_id: None,
    };
    assert_eq!(
        s.recv(3, &[dst.sge(64)], Some(ov), &sw),
        Ok(DataReturn::Pending)
    );
    assert_eq!(s.close(3, &sw), Ok(1));
    for _ in 0..20 {
        s.progress(&sw);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        sw.upcalls(),
        vec![Upcall::CompleteOverlapped {
            socket: 3,
            overlapped: 0x4000,
            error: 995,
            bytes: 0
        }]
    );
    assert_eq!(s.recv(3, &[dst.sge(64)], None, &sw), Err(WsaError::NotSock));
}

/// The peer's graceful close ends the stream: what it sent before closing is still
/// received, blocking and overlapped, then each receive completes with zero bytes.
#[test]
fn graceful_close_reads_as_end_of_stream() {
    let s = sockets("graceful");
    connected(&s, 9307);
    let sw = FakeSwitch::new();
    let mut src = reg(&s, 64, 0, MemAccess::READ);
    src.bytes[..3].copy_from_slice(b"bye");
    let dst = reg(&s, 64, 0, MemAccess::WRITE);
    assert_eq!(
        s.send(2, &[src.sge(3)], None, &sw),
        Ok(DataReturn::Complete { bytes: 3 })
    );
    assert_eq!(s.close(2, &sw), Ok(0));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        s.recv(3, &[dst.sge(64)], None, &sw),
        Ok(DataReturn::Complete { bytes: 3 })
    );
    assert_eq!(&dst.bytes[..3], b"bye");
    assert_eq!(
        s.recv(3, &[dst.sge(64)], None, &sw),
        Ok(DataReturn::Complete { bytes: 0 })
    );
    let ov = OverlappedRequest {
        overlapped: 0x5000,
        event: 0x11,
        completion_routine: 0,
        thread_id: None,
    };
    assert_eq!(
        s.recv(3, &[dst.sge(64)], Some(ov), &sw),
        Ok(DataReturn::Pending)
    );
    progress_until(&s, &sw, || sw.completions_of(0x5000) == 1);
    assert_eq!(
        sw.upcalls(),
        vec![Upcall::CompleteOverlapped {
            socket: 3,
            overlapped: 0x5000,
            error: 0,
            bytes: 0
        }]
    );
    assert_eq!(
        s.send(3, &[src.sge(3)], None, &sw),
        Err(WsaError::ConnReset),
        "sends after the peer closed are refused, as a connection the remote side ended"
    );
}

/// SO_MAX_RDMA_SIZE and SO_RDMA_THRESHOLD_SIZE (ws2san.h), and their errors.
#[test]
fn rdma_socket_options() {
    let s = sockets("options");
    s.socket(5).unwrap();
    let mut out = [0u8; 4];
    assert_eq!(
        s.getsockopt(5, SOL_SOCKET, SO_MAX_RDMA_SIZE, &mut out),
        Ok(4)
    );
    assert_eq!(u32::from_le_bytes(out), u32::MAX);
    assert_eq!(
        s.getsockopt(5, SOL_SOCKET, SO_RDMA_THRESHOLD_SIZE, &mut out),
        Ok(4)
    );
    assert_eq!(u32::from_le_bytes(out), 64 << 10);
    s.setsockopt(
        5,
        SOL_SOCKET,
        SO_RDMA_THRESHOLD_SIZE,
        &4096u32.to_le_bytes(),
    )
    .unwrap();
    s.getsockopt(5, SOL_SOCKET, SO_RDMA_THRESHOLD_SIZE, &mut out)
        .unwrap();
    assert_eq!(u32::from_le_bytes(out), 4096);
    assert_eq!(
        s.setsockopt(5, SOL_SOCKET, SO_MAX_RDMA_SIZE, &[0; 4]),
        Err(WsaError::Inval)
    );
    assert_eq!(
        s.getsockopt(5, SOL_SOCKET, SO_MAX_RDMA_SIZE, &mut out[..3]),
        Err(WsaError::Fault)
    );
    assert_eq!(
        s.getsockopt(5, 6, SO_MAX_RDMA_SIZE, &mut out),
        Err(WsaError::NoProtoOpt)
    );
    assert_eq!(
        s.getsockopt(5, SOL_SOCKET, 0x1001, &mut out),
        Err(WsaError::NoProtoOpt)
    );
}

/// WSPIoctl sees the sockets: the loopback's virtual NIC in the address list.
#[test]
fn ioctl_on_socket_descriptors() {
    let s = sockets("ioctl");
    s.socket(8).unwrap();
    let mut out = [0u8; 256];
    let r = s.ioctl(
        IoctlRequest::new(8, SIO_ADDRESS_LIST_QUERY).output(&mut out, 0x1000),
        &FakeSwitch::new(),
    );
    assert_eq!(
        r,
        IoctlReturn::Complete {
            bytes_returned: 8 + 2 * 16 + 16 + 28,
            extension: None
        }
    );
}
