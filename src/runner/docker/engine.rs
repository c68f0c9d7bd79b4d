//! The connection to a Docker engine, and the containers that environments live in.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, MountType, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};

use super::fifo;
use super::settings::{name_part, DockerSettings};
use crate::error::{Error, Result};
use crate::supervisor::records::Owner;

/// Where the docker CLI looks when `DOCKER_HOST` is unset.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// How long the engine has to answer when connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// bollard's limit (seconds) on each request until the engine's response headers arrive; streams
/// (a pull, an exec's output) are not cut by it.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// The label that names the daemon owning a container (`Owner::label`).
pub const LABEL_OWNER: &str = "tend.owner";
/// The label that names a container's environment.
pub const LABEL_ENVIRONMENT: &str = "tend.environment";

/// Keeps the container alive with nothing but /bin/sh (which exec needs anyway). As PID 1 it
/// reaps the orphans that processes leave (ash and dash reap any child in `wait`), and the trap
/// makes `docker stop` quick: PID 1 ignores signals it has no handler for.
const IDLE: &str = r#"trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done"#;

/// A Docker engine: a cheap handle (clones share one connection pool).
#[derive(Clone)]
pub struct Engine {
    pub(super) docker: Docker,
    host: Arc<str>,
    version: Arc<(String, String)>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("host", &self.host)
            .field("version", &self.version)
            .finish()
    }
}

impl Engine {
    /// Connect as the docker CLI does: `DOCKER_HOST` when set (`unix://` or `tcp://`), else
    /// the default socket.
    pub async fn connect() -> Result<Engine> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        Engine::connect_to(&host).await
    }

    /// Connect to the engine at `host` and check that it answers (within a few seconds).
    pub async fn connect_to(host: &str) -> Result<Engine> {
        let absent = |why: String| {
            Error::FailedPrecondition(format!(
                "no Docker engine at {host}: {why}; start dockerd (or set DOCKER_HOST to the \
                 address of a running engine)"
            ))
        };
        // A plain connect first: it tells a missing socket, a refused one and one this user may
        // not use apart, which bollard's errors blur.
        let reached = if let Some(path) = host.strip_prefix("unix://") {
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(path))
                .await
                .map(|r| r.map(drop).map_err(|e| (format!("{path}: {e}"), e.kind())))
        } else if let Some(addr) = host.strip_prefix("tcp://") {
            if std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty()) {
                return Err(Error::FailedPrecondition(format!(
                    "the Docker engine at {host} wants TLS (DOCKER_TLS_VERIFY is set), which \
                     tend does not speak; use its unix socket, or a tcp:// address on a trusted \
                     network"
                )));
            }
            let addr = addr.trim_end_matches('/');
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
                .await
                .map(|r| r.map(drop).map_err(|e| (format!("{addr}: {e}"), e.kind())))
        } else {
            return Err(Error::FailedPrecondition(format!(
                "DOCKER_HOST={host}: tend reaches Docker engines at unix:// or tcp:// addresses \
                 only"
            )));
        };
        match reached {
            Err(_) => return Err(absent(format!("no answer within {CONNECT_TIMEOUT:?}"))),
            Ok(Err((_, std::io::ErrorKind::PermissionDenied))) => {
                return Err(Error::FailedPrecondition(format!(
                    "the Docker engine at {host} does not let this user in (permission denied \
                     on its socket); run tend as a user in the docker group, or set DOCKER_HOST \
                     to an engine it may use"
                )))
            }
            Ok(Err((why, _))) => return Err(absent(why)),
            Ok(Ok(())) => {}
        }
        let build = |version: &ClientVersion| -> Result<Docker> {
            let docker = if host.starts_with("unix://") {
                Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, version)
            } else {
                Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, version)
            };
            docker.map_err(|e| absent(e.to_string()))
        };
        let ask = |docker: Docker| async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, docker.version()).await {
                Err(_) => Err(None),
                Ok(r) => r.map(|v| (docker, v)).map_err(Some),
            }
        };
        // bollard is made for its newest API version; an engine that refuses it names the
        // newest it knows, which the second attempt uses. (bollard 0.21's URLs lose their
        // version prefix when it joins the path, so today the engine's own version applies and
        // the first attempt succeeds.)
        let (docker, v) = match ask(build(API_DEFAULT_VERSION)?).await {
            Ok(answer) => answer,
            Err(Some(BollardError::DockerResponseServerError {
                status_code: 400,
                message,
            })) if max_api_version(&message).is_some() => {
                let version = max_api_version(&message).expect("checked");
                ask(build(&version)?).await.map_err(|e| match e {
                    None => absent(format!("no answer within {CONNECT_TIMEOUT:?}")),
                    Some(e) => absent(e.to_string()),
                })?
            }
            Err(None) => return Err(absent(format!("no answer within {CONNECT_TIMEOUT:?}"))),
            Err(Some(e)) => return Err(absent(e.to_string())),
        };
        Ok(Engine {
            docker,
            host: host.into(),
            version: Arc::new((
                v.version.unwrap_or_default(),
                v.api_version.unwrap_or_default(),
            )),
        })
    }

    /// The engine's version and its API version, as it reported them when connecting.
    pub async fn version(&self) -> (String, String) {
        (*self.version).clone()
    }

    /// The engine's API version, as it reported it when connecting.
    pub(super) fn api_version(&self) -> &str {
        &self.version.1
    }

    /// The address this engine was reached at.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A connection of its own to the engine, for a request bollard cannot make (a terminal's
    /// exec start: see `attach::start`).
    pub(super) async fn connect_raw(
        &self,
    ) -> std::io::Result<(
        std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>,
        std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    )> {
        if let Some(path) = self.host.strip_prefix("unix://") {
            let (read, write) = tokio::net::UnixStream::connect(path).await?.into_split();
            return Ok((Box::pin(read), Box::pin(write)));
        }
        let addr = self
            .host
            .strip_prefix("tcp://")
            .unwrap_or(&self.host)
            .trim_end_matches('/');
        let stream = tokio::net::TcpStream::connect(addr).await?;
        // Keystrokes go out as they come.
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        Ok((Box::pin(read), Box::pin(write)))
    }

    /// An error of the engine's API as the core's error, `what` saying what was being done.
    pub(super) fn error(&self, what: &str, e: BollardError) -> Error {
        match e {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => match status_code {
                404 => Error::NotFound(format!("{what}: {message}")),
                400 | 409 => Error::FailedPrecondition(format!("{what}: {message}")),
                _ => Error::Internal(format!(
                    "{what}: the Docker engine answered {status_code}: {message}"
                )),
            },
            BollardError::RequestTimeoutError => Error::Unavailable(format!(
                "{what}: the Docker engine at {} did not answer in time",
                self.host
            )),
            e => Error::Unavailable(format!(
                "{what}: cannot reach the Docker engine at {}: {e}",
                self.host
            )),
        }
    }

    /// Whether the engine runs on this host (a unix socket), so that a host directory
    /// bind-mounted into its containers may carry FIFOs (`fifo`).
    pub(super) fn is_local(&self) -> bool {
        self.host.starts_with("unix://")
    }

    /// Create and start the container of environment `environment_id`, labelled with this
    /// daemon as its owner so that a sweep can remove it once this daemon is gone.
    ///
    /// With `fifo_dir`, and an engine on this host, that directory is made afresh and
    /// bind-mounted at `/.tend` for the FIFOs of the processes' output and input (`fifo`);
    /// the caller removes it with the container (`remove_fifo_dir`).
    pub async fn create_container(
        &self,
        environment_id: &str,
        settings: &DockerSettings,
        fifo_dir: Option<&Path>,
    ) -> Result<String> {
        let fifo_dir = fifo_dir
            .filter(|_| self.is_local())
            .filter(|_| {
                !settings
                    .mounts
                    .iter()
                    .any(|m| m.container_path == fifo::TARGET)
            })
            .map(Path::to_path_buf);
        // File work (the mounts' host paths, /proc, the FIFO directory): off the async workers.
        let checked = settings.clone();
        let making = fifo_dir.clone();
        let (owner, fifo_dir) = tokio::task::spawn_blocking(move || {
            checked.validate()?;
            let fifo_dir = making.filter(|dir| match fifo::make_dir(dir) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot make a FIFO directory; output goes through the engine");
                    false
                }
            });
            Ok::<_, Error>((Owner::current()?, fifo_dir))
        })
        .await
        .map_err(|e| Error::Internal(format!("create container: {e}")))??;
        let name = format!(
            "tend-{}-{:06x}",
            name_part(environment_id),
            rand::random::<u32>() & 0xff_ffff
        );
        let labels = HashMap::from([
            (LABEL_OWNER.to_string(), owner.label()),
            (LABEL_ENVIRONMENT.to_string(), environment_id.to_string()),
        ]);
        let mut mounts: Vec<_> = settings
            .mounts
            .iter()
            .map(|m| bollard::models::Mount {
                typ: Some(MountType::BIND),
                source: Some(m.host_path.to_string_lossy().into_owned()),
                target: Some(m.container_path.clone()),
                read_only: Some(m.read_only),
                ..Default::default()
            })
            .collect();
        if let Some(dir) = &fifo_dir {
            mounts.push(bollard::models::Mount {
                typ: Some(MountType::BIND),
                source: Some(dir.to_string_lossy().into_owned()),
                target: Some(fifo::TARGET.to_string()),
                read_only: Some(false),
                ..Default::default()
            });
        }
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &settings.ports {
            port_bindings
                .entry(format!("{}/{}", p.container_port, p.protocol))
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: (!p.host_ip.is_empty()).then(|| p.host_ip.clone()),
                    host_port: Some(p.host_port.to_string()),
                });
        }
        let exposed: Vec<String> = port_bindings.keys().cloned().collect();
        let body = ContainerCreateBody {
            image: Some(settings.image.clone()),
            // An empty entrypoint, not the image's: the idle command must run as it is.
            entrypoint: Some(Vec::new()),
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), IDLE.into()]),
            env: Some(
                settings
                    .env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            working_dir: settings.workdir.clone(),
            user: settings.user.clone(),
            labels: Some(labels),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| {
                self.error(
                    &format!("create a container of image {}", settings.image),
                    e,
                )
            })?;
        let id = created.id;
        if let Err(e) = self.docker.start_container(&id, None).await {
            let err = self.error(&format!("start container {name}"), e);
            if let Err(e) = self.remove_container(&id).await {
                tracing::warn!(container = %id, error = %e, "cannot remove a container that did not start");
            }
            return Err(err);
        }
        Ok(id)
    }

    /// Stop a container: SIGTERM, then SIGKILL after `grace`. A container that is gone or
    /// stopped already is fine.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptionsBuilder::default()
            .t(i32::try_from(secs).unwrap_or(i32::MAX))
            .build();
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.error(&format!("stop container {id}"), e)),
        }
    }

    /// Remove a container, running or not, with its anonymous volumes. One that is gone is fine.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // Removal already under way (a concurrent sweep): it will be gone.
            Err(BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Ok(()),
            Err(e) => Err(self.error(&format!("remove container {id}"), e)),
        }
    }

    /// What a container uses, as `docker stats` says it (one sample, without waiting for a
    /// second one); `None` when the engine does not answer.
    pub async fn container_usage(
        &self,
        id: &str,
    ) -> Option<crate::supervisor::usage::EnvironmentUsage> {
        use futures_util::StreamExt;
        let options = bollard::query_parameters::StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(true)
            .build();
        let mut stats = self.docker.stats(id, Some(options));
        // Its start, from which its CPU time counts (for a first CPU %).
        let (stats, inspected) =
            tokio::join!(stats.next(), self.docker.inspect_container(id, None));
        let since = inspected
            .ok()
            .and_then(|c| c.state?.started_at)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(std::time::SystemTime::from);
        let stats = stats?
            .inspect_err(|e| tracing::debug!(container = id, error = %e, "no stats"))
            .ok()?;
        let cpu = stats.cpu_stats.and_then(|c| c.cpu_usage);
        let ns_to_ms = |ns: Option<u64>| ns.unwrap_or(0) / 1_000_000;
        let memory = stats.memory_stats.unwrap_or_default();
        // As `docker stats` shows it: the usage less the reclaimable page cache.
        let cache = memory
            .stats
            .as_ref()
            .and_then(|s| {
                s.get("inactive_file")
                    .or_else(|| s.get("total_inactive_file"))
            })
            .copied()
            .unwrap_or(0);
        let rss = memory.usage.unwrap_or(0).saturating_sub(cache);
        let usage = crate::supervisor::usage::Usage {
            state: None,
            user_cpu_ms: ns_to_ms(cpu.as_ref().and_then(|c| c.usage_in_usermode)),
            system_cpu_ms: ns_to_ms(cpu.as_ref().and_then(|c| c.usage_in_kernelmode)),
            rss_bytes: rss,
            peak_rss_bytes: memory.max_usage.unwrap_or(0).max(rss),
            processes: stats
                .pids_stats
                .and_then(|p| p.current)
                .map_or(0, |n| n as u32),
        };
        Some(crate::supervisor::usage::EnvironmentUsage { usage, since })
    }

    /// The network namespace of a running container (its main process's, on this host): where
    /// its processes' "localhost" is.
    pub async fn container_netns(&self, id: &str) -> std::result::Result<PathBuf, String> {
        let c = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| format!("inspect container {id}: {e}"))?;
        match c.state.and_then(|s| s.pid) {
            Some(pid) if pid > 0 => Ok(PathBuf::from(format!("/proc/{pid}/ns/net"))),
            _ => Err(format!("container {id} is not running")),
        }
    }

    /// Whether the container exists and runs.
    pub async fn container_running(&self, id: &str) -> bool {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => c.state.and_then(|s| s.running).unwrap_or(false),
            Err(_) => false,
        }
    }
}

/// The API version an engine names in "client version 1.53 is too new. Maximum supported API
/// version is 1.41".
fn max_api_version(message: &str) -> Option<ClientVersion> {
    let (_, rest) = message.split_once("Maximum supported API version is ")?;
    let v = rest.split_whitespace().next()?.trim_end_matches('.');
    let (major, minor) = v.split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_newest_api_version_is_read_from_its_refusal() {
        let v = max_api_version(
            "client version 1.53 is too new. Maximum supported API version is 1.41",
        )
        .unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 41));
        assert!(max_api_version("something else").is_none());
    }
}
