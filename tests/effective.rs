//! The effective-perimeter property: for random policies, each applied, and random estates
//! of objects perimeter does not own around them, the violations `plan` reports are exactly
//! where the cloud's independent evaluator decides the nodes' packets unlike the policy:
//!
//! * complete — every probed packet the evaluator decides differently on the nodes' path lies
//!   in a reported violation of the same effect, blamed on the object that decides it;
//! * sound — every reported violation's example packet is decided differently on the path,
//!   with the violation's effect.
//!
//! The path is restated here from the clouds' documentation, with the evaluators
//! (providers/*/src/evaluate.rs), not with the code that reports. Cases default to 5,000 per
//! cloud (PERIMETER_EFFECTIVE_CASES changes it).

use std::net::IpAddr;

use perimeter_core::violation::{Effect, Violation};
use perimeter_core::{Direction, Intent, Packet, PacketProtocol, Peer, Verdict};

#[path = "effective/aws.rs"]
mod aws;
#[path = "effective/azure.rs"]
mod azure;
#[path = "effective/gcp.rs"]
mod gcp;

/// What a case proved.
#[derive(Default, Debug)]
pub(crate) struct Tally {
    /// Cases planned and checked.
    checked: usize,
    /// Policies a cloud cannot hold (limits): not planned.
    skipped: usize,
    /// Violations reported.
    violations: usize,
    /// Probed packets decided differently on the path.
    differing: usize,
}

fn cases() -> usize {
    std::env::var("PERIMETER_EFFECTIVE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

/// The packet of a violation's `example` (core::transition::describe_packet's words).
pub(crate) fn parse_example(s: &str) -> Packet {
    let words: Vec<&str> = s.split(' ').collect();
    let direction = match words[0] {
        "ingress" => Direction::Ingress,
        _ => Direction::Egress,
    };
    let num = |w: &str| w.parse::<u16>().unwrap_or_else(|_| panic!("{w} in {s}"));
    let (protocol, rest) = match words[1] {
        "tcp" => (
            PacketProtocol::Tcp {
                port: num(words[2]),
            },
            3,
        ),
        "udp" => (
            PacketProtocol::Udp {
                port: num(words[2]),
            },
            3,
        ),
        "icmp" => (
            PacketProtocol::Icmp {
                type_: num(words[3]) as u8,
                code: num(words[5]) as u8,
            },
            6,
        ),
        "icmpv6" => (
            PacketProtocol::Icmpv6 {
                type_: num(words[3]) as u8,
                code: num(words[5]) as u8,
            },
            6,
        ),
        _ => (
            PacketProtocol::Other {
                number: num(words[2]) as u8,
            },
            3,
        ),
    };
    let is_node = words[rest + 1] == "node";
    let addr: IpAddr = words[words.len() - 1]
        .parse()
        .unwrap_or_else(|_| panic!("{s}"));
    Packet {
        direction,
        protocol,
        peer: Peer { addr, is_node },
    }
}

/// The effect of a difference between the policy and the path.
pub(crate) fn effect(policy: Verdict, path: Verdict) -> Option<Effect> {
    match (policy, path) {
        (Verdict::Deny, Verdict::Allow) => Some(Effect::Opens),
        (Verdict::Allow, Verdict::Deny) => Some(Effect::Blocks),
        _ => None,
    }
}

/// Complete and sound, for one case: `decide` gives (policy, path, the object the path's
/// decision is blamed on) for a packet on one interface class; `classes` how many there are.
pub(crate) fn check_case(
    violations: &[Violation],
    probes: &[Packet],
    classes: usize,
    decide: &dyn Fn(usize, &Packet) -> (Verdict, Verdict, String),
    context: &dyn Fn() -> String,
    tally: &mut Tally,
) {
    tally.checked += 1;
    tally.violations += violations.len();
    for p in probes {
        for class in 0..classes {
            let (policy, path, blamed) = decide(class, p);
            let Some(effect) = effect(policy, path) else {
                continue;
            };
            tally.differing += 1;
            assert!(
                violations
                    .iter()
                    .any(|v| v.effect == effect && v.object.starts_with(&blamed)),
                "{p:?} is {policy:?} by the policy but {path:?} on the path ({blamed}), and no violation says so: {violations:#?}\n{}",
                context()
            );
        }
    }
    for v in violations {
        let p = parse_example(&v.example);
        assert!(
            (0..classes).any(|class| {
                let (policy, path, _) = decide(class, &p);
                effect(policy, path) == Some(v.effect) && policy == v.policy
            }),
            "violation {v:#?} names {p:?}, which the path does not decide that way\n{}",
            context()
        );
    }
}

#[test]
fn reported_violations_are_exactly_the_effective_differences() {
    let n = cases();
    let mut rng = perimeter_tests::Rng::new(0xeffe_c71e);
    let (mut aws, mut gcp, mut az) = (Tally::default(), Tally::default(), Tally::default());
    let mut draws = 0;
    while (aws.checked < n || gcp.checked < n || az.checked < n) && draws < 3 * n {
        draws += 1;
        let g = perimeter_tests::generate::gen_policy(&mut rng);
        let Ok(intent) =
            perimeter_core::policy::load_str("p.yaml", &perimeter_tests::generate::yaml(&g))
        else {
            continue;
        };
        let intent: &Intent = &intent;
        if aws.checked < n {
            aws::case(intent, &mut rng, &mut aws);
        }
        if gcp.checked < n {
            gcp::case(intent, &mut rng, &mut gcp);
        }
        if az.checked < n {
            azure::case(intent, &mut rng, &mut az);
        }
    }
    eprintln!("{draws} policies\n  aws {aws:?}\n  gcp {gcp:?}\n  azure {az:?}");
    for (cloud, t) in [("aws", &aws), ("gcp", &gcp), ("azure", &az)] {
        assert!(
            t.checked >= n,
            "{cloud}: only {} cases checked ({t:?})",
            t.checked
        );
        assert!(
            t.violations > 0 && t.differing > 0,
            "{cloud}: the estates never differed: {t:?}"
        );
    }
}
