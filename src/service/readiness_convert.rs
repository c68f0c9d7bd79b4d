//! Readiness probes between the proto messages and the core: the checks of a spec's probe, and
//! a process's readiness as sent.
use std::time::{Duration, UNIX_EPOCH};

use super::convert::stream_to_pb;
use crate::error::{Error, Result};
use crate::pb;
use crate::supervisor::readiness::{self, Check, Probe, Readiness, State};
use crate::supervisor::StreamKind;

const MAX_INTERVAL_MS: u32 = 3_600_000;
const MAX_TIMEOUT_MS: u32 = 600_000;
const MAX_SUCCESSES: u32 = 1000;
const MAX_PATH: usize = 2048;
const MAX_HOST: usize = 253;
const MAX_ARGS: usize = 1024;
const MAX_ARGV_BYTES: usize = 64 << 10;

/// Check a spec's probe; `pty`: the process runs in a PTY (its one stream is STREAM_PTY).
pub fn probe(p: Option<pb::ReadinessProbe>, pty: bool) -> Result<Option<Probe>> {
    let Some(p) = p else { return Ok(None) };
    let f = |name: &str| format!("spec.readiness.{name}");
    let check = match p.check {
        None => {
            return Err(Error::invalid(
                "spec.readiness",
                "names no check; set one of tcp, http, log or exec",
            ))
        }
        Some(pb::readiness_probe::Check::Tcp(t)) => Check::Tcp {
            port: port(&f("tcp.port"), t.port)?,
            host: host(&f("tcp.host"), t.host)?,
        },
        Some(pb::readiness_probe::Check::Http(h)) => Check::Http {
            port: port(&f("http.port"), h.port)?,
            host: host(&f("http.host"), h.host)?,
            path: path(&f("http.path"), h.path)?,
        },
        Some(pb::readiness_probe::Check::Log(l)) => {
            readiness::compile_pattern(&l.pattern)
                .map_err(|why| Error::invalid(f("log.pattern"), why))?;
            Check::Log {
                pattern: l.pattern,
                stream: stream(&f("log.stream"), l.stream, pty)?,
            }
        }
        Some(pb::readiness_probe::Check::Exec(e)) => {
            let field = f("exec.argv");
            if e.argv.first().is_none_or(String::is_empty) {
                return Err(Error::invalid(field, "must name a program"));
            }
            let bytes: usize = e.argv.iter().map(String::len).sum();
            if e.argv.len() > MAX_ARGS || bytes > MAX_ARGV_BYTES {
                return Err(Error::invalid(
                    field,
                    format!(
                        "has {} arguments of {bytes} bytes; at most {MAX_ARGS} of {MAX_ARGV_BYTES}",
                        e.argv.len()
                    ),
                ));
            }
            if e.argv.iter().any(|a| a.contains('\0')) {
                return Err(Error::invalid(field, "must not contain NUL bytes"));
            }
            Check::Exec { argv: e.argv }
        }
    };
    let ms = |name: &str, v: u32, default: u32, range: std::ops::RangeInclusive<u32>| {
        let v = if v == 0 { default } else { v };
        if range.contains(&v) {
            Ok(Duration::from_millis(v.into()))
        } else {
            Err(Error::invalid(
                f(name),
                format!(
                    "{v} ms; give {} to {} (0: {default})",
                    range.start(),
                    range.end()
                ),
            ))
        }
    };
    let successes = match p.success_threshold {
        0 => 1,
        n if n <= MAX_SUCCESSES => n,
        n => {
            return Err(Error::invalid(
                f("success_threshold"),
                format!("{n}; at most {MAX_SUCCESSES}"),
            ))
        }
    };
    if p.initial_delay_ms > MAX_INTERVAL_MS {
        return Err(Error::invalid(
            f("initial_delay_ms"),
            format!("{} ms; at most {MAX_INTERVAL_MS}", p.initial_delay_ms),
        ));
    }
    Ok(Some(Probe {
        check,
        interval: ms("interval_ms", p.interval_ms, 250, 10..=MAX_INTERVAL_MS)?,
        timeout: ms("timeout_ms", p.timeout_ms, 1000, 1..=MAX_TIMEOUT_MS)?,
        successes,
        initial_delay: Duration::from_millis(p.initial_delay_ms.into()),
    }))
}

fn port(field: &str, p: u32) -> Result<u16> {
    match u16::try_from(p) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(Error::invalid(
            field,
            format!("{p}; give a port, 1 to 65535"),
        )),
    }
}

fn host(field: &str, h: String) -> Result<Option<String>> {
    if h.is_empty() {
        return Ok(None);
    }
    let ok = h.len() <= MAX_HOST
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    if !ok {
        return Err(Error::invalid(
            field,
            format!(
                "{}: give a host name or an IP address (at most {MAX_HOST} bytes)",
                crate::error::quote(&h)
            ),
        ));
    }
    Ok(Some(h))
}

fn path(field: &str, p: String) -> Result<String> {
    if p.is_empty() {
        return Ok("/".into());
    }
    if !p.starts_with('/') || p.len() > MAX_PATH || !p.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            field,
            format!(
                "{}: give a path starting with '/', printable ASCII without spaces, at most \
                 {MAX_PATH} bytes",
                crate::error::quote(&p)
            ),
        ));
    }
    Ok(p)
}

fn stream(field: &str, raw: i32, pty: bool) -> Result<Option<StreamKind>> {
    let kind = match pb::Stream::try_from(raw) {
        Ok(pb::Stream::Unspecified) => return Ok(None),
        Ok(pb::Stream::Stdout) => StreamKind::Stdout,
        Ok(pb::Stream::Stderr) => StreamKind::Stderr,
        Ok(pb::Stream::Pty) => StreamKind::Pty,
        Err(_) => return Err(Error::invalid(field, format!("unknown stream {raw}"))),
    };
    match (kind == StreamKind::Pty, pty) {
        (true, false) => Err(Error::invalid(
            field,
            "STREAM_PTY, but the process has no PTY; use STREAM_STDOUT or STREAM_STDERR",
        )),
        (false, true) => Err(Error::invalid(
            field,
            "the process runs in a PTY, whose one stream is STREAM_PTY",
        )),
        _ => Ok(Some(kind)),
    }
}

/// A process's readiness as sent.
pub fn readiness_to_pb(r: &Readiness) -> pb::Readiness {
    pb::Readiness {
        state: match r.state {
            State::Pending => pb::ReadinessState::Pending,
            State::Ready => pb::ReadinessState::Ready,
            State::Failed => pb::ReadinessState::Failed,
        } as i32,
        checks: r.checks,
        last_error: r.last_error.clone().unwrap_or_default(),
        ready_at_unix_ms: r
            .ready_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64),
        ready_after_ms: r.ready_after.map_or(0, |d| d.as_millis() as u64),
    }
}

/// The `ready` event of an output stream.
pub fn ready_event(r: &Readiness) -> pb::ProcessEvent {
    pb::ProcessEvent {
        kind: Some(pb::process_event::Kind::Ready(pb::ReadyEvent {
            readiness: Some(readiness_to_pb(r)),
            offsets: r
                .offsets
                .iter()
                .map(|&(kind, total)| pb::StreamInfo {
                    stream: stream_to_pb(kind) as i32,
                    total_bytes: total,
                    ..Default::default()
                })
                .collect(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::readiness_probe::Check as C;

    fn check(c: C) -> Result<Option<Probe>> {
        probe(
            Some(pb::ReadinessProbe {
                check: Some(c),
                ..Default::default()
            }),
            false,
        )
    }

    #[test]
    fn probes_get_defaults_and_bad_ones_name_their_field() {
        let p = check(C::Tcp(pb::TcpProbe {
            port: 3000,
            host: String::new(),
        }))
        .unwrap()
        .unwrap();
        assert_eq!(p.interval, Duration::from_millis(250));
        assert_eq!(p.timeout, Duration::from_secs(1));
        assert_eq!(p.successes, 1);
        let field = |r: Result<Option<Probe>>| match r.unwrap_err() {
            Error::InvalidArgument { field, .. } => field,
            e => panic!("{e}"),
        };
        assert_eq!(
            field(check(C::Tcp(pb::TcpProbe {
                port: 70000,
                host: String::new()
            }))),
            "spec.readiness.tcp.port"
        );
        assert_eq!(
            field(check(C::Http(pb::HttpProbe {
                port: 80,
                host: "a b".into(),
                path: String::new()
            }))),
            "spec.readiness.http.host"
        );
        assert_eq!(
            field(check(C::Http(pb::HttpProbe {
                port: 80,
                host: String::new(),
                path: "health".into()
            }))),
            "spec.readiness.http.path"
        );
        assert_eq!(
            field(check(C::Log(pb::LogProbe {
                pattern: "(".into(),
                stream: 0
            }))),
            "spec.readiness.log.pattern"
        );
        assert_eq!(
            field(check(C::Log(pb::LogProbe {
                pattern: "x".into(),
                stream: pb::Stream::Pty as i32
            }))),
            "spec.readiness.log.stream"
        );
        assert_eq!(
            field(check(C::Exec(pb::ExecProbe { argv: vec![] }))),
            "spec.readiness.exec.argv"
        );
        assert_eq!(
            field(probe(Some(pb::ReadinessProbe::default()), false)),
            "spec.readiness"
        );
        assert_eq!(
            field(probe(
                Some(pb::ReadinessProbe {
                    check: Some(C::Tcp(pb::TcpProbe {
                        port: 1,
                        host: String::new()
                    })),
                    interval_ms: 5,
                    ..Default::default()
                }),
                false
            )),
            "spec.readiness.interval_ms"
        );
    }
}
