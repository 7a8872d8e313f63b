use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

const BASE: u64 = 0x0040_1000;

fn fixture_addrs() -> [SocketAddr; 2] {
    [
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 0)),
        SocketAddr::V6(SocketAddrV6::new(
            "fe80::211:22ff:fe33:4455".parse().unwrap(),
            0,
            0,
            7,
        )),
    ]
}

/// 64-bit list at `BASE` with one IPv4 and one IPv6 address, built by hand from the layout.
static LIST_BYTES_W64: [u8; 84] = [
    2, 0, 0, 0, 0, 0, 0, 0, // iAddressCount = 2, padding
    0x28, 0x10, 0x40, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, // Address[0]: BASE+40, 16
    0x38, 0x10, 0x40, 0, 0, 0, 0, 0, 28, 0, 0, 0, 0, 0, 0, 0, // Address[1]: BASE+56, 28
    2, 0, 0, 0, 192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, // SOCKADDR_IN 192.0.2.1
    23, 0, 0, 0, 0, 0, 0, 0, // SOCKADDR_IN6 family, port, flowinfo
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55, //
    7, 0, 0, 0, // scope id
];

/// The same list in the 32-bit layout.
static LIST_BYTES_W32: [u8; 64] = [
    2, 0, 0, 0, // iAddressCount = 2
    0x14, 0x10, 0x40, 0, 16, 0, 0, 0, // Address[0]: BASE+20, 16
    0x24, 0x10, 0x40, 0, 28, 0, 0, 0, // Address[1]: BASE+36, 28
    2, 0, 0, 0, 192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, // SOCKADDR_IN
    23, 0, 0, 0, 0, 0, 0, 0, //
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55, //
    7, 0, 0, 0,
];

fn fixture(width: Width) -> &'static [u8] {
    match width {
        Width::W32 => &LIST_BYTES_W32,
        Width::W64 => &LIST_BYTES_W64,
    }
}

/// The layout numbers the core relies on, per width (the header probe compares them with
/// the mingw-w64 headers).
#[test]
fn addr_layouts() {
    assert_eq!((Width::W32.header_len(), Width::W32.entry_len()), (4, 8));
    assert_eq!((Width::W64.header_len(), Width::W64.entry_len()), (8, 16));
    assert_eq!(field::SOCKADDR_LEN(Width::W64, 0), 16..20);
    assert_eq!(field::SOCKADDR_LEN(Width::W32, 1), 16..20);
    assert_eq!(sockaddr::SOCKADDR_IN_LEN, 16);
    assert_eq!(sockaddr::SOCKADDR_IN6_LEN, 28);
}

#[test]
fn test_deconstruct() {
    for width in Width::ALL {
        let list = SocketAddressList::new_checked(fixture(width), width, BASE).unwrap();
        assert_eq!(list.address_count(), 2);
        let first = (width.header_len() + 2 * width.entry_len()) as u64;
        assert_eq!(list.sockaddr_ptr(0), BASE + first);
        assert_eq!(list.sockaddr_len(0), 16);
        assert_eq!(list.sockaddr_ptr(1), BASE + first + 16);
        assert_eq!(list.sockaddr_len(1), 28);
        assert_eq!(list.sockaddr(0)[..2], [2, 0]);
        assert_eq!(list.sockaddr(1)[..2], [23, 0]);
    }
}

#[test]
fn test_construct() {
    for width in Width::ALL {
        let addrs = fixture_addrs();
        let repr = SocketAddressListRepr {
            addresses: &addrs[..],
        };
        let mut buf = vec![0xA5; fixture(width).len()];
        assert_eq!(repr.emit(&mut buf, width, BASE), Ok(buf.len()));
        assert_eq!(&buf[..], fixture(width), "{}", width);
    }
}

#[test]
fn test_parse() {
    for width in Width::ALL {
        let list = SocketAddressList::new_checked(fixture(width), width, BASE).unwrap();
        let repr = SocketAddressListRepr::parse(&list).unwrap();
        assert_eq!(repr.addresses.as_slice(), &fixture_addrs()[..]);
    }
}

#[test]
fn test_emit() {
    for width in Width::ALL {
        let repr = SocketAddressListRepr {
            addresses: AddressVec::from_slice(&fixture_addrs()),
        };
        assert_eq!(repr.buffer_len(width), fixture(width).len());
        let mut buf = vec![0u8; repr.buffer_len(width) + 3];
        let n = repr.emit(&mut buf, width, BASE).unwrap();
        assert_eq!(&buf[..n], fixture(width));
        assert_eq!(&buf[n..], &[0, 0, 0]);
    }
}

/// R-ADDR-1: the size is the header, the entries and the socket addresses, nothing more.
#[test]
fn r_addr_1_size_has_no_slack() {
    let v4 = SocketAddr::from(([10, 0, 0, 1], 0));
    let v6 = SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 0));
    for (n4, n6) in [(0usize, 0usize), (1, 0), (0, 1), (3, 5)] {
        let mut addrs = vec![v4; n4];
        addrs.extend(vec![v6; n6]);
        let repr = SocketAddressListRepr {
            addresses: &addrs[..],
        };
        let n = n4 + n6;
        assert_eq!(repr.buffer_len(Width::W64), 8 + 16 * n + 16 * n4 + 28 * n6);
        assert_eq!(repr.buffer_len(Width::W32), 4 + 8 * n + 16 * n4 + 28 * n6);
    }
}

/// R-ADDR-2, R-ADDR-3: into every buffer length 0..=required+8 at every base alignment
/// 0..8, a short buffer gets the exact required size and is left untouched; a large enough
/// one gets identical bytes, with the pointers following the base.
#[test]
fn r_addr_2_r_addr_3_emit_matrix_lengths_and_alignments() {
    let addrs = fixture_addrs();
    let repr = SocketAddressListRepr {
        addresses: &addrs[..],
    };
    for width in Width::ALL {
        let required = repr.buffer_len(width);
        let mut reference = vec![0u8; required];
        repr.emit(&mut reference, width, BASE).unwrap();
        for align in 0..8usize {
            let base = BASE + align as u64;
            for len in 0..=required + 8 {
                let mut storage = vec![0xCCu8; len + align + 8];
                let buf = &mut storage[align..align + len];
                match repr.emit(buf, width, base) {
                    Err(AddrError::BufferTooSmall {
                        required: r,
                        available,
                        ..
                    }) => {
                        assert!(len < required);
                        assert_eq!((r, available), (required, len));
                        assert!(storage.iter().all(|&b| b == 0xCC), "written when short");
                    }
                    Ok(n) => {
                        assert!(len >= required);
                        assert_eq!(n, required);
                        let list = SocketAddressList::new_checked(&buf[..n], width, base).unwrap();
                        assert_eq!(
                            SocketAddressListRepr::parse(&list)
                                .unwrap()
                                .addresses
                                .as_slice(),
                            &addrs[..]
                        );
                        // Same bytes as the reference except the pointers, which move with base.
                        for i in 0..addrs.len() {
                            assert_eq!(list.sockaddr_ptr(i) - base, {
                                let r =
                                    SocketAddressList::new_unchecked(&reference[..], width, BASE);
                                r.sockaddr_ptr(i) - BASE
                            });
                        }
                        let body = width.header_len() + addrs.len() * width.entry_len();
                        assert_eq!(&buf[body..n], &reference[body..]);
                        assert!(storage[..align].iter().all(|&b| b == 0xCC));
                        assert!(storage[align + n..].iter().all(|&b| b == 0xCC));
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
        }
    }
}

/// The list must fit below 4 GiB for 32-bit callers.
#[test]
fn base_beyond_pointer_range_is_rejected() {
    let addrs = fixture_addrs();
    let repr = SocketAddressListRepr {
        addresses: &addrs[..],
    };
    let len = repr.buffer_len(Width::W32) as u64;
    let mut buf = [0u8; 128];
    assert_eq!(
        repr.emit(&mut buf, Width::W32, (1u64 << 32) - len + 1),
        Err(AddrError::BaseOutOfRange {
            width: Width::W32,
            base: (1u64 << 32) - len + 1,
            len: len as usize
        })
    );
    assert!(buf.iter().all(|&b| b == 0));
    assert!(repr.emit(&mut buf, Width::W32, (1u64 << 32) - len).is_ok());
    assert!(repr.emit(&mut buf, Width::W64, u64::MAX - 10).is_err());
}

#[test]
fn error_message_names_width_sizes_and_count() {
    let addrs = fixture_addrs();
    let repr = SocketAddressListRepr {
        addresses: &addrs[..],
    };
    let e = repr.emit(&mut [0u8; 24], Width::W64, 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SOCKET_ADDRESS_LIST at 64-bit needs 84 bytes for 2 entries, got 24"
    );
}

#[test]
fn test_impossible_count() {
    for width in Width::ALL {
        let mut bytes = fixture(width).to_vec();
        bytes[..4].copy_from_slice(&(-1i32).to_le_bytes());
        assert_eq!(
            SocketAddressList::new_checked(&bytes[..], width, BASE).unwrap_err(),
            AddrError::NegativeCount(-1)
        );
        bytes[..4].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(matches!(
            SocketAddressList::new_checked(&bytes[..], width, BASE),
            Err(AddrError::Truncated { .. })
        ));
        assert!(matches!(
            SocketAddressList::new_checked(&bytes[..3], width, BASE),
            Err(AddrError::Truncated { count: 0, .. })
        ));
    }
}

#[test]
fn test_sockaddr_outside_buffer() {
    for width in Width::ALL {
        let bytes = fixture(width);
        // Base moved up: every pointer now falls before the buffer.
        assert!(matches!(
            SocketAddressList::new_checked(bytes, width, BASE + 0x1000),
            Err(AddrError::SockaddrOutOfBounds { index: 0, .. })
        ));
        // The last sockaddr claims one byte more than the buffer has.
        let mut longer = bytes.to_vec();
        longer[field::SOCKADDR_LEN(width, 1)].copy_from_slice(&29i32.to_le_bytes());
        assert!(matches!(
            SocketAddressList::new_checked(&longer[..], width, BASE),
            Err(AddrError::SockaddrOutOfBounds { index: 1, .. })
        ));
        // Too short for its family.
        let mut short = bytes.to_vec();
        short[field::SOCKADDR_LEN(width, 1)].copy_from_slice(&20i32.to_le_bytes());
        assert!(matches!(
            SocketAddressList::new_checked(&short[..], width, BASE),
            Err(AddrError::SockaddrLength {
                index: 1,
                family: 23,
                len: 20,
                needed: 28,
                ..
            })
        ));
        // Negative length.
        let mut neg = bytes.to_vec();
        neg[field::SOCKADDR_LEN(width, 0)].copy_from_slice(&(-16i32).to_le_bytes());
        assert!(matches!(
            SocketAddressList::new_checked(&neg[..], width, BASE),
            Err(AddrError::SockaddrOutOfBounds { index: 0, .. })
        ));
        // Unknown family.
        let mut fam = bytes.to_vec();
        let at = list_first_sockaddr(width);
        fam[at] = 10;
        assert!(matches!(
            SocketAddressList::new_checked(&fam[..], width, BASE),
            Err(AddrError::Sockaddr {
                index: 0,
                error: SockaddrError::UnknownFamily(10)
            })
        ));
    }
}

fn list_first_sockaddr(width: Width) -> usize {
    width.header_len() + 2 * width.entry_len()
}

#[test]
fn unchecked_view_parse_reports_instead_of_panicking() {
    let list = SocketAddressList::new_unchecked(&[1u8, 0][..], Width::W64, 0);
    assert!(SocketAddressListRepr::parse(&list).is_err());
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip.into(), port))),
        (any::<[u8; 16]>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
            |(ip, port, flow, scope)| SocketAddr::V6(SocketAddrV6::new(
                ip.into(),
                port,
                flow,
                scope
            ))
        ),
    ]
}

proptest! {
    /// R-ADDR-1: lists of 0..64 mixed v4/v6 entries round-trip at both widths and any base.
    #[test]
    fn r_addr_1_round_trip_both_widths(
        addrs in proptest::collection::vec(arb_addr(), 0..64),
        base in 0u64..0xFFFF_0000,
        w64 in any::<bool>(),
    ) {
        let width = if w64 { Width::W64 } else { Width::W32 };
        let repr = SocketAddressListRepr { addresses: &addrs[..] };
        let mut buf = vec![0u8; repr.buffer_len(width)];
        prop_assert_eq!(repr.emit(&mut buf, width, base), Ok(buf.len()));
        let list = SocketAddressList::new_checked(&buf[..], width, base).unwrap();
        prop_assert_eq!(list.address_count() as usize, addrs.len());
        let back = SocketAddressListRepr::parse(&list).unwrap();
        prop_assert_eq!(back.addresses.as_slice(), &addrs[..]);
    }

    /// Parsing arbitrary bytes never panics, and what parses re-emits to a list that parses
    /// to the same addresses.
    #[test]
    fn parse_arbitrary_bytes_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        base in any::<u64>(),
        w64 in any::<bool>(),
    ) {
        let width = if w64 { Width::W64 } else { Width::W32 };
        let list = SocketAddressList::new_unchecked(&bytes[..], width, base);
        if let Ok(repr) = SocketAddressListRepr::parse(&list) {
            let mut out = vec![0u8; repr.buffer_len(width)];
            repr.emit(&mut out, width, 0).unwrap();
            let again = SocketAddressListRepr::parse(&SocketAddressList::new_unchecked(&out[..], width, 0)).unwrap();
            prop_assert_eq!(again, repr);
        }
    }
}
