//! Which local addresses `SIO_ADDRESS_LIST_QUERY` may return (R-ADDR-4/5/6).
//!
//! A pure function of the address and whether the kernel marks it temporary: the
//! [`classify`] verdict says keep or drop and why. IPv6 rules follow the `WSPIoctl` page;
//! IPv4 interface addresses are kept unless they cannot name a NIC (loopback, unspecified,
//! multicast, limited broadcast).
//!
//! ```
//! use san_spi_core::addr::eligibility::{classify, DropReason, Verdict};
//!
//! assert!(classify("fe80::1:2:3:4".parse().unwrap(), false).is_keep());
//! assert_eq!(classify("2002:c000:0201::1".parse().unwrap(), false), Verdict::Drop(DropReason::SixToFour));
//! assert_eq!(classify("2001:db8::1".parse().unwrap(), true), Verdict::Drop(DropReason::Temporary));
//! ```

use core::fmt;
use ipnet::Ipv6Net;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is returned.
///
/// ```
/// use san_spi_core::addr::eligibility::{classify, KeepReason, Verdict};
///
/// assert_eq!(classify("fd12:3456::1".parse().unwrap(), false), Verdict::Keep(KeepReason::UniqueLocal));
/// assert_eq!(classify("192.0.2.7".parse().unwrap(), false), Verdict::Keep(KeepReason::Ipv4Unicast));
/// assert_eq!(Verdict::Keep(KeepReason::LinkLocal).reason(), "IPv6 link-local unicast (fe80::/10)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeepReason {
    /// An IPv4 unicast interface address.
    Ipv4Unicast,
    /// IPv6 link-local unicast, `fe80::/10` (native).
    LinkLocal,
    /// IPv6 site-local unicast, `fec0::/10` (native, deprecated but allowed by the page).
    SiteLocal,
    /// IPv6 unique-local unicast, `fc00::/7` (native, global scope).
    UniqueLocal,
    /// IPv6 global unicast (native).
    Global,
}

/// Why an address is not returned.
///
/// ```
/// use san_spi_core::addr::eligibility::{classify, DropReason, Verdict};
///
/// assert_eq!(classify("::ffff:192.0.2.1".parse().unwrap(), false), Verdict::Drop(DropReason::Ipv4Mapped));
/// assert_eq!(classify("127.0.0.1".parse().unwrap(), false), Verdict::Drop(DropReason::Loopback));
/// assert_eq!(classify("2001:db8::5efe:192.0.2.1".parse().unwrap(), false), Verdict::Drop(DropReason::Isatap));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// `::` or `0.0.0.0`.
    Unspecified,
    /// `::1` or `127.0.0.0/8`.
    Loopback,
    /// `ff00::/8` or `224.0.0.0/4`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// IPv4-mapped `::ffff:w.x.y.z`.
    Ipv4Mapped,
    /// IPv4-compatible `::w.x.y.z`.
    Ipv4Compatible,
    /// 6over4 `fe80::wwxx:yyzz` (link-local with the IPv4 address as interface id).
    SixOverFour,
    /// 6to4 `2002::/16`.
    SixToFour,
    /// ISATAP: interface id `0:5efe:w.x.y.z` (or `200:5efe:…`) under any 64-bit prefix.
    Isatap,
    /// A temporary (privacy) address, `IFA_F_TEMPORARY` on Linux.
    Temporary,
}

/// Keep or drop, with the reason.
///
/// ```
/// use san_spi_core::addr::eligibility::classify;
///
/// let v = classify("2002::1".parse().unwrap(), false);
/// assert!(!v.is_keep());
/// assert_eq!(v.to_string(), "drop 6to4 (2002::/16)");
/// assert_eq!(classify("2001:db8::1".parse().unwrap(), false).to_string(), "keep IPv6 global unicast");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Returned by `SIO_ADDRESS_LIST_QUERY`.
    Keep(KeepReason),
    /// Left out.
    Drop(DropReason),
}

impl Verdict {
    /// Whether the address is returned.
    pub fn is_keep(self) -> bool {
        matches!(self, Verdict::Keep(_))
    }

    /// `"keep"` or `"drop"`.
    pub fn action(self) -> &'static str {
        if self.is_keep() {
            "keep"
        } else {
            "drop"
        }
    }

    /// The reason in words, e.g. `"6to4 (2002::/16)"`.
    pub fn reason(self) -> &'static str {
        match self {
            Verdict::Keep(k) => match k {
                KeepReason::Ipv4Unicast => "IPv4 unicast",
                KeepReason::LinkLocal => "IPv6 link-local unicast (fe80::/10)",
                KeepReason::SiteLocal => "IPv6 site-local unicast (fec0::/10)",
                KeepReason::UniqueLocal => "IPv6 unique-local unicast (fc00::/7)",
                KeepReason::Global => "IPv6 global unicast",
            },
            Verdict::Drop(d) => match d {
                DropReason::Unspecified => "unspecified address",
                DropReason::Loopback => "loopback address",
                DropReason::Multicast => "multicast address",
                DropReason::Broadcast => "broadcast address",
                DropReason::Ipv4Mapped => "IPv4-mapped (::ffff:w.x.y.z)",
                DropReason::Ipv4Compatible => "IPv4-compatible (::w.x.y.z)",
                DropReason::SixOverFour => "6over4 (fe80::wwxx:yyzz)",
                DropReason::SixToFour => "6to4 (2002::/16)",
                DropReason::Isatap => "ISATAP (interface id 0:5efe:w.x.y.z)",
                DropReason::Temporary => "temporary (privacy) address",
            },
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action(), self.reason())
    }
}

fn net(addr: [u16; 8], prefix: u8) -> Ipv6Net {
    let a = Ipv6Addr::new(
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    );
    // The prefixes below are constants no longer than 128 bits.
    Ipv6Net::new(a, prefix).unwrap_or_default()
}

/// The verdict for one local address; `temporary` is the kernel's privacy-address flag.
pub fn classify(addr: IpAddr, temporary: bool) -> Verdict {
    match addr {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => classify_v6(a, temporary),
    }
}

fn classify_v4(a: Ipv4Addr) -> Verdict {
    if a.is_unspecified() {
        Verdict::Drop(DropReason::Unspecified)
    } else if a.is_loopback() {
        Verdict::Drop(DropReason::Loopback)
    } else if a.is_multicast() {
        Verdict::Drop(DropReason::Multicast)
    } else if a.is_broadcast() {
        Verdict::Drop(DropReason::Broadcast)
    } else {
        Verdict::Keep(KeepReason::Ipv4Unicast)
    }
}

fn classify_v6(a: Ipv6Addr, temporary: bool) -> Verdict {
    let o = a.octets();
    let drop = if a.is_unspecified() {
        Some(DropReason::Unspecified)
    } else if a.is_loopback() {
        Some(DropReason::Loopback)
    } else if net([0xff00, 0, 0, 0, 0, 0, 0, 0], 8).contains(&a) {
        Some(DropReason::Multicast)
    } else if net([0, 0, 0, 0, 0, 0xffff, 0, 0], 96).contains(&a) {
        Some(DropReason::Ipv4Mapped)
    } else if net([0; 8], 96).contains(&a) {
        Some(DropReason::Ipv4Compatible)
    } else if net([0x2002, 0, 0, 0, 0, 0, 0, 0], 16).contains(&a) {
        Some(DropReason::SixToFour)
    } else if (o[8] == 0 || o[8] == 0x02) && o[9] == 0 && o[10] == 0x5e && o[11] == 0xfe {
        Some(DropReason::Isatap)
    } else if net([0xfe80, 0, 0, 0, 0, 0, 0, 0], 96).contains(&a) {
        Some(DropReason::SixOverFour)
    } else if temporary {
        Some(DropReason::Temporary)
    } else {
        None
    };
    if let Some(d) = drop {
        return Verdict::Drop(d);
    }
    Verdict::Keep(if net([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10).contains(&a) {
        KeepReason::LinkLocal
    } else if net([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10).contains(&a) {
        KeepReason::SiteLocal
    } else if net([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7).contains(&a) {
        KeepReason::UniqueLocal
    } else {
        KeepReason::Global
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str, temporary: bool) -> Verdict {
        classify(s.parse().unwrap(), temporary)
    }

    /// R-ADDR-5: native unicast link-local, site-local and global addresses are returned.
    #[test]
    fn r_addr_5_native_unicast_is_kept() {
        assert_eq!(
            v("fe80::211:22ff:fe33:4455", false),
            Verdict::Keep(KeepReason::LinkLocal)
        );
        assert_eq!(
            v("fec0::1:211:22ff:fe33:4455", false),
            Verdict::Keep(KeepReason::SiteLocal)
        );
        assert_eq!(
            v("2001:db8:1::211:22ff:fe33:4455", false),
            Verdict::Keep(KeepReason::Global)
        );
        assert_eq!(
            v("fd12:3456::1", false),
            Verdict::Keep(KeepReason::UniqueLocal)
        );
        assert_eq!(
            v("192.0.2.7", false),
            Verdict::Keep(KeepReason::Ipv4Unicast)
        );
    }

    /// R-ADDR-6: temporary addresses are never returned.
    #[test]
    fn r_addr_6_temporary_is_dropped() {
        assert_eq!(
            v("2001:db8::1:2:3:4", true),
            Verdict::Drop(DropReason::Temporary)
        );
        assert_eq!(
            v("fe80::1:2:3:4", true),
            Verdict::Drop(DropReason::Temporary)
        );
    }

    /// R-ADDR-6: IPv4-compatible and IPv4-mapped addresses are never returned.
    #[test]
    fn r_addr_6_ipv4_compatible_and_mapped_are_dropped() {
        assert_eq!(
            v("::192.0.2.1", false),
            Verdict::Drop(DropReason::Ipv4Compatible)
        );
        assert_eq!(
            v("::0.0.0.2", false),
            Verdict::Drop(DropReason::Ipv4Compatible)
        );
        assert_eq!(
            v("::ffff:192.0.2.1", false),
            Verdict::Drop(DropReason::Ipv4Mapped)
        );
    }

    /// R-ADDR-6: 6over4, 6to4 and ISATAP addresses are never returned.
    #[test]
    fn r_addr_6_transition_addresses_are_dropped() {
        assert_eq!(
            v("fe80::c000:201", false),
            Verdict::Drop(DropReason::SixOverFour)
        );
        assert_eq!(
            v("2002:c000:201:1::1", false),
            Verdict::Drop(DropReason::SixToFour)
        );
        assert_eq!(
            v("2001:db8::5efe:192.0.2.1", false),
            Verdict::Drop(DropReason::Isatap)
        );
        assert_eq!(
            v("fe80::5efe:c000:201", false),
            Verdict::Drop(DropReason::Isatap)
        );
        assert_eq!(
            v("2001:db8::200:5efe:c000:201", false),
            Verdict::Drop(DropReason::Isatap)
        );
        // 5efe elsewhere in the interface id is not ISATAP.
        assert_eq!(
            v("2001:db8::5efe:0:0:1", false),
            Verdict::Keep(KeepReason::Global)
        );
    }

    /// R-ADDR-6: multicast, unspecified and loopback are never returned.
    #[test]
    fn r_addr_6_multicast_unspecified_loopback_are_dropped() {
        assert_eq!(v("ff02::1", false), Verdict::Drop(DropReason::Multicast));
        assert_eq!(v("::", false), Verdict::Drop(DropReason::Unspecified));
        assert_eq!(v("::1", false), Verdict::Drop(DropReason::Loopback));
        assert_eq!(v("127.0.0.1", false), Verdict::Drop(DropReason::Loopback));
        assert_eq!(v("0.0.0.0", false), Verdict::Drop(DropReason::Unspecified));
        assert_eq!(v("239.1.1.1", false), Verdict::Drop(DropReason::Multicast));
        assert_eq!(
            v("255.255.255.255", false),
            Verdict::Drop(DropReason::Broadcast)
        );
    }

    #[test]
    fn verdict_display_names_action_and_reason() {
        assert_eq!(v("2002::1", false).to_string(), "drop 6to4 (2002::/16)");
        assert_eq!(v("fe80::1:2:3:4", false).action(), "keep");
    }
}
