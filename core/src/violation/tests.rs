//! A toy path — perimeter's ordered rules, a union with foreign allows, then a foreign
//! first-match layer that defaults to allow — to test the finder itself; each cloud tests its
//! own estate against its evaluator.

use proptest::prelude::*;

use super::*;
use crate::Cidr;

#[derive(Clone, Debug)]
struct ToyRule {
    allow: bool,
    ports: (u16, u16),
    addrs: (u32, u32),
}

impl ToyRule {
    fn matches(&self, p: &Packet) -> bool {
        let (PacketProtocol::Tcp { port }, IpAddr::V4(a)) = (p.protocol, p.peer.addr) else {
            return false;
        };
        let a = u32::from(a);
        (self.ports.0..=self.ports.1).contains(&port) && (self.addrs.0..=self.addrs.1).contains(&a)
    }

    fn boxed(&self) -> MatchBox {
        MatchBox {
            direction: Direction::Ingress,
            protocol: Some(proto::TCP),
            ports: IntervalSet::range(self.ports.0, self.ports.1),
            addrs: AddrSet {
                v4: IntervalSet::range(self.addrs.0, self.addrs.1),
                v6: IntervalSet::empty(),
            },
            nodes: false,
        }
    }
}

fn first_match(rules: &[ToyRule], p: &Packet, default: bool) -> bool {
    rules
        .iter()
        .find(|r| r.matches(p))
        .map_or(default, |r| r.allow)
}

#[derive(Clone, Debug)]
struct ToyPath {
    /// perimeter's rules: first match, default deny.
    owned: Vec<ToyRule>,
    /// Foreign allows, ORed with the owned decision.
    union: Vec<ToyRule>,
    /// A foreign layer ANDed after: first match, default allow.
    layer: Vec<ToyRule>,
}

fn verdict(b: bool) -> Verdict {
    if b { Verdict::Allow } else { Verdict::Deny }
}

impl Estate for ToyPath {
    fn policy(&self, p: &Packet) -> Verdict {
        verdict(first_match(&self.owned, p, false))
    }
    fn effective(&self, p: &Packet) -> Verdict {
        let allowed = first_match(&self.owned, p, false) || self.union.iter().any(|r| r.matches(p));
        verdict(allowed && first_match(&self.layer, p, true))
    }
    fn culprit(&self, p: &Packet) -> Culprit {
        let named = |what: &str, i: usize| Culprit {
            object: what.into(),
            rule: format!("rule {i}"),
            key: format!("{what}/{i}"),
        };
        if self.effective(p) == Verdict::Allow {
            let i = self
                .union
                .iter()
                .position(|r| r.matches(p))
                .expect("an allow");
            named("union", i)
        } else {
            let i = self
                .layer
                .iter()
                .position(|r| r.matches(p))
                .expect("a deny");
            named("layer", i)
        }
    }
    fn boxes(&self) -> Vec<MatchBox> {
        self.owned
            .iter()
            .chain(&self.union)
            .chain(&self.layer)
            .map(ToyRule::boxed)
            .collect()
    }
    // Opens lie in a foreign allow; blocks in something the owned rules allow.
    fn regions(&self) -> Vec<MatchBox> {
        self.union
            .iter()
            .chain(self.owned.iter().filter(|r| r.allow))
            .map(ToyRule::boxed)
            .collect()
    }
}

fn rule(allow: bool, ports: (u16, u16), cidr: &str) -> ToyRule {
    let c: Cidr = cidr.parse().unwrap();
    let set = AddrSet::from_cidrs(&[c]);
    let (lo, hi) = set.v4.ranges()[0];
    ToyRule {
        allow,
        ports,
        addrs: (lo, hi),
    }
}

#[test]
fn a_foreign_allow_is_reported_with_its_exact_region() {
    let path = ToyPath {
        owned: vec![rule(true, (22, 22), "10.0.0.0/8")],
        union: vec![rule(true, (0, 65535), "10.0.0.0/8")],
        layer: vec![],
    };
    let v = violations(&path).unwrap();
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].effect, Effect::Opens);
    assert_eq!(v[0].policy, Verdict::Deny);
    assert_eq!(v[0].key, "union/0/opens");
    assert_eq!(v[0].regions, ["ingress tcp 0-21, 23-65535 from 10.0.0.0/8"]);
    assert_eq!(v[0].example, "ingress tcp 0 from 10.0.0.0");
}

#[test]
fn a_foreign_deny_inside_a_policy_allow_is_reported_however_deep_inside() {
    // The case: deny 10.0.0.0/8 at a layer, the policy allows 10.0.5.0/24 on 6443.
    let path = ToyPath {
        owned: vec![rule(true, (6443, 6443), "10.0.5.0/24")],
        union: vec![],
        layer: vec![rule(false, (0, 65535), "10.0.0.0/8")],
    };
    let v = violations(&path).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].effect, Effect::Blocks);
    assert_eq!(v[0].regions, ["ingress tcp 6443 from 10.0.5.0/24"]);
}

#[test]
fn broad_regions_are_said_by_what_they_leave_out() {
    let path = ToyPath {
        owned: vec![rule(true, (443, 443), "10.0.0.0/8")],
        union: vec![rule(true, (443, 443), "0.0.0.0/0")],
        layer: vec![],
    };
    let v = violations(&path).unwrap();
    assert_eq!(
        v[0].regions,
        ["ingress tcp 443 from 0.0.0.0/0 except 10.0.0.0/8"]
    );
}

#[test]
fn nothing_differs_nothing_is_reported() {
    let path = ToyPath {
        owned: vec![rule(true, (0, 65535), "0.0.0.0/0")],
        union: vec![rule(true, (443, 443), "0.0.0.0/0")],
        layer: vec![rule(true, (0, 100), "10.0.0.0/8")],
    };
    assert!(violations(&path).unwrap().is_empty());
}

// A universe small enough to enumerate: 10.0.0.0/28, ports 0-15.
const BASE: u32 = 0x0a00_0000;

fn small_rule() -> impl Strategy<Value = ToyRule> {
    (any::<bool>(), 0u16..16, 0u16..16, 0u32..16, 0u32..16).prop_map(|(allow, a, b, x, y)| {
        ToyRule {
            allow,
            ports: (a.min(b), a.max(b)),
            addrs: (BASE + x.min(y), BASE + x.max(y)),
        }
    })
}

fn packet(port: u16, a: u32) -> Packet {
    Packet {
        direction: Direction::Ingress,
        protocol: PacketProtocol::Tcp { port },
        peer: Peer {
            addr: IpAddr::from(a.to_be_bytes()),
            is_node: false,
        },
    }
}

fn in_cell(c: &CellBox, port: u16, a: u32) -> bool {
    let AddrRange::V4(lo, hi) = c.addrs else {
        return false;
    };
    c.protocol == proto::TCP && (c.ports.0..=c.ports.1).contains(&port) && (lo..=hi).contains(&a)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The reported cells are exactly the packets whose decisions differ, each blamed on the
    /// culprit that decided it.
    #[test]
    fn reported_cells_are_exactly_the_differences(
        owned in proptest::collection::vec(small_rule(), 0..5),
        union in proptest::collection::vec(small_rule().prop_map(|r| ToyRule { allow: true, ..r }), 0..4),
        layer in proptest::collection::vec(small_rule(), 0..4),
    ) {
        let path = ToyPath { owned, union, layer };
        let found = find(&path).unwrap();
        for port in 0..16u16 {
            for a in BASE..BASE + 16 {
                let p = packet(port, a);
                let differs = path.policy(&p) != path.effective(&p);
                let mut holders: Vec<&Culprit> = found
                    .iter()
                    .filter(|(_, cells)| cells.iter().any(|c| in_cell(c, port, a)))
                    .map(|((c, _, _), _)| c)
                    .collect();
                holders.dedup();
                if differs {
                    let culprit = path.culprit(&p);
                    prop_assert_eq!(holders, vec![&culprit], "tcp {} from {}", port, a);
                } else {
                    prop_assert!(holders.is_empty(), "tcp {} from {} reported", port, a);
                }
            }
        }
    }
}
