//! Conversions between the AgentService messages and the agent core.
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use crate::agent::spec::{check_name, AgentSpec, Kind, Policy};
use crate::agent::{Event, EventKind, Info, Status};
use crate::error::{Error, Result};
use crate::pb;
use crate::service::convert;

const MAX_BACKOFF_MS: u64 = 3_600_000;

/// Check a Spawn request's spec and turn it into the core's.
pub fn spec(s: Option<pb::AgentSpec>) -> Result<AgentSpec> {
    let s = s.ok_or_else(|| Error::invalid("spec", "is required"))?;
    check_name("spec.name", &s.name)?;
    // The argv, env, cwd and environment_id rules are the process ones.
    let process = convert::spec(
        Some(pb::ProcessSpec {
            argv: s.argv.clone(),
            env: s.env.clone(),
            cwd: s.cwd.clone(),
            environment_id: s.environment_id.clone(),
            ..Default::default()
        }),
        String::new(),
        &crate::config::Limits::default(),
    )?;
    let size = match s.size {
        Some(size) => convert::pty_size("spec.size", size)?,
        None => crate::supervisor::spec::PtySize { rows: 24, cols: 80 },
    };
    let kind = match pb::AgentKind::try_from(s.kind) {
        Ok(pb::AgentKind::Crew) => Kind::Crew,
        Ok(pb::AgentKind::Task | pb::AgentKind::Unspecified) => Kind::Task,
        Err(_) => {
            return Err(Error::invalid(
                "spec.kind",
                format!("unknown kind {}", s.kind),
            ))
        }
    };
    let policy = restart_policy("spec.restart", s.restart)?;
    Ok(AgentSpec {
        name: s.name,
        argv: process.argv,
        env: process.env,
        cwd: process.cwd,
        prompt_file: (!s.prompt_file.is_empty()).then(|| PathBuf::from(s.prompt_file)),
        rows: size.rows,
        cols: size.cols,
        kind,
        policy,
        // As given: empty stays empty (the host), so the spec reads back as it was sent.
        environment: s.environment_id,
        tags: Default::default(),
    })
}

fn spec_to_pb(s: &AgentSpec) -> pb::AgentSpec {
    pb::AgentSpec {
        name: s.name.clone(),
        argv: s.argv.clone(),
        env: s.env.clone().into_iter().collect(),
        cwd: s
            .cwd
            .as_ref()
            .map(|c| c.display().to_string())
            .unwrap_or_default(),
        prompt_file: s
            .prompt_file
            .as_ref()
            .map(|c| c.display().to_string())
            .unwrap_or_default(),
        size: Some(pb::PtySize {
            rows: s.rows.into(),
            cols: s.cols.into(),
        }),
        kind: match s.kind {
            Kind::Crew => pb::AgentKind::Crew,
            Kind::Task => pb::AgentKind::Task,
        } as i32,
        restart: Some(pb::RestartPolicy {
            initial_backoff_ms: s.policy.initial_backoff_ms,
            max_backoff_ms: s.policy.max_backoff_ms,
            stable_after_ms: s.policy.stable_after_ms,
            start_limit: s.policy.start_limit,
        }),
        environment_id: s.environment.clone(),
    }
}

fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Check a restart policy (the field named `field`) and fill in its defaults: shared by agents
/// and plugins.
pub fn restart_policy(field: &str, r: Option<pb::RestartPolicy>) -> Result<Policy> {
    let d = Policy::default();
    let r = r.unwrap_or_default();
    let ms = |name: &str, v: u64, default: u64| -> Result<u64> {
        if v > MAX_BACKOFF_MS {
            return Err(Error::invalid(
                format!("{field}.{name}"),
                format!("{v} ms is more than an hour"),
            ));
        }
        Ok(if v == 0 { default } else { v })
    };
    Ok(Policy {
        initial_backoff_ms: ms(
            "initial_backoff_ms",
            r.initial_backoff_ms,
            d.initial_backoff_ms,
        )?,
        max_backoff_ms: ms("max_backoff_ms", r.max_backoff_ms, d.max_backoff_ms)?,
        stable_after_ms: ms("stable_after_ms", r.stable_after_ms, d.stable_after_ms)?,
        start_limit: if r.start_limit == 0 {
            d.start_limit
        } else {
            r.start_limit.min(1000)
        },
    })
}

/// An agent as sent.
pub fn info(i: Info) -> pb::AgentInfo {
    let running = i.status == Status::Running;
    pb::AgentInfo {
        spec: Some(spec_to_pb(&i.spec)),
        status: match i.status {
            Status::Running => pb::AgentStatus::Running,
            Status::Exited => pb::AgentStatus::Exited,
            Status::Restarting => pb::AgentStatus::Restarting,
            Status::Failed => pb::AgentStatus::Failed,
            Status::Stopped => pb::AgentStatus::Stopped,
        } as i32,
        pid: i
            .process
            .as_ref()
            .filter(|p| running && p.running())
            .map_or(0, |p| p.pid),
        process_id: i.process.as_ref().map(|p| p.id.clone()).unwrap_or_default(),
        started_at_unix_ms: i.process.as_ref().map_or(0, |p| unix_ms(p.started_at)),
        uptime_ms: i.uptime.as_millis() as u64,
        last_exit: i.last_exit.as_ref().map(convert::exit_to_pb),
        restart_count: i.restart_count,
        last_activity_unix_ms: i.last_activity.map_or(0, unix_ms),
        idle: i.idle,
    }
}

/// An event as sent.
pub fn event(e: Event) -> pb::AgentEvent {
    pb::AgentEvent {
        name: e.name,
        kind: match e.kind {
            EventKind::Spawned => pb::AgentEventKind::Spawned,
            EventKind::Idle => pb::AgentEventKind::Idle,
            EventKind::Busy => pb::AgentEventKind::Busy,
            EventKind::Exited => pb::AgentEventKind::Exited,
            EventKind::Restarting => pb::AgentEventKind::Restarting,
            EventKind::Failed => pb::AgentEventKind::Failed,
            EventKind::Stopped => pb::AgentEventKind::Stopped,
            EventKind::Removed => pb::AgentEventKind::Removed,
        } as i32,
        exit: e.exit.as_ref().map(convert::exit_to_pb),
        restart_count: e.restart_count,
        backoff_ms: e.backoff.map_or(0, |b| b.as_millis() as u64),
        pid: e.pid,
        at_unix_ms: unix_ms(e.at),
        missed: 0,
    }
}

/// A duration in ms with a default for 0 and a bound.
pub fn ms(field: &str, v: u64, default: Duration) -> Result<Duration> {
    Ok(convert::wait_ms(field, v)?.unwrap_or(default))
}
