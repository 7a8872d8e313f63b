//! `san-spi-shim` — the Windows Sockets Direct SAN service provider DLL of san-spi.
//!
//! The Winsock switch loads this crate's `cdylib` as a "TCP on SAN" provider, calls its one
//! export `WSPStartupEx` and from then on drives it through the `WSPPROC_TABLE` it fills
//! and the SAN extension functions it hands out; the shim translates those calls between
//! the Win32 world (raw pointers, handles, upcalls into the switch) and the portable,
//! sans-IO protocol core `san-spi-core`, which does the work. The crate is built with
//! Debian 12's rustc 1.63 for `x86_64-pc-windows-gnu` (MSRV 1.63).
//!
//! So far the crate is its ABI layer only: [`abi`] declares the SPI's structs, tables
//! and function pointer types with the Windows layouts of both pointer widths, checked
//! against the mingw-w64 headers. The exported functions come later.
//!
//! # References
//!
//! `winsock2.h`, `ws2spi.h` and `ddk/ws2san.h` (mingw-w64), and the Windows Sockets Direct
//! documentation summarised in the repository's SAN SPI function notes.

pub mod abi;
