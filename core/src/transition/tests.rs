//! A toy cloud — lowest priority wins, a deny wins a tie, ingress TCP only — to test the
//! checker itself; each provider tests its own world against its evaluator.

use super::*;

#[derive(Clone, Debug, PartialEq)]
struct ToyRule {
    name: &'static str,
    priority: u16,
    allow: bool,
    ports: (u16, u16),
}

#[derive(Clone, Debug)]
enum ToyWrite {
    Put(ToyRule),
    Delete(&'static str),
}

struct Toy;

fn toy_box(r: &ToyRule) -> MatchBox {
    MatchBox {
        direction: Direction::Ingress,
        protocol: Some(proto::TCP),
        ports: IntervalSet::range(r.ports.0, r.ports.1),
        addrs: AddrSet::everything(),
        nodes: false,
    }
}

impl Transition for Toy {
    type State = Vec<ToyRule>;
    type Write = ToyWrite;
    fn apply(&self, state: &mut Vec<ToyRule>, write: &ToyWrite) {
        let name = match write {
            ToyWrite::Put(r) => r.name,
            ToyWrite::Delete(n) => n,
        };
        state.retain(|r| r.name != name);
        if let ToyWrite::Put(r) = write {
            state.push(r.clone());
        }
    }
    fn decide(&self, state: &Vec<ToyRule>, packet: &Packet) -> Verdict {
        let PacketProtocol::Tcp { port } = packet.protocol else {
            return Verdict::Deny;
        };
        let mut best: Option<(u16, bool)> = None;
        for r in state
            .iter()
            .filter(|r| r.ports.0 <= port && port <= r.ports.1)
        {
            best = match best {
                Some((p, a)) if p < r.priority || (p == r.priority && !a) => Some((p, a)),
                _ => Some((r.priority, r.allow)),
            };
        }
        match best {
            Some((_, true)) => Verdict::Allow,
            _ => Verdict::Deny,
        }
    }
    fn footprint(&self, state: &Vec<ToyRule>, write: &ToyWrite) -> Vec<MatchBox> {
        let name = match write {
            ToyWrite::Put(r) => r.name,
            ToyWrite::Delete(n) => n,
        };
        let mut out: Vec<MatchBox> = state
            .iter()
            .filter(|r| r.name == name)
            .map(toy_box)
            .collect();
        if let ToyWrite::Put(r) = write {
            out.push(toy_box(r));
        }
        out
    }
    fn boxes(&self, state: &Vec<ToyRule>) -> Vec<MatchBox> {
        state.iter().map(toy_box).collect()
    }
    fn describe(&self, write: &ToyWrite) -> String {
        format!("{write:?}")
    }
}

fn rule(name: &'static str, priority: u16, allow: bool, ports: (u16, u16)) -> ToyRule {
    ToyRule {
        name,
        priority,
        allow,
        ports,
    }
}

/// The GCP repro: ssh moves from 1010 to 1000 and a deny-all arrives at 1010. Inserting the
/// deny first ties it with ssh, and the deny wins the tie.
fn tie() -> (Vec<ToyRule>, Vec<ToyRule>, Vec<ToyWrite>) {
    let old = vec![rule("ssh", 1010, true, (22, 22))];
    let new = vec![
        rule("ssh", 1000, true, (22, 22)),
        rule("deny", 1010, false, (0, 65535)),
    ];
    let writes = vec![
        ToyWrite::Put(rule("deny", 1010, false, (0, 65535))),
        ToyWrite::Put(rule("ssh", 1000, true, (22, 22))),
    ];
    (old, new, writes)
}

#[test]
fn the_tie_order_is_caught_with_its_packet_and_step() {
    let (old, new, writes) = tie();
    let steps = vec![vec![&writes[0]], vec![&writes[1]]];
    let err = check(&Toy, &old, &new, &steps).unwrap_err();
    assert!(
        matches!(&err, Unsafe::Packet { step: 1, verb: "deny", both: "allow", packet, .. } if packet.contains("tcp 22")),
        "{err}"
    );
}

#[test]
fn order_finds_the_safe_sequence_and_check_agrees() {
    let (old, new, writes) = tie();
    let (steps, checked) = order(&Toy, &old, &new, &writes, 8).unwrap();
    assert_eq!(steps, vec![vec![1], vec![0]]);
    assert_eq!(checked.steps, 2);
    let refs: Vec<Vec<&ToyWrite>> = steps
        .iter()
        .map(|s| s.iter().map(|&i| &writes[i]).collect())
        .collect();
    assert_eq!(check(&Toy, &old, &new, &refs).unwrap().writes, 2);
}

#[test]
fn concurrent_writes_that_touch_the_same_traffic_are_refused() {
    // Each write is safe alone; together they touch port 22, so their order could matter.
    let old = vec![];
    let new = vec![
        rule("a", 1000, true, (22, 22)),
        rule("b", 1000, true, (20, 30)),
    ];
    let writes: Vec<ToyWrite> = new.iter().cloned().map(ToyWrite::Put).collect();
    let err = check(&Toy, &old, &new, &[vec![&writes[0], &writes[1]]]).unwrap_err();
    assert!(matches!(err, Unsafe::Concurrent { step: 1, .. }), "{err}");
}

#[test]
fn disjoint_writes_share_a_step() {
    let old = vec![];
    let new = vec![
        rule("a", 1000, true, (22, 22)),
        rule("b", 1000, true, (80, 80)),
    ];
    let writes: Vec<ToyWrite> = new.iter().cloned().map(ToyWrite::Put).collect();
    let (steps, _) = order(&Toy, &old, &new, &writes, 8).unwrap();
    assert_eq!(steps, vec![vec![0, 1]]);
    let (steps, _) = order(&Toy, &old, &new, &writes, 1).unwrap();
    assert_eq!(steps, vec![vec![0], vec![1]]);
}

#[test]
fn a_change_with_no_safe_order_is_refused() {
    // Swapping which of two identical-scope rules wins, where both ends allow port 22 but
    // every single write denies it: the only way through is a moment of deny.
    let old = vec![
        rule("x", 1000, true, (22, 22)),
        rule("y", 1001, false, (22, 22)),
    ];
    let new = vec![
        rule("x", 1001, true, (22, 22)),
        rule("y", 1002, false, (22, 22)),
    ];
    let writes = vec![
        ToyWrite::Put(rule("x", 1001, true, (22, 22))),
        ToyWrite::Put(rule("y", 1002, false, (22, 22))),
    ];
    // x first ties x and y at 1001 (deny wins); y first is safe, then x.
    let (steps, _) = order(&Toy, &old, &new, &writes, 8).unwrap();
    assert_eq!(steps, vec![vec![1], vec![0]]);
    let stuck = vec![ToyWrite::Put(rule("x", 1001, true, (22, 22)))];
    let err = order(&Toy, &old, &new, &stuck, 8).unwrap_err();
    assert!(matches!(err, Unsafe::Packet { step: 1, .. }), "{err}");
}

#[test]
fn cells_start_at_every_edge_inside_the_range() {
    let within = IntervalSet::range(10u16, 30);
    let edges = [IntervalSet::range(0u16, 12), IntervalSet::range(20, 40)];
    assert_eq!(cells_u16(&within, edges.iter()), vec![10, 13, 20]);
    let full = IntervalSet::<u16>::full();
    assert_eq!(
        cells_u16(&full, [IntervalSet::range(0u16, 65535)].iter()),
        vec![0]
    );
}

#[test]
fn probes_cover_node_peers_and_unnamed_protocols() {
    let fb = MatchBox::any_port(Direction::Ingress, None, AddrSet::empty(), true);
    let packets = probes_in(&fb, &[], &AddrSet::everything()).unwrap();
    assert!(packets.iter().all(|p| p.peer.is_node));
    assert!(
        packets
            .iter()
            .any(|p| matches!(p.protocol, PacketProtocol::Other { number: 0 }))
    );
    assert!(packets.iter().any(|p| p.peer.addr.is_ipv6()));
}

#[test]
fn a_delete_of_a_rule_another_rule_covers_is_safe() {
    let old = vec![
        rule("a", 1000, true, (22, 22)),
        rule("b", 1001, true, (0, 1023)),
    ];
    let new = vec![rule("b", 1001, true, (0, 1023))];
    let (steps, checked) = order(&Toy, &old, &new, &[ToyWrite::Delete("a")], 8).unwrap();
    assert_eq!((steps, checked.writes), (vec![vec![0]], 1));
    // Deleting the cover instead locks out port 80, which both ends allow.
    let err = check(
        &Toy,
        &old,
        &vec![
            rule("a", 1000, true, (22, 22)),
            rule("c", 1002, true, (80, 80)),
        ],
        &[vec![&ToyWrite::Delete("b")]],
    )
    .unwrap_err();
    assert!(err.to_string().contains("deny ingress tcp 80"), "{err}");
}

#[test]
fn node_peers_are_probed_at_node_addresses_only() {
    let fb = MatchBox::any_port(Direction::Ingress, Some(proto::TCP), AddrSet::empty(), true);
    let nodes = AddrSet::from_cidrs(&["10.0.16.0/20".parse().unwrap()]);
    let packets = probes_in(&fb, &[], &nodes).unwrap();
    assert!(!packets.is_empty());
    assert!(
        packets
            .iter()
            .all(|p| p.peer.is_node && nodes.contains(p.peer.addr))
    );
}
