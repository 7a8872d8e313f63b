//! The loopback's ring reader and every record handler, fed records a hostile peer wrote
//! (valid seals, any kind, flags, keys, numbers, payload; a few raw scribbles): never a
//! panic, an overflow or a hang (san_spi_loopback::fuzzing::records).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    std::hint::black_box(san_spi_loopback::fuzzing::records(data));
});
