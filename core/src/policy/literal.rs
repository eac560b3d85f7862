//! Protocol literals: `tcp/443`, `udp/30000-32767`, `icmp/3/4`, `proto/4`, `ipip`.

use super::presets::PROTOCOL_NAMES;
use crate::addr::decimal;
use crate::intent::{IcmpMatch, PortRange, Service, proto};

/// Parses a protocol literal: `tcp`, `tcp/443`, `udp/30000-32767`, `icmp/8`, `icmp/3/4`,
/// `icmpv6/128`, `proto/4`, `ipip`. Returns a message and a hint on error.
pub fn parse_literal(s: &str) -> Result<Service, (String, &'static str)> {
    let mut parts = s.split('/');
    let head = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let port_hint = "ports are 0-65535 in decimal without a sign or leading zeros, written `tcp/443` or `tcp/8000-8080`";
    match head {
        "tcp" | "udp" => {
            let ports = match rest.as_slice() {
                [] => PortRange::ALL,
                [p] => parse_ports(p)
                    .ok_or_else(|| (format!("`{p}` is not a port or port range"), port_hint))?,
                _ => return Err(("too many `/`".into(), port_hint)),
            };
            if ports.first > ports.last {
                return Err((
                    format!("range {}-{} is reversed", ports.first, ports.last),
                    "write the lower port first",
                ));
            }
            Ok(if head == "tcp" {
                Service::Tcp { ports }
            } else {
                Service::Udp { ports }
            })
        }
        "icmp" | "icmpv6" => {
            let hint = "write `icmp`, `icmp/TYPE` or `icmp/TYPE/CODE` with decimal numbers 0-255 (no sign, no leading zeros)";
            let num = |x: &str| {
                decimal::<u8>(x)
                    .ok_or_else(|| (format!("`{x}` is not an ICMP type or code (0-255)"), hint))
            };
            let icmp = match rest.as_slice() {
                [] => IcmpMatch::ALL,
                [t] => IcmpMatch {
                    type_: Some(num(t)?),
                    code: None,
                },
                [t, c] => IcmpMatch {
                    type_: Some(num(t)?),
                    code: Some(num(c)?),
                },
                _ => return Err(("too many `/`".into(), hint)),
            };
            Ok(if head == "icmp" {
                Service::Icmp { icmp }
            } else {
                Service::Icmpv6 { icmp }
            })
        }
        "proto" => {
            let hint =
                "write `proto/N` with an IANA protocol number 0-255, e.g. `proto/4` for IP-in-IP";
            let [n] = rest.as_slice() else {
                return Err(("expected exactly one protocol number".into(), hint));
            };
            let n: u8 =
                decimal(n).ok_or_else(|| (format!("`{n}` is not a protocol number"), hint))?;
            Ok(match n {
                proto::TCP => Service::Tcp {
                    ports: PortRange::ALL,
                },
                proto::UDP => Service::Udp {
                    ports: PortRange::ALL,
                },
                proto::ICMP => Service::Icmp {
                    icmp: IcmpMatch::ALL,
                },
                proto::ICMPV6 => Service::Icmpv6 {
                    icmp: IcmpMatch::ALL,
                },
                number => Service::Protocol { number },
            })
        }
        other => {
            let Some((_, number)) = PROTOCOL_NAMES.iter().find(|(n, _)| *n == other) else {
                return Err((
                    "unknown protocol".into(),
                    "protocols are tcp, udp, icmp, icmpv6, ipip, gre, esp, ah, sctp or proto/N",
                ));
            };
            if !rest.is_empty() {
                return Err((
                    format!("{other} has no ports"),
                    "only tcp and udp take ports; icmp takes a type and code",
                ));
            }
            Ok(Service::Protocol { number: *number })
        }
    }
}

fn parse_ports(p: &str) -> Option<PortRange> {
    match p.split_once('-') {
        Some((a, b)) => Some(PortRange {
            first: decimal(a)?,
            last: decimal(b)?,
        }),
        None => {
            let v = decimal(p)?;
            Some(PortRange { first: v, last: v })
        }
    }
}
