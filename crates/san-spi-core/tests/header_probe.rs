//! Header probe: every size, offset and constant the core relies on, compared with the
//! mingw-w64 Windows headers for both pointer widths.
//!
//! The test writes a C file of `_Static_assert`s whose expected values come from the core's
//! public constants, and compiles it with `x86_64-w64-mingw32-gcc` (the x64 layout) and
//! `i686-w64-mingw32-gcc` (the x86 layout) against `winsock2.h`, `ws2tcpip.h`, `ws2spi.h`
//! and `ddk/ws2san.h`, included in that order. A mismatch is a compile error naming the
//! fact. The `WSAID_*` GUIDs are brace initialisers, not constant expressions, so they are
//! read from the preprocessor's output and compared here. Nothing needs to run.
//!
//! The compilers come from Debian's `gcc-mingw-w64-x86-64` and `gcc-mingw-w64-i686`;
//! `cargo xtask ci` installs them. Without them this test fails: it never skips.

use san_spi_core::addr::{field as list_field, sockaddr, Width};
use san_spi_core::guid::ExtensionFunction;
use san_spi_core::ioctl::{self, KNOWN_CODES};
use san_spi_core::qos::{self, ServiceType};
use san_spi_core::WsaError;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

const INCLUDES: &str = "#include <winsock2.h>\n#include <ws2tcpip.h>\n#include <ws2spi.h>\n#include <ddk/ws2san.h>\n#include <qos.h>\n#include <stddef.h>\n";

fn compiler(width: Width) -> &'static str {
    match width {
        Width::W32 => "i686-w64-mingw32-gcc",
        Width::W64 => "x86_64-w64-mingw32-gcc",
    }
}

struct Probe {
    src: String,
    facts: usize,
}

impl Probe {
    fn new() -> Probe {
        Probe {
            src: String::from(INCLUDES),
            facts: 0,
        }
    }

    /// `_Static_assert((C expression) == value)`, the message naming the fact and the value.
    fn eq(&mut self, c_expr: &str, value: u64) {
        self.facts += 1;
        writeln!(
            self.src,
            "_Static_assert((unsigned long long)({c_expr}) == {value}ULL, \"{} != {value} (core)\");",
            c_expr.replace('"', "'")
        )
        .unwrap();
    }
}

fn layout_facts(width: Width) -> Probe {
    let mut p = Probe::new();
    let w = width;

    // Pointer width and SOCKET_ADDRESS / SOCKET_ADDRESS_LIST.
    p.eq("sizeof(void *)", w.pointer_len() as u64);
    p.eq("sizeof(LPSOCKADDR)", w.pointer_len() as u64);
    p.eq("sizeof(INT)", 4);
    p.eq("sizeof(SOCKET_ADDRESS)", w.entry_len() as u64);
    p.eq("_Alignof(SOCKET_ADDRESS)", w.pointer_len() as u64);
    let entry0 = list_field::ENTRY(w, 0).start;
    p.eq(
        "offsetof(SOCKET_ADDRESS, lpSockaddr)",
        (list_field::SOCKADDR_PTR(w, 0).start - entry0) as u64,
    );
    p.eq(
        "sizeof(((SOCKET_ADDRESS *)0)->lpSockaddr)",
        list_field::SOCKADDR_PTR(w, 0).len() as u64,
    );
    p.eq(
        "offsetof(SOCKET_ADDRESS, iSockaddrLength)",
        (list_field::SOCKADDR_LEN(w, 0).start - entry0) as u64,
    );
    p.eq(
        "offsetof(SOCKET_ADDRESS_LIST, iAddressCount)",
        list_field::ADDRESS_COUNT.start as u64,
    );
    p.eq(
        "sizeof(((SOCKET_ADDRESS_LIST *)0)->iAddressCount)",
        list_field::ADDRESS_COUNT.len() as u64,
    );
    p.eq(
        "offsetof(SOCKET_ADDRESS_LIST, Address)",
        w.header_len() as u64,
    );
    p.eq(
        "offsetof(SOCKET_ADDRESS_LIST, Address[1])",
        list_field::ENTRY(w, 1).start as u64,
    );
    p.eq(
        "offsetof(SOCKET_ADDRESS_LIST, Address[1].iSockaddrLength)",
        list_field::SOCKADDR_LEN(w, 1).start as u64,
    );

    // SOCKADDR_IN / SOCKADDR_IN6 and the families.
    use sockaddr::field as sa;
    p.eq("AF_INET", sockaddr::AF_INET as u64);
    p.eq("AF_INET6", sockaddr::AF_INET6 as u64);
    p.eq("sizeof(SOCKADDR_IN)", sockaddr::SOCKADDR_IN_LEN as u64);
    p.eq("offsetof(SOCKADDR_IN, sin_family)", sa::FAMILY.start as u64);
    p.eq(
        "sizeof(((SOCKADDR_IN *)0)->sin_family)",
        sa::FAMILY.len() as u64,
    );
    p.eq("offsetof(SOCKADDR_IN, sin_port)", sa::PORT.start as u64);
    p.eq("offsetof(SOCKADDR_IN, sin_addr)", sa::IN_ADDR.start as u64);
    p.eq("offsetof(SOCKADDR_IN, sin_zero)", sa::IN_ZERO.start as u64);
    p.eq(
        "sizeof(((SOCKADDR_IN *)0)->sin_zero)",
        sa::IN_ZERO.len() as u64,
    );
    p.eq("sizeof(SOCKADDR_IN6)", sockaddr::SOCKADDR_IN6_LEN as u64);
    p.eq("_Alignof(SOCKADDR_IN6) <= 4", 1);
    p.eq(
        "offsetof(SOCKADDR_IN6, sin6_family)",
        sa::FAMILY.start as u64,
    );
    p.eq("offsetof(SOCKADDR_IN6, sin6_port)", sa::PORT.start as u64);
    p.eq(
        "offsetof(SOCKADDR_IN6, sin6_flowinfo)",
        sa::IN6_FLOWINFO.start as u64,
    );
    p.eq(
        "offsetof(SOCKADDR_IN6, sin6_addr)",
        sa::IN6_ADDR.start as u64,
    );
    p.eq(
        "sizeof(((SOCKADDR_IN6 *)0)->sin6_addr)",
        sa::IN6_ADDR.len() as u64,
    );
    p.eq(
        "offsetof(SOCKADDR_IN6, sin6_scope_id)",
        sa::IN6_SCOPE_ID.start as u64,
    );
    p.eq(
        "sizeof(SOCKADDR_STORAGE)",
        sockaddr::SOCKADDR_STORAGE_LEN as u64,
    );

    // FLOWSPEC and QOS.
    use qos::field as qf;
    p.eq("sizeof(FLOWSPEC)", qos::FLOWSPEC_LEN as u64);
    for (name, r) in [
        ("TokenRate", qf::TOKEN_RATE),
        ("TokenBucketSize", qf::TOKEN_BUCKET_SIZE),
        ("PeakBandwidth", qf::PEAK_BANDWIDTH),
        ("Latency", qf::LATENCY),
        ("DelayVariation", qf::DELAY_VARIATION),
        ("ServiceType", qf::SERVICE_TYPE),
        ("MaxSduSize", qf::MAX_SDU_SIZE),
        ("MinimumPolicedSize", qf::MINIMUM_POLICED_SIZE),
    ] {
        p.eq(&format!("offsetof(FLOWSPEC, {name})"), r.start as u64);
        p.eq(&format!("sizeof(((FLOWSPEC *)0)->{name})"), r.len() as u64);
    }
    p.eq("sizeof(QOS)", qos::qos_len(w) as u64);
    p.eq(
        "offsetof(QOS, SendingFlowspec)",
        qf::SENDING_FLOWSPEC.start as u64,
    );
    p.eq(
        "offsetof(QOS, ReceivingFlowspec)",
        qf::RECEIVING_FLOWSPEC.start as u64,
    );
    p.eq(
        "offsetof(QOS, ProviderSpecific)",
        qf::PROVIDER_SPECIFIC_LEN.start as u64,
    );
    p.eq(
        "offsetof(QOS, ProviderSpecific.len)",
        qf::PROVIDER_SPECIFIC_LEN.start as u64,
    );
    p.eq(
        "offsetof(QOS, ProviderSpecific.buf)",
        qf::PROVIDER_SPECIFIC_BUF(w).start as u64,
    );
    p.eq(
        "sizeof(((QOS *)0)->ProviderSpecific.buf)",
        qf::PROVIDER_SPECIFIC_BUF(w).len() as u64,
    );
    p.eq("QOS_NOT_SPECIFIED", qos::QOS_NOT_SPECIFIED as u64);
    p.eq(
        "SERVICE_NO_TRAFFIC_CONTROL",
        qos::SERVICE_NO_TRAFFIC_CONTROL as u64,
    );
    p.eq(
        "SERVICE_NO_QOS_SIGNALING",
        qos::SERVICE_NO_QOS_SIGNALING as u64,
    );
    let service_names = [
        "SERVICETYPE_NOTRAFFIC",
        "SERVICETYPE_BESTEFFORT",
        "SERVICETYPE_CONTROLLEDLOAD",
        "SERVICETYPE_GUARANTEED",
        "SERVICETYPE_NETWORK_UNAVAILABLE",
        "SERVICETYPE_GENERAL_INFORMATION",
        "SERVICETYPE_NOCHANGE",
        "SERVICETYPE_NONCONFORMING",
        "SERVICETYPE_NETWORK_CONTROL",
        "SERVICETYPE_QUALITATIVE",
    ];
    assert_eq!(service_names.len(), ServiceType::ALL.len());
    for (name, s) in service_names.iter().zip(ServiceType::ALL.iter()) {
        p.eq(name, *s as u64);
    }

    // Control codes.
    for (name, v) in [
        ("IOC_IN", ioctl::IOC_IN),
        ("IOC_OUT", ioctl::IOC_OUT),
        ("IOC_INOUT", ioctl::IOC_INOUT),
        ("IOC_VOID", ioctl::IOC_VOID),
        ("IOC_UNIX", ioctl::IOC_UNIX),
        ("IOC_WS2", ioctl::IOC_WS2),
        ("IOC_PROTOCOL", ioctl::IOC_PROTOCOL),
        ("IOC_VENDOR", ioctl::IOC_VENDOR),
    ] {
        p.eq(&format!("(DWORD)({name})"), v as u64);
    }
    for k in KNOWN_CODES.iter() {
        p.eq(&format!("(DWORD)({})", k.name), k.code.raw() as u64);
    }

    // Error codes.
    for e in WsaError::ALL {
        p.eq(e.name(), e.code() as u64);
    }
    p
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("header_probe");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run {what}: {e}. Install Debian's gcc-mingw-w64-x86-64 and \
             gcc-mingw-w64-i686 (`cargo xtask ci` does so as root)"
        ),
    }
}

/// The layouts and constants of the core equal the headers', at 32 and 64 bits.
#[test]
fn header_probe_layouts_and_constants_match_mingw_headers() {
    for width in Width::ALL {
        let probe = layout_facts(width);
        assert!(probe.facts > 100, "only {} facts", probe.facts);
        let path = out_dir().join(format!("probe_w{}.c", width.bits()));
        std::fs::write(&path, &probe.src).unwrap();
        let out = run(
            Command::new(compiler(width))
                .args(["-std=c11", "-c", "-o"])
                .arg(path.with_extension("o"))
                .arg(&path),
            compiler(width),
        );
        assert!(
            out.status.success(),
            "{} facts differ from the {} headers ({}):\n{}",
            width,
            width,
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Parses `{0xC0B422F5, 0xF58C, 0x11d1, {0xAD, …}}` into the GUID's Windows bytes.
fn guid_bytes(init: &str) -> Vec<u8> {
    let nums: Vec<u64> = init
        .split(|c: char| c == ',' || c == '{' || c == '}' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| {
            let t = t.trim_end_matches(['u', 'U', 'l', 'L']);
            u64::from_str_radix(t.trim_start_matches("0x").trim_start_matches("0X"), 16)
                .unwrap_or_else(|_| panic!("not a hex number: {t:?} in {init}"))
        })
        .collect();
    assert_eq!(nums.len(), 11, "a GUID initialiser has 11 numbers: {init}");
    let mut b = Vec::new();
    b.extend_from_slice(&(nums[0] as u32).to_le_bytes());
    b.extend_from_slice(&(nums[1] as u16).to_le_bytes());
    b.extend_from_slice(&(nums[2] as u16).to_le_bytes());
    b.extend(nums[3..].iter().map(|&n| n as u8));
    b
}

/// R-EXT-1, R-EXT-2: the seven `WSAID_*` GUIDs of `ddk/ws2san.h`, in Windows byte layout.
#[test]
fn header_probe_r_ext_2_guids_match_ws2san_h() {
    for width in Width::ALL {
        let mut src = String::from(INCLUDES);
        // The left side names the function by index: a macro name there would expand too.
        for (i, f) in ExtensionFunction::ALL.iter().enumerate() {
            writeln!(src, "san_spi_probe_{i} = {} ;", f.guid_name()).unwrap();
        }
        let path = out_dir().join(format!("guids_w{}.c", width.bits()));
        std::fs::write(&path, &src).unwrap();
        let out = run(
            Command::new(compiler(width)).args(["-E", "-P"]).arg(&path),
            compiler(width),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut seen = 0;
        for line in text.lines().filter(|l| l.starts_with("san_spi_probe")) {
            let (lhs, rhs) = line.split_once('=').unwrap();
            let index: usize = lhs
                .trim_start_matches("san_spi_probe_")
                .trim()
                .parse()
                .unwrap();
            let f = ExtensionFunction::ALL[index];
            let name = f.guid_name();
            let init = rhs.trim().trim_end_matches(';').trim();
            assert_eq!(
                guid_bytes(init),
                f.windows_bytes().to_vec(),
                "{name} differs from ws2san.h ({width})"
            );
            seen += 1;
        }
        assert_eq!(seen, 7, "every WSAID_* was found in the preprocessed probe");
    }
}

/// The probe itself catches a difference: a wrong value fails to compile.
#[test]
fn header_probe_detects_a_wrong_value() {
    let mut p = Probe::new();
    p.eq("sizeof(SOCKET_ADDRESS)", 12);
    let path = out_dir().join("probe_wrong.c");
    std::fs::write(&path, &p.src).unwrap();
    let out = run(
        Command::new(compiler(Width::W64))
            .args(["-std=c11", "-fsyntax-only"])
            .arg(&path),
        compiler(Width::W64),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sizeof(SOCKET_ADDRESS) != 12"));
}
