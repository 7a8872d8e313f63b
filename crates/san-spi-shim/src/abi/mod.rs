//! The Winsock SPI types a SAN provider exchanges with the switch, as `#[repr(C)]` Rust
//! definitions under their Windows names.
//!
//! - [Type names](scalars) in the Windows x64 data model (LLP64) on every host: `DWORD`,
//!   `LONG`, `INT` and `BOOL` are 32-bit, `SOCKET`, `HANDLE`, `SIZE_T` and the `*_PTR`
//!   integers pointer-sized, `WCHAR` is `u16` — so the Linux build of this crate has the
//!   Windows layouts too.
//! - Structs: [`WSABUF`], [`WSABUFEX`], [`WSAOVERLAPPED`] (with its union),
//!   [`WSANETWORKEVENTS`], [`WSAPROTOCOLCHAIN`], [`WSAPROTOCOL_INFOW`], [`WSPDATA`],
//!   [`WSATHREADID`], [`GUID`], [`QOS`]/[`FLOWSPEC`], [`SOCKADDR`], [`TIMEVAL`], [`fd_set`],
//!   and the two tables: [`WSPPROC_TABLE`] (30 provider entry points) and
//!   [`WSPUPCALLTABLEEX`] (16 upcalls).
//! - Function pointer types, `Option<unsafe extern "system" fn(…)>` with the headers'
//!   parameter types: every slot of both tables, [`LPWSPSTARTUPEX`], the accept
//!   condition function [`LPCONDITIONPROC`], and the SAN extensions obtained through
//!   `SIO_GET_EXTENSION_FUNCTION_POINTER`: [`LPFN_WSPREGISTERMEMORY`],
//!   [`LPFN_WSPDEREGISTERMEMORY`], [`LPFN_WSPREGISTERRDMAMEMORY`],
//!   [`LPFN_WSPDEREGISTERRDMAMEMORY`], [`LPFN_WSPRDMAWRITE`], [`LPFN_WSPRDMAREAD`] and
//!   [`LPFN_WSPMEMORYREGISTRATIONCACHECALLBACK`].
//!
//! Every definition also yields its width-generic description ([`layout`]), from which
//! the x86 and x64 layouts are computed and checked: the host's against the Rust
//! compiler at compile time and in unit tests, both against the mingw-w64 headers
//! (sizes, alignments, offsets, the C type of every field and the full signature of every
//! function pointer type) by the crate's `tests/header_probe.rs`.
//!
//! Field and parameter names are the headers', hence the non-Rust casing. The unnamed
//! union and struct of `OVERLAPPED` are the fields `Anonymous` (as in `windows-sys`):
//! `ov.Anonymous.Anonymous.OffsetHigh`.
//!
//! ```
//! use san_spi_shim::abi::{WSABUF, WSPPROC_TABLE, WSPPROC_TABLE_SLOTS};
//!
//! assert_eq!(core::mem::size_of::<WSPPROC_TABLE>(), WSPPROC_TABLE_SLOTS * core::mem::size_of::<usize>());
//! // LLP64 on any host: `u_long` is 32-bit, the pointer after it is aligned.
//! assert_eq!(core::mem::size_of::<WSABUF>(), 2 * core::mem::size_of::<usize>());
//! ```

// The Windows names of types, fields and parameters are kept as they are.
#![allow(non_camel_case_types, non_snake_case, clippy::upper_case_acronyms)]

#[macro_use]
mod macros;
mod functions;
pub mod layout;
mod records;
pub mod scalars;
#[cfg(test)]
mod tests;

pub use functions::*;
pub use records::*;
pub use scalars::*;
