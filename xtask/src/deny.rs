//! Step `deny`: `cargo deny check` (advisories, bans, licenses, sources; see `deny.toml`).
//!
//! The RustSec advisory database is a git repository that cargo-deny clones into
//! `$CARGO_HOME/advisory-dbs/advisory-db-<hash>`. Where it cannot be fetched (no network
//! but the package registries), a local git mirror is cloned into that very directory
//! instead — from `$SAN_SPI_ADVISORY_DB`, else [`DEFAULT_MIRROR`] (the snapshot in a git
//! bundle that `../shared/data/` keeps beside the repository) — with the mirror as its
//! `origin`, so that cargo-deny's own fetches update from the mirror from then on. The
//! step prints the date of the database it checked against. Without any database the step
//! fails: advisories are never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util;

/// Env var naming a git mirror (bare or not) of the RustSec advisory-db.
pub const MIRROR_ENV: &str = "SAN_SPI_ADVISORY_DB";
/// The default mirror, relative to the workspace root: a git bundle of a snapshot of the
/// advisory-db (see `../shared/data/README.md`).
pub const DEFAULT_MIRROR: &str = "../shared/data/advisory-db.bundle";
/// The directory name cargo-deny uses for the default database URL, used only if its
/// error message does not name the directory.
const DEFAULT_DB_DIR_NAME: &str = "advisory-db-3157b0e258782691";

/// Runs the deny step. Returns warnings for the CI summary (e.g. advisories skipped).
pub fn run() -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    let db = ensure_db(&mut warnings)?;
    match db {
        Db::Fetched(dir) => {
            println!("deny: advisory-db {}", db_commit(&dir));
            util::run(util::cargo_cmd().args(["deny", "check"])).map(|()| warnings)
        }
        Db::Local(dir) => {
            let w = format!(
                "NOTE: advisories checked against a local advisory-db that could not be \
                 updated: {} ({})",
                dir.display(),
                db_commit(&dir)
            );
            println!("deny: {w}");
            warnings.push(w);
            // --offline also stops cargo metadata from downloading: fetch crates first.
            if let Err(e) = util::run(util::cargo_cmd().arg("fetch")) {
                println!("deny: note: {e}; continuing offline");
            }
            util::run(util::cargo_cmd().args(["deny", "--offline", "check"])).map(|()| warnings)
        }
        Db::None(why) => Err(format!("advisories cannot be checked: {why}")),
    }
}

enum Db {
    /// `cargo deny fetch db` succeeded; the database's directory.
    Fetched(PathBuf),
    /// A database is in place but cannot be updated.
    Local(PathBuf),
    /// No database: why.
    None(String),
}

fn ensure_db(notes: &mut Vec<String>) -> Result<Db, String> {
    let (ok, out, err) = util::run_tee(util::cargo_cmd().args(["deny", "fetch", "db"]))?;
    let text = format!("{out}\n{err}");
    let db_dir = db_dir_from_error(&text).unwrap_or_else(default_db_dir);
    if ok {
        return Ok(Db::Fetched(db_dir));
    }
    println!(
        "deny: cannot fetch the advisory-db; cargo-deny expects it at {}",
        db_dir.display()
    );

    let mirror = std::env::var_os(MIRROR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| util::workspace_root().join(DEFAULT_MIRROR));
    if !mirror.exists() {
        return Ok(if is_db(&db_dir) {
            Db::Local(db_dir)
        } else {
            Db::None(format!(
                "the RustSec advisory-db cannot be fetched and no mirror exists at {} \
                 (set {MIRROR_ENV} to a git mirror of it)",
                mirror.display()
            ))
        });
    }
    println!("deny: cloning the mirror {} into it", mirror.display());
    if let Err(e) = clone_mirror(&mirror, &db_dir) {
        return Ok(if is_db(&db_dir) {
            println!("deny: {e}; keeping the existing database");
            Db::Local(db_dir)
        } else {
            Db::None(format!(
                "cloning the mirror {} failed: {e}",
                mirror.display()
            ))
        });
    }
    notes.push(format!(
        "NOTE: advisory-db taken from the local mirror {} ({})",
        mirror.display(),
        db_commit(&db_dir)
    ));
    // With the mirror as origin, cargo-deny's own fetch now normally works.
    let (ok, _, _) = util::run_tee(util::cargo_cmd().args(["deny", "fetch", "db"]))?;
    Ok(if ok {
        Db::Fetched(db_dir)
    } else {
        Db::Local(db_dir)
    })
}

/// Clones `mirror` (a repository or a bundle) into `dir`, replacing whatever is there.
fn clone_mirror(mirror: &Path, dir: &Path) -> Result<(), String> {
    let tmp = dir.with_extension("xtask-tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
    }
    // A plain path, not a file:// URL: git clones a bundle only from its path.
    let cloned = util::succeeds(
        Command::new("git")
            .args(["clone", "--quiet", "--branch", "main"])
            .arg(mirror)
            .arg(&tmp),
    ) || {
        let _ = std::fs::remove_dir_all(&tmp);
        // A mirror without `main`: take its HEAD.
        util::succeeds(
            Command::new("git")
                .args(["clone", "--quiet"])
                .arg(mirror)
                .arg(&tmp),
        )
    };
    if !cloned || !is_db(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!(
            "`git clone {}` failed or is not an advisory-db",
            mirror.display()
        ));
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir).map_err(|e| format!("rename to {}: {e}", dir.display()))?;
    println!(
        "deny: advisory-db at {} is {}",
        dir.display(),
        db_commit(dir)
    );
    Ok(())
}

/// `commit <abbrev-hash> of <date>` of a database checkout, for messages.
fn db_commit(dir: &Path) -> String {
    util::output(Command::new("git").arg("-C").arg(dir).args([
        "log",
        "-1",
        "--format=commit %h of %cs",
    ]))
    .map(|s| s.trim().to_owned())
    .unwrap_or_else(|| "unknown".into())
}

/// A checked-out advisory-db has a `crates/` directory of advisories.
fn is_db(dir: &Path) -> bool {
    dir.join("crates").is_dir()
}

/// cargo-deny's error names the target directory, e.g.
/// `... "/home/ci/.cargo/advisory-dbs/advisory-db-3157b0e258782691"]`.
fn db_dir_from_error(text: &str) -> Option<PathBuf> {
    text.split(|c: char| c.is_whitespace() || "\"'`,[]()".contains(c))
        .find(|tok| {
            tok.starts_with('/')
                && Path::new(tok)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("advisory-db-"))
                    .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .map(PathBuf::from)
}

fn default_db_dir() -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"));
    cargo_home.join("advisory-dbs").join(DEFAULT_DB_DIR_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_db_dir_in_cargo_deny_error() {
        let err = r#"2026-11-24 20:11:08 [ERROR] failed to fetch database: failed to fetch advisory database https://example.invalid/advisory-db with cli: failed to clone: ["clone", "--depth=1", "--branch", "main", "https://example.invalid/advisory-db", "/home/ci/.cargo/advisory-dbs/advisory-db-3157b0e258782691"]
Cloning into '/home/ci/.cargo/advisory-dbs/advisory-db-3157b0e258782691'..."#;
        assert_eq!(
            db_dir_from_error(err),
            Some(PathBuf::from(
                "/home/ci/.cargo/advisory-dbs/advisory-db-3157b0e258782691"
            ))
        );
        assert_eq!(db_dir_from_error("no path here advisory-db-zz"), None);
    }
}
