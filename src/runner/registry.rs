//! The environments of this daemon: their definitions and states, their initialisation (an
//! image made ready and a container started, a flake evaluated), stopping and removing them,
//! and finding them for the supervisor by id or name.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::docker::{remove_fifo_dir, DockerEnv, DockerSettings, Engine};
use super::nix;
use super::progress::{Progress, Sink};
use crate::error::{quote, Error, Result};
use crate::supervisor::environment::{Environment, Resolve};
use crate::supervisor::{ListFilter, Supervisor};

/// Environments one daemon keeps, at most; each holds a container or a cached shell.
pub const MAX_ENVIRONMENTS: usize = 256;
/// How long a flake's evaluation may take before it is given up (nix can hang there).
pub const NIX_TIMEOUT: Duration = Duration::from_secs(300);
/// The grace between SIGTERM and SIGKILL when an environment stops, unless the call says.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What kind of environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Native,
    Docker,
    Nix,
    /// Docker when an engine answers and an image is given, Nix when the flake directory has a
    /// flake.nix and nix is installed, else native: decided at creation.
    Auto,
}

/// Where an environment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Initializing,
    Ready,
    Stopped,
    Failed,
}

/// A Nix environment's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NixSettings {
    pub flake_dir: PathBuf,
    pub dev_shell: String,
}

/// What a client asks for.
#[derive(Debug, Clone)]
pub struct Definition {
    pub name: Option<String>,
    pub kind: Kind,
    pub docker: Option<DockerSettings>,
    pub nix: Option<NixSettings>,
}

/// An environment as clients see it.
#[derive(Debug, Clone)]
pub struct Info {
    pub id: String,
    pub name: Option<String>,
    pub kind: Kind,
    /// What it is: `kind`, or what `auto` chose.
    pub resolved: Kind,
    pub reason: String,
    pub state: State,
    pub error: String,
    pub docker: Option<DockerSettings>,
    pub nix: Option<NixSettings>,
    pub container: Option<String>,
    pub running: usize,
    pub created_at: SystemTime,
}

struct Env {
    id: String,
    def: Definition,
    resolved: Kind,
    reason: String,
    created_at: SystemTime,
    live: Mutex<Live>,
}

#[derive(Default)]
struct Live {
    state: Option<State>,
    error: String,
    container: Option<String>,
    ready: Option<Arc<dyn Environment>>,
}

impl Env {
    fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The runner: every environment, and the engine behind the Docker ones.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    sup: Supervisor,
    nix_cache: PathBuf,
    /// Each Docker environment's FIFO directory is `<docker_dir>/<id>`.
    docker_dir: PathBuf,
    table: Mutex<Table>,
    /// When the daemon started: the built-in native environment's creation.
    started: SystemTime,
}

#[derive(Default)]
struct Table {
    next: u64,
    envs: BTreeMap<String, Arc<Env>>,
    names: BTreeMap<String, String>,
}

/// Finds environments for the supervisor.
struct Finder(std::sync::Weak<Inner>);

impl Resolve for Finder {
    fn resolve(&self, id: &str) -> Result<(String, Arc<dyn Environment>)> {
        let inner = self
            .0
            .upgrade()
            .ok_or_else(|| Error::Unavailable("the daemon is shutting down".into()))?;
        let env = Runner { inner }.find(id).map_err(|e| match e {
            Error::NotFound(m) => Error::NotFound(format!("spec.environment_id: {m}")),
            e => e,
        })?;
        let live = env.live();
        match (&live.ready, live.state.unwrap_or(State::Created)) {
            (Some(ready), State::Ready) => Ok((env.id.clone(), ready.clone())),
            (_, state) => Err(Error::FailedPrecondition(format!(
                "environment {} is {}; InitEnvironment it first (tend env init {})",
                env.id,
                state_word(state),
                env.id
            ))),
        }
    }
}

fn state_word(s: State) -> &'static str {
    match s {
        State::Created => "created but not initialised",
        State::Initializing => "still initialising",
        State::Ready => "ready",
        State::Stopped => "stopped",
        State::Failed => "failed",
    }
}

impl Runner {
    /// The runner of `sup`'s environments, keeping Nix shells under `state_dir`.
    pub fn new(sup: Supervisor, state_dir: &std::path::Path) -> Runner {
        let inner = Arc::new(Inner {
            sup: sup.clone(),
            nix_cache: state_dir.join("nix"),
            docker_dir: state_dir.join("docker"),
            table: Mutex::new(Table::default()),
            started: SystemTime::now(),
        });
        sup.set_resolver(Arc::new(Finder(Arc::downgrade(&inner))));
        Runner { inner }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn find(&self, id: &str) -> Result<Arc<Env>> {
        let table = self.table();
        let id = table.names.get(id).map_or(id, String::as_str);
        table.envs.get(id).cloned().ok_or_else(|| {
            Error::NotFound(format!(
                "no environment {}; ListEnvironments shows them (and \"native\", the host)",
                quote(id)
            ))
        })
    }

    /// Define an environment; `auto` is decided here, and the answer says why.
    pub async fn create(&self, def: Definition) -> Result<Info> {
        if let Some(d) = &def.docker {
            if def.kind == Kind::Docker || (def.kind == Kind::Auto && !d.image.is_empty()) {
                d.validate()?;
            }
        }
        let (resolved, reason) = self.decide(&def).await?;
        match resolved {
            Kind::Docker if def.kind == Kind::Docker => {
                Engine::connect().await?;
            }
            Kind::Nix if def.kind == Kind::Nix => {
                nix::installed().map_err(Error::FailedPrecondition)?;
            }
            _ => {}
        }
        if resolved == Kind::Nix {
            let n = def.nix.as_ref().expect("decided nix with settings");
            nix::check_flake(&n.flake_dir, &n.dev_shell)?;
        }
        let mut table = self.table();
        if let Some(name) = &def.name {
            if name == "native" || table.names.contains_key(name) {
                return Err(Error::AlreadyExists(format!(
                    "name: environment name {} is taken; choose another",
                    quote(name)
                )));
            }
        }
        if table.envs.len() >= MAX_ENVIRONMENTS {
            return Err(Error::ResourceExhausted(format!(
                "{} environments exist, the limit; ShutdownEnvironment some",
                table.envs.len()
            )));
        }
        table.next += 1;
        let id = format!("e-{}", table.next);
        // A host environment needs nothing made: it is ready at once.
        let live = if resolved == Kind::Native {
            Live {
                state: Some(State::Ready),
                ready: Some(Arc::new(self.inner.sup.host().clone())),
                ..Live::default()
            }
        } else {
            Live {
                state: Some(State::Created),
                ..Live::default()
            }
        };
        let env = Arc::new(Env {
            id: id.clone(),
            def,
            resolved,
            reason,
            created_at: SystemTime::now(),
            live: Mutex::new(live),
        });
        if let Some(name) = &env.def.name {
            table.names.insert(name.clone(), id.clone());
        }
        table.envs.insert(id, env.clone());
        drop(table);
        Ok(self.info(&env))
    }

    /// What kind an environment is, and why.
    async fn decide(&self, def: &Definition) -> Result<(Kind, String)> {
        let image = def.docker.as_ref().map_or("", |d| d.image.as_str());
        let flake = def.nix.as_ref().map(|n| n.flake_dir.clone());
        match def.kind {
            Kind::Native => Ok((Kind::Native, "asked for native".into())),
            Kind::Docker => {
                if image.is_empty() {
                    return Err(Error::invalid(
                        "docker.image",
                        "is required for a docker environment",
                    ));
                }
                Ok((Kind::Docker, "asked for docker".into()))
            }
            Kind::Nix => {
                if flake.is_none() {
                    return Err(Error::invalid(
                        "nix.flake_dir",
                        "is required for a nix environment",
                    ));
                }
                Ok((Kind::Nix, "asked for nix".into()))
            }
            Kind::Auto => {
                let mut why = Vec::new();
                if image.is_empty() {
                    why.push("no docker.image given".to_string());
                } else {
                    match Engine::connect().await {
                        Ok(_) => {
                            return Ok((
                                Kind::Docker,
                                format!(
                                    "a Docker engine answers and image {} is given",
                                    quote(image)
                                ),
                            ))
                        }
                        Err(e) => why.push(format!("docker: {e}")),
                    }
                }
                match &flake {
                    None => why.push("no nix.flake_dir given".into()),
                    Some(dir) if !dir.join("flake.nix").is_file() => {
                        why.push(format!("{} has no flake.nix", dir.display()))
                    }
                    Some(dir) => match nix::installed() {
                        Ok(()) => {
                            return Ok((
                                Kind::Nix,
                                format!(
                                    "{} has a flake.nix and nix is installed; {}",
                                    dir.display(),
                                    why.join("; ")
                                ),
                            ))
                        }
                        Err(e) => why.push(e),
                    },
                }
                Ok((Kind::Native, format!("native: {}", why.join("; "))))
            }
        }
    }

    /// Make an environment ready: the image, the container, the shell. Progress goes to `sink`.
    /// A ready one says so at once; a stopped one starts again.
    pub async fn init(&self, id: &str, sink: Sink<'_>) -> Result<Info> {
        if id == "native" {
            return Ok(self.native_info(self.running_in("native")));
        }
        let env = self.find(id)?;
        {
            let mut live = env.live();
            match live.state.unwrap_or(State::Created) {
                State::Ready => {
                    drop(live);
                    return Ok(self.info(&env));
                }
                State::Initializing => {
                    return Err(Error::FailedPrecondition(format!(
                        "{} is already initialising; wait for that InitEnvironment to finish \
                         (GetEnvironment shows its state)",
                        env.id
                    )))
                }
                _ => {
                    live.state = Some(State::Initializing);
                    live.error.clear();
                }
            }
        }
        let made = self.make(&env, sink).await;
        let mut live = env.live();
        match made {
            Ok((ready, container)) => {
                live.state = Some(State::Ready);
                live.ready = Some(ready);
                if container.is_some() {
                    live.container = container;
                }
                drop(live);
                Ok(self.info(&env))
            }
            Err(e) => {
                live.state = Some(State::Failed);
                live.error = e.to_string();
                Err(e)
            }
        }
    }

    async fn make(
        &self,
        env: &Env,
        sink: Sink<'_>,
    ) -> Result<(Arc<dyn Environment>, Option<String>)> {
        match env.resolved {
            Kind::Native | Kind::Auto => Ok((Arc::new(self.inner.sup.host().clone()), None)),
            Kind::Docker => {
                let settings = env
                    .def
                    .docker
                    .as_ref()
                    .expect("a docker environment has settings");
                sink(Progress::line("connect", "connecting to the Docker engine"));
                let engine = Engine::connect().await?;
                engine.ensure_image(settings, sink).await?;
                // A stopped environment gets a fresh container: what ran in the old one is gone
                // either way, and a new one starts from the image as the definition says.
                let old = env.live().container.take();
                if let Some(c) = old {
                    sink(Progress::line(
                        "remove",
                        format!("removing the stopped container {}", short(&c)),
                    ));
                    engine.remove_container(&c).await?;
                }
                sink(Progress::line("create", "creating the container"));
                let fifo_dir = self.inner.docker_dir.join(&env.id);
                let container = engine
                    .create_container(&env.id, settings, Some(&fifo_dir))
                    .await?;
                let ready = DockerEnv::new(engine, container.clone(), settings, Some(fifo_dir));
                Ok((Arc::new(ready), Some(container)))
            }
            Kind::Nix => {
                let n = env
                    .def
                    .nix
                    .as_ref()
                    .expect("a nix environment has settings");
                let reaper = self.inner.sup.host().reaper();
                let shell = nix::materialise(
                    &reaper,
                    &n.flake_dir,
                    &n.dev_shell,
                    &self.inner.nix_cache,
                    NIX_TIMEOUT,
                    sink,
                )
                .await?;
                let mut base = crate::supervisor::spec::daemon_environment();
                nix::apply(&shell.env, &mut base);
                Ok((Arc::new(self.inner.sup.host().with_base(base)), None))
            }
        }
    }

    /// Stop an environment's processes (SIGTERM, `grace`, SIGKILL) and its container; the
    /// definition stays, and InitEnvironment starts it again. Returns how many were stopped.
    pub async fn stop(&self, id: &str, grace: Option<Duration>) -> Result<(Info, usize)> {
        let env = self.find(id)?;
        let stopped = self.stop_processes(&env, grace.unwrap_or(STOP_GRACE)).await;
        let container = {
            let mut live = env.live();
            live.ready = None;
            if live.state != Some(State::Created) && live.state != Some(State::Failed) {
                live.state = Some(State::Stopped);
            }
            live.container.clone()
        };
        if let Some(c) = container {
            let engine = Engine::connect().await?;
            engine
                .stop_container(&c, grace.unwrap_or(STOP_GRACE))
                .await?;
        }
        Ok((self.info(&env), stopped))
    }

    /// Stop and remove everything an environment holds, and forget it.
    pub async fn shutdown_one(&self, id: &str, grace: Option<Duration>) -> Result<(usize, bool)> {
        let env = self.find(id)?;
        let stopped = self.stop_processes(&env, grace.unwrap_or(STOP_GRACE)).await;
        let container = {
            let mut live = env.live();
            live.ready = None;
            live.state = Some(State::Stopped);
            live.container.take()
        };
        let mut removed = false;
        if let Some(c) = container {
            let engine = Engine::connect().await?;
            engine.remove_container(&c).await?;
            removed = true;
        }
        if env.resolved == Kind::Docker {
            let dir = self.inner.docker_dir.join(&env.id);
            let _ = tokio::task::spawn_blocking(move || remove_fifo_dir(&dir)).await;
        }
        let mut table = self.table();
        table.envs.remove(&env.id);
        if let Some(name) = &env.def.name {
            table.names.remove(name);
        }
        Ok((stopped, removed))
    }

    async fn stop_processes(&self, env: &Env, grace: Duration) -> usize {
        let sup = &self.inner.sup;
        let procs: Vec<_> = sup
            .list(&ListFilter {
                running: Some(true),
                ..ListFilter::default()
            })
            .into_iter()
            .filter(|p| p.spec.environment == env.id)
            .collect();
        futures_util::future::join_all(procs.iter().map(|p| sup.terminate(p, grace))).await;
        procs.len()
    }

    /// Every environment, the host first.
    pub fn list(&self) -> Vec<Info> {
        let envs: Vec<Arc<Env>> = self.table().envs.values().cloned().collect();
        // Every environment's running processes, in one pass over the table.
        let mut running: HashMap<String, usize> = HashMap::new();
        for p in self.inner.sup.list(&ListFilter {
            running: Some(true),
            ..ListFilter::default()
        }) {
            *running.entry(p.spec.environment.clone()).or_default() += 1;
        }
        let count = |id: &str| running.get(id).copied().unwrap_or(0);
        let mut all = vec![self.native_info(count("native"))];
        all.extend(envs.iter().map(|e| self.info_counted(e, count(&e.id))));
        all
    }

    /// One environment by id or name ("native" is the host).
    pub fn get(&self, id: &str) -> Result<Info> {
        if id == "native" {
            return Ok(self.native_info(self.running_in("native")));
        }
        let env = self.find(id)?;
        Ok(self.info(&env))
    }

    fn running_in(&self, id: &str) -> usize {
        self.inner
            .sup
            .list(&ListFilter {
                running: Some(true),
                ..ListFilter::default()
            })
            .iter()
            .filter(|p| p.spec.environment == id)
            .count()
    }

    fn native_info(&self, running: usize) -> Info {
        Info {
            id: "native".into(),
            name: Some("native".into()),
            kind: Kind::Native,
            resolved: Kind::Native,
            reason: "this host, always there".into(),
            state: State::Ready,
            error: String::new(),
            docker: None,
            nix: None,
            container: None,
            running,
            created_at: self.inner.started,
        }
    }

    fn info(&self, env: &Env) -> Info {
        self.info_counted(env, self.running_in(&env.id))
    }

    /// `env` as described, with `running` processes.
    fn info_counted(&self, env: &Env, running: usize) -> Info {
        let live = env.live();
        Info {
            id: env.id.clone(),
            name: env.def.name.clone(),
            kind: env.def.kind,
            resolved: env.resolved,
            reason: env.reason.clone(),
            state: live.state.unwrap_or(State::Created),
            error: live.error.clone(),
            docker: env.def.docker.clone(),
            nix: env.def.nix.clone(),
            container: live.container.clone(),
            running,
            created_at: env.created_at,
        }
    }

    /// Sweep what dead daemons left: their process groups on this host, and their containers
    /// (labelled with an owner that no longer runs). With `dry_run`, only say which containers
    /// would go; the host's records are then not looked at. An engine that does not answer is
    /// reported in the error, after the host's sweep.
    pub async fn reap(&self, dry_run: bool) -> Result<(Vec<super::docker::Swept>, usize)> {
        let records = if dry_run {
            0
        } else {
            self.inner.sup.sweep().await.removed
        };
        // Without an engine there are no containers to sweep: the host's records still are.
        let containers = match Engine::connect().await {
            Ok(engine) => engine.sweep(dry_run).await?,
            Err(e) => {
                if !no_engine() {
                    tracing::warn!(error = %e, "Reap: containers not swept");
                }
                Vec::new()
            }
        };
        Ok((containers, records))
    }

    /// The start-up sweep of containers, in the background: an engine that does not answer is
    /// skipped with a warning and never holds up the daemon.
    pub fn sweep_in_background(&self) {
        tokio::spawn(async move {
            let swept = async {
                let engine = Engine::connect().await?;
                engine.sweep(false).await
            };
            match tokio::time::timeout(Duration::from_secs(30), swept).await {
                Ok(Ok(swept)) => {
                    let removed = swept.iter().filter(|s| s.removed).count();
                    if removed > 0 {
                        tracing::info!(removed, "removed containers a dead daemon left");
                    }
                }
                Ok(Err(_)) if no_engine() => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "container sweep skipped"),
                Err(_) => tracing::warn!(
                    "container sweep skipped: the Docker engine did not answer in 30 s"
                ),
            }
        });
    }

    /// At daemon shutdown, after the supervisor has stopped every process: remove every
    /// container this daemon made (bounded: an engine that does not answer is left to the next
    /// daemon's sweep).
    pub async fn shutdown(&self) {
        let containers: Vec<String> = self
            .table()
            .envs
            .values()
            .filter_map(|e| e.live().container.take())
            .collect();
        if !containers.is_empty() {
            self.remove_containers(containers).await;
        }
        // The containers' FIFO directories (a container that outlives them keeps its mount).
        let dir = self.inner.docker_dir.clone();
        let _ = tokio::task::spawn_blocking(move || remove_fifo_dir(&dir)).await;
    }

    async fn remove_containers(&self, containers: Vec<String>) {
        let removing = async {
            let engine = Engine::connect().await?;
            futures_util::future::join_all(containers.iter().map(|c| engine.remove_container(c)))
                .await;
            Ok::<(), Error>(())
        };
        match tokio::time::timeout(Duration::from_secs(10), removing).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove this daemon's containers; the next daemon's sweep will"),
            Err(_) => tracing::warn!("the Docker engine did not remove this daemon's containers in 10 s; the next daemon's sweep will"),
        }
    }
}

/// No engine is configured at all (no DOCKER_HOST, no default socket): nothing to sweep, and
/// nothing to warn about.
fn no_engine() -> bool {
    std::env::var_os("DOCKER_HOST").is_none()
        && !std::path::Path::new("/var/run/docker.sock").exists()
}

/// The engine's state for Capabilities: its versions, or why it is not there.
pub async fn docker_capability() -> super::caps::DockerCap {
    match Engine::connect().await {
        Ok(engine) => {
            let (version, api_version) = engine.version().await;
            super::caps::DockerCap {
                available: true,
                version,
                api_version,
                reason: String::new(),
            }
        }
        Err(e) => super::caps::DockerCap {
            available: false,
            reason: e.to_string(),
            ..Default::default()
        },
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
