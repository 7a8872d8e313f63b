//! The loopback's RDMA descriptor parser on any bytes: a key only for exactly 32 bytes with
//! the magic, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(key) = san_spi_loopback::fuzzing::descriptor(data) {
        assert_eq!(data.len(), 32, "a key from a descriptor of the wrong length");
        std::hint::black_box(key);
    }
});
