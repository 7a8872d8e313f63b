use super::layout::{CRecord, Field, Kind, Record, Ty, Width, ALIASES, FN_TYPES, RECORDS};
use super::*;

/// Every field of every record lies where the Rust compiler put it (host width), with the
/// size it has there; the record lists agree with the definitions.
#[test]
fn rust_field_offsets_equal_the_layout_engine() {
    let host = Width::host();
    let layouts = records::rust_layouts();
    assert_eq!(layouts.len(), RECORDS.len());
    let mut checked = 0;
    for (record, rust) in layouts {
        let names: Vec<&str> = record.fields.iter().map(|f| f.name).collect();
        let rust_names: Vec<&str> = rust.iter().map(|r| r.0).collect();
        assert_eq!(names, rust_names, "{}: field order", record.name);
        for (i, (name, offset, size)) in rust.iter().enumerate() {
            assert_eq!(
                record.offset(i, host),
                *offset,
                "offsetof({}, {name}) at {host}",
                record.name
            );
            assert_eq!(
                record.fields[i].ty.size(host),
                *size,
                "sizeof({}.{name}) at {host}",
                record.name
            );
            checked += 1;
        }
    }
    let total: usize = RECORDS.iter().map(|r| r.fields.len()).sum();
    assert_eq!(checked, total);
    assert!(total > 100, "only {total} fields");
}

/// The sizes and alignments of both widths, spelled out (the probe compares the same
/// numbers with the headers).
#[test]
fn sizes_and_alignments_of_both_widths() {
    // (record, x86 size, x86 align, x64 size, x64 align)
    let expected: &[(&Record, usize, usize, usize, usize)] = &[
        (&GUID::RECORD, 16, 4, 16, 4),
        (&SOCKADDR::RECORD, 16, 2, 16, 2),
        (&TIMEVAL::RECORD, 8, 4, 8, 4),
        (&fd_set::RECORD, 4 + 64 * 4, 4, 8 + 64 * 8, 8),
        (&FLOWSPEC::RECORD, 32, 4, 32, 4),
        (&QOS::RECORD, 72, 4, 80, 8),
        (&WSABUF::RECORD, 8, 4, 16, 8),
        (&WSABUFEX::RECORD, 12, 4, 24, 8),
        (&WSAOVERLAPPED_0_0::RECORD, 8, 4, 8, 4),
        (&WSAOVERLAPPED_0::RECORD, 8, 4, 8, 8),
        (&WSAOVERLAPPED::RECORD, 20, 4, 32, 8),
        (&WSANETWORKEVENTS::RECORD, 44, 4, 44, 4),
        (&WSAPROTOCOLCHAIN::RECORD, 32, 4, 32, 4),
        (&WSAPROTOCOL_INFOW::RECORD, 628, 4, 628, 4),
        (&WSPDATA::RECORD, 516, 2, 516, 2),
        (&WSATHREADID::RECORD, 8, 4, 16, 8),
        (&WSPPROC_TABLE::RECORD, 120, 4, 240, 8),
        (&WSPUPCALLTABLEEX::RECORD, 64, 4, 128, 8),
    ];
    assert_eq!(expected.len(), RECORDS.len(), "every record is listed here");
    for &(r, s32, a32, s64, a64) in expected {
        assert!(RECORDS.contains(&r), "{}", r.name);
        assert_eq!(
            (r.size(Width::W32), r.align(Width::W32)),
            (s32, a32),
            "{} x86",
            r.name
        );
        assert_eq!(
            (r.size(Width::W64), r.align(Width::W64)),
            (s64, a64),
            "{} x64",
            r.name
        );
    }
}

/// The offsets the SAN provider relies on most, for both widths.
#[test]
fn overlapped_and_buffer_offsets() {
    let offset = |r: &Record, name: &str, w: Width| r.offset(r.field(name).unwrap().0, w);
    let ov = &WSAOVERLAPPED::RECORD;
    assert_eq!(offset(ov, "InternalHigh", Width::W32), 4);
    assert_eq!(offset(ov, "Anonymous", Width::W32), 8);
    assert_eq!(offset(ov, "hEvent", Width::W32), 16);
    assert_eq!(offset(ov, "InternalHigh", Width::W64), 8);
    assert_eq!(offset(ov, "Anonymous", Width::W64), 16);
    assert_eq!(offset(ov, "hEvent", Width::W64), 24);
    let inner = &WSAOVERLAPPED_0_0::RECORD;
    assert_eq!(offset(inner, "OffsetHigh", Width::W64), 4);
    assert_eq!(WSAOVERLAPPED_0::RECORD.kind, Kind::Union);
    assert_eq!(offset(&WSAOVERLAPPED_0::RECORD, "Pointer", Width::W64), 0);
    assert_eq!(offset(&WSABUFEX::RECORD, "buf", Width::W32), 4);
    assert_eq!(offset(&WSABUFEX::RECORD, "handle", Width::W64), 16);
    assert_eq!(
        offset(&WSAPROTOCOL_INFOW::RECORD, "dwProviderReserved", Width::W64),
        112
    );
    assert_eq!(
        offset(&WSAPROTOCOL_INFOW::RECORD, "szProtocol", Width::W32),
        116
    );
}

/// The C rules of the engine on a record with inner and tail padding.
#[test]
fn engine_pads_like_c() {
    const FIELDS: &[Field] = &[
        Field {
            name: "a",
            ty: <u8 as layout::CType>::TY,
            rust_type: "u8",
        },
        Field {
            name: "p",
            ty: Ty::Ptr,
            rust_type: "PVOID",
        },
        Field {
            name: "w",
            ty: <u16 as layout::CType>::TY,
            rust_type: "u16",
        },
    ];
    const R: Record = Record {
        name: "Padded",
        c_name: None,
        kind: Kind::Struct,
        fields: FIELDS,
    };
    const U: Record = Record {
        kind: Kind::Union,
        ..R
    };
    // The engine is usable in constants.
    const R64: usize = R.size(Width::W64);
    assert_eq!(R64, 24);
    assert_eq!((R.offset(1, Width::W64), R.offset(2, Width::W64)), (8, 16));
    assert_eq!((R.offset(1, Width::W32), R.offset(2, Width::W32)), (4, 8));
    assert_eq!(R.size(Width::W32), 12);
    assert_eq!((U.size(Width::W32), U.size(Width::W64)), (4, 8));
    assert_eq!(U.offset(2, Width::W64), 0);
    #[repr(C)]
    struct Padded {
        a: u8,
        p: *mut u8,
        w: u16,
    }
    let _ = Padded {
        a: 0,
        p: core::ptr::null_mut(),
        w: 0,
    };
    assert_eq!(core::mem::size_of::<Padded>(), R.size(Width::host()));
}

/// The table slots in the order of SAN-SPI-FUNCTIONS.md (which follows ws2spi.h); the
/// probe checks the same names against the header's members by offset.
#[test]
fn proc_table_slots_in_spec_order() {
    let spec = [
        "Accept",
        "AddressToString",
        "AsyncSelect",
        "Bind",
        "CancelBlockingCall",
        "Cleanup",
        "CloseSocket",
        "Connect",
        "DuplicateSocket",
        "EnumNetworkEvents",
        "EventSelect",
        "GetOverlappedResult",
        "GetPeerName",
        "GetSockName",
        "GetSockOpt",
        "GetQOSByName",
        "Ioctl",
        "JoinLeaf",
        "Listen",
        "Recv",
        "RecvDisconnect",
        "RecvFrom",
        "Select",
        "Send",
        "SendDisconnect",
        "SendTo",
        "SetSockOpt",
        "Shutdown",
        "Socket",
        "StringToAddress",
    ];
    let slots: Vec<String> = WSPPROC_TABLE::RECORD
        .fields
        .iter()
        .map(|f| f.name.trim_start_matches("lpWSP").to_owned())
        .collect();
    assert_eq!(slots, spec);
    assert_eq!(slots.len(), WSPPROC_TABLE_SLOTS);
    let upcalls = &WSPUPCALLTABLEEX::RECORD.fields;
    assert_eq!(upcalls.len(), WSPUPCALLTABLEEX_SLOTS);
    assert_eq!(
        upcalls.last().unwrap().name,
        "lpWPUCompleteOverlappedRequest"
    );
}

/// Every table slot is a function pointer whose type's signature is declared, and each
/// slot's type is named after the slot (`lpWSPAccept: LPWSPACCEPT`).
#[test]
fn table_slots_have_declared_signatures() {
    for table in [&WSPPROC_TABLE::RECORD, &WSPUPCALLTABLEEX::RECORD] {
        for f in table.fields {
            assert_eq!(f.ty, Ty::Ptr, "{}.{}", table.name, f.name);
            assert!(
                FN_TYPES.iter().any(|s| s.name == f.rust_type),
                "{}.{}: no signature for {}",
                table.name,
                f.name,
                f.rust_type
            );
            assert_eq!(
                f.rust_type,
                format!("LP{}", &f.name[2..]).to_uppercase(),
                "{}.{}",
                table.name,
                f.name
            );
        }
    }
    let mut names: Vec<&str> = FN_TYPES.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), FN_TYPES.len(), "a signature is declared twice");
    // 30 + 16 slots, the startup, 7 extensions, the condition function, the completion
    // routine, the blocking callback and the APC.
    assert_eq!(FN_TYPES.len(), 30 + 16 + 1 + 7 + 4);
}

/// The aliases are LLP64 on every host: 32-bit `DWORD`/`LONG`/`INT`/`BOOL`, pointer-sized
/// `SOCKET`/`HANDLE`/`ULONG_PTR`, 16-bit `WCHAR`.
#[test]
fn aliases_are_llp64() {
    let ty = |name: &str| ALIASES.iter().find(|a| a.name == name).unwrap().ty;
    for name in ["DWORD", "ULONG", "u_long", "UINT", "GROUP"] {
        assert_eq!(
            ty(name),
            Ty::Int {
                bytes: 4,
                signed: false
            },
            "{name}"
        );
    }
    for name in ["LONG", "INT", "BOOL"] {
        assert_eq!(
            ty(name),
            Ty::Int {
                bytes: 4,
                signed: true
            },
            "{name}"
        );
    }
    for name in ["SOCKET", "ULONG_PTR", "DWORD_PTR", "SIZE_T", "WPARAM"] {
        assert_eq!(ty(name), Ty::IntPtr { signed: false }, "{name}");
    }
    assert_eq!(ty("LPARAM"), Ty::IntPtr { signed: true });
    for name in ["HANDLE", "WSAEVENT", "PVOID", "LPINT", "LPWSAOVERLAPPED"] {
        assert_eq!(ty(name), Ty::Ptr, "{name}");
    }
    assert_eq!(
        ty("WCHAR"),
        Ty::Int {
            bytes: 2,
            signed: false
        }
    );
    assert_eq!(core::mem::size_of::<DWORD>(), 4);
    assert_eq!(core::mem::size_of::<LONG>(), 4);
    assert_eq!(
        core::mem::size_of::<SOCKET>(),
        core::mem::size_of::<usize>()
    );
}

/// `QOS` and `SOCKADDR` agree with the core's byte-level descriptions, for both widths.
#[test]
fn qos_and_sockaddr_agree_with_the_core() {
    use san_spi_core::addr::sockaddr;
    use san_spi_core::qos;
    let offset = |r: &Record, name: &str, w: Width| r.offset(r.field(name).unwrap().0, w);
    for w in Width::ALL {
        assert_eq!(QOS::RECORD.size(w), qos::qos_len(w), "{w}");
        assert_eq!(
            offset(&QOS::RECORD, "ReceivingFlowspec", w),
            qos::field::RECEIVING_FLOWSPEC.start
        );
        assert_eq!(
            offset(&QOS::RECORD, "ProviderSpecific", w) + offset(&WSABUF::RECORD, "buf", w),
            qos::field::PROVIDER_SPECIFIC_BUF(w).start,
            "{w}"
        );
    }
    assert_eq!(FLOWSPEC::RECORD.size(Width::W64), qos::FLOWSPEC_LEN);
    assert_eq!(SOCKADDR::RECORD.size(Width::W64), sockaddr::SOCKADDR_IN_LEN);
}
