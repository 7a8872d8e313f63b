//! The loopback's wire formats in shared memory, as byte ranges: one definition each for
//! the writer and the reader (the handshake's are in `handshake`). Readers take ranges
//! already checked against the buffer (each format's length is checked once where the bytes
//! arrive), so these accessors never see an out-of-bounds range from input.

use std::ops::Range;

/// Reads the little-endian unsigned integer of `r.len()` ≤ 8 bytes at `r`.
pub(crate) fn get(b: &[u8], r: Range<usize>) -> u64 {
    let mut v = [0u8; 8];
    v[..r.len()].copy_from_slice(&b[r]);
    u64::from_le_bytes(v)
}

/// Writes the low `r.len()` ≤ 8 bytes of `value`, little-endian, at `r`.
pub(crate) fn put(b: &mut [u8], r: Range<usize>, value: u64) {
    let n = r.len();
    b[r].copy_from_slice(&value.to_le_bytes()[..n]);
}

/// A record's header in the ring (after its 8-byte seal).
pub(crate) mod header {
    use std::ops::Range;

    pub(crate) const KIND: Range<usize> = 0..2;
    pub(crate) const FLAGS: Range<usize> = 2..4;
    /// Payload bytes.
    pub(crate) const LEN: Range<usize> = 4..8;
    pub(crate) const TOKEN: Range<usize> = 8..16;
    pub(crate) const A: Range<usize> = 16..24;
    pub(crate) const B: Range<usize> = 24..32;
    /// Bytes of a header.
    pub(crate) const BYTES: usize = 32;
}

/// An exported RDMA descriptor: `magic | access | key | address | length`. Only the key
/// (with its generation) is trusted when a descriptor comes back; address, length and
/// access are informational.
pub(crate) mod descriptor {
    use std::ops::Range;

    pub(crate) const MAGIC: Range<usize> = 0..4;
    pub(crate) const ACCESS: Range<usize> = 4..8;
    pub(crate) const KEY: Range<usize> = 8..16;
    pub(crate) const ADDR: Range<usize> = 16..24;
    pub(crate) const LEN: Range<usize> = 24..32;
    /// Bytes of a descriptor.
    pub(crate) const BYTES: usize = 32;
}

/// The payload of a single-copy request: `total u64`, then `(address u64, length u64)`
/// per piece.
pub(crate) mod direct {
    use std::ops::Range;

    pub(crate) const TOTAL: Range<usize> = 0..8;
    /// Bytes of one piece.
    pub(crate) const PIECE: usize = 16;

    /// Payload bytes of a request with `n` pieces.
    pub(crate) const fn len(n: usize) -> usize {
        TOTAL.end + PIECE * n
    }

    /// The address of piece `i`.
    pub(crate) const fn addr(i: usize) -> Range<usize> {
        len(i)..len(i) + 8
    }

    /// The length of piece `i`.
    pub(crate) const fn piece_len(i: usize) -> Range<usize> {
        len(i) + 8..len(i) + 16
    }

    /// How many pieces a payload of `bytes` holds, if it is a whole number of them.
    pub(crate) fn pieces(bytes: usize) -> Option<usize> {
        let body = bytes.checked_sub(TOTAL.end)?;
        body.is_multiple_of(PIECE).then_some(body / PIECE)
    }
}
