//! Conversions between the proto messages and the core's types, and the shape checks of requests.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use crate::config::Limits;
use crate::error::{quote, Error, Result};
use crate::pb;
use crate::supervisor::spec::{PtySize, ResourceLimits, Spec, NATIVE};
use crate::supervisor::usage::{KernelState, Measured, Usage};
use crate::supervisor::view::{StreamView, ViewOptions};
use crate::supervisor::{Chunk, Ended, ExitInfo, Process, StreamKind};

const MAX_NAME: usize = 128;
const MAX_TAGS: usize = 64;
const MAX_ARGS: usize = 65_536;
const MAX_TERMINAL: u32 = 10_000;
/// A day: longer waits are surely a unit mistake.
pub const MAX_WAIT_MS: u64 = 86_400_000;
const MAX_VIEW_BYTES: u32 = 16 << 20;
/// The kernel's PID_MAX_LIMIT: `pids.max` takes no more.
const MAX_PIDS: u64 = 4 << 20;

fn no_nul(field: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::invalid(field, "must not contain NUL bytes"));
    }
    Ok(())
}

/// Check a request's process spec and turn it into the core's.
pub fn spec(spec: Option<pb::ProcessSpec>, request_id: String, limits: &Limits) -> Result<Spec> {
    let s = spec.ok_or_else(|| Error::invalid("spec", "is required"))?;
    if s.argv.is_empty() {
        return Err(Error::invalid("spec.argv", "must not be empty"));
    }
    if s.argv[0].is_empty() {
        return Err(Error::invalid("spec.argv[0]", "must name a program"));
    }
    if s.argv.len() > MAX_ARGS {
        return Err(Error::invalid(
            "spec.argv",
            format!("has {} arguments; at most {MAX_ARGS}", s.argv.len()),
        ));
    }
    for (i, a) in s.argv.iter().enumerate() {
        no_nul(&format!("spec.argv[{i}]"), a)?;
    }
    for (k, v) in &s.env {
        if k.is_empty() || k.contains('=') {
            return Err(Error::invalid(
                format!("spec.env[{}]", quote(k)),
                "names must be non-empty and hold no '='",
            ));
        }
        let field = format!("spec.env[{}]", quote(k));
        no_nul(&field, k)?;
        no_nul(&field, v)?;
    }
    no_nul("spec.cwd", &s.cwd)?;
    if s.tags.len() > MAX_TAGS {
        return Err(Error::invalid(
            "spec.tags",
            format!("has {} tags; at most {MAX_TAGS}", s.tags.len()),
        ));
    }
    let size: usize = s.argv.iter().map(String::len).sum::<usize>()
        + s.env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        + s.tags.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        + s.cwd.len();
    if size > limits.max_spec_bytes {
        return Err(Error::invalid(
            "spec",
            format!(
                "argv, env, cwd and tags hold {size} bytes; at most {}",
                limits.max_spec_bytes
            ),
        ));
    }
    if s.name.len() > MAX_NAME {
        return Err(Error::invalid(
            "spec.name",
            format!("is {} bytes; at most {MAX_NAME}", s.name.len()),
        ));
    }
    if s.name.starts_with("p-") || s.name.chars().any(|c| c.is_control() || c == '/') {
        return Err(Error::invalid(
            "spec.name",
            "must not start with \"p-\" (ids do) or hold control characters or '/'",
        ));
    }
    if request_id.len() > MAX_NAME {
        return Err(Error::invalid(
            "request_id",
            format!("is {} bytes; at most {MAX_NAME}", request_id.len()),
        ));
    }
    let pty = s.pty.map(|p| pty_size("spec.pty", p)).transpose()?;
    let environment = environment_id("spec.environment_id", s.environment_id)?;
    let readiness = super::readiness_convert::probe(s.readiness, pty.is_some())?;
    let in_range = |field: &str, v: Option<i32>, lo: i32, hi: i32| match v {
        Some(v) if !(lo..=hi).contains(&v) => Err(Error::invalid(
            field,
            format!("{v} is outside {lo} to {hi}"),
        )),
        _ => Ok(v),
    };
    let nice = in_range("spec.nice", s.nice, -20, 19)?;
    let oom_score_adj = in_range("spec.oom_score_adj", s.oom_score_adj, -1000, 1000)?;
    let limits = s
        .limits
        .map(resource_limits)
        .transpose()?
        .unwrap_or_default();
    Ok(Spec {
        argv: s.argv,
        env: s.env.into_iter().collect(),
        cwd: (!s.cwd.is_empty()).then(|| PathBuf::from(s.cwd)),
        tags: s.tags.into_iter().collect(),
        name: (!s.name.is_empty()).then_some(s.name),
        pty,
        stdin: s.stdin,
        non_interactive: s.non_interactive,
        clear_env: s.clear_env,
        environment,
        request_id: (!request_id.is_empty()).then_some(request_id),
        readiness,
        nice,
        oom_score_adj,
        limits,
    })
}

/// Check a spec's limits; 0 is none.
fn resource_limits(l: pb::ResourceLimits) -> Result<ResourceLimits> {
    if l.pids_max > MAX_PIDS {
        return Err(Error::invalid(
            "spec.limits.pids_max",
            format!("{} is more than the kernel allows ({MAX_PIDS})", l.pids_max),
        ));
    }
    Ok(ResourceLimits {
        memory_max: (l.memory_max_bytes > 0).then_some(l.memory_max_bytes),
        pids_max: (l.pids_max > 0).then_some(l.pids_max),
    })
}

/// A spec's limits as sent; `None` when it has none.
fn limits_to_pb(l: &ResourceLimits) -> Option<pb::ResourceLimits> {
    l.any().then(|| pb::ResourceLimits {
        memory_max_bytes: l.memory_max.unwrap_or(0),
        pids_max: l.pids_max.unwrap_or(0),
    })
}

/// Check a terminal size.
pub fn pty_size(field: &str, p: pb::PtySize) -> Result<PtySize> {
    let ok = |v: u32| (1..=MAX_TERMINAL).contains(&v);
    if !ok(p.rows) || !ok(p.cols) {
        return Err(Error::invalid(
            field,
            format!(
                "rows and cols must be 1 to {MAX_TERMINAL} (got {}x{})",
                p.rows, p.cols
            ),
        ));
    }
    Ok(PtySize {
        rows: p.rows as u16,
        cols: p.cols as u16,
    })
}

/// Check an environment id field (an id or a name; whether it exists is the core's to say) and
/// return the id the core takes: empty means the host, "native".
pub fn environment_id(field: &str, id: String) -> Result<String> {
    if id.len() > MAX_NAME {
        return Err(Error::invalid(
            field,
            format!("is {} bytes; at most {MAX_NAME}", id.len()),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("{} holds control characters", quote(&id)),
        ));
    }
    Ok(if id.is_empty() {
        NATIVE.to_string()
    } else {
        id
    })
}

/// Check a process id field.
pub fn id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(field, "is required (a process id or name)"));
    }
    if id.len() > MAX_NAME {
        return Err(Error::invalid(
            field,
            format!("is longer than {MAX_NAME} bytes"),
        ));
    }
    Ok(())
}

/// Check a wait in milliseconds.
pub fn wait_ms(field: &str, ms: u64) -> Result<Option<std::time::Duration>> {
    if ms > MAX_WAIT_MS {
        return Err(Error::invalid(
            field,
            format!("{ms} ms is more than a day ({MAX_WAIT_MS})"),
        ));
    }
    Ok((ms > 0).then(|| std::time::Duration::from_millis(ms)))
}

/// The proto stream from ours.
pub fn stream_to_pb(k: StreamKind) -> pb::Stream {
    match k {
        StreamKind::Stdout => pb::Stream::Stdout,
        StreamKind::Stderr => pb::Stream::Stderr,
        StreamKind::Pty => pb::Stream::Pty,
    }
}

/// The streams a request selects of a process; `Unspecified` is all of them.
pub fn streams(field: &str, raw: i32, p: &Process) -> Result<Vec<StreamKind>> {
    let kinds = p.output.kinds();
    let want = match pb::Stream::try_from(raw) {
        Ok(pb::Stream::Unspecified) => return Ok(kinds),
        Ok(pb::Stream::Stdout) => StreamKind::Stdout,
        Ok(pb::Stream::Stderr) => StreamKind::Stderr,
        Ok(pb::Stream::Pty) => StreamKind::Pty,
        Err(_) => return Err(Error::invalid(field, format!("unknown stream {raw}"))),
    };
    if !kinds.contains(&want) {
        let has = if kinds.contains(&StreamKind::Pty) {
            "it runs in a PTY: use STREAM_PTY"
        } else {
            "it has no PTY: use STREAM_STDOUT or STREAM_STDERR"
        };
        return Err(Error::invalid(
            field,
            format!("{} has no {:?} stream; {has}", p.id, want),
        ));
    }
    Ok(vec![want])
}

/// The view options of a request (the field named `field`), defaults filled in.
pub fn view_options(field: &str, o: Option<&pb::OutputOptions>) -> Result<ViewOptions> {
    let d = ViewOptions::default();
    let Some(o) = o else { return Ok(d) };
    let pick = |name: &str, v: u32, default: usize| -> Result<usize> {
        let field = format!("{field}.{name}");
        if v > MAX_VIEW_BYTES {
            return Err(Error::invalid(
                field,
                format!("{v} is more than {MAX_VIEW_BYTES}"),
            ));
        }
        Ok(if v == 0 { default } else { v as usize })
    };
    Ok(ViewOptions {
        head_bytes: pick("head_bytes", o.head_bytes, d.head_bytes)?,
        tail_bytes: pick("tail_bytes", o.tail_bytes, d.tail_bytes)?,
        max_line_bytes: pick("max_line_bytes", o.max_line_bytes, d.max_line_bytes)?,
    })
}

/// A stream view as sent.
pub fn view_to_pb(v: StreamView) -> pb::StreamOutput {
    pb::StreamOutput {
        stream: stream_to_pb(v.kind) as i32,
        truncated: v.truncated(),
        text: v.text,
        total_bytes: v.total_bytes,
        omitted_bytes: v.omitted_bytes,
        cut_lines: v.cut_lines,
        cut_line_bytes: v.cut_line_bytes,
    }
}

/// An exit as sent.
pub fn exit_to_pb(e: &ExitInfo) -> pb::ExitStatus {
    let mut s = pb::ExitStatus {
        wall_duration_ms: e.wall.as_millis() as u64,
        output_drain_timed_out: e.drain_timed_out,
        ..Default::default()
    };
    match e.ended {
        Ended::Code(c) => s.exit_code = Some(c),
        Ended::Signal {
            signal,
            core_dumped,
        } => {
            s.signal = Some(signal);
            s.core_dumped = core_dumped;
            s.signal_name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("SIG{signal}"));
        }
    }
    s
}

/// A process as sent.
pub fn info(p: &Process) -> pb::ProcessInfo {
    let exit = p.exit();
    pb::ProcessInfo {
        id: p.id.clone(),
        name: p.spec.name.clone().unwrap_or_default(),
        argv: p.spec.argv.clone(),
        cwd: p
            .spec
            .cwd
            .as_ref()
            .map(|c| c.display().to_string())
            .unwrap_or_default(),
        tags: p.spec.tags.clone().into_iter().collect(),
        state: if exit.is_some() {
            pb::ProcessState::Exited
        } else {
            pb::ProcessState::Running
        } as i32,
        pid: p.pid,
        pgid: p.pid,
        pty: p.pty_size().map(|s| pb::PtySize {
            rows: s.rows.into(),
            cols: s.cols.into(),
        }),
        stdin_open: p.input_open(),
        started_at_unix_ms: p
            .started_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        exit: exit.as_ref().map(exit_to_pb),
        streams: p
            .output
            .stats()
            .into_iter()
            .map(|s| pb::StreamInfo {
                stream: stream_to_pb(s.kind) as i32,
                total_bytes: s.total,
                tail_offset: s.tail_offset,
                head_bytes: s.head_len,
            })
            .collect(),
        environment_id: p.spec.environment.clone(),
        request_id: p.spec.request_id.clone().unwrap_or_default(),
        usage: None,
        leader_usage: None,
        ports: Vec::new(),
        readiness: p
            .readiness()
            .as_ref()
            .map(super::readiness_convert::readiness_to_pb),
        nice: p.spec.nice,
        oom_score_adj: p.spec.oom_score_adj,
        limits: limits_to_pb(&p.spec.limits),
    }
}

/// A process as sent, with what its tree uses and listens on (`None`: not measured).
pub fn info_with(p: &Process, m: Option<&Measured>) -> pb::ProcessInfo {
    let mut i = info(p);
    if let Some(m) = m {
        let mut tree = usage_to_pb(&m.tree);
        tree.cpu_percent = m.cpu_percent;
        tree.whole_environment = m.whole_environment;
        i.usage = Some(tree);
        i.leader_usage = m.leader.as_ref().map(usage_to_pb);
        i.ports = m
            .ports
            .iter()
            .map(|l| pb::ListeningPort {
                protocol: l.protocol.into(),
                address: l.address.clone(),
                port: l.port.into(),
                pid: l.pid,
            })
            .collect();
    }
    i
}

fn usage_to_pb(u: &Usage) -> pb::ResourceUsage {
    pb::ResourceUsage {
        state: match u.state {
            None => pb::KernelState::Unspecified,
            Some(KernelState::Running) => pb::KernelState::Running,
            Some(KernelState::Sleeping) => pb::KernelState::Sleeping,
            Some(KernelState::DiskWait) => pb::KernelState::DiskWait,
            Some(KernelState::Stopped) => pb::KernelState::Stopped,
            Some(KernelState::Zombie) => pb::KernelState::Zombie,
            Some(KernelState::Idle) => pb::KernelState::Idle,
            Some(KernelState::Dead) => pb::KernelState::Dead,
        } as i32,
        user_cpu_ms: u.user_cpu_ms,
        system_cpu_ms: u.system_cpu_ms,
        cpu_percent: 0.0,
        rss_bytes: u.rss_bytes,
        peak_rss_bytes: u.peak_rss_bytes,
        processes: u.processes,
        whole_environment: false,
    }
}

/// The event that opens a process's output: the process as it started.
pub fn started_event(p: &Process) -> pb::ProcessEvent {
    pb::ProcessEvent {
        kind: Some(pb::process_event::Kind::Started(info(p))),
    }
}

/// An output chunk as an event.
pub fn chunk_event(c: Chunk) -> pb::ProcessEvent {
    use pb::process_event::Kind;
    pb::ProcessEvent {
        kind: Some(match c {
            Chunk::Data {
                stream,
                offset,
                data,
            } => Kind::Data(pb::DataEvent {
                stream: stream_to_pb(stream) as i32,
                offset,
                data,
            }),
            Chunk::Gap {
                stream,
                offset,
                len,
            } => Kind::Gap(pb::GapEvent {
                stream: stream_to_pb(stream) as i32,
                offset,
                length: len,
            }),
        }),
    }
}

/// Parse "SIGTERM", "TERM", "term" or "15"; empty is SIGTERM.
pub fn signal(field: &str, s: &str) -> Result<i32> {
    use nix::sys::signal::Signal;
    use std::str::FromStr;
    if s.is_empty() {
        return Ok(libc::SIGTERM);
    }
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n)
            .map(|sig| sig as i32)
            .map_err(|_| Error::invalid(field, format!("{n} is not a signal number")));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map(|sig| sig as i32).map_err(|_| {
        Error::invalid(
            field,
            format!(
                "{} is not a signal (try TERM, KILL, INT, HUP or a number)",
                quote(s)
            ),
        )
    })
}

/// Tags of a List filter.
pub fn tags(t: std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    t.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(f: impl FnOnce(&mut pb::ProcessSpec)) -> Result<Spec> {
        let mut s = pb::ProcessSpec {
            argv: vec!["true".into()],
            ..Default::default()
        };
        f(&mut s);
        spec(Some(s), String::new(), &Limits::default())
    }

    type Edit = Box<dyn FnOnce(&mut pb::ProcessSpec)>;

    #[test]
    fn bad_specs_name_the_field() {
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|s| s.argv.clear()), "spec.argv:"),
            (Box::new(|s| s.argv = vec!["".into()]), "spec.argv[0]:"),
            (Box::new(|s| s.argv.push("a\0b".into())), "spec.argv[1]:"),
            (
                Box::new(|s| {
                    s.env.insert("K".into(), "v\0".into());
                }),
                "spec.env[\"K\"]:",
            ),
            (
                Box::new(|s| {
                    s.env.insert("A=B".into(), "v".into());
                }),
                "spec.env[\"A=B\"]:",
            ),
            (Box::new(|s| s.cwd = "/tmp\0".into()), "spec.cwd:"),
            (
                Box::new(|s| s.nice = Some(20)),
                "spec.nice: 20 is outside -20 to 19",
            ),
            (Box::new(|s| s.nice = Some(-21)), "spec.nice:"),
            (
                Box::new(|s| s.oom_score_adj = Some(1001)),
                "spec.oom_score_adj: 1001 is outside -1000 to 1000",
            ),
            (
                Box::new(|s| s.oom_score_adj = Some(-1001)),
                "spec.oom_score_adj:",
            ),
            (
                Box::new(|s| {
                    s.limits = Some(pb::ResourceLimits {
                        pids_max: MAX_PIDS + 1,
                        ..Default::default()
                    })
                }),
                "spec.limits.pids_max:",
            ),
            (
                Box::new(|s| s.pty = Some(pb::PtySize { rows: 0, cols: 80 })),
                "spec.pty:",
            ),
            (
                Box::new(|s| {
                    s.pty = Some(pb::PtySize {
                        rows: 24,
                        cols: 100_000,
                    })
                }),
                "spec.pty:",
            ),
            (Box::new(|s| s.name = "x".repeat(200)), "spec.name:"),
            (Box::new(|s| s.argv.push("x".repeat(2 << 20))), "spec:"),
            (
                Box::new(|s| s.environment_id = "e".repeat(129)),
                "spec.environment_id:",
            ),
            (
                Box::new(|s| s.environment_id = "dev\nbox".into()),
                "spec.environment_id:",
            ),
        ];
        for (f, want) in cases {
            let err = req(f).unwrap_err();
            assert!(err.to_string().starts_with(want), "{err} !~ {want}");
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
        }
        assert!(spec(None, String::new(), &Limits::default())
            .unwrap_err()
            .to_string()
            .starts_with("spec:"));
    }

    #[test]
    fn hints_in_range_pass_and_zero_limits_are_none() {
        let s = req(|s| {
            s.nice = Some(-20);
            s.oom_score_adj = Some(1000);
            s.limits = Some(pb::ResourceLimits {
                memory_max_bytes: 64 << 20,
                pids_max: 0,
            });
        })
        .unwrap();
        assert_eq!((s.nice, s.oom_score_adj), (Some(-20), Some(1000)));
        assert_eq!(s.limits.memory_max, Some(64 << 20));
        assert_eq!(s.limits.pids_max, None);
        let none = req(|s| s.limits = Some(pb::ResourceLimits::default())).unwrap();
        assert!(!none.has_hints());
    }

    #[test]
    fn any_well_formed_environment_id_is_passed_on_and_empty_is_native() {
        let env = |id: &str| req(|s| s.environment_id = id.into()).unwrap().environment;
        assert_eq!(env(""), NATIVE);
        assert_eq!(env("native"), NATIVE);
        assert_eq!(env("e-3"), "e-3");
        assert_eq!(env("my box ä"), "my box ä");
        assert_eq!(env(&"e".repeat(128)), "e".repeat(128));
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(signal("signal", "").unwrap(), libc::SIGTERM);
        assert_eq!(signal("signal", "kill").unwrap(), libc::SIGKILL);
        assert_eq!(signal("signal", "SIGINT").unwrap(), libc::SIGINT);
        assert_eq!(signal("signal", "HUP").unwrap(), libc::SIGHUP);
        assert_eq!(signal("signal", "9").unwrap(), libc::SIGKILL);
        assert!(signal("signal", "SIGNOPE").is_err());
        assert!(signal("signal", "999").is_err());
        assert!(signal("signal", "-1").is_err());
    }

    #[test]
    fn absurd_waits_and_sizes_are_refused() {
        assert!(wait_ms("wait_timeout_ms", MAX_WAIT_MS + 1).is_err());
        assert_eq!(wait_ms("wait_timeout_ms", 0).unwrap(), None);
        let o = pb::OutputOptions {
            head_bytes: u32::MAX,
            ..Default::default()
        };
        assert!(view_options("output", Some(&o))
            .unwrap_err()
            .to_string()
            .starts_with("output.head_bytes"));
    }
}
