//! The `healthcheck` subcommand's client: one plain-HTTP GET of a health endpoint.
//!
//! Container images carry no shell and no curl, so the binaries probe themselves. This is
//! deliberately tiny and blocking — std's `TcpStream`, HTTP/1.0, one request — so that it
//! needs no runtime, no TLS stack and no settings beyond the URL.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why a probe did not find the server healthy.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL is not `http://host:port/path` (the caller's mistake).
    #[error("{0}")]
    Url(String),
    /// The server could not be reached or did not answer in time.
    #[error("{url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// It answered, but not with 2xx.
    #[error("{url} answered {status}: {body}")]
    Unhealthy {
        url: String,
        status: u16,
        body: String,
    },
}

/// The URL a server listening on `listen` is probed at: an unspecified address
/// (`0.0.0.0`, `::`) is reached through loopback.
pub fn local_url(listen: SocketAddr, path: &str) -> String {
    let ip = if listen.ip().is_unspecified() {
        match listen {
            SocketAddr::V4(_) => "127.0.0.1".to_owned(),
            SocketAddr::V6(_) => "[::1]".to_owned(),
        }
    } else {
        match listen {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        }
    };
    format!("http://{ip}:{}{path}", listen.port())
}

/// GETs `url` and returns the body when the status is 2xx.
pub fn probe(url: &str, timeout: Duration) -> Result<String, ProbeError> {
    let (authority, path) = split(url)?;
    let unreachable = |source| ProbeError::Unreachable {
        url: url.to_owned(),
        source,
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(unreachable)?
        .next()
        .ok_or_else(|| ProbeError::Url(format!("{url}: the host resolves to no address")))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(unreachable)?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: tollgate-healthcheck\r\n\r\n"
    )
    .map_err(unreachable)?;
    let mut answer = Vec::new();
    // A health answer is short; a server streaming forever is cut off at 64 KiB.
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(unreachable)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| ProbeError::Unreachable {
            url: url.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer"),
        })?;
    let body = body.trim().to_owned();
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(ProbeError::Unhealthy {
            url: url.to_owned(),
            status,
            body,
        })
    }
}

fn split(url: &str) -> Result<(&str, &str), ProbeError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        ProbeError::Url(format!(
            "{url}: only http:// URLs can be probed (health endpoints are not behind TLS)"
        ))
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || !authority.contains(':') {
        return Err(ProbeError::Url(format!(
            "{url}: name the port (http://host:port/path)"
        )));
    }
    Ok((authority, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                // The whole request first: answering mid-request makes the client's
                // write fail with a broken pipe (seen in CI on a loaded machine).
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(answer.as_bytes());
                let _ = conn.shutdown(std::net::Shutdown::Write);
                // Keep the socket until the client is done reading.
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            }
        });
        format!("http://{addr}/readyz")
    }

    #[test]
    fn two_hundred_is_healthy() {
        let url = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nready");
        assert_eq!(
            probe(&url, Duration::from_secs(5)).expect("healthy"),
            "ready"
        );
    }

    #[test]
    fn five_hundred_three_is_not() {
        let url = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready: shutting down");
        match probe(&url, Duration::from_secs(5)) {
            Err(ProbeError::Unhealthy {
                status: 503, body, ..
            }) => {
                assert_eq!(body, "not ready: shutting down");
            }
            other => panic!("expected 503, got {other:?}"),
        }
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let url = format!("http://{addr}/healthz");
        assert!(matches!(
            probe(&url, Duration::from_secs(5)),
            Err(ProbeError::Unreachable { .. })
        ));
    }

    #[test]
    fn only_plain_http_with_a_port() {
        assert!(matches!(
            probe("https://a:1/x", Duration::from_secs(1)),
            Err(ProbeError::Url(_))
        ));
        assert!(matches!(
            probe("http://a/x", Duration::from_secs(1)),
            Err(ProbeError::Url(_))
        ));
    }

    #[test]
    fn unspecified_listen_addresses_are_probed_on_loopback() {
        assert_eq!(
            local_url("0.0.0.0:8080".parse().expect("addr"), "/readyz"),
            "http://127.0.0.1:8080/readyz"
        );
        assert_eq!(
            local_url("[::]:8400".parse().expect("addr"), "/healthz"),
            "http://[::1]:8400/healthz"
        );
        assert_eq!(
            local_url("10.0.0.5:8080".parse().expect("addr"), "/readyz"),
            "http://10.0.0.5:8080/readyz"
        );
    }
}
