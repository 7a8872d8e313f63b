//! The loopback's handshake parsers (hello, reply, final) on any bytes: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    std::hint::black_box(san_spi_loopback::fuzzing::handshake(data));
});
