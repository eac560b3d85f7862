//! Unit tests of the Azure compiler.
use super::*;
use perimeter_core::policy::load_str;

fn compile_str(body: &str) -> Result<AzureCompiled, Diagnostics> {
    let text = format!("apiVersion: perimeter/v1\nkind: NodePerimeter\nname: t\n{body}");
    let intent = load_str("t.yaml", &text).expect("valid policy");
    compile(&intent, &AzureTarget::placeholder("t"))
}

fn summary(c: &AzureCompiled) -> Vec<String> {
    c.rules
        .iter()
        .map(|r| {
            let p = &r.properties;
            format!(
                "{} {} {} {} {}",
                p.direction, p.priority, r.name, p.protocol, p.access
            )
        })
        .collect()
}

#[test]
fn rules_split_per_protocol_and_peer_kind_in_priority_blocks() {
    let c = compile_str(
        "private: true\nmetadata: allow\ningress:\n  - {name: dns, from: [self, 10.0.0.0/8, \"fd00::/8\"], services: [dns]}\n  - {name: ssh, from: 10.1.0.0/16, services: [ssh]}\n",
    )
    .unwrap();
    assert_eq!(
        summary(&c),
        [
            "Inbound 110 t-in-dns-tcp Tcp Allow",
            "Inbound 111 t-in-dns-udp Udp Allow",
            "Inbound 112 t-in-dns-tcp-v6 Tcp Allow",
            "Inbound 113 t-in-dns-udp-v6 Udp Allow",
            "Inbound 114 t-in-dns-tcp-self Tcp Allow",
            "Inbound 115 t-in-dns-udp-self Udp Allow",
            "Inbound 120 t-in-ssh-tcp Tcp Allow",
            "Inbound 4096 t-in-default-deny * Deny",
            "Outbound 4096 t-out-default-deny * Deny",
        ]
    );
}

#[test]
fn ip_in_ip_widens_to_any_with_a_note() {
    let c = compile_str(
        "metadata: allow\ningress:\n  - {name: cni, from: self, services: [cni:calico]}\n",
    )
    .unwrap();
    assert!(
        c.rules
            .iter()
            .any(|r| r.name == "t-in-cni-any-self" && r.properties.protocol == "*")
    );
    let note = c
        .notes
        .iter()
        .find(|n| n.code == NoteCode::Widened)
        .expect("widened note");
    assert!(note.message.contains("IP protocol 4"), "{}", note.message);
}

#[test]
fn too_many_rules_exhaust_the_priorities() {
    let rules: Vec<String> = (0..400)
        .map(|i| {
            format!(
                "  - {{name: r{i}, from: 10.0.0.0/8, services: [tcp/{}]}}\n",
                1000 + i
            )
        })
        .collect();
    let err = compile_str(&format!("ingress:\n{}", rules.concat())).unwrap_err();
    assert!(err.0.iter().all(|d| d.code == "azure::priority-exhausted"));
    assert!(err.0[0].message.contains("r399"), "{}", err.0[0].message);
}

#[test]
fn a_name_over_80_characters_is_located_at_its_rule() {
    let text = format!(
        "apiVersion: perimeter/v1\nkind: NodePerimeter\nname: {}\ningress:\n  - {{name: ok, from: 10.0.0.0/8, services: [ssh]}}\n  - {{name: {}, from: 10.0.0.0/8, services: [ssh]}}\n",
        "p".repeat(40),
        "r".repeat(40)
    );
    let intent = perimeter_core::policy::load_str("t.yaml", &text).unwrap();
    let err = compile(&intent, &AzureTarget::placeholder("t")).unwrap_err();
    let d = err
        .0
        .iter()
        .find(|d| d.code == "azure::name-too-long")
        .unwrap();
    assert_eq!(d.span, Some(intent.ingress[1].span));
}
