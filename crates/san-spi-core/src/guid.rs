//! `WSAID_*` — the GUIDs of the SAN extension functions.
//!
//! The switch asks for each extension function with `SIO_GET_EXTENSION_FUNCTION_POINTER`,
//! passing a 16-byte `GUID` in Windows memory layout: `Data1` (u32), `Data2` (u16) and
//! `Data3` (u16) little-endian, then `Data4` as 8 bytes in order (R-EXT-1). [`Uuid`] keeps the
//! RFC 4122 (big-endian) byte order; [`to_windows_bytes`] and [`from_windows_bytes`] convert.
//!
//! ```
//! use san_spi_core::guid::{from_windows_bytes, ExtensionFunction, WSAID_RDMAWRITE};
//!
//! let wire = ExtensionFunction::RdmaWrite.windows_bytes();
//! assert_eq!(&wire[..4], &[0xF9, 0x22, 0xB4, 0xC0]); // Data1 0xC0B422F9, little-endian
//! assert_eq!(from_windows_bytes(&wire), Ok(WSAID_RDMAWRITE));
//! assert_eq!(ExtensionFunction::from_windows_bytes(&wire), Ok(ExtensionFunction::RdmaWrite));
//! ```
//!
//! # References
//!
//! The `WSPIoctl` page (the GUID table) and `ddk/ws2san.h` (`WSAID_*`).

use core::fmt;
use core::str::FromStr;
pub use uuid::Uuid;

/// Length of a `GUID` in memory.
pub const GUID_LEN: usize = 16;

/// `WSAID_REGISTERMEMORY` — {C0B422F5-F58C-11d1-AD6C-00C04FA34A2D}.
pub const WSAID_REGISTERMEMORY: Uuid = Uuid::from_u128(0xC0B422F5_F58C_11D1_AD6C_00C04FA34A2D);
/// `WSAID_DEREGISTERMEMORY` — {C0B422F6-F58C-11d1-AD6C-00C04FA34A2D}.
pub const WSAID_DEREGISTERMEMORY: Uuid = Uuid::from_u128(0xC0B422F6_F58C_11D1_AD6C_00C04FA34A2D);
/// `WSAID_REGISTERRDMAMEMORY` — {C0B422F7-F58C-11d1-AD6C-00C04FA34A2D}.
pub const WSAID_REGISTERRDMAMEMORY: Uuid = Uuid::from_u128(0xC0B422F7_F58C_11D1_AD6C_00C04FA34A2D);
/// `WSAID_DEREGISTERRDMAMEMORY` — {C0B422F8-F58C-11d1-AD6C-00C04FA34A2D}.
pub const WSAID_DEREGISTERRDMAMEMORY: Uuid =
    Uuid::from_u128(0xC0B422F8_F58C_11D1_AD6C_00C04FA34A2D);
/// `WSAID_RDMAWRITE` — {C0B422F9-F58C-11d1-AD6C-00C04FA34A2D}.
pub const WSAID_RDMAWRITE: Uuid = Uuid::from_u128(0xC0B422F9_F58C_11D1_AD6C_00C04FA34A2D);
/// `WSAID_RDMAREAD` — {C0B422FA-F58C-11d1-AD6C-00C04FA34A2D}.
pub const WSAID_RDMAREAD: Uuid = Uuid::from_u128(0xC0B422FA_F58C_11D1_AD6C_00C04FA34A2D);
/// `WSAID_MEMORYREGISTRATIONCACHECALLBACK` — {E5DA4AF8-D824-48CD-A799-6337A98ED2AF}.
pub const WSAID_MEMORYREGISTRATIONCACHECALLBACK: Uuid =
    Uuid::from_u128(0xE5DA4AF8_D824_48CD_A799_6337A98ED2AF);

/// A `GUID` input that cannot be read.
///
/// ```
/// use san_spi_core::guid::{ExtensionFunction, GuidError};
///
/// assert_eq!(ExtensionFunction::from_windows_bytes(&[0; 4]), Err(GuidError::Short { len: 4 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuidError {
    /// Fewer than 16 bytes (WSAEFAULT in `WSPIoctl`, R-EXT-3).
    #[error("a GUID takes 16 bytes, got {len}")]
    Short {
        /// The length that was given.
        len: usize,
    },
    /// 16 bytes that are not one of the seven extension GUIDs (WSAEINVAL, R-EXT-3).
    #[error("{0} is not a SAN extension function GUID")]
    Unknown(Uuid),
}

/// Reads a `GUID` in Windows memory layout from the first 16 bytes of `bytes`.
///
/// Extra bytes are ignored, as the switch may pass a larger input buffer.
pub fn from_windows_bytes(bytes: &[u8]) -> Result<Uuid, GuidError> {
    match bytes.get(..GUID_LEN) {
        Some(b) => {
            let mut raw = [0u8; GUID_LEN];
            raw.copy_from_slice(b);
            Ok(Uuid::from_bytes_le(raw))
        }
        None => Err(GuidError::Short { len: bytes.len() }),
    }
}

/// The Windows memory layout of `guid` (Data1..Data3 little-endian).
pub fn to_windows_bytes(guid: &Uuid) -> [u8; GUID_LEN] {
    guid.to_bytes_le()
}

/// A SAN extension function the switch retrieves with `SIO_GET_EXTENSION_FUNCTION_POINTER`.
///
/// ```
/// use san_spi_core::guid::ExtensionFunction;
///
/// let f: ExtensionFunction = "WSPRdmaRead".parse().unwrap();
/// assert_eq!(f.guid().to_string(), "c0b422fa-f58c-11d1-ad6c-00c04fa34a2d");
/// assert_eq!(ExtensionFunction::ALL.len(), 7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ExtensionFunction {
    /// `WSPRegisterMemory`.
    RegisterMemory,
    /// `WSPDeregisterMemory`.
    DeregisterMemory,
    /// `WSPRegisterRdmaMemory`.
    RegisterRdmaMemory,
    /// `WSPDeregisterRdmaMemory`.
    DeregisterRdmaMemory,
    /// `WSPRdmaWrite`.
    RdmaWrite,
    /// `WSPRdmaRead`.
    RdmaRead,
    /// `WSPMemoryRegistrationCacheCallback`.
    MemoryRegistrationCacheCallback,
}

impl ExtensionFunction {
    /// All seven, in the order of the `WSPIoctl` page.
    pub const ALL: [ExtensionFunction; 7] = [
        ExtensionFunction::RegisterMemory,
        ExtensionFunction::DeregisterMemory,
        ExtensionFunction::RegisterRdmaMemory,
        ExtensionFunction::DeregisterRdmaMemory,
        ExtensionFunction::RdmaWrite,
        ExtensionFunction::RdmaRead,
        ExtensionFunction::MemoryRegistrationCacheCallback,
    ];

    /// The GUID that names this function.
    pub const fn guid(self) -> Uuid {
        match self {
            ExtensionFunction::RegisterMemory => WSAID_REGISTERMEMORY,
            ExtensionFunction::DeregisterMemory => WSAID_DEREGISTERMEMORY,
            ExtensionFunction::RegisterRdmaMemory => WSAID_REGISTERRDMAMEMORY,
            ExtensionFunction::DeregisterRdmaMemory => WSAID_DEREGISTERRDMAMEMORY,
            ExtensionFunction::RdmaWrite => WSAID_RDMAWRITE,
            ExtensionFunction::RdmaRead => WSAID_RDMAREAD,
            ExtensionFunction::MemoryRegistrationCacheCallback => {
                WSAID_MEMORYREGISTRATIONCACHECALLBACK
            }
        }
    }

    /// The function's name, e.g. `WSPRdmaWrite`.
    pub const fn name(self) -> &'static str {
        match self {
            ExtensionFunction::RegisterMemory => "WSPRegisterMemory",
            ExtensionFunction::DeregisterMemory => "WSPDeregisterMemory",
            ExtensionFunction::RegisterRdmaMemory => "WSPRegisterRdmaMemory",
            ExtensionFunction::DeregisterRdmaMemory => "WSPDeregisterRdmaMemory",
            ExtensionFunction::RdmaWrite => "WSPRdmaWrite",
            ExtensionFunction::RdmaRead => "WSPRdmaRead",
            ExtensionFunction::MemoryRegistrationCacheCallback => {
                "WSPMemoryRegistrationCacheCallback"
            }
        }
    }

    /// The name of the `WSAID_*` macro in `ws2san.h`.
    pub const fn guid_name(self) -> &'static str {
        match self {
            ExtensionFunction::RegisterMemory => "WSAID_REGISTERMEMORY",
            ExtensionFunction::DeregisterMemory => "WSAID_DEREGISTERMEMORY",
            ExtensionFunction::RegisterRdmaMemory => "WSAID_REGISTERRDMAMEMORY",
            ExtensionFunction::DeregisterRdmaMemory => "WSAID_DEREGISTERRDMAMEMORY",
            ExtensionFunction::RdmaWrite => "WSAID_RDMAWRITE",
            ExtensionFunction::RdmaRead => "WSAID_RDMAREAD",
            ExtensionFunction::MemoryRegistrationCacheCallback => {
                "WSAID_MEMORYREGISTRATIONCACHECALLBACK"
            }
        }
    }

    /// The GUID in Windows memory layout, as the switch passes it.
    pub fn windows_bytes(self) -> [u8; GUID_LEN] {
        to_windows_bytes(&self.guid())
    }

    /// The function named by `guid`, if it is one of the seven.
    pub fn from_guid(guid: &Uuid) -> Option<ExtensionFunction> {
        ExtensionFunction::ALL
            .iter()
            .copied()
            .find(|f| f.guid() == *guid)
    }

    /// The function named by the Windows-layout GUID at the start of `bytes` (R-EXT-1, R-EXT-3).
    pub fn from_windows_bytes(bytes: &[u8]) -> Result<ExtensionFunction, GuidError> {
        let guid = from_windows_bytes(bytes)?;
        ExtensionFunction::from_guid(&guid).ok_or(GuidError::Unknown(guid))
    }
}

impl fmt::Display for ExtensionFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of the seven extension functions.
///
/// ```
/// use san_spi_core::guid::{ExtensionFunction, UnknownExtensionFunction};
///
/// let err = "WSPFrobnicate".parse::<ExtensionFunction>().unwrap_err();
/// assert_eq!(err, UnknownExtensionFunction("WSPFrobnicate".to_owned()));
/// assert!(err.to_string().contains("is not a SAN extension function"));
/// // Names are matched case-insensitively; surrounding blanks are trimmed.
/// assert_eq!(" wsprdmaread ".parse(), Ok(ExtensionFunction::RdmaRead));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a SAN extension function; `san-spi guid list` shows the seven")]
pub struct UnknownExtensionFunction(pub String);

impl FromStr for ExtensionFunction {
    type Err = UnknownExtensionFunction;

    /// Accepts the function name (`WSPRdmaWrite`), the `WSAID_*` name, or the GUID text.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let by_name = ExtensionFunction::ALL
            .iter()
            .copied()
            .find(|f| f.name().eq_ignore_ascii_case(s) || f.guid_name().eq_ignore_ascii_case(s));
        by_name
            .or_else(|| {
                // Registry form only: the 36-character hyphenated text, bare or in one
                // pair of braces (no `{{…`, no URN, no unhyphenated form).
                let bare = match s.strip_prefix('{') {
                    Some(rest) => rest.strip_suffix('}')?,
                    None => s,
                };
                if bare.len() != 36 {
                    return None;
                }
                Uuid::parse_str(bare)
                    .ok()
                    .and_then(|g| ExtensionFunction::from_guid(&g))
            })
            .ok_or_else(|| UnknownExtensionFunction(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R-EXT-2: the seven GUIDs of the page, as text.
    #[test]
    fn r_ext_2_guids_match_the_page() {
        let page = [
            (
                "WSPRegisterMemory",
                "{C0B422F5-F58C-11d1-AD6C-00C04FA34A2D}",
            ),
            (
                "WSPDeregisterMemory",
                "{C0B422F6-F58C-11d1-AD6C-00C04FA34A2D}",
            ),
            (
                "WSPRegisterRdmaMemory",
                "{C0B422F7-F58C-11d1-AD6C-00C04FA34A2D}",
            ),
            (
                "WSPDeregisterRdmaMemory",
                "{C0B422F8-F58C-11d1-AD6C-00C04FA34A2D}",
            ),
            ("WSPRdmaWrite", "{C0B422F9-F58C-11d1-AD6C-00C04FA34A2D}"),
            ("WSPRdmaRead", "{C0B422FA-F58C-11d1-AD6C-00C04FA34A2D}"),
            (
                "WSPMemoryRegistrationCacheCallback",
                "{E5DA4AF8-D824-48CD-A799-6337A98ED2AF}",
            ),
        ];
        for (f, (name, text)) in ExtensionFunction::ALL.iter().zip(page.iter()) {
            assert_eq!(f.name(), *name);
            let want = Uuid::parse_str(text.trim_matches(|c| c == '{' || c == '}')).unwrap();
            assert_eq!(f.guid(), want, "{}", name);
            assert_eq!(text.parse::<ExtensionFunction>(), Ok(*f));
            assert_eq!(name.parse::<ExtensionFunction>(), Ok(*f));
            assert_eq!(f.guid_name().parse::<ExtensionFunction>(), Ok(*f));
        }
    }

    /// R-EXT-1: Data1..Data3 are little-endian in memory, Data4 in order.
    #[test]
    fn r_ext_1_windows_layout_is_mixed_endian() {
        let bytes = ExtensionFunction::MemoryRegistrationCacheCallback.windows_bytes();
        assert_eq!(
            bytes,
            [
                0xF8, 0x4A, 0xDA, 0xE5, // Data1 0xE5DA4AF8
                0x24, 0xD8, // Data2 0xD824
                0xCD, 0x48, // Data3 0x48CD
                0xA7, 0x99, 0x63, 0x37, 0xA9, 0x8E, 0xD2, 0xAF, // Data4
            ]
        );
        for f in ExtensionFunction::ALL {
            assert_eq!(
                ExtensionFunction::from_windows_bytes(&f.windows_bytes()),
                Ok(f)
            );
        }
    }

    /// R-EXT-3: a short GUID is a length error; an unknown one is reported as unknown.
    #[test]
    fn r_ext_3_short_and_unknown_guids_are_rejected() {
        let good = ExtensionFunction::RdmaRead.windows_bytes();
        for len in 0..GUID_LEN {
            assert_eq!(
                ExtensionFunction::from_windows_bytes(&good[..len]),
                Err(GuidError::Short { len })
            );
        }
        // The big-endian (RFC 4122) byte order is not the Windows layout.
        let wrong_order = *ExtensionFunction::RdmaRead.guid().as_bytes();
        assert!(matches!(
            ExtensionFunction::from_windows_bytes(&wrong_order),
            Err(GuidError::Unknown(_))
        ));
        // Extra input is ignored.
        let mut longer = good.to_vec();
        longer.extend_from_slice(&[0xEE; 8]);
        assert_eq!(
            ExtensionFunction::from_windows_bytes(&longer),
            Ok(ExtensionFunction::RdmaRead)
        );
    }

    /// R-EXT-3: GUID text is the registry form only, bare or in one pair of braces.
    #[test]
    fn r_ext_3_guid_text_is_the_registry_form_only() {
        let f = ExtensionFunction::RdmaWrite;
        let g = f.guid();
        for ok in [g.hyphenated().to_string(), g.braced().to_string()] {
            assert_eq!(ok.parse::<ExtensionFunction>(), Ok(f), "{ok}");
            let upper = ok.to_ascii_uppercase();
            assert_eq!(upper.parse::<ExtensionFunction>(), Ok(f), "{upper}");
        }
        for bad in [
            g.simple().to_string(),
            g.urn().to_string(),
            format!("{{{}", g.braced()),
            format!("{}}}", g.braced()),
            format!("{{{}", g.hyphenated()),
            format!("{}}}", g.hyphenated()),
            String::from("{}"),
        ] {
            assert!(bad.parse::<ExtensionFunction>().is_err(), "{bad}");
        }
    }
}
