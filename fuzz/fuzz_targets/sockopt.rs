//! `WSPGetSockOpt` / `WSPSetSockOpt` of `SanSockets` (`socket.rs`) with arbitrary
//! descriptors, levels, option names, `optval` bytes and `optlen`, interleaved with the
//! socket lifecycle (socket, bind, listen, accept, connect, close, FIONBIO), over a
//! transport whose `SO_MAX_RDMA_SIZE` comes from the input.
//!
//! A model of the sockets predicts every result exactly:
//! - an unknown (never opened or closed) descriptor is `WSAENOTSOCK`, before anything else;
//! - a level other than `SOL_SOCKET` and an unknown name are `WSAENOPROTOOPT`;
//! - `getsockopt` needs `optlen >= 4` (else `WSAEFAULT`, nothing written), writes the
//!   little-endian `DWORD` into the first 4 bytes only and returns 4: `SO_MAX_RDMA_SIZE` is
//!   the transport's maximum saturated to `u32::MAX`, `SO_RDMA_THRESHOLD_SIZE` the socket's
//!   own value (64 KiB on a new or accepted socket, also after a close and a reopen);
//! - `setsockopt(SO_RDMA_THRESHOLD_SIZE)` takes the first 4 bytes of `optval` (fewer are
//!   `WSAEFAULT`) and changes no other socket; `SO_MAX_RDMA_SIZE` is read-only
//!   (`WSAEINVAL`);
//! - the lifecycle calls follow the state machine of the module docs (`WSAEINVAL`,
//!   `WSAEISCONN`, `WSAEADDRNOTAVAIL` where it says).
//!
//! Input: 8 bytes of the transport's `max_rdma`, then one call per opcode byte.
#![no_main]

#[path = "common/input.rs"]
mod input;

use input::Input;
use libfuzzer_sys::fuzz_target;
use san_spi_core::addr::Width;
use san_spi_core::socket::{
    SanSockets, DEFAULT_RDMA_THRESHOLD, SOL_SOCKET, SO_MAX_RDMA_SIZE, SO_RDMA_THRESHOLD_SIZE,
};
use san_spi_core::testing::FakeSwitch;
use san_spi_core::transport::{
    async_trait, Capabilities, Completion, Endpoint, Listener, LocalAddress, MemAccess, Memory,
    MemoryHandle, PostError, RemoteTarget, Sge, Transport, TransportControl,
};
use san_spi_core::WsaError;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const NIC: &str = "192.0.2.10:0";

/// A transport with one NIC whose connections carry nothing, with the input's
/// `SO_MAX_RDMA_SIZE`.
struct OptTransport {
    max_rdma: AtomicUsize,
}

struct NullEndpoint;

impl Endpoint for NullEndpoint {
    fn post_send(&self, _: &[Sge], _: u64) -> Result<(), PostError> {
        Err(PostError::Closed)
    }
    fn post_recv(&self, _: &[Sge], _: u64) -> Result<(), PostError> {
        Err(PostError::Closed)
    }
    fn rdma_write(&self, _: &[Sge], _: RemoteTarget<'_>, _: u64) -> Result<(), PostError> {
        Err(PostError::Closed)
    }
    fn rdma_read(&self, _: &[Sge], _: RemoteTarget<'_>, _: u64) -> Result<(), PostError> {
        Err(PostError::Closed)
    }
    fn poll(&self, _: &mut [Completion]) -> usize {
        0
    }
    fn wait(&self, _: Duration) -> bool {
        false
    }
    fn close(&self) {}
}

struct NullListener(SocketAddr);

#[async_trait]
impl Listener for NullListener {
    type Endpoint = NullEndpoint;
    async fn accept(&self) -> Result<NullEndpoint, WsaError> {
        Ok(NullEndpoint)
    }
    fn local_addr(&self) -> SocketAddr {
        self.0
    }
}

impl TransportControl for OptTransport {
    fn local_addresses(&self) -> Result<Vec<LocalAddress>, WsaError> {
        Ok(vec![LocalAddress::new(NIC.parse().expect("address"))])
    }
}

impl Memory for OptTransport {
    unsafe fn register(
        &self,
        _: *mut u8,
        _: usize,
        _: MemAccess,
    ) -> Result<MemoryHandle, WsaError> {
        Err(WsaError::NoBufs)
    }
    fn deregister(&self, _: MemoryHandle) -> Result<(), WsaError> {
        Err(WsaError::Inval)
    }
    fn export(&self, _: MemoryHandle, _: &mut [u8]) -> Result<usize, WsaError> {
        Err(WsaError::Inval)
    }
    fn invalidate(&self, _: u64, _: u64) -> usize {
        0
    }
}

#[async_trait]
impl Transport for OptTransport {
    type Endpoint = NullEndpoint;
    type Listener = NullListener;
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(4, 1 << 20, self.max_rdma.load(Ordering::Relaxed), 16)
    }
    async fn listen(&self, addr: SocketAddr) -> Result<NullListener, WsaError> {
        Ok(NullListener(addr))
    }
    async fn connect(&self, _: SocketAddr) -> Result<NullEndpoint, WsaError> {
        Ok(NullEndpoint)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Bound,
    Listening,
    Connected,
}

#[derive(Debug, Clone, Copy)]
struct Sock {
    state: State,
    threshold: u32,
}

impl Sock {
    fn new(state: State) -> Sock {
        Sock {
            state,
            threshold: DEFAULT_RDMA_THRESHOLD,
        }
    }
}

fn descriptor(input: &mut Input<'_>) -> u64 {
    match input.u8() {
        s @ 0..=0xEF => 0x100 + u64::from(s % 4) * 4,
        _ => input.u64(),
    }
}

fn level(input: &mut Input<'_>) -> i32 {
    match input.u8() % 4 {
        0..=2 => SOL_SOCKET,
        _ => input.i32(),
    }
}

fn name(input: &mut Input<'_>) -> i32 {
    match input.u8() % 5 {
        0 | 1 => SO_RDMA_THRESHOLD_SIZE,
        2 => SO_MAX_RDMA_SIZE,
        3 => 0x7000 + i32::from(input.u8()),
        _ => input.i32(),
    }
}

fn addr(input: &mut Input<'_>) -> SocketAddr {
    match input.u8() % 4 {
        0 => NIC.parse().expect("address"),
        1 => "0.0.0.0:5000".parse().expect("address"),
        2 => "[::]:0".parse().expect("address"),
        _ => SocketAddr::from((input.u32().to_be_bytes(), input.u16())),
    }
}

fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let max_rdma = input.u64() as usize;
    let t = OptTransport {
        max_rdma: AtomicUsize::new(max_rdma),
    };
    let sockets = SanSockets::new(t, Width::W64);
    let switch = FakeSwitch::new();
    let mut model: HashMap<u64, Sock> = HashMap::new();
    let max_dword = u32::try_from(max_rdma).unwrap_or(u32::MAX);

    for _ in 0..48 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 10 {
            0 => {
                let s = descriptor(&mut input);
                let r = sockets.socket(s);
                match model.entry(s) {
                    Entry::Occupied(_) => {
                        assert_eq!(r, Err(WsaError::Inval), "socket({s:#x}) again")
                    }
                    Entry::Vacant(v) => {
                        assert_eq!(r, Ok(()));
                        v.insert(Sock::new(State::Created));
                    }
                }
            }
            1 | 2 => {
                let (s, lvl, opt) = (descriptor(&mut input), level(&mut input), name(&mut input));
                let optlen = input.u8() as usize % 12;
                let mut out = vec![0xA5u8; optlen];
                let r = sockets.getsockopt(s, lvl, opt, &mut out);
                let want = match model.get(&s) {
                    None => Err(WsaError::NotSock),
                    Some(_) if lvl != SOL_SOCKET => Err(WsaError::NoProtoOpt),
                    Some(sock) => match opt {
                        SO_MAX_RDMA_SIZE => Ok(max_dword),
                        SO_RDMA_THRESHOLD_SIZE => Ok(sock.threshold),
                        _ => Err(WsaError::NoProtoOpt),
                    }
                    .and_then(|v| {
                        if optlen < 4 {
                            Err(WsaError::Fault)
                        } else {
                            Ok(v)
                        }
                    }),
                };
                match want {
                    Ok(v) => {
                        assert_eq!(r, Ok(4), "getsockopt({s:#x}, {lvl:#x}, {opt:#x})");
                        assert_eq!(out[..4], v.to_le_bytes());
                        assert!(out[4..].iter().all(|&b| b == 0xA5), "wrote past the DWORD");
                    }
                    Err(e) => {
                        assert_eq!(
                            r,
                            Err(e),
                            "getsockopt({s:#x}, {lvl:#x}, {opt:#x}, {optlen})"
                        );
                        assert!(out.iter().all(|&b| b == 0xA5), "failed call wrote");
                    }
                }
            }
            3 | 4 => {
                let (s, lvl, opt) = (descriptor(&mut input), level(&mut input), name(&mut input));
                let n = input.u8() as usize % 12;
                let value = input.bytes(n);
                let r = sockets.setsockopt(s, lvl, opt, value);
                let want = match model.get_mut(&s) {
                    None => Err(WsaError::NotSock),
                    Some(_) if lvl != SOL_SOCKET => Err(WsaError::NoProtoOpt),
                    Some(sock) => match opt {
                        SO_RDMA_THRESHOLD_SIZE => match value.get(..4) {
                            Some(v) => {
                                sock.threshold = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                                Ok(())
                            }
                            None => Err(WsaError::Fault),
                        },
                        SO_MAX_RDMA_SIZE => Err(WsaError::Inval),
                        _ => Err(WsaError::NoProtoOpt),
                    },
                };
                assert_eq!(r, want, "setsockopt({s:#x}, {lvl:#x}, {opt:#x}, {value:?})");
            }
            5 => {
                let (s, a) = (descriptor(&mut input), addr(&mut input));
                let r = sockets.bind(s, a);
                let nic: SocketAddr = NIC.parse().expect("address");
                let want = match model.get_mut(&s) {
                    None => Err(WsaError::NotSock),
                    Some(sock) if sock.state != State::Created => Err(WsaError::Inval),
                    Some(_) if !a.ip().is_unspecified() && a.ip() != nic.ip() => {
                        Err(WsaError::AddrNotAvail)
                    }
                    Some(sock) => {
                        sock.state = State::Bound;
                        Ok(())
                    }
                };
                assert_eq!(r, want, "bind({s:#x}, {a})");
            }
            6 => {
                let s = descriptor(&mut input);
                let r = sockets.listen(s);
                let want = match model.get_mut(&s) {
                    None => Err(WsaError::NotSock),
                    Some(sock) => match sock.state {
                        State::Bound | State::Listening => {
                            sock.state = State::Listening;
                            Ok(())
                        }
                        _ => Err(WsaError::Inval),
                    },
                };
                assert_eq!(r, want, "listen({s:#x})");
            }
            7 => {
                let (s, new) = (descriptor(&mut input), descriptor(&mut input));
                let r = sockets.accept(s, new);
                let want = match model.get(&s).map(|k| k.state) {
                    None => Err(WsaError::NotSock),
                    Some(State::Listening) if model.contains_key(&new) => Err(WsaError::Inval),
                    Some(State::Listening) => {
                        model.insert(new, Sock::new(State::Connected));
                        Ok(())
                    }
                    Some(_) => Err(WsaError::Inval),
                };
                assert_eq!(r, want, "accept({s:#x}, {new:#x})");
            }
            8 => {
                let (s, a) = (descriptor(&mut input), addr(&mut input));
                let r = sockets.connect(s, a);
                let want = match model.get_mut(&s) {
                    None => Err(WsaError::NotSock),
                    Some(sock) => match sock.state {
                        State::Connected => Err(WsaError::IsConn),
                        State::Listening => Err(WsaError::Inval),
                        _ => {
                            sock.state = State::Connected;
                            Ok(())
                        }
                    },
                };
                assert_eq!(r, want, "connect({s:#x}, {a})");
            }
            _ => {
                let s = descriptor(&mut input);
                if input.bool() {
                    let on = input.bool();
                    let want = if model.contains_key(&s) {
                        Ok(())
                    } else {
                        Err(WsaError::NotSock)
                    };
                    assert_eq!(sockets.set_nonblocking(s, on), want);
                    if want.is_ok() {
                        assert_eq!(sockets.dispatcher().is_nonblocking(s), Some(on));
                    }
                } else {
                    let r = sockets.close(s, &switch);
                    match model.remove(&s) {
                        Some(_) => assert_eq!(r, Ok(0), "close({s:#x})"),
                        None => assert_eq!(r, Err(WsaError::NotSock), "close({s:#x})"),
                    }
                    assert_eq!(sockets.dispatcher().is_nonblocking(s), None);
                }
            }
        }
    }
    assert!(switch.upcalls().is_empty(), "no overlapped call was made");
}

fuzz_target!(|data: &[u8]| run(data));
