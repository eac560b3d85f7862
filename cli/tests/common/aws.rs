//! The EC2 emulator for the end-to-end tests: moto server (`localstack/moto.sh`), or
//! LocalStack itself (`localstack/localstack.sh`) with `PERIMETER_AWS_EMULATOR=localstack`.
//! Started once per test binary and left running for the others; `.ci/run` stops it. Each
//! test works in a region of its own, which both keep as a separate backend.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange};

/// The emulator the suite runs on: `moto` (default) or `localstack`.
pub(crate) fn emulator() -> &'static str {
    match std::env::var("PERIMETER_AWS_EMULATOR").as_deref() {
        Ok("localstack") => "localstack",
        Ok("moto") | Err(_) => "moto",
        Ok(other) => panic!("PERIMETER_AWS_EMULATOR={other}: use moto or localstack"),
    }
}

/// Starts the emulator once per test binary and returns its endpoint.
pub(crate) fn endpoint() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let script = format!("localstack/{}.sh", emulator());
        let out = Command::new("bash")
            .arg(super::root().join(&script))
            .arg("start")
            .output()
            .unwrap_or_else(|e| panic!("run {script}: {e}"));
        assert!(
            out.status.success(),
            "could not start the EC2 emulator ({script} start needs python3 with venv):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// The environment that points perimeter at the emulator.
pub(crate) fn env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint().to_string()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub(crate) async fn client(region: &str) -> Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new(region.to_string()))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build();
    Client::from_conf(conf)
}

/// Deletes the groups perimeter owns in this region, left by an earlier run of a test in the
/// same moto process: otherwise they are rightly reported as orphaned, and a test's output
/// would depend on whether it ran before.
#[allow(dead_code)]
pub(crate) async fn forget_earlier_runs(c: &Client) {
    let groups = c
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag-key")
                .values("perimeter:policy")
                .build(),
        )
        .send()
        .await
        .expect("describe groups");
    for g in groups.security_groups() {
        if let Some(id) = g.group_id() {
            let _ = c.delete_security_group().group_id(id).send().await;
        }
    }
}

/// Launches `count` instances into `subnet`, tagged `key=value` when a tag is given, with
/// IMDSv1 allowed and hop limit 2 (as AMIs often are); returns their ids.
pub(crate) async fn launch(
    c: &Client,
    subnet: &str,
    count: i32,
    tag: Option<(&str, &str)>,
) -> Vec<String> {
    use aws_sdk_ec2::types::{
        HttpTokensState, InstanceMetadataOptionsRequest, ResourceType, Tag, TagSpecification,
    };
    let images = c.describe_images().owners("amazon").send().await.unwrap();
    let mut run = c
        .run_instances()
        .image_id(images.images()[0].image_id().unwrap())
        .min_count(count)
        .max_count(count)
        .subnet_id(subnet)
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Optional)
                .http_put_response_hop_limit(2)
                .build(),
        );
    if let Some((key, value)) = tag {
        run = run.tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key(key).value(value).build())
                .build(),
        );
    }
    let out = run.send().await.unwrap();
    out.instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect()
}

/// The VPC's default security group, emptied as CIS AWS Foundations 5.4 asks: instances
/// launched without groups carry it, and its stock rules (all egress, all from itself) would
/// make every private perimeter a violation.
pub(crate) async fn empty_default_group(c: &Client, vpc: &str) -> String {
    let g = c
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .filters(
            Filter::builder()
                .name("group-name")
                .values("default")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let id = g.security_groups()[0].group_id().unwrap().to_string();
    let rules = c
        .describe_security_group_rules()
        .filters(Filter::builder().name("group-id").values(&id).build())
        .send()
        .await
        .unwrap();
    for r in rules.security_group_rules() {
        let rid = r.security_group_rule_id().unwrap().to_string();
        if r.is_egress() == Some(true) {
            c.revoke_security_group_egress()
                .group_id(&id)
                .security_group_rule_ids(rid)
                .send()
                .await
                .unwrap();
        } else {
            c.revoke_security_group_ingress()
                .group_id(&id)
                .security_group_rule_ids(rid)
                .send()
                .await
                .unwrap();
        }
    }
    id
}

/// A VPC of 10.0.0.0/16 with one subnet per CIDR, its default group emptied.
pub(crate) async fn vpc_with_subnets(c: &Client, cidrs: &[&str]) -> (String, Vec<String>) {
    let vpc = c
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    let mut subnets = Vec::new();
    for cidr in cidrs {
        let s = c
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(*cidr)
            .send()
            .await
            .unwrap();
        subnets.push(s.subnet.unwrap().subnet_id.unwrap());
    }
    empty_default_group(c, &vpc).await;
    (vpc, subnets)
}

/// perimeter pointed at the emulator.
pub(crate) fn perimeter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_perimeter"))
        .args(args)
        .envs(env())
        .env("NO_COLOR", "1")
        .output()
        .expect("run perimeter")
}

/// A VPC with two node subnets and two worker instances, IMDSv1 allowed (as AMIs often are).
pub(crate) struct World {
    pub(crate) region: String,
    pub(crate) vpc: String,
    pub(crate) subnets: [String; 2],
    pub(crate) instances: Vec<String>,
    pub(crate) policy: PathBuf,
    _dir: TempDir,
}

pub(crate) struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) async fn world(region: &str) -> World {
    let c = client(region).await;
    let (vpc, subnets) = vpc_with_subnets(&c, &["10.0.16.0/20", "10.0.32.0/20"]).await;
    let instances = launch(&c, &subnets[0], 2, Some(("eks:nodegroup-name", "workers"))).await;
    let dir = std::env::temp_dir().join(format!("perimeter-e2e-{region}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = std::fs::read_to_string(super::root().join("policies/eks-workers.yaml"))
        .unwrap()
        .replace("us-east-1", region)
        .replace("vpc-0a1b2c3d4e5f60718", &vpc)
        .replace("subnet-0aaa1111bbbb2222c", &subnets[0])
        .replace("subnet-0ddd3333eeee4444f", &subnets[1]);
    let path = dir.join("eks-workers.yaml");
    std::fs::write(&path, policy).unwrap();
    World {
        region: region.into(),
        vpc,
        subnets: [subnets[0].clone(), subnets[1].clone()],
        instances,
        policy: path,
        _dir: TempDir(dir),
    }
}

/// A group in the VPC that perimeter does not own.
pub(crate) async fn team_owned_group(c: &Client, vpc: &str) -> String {
    c.create_security_group()
        .group_name("team-owned")
        .description("not perimeter's")
        .vpc_id(vpc)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap()
}

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An out-of-band rule, as someone with console access would add it.
pub(crate) async fn authorize(c: &Client, group: &str, protocol: &str, port: i32, cidr: &str) {
    c.authorize_security_group_ingress()
        .group_id(group)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol(protocol)
                .from_port(port)
                .to_port(port)
                .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

pub(crate) async fn rule_count(c: &Client, group: &str) -> usize {
    c.describe_security_group_rules()
        .filters(Filter::builder().name("group-id").values(group).build())
        .send()
        .await
        .unwrap()
        .security_group_rules()
        .len()
}

pub(crate) async fn owned_group(c: &Client, vpc: &str) -> String {
    let o = c
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .filters(
            Filter::builder()
                .name("group-name")
                .values("eks-workers")
                .build(),
        )
        .send()
        .await
        .unwrap();
    o.security_groups()[0].group_id().unwrap().to_string()
}
