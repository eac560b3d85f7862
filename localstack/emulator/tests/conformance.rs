//! Fidelity checks: the clouds' own Python clients drive the emulator binary and must see what
//! they expect of the real APIs — Google's google-cloud-compute (REST transport, anonymous
//! credentials) through localstack/conformance/gcp_conformance.py, and Microsoft's
//! azure-mgmt-network (a static bearer token over plain HTTP) through
//! localstack/conformance/azure_conformance.py.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Emulator {
    child: Child,
    url: String,
}

impl Emulator {
    fn start() -> Emulator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_local-cloud"))
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start local-cloud");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .trim()
            .strip_prefix("local-cloud listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Emulator { child, url }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn localstack_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("localstack/")
        .to_path_buf()
}

fn conformance_python() -> String {
    let output = Command::new("bash")
        .arg(localstack_dir().join("python-env.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run localstack/python-env.sh");
    assert!(output.status.success(), "localstack/python-env.sh failed");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

#[test]
fn googles_python_client_sees_the_compute_api_it_expects() {
    let python = conformance_python();
    let emulator = Emulator::start();
    let output = Command::new(python)
        .arg(localstack_dir().join("conformance/gcp_conformance.py"))
        .arg(&emulator.url)
        // Belt and braces: anything the library might send elsewhere than the emulator goes
        // to a closed local port instead of the internet.
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1")
        .env("GOOGLE_CLOUD_PROJECT", "conformance-project")
        .output()
        .expect("run the conformance script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "conformance failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(", 0 failed"), "{stdout}");
}

#[test]
fn microsofts_python_sdk_sees_the_arm_api_it_expects() {
    let python = conformance_python();
    let emulator = Emulator::start();
    let output = Command::new(python)
        .arg(localstack_dir().join("conformance/azure_conformance.py"))
        .arg(&emulator.url)
        // Anything the SDK might send elsewhere than the emulator goes to a closed local port.
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .expect("run the conformance script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "conformance failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(", 0 failed"), "{stdout}");
}
