//! The handshake's three messages over the Unix socket: one definition of each for the
//! writer and the reader, as byte ranges ([`field`]) with an encoder and a parser.
//!
//! ```text
//! hello  (connector → acceptor, with the memfd)   magic u32 | version u32 | ring capacity u64
//!                                                 | flags u32 | 0 u32 | probe address u64
//!                                                 | probe bytes [16]                 48 bytes
//! reply  (acceptor → connector)                   magic u32 | version u32 | flags u32 | 0 u32
//!                                                 | probe address u64 | probe bytes [16]   40 bytes
//! final  (connector → acceptor)                   magic u32 | flags u32                 8 bytes
//! ```
//!
//! Everything read comes from a peer that may lie: a parser takes any bytes, checks the
//! length once and every field it returns (magic, version, capacity), and returns an error
//! for anything else — never a panic.

use std::ops::Range;

/// "LNAS".
pub(crate) const MAGIC: u32 = 0x5341_4E4C;
/// Version 4: sealed records, wake-ups on the socket, only the memfd passed.
pub(crate) const VERSION: u32 = 4;
/// Flag: this side wants single-copy RDMA.
pub(crate) const WANTS_DIRECT: u32 = 1;
/// Flag: this side reached the other's memory and serves its single-copy requests.
pub(crate) const SERVES_DIRECT: u32 = 2;
/// Smallest ring capacity a hello may ask for.
pub(crate) const MIN_CAPACITY: u64 = 64 << 10;
/// Largest ring capacity a hello may ask for.
pub(crate) const MAX_CAPACITY: u64 = 1 << 30;

/// Byte ranges of the three messages.
pub(crate) mod field {
    use std::ops::Range;

    pub(crate) const MAGIC: Range<usize> = 0..4;
    pub(crate) const VERSION: Range<usize> = 4..8;

    /// Hello: ring capacity.
    pub(crate) const HELLO_CAPACITY: Range<usize> = 8..16;
    pub(crate) const HELLO_FLAGS: Range<usize> = 16..20;
    pub(crate) const HELLO_PROBE_ADDR: Range<usize> = 24..32;
    pub(crate) const HELLO_PROBE: Range<usize> = 32..48;
    pub(crate) const HELLO_LEN: usize = 48;

    pub(crate) const REPLY_FLAGS: Range<usize> = 8..12;
    pub(crate) const REPLY_PROBE_ADDR: Range<usize> = 16..24;
    pub(crate) const REPLY_PROBE: Range<usize> = 24..40;
    pub(crate) const REPLY_LEN: usize = 40;

    pub(crate) const FINAL_FLAGS: Range<usize> = 4..8;
    pub(crate) const FINAL_LEN: usize = 8;
}

/// A message that is not what the protocol allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadHandshake(pub(crate) &'static str);

fn u32_at(b: &[u8], r: Range<usize>) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[r]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], r: Range<usize>) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[r]);
    u64::from_le_bytes(v)
}

fn probe_at(b: &[u8], r: Range<usize>) -> [u8; 16] {
    let mut p = [0u8; 16];
    p.copy_from_slice(&b[r]);
    p
}

/// The one length check of each parser, then magic and version.
fn check_len(b: &[u8], len: usize, versioned: bool) -> Result<(), BadHandshake> {
    if b.len() != len {
        return Err(BadHandshake("wrong length"));
    }
    if u32_at(b, field::MAGIC) != MAGIC {
        return Err(BadHandshake("wrong magic"));
    }
    if versioned && u32_at(b, field::VERSION) != VERSION {
        return Err(BadHandshake("wrong version"));
    }
    Ok(())
}

/// The connector's hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hello {
    /// Data bytes of each ring: a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    pub(crate) capacity: u64,
    pub(crate) flags: u32,
    /// Where the probe bytes are in the connector's memory.
    pub(crate) probe_addr: u64,
    pub(crate) probe: [u8; 16],
}

impl Hello {
    pub(crate) fn encode(&self) -> [u8; field::HELLO_LEN] {
        let mut b = [0u8; field::HELLO_LEN];
        b[field::MAGIC].copy_from_slice(&MAGIC.to_le_bytes());
        b[field::VERSION].copy_from_slice(&VERSION.to_le_bytes());
        b[field::HELLO_CAPACITY].copy_from_slice(&self.capacity.to_le_bytes());
        b[field::HELLO_FLAGS].copy_from_slice(&self.flags.to_le_bytes());
        b[field::HELLO_PROBE_ADDR].copy_from_slice(&self.probe_addr.to_le_bytes());
        b[field::HELLO_PROBE].copy_from_slice(&self.probe);
        b
    }

    pub(crate) fn parse(b: &[u8]) -> Result<Hello, BadHandshake> {
        check_len(b, field::HELLO_LEN, true)?;
        let capacity = u64_at(b, field::HELLO_CAPACITY);
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(BadHandshake("ring capacity out of range"));
        }
        Ok(Hello {
            capacity,
            flags: u32_at(b, field::HELLO_FLAGS),
            probe_addr: u64_at(b, field::HELLO_PROBE_ADDR),
            probe: probe_at(b, field::HELLO_PROBE),
        })
    }
}

/// The acceptor's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) flags: u32,
    pub(crate) probe_addr: u64,
    pub(crate) probe: [u8; 16],
}

impl Reply {
    pub(crate) fn encode(&self) -> [u8; field::REPLY_LEN] {
        let mut b = [0u8; field::REPLY_LEN];
        b[field::MAGIC].copy_from_slice(&MAGIC.to_le_bytes());
        b[field::VERSION].copy_from_slice(&VERSION.to_le_bytes());
        b[field::REPLY_FLAGS].copy_from_slice(&self.flags.to_le_bytes());
        b[field::REPLY_PROBE_ADDR].copy_from_slice(&self.probe_addr.to_le_bytes());
        b[field::REPLY_PROBE].copy_from_slice(&self.probe);
        b
    }

    pub(crate) fn parse(b: &[u8]) -> Result<Reply, BadHandshake> {
        check_len(b, field::REPLY_LEN, true)?;
        Ok(Reply {
            flags: u32_at(b, field::REPLY_FLAGS),
            probe_addr: u64_at(b, field::REPLY_PROBE_ADDR),
            probe: probe_at(b, field::REPLY_PROBE),
        })
    }
}

/// The connector's last word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Final {
    pub(crate) flags: u32,
}

impl Final {
    pub(crate) fn encode(&self) -> [u8; field::FINAL_LEN] {
        let mut b = [0u8; field::FINAL_LEN];
        b[field::MAGIC].copy_from_slice(&MAGIC.to_le_bytes());
        b[field::FINAL_FLAGS].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    pub(crate) fn parse(b: &[u8]) -> Result<Final, BadHandshake> {
        check_len(b, field::FINAL_LEN, false)?;
        Ok(Final {
            flags: u32_at(b, field::FINAL_FLAGS),
        })
    }
}

/// Parses `bytes` as each of the three messages (the fuzz entry; never panics).
#[cfg(any(test, feature = "fuzz"))]
pub(crate) fn parse_any(bytes: &[u8]) -> [bool; 3] {
    [
        Hello::parse(bytes).is_ok(),
        Reply::parse(bytes).is_ok(),
        Final::parse(bytes).is_ok(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_round_trips_and_the_parsers_refuse_what_is_not_one() {
        let hello = Hello {
            capacity: 1 << 20,
            flags: WANTS_DIRECT,
            probe_addr: 0x7f00_0000_1000,
            probe: [7; 16],
        };
        assert_eq!(Hello::parse(&hello.encode()), Ok(hello));
        let reply = Reply {
            flags: SERVES_DIRECT,
            probe_addr: 42,
            probe: [9; 16],
        };
        assert_eq!(Reply::parse(&reply.encode()), Ok(reply));
        let fin = Final { flags: 3 };
        assert_eq!(Final::parse(&fin.encode()), Ok(fin));
        let mut b = hello.encode();
        assert!(Hello::parse(&b[..47]).is_err(), "short");
        b[field::VERSION].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(Hello::parse(&b), Err(BadHandshake("wrong version")));
        for capacity in [0u64, 3 << 16, MIN_CAPACITY / 2, MAX_CAPACITY * 2, u64::MAX] {
            let h = Hello { capacity, ..hello };
            assert!(Hello::parse(&h.encode()).is_err(), "capacity {capacity}");
        }
        assert_eq!(parse_any(&[]), [false; 3]);
    }
}
