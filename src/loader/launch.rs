//! One run of a plugin, from its binary to SERVING: the binary found, a private socket
//! directory made, the process started through the supervisor with the handshake variables, its
//! stdout read line by line until the handshake line, the versions checked, the address dialled
//! and health polled, then `PluginService.Info` (or reflection) asked what it serves.
//!
//! Each step that fails is one `LoadError`. What the run creates (the socket directory, the
//! process) is recorded in the plugin's state as soon as it exists, so that whoever drops this
//! future halfway (an Unload) finds and removes it.
use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;

use super::dial;
use super::error::LoadError;
use super::handshake::{self, Handshake, Network, UNIX_PATH_MAX};
use super::registry::{Inner, Plugin};
use crate::error::{clip_path, Error, Result};
use crate::supervisor::environment::Sockets;
use crate::supervisor::spec::{daemon_environment, Spec, NATIVE};
use crate::supervisor::{Cursor, Ended, ExitInfo, Process, Read, StreamKind};

/// Tag naming the plugin on its process in ProcessService.
pub const PLUGIN_TAG: &str = "tend.plugin";

/// Bytes of stderr an EXITED event carries.
pub const EVENT_STDERR_TAIL: usize = 4096;
/// Stdout lines kept (clipped) for the error when no handshake line comes.
const NOISE_KEPT: usize = 100;
const NOISE_LINE_KEPT: usize = 512;
/// A stdout line longer than this without a line end is noise, not a handshake line.
const LINE_MAX: usize = 64 << 10;
/// Room left in a socket directory's path for the plugin's socket name (go-plugin's
/// `plugin<digits>` is 16 bytes).
const SOCKET_NAME_ROOM: usize = 32;
/// The subdirectory of an environment's shared directory that holds plugins' socket
/// directories.
const SHARED_SUBDIR: &str = "plugins";
/// How long Info and reflection may take once the plugin serves, at most.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A plugin that serves.
pub struct Launched {
    pub process: Arc<Process>,
    pub handshake: Handshake,
    pub channel: Channel,
    pub services: Vec<String>,
    pub version: String,
    /// It serves `tend.v1.PluginService`.
    pub native: bool,
}

/// How a run ended, for a person: `exit code 1`, `killed by SIGKILL`.
pub fn ended(exit: &ExitInfo) -> String {
    match exit.ended {
        Ended::Code(c) => format!("exit code {c}"),
        Ended::Signal { signal, .. } => format!(
            "killed by {}",
            nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {signal}"))
        ),
    }
}

/// The last `max` bytes of the process's stderr, as text.
pub fn stderr_tail(p: &Process, max: u64) -> String {
    let total = p
        .output
        .stats()
        .iter()
        .find(|s| s.kind == StreamKind::Stderr)
        .map_or(0, |s| s.total);
    let (bytes, _) = p
        .output
        .slice(StreamKind::Stderr, total.saturating_sub(max), total);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Find the binary as execvp would: a path (relative to `cwd`) as it is, a bare name on PATH.
/// Not found names where it looked; found but not executable is a spawn failure
/// (PermissionDenied).
pub fn resolve_binary(
    binary: &str,
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
) -> Result<PathBuf, LoadError> {
    let check = |p: &Path| -> Option<Result<PathBuf, LoadError>> {
        let m = std::fs::metadata(p).ok()?;
        if m.is_file() && m.permissions().mode() & 0o111 != 0 {
            Some(Ok(p.to_path_buf()))
        } else {
            Some(Err(LoadError::SpawnFailed {
                binary: p.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    if m.is_dir() {
                        "is a directory"
                    } else {
                        "is not executable (chmod +x it)"
                    },
                ),
            }))
        }
    };
    if binary.contains('/') {
        let path = match cwd {
            Some(dir) if !binary.starts_with('/') => dir.join(binary),
            _ if !binary.starts_with('/') => std::env::current_dir()
                .map(|d| d.join(binary))
                .unwrap_or_else(|_| PathBuf::from(binary)),
            _ => PathBuf::from(binary),
        };
        return check(&path).unwrap_or_else(|| {
            Err(LoadError::BinaryNotFound {
                binary: binary.into(),
                looked_in: vec![path],
            })
        });
    }
    let path_var = env
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let dirs: Vec<PathBuf> = path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect();
    let mut refused = None;
    for dir in &dirs {
        match check(&dir.join(binary)) {
            Some(Ok(p)) => return Ok(p),
            // As execvp: a non-executable match is remembered, and reported if none is found.
            Some(Err(e)) => {
                refused.get_or_insert(e);
            }
            None => {}
        }
    }
    Err(refused.unwrap_or(LoadError::BinaryNotFound {
        binary: binary.into(),
        looked_in: dirs,
    }))
}

/// A fresh private directory (0700) for one plugin's socket under `root`, which is made private
/// too. Socket paths are limited to `UNIX_PATH_MAX` bytes, so the directory's path must leave
/// room for a socket name. `open`: the plugin runs as another user (in a container), who must
/// be able to pass through `root` (0711) and create its socket in the directory (0733: nobody
/// but the daemon can list it).
pub fn socket_dir(root: &Path, open: bool) -> Result<PathBuf> {
    let (root_mode, dir_mode) = if open { (0o711, 0o733) } else { (0o700, 0o700) };
    let private = |dir: &Path| -> Result<()> {
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("create {}", clip_path(dir)), e)),
        }
        // In a shared /tmp another user may have made it first: it must be ours and private.
        let m = std::fs::symlink_metadata(dir)
            .map_err(|e| Error::io(format!("stat {}", clip_path(dir)), e))?;
        // SAFETY: geteuid(2) cannot fail.
        let me = unsafe { libc::geteuid() };
        if !m.is_dir() || m.uid() != me || m.mode() & 0o022 != 0 {
            return Err(Error::FailedPrecondition(format!(
                "the plugin socket directory {} is not a private directory of this user (mode \
                 0700, uid {me}); remove it",
                clip_path(dir)
            )));
        }
        set_mode(dir, root_mode)
    };
    private(root)?;
    for _ in 0..16 {
        let dir = root.join(format!("p{:08x}", rand::random::<u32>()));
        let len = dir.as_os_str().len() + 1 + SOCKET_NAME_ROOM;
        if len > UNIX_PATH_MAX {
            return Err(Error::FailedPrecondition(format!(
                "the plugin socket directory {} is too long: a socket in it would pass the \
                 {UNIX_PATH_MAX}-byte limit of unix socket paths; run the daemon with a \
                 shorter --state-dir",
                clip_path(&dir)
            )));
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                set_mode(&dir, dir_mode)?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("create {}", clip_path(&dir)), e)),
        }
    }
    Err(Error::Internal(
        "no free name for a socket directory".into(),
    ))
}

/// Set `dir`'s mode (after creation: mkdir's is cut by the umask).
fn set_mode(dir: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {}", clip_path(dir)), e))
}

/// Where a plugin's socket lives: its directory as the daemon sees it, and as the plugin does.
struct Place {
    /// On this host: made, dialled, removed by the daemon.
    host: PathBuf,
    /// In the plugin's environment: PLUGIN_UNIX_SOCKET_DIR. The same as `host` but in a
    /// container, where the host's directory is bind-mounted elsewhere.
    inside: PathBuf,
    /// The plugin sees the host's files, so can reach TEND_ADDR.
    on_host: bool,
}

impl Place {
    /// The socket directory for a plugin in `environment` (resolved by `spec.environment`).
    async fn make(inner: &Inner, spec: &super::spec::PluginSpec) -> Result<Place> {
        let sockets = if spec.environment.is_empty() || spec.environment == NATIVE {
            Sockets::Host
        } else {
            let (_, env) = inner.sup.environment(&spec.environment)?;
            env.sockets().await
        };
        match sockets {
            Sockets::Host => {
                let dir = socket_dir(&inner.socket_root, false)?;
                Ok(Place {
                    host: dir.clone(),
                    inside: dir,
                    on_host: true,
                })
            }
            Sockets::Shared { host, inside, open } => {
                let dir = socket_dir(&host.join(SHARED_SUBDIR), open)?;
                let name = dir.file_name().expect("socket_dir names its directory");
                Ok(Place {
                    inside: inside.join(SHARED_SUBDIR).join(name),
                    host: dir,
                    on_host: false,
                })
            }
            Sockets::Unreachable(why) => Err(Error::FailedPrecondition(format!(
                "environment_id: a plugin cannot run in {}: {why}; load it in an environment \
                 on this host (\"native\", Nix, or Docker with a local engine)",
                crate::error::quote(&spec.environment)
            ))),
        }
    }

    /// The address the plugin announced, as the daemon dials it: a socket inside the shared
    /// directory is found through the host's side of it; anything else is unreachable from a
    /// container.
    fn dial(&self, network: Network) -> std::result::Result<Network, String> {
        if self.on_host {
            return Ok(network);
        }
        match network {
            Network::Unix(path) => match path.strip_prefix(&self.inside) {
                Ok(rest) => Ok(Network::Unix(self.host.join(rest))),
                Err(_) => Err(format!(
                    "the plugin's socket {} is outside PLUGIN_UNIX_SOCKET_DIR ({}), the only \
                     directory of its environment the daemon can reach",
                    clip_path(&path),
                    self.inside.display()
                )),
            },
            Network::Tcp(addr) => Err(format!(
                "the plugin listens on TCP {addr} inside its environment, which the daemon \
                 cannot reach; bind a unix socket in PLUGIN_UNIX_SOCKET_DIR"
            )),
        }
    }
}

/// The variables a plugin is started with, over its spec's.
fn environment(inner: &Inner, plugin: &Plugin, place: &Place) -> BTreeMap<String, String> {
    let spec = &plugin.spec;
    let dir = place.inside.display().to_string();
    let mut env = spec.env.clone();
    let (key, value) = spec.cookie();
    env.insert(key.into(), value.into());
    env.insert(
        "PLUGIN_PROTOCOL_VERSIONS".into(),
        spec.versions()
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    env.insert("PLUGIN_UNIX_SOCKET_DIR".into(), dir.clone());
    // go-plugin before 1.5 ignores PLUGIN_UNIX_SOCKET_DIR and binds `ioutil.TempFile("",
    // "plugin")`, i.e. in $TMPDIR: point that at the private directory too (unless the spec
    // sets it), so the socket lands there, with a short path, and goes with the directory.
    env.entry("TMPDIR".into()).or_insert(dir);
    // The daemon's socket is a host file: a plugin in a container cannot reach it, and no
    // callback address is better than one that fails (and handing a container a way into the
    // daemon is a choice for its operator, not a default).
    if place.on_host {
        env.insert(
            "TEND_ADDR".into(),
            format!("unix://{}", inner.host_socket.display()),
        );
        env.insert("TEND_TOKEN".into(), plugin.token.clone());
    }
    env.insert("TEND_PLUGIN_NAME".into(), spec.name.clone());
    env
}

/// Start the plugin and wait until it serves.
pub(super) async fn launch(inner: &Inner, plugin: &Arc<Plugin>) -> Result<Launched> {
    let t0 = Instant::now();
    let spec = &plugin.spec;
    let native = spec.environment.is_empty() || spec.environment == NATIVE;
    let place = Place::make(inner, spec).await?;
    plugin.state().socket_dir = Some(place.host.clone());
    let env = environment(inner, plugin, &place);
    // Where the binary is found on this host; in another environment, it is that
    // environment's business.
    let program = if native {
        let mut seen = daemon_environment();
        seen.extend(env.clone());
        let path = resolve_binary(&spec.binary, &seen, spec.cwd.as_deref())?;
        plugin.state().binary_path = Some(path.clone());
        path.display().to_string()
    } else {
        spec.binary.clone()
    };
    let mut argv = vec![program.clone()];
    argv.extend(spec.args.iter().cloned());
    let started = Instant::now();
    let p = inner
        .sup
        .start(Spec {
            argv,
            env,
            cwd: spec.cwd.clone(),
            tags: [(PLUGIN_TAG.to_string(), spec.name.clone())].into(),
            environment: if native {
                NATIVE.into()
            } else {
                spec.environment.clone()
            },
            ..Spec::default()
        })
        .map_err(|e| match e {
            Error::Exec { message, .. } => LoadError::SpawnFailed {
                binary: program.clone().into(),
                source: std::io::Error::other(message),
            }
            .into(),
            e => e,
        })?;
    plugin.started(p.clone());
    let spawned = started.elapsed();

    let (mut hs, line) = read_handshake(&p, started + spec.handshake_timeout(), spec).await?;
    handshake::check_versions(&hs, spec.versions()).map_err(|m| LoadError::mismatch(m, &line))?;
    let unsupported = |reason| LoadError::HandshakeUnsupported {
        line: crate::error::quote(&line),
        reason,
    };
    if let Some(reason) = hs.unsupported() {
        return Err(unsupported(reason).into());
    }
    hs.network = place.dial(hs.network).map_err(unsupported)?;
    {
        let mut s = plugin.state();
        s.handshake = Some(hs.clone());
        s.handshake_line = clip_line(&line, 1024);
    }

    let handshaken = started.elapsed();
    let channel = dial::channel(&hs.network);
    let deadline = Instant::now() + spec.dial_timeout();
    // Health, and Info and reflection in the same round trip.
    let serving = tokio::select! {
        r = dial::serving_and_described(&channel, deadline, DESCRIBE_TIMEOUT) => r,
        _ = inner.sup.wait(&p, None) => Err(format!(
            "the plugin exited ({}) meanwhile",
            p.exit().as_ref().map(ended).unwrap_or_default()
        )),
    };
    let described = match serving {
        Ok(d) => d,
        Err(last_error) => {
            return Err(LoadError::DialTimeout {
                address: hs.network.to_string(),
                timeout: spec.dial_timeout(),
                last_error,
                stderr_tail: stderr_tail(&p, super::error::STDERR_TAIL_SHOWN as u64 * 2),
            }
            .into())
        }
    };
    // Where a Load's time goes (TEND_LOG=tend::loader=debug), from the spawn on.
    tracing::debug!(
        plugin = spec.name,
        prepare_us = started.duration_since(t0).as_micros() as u64,
        spawn_us = spawned.as_micros() as u64,
        handshake_us = handshaken.as_micros() as u64,
        described_us = started.elapsed().as_micros() as u64,
        "plugin launched"
    );
    Ok(Launched {
        process: p,
        handshake: hs,
        channel,
        services: described.services,
        version: described.version,
        native: described.native,
    })
}

/// `line`'s first `max` bytes (at a char boundary).
fn clip_line(line: &str, max: usize) -> String {
    if line.len() <= max {
        return line.to_string();
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_string()
}

/// Read the plugin's stdout log from its first byte, line by line, until a line is a handshake
/// (returned with the line as printed, without its end), a line is a broken one, the process
/// exits, or `deadline` passes. The lines before stay in the log; those that are not a
/// handshake are named in the error if none comes.
async fn read_handshake(
    p: &Process,
    deadline: Instant,
    spec: &super::spec::PluginSpec,
) -> Result<(Handshake, String), LoadError> {
    let mut cursor = Cursor::new(&[StreamKind::Stdout], 0);
    let mut changed = p.output.subscribe();
    let mut line: Vec<u8> = Vec::new();
    let mut noise: Vec<String> = Vec::new();
    let note = |noise: &mut Vec<String>, text: &str| {
        if !text.trim().is_empty() && noise.len() < NOISE_KEPT {
            noise.push(clip_line(text, NOISE_LINE_KEPT));
        }
    };
    let tail = |p: &Process| stderr_tail(p, super::error::STDERR_TAIL_SHOWN as u64 * 2);
    loop {
        changed.borrow_and_update();
        match p.output.read(&mut cursor, 64 << 10) {
            Read::Chunks(chunks) => {
                for chunk in chunks {
                    let crate::supervisor::Chunk::Data { data, .. } = chunk else {
                        // Bytes no longer retained: the line they were part of is lost.
                        line.clear();
                        continue;
                    };
                    for piece in data.split_inclusive(|b| *b == b'\n') {
                        line.extend_from_slice(piece);
                        if line.last() != Some(&b'\n') {
                            if line.len() > LINE_MAX {
                                note(&mut noise, &String::from_utf8_lossy(&line));
                                line.clear();
                            }
                            continue;
                        }
                        let text = String::from_utf8_lossy(&line)
                            .trim_end_matches(['\n', '\r'])
                            .to_string();
                        line.clear();
                        match handshake::parse(&text) {
                            Ok(h) => return Ok((h, text)),
                            Err(m) if m.is_noise() => note(&mut noise, &text),
                            Err(m) => return Err(LoadError::malformed(m, tail(p))),
                        }
                    }
                }
            }
            Read::Done(exit) => {
                if !line.is_empty() {
                    note(&mut noise, &String::from_utf8_lossy(&line));
                }
                return Err(LoadError::ExitedBeforeHandshake {
                    status: ended(&exit),
                    noise,
                    stderr_tail: tail(p),
                });
            }
            Read::Pending => {
                if tokio::time::timeout_at(deadline, changed.changed())
                    .await
                    .is_err()
                {
                    return Err(LoadError::HandshakeTimeout {
                        timeout: spec.handshake_timeout(),
                        noise,
                        stderr_tail: tail(p),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_is_looked_up_on_path_and_a_miss_names_every_directory() {
        let env = BTreeMap::from([("PATH".to_string(), "/nonexistent:/bin".to_string())]);
        assert!(resolve_binary("sh", &env, None).is_ok());
        match resolve_binary("no-such-plugin-xyz", &env, None) {
            Err(LoadError::BinaryNotFound { looked_in, .. }) => {
                assert_eq!(looked_in, [PathBuf::from("/nonexistent"), "/bin".into()])
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        match resolve_binary("./nope", &env, Some(Path::new("/srv"))) {
            Err(LoadError::BinaryNotFound { looked_in, .. }) => {
                assert_eq!(looked_in, [PathBuf::from("/srv/./nope")])
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        let tmp = std::env::temp_dir().join(format!("tend-loader-{}", std::process::id()));
        std::fs::write(&tmp, "#!/bin/sh\n").unwrap();
        let e = resolve_binary(tmp.to_str().unwrap(), &env, None).unwrap_err();
        assert_eq!(
            crate::error::Error::from(e).code(),
            tonic::Code::PermissionDenied
        );
        let _ = std::fs::remove_file(&tmp);
    }

    #[test]
    fn a_socket_in_a_container_is_dialled_through_the_shared_directory_only() {
        let place = Place {
            host: "/state/docker/e-1/plugins/p1".into(),
            inside: "/.tend/plugins/p1".into(),
            on_host: false,
        };
        assert_eq!(
            place.dial(Network::Unix("/.tend/plugins/p1/kv.sock".into())),
            Ok(Network::Unix("/state/docker/e-1/plugins/p1/kv.sock".into()))
        );
        let e = place
            .dial(Network::Unix("/tmp/plugin1/kv.sock".into()))
            .unwrap_err();
        assert!(
            e.contains("outside PLUGIN_UNIX_SOCKET_DIR (/.tend/plugins/p1)"),
            "{e}"
        );
        let e = place
            .dial(Network::Tcp("127.0.0.1:7000".parse().unwrap()))
            .unwrap_err();
        assert!(e.contains("bind a unix socket"), "{e}");
        let host = Place {
            on_host: true,
            ..place
        };
        let tcp = Network::Tcp("127.0.0.1:7000".parse().unwrap());
        assert_eq!(host.dial(tcp.clone()), Ok(tcp));
    }

    #[test]
    fn an_open_socket_dir_lets_another_user_in_but_not_list() {
        let root = std::env::temp_dir().join(format!("tend-so-{}", std::process::id()));
        let dir = socket_dir(&root, true).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&root), mode(&dir)), (0o711, 0o733));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn socket_dirs_are_private_and_a_long_root_is_refused() {
        let root = std::env::temp_dir().join(format!("tend-sd-{}", std::process::id()));
        let dir = socket_dir(&root, false).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let long = root.join("x".repeat(90));
        let e = socket_dir(&long, false).unwrap_err();
        assert!(e.to_string().contains("107-byte limit"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
