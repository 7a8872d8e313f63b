//! GUIDs of the SAN extension functions, from bytes and from text (`guid.rs`).
//!
//! - Bytes: `from_windows_bytes` reads the first 16 bytes in Windows layout (Data1..Data3
//!   little-endian, Data4 in order) — checked field by field — or reports `Short` with the
//!   length; `to_windows_bytes` gives the same 16 bytes back. `ExtensionFunction::
//!   from_windows_bytes` agrees with it: one of the seven (whose `windows_bytes` are the
//!   input) or `Unknown` with that GUID, which then is none of the seven.
//! - Text: `str::parse::<ExtensionFunction>` on arbitrary text never panics and succeeds
//!   only for a function name, a `WSAID_*` name or the GUID text of one of the seven; the
//!   error carries the trimmed text.
//! - Round trips: one of the seven chosen by the input, as its name, `WSAID_*` name and GUID
//!   text (hyphenated, braced) with the case of each letter and the blanks
//!   around it taken from the input, parses back to itself; so does the GUID text of the
//!   16 input bytes whenever they name one of the seven; its simple, URN and doubly braced
//!   spellings are refused.
//!
//! Input: the bytes as a GUID (and all of them as text); byte 0 picks a function, the
//! following bytes a case mask and the surrounding blanks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use san_spi_core::guid::{
    from_windows_bytes, to_windows_bytes, ExtensionFunction, GuidError, UnknownExtensionFunction,
    Uuid, GUID_LEN,
};

fn check_bytes(data: &[u8]) {
    let parsed = from_windows_bytes(data);
    let by_function = ExtensionFunction::from_windows_bytes(data);
    let _ = parsed.map_err(|e| e.to_string());
    let _ = by_function.map_err(|e| e.to_string());
    if data.len() < GUID_LEN {
        assert_eq!(parsed, Err(GuidError::Short { len: data.len() }));
        assert_eq!(by_function, Err(GuidError::Short { len: data.len() }));
        return;
    }
    let guid = parsed.expect("16 bytes are a GUID");
    let raw = &data[..GUID_LEN];
    assert_eq!(&to_windows_bytes(&guid)[..], raw);
    let (d1, d2, d3, d4) = guid.as_fields();
    assert_eq!(d1, u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]));
    assert_eq!(d2, u16::from_le_bytes([raw[4], raw[5]]));
    assert_eq!(d3, u16::from_le_bytes([raw[6], raw[7]]));
    assert_eq!(&d4[..], &raw[8..16]);
    match by_function {
        Ok(f) => {
            assert_eq!(f.guid(), guid);
            assert_eq!(&f.windows_bytes()[..], raw);
            assert_eq!(ExtensionFunction::from_guid(&guid), Some(f));
        }
        Err(GuidError::Unknown(g)) => {
            assert_eq!(g, guid);
            assert_eq!(ExtensionFunction::from_guid(&guid), None);
            assert!(ExtensionFunction::ALL.iter().all(|f| f.guid() != guid));
        }
        Err(e) => panic!("16 bytes reported as {e:?}"),
    }
    // The GUID's own text names the same function (or none).
    let text = guid.hyphenated().to_string();
    assert_eq!(
        text.parse::<ExtensionFunction>().ok(),
        ExtensionFunction::from_guid(&guid),
        "{text}"
    );
}

fn check_text(text: &str) {
    match text.parse::<ExtensionFunction>() {
        Ok(f) => {
            let t = text.trim();
            let by_name = f.name().eq_ignore_ascii_case(t) || f.guid_name().eq_ignore_ascii_case(t);
            // The registry form only: hyphenated, bare or in one pair of braces.
            let bare = t
                .strip_prefix('{')
                .map_or(Some(t), |rest| rest.strip_suffix('}'));
            let by_guid = bare.is_some_and(|b| {
                b.len() == 36 && Uuid::parse_str(b).is_ok_and(|g| g == f.guid())
            });
            assert!(by_name || by_guid, "{text:?} parsed as {f:?}");
            assert_eq!(f.to_string(), f.name());
        }
        Err(UnknownExtensionFunction(t)) => {
            assert_eq!(t, text.trim(), "{text:?}");
            assert!(ExtensionFunction::ALL.iter().all(|f| {
                !f.name().eq_ignore_ascii_case(&t) && !f.guid_name().eq_ignore_ascii_case(&t)
            }));
            let _ = UnknownExtensionFunction(t).to_string();
        }
    }
}

/// `text` with the case of its ASCII letters flipped where `mask` has a 1 bit (cycled).
fn recase(text: &str, mask: &[u8]) -> String {
    if mask.is_empty() {
        return text.to_owned();
    }
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            let flip = mask[(i / 8) % mask.len()] >> (i % 8) & 1 == 1;
            match (flip, c.is_ascii_lowercase()) {
                (false, _) => c,
                (true, true) => c.to_ascii_uppercase(),
                (true, false) => c.to_ascii_lowercase(),
            }
        })
        .collect()
}

fn blanks(b: u8) -> &'static str {
    ["", " ", "\t", "\n ", "\u{3000}", "\r\n"][b as usize % 6]
}

fn check_round_trips(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let f = ExtensionFunction::ALL[pick as usize % ExtensionFunction::ALL.len()];
    let (around, mask) = rest.split_first().map_or((0, &[][..]), |(a, m)| (*a, m));
    let mask = &mask[..mask.len().min(8)];
    let g = f.guid();
    let texts = [
        f.name().to_owned(),
        f.guid_name().to_owned(),
        g.hyphenated().to_string(),
        g.braced().to_string(),
        f.to_string(),
    ];
    for (i, text) in texts.iter().enumerate() {
        let text = recase(text, mask);
        let padded = format!(
            "{}{text}{}",
            blanks(around.wrapping_add(i as u8)),
            blanks(around >> 4)
        );
        assert_eq!(padded.parse::<ExtensionFunction>(), Ok(f), "{padded:?}");
    }
    // Other spellings of the same GUID are refused.
    for other in [
        g.simple().to_string(),
        g.urn().to_string(),
        format!("{{{}", g.braced()),
        format!("{}}}", g.braced()),
        format!("{{{}", g.hyphenated()),
    ] {
        assert!(other.parse::<ExtensionFunction>().is_err(), "{other:?}");
    }
    assert_eq!(
        ExtensionFunction::from_windows_bytes(&f.windows_bytes()),
        Ok(f)
    );
    assert_eq!(from_windows_bytes(&f.windows_bytes()), Ok(g));
}

fuzz_target!(|data: &[u8]| {
    check_bytes(data);
    if data.len() > GUID_LEN {
        check_bytes(&data[1..]);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check_text(text);
    }
    check_text(&String::from_utf8_lossy(data));
    check_round_trips(data);
});
