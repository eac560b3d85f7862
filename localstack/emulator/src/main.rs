//! `local-cloud`: a local emulator of the cloud firewall APIs perimeter manages where no
//! emulator exists — the GCP Compute v1 `firewalls` resource with its global operations and
//! a minimal `networks` resource, and ARM `networkSecurityGroups` / `securityRules` /
//! `applicationSecurityGroups` with their long-running operations — so plans and applies can
//! be tested offline.
//!
//! It binds 127.0.0.1 only, keeps all state in memory, validates requests the way the real
//! APIs do (see `gcp::firewall`, `azure::rule`) and answers with the real error shapes. Tests switch faults
//! on through the admin endpoints under `/_emulator/` (see `admin`).
//!
//! ```text
//! local-cloud [--port N]
//! ```
//! `--port 0` (the default) picks a free port; the first line on stdout is
//! `local-cloud listening on http://127.0.0.1:PORT`.

mod admin;
mod azure;
mod faults;
mod gcp;
mod http;
mod server;

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;

fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("local-cloud: {message}\nusage: local-cloud [--port N]");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", options.port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "local-cloud: cannot listen on 127.0.0.1:{}: {error}",
                options.port
            );
            std::process::exit(1);
        }
    };
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(options.port);
    let base_url = format!("http://127.0.0.1:{port}");
    println!("local-cloud listening on {base_url}");
    let _ = std::io::stdout().flush();
    server::serve(listener, Arc::new(http::Emulator::new(base_url)));
}

struct Options {
    port: u16,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options { port: 0 };
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--port" => {
                    let text = value("--port")?;
                    options.port = text.parse().map_err(|_| format!("bad port {text:?}"))?;
                }
                "-h" | "--help" => {
                    println!("usage: local-cloud [--port N]");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(options)
    }
}
