//! The Windows scalar and pointer type names, in the Windows x64 data model (LLP64) on
//! every host: `DWORD`, `LONG`, `INT` and `BOOL` are 32-bit, `SOCKET`, `HANDLE` and the
//! `*_PTR` integers pointer-sized, `WCHAR` 16-bit; and the array lengths of the structs.

use super::{
    GUID, QOS, SOCKADDR, TIMEVAL, WSABUF, WSABUFEX, WSANETWORKEVENTS, WSAOVERLAPPED,
    WSAPROTOCOL_INFOW, WSATHREADID, WSPDATA, WSPPROC_TABLE, WSPUPCALLTABLEEX,
};
use core::ffi::c_void;

c_aliases! {
    /// The aliases above, for the probe.
    pub(crate) const ALIASES;

    /// `BYTE` — `unsigned char`.
    pub type BYTE = u8;
    /// `CHAR` — `char`, signed on Windows.
    pub type CHAR = i8;
    /// `WORD` — `unsigned short`.
    pub type WORD = u16;
    /// `USHORT` — `unsigned short`.
    pub type USHORT = u16;
    /// `u_short` — `unsigned short` (Winsock).
    pub type u_short = u16;
    /// `WCHAR` — `wchar_t`, a UTF-16 code unit on Windows.
    pub type WCHAR = u16;
    /// `DWORD` — `unsigned long`, 32-bit on Windows.
    pub type DWORD = u32;
    /// `ULONG` — `unsigned long`, 32-bit on Windows.
    pub type ULONG = u32;
    /// `u_long` — `unsigned long`, 32-bit on Windows (Winsock).
    pub type u_long = u32;
    /// `UINT` — `unsigned int`.
    pub type UINT = u32;
    /// `u_int` — `unsigned int` (Winsock).
    pub type u_int = u32;
    /// `GROUP` — `unsigned int`, a socket group id.
    pub type GROUP = u32;
    /// `SERVICETYPE` — `ULONG`, a QoS service type.
    pub type SERVICETYPE = ULONG;
    /// `LONG` — `long`, 32-bit on Windows (the headers' `__LONG32`).
    pub type LONG = i32;
    /// `INT` — `int`.
    pub type INT = i32;
    /// `BOOL` — `int` (mingw-w64's `WINBOOL`); `FALSE` is 0.
    pub type BOOL = i32;
    /// `UINT_PTR` — an unsigned integer as wide as a pointer.
    pub type UINT_PTR = usize;
    /// `ULONG_PTR` — an unsigned integer as wide as a pointer.
    pub type ULONG_PTR = usize;
    /// `LONG_PTR` — a signed integer as wide as a pointer.
    pub type LONG_PTR = isize;
    /// `DWORD_PTR` — `ULONG_PTR`.
    pub type DWORD_PTR = ULONG_PTR;
    /// `SIZE_T` — `ULONG_PTR`.
    pub type SIZE_T = ULONG_PTR;
    /// `WPARAM` — `UINT_PTR`.
    pub type WPARAM = UINT_PTR;
    /// `LPARAM` — `LONG_PTR`.
    pub type LPARAM = LONG_PTR;
    /// `SOCKET` — `UINT_PTR`, a socket handle (`INVALID_SOCKET` is all ones).
    pub type SOCKET = UINT_PTR;
    /// `PVOID` — `void *`.
    pub type PVOID = *mut c_void;
    /// `LPVOID` — `void *`.
    pub type LPVOID = *mut c_void;
    /// `HANDLE` — `void *`, a kernel object handle.
    pub type HANDLE = *mut c_void;
    /// `WSAEVENT` — `HANDLE`, an event object.
    pub type WSAEVENT = HANDLE;
    /// `HWND` — a window handle (in C a pointer to the incomplete `struct HWND__`).
    pub type HWND = *mut c_void as opaque;
    /// `LPINT` — `INT *`.
    pub type LPINT = *mut INT;
    /// `LPDWORD` — `DWORD *`.
    pub type LPDWORD = *mut DWORD;
    /// `PDWORD_PTR` — `DWORD_PTR *`.
    pub type PDWORD_PTR = *mut DWORD_PTR;
    /// `LPWSTR` — `WCHAR *`, a NUL-terminated UTF-16 string.
    pub type LPWSTR = *mut WCHAR;
    /// `LPGUID` — `GUID *`.
    pub type LPGUID = *mut GUID;
    /// `LPSOCKADDR` — `struct sockaddr *`.
    pub type LPSOCKADDR = *mut SOCKADDR;
    /// `PTIMEVAL` — `struct timeval *` (Winsock's 32-bit `TIMEVAL`).
    pub type PTIMEVAL = *mut TIMEVAL;
    /// `LPQOS` — `QOS *`.
    pub type LPQOS = *mut QOS;
    /// `LPWSABUF` — `WSABUF *`.
    pub type LPWSABUF = *mut WSABUF;
    /// `LPWSABUFEX` — `WSABUFEX *` (`ddk/ws2san.h`).
    pub type LPWSABUFEX = *mut WSABUFEX;
    /// `LPWSAOVERLAPPED` — `WSAOVERLAPPED *`.
    pub type LPWSAOVERLAPPED = *mut WSAOVERLAPPED;
    /// `LPWSANETWORKEVENTS` — `WSANETWORKEVENTS *`.
    pub type LPWSANETWORKEVENTS = *mut WSANETWORKEVENTS;
    /// `LPWSAPROTOCOL_INFOW` — `WSAPROTOCOL_INFOW *`.
    pub type LPWSAPROTOCOL_INFOW = *mut WSAPROTOCOL_INFOW;
    /// `LPWSATHREADID` — `WSATHREADID *`.
    pub type LPWSATHREADID = *mut WSATHREADID;
    /// `LPWSPDATA` — `WSPDATA *`.
    pub type LPWSPDATA = *mut WSPDATA;
    /// `LPWSPPROC_TABLE` — `WSPPROC_TABLE *`.
    pub type LPWSPPROC_TABLE = *mut WSPPROC_TABLE;
    /// `LPWSPUPCALLTABLEEX` — `WSPUPCALLTABLEEX *` (`ddk/ws2san.h`).
    pub type LPWSPUPCALLTABLEEX = *mut WSPUPCALLTABLEEX;
}

c_consts! {
    /// The constants above, for the probe.
    pub(crate) const CONSTANTS;

    /// `FD_MAX_EVENTS` — the length of `WSANETWORKEVENTS::iErrorCode`.
    pub const FD_MAX_EVENTS: usize = 10;
    /// `MAX_PROTOCOL_CHAIN` — the length of `WSAPROTOCOLCHAIN::ChainEntries`.
    pub const MAX_PROTOCOL_CHAIN: usize = 7;
    /// `WSAPROTOCOL_LEN` — `WSAPROTOCOL_INFOW::szProtocol` holds this many characters and a NUL.
    pub const WSAPROTOCOL_LEN: usize = 255;
    /// `WSPDESCRIPTION_LEN` — `WSPDATA::szDescription` holds this many characters and a NUL.
    pub const WSPDESCRIPTION_LEN: usize = 255;
    /// `FD_SETSIZE` — the length of `fd_set::fd_array` (Winsock's default).
    pub const FD_SETSIZE: usize = 64;
    /// `CF_ACCEPT` — a [`LPCONDITIONPROC`](super::LPCONDITIONPROC) accepts the connection.
    pub const CF_ACCEPT: INT = 0;
    /// `CF_REJECT` — a [`LPCONDITIONPROC`](super::LPCONDITIONPROC) rejects the connection.
    pub const CF_REJECT: INT = 1;
    /// `CF_DEFER` — a [`LPCONDITIONPROC`](super::LPCONDITIONPROC) defers the decision.
    pub const CF_DEFER: INT = 2;
}
