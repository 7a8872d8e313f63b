//! Single-copy RDMA: the owner of a registered region copies straight between it and the
//! peer process's memory with `process_vm_readv` / `process_vm_writev`, after validating
//! the request against its registry.
//!
//! - **Who the peer is** comes from the kernel, never from the wire: the pid the Unix
//!   socket recorded (`SO_PEERCRED`), pinned by a pidfd. A request can therefore only make
//!   us copy from or into the peer's own memory; the addresses it names are its own
//!   business, checked by the kernel against its mappings (a bad one is an error
//!   completion, never a crash).
//! - **What it may touch here** is checked like any remote access: key with generation,
//!   bounds and rights over the whole range before a byte moves, then again for each chunk
//!   under the registry's read lock, held across the copy, so deregistration waits for a
//!   chunk in progress and stops the rest.
//! - **Whether it works at all** (ptrace rules: Yama, another user, no `CAP_SYS_PTRACE`,
//!   pid namespaces) is probed once at connect: the peer shows 16 random bytes at an
//!   address of its own and we read them back.
//!
//! # Safety
//!
//! The `unsafe` here is the copy into or out of a registration, with the same argument as
//! the bounce path: the range was checked under the read lock that is still held.

use crate::registry::Registry;
use crate::sys::{self, VmDirection};
use san_spi_core::transport::MemAccess;
use san_spi_core::WsaError;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Most pieces (the initiator's SGEs) one single-copy request may name.
pub const MAX_PIECES: usize = sys::VM_MAX_PIECES;

/// Bytes copied per registry lock hold.
const CHUNK: u64 = 8 << 20;

/// The process at the other end of a connection, for cross-memory attach.
#[derive(Debug)]
pub struct Peer {
    pid: libc::pid_t,
    pidfd: OwnedFd,
}

/// Which way a single-copy request moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// An RDMA write: from the peer's pieces into our region.
    Pull,
    /// An RDMA read: from our region into the peer's pieces.
    Push,
}

impl Peer {
    /// The process at the other end of `socket`, if the kernel names it and it is alive.
    pub fn of_socket(socket: RawFd) -> Option<Peer> {
        let pid = sys::peer_pid(socket)?;
        let pidfd = sys::pidfd_open(pid).ok()?;
        Some(Peer { pid, pidfd })
    }

    /// Whether 16 bytes at `addr` in the peer read back as `expected`: cross-memory attach
    /// works and reaches the process that sent `expected`.
    pub fn probe(&self, addr: u64, expected: &[u8; 16]) -> bool {
        let mut got = [0u8; 16];
        // SAFETY: the local side is the live local `got`, 16 bytes, written only by the
        // kernel during the call.
        let r = unsafe {
            sys::process_vm(
                self.pid,
                VmDirection::FromRemote,
                got.as_mut_ptr(),
                16,
                &[(addr, 16)],
            )
        };
        matches!(r, Ok(16)) && &got == expected && self.alive()
    }

    /// Whether the peer process still runs.
    pub fn alive(&self) -> bool {
        !sys::pidfd_exited(self.pidfd.as_raw_fd())
    }
}

/// The pieces covering bytes `from..from + len` of `pieces` (at most `MAX_PIECES`: the
/// caller checked the count).
pub(crate) fn window(
    pieces: &[(u64, u64)],
    from: u64,
    len: u64,
) -> ([(u64, usize); MAX_PIECES], usize) {
    let mut out = [(0u64, 0usize); MAX_PIECES];
    let mut n = 0;
    let mut skip = from;
    let mut left = len;
    for &(addr, plen) in pieces {
        if left == 0 {
            break;
        }
        if skip >= plen {
            skip -= plen;
            continue;
        }
        let take = (plen - skip).min(left);
        // The peer's numbers: an address that wraps names nothing; the window ends there
        // (the copy then comes up short, which is an error status).
        let Some(at) = addr.checked_add(skip) else {
            break;
        };
        out[n] = (at, take as usize);
        n += 1;
        left -= take;
        skip = 0;
    }
    (out, n)
}

/// Serves one single-copy request of the peer: moves the bytes of `pieces` (addresses in
/// the peer) to or from registration `key` at `offset`. Returns the bytes moved, or the
/// error to report; nothing moves unless the whole range is valid.
pub fn serve(
    registry: &Registry,
    peer: &Peer,
    direction: Direction,
    key: u64,
    offset: u64,
    total: u64,
    pieces: &[(u64, u64)],
) -> Result<u64, WsaError> {
    if pieces.len() > MAX_PIECES {
        return Err(WsaError::Fault);
    }
    let mut sum = 0u64;
    for &(addr, len) in pieces {
        addr.checked_add(len).ok_or(WsaError::Fault)?;
        sum = sum.checked_add(len).ok_or(WsaError::Fault)?;
    }
    if sum != total || total > u32::MAX as u64 {
        return Err(WsaError::Fault);
    }
    let need = match direction {
        Direction::Pull => MemAccess::WRITE,
        Direction::Push => MemAccess::READ,
    };
    // The whole range, before any byte moves.
    registry
        .lock()
        .check_remote(key, offset, total, need)
        .ok_or(WsaError::Fault)?;
    let mut done = 0u64;
    while done < total {
        let n = (total - done).min(CHUNK);
        let g = registry.lock();
        // Deregistered (or invalidated) since the last chunk: the rest is refused.
        let addr = g
            .check_remote(key, offset + done, n, need)
            .ok_or(WsaError::Fault)?;
        if !peer.alive() {
            return Err(WsaError::ConnReset);
        }
        let (remote, count) = window(pieces, done, n);
        let sysdir = match direction {
            Direction::Pull => VmDirection::FromRemote,
            Direction::Push => VmDirection::ToRemote,
        };
        // When the peer is this process, its pieces come from an endpoint of ours that
        // validated them against its registrations (it shares the address space anyway).
        // SAFETY: `addr..addr + n` lies in a registration checked under `g` (held, so
        // deregistration waits) with the right the kernel needs: WRITE to pull into it, READ
        // to push from it. The remote pieces are the peer's memory, checked by the kernel.
        let moved = unsafe {
            sys::process_vm(
                peer.pid,
                sysdir,
                addr as *mut u8,
                n as usize,
                &remote[..count],
            )
        };
        drop(g);
        match moved {
            // A short copy stops at a piece the kernel refused: the next call from there
            // reports it. No progress at all is an error.
            Ok(0) | Err(_) => return Err(WsaError::Fault),
            Ok(m) => done += m as u64,
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_walks_pieces() {
        let p = [(100, 10), (200, 5), (300, 20)];
        let (w, n) = window(&p, 8, 10);
        assert_eq!(&w[..n], &[(108, 2), (200, 5), (300, 3)]);
        let (w, n) = window(&p, 15, 100);
        assert_eq!(&w[..n], &[(300, 20)]);
        let (_, n) = window(&p, 35, 1);
        assert_eq!(n, 0);
    }

    #[test]
    fn serve_moves_bytes_in_this_process_and_refuses_bad_requests() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let peer = Peer::of_socket(a.as_raw_fd()).expect("own process");
        drop(b);
        let nonce = *b"0123456789abcdef";
        assert!(peer.probe(nonce.as_ptr() as u64, &nonce));
        assert!(!peer.probe(nonce.as_ptr() as u64, b"0123456789abcdeX"));
        assert!(!peer.probe(16, &nonce), "unmapped address");

        let reg = Registry::new();
        let mut region = vec![0u8; 1 << 20].into_boxed_slice();
        let h = reg
            .register(
                region.as_mut_ptr() as u64,
                region.len() as u64,
                MemAccess::READ_WRITE,
            )
            .unwrap()
            .raw();
        let src: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let pieces = [(src.as_ptr() as u64, 100), (src.as_ptr() as u64 + 100, 200)];
        assert_eq!(
            serve(&reg, &peer, Direction::Pull, h, 10, 300, &pieces),
            Ok(300)
        );
        assert_eq!(&region[10..310], &src[..]);
        let mut back = vec![0u8; 300];
        let dst = [(back.as_mut_ptr() as u64, 300)];
        assert_eq!(
            serve(&reg, &peer, Direction::Push, h, 10, 300, &dst),
            Ok(300)
        );
        assert_eq!(back, src);
        // Out of bounds, mismatched total, overflowing piece, unmapped piece.
        let len = region.len() as u64;
        assert!(serve(&reg, &peer, Direction::Pull, h, len - 10, 300, &pieces).is_err());
        assert!(serve(&reg, &peer, Direction::Pull, h, 0, 301, &pieces).is_err());
        assert!(serve(&reg, &peer, Direction::Pull, h, 0, 1, &[(u64::MAX, 1)]).is_err());
        assert!(serve(&reg, &peer, Direction::Pull, h, 0, 64, &[(64, 64)]).is_err());
        assert!(serve(&reg, &peer, Direction::Push, h, 0, 64, &[(64, 64)]).is_err());
        assert!(region[..10].iter().all(|&x| x == 0));
        assert!(region[310..].iter().all(|&x| x == 0));
    }
}
