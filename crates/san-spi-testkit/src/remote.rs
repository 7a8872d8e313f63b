//! The far end in a second process: [`RemotePeer`] and the loop that serves it.
//!
//! [`transport_conformance_cross_process!`](crate::transport_conformance_cross_process)
//! runs each behaviour of [`crate::suite`] with the far end in a copy of the test binary,
//! started with `--exact <test>` and the environment variable [`PEER_ENV`]. That copy
//! makes its transport ([`Harness::transport`], same name), listens, accepts, and then
//! runs a [`LocalPeer`] on the commands it reads from standard input, one answer line per
//! command. So the far end does exactly what the in-process suite's does, only in another
//! address space: one source per behaviour, only the driving differs.
//!
//! The protocol (ids, ranges as `start end`, access as `r`/`w`/`rw`, bytes as hex):
//! `reg id len fill access`, `regkey id len access key`, `part id of start end access`,
//! `write id offset hex`, `pattern id seed`, `sum id start end`, `read id start end`,
//! `desc id`, `dereg id`, `inval id start end`, `recv|send id start end token`, `wait`,
//! `quiet ms`, `close`, `exit`.

use crate::peer::{LocalPeer, Peer};
use crate::{next_port, unique_name, Harness, Pair, TIMEOUT};
use san_spi_core::transport::{block_on, Completion, MemAccess, Op, PostError, Transport};
use san_spi_core::WsaError;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that makes a test binary play the far end:
/// `<connection name> <address>`.
pub const PEER_ENV: &str = "SAN_SPI_XP_PEER";

fn access_name(a: MemAccess) -> &'static str {
    match (a.contains(MemAccess::READ), a.contains(MemAccess::WRITE)) {
        (true, true) => "rw",
        (true, false) => "r",
        _ => "w",
    }
}

fn access(s: &str) -> MemAccess {
    match s {
        "r" => MemAccess::READ,
        "w" => MemAccess::WRITE,
        _ => MemAccess::READ_WRITE,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn show_completion(c: &Completion) -> String {
    let op = match c.op {
        Op::Send => "send",
        Op::Recv => "recv",
        Op::RdmaWrite => "write",
        Op::RdmaRead => "read",
        _ => "other",
    };
    match c.result {
        Ok(n) => format!("{} {op} ok {n}", c.token),
        Err(e) => format!("{} {op} err {}", c.token, e.code()),
    }
}

fn parse_completion(s: &str) -> Completion {
    let w: Vec<&str> = s.split(' ').collect();
    assert_eq!(w.len(), 4, "completion `{s}`");
    let op = match w[1] {
        "send" => Op::Send,
        "recv" => Op::Recv,
        "write" => Op::RdmaWrite,
        "read" => Op::RdmaRead,
        other => panic!("the far end completed an unknown operation `{other}`"),
    };
    let n: i64 = w[3].parse().expect("number");
    let result = if w[2] == "ok" {
        Ok(n as u32)
    } else {
        Err(WsaError::from_code(n as i32).expect("a WSA error code"))
    };
    Completion::new(w[0].parse().expect("token"), op, result)
}

fn show_post(r: Result<(), PostError>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(PostError::InvalidSge { index }) => format!("invalid-sge {index}"),
        Err(e) => format!("{e:?}"),
    }
}

fn parse_post(s: &str) -> Result<(), PostError> {
    let w: Vec<&str> = s.split(' ').collect();
    Err(match w[0] {
        "ok" => return Ok(()),
        "invalid-sge" => PostError::InvalidSge {
            index: w[1].parse().expect("index"),
        },
        "QueueFull" => PostError::QueueFull,
        "Closed" => PostError::Closed,
        "TooLarge" => PostError::TooLarge,
        "BadDescriptor" => PostError::BadDescriptor,
        "NotSupported" => PostError::NotSupported,
        other => panic!("the far end answered `{other}` to a post"),
    })
}

fn show_result(r: Result<(), WsaError>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => format!("error {}", e.code()),
    }
}

fn parse_result(s: &str) -> Result<(), WsaError> {
    match s.strip_prefix("error ") {
        None if s == "ok" => Ok(()),
        Some(code) => {
            Err(WsaError::from_code(code.parse().expect("code")).expect("a WSA error code"))
        }
        None => panic!("the far end answered `{s}`"),
    }
}

/// The far end's side: runs [`LocalPeer`] on the commands of standard input. `spec` is
/// the value of [`PEER_ENV`]. Never returns.
pub fn serve<H: Harness>(spec: &str) -> ! {
    let (name, addr) = spec.split_once(' ').expect("name and address");
    let addr: SocketAddr = addr.parse().expect("address");
    let accept = LocalPeer::listen(H::transport(name), addr)
        .unwrap_or_else(|e| panic!("the far end cannot listen on {addr}: {e}"));
    println!("listening");
    let _ = std::io::stdout().flush();
    let mut p = accept();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(_) => break,
        };
        let w: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> u64 { w[i].parse().expect("number") };
        let id = || num(1) as u32;
        let range = |i: usize| num(i) as usize..num(i + 1) as usize;
        let answer = match w[0] {
            "reg" => {
                p.register(id(), num(2) as usize, num(3) as u8, access(w[4]));
                "ok".into()
            }
            "regkey" => {
                show_result(p.register_with_key(id(), num(2) as usize, access(w[3]), num(4)))
            }
            "part" => {
                p.register_part(id(), num(2) as u32, range(3), access(w[5]));
                "ok".into()
            }
            "write" => {
                p.write(
                    id(),
                    num(2) as usize,
                    &unhex(w.get(3).copied().unwrap_or("")),
                );
                "ok".into()
            }
            "pattern" => p.pattern(id(), num(2) as u8).to_string(),
            "sum" => p.checksum(id(), range(2)).to_string(),
            "read" => hex(&p.read(id(), range(2))),
            "desc" => match p.descriptor(id()) {
                Ok(d) => format!("ok {}", hex(&d)),
                Err(e) => format!("error {}", e.code()),
            },
            "dereg" => {
                p.deregister(id());
                "ok".into()
            }
            "inval" => p.invalidate(id(), range(2)).to_string(),
            "recv" => show_post(p.post_recv(id(), range(2), num(4))),
            "send" => show_post(p.post_send(id(), range(2), num(4))),
            "wait" => show_completion(&p.wait()),
            "quiet" => match p.quiet(Duration::from_millis(num(1))) {
                Some(c) => show_completion(&c),
                None => "none".into(),
            },
            "close" => {
                p.close();
                "ok".into()
            }
            "exit" => break,
            other => format!("unknown command {other}"),
        };
        println!("{answer}");
        let _ = std::io::stdout().flush();
    }
    drop(p);
    std::process::exit(0);
}

/// The parent's handle on the far end's process.
pub struct RemotePeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl RemotePeer {
    /// Starts the far end for the test `path` (`module_path!()::name`) on connection `name`
    /// at `addr`, and waits until it listens.
    pub fn spawn(path: &str, name: &str, addr: SocketAddr) -> RemotePeer {
        // libtest filters without the crate's own name.
        let exact = path.split_once("::").map_or(path, |x| x.1);
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .args(["--exact", exact, "--nocapture", "--test-threads=1"])
            .env(PEER_ENV, format!("{name} {addr}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the far end");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        // Skip the test harness's own lines until the far end says it listens.
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the far end exited before listening");
            }
            if line.trim().ends_with("listening") {
                break;
            }
        }
        RemotePeer {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command and returns its answer line.
    fn cmd(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("the far end's stdin");
        self.stdin.flush().expect("the far end's stdin");
        let mut answer = String::new();
        self.stdout
            .read_line(&mut answer)
            .expect("the far end's stdout");
        assert!(!answer.is_empty(), "the far end exited during `{line}`");
        answer.trim().to_string()
    }

    fn ok(&mut self, line: &str) {
        let a = self.cmd(line);
        assert_eq!(a, "ok", "the far end answered `{a}` to `{line}`");
    }

    fn number(&mut self, line: &str) -> u64 {
        let a = self.cmd(line);
        a.parse()
            .unwrap_or_else(|_| panic!("the far end answered `{a}` to `{line}`"))
    }
}

fn r(range: &Range<usize>) -> String {
    format!("{} {}", range.start, range.end)
}

impl Peer for RemotePeer {
    fn register(&mut self, id: u32, len: usize, fill: u8, a: MemAccess) {
        self.ok(&format!("reg {id} {len} {fill} {}", access_name(a)));
    }

    fn register_with_key(
        &mut self,
        id: u32,
        len: usize,
        a: MemAccess,
        key: u64,
    ) -> Result<(), WsaError> {
        parse_result(&self.cmd(&format!("regkey {id} {len} {} {key}", access_name(a))))
    }

    fn register_part(&mut self, id: u32, of: u32, range: Range<usize>, a: MemAccess) {
        self.ok(&format!("part {id} {of} {} {}", r(&range), access_name(a)));
    }

    fn write(&mut self, id: u32, offset: usize, bytes: &[u8]) {
        self.ok(&format!("write {id} {offset} {}", hex(bytes)));
    }

    fn pattern(&mut self, id: u32, seed: u8) -> u64 {
        self.number(&format!("pattern {id} {seed}"))
    }

    fn checksum(&mut self, id: u32, range: Range<usize>) -> u64 {
        self.number(&format!("sum {id} {}", r(&range)))
    }

    fn read(&mut self, id: u32, range: Range<usize>) -> Vec<u8> {
        unhex(&self.cmd(&format!("read {id} {}", r(&range))))
    }

    fn descriptor(&mut self, id: u32) -> Result<Vec<u8>, WsaError> {
        let a = self.cmd(&format!("desc {id}"));
        match a.strip_prefix("ok") {
            Some(h) => Ok(unhex(h.trim())),
            None => parse_result(&a).map(|()| Vec::new()),
        }
    }

    fn deregister(&mut self, id: u32) {
        self.ok(&format!("dereg {id}"));
    }

    fn invalidate(&mut self, id: u32, range: Range<usize>) -> usize {
        self.number(&format!("inval {id} {}", r(&range))) as usize
    }

    fn post_recv(&mut self, id: u32, range: Range<usize>, token: u64) -> Result<(), PostError> {
        parse_post(&self.cmd(&format!("recv {id} {} {token}", r(&range))))
    }

    fn post_send(&mut self, id: u32, range: Range<usize>, token: u64) -> Result<(), PostError> {
        parse_post(&self.cmd(&format!("send {id} {} {token}", r(&range))))
    }

    fn wait(&mut self) -> Completion {
        parse_completion(&self.cmd("wait"))
    }

    fn quiet(&mut self, d: Duration) -> Option<Completion> {
        let a = self.cmd(&format!("quiet {}", d.as_millis()));
        if a == "none" {
            None
        } else {
            Some(parse_completion(&a))
        }
    }

    fn close(&mut self) {
        self.ok("close");
    }

    fn kill(&mut self) -> bool {
        let _ = self.child.kill();
        let _ = self.child.wait();
        true
    }
}

impl Drop for RemotePeer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "exit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + TIMEOUT.min(Duration::from_secs(5));
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                _ if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// Connects a local end to a far end in a new process, for round `round` of the test at
/// `path`.
pub fn cross_process<H: Harness>(path: &str, round: u64) -> Pair<H> {
    let test = path.rsplit("::").next().unwrap_or(path);
    let name = unique_name(test);
    let t = H::transport(&name);
    let addr = H::listen_addr(&t, next_port());
    let peer = RemotePeer::spawn(path, &name, addr);
    let ep = block_on(t.connect(addr))
        .unwrap_or_else(|e| panic!("connect to the far end at {addr}: {e}"));
    let caps = t.capabilities();
    Pair {
        name,
        round,
        t,
        ep,
        peer: Box::new(peer),
        caps,
    }
}

/// The body of each cross-process test: plays the far end when this process is one
/// ([`PEER_ENV`] set), else runs `behaviour` `rounds` times against fresh far ends.
pub fn run_cross_process<H: Harness>(path: &str, rounds: u64, behaviour: fn(&mut Pair<H>)) {
    if let Ok(spec) = std::env::var(PEER_ENV) {
        serve::<H>(&spec);
    }
    for round in 0..rounds {
        let mut x = cross_process::<H>(path, round);
        behaviour(&mut x);
    }
}
