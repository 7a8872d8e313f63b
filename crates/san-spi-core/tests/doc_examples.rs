//! "A rustdoc example on every public type": every `pub struct`, `pub enum` and `pub trait`
//! in the library sources must carry a doc comment with a ```` ``` ```` example.
//!
//! The check reads the sources line by line: the doc comments and attributes directly above
//! an item (no blank line or plain comment in between) form its block, and that block must
//! contain a code fence. `pub type` aliases are not checked. Unit-test files (`tests.rs`,
//! `loom_tests.rs`) are skipped. Of `san-spi-cli`, only a `src/lib.rs` is scanned: the CLI is
//! a binary, and the types of its private modules are not public API.

use std::fs;
use std::path::{Path, PathBuf};

/// Files (relative to the workspace root) whose items are not checked yet.
///
/// `transport.rs` is being rewritten (data plane, memory registration); its new traits
/// and structs get their examples with that change, and then it leaves this list.
const EXEMPT_FILES: &[&str] = &[];

/// File names that hold only unit tests.
const SKIPPED_FILE_NAMES: &[&str] = &["tests.rs", "loom_tests.rs"];

/// A public type declared without an example.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Missing {
    line: usize,
    name: String,
}

/// The name declared by `line` if it is a `pub struct`, `pub enum` or `pub trait`.
fn public_type(line: &str) -> Option<String> {
    let rest = line.trim_start();
    let rest = rest.strip_prefix("pub ")?.trim_start();
    let rest = rest
        .strip_prefix("unsafe ")
        .map(str::trim_start)
        .unwrap_or(rest);
    let rest = ["struct ", "enum ", "trait "]
        .iter()
        .find_map(|kw| rest.strip_prefix(kw))?
        .trim_start();
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() {
        None
    } else {
        Some(name)
    }
}

/// The doc-comment and attribute lines directly above line `index` (multi-line attributes
/// included), nearest first.
fn preceding_block<'a>(lines: &[&'a str], index: usize) -> Vec<&'a str> {
    let mut block = Vec::new();
    let mut i = index;
    while i > 0 {
        let t = lines[i - 1].trim();
        if t.starts_with("///") || (t.starts_with("#[") && t.ends_with(']')) {
            block.push(t);
            i -= 1;
        } else if t.ends_with(']') && !t.starts_with("//") {
            // The last line of an attribute that spans several lines: take it whole. Its
            // opening `#[` must come first among the nearest non-blank, non-comment lines.
            let mut j = i - 1;
            while j > 0 && !lines[j].trim_start().starts_with("#[") {
                let above = lines[j - 1].trim();
                if above.is_empty() || above.starts_with("//") || i - j > 20 {
                    break;
                }
                j -= 1;
            }
            if !lines[j].trim_start().starts_with("#[") {
                break;
            }
            for l in lines[j..i].iter().rev() {
                block.push(l.trim());
            }
            i = j;
        } else {
            break;
        }
    }
    block
}

/// Every public type in `source` whose block has no code fence.
fn missing_examples(source: &str) -> Vec<Missing> {
    let lines: Vec<&str> = source.lines().collect();
    let mut missing = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if let Some(name) = public_type(line) {
            let documented = preceding_block(&lines, index)
                .iter()
                .any(|l| l.starts_with("///") && l.contains("```"));
            if !documented {
                missing.push(Missing {
                    line: index + 1,
                    name,
                });
            }
        }
    }
    missing
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {}", dir.display(), e))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().map_or(false, |x| x == "rs") {
            out.push(path);
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The library sources the standard covers.
fn scanned_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&root.join("crates/san-spi-core/src"), &mut files);
    let cli_lib = root.join("crates/san-spi-cli/src/lib.rs");
    if cli_lib.is_file() {
        files.push(cli_lib);
    }
    files.retain(|f| {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        !SKIPPED_FILE_NAMES.contains(&name)
    });
    files
}

#[test]
fn every_public_type_has_a_rustdoc_example() {
    let root = workspace_root();
    let mut checked = 0;
    let mut report = Vec::new();
    for file in scanned_files(&root) {
        let rel = relative(&root, &file);
        if EXEMPT_FILES.contains(&rel.as_str()) {
            continue;
        }
        let source = fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {}", rel, e));
        checked += source.lines().filter(|l| public_type(l).is_some()).count();
        for m in missing_examples(&source) {
            report.push(format!("{}:{}:{}", rel, m.line, m.name));
        }
    }
    // Guards against a scan that silently finds nothing (moved sources, broken parser).
    assert!(
        checked >= 30,
        "only {} public types found; is the scan looking in the right place?",
        checked
    );
    assert!(
        report.is_empty(),
        "{} public type(s) without a ``` example in their doc comment:\n  {}",
        report.len(),
        report.join("\n  ")
    );
}

#[test]
fn exempt_files_exist() {
    // An exemption for a file that is gone (or renamed) would hide nothing but rot.
    let root = workspace_root();
    for f in EXEMPT_FILES {
        assert!(root.join(f).is_file(), "exempt file {} does not exist", f);
    }
}

#[test]
fn scanner_recognises_items_blocks_and_fences() {
    let source = r#"
/// Documented.
///
/// ```
/// assert!(true);
/// ```
#[derive(Debug)]
#[cfg_attr(
    feature = "x",
    derive(Clone)
)]
pub struct WithExample;

/// No example.
#[derive(Debug)]
pub enum NoExample { A }

/// ```
/// let _ = 1;
/// ```

pub trait BlankLineBreaksTheBlock {}

pub(crate) struct NotPublic;
pub type Alias = u8;
mod inner {
    bitflags::bitflags! {
        /// Inside a macro, without an example.
        pub struct Flags: u32 {}
    }
    /// ```
    /// ```
    pub unsafe trait Unsafe {}
}
// pub struct InAComment;
/// pub struct InADocComment;
pub struct Bare<T>(T);
"#;
    let names: Vec<(usize, String)> = missing_examples(source)
        .into_iter()
        .map(|m| (m.line, m.name))
        .collect();
    assert_eq!(
        names,
        vec![
            (16, "NoExample".to_owned()),
            (22, "BlankLineBreaksTheBlock".to_owned()),
            (29, "Flags".to_owned()),
            (37, "Bare".to_owned()),
        ]
    );
}
