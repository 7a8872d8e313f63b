//! Control codes: any `u32` decodes, displays, and parses back (hex, decimal and, for
//! known codes, name); its fields rebuild it with `IoctlCode::new`. Arbitrary text given
//! to `str::parse::<IoctlCode>` must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use san_spi_core::ioctl::IoctlCode;

fn check_code(raw: u32) {
    let code = IoctlCode::from_raw(raw);
    assert_eq!(code.raw(), raw);
    assert_eq!(u32::from(code), raw);

    // Display starts with the hex value; it parses back.
    let shown = code.to_string();
    let first = shown
        .split_whitespace()
        .next()
        .expect("Display is not empty");
    assert_eq!(first.parse::<IoctlCode>(), Ok(code), "Display: {shown}");
    assert!(
        shown.contains(&format!("family=0x{:03X}", code.family())),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("code=0x{:04X}", code.number())),
        "{shown}"
    );
    let _ = format!("{code:?}");

    for text in [
        format!("{raw}"),
        format!("{raw:#x}"),
        format!("{raw:#X}"),
        format!("  {raw:#010x}\n"),
    ] {
        assert_eq!(text.parse::<IoctlCode>(), Ok(code), "parsing {text:?}");
    }

    // The fields rebuild the code.
    let rebuilt = IoctlCode::new(
        code.flags(),
        code.ioctl_type(),
        code.family(),
        code.number(),
    );
    assert_eq!(rebuilt, code);
    assert_eq!(
        IoctlCode::try_new(
            code.flags(),
            code.ioctl_type(),
            code.family(),
            code.number()
        ),
        Some(code)
    );

    // A known code round-trips through its name.
    if let Some(name) = code.name() {
        assert_eq!(IoctlCode::from_name(name), Some(code));
        assert_eq!(name.parse::<IoctlCode>(), Ok(code));
    }
}

fuzz_target!(|data: &[u8]| {
    for chunk in data.chunks_exact(4).take(16) {
        check_code(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<IoctlCode>();
    }
    let _ = String::from_utf8_lossy(data).parse::<IoctlCode>();
});
