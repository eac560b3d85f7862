//! Shared test machinery: packet generation and the equivalence check that holds every cloud
//! compiler to the policy's reference semantics (`Intent::decide`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use perimeter_core::{Cidr, Direction, Intent, Note, Packet, PacketProtocol, Peer, Verdict};

pub mod generate;

/// A tiny deterministic generator (xorshift64*), so packet sweeps are reproducible from a seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator (zero is remapped).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Where the generated worlds put the protected nodes.
pub const NODE_CIDR: &str = "10.0.16.0/20";

/// Ports around the boundaries of the presets and the generator's literals.
const PORTS: &[u16] = &[
    0, 1, 21, 22, 23, 52, 53, 54, 80, 122, 123, 178, 179, 180, 443, 1023, 1024, 4239, 4240, 4244,
    4788, 4789, 4790, 5473, 6081, 6443, 8080, 8285, 8471, 8472, 8473, 9099, 9100, 9101, 10249,
    10250, 10256, 29999, 30000, 32767, 32768, 49152, 51820, 51821, 51871, 65534, 65535,
];

/// Addresses every world should probe: the platform services of each cloud.
pub fn platform_addresses() -> Vec<IpAddr> {
    vec![
        IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
        IpAddr::V4(Ipv4Addr::new(169, 254, 169, 253)),
        IpAddr::V4(Ipv4Addr::new(169, 254, 169, 123)),
        IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x253)),
    ]
}

fn addr_in(c: &Cidr, rng: &mut Rng, edge: u64) -> IpAddr {
    match c.addr() {
        IpAddr::V4(a) => {
            let base = u32::from(a);
            let size: u64 = 1u64 << (32 - u32::from(c.prefix()));
            let off = match edge {
                0 => 0,
                1 => size - 1,
                2 => size,                // just past the end
                3 => u64::from(u32::MAX), // wraps to just before the start
                _ => rng.below(size),
            };
            IpAddr::V4(Ipv4Addr::from(base.wrapping_add(off as u32)))
        }
        IpAddr::V6(a) => {
            let base = u128::from(a);
            let bits = 128 - u32::from(c.prefix());
            let size_minus_1: u128 = if bits == 128 {
                u128::MAX
            } else {
                (1u128 << bits) - 1
            };
            let off: u128 = match edge {
                0 => 0,
                1 => size_minus_1,
                2 => size_minus_1.wrapping_add(1),
                3 => u128::MAX,
                _ => (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) & size_minus_1,
            };
            IpAddr::V6(Ipv6Addr::from(base.wrapping_add(off)))
        }
    }
}

/// Generates packets that probe the boundaries of the given CIDRs and ports.
pub fn packets(rng: &mut Rng, cidrs: &[Cidr], count: usize) -> Vec<Packet> {
    let node_cidr: Cidr = NODE_CIDR.parse().expect("static");
    let platform = platform_addresses();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let direction = if rng.below(2) == 0 {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        let roll = rng.below(100);
        let (addr, is_node) = if roll < 25 {
            (addr_in(&node_cidr, rng, 4), true)
        } else if roll < 35 {
            (*rng.pick(&platform), false)
        } else if roll < 45 || cidrs.is_empty() {
            let any = if rng.below(2) == 0 {
                Cidr::ANY_V4
            } else {
                Cidr::ANY_V6
            };
            (addr_in(&any, rng, 4), false)
        } else {
            let c = *rng.pick(cidrs);
            let edge = rng.below(6);
            (addr_in(&c, rng, edge), false)
        };
        let v4 = addr.is_ipv4();
        let protocol = match rng.below(10) {
            0..=3 => PacketProtocol::Tcp { port: port(rng) },
            4..=5 => PacketProtocol::Udp { port: port(rng) },
            6..=7 => {
                let (type_, code) = *rng.pick(&[
                    (8u8, 0u8),
                    (0, 0),
                    (3, 4),
                    (3, 5),
                    (11, 0),
                    (128, 0),
                    (129, 0),
                ]);
                let (type_, code) = if rng.below(8) == 0 {
                    (rng.below(256) as u8, rng.below(256) as u8)
                } else {
                    (type_, code)
                };
                if v4 {
                    PacketProtocol::Icmp { type_, code }
                } else {
                    PacketProtocol::Icmpv6 { type_, code }
                }
            }
            _ => PacketProtocol::Other {
                number: *rng.pick(&[4u8, 47, 50, 51, 132, 41, 89, 253]),
            },
        };
        out.push(Packet {
            direction,
            protocol,
            peer: Peer { addr, is_node },
        });
    }
    out
}

fn port(rng: &mut Rng) -> u16 {
    if rng.below(5) == 0 {
        rng.below(65536) as u16
    } else {
        *rng.pick(PORTS)
    }
}

/// One packet decided differently by a cloud than by the policy, with no note covering it.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// `aws`, `gcp` or `azure`.
    pub cloud: &'static str,
    /// The packet.
    pub packet: Packet,
    /// The policy's decision.
    pub policy: Verdict,
    /// The cloud's decision.
    pub compiled: Verdict,
}

/// Counts of what [`check`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Packet decisions compared.
    pub compared: usize,
    /// Of those, decided differently but covered by a note.
    pub explained: usize,
    /// Clouds skipped because the policy exceeds one of their limits.
    pub skipped_clouds: usize,
    /// The same, per cloud: AWS, GCP, Azure.
    pub skipped_by_cloud: [usize; 3],
}

/// True when a note explains the difference: its scope holds the packet and its code says
/// the cloud errs this way — `widened` only excuses a cloud that allows what the policy
/// denies, `narrowed` only one that denies what the policy allows.
fn covered(notes: &[Note], p: &Packet, policy: Verdict, compiled: Verdict) -> bool {
    use perimeter_core::NoteCode;
    notes.iter().any(|n| {
        let sense = match n.code {
            NoteCode::Widened => policy == Verdict::Deny && compiled == Verdict::Allow,
            NoteCode::Narrowed => policy == Verdict::Allow && compiled == Verdict::Deny,
            _ => true,
        };
        sense && n.covers(p)
    })
}

/// Compiles the intent for every cloud (first target or placeholder) and compares each
/// cloud's evaluator with `Intent::decide` on every packet.
pub fn check(intent: &Intent, packets: &[Packet]) -> (Vec<Mismatch>, Stats) {
    let mut mismatches = Vec::new();
    let mut stats = Stats::default();
    let mut compare = |cloud: &'static str, notes: &[Note], decide: &dyn Fn(&Packet) -> Verdict| {
        for p in packets {
            let policy = intent.decide(p);
            let compiled = decide(p);
            stats.compared += 1;
            if policy != compiled {
                if covered(notes, p, policy, compiled) {
                    stats.explained += 1;
                } else {
                    mismatches.push(Mismatch {
                        cloud,
                        packet: *p,
                        policy,
                        compiled,
                    });
                }
            }
        }
    };

    let aws_target = intent.targets.aws_or_placeholder(&intent.name).remove(0);
    // Quotas are checked by their own tests; here the question is only whether the rules mean
    // what the policy means, so AWS compiles without them (AWS quotas are adjustable anyway).
    match perimeter_aws::compile_with_limits(intent, &aws_target, perimeter_aws::Limits::UNLIMITED)
    {
        Ok(c) => {
            let world = perimeter_aws::evaluate::AwsWorld {
                security_group: &c.security_group,
                other_groups: &[],
                node_groups: &[],
                network_acl: c.network_acl.as_ref(),
                metadata_options: c.metadata_options.as_ref(),
            };
            compare("aws", &c.notes, &|p| {
                perimeter_aws::evaluate::decide(&world, p)
            });
        }
        Err(_) => {
            stats.skipped_clouds += 1;
            stats.skipped_by_cloud[0] += 1;
        }
    }
    let gcp_target = intent.targets.gcp_or_placeholder(&intent.name).remove(0);
    match perimeter_gcp::compile(intent, &gcp_target) {
        Ok(c) => {
            let world = perimeter_gcp::evaluate::GcpWorld {
                firewalls: &c.firewalls,
                node_tags: &gcp_target.target_tags,
                node_service_accounts: &gcp_target.service_accounts,
            };
            compare("gcp", &c.notes, &|p| {
                perimeter_gcp::evaluate::decide(&world, p)
            });
        }
        Err(_) => {
            stats.skipped_clouds += 1;
            stats.skipped_by_cloud[1] += 1;
        }
    }
    let azure_target = intent.targets.azure_or_placeholder(&intent.name).remove(0);
    match perimeter_azure::compile(intent, &azure_target) {
        Ok(c) => {
            let asg = perimeter_azure::asg_id(&azure_target);
            let world = perimeter_azure::evaluate::AzureWorld {
                rules: &c.rules,
                node_asg: &asg,
                nic: None,
            };
            compare("azure", &c.notes, &|p| {
                perimeter_azure::evaluate::decide(&world, p)
            });
        }
        Err(_) => {
            stats.skipped_clouds += 1;
            stats.skipped_by_cloud[2] += 1;
        }
    }
    (mismatches, stats)
}

/// The CIDRs a policy's rules mention, for aiming packets at boundaries.
pub fn policy_cidrs(intent: &Intent) -> Vec<Cidr> {
    let mut out = Vec::new();
    for d in Direction::BOTH {
        for r in intent.rules(d) {
            out.extend(r.peers.addrs.to_cidrs());
        }
    }
    out.sort();
    out.dedup();
    out
}
