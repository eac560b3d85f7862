//! `local-cloud`: a local emulator of the cloud firewall APIs perimeter manages where no
//! emulator exists — the GCP Compute v1 `firewalls` resource with its global operations and
//! a minimal `networks` resource — so plans and applies can be tested offline.
//!
//! It binds 127.0.0.1 only, keeps all state in memory, validates requests the way the real
//! API does (see `gcp::firewall`) and answers with the real error shapes. Tests switch faults
//! on through the admin endpoints under `/_emulator/` (see `admin`).
//!
//! ```text
//! local-cloud [--port N] [--threads N]
//! ```
//! `--port 0` (the default) picks a free port; the first line on stdout is
//! `local-cloud listening on http://127.0.0.1:PORT`.

mod admin;
mod faults;
mod gcp;
mod http;

use std::io::Write;
use std::sync::Arc;

fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("local-cloud: {message}\nusage: local-cloud [--port N] [--threads N]");
            std::process::exit(2);
        }
    };
    let server = match tiny_http::Server::http(("127.0.0.1", options.port)) {
        Ok(server) => Arc::new(server),
        Err(error) => {
            eprintln!(
                "local-cloud: cannot listen on 127.0.0.1:{}: {error}",
                options.port
            );
            std::process::exit(1);
        }
    };
    let port = server
        .server_addr()
        .to_ip()
        .map(|addr| addr.port())
        .unwrap_or(options.port);
    let base_url = format!("http://127.0.0.1:{port}");
    println!("local-cloud listening on {base_url}");
    let _ = std::io::stdout().flush();

    let emulator = Arc::new(http::Emulator::new(base_url));
    let workers: Vec<_> = (0..options.threads)
        .map(|_| {
            let server = Arc::clone(&server);
            let emulator = Arc::clone(&emulator);
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    emulator.serve(request);
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}

struct Options {
    port: u16,
    threads: usize,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        // Enough threads that injected latency on one request does not stall the others.
        let mut options = Options {
            port: 0,
            threads: 16,
        };
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--port" => {
                    let text = value("--port")?;
                    options.port = text.parse().map_err(|_| format!("bad port {text:?}"))?;
                }
                "--threads" => {
                    let text = value("--threads")?;
                    options.threads = text
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("bad thread count {text:?}"))?;
                }
                "-h" | "--help" => {
                    println!("usage: local-cloud [--port N] [--threads N]");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(options)
    }
}
