//! The EC2 emulator (moto server) for the end-to-end tests: started once per test binary by
//! `localstack/moto.sh start` and left running for the others; `.ci/run` stops it. Each test
//! works in a region of its own, which moto keeps as a separate backend.

use std::process::Command;
use std::sync::OnceLock;

use aws_sdk_ec2::Client;

/// Starts moto once per test binary and returns its endpoint.
pub(crate) fn endpoint() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let out = Command::new("bash")
            .arg(super::root().join("localstack/moto.sh"))
            .arg("start")
            .output()
            .expect("run localstack/moto.sh");
        assert!(
            out.status.success(),
            "could not start the EC2 emulator (localstack/moto.sh start needs python3 with venv):\n{}",
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
