//! `WSAE*` — the Winsock error codes a SAN service provider reports.
//!
//! [`WsaError`] holds every code that `WSPIoctl` may store at `*lpErrno` (R-RET-3) plus the
//! codes the overlapped-completion machinery and the data path need. Each variant is
//! documented with its C name and converts to and from its numeric value.
//!
//! ```
//! use san_spi_core::WsaError;
//!
//! assert_eq!(WsaError::Fault.code(), 10014);
//! assert_eq!(WsaError::try_from(10022), Ok(WsaError::Inval));
//! assert_eq!(WsaError::Fault.name(), "WSAEFAULT");
//! ```
//!
//! # References
//!
//! `winerror.h` / `winsock2.h` (the numeric values) and the `WSPIoctl` page, "Return value".

use core::convert::TryFrom;
use core::fmt;

macro_rules! wsa_errors {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $code:literal, $name:literal, $msg:literal;
    )*) => {
        /// `WSAE*` / `WSA_*` — an error code a SAN service provider reports to the switch.
        ///
        /// ```
        /// use san_spi_core::WsaError;
        ///
        /// let e = WsaError::NotSock;
        /// assert_eq!(i32::from(e), 10038);
        /// println!("{e}"); // WSAENOTSOCK (10038): the descriptor is not a socket …
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        #[repr(i32)]
        pub enum WsaError {
            $( $(#[$doc])* $variant = $code, )*
        }

        impl WsaError {
            /// Every code this type knows, in numeric order of declaration.
            pub const ALL: &'static [WsaError] = &[$(WsaError::$variant),*];

            /// The numeric value, as stored at `*lpErrno`.
            pub const fn code(self) -> i32 {
                self as i32
            }

            /// The C name, e.g. `"WSAEFAULT"`.
            pub const fn name(self) -> &'static str {
                match self { $( WsaError::$variant => $name, )* }
            }

            /// What the code means and what a caller can do about it.
            pub const fn message(self) -> &'static str {
                match self { $( WsaError::$variant => $msg, )* }
            }

            /// The error with this numeric value, if it is one this type knows.
            pub const fn from_code(code: i32) -> Option<WsaError> {
                match code { $( $code => Some(WsaError::$variant), )* _ => None }
            }
        }
    };
}

wsa_errors! {
    /// `WSA_OPERATION_ABORTED` — the overlapped operation was aborted because its socket closed.
    OperationAborted = 995, "WSA_OPERATION_ABORTED",
        "the overlapped operation was aborted because its socket was closed";
    /// `WSA_IO_INCOMPLETE` — the overlapped operation has not completed yet.
    IoIncomplete = 996, "WSA_IO_INCOMPLETE",
        "the overlapped operation has not completed yet; poll again later";
    /// `WSA_IO_PENDING` — an overlapped operation was started and will complete later.
    IoPending = 997, "WSA_IO_PENDING",
        "the overlapped operation was started and will be completed later";
    /// `WSAEFAULT` — a buffer or `lpcbBytesReturned` is missing, invalid or too small.
    Fault = 10014, "WSAEFAULT",
        "a buffer or lpcbBytesReturned is missing, not in valid memory, or too small";
    /// `WSAEINVAL` — unknown control code, unacceptable input, or not applicable here.
    Inval = 10022, "WSAEINVAL",
        "the control code is unknown, an input is not acceptable, or the code does not apply to this socket";
    /// `WSAEWOULDBLOCK` — nonblocking socket and the operation cannot finish now.
    WouldBlock = 10035, "WSAEWOULDBLOCK",
        "the socket is nonblocking and the operation cannot finish now; retry blocking or overlapped";
    /// `WSAENOTSOCK` — the descriptor is not a socket of this provider.
    NotSock = 10038, "WSAENOTSOCK",
        "the descriptor is not a socket of this provider (unknown or already closed)";
    /// `WSAEMSGSIZE` — a message is larger than the buffer posted to receive it.
    MsgSize = 10040, "WSAEMSGSIZE",
        "a message is larger than the receive buffer posted for it; post larger receives";
    /// `WSAENOPROTOOPT` — the operation or feature is not supported by this provider.
    NoProtoOpt = 10042, "WSAENOPROTOOPT",
        "this provider does not support the feature (for example QoS)";
    /// `WSAEOPNOTSUPP` — the operation cannot be realized as requested.
    OpNotSupp = 10045, "WSAEOPNOTSUPP",
        "the operation cannot be realized as requested (for example flow specs the provider cannot honour)";
    /// `WSAEADDRINUSE` — the address is already in use by another socket.
    AddrInUse = 10048, "WSAEADDRINUSE",
        "the address is already in use; choose another port or close the other listener";
    /// `WSAEADDRNOTAVAIL` — the address is not one of this provider's NICs.
    AddrNotAvail = 10049, "WSAEADDRNOTAVAIL",
        "the address is not served by this provider (see SIO_ADDRESS_LIST_QUERY)";
    /// `WSAENETDOWN` — the network subsystem or the transport has failed.
    NetDown = 10050, "WSAENETDOWN",
        "the network subsystem or the transport has failed; check the NIC and its driver";
    /// `WSAECONNABORTED` — the connection was aborted locally.
    ConnAborted = 10053, "WSAECONNABORTED",
        "the connection was aborted on this side";
    /// `WSAECONNRESET` — the connection was reset by the peer.
    ConnReset = 10054, "WSAECONNRESET",
        "the connection was reset by the peer (it closed or died)";
    /// `WSAENOBUFS` — no buffer space or queue entries are available.
    NoBufs = 10055, "WSAENOBUFS",
        "no buffer space or queue entries are available; retry after completions drain";
    /// `WSAEISCONN` — the socket is already connected.
    IsConn = 10056, "WSAEISCONN",
        "the socket is already connected";
    /// `WSAENOTCONN` — the socket is not connected.
    NotConn = 10057, "WSAENOTCONN",
        "the socket is not connected";
    /// `WSAETIMEDOUT` — the connection attempt (or the connection) timed out. From
    /// `WSPConnect` it tells the switch that the SAN path failed where TCP may still work:
    /// the switch falls back to TCP (R-SPI-5).
    TimedOut = 10060, "WSAETIMEDOUT",
        "the connection attempt timed out; the host may be reachable over another path";
    /// `WSAECONNREFUSED` — nobody listens at the address.
    ConnRefused = 10061, "WSAECONNREFUSED",
        "nobody listens at that address; start the listener first";
    /// `WSAEHOSTUNREACH` — no route to the host. From `WSPConnect` only when TCP is certain
    /// to fail too: the switch does not fall back (R-SPI-5).
    HostUnreach = 10065, "WSAEHOSTUNREACH",
        "no route to the host, by any path";
    /// `WSAEDISCON` — the peer closed the connection gracefully: everything it sent has been
    /// received (a stream socket's receive then reports zero bytes).
    Discon = 10101, "WSAEDISCON",
        "the peer closed the connection gracefully; everything it sent was received";
}

impl WsaError {
    /// The codes `WSPIoctl` may report at `*lpErrno` (R-RET-3). `WSAEINPROGRESS` is never one
    /// of them: the switch does not cancel blocking calls.
    pub const WSPIOCTL_CODES: &'static [WsaError] = &[
        WsaError::NetDown,
        WsaError::Fault,
        WsaError::Inval,
        WsaError::NotSock,
        WsaError::OpNotSupp,
        WsaError::NoProtoOpt,
        WsaError::IoPending,
        WsaError::WouldBlock,
    ];

    /// Whether `WSPIoctl` may report this code (R-RET-3).
    pub fn is_wspioctl_code(self) -> bool {
        Self::WSPIOCTL_CODES.contains(&self)
    }
}

impl fmt::Display for WsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.code(), self.message())
    }
}

impl std::error::Error for WsaError {}

impl From<WsaError> for i32 {
    fn from(e: WsaError) -> i32 {
        e.code()
    }
}

/// A numeric code that is not one of the [`WsaError`] values.
///
/// ```
/// use san_spi_core::error::UnknownWsaError;
/// use san_spi_core::WsaError;
///
/// assert_eq!(WsaError::try_from(10036), Err(UnknownWsaError(10036)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a Winsock error code this provider knows")]
pub struct UnknownWsaError(pub i32);

impl TryFrom<i32> for WsaError {
    type Error = UnknownWsaError;

    fn try_from(code: i32) -> Result<Self, Self::Error> {
        WsaError::from_code(code).ok_or(UnknownWsaError(code))
    }
}

impl core::str::FromStr for WsaError {
    type Err = UnknownWsaError;

    /// Parses a C name (`WSAEFAULT`, case-insensitive) or a decimal code (`10014`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(n) = s.parse::<i32>() {
            return WsaError::try_from(n);
        }
        WsaError::ALL
            .iter()
            .copied()
            .find(|e| e.name().eq_ignore_ascii_case(s))
            .ok_or(UnknownWsaError(-1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R-RET-3: the eight codes WSPIoctl may report, with their header values.
    #[test]
    fn r_ret_3_wspioctl_codes_have_header_values() {
        let expected = [
            ("WSAENETDOWN", 10050),
            ("WSAEFAULT", 10014),
            ("WSAEINVAL", 10022),
            ("WSAENOTSOCK", 10038),
            ("WSAEOPNOTSUPP", 10045),
            ("WSAENOPROTOOPT", 10042),
            ("WSA_IO_PENDING", 997),
            ("WSAEWOULDBLOCK", 10035),
        ];
        let got: Vec<(&str, i32)> = WsaError::WSPIOCTL_CODES
            .iter()
            .map(|e| (e.name(), e.code()))
            .collect();
        assert_eq!(got, expected);
        // WSAEINPROGRESS (10036) is never reported and is not even representable.
        assert_eq!(WsaError::from_code(10036), None);
        assert!(!WsaError::OperationAborted.is_wspioctl_code());
    }

    #[test]
    fn completion_codes_have_header_values() {
        for (e, n) in [
            (WsaError::OperationAborted, 995),
            (WsaError::IoIncomplete, 996),
            (WsaError::NoBufs, 10055),
            (WsaError::ConnReset, 10054),
            (WsaError::ConnAborted, 10053),
            (WsaError::NotConn, 10057),
            (WsaError::Discon, 10101),
        ] {
            assert_eq!(e.code(), n, "{}", e.name());
        }
    }

    #[test]
    fn numeric_conversion_round_trips_for_every_code() {
        for &e in WsaError::ALL {
            assert_eq!(WsaError::try_from(e.code()), Ok(e));
            assert_eq!(e.name().parse::<WsaError>(), Ok(e));
            assert_eq!(e.code().to_string().parse::<WsaError>(), Ok(e));
            let shown = e.to_string();
            assert!(shown.starts_with(e.name()) && shown.contains(&e.code().to_string()));
        }
        assert!(WsaError::try_from(0).is_err());
        assert!("WSAEBOGUS".parse::<WsaError>().is_err());
    }
}
