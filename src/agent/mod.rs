//! Agents: named, long-lived interactive programs in their own PTYs, built on the process core.
//! Each agent has one driver task that owns its life (start, exit, backoff, stop, respawn), so
//! everything that happens to one agent happens in order.
mod driver;
mod idle;
pub mod spec;
pub mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot};

use self::driver::Command;
pub use self::idle::IdleOutcome;
use self::spec::{AgentSpec, Kind};
use self::store::{Saved, Store};
use crate::error::{clip_path, quote, Error, Result};
use crate::supervisor::{ExitInfo, Process, Supervisor};

/// Where an agent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Exited,
    Restarting,
    Failed,
    Stopped,
}

/// What happened to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Spawned,
    Idle,
    Busy,
    Exited,
    Restarting,
    Failed,
    Stopped,
    Removed,
}

/// One event, as Watch streams it.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub kind: EventKind,
    pub exit: Option<ExitInfo>,
    pub restart_count: u32,
    pub backoff: Option<Duration>,
    pub pid: u32,
    pub at: SystemTime,
}

/// What a nudge came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NudgeOutcome {
    Delivered,
    NotRunning,
    TimedOut,
}

/// How long to wait between the message and the submit key, so that TUIs see typing, not a paste.
const SUBMIT_DELAY: Duration = Duration::from_millis(150);
/// Events kept for slow watchers before they are told they missed some.
const EVENT_BACKLOG: usize = 1024;

#[derive(Debug, Clone)]
struct State {
    status: Status,
    process: Option<Arc<Process>>,
    restart_count: u32,
    last_exit: Option<ExitInfo>,
    /// Set by the driver as it ends, before the registry lets go of the agent.
    removed: bool,
}

/// One agent.
pub struct Agent {
    pub spec: AgentSpec,
    state: Mutex<State>,
    commands: mpsc::Sender<Command>,
    nudging: tokio::sync::Mutex<()>,
}

/// A snapshot of an agent for callers.
#[derive(Debug, Clone)]
pub struct Info {
    pub spec: AgentSpec,
    pub status: Status,
    pub process: Option<Arc<Process>>,
    pub restart_count: u32,
    pub last_exit: Option<ExitInfo>,
    pub last_activity: Option<SystemTime>,
    pub idle: bool,
    pub uptime: Duration,
}

impl Agent {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current run, if it is running.
    pub fn running(&self) -> Option<Arc<Process>> {
        let s = self.state();
        match (&s.process, s.status) {
            (Some(p), Status::Running) if p.running() => Some(p.clone()),
            _ => None,
        }
    }

    /// The current or last run.
    pub fn process(&self) -> Option<Arc<Process>> {
        self.state().process.clone()
    }
}

/// The registry of agents.
#[derive(Clone)]
pub struct Agents {
    inner: Arc<Inner>,
}

struct Inner {
    sup: Supervisor,
    store: Store,
    agents: Mutex<BTreeMap<String, Arc<Agent>>>,
    events: broadcast::Sender<Event>,
    quiescence: Duration,
    max_agents: usize,
    /// One spawn at a time: the name check, the first run and the store update are one step, so
    /// two spawns of one name cannot both start a program.
    spawning: Mutex<()>,
}

impl Agents {
    /// The registry of a state dir; persisted crew agents come back (stopped ones stay stopped).
    /// A corrupt store is logged and left alone; crew spawns then fail saying why.
    pub fn new(
        sup: Supervisor,
        state_dir: &std::path::Path,
        quiescence: Duration,
        max_agents: usize,
    ) -> Agents {
        let agents = Agents {
            inner: Arc::new(Inner {
                sup,
                store: Store::new(state_dir),
                agents: Mutex::new(BTreeMap::new()),
                events: broadcast::channel(EVENT_BACKLOG).0,
                quiescence,
                max_agents,
                spawning: Mutex::new(()),
            }),
        };
        match agents.inner.store.load() {
            Ok(saved) => {
                for s in saved {
                    if let Err(e) = agents.restore(s.clone()) {
                        tracing::error!(agent = s.spec.name, error = %e, "cannot restore a crew agent");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "persisted agents not loaded"),
        }
        agents
    }

    fn table(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Agent>>> {
        self.inner.agents.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The default quiescence period.
    pub fn quiescence(&self) -> Duration {
        self.inner.quiescence
    }

    fn emit(&self, agent: &Agent, kind: EventKind, f: impl FnOnce(&mut Event)) {
        let s = agent.state();
        let mut ev = Event {
            name: agent.spec.name.clone(),
            kind,
            exit: None,
            restart_count: s.restart_count,
            backoff: None,
            pid: s.process.as_ref().map_or(0, |p| p.pid),
            at: SystemTime::now(),
        };
        drop(s);
        f(&mut ev);
        let _ = self.inner.events.send(ev);
    }

    /// Subscribe to every agent's events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    fn check_paths(spec: &AgentSpec) -> Result<()> {
        if let Some(dir) = &spec.cwd {
            if !dir.is_dir() {
                return Err(Error::invalid(
                    "spec.cwd",
                    format!("{} is not an existing directory", clip_path(dir)),
                ));
            }
        }
        if let Some(f) = &spec.prompt_file {
            if !f.is_file() {
                return Err(Error::invalid(
                    "spec.prompt_file",
                    format!("{} is not an existing file", clip_path(f)),
                ));
            }
        }
        Ok(())
    }

    /// Start a new agent.
    pub fn spawn(&self, spec: AgentSpec) -> Result<Info> {
        Self::check_paths(&spec)?;
        let _one_at_a_time = self
            .inner
            .spawning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        {
            let table = self.table();
            if table.contains_key(&spec.name) {
                return Err(Error::AlreadyExists(format!(
                    "an agent named {} exists; Remove it or choose another name",
                    quote(&spec.name)
                )));
            }
            if table.len() >= self.inner.max_agents {
                return Err(Error::ResourceExhausted(format!(
                    "{} agents exist, the limit; Remove some or raise --max-agents",
                    table.len()
                )));
            }
        }
        let process = driver::start_run(&self.inner.sup, &spec)?;
        if spec.kind == Kind::Crew {
            let saved = Saved {
                spec: spec.clone(),
                stopped: false,
            };
            if let Err(e) = self.inner.store.update(|all| {
                all.retain(|s| s.spec.name != spec.name);
                all.push(saved);
            }) {
                // Not persisted, so not started: the run just begun goes, whole tree and all.
                self.inner.sup.stop(&process, std::time::Duration::ZERO);
                return Err(e);
            }
        }
        let agent = self.insert(spec, Status::Running, Some(process.clone()))?;
        self.emit(&agent, EventKind::Spawned, |_| {});
        idle::monitor(self.clone(), agent.clone(), process);
        Ok(self.info(&agent))
    }

    fn restore(&self, saved: Saved) -> Result<()> {
        let spec = saved.spec;
        if saved.stopped {
            self.insert(spec, Status::Stopped, None)?;
            return Ok(());
        }
        match driver::start_run(&self.inner.sup, &spec) {
            Ok(p) => {
                let agent = self.insert(spec, Status::Running, Some(p.clone()))?;
                self.emit(&agent, EventKind::Spawned, |_| {});
                idle::monitor(self.clone(), agent, p);
            }
            Err(e) => {
                tracing::error!(agent = spec.name, error = %e, "a persisted crew agent did not start");
                self.insert(spec, Status::Failed, None)?;
            }
        }
        Ok(())
    }

    fn insert(
        &self,
        spec: AgentSpec,
        status: Status,
        process: Option<Arc<Process>>,
    ) -> Result<Arc<Agent>> {
        let (tx, rx) = mpsc::channel(16);
        let agent = Arc::new(Agent {
            spec,
            state: Mutex::new(State {
                status,
                process,
                restart_count: 0,
                last_exit: None,
                removed: false,
            }),
            commands: tx,
            nudging: tokio::sync::Mutex::new(()),
        });
        let mut table = self.table();
        if table.contains_key(&agent.spec.name) {
            return Err(Error::AlreadyExists(format!(
                "an agent named {} exists; Remove it or choose another name",
                quote(&agent.spec.name)
            )));
        }
        table.insert(agent.spec.name.clone(), agent.clone());
        drop(table);
        tokio::spawn(driver::drive(self.clone(), agent.clone(), rx));
        Ok(agent)
    }

    /// An agent by name.
    pub fn get(&self, name: &str) -> Result<Arc<Agent>> {
        self.table().get(name).cloned().ok_or_else(|| {
            Error::NotFound(format!(
                "no agent named {}; List shows the agents there are",
                quote(name)
            ))
        })
    }

    /// The run of `agent` after `previous`, once it starts; `None` once the agent will not run
    /// again by itself: a task that exited, a crew agent stopped or failed, or one removed.
    pub async fn next_run(&self, agent: &Arc<Agent>, previous: &Process) -> Option<Arc<Process>> {
        // Subscribed before each look at the state, so no change falls between the two.
        let mut events = self.subscribe();
        loop {
            {
                let s = agent.state();
                if s.removed {
                    return None;
                }
                match (s.status, &s.process) {
                    (Status::Running, Some(p)) if p.id != previous.id => return Some(p.clone()),
                    (Status::Exited | Status::Failed | Status::Stopped, _) => return None,
                    _ => {}
                }
            }
            loop {
                match events.recv().await {
                    Ok(e) if e.name != agent.spec.name => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    }

    /// Every agent, in name order.
    pub fn list(&self) -> Vec<Arc<Agent>> {
        self.table().values().cloned().collect()
    }

    /// A snapshot of an agent.
    pub fn info(&self, agent: &Agent) -> Info {
        let s = agent.state().clone();
        let last = s.process.as_ref().and_then(|p| p.output.last_activity());
        let running =
            matches!(s.status, Status::Running) && s.process.as_ref().is_some_and(|p| p.running());
        let uptime = s
            .process
            .as_ref()
            .map_or(Duration::ZERO, |p| match p.exit() {
                Some(x) => x.wall,
                None => p.started_at.elapsed().unwrap_or_default(),
            });
        // The exit event reaches attachers a moment before the driver records it: report what
        // the driver is about to record rather than a run that is over.
        let ended = s
            .process
            .as_ref()
            .filter(|_| s.status == Status::Running)
            .and_then(|p| p.exit());
        let (status, last_exit) = match ended {
            Some(exit) if agent.spec.kind == Kind::Crew && !self.inner.sup.shutting_down() => {
                (Status::Restarting, Some(exit))
            }
            Some(exit) => (Status::Exited, Some(exit)),
            None => (s.status, s.last_exit.clone()),
        };
        Info {
            spec: agent.spec.clone(),
            status,
            restart_count: s.restart_count,
            last_exit,
            last_activity: last.map(|t| SystemTime::now() - t.elapsed()),
            idle: running && last.is_some_and(|t| t.elapsed() >= self.inner.quiescence),
            uptime,
            process: s.process,
        }
    }

    async fn command(
        &self,
        agent: &Agent,
        make: impl FnOnce(oneshot::Sender<Result<()>>) -> Command,
    ) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        agent.commands.send(make(tx)).await.map_err(|_| {
            Error::NotFound(format!("agent {} was removed", quote(&agent.spec.name)))
        })?;
        rx.await.map_err(|_| {
            Error::NotFound(format!("agent {} was removed", quote(&agent.spec.name)))
        })?
    }

    /// SIGTERM, then SIGKILL after `timeout`; the agent stays stopped.
    pub async fn stop(&self, name: &str, timeout: Duration) -> Result<Info> {
        let agent = self.get(name)?;
        self.command(&agent, |reply| Command::Stop { timeout, reply })
            .await?;
        Ok(self.info(&agent))
    }

    /// Restart by hand.
    pub async fn respawn(&self, name: &str) -> Result<Info> {
        let agent = self.get(name)?;
        self.command(&agent, |reply| Command::Respawn { reply })
            .await?;
        Ok(self.info(&agent))
    }

    /// Stop and forget.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let agent = self.get(name)?;
        let result = self
            .command(&agent, |reply| Command::Remove { reply })
            .await;
        // The driver has ended either way (only the store update can have failed): the agent
        // is gone, and its name free.
        let mut table = self.table();
        if table.get(name).is_some_and(|a| Arc::ptr_eq(a, &agent)) {
            table.remove(name);
        }
        result
    }

    /// Wait until the agent is idle.
    pub async fn wait_idle(
        &self,
        name: &str,
        quiescence: Duration,
        timeout: Duration,
    ) -> Result<IdleOutcome> {
        let agent = self.get(name)?;
        Ok(idle::wait(&agent, quiescence, timeout).await)
    }

    /// Type `message` (then the submit key) into the agent's PTY.
    pub async fn nudge(
        &self,
        name: &str,
        message: &str,
        wait_idle: Option<Duration>,
        submit: bool,
    ) -> Result<NudgeOutcome> {
        let agent = self.get(name)?;
        // One nudge at a time per agent: two must not interleave their text and Enter.
        let _turn = agent.nudging.lock().await;
        if let Some(timeout) = wait_idle {
            match idle::wait(&agent, self.inner.quiescence, timeout).await {
                IdleOutcome::Idle => {}
                IdleOutcome::TimedOut => return Ok(NudgeOutcome::TimedOut),
                IdleOutcome::NotRunning => return Ok(NudgeOutcome::NotRunning),
            }
        }
        let Some(p) = agent.running() else {
            return Ok(NudgeOutcome::NotRunning);
        };
        if p.send_input(message.as_bytes().to_vec()).is_err() {
            return Ok(NudgeOutcome::NotRunning);
        }
        if submit {
            tokio::time::sleep(SUBMIT_DELAY).await;
            // The submit key is a carriage return, as a terminal sends for Enter.
            let _ = p.send_input(b"\r".to_vec());
        }
        Ok(NudgeOutcome::Delivered)
    }
}
