//! The few Linux calls the transport needs, each wrapped once: memfd + mmap, eventfd (our
//! own wake-up; never shared with the peer), the peer's wake-up over the socket,
//! poll, file-descriptor passing over a Unix socket, the peer's credentials, pidfds and
//! cross-memory attach (`process_vm_readv` / `process_vm_writev`).
//!
//! # Safety
//!
//! This is one of the modules with `unsafe` (with `ring` and the single-copy code in
//! `direct`). Every block calls libc with pointers to live, correctly sized local buffers,
//! or maps / unmaps a region owned by [`Mapping`]; [`process_vm`] passes its caller's
//! promise about local memory on to the kernel, which checks the remote side itself.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A new anonymous shared-memory file of `len` bytes.
pub fn memfd(name: &str, len: usize) -> io::Result<OwnedFd> {
    let cname = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
    let fd = check(unsafe {
        libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `fd` is a valid descriptor; ftruncate only sizes the file.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) })?;
    // Fix the size for good, so that neither side can shrink the file under the other's
    // mapping (which would turn an access into SIGBUS).
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: plain fcntl on a valid descriptor.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(fd)
}

/// Whether the memfd can no longer shrink (a peer's file is only mapped if so).
pub fn is_size_sealed(fd: &OwnedFd) -> bool {
    // SAFETY: plain fcntl on a valid descriptor.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_SHRINK != 0
}

/// The size of the file behind `fd`.
pub fn file_len(fd: &OwnedFd) -> io::Result<usize> {
    // SAFETY: `st` is a plain-data struct that fstat fills; `fd` is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st.st_size as usize)
}

/// A shared, read-write mapping of a whole memfd. Unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access goes through atomics or byte
// copies that tolerate concurrent writers (see `ring`).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` shared, populated: the pages are allocated and mapped now,
    /// so the data path never takes a page fault (a first pass through fresh ring pages
    /// otherwise costs a fault, several microseconds here, every 4 KiB).
    pub fn new(fd: &OwnedFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping chosen by the kernel; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p as *mut u8).ok_or(io::ErrorKind::Other)?;
        Ok(Mapping { ptr, len })
    }

    /// Start of the mapping.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `new` mapped; nothing refers to it any more
        // (every user holds the `Arc<Mapping>` that is being dropped).
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

/// A new nonblocking eventfd: our own wake-up, never passed to the peer (so its file
/// state stays ours).
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall without pointers.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to our own eventfd (wakes our progress thread).
pub fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live local; a full counter (EAGAIN) already wakes.
    unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
}

/// Resets our own eventfd to 0.
pub fn eventfd_drain(fd: RawFd) {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a live local; EAGAIN (already 0) is fine.
    unsafe { libc::read(fd, &mut v as *mut u64 as *mut libc::c_void, 8) };
}

/// Wakes the peer: one byte on the connection's socket, `MSG_DONTWAIT | MSG_NOSIGNAL` on
/// the call (whatever the socket's file state), so the peer can never make this block. A
/// full socket buffer (EAGAIN) already holds a wake-up; a dead peer (EPIPE) is seen as a
/// hang-up by our own wait.
pub fn wake_peer(socket: RawFd) {
    let one = 1u8;
    // SAFETY: sends 1 byte from a live local; no pointer is kept.
    unsafe {
        libc::send(
            socket,
            &one as *const u8 as *const libc::c_void,
            1,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
}

/// Reads and discards what the peer sent on `socket` (wake-up bytes), nonblocking by flag
/// on the call, at most 64 KiB per call so that a peer that never stops sending cannot
/// keep us here. Returns whether the peer has closed its end (a read of 0 bytes).
fn drain_socket(socket: RawFd) -> bool {
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        // SAFETY: receives into a live local buffer of `buf.len()` bytes.
        let n = unsafe {
            libc::recv(
                socket,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => return true,
            n if n < 0 => return false,
            n if (n as usize) < buf.len() => return false,
            _ => {}
        }
    }
    false
}

/// What [`wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The eventfd was signalled, or the peer sent a wake-up.
    pub event: bool,
    /// The socket hung up or errored (the peer is gone).
    pub hangup: bool,
}

/// Waits up to `timeout_ms` for our own `event` (an eventfd only this process holds) to be
/// readable, or for the peer's `socket` to bring a wake-up or hang up; drains the socket's
/// wake-up bytes. `socket` may be -1 (the peer is gone: only `event` counts).
pub fn wait(event: RawFd, socket: RawFd, timeout_ms: i32) -> Ready {
    let mut fds = [
        libc::pollfd {
            fd: event,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: socket,
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a live array of two pollfd.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
    if n <= 0 {
        return Ready {
            event: false,
            hangup: false,
        };
    }
    let sock = fds[1].revents;
    let mut hangup = sock & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) != 0;
    if sock & libc::POLLIN != 0 && socket >= 0 {
        hangup |= drain_socket(socket);
    }
    Ready {
        event: fds[0].revents & libc::POLLIN != 0 || sock & libc::POLLIN != 0,
        hangup,
    }
}

/// Waits up to `timeout_ms` until one of `fds` (our own descriptors) is readable.
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) {
    let mut polls = [libc::pollfd {
        fd: -1,
        events: libc::POLLIN,
        revents: 0,
    }; 4];
    let n = fds.len().min(polls.len());
    for (p, &fd) in polls.iter_mut().zip(&fds[..n]) {
        p.fd = fd;
    }
    // SAFETY: `polls` is a live array of at least `n` pollfd.
    unsafe { libc::poll(polls.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
}

/// A zeroed control buffer with room for `fd_bytes` of descriptors.
fn control_buffer(fd_bytes: usize) -> Vec<u8> {
    // SAFETY: CMSG_SPACE is a pure size computation.
    vec![0u8; unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize]
}

/// A message header over one `iov` and a `control` buffer. It points into both: they
/// must stay alive, and unmoved, while it is used.
fn message_header(iov: &mut libc::iovec, control: &mut [u8]) -> libc::msghdr {
    // SAFETY: msghdr is plain data (all-zero is a valid value).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = control.len() as _;
    msg
}

/// Sends `data` and the descriptors `fds` over a connected Unix stream socket.
pub fn send_fds(socket: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let fd_bytes = std::mem::size_of_val(fds);
    let mut control = control_buffer(fd_bytes);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let msg = message_header(&mut iov, &mut control);
    // SAFETY: the control buffer holds one header of CMSG_SPACE(fd_bytes) bytes.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(cmsg), fd_bytes);
    }
    // SAFETY: `msg` and everything it points to are live for the call.
    let n = unsafe { libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != data.len() {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(())
}

/// Receives up to `data.len()` bytes and up to `max_fds` descriptors. Returns the byte
/// count and the descriptors received (owned; closed on drop).
pub fn recv_fds(
    socket: RawFd,
    data: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut control = control_buffer(max_fds * std::mem::size_of::<RawFd>());
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut msg = message_header(&mut iov, &mut control);
    // SAFETY: `msg` points at `iov` (over `data`) and `control`, both live and unmoved for
    // the call; MSG_CMSG_CLOEXEC marks received descriptors close-on-exec.
    let n = unsafe { libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: walks the control headers the kernel wrote into `control`, reading each
    // descriptor with an unaligned read; every descriptor received is taken into an OwnedFd.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg);
                for i in 0..payload / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(
                        data.add(i * std::mem::size_of::<RawFd>()) as *const RawFd
                    );
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, fds))
}

/// Cryptographically random 64 bits (for registration keys).
pub fn random_u64() -> u64 {
    let mut v = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        // SAFETY: writes at most the remaining bytes of the live local `v`.
        let n = unsafe { libc::getrandom(v[got..].as_mut_ptr() as *mut libc::c_void, 8 - got, 0) };
        if n > 0 {
            got += n as usize;
        }
    }
    u64::from_le_bytes(v)
}

/// The process at the other end of a connected Unix socket, as the kernel recorded it
/// when the socket was connected (or the listener created), in this process's pid
/// namespace. `None` when the kernel does not say (a peer in a pid namespace not visible
/// from here reports pid 0). The peer cannot forge it.
pub fn peer_pid(socket: RawFd) -> Option<libc::pid_t> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the live local `cred` and updates
    // the live local `len`.
    let r = unsafe {
        libc::getsockopt(
            socket,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    let whole = len as usize == std::mem::size_of::<libc::ucred>();
    (r == 0 && whole && cred.pid > 0).then_some(cred.pid)
}

/// A pidfd for process `pid`: it becomes readable when the process exits, and unlike the
/// pid it can never come to name another process.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall without pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process behind `pidfd` has exited (the descriptor polls readable).
pub fn pidfd_exited(pidfd: RawFd) -> bool {
    let mut fds = [libc::pollfd {
        fd: pidfd,
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: `fds` is a live array of one pollfd; timeout 0 never blocks.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    n > 0 && fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// Most remote pieces [`process_vm`] takes in one call (well under the kernel's `IOV_MAX`).
pub const VM_MAX_PIECES: usize = 64;

/// Which way [`process_vm`] copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmDirection {
    /// `process_vm_readv`: from the remote pieces into local memory.
    FromRemote,
    /// `process_vm_writev`: from local memory into the remote pieces.
    ToRemote,
}

/// Copies between `len` bytes of local memory at `local` and the `(address, length)`
/// pieces of process `pid`, in order, in one system call. Returns the bytes copied, which
/// may be fewer than asked (the kernel stops at the first remote piece it cannot access;
/// a retry from there reports the error).
///
/// # Safety
///
/// For [`VmDirection::FromRemote`], `local..local + len` must be writable and not
/// referenced by anything else for the call; for [`VmDirection::ToRemote`] it must be
/// readable. The remote pieces are checked by the kernel against the other process's
/// mappings, never dereferenced here; if `pid` is this process, they are addresses in this
/// address space and, for `ToRemote`, the caller must also know them writable and
/// unaliased.
///
/// # Panics
///
/// If there are more than [`VM_MAX_PIECES`] pieces (a caller bug).
pub unsafe fn process_vm(
    pid: libc::pid_t,
    direction: VmDirection,
    local: *mut u8,
    len: usize,
    remote: &[(u64, usize)],
) -> io::Result<usize> {
    assert!(remote.len() <= VM_MAX_PIECES);
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut riov = [empty; VM_MAX_PIECES];
    for (slot, &(addr, n)) in riov.iter_mut().zip(remote) {
        *slot = libc::iovec {
            iov_base: addr as usize as *mut libc::c_void,
            iov_len: n,
        };
    }
    let liov = libc::iovec {
        iov_base: local as *mut libc::c_void,
        iov_len: len,
    };
    let n = match direction {
        // SAFETY: `liov` describes memory the caller vouches for (writable here); `riov`
        // is a live local array of `remote.len()` iovecs, which the kernel checks against
        // the remote process.
        VmDirection::FromRemote => unsafe {
            libc::process_vm_readv(pid, &liov, 1, riov.as_ptr(), remote.len() as _, 0)
        },
        // SAFETY: as above; the local side is only read.
        VmDirection::ToRemote => unsafe {
            libc::process_vm_writev(pid, &liov, 1, riov.as_ptr(), remote.len() as _, 0)
        },
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
