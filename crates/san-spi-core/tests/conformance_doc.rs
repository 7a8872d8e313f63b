//! `docs/conformance.md` stays true: every requirement of `REQUIREMENTS.md` has a row; every
//! test a row names exists and carries the requirement's id in its name or doc comment; and
//! every test named after a requirement is listed under it.
//!
//! `REQUIREMENTS.md` lives in `../shared/spec/` beside the repository, as in CI. Without it
//! this test fails rather than skipping.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `R-ADDR-3` → `r_addr_3`.
fn snake(id: &str) -> String {
    id.to_ascii_lowercase().replace('-', "_")
}

fn is_id(word: &str) -> bool {
    let mut parts = word.split('-');
    parts.next() == Some("R")
        && parts.next().map_or(false, |p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_uppercase())
        })
        && parts.next().map_or(false, |p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
        })
        && parts.next().is_none()
}

fn requirement_ids() -> Vec<String> {
    let path = repo().join("../shared/spec/REQUIREMENTS.md");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; the shared/ folder must sit beside the repository",
            path.display()
        )
    });
    text.lines()
        .filter_map(|l| l.strip_prefix("- "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| is_id(w))
        .map(str::to_owned)
        .collect()
}

/// Rows of the table: id → (tests named, pending note).
fn doc_rows() -> BTreeMap<String, (Vec<String>, bool)> {
    let text = fs::read_to_string(repo().join("docs/conformance.md")).unwrap();
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !is_id(cells[1]) {
            continue;
        }
        let tests: Vec<String> = cells[2]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let pending = cells[2].to_ascii_lowercase().contains("pending");
        rows.insert(cells[1].to_owned(), (tests, pending));
    }
    rows
}

/// Every `fn` in the workspace's Rust sources, with the doc comment lines above it.
fn test_functions() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![repo().join("crates"), repo().join("xtask")];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(_) => continue,
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().map_or(false, |e| e == "rs") {
                let text = fs::read_to_string(&path).unwrap();
                let mut docs = String::new();
                for line in text.lines() {
                    let t = line.trim();
                    if let Some(d) = t.strip_prefix("///") {
                        docs.push_str(d);
                        docs.push('\n');
                    } else if let Some(rest) =
                        t.strip_prefix("fn ").or_else(|| t.strip_prefix("pub fn "))
                    {
                        let name: String = rest
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        out.insert(name, std::mem::take(&mut docs));
                    } else if !t.starts_with("#[") {
                        docs.clear();
                    }
                }
            }
        }
    }
    out
}

#[test]
fn conformance_doc_lists_every_requirement_with_real_tests() {
    let ids = requirement_ids();
    assert!(ids.len() >= 40, "only {} requirements found", ids.len());
    let rows = doc_rows();
    let fns = test_functions();
    let mut problems = Vec::new();
    for id in &ids {
        match rows.get(id) {
            None => problems.push(format!("{id}: no row in docs/conformance.md")),
            Some((tests, pending)) => {
                if tests.is_empty() && !pending {
                    problems.push(format!("{id}: neither tests nor 'pending'"));
                }
                for t in tests {
                    let name = t.rsplit("::").next().unwrap();
                    match fns.get(name) {
                        None => problems.push(format!("{id}: test {t} does not exist")),
                        Some(doc) => {
                            if !name.contains(&snake(id)) && !doc.contains(id.as_str()) {
                                problems.push(format!(
                                    "{id}: {t} names neither {id} nor {}",
                                    snake(id)
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    // Every test named after a requirement is listed under it.
    let listed: BTreeSet<(String, String)> = rows
        .iter()
        .flat_map(|(id, (tests, _))| {
            tests
                .iter()
                .map(move |t| (id.clone(), t.rsplit("::").next().unwrap().to_owned()))
        })
        .collect();
    for name in fns.keys() {
        for id in &ids {
            let s = snake(id);
            let named = name
                .match_indices(&s)
                .any(|(at, _)| !name[at + s.len()..].starts_with(|c: char| c.is_ascii_digit()));
            if named && !listed.contains(&(id.clone(), name.clone())) {
                problems.push(format!("{id}: test {name} is not listed"));
            }
        }
    }
    for id in rows.keys() {
        if !ids.contains(id) {
            problems.push(format!("{id}: row for an unknown requirement"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/conformance.md is out of date:\n{}",
        problems.join("\n")
    );
}
