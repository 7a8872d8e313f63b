//! The single-copy window over a peer's pieces (any addresses and lengths, any offset and
//! length): never a panic or an overflow, never more bytes than asked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let word = |i: usize| -> u64 {
        let mut v = [0u8; 8];
        let b = data.get(i * 8..(i + 1) * 8).unwrap_or(&[]);
        v[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(v)
    };
    let (from, len) = (word(0), word(1));
    let pieces: Vec<(u64, u64)> = (0..(data.len() / 16).saturating_sub(1).min(80))
        .map(|i| (word(2 + 2 * i), word(3 + 2 * i)))
        .collect();
    let (n, bytes) = san_spi_loopback::fuzzing::window(&pieces, from, len);
    assert!(n <= pieces.len());
    assert!(bytes <= len, "{bytes} bytes covered of {len} asked");
});
