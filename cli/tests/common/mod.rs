//! Helpers shared by the end-to-end tests against `local-cloud`: start one emulator process
//! per test on a free port, talk HTTP to it, run perimeter.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

pub(crate) mod aws;
pub(crate) mod azure;
pub(crate) mod gcp;

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The emulator binary: beside the perimeter binary (`cargo test --workspace` builds both);
/// built on demand when only this package's tests were asked for.
pub(crate) fn emulator_binary() -> PathBuf {
    let perimeter = PathBuf::from(env!("CARGO_BIN_EXE_perimeter"));
    let exe = perimeter.with_file_name(format!("local-cloud{}", std::env::consts::EXE_SUFFIX));
    if !exe.exists() {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-q",
                "-p",
                "perimeter-local-cloud",
                "--bin",
                "local-cloud",
            ])
            .current_dir(root())
            .status()
            .expect("run cargo build for the emulator");
        assert!(status.success(), "could not build the emulator");
    }
    exe
}

/// One emulator process, killed when dropped.
pub(crate) struct LocalCloud {
    child: Child,
    pub(crate) port: u16,
}

impl LocalCloud {
    pub(crate) fn start() -> LocalCloud {
        let mut child = Command::new(emulator_binary())
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start local-cloud");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        LocalCloud { child, port }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One HTTP request to the emulator (a tiny client: the tests need nothing more).
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, body, &[])
    }

    /// A request with extra headers (`Authorization`, `If-Match`).
    pub(crate) fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("receive");
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// API calls by route since the last reset of the counters.
    pub(crate) fn calls(&self) -> Value {
        self.call("GET", "/_emulator/calls", None).1
    }

    pub(crate) fn reset_calls(&self) {
        self.call("DELETE", "/_emulator/calls", None);
    }

    /// Calls of these routes since the last reset.
    pub(crate) fn count(&self, routes: &[&str]) -> u64 {
        let calls = self.calls();
        routes
            .iter()
            .map(|route| calls["by_route"][route].as_u64().unwrap_or(0))
            .sum()
    }

    /// Runs perimeter with these environment variables.
    pub(crate) fn perimeter(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_perimeter"));
        command
            .args(args)
            .env("PERIMETER_RETRY_BASE_MS", "20")
            .env("NO_COLOR", "1");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().expect("run perimeter")
    }

    /// Starts perimeter with these environment variables and returns at once (for tests that
    /// kill it mid-apply).
    #[allow(dead_code)]
    pub(crate) fn spawn(&self, args: &[&str], env: &[(&str, String)]) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_perimeter"));
        command
            .args(args)
            .env("PERIMETER_RETRY_BASE_MS", "20")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        command.spawn().expect("start perimeter")
    }

    /// Runs perimeter with `fault` armed (one write that hangs), waits until the fault acts,
    /// lets the writes beside it finish for `settle`, and kills perimeter with SIGKILL.
    #[allow(dead_code)]
    pub(crate) fn kill_when_hung(
        &self,
        fault: Value,
        args: &[&str],
        env: &[(&str, String)],
        settle: std::time::Duration,
    ) {
        self.call("POST", "/_emulator/faults", Some(fault.clone()));
        let mut child = self.spawn(args, env);
        let started = std::time::Instant::now();
        while self.call("GET", "/_emulator/faults", None).1["injected"].as_u64() != Some(1) {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "the write of fault {fault} never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(settle);
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        self.call("DELETE", "/_emulator/faults", None);
    }
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub(crate) fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("perimeter-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
