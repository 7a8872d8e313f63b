//! `san-spi demo`: a provider end to end, in two processes over the shared-memory loopback
//! transport.
//!
//! The demo starts a second copy of this executable as its peer (`san-spi demo --peer
//! NAMESPACE ADDR`, hidden from `--help`) in a loopback namespace of its own, connects to
//! it, and runs one numbered step after another, each reported `ok` or `FAILED`:
//!
//! 1. start the peer process and connect to it;
//! 2. discover the seven extension functions through `WSPIoctl`;
//! 3. the address list, first into a buffer that is too small;
//! 4. memory registration; the peer sends the RDMA descriptor of its 1 MiB region;
//! 5. a message each way, verified;
//! 6. an RDMA write into the peer's region at an offset and an RDMA read back, verified by
//!    content here and by the peer's own checksum;
//! 7. one overlapped completion in each mode (upcall, poll-only, APC) through the fake switch;
//! 8. a clean close: a receive posted before the close completes with
//!    `WSA_OPERATION_ABORTED`; the peer sees a graceful close (its receive ends with
//!    `WSAEDISCON`) and exits 0.
//!
//! Messages between the two processes start with a 4-byte tag:
//!
//! | from | tag | body |
//! |---|---|---|
//! | peer | `DESC` | the RDMA descriptor of the peer's region (sent first) |
//! | demo | `MSG\0` | payload; the peer answers `ECHO`: FNV-1a of the payload (u64 LE), then its own payload |
//! | demo | `SUM\0` | offset, length (u64 LE); the peer answers `SUMR`: FNV-1a of that range of its region |
//! | demo | `BYE\0` | —; the peer posts a receive, answers `BYE!`, waits for that receive to end with `WSAEDISCON` (the demo's graceful close), closes its endpoint and exits 0 |
//!
//! Nothing waits forever: every completion is awaited with a timeout under an overall
//! deadline, the connect attempt runs on a helper thread, the peer process is killed and
//! reaped on every exit path, and the peer exits by itself when its parent is gone or its
//! own deadline passes.
//!
//! Test hook: with `SAN_SPI_DEMO_PEER_FAULT=exit-on-first-request` in its environment the
//! peer exits with 1 when the first request arrives, without answering or closing, as if it
//! had crashed; the demo must then fail the remaining steps with the peer promptly and
//! exit 1.

use crate::out::outln;
use san_spi_core::addr::{SocketAddressList, SocketAddressListRepr, Width};
use san_spi_core::dispatch::{DispatchConfig, Dispatcher, IoctlRequest, IoctlReturn};
use san_spi_core::guid::ExtensionFunction;
use san_spi_core::ioctl::{SIO_ADDRESS_LIST_QUERY, SIO_GET_EXTENSION_FUNCTION_POINTER};
use san_spi_core::overlapped::{
    get_overlapped_result, ApcCall, OverlappedRequest, OverlappedResult,
};
use san_spi_core::testing::{FakeSwitch, Upcall};
use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, Memory, Op, PostError, RemoteTarget, Sge,
    Transport,
};
use san_spi_core::upcall::ThreadId;
use san_spi_core::WsaError;
use san_spi_loopback::{LoopbackEndpoint, LoopbackTransport, DESCRIPTOR_LEN};
use san_spi_testkit::RegisteredBuf;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The address the peer listens on (the loopback transport's virtual NIC).
pub const LISTEN_ADDR: &str = "198.18.0.1:7000";
/// How long the connect attempt may take, peer start-up included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one operation may take.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the whole demo may take.
const DEMO_DEADLINE: Duration = Duration::from_secs(30);
/// How long the peer process may live: a little longer than the demo.
const PEER_DEADLINE: Duration = Duration::from_secs(35);
/// How long the peer may take to exit once the connection is closed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The peer's RDMA region.
const PEER_REGION_LEN: usize = 1 << 20;
/// Each side's send and receive buffer.
const MSG_BUF_LEN: usize = 64 << 10;
/// The RDMA transfer.
const RDMA_LEN: usize = 256 << 10;
/// Where in the peer's region the RDMA transfer goes: past 64 KiB, not aligned.
const RDMA_OFFSET: u64 = (64 << 10) + 100;
/// Bytes of the payload each side sends in step 5.
const PAYLOAD_LEN: usize = 1000;
/// Seeds of the patterns: the demo's message, the peer's message, the RDMA data.
const SEED_DEMO: u64 = 0x5A4E_0001;
const SEED_PEER: u64 = 0x5A4E_0002;
const SEED_RDMA: u64 = 0x5A4E_0003;

const TAG_DESC: &[u8; 4] = b"DESC";
const TAG_MSG: &[u8; 4] = b"MSG\0";
const TAG_ECHO: &[u8; 4] = b"ECHO";
const TAG_SUM: &[u8; 4] = b"SUM\0";
const TAG_SUMR: &[u8; 4] = b"SUMR";
const TAG_BYE: &[u8; 4] = b"BYE\0";
const TAG_BYE_ACK: &[u8; 4] = b"BYE!";

/// The environment variable of the test hook (see the module docs).
const FAULT_ENV: &str = "SAN_SPI_DEMO_PEER_FAULT";

// ---------------------------------------------------------------------------------------
// Data helpers.
// ---------------------------------------------------------------------------------------

/// FNV-1a, 64-bit.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `len` pseudo-random bytes from `seed` (xorshift64).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at + 8)?;
    let mut v = [0u8; 8];
    v.copy_from_slice(b);
    Some(u64::from_le_bytes(v))
}

/// Splits a message into its tag and body.
fn split(msg: &[u8]) -> Result<(&[u8], &[u8]), String> {
    if msg.len() < 4 {
        return Err(format!("a {}-byte message has no tag", msg.len()));
    }
    Ok(msg.split_at(4))
}

fn expect_tag<'m>(msg: &'m [u8], tag: &[u8; 4]) -> Result<&'m [u8], String> {
    let (t, body) = split(msg)?;
    if t != tag {
        return Err(format!(
            "expected a {:?} message, got {:?}",
            String::from_utf8_lossy(tag),
            String::from_utf8_lossy(t)
        ));
    }
    Ok(body)
}

fn wsa(e: WsaError) -> String {
    format!("{} ({})", e.name(), e.code())
}

// ---------------------------------------------------------------------------------------
// Registered memory.
// ---------------------------------------------------------------------------------------

/// A buffer registered with the transport: the testkit's [`RegisteredBuf`], whose bytes
/// are reached only by copy, so the transport may write them while we hold it. Dropping it
/// deregisters, then frees. Whoever owns a `Region` closes the endpoints that use it before
/// dropping it (see [`Conn`]; in `peer`, the endpoint is declared after the regions), so no
/// operation can touch the buffer after it is freed.
type Region = RegisteredBuf<Arc<LoopbackTransport>>;

/// `len` zero bytes registered with `access` (a clone of a transport shares its
/// registrations).
fn new_region(
    transport: &LoopbackTransport,
    len: usize,
    access: MemAccess,
) -> Result<Region, String> {
    RegisteredBuf::new(Arc::new(transport.clone()), len, 0, access)
        .map_err(|e| format!("registering {} KiB failed: {}", len >> 10, wsa(e)))
}

/// The SGE of `len` bytes at `at` of `r`; an error once `r` is deregistered.
fn sge(r: &Region, at: usize, len: usize) -> Result<Sge, String> {
    if r.registration().is_none() {
        return Err("the region is no longer registered".to_owned());
    }
    if u32::try_from(len).is_err() {
        return Err("SGE too long".to_owned());
    }
    Ok(r.sge(at..at + len))
}

// ---------------------------------------------------------------------------------------
// A connection with its message buffers.
// ---------------------------------------------------------------------------------------

/// A connected endpoint with a registered send buffer (`outbox`), receive buffer (`inbox`)
/// and any further regions it uses. Dropping it closes the endpoint, then deregisters and
/// frees the regions.
struct Conn {
    ep: LoopbackEndpoint,
    inbox: Region,
    outbox: Region,
    regions: Vec<Region>,
    /// Completions polled while waiting for another token.
    stash: Vec<Completion>,
    next_token: u64,
    /// No wait goes past this.
    deadline: Instant,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // First: after `close` returns, the progress thread is joined and nothing touches
        // the regions any more. The fields (regions included) are dropped after this.
        self.ep.close();
    }
}

impl Conn {
    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// The completion of `token`, waiting at most `timeout` (and never past the deadline).
    fn wait(&mut self, token: u64, what: &str, timeout: Duration) -> Result<Completion, String> {
        let start = Instant::now();
        let deadline = (start + timeout).min(self.deadline);
        loop {
            if let Some(i) = self.stash.iter().position(|c| c.token == token) {
                return Ok(self.stash.remove(i));
            }
            let mut polled = [Completion::default(); 8];
            let n = self.ep.poll(&mut polled);
            if n > 0 {
                self.stash.extend_from_slice(&polled[..n]);
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "timed out after {} ms waiting for {what}",
                    (now - start).as_millis()
                ));
            }
            self.ep
                .wait((deadline - now).min(Duration::from_millis(100)));
        }
    }

    /// Sends `tag` + `body` as one message and waits for the send to complete.
    fn send(&mut self, tag: &[u8; 4], body: &[u8]) -> Result<(), String> {
        let len = 4 + body.len();
        if len > self.outbox.len() {
            return Err(format!("a {len}-byte message does not fit the send buffer"));
        }
        self.outbox.write(0, tag);
        self.outbox.write(4, body);
        let token = self.token();
        let sge = sge(&self.outbox, 0, len)?;
        self.ep
            .post_send(&[sge], token)
            .map_err(|e| format!("post_send: {e}"))?;
        let c = self.wait(token, "the send to complete", OP_TIMEOUT)?;
        match c.result {
            Ok(n) if n as usize == len && c.op == Op::Send => Ok(()),
            Ok(n) => Err(format!("the send completed with {n} bytes, not {len}")),
            Err(e) => Err(format!("the send failed: {}", wsa(e))),
        }
    }

    /// Posts a receive for the whole inbox and returns its token.
    fn post_recv(&mut self) -> Result<u64, PostError> {
        let token = self.token();
        // The inbox is deregistered only when the connection is being torn down.
        let sge = self
            .inbox
            .registration()
            .map(|_| self.inbox.sge(0..self.inbox.len()))
            .ok_or(PostError::Closed)?;
        self.ep.post_recv(&[sge], token)?;
        Ok(token)
    }

    /// Receives one message, waiting at most `timeout`.
    fn recv(&mut self, what: &str, timeout: Duration) -> Result<Vec<u8>, String> {
        let token = self.post_recv().map_err(|e| format!("post_recv: {e}"))?;
        let c = self.wait(token, what, timeout)?;
        match c.result {
            Ok(n) => Ok(self.inbox.to_vec(0..n as usize)),
            Err(e) => Err(format!("receiving {what}: {}", wsa(e))),
        }
    }

    /// Runs one RDMA operation and checks that it moved `len` bytes.
    fn rdma(&mut self, op: Op, sges: &[Sge], target: RemoteTarget<'_>) -> Result<(), String> {
        let token = self.token();
        let len: u64 = sges.iter().map(|s| s.len as u64).sum();
        let (posted, name) = match op {
            Op::RdmaWrite => (self.ep.rdma_write(sges, target, token), "RDMA write"),
            _ => (self.ep.rdma_read(sges, target, token), "RDMA read"),
        };
        posted.map_err(|e| format!("{name}: {e}"))?;
        let c = self.wait(token, &format!("the {name} to complete"), OP_TIMEOUT)?;
        match c.result {
            Ok(n) if n as u64 == len => Ok(()),
            Ok(n) => Err(format!("the {name} moved {n} bytes, not {len}")),
            Err(e) => Err(format!("the {name} failed: {}", wsa(e))),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The peer process.
// ---------------------------------------------------------------------------------------

/// The peer's `main`: `san-spi demo --peer NAMESPACE ADDR`. Exits 0 when the demo closed
/// the connection after `BYE`, 1 on any error (with a message on stderr).
pub fn peer_main(namespace: &str, addr: SocketAddr) -> ExitCode {
    start_watchdog();
    match peer(namespace, addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("san-spi demo peer: {e}");
            ExitCode::from(1)
        }
    }
}

/// Ends the peer process if its parent is gone or [`PEER_DEADLINE`] has passed, so that
/// it never outlives the demo (a blocked `accept`, a parent killed with SIGKILL).
fn start_watchdog() {
    let parent = std::os::unix::process::parent_id();
    let start = Instant::now();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(50));
        if std::os::unix::process::parent_id() != parent {
            eprintln!("san-spi demo peer: the demo process is gone; exiting");
            std::process::exit(1);
        }
        if start.elapsed() > PEER_DEADLINE {
            eprintln!(
                "san-spi demo peer: still running after {} s; exiting",
                PEER_DEADLINE.as_secs()
            );
            std::process::exit(1);
        }
    });
}

fn peer(namespace: &str, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + PEER_DEADLINE;
    let transport = LoopbackTransport::new(namespace);
    let listener = block_on(transport.listen(addr))
        .map_err(|e| format!("cannot listen on {addr}: {}", wsa(e)))?;
    // The region the demo writes and reads with RDMA: the peer may do both.
    let region = new_region(&transport, PEER_REGION_LEN, MemAccess::READ_WRITE)?;
    let inbox = new_region(&transport, MSG_BUF_LEN, MemAccess::WRITE)?;
    let outbox = new_region(&transport, MSG_BUF_LEN, MemAccess::READ)?;
    // Bounded by the watchdog.
    let ep = block_on(listener.accept()).map_err(|e| format!("accept: {}", wsa(e)))?;
    drop(listener);
    let mut desc = [0u8; DESCRIPTOR_LEN];
    let n = transport
        .export(region.handle(), &mut desc)
        .map_err(|e| format!("export: {}", wsa(e)))?;
    // From here on `conn` owns the endpoint and the regions: dropping it closes first.
    let mut conn = Conn {
        ep,
        inbox,
        outbox,
        regions: vec![region],
        stash: Vec::new(),
        next_token: 0,
        deadline,
    };
    conn.send(TAG_DESC, &desc[..n])?;
    let crash = std::env::var(FAULT_ENV).as_deref() == Ok("exit-on-first-request");
    loop {
        let msg = conn.recv("the next request", PEER_DEADLINE)?;
        if crash {
            eprintln!("san-spi demo peer: {FAULT_ENV}: exiting without answering or closing");
            std::process::exit(1);
        }
        let (tag, body) = split(&msg)?;
        match tag {
            t if t == TAG_MSG => {
                let mut reply = fnv1a(body).to_le_bytes().to_vec();
                reply.extend_from_slice(&pattern(SEED_PEER, PAYLOAD_LEN));
                conn.send(TAG_ECHO, &reply)?;
            }
            t if t == TAG_SUM => {
                let (offset, len) = match (u64_at(body, 0), u64_at(body, 8)) {
                    (Some(o), Some(l)) => (o, l),
                    _ => return Err("a SUM request needs an offset and a length".into()),
                };
                let end = offset
                    .checked_add(len)
                    .filter(|&e| e <= PEER_REGION_LEN as u64)
                    .ok_or_else(|| format!("SUM range {offset}+{len} is outside the region"))?;
                let sum = fnv1a(&conn.regions[0].to_vec(offset as usize..end as usize));
                conn.send(TAG_SUMR, &sum.to_le_bytes())?;
            }
            t if t == TAG_BYE => return peer_close(conn),
            t => return Err(format!("unknown request {:?}", String::from_utf8_lossy(t))),
        }
    }
}

/// After `BYE`: posts a receive, acknowledges, and waits for the demo's graceful close to
/// end that receive with WSAEDISCON. Then closes this side too.
///
/// The receive is posted before the acknowledgement, so the close cannot overtake it.
fn peer_close(mut conn: Conn) -> Result<(), String> {
    let token = conn
        .post_recv()
        .map_err(|e| format!("post_recv after BYE: {e}"))?;
    conn.send(TAG_BYE_ACK, &[])?;
    let c = conn.wait(token, "the demo to close the connection", OP_TIMEOUT)?;
    match c.result {
        Ok(n) => return Err(format!("received {n} bytes after BYE")),
        Err(WsaError::Discon) => {}
        Err(e) => {
            return Err(format!(
                "the receive failed with {} when the demo closed, not WSAEDISCON",
                wsa(e)
            ))
        }
    }
    conn.ep.close();
    if !conn.ep.is_closed() {
        return Err("the endpoint is not closed after close()".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The demo.
// ---------------------------------------------------------------------------------------

/// The peer process: killed and reaped when dropped, unless it was reaped already.
struct PeerProcess {
    child: Child,
    status: Option<ExitStatus>,
}

impl PeerProcess {
    fn spawn(namespace: &str, addr: SocketAddr) -> Result<PeerProcess, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this executable to start the peer: {e}"))?;
        let child = Command::new(&exe)
            .args(["demo", "--peer", namespace, &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        Ok(PeerProcess {
            child,
            status: None,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits at most `timeout` for the process to exit; kills it after that.
    fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "the peer did not exit within {} s; killed it",
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The result of one step.
struct Step {
    name: &'static str,
    ok: bool,
    detail: String,
    lines: Vec<String>,
}

/// What a step that passed reports: a summary and optional lines of detail.
struct Report {
    detail: String,
    lines: Vec<String>,
}

impl Report {
    fn new(detail: String) -> Report {
        Report {
            detail,
            lines: Vec::new(),
        }
    }
}

type StepResult = Result<Report, String>;

/// Everything the demo holds. Dropping it closes the connection, deregisters the memory
/// and kills the peer if it still runs.
struct Demo {
    namespace: String,
    addr: SocketAddr,
    transport: LoopbackTransport,
    dispatcher: Dispatcher<LoopbackTransport>,
    switch: FakeSwitch,
    socket: u64,
    deadline: Instant,
    /// Connected, not yet wrapped into `conn` (between steps 1 and 4).
    endpoint: Option<LoopbackEndpoint>,
    conn: Option<Conn>,
    peer_descriptor: Vec<u8>,
    peer: Option<PeerProcess>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(ep) = self.endpoint.take() {
            ep.close();
        }
        drop(self.conn.take());
        if let Some(mut p) = self.peer.take() {
            p.kill();
        }
    }
}

/// The socket descriptor the demo opens on the dispatcher.
const DEMO_SOCKET: u64 = 0x100;
/// The caller's `WSAOVERLAPPED` addresses in step 7 (the fake switch keeps their fields).
const OV_UPCALL: u64 = 0x7f00_0000_1000;
const OV_POLL: u64 = 0x7f00_0000_2000;
const OV_APC: u64 = 0x7f00_0000_3000;
/// The caller's completion routine and thread in step 7.
const APC_ROUTINE: u64 = 0x7ff6_1234_5000;
const APC_THREAD: ThreadId = ThreadId {
    thread_handle: 0x1f4,
    reserved: 0,
};

/// Runs the demo; prints a line per step (or, with `json`, a JSON array of the steps).
/// Exits 0 when every step passed, 1 otherwise.
pub fn run(json: bool) -> ExitCode {
    let started = Instant::now();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let namespace = format!("demo-{}-{}", std::process::id(), nanos);
    let addr: SocketAddr = LISTEN_ADDR.parse().expect("a literal address");
    let transport = LoopbackTransport::new(namespace.clone());
    let mut demo = Demo {
        namespace,
        addr,
        dispatcher: Dispatcher::new(transport.clone(), DispatchConfig::new(Width::host())),
        transport,
        switch: FakeSwitch::new(),
        socket: DEMO_SOCKET,
        deadline: started + DEMO_DEADLINE,
        endpoint: None,
        conn: None,
        peer_descriptor: Vec::new(),
        peer: None,
    };
    // The socket every `WSPIoctl` of the demo is made on; a fresh dispatcher has none.
    demo.dispatcher
        .open_socket(demo.socket)
        .expect("a new dispatcher opens its first socket");
    if !json {
        outln!(
            "san-spi demo: this process and a peer process over the shared-memory loopback transport"
        );
    }
    type StepFn = fn(&mut Demo) -> StepResult;
    // (name, step, needs the connection to the peer)
    let plan: [(&'static str, StepFn, bool); 8] = [
        ("start the peer process", Demo::start_peer, true),
        ("discover extension functions", Demo::discover, false),
        ("address list", Demo::address_list, false),
        ("register memory", Demo::register_memory, true),
        ("send and receive", Demo::send_receive, true),
        ("RDMA write and read", Demo::rdma, true),
        ("overlapped completions", Demo::overlapped, false),
        ("close", Demo::close, true),
    ];
    let mut steps = Vec::new();
    let mut peer_failed: Option<usize> = None;
    for (i, (name, f, with_peer)) in plan.iter().enumerate() {
        let result = match (with_peer, peer_failed) {
            (true, Some(n)) => Err(format!("skipped: step {n} with the peer failed")),
            _ => f(&mut demo),
        };
        if result.is_err() && *with_peer && peer_failed.is_none() {
            peer_failed = Some(i + 1);
        }
        let step = match result {
            Ok(r) => Step {
                name,
                ok: true,
                detail: r.detail,
                lines: r.lines,
            },
            Err(e) => Step {
                name,
                ok: false,
                detail: e,
                lines: Vec::new(),
            },
        };
        if !json {
            print_step(i + 1, &step);
        }
        steps.push(step);
    }
    // Close, deregister and reap before reporting.
    drop(demo);
    let failed: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.ok)
        .map(|(i, _)| i + 1)
        .collect();
    if json {
        let rows: Vec<Value> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "step": i + 1,
                    "name": s.name,
                    "ok": s.ok,
                    "detail": s.detail,
                    "lines": s.lines,
                })
            })
            .collect();
        crate::print_json(&Value::Array(rows));
    } else if failed.is_empty() {
        outln!(
            "all {} steps passed in {} ms",
            steps.len(),
            started.elapsed().as_millis()
        );
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        let list: Vec<String> = failed.iter().map(|n| n.to_string()).collect();
        eprintln!(
            "san-spi demo: {} of {} steps failed (step{} {})",
            failed.len(),
            steps.len(),
            if failed.len() == 1 { "" } else { "s" },
            list.join(", ")
        );
        ExitCode::from(1)
    }
}

fn print_step(n: usize, s: &Step) {
    let status = if s.ok { "ok" } else { "FAILED" };
    outln!("{n:>2}. {:<30} {status:<6}  {}", s.name, s.detail);
    for line in &s.lines {
        outln!("        {line}");
    }
}

impl Demo {
    fn conn(&mut self) -> Result<&mut Conn, String> {
        self.conn
            .as_mut()
            .ok_or_else(|| "not connected to the peer".to_owned())
    }

    /// Step 1: start the peer and connect to it.
    fn start_peer(&mut self) -> StepResult {
        let started = Instant::now();
        let mut peer = PeerProcess::spawn(&self.namespace, self.addr)?;
        let pid = peer.pid();
        // Connect on a helper thread, retrying while the peer starts to listen. If the
        // peer never accepts, killing it (below, or when `peer` is dropped) ends the
        // helper's blocked handshake with an error.
        let (tx, rx) = std::sync::mpsc::channel();
        let transport = self.transport.clone();
        let addr = self.addr;
        std::thread::spawn(move || {
            let give_up = Instant::now() + CONNECT_TIMEOUT;
            let result = loop {
                match block_on(transport.connect(addr)) {
                    Ok(ep) => break Ok(ep),
                    Err(e) if Instant::now() >= give_up => break Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            };
            let _ = tx.send(result);
        });
        let deadline = started + CONNECT_TIMEOUT + Duration::from_millis(500);
        let ep = loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(Ok(ep)) => break ep,
                Ok(Err(e)) => {
                    peer.kill();
                    return Err(format!(
                        "cannot connect to the peer (pid {pid}) at {}: {}",
                        self.addr,
                        wsa(e)
                    ));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    peer.kill();
                    return Err("the connect thread ended without a result".into());
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(status) = peer.try_status() {
                return Err(format!(
                    "the peer (pid {pid}) exited before accepting: {status}"
                ));
            }
            if Instant::now() >= deadline {
                peer.kill();
                return Err(format!(
                    "the peer (pid {pid}) did not accept within {} s; killed it",
                    CONNECT_TIMEOUT.as_secs()
                ));
            }
        };
        self.endpoint = Some(ep);
        self.peer = Some(peer);
        Ok(Report {
            detail: format!(
                "peer pid {pid} accepted on {} in {} ms",
                self.addr,
                started.elapsed().as_millis()
            ),
            lines: vec![format!(
                "namespace {}: rings in a shared memfd, rendezvous over a Unix socket",
                self.namespace
            )],
        })
    }

    /// Step 2: `SIO_GET_EXTENSION_FUNCTION_POINTER` for each of the seven GUIDs.
    fn discover(&mut self) -> StepResult {
        let width = self.dispatcher.config().width;
        let mut lines = Vec::new();
        for f in ExtensionFunction::ALL {
            let guid = f.windows_bytes();
            let mut out = [0u8; 8];
            let base = out.as_ptr() as u64;
            let req = IoctlRequest::new(self.socket, SIO_GET_EXTENSION_FUNCTION_POINTER)
                .input(&guid)
                .output(&mut out[..width.pointer_len()], base);
            let r = self.dispatcher.ioctl(req, &self.switch);
            let want = IoctlReturn::Complete {
                bytes_returned: width.pointer_len() as u32,
                extension: Some(f),
            };
            if r != want {
                return Err(format!("{}: WSPIoctl returned {r:?}", f.name()));
            }
            lines.push(format!(
                "{:<36} {{{}}}",
                f.name(),
                f.guid().to_string().to_uppercase()
            ));
        }
        // A GUID no provider knows.
        let unknown = [0x5au8; 16];
        let mut out = [0u8; 8];
        let base = out.as_ptr() as u64;
        let req = IoctlRequest::new(self.socket, SIO_GET_EXTENSION_FUNCTION_POINTER)
            .input(&unknown)
            .output(&mut out, base);
        let r = self.dispatcher.ioctl(req, &self.switch);
        if r.errno() != Some(WsaError::Inval) {
            return Err(format!("an unknown GUID gave {r:?}, not WSAEINVAL"));
        }
        Ok(Report {
            detail: format!(
                "{} of {} through WSPIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER), {}-byte pointers; an unknown GUID is WSAEINVAL",
                lines.len(),
                ExtensionFunction::ALL.len(),
                width.pointer_len()
            ),
            lines,
        })
    }

    /// Step 3: `SIO_ADDRESS_LIST_QUERY`, too small first, then parsed back.
    fn address_list(&mut self) -> StepResult {
        let width = self.dispatcher.config().width;
        let mut small = vec![0u8; width.header_len()];
        let base = small.as_ptr() as u64;
        let req = IoctlRequest::new(self.socket, SIO_ADDRESS_LIST_QUERY).output(&mut small, base);
        let required = match self.dispatcher.ioctl(req, &self.switch) {
            IoctlReturn::Error {
                error: WsaError::Fault,
                bytes_returned: Some(n),
            } => n as usize,
            r => return Err(format!("a {}-byte buffer gave {r:?}", small.len())),
        };
        let mut buf = vec![0u8; required];
        let base = buf.as_ptr() as u64;
        let req = IoctlRequest::new(self.socket, SIO_ADDRESS_LIST_QUERY).output(&mut buf, base);
        let n = match self.dispatcher.ioctl(req, &self.switch) {
            IoctlReturn::Complete { bytes_returned, .. } => bytes_returned as usize,
            r => return Err(format!("a {required}-byte buffer gave {r:?}")),
        };
        if n != required {
            return Err(format!("{n} bytes returned, {required} announced"));
        }
        let list = SocketAddressList::new_checked(&buf[..n], width, base)
            .map_err(|e| format!("the list does not parse: {e}"))?;
        let repr = SocketAddressListRepr::parse(&list)
            .map_err(|e| format!("the list does not parse: {e}"))?;
        let want = self
            .dispatcher
            .eligible_addresses()
            .map_err(|e| format!("the transport's addresses: {}", wsa(e)))?;
        if repr.addresses.as_slice() != want.as_slice() || want.is_empty() {
            return Err(format!(
                "parsed {:?}, the transport serves {want:?}",
                repr.addresses
            ));
        }
        Ok(Report {
            detail: format!(
                "{}-byte buffer: WSAEFAULT, {required} bytes required; {required}-byte buffer: {} addresses, parsed back",
                small.len(),
                repr.addresses.len()
            ),
            lines: repr.addresses.iter().map(|a| a.to_string()).collect(),
        })
    }

    /// Step 4: register this side's buffers; receive the peer's RDMA descriptor.
    fn register_memory(&mut self) -> StepResult {
        let ep = self
            .endpoint
            .take()
            .ok_or_else(|| "not connected to the peer".to_owned())?;
        let t = &self.transport;
        let regions = (|| {
            Ok::<_, String>((
                new_region(t, MSG_BUF_LEN, MemAccess::WRITE)?,
                new_region(t, MSG_BUF_LEN, MemAccess::READ)?,
                new_region(t, RDMA_LEN, MemAccess::READ)?,
                new_region(t, RDMA_LEN, MemAccess::WRITE)?,
            ))
        })();
        let (inbox, outbox, src, dst) = match regions {
            Ok(r) => r,
            Err(e) => {
                ep.close();
                return Err(e);
            }
        };
        let conn = self.conn.insert(Conn {
            ep,
            inbox,
            outbox,
            regions: vec![src, dst],
            stash: Vec::new(),
            next_token: 0,
            deadline: self.deadline,
        });
        let msg = conn.recv("the peer's descriptor", OP_TIMEOUT)?;
        let desc = expect_tag(&msg, TAG_DESC)?;
        let want = self.transport.capabilities().descriptor_len;
        if desc.len() != want {
            return Err(format!(
                "the peer's descriptor has {} bytes, not {want}",
                desc.len()
            ));
        }
        self.peer_descriptor = desc.to_vec();
        Ok(Report {
            detail: format!(
                "4 local regions registered; the peer registered 1 MiB READ_WRITE and sent its {}-byte RDMA descriptor",
                desc.len()
            ),
            lines: vec![
                format!("local: {} KiB receive (WRITE), {} KiB send (READ), {} KiB RDMA source (READ), {} KiB RDMA read-back (WRITE)",
                    MSG_BUF_LEN >> 10, MSG_BUF_LEN >> 10, RDMA_LEN >> 10, RDMA_LEN >> 10),
                format!("peer descriptor: {}", hex(desc)),
            ],
        })
    }

    /// Step 5: a message each way.
    fn send_receive(&mut self) -> StepResult {
        let conn = self.conn()?;
        let payload = pattern(SEED_DEMO, PAYLOAD_LEN);
        conn.send(TAG_MSG, &payload)?;
        let reply = conn.recv("the peer's reply", OP_TIMEOUT)?;
        let body = expect_tag(&reply, TAG_ECHO)?;
        let their_sum = u64_at(body, 0).ok_or("the reply has no checksum")?;
        if their_sum != fnv1a(&payload) {
            return Err(format!(
                "the peer saw checksum {their_sum:#018x}, we sent {:#018x}",
                fnv1a(&payload)
            ));
        }
        if body[8..] != pattern(SEED_PEER, PAYLOAD_LEN)[..] {
            return Err(format!(
                "the peer's {}-byte payload is not what it should send",
                body.len() - 8
            ));
        }
        Ok(Report::new(format!(
            "sent {} bytes, the peer confirmed FNV-1a {their_sum:#018x}; received {} bytes, content verified",
            4 + payload.len(),
            reply.len()
        )))
    }

    /// Step 6: RDMA write into the peer's region, RDMA read back, and the peer's checksum.
    fn rdma(&mut self) -> StepResult {
        let desc = self.peer_descriptor.clone();
        let conn = self.conn()?;
        let data = pattern(SEED_RDMA, RDMA_LEN);
        let sum = fnv1a(&data);
        conn.regions[0].write(0, &data);
        let target = RemoteTarget {
            descriptor: &desc,
            offset: RDMA_OFFSET,
        };
        let t0 = Instant::now();
        let src = [sge(&conn.regions[0], 0, RDMA_LEN)?];
        conn.rdma(Op::RdmaWrite, &src, target)?;
        let write_us = t0.elapsed().as_micros();
        // Read back into four SGEs of the read-back buffer.
        let quarter = RDMA_LEN / 4;
        let dst = [
            sge(&conn.regions[1], 0, quarter)?,
            sge(&conn.regions[1], quarter, quarter)?,
            sge(&conn.regions[1], 2 * quarter, quarter)?,
            sge(&conn.regions[1], 3 * quarter, quarter)?,
        ];
        let t1 = Instant::now();
        conn.rdma(Op::RdmaRead, &dst, target)?;
        let read_us = t1.elapsed().as_micros();
        let back = conn.regions[1].to_vec(0..RDMA_LEN);
        if back != data {
            let first = back.iter().zip(&data).position(|(a, b)| a != b);
            return Err(format!(
                "read back FNV-1a {:#018x}, wrote {sum:#018x} (first difference at byte {first:?})",
                fnv1a(&back)
            ));
        }
        let mut req = RDMA_OFFSET.to_le_bytes().to_vec();
        req.extend_from_slice(&(RDMA_LEN as u64).to_le_bytes());
        conn.send(TAG_SUM, &req)?;
        let reply = conn.recv("the peer's checksum", OP_TIMEOUT)?;
        let theirs = u64_at(expect_tag(&reply, TAG_SUMR)?, 0).ok_or("no checksum in SUMR")?;
        if theirs != sum {
            return Err(format!(
                "the peer's region holds FNV-1a {theirs:#018x} there, we wrote {sum:#018x}"
            ));
        }
        Ok(Report {
            detail: format!(
                "{} KiB at offset {RDMA_OFFSET} of the peer's region: written, read back in 4 SGEs, FNV-1a {sum:#018x} matches here and in the peer",
                RDMA_LEN >> 10
            ),
            lines: vec![format!("write {write_us} µs, read {read_us} µs")],
        })
    }

    /// Step 7: `SIO_ADDRESS_LIST_QUERY` overlapped, in each completion mode.
    fn overlapped(&mut self) -> StepResult {
        let switch = FakeSwitch::new();
        let width = self.dispatcher.config().width;
        let required = self
            .dispatcher
            .eligible_addresses()
            .map(|a| SocketAddressListRepr { addresses: &a[..] }.buffer_len(width))
            .map_err(|e| format!("the transport's addresses: {}", wsa(e)))?;
        let mut buf = vec![0u8; required];
        let base = buf.as_ptr() as u64;
        let bytes = required as u32;
        let mut query = |ov: OverlappedRequest| {
            let req = IoctlRequest::new(self.socket, SIO_ADDRESS_LIST_QUERY)
                .output(&mut buf, base)
                .overlapped(ov);
            match self.dispatcher.ioctl(req, &switch) {
                IoctlReturn::Complete {
                    bytes_returned: n, ..
                } if n == bytes => Ok(()),
                r => Err(format!("WSPIoctl returned {r:?}")),
            }
        };
        let mut lines = Vec::new();

        // Upcall: an event handle (low bit clear) → WPUCompleteOverlappedRequest.
        query(OverlappedRequest {
            overlapped: OV_UPCALL,
            event: 0x10,
            completion_routine: 0,
            thread_id: None,
        })
        .map_err(|e| format!("upcall: {e}"))?;
        let want = Upcall::CompleteOverlapped {
            socket: self.socket,
            overlapped: OV_UPCALL,
            error: 0,
            bytes,
        };
        if switch.upcalls() != [want] {
            return Err(format!("upcall: the switch saw {:?}", switch.upcalls()));
        }
        lines.push(format!(
            "upcall:    hEvent 0x10 → WPUCompleteOverlappedRequest(error 0, {bytes} bytes), once"
        ));

        // Poll-only: hEvent == 1 → no notification, the result is in the WSAOVERLAPPED.
        query(OverlappedRequest {
            overlapped: OV_POLL,
            event: 1,
            completion_routine: 0,
            thread_id: None,
        })
        .map_err(|e| format!("poll-only: {e}"))?;
        if switch.upcalls().len() != 1 {
            return Err(format!("poll-only: the switch saw {:?}", switch.upcalls()));
        }
        let r = get_overlapped_result(&switch, OV_POLL);
        let want = OverlappedResult::Done {
            bytes,
            flags: 0,
            error: 0,
        };
        if r != want {
            return Err(format!("poll-only: WSPGetOverlappedResult gave {r:?}"));
        }
        lines.push(format!(
            "poll-only: hEvent 1 → no upcall; WSPGetOverlappedResult: done, {bytes} bytes"
        ));

        // APC: a completion routine and the caller's thread → WPUQueueApc.
        query(OverlappedRequest {
            overlapped: OV_APC,
            event: 0,
            completion_routine: APC_ROUTINE,
            thread_id: Some(APC_THREAD),
        })
        .map_err(|e| format!("APC: {e}"))?;
        let contexts = switch.run_apcs(&APC_THREAD);
        if contexts.len() != 1 || switch.apcs_queued() != 1 {
            return Err(format!("APC: {} APCs queued", contexts.len()));
        }
        let ops = self.dispatcher.operations();
        let call = ops
            .take_apc(contexts[0])
            .map_err(|e| format!("APC: take_apc: {e}"))?;
        let want = ApcCall {
            routine: APC_ROUTINE,
            error: 0,
            bytes,
            overlapped: OV_APC,
        };
        if call != want {
            return Err(format!("APC: the routine would be called with {call:?}"));
        }
        if ops.take_apc(contexts[0]).is_ok() {
            return Err("APC: the same context was harvested twice".into());
        }
        if ops.pending() != 0 {
            return Err(format!("{} operations left pending", ops.pending()));
        }
        lines.push(format!(
            "APC:       completion routine → WPUQueueApc; take_apc → routine(error 0, {bytes} bytes), once"
        ));
        Ok(Report {
            detail: "SIO_ADDRESS_LIST_QUERY overlapped: upcall, poll-only and APC, each notified exactly once".into(),
            lines,
        })
    }

    /// Step 8: close both endpoints.
    fn close(&mut self) -> StepResult {
        let mut conn = self
            .conn
            .take()
            .ok_or_else(|| "not connected to the peer".to_owned())?;
        conn.send(TAG_BYE, &[])?;
        let ack = conn.recv("the peer to acknowledge BYE", OP_TIMEOUT)?;
        expect_tag(&ack, TAG_BYE_ACK)?;
        let token = conn
            .post_recv()
            .map_err(|e| format!("post_recv before close: {e}"))?;
        conn.ep.close();
        // Every completion the close produced is in the queue once `close` returns; wait a
        // little for any (wrong) second one.
        let mut seen = Vec::new();
        let settle = Instant::now() + Duration::from_millis(20);
        loop {
            let mut polled = [Completion::default(); 8];
            let n = conn.ep.poll(&mut polled);
            seen.extend(polled[..n].iter().filter(|c| c.token == token).copied());
            if n == 0 && Instant::now() >= settle {
                break;
            }
            if n == 0 {
                conn.ep.wait(Duration::from_millis(5));
            }
        }
        let aborted = Completion::new(token, Op::Recv, Err(WsaError::OperationAborted));
        if seen != [aborted] {
            return Err(format!(
                "the receive posted before close completed as {seen:?}, not once with WSA_OPERATION_ABORTED"
            ));
        }
        let probe = sge(&conn.outbox, 0, 4)?;
        if conn.ep.post_send(&[probe], 0) != Err(PostError::Closed) {
            return Err("a send after close was not refused".into());
        }
        // Close the endpoint for good (idempotent), then deregister explicitly.
        let mut regions = std::mem::take(&mut conn.regions);
        conn.ep.close();
        let mut deregistered = 0;
        for r in regions
            .iter_mut()
            .chain([&mut conn.inbox, &mut conn.outbox])
        {
            r.deregister()
                .map_err(|e| format!("deregistering: {}", wsa(e)))?;
            deregistered += 1;
        }
        drop(conn);
        let peer = self.peer.as_mut().ok_or("no peer process")?;
        let pid = peer.pid();
        let status = peer.wait(EXIT_TIMEOUT)?;
        if !status.success() {
            return Err(format!("the peer (pid {pid}) {status}"));
        }
        Ok(Report::new(format!(
            "our receive posted before close: WSA_OPERATION_ABORTED, once; {deregistered} regions deregistered; the peer's receive ended with WSAEDISCON (graceful close), it closed and exited 0"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn patterns_differ_by_seed_and_repeat_by_seed() {
        assert_eq!(pattern(1, 64), pattern(1, 64));
        assert_ne!(pattern(1, 64), pattern(2, 64));
        assert_eq!(pattern(SEED_RDMA, 1000)[..10], pattern(SEED_RDMA, 10)[..]);
    }

    #[test]
    fn messages_need_their_tag() {
        assert_eq!(expect_tag(b"SUMRxyz", TAG_SUMR), Ok(&b"xyz"[..]));
        assert!(expect_tag(b"ECHO", TAG_SUMR).is_err());
        assert!(split(b"abc").is_err());
    }

    #[test]
    fn registered_buffers_round_trip_and_deregister_on_drop() {
        let t = LoopbackTransport::new(format!("demo-unit-{}", std::process::id()));
        let mut r = new_region(&t, 4096, MemAccess::READ_WRITE).unwrap();
        r.write(10, b"hello");
        assert_eq!(r.to_vec(10..15), b"hello");
        let h = r.handle();
        let mut desc = [0u8; DESCRIPTOR_LEN];
        assert_eq!(t.export(h, &mut desc), Ok(DESCRIPTOR_LEN));
        assert_eq!(r.deregister(), Ok(()));
        assert!(t.export(h, &mut desc).is_err());
        assert!(sge(&r, 0, 1).is_err());
    }
}
