//! Arbitrary bytes as a `SOCKET_ADDRESS_LIST`, both widths, at a base address taken from
//! the input. Parsing must never panic; a list that parses must emit (at its base and at
//! 0) and parse back to the same addresses, and emitting into one byte less must fail
//! with the exact required size and write nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use san_spi_core::addr::{AddrError, SocketAddressList, SocketAddressListRepr, Width};

/// Input layout: 8 bytes of base address (little-endian), then the list bytes.
fn split(data: &[u8]) -> (u64, &[u8]) {
    if data.len() < 8 {
        return (0, data);
    }
    let (b, rest) = data.split_at(8);
    let mut raw = [0u8; 8];
    raw.copy_from_slice(b);
    (u64::from_le_bytes(raw), rest)
}

fn round_trip(repr: &SocketAddressListRepr, width: Width, base: u64) {
    let required = repr.buffer_len(width);
    let mut buf = vec![0xA5u8; required];
    match repr.emit(&mut buf, width, base) {
        Ok(n) => assert_eq!(n, required),
        // The emitted list is laid out compactly and may be longer than the parsed one
        // (entries sharing one sockaddr): it may not fit below the top at this base.
        Err(AddrError::BaseOutOfRange { .. }) => return,
        Err(e) => panic!("emit of a parsed list failed: {e:?}"),
    }
    let list = SocketAddressList::new_checked(&buf[..], width, base)
        .unwrap_or_else(|e| panic!("emitted list does not check: {e:?}"));
    let again = SocketAddressListRepr::parse(&list)
        .unwrap_or_else(|e| panic!("emitted list does not parse: {e:?}"));
    assert_eq!(again, *repr, "round trip changed the addresses");

    // One byte short: the exact required size, nothing written.
    if required > 0 {
        let mut short = vec![0x5Au8; required - 1];
        match repr.emit(&mut short, width, base) {
            Err(AddrError::BufferTooSmall { required: r, .. }) => assert_eq!(r, required),
            other => panic!("emit into {} of {required} bytes: {other:?}", required - 1),
        }
        assert!(
            short.iter().all(|&b| b == 0x5A),
            "emit wrote into a short buffer"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let (raw_base, bytes) = split(data);
    for width in Width::ALL {
        // The raw base, and the same truncated to the width's address space.
        for base in [raw_base, raw_base & width.max_address()] {
            let list = match SocketAddressList::new_checked(bytes, width, base) {
                Ok(list) => list,
                Err(_) => continue,
            };
            // Accessors must not panic on a checked list.
            for i in 0..list.address_count() as usize {
                let _ = (list.sockaddr_ptr(i), list.sockaddr_len(i), list.sockaddr(i));
            }
            let Ok(repr) = SocketAddressListRepr::parse(&list) else {
                continue;
            };
            round_trip(&repr, width, base);
            round_trip(&repr, width, 0);
        }
        // An unchecked view must not make parse panic either.
        let _ =
            SocketAddressListRepr::parse(&SocketAddressList::new_unchecked(bytes, width, raw_base));
    }
});
