//! Readiness probes: how the daemon tells that a process is ready to serve (a port accepting, an
//! HTTP answer, a line of its output, a command exiting 0), as process-compose and Kubernetes
//! do, so that a client waits for "ready" instead of polling the output and guessing.
//!
//! A process with a probe has a task checking it from its start until `successes` checks in a
//! row succeed (then it is ready, and checks stop) or until it exits (then it failed). Its state
//! is a watch on the process, which `WaitReady`, the event streams and `Watch` follow.
mod command;
mod lines;
mod net;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::environment::Environment;
use super::output::StreamKind;
use super::{LifecycleKind, Process, Supervisor};

/// A probe, as validated by the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub check: Check,
    pub interval: Duration,
    pub timeout: Duration,
    /// Checks in a row that must succeed (log probe: matching lines).
    pub successes: u32,
    pub initial_delay: Duration,
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Tcp {
        host: Option<String>,
        port: u16,
    },
    Http {
        host: Option<String>,
        port: u16,
        path: String,
    },
    /// `pattern` compiles (the service checked it).
    Log {
        pattern: String,
        stream: Option<StreamKind>,
    },
    Exec {
        argv: Vec<String>,
    },
}

/// Where a probe is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum State {
    #[default]
    Pending,
    Ready,
    /// The process exited before it was ready.
    Failed,
}

/// A process's readiness, as clients see it.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    pub state: State,
    pub checks: u64,
    /// Why the last failed check failed; cleared when ready.
    pub last_error: Option<String>,
    pub ready_at: Option<SystemTime>,
    pub ready_after: Option<Duration>,
    /// Each stream's size when readiness was seen.
    pub offsets: Vec<(StreamKind, u64)>,
}

pub use lines::compile as compile_pattern;

/// A new process's readiness watch, when its spec has a probe.
pub(super) fn watch_for(probe: Option<&Probe>) -> Option<watch::Sender<Readiness>> {
    probe.map(|_| watch::channel(Readiness::default()).0)
}

/// Check `p` until it is ready or exits. `env` is where it runs (where an exec probe runs, and
/// whose address a network probe dials by default).
pub(super) async fn run(sup: Supervisor, p: Arc<Process>, env: Arc<dyn Environment>) {
    let (Some(probe), Some(state)) = (p.spec.readiness.clone(), p.readiness_sender()) else {
        return;
    };
    // Some(where the matching line ended, for a log probe) once ready; None if it exited first.
    let seen = match &probe.check {
        // Reads to the output's end, which is complete before an exit is final: every line is
        // seen, and the end of the output is the end of the checks.
        Check::Log { pattern, stream } => {
            lines::until_match(&p, state, pattern, *stream, probe.successes)
                .await
                .map(Some)
        }
        _ => tokio::select! {
            biased;
            _ = sup.wait(&p, None) => None,
            _ = poll(&p, &probe, state, &*env) => Some(None),
        },
    };
    let ready = seen.is_some();
    let mut offsets: Vec<(StreamKind, u64)> =
        p.output.stats().iter().map(|s| (s.kind, s.total)).collect();
    if let Some(Some((kind, at))) = seen {
        offsets
            .iter_mut()
            .filter(|o| o.0 == kind)
            .for_each(|o| o.1 = at);
    }
    let changed = state.send_if_modified(|r| {
        if r.state != State::Pending {
            return false;
        }
        if ready {
            r.state = State::Ready;
            r.last_error = None;
            r.ready_at = Some(SystemTime::now());
            r.ready_after = Some(p.started.elapsed());
            r.offsets = offsets;
        } else {
            r.state = State::Failed;
        }
        true
    });
    if changed && ready {
        tracing::debug!(id = p.id, "ready");
        sup.emit(LifecycleKind::Ready, &p);
    }
}

/// The checks that run every interval (all but the log probe's): until `successes` in a row.
async fn poll(p: &Process, probe: &Probe, state: &watch::Sender<Readiness>, env: &dyn Environment) {
    tokio::time::sleep(probe.initial_delay).await;
    let mut in_a_row = 0;
    let mut netns = None;
    loop {
        let outcome = check_once(p, probe, env, &mut netns).await;
        match &outcome {
            Ok(()) => in_a_row += 1,
            Err(_) => in_a_row = 0,
        }
        // Counted without waking anyone: waiters care about the state, which has not changed.
        state.send_if_modified(|r| {
            r.checks += 1;
            if let Err(why) = outcome {
                r.last_error = Some(why);
            }
            false
        });
        if in_a_row >= probe.successes {
            return;
        }
        tokio::time::sleep(probe.interval).await;
    }
}

/// One check of a polled probe, within the probe's timeout; the error says why it failed.
/// `netns` keeps where the process's network is once asked (a container's does not move).
async fn check_once(
    p: &Process,
    probe: &Probe,
    env: &dyn Environment,
    netns: &mut Option<Option<PathBuf>>,
) -> Result<(), String> {
    let limit = probe.timeout;
    // "localhost" is the process's own; a named host is dialled from the daemon's network.
    let host = match &probe.check {
        Check::Tcp { host, .. } | Check::Http { host, .. } => host.clone(),
        _ => None,
    };
    let ns = match (&probe.check, &host, &netns) {
        (Check::Tcp { .. } | Check::Http { .. }, None, None) => {
            let found = env.netns().await?;
            *netns = Some(found.clone());
            found
        }
        (_, None, Some(known)) => known.clone(),
        _ => None,
    };
    match &probe.check {
        Check::Tcp { port, .. } => net::check(net::Dial::Tcp, host, *port, ns, limit).await,
        Check::Http { port, path, .. } => {
            let dial = net::Dial::Http { path: path.clone() };
            net::check(dial, host, *port, ns, limit).await
        }
        // Times itself: a command that overstays is killed, not just left behind.
        Check::Exec { argv } => command::run(p, argv, env, limit).await,
        Check::Log { .. } => unreachable!("the log probe reads the output"),
    }
}
