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
