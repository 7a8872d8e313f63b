//! This host's interface addresses, with the kernel's temporary-address flag.
//!
//! IPv4 addresses come from `getifaddrs`; IPv6 addresses come from `/proc/net/if_inet6`,
//! the one place that also carries each address's `IFA_F_*` flags, of which
//! `IFA_F_TEMPORARY` marks privacy addresses (R-ADDR-6).

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// `IFA_F_TEMPORARY` from `linux/if_addr.h`.
const IFA_F_TEMPORARY: u32 = 0x01;

/// One address of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddress {
    /// Interface name, e.g. `eth0`.
    pub interface: String,
    /// Interface index (the IPv6 scope id of link-local addresses).
    pub index: u32,
    /// The address.
    pub addr: IpAddr,
    /// The kernel marks it temporary (a privacy address).
    pub temporary: bool,
}

impl HostAddress {
    /// The socket address the provider would list: port 0, scope id for link-local IPv6.
    pub fn socket_addr(&self) -> SocketAddr {
        match self.addr {
            IpAddr::V4(a) => SocketAddr::from((a, 0)),
            IpAddr::V6(a) => {
                let scope = if a.segments()[0] & 0xffc0 == 0xfe80 {
                    self.index
                } else {
                    0
                };
                SocketAddr::V6(SocketAddrV6::new(a, 0, 0, scope))
            }
        }
    }
}

/// Every IPv4 and IPv6 address of this host, IPv4 first, then by interface index and address.
pub fn host_addresses() -> io::Result<Vec<HostAddress>> {
    let mut out = Vec::new();
    let ifaddrs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    for ifa in ifaddrs {
        let v4 = ifa
            .address
            .as_ref()
            .and_then(|a| a.as_sockaddr_in().map(|s| s.ip()));
        if let Some(ip) = v4 {
            let index = nix::net::if_::if_nametoindex(ifa.interface_name.as_str()).unwrap_or(0);
            out.push(HostAddress {
                interface: ifa.interface_name.clone(),
                index,
                addr: IpAddr::V4(ip),
                temporary: false,
            });
        }
    }
    match std::fs::read_to_string("/proc/net/if_inet6") {
        Ok(text) => out.extend(parse_if_inet6(&text)),
        // A kernel without IPv6 has no such file and no IPv6 addresses.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort_by(|a, b| {
        (a.addr.is_ipv6(), a.index, a.addr).cmp(&(b.addr.is_ipv6(), b.index, b.addr))
    });
    out.dedup();
    Ok(out)
}

/// Parses `/proc/net/if_inet6`: `address ifindex prefixlen scope flags name`, all hex
/// but the name. Malformed lines are skipped.
pub fn parse_if_inet6(text: &str) -> Vec<HostAddress> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 6 || f[0].len() != 32 {
                return None;
            }
            let bits = u128::from_str_radix(f[0], 16).ok()?;
            let index = u32::from_str_radix(f[1], 16).ok()?;
            let flags = u32::from_str_radix(f[4], 16).ok()?;
            Some(HostAddress {
                interface: f[5].to_owned(),
                index,
                addr: IpAddr::V6(Ipv6Addr::from(bits)),
                temporary: flags & IFA_F_TEMPORARY != 0,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_inet6_flags_mark_temporary_addresses() {
        let text = "\
fe800000000000000211223344556677 02 40 20 80     eth0
20010db8000000001c2d3e4f5a6b7c8d 02 40 00 01     eth0
00000000000000000000000000000001 01 80 10 80       lo
garbage
";
        let got = parse_if_inet6(text);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0].addr,
            "fe80::211:2233:4455:6677".parse::<IpAddr>().unwrap()
        );
        assert!(!got[0].temporary);
        assert_eq!(
            got[0].socket_addr().to_string(),
            "[fe80::211:2233:4455:6677%2]:0"
        );
        assert!(got[1].temporary);
        assert_eq!(got[2].interface, "lo");
    }

    #[test]
    fn this_host_has_loopback() {
        let all = host_addresses().unwrap();
        assert!(all.iter().any(|a| a.addr.is_loopback()), "{:?}", all);
    }
}
