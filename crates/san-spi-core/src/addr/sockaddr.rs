//! `SOCKADDR_IN` / `SOCKADDR_IN6` — the Windows socket addresses inside an address list.
//!
//! Layouts (identical for 32- and 64-bit Windows; `ws2def.h`, `ws2ipdef.h`):
//!
//! ```text
//! SOCKADDR_IN  (16 bytes): family u16 LE | port u16 BE | addr [4]   | zero [8]
//! SOCKADDR_IN6 (28 bytes): family u16 LE | port u16 BE | flowinfo u32 BE | addr [16] | scope_id u32 LE
//! ```
//!
//! `sin6_flowinfo` is kept in network byte order, as RFC 3493 defines it; `sin6_scope_id` is a
//! host-order interface index.
//!
//! ```
//! use san_spi_core::addr::sockaddr;
//! use std::net::SocketAddr;
//!
//! let a: SocketAddr = "192.0.2.1:80".parse().unwrap();
//! let mut buf = [0xAA; sockaddr::SOCKADDR_IN_LEN];
//! sockaddr::emit(&a, &mut buf).unwrap();
//! assert_eq!(&buf[..8], &[2, 0, 0, 80, 192, 0, 2, 1]);
//! assert_eq!(sockaddr::parse(&buf), Ok(a));
//! ```

use crate::wire::{array4, le_u32};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// `AF_INET` on Windows.
pub const AF_INET: u16 = 2;
/// `AF_INET6` on Windows (not 10 as on Linux).
pub const AF_INET6: u16 = 23;
/// `sizeof(SOCKADDR_IN)`.
pub const SOCKADDR_IN_LEN: usize = field::IN_ZERO.end;
/// `sizeof(SOCKADDR_IN6)`.
pub const SOCKADDR_IN6_LEN: usize = field::IN6_SCOPE_ID.end;
/// `sizeof(SOCKADDR_STORAGE)`: the longest socket address a parser accepts.
pub const SOCKADDR_STORAGE_LEN: usize = 128;

/// Byte ranges of the socket-address fields.
#[allow(missing_docs)]
pub mod field {
    use core::ops::Range;

    pub const FAMILY: Range<usize> = 0..2;
    pub const PORT: Range<usize> = 2..4;
    pub const IN_ADDR: Range<usize> = 4..8;
    pub const IN_ZERO: Range<usize> = 8..16;
    pub const IN6_FLOWINFO: Range<usize> = 4..8;
    pub const IN6_ADDR: Range<usize> = 8..24;
    pub const IN6_SCOPE_ID: Range<usize> = 24..28;
}

/// Why bytes are not a socket address, or a buffer cannot take one.
///
/// ```
/// use san_spi_core::addr::sockaddr::{self, SockaddrError};
/// use std::net::SocketAddr;
///
/// // AF_INET6 is 23 on Windows; Linux's 10 is not a family here.
/// assert_eq!(sockaddr::parse(&[10, 0, 0, 0]), Err(SockaddrError::UnknownFamily(10)));
/// assert_eq!(
///     sockaddr::parse(&[2, 0, 0, 80]),
///     Err(SockaddrError::Short { family: 2, needed: 16, len: 4 })
/// );
/// let v6: SocketAddr = "[2001:db8::1]:0".parse().unwrap();
/// assert_eq!(
///     sockaddr::emit(&v6, &mut [0u8; 16]),
///     Err(SockaddrError::Short { family: 23, needed: 28, len: 16 })
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SockaddrError {
    /// Too short for the family it names (or for a family field at all).
    #[error("a socket address of family {family} needs {needed} bytes, got {len}")]
    Short {
        /// The family read (0 if not even that fits).
        family: u16,
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        len: usize,
    },
    /// Neither `AF_INET` (2) nor `AF_INET6` (23).
    #[error("address family {0} is neither AF_INET (2) nor AF_INET6 (23)")]
    UnknownFamily(u16),
}

/// The number of bytes `addr` takes: 16 for IPv4, 28 for IPv6.
pub const fn len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => SOCKADDR_IN_LEN,
        SocketAddr::V6(_) => SOCKADDR_IN6_LEN,
    }
}

/// Writes `addr` into the first [`len`] bytes of `buf`; nothing is written if `buf` is shorter.
pub fn emit(addr: &SocketAddr, buf: &mut [u8]) -> Result<usize, SockaddrError> {
    let need = len(addr);
    let family = match addr {
        SocketAddr::V4(_) => AF_INET,
        SocketAddr::V6(_) => AF_INET6,
    };
    let buf = match buf.get_mut(..need) {
        Some(b) => b,
        None => {
            return Err(SockaddrError::Short {
                family,
                needed: need,
                len: buf.len(),
            })
        }
    };
    buf[field::FAMILY].copy_from_slice(&family.to_le_bytes());
    buf[field::PORT].copy_from_slice(&addr.port().to_be_bytes());
    match addr {
        SocketAddr::V4(a) => {
            buf[field::IN_ADDR].copy_from_slice(&a.ip().octets());
            buf[field::IN_ZERO].fill(0);
        }
        SocketAddr::V6(a) => {
            buf[field::IN6_FLOWINFO].copy_from_slice(&a.flowinfo().to_be_bytes());
            buf[field::IN6_ADDR].copy_from_slice(&a.ip().octets());
            buf[field::IN6_SCOPE_ID].copy_from_slice(&a.scope_id().to_le_bytes());
        }
    }
    Ok(need)
}

/// Reads the socket address at the start of `bytes`.
///
/// The family field decides the length needed; extra bytes (up to a `SOCKADDR_STORAGE`)
/// are allowed and ignored, as is the content of `sin_zero`.
pub fn parse(bytes: &[u8]) -> Result<SocketAddr, SockaddrError> {
    let family = match bytes.get(field::FAMILY) {
        Some(f) => u16::from_le_bytes([f[0], f[1]]),
        None => {
            return Err(SockaddrError::Short {
                family: 0,
                needed: field::FAMILY.end,
                len: bytes.len(),
            })
        }
    };
    let needed = match family {
        AF_INET => SOCKADDR_IN_LEN,
        AF_INET6 => SOCKADDR_IN6_LEN,
        other => return Err(SockaddrError::UnknownFamily(other)),
    };
    if bytes.len() < needed {
        return Err(SockaddrError::Short {
            family,
            needed,
            len: bytes.len(),
        });
    }
    let port = u16::from_be_bytes([bytes[field::PORT][0], bytes[field::PORT][1]]);
    Ok(if family == AF_INET {
        let ip = Ipv4Addr::from(array4(bytes, field::IN_ADDR));
        SocketAddr::V4(SocketAddrV4::new(ip, port))
    } else {
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&bytes[field::IN6_ADDR]);
        SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            u32::from_be_bytes(array4(bytes, field::IN6_FLOWINFO)),
            le_u32(bytes, field::IN6_SCOPE_ID),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    static IN6_BYTES: [u8; 28] = [
        23, 0, // AF_INET6
        0x01, 0xBB, // port 443
        0, 0, 0, 5, // flowinfo 5
        0xFE, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // fe80::1
        3, 0, 0, 0, // scope id 3
    ];

    /// R-ADDR-4: IPv6 addresses are `AF_INET6` (23) `SOCKADDR_IN6` of 28 bytes, IPv4 ones
    /// `AF_INET` (2) `SOCKADDR_IN` of 16 bytes.
    #[test]
    fn r_addr_4_families_and_lengths() {
        let v4: SocketAddr = "192.0.2.1:0".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:0".parse().unwrap();
        assert_eq!((len(&v4), len(&v6)), (16, 28));
        let mut b = [0u8; 28];
        emit(&v4, &mut b).unwrap();
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 2);
        emit(&v6, &mut b).unwrap();
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 23);
    }

    #[test]
    fn sockaddr_in6_parse_and_emit() {
        let a = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 443, 5, 3));
        assert_eq!(parse(&IN6_BYTES), Ok(a));
        let mut buf = [0xFF; 30];
        assert_eq!(emit(&a, &mut buf), Ok(28));
        assert_eq!(&buf[..28], &IN6_BYTES[..]);
        assert_eq!(&buf[28..], &[0xFF, 0xFF]);
    }

    #[test]
    fn short_and_unknown_are_errors() {
        assert!(matches!(
            parse(&IN6_BYTES[..27]),
            Err(SockaddrError::Short {
                family: 23,
                needed: 28,
                len: 27
            })
        ));
        assert!(matches!(
            parse(&[2]),
            Err(SockaddrError::Short { family: 0, .. })
        ));
        assert_eq!(parse(&[10, 0, 0, 0]), Err(SockaddrError::UnknownFamily(10)));
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut buf = [7u8; 15];
        assert!(emit(&a, &mut buf).is_err());
        assert_eq!(buf, [7u8; 15]);
    }
}
