//! Idleness: an agent is idle when its PTY has written nothing for the quiescence period, and
//! never before its first output.
use std::sync::Arc;
use std::time::Duration;

use super::{Agent, Agents, EventKind};
use crate::supervisor::Process;

/// What waiting for idle came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleOutcome {
    Idle,
    TimedOut,
    NotRunning,
}

/// Wait until the agent's current run is idle, or `timeout` passes.
pub async fn wait(agent: &Agent, quiescence: Duration, timeout: Duration) -> IdleOutcome {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let Some(p) = agent.running() else {
            return IdleOutcome::NotRunning;
        };
        let mut changed = p.output.subscribe();
        changed.borrow_and_update();
        let quiet_for = p.output.last_activity().map(|t| t.elapsed());
        if quiet_for.is_some_and(|q| q >= quiescence) {
            return IdleOutcome::Idle;
        }
        if tokio::time::Instant::now() >= deadline {
            return IdleOutcome::TimedOut;
        }
        match quiet_for {
            // Nothing written yet: wait for the first output (or the exit).
            None => {
                let _ = tokio::time::timeout_at(deadline, changed.changed()).await;
            }
            Some(q) => {
                let until = (tokio::time::Instant::now() + (quiescence - q)).min(deadline);
                tokio::time::sleep_until(until).await;
            }
        }
    }
}

/// Emit idle and busy events for one run until it exits.
pub fn monitor(agents: Agents, agent: Arc<Agent>, p: Arc<Process>) {
    tokio::spawn(async move {
        let q = agents.quiescence();
        let mut changed = p.output.subscribe();
        let mut idle = false;
        loop {
            changed.borrow_and_update();
            if !p.running() {
                return;
            }
            match p.output.last_activity().map(|t| t.elapsed()) {
                None => {
                    if changed.changed().await.is_err() {
                        return;
                    }
                }
                Some(quiet) if quiet >= q => {
                    if !idle {
                        idle = true;
                        agents.emit(&agent, EventKind::Idle, |_| {});
                    }
                    if changed.changed().await.is_err() {
                        return;
                    }
                }
                Some(quiet) => {
                    if idle {
                        idle = false;
                        agents.emit(&agent, EventKind::Busy, |_| {});
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(q - quiet) => {}
                        r = changed.changed() => if r.is_err() { return },
                    }
                }
            }
        }
    });
}
