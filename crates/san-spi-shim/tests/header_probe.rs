//! Header probe: the shim's ABI types, for both pointer widths, compared with the mingw-w64
//! Windows headers.
//!
//! From the width-generic descriptions of `san_spi_shim::abi::layout` the test writes a C
//! file of `_Static_assert`s — per record `sizeof`, `_Alignof`, and per field `offsetof`,
//! `sizeof` and its C type (`_Generic`); per alias its size, alignment, signedness and C
//! type; per function pointer type its full signature including `__stdcall`; the array
//! lengths; the slot count of both tables and the index of every slot — and compiles it
//! with `i686-w64-mingw32-gcc` (the x86 layout) and `x86_64-w64-mingw32-gcc` (the x64
//! layout) against `winsock2.h`, `ws2tcpip.h`, `ws2spi.h` and `ddk/ws2san.h`, included in
//! that order (`winsock2.h` first: on x86 `ws2spi.h` wraps itself in `pshpack4.h`). A
//! mismatch is a compile error naming the fact. Nothing needs to run.
//!
//! The compilers come from Debian's `gcc-mingw-w64-x86-64` and `gcc-mingw-w64-i686`;
//! `cargo xtask ci` installs them. Without them this test fails: it never skips.

use san_spi_core::addr::Width;
use san_spi_shim::abi::layout::{FnSig, Kind, Record, Ty, ALIASES, CONSTANTS, FN_TYPES, RECORDS};
use san_spi_shim::abi::{WSPPROC_TABLE_SLOTS, WSPUPCALLTABLEEX_SLOTS};
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

/// The Rust integer types, which have no C spelling (only size and sign are compared).
const RUST_PRIMITIVES: &[&str] = &["u8", "i8", "u16", "i16", "u32", "i32", "usize", "isize"];

/// The C spelling of a Rust type as written in the ABI module: an alias name (the same in
/// C), `c_void`, or a raw pointer to one of those. `stringify!` may space `*const T` as
/// `* const T`.
fn c_type(rust: &str) -> String {
    let spaced = rust.replace('*', " * ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    fn go(t: &[&str], whole: &str) -> String {
        match t {
            ["*", "mut", rest @ ..] => format!("{} *", go(rest, whole)),
            ["*", "const", rest @ ..] => format!("{} const *", go(rest, whole)),
            ["c_void"] => "void".to_owned(),
            [name] if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                assert!(
                    !RUST_PRIMITIVES.contains(name),
                    "`{whole}`: a Rust primitive has no C spelling; use the Windows alias"
                );
                (*name).to_owned()
            }
            _ => panic!("no C spelling for the Rust type `{whole}`"),
        }
    }
    go(&tokens, rust)
}

/// The element type of an array type as written, `[T; N]`.
fn array_elem(rust: &str) -> &str {
    let inner = rust
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or_else(|| panic!("not an array type: {rust}"));
    inner.split(';').next().unwrap().trim()
}

/// The C function pointer type of a signature: `__stdcall` is what `extern "system"` is
/// on x86 (and what gcc ignores on x64).
fn c_fn_type(sig: &FnSig, conv: &str) -> String {
    let params: Vec<String> = sig.params.iter().map(|p| c_type(p.rust_type)).collect();
    let params = if params.is_empty() {
        "void".to_owned()
    } else {
        params.join(", ")
    };
    format!("{} ({conv} *)({params})", c_type(sig.ret))
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
            "_Static_assert((unsigned long long)({c_expr}) == {value}ULL, \"{} != {value} (shim)\");",
            c_expr.replace('"', "'")
        )
        .unwrap();
    }

    /// `_Static_assert` that the expression has C type `c_ty` (compatible, as `_Generic`
    /// decides: `DWORD` is not `UINT`, `__stdcall` is not `__cdecl` on x86).
    fn is_type(&mut self, c_expr: &str, c_ty: &str, rust: &str) {
        self.facts += 1;
        writeln!(
            self.src,
            "_Static_assert(_Generic(({c_expr}), {c_ty}: 1, default: 0), \"{} is not {} (shim: {})\");",
            c_expr.replace('"', "'"),
            c_ty,
            rust
        )
        .unwrap();
    }
}

/// offsetof/sizeof/type of every field of `rec`, reached from the named record `c` by
/// `prefix`; unnamed members are flattened, named nested records descended into.
fn field_facts(p: &mut Probe, w: Width, c: &str, prefix: &str, base: usize, rec: &Record) {
    for (i, f) in rec.fields.iter().enumerate() {
        let offset = base + rec.offset(i, w);
        if let Ty::Record(inner) = f.ty {
            if inner.c_name.is_none() {
                field_facts(p, w, c, prefix, offset, inner);
                continue;
            }
        }
        let path = format!("{prefix}{}", f.name);
        let member = format!("(({c} *)0)->{path}");
        p.eq(&format!("offsetof({c}, {path})"), offset as u64);
        p.eq(&format!("sizeof({member})"), f.ty.size(w) as u64);
        match f.ty {
            Ty::Array(elem, n) => {
                p.eq(&format!("sizeof({member}) / sizeof({member}[0])"), n as u64);
                p.eq(&format!("sizeof({member}[0])"), elem.size(w) as u64);
                p.is_type(
                    &format!("{member}[0]"),
                    &c_type(array_elem(f.rust_type)),
                    f.rust_type,
                );
            }
            _ => p.is_type(&member, &c_type(f.rust_type), f.rust_type),
        }
        if let Ty::Record(inner) = f.ty {
            field_facts(p, w, c, &format!("{path}."), offset, inner);
        }
    }
}

/// Fact counts by group, for the summary line.
#[derive(Default, Debug)]
struct Counts {
    records: usize,
    aliases: usize,
    constants: usize,
    signatures: usize,
    slots: usize,
}

fn facts(w: Width) -> (Probe, Counts) {
    let mut p = Probe::new();
    let mut n = Counts::default();
    p.eq("sizeof(void *)", w.pointer_len() as u64);

    // Records.
    let before = p.facts;
    for rec in RECORDS {
        let c = match rec.c_name {
            Some(c) => c,
            None => continue, // checked through the records that contain it
        };
        p.eq(&format!("sizeof({c})"), rec.size(w) as u64);
        p.eq(&format!("_Alignof({c})"), rec.align(w) as u64);
        field_facts(&mut p, w, c, "", 0, rec);
    }
    // An anonymous record must be reached from some named one.
    for rec in RECORDS.iter().filter(|r| r.c_name.is_none()) {
        assert!(
            RECORDS
                .iter()
                .any(|outer| outer.fields.iter().any(|f| f.ty == Ty::Record(rec))),
            "{} is used by no record",
            rec.name
        );
    }
    n.records = p.facts - before;

    // Aliases.
    let before = p.facts;
    for a in ALIASES {
        p.eq(&format!("sizeof({})", a.name), a.ty.size(w) as u64);
        p.eq(&format!("_Alignof({})", a.name), a.ty.align(w) as u64);
        match a.ty {
            Ty::Int { signed, .. } | Ty::IntPtr { signed } => {
                p.eq(&format!("(({0})-1 < ({0})0)", a.name), u64::from(signed))
            }
            Ty::Ptr => {}
            other => panic!("alias {} of unexpected kind {other:?}", a.name),
        }
        if a.same_c_type && !RUST_PRIMITIVES.contains(&a.rust_type) {
            p.is_type(&format!("({})0", a.name), &c_type(a.rust_type), a.rust_type);
        }
    }
    n.aliases = p.facts - before;

    // Constants.
    let before = p.facts;
    for k in CONSTANTS {
        p.eq(k.name, k.value);
    }
    n.constants = p.facts - before;

    // Function pointer types: the full signature.
    let before = p.facts;
    for sig in FN_TYPES {
        p.is_type(
            &format!("({})0", sig.name),
            &c_fn_type(sig, "__stdcall"),
            "extern system fn",
        );
    }
    n.signatures = p.facts - before;

    // The tables: slot counts, and each slot's name at its index.
    let before = p.facts;
    for (table, slots) in [
        ("WSPPROC_TABLE", WSPPROC_TABLE_SLOTS),
        ("WSPUPCALLTABLEEX", WSPUPCALLTABLEEX_SLOTS),
    ] {
        let rec = RECORDS
            .iter()
            .find(|r| r.c_name == Some(table))
            .unwrap_or_else(|| panic!("{table} is not described"));
        assert_eq!(rec.fields.len(), slots, "{table}: slots on the Rust side");
        assert_eq!(rec.kind, Kind::Struct);
        p.eq(&format!("sizeof({table}) / sizeof(void *)"), slots as u64);
        p.eq(&format!("sizeof({table}) % sizeof(void *)"), 0);
        for (i, f) in rec.fields.iter().enumerate() {
            assert_eq!(f.ty, Ty::Ptr, "{table}.{}", f.name);
            p.eq(
                &format!("offsetof({table}, {}) / sizeof(void *)", f.name),
                i as u64,
            );
        }
    }
    n.slots = p.facts - before;
    (p, n)
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shim_header_probe");
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

fn compile(width: Width, name: &str, src: &str) -> std::process::Output {
    let path = out_dir().join(format!("{name}_w{}.c", width.bits()));
    std::fs::write(&path, src).unwrap();
    run(
        Command::new(compiler(width))
            .args(["-std=c11", "-fsyntax-only"])
            .arg(&path),
        compiler(width),
    )
}

/// Every record, field, alias, constant, signature and table slot of the shim equals the
/// headers', at 32 and 64 bits.
#[test]
fn header_probe_abi_types_match_mingw_headers() {
    for width in Width::ALL {
        let (probe, counts) = facts(width);
        println!(
            "{width}: {} facts ({counts:?}) checked by {}",
            probe.facts,
            compiler(width)
        );
        assert!(probe.facts > 500, "only {} facts", probe.facts);
        let out = compile(width, "abi", &probe.src);
        assert!(
            out.status.success(),
            "{} facts differ from the {} headers:\n{}",
            width,
            width,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The probe itself catches a difference: a wrong size, a wrong field type, a wrong
/// parameter type and (on x86) a wrong calling convention fail to compile.
#[test]
fn header_probe_detects_wrong_facts() {
    let cases: &[(Width, &str, &str)] = &[
        (
            Width::W64,
            "_Static_assert(sizeof(WSABUF) == 12, \"WSABUF 12\");",
            "WSABUF 12",
        ),
        (
            Width::W64,
            "_Static_assert(_Generic(((WSABUF *)0)->len, UINT: 1, default: 0), \"len UINT\");",
            "len UINT",
        ),
        (
            Width::W64,
            "_Static_assert(_Generic((LPWSPLISTEN)0, INT (__stdcall *)(SOCKET, DWORD, LPINT): 1, default: 0), \"listen DWORD\");",
            "listen DWORD",
        ),
        (
            Width::W32,
            "_Static_assert(_Generic((LPWSPLISTEN)0, INT (__cdecl *)(SOCKET, INT, LPINT): 1, default: 0), \"listen cdecl\");",
            "listen cdecl",
        ),
    ];
    for (width, line, message) in cases {
        let out = compile(*width, "wrong", &format!("{INCLUDES}{line}\n"));
        assert!(!out.status.success(), "{message}: compiled");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{message}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And the right ones compile.
    let right = "_Static_assert(_Generic((LPWSPLISTEN)0, INT (__stdcall *)(SOCKET, INT, LPINT): 1, default: 0), \"listen\");\n";
    for width in Width::ALL {
        let out = compile(width, "right", &format!("{INCLUDES}{right}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
