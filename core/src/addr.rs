//! IP networks and sets of addresses.
//!
//! A [`Cidr`] is what users write and what clouds accept; an [`AddrSet`] is what the compilers
//! compute with. Converting a set back to CIDRs ([`AddrSet::to_cidrs`]) yields the minimal list
//! of aligned blocks, so "10.0.0.0/16 except 10.0.5.0/24" becomes the handful of blocks an AWS
//! security group can hold.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::interval::IntervalSet;

/// An IP network in CIDR notation with no host bits set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("`{0}` is not an IPv4 or IPv6 address")]
    BadAddress(String),
    /// The prefix length is not a number or is too long for the family.
    #[error(
        "prefix length `{0}` is not 0-32 (IPv4) or 0-128 (IPv6) in decimal without leading zeros"
    )]
    BadPrefix(String),
    /// Bits are set below the prefix length; the network address is given as the suggestion.
    #[error("host bits are set below the prefix length")]
    HostBits {
        /// The network the user probably meant.
        network: Cidr,
    },
}

impl Cidr {
    /// Builds a CIDR, refusing host bits below the prefix.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(CidrError::BadPrefix(prefix.to_string()));
        }
        let network = Self::truncate(addr, prefix);
        if network != addr {
            return Err(CidrError::HostBits {
                network: Cidr {
                    addr: network,
                    prefix,
                },
            });
        }
        Ok(Self { addr, prefix })
    }

    fn truncate(addr: IpAddr, prefix: u8) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let mask = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - prefix)
                };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - prefix)
                };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }

    /// Parses like `from_str` but clears host bits instead of refusing them: for reading what
    /// a cloud stored, which may be written as `10.0.0.1/8`.
    pub fn parse_lenient(s: &str) -> Result<Self, CidrError> {
        match s.parse::<Cidr>() {
            Err(CidrError::HostBits { network }) => Ok(network),
            other => other,
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True for an IPv4 network.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// `0.0.0.0/0`.
    pub const ANY_V4: Cidr = Cidr {
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        prefix: 0,
    };
    /// `::/0`.
    pub const ANY_V6: Cidr = Cidr {
        addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        prefix: 0,
    };

    /// A single-address network (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }

    /// True when `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && Self::truncate(ip, self.prefix) == self.addr
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A number written the one way: decimal digits, no sign, no leading zero. `/08`, `tcp/+22`
/// and `tcp/0022` are refused: a reviewer reading `0022` may think of octal, and other tools
/// disagree on what such numbers mean.
pub(crate) fn decimal<T: FromStr>(s: &str) -> Option<T> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let canonical = s == "0" || !s.starts_with('0');
    (digits && canonical).then(|| s.parse().ok()).flatten()
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a host network).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_part, prefix_part) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_part
            .parse()
            .map_err(|_| CidrError::BadAddress(addr_part.to_string()))?;
        let prefix = match prefix_part {
            None => {
                if addr.is_ipv4() {
                    32
                } else {
                    128
                }
            }
            Some(p) => decimal::<u8>(p).ok_or_else(|| CidrError::BadPrefix(p.to_string()))?,
        };
        Cidr::new(addr, prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of IPv4 and IPv6 addresses.
#[derive(Clone, PartialEq, Eq, Hash, Default, Debug, PartialOrd, Ord)]
pub struct AddrSet {
    /// IPv4 addresses as integers.
    pub v4: IntervalSet<u32>,
    /// IPv6 addresses as integers.
    pub v6: IntervalSet<u128>,
}

impl AddrSet {
    /// No addresses.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every IPv4 and IPv6 address (the policy's `internet`).
    pub fn everything() -> Self {
        Self {
            v4: IntervalSet::full(),
            v6: IntervalSet::full(),
        }
    }

    /// The addresses of the given networks.
    pub fn from_cidrs<'a>(cidrs: impl IntoIterator<Item = &'a Cidr>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in cidrs {
            match c.addr {
                IpAddr::V4(a) => {
                    let lo = u32::from(a);
                    let span = if c.prefix == 0 {
                        u32::MAX
                    } else {
                        (1u32 << (32 - c.prefix)) - 1
                    };
                    v4.push((lo, lo | span));
                }
                IpAddr::V6(a) => {
                    let lo = u128::from(a);
                    let span = if c.prefix == 0 {
                        u128::MAX
                    } else {
                        (1u128 << (128 - c.prefix)) - 1
                    };
                    v6.push((lo, lo | span));
                }
            }
        }
        Self {
            v4: IntervalSet::from_ranges(v4),
            v6: IntervalSet::from_ranges(v6),
        }
    }

    /// True when the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// True when `ip` is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.contains(u32::from(a)),
            IpAddr::V6(a) => self.v6.contains(u128::from(a)),
        }
    }

    /// Addresses in either set.
    pub fn union(&self, other: &Self) -> Self {
        Self {
            v4: self.v4.union(&other.v4),
            v6: self.v6.union(&other.v6),
        }
    }

    /// Addresses in both sets.
    pub fn intersection(&self, other: &Self) -> Self {
        Self {
            v4: self.v4.intersection(&other.v4),
            v6: self.v6.intersection(&other.v6),
        }
    }

    /// Addresses in `self` but not in `other`.
    pub fn difference(&self, other: &Self) -> Self {
        Self {
            v4: self.v4.difference(&other.v4),
            v6: self.v6.difference(&other.v6),
        }
    }

    /// Only the IPv4 part.
    pub fn only_v4(&self) -> Self {
        Self {
            v4: self.v4.clone(),
            v6: IntervalSet::empty(),
        }
    }

    /// Only the IPv6 part.
    pub fn only_v6(&self) -> Self {
        Self {
            v4: IntervalSet::empty(),
            v6: self.v6.clone(),
        }
    }

    /// The minimal list of CIDR blocks covering exactly this set, IPv4 first, each sorted.
    pub fn to_cidrs(&self) -> Vec<Cidr> {
        let mut out = self.v4_cidrs();
        out.extend(self.v6_cidrs());
        out
    }

    /// The IPv4 part as minimal CIDR blocks.
    pub fn v4_cidrs(&self) -> Vec<Cidr> {
        let mut out = Vec::new();
        for &(lo, hi) in self.v4.ranges() {
            split_range(lo as u128, hi as u128, 32, &mut |base, prefix| {
                out.push(Cidr {
                    addr: IpAddr::V4(Ipv4Addr::from(base as u32)),
                    prefix,
                });
            });
        }
        out
    }

    /// The IPv6 part as minimal CIDR blocks.
    pub fn v6_cidrs(&self) -> Vec<Cidr> {
        let mut out = Vec::new();
        for &(lo, hi) in self.v6.ranges() {
            split_range(lo, hi, 128, &mut |base, prefix| {
                out.push(Cidr {
                    addr: IpAddr::V6(Ipv6Addr::from(base)),
                    prefix,
                });
            });
        }
        out
    }
}

/// Splits the inclusive range `lo..=hi` of a `bits`-wide address space into the fewest aligned
/// blocks: at each step take the largest block that starts at `lo`, is aligned to its size and
/// does not pass `hi`.
fn split_range(mut lo: u128, hi: u128, bits: u8, emit: &mut dyn FnMut(u128, u8)) {
    loop {
        // Largest power of two dividing `lo` (alignment), capped at the address width.
        let align = if lo == 0 {
            u32::from(bits)
        } else {
            lo.trailing_zeros().min(u32::from(bits))
        };
        let mut size_bits = align;
        // Shrink until the block ends at or before `hi`.
        while size_bits > 0 {
            let last = if size_bits >= 128 {
                u128::MAX
            } else {
                lo + ((1u128 << size_bits) - 1)
            };
            if last <= hi && (size_bits < 128 || lo == 0) {
                break;
            }
            size_bits -= 1;
        }
        let block_last = if size_bits >= 128 {
            u128::MAX
        } else {
            lo + ((1u128 << size_bits) - 1)
        };
        emit(lo, bits - size_bits as u8);
        if block_last >= hi {
            return;
        }
        lo = block_last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(cidr("fd00::/8").to_string(), "fd00::/8");
        assert!(matches!(
            "10.0.0.1/8".parse::<Cidr>(),
            Err(CidrError::HostBits { network }) if network.to_string() == "10.0.0.0/8"
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::BadPrefix(_))
        ));
        assert!(matches!(
            "10.0.0/8".parse::<Cidr>(),
            Err(CidrError::BadAddress(_))
        ));
    }

    #[test]
    fn subtracting_a_subnet_leaves_aligned_blocks() {
        let vpc = AddrSet::from_cidrs(&[cidr("10.0.0.0/16")]);
        let hole = AddrSet::from_cidrs(&[cidr("10.0.5.0/24")]);
        let rest: Vec<String> = vpc
            .difference(&hole)
            .to_cidrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            rest,
            [
                "10.0.0.0/22",
                "10.0.4.0/24",
                "10.0.6.0/23",
                "10.0.8.0/21",
                "10.0.16.0/20",
                "10.0.32.0/19",
                "10.0.64.0/18",
                "10.0.128.0/17"
            ]
        );
    }

    #[test]
    fn full_spaces_round_trip() {
        assert_eq!(
            AddrSet::everything().to_cidrs(),
            vec![Cidr::ANY_V4, Cidr::ANY_V6]
        );
    }

    proptest! {
        #[test]
        fn to_cidrs_round_trips(ranges in prop::collection::vec((any::<u32>(), any::<u32>()), 0..4)) {
            let set = AddrSet {
                v4: IntervalSet::from_ranges(ranges.into_iter().map(|(a, b)| (a.min(b), a.max(b)))),
                v6: IntervalSet::empty(),
            };
            let back = AddrSet::from_cidrs(&set.to_cidrs());
            prop_assert_eq!(back, set);
        }

        #[test]
        fn v6_to_cidrs_round_trips(a in any::<u128>(), b in any::<u128>()) {
            let set = AddrSet { v4: IntervalSet::empty(), v6: IntervalSet::range(a.min(b), a.max(b)) };
            prop_assert_eq!(AddrSet::from_cidrs(&set.to_cidrs()), set);
        }
    }
}
