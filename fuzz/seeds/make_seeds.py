#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets: fuzz/seeds/<target>/<name>.

Each seed is a small hand-made input that reaches one interesting branch; the layouts
are the ones documented at the top of each fuzz_targets/<target>.rs (the hand-split
`Input` fields: little-endian integers read front to back). `cargo xtask fuzz` passes
fuzz/seeds/<target> to libFuzzer after the git-ignored working corpus fuzz/corpus/<target>,
so every smoke and long run starts from these.

Run from anywhere: `python3 fuzz/seeds/make_seeds.py` (it rewrites the directories).
"""

import os
import shutil
import struct
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))

SEEDS = {}


def seed(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    SEEDS.setdefault(target, {})[name] = bytes(data)


def u8(v):
    return struct.pack("<B", v & 0xFF)


def u16(v):
    return struct.pack("<H", v & 0xFFFF)


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def i32(v):
    return struct.pack("<i", v)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


NS = 0xFFFFFFFF  # QOS_NOT_SPECIFIED


# --- shared layouts -------------------------------------------------------------------

def sockaddr_in(ip, port=0):
    a = bytes(int(x) for x in ip.split("."))
    return u16(2) + struct.pack(">H", port) + a + bytes(8)


def sockaddr_in6(ip, port=0, scope=0):
    import ipaddress
    return (u16(23) + struct.pack(">H", port) + struct.pack(">I", 0)
            + ipaddress.IPv6Address(ip).packed + u32(scope))


def address_list(sockaddrs, width, base, share=False):
    """A SOCKET_ADDRESS_LIST laid out like the core emits it (or with every entry
    pointing at the first sockaddr when `share`)."""
    p = 4 if width == 32 else 8
    header = p
    entry = 2 * p
    count = len(sockaddrs)
    out = bytearray(u32(count) + bytes(header - 4))
    offset = header + count * entry
    tail = bytearray()
    first = offset
    for sa in sockaddrs:
        ptr = base + (first if share else offset)
        out += (ptr).to_bytes(8, "little")[:p] + i32(len(sa)) + bytes(p - 4)
        if not share or not tail:
            tail += sa
        offset += len(sa)
    return bytes(out + tail)


def flowspec(rate=NS, bucket=NS, peak=NS, latency=NS, delay=NS, service=1, sdu=NS, policed=NS):
    return b"".join(u32(v) for v in (rate, bucket, peak, latency, delay, service, sdu, policed))


def best_effort(rate):
    return flowspec(rate=rate)


def qos(width, base, sending, receiving, provider=b"", ptr=None):
    head = 72 if width == 32 else 80
    p = 4 if width == 32 else 8
    if ptr is None:
        ptr = base + head if provider else 0
    buf = sending + receiving + u32(len(provider))
    buf += bytes((68 + p - 1) // p * p - 68)  # padding before the pointer
    buf += ptr.to_bytes(8, "little")[:p]
    assert len(buf) == head, len(buf)
    return buf + provider


# --- addr_parse: 8 bytes of base, then the list ----------------------------------------

V4 = sockaddr_in("192.0.2.10")
V6 = sockaddr_in6("fe80::211:22ff:fe33:4455", scope=3)
for width in (32, 64):
    base = 0x1000
    seed("addr_parse", f"empty_w{width}", u64(base) + address_list([], width, base))
    seed("addr_parse", f"one_v4_w{width}", u64(base) + address_list([V4], width, base))
    seed("addr_parse", f"v4_v6_w{width}",
         u64(base) + address_list([V4, V6, sockaddr_in6("2001:db8::7")], width, base))
    seed("addr_parse", f"shared_sockaddr_w{width}",
         u64(base) + address_list([V4, V4], width, base, share=True))
    seed("addr_parse", f"pointer_outside_w{width}",
         u64(base) + address_list([V4], width, base + 0x100))
top = 0xFFFFFFF0
seed("addr_parse", "near_top_w32", u64(top) + address_list([V4], 32, top))
seed("addr_parse", "negative_count", u64(0x1000) + i32(-1) + bytes(12))
seed("addr_parse", "truncated", u64(0x1000) + u32(3) + bytes(8))
bad = bytearray(address_list([V4], 64, 0x1000))
bad[24:26] = u16(10)  # Linux's AF_INET6
seed("addr_parse", "bad_family", u64(0x1000) + bytes(bad))
short_len = bytearray(address_list([V6], 64, 0x1000))
short_len[16:20] = i32(16)  # iSockaddrLength too short for AF_INET6
seed("addr_parse", "short_v6_length", u64(0x1000) + bytes(short_len))

# --- qos_parse: 8 bytes of base, then the QOS ------------------------------------------

for width in (32, 64):
    base = 0x2000
    seed("qos_parse", f"best_effort_w{width}",
         u64(base) + qos(width, base, best_effort(1_000_000), best_effort(2_000)))
    seed("qos_parse", f"null_w{width}", u64(base) + qos(width, base, bytes(32), bytes(32)))
    seed("qos_parse", f"provider_specific_w{width}",
         u64(base) + qos(width, base, best_effort(1000), flowspec(service=2), b"vendor"))
    seed("qos_parse", f"provider_outside_w{width}",
         u64(base) + qos(width, base, best_effort(1000), best_effort(1000), b"xy",
                         ptr=base + 0x400))
seed("qos_parse", "guaranteed", u64(0x2000) + qos(64, 0x2000, flowspec(rate=100, service=3),
                                                  bytes(32)))
seed("qos_parse", "service_flags",
     u64(0x2000) + qos(64, 0x2000, flowspec(service=0x81000002), flowspec(service=0x40000001)))
seed("qos_parse", "bad_service_type", u64(0x2000) + qos(64, 0x2000, flowspec(service=7),
                                                        bytes(32)))
seed("qos_parse", "peak_below_rate", u64(0x2000) + qos(64, 0x2000, flowspec(rate=1000, peak=500),
                                                       bytes(32)))
seed("qos_parse", "policed_above_sdu",
     u64(0x2000) + qos(64, 0x2000, flowspec(sdu=100, policed=200), bytes(32)))
seed("qos_parse", "short", u64(0x2000) + qos(64, 0x2000, best_effort(1), best_effort(1))[:79])
seed("qos_parse", "near_top_w32",
     u64(0xFFFFFFC0) + qos(32, 0xFFFFFFC0, best_effort(1), best_effort(1), b"abc"))

# --- ioctl_decode: up to 16 little-endian codes, and the bytes as text -----------------

KNOWN = [
    ("SIO_GET_EXTENSION_FUNCTION_POINTER", 0xC8000006),
    ("SIO_GET_QOS", 0xC8000007),
    ("SIO_GET_GROUP_QOS", 0xC8000008),
    ("SIO_SET_QOS", 0x8800000B),
    ("SIO_SET_GROUP_QOS", 0x8800000C),
    ("SIO_ADDRESS_LIST_QUERY", 0x48000016),
    ("SIO_ADDRESS_LIST_CHANGE", 0x28000017),
    ("SIO_ROUTING_INTERFACE_QUERY", 0xC8000014),
    ("FIONBIO", 0x8004667E),
    ("FIONREAD", 0x4004667F),
    ("SIOCATMARK", 0x40047307),
]
seed("ioctl_decode", "known_codes", b"".join(u32(c) for _, c in KNOWN))
seed("ioctl_decode", "vendor_and_family",
     u32(0xD8000000 | (0x123 << 16) | 1) + u32(0x90170001) + u32(0xFFFFFFFF) + u32(0))
for name, code in KNOWN[:6]:
    seed("ioctl_decode", f"name_{name.lower()}", name)
seed("ioctl_decode", "hex_text", "0xC8000006")
seed("ioctl_decode", "decimal_text", str(0x48000016))
seed("ioctl_decode", "padded_text", "  0x8800000b\n")

# --- guid_parse: the bytes as a GUID; byte 0 picks a function, byte 1 the blanks -------

FUNCS = [
    ("WSPRegisterMemory", "WSAID_REGISTERMEMORY", "C0B422F5-F58C-11d1-AD6C-00C04FA34A2D"),
    ("WSPDeregisterMemory", "WSAID_DEREGISTERMEMORY", "C0B422F6-F58C-11d1-AD6C-00C04FA34A2D"),
    ("WSPRegisterRdmaMemory", "WSAID_REGISTERRDMAMEMORY",
     "C0B422F7-F58C-11d1-AD6C-00C04FA34A2D"),
    ("WSPDeregisterRdmaMemory", "WSAID_DEREGISTERRDMAMEMORY",
     "C0B422F8-F58C-11d1-AD6C-00C04FA34A2D"),
    ("WSPRdmaWrite", "WSAID_RDMAWRITE", "C0B422F9-F58C-11d1-AD6C-00C04FA34A2D"),
    ("WSPRdmaRead", "WSAID_RDMAREAD", "C0B422FA-F58C-11d1-AD6C-00C04FA34A2D"),
    ("WSPMemoryRegistrationCacheCallback", "WSAID_MEMORYREGISTRATIONCACHECALLBACK",
     "E5DA4AF8-D824-48CD-A799-6337A98ED2AF"),
]
for name, macro, text in FUNCS:
    g = uuid.UUID(text)
    seed("guid_parse", f"bytes_{name}", g.bytes_le)
    seed("guid_parse", f"bytes_{name}_longer", g.bytes_le + b"\xee" * 8)
seed("guid_parse", "name", "WSPRdmaWrite")
seed("guid_parse", "name_any_case", " wsprdmaread\t")
seed("guid_parse", "macro_name", "WSAID_MEMORYREGISTRATIONCACHECALLBACK")
seed("guid_parse", "braced", "{C0B422F5-F58C-11d1-AD6C-00C04FA34A2D}")
seed("guid_parse", "simple", "c0b422f9f58c11d1ad6c00c04fa34a2d")
seed("guid_parse", "urn", "urn:uuid:e5da4af8-d824-48cd-a799-6337a98ed2af")
seed("guid_parse", "big_endian_order", uuid.UUID(FUNCS[5][2]).bytes)
seed("guid_parse", "short", uuid.UUID(FUNCS[4][2]).bytes_le[:15])
seed("guid_parse", "unknown_name", "WSPFrobnicate")

# --- wsa_error: up to 16 little-endian i32s, and the bytes as text ---------------------

CODES = [995, 996, 997, 10014, 10022, 10035, 10038, 10040, 10042, 10045, 10048, 10049,
         10050, 10053, 10054, 10055, 10056, 10057, 10060, 10061, 10065, 10101]
seed("wsa_error", "codes_a", b"".join(i32(c) for c in CODES[:16]))
seed("wsa_error", "codes_b", b"".join(i32(c) for c in CODES[16:]) + i32(10036) + i32(-1)
     + i32(0) + i32(-2147483648))
for text in ["WSAEFAULT", "wsa_io_pending", "10014", "10036", "-1", "+10022", "WSAEBOGUS"]:
    seed("wsa_error", f"text_{text.lower().replace('+', 'plus').replace('-', 'minus')}", text)

# --- token_decode: table size byte, then steps (see the target) ------------------------

POST, LIVE, RAW, FLIP, APC_RAW, APC_PARKED, FORGET, ABORT, REFUSE, IS_PENDING, CHURN = (
    0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)


def post(socket, sel):
    return u8(POST) + u8(socket) + u8(sel)


def outcome(err=0, bytes_=0, flags=0):
    return u8(err) + u32(bytes_) + u32(flags)


UPCALL, NO_PORT, POLL, APC0, APC1 = 0x04, 0x05, 0x06, 0x03, 0x83
seed("token_decode", "every_mode_completed",
     u8(2) + post(1, UPCALL) + post(2, NO_PORT) + post(3, POLL) + post(0, APC0)
     + u8(LIVE) + u8(0) + outcome(0, 10) + u8(LIVE) + u8(0) + outcome(1, 0)
     + u8(LIVE) + u8(0) + outcome(3, 5) + u32(0xC0FFEE) + u8(LIVE) + u8(0) + outcome(0, 7, 0x8000)
     + u8(APC_PARKED) + u8(0) + u8(0))
seed("token_decode", "apc_context_high_bits",
     u8(0) + post(0, APC1) + u8(LIVE) + u8(0) + outcome(0, 1)
     + u8(APC_PARKED) + u8(0) + u8(1) + u8(APC_PARKED) + u8(0) + u8(0)
     + u8(APC_PARKED) + u8(0) + u8(0))
seed("token_decode", "forged_tokens",
     u8(3) + post(1, UPCALL) + post(1, APC0)
     + u8(FLIP) + u8(0) + u32(0x10) + outcome() + u8(FLIP) + u8(1) + u32(1) + outcome()
     + u8(RAW) + u32(0x11) + outcome() + u8(RAW) + u32(0) + outcome()
     + u8(IS_PENDING) + u32(0x11) + u8(APC_RAW) + u64(0x1_0000_0011)
     + u8(FORGET) + u8(1) + u32(0x11) + u8(FORGET) + u8(0))
seed("token_decode", "table_full",
     u8(0) + post(0, UPCALL) + post(1, POLL) + post(2, APC0) + u8(FORGET) + u8(0)
     + post(3, UPCALL))
seed("token_decode", "abort_socket",
     u8(1) + post(1, UPCALL) + post(1, APC0) + post(2, POLL) + post(1, POLL)
     + u8(ABORT) + u8(1) + u8(ABORT) + u8(0xF0) + u64(2) + u8(APC_PARKED) + u8(0) + u8(0))
seed("token_decode", "refused_upcalls",
     u8(2) + u8(REFUSE) + u8(1) + post(0, UPCALL) + post(0, APC0) + post(0, POLL)
     + u8(LIVE) + u8(0) + outcome() + u8(LIVE) + u8(0) + outcome() + u8(LIVE) + u8(0) + outcome()
     + u8(REFUSE) + u8(0) + post(0, APC0) + u8(ABORT) + u8(0))
seed("token_decode", "churned_generations",
     u8(0) + u8(CHURN) + u8(15) + post(0, UPCALL) + u8(CHURN) + u8(15)
     + u8(FLIP) + u8(0) + u32(0x2) + outcome() + u8(LIVE) + u8(0) + outcome())

# --- sockopt: 8 bytes of max_rdma, then calls (see the target) -------------------------

SOCKET, GET, SET, BIND, LISTEN, ACCEPT, CONNECT, MISC = 0, 1, 3, 5, 6, 7, 8, 9
S0, S1, S2, S3 = 0, 1, 2, 3
SOL, THRESH, MAXRDMA = 0, 0, 2


def get(s, name=THRESH, optlen=4, level=SOL):
    return u8(GET) + u8(s) + u8(level) + u8(name) + u8(optlen)


def set_(s, value, name=THRESH, level=SOL):
    return u8(SET) + u8(s) + u8(level) + u8(name) + u8(len(value)) + value


seed("sockopt", "options_lifecycle",
     u64(1 << 20) + u8(SOCKET) + u8(S0) + get(S0) + set_(S0, u32(4096)) + get(S0, optlen=8)
     + get(S0, MAXRDMA) + set_(S0, u32(1), MAXRDMA) + get(S0, optlen=3) + set_(S0, b"\x01\x02")
     + u8(SOCKET) + u8(S1) + get(S1) + u8(MISC) + u8(S0) + u8(0) + get(S0)
     + u8(SOCKET) + u8(S0) + get(S0))
seed("sockopt", "max_rdma_saturates",
     u64(1 << 40) + u8(SOCKET) + u8(S2) + get(S2, MAXRDMA, 11))
seed("sockopt", "other_levels_and_names",
     u64(0x12345) + u8(SOCKET) + u8(S0) + u8(GET) + u8(S0) + u8(3) + i32(6) + u8(THRESH) + u8(4)
     + u8(GET) + u8(S0) + u8(SOL) + u8(3) + u8(0x0C) + u8(4)
     + u8(SET) + u8(S0) + u8(SOL) + u8(4) + i32(0x1001) + u8(4) + u32(1)
     + u8(GET) + u8(0xF5) + u64(0xDEAD) + u8(SOL) + u8(THRESH) + u8(4))
NIC, ANY4, ANY6, RAW_ADDR = 0, 1, 2, 3
seed("sockopt", "bind_listen_accept_connect",
     u64(65536) + u8(SOCKET) + u8(S0) + u8(BIND) + u8(S0) + u8(NIC) + u8(LISTEN) + u8(S0)
     + u8(ACCEPT) + u8(S0) + u8(S1) + get(S1) + set_(S1, u32(77)) + u8(ACCEPT) + u8(S0) + u8(S1)
     + u8(SOCKET) + u8(S2) + u8(BIND) + u8(S2) + u8(RAW_ADDR) + u32(0x0A000001) + u16(80)
     + u8(BIND) + u8(S2) + u8(ANY6) + u8(CONNECT) + u8(S2) + u8(NIC) + u8(CONNECT) + u8(S2)
     + u8(NIC) + u8(CONNECT) + u8(S0) + u8(NIC) + u8(LISTEN) + u8(S3)
     + u8(MISC) + u8(S1) + u8(1) + u8(1) + u8(MISC) + u8(S1) + u8(0) + get(S1))

# --- dispatch_ioctl: header, then steps (see Harness::new / Harness::step) -------------

W32, W64, QOS, VENDOR, NO_RDMA_READ = 0, 1, 2, 4, 8
VENDOR_NUMBER = 0x2A
# Indices into the target's ADDRESSES table.
A_V4, A_V4_PRIV, A_LOOP, A_LL6, A_GLOBAL6, A_6TO4, A_ISATAP = 0, 1, 2, 7, 8, 10, 14
TEMPORARY = 0x80

# Code selectors: KNOWN_CODES[0..=10], then 11 this provider's vendor code, 13 another
# family's vendor code, 14 a raw value.
(EXT, GET_QOS, GET_GROUP_QOS, SET_QOS, SET_GROUP_QOS, ADDR_QUERY, ADDR_CHANGE, ROUTING, FIONBIO,
 FIONREAD, SIOCATMARK) = range(11)
OWN_VENDOR, OTHER_VENDOR, RAW_CODE = 11, 13, 14
OP_IOCTL, OP_UP, OP_FIONBIO, OP_NOT_READY, OP_CLOSE, OP_OPEN, OP_POLL, OP_RDMA_READ, \
    OP_REFUSE, OP_ADDRESSES = 0, 7, 8, 9, 10, 11, 12, 13, 14, 15
BASE_PLAIN = u8(0)
IN_NONE, IN_RAW, IN_GUID, IN_QOS, IN_EMPTY, IN_RESET = 0, 1, 2, 3, 5, 6
# Call flags: bit 0 no lpcbBytesReturned, bit 1 overlapped, bit 2 routine, bit 3 no thread
# id, bits 4-5 hEvent (0 port, 1 poll-only, 2 event without port, 3 raw), bit 6 thread.
SYNC, NO_BYTES = 0x00, 0x01
OV_PORT, OV_POLL, OV_NOPORT, OV_APC, OV_APC_NO_THREAD = 0x02, 0x12, 0x22, 0x06, 0x0E


def header(flags, addrs=(A_V4, A_LL6, A_6TO4, A_LOOP), vendor=VENDOR_NUMBER):
    return u8(flags) + u16(vendor) + u8(len(addrs)) + b"".join(u8(a) for a in addrs)


def ioctl(code, input_=u8(IN_NONE), out=0xFF, flags=SYNC, socket=0, in_base=BASE_PLAIN,
          out_base=BASE_PLAIN, code_extra=b""):
    sock = u8(socket) + (u64(0xDEAD_0000) if socket >= 0xF0 else b"")
    return (u8(OP_IOCTL) + sock + u8(code) + code_extra + in_base + input_ + u8(out)
            + out_base + u8(flags))


def guid_in(i, length=16):
    return u8(IN_GUID) + u8(i) + u8(length)


def fs_best_effort(rate):
    return u8(1) + u32(rate)


def fs_service(service_index, rate):
    return u8(2) + u8(service_index) + u32(rate)


def qos_in(sending, receiving, provider=b"", damage=b"\x00"):
    return u8(IN_QOS) + sending + receiving + u8(len(provider)) + provider + damage


GOOD_QOS = qos_in(fs_best_effort(1000), fs_best_effort(2000), b"vend")
GUARANTEED_QOS = qos_in(fs_service(3, 1000), u8(0))

for i, (name, _, _) in enumerate(FUNCS):
    for width, wname in ((W32, "w32"), (W64, "w64")):
        seed("dispatch_ioctl", f"ext_{name}_{wname}",
             header(width | VENDOR) + ioctl(EXT, guid_in(i), out=8))
seed("dispatch_ioctl", "ext_rdma_read_not_offered",
     header(W64 | NO_RDMA_READ) + ioctl(EXT, guid_in(5), out=8) + u8(OP_RDMA_READ) + u8(1)
     + ioctl(EXT, guid_in(5), out=8))
seed("dispatch_ioctl", "ext_short_unknown_and_small_output",
     header(W64) + ioctl(EXT, guid_in(4, 8), out=8) + ioctl(EXT, u8(IN_GUID) + u8(7) + bytes(16)
                                                           + u8(16), out=8)
     + ioctl(EXT, guid_in(4), out=4) + ioctl(EXT, guid_in(4), out=8, flags=NO_BYTES)
     + ioctl(EXT, guid_in(4, 20), out=16))
seed("dispatch_ioctl", "ext_overlapped_every_mode",
     header(W64) + ioctl(EXT, guid_in(0), out=8, flags=OV_PORT)
     + ioctl(EXT, guid_in(1), out=8, flags=OV_POLL) + ioctl(EXT, guid_in(2), out=8, flags=OV_NOPORT)
     + ioctl(EXT, guid_in(3), out=8, flags=OV_APC) + ioctl(EXT, guid_in(4), out=8,
                                                           flags=OV_APC | 0x40)
     + ioctl(EXT, guid_in(4), out=8, flags=OV_APC_NO_THREAD))
for width, wname in ((W32, "w32"), (W64, "w64")):
    seed("dispatch_ioctl", f"addr_query_{wname}",
         header(width, addrs=(A_V4, A_LL6, A_GLOBAL6 | TEMPORARY, A_ISATAP))
         + ioctl(ADDR_QUERY, out=200) + ioctl(ADDR_QUERY, out=8) + ioctl(ADDR_QUERY, out=200,
                                                                          flags=NO_BYTES))
seed("dispatch_ioctl", "addr_query_changes_and_edges",
     header(W32, addrs=(A_V4_PRIV, A_GLOBAL6)) + ioctl(ADDR_QUERY, out=0xFF)
     + ioctl(ADDR_QUERY, out=100, out_base=u8(3) + u8(0x20))
     + u8(OP_ADDRESSES) + u8(3) + u8(A_V4) + u8(0x3F) + bytes(16) + u8(0x3E) + u32(0x0A000001)
     + ioctl(ADDR_QUERY, out=254, flags=OV_APC) + ioctl(ADDR_QUERY, out=254, out_base=u8(2)
                                                         + u64(0x1_0000_0000)))
seed("dispatch_ioctl", "qos_set_then_get",
     header(W64 | QOS) + ioctl(SET_QOS, GOOD_QOS) + ioctl(GET_QOS, out=200)
     + ioctl(GET_QOS, out=40) + ioctl(GET_GROUP_QOS, out=100) + ioctl(SET_GROUP_QOS, GOOD_QOS)
     + ioctl(SET_QOS, GUARANTEED_QOS))
seed("dispatch_ioctl", "qos_set_then_get_w32",
     header(W32 | QOS) + ioctl(SET_QOS, GOOD_QOS, in_base=u8(1) + u32(0x40_0000))
     + ioctl(GET_QOS, out=120, out_base=u8(1) + u32(0x50_0000)))
seed("dispatch_ioctl", "qos_pending_and_poll",
     header(W64 | QOS | 0x20) + u8(OP_NOT_READY) + u8(3) + ioctl(SET_QOS, GOOD_QOS, flags=OV_PORT)
     + ioctl(GET_QOS, out=200, flags=OV_APC) + ioctl(GET_QOS, out=200, flags=OV_POLL)
     + u8(OP_POLL) + u8(OP_POLL) + u8(OP_NOT_READY) + u8(1) + ioctl(GET_QOS, out=16, flags=OV_PORT))
seed("dispatch_ioctl", "qos_nonblocking_blocking_and_close",
     header(W64 | QOS) + u8(OP_NOT_READY) + u8(3) + u8(OP_FIONBIO) + u8(0) + u8(1)
     + ioctl(GET_QOS, out=200) + ioctl(SET_QOS, GOOD_QOS, flags=OV_NOPORT) + u8(OP_FIONBIO) + u8(0)
     + u8(0) + ioctl(GET_QOS, out=200) + u8(OP_NOT_READY) + u8(1)
     + ioctl(SET_QOS, GOOD_QOS, flags=OV_APC) + u8(OP_CLOSE) + u8(0))
seed("dispatch_ioctl", "qos_damaged_input",
     header(W64 | QOS) + ioctl(SET_QOS, qos_in(fs_best_effort(1), fs_best_effort(1), b"ab",
                                               b"\x01" + u8(66) + u8(0x40)))
     + ioctl(SET_QOS, qos_in(fs_best_effort(1), fs_best_effort(1), b"", b"\x02" + u8(70)))
     + ioctl(SET_QOS, qos_in(fs_best_effort(1), fs_best_effort(1), b"", b"\x01" + u8(20)
                                + u8(0x40)))
     + ioctl(SET_QOS, u8(IN_RAW) + u8(3) + b"abc") + ioctl(SET_QOS, u8(IN_NONE))
     + ioctl(SET_QOS, GOOD_QOS, in_base=u8(3) + u8(0x10)))
seed("dispatch_ioctl", "qos_not_supported",
     header(W64) + ioctl(GET_QOS, out=200) + ioctl(SET_QOS, GOOD_QOS) + ioctl(GET_GROUP_QOS, out=8))
seed("dispatch_ioctl", "qos_table_full",
     header(W64 | QOS) + u8(OP_NOT_READY) + u8(3) + ioctl(SET_QOS, GOOD_QOS, flags=OV_PORT)
     + ioctl(SET_QOS, GOOD_QOS, flags=OV_PORT) + ioctl(SET_QOS, GOOD_QOS, flags=OV_PORT)
     + ioctl(EXT, guid_in(0), out=8, flags=OV_PORT) + ioctl(ADDR_QUERY, out=200, flags=OV_APC)
     + u8(OP_CLOSE) + u8(0))
for code, name in ((ADDR_CHANGE, "addr_change"), (ROUTING, "routing_query"),
                   (FIONBIO, "fionbio"), (FIONREAD, "fionread"), (SIOCATMARK, "siocatmark")):
    seed("dispatch_ioctl", f"not_supported_{name}",
         header(W64) + ioctl(code, u8(IN_RAW) + u8(4) + u32(1), out=4)
         + ioctl(code, out=4, flags=OV_PORT))
seed("dispatch_ioctl", "vendor_codes",
     header(W64 | VENDOR) + ioctl(OWN_VENDOR, u8(IN_RAW) + u8(4) + b"ping", out=8,
                                  code_extra=u8(6) + u16(1))
     + ioctl(OWN_VENDOR, u8(IN_RESET), out=8, code_extra=u8(4) + u16(2))
     + ioctl(OWN_VENDOR, u8(IN_RAW) + u8(4) + b"ping", code_extra=u8(6) + u16(3))
     + ioctl(OWN_VENDOR, u8(IN_RAW) + u8(4) + b"ping", out=2, flags=OV_APC,
             code_extra=u8(6) + u16(4))
     + ioctl(OTHER_VENDOR, u8(IN_RAW) + u8(4) + b"ping", out=8,
             code_extra=u8(6) + u16(0x2B) + u16(1))
     + ioctl(RAW_CODE, out=8, code_extra=u32(0xD82A0005)))
seed("dispatch_ioctl", "sockets_and_transport",
     header(W64) + ioctl(EXT, guid_in(0), out=8, socket=2) + ioctl(EXT, guid_in(0), out=8,
                                                                   socket=0xF0)
     + u8(OP_OPEN) + u8(2) + u8(OP_OPEN) + u8(2) + ioctl(EXT, guid_in(0), out=8, socket=2)
     + u8(OP_UP) + u8(0) + ioctl(ADDR_QUERY, out=100) + u8(OP_UP) + u8(1)
     + u8(OP_CLOSE) + u8(1) + u8(OP_CLOSE) + u8(1) + ioctl(ADDR_QUERY, out=100, socket=1)
     + u8(OP_FIONBIO) + u8(1) + u8(1) + u8(OP_REFUSE) + u8(1)
     + ioctl(ADDR_QUERY, out=100, flags=OV_PORT) + ioctl(EXT, guid_in(0), out=8, flags=OV_APC))


def main():
    for target, seeds in sorted(SEEDS.items()):
        d = os.path.join(HERE, target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, data in sorted(seeds.items()):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print(f"{target}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
