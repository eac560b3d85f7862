//! What perimeter prints, pinned: plan (text, markdown, JSON) and drift (text, JSON,
//! Prometheus) for one policy on all three local clouds, before apply and after out-of-band
//! changes of every kind. The states are made the same way on every run (moto for EC2,
//! local-cloud for GCP and Azure); what differs between runs — ids moto draws at random,
//! fingerprints over them, timestamps, the scratch path — is replaced by stable placeholders,
//! numbered by first appearance so that the structure of the output stays pinned.
//!
//! After an intended output change: `INSTA_UPDATE=always cargo test -p perimeter-cli --test
//! snapshots`, then read the diff in git.

mod common;

use std::collections::HashMap;
use std::process::Output;

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange};
use common::aws::{client, forget_earlier_runs, launch, runtime, vpc_with_subnets};
use common::{LocalCloud, code, root, scratch, text};
use serde_json::json;

const REGION: &str = "eu-west-3";
const SUB: &str = "11111111-2222-3333-4444-555555555555";
const TOKEN: &str = "snapshot-token";

struct Clouds {
    local: LocalCloud,
    vpc: String,
    dir: std::path::PathBuf,
}

impl Clouds {
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = common::aws::env();
        env.extend([
            ("PERIMETER_GCP_ENDPOINT", self.local.url()),
            ("PERIMETER_GCP_CREDENTIALS", "anonymous".into()),
            ("PERIMETER_AZURE_ENDPOINT", self.local.url()),
            ("PERIMETER_AZURE_TOKEN", TOKEN.into()),
        ]);
        env
    }

    fn perimeter(&self, args: &[&str]) -> Output {
        // Run from the scratch directory so that the policy path in the output is stable.
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_perimeter"));
        command
            .args(args)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env("PERIMETER_RETRY_BASE_MS", "20")
            .env_remove("PERIMETER_PLAN_KEY")
            .envs(self.env());
        command.output().expect("run perimeter")
    }

    fn azure(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> u16 {
        let auth = format!("Bearer {TOKEN}");
        let path = format!(
            "/subscriptions/{SUB}/resourceGroups/rg-prod/providers/Microsoft.Network/{path}?api-version=2024-05-01"
        );
        self.local
            .call_with(method, &path, body, &[("Authorization", &auth)])
            .0
    }
}

/// In moto: a VPC, a node subnet and two workers tagged as nodes, IMDSv1 allowed.
async fn aws_vpc_with_two_workers() -> (String, String) {
    let c = client(REGION).await;
    forget_earlier_runs(&c).await;
    let (vpc, mut subnets) = vpc_with_subnets(&c, &["10.0.16.0/20"]).await;
    let subnet = subnets.remove(0);
    launch(&c, &subnet, 2, Some(("kubernetes.io/role", "node"))).await;
    (vpc, subnet)
}

/// A VPC with a node subnet and two workers in moto; a GCP network holding a rule GKE made;
/// the nodes' application security group in Azure; policies/multi-cloud.yaml aimed at them.
fn clouds() -> Clouds {
    let (vpc, subnet) = runtime().block_on(aws_vpc_with_two_workers());
    let local = LocalCloud::start();
    let (status, _) = local.call(
        "POST",
        "/compute/v1/projects/acme-prod/global/networks",
        Some(json!({"name": "prod", "autoCreateSubnetworks": false})),
    );
    assert_eq!(status, 200);
    let (status, _) = local.call(
        "POST",
        "/compute/v1/projects/acme-prod/global/firewalls",
        Some(
            json!({"name": "gke-prod-1a2b3c-hc", "network": "global/networks/prod",
            "sourceRanges": ["35.191.0.0/16", "130.211.0.0/22"], "targetTags": ["prod-workers"],
            "allowed": [{"IPProtocol": "tcp", "ports": ["10256"]}]}),
        ),
    );
    assert_eq!(status, 200);
    let dir = scratch("snapshots");
    let clouds = Clouds { local, vpc, dir };
    let status = clouds.azure(
        "PUT",
        "applicationSecurityGroups/prod-workers-nodes",
        Some(json!({"location": "westeurope"})),
    );
    assert!(status == 200 || status == 201, "{status}");
    let status = clouds.azure(
        "PUT",
        "virtualNetworks/prod-vnet",
        Some(json!({"location": "westeurope", "properties": {
            "addressSpace": {"addressPrefixes": ["10.20.0.0/16"]},
            "subnets": [{"name": "workers", "properties": {"addressPrefix": "10.20.0.0/20"}}]}})),
    );
    assert!(status == 200 || status == 201, "{status}");
    let policy = std::fs::read_to_string(root().join("policies/multi-cloud.yaml"))
        .unwrap()
        .replace("us-east-1", REGION)
        .replace("vpc-0123456789abcdef0", &clouds.vpc)
        .replace("subnet-0123456789abcdef0", &subnet)
        .replace(
            "    security_group: prod-workers\n",
            "    security_group: prod-workers\n    attach: true\n",
        );
    std::fs::write(clouds.dir.join("multi-cloud.yaml"), policy).unwrap();
    clouds
}

/// Replaces what differs between runs with placeholders numbered by first appearance:
/// AWS ids (`vpc-<1>`, `sg-<2>`, …), Azure etags (UUIDs), 64-digit hex digests, the drift
/// timestamp.
fn stable(text: &str) -> String {
    let mut numbers: HashMap<String, usize> = HashMap::new();
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    let is_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    while i < bytes.len() {
        let at_word_start = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if at_word_start {
            // An AWS id: a known prefix, a dash, 8 to 17 hex digits.
            let prefix = [
                "vpc-",
                "subnet-",
                "sgr-",
                "sg-",
                "acl-",
                "aclassoc-",
                "i-",
                "ami-",
                "eni-",
                "rtb-",
                "igw-",
            ]
            .into_iter()
            .find(|p| text[i..].starts_with(p));
            if let Some(p) = prefix {
                let start = i + p.len();
                let end = start + bytes[start..].iter().take_while(|&&b| is_hex(b)).count();
                let next_ok = end == bytes.len() || !bytes[end].is_ascii_alphanumeric();
                if (8..=17).contains(&(end - start)) && next_ok {
                    let id = &text[i..end];
                    let n = numbers.len() + 1;
                    let n = *numbers.entry(id.to_string()).or_insert(n);
                    out.push_str(&format!("{p}<{n}>"));
                    i = end;
                    continue;
                }
            }
            // A UUID other than the subscription's: an Azure etag.
            let uuid = text.get(i..i + 36).filter(|u| {
                *u != SUB
                    && u.bytes().enumerate().all(|(k, b)| {
                        if [8, 13, 18, 23].contains(&k) {
                            b == b'-'
                        } else {
                            is_hex(b)
                        }
                    })
            });
            if let Some(u) = uuid {
                let n = numbers.len() + 1;
                let n = *numbers.entry(u.to_string()).or_insert(n);
                out.push_str(&format!("<uuid-{n}>"));
                i += 36;
                continue;
            }
            let run = bytes[i..].iter().take_while(|&&b| is_hex(b)).count();
            if run == 64 {
                out.push_str("<sha256>");
                i += 64;
                continue;
            }
        }
        let c = text[i..].chars().next().expect("a char");
        out.push(c);
        i += c.len_utf8();
    }
    out.lines()
        .map(|l| {
            if l.starts_with("perimeter_drift_last_run_timestamp_seconds") {
                let (name, _) = l.rsplit_once(' ').unwrap_or((l, ""));
                format!("{name} <timestamp>")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn stdout(o: &Output) -> String {
    stable(&String::from_utf8_lossy(&o.stdout))
}

fn snapshot_plans(clouds: &Clouds, stage: &str) {
    for format in ["text", "markdown", "json"] {
        let o = clouds.perimeter(&["plan", "multi-cloud.yaml", "--format", format]);
        assert_eq!(code(&o), 0, "{}", text(&o));
        insta::assert_snapshot!(format!("{stage}-plan-{format}"), stdout(&o));
    }
}

fn snapshot_drift(clouds: &Clouds, stage: &str, exit: i32) {
    for format in ["text", "json", "prometheus"] {
        let o = clouds.perimeter(&["drift", "multi-cloud.yaml", "--format", format]);
        assert_eq!(code(&o), exit, "{}", text(&o));
        insta::assert_snapshot!(format!("{stage}-drift-{format}"), stdout(&o));
    }
}

#[test]
fn plan_and_drift_output_on_three_clouds() {
    let clouds = clouds();
    snapshot_plans(&clouds, "new");
    snapshot_drift(&clouds, "new", 2);

    let o = clouds.perimeter(&["apply", "multi-cloud.yaml", "--auto-approve"]);
    assert_eq!(code(&o), 0, "{}", text(&o));

    // Out of band, on every cloud: a rule added, a rule changed, a rule deleted.
    let rt = runtime();
    rt.block_on(async {
        let c = client(REGION).await;
        let groups = c
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(&clouds.vpc).build())
            .filters(
                Filter::builder()
                    .name("group-name")
                    .values("prod-workers")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let gid = groups.security_groups()[0].group_id().unwrap().to_string();
        c.authorize_security_group_ingress()
            .group_id(&gid)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(8080)
                    .to_port(8080)
                    .ip_ranges(IpRange::builder().cidr_ip("10.9.0.0/16").build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        c.revoke_security_group_ingress()
            .group_id(&gid)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .ip_ranges(IpRange::builder().cidr_ip("10.50.1.10/32").build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    let firewall = |name: &str| format!("/compute/v1/projects/acme-prod/global/firewalls/{name}");
    let (status, _) = clouds.local.call(
        "PATCH",
        &firewall("prod-workers-i-node-exporter"),
        Some(json!({"sourceRanges": ["0.0.0.0/0"]})),
    );
    assert_eq!(status, 200);
    let (status, _) = clouds
        .local
        .call("DELETE", &firewall("prod-workers-i-kubelet"), None);
    assert_eq!(status, 200);
    let nsg_rule = |name: &str| format!("networkSecurityGroups/prod-workers/securityRules/{name}");
    let status = clouds.azure(
        "PUT",
        &nsg_rule("debug-rdp"),
        Some(
            json!({"properties": {"protocol": "Tcp", "access": "Allow", "direction": "Inbound",
            "priority": 300, "sourceAddressPrefix": "*", "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRange": "3389"}}),
        ),
    );
    assert!(status == 200 || status == 201, "{status}");
    snapshot_plans(&clouds, "drifted");
    snapshot_drift(&clouds, "drifted", 2);
    let _ = std::fs::remove_dir_all(&clouds.dir);
}
