//! The driver of one agent: the only place its runs start and end. Commands (stop, respawn,
//! remove) arrive on a channel and are handled between events, so restarts never overlap.
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::spec::{AgentSpec, Kind};
use super::{idle, Agent, Agents, EventKind, Status};
use crate::error::Result;
use crate::supervisor::spec::{Spec, NATIVE};
use crate::supervisor::{Process, Supervisor};

/// What a client asks of an agent.
pub enum Command {
    Stop {
        timeout: Duration,
        reply: oneshot::Sender<Result<()>>,
    },
    Respawn {
        reply: oneshot::Sender<Result<()>>,
    },
    Remove {
        reply: oneshot::Sender<Result<()>>,
    },
}

/// How long Respawn and Remove give a running agent between SIGTERM and SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Tag that marks an agent's processes in ProcessService.
pub const AGENT_TAG: &str = "tend.agent";

/// Start one run of an agent.
pub fn start_run(sup: &Supervisor, spec: &AgentSpec) -> Result<Arc<Process>> {
    let mut env = spec.env.clone();
    env.insert("TEND_AGENT".into(), spec.name.clone());
    if let Some(f) = &spec.prompt_file {
        env.insert("TEND_PROMPT_FILE".into(), f.display().to_string());
    }
    let mut tags = spec.tags.clone();
    tags.insert(AGENT_TAG.to_string(), spec.name.clone());
    sup.start(Spec {
        argv: spec.argv.clone(),
        env,
        cwd: spec.cwd.clone(),
        tags,
        pty: Some(spec.size()),
        environment: if spec.environment.is_empty() {
            NATIVE.to_string()
        } else {
            spec.environment.clone()
        },
        ..Spec::default()
    })
}

enum Phase {
    Running(Arc<Process>, Instant),
    Backoff(tokio::time::Instant),
    Parked,
}

/// Run the agent's life until it is removed.
pub async fn drive(agents: Agents, agent: Arc<Agent>, mut commands: mpsc::Receiver<Command>) {
    let sup = agents.inner.sup.clone();
    let mut phase = match agent.process() {
        Some(p) if agent.state().status == Status::Running => Phase::Running(p, Instant::now()),
        _ => Phase::Parked,
    };
    // Quick exits in a row; a run longer than the stable period resets it.
    let mut quick_exits = 0u32;
    let policy = agent.spec.policy;
    loop {
        let cmd = match &phase {
            Phase::Running(p, started) => {
                let p = p.clone();
                tokio::select! {
                    _ = sup.wait(&p, None) => {
                        let exit = p.exit();
                        // A shutdown is the daemon stopping everything, not a crash to recover
                        // from. The status is set before the event, so that whoever reacts to
                        // the event (an attacher waiting for the next run) sees the outcome.
                        let parks = sup.shutting_down() || agent.spec.kind == Kind::Task;
                        {
                            let mut s = agent.state();
                            s.last_exit = exit.clone();
                            if parks {
                                s.status = Status::Exited;
                            }
                        }
                        agents.emit(&agent, EventKind::Exited, |e| e.exit = exit);
                        if parks {
                            phase = Phase::Parked;
                            continue;
                        }
                        if started.elapsed() >= Duration::from_millis(policy.stable_after_ms) {
                            quick_exits = 0;
                        }
                        quick_exits += 1;
                        phase = backoff_or_fail(&agents, &agent, quick_exits);
                        continue;
                    }
                    cmd = commands.recv() => cmd,
                }
            }
            Phase::Backoff(deadline) => {
                let deadline = *deadline;
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {
                        if sup.shutting_down() {
                            // A restart now would only fail and count towards the start limit.
                            agent.state().status = Status::Exited;
                            phase = Phase::Parked;
                            continue;
                        }
                        agent.state().restart_count += 1;
                        phase = match run(&agents, &agent) {
                            Ok(p) => Phase::Running(p, Instant::now()),
                            Err(e) => {
                                tracing::warn!(agent = agent.spec.name, error = %e, "restart failed");
                                quick_exits += 1;
                                backoff_or_fail(&agents, &agent, quick_exits)
                            }
                        };
                        continue;
                    }
                    cmd = commands.recv() => cmd,
                }
            }
            Phase::Parked => commands.recv().await,
        };
        let Some(cmd) = cmd else { return };
        match cmd {
            Command::Stop { timeout, reply } => {
                if let Phase::Running(p, _) = &phase {
                    stop_run(&agents, &agent, p, timeout).await;
                }
                agent.state().status = Status::Stopped;
                phase = Phase::Parked;
                persist_stopped(&agents, &agent, true);
                agents.emit(&agent, EventKind::Stopped, |_| {});
                let _ = reply.send(Ok(()));
            }
            Command::Respawn { reply } => {
                if let Phase::Running(p, _) = &phase {
                    stop_run(&agents, &agent, p, STOP_TIMEOUT).await;
                }
                quick_exits = 0;
                agent.state().restart_count += 1;
                match run(&agents, &agent) {
                    Ok(p) => {
                        phase = Phase::Running(p, Instant::now());
                        persist_stopped(&agents, &agent, false);
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        agent.state().status = Status::Failed;
                        phase = Phase::Parked;
                        agents.emit(&agent, EventKind::Failed, |_| {});
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Remove { reply } => {
                if let Phase::Running(p, _) = &phase {
                    stop_run(&agents, &agent, p, STOP_TIMEOUT).await;
                }
                if let Some(p) = agent.process() {
                    let _ = sup.remove(&p.id, true).await;
                }
                let name = agent.spec.name.clone();
                let result = if agent.spec.kind == Kind::Crew {
                    agents
                        .inner
                        .store
                        .update(|all| all.retain(|s| s.spec.name != name))
                } else {
                    Ok(())
                };
                agent.state().removed = true;
                agents.emit(&agent, EventKind::Removed, |_| {});
                let _ = reply.send(result);
                return;
            }
        }
    }
}

/// After a quick exit: wait out the backoff, or give up at the start limit.
fn backoff_or_fail(agents: &Agents, agent: &Arc<Agent>, quick_exits: u32) -> Phase {
    let policy = agent.spec.policy;
    if quick_exits > policy.start_limit {
        agent.state().status = Status::Failed;
        agents.emit(agent, EventKind::Failed, |_| {});
        tracing::warn!(
            agent = agent.spec.name,
            quick_exits,
            "start limit reached; marked failed"
        );
        return Phase::Parked;
    }
    let wait = policy.backoff(quick_exits, rand::random::<f64>());
    agent.state().status = Status::Restarting;
    agents.emit(agent, EventKind::Restarting, |e| e.backoff = Some(wait));
    Phase::Backoff(tokio::time::Instant::now() + wait)
}

/// Start a new run, replacing the previous one in the process table.
fn run(agents: &Agents, agent: &Arc<Agent>) -> Result<Arc<Process>> {
    let sup = &agents.inner.sup;
    let p = start_run(sup, &agent.spec)?;
    let previous = {
        let mut s = agent.state();
        s.status = Status::Running;
        s.process.replace(p.clone())
    };
    if let Some(old) = previous {
        let sup = sup.clone();
        tokio::spawn(async move {
            let _ = sup.remove(&old.id, true).await;
        });
    }
    agents.emit(agent, EventKind::Spawned, |_| {});
    idle::monitor(agents.clone(), agent.clone(), p.clone());
    Ok(p)
}

/// End a run by hand: SIGTERM and SIGHUP to its group and cgroup, SIGKILL to everything it
/// started after `timeout` (the supervisor's `terminate`); then record and announce the exit,
/// as for any other.
///
/// SIGHUP is a terminal hangup: interactive shells and REPLs ignore SIGTERM but end on it, and an
/// agent's terminal is going away (`terminate` sends it to PTY processes, as every agent is).
async fn stop_run(agents: &Agents, agent: &Agent, p: &Arc<Process>, timeout: Duration) {
    if p.running() {
        agents.inner.sup.terminate(p, timeout).await;
    }
    let exit = p.exit();
    agent.state().last_exit = exit.clone();
    agents.emit(agent, EventKind::Exited, |e| e.exit = exit);
}

fn persist_stopped(agents: &Agents, agent: &Agent, stopped: bool) {
    if agent.spec.kind != Kind::Crew {
        return;
    }
    let name = &agent.spec.name;
    let result = agents.inner.store.update(|all| {
        for s in all.iter_mut().filter(|s| &s.spec.name == name) {
            s.stopped = stopped;
        }
    });
    if let Err(e) = result {
        tracing::error!(agent = name, error = %e, "cannot persist the agent's state");
    }
}
