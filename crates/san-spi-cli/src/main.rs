//! `san-spi` — inspect what a Windows Sockets Direct SAN provider speaks: control codes,
//! extension GUIDs, and the address list this host would report; and `san-spi demo`, a
//! provider end to end in two processes over the shared-memory loopback transport.
//!
//! Every command takes `--json`. Bad input prints a message on stderr and exits with 2; a
//! failed write of the output exits 1 with a message, a closed pipe ends quietly as SIGPIPE
//! would (see `out`).

mod out;

mod bench;
mod demo;
mod host;

use out::{out, outln};

use clap::{Args, Parser, Subcommand};
use san_spi_core::addr::eligibility::{classify, Verdict};
use san_spi_core::addr::{SocketAddressListRepr, Width};
use san_spi_core::guid::ExtensionFunction;
use san_spi_core::ioctl::{IoctlCode, KNOWN_CODES};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

/// Exit code for bad input (as clap uses for usage errors).
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "san-spi",
    version,
    about = "Windows Sockets Direct SAN provider toolkit"
)]
struct Cli {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode and list WSPIoctl control codes.
    #[command(subcommand)]
    Ioctl(IoctlCmd),
    /// The SAN extension functions and their GUIDs.
    #[command(subcommand)]
    Guid(GuidCmd),
    /// This host's addresses as SIO_ADDRESS_LIST_QUERY would report them.
    Addrs(AddrsArgs),
    /// Two processes over the shared-memory loopback transport: extension functions,
    /// address list, memory registration, send/receive, RDMA, overlapped completion, close.
    /// Exits 0 when every step passes, 1 otherwise.
    Demo(DemoArgs),
    /// Benchmarks: `bench loopback [--quick] [--json] [--plot FILE.svg]` measures the
    /// loopback transport against its baselines in one run.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

#[derive(Args)]
struct DemoArgs {
    /// Run as the demo's peer process (started by the demo itself).
    #[arg(long, hide = true, num_args = 2, value_names = ["NAMESPACE", "ADDR"])]
    peer: Option<Vec<String>>,
}

#[derive(Subcommand)]
enum IoctlCmd {
    /// Decode a control code given in hex (0xC8000006), decimal or by name (SIO_GET_QOS).
    Decode {
        /// The code.
        code: String,
    },
    /// List the known control codes.
    List,
}

#[derive(Subcommand)]
enum GuidCmd {
    /// List the seven extension functions with their GUIDs and Windows byte layout.
    List,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct AddrsArgs {
    #[command(subcommand)]
    command: Option<AddrsCmd>,
}

#[derive(Subcommand)]
enum AddrsCmd {
    /// Say for each address whether the provider keeps or drops it, and why.
    Classify {
        /// Treat every address as temporary (a privacy address).
        #[arg(long)]
        temporary: bool,
        /// IPv4 or IPv6 addresses.
        #[arg(required = true)]
        addrs: Vec<String>,
    },
    /// Hex dump of the SOCKET_ADDRESS_LIST holding these addresses.
    Emit {
        /// Pointer width of the caller: 32 or 64.
        #[arg(long, value_parser = parse_width)]
        width: Width,
        /// Caller address of the output buffer, in hex.
        #[arg(long, default_value = "0", value_parser = parse_hex_u64)]
        base: u64,
        #[arg(
            required = true,
            help = "Addresses, optionally with a port (192.0.2.1:80, [fe80::1]:80)"
        )]
        addrs: Vec<String>,
    },
}

fn parse_width(s: &str) -> Result<Width, String> {
    Some(s)
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u32>().ok())
        .and_then(Width::from_bits)
        .ok_or_else(|| format!("width must be 32 or 64, got {:?}", s))
}

fn parse_hex_u64(s: &str) -> Result<u64, String> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    // `from_str_radix` takes a sign; an address has none.
    Some(digits)
        .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit() || b == b'_'))
        .and_then(|d| u64::from_str_radix(&d.replace('_', ""), 16).ok())
        .ok_or_else(|| {
            format!(
                "base must be a 64-bit hex number such as 0x10000, got {:?}",
                s
            )
        })
}

/// Bad input: the message to print and exit 2.
struct Usage(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(code) = out::check_open() {
        return code;
    }
    let result = match cli.command {
        Command::Bench(cmd) => return bench::run(cmd, cli.json),
        Command::Demo(DemoArgs { peer: None }) => return demo::run(cli.json),
        Command::Demo(DemoArgs { peer: Some(args) }) => match demo_peer_args(&args) {
            Ok((namespace, addr)) => return demo::peer_main(namespace, addr),
            Err(usage) => Err(usage),
        },
        Command::Ioctl(IoctlCmd::Decode { code }) => ioctl_decode(&code, cli.json),
        Command::Ioctl(IoctlCmd::List) => {
            ioctl_list(cli.json);
            Ok(())
        }
        Command::Guid(GuidCmd::List) => {
            guid_list(cli.json);
            Ok(())
        }
        Command::Addrs(AddrsArgs { command: None }) => addrs_host(cli.json),
        Command::Addrs(AddrsArgs {
            command: Some(AddrsCmd::Classify { temporary, addrs }),
        }) => addrs_classify(&addrs, temporary, cli.json),
        Command::Addrs(AddrsArgs {
            command: Some(AddrsCmd::Emit { width, base, addrs }),
        }) => addrs_emit(&addrs, width, base, cli.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Usage(msg)) => {
            eprintln!("san-spi: {msg}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The arguments of `demo --peer NAMESPACE ADDR`.
fn demo_peer_args(args: &[String]) -> Result<(&str, SocketAddr), Usage> {
    let (namespace, addr) = match args {
        [n, a] => (n, a),
        _ => return Err(Usage("--peer takes a namespace and an address".into())),
    };
    if namespace.is_empty() || namespace.len() > 64 {
        return Err(Usage(format!(
            "the namespace must have 1 to 64 bytes, got {namespace:?}"
        )));
    }
    let addr: SocketAddr = addr.parse().map_err(|_| {
        Usage(format!(
            "{addr:?} is not a socket address (198.18.0.1:7000)"
        ))
    })?;
    Ok((namespace, addr))
}

fn print_json(v: &Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values always serialize")
    );
}

fn code_json(code: IoctlCode) -> Value {
    let known = code.known();
    json!({
        "code": format!("0x{:08X}", code.raw()),
        "value": code.raw(),
        "name": code.name(),
        "input": code.is_input(),
        "output": code.is_output(),
        "void": code.is_void(),
        "type": code.ioctl_type() as u8,
        "type_name": code.ioctl_type().name(),
        "family": code.family(),
        "number": code.number(),
        "san": known.map(|k| k.san),
        "always_blocking": known.map(|k| k.always_blocking),
        "summary": known.map(|k| k.summary),
    })
}

fn ioctl_decode(text: &str, json: bool) -> Result<(), Usage> {
    let code: IoctlCode = text.parse().map_err(|e| Usage(format!("{e}")))?;
    if json {
        print_json(&code_json(code));
    } else {
        outln!("{code}");
        if let Some(k) = code.known() {
            outln!("  {}", k.summary);
        }
    }
    Ok(())
}

fn ioctl_list(json: bool) {
    if json {
        let codes: Vec<Value> = KNOWN_CODES.iter().map(|k| code_json(k.code)).collect();
        print_json(&json!({ "codes": codes }));
        return;
    }
    for k in KNOWN_CODES.iter() {
        let san = if k.san { "SAN" } else { "   " };
        outln!(
            "0x{:08X}  {}  {:<36} {}",
            k.code.raw(),
            san,
            k.name,
            k.summary
        );
    }
}

fn guid_list(json: bool) {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    if json {
        let fns: Vec<Value> = ExtensionFunction::ALL
            .iter()
            .map(|f| {
                json!({
                    "function": f.name(),
                    "guid_name": f.guid_name(),
                    "guid": format!("{{{}}}", f.guid().to_string().to_uppercase()),
                    "windows_bytes": hex(&f.windows_bytes()),
                })
            })
            .collect();
        print_json(&json!({ "extension_functions": fns }));
        return;
    }
    for f in ExtensionFunction::ALL {
        outln!(
            "{:<36} {{{}}}  {}",
            f.name(),
            f.guid().to_string().to_uppercase(),
            hex(&f.windows_bytes())
        );
    }
}

fn verdict_json(given: &str, v: Verdict) -> Value {
    json!({ "address": given, "action": v.action(), "reason": v.reason() })
}

fn list_lens(addrs: &[SocketAddr]) -> Value {
    let repr = SocketAddressListRepr { addresses: addrs };
    json!({ "w32": repr.buffer_len(Width::W32), "w64": repr.buffer_len(Width::W64) })
}

fn addrs_host(json: bool) -> Result<(), Usage> {
    let all = host::host_addresses()
        .map_err(|e| Usage(format!("cannot read this host's addresses: {e}")))?;
    let kept: Vec<SocketAddr> = all
        .iter()
        .filter(|a| classify(a.addr, a.temporary).is_keep())
        .map(|a| a.socket_addr())
        .collect();
    let lens = list_lens(&kept);
    if json {
        let rows: Vec<Value> = all
            .iter()
            .map(|a| {
                let v = classify(a.addr, a.temporary);
                let mut row = verdict_json(&a.addr.to_string(), v);
                row["interface"] = json!(a.interface);
                row["temporary"] = json!(a.temporary);
                row
            })
            .collect();
        print_json(&json!({
            "addresses": rows,
            "kept": kept.len(),
            "socket_address_list_len": lens,
        }));
        return Ok(());
    }
    for a in &all {
        let v = classify(a.addr, a.temporary);
        let temp = if a.temporary { " (temporary)" } else { "" };
        outln!(
            "{:<10} {:<40} {}  {}{}",
            a.interface,
            a.addr,
            v.action(),
            v.reason(),
            temp
        );
    }
    outln!(
        "SOCKET_ADDRESS_LIST with {} addresses: {} bytes at 32-bit, {} bytes at 64-bit",
        kept.len(),
        lens["w32"],
        lens["w64"]
    );
    Ok(())
}

fn parse_ip(given: &str) -> Result<IpAddr, Usage> {
    given
        .parse()
        .map_err(|_| Usage(format!("{given:?} is not an IPv4 or IPv6 address")))
}

fn addrs_classify(given: &[String], temporary: bool, json: bool) -> Result<(), Usage> {
    // Parse everything first so that bad input prints nothing but the error.
    let parsed = given
        .iter()
        .map(|g| parse_ip(g).map(|ip| (g.as_str(), classify(ip, temporary))))
        .collect::<Result<Vec<_>, _>>()?;
    if json {
        let rows: Vec<Value> = parsed.iter().map(|(g, v)| verdict_json(g, *v)).collect();
        print_json(&json!({ "addresses": rows }));
    } else {
        for (g, v) in parsed {
            outln!("{} {} {}", g, v.action(), v.reason());
        }
    }
    Ok(())
}

fn parse_socket_addr(given: &str) -> Result<SocketAddr, Usage> {
    given
        .parse::<SocketAddr>()
        .or_else(|_| given.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
        .map_err(|_| {
            Usage(format!(
                "{given:?} is not an address (192.0.2.1, 192.0.2.1:80, fe80::1 or [fe80::1]:80)"
            ))
        })
}

fn addrs_emit(given: &[String], width: Width, base: u64, json: bool) -> Result<(), Usage> {
    let addrs = given
        .iter()
        .map(|g| parse_socket_addr(g))
        .collect::<Result<Vec<_>, _>>()?;
    let repr = SocketAddressListRepr {
        addresses: &addrs[..],
    };
    let mut buf = vec![0u8; repr.buffer_len(width)];
    let n = repr
        .emit(&mut buf, width, base)
        .map_err(|e| Usage(format!("{e}")))?;
    if json {
        let hex: String = buf[..n].iter().map(|b| format!("{b:02x}")).collect();
        print_json(&json!({
            "width": width.bits(),
            "base": format!("{base:#x}"),
            "len": n,
            "hex": hex,
        }));
    } else {
        out!("{}", hexdump(&buf[..n], base));
    }
    Ok(())
}

/// `address: 16 hex bytes |ascii|`, one line per 16 bytes, addresses from `base`.
fn hexdump(bytes: &[u8], base: u64) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
            .collect();
        out.push_str(&format!(
            "{:08x}  {:<47}  |{}|\n",
            base + (i * 16) as u64,
            hex.join(" "),
            ascii
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hexdump_shows_offsets_from_base() {
        let d = hexdump(&[0x41; 20], 0x1000);
        let lines: Vec<&str> = d.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("00001000  41 41"));
        assert!(lines[1].starts_with("00001010  41 41 41 41"));
        assert!(lines[1].ends_with("|AAAA|"));
    }

    #[test]
    fn width_and_base_parsers_reject_bad_input() {
        assert_eq!(parse_width("64"), Ok(Width::W64));
        assert!(parse_width("16").is_err());
        assert_eq!(parse_hex_u64("0x1_0000"), Ok(0x10000));
        assert!(parse_hex_u64("zz").is_err());
    }
}
