//! `WSPIoctl` driven through a fake switch and a fake transport, requirement by requirement.

use super::*;
use crate::addr::{SocketAddressList, SocketAddressListRepr};
use crate::ioctl::{IoctlFlags, IoctlType, FIONBIO, SIO_ADDRESS_LIST_CHANGE};
use crate::overlapped::{get_overlapped_result, OverlappedResult};
use crate::qos::{qos_len, ServiceType};
use crate::testing::{FakeSwitch, FakeTransport, Upcall};
use crate::transport::LocalAddress;
use crate::upcall::ThreadId;

const S: u64 = 0x100;
const VENDOR: u16 = 0x2A;
const THREAD: ThreadId = ThreadId {
    thread_handle: 0x77,
    reserved: 0,
};

fn addrs() -> Vec<LocalAddress> {
    let mut v = vec![
        LocalAddress::new("192.0.2.10:0".parse().unwrap()),
        LocalAddress::new("[fe80::211:22ff:fe33:4455%3]:0".parse().unwrap()),
        LocalAddress::new("[2002:c000:201::1]:0".parse().unwrap()), // 6to4: dropped
        LocalAddress::new("127.0.0.1:0".parse().unwrap()),          // loopback: dropped
    ];
    // A privacy address: dropped.
    v.push(LocalAddress::new("[2001:db8::99]:0".parse().unwrap()).with_temporary(true));
    v
}

fn dispatcher(width: Width, qos: bool) -> Dispatcher<FakeTransport> {
    let t = if qos {
        FakeTransport::with_qos(addrs())
    } else {
        FakeTransport::new(addrs())
    };
    let mut config = DispatchConfig::new(width);
    config.vendor = Some(VENDOR);
    let d = Dispatcher::new(t, config);
    d.open_socket(S).unwrap();
    d
}

fn ov(overlapped: u64, event: u64, routine: u64) -> OverlappedRequest {
    OverlappedRequest {
        overlapped,
        event,
        completion_routine: routine,
        thread_id: if routine != 0 { Some(THREAD) } else { None },
    }
}

fn fault(required: Option<u32>) -> IoctlReturn {
    IoctlReturn::Error {
        error: WsaError::Fault,
        bytes_returned: required,
    }
}

fn err(e: WsaError) -> IoctlReturn {
    IoctlReturn::Error {
        error: e,
        bytes_returned: None,
    }
}

fn qos_bytes(width: Width, service: ServiceType) -> Vec<u8> {
    let q = QosRepr {
        sending: FlowSpec {
            service_type: service as u32,
            ..FlowSpec::best_effort(1000)
        },
        receiving: FlowSpec::best_effort(2000),
        provider_specific: &[],
    };
    let mut b = vec![0u8; q.buffer_len(width)];
    q.emit(&mut b, width, 0x5000).unwrap();
    b
}

/// R-RET-2: 0 exactly when the call completed; otherwise SOCKET_ERROR with one code.
#[test]
fn r_ret_2_zero_only_when_completed_immediately() {
    let d = dispatcher(Width::W64, true);
    let sw = FakeSwitch::new();
    let guid = ExtensionFunction::RdmaRead.windows_bytes();
    let mut out = [0u8; 8];
    let ok = d.ioctl(
        IoctlRequest::new(S, SIO_GET_EXTENSION_FUNCTION_POINTER)
            .input(&guid)
            .output(&mut out, 0x10),
        &sw,
    );
    assert_eq!(ok.return_value(), 0);
    assert_eq!(ok.errno(), None);
    let bad = d.ioctl(IoctlRequest::new(S, SIO_ADDRESS_LIST_CHANGE), &sw);
    assert_eq!(bad.return_value(), SOCKET_ERROR);
    assert_eq!(bad.errno(), Some(WsaError::Inval));
    d.transport().qos_not_ready_for(1);
    let q = qos_bytes(Width::W64, ServiceType::BestEffort);
    let pending = d.ioctl(
        IoctlRequest::new(S, SIO_SET_QOS)
            .input(&q)
            .overlapped(ov(0x900, 0, 0)),
        &sw,
    );
    assert_eq!(pending.return_value(), SOCKET_ERROR);
    assert_eq!(pending.errno(), Some(WsaError::IoPending));
}

/// R-EXT-5: without RDMA read the transport's `WSPRdmaRead` GUID is `WSAEOPNOTSUPP`, the
/// other six still resolve, and RDMA read comes back when the transport offers it again.
#[test]
fn r_ext_5_rdma_read_is_optional() {
    let d = dispatcher(Width::W64, false);
    let sw = FakeSwitch::new();
    let lookup = |f: ExtensionFunction| {
        let guid = f.windows_bytes();
        let mut out = [0u8; 8];
        d.ioctl(
            IoctlRequest::new(S, SIO_GET_EXTENSION_FUNCTION_POINTER)
                .input(&guid)
                .output(&mut out, 0x10),
            &sw,
        )
    };
    d.transport().set_rdma_read(false);
    for f in ExtensionFunction::ALL {
        let r = lookup(f);
        if f == ExtensionFunction::RdmaRead {
            assert_eq!(r, err(WsaError::OpNotSupp), "{f:?}");
            assert_eq!(r.return_value(), SOCKET_ERROR);
        } else {
            assert_eq!(
                r,
                IoctlReturn::Complete {
                    bytes_returned: 8,
                    extension: Some(f)
                },
                "{f:?}"
            );
        }
    }
    d.transport().set_rdma_read(true);
    assert_eq!(
        lookup(ExtensionFunction::RdmaRead).return_value(),
        0,
        "offered again"
    );
}

/// R-EXT-5 through the socket layer's shared transport (`Arc<T>`, as `SanSockets` holds
/// it): what the transport does not offer stays `WSAEOPNOTSUPP`.
#[test]
fn r_ext_5_holds_through_a_shared_transport() {
    let t = std::sync::Arc::new(FakeTransport::new(addrs()));
    t.set_rdma_read(false);
    let d = Dispatcher::new(t, DispatchConfig::new(Width::W64));
    d.open_socket(S).unwrap();
    let guid = ExtensionFunction::RdmaRead.windows_bytes();
    let mut out = [0u8; 8];
    let r = d.ioctl(
        IoctlRequest::new(S, SIO_GET_EXTENSION_FUNCTION_POINTER)
            .input(&guid)
            .output(&mut out, 0x10),
        &FakeSwitch::new(),
    );
    assert_eq!(r, err(WsaError::OpNotSupp));
}

/// R-RET-3: whatever the input, only the eight documented codes come back.
#[test]
fn r_ret_3_only_documented_codes_are_reported() {
    let d = dispatcher(Width::W32, true);
    let sw = FakeSwitch::new();
    let codes = [
        SIO_GET_EXTENSION_FUNCTION_POINTER,
        SIO_ADDRESS_LIST_QUERY,
        SIO_GET_QOS,
        SIO_SET_QOS,
        SIO_GET_GROUP_QOS,
        SIO_SET_GROUP_QOS,
        FIONBIO,
        IoctlCode::new(IoctlFlags::IN, IoctlType::Vendor, VENDOR, 1),
        IoctlCode::from_raw(0xFFFF_FFFF),
    ];
    let inputs: [&[u8]; 4] = [b"", b"reset", &[0xFF; 16], &[0; 100]];
    for code in codes {
        for input in inputs {
            for out_len in [0usize, 3, 4, 200] {
                for socket in [S, 0xBAD] {
                    let mut out = vec![0u8; out_len];
                    let r = d.ioctl(
                        IoctlRequest::new(socket, code)
                            .input(input)
                            .output(&mut out, 0x1000),
                        &sw,
                    );
                    if let Some(e) = r.errno() {
                        assert!(e.is_wspioctl_code(), "{code} gave {e}");
                    }
                }
            }
        }
    }
}

/// R-RET-4: missing or short buffers, or a missing `lpcbBytesReturned` the code needs → WSAEFAULT.
#[test]
fn r_ret_4_missing_or_short_buffers_are_fault() {
    let d = dispatcher(Width::W64, true);
    let sw = FakeSwitch::new();
    let guid = ExtensionFunction::RegisterMemory.windows_bytes();
    let ext = |input: Option<&[u8]>, out_len: Option<usize>, bytes_returned: bool| {
        let mut out = vec![0u8; out_len.unwrap_or(0)];
        let mut r =
            IoctlRequest::new(S, SIO_GET_EXTENSION_FUNCTION_POINTER).bytes_returned(bytes_returned);
        if let Some(i) = input {
            r = r.input(i);
        }
        if out_len.is_some() {
            r = r.output(&mut out, 0x10);
        }
        d.ioctl(r, &sw)
    };
    assert_eq!(ext(None, Some(8), true), fault(None));
    assert_eq!(ext(Some(&guid[..15]), Some(8), true), fault(None));
    assert_eq!(ext(Some(&guid), None, true), fault(None));
    assert_eq!(ext(Some(&guid), Some(7), true), fault(None));
    assert_eq!(ext(Some(&guid), Some(8), false), fault(None));
    assert_eq!(ext(Some(&guid), Some(8), true).return_value(), 0);
    // SIO_ADDRESS_LIST_QUERY must report the size: it needs lpcbBytesReturned.
    let mut out = [0u8; 512];
    assert_eq!(
        d.ioctl(
            IoctlRequest::new(S, SIO_ADDRESS_LIST_QUERY)
                .output(&mut out, 0x10)
                .bytes_returned(false),
            &sw
        ),
        fault(None)
    );
    // SIO_SET_QOS without (or with a short) QOS input.
    assert_eq!(d.ioctl(IoctlRequest::new(S, SIO_SET_QOS), &sw), fault(None));
    let q = qos_bytes(Width::W64, ServiceType::BestEffort);
    assert_eq!(
        d.ioctl(IoctlRequest::new(S, SIO_SET_QOS).input(&q[..79]), &sw),
        fault(None)
    );
    assert!(sw.upcalls().is_empty());
}

/// R-RET-5: unknown codes, other vendors' codes and codes SAN providers do not serve → WSAEINVAL.
#[test]
fn r_ret_5_unknown_codes_are_inval() {
    let d = dispatcher(Width::W64, false);
    let sw = FakeSwitch::new();
    for code in [
        SIO_ADDRESS_LIST_CHANGE,
        FIONBIO,
        IoctlCode::from_raw(0),
        IoctlCode::new(IoctlFlags::IN, IoctlType::Vendor, VENDOR + 1, 1),
        IoctlCode::new(IoctlFlags::IN, IoctlType::Protocol, VENDOR, 1),
    ] {
        assert_eq!(
            d.ioctl(IoctlRequest::new(S, code), &sw),
            err(WsaError::Inval),
            "{code}"
        );
    }
    // A QoS structure that is not acceptable is WSAEINVAL too.
    let d = dispatcher(Width::W64, true);
    let mut q = qos_bytes(Width::W64, ServiceType::BestEffort);
    q[20] = 7; // ServiceType 7 does not exist
    assert_eq!(
        d.ioctl(IoctlRequest::new(S, SIO_SET_QOS).input(&q), &sw),
        err(WsaError::Inval)
    );
}

/// R-RET-6: a descriptor that is not (or no longer) one of ours → WSAENOTSOCK.
#[test]
fn r_ret_6_unknown_and_closed_descriptors_are_notsock() {
    let d = dispatcher(Width::W64, false);
    let sw = FakeSwitch::new();
    assert_eq!(
        d.ioctl(IoctlRequest::new(0xBAD, SIO_ADDRESS_LIST_QUERY), &sw),
        err(WsaError::NotSock)
    );
    d.close_socket(S, &sw).unwrap();
    assert_eq!(
        d.ioctl(IoctlRequest::new(S, SIO_ADDRESS_LIST_QUERY), &sw),
        err(WsaError::NotSock)
    );
    assert_eq!(d.close_socket(S, &sw), Err(WsaError::NotSock));
}

/// R-RET-7: flow specs the transport cannot honour → WSAEOPNOTSUPP; no QoS → WSAENOPROTOOPT.
#[test]
fn r_ret_7_unrealizable_is_opnotsupp_unsupported_is_noprotoopt() {
    let sw = FakeSwitch::new();
    let d = dispatcher(Width::W64, true);
    let q = qos_bytes(Width::W64, ServiceType::Guaranteed);
    assert_eq!(
        d.ioctl(IoctlRequest::new(S, SIO_SET_QOS).input(&q), &sw),
        err(WsaError::OpNotSupp)
    );
    let d = dispatcher(Width::W64, false);
    assert_eq!(
        d.ioctl(IoctlRequest::new(S, SIO_SET_QOS).input(&q), &sw),
        err(WsaError::NoProtoOpt)
    );
}

/// R-RET-8: an immediate success with a completion routine has queued its APC before
/// the call returns.
#[test]
fn r_ret_8_apc_is_queued_before_returning_zero() {
    let d = dispatcher(Width::W64, true);
    let sw = FakeSwitch::new();
    let guid = ExtensionFunction::RdmaWrite.windows_bytes();
    let mut out = [0u8; 8];
    let r = d.ioctl(
        IoctlRequest::new(S, SIO_GET_EXTENSION_FUNCTION_POINTER)
            .input(&guid)
            .output(&mut out, 0x10)
            .overlapped(ov(0xA00, 0x55, 0x4000)),
        &sw,
    );
    assert_eq!(r.return_value(), 0);
    assert_eq!(sw.apcs_queued(), 1, "queued by the time the call returned");
    let ctx = sw.run_apcs(&THREAD)[0];
    let call = d.operations().take_apc(ctx).unwrap();
    assert_eq!(
        (call.routine, call.bytes, call.error, call.overlapped),
        (0x4000, 8, 0, 0xA00)
    );
}

/// R-IOC-5: this provider's vendor codes go to the transport; its errors are mapped into
/// the WSPIoctl set.
#[test]
fn r_ioc_5_vendor_codes_are_routed_to_the_transport() {
    let d = dispatcher(Width::W64, false);
    let sw = FakeSwitch::new();
    let code = IoctlCode::new(
        IoctlFlags::IN | IoctlFlags::OUT,
        IoctlType::Vendor,
        VENDOR,
        3,
    );
    let mut out = [0u8; 4];
    let r = d.ioctl(
        IoctlRequest::new(S, code)
            .input(b"echo")
            .output(&mut out, 0x10),
        &sw,
    );
    assert_eq!(
        r,
        IoctlReturn::Complete {
            bytes_returned: 4,
            extension: None
        }
    );
    assert_eq!(&out, b"echo");
    assert_eq!(
        d.ioctl(IoctlRequest::new(S, code).input(b"reset"), &sw),
        err(WsaError::Inval)
    );
}

/// R-EXT-1: the answer names the function and returns pointer-width bytes, at both widths.
#[test]
fn r_ext_1_returns_the_function_with_pointer_width_bytes() {
    for width in Width::ALL {
        let d = dispatcher(width, false);
        for f in ExtensionFunction::ALL {
            let guid = f.windows_bytes();
            let mut out = [0u8; 8];
            let r = d.ioctl(
                IoctlRequest::new(S, SIO_GET_EXTENSION_FUNCTION_POINTER)
                    .input(&guid)
                    .output(&mut out[..width.pointer_len()], 0x10),
                &FakeSwitch::new(),
            );
            assert_eq!(
                r,
                IoctlReturn::Complete {
                    bytes_returned: width.pointer_len() as u32,
                    extension: Some(f)
                }
            );
        }
    }
}

/// R-EXT-3: an unknown GUID is WSAEINVAL; a short one WSAEFAULT.
#[test]
fn r_ext_3_unknown_guid_inval_short_fault() {
    let d = dispatcher(Width::W64, false);
    let sw = FakeSwitch::new();
    let mut out = [0u8; 8];
    let unknown = [0x11u8; 16];
    assert_eq!(
        d.ioctl(
            IoctlRequest::new(S, SIO_GET_EXTENSION_FUNCTION_POINTER)
                .input(&unknown)
                .output(&mut out, 0),
            &sw
        ),
        err(WsaError::Inval)
    );
    assert_eq!(
        d.ioctl(
            IoctlRequest::new(S, SIO_GET_EXTENSION_FUNCTION_POINTER)
                .input(&unknown[..8])
                .output(&mut out, 0),
            &sw
        ),
        fault(None)
    );
}

/// R-EXT-4: issued with a WSAOVERLAPPED anyway, the call still completes synchronously and
/// the completion is notified exactly once.
#[test]
fn r_ext_4_completes_synchronously_and_notifies_once() {
    let d = dispatcher(Width::W64, false);
    let sw = FakeSwitch::new();
    let guid = ExtensionFunction::DeregisterMemory.windows_bytes();
    let mut out = [0u8; 8];
    let r = d.ioctl(
        IoctlRequest::new(S, SIO_GET_EXTENSION_FUNCTION_POINTER)
            .input(&guid)
            .output(&mut out, 0x10)
            .overlapped(ov(0xB00, 0x20, 0)),
        &sw,
    );
    assert_eq!(r.return_value(), 0);
    assert_eq!(sw.completions_of(0xB00), 1);
    assert_eq!(
        get_overlapped_result(&sw, 0xB00),
        OverlappedResult::Done {
            bytes: 8,
            flags: 0,
            error: 0
        }
    );
    assert_eq!(d.operations().pending(), 0);
}

/// R-QOS-1: without QoS every QoS code is WSAENOPROTOOPT.
#[test]
fn r_qos_1_without_qos_every_code_is_noprotoopt() {
    let d = dispatcher(Width::W64, false);
    let sw = FakeSwitch::new();
    let q = qos_bytes(Width::W64, ServiceType::BestEffort);
    let mut out = [0u8; 256];
    for code in [
        SIO_GET_QOS,
        SIO_SET_QOS,
        SIO_GET_GROUP_QOS,
        SIO_SET_GROUP_QOS,
    ] {
        let r = d.ioctl(
            IoctlRequest::new(S, code).input(&q).output(&mut out, 0x10),
            &sw,
        );
        assert_eq!(r, err(WsaError::NoProtoOpt), "{code}");
    }
}

/// R-QOS-2: SIO_GET_QOS copies the whole QOS, provider bytes included; too small → WSAEFAULT.
#[test]
fn r_qos_2_get_copies_the_whole_structure() {
    for width in Width::ALL {
        let d = dispatcher(width, true);
        let sw = FakeSwitch::new();
        let set = QosRepr {
            sending: FlowSpec::best_effort(1),
            receiving: FlowSpec::best_effort(2),
            provider_specific: b"xyz",
        };
        let mut input = vec![0u8; set.buffer_len(width)];
        set.emit(&mut input, width, 0x8000).unwrap();
        let r = d.ioctl(
            IoctlRequest::new(S, SIO_SET_QOS).input_at(&input, 0x8000),
            &sw,
        );
        assert_eq!(r.return_value(), 0);
        let need = qos_len(width) + 3;
        for len in [0, 1, qos_len(width), need - 1] {
            let mut out = vec![0xEEu8; len];
            let r = d.ioctl(
                IoctlRequest::new(S, SIO_GET_QOS).output(&mut out, 0x9000),
                &sw,
            );
            assert_eq!(r, fault(Some(need as u32)), "len {len}");
            assert!(out.iter().all(|&b| b == 0xEE));
        }
        let mut out = vec![0u8; need + 5];
        let r = d.ioctl(
            IoctlRequest::new(S, SIO_GET_QOS).output(&mut out, 0x9000),
            &sw,
        );
        assert_eq!(
            r,
            IoctlReturn::Complete {
                bytes_returned: need as u32,
                extension: None
            }
        );
        assert_eq!(QosRepr::parse(&out[..need], width, 0x9000), Ok(set));
    }
}

/// R-QOS-3: SIO_SET_QOS reads the input, needs no output, and the socket then reports it.
#[test]
fn r_qos_3_set_reads_input_without_output() {
    let d = dispatcher(Width::W64, true);
    let sw = FakeSwitch::new();
    let q = qos_bytes(Width::W64, ServiceType::ControlledLoad);
    let r = d.ioctl(
        IoctlRequest::new(S, SIO_SET_QOS)
            .input(&q)
            .bytes_returned(false),
        &sw,
    );
    assert_eq!(
        r,
        IoctlReturn::Complete {
            bytes_returned: 0,
            extension: None
        }
    );
    let mut out = [0u8; 80];
    let _ = d.ioctl(IoctlRequest::new(S, SIO_GET_QOS).output(&mut out, 0), &sw);
    assert_eq!(
        QosRepr::parse(&out, Width::W64, 0)
            .unwrap()
            .sending
            .service(),
        Some(ServiceType::ControlledLoad)
    );
    // A ProviderSpecific pointer outside the input buffer is not read: WSAEFAULT.
    let mut bad = q.clone();
    bad[64..68].copy_from_slice(&4u32.to_le_bytes());
    bad[72..80].copy_from_slice(&0xDEAD_0000u64.to_le_bytes());
    assert_eq!(
        d.ioctl(
            IoctlRequest::new(S, SIO_SET_QOS).input_at(&bad, 0x5000),
            &sw
        ),
        fault(None)
    );
}

/// R-QOS-4: group QoS for a socket in no group: NULL flow specs; SET → WSAENOPROTOOPT.
#[test]
fn r_qos_4_group_qos_is_null_and_set_is_noprotoopt() {
    let d = dispatcher(Width::W32, true);
    let sw = FakeSwitch::new();
    let mut out = [0xAAu8; 72];
    let r = d.ioctl(
        IoctlRequest::new(S, SIO_GET_GROUP_QOS).output(&mut out, 0x10),
        &sw,
    );
    assert_eq!(r.return_value(), 0);
    let q = QosRepr::parse(&out, Width::W32, 0x10).unwrap();
    assert_eq!((q.sending, q.receiving), (FlowSpec::NULL, FlowSpec::NULL));
    let input = qos_bytes(Width::W32, ServiceType::BestEffort);
    assert_eq!(
        d.ioctl(IoctlRequest::new(S, SIO_SET_GROUP_QOS).input(&input), &sw),
        err(WsaError::NoProtoOpt)
    );
}

/// R-QOS-5: QoS calls work with every completion method: upcall, event without port,
/// poll-only and APC, both completing at once and completing later.
#[test]
fn r_qos_5_every_completion_method() {
    let d = dispatcher(Width::W64, true);
    let sw = FakeSwitch::new();
    let q = qos_bytes(Width::W64, ServiceType::BestEffort);
    let reqs = [
        ov(0x1000, 0x40, 0),
        ov(0x2000, 0x41, 0),
        ov(0x3000, 1, 0),
        ov(0x4000, 0, 0x99),
    ];
    for later in [false, true] {
        for r in reqs {
            let r = OverlappedRequest {
                overlapped: r.overlapped + later as u64,
                ..r
            };
            if later {
                d.transport().qos_not_ready_for(1);
            }
            let ret = d.ioctl(
                IoctlRequest::new(S, SIO_SET_QOS).input(&q).overlapped(r),
                &sw,
            );
            if later {
                assert_eq!(ret.errno(), Some(WsaError::IoPending));
                assert_eq!(
                    get_overlapped_result(&sw, r.overlapped),
                    OverlappedResult::Incomplete
                );
                assert_eq!(d.poll_deferred(&sw), 1);
            } else {
                assert_eq!(ret.return_value(), 0);
            }
            assert_eq!(
                get_overlapped_result(&sw, r.overlapped),
                OverlappedResult::Done {
                    bytes: 0,
                    flags: 0,
                    error: 0
                }
            );
        }
    }
    // Upcall and event modes notified through the switch; poll-only not; APCs queued.
    for base in [0x1000, 0x1001, 0x2000, 0x2001] {
        assert_eq!(sw.completions_of(base), 1, "{base:#x}");
    }
    assert_eq!(sw.completions_of(0x3000) + sw.completions_of(0x3001), 0);
    assert_eq!(sw.run_apcs(&THREAD).len(), 2);
}

/// R-ADDR-3 through WSPIoctl: no buffer, 0, 1, header only, one short, exact, larger, at
/// both widths: WSAEFAULT with the exact size required and nothing written, or the list.
#[test]
fn r_addr_3_buffer_size_matrix() {
    for width in Width::ALL {
        let d = dispatcher(width, false);
        let sw = FakeSwitch::new();
        let kept = d.eligible_addresses().unwrap();
        assert_eq!(kept.len(), 2);
        let required = SocketAddressListRepr {
            addresses: &kept[..],
        }
        .buffer_len(width);
        let none = d.ioctl(IoctlRequest::new(S, SIO_ADDRESS_LIST_QUERY), &sw);
        assert_eq!(none, fault(Some(required as u32)));
        for len in [
            0,
            1,
            width.header_len(),
            required - 1,
            required,
            required + 9,
        ] {
            let mut out = vec![0xC3u8; len];
            let r = d.ioctl(
                IoctlRequest::new(S, SIO_ADDRESS_LIST_QUERY).output(&mut out, 0x7_0000),
                &sw,
            );
            if len < required {
                assert_eq!(r, fault(Some(required as u32)), "len {len}");
                assert!(out.iter().all(|&b| b == 0xC3), "written at len {len}");
            } else {
                assert_eq!(
                    r,
                    IoctlReturn::Complete {
                        bytes_returned: required as u32,
                        extension: None
                    }
                );
                let list =
                    SocketAddressList::new_checked(&out[..required], width, 0x7_0000).unwrap();
                let back = SocketAddressListRepr::parse(&list).unwrap();
                assert_eq!(back.addresses.as_slice(), &kept[..]);
                assert!(out[required..].iter().all(|&b| b == 0xC3));
            }
        }
        assert!(sw.upcalls().is_empty());
    }
}

/// R-ADDR-4..6 through WSPIoctl: only eligible addresses, IPv4 as AF_INET and IPv6 as
/// AF_INET6 with the scope id, in the transport's order.
#[test]
fn r_addr_6_query_lists_only_eligible_addresses() {
    let d = dispatcher(Width::W64, false);
    let kept = d.eligible_addresses().unwrap();
    assert_eq!(
        kept,
        vec![
            "192.0.2.10:0".parse::<SocketAddr>().unwrap(),
            "[fe80::211:22ff:fe33:4455%3]:0".parse().unwrap()
        ]
    );
}

/// R-ADDR-7: after an address change the next query reflects it, in a stable order.
#[test]
fn r_addr_7_query_reflects_changes_in_stable_order() {
    let d = dispatcher(Width::W64, false);
    let sw = FakeSwitch::new();
    let query = || {
        let mut out = [0u8; 512];
        let r = d.ioctl(
            IoctlRequest::new(S, SIO_ADDRESS_LIST_QUERY).output(&mut out, 0),
            &sw,
        );
        let n = match r {
            IoctlReturn::Complete { bytes_returned, .. } => bytes_returned as usize,
            other => panic!("{other:?}"),
        };
        let list = SocketAddressList::new_checked(&out[..n], Width::W64, 0).unwrap();
        SocketAddressListRepr::parse(&list)
            .unwrap()
            .addresses
            .to_vec()
    };
    let first = query();
    assert_eq!(first, query(), "stable between calls");
    d.transport()
        .set_addresses(vec![LocalAddress::new("198.51.100.1:0".parse().unwrap())]);
    assert_eq!(
        query(),
        vec!["198.51.100.1:0".parse::<SocketAddr>().unwrap()]
    );
}

/// R-ADDR-8: issued overlapped anyway, the query completes synchronously and notifies once.
#[test]
fn r_addr_8_query_completes_synchronously() {
    let d = dispatcher(Width::W64, false);
    let sw = FakeSwitch::new();
    let mut out = [0u8; 512];
    let r = d.ioctl(
        IoctlRequest::new(S, SIO_ADDRESS_LIST_QUERY)
            .output(&mut out, 0)
            .overlapped(ov(0xC00, 0x20, 0)),
        &sw,
    );
    assert_eq!(r.return_value(), 0);
    assert_eq!(sw.completions_of(0xC00), 1);
    // A failing (too small) overlapped query notifies nobody.
    let r = d.ioctl(
        IoctlRequest::new(S, SIO_ADDRESS_LIST_QUERY)
            .output(&mut out[..3], 0)
            .overlapped(ov(0xD00, 0x20, 0)),
        &sw,
    );
    assert_eq!(r.errno(), Some(WsaError::Fault));
    assert_eq!(sw.completions_of(0xD00), 0);
}

/// R-OVL-1: a nonblocking socket whose call cannot finish now gets WSAEWOULDBLOCK; a
/// blocking one waits until the transport can finish.
#[test]
fn r_ovl_1_nonblocking_would_block_blocking_waits() {
    let d = dispatcher(Width::W64, true);
    let sw = FakeSwitch::new();
    let q = qos_bytes(Width::W64, ServiceType::BestEffort);
    d.set_nonblocking(S, true).unwrap();
    d.transport().qos_not_ready_for(1);
    assert_eq!(
        d.ioctl(IoctlRequest::new(S, SIO_SET_QOS).input(&q), &sw),
        err(WsaError::WouldBlock)
    );
    d.set_nonblocking(S, false).unwrap();
    d.transport().qos_not_ready_for(3);
    assert_eq!(
        d.ioctl(IoctlRequest::new(S, SIO_SET_QOS).input(&q), &sw)
            .return_value(),
        0
    );
    assert_eq!(d.transport().qos_waits(), 3);
    assert!(sw.upcalls().is_empty());
}

/// R-OVL-2: an overlapped QoS call the transport finishes later returns WSA_IO_PENDING
/// and is completed through WPUCompleteOverlappedRequest, from another thread.
#[test]
fn r_ovl_2_pending_request_completes_later_by_upcall() {
    let d = std::sync::Arc::new(dispatcher(Width::W64, true));
    let sw = std::sync::Arc::new(FakeSwitch::new());
    d.transport().qos_not_ready_for(2);
    let mut out = vec![0u8; 80];
    let r = d.ioctl(
        IoctlRequest::new(S, SIO_GET_QOS)
            .output(&mut out, 0xE000)
            .overlapped(ov(0xE00, 0x20, 0)),
        &*sw,
    );
    assert_eq!(r.errno(), Some(WsaError::IoPending));
    let (d2, s2) = (d.clone(), sw.clone());
    let done = std::thread::spawn(move || d2.poll_deferred(&*s2) + d2.poll_deferred(&*s2))
        .join()
        .unwrap();
    assert_eq!(done, 1);
    assert_eq!(
        sw.upcalls(),
        vec![Upcall::CompleteOverlapped {
            socket: S,
            overlapped: 0xE00,
            error: 0,
            bytes: 80
        }]
    );
    let written = sw.output_at(0xE000).unwrap();
    assert_eq!(written.len(), 80);
    assert!(QosRepr::parse(&written, Width::W64, 0xE000).is_ok());
}

/// R-OVL-6: closing a socket aborts its pending requests with WSA_OPERATION_ABORTED,
/// once; the transport finishing later changes nothing.
#[test]
fn r_ovl_6_close_aborts_pending_requests_once() {
    let d = dispatcher(Width::W64, true);
    let sw = FakeSwitch::new();
    d.open_socket(S + 4).unwrap();
    let q = qos_bytes(Width::W64, ServiceType::BestEffort);
    d.transport().qos_not_ready_for(2);
    for (s, o) in [(S, 0xF00), (S + 4, 0xF10)] {
        let r = d.ioctl(
            IoctlRequest::new(s, SIO_SET_QOS)
                .input(&q)
                .overlapped(ov(o, 0x20, 0)),
            &sw,
        );
        assert_eq!(r.errno(), Some(WsaError::IoPending));
    }
    assert_eq!(d.close_socket(S, &sw), Ok(1));
    assert_eq!(
        sw.upcalls(),
        vec![Upcall::CompleteOverlapped {
            socket: S,
            overlapped: 0xF00,
            error: 995,
            bytes: 0
        }]
    );
    assert_eq!(d.poll_deferred(&sw), 1); // only the other socket's request
    assert_eq!(sw.completions_of(0xF00), 1);
    assert_eq!(sw.completions_of(0xF10), 1);
    assert_eq!(d.operations().pending(), 0);
}

/// The transport going down makes every call WSAENETDOWN.
#[test]
fn transport_down_is_netdown() {
    let d = dispatcher(Width::W64, false);
    let sw = FakeSwitch::new();
    d.transport().set_up(false);
    assert_eq!(
        d.ioctl(IoctlRequest::new(S, SIO_ADDRESS_LIST_QUERY), &sw),
        err(WsaError::NetDown)
    );
    // Still WSAENOTSOCK first for a descriptor that is not ours.
    assert_eq!(
        d.ioctl(IoctlRequest::new(1, SIO_ADDRESS_LIST_QUERY), &sw),
        err(WsaError::NotSock)
    );
}

/// A completion routine without `lpThreadId` is WSAEFAULT and notifies nobody.
#[test]
fn routine_without_thread_id_is_fault() {
    let d = dispatcher(Width::W64, false);
    let sw = FakeSwitch::new();
    let mut out = [0u8; 512];
    let mut r = ov(0x10, 0, 0x1234);
    r.thread_id = None;
    assert_eq!(
        d.ioctl(
            IoctlRequest::new(S, SIO_ADDRESS_LIST_QUERY)
                .output(&mut out, 0)
                .overlapped(r),
            &sw
        ),
        fault(None)
    );
    assert!(sw.upcalls().is_empty());
}
