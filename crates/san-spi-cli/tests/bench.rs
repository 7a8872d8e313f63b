//! `san-spi bench loopback`, run as CI runs it: `--quick --json --plot`.

use serde_json::Value;
use std::process::Command;

fn san_spi(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_san-spi"))
        .args(args)
        .output()
        .expect("san-spi runs")
}

/// The rows of `section` for `name`, each checked to carry positive numbers in `fields`.
fn rows<'v>(v: &'v Value, section: &str, name: &str, fields: &[&str]) -> Vec<&'v Value> {
    let rows: Vec<&Value> = v[section]
        .as_array()
        .unwrap_or_else(|| panic!("{section} is an array"))
        .iter()
        .filter(|r| r["impl"] == name)
        .collect();
    for r in &rows {
        for f in fields {
            let x = r[f]
                .as_f64()
                .unwrap_or_else(|| panic!("{section} {name}: {f} in {r}"));
            assert!(
                x.is_finite() && x > 0.0,
                "{section} {name}: {f} = {x} in {r}"
            );
        }
    }
    rows
}

fn sizes(rows: &[&Value]) -> Vec<u64> {
    rows.iter().map(|r| r["size"].as_u64().unwrap()).collect()
}

#[test]
fn quick_json_has_ours_and_the_baselines_and_the_plot_is_svg() {
    let svg = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-{}.svg", std::process::id()));
    let _ = std::fs::remove_file(&svg);
    let o = san_spi(&[
        "bench",
        "loopback",
        "--quick",
        "--json",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("one JSON document on stdout");
    assert_eq!(v["bench"], "loopback");
    assert_eq!(v["mode"], "quick");

    let lat_sizes = [8, 64, 512, 4096, 65536];
    for name in ["ours", "raw-shm", "unix-socket"] {
        let r = rows(&v, "latency", name, &["p50_us", "p99_us", "iterations"]);
        assert_eq!(sizes(&r), lat_sizes, "latency sizes of {name}");
        for row in &r {
            assert!(row["p99_us"].as_f64() >= row["p50_us"].as_f64(), "{row}");
        }
    }
    let bw_sizes = [4096, 65536, 1 << 20, 16 << 20, 64 << 20];
    for name in ["ours-rdma-write", "memcpy"] {
        let r = rows(&v, "bandwidth", name, &["gb_per_s", "bytes", "seconds"]);
        assert_eq!(sizes(&r), bw_sizes, "bandwidth sizes of {name}");
    }
    let r = rows(&v, "bandwidth", "ours-send-recv", &["gb_per_s", "bytes"]);
    assert_eq!(
        sizes(&r),
        bw_sizes[..4],
        "bandwidth sizes of ours-send-recv"
    );

    // libfabric: measured, or said why not.
    let fabric = &v["libfabric"];
    if fabric["available"] == true {
        assert!(!rows(&v, "latency", "libfabric-shm", &["p50_us"]).is_empty());
        assert!(!rows(&v, "bandwidth", "libfabric-shm", &["gb_per_s"]).is_empty());
    } else {
        let reason = fabric["reason"].as_str().expect("a reason");
        assert!(reason.starts_with("unavailable: "), "{reason}");
    }

    // Ratios of ours against each baseline, and the three targets with a verdict or a note.
    let ratios = v["ratios"].as_array().unwrap();
    for what in [
        "latency p50 ours / raw-shm",
        "latency p50 ours / unix-socket",
        "bandwidth ours-rdma-write / memcpy",
        "bandwidth ours-rdma-write-single / memcpy",
        "bandwidth ours-rdma-write-bounce / memcpy",
    ] {
        assert!(
            ratios
                .iter()
                .any(|r| r["what"] == what && r["ratio"].as_f64().is_some_and(|x| x > 0.0)),
            "no ratio {what}"
        );
    }
    let targets = v["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 4);
    assert!(targets.iter().all(|t| t["met"].is_boolean()));

    let text = std::fs::read_to_string(&svg).expect("--plot wrote the file");
    assert!(
        text.starts_with("<svg") || text.starts_with("<?xml"),
        "{}",
        &text[..80.min(text.len())]
    );
    assert!(text.trim_end().ends_with("</svg>"));
    for label in [
        "ours: loopback send/recv",
        "raw shared-memory spin",
        "memcpy",
    ] {
        assert!(text.contains(label), "the chart has no {label:?}");
    }
    let _ = std::fs::remove_file(&svg);
}

#[test]
fn bad_bench_input_exits_2() {
    for args in [
        &["bench", "nosuch"][..],
        &["bench", "loopback", "--bogus"],
        &["bench"],
    ] {
        let o = san_spi(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!o.stderr.is_empty(), "{args:?}: no message");
    }
    let o = san_spi(&[
        "bench",
        "loopback",
        "--quick",
        "--plot",
        "/nonexistent-dir/x.svg",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
}
