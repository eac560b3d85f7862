//! Built-in services and CNI presets.
//!
//! Port numbers come from the projects' own documentation (see docs/policy-reference.md for
//! the links). They differ between CNIs on purpose: "VXLAN" is UDP 4789 for Calico (IANA) but
//! 8472 for Cilium and flannel (the Linux kernel default), and "WireGuard" is 51820-51821 for
//! Calico and flannel but 51871 for Cilium.

use crate::intent::{IcmpMatch, PortRange, Service, proto};

const fn tcp(first: u16, last: u16) -> Service {
    Service::Tcp {
        ports: PortRange { first, last },
    }
}
const fn udp(first: u16, last: u16) -> Service {
    Service::Udp {
        ports: PortRange { first, last },
    }
}
const ICMP_ECHO: Service = Service::Icmp {
    icmp: IcmpMatch {
        type_: Some(8),
        code: None,
    },
};
const ICMPV6_ECHO: Service = Service::Icmpv6 {
    icmp: IcmpMatch {
        type_: Some(128),
        code: None,
    },
};

/// A named built-in service.
pub struct Preset {
    /// Name used in `services:` lists.
    pub name: &'static str,
    /// What it expands to.
    pub services: &'static [Service],
    /// One line for `--help` and the reference.
    pub summary: &'static str,
}

/// Built-in services (not CNI-specific).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "any",
        services: &[Service::Any],
        summary: "every protocol and port",
    },
    Preset {
        name: "ssh",
        services: &[tcp(22, 22)],
        summary: "SSH, 22/tcp",
    },
    Preset {
        name: "kubelet",
        services: &[tcp(10250, 10250)],
        summary: "kubelet API, 10250/tcp",
    },
    Preset {
        name: "kube-proxy-health",
        services: &[tcp(10256, 10256)],
        summary: "kube-proxy health check, 10256/tcp",
    },
    Preset {
        name: "nodeports",
        services: &[tcp(30000, 32767), udp(30000, 32767)],
        summary: "NodePort Services, 30000-32767/tcp and /udp",
    },
    Preset {
        name: "node-exporter",
        services: &[tcp(9100, 9100)],
        summary: "Prometheus node-exporter, 9100/tcp",
    },
    Preset {
        name: "dns",
        services: &[udp(53, 53), tcp(53, 53)],
        summary: "DNS, 53/udp and 53/tcp",
    },
    Preset {
        name: "ntp",
        services: &[udp(123, 123)],
        summary: "NTP, 123/udp",
    },
    Preset {
        name: "https",
        services: &[tcp(443, 443)],
        summary: "HTTPS, 443/tcp",
    },
    Preset {
        name: "kube-apiserver",
        services: &[tcp(6443, 6443)],
        summary: "Kubernetes API server, 6443/tcp",
    },
    Preset {
        name: "icmp-echo",
        services: &[ICMP_ECHO, ICMPV6_ECHO],
        summary: "ping: ICMP echo request (type 8) and ICMPv6 echo request (type 128)",
    },
];

/// A CNI mode: one piece of a CNI's traffic.
pub struct CniMode {
    /// Mode name after the slash: `cni:calico/vxlan`.
    pub name: &'static str,
    /// What it expands to.
    pub services: &'static [Service],
    /// One line for the reference.
    pub summary: &'static str,
}

/// A CNI and its modes.
pub struct Cni {
    /// Name after `cni:`.
    pub name: &'static str,
    /// All modes.
    pub modes: &'static [CniMode],
    /// The modes `cni:NAME` alone selects: the CNI's default installation.
    pub default_modes: &'static [&'static str],
    /// Where the ports are documented.
    pub source: &'static str,
}

/// The CNI presets.
pub const CNIS: &[Cni] = &[
    Cni {
        name: "calico",
        modes: &[
            CniMode {
                name: "bgp",
                services: &[tcp(179, 179)],
                summary: "BGP peering, 179/tcp",
            },
            CniMode {
                name: "ipip",
                services: &[Service::Protocol {
                    number: proto::IPIP,
                }],
                summary: "IP-in-IP encapsulation, IP protocol 4",
            },
            CniMode {
                name: "vxlan",
                services: &[udp(4789, 4789)],
                summary: "VXLAN, 4789/udp",
            },
            CniMode {
                name: "typha",
                services: &[tcp(5473, 5473)],
                summary: "Typha, 5473/tcp",
            },
            CniMode {
                name: "wireguard",
                services: &[udp(51820, 51821)],
                summary: "WireGuard, 51820/udp (IPv4) and 51821/udp (IPv6)",
            },
        ],
        default_modes: &["bgp", "ipip"],
        source: "https://docs.tigera.io/calico/latest/getting-started/kubernetes/requirements",
    },
    Cni {
        name: "cilium",
        modes: &[
            CniMode {
                name: "vxlan",
                services: &[udp(8472, 8472)],
                summary: "VXLAN, 8472/udp",
            },
            CniMode {
                name: "geneve",
                services: &[udp(6081, 6081)],
                summary: "Geneve, 6081/udp",
            },
            CniMode {
                name: "health",
                services: &[tcp(4240, 4240), ICMP_ECHO, ICMPV6_ECHO],
                summary: "health checks, 4240/tcp and ICMP echo",
            },
            CniMode {
                name: "hubble",
                services: &[tcp(4244, 4244)],
                summary: "Hubble server, 4244/tcp",
            },
            CniMode {
                name: "wireguard",
                services: &[udp(51871, 51871)],
                summary: "WireGuard, 51871/udp",
            },
        ],
        default_modes: &["vxlan", "health"],
        source: "https://docs.cilium.io/en/stable/operations/system_requirements/",
    },
    Cni {
        name: "flannel",
        modes: &[
            CniMode {
                name: "vxlan",
                services: &[udp(8472, 8472)],
                summary: "VXLAN, 8472/udp",
            },
            CniMode {
                name: "udp",
                services: &[udp(8285, 8285)],
                summary: "udp backend, 8285/udp",
            },
            CniMode {
                name: "wireguard",
                services: &[udp(51820, 51821)],
                summary: "WireGuard backend, 51820/udp and 51821/udp",
            },
        ],
        default_modes: &["vxlan"],
        source: "https://github.com/flannel-io/flannel/blob/master/Documentation/backends.md",
    },
];

/// A built-in service by name.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// A CNI by name.
pub fn cni(name: &str) -> Option<&'static Cni> {
    CNIS.iter().find(|c| c.name == name)
}

/// Named IP protocols accepted in service literals (`ipip`, `esp/…` is not a thing).
pub const PROTOCOL_NAMES: &[(&str, u8)] = &[
    ("ipip", proto::IPIP),
    ("gre", proto::GRE),
    ("esp", proto::ESP),
    ("ah", proto::AH),
    ("sctp", proto::SCTP),
];
