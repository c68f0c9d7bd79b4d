//! What this host can run, for `RunnerService.Capabilities`: Docker (as the caller reports it),
//! Nix, the toolchains on the daemon's PATH, CPUs, memory, OS and GPUs; probed through the
//! reaper and cached for a while.
mod gpus;
mod host;
mod tools;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::supervisor::reaper::{Captured, Ended, Reaper, RunError};

/// What this host can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub docker: DockerCap,
    pub nix: NixCap,
    /// Every known toolchain, found or not, in a fixed order.
    pub tools: Vec<Tool>,
    /// CPUs this daemon may use (its affinity mask and cgroup quota count).
    pub cpus: u32,
    /// The host's memory (`MemTotal`); 0 when unknown.
    pub memory_bytes: u64,
    /// `std::env::consts::OS`, then the distribution's `PRETTY_NAME` in parentheses when
    /// `/etc/os-release` has one: `linux (Debian GNU/Linux 12 (bookworm))`.
    pub os: String,
    /// `std::env::consts::ARCH`: `x86_64`, `aarch64`, …
    pub arch: String,
    /// Empty when the host has none (or none this daemon can see).
    pub gpus: Vec<Gpu>,
    pub probed_at: SystemTime,
}

/// Whether processes can run in Docker containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerCap {
    pub available: bool,
    /// The engine's version and API version, when available.
    pub version: String,
    pub api_version: String,
    /// Why not, and what to do, when not available.
    pub reason: String,
}

/// Whether processes can run in Nix environments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NixCap {
    pub available: bool,
    pub version: String,
    /// Why not, and what to do, when not available.
    pub reason: String,
}

/// A toolchain program on the daemon's PATH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// The program's name: `go`, `python3`, `java`, …
    pub name: String,
    /// Where it was found on the daemon's PATH; `None` when it was not.
    pub path: Option<PathBuf>,
    /// Its version (`1.19.8`), or the first line it printed when no version could be read
    /// from it; `None` when it was not found, failed or did not answer in time.
    pub version: Option<String>,
}

impl Tool {
    /// Whether it is on the daemon's PATH.
    pub fn found(&self) -> bool {
        self.path.is_some()
    }
}

/// A GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// `nvidia`, `amd` or `intel`.
    pub vendor: String,
    /// The model when known (`NVIDIA A100-SXM4-40GB`), else its PCI ids.
    pub name: String,
    /// The device node a container needs: `/dev/nvidia0`, `/dev/dri/renderD128`.
    pub device: String,
}

/// Runs a probe command to completion. The daemon's runner is the reaper (a second
/// `Command::wait` would lose the exit to its `waitpid(-1)`); unit tests give canned outputs,
/// since a test process must not start a reaper that takes other tests' children.
pub trait Runner: Send + Sync {
    fn run_probe(
        &self,
        cmd: Command,
        timeout: Duration,
    ) -> impl Future<Output = Result<Captured, RunError>> + Send;
}

impl Runner for Reaper {
    fn run_probe(
        &self,
        cmd: Command,
        timeout: Duration,
    ) -> impl Future<Output = Result<Captured, RunError>> + Send {
        self.run(cmd, timeout, |_| {})
    }
}

/// How long a probe result is served before the next `get` probes again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// How long one probe command (`java -version`, `nix --version`) may take.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Probes the host's capabilities and caches them.
pub struct Prober<R: Runner = Reaper> {
    runner: Arc<R>,
    ttl: Duration,
    timeout: Duration,
    /// The last result and when its probe finished.
    cache: Mutex<Option<(Instant, Arc<Capabilities>)>>,
    /// Held while probing, so that concurrent `get`s wait for one probe instead of starting
    /// their own (if the prober's caller goes away, its probe stops and the next waiter
    /// probes). The cache has its own lock so that a fresh result is served without waiting
    /// behind a refresh.
    probing: tokio::sync::Mutex<()>,
}

impl<R: Runner> Prober<R> {
    /// A prober with the default TTL and probe timeout.
    pub fn new(runner: Arc<R>) -> Self {
        Prober {
            runner,
            ttl: DEFAULT_TTL,
            timeout: DEFAULT_PROBE_TIMEOUT,
            cache: Mutex::new(None),
            probing: tokio::sync::Mutex::new(()),
        }
    }

    /// How long a result is served.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long each probe command may take.
    pub fn with_probe_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The host's capabilities: the cached result unless `refresh` is asked or it is older than
    /// the TTL, else a new probe, which concurrent callers share. `docker` is the engine's
    /// status as the Docker module sees it; it is awaited only when a probe runs.
    pub async fn get(
        &self,
        refresh: bool,
        docker: impl Future<Output = DockerCap> + Send,
    ) -> Arc<Capabilities> {
        let asked = Instant::now();
        if !refresh {
            if let Some(caps) = self.cached(|at| at.elapsed() < self.ttl) {
                return caps;
            }
        }
        let _probing = self.probing.lock().await;
        // A probe that finished while we waited is as new as the caller asked for.
        if let Some(caps) = self.cached(|at| at >= asked) {
            return caps;
        }
        let caps = Arc::new(probe(&*self.runner, self.timeout, docker).await);
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), caps.clone()));
        caps
    }

    fn cached(&self, usable: impl Fn(Instant) -> bool) -> Option<Arc<Capabilities>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .as_ref()
            .filter(|(at, _)| usable(*at))
            .map(|(_, caps)| caps.clone())
    }
}

/// Probe everything at once: each part waits on its own commands or files, so the whole takes
/// about as long as the slowest probe (at most the probe timeout, or what `docker` takes).
async fn probe<R: Runner>(
    runner: &R,
    timeout: Duration,
    docker: impl Future<Output = DockerCap> + Send,
) -> Capabilities {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let (docker, nix, tools, host, gpus) = tokio::join!(
        docker,
        tools::nix(runner, timeout, &path),
        tools::probe(runner, timeout, &path),
        blocking(host::read, host::Host::default),
        gpus::probe(runner, timeout, &path),
    );
    Capabilities {
        docker,
        nix,
        tools,
        cpus: host.cpus,
        memory_bytes: host.memory_bytes,
        os: host.os,
        arch: host.arch,
        gpus,
        probed_at: SystemTime::now(),
    }
}

/// Run file reads and directory scans off the async workers; a panic in one gives `fallback`.
async fn blocking<T: Send + 'static>(f: fn() -> T, fallback: fn() -> T) -> T {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "a capability probe failed");
        fallback()
    })
}

/// A command for a probe: run from `/` with the C locale, so that a project file in the
/// daemon's working directory (`rust-toolchain.toml`, `.python-version`) does not pick another
/// toolchain and the first line is not translated.
fn command(program: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir("/").env("LC_ALL", "C");
    cmd
}

/// How a probe command failed, for a reason string: `exited with code 1: <stderr>`.
fn failure(captured: &Captured) -> String {
    let how = match captured.ended {
        Ended::Code(code) => format!("exited with code {code}"),
        Ended::Signal { signal, .. } => format!("was killed by signal {signal}"),
    };
    match captured.stderr_tail(3) {
        tail if tail.is_empty() => how,
        tail => format!("{how}: {}", crate::error::clip(&tail)),
    }
}

#[cfg(test)]
mod fake;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::fake::Fake;
    use super::*;

    async fn docker(count: &AtomicUsize) -> DockerCap {
        count.fetch_add(1, Ordering::SeqCst);
        // Long enough that concurrent callers overlap the probe.
        tokio::time::sleep(Duration::from_millis(50)).await;
        DockerCap {
            available: true,
            version: "27.0.1".into(),
            api_version: "1.46".into(),
            reason: String::new(),
        }
    }

    /// The service's future must be `Send`: checked when compiled, never run.
    #[allow(dead_code)]
    fn get_is_send(prober: &Prober) {
        fn send<T: Send>(_: T) {}
        send(prober.get(false, async { DockerCap::default() }));
    }

    #[tokio::test]
    async fn a_result_is_cached_until_refresh_or_the_ttl() {
        let probes = AtomicUsize::new(0);
        let prober = Prober::new(Arc::new(Fake::default()));
        let first = prober.get(false, docker(&probes)).await;
        let second = prober.get(false, docker(&probes)).await;
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        assert_eq!(first.docker.version, "27.0.1");
        assert!(first.cpus >= 1);
        assert!(first.os.starts_with(std::env::consts::OS), "{}", first.os);
        assert_eq!(first.arch, std::env::consts::ARCH);
        assert_eq!(first.tools.len(), tools::TOOLS.len());

        let third = prober.get(true, docker(&probes)).await;
        assert!(!Arc::ptr_eq(&first, &third));
        assert_eq!(probes.load(Ordering::SeqCst), 2);

        let expired = Prober::new(Arc::new(Fake::default())).with_ttl(Duration::ZERO);
        let probes = AtomicUsize::new(0);
        expired.get(false, docker(&probes)).await;
        expired.get(false, docker(&probes)).await;
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_gets_share_one_probe() {
        let probes = AtomicUsize::new(0);
        let prober = Prober::new(Arc::new(Fake::default()));
        let (a, b, c) = tokio::join!(
            prober.get(true, docker(&probes)),
            prober.get(true, docker(&probes)),
            prober.get(false, docker(&probes)),
        );
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&b, &c));
    }

    #[test]
    fn a_failure_says_how_it_ended_and_the_end_of_stderr() {
        let captured = Captured {
            ended: Ended::Code(1),
            stdout: Vec::new(),
            stderr: b"warning: x\n\nerror: y\n".to_vec(),
        };
        assert_eq!(
            failure(&captured),
            "exited with code 1: warning: x\nerror: y"
        );
        let killed = Captured {
            ended: Ended::Signal {
                signal: 9,
                core_dumped: false,
            },
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        assert_eq!(failure(&killed), "was killed by signal 9");
    }
}
