//! `dwIoControlCode` — the 32-bit Winsock 2 control-code encoding.
//!
//! ```text
//!  31 30 29 28 27 26 ........ 16 15 ............ 0
//! | I| O| V|  T  | vendor/family |   IOCTL code    |
//! ```
//!
//! [`IoctlCode`] is a transparent wrapper over the raw `u32`. Every 32-bit value is a valid
//! `IoctlCode`: decomposing it into ([`IoctlFlags`], [`IoctlType`], family, number) and
//! building it again with [`IoctlCode::new`] gives back the same value (R-IOC-3). The
//! accessors are `const fn` and never panic.
//!
//! Vendors build their own codes at compile time, either with the typed builder or with the
//! equivalents of the C macros `_WSAIO`, `_WSAIOR`, `_WSAIOW` and `_WSAIORW`:
//!
//! ```
//! use san_spi_core::ioctl::{IoctlCode, IoctlFlags, IoctlType, IOC_VENDOR};
//!
//! const MY_VENDOR: u16 = 0x123;
//! const SIO_MY_STATS: IoctlCode = IoctlCode::wsaior(IOC_VENDOR | ((MY_VENDOR as u32) << 16), 1);
//! const SAME: IoctlCode = IoctlCode::new(IoctlFlags::OUT, IoctlType::Vendor, MY_VENDOR, 1);
//! assert_eq!(SIO_MY_STATS, SAME);
//! assert_eq!(SIO_MY_STATS.raw(), 0x5923_0001);
//! assert!(SIO_MY_STATS.is_vendor(MY_VENDOR));
//! ```
//!
//! # References
//!
//! The `WSPIoctl` page (the I/O/V/T table), `winsock2.h` (`IOC_*`, `_WSAIO*`, `SIO_*`) and
//! `winsock.h` (`FIONREAD`, `FIONBIO`, `SIOCATMARK`).

use core::fmt;
use core::str::FromStr;

/// Bit positions and masks of the fields of a control code.
pub mod field {
    /// Mask of the I, O and V flag bits (29–31).
    pub const FLAGS_MASK: u32 = 0xE000_0000;
    /// Shift of the two-bit T field.
    pub const TYPE_SHIFT: u32 = 27;
    /// Mask of the two-bit T field (bits 27–28).
    pub const TYPE_MASK: u32 = 0b11 << TYPE_SHIFT;
    /// Shift of the 11-bit vendor / address-family field.
    pub const FAMILY_SHIFT: u32 = 16;
    /// Largest value of the 11-bit vendor / address-family field.
    pub const FAMILY_MAX: u16 = 0x7FF;
    /// Mask of the vendor / address-family field (bits 16–26).
    pub const FAMILY_MASK: u32 = (FAMILY_MAX as u32) << FAMILY_SHIFT;
    /// Mask of the 16-bit code field (bits 0–15).
    pub const NUMBER_MASK: u32 = 0xFFFF;
}

/// `IOC_IN` — the input buffer is valid for this code (bit 31).
pub const IOC_IN: u32 = 0x8000_0000;
/// `IOC_OUT` — the output buffer is valid for this code (bit 30).
pub const IOC_OUT: u32 = 0x4000_0000;
/// `IOC_INOUT` — both buffers are valid.
pub const IOC_INOUT: u32 = IOC_IN | IOC_OUT;
/// `IOC_VOID` — the code takes no parameters (bit 29).
pub const IOC_VOID: u32 = 0x2000_0000;
/// `IOC_UNIX` — T = 0, a standard Unix ioctl code.
pub const IOC_UNIX: u32 = 0x0000_0000;
/// `IOC_WS2` — T = 1, a generic Winsock 2 code.
pub const IOC_WS2: u32 = 0x0800_0000;
/// `IOC_PROTOCOL` — T = 2, a code specific to an address family.
pub const IOC_PROTOCOL: u32 = 0x1000_0000;
/// `IOC_VENDOR` — T = 3, a code specific to one vendor's provider.
pub const IOC_VENDOR: u32 = 0x1800_0000;

bitflags::bitflags! {
    /// The I, O and V partitions of a control code.
    ///
    /// ```
    /// use san_spi_core::ioctl::{IoctlFlags, SIO_GET_QOS};
    ///
    /// assert_eq!(SIO_GET_QOS.flags(), IoctlFlags::IN | IoctlFlags::OUT);
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct IoctlFlags: u32 {
        /// `IOC_IN` — the input buffer is valid.
        const IN = IOC_IN;
        /// `IOC_OUT` — the output buffer is valid.
        const OUT = IOC_OUT;
        /// `IOC_VOID` — no parameters.
        const VOID = IOC_VOID;
    }
}

/// The two-bit T partition: what kind of code this is (R-IOC-2).
///
/// ```
/// use san_spi_core::ioctl::{IoctlType, FIONBIO, SIO_ADDRESS_LIST_QUERY};
///
/// assert_eq!(FIONBIO.ioctl_type(), IoctlType::Unix);
/// assert_eq!(SIO_ADDRESS_LIST_QUERY.ioctl_type(), IoctlType::Winsock2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum IoctlType {
    /// `IOC_UNIX` (T = 0) — a standard Unix code such as `FIONREAD`.
    Unix = 0,
    /// `IOC_WS2` (T = 1) — a generic Winsock 2 code.
    Winsock2 = 1,
    /// `IOC_PROTOCOL` (T = 2) — the 11-bit field names an address family.
    Protocol = 2,
    /// `IOC_VENDOR` (T = 3) — the 11-bit field names a vendor.
    Vendor = 3,
}

impl IoctlType {
    /// The type with this two-bit value (only the low two bits are used).
    pub const fn from_bits(bits: u8) -> IoctlType {
        match bits & 0b11 {
            0 => IoctlType::Unix,
            1 => IoctlType::Winsock2,
            2 => IoctlType::Protocol,
            _ => IoctlType::Vendor,
        }
    }

    /// The C constant for this type, already shifted into place (`IOC_WS2` = 0x08000000).
    pub const fn ioc(self) -> u32 {
        (self as u32) << field::TYPE_SHIFT
    }

    /// A short name for display: `Unix`, `Winsock2`, `Protocol` or `Vendor`.
    pub const fn name(self) -> &'static str {
        match self {
            IoctlType::Unix => "Unix",
            IoctlType::Winsock2 => "Winsock2",
            IoctlType::Protocol => "Protocol",
            IoctlType::Vendor => "Vendor",
        }
    }
}

/// `dwIoControlCode` — a 32-bit Winsock control code.
///
/// ```
/// use san_spi_core::ioctl::{IoctlCode, IoctlType};
///
/// let code: IoctlCode = "SIO_GET_EXTENSION_FUNCTION_POINTER".parse().unwrap();
/// assert_eq!(code.raw(), 0xC800_0006);
/// assert!(code.is_input() && code.is_output() && !code.is_void());
/// assert_eq!(code.ioctl_type(), IoctlType::Winsock2);
/// assert_eq!((code.family(), code.number()), (0, 6));
/// assert_eq!(
///     code.to_string(),
///     "0xC8000006 SIO_GET_EXTENSION_FUNCTION_POINTER (I=1 O=1 V=0 T=1 Winsock2 family=0x000 code=0x0006)"
/// );
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct IoctlCode(u32);

impl IoctlCode {
    /// Wraps a raw `dwIoControlCode`. Every value is accepted.
    pub const fn from_raw(raw: u32) -> IoctlCode {
        IoctlCode(raw)
    }

    /// The raw 32-bit value.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Builds a code from its partitions.
    ///
    /// # Panics
    ///
    /// If `family` does not fit 11 bits; in a `const` this is a compile error. Use
    /// [`IoctlCode::try_new`] for values that are not known at compile time.
    pub const fn new(flags: IoctlFlags, ty: IoctlType, family: u16, number: u16) -> IoctlCode {
        match IoctlCode::try_new(flags, ty, family, number) {
            Some(code) => code,
            None => panic!("the vendor/family field of an ioctl code has 11 bits (at most 0x7FF)"),
        }
    }

    /// Builds a code from its partitions, or `None` if `family` does not fit 11 bits.
    pub const fn try_new(
        flags: IoctlFlags,
        ty: IoctlType,
        family: u16,
        number: u16,
    ) -> Option<IoctlCode> {
        if family > field::FAMILY_MAX {
            return None;
        }
        Some(IoctlCode(
            flags.bits() | ty.ioc() | ((family as u32) << field::FAMILY_SHIFT) | number as u32,
        ))
    }

    /// `_WSAIO(x, y)` — `IOC_VOID | x | y`.
    pub const fn wsaio(x: u32, y: u32) -> IoctlCode {
        IoctlCode(IOC_VOID | x | y)
    }

    /// `_WSAIOR(x, y)` — `IOC_OUT | x | y`.
    pub const fn wsaior(x: u32, y: u32) -> IoctlCode {
        IoctlCode(IOC_OUT | x | y)
    }

    /// `_WSAIOW(x, y)` — `IOC_IN | x | y`.
    pub const fn wsaiow(x: u32, y: u32) -> IoctlCode {
        IoctlCode(IOC_IN | x | y)
    }

    /// `_WSAIORW(x, y)` — `IOC_INOUT | x | y`.
    pub const fn wsaiorw(x: u32, y: u32) -> IoctlCode {
        IoctlCode(IOC_INOUT | x | y)
    }

    /// The I, O and V partitions.
    pub const fn flags(self) -> IoctlFlags {
        IoctlFlags::from_bits_truncate(self.0)
    }

    /// I (`IOC_IN`): the input buffer is valid for this code.
    pub const fn is_input(self) -> bool {
        self.0 & IOC_IN != 0
    }

    /// O (`IOC_OUT`): the output buffer is valid for this code.
    pub const fn is_output(self) -> bool {
        self.0 & IOC_OUT != 0
    }

    /// V (`IOC_VOID`): the code takes no parameters.
    pub const fn is_void(self) -> bool {
        self.0 & IOC_VOID != 0
    }

    /// The T partition.
    pub const fn ioctl_type(self) -> IoctlType {
        IoctlType::from_bits(((self.0 & field::TYPE_MASK) >> field::TYPE_SHIFT) as u8)
    }

    /// The 11-bit vendor / address-family field (bits 16–26).
    pub const fn family(self) -> u16 {
        ((self.0 & field::FAMILY_MASK) >> field::FAMILY_SHIFT) as u16
    }

    /// The 16-bit IOCTL code field (bits 0–15).
    pub const fn number(self) -> u16 {
        (self.0 & field::NUMBER_MASK) as u16
    }

    /// Whether this is a vendor code (T = 3) carrying `vendor` in its 11-bit field (R-IOC-5).
    pub const fn is_vendor(self, vendor: u16) -> bool {
        matches!(self.ioctl_type(), IoctlType::Vendor) && self.family() == vendor
    }

    /// The entry of the known-code table for this value, if any.
    pub fn known(self) -> Option<&'static KnownCode> {
        KNOWN_CODES.iter().find(|k| k.code == self)
    }

    /// The C name of this code if it is in the known-code table.
    pub fn name(self) -> Option<&'static str> {
        self.known().map(|k| k.name)
    }

    /// The known code with this C name (case-insensitive).
    pub fn from_name(name: &str) -> Option<IoctlCode> {
        KNOWN_CODES
            .iter()
            .find(|k| k.name.eq_ignore_ascii_case(name))
            .map(|k| k.code)
    }
}

impl From<u32> for IoctlCode {
    fn from(raw: u32) -> IoctlCode {
        IoctlCode(raw)
    }
}

impl From<IoctlCode> for u32 {
    fn from(code: IoctlCode) -> u32 {
        code.0
    }
}

impl fmt::Debug for IoctlCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "IoctlCode({:#010X} {})", self.0, name),
            None => write!(f, "IoctlCode({:#010X})", self.0),
        }
    }
}

impl fmt::Display for IoctlCode {
    /// `0xC8000006 SIO_GET_EXTENSION_FUNCTION_POINTER (I=1 O=1 V=0 T=1 Winsock2 family=0x000 code=0x0006)`;
    /// the name is left out for codes not in the table.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08X} ", self.0)?;
        if let Some(name) = self.name() {
            write!(f, "{} ", name)?;
        }
        let ty = self.ioctl_type();
        write!(
            f,
            "(I={} O={} V={} T={} {} family=0x{:03X} code=0x{:04X})",
            self.is_input() as u8,
            self.is_output() as u8,
            self.is_void() as u8,
            ty as u8,
            ty.name(),
            self.family(),
            self.number()
        )
    }
}

/// Why a string is not a control code.
///
/// ```
/// use san_spi_core::ioctl::{IoctlCode, ParseIoctlError};
///
/// assert!(matches!("SIO_BOGUS".parse::<IoctlCode>(), Err(ParseIoctlError::UnknownName(_))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseIoctlError {
    /// The text is empty.
    #[error("an ioctl code is empty; give hex (0xC8000006), decimal or a name (SIO_GET_QOS)")]
    Empty,
    /// A number that does not fit 32 bits or has invalid digits.
    #[error("{0:?} is not a 32-bit number; give hex with 0x (0xC8000006) or decimal")]
    BadNumber(String),
    /// A name not in the known-code table.
    #[error("{0:?} is not a known ioctl name; `san-spi ioctl list` shows the known names")]
    UnknownName(String),
}

impl FromStr for IoctlCode {
    type Err = ParseIoctlError;

    /// Accepts hex with a `0x` prefix, decimal, or a name from the known-code table.
    fn from_str(s: &str) -> Result<IoctlCode, ParseIoctlError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseIoctlError::Empty);
        }
        let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
        if let Some(digits) = hex {
            // `from_str_radix` takes a sign; a control code has none.
            if !digits.bytes().all(|b| b.is_ascii_hexdigit() || b == b'_') {
                return Err(ParseIoctlError::BadNumber(s.to_owned()));
            }
            return u32::from_str_radix(digits.replace('_', "").as_str(), 16)
                .map(IoctlCode)
                .map_err(|_| ParseIoctlError::BadNumber(s.to_owned()));
        }
        if s.as_bytes()[0].is_ascii_digit() {
            return s
                .replace('_', "")
                .parse::<u32>()
                .map(IoctlCode)
                .map_err(|_| ParseIoctlError::BadNumber(s.to_owned()));
        }
        IoctlCode::from_name(s).ok_or_else(|| ParseIoctlError::UnknownName(s.to_owned()))
    }
}

/// An entry of the known-code table.
///
/// ```
/// use san_spi_core::ioctl::{KNOWN_CODES, SIO_ADDRESS_LIST_QUERY};
///
/// let k = SIO_ADDRESS_LIST_QUERY.known().unwrap();
/// assert!(k.san && k.always_blocking);
/// assert_eq!(KNOWN_CODES.iter().filter(|k| k.san).count(), 6);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownCode {
    /// The C name, e.g. `SIO_GET_QOS`.
    pub name: &'static str,
    /// The value.
    pub code: IoctlCode,
    /// Whether a SAN service provider must support it (R-IOC-4).
    pub san: bool,
    /// Whether the switch always issues it blocking (R-EXT-4, R-ADDR-8).
    pub always_blocking: bool,
    /// One line on what it does.
    pub summary: &'static str,
}

/// `SIO_GET_EXTENSION_FUNCTION_POINTER` — `_WSAIORW(IOC_WS2, 6)`.
pub const SIO_GET_EXTENSION_FUNCTION_POINTER: IoctlCode = IoctlCode::wsaiorw(IOC_WS2, 6);
/// `SIO_GET_QOS` — `_WSAIORW(IOC_WS2, 7)`.
pub const SIO_GET_QOS: IoctlCode = IoctlCode::wsaiorw(IOC_WS2, 7);
/// `SIO_GET_GROUP_QOS` — `_WSAIORW(IOC_WS2, 8)`.
pub const SIO_GET_GROUP_QOS: IoctlCode = IoctlCode::wsaiorw(IOC_WS2, 8);
/// `SIO_SET_QOS` — `_WSAIOW(IOC_WS2, 11)`.
pub const SIO_SET_QOS: IoctlCode = IoctlCode::wsaiow(IOC_WS2, 11);
/// `SIO_SET_GROUP_QOS` — `_WSAIOW(IOC_WS2, 12)`.
pub const SIO_SET_GROUP_QOS: IoctlCode = IoctlCode::wsaiow(IOC_WS2, 12);
/// `SIO_ROUTING_INTERFACE_QUERY` — `_WSAIORW(IOC_WS2, 20)`.
pub const SIO_ROUTING_INTERFACE_QUERY: IoctlCode = IoctlCode::wsaiorw(IOC_WS2, 20);
/// `SIO_ADDRESS_LIST_QUERY` — `_WSAIOR(IOC_WS2, 22)`. The page says I = 1; the headers
/// define it output-only, and the headers are the ABI.
pub const SIO_ADDRESS_LIST_QUERY: IoctlCode = IoctlCode::wsaior(IOC_WS2, 22);
/// `SIO_ADDRESS_LIST_CHANGE` — `_WSAIO(IOC_WS2, 23)`.
pub const SIO_ADDRESS_LIST_CHANGE: IoctlCode = IoctlCode::wsaio(IOC_WS2, 23);

/// `IOCPARM_MASK` — the parameter-size mask of the BSD-style `_IOR`/`_IOW` macros.
const IOCPARM_MASK: u32 = 0x7f;

/// `_IOR(x, y, t)` of `winsock.h` with `sizeof(t)` given as `size`.
const fn bsd_ior(group: u8, number: u8, size: u32) -> IoctlCode {
    IoctlCode(IOC_OUT | ((size & IOCPARM_MASK) << 16) | ((group as u32) << 8) | number as u32)
}

/// `_IOW(x, y, t)` of `winsock.h` with `sizeof(t)` given as `size`.
const fn bsd_iow(group: u8, number: u8, size: u32) -> IoctlCode {
    IoctlCode(IOC_IN | ((size & IOCPARM_MASK) << 16) | ((group as u32) << 8) | number as u32)
}

/// `FIONREAD` — `_IOR('f', 127, u_long)`.
pub const FIONREAD: IoctlCode = bsd_ior(b'f', 127, 4);
/// `FIONBIO` — `_IOW('f', 126, u_long)`.
pub const FIONBIO: IoctlCode = bsd_iow(b'f', 126, 4);
/// `SIOCATMARK` — `_IOR('s', 7, u_long)`.
pub const SIOCATMARK: IoctlCode = bsd_ior(b's', 7, 4);

/// The codes this crate knows by name: the six a SAN provider supports (R-IOC-4) first.
pub const KNOWN_CODES: [KnownCode; 11] = [
    KnownCode {
        name: "SIO_GET_EXTENSION_FUNCTION_POINTER",
        code: SIO_GET_EXTENSION_FUNCTION_POINTER,
        san: true,
        always_blocking: true,
        summary: "returns a SAN extension function pointer for a GUID",
    },
    KnownCode {
        name: "SIO_GET_QOS",
        code: SIO_GET_QOS,
        san: true,
        always_blocking: false,
        summary: "copies the socket's QOS structure to the output buffer",
    },
    KnownCode {
        name: "SIO_GET_GROUP_QOS",
        code: SIO_GET_GROUP_QOS,
        san: true,
        always_blocking: false,
        summary: "copies the socket group's QOS structure (reserved)",
    },
    KnownCode {
        name: "SIO_SET_QOS",
        code: SIO_SET_QOS,
        san: true,
        always_blocking: false,
        summary: "sets the socket's QOS from the input buffer",
    },
    KnownCode {
        name: "SIO_SET_GROUP_QOS",
        code: SIO_SET_GROUP_QOS,
        san: true,
        always_blocking: false,
        summary: "sets the socket group's QOS (reserved)",
    },
    KnownCode {
        name: "SIO_ADDRESS_LIST_QUERY",
        code: SIO_ADDRESS_LIST_QUERY,
        san: true,
        always_blocking: true,
        summary: "returns the SOCKET_ADDRESS_LIST of the NICs the provider serves",
    },
    KnownCode {
        name: "SIO_ADDRESS_LIST_CHANGE",
        code: SIO_ADDRESS_LIST_CHANGE,
        san: false,
        always_blocking: false,
        summary: "waits for a change of the address list (issued to TCP/IP, not to SANs)",
    },
    KnownCode {
        name: "SIO_ROUTING_INTERFACE_QUERY",
        code: SIO_ROUTING_INTERFACE_QUERY,
        san: false,
        always_blocking: false,
        summary: "returns the local interface used to reach a destination",
    },
    KnownCode {
        name: "FIONBIO",
        code: FIONBIO,
        san: false,
        always_blocking: false,
        summary: "sets or clears nonblocking mode",
    },
    KnownCode {
        name: "FIONREAD",
        code: FIONREAD,
        san: false,
        always_blocking: false,
        summary: "returns the number of bytes ready to read",
    },
    KnownCode {
        name: "SIOCATMARK",
        code: SIOCATMARK,
        san: false,
        always_blocking: false,
        summary: "tells whether all out-of-band data has been read",
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// R-IOC-4: the six supported codes carry their header values.
    #[test]
    fn r_ioc_4_supported_codes_have_header_values() {
        let san: Vec<(&str, u32)> = KNOWN_CODES
            .iter()
            .filter(|k| k.san)
            .map(|k| (k.name, k.code.raw()))
            .collect();
        assert_eq!(
            san,
            [
                ("SIO_GET_EXTENSION_FUNCTION_POINTER", 0xC800_0006),
                ("SIO_GET_QOS", 0xC800_0007),
                ("SIO_GET_GROUP_QOS", 0xC800_0008),
                ("SIO_SET_QOS", 0x8800_000B),
                ("SIO_SET_GROUP_QOS", 0x8800_000C),
                ("SIO_ADDRESS_LIST_QUERY", 0x4800_0016),
            ]
        );
    }

    #[test]
    fn other_known_codes_have_header_values() {
        assert_eq!(SIO_ADDRESS_LIST_CHANGE.raw(), 0x2800_0017);
        assert_eq!(SIO_ROUTING_INTERFACE_QUERY.raw(), 0xC800_0014);
        assert_eq!(FIONBIO.raw(), 0x8004_667E);
        assert_eq!(FIONREAD.raw(), 0x4004_667F);
        assert_eq!(SIOCATMARK.raw(), 0x4004_7307);
    }

    /// R-IOC-1: each partition sits at its documented bits.
    #[test]
    fn r_ioc_1_partitions_sit_at_documented_bits() {
        assert_eq!(IoctlFlags::IN.bits(), 1 << 31);
        assert_eq!(IoctlFlags::OUT.bits(), 1 << 30);
        assert_eq!(IoctlFlags::VOID.bits(), 1 << 29);
        let c = IoctlCode::from_raw(0b0001_1010_1010_1010_1100_0011_0101_1010);
        assert_eq!(c.ioctl_type(), IoctlType::Vendor); // bits 27-28 = 11
        assert_eq!(c.family(), 0b010_1010_1010);
        assert_eq!(c.number(), 0b1100_0011_0101_1010);
        assert_eq!(c.flags(), IoctlFlags::empty());
    }

    /// R-IOC-2: the T values and their C constants.
    #[test]
    fn r_ioc_2_type_values_match_ioc_constants() {
        assert_eq!(IoctlType::Unix.ioc(), IOC_UNIX);
        assert_eq!(IoctlType::Winsock2.ioc(), IOC_WS2);
        assert_eq!(IoctlType::Protocol.ioc(), IOC_PROTOCOL);
        assert_eq!(IoctlType::Vendor.ioc(), IOC_VENDOR);
        for t in 0..4u8 {
            assert_eq!(IoctlType::from_bits(t) as u8, t);
        }
    }

    /// R-IOC-5: vendor codes are recognised by T = 3 and the vendor number only.
    #[test]
    fn r_ioc_5_vendor_codes_match_only_their_vendor() {
        let mine = IoctlCode::new(IoctlFlags::IN, IoctlType::Vendor, 0x2A, 9);
        assert!(mine.is_vendor(0x2A));
        assert!(!mine.is_vendor(0x2B));
        let family = IoctlCode::new(IoctlFlags::IN, IoctlType::Protocol, 0x2A, 9);
        assert!(!family.is_vendor(0x2A));
    }

    #[test]
    fn family_wider_than_11_bits_is_rejected() {
        assert!(IoctlCode::try_new(IoctlFlags::IN, IoctlType::Vendor, 0x800, 0).is_none());
        assert!(IoctlCode::try_new(IoctlFlags::IN, IoctlType::Vendor, 0x7FF, 0).is_some());
    }

    #[test]
    #[should_panic(expected = "11 bits")]
    fn new_panics_on_wide_family() {
        let _ = IoctlCode::new(IoctlFlags::IN, IoctlType::Vendor, 0x800, 0);
    }

    #[test]
    fn parse_accepts_hex_decimal_and_names() {
        assert_eq!("0xC8000006".parse(), Ok(SIO_GET_EXTENSION_FUNCTION_POINTER));
        assert_eq!("0x4800_0016".parse(), Ok(SIO_ADDRESS_LIST_QUERY));
        assert_eq!("3355443206".parse(), Ok(SIO_GET_EXTENSION_FUNCTION_POINTER));
        assert_eq!("sio_get_qos".parse(), Ok(SIO_GET_QOS));
        assert_eq!("".parse::<IoctlCode>(), Err(ParseIoctlError::Empty));
        assert!(matches!(
            "0x1_0000_0000".parse::<IoctlCode>(),
            Err(ParseIoctlError::BadNumber(_))
        ));
        assert!(matches!(
            "99999999999".parse::<IoctlCode>(),
            Err(ParseIoctlError::BadNumber(_))
        ));
        assert!(matches!(
            "0xZZ".parse::<IoctlCode>(),
            Err(ParseIoctlError::BadNumber(_))
        ));
        for signed in ["0x+ff", "0x-1", "+255", "-1"] {
            assert!(
                signed.parse::<IoctlCode>().is_err(),
                "{signed} has a sign and was accepted"
            );
        }
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        for k in KNOWN_CODES.iter() {
            assert_eq!(IoctlCode::from_name(k.name), Some(k.code));
            assert_eq!(k.code.name(), Some(k.name));
            assert!(k.code.to_string().contains(k.name));
        }
    }

    proptest! {
        /// R-IOC-3: decoding then encoding every 32-bit value gives it back.
        #[test]
        fn r_ioc_3_decode_encode_round_trips(raw in any::<u32>()) {
            let c = IoctlCode::from_raw(raw);
            let back = IoctlCode::new(c.flags(), c.ioctl_type(), c.family(), c.number());
            prop_assert_eq!(back.raw(), raw);
            let shown = c.to_string();
            let prefix = format!("0x{:08X}", raw);
            prop_assert!(shown.starts_with(&prefix), "{} does not start with {}", shown, prefix);
        }

        /// R-IOC-3: encoding then decoding every field combination gives the fields back.
        #[test]
        fn r_ioc_3_encode_decode_round_trips(
            flags in 0u32..8, ty in 0u8..4, family in 0u16..=0x7FF, number in any::<u16>()
        ) {
            let flags = IoctlFlags::from_bits_truncate(flags << 29);
            let ty = IoctlType::from_bits(ty);
            let c = IoctlCode::new(flags, ty, family, number);
            prop_assert_eq!(c.flags(), flags);
            prop_assert_eq!(c.ioctl_type(), ty);
            prop_assert_eq!(c.family(), family);
            prop_assert_eq!(c.number(), number);
            prop_assert_eq!(format!("{:#x}", c.raw()).parse::<IoctlCode>(), Ok(c));
            prop_assert_eq!(c.raw().to_string().parse::<IoctlCode>(), Ok(c));
        }
    }
}
