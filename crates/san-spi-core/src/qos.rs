//! `QOS` and `FLOWSPEC` — the structures of `SIO_GET_QOS` / `SIO_SET_QOS`, for 32- and 64-bit callers.
//!
//! ```text
//! FLOWSPEC (32 bytes, 8 × ULONG): TokenRate, TokenBucketSize, PeakBandwidth, Latency,
//!                                 DelayVariation, ServiceType, MaxSduSize, MinimumPolicedSize
//! QOS: SendingFlowspec 0..32 | ReceivingFlowspec 32..64 | ProviderSpecific (WSABUF)
//!      WSABUF { ULONG len; CHAR *buf; }: x86 len 64..68, buf 68..72 → 72 bytes
//!                                        x64 len 64..68, pad, buf 72..80 → 80 bytes
//! ```
//!
//! `ProviderSpecific.buf` points to caller memory. [`QosRepr::emit`] places the provider
//! bytes directly after the `QOS` in the same buffer and points `buf` at them (NULL when
//! there are none), the way `SIO_GET_QOS` returns them; [`QosRepr::parse`] accepts a
//! provider buffer only inside the bytes it is given. The raw pointer is available from the
//! [`Qos`] view for callers that validate caller memory themselves.
//!
//! The guarantees of the wire-view pattern hold: no [`Qos`] accessor panics once
//! [`Qos::check_len`] has passed; `parse` never panics; `emit` never panics and writes
//! nothing when the buffer is too small, reporting the size required.
//!
//! ```
//! use san_spi_core::addr::Width;
//! use san_spi_core::qos::{FlowSpec, QosRepr, ServiceType};
//!
//! let qos = QosRepr {
//!     sending: FlowSpec::best_effort(1_000_000),
//!     receiving: FlowSpec::NULL,
//!     provider_specific: b"vendor",
//! };
//! assert_eq!(qos.buffer_len(Width::W64), 80 + 6);
//! let mut buf = [0u8; 86];
//! assert_eq!(qos.emit(&mut buf, Width::W64, 0x2000), Ok(86));
//! let back = QosRepr::parse(&buf, Width::W64, 0x2000).unwrap();
//! assert_eq!(back, qos);
//! assert_eq!(back.sending.service(), Some(ServiceType::BestEffort));
//! ```
//!
//! # References
//!
//! `qos.h` (`FLOWSPEC`, `SERVICETYPE_*`, `QOS_NOT_SPECIFIED`), `winsock2.h` (`QOS`, `WSABUF`)
//! and the `WSPIoctl` page, `SIO_GET_QOS` / `SIO_SET_QOS`.

use crate::addr::Width;
use crate::wire::{le_u32, le_uint};
use core::convert::TryFrom;

/// `QOS_NOT_SPECIFIED` — a flow-spec field the caller leaves open.
pub const QOS_NOT_SPECIFIED: u32 = 0xFFFF_FFFF;
/// `SERVICE_NO_TRAFFIC_CONTROL` — flag in `ServiceType`.
pub const SERVICE_NO_TRAFFIC_CONTROL: u32 = 0x8100_0000;
/// `SERVICE_NO_QOS_SIGNALING` — flag in `ServiceType`.
pub const SERVICE_NO_QOS_SIGNALING: u32 = 0x4000_0000;
/// `sizeof(FLOWSPEC)`.
pub const FLOWSPEC_LEN: usize = field::MINIMUM_POLICED_SIZE.end;

/// Byte ranges of `FLOWSPEC` and `QOS`.
#[allow(non_snake_case, missing_docs)]
pub mod field {
    use crate::addr::Width;
    use core::ops::Range;

    pub const TOKEN_RATE: Range<usize> = 0..4;
    pub const TOKEN_BUCKET_SIZE: Range<usize> = 4..8;
    pub const PEAK_BANDWIDTH: Range<usize> = 8..12;
    pub const LATENCY: Range<usize> = 12..16;
    pub const DELAY_VARIATION: Range<usize> = 16..20;
    pub const SERVICE_TYPE: Range<usize> = 20..24;
    pub const MAX_SDU_SIZE: Range<usize> = 24..28;
    pub const MINIMUM_POLICED_SIZE: Range<usize> = 28..32;

    /// `QOS.SendingFlowspec`.
    pub const SENDING_FLOWSPEC: Range<usize> = 0..32;
    /// `QOS.ReceivingFlowspec`.
    pub const RECEIVING_FLOWSPEC: Range<usize> = 32..64;
    /// `QOS.ProviderSpecific.len`.
    pub const PROVIDER_SPECIFIC_LEN: Range<usize> = 64..68;

    /// `QOS.ProviderSpecific.buf`: aligned to the pointer size.
    pub const fn PROVIDER_SPECIFIC_BUF(width: Width) -> Range<usize> {
        let p = width.pointer_len();
        let start = (PROVIDER_SPECIFIC_LEN.end + p - 1) / p * p;
        start..start + p
    }

    /// `sizeof(QOS)`: 72 on x86, 80 on x64.
    pub const fn qos_len(width: Width) -> usize {
        PROVIDER_SPECIFIC_BUF(width).end
    }
}

/// `sizeof(QOS)` at `width`.
pub const fn qos_len(width: Width) -> usize {
    field::qos_len(width)
}

/// `SERVICETYPE_*` — the service a flow spec asks for (the low bits of `ServiceType`).
///
/// ```
/// use san_spi_core::qos::{FlowSpec, ServiceType, SERVICE_NO_QOS_SIGNALING};
///
/// assert_eq!(ServiceType::from_raw(3), Some(ServiceType::Guaranteed));
/// assert_eq!(ServiceType::from_raw(7), None); // no SERVICETYPE_* has the value 7
/// // `FlowSpec::service` ignores the SERVICE_NO_* flags in the high bits.
/// let mut f = FlowSpec::best_effort(1_000);
/// f.service_type = ServiceType::ControlledLoad as u32 | SERVICE_NO_QOS_SIGNALING;
/// assert_eq!(f.service(), Some(ServiceType::ControlledLoad));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum ServiceType {
    /// `SERVICETYPE_NOTRAFFIC`.
    NoTraffic = 0,
    /// `SERVICETYPE_BESTEFFORT`.
    BestEffort = 1,
    /// `SERVICETYPE_CONTROLLEDLOAD`.
    ControlledLoad = 2,
    /// `SERVICETYPE_GUARANTEED`.
    Guaranteed = 3,
    /// `SERVICETYPE_NETWORK_UNAVAILABLE`.
    NetworkUnavailable = 4,
    /// `SERVICETYPE_GENERAL_INFORMATION`.
    GeneralInformation = 5,
    /// `SERVICETYPE_NOCHANGE`.
    NoChange = 6,
    /// `SERVICETYPE_NONCONFORMING`.
    NonConforming = 9,
    /// `SERVICETYPE_NETWORK_CONTROL`.
    NetworkControl = 10,
    /// `SERVICETYPE_QUALITATIVE`.
    Qualitative = 13,
}

impl ServiceType {
    /// All values, in numeric order.
    pub const ALL: [ServiceType; 10] = [
        ServiceType::NoTraffic,
        ServiceType::BestEffort,
        ServiceType::ControlledLoad,
        ServiceType::Guaranteed,
        ServiceType::NetworkUnavailable,
        ServiceType::GeneralInformation,
        ServiceType::NoChange,
        ServiceType::NonConforming,
        ServiceType::NetworkControl,
        ServiceType::Qualitative,
    ];

    /// The service with this value, if known.
    pub fn from_raw(raw: u32) -> Option<ServiceType> {
        ServiceType::ALL.iter().copied().find(|s| *s as u32 == raw)
    }
}

/// Why a `QOS` or `FLOWSPEC` cannot be emitted, parsed or accepted.
///
/// ```
/// use san_spi_core::qos::{FlowSpec, QosError};
///
/// let mut f = FlowSpec::best_effort(1_000);
/// f.peak_bandwidth = 500;
/// assert_eq!(f.validate(), Err(QosError::PeakBelowRate { rate: 1_000, peak: 500 }));
/// f.peak_bandwidth = 2_000;
/// f.service_type = 7;
/// assert_eq!(f.validate(), Err(QosError::ServiceType(7)));
/// assert!(QosError::ServiceType(7).to_string().starts_with("ServiceType 0x00000007"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QosError {
    /// The buffer is too small; `required` is the size to report.
    #[error("QOS at {width} needs {required} bytes, got {available}")]
    BufferTooSmall {
        /// Layout.
        width: Width,
        /// Bytes needed.
        required: usize,
        /// Bytes given.
        available: usize,
    },
    /// The structure would not fit below the top of the caller's address space.
    #[error("a {len}-byte QOS at base {base:#x} does not fit {width} pointers")]
    BaseOutOfRange {
        /// Layout.
        width: Width,
        /// Base address given.
        base: u64,
        /// Bytes the structure takes.
        len: usize,
    },
    /// The provider-specific buffer is longer than a `ULONG` can say.
    #[error("a provider-specific buffer of {0} bytes does not fit WSABUF.len")]
    ProviderSpecificTooLong(usize),
    /// `ProviderSpecific` points outside the bytes given.
    #[error("ProviderSpecific points to {len} bytes at {ptr:#x}, outside the QOS buffer")]
    ProviderSpecificOutOfBounds {
        /// `ProviderSpecific.buf`.
        ptr: u64,
        /// `ProviderSpecific.len`.
        len: u32,
    },
    /// `ServiceType` holds an unknown service or unknown flag bits.
    #[error("ServiceType {0:#010x} is not a SERVICETYPE_* value with SERVICE_NO_* flags")]
    ServiceType(u32),
    /// `PeakBandwidth` is below `TokenRate`.
    #[error("PeakBandwidth {peak} is below TokenRate {rate}")]
    PeakBelowRate {
        /// `TokenRate`.
        rate: u32,
        /// `PeakBandwidth`.
        peak: u32,
    },
    /// `MinimumPolicedSize` is above `MaxSduSize`.
    #[error("MinimumPolicedSize {min} is above MaxSduSize {max}")]
    PolicedAboveSdu {
        /// `MinimumPolicedSize`.
        min: u32,
        /// `MaxSduSize`.
        max: u32,
    },
}

/// Result alias of this module.
pub type Result<T> = core::result::Result<T, QosError>;

/// `FLOWSPEC` — one direction's traffic description.
///
/// ```
/// use san_spi_core::qos::{FlowSpec, QOS_NOT_SPECIFIED};
///
/// let f = FlowSpec::best_effort(125_000);
/// assert_eq!(f.peak_bandwidth, QOS_NOT_SPECIFIED);
/// assert!(f.validate().is_ok());
/// let mut bytes = [0u8; 32];
/// f.emit(&mut bytes);
/// assert_eq!(FlowSpec::parse(&bytes), f);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowSpec {
    /// `TokenRate` — bytes per second.
    pub token_rate: u32,
    /// `TokenBucketSize` — bytes.
    pub token_bucket_size: u32,
    /// `PeakBandwidth` — bytes per second.
    pub peak_bandwidth: u32,
    /// `Latency` — microseconds.
    pub latency: u32,
    /// `DelayVariation` — microseconds.
    pub delay_variation: u32,
    /// `ServiceType` — a `SERVICETYPE_*` value, possibly with `SERVICE_NO_*` flags.
    pub service_type: u32,
    /// `MaxSduSize` — bytes.
    pub max_sdu_size: u32,
    /// `MinimumPolicedSize` — bytes.
    pub minimum_policed_size: u32,
}

impl FlowSpec {
    /// The all-zero flow spec: what `SIO_GET_GROUP_QOS` returns for a socket in no group
    /// (the page's "NULL", R-QOS-4).
    pub const NULL: FlowSpec = FlowSpec {
        token_rate: 0,
        token_bucket_size: 0,
        peak_bandwidth: 0,
        latency: 0,
        delay_variation: 0,
        service_type: 0,
        max_sdu_size: 0,
        minimum_policed_size: 0,
    };

    /// A best-effort flow at `token_rate` bytes per second, everything else unspecified.
    pub const fn best_effort(token_rate: u32) -> FlowSpec {
        FlowSpec {
            token_rate,
            token_bucket_size: QOS_NOT_SPECIFIED,
            peak_bandwidth: QOS_NOT_SPECIFIED,
            latency: QOS_NOT_SPECIFIED,
            delay_variation: QOS_NOT_SPECIFIED,
            service_type: ServiceType::BestEffort as u32,
            max_sdu_size: QOS_NOT_SPECIFIED,
            minimum_policed_size: QOS_NOT_SPECIFIED,
        }
    }

    /// The service asked for (the low 16 bits of `ServiceType`), if the high bits hold only
    /// the `SERVICE_NO_TRAFFIC_CONTROL` and `SERVICE_NO_QOS_SIGNALING` flags.
    pub fn service(&self) -> Option<ServiceType> {
        let flags = self.service_type & 0xFFFF_0000;
        if flags & !(SERVICE_NO_TRAFFIC_CONTROL | SERVICE_NO_QOS_SIGNALING) != 0
            || (flags & SERVICE_NO_TRAFFIC_CONTROL != 0
                && flags & SERVICE_NO_TRAFFIC_CONTROL != SERVICE_NO_TRAFFIC_CONTROL)
        {
            return None;
        }
        ServiceType::from_raw(self.service_type & 0xFFFF)
    }

    /// Checks the flow spec is self-consistent: a known service with only known flags,
    /// `PeakBandwidth ≥ TokenRate` and `MinimumPolicedSize ≤ MaxSduSize` where both are given.
    pub fn validate(&self) -> Result<()> {
        if self.service().is_none() {
            return Err(QosError::ServiceType(self.service_type));
        }
        let given = |v: u32| v != QOS_NOT_SPECIFIED;
        if given(self.token_rate)
            && given(self.peak_bandwidth)
            && self.peak_bandwidth != 0
            && self.peak_bandwidth < self.token_rate
        {
            return Err(QosError::PeakBelowRate {
                rate: self.token_rate,
                peak: self.peak_bandwidth,
            });
        }
        if given(self.minimum_policed_size)
            && given(self.max_sdu_size)
            && self.max_sdu_size != 0
            && self.minimum_policed_size > self.max_sdu_size
        {
            return Err(QosError::PolicedAboveSdu {
                min: self.minimum_policed_size,
                max: self.max_sdu_size,
            });
        }
        Ok(())
    }

    /// Reads the first 32 bytes of `b`.
    ///
    /// # Panics
    ///
    /// If `b` is shorter than [`FLOWSPEC_LEN`].
    pub fn parse(b: &[u8]) -> FlowSpec {
        FlowSpec {
            token_rate: le_u32(b, field::TOKEN_RATE),
            token_bucket_size: le_u32(b, field::TOKEN_BUCKET_SIZE),
            peak_bandwidth: le_u32(b, field::PEAK_BANDWIDTH),
            latency: le_u32(b, field::LATENCY),
            delay_variation: le_u32(b, field::DELAY_VARIATION),
            service_type: le_u32(b, field::SERVICE_TYPE),
            max_sdu_size: le_u32(b, field::MAX_SDU_SIZE),
            minimum_policed_size: le_u32(b, field::MINIMUM_POLICED_SIZE),
        }
    }

    /// Writes the first 32 bytes of `b`.
    ///
    /// # Panics
    ///
    /// If `b` is shorter than [`FLOWSPEC_LEN`].
    pub fn emit(&self, b: &mut [u8]) {
        let fields = [
            (field::TOKEN_RATE, self.token_rate),
            (field::TOKEN_BUCKET_SIZE, self.token_bucket_size),
            (field::PEAK_BANDWIDTH, self.peak_bandwidth),
            (field::LATENCY, self.latency),
            (field::DELAY_VARIATION, self.delay_variation),
            (field::SERVICE_TYPE, self.service_type),
            (field::MAX_SDU_SIZE, self.max_sdu_size),
            (field::MINIMUM_POLICED_SIZE, self.minimum_policed_size),
        ];
        for (r, v) in fields {
            b[r].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// A read-only view of a `QOS` in a buffer that starts at caller address `base`.
///
/// ```
/// use san_spi_core::addr::Width;
/// use san_spi_core::qos::Qos;
///
/// let bytes = [0u8; 72];
/// let q = Qos::new_checked(&bytes[..], Width::W32, 0).unwrap();
/// assert_eq!(q.provider_specific_len(), 0);
/// assert!(Qos::new_checked(&bytes[..71], Width::W32, 0).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Qos<T: AsRef<[u8]>> {
    buffer: T,
    width: Width,
    base: u64,
}

impl<T: AsRef<[u8]>> Qos<T> {
    /// Wraps `buffer` without checking; accessors may panic until `check_len` passes.
    pub const fn new_unchecked(buffer: T, width: Width, base: u64) -> Qos<T> {
        Qos {
            buffer,
            width,
            base,
        }
    }

    /// Wraps `buffer` and checks that a whole `QOS` fits ([`QosError::BufferTooSmall`]).
    pub fn new_checked(buffer: T, width: Width, base: u64) -> Result<Qos<T>> {
        let q = Qos::new_unchecked(buffer, width, base);
        q.check_len()?;
        Ok(q)
    }

    /// Checks that the buffer holds a whole `QOS` at this width. The provider-specific
    /// pointer is not checked here: see [`provider_specific`](Self::provider_specific).
    pub fn check_len(&self) -> Result<()> {
        let available = self.buffer.as_ref().len();
        let required = qos_len(self.width);
        if available < required {
            return Err(QosError::BufferTooSmall {
                width: self.width,
                required,
                available,
            });
        }
        Ok(())
    }

    /// `SendingFlowspec`.
    pub fn sending_flowspec(&self) -> FlowSpec {
        FlowSpec::parse(&self.buffer.as_ref()[field::SENDING_FLOWSPEC])
    }

    /// `ReceivingFlowspec`.
    pub fn receiving_flowspec(&self) -> FlowSpec {
        FlowSpec::parse(&self.buffer.as_ref()[field::RECEIVING_FLOWSPEC])
    }

    /// `ProviderSpecific.len`.
    pub fn provider_specific_len(&self) -> u32 {
        le_u32(self.buffer.as_ref(), field::PROVIDER_SPECIFIC_LEN)
    }

    /// `ProviderSpecific.buf`, as the caller's address.
    pub fn provider_specific_ptr(&self) -> u64 {
        le_uint(
            self.buffer.as_ref(),
            field::PROVIDER_SPECIFIC_BUF(self.width),
        )
    }

    /// The provider-specific bytes, if `ProviderSpecific` is empty or lies inside the buffer.
    pub fn provider_specific(&self) -> Result<&[u8]> {
        let len = self.provider_specific_len();
        if len == 0 {
            return Ok(&[]);
        }
        let ptr = self.provider_specific_ptr();
        let b = self.buffer.as_ref();
        let range = ptr
            .checked_sub(self.base)
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|s| s.checked_add(len as usize).map(|e| s..e))
            .filter(|r| r.end <= b.len());
        match range {
            Some(r) => Ok(&b[r]),
            None => Err(QosError::ProviderSpecificOutOfBounds { ptr, len }),
        }
    }
}

/// The meaning of a `QOS`: two flow specs and the provider-specific bytes.
///
/// ```
/// use san_spi_core::addr::Width;
/// use san_spi_core::qos::{FlowSpec, QosError, QosRepr};
///
/// let q = QosRepr { sending: FlowSpec::NULL, receiving: FlowSpec::NULL, provider_specific: &[] };
/// let mut short = [0u8; 79];
/// assert_eq!(
///     q.emit(&mut short, Width::W64, 0),
///     Err(QosError::BufferTooSmall { width: Width::W64, required: 80, available: 79 })
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QosRepr<'a> {
    /// `SendingFlowspec`.
    pub sending: FlowSpec,
    /// `ReceivingFlowspec`.
    pub receiving: FlowSpec,
    /// The bytes `ProviderSpecific` describes.
    pub provider_specific: &'a [u8],
}

impl<'a> QosRepr<'a> {
    /// Reads and validates a `QOS` at the start of `buffer` (caller address `base`): the
    /// structure must fit, both flow specs must [`validate`](FlowSpec::validate), and a
    /// non-empty `ProviderSpecific` must lie inside `buffer`.
    pub fn parse(buffer: &'a [u8], width: Width, base: u64) -> Result<QosRepr<'a>> {
        let q = Qos::new_checked(buffer, width, base)?;
        let sending = q.sending_flowspec();
        let receiving = q.receiving_flowspec();
        sending.validate()?;
        receiving.validate()?;
        let provider_specific = match q.provider_specific() {
            Ok(_) => {
                // Re-derive the slice from `buffer` so that it carries lifetime 'a.
                let len = q.provider_specific_len() as usize;
                if len == 0 {
                    &[][..]
                } else {
                    let start = (q.provider_specific_ptr() - base) as usize;
                    &buffer[start..start + len]
                }
            }
            Err(e) => return Err(e),
        };
        Ok(QosRepr {
            sending,
            receiving,
            provider_specific,
        })
    }

    /// Bytes the `QOS` and its provider-specific bytes take.
    pub fn buffer_len(&self, width: Width) -> usize {
        qos_len(width) + self.provider_specific.len()
    }

    /// Writes the `QOS`, then the provider-specific bytes right after it, into `buf` (caller
    /// address `base`); returns the bytes written. On error nothing is written.
    pub fn emit(&self, buf: &mut [u8], width: Width, base: u64) -> Result<usize> {
        let extra = self.provider_specific.len();
        if u32::try_from(extra).is_err() {
            return Err(QosError::ProviderSpecificTooLong(extra));
        }
        let required = self.buffer_len(width);
        let fits = width.holds(base, required);
        if !fits {
            return Err(QosError::BaseOutOfRange {
                width,
                base,
                len: required,
            });
        }
        let available = buf.len();
        let buf = match buf.get_mut(..required) {
            Some(b) => b,
            None => {
                return Err(QosError::BufferTooSmall {
                    width,
                    required,
                    available,
                })
            }
        };
        let head = qos_len(width);
        buf[..head].fill(0);
        self.sending.emit(&mut buf[field::SENDING_FLOWSPEC]);
        self.receiving.emit(&mut buf[field::RECEIVING_FLOWSPEC]);
        buf[field::PROVIDER_SPECIFIC_LEN].copy_from_slice(&(extra as u32).to_le_bytes());
        let ptr = if extra == 0 { 0 } else { base + head as u64 };
        buf[field::PROVIDER_SPECIFIC_BUF(width)]
            .copy_from_slice(&ptr.to_le_bytes()[..width.pointer_len()]);
        buf[head..].copy_from_slice(self.provider_specific);
        Ok(required)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A `QOS` with guaranteed sending, best-effort receiving and 3 provider bytes at
    /// 0x1000, 64-bit layout, built by hand.
    fn qos_bytes_w64() -> Vec<u8> {
        let mut v = Vec::new();
        for x in [1000u32, 2000, 3000, 10, 20, 3, 1500, 64] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        for x in [
            500u32,
            u32::MAX,
            u32::MAX,
            u32::MAX,
            u32::MAX,
            1,
            u32::MAX,
            u32::MAX,
        ] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(&0x1050u64.to_le_bytes());
        v.extend_from_slice(b"abc");
        v
    }

    fn repr() -> QosRepr<'static> {
        QosRepr {
            sending: FlowSpec {
                token_rate: 1000,
                token_bucket_size: 2000,
                peak_bandwidth: 3000,
                latency: 10,
                delay_variation: 20,
                service_type: ServiceType::Guaranteed as u32,
                max_sdu_size: 1500,
                minimum_policed_size: 64,
            },
            receiving: FlowSpec::best_effort(500),
            provider_specific: b"abc",
        }
    }

    /// `QOS` and `FLOWSPEC` sizes and offsets at both widths.
    #[test]
    fn qos_layouts() {
        assert_eq!(FLOWSPEC_LEN, 32);
        assert_eq!(qos_len(Width::W32), 72);
        assert_eq!(qos_len(Width::W64), 80);
        assert_eq!(field::PROVIDER_SPECIFIC_BUF(Width::W32), 68..72);
        assert_eq!(field::PROVIDER_SPECIFIC_BUF(Width::W64), 72..80);
    }

    #[test]
    fn test_parse_and_emit_w64() {
        let bytes = qos_bytes_w64();
        assert_eq!(QosRepr::parse(&bytes, Width::W64, 0x1000), Ok(repr()));
        let mut out = vec![0xEE; bytes.len() + 2];
        assert_eq!(repr().emit(&mut out, Width::W64, 0x1000), Ok(bytes.len()));
        assert_eq!(&out[..bytes.len()], &bytes[..]);
        assert_eq!(&out[bytes.len()..], &[0xEE, 0xEE]);
    }

    #[test]
    fn test_emit_w32_places_pointer_at_68() {
        let mut out = vec![0u8; 75];
        assert_eq!(repr().emit(&mut out, Width::W32, 0x10), Ok(75));
        assert_eq!(&out[64..72], &[3, 0, 0, 0, 0x10 + 72, 0, 0, 0]);
        assert_eq!(&out[72..], b"abc");
    }

    /// R-QOS-2: a too-small output buffer gets the size required, nothing written.
    #[test]
    fn r_qos_2_short_buffer_reports_required_size() {
        for width in Width::ALL {
            let need = repr().buffer_len(width);
            for len in 0..need {
                let mut out = vec![0x5Au8; len];
                assert_eq!(
                    repr().emit(&mut out, width, 0),
                    Err(QosError::BufferTooSmall {
                        width,
                        required: need,
                        available: len
                    })
                );
                assert!(out.iter().all(|&b| b == 0x5A));
            }
        }
    }

    #[test]
    fn provider_specific_outside_is_rejected() {
        let mut bytes = qos_bytes_w64();
        bytes[72..80].copy_from_slice(&0x9999u64.to_le_bytes());
        assert_eq!(
            QosRepr::parse(&bytes, Width::W64, 0x1000),
            Err(QosError::ProviderSpecificOutOfBounds {
                ptr: 0x9999,
                len: 3
            })
        );
        bytes[64..68].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            QosRepr::parse(&bytes, Width::W64, 0x1000)
                .unwrap()
                .provider_specific,
            b""
        );
    }

    #[test]
    fn invalid_flowspecs_are_rejected() {
        let mut f = FlowSpec::best_effort(10);
        f.service_type = 7;
        assert_eq!(f.validate(), Err(QosError::ServiceType(7)));
        f.service_type = 1 | SERVICE_NO_QOS_SIGNALING;
        assert_eq!(f.validate(), Ok(()));
        f.service_type = 1 | 0x0100_0000;
        assert!(f.validate().is_err());
        let mut g = FlowSpec::best_effort(10);
        g.peak_bandwidth = 5;
        assert_eq!(
            g.validate(),
            Err(QosError::PeakBelowRate { rate: 10, peak: 5 })
        );
        let mut h = FlowSpec::best_effort(10);
        h.max_sdu_size = 100;
        h.minimum_policed_size = 200;
        assert!(h.validate().is_err());
        assert_eq!(FlowSpec::NULL.validate(), Ok(()));
    }

    fn arb_flowspec() -> impl Strategy<Value = FlowSpec> {
        (
            any::<[u32; 5]>(),
            proptest::sample::select(ServiceType::ALL.to_vec()),
            any::<[u32; 2]>(),
        )
            .prop_map(|(a, s, b)| FlowSpec {
                token_rate: a[0],
                token_bucket_size: a[1],
                peak_bandwidth: QOS_NOT_SPECIFIED,
                latency: a[3],
                delay_variation: a[4],
                service_type: s as u32,
                max_sdu_size: b[0],
                minimum_policed_size: b[1].min(b[0]),
            })
    }

    proptest! {
        /// QoS round trips at both widths and any base that fits.
        #[test]
        fn qos_round_trip(
            s in arb_flowspec(),
            r in arb_flowspec(),
            extra in proptest::collection::vec(any::<u8>(), 0..40),
            base in 0u64..0xFFFF_0000,
            w64 in any::<bool>(),
        ) {
            let width = if w64 { Width::W64 } else { Width::W32 };
            let q = QosRepr { sending: s, receiving: r, provider_specific: &extra };
            let mut buf = vec![0u8; q.buffer_len(width)];
            prop_assert_eq!(q.emit(&mut buf, width, base), Ok(buf.len()));
            prop_assert_eq!(QosRepr::parse(&buf, width, base), Ok(q));
        }

        /// Parsing arbitrary bytes never panics.
        #[test]
        fn qos_parse_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
            base in any::<u64>(),
            w64 in any::<bool>(),
        ) {
            let width = if w64 { Width::W64 } else { Width::W32 };
            let _ = QosRepr::parse(&bytes, width, base);
        }
    }
}
