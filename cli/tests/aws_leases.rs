//! End to end against the EC2 emulator (moto): the lease on the owned security group
//! (providers/aws/src/lease.rs). A held lease stops apply before any write, an expired one is
//! taken over, and of two applies at once one writes and the other stops.

mod common;

use aws_sdk_ec2::types::Tag;
use common::aws::{client, owned_group, path, perimeter, rule_count, runtime, world};
use common::text;

const LEASE: &str = "perimeter:lease";

#[test]
fn a_held_lease_stops_apply_and_an_expired_one_is_taken_over() {
    let rt = runtime();
    let w = rt.block_on(world("ap-south-1"));
    let p = path(&w.policy);
    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c = rt.block_on(client(&w.region));
    let group = rt.block_on(owned_group(&c, &w.vpc));
    // The group carries no lease after apply.
    let tags = rt.block_on(async {
        c.describe_tags()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("resource-id")
                    .values(&group)
                    .build(),
            )
            .send()
            .await
            .unwrap()
    });
    assert!(
        !tags.tags().iter().any(|t| t.key() == Some(LEASE)),
        "{tags:?}"
    );

    // The policy changes while another apply holds the lease.
    let edited = std::fs::read_to_string(&w.policy)
        .unwrap()
        .replace("monitoring: [10.0.200.0/24]", "monitoring: [10.0.201.0/24]");
    assert_ne!(
        edited,
        std::fs::read_to_string(&w.policy).unwrap(),
        "the edit applies"
    );
    std::fs::write(&w.policy, edited).unwrap();
    let tag = |value: &str| Tag::builder().key(LEASE).value(value).build();
    rt.block_on(async {
        c.create_tags()
            .resources(&group)
            .tags(tag("owner=ci job 41;expires=4102444800;plan=0123456789ab"))
            .send()
            .await
            .unwrap()
    });
    let rules = rt.block_on(rule_count(&c, &group));
    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is being applied: lease held by ci job 41 until 2100-01-01T00:00:00Z"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("apply stopped after 0 write(s)"),
        "{}",
        text(&o)
    );
    assert_eq!(
        rt.block_on(rule_count(&c, &group)),
        rules,
        "nothing was written"
    );

    // Its holder died long ago: the lease expired and is taken over, then released.
    rt.block_on(async {
        c.create_tags()
            .resources(&group)
            .tags(tag("owner=ci job 41;expires=1000;plan=0123456789ab"))
            .send()
            .await
            .unwrap()
    });
    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let again = perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
}

#[test]
fn two_applies_at_once_one_writes_and_the_other_stops() {
    let rt = runtime();
    let w = rt.block_on(world("eu-north-1"));
    let p = path(&w.policy);
    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let edited = std::fs::read_to_string(&w.policy)
        .unwrap()
        .replace("monitoring: [10.0.200.0/24]", "monitoring: [10.0.201.0/24]");
    std::fs::write(&w.policy, edited).unwrap();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| perimeter(&["apply", p, "--auto-approve"]));
        let b = s.spawn(|| perimeter(&["apply", p, "--auto-approve"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    let both = format!("{}\n---\n{}", text(&a), text(&b));
    assert_eq!(codes, [Some(0), Some(1)], "{both}");
    assert!(
        both.contains("is being applied: lease held by")
            || both.contains("changed after the plan was checked"),
        "{both}"
    );
    let again = perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
}
