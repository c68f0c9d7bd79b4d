//! Readiness from the command line: `tend run --detach --ready-…` and `tend wait --ready`.
use std::time::Duration;

use clap::Args;

use super::connect::ProcessClient;
use super::run::exit_code;
use crate::pb::{self, readiness_probe::Check};

/// `tend run --detach` and `tend wait --ready` exit with this when the process was not ready in
/// time (as timeout(1) does); it runs on.
pub const EXIT_NOT_READY: i32 = 124;

/// How `tend run --detach` tells the command is ready (one of them).
#[derive(Args, Debug, Default, Clone)]
#[group(id = "ready", multiple = false)]
pub struct ReadyArgs {
    /// Ready once this TCP port accepts a connection (on localhost, IPv4 or IPv6; in a Docker
    /// environment, on the container's address).
    #[arg(long, value_name = "PORT", requires = "detach")]
    pub ready_port: Option<u16>,
    /// Ready once an HTTP GET answers 2xx or 3xx: PORT, PORT/PATH, or http://HOST:PORT/PATH.
    #[arg(long, value_name = "URL", requires = "detach")]
    pub ready_http: Option<String>,
    /// Ready once a line of the output matches this regular expression.
    #[arg(long, value_name = "REGEX", requires = "detach")]
    pub ready_log: Option<String>,
    /// Ready once this shell command exits 0 (run with sh -c beside the command, in its
    /// environment and working directory).
    #[arg(long, value_name = "SHELL-COMMAND", requires = "detach")]
    pub ready_cmd: Option<String>,
}

/// How long to wait for readiness, and how often to check.
#[derive(Args, Debug, Clone)]
pub struct ReadyWait {
    /// Give up waiting after this many seconds (0: no limit); the command runs on, and tend
    /// exits 124.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub ready_timeout: u64,
    /// Milliseconds between checks (default 250).
    #[arg(long, value_name = "MS")]
    pub ready_interval: Option<u32>,
}

impl ReadyArgs {
    /// The probe these flags ask for, if any.
    pub fn probe(&self, wait: &ReadyWait) -> anyhow::Result<Option<pb::ReadinessProbe>> {
        let check = if let Some(port) = self.ready_port {
            Check::Tcp(pb::TcpProbe {
                port: port.into(),
                host: String::new(),
            })
        } else if let Some(url) = &self.ready_http {
            Check::Http(http(url)?)
        } else if let Some(pattern) = &self.ready_log {
            Check::Log(pb::LogProbe {
                pattern: pattern.clone(),
                stream: 0,
            })
        } else if let Some(cmd) = &self.ready_cmd {
            Check::Exec(pb::ExecProbe {
                argv: vec!["sh".into(), "-c".into(), cmd.clone()],
            })
        } else {
            return Ok(None);
        };
        Ok(Some(pb::ReadinessProbe {
            check: Some(check),
            interval_ms: wait.ready_interval.unwrap_or(0),
            ..Default::default()
        }))
    }
}

/// `--ready-http`: PORT, PORT/PATH, or http://HOST:PORT/PATH.
fn http(url: &str) -> anyhow::Result<pb::HttpProbe> {
    let bad = || {
        anyhow::anyhow!(
            "--ready-http {url:?}: give PORT, PORT/PATH or http://HOST:PORT/PATH (plain HTTP)"
        )
    };
    let (host, rest) = match url.strip_prefix("http://") {
        Some(rest) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
            (host.to_string(), format!("{port}{path}"))
        }
        None if url.contains("://") => return Err(bad()),
        None => (String::new(), url.to_string()),
    };
    let (port, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Ok(pb::HttpProbe {
        port: port.parse().map_err(|_| bad())?,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        path: path.to_string(),
    })
}

/// Wait until `id` is ready and say how it went; the exit code: 0 ready, the command's own
/// (1 if that was 0) when it exited first, `EXIT_NOT_READY` when the wait timed out.
pub async fn wait(c: &mut ProcessClient, id: &str, timeout: Duration) -> anyhow::Result<i32> {
    let r = c
        .wait_ready(pb::WaitReadyRequest {
            id: id.to_string(),
            timeout_ms: timeout.as_millis() as u64,
            output: Some(pb::OutputOptions {
                head_bytes: 2048,
                tail_bytes: 4096,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let p = r.process.unwrap_or_default();
    let readiness = p.readiness.clone().unwrap_or_default();
    match pb::WaitReadyResult::try_from(r.result) {
        Ok(pb::WaitReadyResult::Ready) => Ok(0),
        Ok(pb::WaitReadyResult::Failed) => {
            let exit = p.exit.unwrap_or_default();
            let how = match (exit.exit_code, exit.signal_name.as_str()) {
                (Some(code), _) => format!("exit code {code}"),
                (None, name) => format!("killed by {name}"),
            };
            eprintln!("tend: {} exited before it was ready ({how})", p.id);
            if !readiness.last_error.is_empty() {
                eprintln!("tend: the last check: {}", readiness.last_error);
            }
            for s in r.output.iter().filter(|s| !s.text.is_empty()) {
                let name = pb::Stream::try_from(s.stream)
                    .map(|s| s.as_str_name().trim_start_matches("STREAM_").to_lowercase())
                    .unwrap_or_default();
                eprintln!("--- {name} ---");
                eprint!("{}", s.text);
                if !s.text.ends_with('\n') {
                    eprintln!();
                }
            }
            Ok(match exit_code(&exit) {
                0 => 1,
                code => code,
            })
        }
        _ => {
            let why = if readiness.last_error.is_empty() {
                String::new()
            } else {
                format!("; the last check: {}", readiness.last_error)
            };
            eprintln!(
                "tend: {} is not ready after {} s{why}; it runs on (tend kill {} stops it)",
                p.id,
                timeout.as_secs(),
                p.id
            );
            Ok(EXIT_NOT_READY)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_http_takes_a_port_a_path_or_a_url() {
        let h = http("3000").unwrap();
        assert_eq!((h.port, h.host.as_str(), h.path.as_str()), (3000, "", ""));
        let h = http("8080/health?x=1").unwrap();
        assert_eq!((h.port, h.path.as_str()), (8080, "/health?x=1"));
        let h = http("http://127.0.0.1:9000/up").unwrap();
        assert_eq!(
            (h.port, h.host.as_str(), h.path.as_str()),
            (9000, "127.0.0.1", "/up")
        );
        let h = http("http://[::1]:9000").unwrap();
        assert_eq!(
            (h.port, h.host.as_str(), h.path.as_str()),
            (9000, "::1", "")
        );
        assert!(http("https://x:1/").is_err());
        assert!(http("http://nohost/").is_err());
        assert!(http("web").is_err());
    }
}
