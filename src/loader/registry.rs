//! The plugin table and the life of each plugin: `Loader` (load, unload, list, get, the channel
//! to a plugin, events, shutdown), and one driver task per plugin, the only place its runs start
//! and end (as an agent's, `agent/driver.rs`): the first launch, exits, the restart policy's
//! backoff, and Unload's stages.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tonic::transport::Channel;

use super::handshake::{Dialect, Handshake};
use super::launch::{self, stderr_tail, Launched, EVENT_STDERR_TAIL};
use super::spec::PluginSpec;
use super::store::{Progress, Stores};
use crate::error::{quote, Error, Result};
use crate::supervisor::{ExitInfo, Process, Supervisor};

/// Plugins loaded at once, in any state; a Load beyond it is `ResourceExhausted`.
pub const MAX_PLUGINS: usize = 64;
/// Events buffered for watchers; a slower one gets LAGGED.
const EVENTS: usize = 256;
/// How long a plugin that was asked to shut down may take to answer the request itself.
const SHUTDOWN_CALL: Duration = Duration::from_secs(1);
/// What every plugin token starts with. The prefix lets a listener tell a plugin's token from
/// the daemon's (hex, no prefix) without a table: a `tp_` token that no loaded plugin holds is
/// refused as a stale plugin token, never mistaken for a wrong daemon token.
pub const PLUGIN_TOKEN_PREFIX: &str = "tp_";
/// The tag that marks what a plugin started through its callbacks (value: the plugin's name);
/// Unload stops and removes what carries it, once the plugin itself is stopped.
pub const OWNER_TAG: &str = "tend.plugin.owner";
/// Tokens of unloaded plugins remembered, to name the plugin in the refusal of a late call; an
/// older one is refused all the same, only without the name.
const RETIRED_TOKENS: usize = 1024;

/// Where a plugin is in its life (`PluginState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Serving,
    Exited,
    Restarting,
    Failed,
    Unloaded,
}

/// How an Unload ended the plugin (`UnloadStage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnloadStage {
    NotRunning,
    Shutdown,
    Sigterm,
    Sigkill,
}

impl State {
    fn starting() -> State {
        State {
            status: Status::Starting,
            process: None,
            binary_path: None,
            handshake: None,
            handshake_line: String::new(),
            services: Vec::new(),
            version: String::new(),
            native: false,
            serving_since: None,
            restart_count: 0,
            last_exit: None,
            last_error: String::new(),
            channel: None,
            socket_dir: None,
        }
    }
}

/// What the loader knows of a plugin beyond its spec.
#[derive(Clone)]
pub struct State {
    pub status: Status,
    /// The current (or last) run.
    pub process: Option<Arc<Process>>,
    pub binary_path: Option<PathBuf>,
    pub handshake: Option<Handshake>,
    /// As printed, clipped to 1024 bytes.
    pub handshake_line: String,
    pub services: Vec<String>,
    pub version: String,
    /// It serves `tend.v1.PluginService`.
    pub native: bool,
    pub serving_since: Option<SystemTime>,
    pub restart_count: u32,
    pub last_exit: Option<ExitInfo>,
    pub last_error: String,
    /// To the current run, while it serves.
    pub channel: Option<Channel>,
    /// The current run's socket directory, removed when the run ends.
    pub socket_dir: Option<PathBuf>,
}

/// A plugin as the loader holds it.
pub struct Plugin {
    pub spec: PluginSpec,
    /// Given to the plugin as TEND_TOKEN, for its calls back into the daemon.
    pub(super) token: String,
    state: Mutex<State>,
    /// The current run, for readers that follow the plugin across restarts; `None` once it will
    /// not run again.
    run: watch::Sender<Option<Arc<Process>>>,
    commands: mpsc::Sender<Command>,
}

impl Plugin {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current (or last) run.
    pub fn process(&self) -> Option<Arc<Process>> {
        self.state().process.clone()
    }

    /// Its run started: recorded at once, so that an Unload finds it.
    pub(super) fn started(&self, p: Arc<Process>) {
        self.state().process = Some(p.clone());
        self.run.send_replace(Some(p));
    }

    /// A snapshot.
    pub fn info(&self) -> Info {
        Info {
            spec: self.spec.clone(),
            state: self.state().clone(),
        }
    }
}

/// A plugin as described to clients.
#[derive(Clone)]
pub struct Info {
    pub spec: PluginSpec,
    pub state: State,
}

/// Kinds of plugin events (`PluginEventKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Loaded,
    Exited,
    Restarting,
    Restarted,
    Failed,
    Unloaded,
    /// A Load by package installs it.
    Installing,
}

/// One event of one plugin.
#[derive(Clone)]
pub struct Event {
    pub name: String,
    pub kind: EventKind,
    pub info: Info,
    pub exit: Option<ExitInfo>,
    pub stderr_tail: String,
    pub backoff: Option<Duration>,
    pub error: String,
    pub at: SystemTime,
    /// INSTALLING: the install's progress.
    pub install: Option<Progress>,
}

enum Command {
    Unload {
        grace: Duration,
        reply: oneshot::Sender<UnloadStage>,
    },
}

/// The plugin table.
#[derive(Clone)]
pub struct Loader {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) sup: Supervisor,
    /// The daemon's unix socket, given to plugins as TEND_ADDR.
    pub(super) host_socket: PathBuf,
    /// Where plugin socket directories are made.
    pub(super) socket_root: PathBuf,
    grace: Duration,
    max: usize,
    /// The daemon's agents, for removing those a plugin spawned when it is unloaded.
    agents: std::sync::OnceLock<crate::agent::Agents>,
    plugins: Mutex<BTreeMap<String, Arc<Plugin>>>,
    /// (token, plugin name) of unloaded plugins, newest last, at most `RETIRED_TOKENS`.
    retired: Mutex<std::collections::VecDeque<(String, String)>>,
    events: broadcast::Sender<Event>,
    shutting_down: AtomicBool,
    stores: std::sync::OnceLock<Arc<Stores>>,
}

/// The directory plugin socket directories go in: `<state_dir>/p` when a socket path under it
/// stays short, else `/tmp/tend-<uid>-p` (socket paths are limited to 107 bytes).
fn socket_root(state_dir: &Path) -> PathBuf {
    let under_state = state_dir.join("p");
    // "/p0123abcd/" and a socket name.
    if under_state.as_os_str().len() + 11 + 32 <= super::handshake::UNIX_PATH_MAX {
        return under_state;
    }
    // SAFETY: geteuid(2) cannot fail.
    PathBuf::from(format!("/tmp/tend-{}-p", unsafe { libc::geteuid() }))
}

impl Loader {
    /// A loader starting plugins through `sup`, telling them the daemon listens on
    /// `host_socket`; Unload's default grace is `grace`. Socket directories a crashed daemon
    /// left in the state dir are removed.
    pub fn new(sup: Supervisor, state_dir: &Path, host_socket: &Path, grace: Duration) -> Loader {
        let socket_root = socket_root(state_dir);
        if socket_root.starts_with(state_dir) {
            // Only this daemon uses its state dir: whatever is there is a dead daemon's.
            let _ = std::fs::remove_dir_all(&socket_root);
        }
        Loader {
            inner: Arc::new(Inner {
                sup,
                host_socket: host_socket.to_path_buf(),
                socket_root,
                grace,
                max: MAX_PLUGINS,
                agents: std::sync::OnceLock::new(),
                plugins: Mutex::new(BTreeMap::new()),
                retired: Mutex::new(std::collections::VecDeque::new()),
                events: broadcast::channel(EVENTS).0,
                shutting_down: AtomicBool::new(false),
                stores: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The daemon's agents: those a plugin spawns are removed when it is unloaded.
    pub fn set_agents(&self, agents: crate::agent::Agents) {
        let _ = self.inner.agents.set(agents);
    }

    fn table(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Plugin>>> {
        self.inner.plugins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The daemon's plugin stores. Set once, at start-up.
    pub fn set_stores(&self, stores: Arc<Stores>) {
        let _ = self.inner.stores.set(stores);
    }

    /// The daemon's plugin stores.
    pub fn stores(&self) -> Result<Arc<Stores>> {
        self.inner
            .stores
            .get()
            .cloned()
            .ok_or_else(|| Error::FailedPrecondition("this daemon has no plugin stores".into()))
    }

    /// Start a plugin and wait until it serves (or fails to). A spec naming a package is
    /// resolved and installed first, its progress on Watch as INSTALLING events.
    pub async fn load(&self, mut spec: PluginSpec) -> Result<Info> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(Error::Unavailable(
                "the daemon is shutting down; load the plugin on another daemon".into(),
            ));
        }
        if let Some((package, want)) = spec.package.clone() {
            if self.table().contains_key(&spec.name) {
                return Err(Error::AlreadyExists(format!(
                    "a plugin named {} is loaded; unload it first, or choose another name",
                    quote(&spec.name)
                )));
            }
            let stores = self.stores()?;
            let info = Info {
                spec: spec.clone(),
                state: State::starting(),
            };
            let report = |progress: Progress| {
                let _ = self.inner.events.send(Event {
                    name: info.spec.name.clone(),
                    kind: EventKind::Installing,
                    info: info.clone(),
                    exit: None,
                    stderr_tail: String::new(),
                    backoff: None,
                    error: String::new(),
                    at: SystemTime::now(),
                    install: Some(progress),
                });
            };
            let installed = stores.install(&package, &want, &report).await?;
            let path = installed.path.unwrap_or_default();
            spec.binary = path.display().to_string();
        }
        let (commands, received) = mpsc::channel(4);
        let name = spec.name.clone();
        let plugin = Arc::new(Plugin {
            spec,
            token: format!("{PLUGIN_TOKEN_PREFIX}{:032x}", rand::random::<u128>()),
            state: Mutex::new(State::starting()),
            run: watch::channel(None).0,
            commands,
        });
        {
            let mut table = self.table();
            if let Some(p) = table.get(&name) {
                return Err(Error::AlreadyExists(format!(
                    "a plugin named {} is loaded ({:?}); unload it first, or choose another name",
                    quote(&name),
                    p.state().status
                )));
            }
            if table.len() >= self.inner.max {
                return Err(Error::ResourceExhausted(format!(
                    "{} plugins are loaded, the limit; unload some first",
                    table.len()
                )));
            }
            table.insert(name, plugin.clone());
        }
        let (first, loaded) = oneshot::channel();
        tokio::spawn(drive(self.clone(), plugin.clone(), received, first));
        loaded
            .await
            .map_err(|_| Error::Internal("the plugin's driver ended".into()))??;
        Ok(plugin.info())
    }

    /// Stop a plugin in stages (Shutdown, SIGTERM at half of `grace`, SIGKILL at `grace`;
    /// `None`: its spec's, else the daemon's) and forget it.
    pub async fn unload(&self, name: &str, grace: Option<Duration>) -> Result<(Info, UnloadStage)> {
        let plugin = self.plugin(name)?;
        let grace = grace
            .or(plugin
                .spec
                .unload_grace_ms
                .map(|ms| Duration::from_millis(ms.into())))
            .unwrap_or(self.inner.grace);
        let (reply, stage) = oneshot::channel();
        let gone = || Error::NotFound(format!("plugin {} is being unloaded", quote(name)));
        plugin
            .commands
            .send(Command::Unload { grace, reply })
            .await
            .map_err(|_| gone())?;
        let stage = stage.await.map_err(|_| gone())?;
        Ok((plugin.info(), stage))
    }

    /// A plugin by name.
    pub fn plugin(&self, name: &str) -> Result<Arc<Plugin>> {
        self.table().get(name).cloned().ok_or_else(|| {
            Error::NotFound(format!(
                "no plugin {} is loaded; List shows the loaded ones",
                quote(name)
            ))
        })
    }

    /// A plugin, described.
    pub fn get(&self, name: &str) -> Result<Info> {
        Ok(self.plugin(name)?.info())
    }

    /// Every plugin, in name order.
    pub fn list(&self) -> Vec<Info> {
        let plugins: Vec<Arc<Plugin>> = self.table().values().cloned().collect();
        plugins.iter().map(|p| p.info()).collect()
    }

    /// The channel to a plugin that serves, for calls forwarded to it (`tend-plugin: <name>`).
    /// NotFound when no such plugin is loaded; Unavailable while it is not SERVING (starting,
    /// restarting, exited).
    pub fn channel(&self, name: &str) -> Result<Channel> {
        let plugin = self.plugin(name)?;
        let s = plugin.state();
        match (&s.channel, s.status) {
            (Some(ch), Status::Serving) => Ok(ch.clone()),
            (_, status) => Err(Error::Unavailable(format!(
                "plugin {} is not serving ({status:?}){}",
                quote(name),
                if s.last_error.is_empty() {
                    String::new()
                } else {
                    format!(": {}", s.last_error)
                }
            ))),
        }
    }

    /// The plugin a TEND_TOKEN was given to, while it is loaded.
    pub fn by_token(&self, token: &str) -> Option<String> {
        self.table()
            .values()
            .find(|p| p.token == token)
            .map(|p| p.spec.name.clone())
    }

    /// The plugin a TEND_TOKEN was given to, once it is unloaded (among the last
    /// `RETIRED_TOKENS`).
    pub fn retired_token(&self, token: &str) -> Option<String> {
        let retired = self.inner.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired
            .iter()
            .rev()
            .find(|(t, _)| t == token)
            .map(|(_, name)| name.clone())
    }

    /// Plugin events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The run after `current` once it starts; `None` once the plugin will not run again
    /// (unloaded, EXITED, FAILED).
    pub async fn next_run(&self, plugin: &Plugin, current: &Arc<Process>) -> Option<Arc<Process>> {
        let mut runs = plugin.run.subscribe();
        let next = runs
            .wait_for(|r| r.as_ref().is_none_or(|p| !Arc::ptr_eq(p, current)))
            .await
            .ok()?
            .clone();
        next
    }

    /// The current run, or the one after, or `None` once it will not run again.
    pub fn current_run(&self, plugin: &Plugin) -> Option<Arc<Process>> {
        plugin.run.borrow().clone()
    }

    /// Unload every plugin, in stages, within `grace`; Loads are refused from now on.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutting_down.store(true, Ordering::Release);
        let names: Vec<String> = self.table().keys().cloned().collect();
        futures_util::future::join_all(names.iter().map(|n| self.unload(n, Some(grace)))).await;
    }

    fn emit(&self, plugin: &Plugin, kind: EventKind, fill: impl FnOnce(&mut Event)) {
        let mut e = Event {
            name: plugin.spec.name.clone(),
            kind,
            info: plugin.info(),
            exit: None,
            stderr_tail: String::new(),
            backoff: None,
            error: String::new(),
            at: SystemTime::now(),
            install: None,
        };
        fill(&mut e);
        let _ = self.inner.events.send(e);
    }

    /// Out of the table, and its token with it: calls with the token are refused from now on.
    fn forget(&self, plugin: &Arc<Plugin>) {
        let mut table = self.table();
        if table
            .get(&plugin.spec.name)
            .is_some_and(|p| Arc::ptr_eq(p, plugin))
        {
            table.remove(&plugin.spec.name);
            let mut retired = self.inner.retired.lock().unwrap_or_else(|e| e.into_inner());
            if retired.len() >= RETIRED_TOKENS {
                retired.pop_front();
            }
            retired.push_back((plugin.token.clone(), plugin.spec.name.clone()));
        }
    }

    /// Stop and remove what the plugin started through its callbacks (tagged `OWNER_TAG`):
    /// SIGTERM to each group, SIGKILL after `grace`, all at once; then out of ProcessService.
    /// Called once its token no longer works, so that nothing new is tagged meanwhile (a
    /// plugin loaded again under the same name has not handshaken yet, let alone called back).
    /// Agents first: a crew agent would restart a run stopped under it.
    async fn remove_owned(&self, name: &str, grace: Duration) {
        let owned = |tags: &BTreeMap<String, String>| {
            tags.get(OWNER_TAG).is_some_and(|owner| owner == name)
        };
        if let Some(agents) = self.inner.agents.get() {
            let theirs: Vec<String> = agents
                .list()
                .iter()
                .filter(|a| owned(&a.spec.tags))
                .map(|a| a.spec.name.clone())
                .collect();
            futures_util::future::join_all(theirs.iter().map(|a| agents.remove(a))).await;
        }
        let sup = &self.inner.sup;
        let filter = crate::supervisor::ListFilter {
            tags: [(OWNER_TAG.to_string(), name.to_string())].into(),
            ..Default::default()
        };
        let owned = sup.list(&filter);
        if owned.is_empty() {
            return;
        }
        tracing::info!(
            plugin = name,
            count = owned.len(),
            "stopping what the plugin started"
        );
        futures_util::future::join_all(owned.iter().map(|p| async move {
            if p.running() {
                sup.terminate(p, grace).await;
            }
            let _ = sup.remove(&p.id, true).await;
        }))
        .await;
    }

    fn stopping(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire) || self.inner.sup.shutting_down()
    }
}

enum Phase {
    Launch,
    Running(Arc<Process>, Instant),
    Backoff(tokio::time::Instant),
    Parked,
}

/// The life of one plugin, until it is unloaded (or its first launch fails, which `first`
/// reports).
async fn drive(
    loader: Loader,
    plugin: Arc<Plugin>,
    mut commands: mpsc::Receiver<Command>,
    first: oneshot::Sender<Result<()>>,
) {
    let sup = loader.inner.sup.clone();
    let mut first = Some(first);
    let mut phase = Phase::Launch;
    // Quick exits in a row; a run longer than the policy's stable period resets it.
    let mut quick_exits = 0u32;
    loop {
        let cmd = match &phase {
            Phase::Launch => {
                tokio::select! {
                    r = launch::launch(&loader.inner, &plugin) => {
                        phase = match r {
                            Ok(l) => {
                                let p = l.process.clone();
                                serving(&plugin, l);
                                if first.take().map(|tx| tx.send(Ok(()))).is_some() {
                                    loader.emit(&plugin, EventKind::Loaded, |_| {});
                                } else {
                                    loader.emit(&plugin, EventKind::Restarted, |_| {});
                                }
                                Phase::Running(p, Instant::now())
                            }
                            Err(e) => {
                                end_run(&loader, &plugin).await;
                                if let Some(tx) = first.take() {
                                    loader.forget(&plugin);
                                    plugin.run.send_replace(None);
                                    let _ = tx.send(Err(e));
                                    return;
                                }
                                let error = format!("a restart failed to load: {e}");
                                fail(&loader, &plugin, error);
                                Phase::Parked
                            }
                        };
                        continue;
                    }
                    cmd = commands.recv() => cmd,
                }
            }
            Phase::Running(p, started) => {
                let p = p.clone();
                tokio::select! {
                    _ = sup.wait(&p, None) => {
                        let exit = p.exit();
                        let tail = stderr_tail(&p, EVENT_STDERR_TAIL as u64);
                        end_run(&loader, &plugin).await;
                        let restarts = plugin.spec.restart.filter(|_| !loader.stopping());
                        {
                            let mut s = plugin.state();
                            s.last_exit = exit.clone();
                            if restarts.is_none() {
                                s.status = Status::Exited;
                            }
                        }
                        loader.emit(&plugin, EventKind::Exited, |e| {
                            e.exit = exit;
                            e.stderr_tail = tail;
                        });
                        let Some(policy) = restarts else {
                            plugin.run.send_replace(None);
                            phase = Phase::Parked;
                            continue;
                        };
                        if started.elapsed() >= Duration::from_millis(policy.stable_after_ms) {
                            quick_exits = 0;
                        }
                        quick_exits += 1;
                        if quick_exits > policy.start_limit {
                            fail(&loader, &plugin, format!(
                                "it exited {quick_exits} times in a row, each within {} ms of its \
                                 start: the restart policy's start limit ({}); Unload and Load it \
                                 again once fixed",
                                policy.stable_after_ms, policy.start_limit
                            ));
                            phase = Phase::Parked;
                            continue;
                        }
                        let wait = policy.backoff(quick_exits, rand::random::<f64>());
                        plugin.state().status = Status::Restarting;
                        loader.emit(&plugin, EventKind::Restarting, |e| e.backoff = Some(wait));
                        phase = Phase::Backoff(tokio::time::Instant::now() + wait);
                        continue;
                    }
                    cmd = commands.recv() => cmd,
                }
            }
            Phase::Backoff(deadline) => {
                let deadline = *deadline;
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {
                        if loader.stopping() {
                            plugin.state().status = Status::Exited;
                            plugin.run.send_replace(None);
                            phase = Phase::Parked;
                            continue;
                        }
                        {
                            let mut s = plugin.state();
                            s.restart_count += 1;
                            s.status = Status::Starting;
                        }
                        // The previous run leaves ProcessService, as an agent's does.
                        if let Some(old) = plugin.state().process.clone() {
                            let sup = sup.clone();
                            tokio::spawn(async move { let _ = sup.remove(&old.id, true).await; });
                        }
                        phase = Phase::Launch;
                        continue;
                    }
                    cmd = commands.recv() => cmd,
                }
            }
            Phase::Parked => commands.recv().await,
        };
        let Some(Command::Unload { grace, reply }) = cmd else {
            return;
        };
        // The plugin first (its token still works while it shuts down, so it may clean up
        // through the host itself), then what it started, which it can no longer restart.
        let t0 = Instant::now();
        let stage = stop(&loader, &plugin, grace).await;
        let stopped = t0.elapsed();
        end_run(&loader, &plugin).await;
        tracing::debug!(
            plugin = plugin.spec.name,
            ?stage,
            stop_us = stopped.as_micros() as u64,
            end_run_us = t0.elapsed().as_micros() as u64,
            "plugin unloaded"
        );
        loader.forget(&plugin);
        loader.remove_owned(&plugin.spec.name, grace).await;
        plugin.run.send_replace(None);
        {
            let mut s = plugin.state();
            s.status = Status::Unloaded;
            if let Some(p) = &s.process {
                s.last_exit = p.exit();
            }
        }
        match first.take() {
            // Still loading: that Load fails; it never served, so nothing was loaded to
            // announce as unloaded.
            Some(tx) => {
                let _ = tx.send(Err(Error::Aborted(format!(
                    "plugin {} was unloaded while it loaded",
                    quote(&plugin.spec.name)
                ))));
            }
            None => loader.emit(&plugin, EventKind::Unloaded, |_| {}),
        }
        let _ = reply.send(stage);
        return;
    }
}

/// A launched run serves: recorded.
fn serving(plugin: &Plugin, l: Launched) {
    let mut s = plugin.state();
    s.status = Status::Serving;
    s.handshake = Some(l.handshake);
    s.channel = Some(l.channel);
    s.services = l.services;
    s.version = l.version;
    s.native = l.native;
    s.serving_since = Some(SystemTime::now());
    s.last_error.clear();
}

/// The plugin will not run again.
fn fail(loader: &Loader, plugin: &Plugin, error: String) {
    tracing::warn!(plugin = plugin.spec.name, error, "plugin failed");
    {
        let mut s = plugin.state();
        s.status = Status::Failed;
        s.last_error = error.clone();
    }
    plugin.run.send_replace(None);
    loader.emit(plugin, EventKind::Failed, |e| e.error = error);
}

/// What a run leaves once it is over (or abandoned): its process group killed if anything of
/// it still runs, its channel dropped, its socket directory removed.
async fn end_run(loader: &Loader, plugin: &Plugin) {
    let (p, dir) = {
        let mut s = plugin.state();
        s.channel = None;
        s.serving_since = None;
        (s.process.clone(), s.socket_dir.take())
    };
    match p {
        Some(p) if p.running() => loader.inner.sup.terminate(&p, Duration::ZERO).await,
        // What its leader left in its group (refused, harmlessly, when nothing is left).
        Some(p) => {
            let _ = loader.inner.sup.signal(&p, libc::SIGKILL, false).await;
        }
        None => {}
    }
    if let Some(dir) = dir {
        // A plugin that stopped by itself has removed its socket, and an empty directory goes
        // with one rmdir, here: a trip to the blocking pool costs more (100 to 300 µs on two
        // busy cores), and an Unload answers only after it. What a plugin left in it (a killed
        // one's socket, its temporary files: it is the plugin's TMPDIR) is removed off the
        // async workers.
        if std::fs::remove_dir(&dir).is_err() {
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        }
    }
}

/// Unload's stages for the current run: ask it to shut down (PluginService.Shutdown for a
/// tend-native plugin, GRPCController.Shutdown for a go-plugin one), SIGTERM its group at half
/// the grace period if it still runs (at once when it could not be asked), SIGKILL at the grace
/// period.
async fn stop(loader: &Loader, plugin: &Plugin, grace: Duration) -> UnloadStage {
    let sup = &loader.inner.sup;
    let (p, channel, native, dialect) = {
        let s = plugin.state();
        (
            s.process.clone(),
            s.channel.clone().filter(|_| s.status == Status::Serving),
            s.native,
            s.handshake.as_ref().map(|h| h.dialect),
        )
    };
    let Some(p) = p.filter(|p| p.running()) else {
        return UnloadStage::NotRunning;
    };
    if grace.is_zero() {
        sup.terminate(&p, Duration::ZERO).await;
        return UnloadStage::Sigkill;
    }
    let start = tokio::time::Instant::now();
    let half = grace / 2;
    if let Some(ch) = channel {
        let call = half.min(SHUTDOWN_CALL);
        let asked = if native {
            super::dial::shutdown_tend(&ch, half, call).await
        } else if dialect == Some(Dialect::GoPlugin) {
            super::dial::shutdown_go_plugin(&ch, call).await
        } else {
            false
        };
        let asked_at = start.elapsed();
        if asked
            && sup
                .wait(&p, Some(half.saturating_sub(start.elapsed())))
                .await
        {
            tracing::debug!(
                plugin = plugin.spec.name,
                asked_us = asked_at.as_micros() as u64,
                exited_us = start.elapsed().as_micros() as u64,
                "plugin shut down"
            );
            return UnloadStage::Shutdown;
        }
    }
    let _ = sup.signal(&p, libc::SIGTERM, false).await;
    if sup
        .wait(&p, Some(grace.saturating_sub(start.elapsed())))
        .await
    {
        return UnloadStage::Sigterm;
    }
    sup.terminate(&p, Duration::ZERO).await;
    UnloadStage::Sigkill
}
