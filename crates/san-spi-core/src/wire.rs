//! Little helpers shared by the wire modules: fixed-size reads from byte ranges.
//!
//! Callers pass ranges they have already checked against the buffer length (the views'
//! `check_len`), so these never see an out-of-bounds range from input.

use core::ops::Range;

/// The 4 bytes at `r` (which must be 4 long).
pub(crate) fn array4(b: &[u8], r: Range<usize>) -> [u8; 4] {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[r]);
    v
}

/// A little-endian `u32` at `r`.
pub(crate) fn le_u32(b: &[u8], r: Range<usize>) -> u32 {
    u32::from_le_bytes(array4(b, r))
}

/// A little-endian `i32` at `r`.
pub(crate) fn le_i32(b: &[u8], r: Range<usize>) -> i32 {
    i32::from_le_bytes(array4(b, r))
}

/// A little-endian unsigned integer of `r.len()` ≤ 8 bytes (a 32- or 64-bit pointer).
pub(crate) fn le_uint(b: &[u8], r: Range<usize>) -> u64 {
    let mut v = [0u8; 8];
    v[..r.len()].copy_from_slice(&b[r]);
    u64::from_le_bytes(v)
}
