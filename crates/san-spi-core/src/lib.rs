//! `san-spi-core` — the portable, sans-IO protocol core of a Windows Sockets Direct SAN
//! service provider. **Writing a transport for your NIC?** Start with the repository's
//! `docs/transport-guide.md`: implement the traits of [`transport`] ([`TransportControl`],
//! [`Memory`], [`Endpoint`], [`Listener`], [`Transport`]; `#[async_trait]` is re-exported
//! there) and prove them with the conformance suite of `san-spi-testkit`; the reference
//! transport `san-spi-inproc` is the worked example to copy. The core then drives your
//! transport for everything the switch asks:
//!
//! ```
//! use san_spi_core::addr::Width;
//! use san_spi_core::socket::SanSockets;
//! use san_spi_core::transport::Transport;
//!
//! /// The provider's socket table over any transport, for 64-bit callers.
//! fn provider<T: Transport>(nic: T) -> SanSockets<T> {
//!     SanSockets::new(nic, Width::W64)
//! }
//! ```
//!
//! [`TransportControl`]: transport::TransportControl
//! [`Memory`]: transport::Memory
//! [`Endpoint`]: transport::Endpoint
//! [`Listener`]: transport::Listener
//! [`Transport`]: transport::Transport
//!
//! Everything in a SAN provider that is not hardware and not Win32 lives here and is tested
//! on any OS: the `WSPIoctl` control-code encoding ([`ioctl`]), the extension-function GUIDs
//! ([`guid`]), the Winsock error codes ([`error`]), the `SOCKET_ADDRESS_LIST` returned by
//! `SIO_ADDRESS_LIST_QUERY` ([`addr`]) and the `QOS` structures ([`qos`]), each for the
//! 32- and 64-bit Windows layouts from any host; overlapped completion ([`overlapped`]),
//! `WSPIoctl` dispatch ([`dispatch`]) and the socket layer ([`socket`]).
//!
//! The crate does no I/O, starts no threads and contains no `unsafe` block. Caller memory is
//! handled as byte slices together with the caller's base address, so self-pointing
//! structures are emitted exactly as the caller will read them.
//!
//! ```
//! use san_spi_core::addr::{SocketAddressListRepr, Width};
//! use san_spi_core::ioctl::{IoctlCode, SIO_ADDRESS_LIST_QUERY};
//!
//! let code = IoctlCode::from_raw(0x4800_0016);
//! assert_eq!(code, SIO_ADDRESS_LIST_QUERY);
//! let addrs = ["10.0.0.7:0".parse().unwrap()];
//! let list = SocketAddressListRepr { addresses: &addrs[..] };
//! assert_eq!(list.buffer_len(Width::W64), 8 + 16 + 16);
//! ```
//!
//! # References
//!
//! The `WSPIoctl` page of the Windows Sockets SPI extensions for SANs, and the public headers
//! `winsock2.h`, `ws2def.h`, `ws2ipdef.h`, `qos.h`, `ws2spi.h` and `ws2san.h`.

// Only `transport` declares `unsafe fn` (registration contracts); no module has an unsafe block.
#![deny(unsafe_code)]

pub mod addr;
pub mod dispatch;
pub mod error;
pub mod guid;
pub mod ioctl;
mod loom;
pub mod overlapped;
pub mod qos;
pub mod socket;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[allow(unsafe_code)]
pub mod transport;
pub mod upcall;
mod wire;

pub use error::WsaError;
