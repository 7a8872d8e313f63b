//! `cargo xtask ci`: every check CI runs, in order, stopping at the first failure.
//!
//! Steps (each with a banner; timings at the end):
//! 1. `install` — what a fresh machine lacks ([`crate::install`]);
//! 2. `fmt` — `cargo fmt --all -- --check`;
//! 3. `clippy` — `cargo clippy --workspace --all-targets -- -D warnings`;
//! 4. `doc` — `cargo doc --no-deps --workspace` with rustdoc warnings denied;
//! 5. `test` — `cargo test --workspace --no-fail-fast` (unit, integration and doc tests),
//!    counted into the closing `summary: N passed, M failed` line;
//! 6. `loom` — the loom models of san-spi-core and san-spi-loopback (`--cfg loom`, release,
//!    own target dir);
//! 7. `deny` — `cargo deny check` ([`crate::deny`]);
//! 8. `fuzz` — fuzz smoke run: every target from its seeds, 10 s each ([`crate::fuzz`]);
//! 9. `msrv` — san-spi-core and san-spi-inproc with rustc 1.63, and san-spi-inproc's tests
//!    for Windows under Wine ([`crate::msrv`], [`crate::wine`]).
//!
//! To add a step, write a `fn(&mut Ctx) -> Result<(), String>` and list it in [`STEPS`].

use std::time::{Duration, Instant};

use crate::{deny, fuzz, install, msrv, util};

/// State shared by the steps.
#[derive(Default)]
pub struct Ctx {
    /// Test counts, once the test step ran.
    tests: Option<TestCounts>,
    /// Warnings and notes repeated in the final summary.
    notes: Vec<String>,
}

/// Sums of cargo's `test result:` lines.
#[derive(Default, Debug, PartialEq, Eq, Clone, Copy)]
pub struct TestCounts {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed.
    pub failed: u64,
    /// Tests ignored (by the ignore attribute or `ignore` doctests).
    pub ignored: u64,
    /// Number of `test result:` lines (test binaries and doctest runs).
    pub suites: u64,
}

/// A CI step.
struct Step {
    name: &'static str,
    title: &'static str,
    run: fn(&mut Ctx) -> Result<(), String>,
}

/// The steps, in order.
const STEPS: &[Step] = &[
    Step {
        name: "install",
        title: "install missing tools",
        run: |ctx| {
            let notes = install::run()?;
            ctx.notes.extend(notes);
            Ok(())
        },
    },
    Step {
        name: "fmt",
        title: "cargo fmt --check",
        run: |_| util::run(util::cargo_cmd().args(["fmt", "--all", "--", "--check"])),
    },
    Step {
        name: "clippy",
        title: "cargo clippy -D warnings",
        run: |_| {
            util::run(util::cargo_cmd().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        },
    },
    Step {
        name: "doc",
        title: "cargo doc, warnings denied",
        run: |_| {
            util::run(util::cargo_cmd().env("RUSTDOCFLAGS", "-D warnings").args([
                "doc",
                "--no-deps",
                "--workspace",
            ]))
        },
    },
    Step {
        name: "test",
        title: "cargo test (unit, integration, doc)",
        run: test_step,
    },
    Step {
        name: "loom",
        title: "loom models (--cfg loom)",
        run: loom_step,
    },
    Step {
        name: "deny",
        title: "cargo deny check",
        run: |ctx| {
            let warnings = deny::run()?;
            ctx.notes.extend(warnings);
            Ok(())
        },
    },
    Step {
        name: "fuzz",
        title: "fuzz smoke",
        run: |_| fuzz::smoke(fuzz::smoke_seconds()),
    },
    Step {
        name: "msrv",
        title: "rustc 1.63 builds; san-spi-inproc tests under Wine",
        run: |ctx| {
            let notes = msrv::run()?;
            ctx.notes.extend(notes);
            Ok(())
        },
    },
];

/// `cargo xtask ci [--skip STEP]... [--only STEP]...`.
pub fn main(args: &[String]) -> Result<(), String> {
    let mut skip = Vec::new();
    let mut only = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let list = match a.as_str() {
            "--skip" => &mut skip,
            "--only" => &mut only,
            other => return Err(format!("unknown ci option `{other}`")),
        };
        let name = it.next().ok_or_else(|| format!("{a} needs a step name"))?;
        if !STEPS.iter().any(|s| s.name == name) {
            let names: Vec<_> = STEPS.iter().map(|s| s.name).collect();
            return Err(format!("no step `{name}`; steps: {}", names.join(" ")));
        }
        list.push(name.clone());
    }

    let started = Instant::now();
    let mut ctx = Ctx::default();
    let mut timings: Vec<(&str, Duration, &str)> = Vec::new();
    let mut failure = None;
    for (i, step) in STEPS.iter().enumerate() {
        let wanted = (only.is_empty() || only.iter().any(|o| o == step.name))
            && !skip.iter().any(|s| s == step.name);
        if !wanted {
            timings.push((step.name, Duration::ZERO, "skipped"));
            continue;
        }
        util::banner(&format!(
            "ci step {}/{}: {} ({})",
            i + 1,
            STEPS.len(),
            step.name,
            step.title
        ));
        let t = Instant::now();
        let result = (step.run)(&mut ctx);
        let took = t.elapsed();
        util::flush();
        match result {
            Ok(()) => {
                println!("ci step {}: ok in {}", step.name, util::fmt_duration(took));
                timings.push((step.name, took, "ok"));
            }
            Err(e) => {
                timings.push((step.name, took, "FAILED"));
                failure = Some((step.name, e));
                break;
            }
        }
    }

    util::banner("ci summary");
    for (name, took, status) in &timings {
        println!("  {name:<8} {status:<8} {:>9}", util::fmt_duration(*took));
    }
    println!(
        "  {:<8} {:<8} {:>9}",
        "total",
        "",
        util::fmt_duration(started.elapsed())
    );
    for n in &ctx.notes {
        println!("{n}");
    }
    if let Some((name, e)) = &failure {
        println!("\nci: FAILED at step `{name}`: {e}");
    } else {
        println!("\nci: all steps passed");
    }
    if let Some(c) = ctx.tests {
        println!(
            "summary: {} passed, {} failed, {} skipped",
            c.passed, c.failed, c.ignored
        );
    }
    util::flush();
    match failure {
        Some((name, _)) => Err(format!("step `{name}` failed")),
        None => Ok(()),
    }
}

fn test_step(ctx: &mut Ctx) -> Result<(), String> {
    let (ok, out, _) =
        util::run_tee(util::cargo_cmd().args(["test", "--workspace", "--no-fail-fast"]))?;
    let counts = count_tests(&out);
    ctx.tests = Some(counts);
    println!(
        "tests: {} passed, {} failed, {} ignored in {} test runs",
        counts.passed, counts.failed, counts.ignored, counts.suites
    );
    if !ok {
        return Err(format!(
            "cargo test failed ({} tests failed; see `failures:` above)",
            counts.failed
        ));
    }
    if counts.suites == 0 {
        return Err("cargo test ran no test binary (no `test result:` line)".into());
    }
    Ok(())
}

/// The loom model tests: `RUSTFLAGS="--cfg loom" cargo test -p <crate> --release --lib loom`
/// for the core (overlapped completion) and the loopback (the ring's sleep handshake), in
/// `target/loom` so the main build is not invalidated; counted with the other tests.
fn loom_step(ctx: &mut Ctx) -> Result<(), String> {
    let target = util::workspace_root().join("target/loom");
    for krate in ["san-spi-core", "san-spi-loopback"] {
        let (ok, out, _) = util::run_tee(
            util::cargo_cmd()
                .env("RUSTFLAGS", "--cfg loom")
                .env("CARGO_TARGET_DIR", &target)
                .args(["test", "-p", krate, "--release", "--lib", "loom"]),
        )?;
        let counts = count_tests(&out);
        if !ok || counts.failed > 0 {
            return Err(format!(
                "{krate}: loom models failed ({} failed)",
                counts.failed
            ));
        }
        if counts.passed == 0 {
            return Err(format!("{krate}: no loom model ran"));
        }
        let total = ctx.tests.get_or_insert_with(TestCounts::default);
        total.passed += counts.passed;
        total.ignored += counts.ignored;
        total.suites += counts.suites;
    }
    Ok(())
}

/// Sums `test result: ok. 3 passed; 0 failed; 1 ignored; ...` lines.
pub fn count_tests(output: &str) -> TestCounts {
    let mut c = TestCounts::default();
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        c.suites += 1;
        let rest = rest.split_once(". ").map_or(rest, |(_, r)| r);
        for part in rest.split(';') {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => c.passed += n,
                "failed" => c.failed += n,
                "ignored" => c.ignored += n,
                _ => {}
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cargo_test_lines() {
        let out = "\
running 3 tests
test a ... ok
test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

test result: FAILED. 5 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.02s
   Doc-tests san_spi_core
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
";
        assert_eq!(
            count_tests(out),
            TestCounts {
                passed: 8,
                failed: 2,
                ignored: 1,
                suites: 3
            }
        );
    }

    #[test]
    fn step_names_are_unique() {
        for (i, a) in STEPS.iter().enumerate() {
            assert!(STEPS[i + 1..].iter().all(|b| b.name != a.name));
        }
    }
}
