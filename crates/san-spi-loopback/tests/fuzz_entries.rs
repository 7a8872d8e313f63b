//! The fuzz entries (`san_spi_loopback::fuzzing`, feature `fuzz`) run here on seeded random
//! and hand-made inputs, so that they are known to reach the code they claim to before the
//! fuzzer runs them for hours.

mod common;

use common::XorShift;
use san_spi_loopback::fuzzing;

/// A record as the entry reads it: opcode (kind), flags, token, key choice, b, payload.
fn record(kind: u8, flags: u8, key: u8, b: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![kind, flags];
    v.extend_from_slice(&1u64.to_le_bytes());
    v.push(key);
    v.extend_from_slice(&b.to_le_bytes());
    v.push((payload.len() / 2) as u8);
    v.extend_from_slice(payload);
    v
}

#[test]
fn well_formed_records_reach_the_handlers() {
    // Three whole messages (SEND, FIRST | LAST, b = length) and an RDMA write with a bad
    // offset into the read-write registration: every one consumed.
    let mut input = Vec::new();
    for _ in 0..3 {
        input.extend(record(1, 3, 0, 8, &[7u8; 8]));
    }
    let mut write = 4u64.to_le_bytes().to_vec();
    write.extend_from_slice(&[1, 2, 3, 4]);
    input.extend(record(2, 3, 1, 1 << 40, &write));
    assert_eq!(fuzzing::records(&input), 4);
}

#[test]
fn random_inputs_are_consumed_without_panicking() {
    let mut rng = XorShift(0x5EED);
    let mut consumed = 0;
    for _ in 0..300 {
        let len = (rng.next() % 512) as usize;
        let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        consumed += fuzzing::records(&input);
    }
    assert!(consumed > 0, "no random record reached a handler");
}

#[test]
fn the_other_parsers_refuse_garbage() {
    assert_eq!(fuzzing::handshake(&[0u8; 48]), [false; 3]);
    assert_eq!(fuzzing::descriptor(&[0u8; 31]), None);
    // A window over pieces whose addresses wrap ends where they wrap.
    let pieces = [(u64::MAX - 1, 16u64), (0x1000, 16)];
    assert_eq!(fuzzing::window(&pieces, 4, 20), (0, 0));
    assert_eq!(
        fuzzing::window(&[(0x1000, 16), (0x2000, 16)], 8, 16),
        (2, 16)
    );
}
