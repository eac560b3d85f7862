//! A small HTTP/1.1 server on std::net: one thread per connection, keep-alive, bodies by
//! Content-Length or chunked, `Expect: 100-continue`. Enough for API clients on loopback,
//! and every byte of it is ours to reason about when a test hangs.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::http::{Emulator, Response};

/// Largest request head and body accepted.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 32 * 1024 * 1024;
/// An idle keep-alive connection is closed after this long.
const IDLE: Duration = Duration::from_secs(120);

pub(crate) fn serve(listener: TcpListener, emulator: Arc<Emulator>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            // Out of file descriptors, most likely: wait rather than spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let emulator = Arc::clone(&emulator);
        std::thread::spawn(move || {
            // A broken connection ends its thread; the server goes on.
            let _ = connection(stream, &emulator);
        });
    }
}

struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    keep_alive: bool,
    content_length: Option<usize>,
    chunked: bool,
    expect_continue: bool,
}

fn connection(stream: TcpStream, emulator: &Emulator) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let head = match read_head(&mut reader)? {
            Some(Ok(head)) => head,
            Some(Err(message)) => {
                let response = Response::json(400, &serde_json::json!({"error": message}));
                write_response(&mut writer, &response, false, true)?;
                return Ok(());
            }
            None => return Ok(()),
        };
        if head.content_length.is_some_and(|length| length > MAX_BODY) {
            // Refused before the client sends it (no 100 Continue), then the connection closes.
            let response = Response::json(413, &serde_json::json!({"error": "body too large"}));
            write_response(&mut writer, &response, false, false)?;
            return Ok(());
        }
        if head.expect_continue {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = if head.chunked {
            read_chunked(&mut reader)?
        } else {
            let mut body = vec![0; head.content_length.unwrap_or(0)];
            reader.read_exact(&mut body)?;
            body
        };
        let response = emulator.serve(&head.method, &head.target, head.headers, body);
        let with_body = head.method != "HEAD";
        write_response(&mut writer, &response, head.keep_alive, with_body)?;
        if !head.keep_alive {
            return Ok(());
        }
    }
}

/// `None` at a clean end of the connection; `Some(Err)` for a malformed request.
fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Result<Head, String>>> {
    let mut lines = Vec::new();
    let mut size = 0;
    loop {
        let mut line = String::new();
        // Bounded: a line without a newline cannot grow past the head limit.
        let n = match reader
            .by_ref()
            .take((MAX_HEAD + 1 - size) as u64)
            .read_line(&mut line)
        {
            Ok(n) => n,
            // Idle keep-alive connection timed out, or the peer reset it: just close.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(None);
        }
        size += n;
        if size > MAX_HEAD {
            return Ok(Some(Err("request head too large".into())));
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            if lines.is_empty() {
                continue; // Tolerate blank lines between requests.
            }
            break;
        }
        lines.push(line);
    }
    let mut parts = lines[0].split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(Some(Err(format!("bad request line {:?}", lines[0]))));
    };
    let mut head = Head {
        method: method.to_ascii_uppercase(),
        target: target.to_string(),
        keep_alive: version == "HTTP/1.1",
        headers: Vec::new(),
        content_length: None,
        chunked: false,
        expect_continue: false,
    };
    for line in &lines[1..] {
        let Some((name, value)) = line.split_once(':') else {
            return Ok(Some(Err(format!("bad header line {line:?}"))));
        };
        let value = value.trim();
        head.headers
            .push((name.trim().to_ascii_lowercase(), value.to_string()));
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => match value.parse() {
                Ok(n) => head.content_length = Some(n),
                Err(_) => return Ok(Some(Err(format!("bad Content-Length {value:?}")))),
            },
            "transfer-encoding" => head.chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => {
                let value = value.to_ascii_lowercase();
                if value.contains("close") {
                    head.keep_alive = false;
                } else if value.contains("keep-alive") {
                    head.keep_alive = true;
                }
            }
            "expect" => head.expect_continue = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    Ok(Some(Ok(head)))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.by_ref().take(1024).read_line(&mut line)?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                let mut trailer = String::new();
                if reader
                    .by_ref()
                    .take(MAX_HEAD as u64)
                    .read_line(&mut trailer)?
                    == 0
                    || trailer.trim().is_empty()
                {
                    return Ok(body);
                }
            }
        }
        if size > MAX_BODY - body.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// Writes a response. HEAD answers and 204/304 carry no body (and 204/304 no Content-Length),
/// so a keep-alive client never reads a body it did not expect as the next response.
fn write_response(
    writer: &mut TcpStream,
    response: &Response,
    keep_alive: bool,
    with_body: bool,
) -> io::Result<()> {
    let bodiless_status = matches!(response.status, 204 | 304);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !bodiless_status {
        head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut bytes = head.into_bytes();
    if with_body && !bodiless_status {
        bytes.extend_from_slice(&response.body);
    }
    writer.write_all(&bytes)?;
    writer.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
