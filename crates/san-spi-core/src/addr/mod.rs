//! `SOCKET_ADDRESS_LIST` — the output of `SIO_ADDRESS_LIST_QUERY`, for 32- and 64-bit callers.
//!
//! ```text
//! typedef struct _SOCKET_ADDRESS { LPSOCKADDR lpSockaddr; INT iSockaddrLength; } SOCKET_ADDRESS;
//! typedef struct _SOCKET_ADDRESS_LIST { INT iAddressCount; SOCKET_ADDRESS Address[1]; } SOCKET_ADDRESS_LIST;
//!
//!            offset(Address[0])  sizeof(SOCKET_ADDRESS)
//!   x86 (W32)        4                    8   (ptr 0..4, len 4..8)
//!   x64 (W64)        8                   16   (ptr 0..8, len 8..12, 4 bytes padding)
//! ```
//!
//! The socket addresses follow the entries in the same caller buffer, and every `lpSockaddr`
//! holds the caller's address of its socket address, so the list is emitted against the
//! buffer's *base address*. The list takes exactly `offset(Address[0]) + n ×
//! sizeof(SOCKET_ADDRESS) + Σ sockaddr lengths` bytes, no slack (R-ADDR-1); every piece stays
//! 4-byte aligned relative to the start, and the caller's buffer may have any alignment
//! because everything is written byte by byte (R-ADDR-2).
//!
//! The module follows the wire-view pattern and its guarantees:
//!
//! - once [`SocketAddressList::check_len`] (or [`SocketAddressList::new_checked`]) has passed,
//!   no accessor panics;
//! - [`SocketAddressListRepr::parse`] never panics, whatever the bytes;
//! - [`SocketAddressListRepr::emit`] never panics, writes exactly
//!   [`SocketAddressListRepr::buffer_len`] bytes, and when the buffer is too small (or the
//!   base address cannot hold the list) it writes nothing and reports the size required
//!   (R-ADDR-3).
//!
//! `new_checked` is for parsing; to emit, hand `emit` the caller's buffer as it is.
//!
//! ```
//! use san_spi_core::addr::{AddrError, SocketAddressList, SocketAddressListRepr, Width};
//! use std::net::SocketAddr;
//!
//! let addrs: [SocketAddr; 2] = ["192.0.2.1:0".parse().unwrap(), "[fe80::1:2]:0".parse().unwrap()];
//! let repr = SocketAddressListRepr { addresses: &addrs[..] };
//! assert_eq!(repr.buffer_len(Width::W64), 8 + 2 * 16 + 16 + 28);
//!
//! let mut small = [0u8; 40];
//! assert!(matches!(
//!     repr.emit(&mut small, Width::W64, 0x1000),
//!     Err(AddrError::BufferTooSmall { required: 84, available: 40, .. })
//! ));
//! assert_eq!(small, [0u8; 40]); // nothing written
//!
//! let mut buf = [0u8; 84];
//! assert_eq!(repr.emit(&mut buf, Width::W64, 0x1000), Ok(84));
//! let list = SocketAddressList::new_checked(&buf[..], Width::W64, 0x1000).unwrap();
//! assert_eq!(list.address_count(), 2);
//! assert_eq!(list.sockaddr_ptr(0), 0x1000 + 40);
//! assert_eq!(SocketAddressListRepr::parse(&list).unwrap().addresses.as_slice(), &addrs[..]);
//! ```
//!
//! # References
//!
//! `ws2def.h` (`SOCKET_ADDRESS`, `SOCKET_ADDRESS_LIST`, `SOCKADDR_IN`), `ws2ipdef.h`
//! (`SOCKADDR_IN6`) and the `WSPIoctl` page, `SIO_ADDRESS_LIST_QUERY`.

pub mod eligibility;
pub mod sockaddr;

use crate::wire::{le_i32, le_uint};
use core::convert::TryFrom;
use core::fmt;
use smallvec::SmallVec;
use std::net::SocketAddr;

pub use sockaddr::SockaddrError;

/// The pointer width of the caller: Windows x86 or x64.
///
/// ```
/// use san_spi_core::addr::Width;
///
/// assert_eq!(Width::W32.pointer_len(), 4);
/// assert_eq!(Width::W64.entry_len(), 16);
/// assert_eq!(Width::W64.header_len(), 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Width {
    /// 32-bit (x86) layout: 4-byte pointers.
    W32,
    /// 64-bit (x64) layout: 8-byte pointers.
    W64,
}

impl Width {
    /// Both widths.
    pub const ALL: [Width; 2] = [Width::W32, Width::W64];

    /// The width of this build's pointers.
    pub const fn host() -> Width {
        if core::mem::size_of::<usize>() == 4 {
            Width::W32
        } else {
            Width::W64
        }
    }

    /// The width with this many pointer bits (32 or 64).
    pub const fn from_bits(bits: u32) -> Option<Width> {
        match bits {
            32 => Some(Width::W32),
            64 => Some(Width::W64),
            _ => None,
        }
    }

    /// Pointer bits: 32 or 64.
    pub const fn bits(self) -> u32 {
        match self {
            Width::W32 => 32,
            Width::W64 => 64,
        }
    }

    /// `sizeof(void *)`.
    pub const fn pointer_len(self) -> usize {
        match self {
            Width::W32 => 4,
            Width::W64 => 8,
        }
    }

    /// `sizeof(SOCKET_ADDRESS)`: a pointer and an `INT`, padded to pointer alignment.
    pub const fn entry_len(self) -> usize {
        field::entry_len(self)
    }

    /// `offsetof(SOCKET_ADDRESS_LIST, Address)`: the `INT` count padded to pointer alignment.
    pub const fn header_len(self) -> usize {
        field::header_len(self)
    }

    /// Whether `len` bytes starting at caller address `base` lie below the top of this
    /// width's address space (an empty range always does).
    pub fn holds(self, base: u64, len: usize) -> bool {
        match (len as u64).checked_sub(1) {
            None => true,
            Some(last) => base
                .checked_add(last)
                .map_or(false, |end| end <= self.max_address()),
        }
    }

    /// The largest address a pointer of this width can hold.
    pub const fn max_address(self) -> u64 {
        match self {
            Width::W32 => u32::MAX as u64,
            Width::W64 => u64::MAX,
        }
    }
}

impl fmt::Display for Width {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-bit", self.bits())
    }
}

/// Byte ranges of the `SOCKET_ADDRESS_LIST` fields, per width.
#[allow(non_snake_case)]
pub mod field {
    use super::Width;
    use core::ops::Range;

    /// `iAddressCount`.
    pub const ADDRESS_COUNT: Range<usize> = 0..4;

    /// `offsetof(SOCKET_ADDRESS_LIST, Address)`.
    pub const fn header_len(width: Width) -> usize {
        width.pointer_len()
    }

    /// `sizeof(SOCKET_ADDRESS)`.
    pub const fn entry_len(width: Width) -> usize {
        2 * width.pointer_len()
    }

    /// `Address[i]`.
    pub const fn ENTRY(width: Width, i: usize) -> Range<usize> {
        let start = header_len(width) + i * entry_len(width);
        start..start + entry_len(width)
    }

    /// `Address[i].lpSockaddr`.
    pub const fn SOCKADDR_PTR(width: Width, i: usize) -> Range<usize> {
        let start = ENTRY(width, i).start;
        start..start + width.pointer_len()
    }

    /// `Address[i].iSockaddrLength`.
    pub const fn SOCKADDR_LEN(width: Width, i: usize) -> Range<usize> {
        let start = SOCKADDR_PTR(width, i).end;
        start..start + 4
    }
}

/// Why an address list cannot be emitted or parsed.
///
/// ```
/// use san_spi_core::addr::{AddrError, SocketAddressList, SocketAddressListRepr, Width};
/// use std::net::SocketAddr;
///
/// // iAddressCount = -1.
/// let bytes = [0xFF; 8];
/// assert_eq!(
///     SocketAddressList::new_checked(&bytes[..], Width::W64, 0).unwrap_err(),
///     AddrError::NegativeCount(-1)
/// );
///
/// // A 28-byte list cannot start 16 bytes below the top of a 32-bit address space.
/// let addrs: [SocketAddr; 1] = ["192.0.2.1:0".parse().unwrap()];
/// let repr = SocketAddressListRepr { addresses: &addrs[..] };
/// let mut buf = [0u8; 28];
/// assert_eq!(
///     repr.emit(&mut buf, Width::W32, 0xFFFF_FFF0),
///     Err(AddrError::BaseOutOfRange { width: Width::W32, base: 0xFFFF_FFF0, len: 28 })
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddrError {
    /// The output buffer is too small; `required` is the size to report (R-ADDR-3).
    #[error("SOCKET_ADDRESS_LIST at {width} needs {required} bytes for {count} entries, got {available}")]
    BufferTooSmall {
        /// Layout.
        width: Width,
        /// Entries in the list.
        count: usize,
        /// Bytes the list takes.
        required: usize,
        /// Bytes the caller gave.
        available: usize,
    },
    /// More addresses than an `INT` count or a `DWORD` size can describe.
    #[error("{count} addresses do not fit a SOCKET_ADDRESS_LIST (INT count, DWORD size)")]
    TooManyAddresses {
        /// Addresses given.
        count: usize,
    },
    /// The list would not fit below the top of the caller's address space.
    #[error("a {len}-byte SOCKET_ADDRESS_LIST at base {base:#x} does not fit {width} pointers")]
    BaseOutOfRange {
        /// Layout.
        width: Width,
        /// Base address given.
        base: u64,
        /// List length.
        len: usize,
    },
    /// Fewer bytes than the header and entries need.
    #[error("SOCKET_ADDRESS_LIST at {width} with {count} entries needs at least {needed} bytes, got {len}")]
    Truncated {
        /// Layout.
        width: Width,
        /// Entries claimed by `iAddressCount` (0 if the count itself is cut off).
        count: usize,
        /// Bytes needed for the header and entries.
        needed: usize,
        /// Bytes given.
        len: usize,
    },
    /// `iAddressCount` is negative.
    #[error("iAddressCount is {0}, must not be negative")]
    NegativeCount(i32),
    /// `Address[index]` points outside the buffer, or its length does not fit in it.
    #[error("Address[{index}] points to {len} bytes at {ptr:#x}, outside the buffer")]
    SockaddrOutOfBounds {
        /// Entry index.
        index: usize,
        /// `lpSockaddr`.
        ptr: u64,
        /// `iSockaddrLength`.
        len: i32,
    },
    /// `Address[index].iSockaddrLength` is impossible for its family.
    #[error("Address[{index}].iSockaddrLength is {len}; family {family} needs {needed}..={max}")]
    SockaddrLength {
        /// Entry index.
        index: usize,
        /// Family read.
        family: u16,
        /// `iSockaddrLength`.
        len: i32,
        /// Smallest length accepted.
        needed: usize,
        /// Largest length accepted (`sizeof(SOCKADDR_STORAGE)`).
        max: usize,
    },
    /// `Address[index]` is not a socket address.
    #[error("Address[{index}]: {error}")]
    Sockaddr {
        /// Entry index.
        index: usize,
        /// What is wrong with it.
        error: SockaddrError,
    },
}

/// Result alias of this module.
pub type Result<T> = core::result::Result<T, AddrError>;

/// A read-only view of a `SOCKET_ADDRESS_LIST` in a buffer that starts at address `base`.
///
/// ```
/// use san_spi_core::addr::{SocketAddressList, Width};
///
/// // One IPv4 entry, 32-bit layout, buffer at 0x100.
/// let mut bytes = vec![1, 0, 0, 0, 0x0C, 0x01, 0, 0, 16, 0, 0, 0];
/// bytes.extend_from_slice(&[2, 0, 0, 0, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
/// let list = SocketAddressList::new_checked(&bytes[..], Width::W32, 0x100).unwrap();
/// assert_eq!(list.sockaddr(0), &bytes[12..28]);
/// ```
#[derive(Debug, Clone)]
pub struct SocketAddressList<T: AsRef<[u8]>> {
    buffer: T,
    width: Width,
    base: u64,
}

impl<T: AsRef<[u8]>> SocketAddressList<T> {
    /// Wraps `buffer` without checking it; accessors may panic until
    /// [`check_len`](Self::check_len) has passed.
    pub const fn new_unchecked(buffer: T, width: Width, base: u64) -> SocketAddressList<T> {
        SocketAddressList {
            buffer,
            width,
            base,
        }
    }

    /// Wraps `buffer` and checks it with [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T, width: Width, base: u64) -> Result<SocketAddressList<T>> {
        let list = Self::new_unchecked(buffer, width, base);
        list.check_len()?;
        Ok(list)
    }

    /// Checks everything an accessor relies on:
    ///
    /// - the count fits and is not negative ([`AddrError::Truncated`], [`AddrError::NegativeCount`]);
    /// - all entries fit the buffer ([`AddrError::Truncated`]);
    /// - every `lpSockaddr`/`iSockaddrLength` pair lies inside the buffer
    ///   ([`AddrError::SockaddrOutOfBounds`]), names `AF_INET` or `AF_INET6`
    ///   ([`AddrError::Sockaddr`]) and has a length its family allows
    ///   ([`AddrError::SockaddrLength`]).
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        let width = self.width;
        if b.len() < field::ADDRESS_COUNT.end {
            return Err(AddrError::Truncated {
                width,
                count: 0,
                needed: width.header_len(),
                len: b.len(),
            });
        }
        let count = le_i32(b, field::ADDRESS_COUNT);
        if count < 0 {
            return Err(AddrError::NegativeCount(count));
        }
        let count = count as usize;
        let needed = (count as u64) * width.entry_len() as u64 + width.header_len() as u64;
        if (b.len() as u64) < needed {
            return Err(AddrError::Truncated {
                width,
                count,
                needed: usize::try_from(needed).unwrap_or(usize::MAX),
                len: b.len(),
            });
        }
        for index in 0..count {
            let ptr = le_uint(b, field::SOCKADDR_PTR(width, index));
            let len = le_i32(b, field::SOCKADDR_LEN(width, index));
            let range = self
                .sockaddr_range_of(ptr, len)
                .ok_or(AddrError::SockaddrOutOfBounds { index, ptr, len })?;
            let bytes = &b[range];
            let family = match sockaddr::parse(bytes) {
                Ok(_) => u16::from_le_bytes([bytes[0], bytes[1]]),
                Err(SockaddrError::Short {
                    family,
                    needed,
                    len: got,
                }) if family != 0 => {
                    return Err(AddrError::SockaddrLength {
                        index,
                        family,
                        len: got as i32,
                        needed,
                        max: sockaddr::SOCKADDR_STORAGE_LEN,
                    })
                }
                Err(error) => return Err(AddrError::Sockaddr { index, error }),
            };
            if bytes.len() > sockaddr::SOCKADDR_STORAGE_LEN {
                let needed = if family == sockaddr::AF_INET {
                    sockaddr::SOCKADDR_IN_LEN
                } else {
                    sockaddr::SOCKADDR_IN6_LEN
                };
                return Err(AddrError::SockaddrLength {
                    index,
                    family,
                    len,
                    needed,
                    max: sockaddr::SOCKADDR_STORAGE_LEN,
                });
            }
        }
        Ok(())
    }

    /// The buffer range `[ptr - base, ptr - base + len)`, if it lies inside the buffer.
    fn sockaddr_range_of(&self, ptr: u64, len: i32) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(ptr.checked_sub(self.base)?).ok()?;
        let len = usize::try_from(len).ok()?;
        let end = start.checked_add(len)?;
        if end <= self.buffer.as_ref().len() {
            Some(start..end)
        } else {
            None
        }
    }

    /// The layout this view reads.
    pub fn width(&self) -> Width {
        self.width
    }

    /// The caller's address of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// `iAddressCount`.
    pub fn address_count(&self) -> i32 {
        le_i32(self.buffer.as_ref(), field::ADDRESS_COUNT)
    }

    /// `Address[i].lpSockaddr`, as the caller's address.
    pub fn sockaddr_ptr(&self, i: usize) -> u64 {
        le_uint(self.buffer.as_ref(), field::SOCKADDR_PTR(self.width, i))
    }

    /// `Address[i].iSockaddrLength`.
    pub fn sockaddr_len(&self, i: usize) -> i32 {
        le_i32(self.buffer.as_ref(), field::SOCKADDR_LEN(self.width, i))
    }

    /// The bytes of `Address[i]`'s socket address.
    ///
    /// # Panics
    ///
    /// If the list has not been checked, or `i` is not below the count.
    pub fn sockaddr(&self, i: usize) -> &[u8] {
        let range = self
            .sockaddr_range_of(self.sockaddr_ptr(i), self.sockaddr_len(i))
            .expect("SocketAddressList::check_len must pass before sockaddr()");
        &self.buffer.as_ref()[range]
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// Addresses held inline up to 16; more spill to the heap.
pub type AddressVec = SmallVec<[SocketAddr; 16]>;

/// The meaning of a `SOCKET_ADDRESS_LIST`: the addresses, in order.
///
/// `A` is anything that lends a slice of addresses: emitting from a borrowed `&[SocketAddr]`
/// never allocates; [`parse`](SocketAddressListRepr::parse) yields an [`AddressVec`].
///
/// ```
/// use san_spi_core::addr::{SocketAddressListRepr, Width};
///
/// let none = SocketAddressListRepr { addresses: &[][..] };
/// assert_eq!(none.buffer_len(Width::W32), 4);
/// let mut buf = [0xFF; 4];
/// assert_eq!(none.emit(&mut buf, Width::W32, 0), Ok(4));
/// assert_eq!(buf, [0; 4]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketAddressListRepr<A = AddressVec> {
    /// The addresses, in list order.
    pub addresses: A,
}

impl SocketAddressListRepr<AddressVec> {
    /// Reads a checked list.
    ///
    /// Never panics: the view is checked again here, so an unchecked view gives an error.
    pub fn parse<T: AsRef<[u8]>>(list: &SocketAddressList<T>) -> Result<Self> {
        list.check_len()?;
        let count = list.address_count() as usize;
        let mut addresses = AddressVec::new();
        for index in 0..count {
            let a = sockaddr::parse(list.sockaddr(index))
                .map_err(|error| AddrError::Sockaddr { index, error })?;
            addresses.push(a);
        }
        Ok(SocketAddressListRepr { addresses })
    }
}

impl<A: AsRef<[SocketAddr]>> SocketAddressListRepr<A> {
    /// The exact number of bytes the list takes at `width`.
    pub fn buffer_len(&self, width: Width) -> usize {
        let addrs = self.addresses.as_ref();
        let sockaddrs: usize = addrs.iter().map(sockaddr::len).sum();
        width.header_len() + addrs.len() * width.entry_len() + sockaddrs
    }

    /// Writes the list into the first [`buffer_len`](Self::buffer_len) bytes of `buf`, whose
    /// first byte is at caller address `base`, and returns the number of bytes written.
    ///
    /// On any error nothing is written. Bytes past the list are left as they are.
    pub fn emit(&self, buf: &mut [u8], width: Width, base: u64) -> Result<usize> {
        let addrs = self.addresses.as_ref();
        let count = addrs.len();
        let required = self.buffer_len(width);
        if i32::try_from(count).is_err() || u32::try_from(required).is_err() {
            return Err(AddrError::TooManyAddresses { count });
        }
        let fits = width.holds(base, required);
        if !fits {
            return Err(AddrError::BaseOutOfRange {
                width,
                base,
                len: required,
            });
        }
        let available = buf.len();
        let buf = match buf.get_mut(..required) {
            Some(b) => b,
            None => {
                return Err(AddrError::BufferTooSmall {
                    width,
                    count,
                    required,
                    available,
                })
            }
        };
        // From here on every write is in bounds: `buf` is exactly `required` long.
        let header = width.header_len();
        buf[..header].fill(0);
        buf[field::ADDRESS_COUNT].copy_from_slice(&(count as i32).to_le_bytes());
        let mut offset = header + count * width.entry_len();
        for (i, a) in addrs.iter().enumerate() {
            let len = sockaddr::len(a);
            let entry = field::ENTRY(width, i);
            buf[entry].fill(0);
            let ptr = (base + offset as u64).to_le_bytes();
            buf[field::SOCKADDR_PTR(width, i)].copy_from_slice(&ptr[..width.pointer_len()]);
            buf[field::SOCKADDR_LEN(width, i)].copy_from_slice(&(len as i32).to_le_bytes());
            // Cannot fail: `len` bytes are left at `offset` by construction of `required`.
            let _ = sockaddr::emit(a, &mut buf[offset..offset + len]);
            offset += len;
        }
        debug_assert_eq!(offset, required);
        Ok(required)
    }
}

#[cfg(test)]
mod tests;
