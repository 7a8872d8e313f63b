//! A recording fake of the Winsock switch for tests — the core's own and a vendor's.
//!
//! Enabled by the `testing` feature. [`FakeSwitch`] implements [`Upcalls`] and
//! [`OverlappedMemory`]: it records every upcall in order, keeps each `WSAOVERLAPPED`'s
//! fields the way the real switch would leave them, keeps queued APCs per thread until
//! the test runs them, and can be told to refuse upcalls.
//!
//! ```
//! use san_spi_core::overlapped::{CompletionMode, OperationTable, Outcome, OverlappedRequest};
//! use san_spi_core::testing::{FakeSwitch, Upcall};
//! use san_spi_core::upcall::ThreadId;
//!
//! let switch = FakeSwitch::new();
//! let table = OperationTable::with_capacity(8);
//! let thread = ThreadId { thread_handle: 0x44, reserved: 0 };
//! let req = OverlappedRequest { overlapped: 0x900, event: 0, completion_routine: 0x7000, thread_id: Some(thread) };
//! let token = table.post(3, &req, CompletionMode::of(&req).unwrap(), &switch).unwrap();
//! table.complete(token, Outcome::ok(5), &switch).unwrap();
//! let contexts = switch.run_apcs(&thread);
//! assert_eq!(contexts, vec![token.raw() as u64]);
//! let call = table.take_apc(contexts[0]).unwrap();
//! assert_eq!((call.routine, call.bytes, call.overlapped), (0x7000, 5, 0x900));
//! assert!(matches!(switch.upcalls()[0], Upcall::QueueApc { .. }));
//! ```

use crate::upcall::{OverlappedFields, OverlappedMemory, ThreadId, Upcalls};
use crate::WsaError;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// One recorded upcall.
///
/// ```
/// use san_spi_core::testing::{FakeSwitch, Upcall};
/// use san_spi_core::upcall::{ThreadId, Upcalls};
///
/// let switch = FakeSwitch::new();
/// let thread = ThreadId { thread_handle: 0x44, reserved: 0 };
/// switch.complete_overlapped(4, 0x1000, 0, 16).unwrap();
/// switch.queue_apc(&thread, 9).unwrap();
/// assert_eq!(
///     switch.upcalls(),
///     vec![
///         Upcall::CompleteOverlapped { socket: 4, overlapped: 0x1000, error: 0, bytes: 16 },
///         Upcall::QueueApc { thread, context: 9 },
///     ]
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upcall {
    /// `WPUCompleteOverlappedRequest`.
    CompleteOverlapped {
        /// `s`.
        socket: u64,
        /// `lpOverlapped`.
        overlapped: u64,
        /// `dwError`.
        error: u32,
        /// `cbTransferred`.
        bytes: u32,
    },
    /// `WPUQueueApc`.
    QueueApc {
        /// `*lpThreadId`.
        thread: ThreadId,
        /// `dwContext`.
        context: u64,
    },
}

#[derive(Default)]
struct Inner {
    memory: HashMap<u64, OverlappedFields>,
    upcalls: Vec<Upcall>,
    queued_apcs: HashMap<ThreadId, Vec<u64>>,
    outputs: HashMap<u64, Vec<u8>>,
    refuse: Option<WsaError>,
}

/// The recording fake switch. Thread-safe.
///
/// ```
/// use san_spi_core::testing::FakeSwitch;
/// use san_spi_core::upcall::{OverlappedMemory, ThreadId, Upcalls, WSS_OPERATION_IN_PROGRESS};
/// use san_spi_core::WsaError;
///
/// let switch = FakeSwitch::new();
/// switch.write_in_progress(0x2000);
/// assert_eq!(switch.read(0x2000).internal, WSS_OPERATION_IN_PROGRESS);
///
/// // Like the real switch: `InternalHigh = bytes`, then `Internal` leaves "in progress".
/// switch.complete_overlapped(9, 0x2000, 0, 128).unwrap();
/// let f = switch.read(0x2000);
/// assert_eq!((f.internal, f.internal_high), (0, 128));
/// assert_eq!(switch.completions_of(0x2000), 1);
///
/// // A refused upcall is reported and not recorded.
/// switch.refuse_upcalls(Some(WsaError::NoBufs));
/// let thread = ThreadId { thread_handle: 0x44, reserved: 0 };
/// assert_eq!(switch.queue_apc(&thread, 1), Err(WsaError::NoBufs));
/// assert_eq!((switch.apcs_queued(), switch.queued_apcs(&thread)), (0, 0));
/// ```
#[derive(Default)]
pub struct FakeSwitch {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for FakeSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSwitch")
            .field("upcalls", &self.lock().upcalls.len())
            .finish()
    }
}

impl FakeSwitch {
    /// A switch with no history.
    pub fn new() -> FakeSwitch {
        FakeSwitch::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the history from the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every upcall so far, in order.
    pub fn upcalls(&self) -> Vec<Upcall> {
        self.lock().upcalls.clone()
    }

    /// Upcalls that notified about `overlapped` (completions, and APCs whose context the
    /// caller maps to it), counted for exactly-once checks.
    pub fn completions_of(&self, overlapped: u64) -> usize {
        self.lock()
            .upcalls
            .iter()
            .filter(|u| matches!(u, Upcall::CompleteOverlapped { overlapped: o, .. } if *o == overlapped))
            .count()
    }

    /// Number of `WPUQueueApc` calls so far.
    pub fn apcs_queued(&self) -> usize {
        self.lock()
            .upcalls
            .iter()
            .filter(|u| matches!(u, Upcall::QueueApc { .. }))
            .count()
    }

    /// Number of APCs queued for `thread` and not yet run.
    pub fn queued_apcs(&self, thread: &ThreadId) -> usize {
        self.lock().queued_apcs.get(thread).map_or(0, Vec::len)
    }

    /// Runs `thread`'s queued APCs the way an alertable wait would: returns their contexts
    /// in queue order and forgets them.
    pub fn run_apcs(&self, thread: &ThreadId) -> Vec<u64> {
        self.lock().queued_apcs.remove(thread).unwrap_or_default()
    }

    /// From now on every upcall fails with `error` (`None` to accept again).
    pub fn refuse_upcalls(&self, error: Option<WsaError>) {
        self.lock().refuse = error;
    }

    /// The bytes written with [`OverlappedMemory::write_output`] at `address`, if any.
    pub fn output_at(&self, address: u64) -> Option<Vec<u8>> {
        self.lock().outputs.get(&address).cloned()
    }

    /// Sets the fields of a `WSAOVERLAPPED` as a caller would before a call.
    pub fn set_fields(&self, overlapped: u64, fields: OverlappedFields) {
        self.lock().memory.insert(overlapped, fields);
    }
}

impl Upcalls for FakeSwitch {
    fn complete_overlapped(
        &self,
        socket: u64,
        overlapped: u64,
        error: u32,
        bytes: u32,
    ) -> Result<(), WsaError> {
        let mut g = self.lock();
        if let Some(e) = g.refuse {
            return Err(e);
        }
        g.upcalls.push(Upcall::CompleteOverlapped {
            socket,
            overlapped,
            error,
            bytes,
        });
        // What the switch does: InternalHigh first, then Internal.
        let f = g.memory.entry(overlapped).or_default();
        f.internal_high = bytes as u64;
        f.internal = 0;
        Ok(())
    }

    fn queue_apc(&self, thread: &ThreadId, context: u64) -> Result<(), WsaError> {
        let mut g = self.lock();
        if let Some(e) = g.refuse {
            return Err(e);
        }
        g.upcalls.push(Upcall::QueueApc {
            thread: *thread,
            context,
        });
        g.queued_apcs.entry(*thread).or_default().push(context);
        Ok(())
    }
}

impl OverlappedMemory for FakeSwitch {
    fn write_in_progress(&self, overlapped: u64) {
        self.lock().memory.entry(overlapped).or_default().internal =
            crate::upcall::WSS_OPERATION_IN_PROGRESS;
    }

    fn write_result(&self, overlapped: u64, error: u32, flags: u32) {
        let mut g = self.lock();
        let f = g.memory.entry(overlapped).or_default();
        f.offset_high = error;
        f.offset = flags;
    }

    fn write_done(&self, overlapped: u64, bytes: u32) {
        let mut g = self.lock();
        let f = g.memory.entry(overlapped).or_default();
        f.internal_high = bytes as u64;
        f.internal = 0;
    }

    fn write_output(&self, address: u64, bytes: &[u8]) {
        self.lock().outputs.insert(address, bytes.to_vec());
    }

    fn read(&self, overlapped: u64) -> OverlappedFields {
        self.lock()
            .memory
            .get(&overlapped)
            .copied()
            .unwrap_or_default()
    }
}

/// A scriptable transport for dispatcher tests: addresses, up/down, optional QoS that can
/// be told to refuse or to be "not ready" a number of times, and vendor codes that echo.
///
/// ```
/// use san_spi_core::ioctl::{IoctlCode, IoctlFlags, IoctlType};
/// use san_spi_core::testing::FakeTransport;
/// use san_spi_core::transport::{LocalAddress, TransportControl};
/// use san_spi_core::WsaError;
///
/// let nic = LocalAddress::new("192.0.2.10:0".parse().unwrap());
/// let t = FakeTransport::new(vec![nic]);
/// assert_eq!(t.local_addresses(), Ok(vec![nic]));
/// assert!(t.is_up() && t.qos().is_none());
/// t.set_up(false);
/// assert!(!t.is_up());
///
/// // Vendor codes echo the input; `b"reset"` fails.
/// let code = IoctlCode::new(IoctlFlags::IN | IoctlFlags::OUT, IoctlType::Vendor, 0x123, 1);
/// let mut out = [0u8; 8];
/// let r = t.vendor_ioctl(5, code, Some(b"ping"), Some(&mut out)).unwrap();
/// assert_eq!((r.bytes_returned, &out[..4]), (4, &b"ping"[..]));
/// assert_eq!(t.vendor_ioctl(5, code, Some(b"reset"), Some(&mut out)), Err(WsaError::ConnReset));
/// ```
pub struct FakeTransport {
    up: std::sync::atomic::AtomicBool,
    addresses: Mutex<Vec<crate::transport::LocalAddress>>,
    qos: Option<FakeQos>,
    rdma_read: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for FakeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTransport").finish()
    }
}

/// The QoS side of [`FakeTransport`].
///
/// ```
/// use san_spi_core::qos::{FlowSpec, QosRepr, ServiceType};
/// use san_spi_core::testing::FakeTransport;
/// use san_spi_core::transport::{QosCapability, TransportControl};
/// use san_spi_core::WsaError;
///
/// let t = FakeTransport::with_qos(vec![]);
/// let qos: &dyn QosCapability = t.qos().unwrap(); // the FakeQos
/// let want = QosRepr { sending: FlowSpec::best_effort(1_000), receiving: FlowSpec::NULL, provider_specific: &[] };
/// qos.set_qos(3, &want).unwrap();
/// assert_eq!(qos.get_qos(3).unwrap().as_repr(), want);
///
/// // "Not ready" for the next call only.
/// t.qos_not_ready_for(1);
/// assert_eq!(qos.get_qos(3), Err(WsaError::WouldBlock));
/// assert!(qos.get_qos(3).is_ok());
///
/// // Guaranteed service is refused.
/// let mut guaranteed = want;
/// guaranteed.sending.service_type = ServiceType::Guaranteed as u32;
/// assert_eq!(qos.set_qos(3, &guaranteed), Err(WsaError::OpNotSupp));
/// ```
#[derive(Default)]
pub struct FakeQos {
    per_socket: Mutex<HashMap<u64, crate::transport::OwnedQos>>,
    not_ready: std::sync::atomic::AtomicUsize,
    waits: std::sync::atomic::AtomicUsize,
}

impl FakeTransport {
    /// Up, with these addresses, without QoS.
    pub fn new(addresses: Vec<crate::transport::LocalAddress>) -> FakeTransport {
        FakeTransport {
            up: std::sync::atomic::AtomicBool::new(true),
            addresses: Mutex::new(addresses),
            qos: None,
            rdma_read: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// The same with QoS support.
    pub fn with_qos(addresses: Vec<crate::transport::LocalAddress>) -> FakeTransport {
        FakeTransport {
            qos: Some(FakeQos::default()),
            ..FakeTransport::new(addresses)
        }
    }

    /// Takes the transport up or down.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the transport offers RDMA read (it does until told otherwise); without it
    /// the dispatcher answers the `WSPRdmaRead` GUID with `WSAEOPNOTSUPP` (R-EXT-5).
    pub fn set_rdma_read(&self, rdma_read: bool) {
        self.rdma_read
            .store(rdma_read, std::sync::atomic::Ordering::SeqCst);
    }

    /// Replaces the address list (an address change).
    pub fn set_addresses(&self, addresses: Vec<crate::transport::LocalAddress>) {
        *self.addresses.lock().unwrap_or_else(|e| e.into_inner()) = addresses;
    }

    /// The next `n` QoS calls answer "cannot finish now" (`WSAEWOULDBLOCK`).
    ///
    /// # Panics
    ///
    /// If the transport has no QoS.
    pub fn qos_not_ready_for(&self, n: usize) {
        self.qos
            .as_ref()
            .expect("FakeTransport::with_qos")
            .not_ready
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// How often a blocking caller waited for QoS progress.
    pub fn qos_waits(&self) -> usize {
        self.qos
            .as_ref()
            .map_or(0, |q| q.waits.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl FakeQos {
    fn not_ready(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.not_ready
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl crate::transport::QosCapability for FakeQos {
    fn get_qos(&self, socket: u64) -> Result<crate::transport::OwnedQos, WsaError> {
        if self.not_ready() {
            return Err(WsaError::WouldBlock);
        }
        Ok(self
            .per_socket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&socket)
            .cloned()
            .unwrap_or_default())
    }

    /// Guaranteed service cannot be honoured by this fake (`WSAEOPNOTSUPP`).
    fn set_qos(&self, socket: u64, qos: &crate::qos::QosRepr<'_>) -> Result<(), WsaError> {
        use crate::qos::ServiceType;
        if self.not_ready() {
            return Err(WsaError::WouldBlock);
        }
        if qos.sending.service() == Some(ServiceType::Guaranteed)
            || qos.receiving.service() == Some(ServiceType::Guaranteed)
        {
            return Err(WsaError::OpNotSupp);
        }
        self.per_socket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(socket, crate::transport::OwnedQos::from_repr(qos));
        Ok(())
    }

    fn wait(&self, _socket: u64) {
        self.waits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl crate::transport::TransportControl for FakeTransport {
    fn is_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn offers(&self, _socket: u64, f: crate::guid::ExtensionFunction) -> bool {
        f != crate::guid::ExtensionFunction::RdmaRead
            || self.rdma_read.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn local_addresses(&self) -> Result<Vec<crate::transport::LocalAddress>, WsaError> {
        Ok(self
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }

    fn qos(&self) -> Option<&dyn crate::transport::QosCapability> {
        self.qos
            .as_ref()
            .map(|q| q as &dyn crate::transport::QosCapability)
    }

    /// Copies the input to the output; an input of `b"reset"` fails with `WSAECONNRESET`
    /// (which the dispatcher must turn into a `WSPIoctl` code).
    fn vendor_ioctl(
        &self,
        _socket: u64,
        _code: crate::ioctl::IoctlCode,
        input: Option<&[u8]>,
        output: Option<&mut [u8]>,
    ) -> Result<crate::transport::VendorOutcome, WsaError> {
        let input = input.unwrap_or(&[]);
        if input == b"reset" {
            return Err(WsaError::ConnReset);
        }
        let output = output.ok_or(WsaError::Fault)?;
        let n = input.len().min(output.len());
        output[..n].copy_from_slice(&input[..n]);
        Ok(crate::transport::VendorOutcome {
            bytes_returned: n as u32,
        })
    }
}
