//! Arbitrary bytes as a `QOS`, both widths, at a base address taken from the input.
//! Parsing must never panic; a `QOS` that parses must emit and parse back to the same
//! value, and emitting into one byte less must fail with the exact size, writing nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use san_spi_core::addr::Width;
use san_spi_core::qos::{Qos, QosError, QosRepr};

/// Input layout: 8 bytes of base address (little-endian), then the `QOS` bytes.
fn split(data: &[u8]) -> (u64, &[u8]) {
    if data.len() < 8 {
        return (0, data);
    }
    let (b, rest) = data.split_at(8);
    let mut raw = [0u8; 8];
    raw.copy_from_slice(b);
    (u64::from_le_bytes(raw), rest)
}

fn round_trip(repr: &QosRepr<'_>, width: Width, base: u64) {
    let required = repr.buffer_len(width);
    let mut buf = vec![0xA5u8; required];
    match repr.emit(&mut buf, width, base) {
        Ok(n) => assert_eq!(n, required),
        // The provider bytes move right after the QOS: that may not fit at this base.
        Err(QosError::BaseOutOfRange { .. }) => return,
        Err(e) => panic!("emit of a parsed QOS failed: {e:?}"),
    }
    let again = QosRepr::parse(&buf, width, base)
        .unwrap_or_else(|e| panic!("emitted QOS does not parse: {e:?}"));
    assert_eq!(again, *repr, "round trip changed the QOS");

    let mut short = vec![0x5Au8; required - 1];
    match repr.emit(&mut short, width, base) {
        Err(QosError::BufferTooSmall { required: r, .. }) => assert_eq!(r, required),
        other => panic!("emit into {} of {required} bytes: {other:?}", required - 1),
    }
    assert!(
        short.iter().all(|&b| b == 0x5A),
        "emit wrote into a short buffer"
    );
}

fuzz_target!(|data: &[u8]| {
    let (raw_base, bytes) = split(data);
    for width in Width::ALL {
        for base in [raw_base, raw_base & width.max_address()] {
            // The view's accessors must not panic once it checked.
            if let Ok(q) = Qos::new_checked(bytes, width, base) {
                let _ = (q.sending_flowspec(), q.receiving_flowspec());
                let _ = (q.provider_specific_len(), q.provider_specific_ptr());
                let _ = q.provider_specific();
            }
            let Ok(repr) = QosRepr::parse(bytes, width, base) else {
                continue;
            };
            let _ = (repr.sending.service(), repr.receiving.service());
            round_trip(&repr, width, base);
            round_trip(&repr, width, 0);
        }
    }
});
