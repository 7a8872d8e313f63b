//! What `WSPIoctl` needs from a transport: its state, its addresses, QoS and vendor codes.
//!
//! [`TransportControl`] is the synchronous, rarely-called part of a transport that
//! [`crate::dispatch`] drives. Every method has a conservative default, so a transport
//! implements only what it supports: no QoS (→ `WSAENOPROTOOPT`), no vendor codes
//! (→ `WSAEINVAL`), always up. The data plane (send, receive, RDMA, completion polling)
//! is a separate trait that builds on this one.
//!
//! ```
//! use san_spi_core::transport::{LocalAddress, TransportControl};
//! use san_spi_core::WsaError;
//!
//! struct OneNic;
//! impl TransportControl for OneNic {
//!     fn local_addresses(&self) -> Result<Vec<LocalAddress>, WsaError> {
//!         Ok(vec![LocalAddress::new("192.0.2.10:0".parse().unwrap())])
//!     }
//! }
//! assert!(OneNic.is_up());
//! assert!(OneNic.qos().is_none());
//! ```

use crate::ioctl::IoctlCode;
use crate::qos::{FlowSpec, QosRepr};
use crate::WsaError;
use std::net::SocketAddr;

/// An address of a NIC the transport serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalAddress {
    /// The address (port 0; IPv6 link-local with its scope id).
    pub addr: SocketAddr,
    /// The OS marks it temporary (a privacy address): never listed (R-ADDR-6).
    pub temporary: bool,
}

impl LocalAddress {
    /// A permanent address.
    pub fn new(addr: SocketAddr) -> LocalAddress {
        LocalAddress {
            addr,
            temporary: false,
        }
    }
}

/// A socket's QoS as a transport keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnedQos {
    /// `SendingFlowspec`.
    pub sending: FlowSpec,
    /// `ReceivingFlowspec`.
    pub receiving: FlowSpec,
    /// `ProviderSpecific` bytes.
    pub provider_specific: Vec<u8>,
}

impl OwnedQos {
    /// The borrowed form, for emitting.
    pub fn as_repr(&self) -> QosRepr<'_> {
        QosRepr {
            sending: self.sending,
            receiving: self.receiving,
            provider_specific: &self.provider_specific,
        }
    }

    /// A copy of a parsed `QOS`.
    pub fn from_repr(repr: &QosRepr<'_>) -> OwnedQos {
        OwnedQos {
            sending: repr.sending,
            receiving: repr.receiving,
            provider_specific: repr.provider_specific.to_vec(),
        }
    }
}

/// QoS support of a transport (R-QOS).
///
/// A method returns `Err(WsaError::WouldBlock)` when it cannot finish now; the dispatcher
/// then answers `WSAEWOULDBLOCK` on a nonblocking socket (R-OVL-1), keeps an overlapped
/// request pending until [`crate::dispatch::Dispatcher::poll_deferred`] finds it done, and
/// waits with [`wait`](QosCapability::wait) on a blocking socket.
pub trait QosCapability: Send + Sync {
    /// The socket's current QoS (`SIO_GET_QOS`).
    fn get_qos(&self, socket: u64) -> Result<OwnedQos, WsaError>;

    /// Applies `qos` to the socket (`SIO_SET_QOS`); `Err(WsaError::OpNotSupp)` for flow specs
    /// it cannot honour (R-RET-7).
    fn set_qos(&self, socket: u64, qos: &QosRepr<'_>) -> Result<(), WsaError>;

    /// Blocks until a QoS call on `socket` may make progress. The default yields the thread.
    fn wait(&self, socket: u64) {
        let _ = socket;
        std::thread::yield_now();
    }
}

/// The result of a vendor-specific control code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorOutcome {
    /// Bytes written to the output buffer.
    pub bytes_returned: u32,
}

/// The control-plane queries `WSPIoctl` makes of a transport.
pub trait TransportControl: Send + Sync {
    /// Whether the transport can be used; `false` makes every call `WSAENETDOWN`.
    fn is_up(&self) -> bool {
        true
    }

    /// The addresses of the NICs this transport serves, in a stable order (R-ADDR-4, R-ADDR-7).
    /// The dispatcher filters them by [`crate::addr::eligibility::classify`].
    fn local_addresses(&self) -> Result<Vec<LocalAddress>, WsaError>;

    /// QoS support; `None` makes every QoS code `WSAENOPROTOOPT` (R-QOS-1).
    fn qos(&self) -> Option<&dyn QosCapability> {
        None
    }

    /// A vendor-specific code (T = 3 with the provider's vendor number, R-IOC-5). Errors
    /// outside the `WSPIoctl` set (R-RET-3) are reported as `WSAEINVAL`.
    fn vendor_ioctl(
        &self,
        socket: u64,
        code: IoctlCode,
        input: Option<&[u8]>,
        output: Option<&mut [u8]>,
    ) -> Result<VendorOutcome, WsaError> {
        let _ = (socket, code, input, output);
        Err(WsaError::Inval)
    }
}
