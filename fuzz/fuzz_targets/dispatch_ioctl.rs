//! `WSPIoctl` end to end: `Dispatcher::ioctl` over a `FakeTransport` and a `FakeSwitch`,
//! driven with a sequence of calls — any control code (the known ones, this provider's
//! vendor codes, another vendor's, raw values), any input bytes (raw, GUIDs, `QOS`
//! structures built at the input's base and then damaged), any output length and caller
//! base address, `lpcbBytesReturned` present or not, blocking, nonblocking or overlapped
//! in every completion mode (upcall, event without port, poll-only, completion routine
//! with and without `lpThreadId`), either width — interleaved with what changes the
//! answers: the transport going down, address changes, RDMA read offered or not, QoS "not
//! ready", sockets opened and closed, refused upcalls and `poll_deferred`.
//!
//! A model of the dispatcher (`dispatch/mod.rs` rules 1–4, R-RET, R-EXT, R-ADDR, R-QOS,
//! R-IOC-5, R-OVL) predicts every return exactly, and asserts besides:
//! - R-RET-2/3: 0 exactly when `Complete`; every `*lpErrno` is one of
//!   `WsaError::WSPIOCTL_CODES`;
//! - `*lpcbBytesReturned` never exceeds the output length; a size is reported only with
//!   WSAEFAULT, only for a query whose output was too short, and it is the size needed
//!   (R-ADDR-3, R-QOS-2);
//! - a failed call writes nothing to the output buffer; a successful one nothing past
//!   `*lpcbBytesReturned` (and an address list or `QOS` it returns parses back);
//! - R-RET-8 / R-OVL-6: an overlapped call that returns 0 has been notified once already;
//!   one returning `WSA_IO_PENDING` is notified exactly once later (by `poll_deferred` or
//!   the close that aborts it with `WSA_OPERATION_ABORTED`), with at most the output's
//!   length in bytes; a failed call is never notified and its `WSAOVERLAPPED` untouched;
//!   every APC is harvested once by `take_apc`; the operation table drains.
//!
//! Input: a header (flags, vendor number, NIC addresses), then one step per opcode byte;
//! see `Harness::new` and `Harness::step` for the fields, read in order.
#![no_main]

#[path = "common/input.rs"]
mod input;

use input::Input;
use libfuzzer_sys::fuzz_target;
use san_spi_core::addr::eligibility::classify;
use san_spi_core::addr::{SocketAddressList, SocketAddressListRepr, Width};
use san_spi_core::dispatch::{DispatchConfig, Dispatcher, IoctlRequest, IoctlReturn, SOCKET_ERROR};
use san_spi_core::guid::ExtensionFunction;
use san_spi_core::ioctl::{
    field, IoctlCode, IOC_VENDOR, KNOWN_CODES, SIO_ADDRESS_LIST_QUERY,
    SIO_GET_EXTENSION_FUNCTION_POINTER, SIO_GET_GROUP_QOS, SIO_GET_QOS, SIO_SET_GROUP_QOS,
    SIO_SET_QOS,
};
use san_spi_core::overlapped::{
    get_overlapped_result, CompleteError, CompletionMode, OverlappedRequest, OverlappedResult,
};
use san_spi_core::qos::{qos_len, FlowSpec, QosError, QosRepr, ServiceType};
use san_spi_core::testing::{FakeSwitch, FakeTransport, Upcall};
use san_spi_core::transport::{LocalAddress, OwnedQos};
use san_spi_core::upcall::{OverlappedMemory, ThreadId, WSS_OPERATION_IN_PROGRESS};
use san_spi_core::WsaError;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

/// Descriptors the steps pick from (the first two are open at the start).
const SOCKETS: [u64; 3] = [0x100, 0x104, 0x108];

const THREADS: [ThreadId; 2] = [
    ThreadId {
        thread_handle: 0x44,
        reserved: 0,
    },
    ThreadId {
        thread_handle: 0x48,
        reserved: 9,
    },
];

/// NIC addresses, eligible and not (R-ADDR-4..6).
const ADDRESSES: [&str; 19] = [
    "192.0.2.10:0",
    "10.1.2.3:0",
    "127.0.0.1:0",
    "0.0.0.0:0",
    "224.0.0.1:0",
    "255.255.255.255:0",
    "169.254.1.1:0",
    "[fe80::211:22ff:fe33:4455%3]:0",
    "[2001:db8::7]:0",
    "[fec0::1]:0",
    "[2002:c000:201::1]:0",
    "[::192.0.2.1]:0",
    "[::ffff:192.0.2.1]:0",
    "[fe80::c000:201]:0",
    "[2001:db8::5efe:c000:201]:0",
    "[::1]:0",
    "[ff02::1]:0",
    "[::]:0",
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]:0",
];

fn address_table() -> &'static [SocketAddr] {
    static TABLE: OnceLock<Vec<SocketAddr>> = OnceLock::new();
    TABLE.get_or_init(|| {
        ADDRESSES
            .iter()
            .map(|a| a.parse().expect("table address"))
            .collect()
    })
}

fn qos_code(code: IoctlCode) -> bool {
    [
        SIO_GET_QOS,
        SIO_SET_QOS,
        SIO_GET_GROUP_QOS,
        SIO_SET_GROUP_QOS,
    ]
    .contains(&code)
}

/// `qos_error` of the dispatcher: what a `QOS` that cannot be read or written reports.
fn qos_errno(e: QosError) -> WsaError {
    match e {
        QosError::BufferTooSmall { .. }
        | QosError::BaseOutOfRange { .. }
        | QosError::ProviderSpecificOutOfBounds { .. } => WsaError::Fault,
        _ => WsaError::Inval,
    }
}

fn err(error: WsaError) -> IoctlReturn {
    IoctlReturn::Error {
        error,
        bytes_returned: None,
    }
}

fn complete(bytes_returned: u32) -> IoctlReturn {
    IoctlReturn::Complete {
        bytes_returned,
        extension: None,
    }
}

/// One notification: `(lpOverlapped, dwError, cbTransferred)`.
type Note = (u64, u32, u32);

#[derive(Debug, Clone)]
enum DeferredKind {
    Set(OwnedQos),
    Get { base: u64, capacity: usize },
}

/// A request the model expects to be left pending in the dispatcher.
#[derive(Debug, Clone)]
struct Deferred {
    socket: u64,
    request: OverlappedRequest,
    kind: DeferredKind,
}

/// What the model expects of one call besides its return value.
enum Effect {
    None,
    /// Completed now: notified once, with these bytes.
    Notified(u32),
    /// Left pending.
    Deferred(Deferred),
}

struct Harness<'a> {
    input: Input<'a>,
    d: Dispatcher<FakeTransport>,
    sw: FakeSwitch,
    width: Width,
    qos: bool,
    vendor: Option<u16>,
    addresses: Vec<LocalAddress>,
    open: HashMap<u64, bool>, // descriptor → nonblocking
    up: bool,
    rdma_read: bool,
    refusing: bool,
    not_ready: usize,
    stored_qos: HashMap<u64, OwnedQos>,
    deferred: Vec<Deferred>,
    /// Notifications the model expects (upcalls and APCs), in any order.
    expected: Vec<Note>,
    /// APCs harvested so far.
    harvested: Vec<Note>,
    /// The completion routine of each APC request, by `lpOverlapped`.
    routines: HashMap<u64, (u64, ThreadId)>,
    /// Final results of poll-only requests.
    poll_results: HashMap<u64, OverlappedResult>,
    next_overlapped: u64,
}

impl<'a> Harness<'a> {
    /// Header: flags (bit 0 W64, bit 1 QoS, bit 2 vendor number, bit 3 no RDMA read,
    /// bits 4–5 the table size 1/2/4/8), vendor (u16), the NIC addresses.
    fn new(data: &'a [u8]) -> Harness<'a> {
        let mut input = Input::new(data);
        let flags = input.u8();
        let width = if flags & 1 == 1 {
            Width::W64
        } else {
            Width::W32
        };
        let qos = flags & 2 != 0;
        let vendor_number = input.u16() & field::FAMILY_MAX;
        let vendor = (flags & 4 != 0).then_some(vendor_number);
        let rdma_read = flags & 8 == 0;
        let max_pending = 1usize << ((flags >> 4) & 3);
        let addresses = read_addresses(&mut input);
        let transport = if qos {
            FakeTransport::with_qos(addresses.clone())
        } else {
            FakeTransport::new(addresses.clone())
        };
        transport.set_rdma_read(rdma_read);
        let config = DispatchConfig {
            vendor,
            max_pending,
            ..DispatchConfig::new(width)
        };
        let d = Dispatcher::new(transport, config);
        let mut open = HashMap::new();
        for s in &SOCKETS[..2] {
            d.open_socket(*s).expect("fresh descriptor");
            open.insert(*s, false);
        }
        Harness {
            input,
            d,
            sw: FakeSwitch::new(),
            width,
            qos,
            vendor,
            addresses,
            open,
            up: true,
            rdma_read,
            refusing: false,
            not_ready: 0,
            stored_qos: HashMap::new(),
            deferred: Vec::new(),
            expected: Vec::new(),
            harvested: Vec::new(),
            routines: HashMap::new(),
            poll_results: HashMap::new(),
            next_overlapped: 0x7_0000,
        }
    }

    fn socket(&mut self) -> u64 {
        match self.input.u8() {
            s @ 0..=0xEF => SOCKETS[s as usize % SOCKETS.len()],
            _ => self.input.u64(),
        }
    }

    /// A caller address: a plain one, any 32-bit one, any 64-bit one, or just below the top.
    fn base(&mut self) -> u64 {
        match self.input.u8() % 4 {
            0 => 0x2_0000,
            1 => u64::from(self.input.u32()),
            2 => self.input.u64(),
            _ => self.width.max_address() - u64::from(self.input.u8()),
        }
    }

    fn code(&mut self) -> IoctlCode {
        let sel = self.input.u8() % 16;
        match sel {
            0..=10 => KNOWN_CODES[sel as usize].code,
            11..=13 => {
                let flags = u32::from(self.input.u8() & 7) << 29;
                let family = match (sel, self.vendor) {
                    (11 | 12, Some(v)) => v,
                    _ => self.input.u16() & field::FAMILY_MAX,
                };
                let number = u32::from(self.input.u16());
                IoctlCode::from_raw(
                    flags | IOC_VENDOR | (u32::from(family) << field::FAMILY_SHIFT) | number,
                )
            }
            _ => IoctlCode::from_raw(self.input.u32()),
        }
    }

    fn flowspec(&mut self) -> FlowSpec {
        match self.input.u8() % 4 {
            0 => FlowSpec::NULL,
            1 => FlowSpec::best_effort(self.input.u32()),
            2 => FlowSpec {
                service_type: ServiceType::ALL[self.input.u8() as usize % 10] as u32,
                ..FlowSpec::best_effort(self.input.u32())
            },
            _ => FlowSpec {
                token_rate: self.input.u32(),
                token_bucket_size: self.input.u32(),
                peak_bandwidth: self.input.u32(),
                latency: self.input.u32(),
                delay_variation: self.input.u32(),
                service_type: self.input.u32(),
                max_sdu_size: self.input.u32(),
                minimum_policed_size: self.input.u32(),
            },
        }
    }

    /// The input buffer: none, raw, a GUID (maybe cut short), a `QOS` emitted at `base`
    /// (maybe damaged), empty, or `b"reset"` (the fake transport's failing vendor input).
    fn input_buffer(&mut self, base: u64) -> Option<Vec<u8>> {
        match self.input.u8() % 8 {
            0 => None,
            1 | 7 => Some(self.input.blob().to_vec()),
            2 => {
                let pick = self.input.u8() as usize;
                let mut g = match ExtensionFunction::ALL.get(pick % 8) {
                    Some(f) => f.windows_bytes().to_vec(),
                    None => {
                        let mut raw = self.input.bytes(16).to_vec();
                        raw.resize(16, 0);
                        raw
                    }
                };
                let len = match self.input.u8() {
                    n @ 0..=15 => n as usize,
                    n => 16 + n as usize % 4,
                };
                g.resize(len, 0xEE);
                Some(g)
            }
            3 | 4 => {
                let sending = self.flowspec();
                let receiving = self.flowspec();
                let n = self.input.u8() as usize % 32;
                let provider_specific = self.input.bytes(n);
                let repr = QosRepr {
                    sending,
                    receiving,
                    provider_specific,
                };
                let mut buf = vec![0u8; repr.buffer_len(self.width)];
                if repr.emit(&mut buf, self.width, base).is_err() {
                    buf.truncate(qos_len(self.width));
                }
                let damage = self.input.u8();
                if damage & 1 == 1 {
                    let i = self.input.u8() as usize % buf.len();
                    buf[i] ^= self.input.u8() | 1;
                }
                if damage & 2 == 2 {
                    let keep = self.input.u8() as usize % buf.len();
                    buf.truncate(keep);
                }
                Some(buf)
            }
            5 => Some(Vec::new()),
            _ => Some(b"reset".to_vec()),
        }
    }

    /// `lpOverlapped` and the rest, if overlapped: flags bit 1 overlapped, bit 2 a
    /// completion routine, bit 3 no `lpThreadId`, bits 4–5 `hEvent`, bit 6 the thread.
    fn overlapped(&mut self, flags: u8) -> Option<OverlappedRequest> {
        if flags & 2 == 0 {
            return None;
        }
        let overlapped = self.next_overlapped;
        self.next_overlapped += 0x40;
        let event = match (flags >> 4) & 3 {
            0 => 0x88,
            1 => 1,
            2 => 0x89,
            _ => self.input.u64(),
        };
        let routine = if flags & 4 != 0 {
            0x9000 + overlapped
        } else {
            0
        };
        let thread_id = (flags & 8 == 0).then_some(THREADS[usize::from(flags >> 6 & 1)]);
        Some(OverlappedRequest {
            overlapped,
            event,
            completion_routine: routine,
            thread_id,
        })
    }

    fn eligible(&self) -> Vec<SocketAddr> {
        self.addresses
            .iter()
            .filter(|a| classify(a.addr.ip(), a.temporary).is_keep())
            .map(|a| a.addr)
            .collect()
    }

    fn table_full(&self) -> bool {
        self.deferred.len() >= self.d.operations().capacity()
    }

    /// Records the notification a completed operation owes, the way its mode asks.
    fn notify(&mut self, request: &OverlappedRequest, error: u32, bytes: u32) {
        match CompletionMode::of(request).expect("posted requests have a mode") {
            CompletionMode::PollOnly => {
                let done = OverlappedResult::Done {
                    bytes,
                    flags: 0,
                    error,
                };
                self.poll_results.insert(request.overlapped, done);
            }
            CompletionMode::Apc(thread) => {
                self.routines
                    .insert(request.overlapped, (request.completion_routine, thread));
                if !self.refusing {
                    self.expected.push((request.overlapped, error, bytes));
                }
            }
            CompletionMode::Synchronous => unreachable!("not posted"),
            _ => {
                if !self.refusing {
                    self.expected.push((request.overlapped, error, bytes));
                }
            }
        }
    }

    /// `finish_now`: a result at once; an overlapped success is notified, or is
    /// WSAENETDOWN when no slot is left to notify it through.
    fn finish(&self, r: IoctlReturn, ov: Option<&OverlappedRequest>) -> (IoctlReturn, Effect) {
        match (r, ov) {
            (IoctlReturn::Complete { bytes_returned, .. }, Some(_)) => {
                if self.table_full() {
                    (err(WsaError::NetDown), Effect::None)
                } else {
                    (r, Effect::Notified(bytes_returned))
                }
            }
            _ => (r, Effect::None),
        }
    }

    /// One QoS attempt that can be "not ready".
    fn not_ready_now(&mut self) -> bool {
        if self.not_ready > 0 {
            self.not_ready -= 1;
            true
        } else {
            false
        }
    }

    /// `run_qos`: true when the attempt is to be deferred; Err for WSAEWOULDBLOCK.
    fn run_qos(&mut self, socket: u64, overlapped: bool) -> Result<bool, WsaError> {
        while self.not_ready_now() {
            if overlapped {
                return Ok(true);
            }
            if self.open[&socket] {
                return Err(WsaError::WouldBlock);
            }
        }
        Ok(false)
    }

    fn defer(&self, deferred: Deferred) -> (IoctlReturn, Effect) {
        if self.table_full() {
            (err(WsaError::WouldBlock), Effect::None)
        } else {
            (err(WsaError::IoPending), Effect::Deferred(deferred))
        }
    }

    /// What the dispatcher must answer, and the model's state after it.
    #[allow(clippy::too_many_arguments)]
    fn predict(
        &mut self,
        socket: u64,
        code: IoctlCode,
        input: Option<&[u8]>,
        input_base: u64,
        output_len: Option<usize>,
        output_base: u64,
        has_bytes_returned: bool,
        ov: Option<&OverlappedRequest>,
    ) -> (IoctlReturn, Effect, Option<Vec<u8>>) {
        let out_len = output_len.unwrap_or(0);
        if !self.open.contains_key(&socket) {
            return (err(WsaError::NotSock), Effect::None, None);
        }
        if !self.up {
            return (err(WsaError::NetDown), Effect::None, None);
        }
        if ov.is_some_and(|o| o.completion_routine != 0 && o.thread_id.is_none()) {
            return (err(WsaError::Fault), Effect::None, None);
        }
        let ptr = self.width.pointer_len();
        if code == SIO_GET_EXTENSION_FUNCTION_POINTER {
            let bytes = input.unwrap_or(&[]);
            let r = if bytes.len() < 16 || out_len < ptr || !has_bytes_returned {
                err(WsaError::Fault)
            } else {
                match ExtensionFunction::from_windows_bytes(bytes) {
                    Err(_) => err(WsaError::Inval),
                    Ok(ExtensionFunction::RdmaRead) if !self.rdma_read => err(WsaError::OpNotSupp),
                    Ok(f) => IoctlReturn::Complete {
                        bytes_returned: ptr as u32,
                        extension: Some(f),
                    },
                }
            };
            let (r, e) = self.finish(r, ov);
            return (r, e, None);
        }
        if code == SIO_ADDRESS_LIST_QUERY {
            if !has_bytes_returned {
                return (err(WsaError::Fault), Effect::None, None);
            }
            let addrs = self.eligible();
            let repr = SocketAddressListRepr {
                addresses: &addrs[..],
            };
            let required = repr.buffer_len(self.width);
            let r = if !self.width.holds(output_base, required) {
                err(WsaError::Fault)
            } else if out_len < required {
                IoctlReturn::Error {
                    error: WsaError::Fault,
                    bytes_returned: Some(required as u32),
                }
            } else {
                complete(required as u32)
            };
            let (r, e) = self.finish(r, ov);
            return (r, e, None);
        }
        if qos_code(code) {
            if !self.qos || code == SIO_SET_GROUP_QOS {
                return (err(WsaError::NoProtoOpt), Effect::None, None);
            }
            if code == SIO_SET_QOS {
                let repr = match QosRepr::parse(input.unwrap_or(&[]), self.width, input_base) {
                    Ok(r) => r,
                    Err(e) => return (err(qos_errno(e)), Effect::None, None),
                };
                let owned = OwnedQos::from_repr(&repr);
                let (r, e) = match self.run_qos(socket, ov.is_some()) {
                    Err(e) => (err(e), Effect::None),
                    Ok(true) => self.defer(Deferred {
                        socket,
                        request: *ov.expect("deferred only when overlapped"),
                        kind: DeferredKind::Set(owned),
                    }),
                    Ok(false) if guaranteed(&owned) => (err(WsaError::OpNotSupp), Effect::None),
                    Ok(false) => {
                        self.stored_qos.insert(socket, owned);
                        self.finish(complete(0), ov)
                    }
                };
                return (r, e, None);
            }
            // SIO_GET_QOS / SIO_GET_GROUP_QOS.
            let group = code == SIO_GET_GROUP_QOS;
            let step = if group {
                Ok(false)
            } else {
                self.run_qos(socket, ov.is_some())
            };
            let (r, e, out) = match step {
                Err(e) => (err(e), Effect::None, None),
                Ok(true) => {
                    if out_len < qos_len(self.width) {
                        let r = IoctlReturn::Error {
                            error: WsaError::Fault,
                            bytes_returned: Some(qos_len(self.width) as u32),
                        };
                        (r, Effect::None, None)
                    } else {
                        let (r, e) = self.defer(Deferred {
                            socket,
                            request: *ov.expect("deferred only when overlapped"),
                            kind: DeferredKind::Get {
                                base: output_base,
                                capacity: out_len,
                            },
                        });
                        (r, e, None)
                    }
                }
                Ok(false) => {
                    let qos = if group {
                        OwnedQos::default()
                    } else {
                        self.stored_qos.get(&socket).cloned().unwrap_or_default()
                    };
                    let mut out = vec![0x5Au8; out_len];
                    match qos.as_repr().emit(&mut out, self.width, output_base) {
                        Ok(n) => {
                            let (r, e) = self.finish(complete(n as u32), ov);
                            (r, e, Some(out))
                        }
                        Err(QosError::BufferTooSmall { required, .. }) => {
                            let r = IoctlReturn::Error {
                                error: WsaError::Fault,
                                bytes_returned: u32::try_from(required).ok(),
                            };
                            (r, Effect::None, None)
                        }
                        Err(e) => (err(qos_errno(e)), Effect::None, None),
                    }
                }
            };
            return (r, e, out);
        }
        if self.vendor.is_some_and(|v| code.is_vendor(v)) {
            let r = match (input, output_len) {
                (Some(b"reset"), _) => err(WsaError::Inval), // WSAECONNRESET is no WSPIoctl code
                (_, None) => err(WsaError::Fault),
                (i, Some(n)) => complete(i.map_or(0, |i| i.len().min(n)) as u32),
            };
            let (r, e) = self.finish(r, ov);
            return (r, e, None);
        }
        (err(WsaError::Inval), Effect::None, None)
    }

    fn ioctl(&mut self) {
        let socket = self.socket();
        let code = self.code();
        let input_base = self.base();
        let input = self.input_buffer(input_base);
        let output_len = match self.input.u8() {
            0xFF => None,
            n => Some(n as usize),
        };
        let output_base = self.base();
        let flags = self.input.u8();
        let has_bytes_returned = flags & 1 == 0;
        let ov = self.overlapped(flags);
        // A NULL buffer has no caller address: `IoctlRequest` keeps 0 for it.
        let input_base = if input.is_some() { input_base } else { 0 };
        let output_base = if output_len.is_some() { output_base } else { 0 };

        let (want, effect, want_out) = self.predict(
            socket,
            code,
            input.as_deref(),
            input_base,
            output_len,
            output_base,
            has_bytes_returned,
            ov.as_ref(),
        );

        let mut output = output_len.map(|n| vec![0x5Au8; n]);
        let mut req = IoctlRequest::new(socket, code).bytes_returned(has_bytes_returned);
        if let Some(i) = input.as_deref() {
            req = req.input_at(i, input_base);
        }
        if let Some(o) = output.as_deref_mut() {
            req = req.output(o, output_base);
        }
        if let Some(o) = ov {
            req = req.overlapped(o);
        }
        let r = self.d.ioctl(req, &self.sw);
        let width = self.width;
        // Formatted only when an assertion fails.
        let what = || {
            format!(
                "ioctl(s={socket:#x}, {code}, in={:?}@{input_base:#x}, \
                 out={output_len:?}@{output_base:#x}, bytes_returned={has_bytes_returned}, \
                 ov={ov:?}, {width:?})",
                input.as_deref()
            )
        };

        if trace() {
            eprintln!("{} -> {r:?}", what());
        }
        // R-RET-2 and R-RET-3, whatever the model says.
        assert_eq!(
            r.return_value() == 0,
            r.errno().is_none(),
            "{}: {r:?}",
            what()
        );
        if let Some(e) = r.errno() {
            assert!(
                e.is_wspioctl_code(),
                "{}: {e:?} is no WSPIoctl code",
                what()
            );
            assert_eq!(r.return_value(), SOCKET_ERROR);
        }
        let out_len = output_len.unwrap_or(0);
        match r {
            IoctlReturn::Complete {
                bytes_returned,
                extension,
            } => {
                assert!(bytes_returned as usize <= out_len, "{}: {r:?}", what());
                assert_eq!(
                    extension.is_some(),
                    code == SIO_GET_EXTENSION_FUNCTION_POINTER,
                    "{}: {r:?}",
                    what()
                );
            }
            IoctlReturn::Error {
                error,
                bytes_returned: Some(n),
            } => {
                assert_eq!(error, WsaError::Fault, "{}: {r:?}", what());
                assert!(
                    n as usize > out_len,
                    "{}: {r:?} for a long enough buffer",
                    what()
                );
                assert!(
                    [SIO_ADDRESS_LIST_QUERY, SIO_GET_QOS, SIO_GET_GROUP_QOS].contains(&code),
                    "{}: {r:?}",
                    what()
                );
            }
            IoctlReturn::Error { error, .. } => {
                if matches!(error, WsaError::IoPending) {
                    assert!(ov.is_some() && qos_code(code), "{}: {r:?}", what());
                }
                if matches!(error, WsaError::WouldBlock) {
                    assert!(qos_code(code), "{}: {r:?}", what());
                }
            }
        }
        assert_eq!(r, want, "{}", what());

        // The output buffer.
        let out = output.as_deref().unwrap_or(&[]);
        match r {
            IoctlReturn::Complete { bytes_returned, .. } => {
                let n = bytes_returned as usize;
                assert!(
                    out[n..].iter().all(|&b| b == 0x5A),
                    "{}: wrote past *lpcbBytesReturned",
                    what()
                );
                if code == SIO_GET_EXTENSION_FUNCTION_POINTER {
                    assert!(
                        out.iter().all(|&b| b == 0x5A),
                        "{}: the shim writes the pointer",
                        what()
                    );
                }
                if code == SIO_ADDRESS_LIST_QUERY {
                    let list = SocketAddressList::new_checked(&out[..n], self.width, output_base)
                        .unwrap_or_else(|e| {
                            panic!("{}: returned list does not check: {e:?}", what())
                        });
                    let repr = SocketAddressListRepr::parse(&list).unwrap_or_else(|e| {
                        panic!("{}: returned list does not parse: {e:?}", what())
                    });
                    assert_eq!(&repr.addresses[..], &self.eligible()[..], "{}", what());
                }
                if let Some(want_out) = &want_out {
                    assert_eq!(out, &want_out[..], "{}: QOS output", what());
                    QosRepr::parse(&out[..n], self.width, output_base).unwrap_or_else(|e| {
                        panic!("{}: returned QOS does not parse: {e:?}", what())
                    });
                }
                if self.vendor.is_some_and(|v| code.is_vendor(v)) {
                    assert_eq!(
                        &out[..n],
                        &input.as_deref().unwrap_or(&[])[..n],
                        "{}",
                        what()
                    );
                }
            }
            // A call that completed when no slot was left to notify it through reports
            // WSAENETDOWN after the output was written (see docs/reliability.md).
            IoctlReturn::Error {
                error: WsaError::NetDown,
                ..
            } if self.up => {}
            IoctlReturn::Error { .. } => {
                assert!(
                    out.iter().all(|&b| b == 0x5A),
                    "{}: a failed call wrote",
                    what()
                );
            }
        }

        // The WSAOVERLAPPED and the notification.
        if let Some(o) = ov {
            let fields = self.sw.read(o.overlapped);
            match effect {
                Effect::None => assert_eq!(
                    fields,
                    Default::default(),
                    "{}: a failed call touched the WSAOVERLAPPED",
                    what()
                ),
                Effect::Notified(bytes) => self.notify(&o, 0, bytes),
                Effect::Deferred(d) => {
                    assert_eq!(fields.internal, WSS_OPERATION_IN_PROGRESS, "{}", what());
                    self.deferred.push(d);
                }
            }
        }
    }

    fn poll_deferred(&mut self) {
        let list = std::mem::take(&mut self.deferred);
        let mut done = 0;
        for d in list {
            if self.not_ready_now() {
                self.deferred.push(d);
                continue;
            }
            let (error, bytes) = match &d.kind {
                DeferredKind::Set(q) if guaranteed(q) => (WsaError::OpNotSupp.code() as u32, 0),
                DeferredKind::Set(q) => {
                    self.stored_qos.insert(d.socket, q.clone());
                    (0, 0)
                }
                DeferredKind::Get { base, capacity } => {
                    let q = self.stored_qos.get(&d.socket).cloned().unwrap_or_default();
                    let repr = q.as_repr();
                    let len = repr.buffer_len(self.width);
                    if len > *capacity {
                        (WsaError::Fault.code() as u32, 0)
                    } else {
                        let mut b = vec![0u8; len];
                        match repr.emit(&mut b, self.width, *base) {
                            Ok(n) => (0, n as u32),
                            Err(e) => (qos_errno(e).code() as u32, 0),
                        }
                    }
                }
            };
            let mode = CompletionMode::of(&d.request).expect("posted");
            if !self.refusing || mode == CompletionMode::PollOnly {
                done += 1;
            }
            self.notify(&d.request, error, bytes);
        }
        assert_eq!(self.d.poll_deferred(&self.sw), done, "poll_deferred");
    }

    fn close(&mut self, socket: u64) {
        let r = self.d.close_socket(socket, &self.sw);
        if self.open.remove(&socket).is_none() {
            assert_eq!(r, Err(WsaError::NotSock), "close({socket:#x})");
            return;
        }
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|d| d.socket == socket);
        self.deferred = rest;
        assert_eq!(r, Ok(mine.len()), "close({socket:#x}) aborted");
        for d in mine {
            self.notify(&d.request, WsaError::OperationAborted.code() as u32, 0);
        }
    }

    /// Runs the queued APCs: each context is harvested exactly once.
    fn harvest(&mut self) {
        for thread in THREADS {
            for context in self.sw.run_apcs(&thread) {
                let call =
                    self.d.operations().take_apc(context).unwrap_or_else(|e| {
                        panic!("queued APC {context:#x} not harvestable: {e:?}")
                    });
                assert_eq!(
                    self.d.operations().take_apc(context),
                    Err(CompleteError::Stale),
                    "APC harvested twice"
                );
                let (routine, t) = self.routines[&call.overlapped];
                assert_eq!((call.routine, t), (routine, thread), "{call:?}");
                self.harvested
                    .push((call.overlapped, call.error, call.bytes));
            }
        }
    }

    /// The notifications so far are exactly the expected ones; the table holds exactly
    /// the pending requests.
    fn check(&mut self) {
        self.harvest();
        let mut actual: Vec<Note> = self
            .sw
            .upcalls()
            .into_iter()
            .filter_map(|u| match u {
                Upcall::CompleteOverlapped {
                    overlapped,
                    error,
                    bytes,
                    ..
                } => Some((overlapped, error, bytes)),
                Upcall::QueueApc { .. } => None,
            })
            .chain(self.harvested.iter().copied())
            .collect();
        actual.sort_unstable();
        let mut expected = self.expected.clone();
        expected.sort_unstable();
        assert_eq!(actual, expected, "notifications");
        assert_eq!(self.d.operations().pending(), self.deferred.len(), "table");
    }

    /// Opcodes: 0–6 a `WSPIoctl` call, 7 transport up/down, 8 FIONBIO, 9 QoS not ready
    /// for N calls, 10 close, 11 open, 12 `poll_deferred`, 13 RDMA read offered or not,
    /// 14 refuse upcalls or not, 15 new NIC addresses.
    fn step(&mut self) {
        let op = self.input.u8() % 16;
        if trace() && op > 6 {
            eprintln!("step {op}");
        }
        match op {
            0..=6 => self.ioctl(),
            7 => {
                self.up = self.input.bool();
                self.d.transport().set_up(self.up);
            }
            8 => {
                let (s, on) = (self.socket(), self.input.bool());
                let r = self.d.set_nonblocking(s, on);
                match self.open.get_mut(&s) {
                    Some(nb) => {
                        assert_eq!(r, Ok(()));
                        *nb = on;
                    }
                    None => assert_eq!(r, Err(WsaError::NotSock)),
                }
            }
            9 => {
                let n = usize::from(self.input.u8() % 4);
                if self.qos {
                    self.d.transport().qos_not_ready_for(n);
                    self.not_ready = n;
                }
            }
            10 => {
                let s = self.socket();
                self.close(s);
            }
            11 => {
                let s = self.socket();
                let r = self.d.open_socket(s);
                match self.open.entry(s) {
                    Entry::Occupied(_) => assert_eq!(r.err(), Some(WsaError::Inval)),
                    Entry::Vacant(v) => {
                        assert!(r.is_ok());
                        v.insert(false);
                    }
                }
            }
            12 => self.poll_deferred(),
            13 => {
                self.rdma_read = self.input.bool();
                self.d.transport().set_rdma_read(self.rdma_read);
            }
            14 => {
                self.refusing = self.input.bool();
                self.sw
                    .refuse_upcalls(self.refusing.then_some(WsaError::NoBufs));
            }
            _ => {
                self.addresses = read_addresses(&mut self.input);
                self.d.transport().set_addresses(self.addresses.clone());
            }
        }
        self.check();
    }

    /// Closes everything: every request still pending is aborted and notified once, every
    /// poll-only request shows its result, and the table is empty.
    fn finish_all(&mut self) {
        self.refusing = false;
        self.sw.refuse_upcalls(None);
        let open: Vec<u64> = self.open.keys().copied().collect();
        for s in open {
            self.close(s);
        }
        self.check();
        assert_eq!(self.d.operations().pending(), 0, "the table does not drain");
        for (ov, want) in &self.poll_results {
            assert_eq!(
                get_overlapped_result(&self.sw, *ov),
                *want,
                "poll-only {ov:#x}"
            );
        }
    }
}

/// `SAN_SPI_FUZZ_TRACE=1`: print every call and its return (to read what a seed or a
/// crash input does).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("SAN_SPI_FUZZ_TRACE").is_some())
}

fn guaranteed(q: &OwnedQos) -> bool {
    q.sending.service() == Some(ServiceType::Guaranteed)
        || q.receiving.service() == Some(ServiceType::Guaranteed)
}

/// A count (0–4), then per address a selector: bit 7 temporary; the low 6 bits index the
/// table, or past it read a raw IPv4 (even) or IPv6 (odd) address.
fn read_addresses(input: &mut Input<'_>) -> Vec<LocalAddress> {
    let n = input.u8() % 5;
    (0..n)
        .map(|_| {
            let sel = input.u8();
            let kind = usize::from(sel & 0x3F);
            let addr = match address_table().get(kind) {
                Some(a) => *a,
                None if kind % 2 == 0 => SocketAddr::from((input.u32().to_be_bytes(), 0)),
                None => {
                    let mut raw = [0u8; 16];
                    let b = input.bytes(16);
                    raw[..b.len()].copy_from_slice(b);
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::from(raw)), 0)
                }
            };
            LocalAddress::new(addr).with_temporary(sel & 0x80 != 0)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::new(data);
    for _ in 0..24 {
        if h.input.is_empty() {
            break;
        }
        h.step();
    }
    h.finish_all();
});
