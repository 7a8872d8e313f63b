//! `san-spi demo`: two processes over the shared-memory loopback transport, run as a user
//! would run it.

use serde_json::Value;
use std::process::{Command, Output};

const STEPS: [&str; 8] = [
    "start the peer process",
    "discover extension functions",
    "address list",
    "register memory",
    "send and receive",
    "RDMA write and read",
    "overlapped completions",
    "close",
];

fn san_spi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_san-spi"))
        .args(args)
        .output()
        .expect("san-spi runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The peer's pid, from step 1's detail ("peer pid N accepted on …").
fn peer_pid(detail: &str) -> u32 {
    detail
        .split_whitespace()
        .skip_while(|w| *w != "pid")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no peer pid in {detail:?}"))
}

/// The peer process has been reaped: no zombie, no orphan.
fn assert_gone(pid: u32) {
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the peer process {pid} is still there"
    );
}

#[test]
fn demo_passes_every_step() {
    let o = san_spi(&["demo"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.is_empty(), "stderr: {err}");
    let numbered: Vec<&str> = out
        .lines()
        .filter(|l| l.get(2..4) == Some(". ") && l[..2].trim().parse::<u32>().is_ok())
        .collect();
    assert_eq!(numbered.len(), STEPS.len(), "{out}");
    for (i, (line, name)) in numbered.iter().zip(STEPS).enumerate() {
        let prefix = format!("{:>2}. {name}", i + 1);
        assert!(line.starts_with(&prefix), "{line:?} is not step {prefix:?}");
        assert!(line.contains(" ok "), "step {} not ok: {line}", i + 1);
        assert!(!line.contains("FAILED"), "{line}");
    }
    // What the steps show.
    for function in [
        "WSPRegisterMemory",
        "WSPRdmaRead",
        "WSPMemoryRegistrationCacheCallback",
    ] {
        assert!(out.contains(function), "{function} not listed:\n{out}");
    }
    assert!(
        out.contains("{C0B422F9-F58C-11D1-AD6C-00C04FA34A2D}"),
        "{out}"
    );
    assert!(out.contains("WSAEFAULT"), "{out}");
    assert!(out.contains("198.18.0.1:0") && out.contains("[fd53:414e::1]:0"));
    assert!(out.contains("WSA_OPERATION_ABORTED"), "{out}");
    assert!(out
        .lines()
        .last()
        .unwrap()
        .starts_with("all 8 steps passed"));
    assert_gone(peer_pid(numbered[0]));
}

#[test]
fn demo_json_is_an_array_of_passing_steps() {
    let o = san_spi(&["demo", "--json"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let v: Value = serde_json::from_str(&out).expect("stdout is JSON and nothing else");
    let steps = v.as_array().expect("an array");
    assert_eq!(steps.len(), STEPS.len());
    for (i, (s, name)) in steps.iter().zip(STEPS).enumerate() {
        assert_eq!(s["step"], i as u64 + 1);
        assert_eq!(s["name"], name);
        assert_eq!(s["ok"], true, "step {} failed: {}", i + 1, s["detail"]);
        assert!(!s["detail"].as_str().unwrap().is_empty());
    }
    let discovered = steps[1]["lines"].as_array().unwrap();
    assert_eq!(discovered.len(), 7);
    let addresses: Vec<&str> = steps[2]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["198.18.0.1:0", "[fd53:414e::1]:0"]);
    assert!(steps[5]["detail"]
        .as_str()
        .unwrap()
        .contains("matches here and in the peer"));
    assert_eq!(steps[6]["lines"].as_array().unwrap().len(), 3);
    assert_gone(peer_pid(steps[0]["detail"].as_str().unwrap()));
}

/// Each demo has its own loopback namespace: concurrent runs do not meet.
#[test]
fn concurrent_demos_do_not_interfere() {
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_san-spi"))
                .args(["demo", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("san-spi runs")
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(v.as_array().unwrap().iter().all(|s| s["ok"] == true), "{v}");
    }
}

/// A peer that dies mid-demo: the steps with the peer fail promptly (no hang), the others
/// still pass, the demo exits 1 with a message and leaves no process behind.
#[test]
fn a_dead_peer_fails_the_demo_promptly() {
    let started = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_san-spi"))
        .args(["demo", "--json"])
        .env("SAN_SPI_DEMO_PEER_FAULT", "exit-on-first-request")
        .output()
        .expect("san-spi runs");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert!(err.contains("3 of 8 steps failed (steps 5, 6, 8)"), "{err}");
    let v: Value = serde_json::from_str(&out).expect("stdout is still JSON");
    let ok: Vec<bool> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ok"].as_bool().unwrap())
        .collect();
    assert_eq!(ok, [true, true, true, true, false, false, true, false]);
    // Depending on when the death is noticed: the receive is refused, or it fails.
    let why = v[4]["detail"].as_str().unwrap();
    assert!(
        why.contains("WSAECONNRESET") || why.contains("peer is gone"),
        "{why}"
    );
    assert!(
        v[7]["detail"].as_str().unwrap().starts_with("skipped"),
        "{v}"
    );
    assert_gone(peer_pid(v[0]["detail"].as_str().unwrap()));
}

#[test]
fn the_peer_mode_is_hidden_and_checks_its_arguments() {
    let (help, _) = text(&san_spi(&["demo", "--help"]));
    assert!(!help.contains("--peer"), "{help}");
    let (help, _) = text(&san_spi(&["--help"]));
    assert!(help.contains("demo"), "{help}");

    let o = san_spi(&["demo", "--peer", "ns", "not-an-address"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        out.is_empty() && err.contains("not a socket address"),
        "{err}"
    );
    let o = san_spi(&["demo", "--peer", "", "198.18.0.1:7000"]);
    assert_eq!(o.status.code(), Some(2));
    let o = san_spi(&["demo", "--peer", "only-one"]);
    assert_eq!(o.status.code(), Some(2));
}
