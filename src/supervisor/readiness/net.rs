//! The network probes: a TCP port accepting, an HTTP GET answering 2xx or 3xx.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::supervisor::environment::Environment;

/// The most of an HTTP answer read to find its status line.
const STATUS_LINE_MAX: usize = 8 << 10;

/// The host a network probe dials: the probe's own, else the environment's address for its
/// processes (a container's), else this host's loopback.
pub async fn host(probe: Option<&str>, env: &dyn Environment) -> Result<String, String> {
    match probe {
        Some(h) => Ok(h.to_string()),
        None => Ok(env
            .address()
            .await?
            .map_or_else(|| "localhost".to_string(), |ip| ip.to_string())),
    }
}

/// The addresses of `host`. "localhost" is both loopbacks whatever the resolver says: a dev
/// server bound to `::1` alone (Node's default) is as ready as one bound to 127.0.0.1.
async fn addresses(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if host == "localhost" {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("resolve {host}: {e}"))?
        .collect();
    if found.is_empty() {
        return Err(format!("resolve {host}: no addresses"));
    }
    Ok(found)
}

/// A connection to the first of `host`'s addresses that accepts.
async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let mut last = None;
    for addr in addresses(host, port).await? {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(format!(
        "connect to {}: {}",
        host_port(host, port),
        last.map_or_else(|| "no address".to_string(), |e| e.to_string())
    ))
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The port accepts a connection.
pub async fn tcp(host: &str, port: u16) -> Result<(), String> {
    connect(host, port).await.map(drop)
}

/// A GET of `path` answers with a 2xx or 3xx status.
pub async fn http(host: &str, port: u16, path: &str) -> Result<(), String> {
    let target = format!("http://{}{path}", host_port(host, port));
    let mut conn = connect(host, port).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tend-readiness\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        host_port(host, port)
    );
    conn.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("GET {target}: {e}"))?;
    let mut answer = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let line = loop {
        if let Some(end) = answer.windows(2).position(|w| w == b"\r\n") {
            break String::from_utf8_lossy(&answer[..end]).into_owned();
        }
        if answer.len() >= STATUS_LINE_MAX {
            return Err(format!("GET {target}: no HTTP status line in the answer"));
        }
        let n = conn
            .read(&mut buf)
            .await
            .map_err(|e| format!("GET {target}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "GET {target}: the connection closed before an HTTP status line"
            ));
        }
        answer.extend_from_slice(&buf[..n]);
    };
    match status(&line) {
        Some(code) if (200..400).contains(&code) => Ok(()),
        Some(_) => Err(format!("GET {target}: {}", line.trim())),
        None => Err(format!(
            "GET {target}: not an HTTP answer: {}",
            crate::error::clip(line.trim())
        )),
    }
}

/// The code of a status line, "HTTP/1.1 200 OK".
fn status(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read() {
        assert_eq!(status("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status("HTTP/1.0 302 Found"), Some(302));
        assert_eq!(status("HTTP/1.1 503"), Some(503));
        assert_eq!(status("SSH-2.0-OpenSSH"), None);
        assert_eq!(status("HTTP/1.1 20 OK"), None);
    }

    #[tokio::test]
    async fn http_answers_are_judged_by_their_status() {
        let serve = |answer: &'static str| async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
            });
            port
        };
        let ok = serve("HTTP/1.1 204 No Content\r\n\r\n").await;
        assert_eq!(http("127.0.0.1", ok, "/").await, Ok(()));
        let down = serve("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let err = http("localhost", down, "/health").await.unwrap_err();
        assert!(err.contains("503 Service Unavailable"), "{err}");
        assert!(err.contains("/health"), "{err}");
    }

    #[tokio::test]
    async fn a_closed_port_says_connection_refused() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = tcp("127.0.0.1", port).await.unwrap_err();
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    }
}
