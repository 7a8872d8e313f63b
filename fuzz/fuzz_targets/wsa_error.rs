//! `WsaError`: every `i32` either is one of the known codes — and then `from_code`,
//! `TryFrom<i32>`, `FromStr` (decimal and C name, any case), `Display` and `code()` agree
//! — or is none of them and every conversion reports `UnknownWsaError` with that value.
//! The table itself round-trips (`from_code(e.code()) == Some(e)` for every `e`), its codes
//! are unique and ascending, and the R-RET-3 subset is what `is_wspioctl_code` says.
//! Arbitrary text given to `str::parse::<WsaError>` must not panic and must only succeed
//! for a decimal code or a C name.
//!
//! Input: up to 16 little-endian `i32`s, then the same bytes as text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use san_spi_core::error::UnknownWsaError;
use san_spi_core::WsaError;
use std::sync::Once;

/// Properties of the whole table, checked once per process.
fn check_table() {
    for &e in WsaError::ALL {
        assert_eq!(WsaError::from_code(e.code()), Some(e), "{e:?}");
        assert_eq!(WsaError::try_from(e.code()), Ok(e));
        assert_eq!(i32::from(e), e.code());
        assert_eq!(e.name().parse::<WsaError>(), Ok(e));
        assert_eq!(e.name().to_ascii_lowercase().parse::<WsaError>(), Ok(e));
        assert!(!e.message().is_empty());
        assert_eq!(
            e.is_wspioctl_code(),
            WsaError::WSPIOCTL_CODES.contains(&e),
            "{e:?}"
        );
    }
    for pair in WsaError::ALL.windows(2) {
        assert!(
            pair[0].code() < pair[1].code(),
            "ALL not ascending: {pair:?}"
        );
    }
    for &e in WsaError::WSPIOCTL_CODES {
        assert!(WsaError::ALL.contains(&e), "{e:?}");
    }
    // R-RET-3: WSAEINPROGRESS is not even representable.
    assert_eq!(WsaError::from_code(10036), None);
}

fn check_code(code: i32) {
    let known = WsaError::ALL.iter().copied().find(|e| e.code() == code);
    assert_eq!(WsaError::from_code(code), known, "from_code({code})");
    let decimal = code.to_string();
    match known {
        Some(e) => {
            assert_eq!(e.code(), code);
            assert_eq!(WsaError::try_from(code), Ok(e));
            assert_eq!(decimal.parse::<WsaError>(), Ok(e));
            let shown = e.to_string();
            assert!(shown.starts_with(e.name()), "{shown}");
            assert!(shown.contains(&format!("({code})")), "{shown}");
            assert!(e.name().starts_with("WSA"), "{}", e.name());
        }
        None => {
            assert_eq!(WsaError::try_from(code), Err(UnknownWsaError(code)));
            assert_eq!(decimal.parse::<WsaError>(), Err(UnknownWsaError(code)));
            let shown = UnknownWsaError(code).to_string();
            assert!(shown.starts_with(&decimal), "{shown}");
        }
    }
}

fn check_text(text: &str) {
    match text.parse::<WsaError>() {
        Ok(e) => {
            let by_number = text.parse::<i32>().ok() == Some(e.code());
            let by_name = e.name().eq_ignore_ascii_case(text);
            assert!(by_number || by_name, "{text:?} parsed as {e:?}");
        }
        Err(UnknownWsaError(n)) => match text.parse::<i32>() {
            Ok(code) => {
                assert_eq!(n, code, "{text:?}");
                assert_eq!(WsaError::from_code(code), None, "{text:?}");
            }
            Err(_) => {
                assert_eq!(n, -1, "{text:?}");
                assert!(
                    WsaError::ALL
                        .iter()
                        .all(|e| !e.name().eq_ignore_ascii_case(text)),
                    "{text:?} names a code but did not parse"
                );
            }
        },
    }
}

static TABLE: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    TABLE.call_once(check_table);
    for chunk in data.chunks_exact(4).take(16) {
        check_code(i32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check_text(text);
        check_text(text.trim());
    }
    check_text(&String::from_utf8_lossy(data));
});
