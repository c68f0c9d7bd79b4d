//! The network probes: a TCP port accepting, an HTTP GET answering 2xx or 3xx. They dial from
//! the process's own network namespace (a container's, where "localhost" is the container's
//! loopback, as the process itself sees it), else from the daemon's.
//!
//! The checks are blocking socket calls bounded by a deadline, run on a thread: in another
//! namespace a thread of their own (setns(2) moves the calling thread for good, so that thread
//! ends with the check), here the runtime's blocking pool.
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The most of an HTTP answer read to find its status line.
const STATUS_LINE_MAX: usize = 8 << 10;

/// What a network probe checks.
#[derive(Debug, Clone)]
pub enum Dial {
    Tcp,
    Http { path: String },
}

/// Check `host:port` (`None`: localhost) from the network namespace `netns` (`None`: the
/// daemon's), within `limit`; the error says why it failed.
pub async fn check(
    dial: Dial,
    host: Option<String>,
    port: u16,
    netns: Option<PathBuf>,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let host = host.unwrap_or_else(|| "localhost".into());
    let elsewhere = netns.is_some();
    let work = move || {
        if let Some(ns) = &netns {
            enter(ns)?;
        }
        match dial {
            Dial::Tcp => connect(&host, port, deadline).map(drop),
            Dial::Http { path } => http(&host, port, &path, deadline),
        }
    };
    if !elsewhere {
        return tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|e| Err(format!("the check failed: {e}")));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tend-probe".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| format!("start a probe thread: {e}"))?;
    rx.await
        .unwrap_or_else(|_| Err("the check ended early".into()))
}

/// Move this thread into the network namespace `ns` (a thread of its own: it stays there).
fn enter(ns: &Path) -> Result<(), String> {
    let file = std::fs::File::open(ns)
        .map_err(|e| format!("open the process's network namespace {}: {e}", ns.display()))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        format!(
            "enter the process's network namespace: {e}{}",
            if e == nix::Error::EPERM {
                " (the daemon needs CAP_SYS_ADMIN for it; give the probe a host it can reach)"
            } else {
                ""
            }
        )
    })
}

/// The addresses of `host`. "localhost" is both loopbacks whatever the resolver says: a dev
/// server bound to `::1` alone (Node's default) is as ready as one bound to 127.0.0.1.
fn addresses(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
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
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolve {host}: {e}"))?
        .collect();
    if found.is_empty() {
        return Err(format!("resolve {host}: no addresses"));
    }
    Ok(found)
}

fn left(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

fn late(what: &str) -> String {
    format!("{what}: no answer in time")
}

/// A connection to the first of `host`'s addresses that accepts.
fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let target = host_port(host, port);
    let mut last = None;
    for addr in addresses(host, port)? {
        let Some(time) = left(deadline) else {
            return Err(late(&format!("connect to {target}")));
        };
        match TcpStream::connect_timeout(&addr, time) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(format!(
        "connect to {target}: {}",
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

/// A GET of `path` answers with a 2xx or 3xx status.
fn http(host: &str, port: u16, path: &str, deadline: Instant) -> Result<(), String> {
    let target = format!("http://{}{path}", host_port(host, port));
    let fail = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            late(&format!("GET {target}"))
        } else {
            format!("GET {target}: {e}")
        }
    };
    let mut conn = connect(host, port, deadline)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tend-readiness\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        host_port(host, port)
    );
    let time = left(deadline).ok_or_else(|| late(&format!("GET {target}")))?;
    conn.set_write_timeout(Some(time)).map_err(fail)?;
    conn.write_all(request.as_bytes()).map_err(fail)?;
    let mut answer = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let line = loop {
        if let Some(end) = answer.windows(2).position(|w| w == b"\r\n") {
            break String::from_utf8_lossy(&answer[..end]).into_owned();
        }
        if answer.len() >= STATUS_LINE_MAX {
            return Err(format!("GET {target}: no HTTP status line in the answer"));
        }
        let time = left(deadline).ok_or_else(|| late(&format!("GET {target}")))?;
        conn.set_read_timeout(Some(time)).map_err(fail)?;
        let n = conn.read(&mut buf).map_err(fail)?;
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

    const SECOND: Duration = Duration::from_secs(1);

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
        let serve = |answer: &'static str| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer.as_bytes());
            });
            port
        };
        let http = |port, path: &str| {
            check(
                Dial::Http { path: path.into() },
                Some("127.0.0.1".into()),
                port,
                None,
                SECOND,
            )
        };
        let ok = serve("HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(http(ok, "/").await, Ok(()));
        let down = serve("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = http(down, "/health").await.unwrap_err();
        assert!(err.contains("503 Service Unavailable"), "{err}");
        assert!(err.contains("/health"), "{err}");
        // Accepts, never answers: the deadline.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let err = check(
            Dial::Http { path: "/".into() },
            None,
            port,
            None,
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(err.contains("no answer in time"), "{err}");
    }

    #[tokio::test]
    async fn a_closed_port_says_connection_refused() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = check(Dial::Tcp, None, port, None, SECOND)
            .await
            .unwrap_err();
        assert!(err.contains(&format!("localhost:{port}")), "{err}");
        assert!(err.contains("refused"), "{err}");
    }
}
