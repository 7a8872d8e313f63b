//! The `san-spi` command, run as a user would run it.

use serde_json::Value;
use std::process::{Command, Output};

fn san_spi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_san-spi"))
        .args(args)
        .output()
        .expect("san-spi runs")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&stdout(&san_spi(&all))).expect("valid JSON")
}

/// R-IOC-4: `ioctl list --json` shows the header values of the six supported codes.
#[test]
fn r_ioc_4_ioctl_list_json_shows_header_values() {
    let v = json(&["ioctl", "list"]);
    let codes = v["codes"].as_array().unwrap();
    let san: Vec<(String, String)> = codes
        .iter()
        .filter(|c| c["san"] == true)
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("SIO_GET_EXTENSION_FUNCTION_POINTER", "0xC8000006"),
        ("SIO_GET_QOS", "0xC8000007"),
        ("SIO_GET_GROUP_QOS", "0xC8000008"),
        ("SIO_SET_QOS", "0x8800000B"),
        ("SIO_SET_GROUP_QOS", "0x8800000C"),
        ("SIO_ADDRESS_LIST_QUERY", "0x48000016"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(san, want);
    assert_eq!(codes.len(), 11);
}

#[test]
fn ioctl_decode_accepts_hex_decimal_and_name() {
    for input in ["0x48000016", "1207959574", "SIO_ADDRESS_LIST_QUERY"] {
        let v = json(&["ioctl", "decode", input]);
        assert_eq!(v["name"], "SIO_ADDRESS_LIST_QUERY");
        assert_eq!(v["input"], false);
        assert_eq!(v["output"], true);
        assert_eq!(v["type"], 1);
        assert_eq!(v["number"], 22);
    }
    let text = stdout(&san_spi(&["ioctl", "decode", "0x98400001"]));
    assert!(text.starts_with("0x98400001 (I=1 O=0 V=0 T=3 Vendor family=0x040 code=0x0001)"));
}

#[test]
fn bad_input_exits_2_with_a_message() {
    for args in [
        &["ioctl", "decode", "SIO_NOPE"][..],
        &["ioctl", "decode", "0x1_0000_0000"][..],
        &["addrs", "classify", "300.1.1.1"][..],
        &["addrs", "emit", "--width", "48", "10.0.0.1"][..],
        &[
            "addrs",
            "emit",
            "--width",
            "32",
            "--base",
            "0xFFFFFFF0",
            "10.0.0.1",
        ][..],
        &[
            "addrs", "emit", "--width", "32", "--base", "nothex", "10.0.0.1",
        ][..],
        &["guid", "frobnicate"][..],
        // Numbers take no sign.
        &["ioctl", "decode", "0x+ff"][..],
        &["ioctl", "decode", "+255"][..],
        &["addrs", "emit", "--width", "+64", "10.0.0.1"][..],
        &[
            "addrs", "emit", "--width", "64", "--base", "+10", "10.0.0.1",
        ][..],
        &[
            "addrs", "emit", "--width", "64", "--base", "0x-10", "10.0.0.1",
        ][..],
    ] {
        let o = san_spi(args);
        assert_eq!(o.status.code(), Some(2), "{:?}", args);
        assert!(o.stdout.is_empty(), "{:?} printed to stdout", args);
        assert!(!o.stderr.is_empty(), "{:?} gave no message", args);
    }
}

#[test]
fn guid_list_shows_seven_functions_in_windows_layout() {
    let v = json(&["guid", "list"]);
    let fns = v["extension_functions"].as_array().unwrap();
    assert_eq!(fns.len(), 7);
    assert_eq!(fns[4]["function"], "WSPRdmaWrite");
    assert_eq!(fns[4]["guid"], "{C0B422F9-F58C-11D1-AD6C-00C04FA34A2D}");
    assert_eq!(fns[4]["windows_bytes"], "f922b4c08cf5d111ad6c00c04fa34a2d");
    assert_eq!(fns[6]["guid_name"], "WSAID_MEMORYREGISTRATIONCACHECALLBACK");
}

/// R-ADDR-5, R-ADDR-6: `addrs classify` prints the address as given, keep/drop, and the reason,
/// for every category.
#[test]
fn r_addr_6_classify_every_category() {
    let cases = [
        ("fe80::211:22ff:fe33:4455", "keep", "link-local"),
        ("FEC0::1:2:3:4", "keep", "site-local"),
        ("2001:db8::211:22ff:fe33:4455", "keep", "global"),
        ("192.0.2.1", "keep", "IPv4"),
        ("::192.0.2.1", "drop", "IPv4-compatible"),
        ("::ffff:192.0.2.1", "drop", "IPv4-mapped"),
        ("fe80::c000:201", "drop", "6over4"),
        ("2002:c000:201::1", "drop", "6to4"),
        ("2001:db8::5efe:c000:201", "drop", "ISATAP"),
        ("ff02::1", "drop", "multicast"),
        ("::", "drop", "unspecified"),
        ("::1", "drop", "loopback"),
    ];
    let mut args = vec!["addrs", "classify"];
    args.extend(cases.iter().map(|c| c.0));
    let out = stdout(&san_spi(&args));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), cases.len());
    for (line, (addr, action, reason)) in lines.iter().zip(cases.iter()) {
        let mut parts = line.splitn(3, ' ');
        assert_eq!(parts.next(), Some(*addr), "{}", line);
        assert_eq!(parts.next(), Some(*action), "{}", line);
        assert!(parts.next().unwrap().contains(reason), "{}", line);
    }
    let temp = stdout(&san_spi(&[
        "addrs",
        "classify",
        "--temporary",
        "2001:db8::1",
    ]));
    assert_eq!(temp.trim(), "2001:db8::1 drop temporary (privacy) address");
}

#[test]
fn addrs_emit_matches_the_layout() {
    let v = json(&[
        "addrs",
        "emit",
        "--width",
        "32",
        "--base",
        "0x1000",
        "10.0.0.1:80",
    ]);
    assert_eq!(v["len"], 4 + 8 + 16);
    assert_eq!(
        v["hex"],
        "01000000\
         0c100000\
         10000000\
         02000050\
         0a000001\
         0000000000000000"
    );
    let text = stdout(&san_spi(&["addrs", "emit", "--width", "64", "[fe80::1]:1"]));
    assert_eq!(text.lines().count(), 4); // 8 + 16 + 28 = 52 bytes
}

#[test]
fn addrs_reports_this_host_with_list_sizes() {
    let v = json(&["addrs"]);
    let rows = v["addresses"].as_array().unwrap();
    assert!(rows
        .iter()
        .any(|r| r["address"] == "127.0.0.1" && r["action"] == "drop"));
    let kept = v["kept"].as_u64().unwrap();
    assert_eq!(
        kept as usize,
        rows.iter().filter(|r| r["action"] == "keep").count()
    );
    assert!(v["socket_address_list_len"]["w64"].as_u64().unwrap() >= 8 + 32 * kept);
}

/// A reader that went away ends the output quietly, as SIGPIPE ends `cat`: killed by the
/// signal, nothing on stderr (not a panic with status 101).
#[test]
fn a_closed_pipe_ends_quietly_as_sigpipe_would() {
    use std::os::unix::process::ExitStatusExt;
    // A pipe whose reading end is closed before the command writes a byte.
    let (read, write) = std::io::pipe().expect("pipe");
    drop(read);
    let o = Command::new(env!("CARGO_BIN_EXE_san-spi"))
        .args(["ioctl", "list"])
        .stdout(write)
        .output()
        .expect("san-spi runs");
    assert_eq!(o.status.signal(), Some(13), "{:?}", o.status);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A write error (a full device, standard output closed) is a message and exit 1.
#[test]
fn a_failed_write_is_a_message_and_exit_1() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let o = Command::new(env!("CARGO_BIN_EXE_san-spi"))
        .args(["ioctl", "list"])
        .stdout(full)
        .output()
        .expect("san-spi runs");
    assert_eq!(o.status.code(), Some(1), "{:?}", o.status);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot write the output"), "{err}");
    // The shell closes standard output before the command starts.
    let o = Command::new("sh")
        .args([
            "-c",
            "exec \"$0\" guid list >&-",
            env!("CARGO_BIN_EXE_san-spi"),
        ])
        .output()
        .expect("sh runs");
    assert_eq!(o.status.code(), Some(1), "{:?}", o.status);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("standard output is closed"), "{err}");
    // `> /dev/null` is not closed.
    let o = Command::new("sh")
        .args([
            "-c",
            "exec \"$0\" guid list > /dev/null",
            env!("CARGO_BIN_EXE_san-spi"),
        ])
        .output()
        .expect("sh runs");
    assert!(o.status.success(), "{:?}", o);
}
