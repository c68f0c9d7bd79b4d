//! Processes in a container: each one a Docker exec, behind the supervisor's `Environment`.
//!
//! Docker has no call to signal an exec, nor to learn its PID inside the container, so each
//! process starts under a small `/bin/sh` wrapper (`WRAPPER`) that checks the program exists,
//! prints its PID and process group as the first line of output, and execs the program as the
//! leader of a group of its own. Signals are then `kill` run by a second, short exec.
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::ExecConfig;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::attach::{self, kind_of, Output};
use super::engine::Engine;
use super::fifo::{self, Fifos, TARGET};
use super::group::{self, ExecGroup, ExecTerminal};
use super::settings::DockerSettings;
use crate::error::{clip, quote, Error, Result};
use crate::supervisor::environment::{
    BoxFuture, Environment, Group, Io, Launched, Sockets, Terminal,
};
use crate::supervisor::output::StreamKind;
use crate::supervisor::spec::{Spec, NON_INTERACTIVE_ENV};

/// Runs as `sh -c WRAPPER tend-exec ROWS COLS FIFO IN N [NAME=VALUE × N] PROGRAM ARGS…`. ROWS
/// and COLS are `-` without a terminal; FIFO is `-`, or the prefix of the FIFOs (`fifo`) that
/// the program's stdout and stderr (`FIFO.out`, `FIFO.err`) and, when IN is `in`, its stdin
/// (`FIFO.in`) are to be; N is `-` when the program gets the exec's environment (the
/// container's, with the exec's variables over it), else the count of the only variables it
/// gets (`clear_env`). Its first line of output is `PID PGID`, or `!127 PATH` / `!126 PATH`
/// when the program is missing or not executable (the codes a shell gives), before anything of
/// the program's own.
///
/// - With FIFOs, the first line goes to the exec's own stdout (kept as fd 3) only once the
///   FIFOs are open, which tells the daemon it may let go of its holds on them; fd 3 is closed
///   for the program, so the exec's output ends there (the exit is then seen by the FIFOs'
///   hang-up, `fifo::watch_hangup`).
/// - The program is looked up as execvp does, in the wrapper's own shell (no fork), so a
///   missing one fails the launch up front instead of as an exit code.
/// - With a terminal, `stty` sets its size before the program starts: the engine's resize call
///   can only come after the exec started, and `stty size` must not see 0 0.
/// - The shell exports variables of its own (ash: SHLVL, PWD); `env -u` keeps them from the
///   program, and `env -i` clears the container's when asked (the engine always adds them).
/// - runc makes every exec a session leader (checked: with and without a TTY, pgrp = sid = PID),
///   so the program runs as the leader of a group of its own and signals to `-PID` reach all it
///   starts. Another runtime may not; then `setsid` makes one, and it must only run when we are
///   not a group leader already: setsid(1) forks when the caller leads a group, which would
///   change the PID and let the parent exit. Without `setsid` the program stays in the
///   wrapper's group, which is reported, and then only the leader is signalled.
const WRAPPER: &str = r#"r=$1 c=$2 o=$3 s=$4 n=$5; shift 5
if [ "$n" = - ]; then
  a=$1; p=${PATH-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
else
  eval "a=\${$((n + 1))}"; p=/usr/local/bin:/usr/bin:/bin; i=0
  for x; do
    [ $i -lt "$n" ] || break; i=$((i + 1))
    case $x in PATH=*) p=${x#PATH=} ;; esac
  done
fi
case $a in
*/*) [ -e "$a" ] || { echo "!127 $p"; exit 127; }
  [ -f "$a" ] && [ -x "$a" ] || { echo "!126 $p"; exit 126; } ;;
*) f=; set -f; IFS=:
  for d in $p; do
    if [ -f "${d:-.}/$a" ]; then
      if [ -x "${d:-.}/$a" ]; then f=x; break; fi; f=n
    fi
  done
  set +f; unset IFS
  case $f in x) ;; n) echo "!126 $p"; exit 126 ;; *) echo "!127 $p"; exit 127 ;; esac ;;
esac
[ "$r" = - ] || stty rows "$r" cols "$c" 2>/dev/null
if [ "$n" != - ]; then set -- env -i "$@"
else case $a in *=*) ;; *)
  command -v env >/dev/null 2>&1 && set -- env -u SHLVL -u PWD -- "$@" ;; esac
fi
if [ "$o" = - ]; then exec 3>&1
else exec 3>&1 >"$o.out" 2>"$o.err"; [ "$s" = - ] || exec <"$o.in"; fi
read -r _ _ _ _ g _ </proc/self/stat
if [ "$g" = $$ ]; then echo "$$ $$" >&3; exec "$@" 3>&-; fi
if command -v setsid >/dev/null 2>&1; then echo "$$ $$" >&3; exec setsid "$@" 3>&-; fi
echo "$$ $g" >&3; exec "$@" 3>&-"#;

/// Docker's default detach keys (ctrl-p ctrl-q) would end a TTY exec's input when a program is
/// sent them; an exec cannot be without detach keys, so they are a sequence nobody types. (The
/// engine holds back a byte that starts the sequence until the next one arrives.)
const DETACH_KEYS: &str = "ctrl-@,ctrl-^,ctrl-@,ctrl-_,ctrl-@,ctrl-]";

/// How long the wrapper has to print its first line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes read looking for the first line.
const FIRST_LINE_MAX: usize = 4096;
/// A container that processes run in.
pub struct DockerEnv {
    engine: Engine,
    container: String,
    user: Option<String>,
    /// The host directory of FIFOs bind-mounted into the container, if any.
    fifo: Option<FifoDir>,
}

/// The host side of a container's `/.tend`.
struct FifoDir {
    dir: PathBuf,
    /// Whether its FIFOs reach the container's processes, once probed (`fifo::probe`).
    works: tokio::sync::OnceCell<bool>,
    /// Numbers the FIFOs' names.
    next: AtomicU64,
}

impl DockerEnv {
    /// Processes in `container` (made by `Engine::create_container` from `settings`), their
    /// non-terminal output and input through FIFOs in `fifo_dir` (the one given to
    /// `create_container`) when those work; `None` sends all through the engine.
    pub fn new(
        engine: Engine,
        container: String,
        settings: &DockerSettings,
        fifo_dir: Option<PathBuf>,
    ) -> DockerEnv {
        DockerEnv {
            fifo: fifo_dir.filter(|_| engine.is_local()).map(|dir| FifoDir {
                dir,
                works: tokio::sync::OnceCell::new(),
                next: AtomicU64::new(0),
            }),
            engine,
            container,
            user: settings.user.clone(),
        }
    }

    /// FIFOs for a process without a terminal (`stdin`: with its input too), when the fast
    /// path is there; else its I/O goes through the engine. The first call probes.
    async fn fifos(&self, stdin: bool) -> Option<Fifos> {
        let f = self.fifo.as_ref()?;
        if !self.shared(f).await {
            return None;
        }
        let name = format!("p{}", f.next.fetch_add(1, Ordering::Relaxed));
        // A few syscalls on a local directory; launches run off the async workers
        // (the supervisor's `block_in_place`).
        match Fifos::make(&f.dir, &name, stdin) {
            Ok(fifos) => Some(fifos),
            Err(e) => {
                tracing::warn!(dir = %f.dir.display(), error = %e, "cannot make FIFOs; output goes through the engine");
                None
            }
        }
    }

    /// Whether the container's processes and the daemon share `f`'s files (FIFOs and unix
    /// sockets alike: the same kernel). The first call probes.
    async fn shared(&self, f: &FifoDir) -> bool {
        *f.works
            .get_or_init(|| async {
                match fifo::probe(&self.engine, &self.container, self.user.clone(), &f.dir).await {
                    Ok(()) => true,
                    Err(why) => {
                        tracing::info!(
                            container = short(&self.container),
                            why,
                            "FIFOs do not reach the container; output goes through the engine"
                        );
                        false
                    }
                }
            })
            .await
    }

    /// The container's id.
    pub fn container(&self) -> &str {
        &self.container
    }

    async fn start(&self, spec: &Spec) -> Result<Launched> {
        let Some(program) = spec.argv.first() else {
            return Err(Error::invalid("spec.argv", "must not be empty"));
        };
        refuse_hints(spec)?;
        let cwd = match &spec.cwd {
            None => None,
            Some(p) => {
                let s = p.to_str().filter(|s| s.starts_with('/')).ok_or_else(|| {
                    Error::invalid(
                        "spec.cwd",
                        format!(
                            "{} must be an absolute path in the container",
                            quote(&p.to_string_lossy())
                        ),
                    )
                })?;
                Some(s.to_string())
            }
        };
        if spec.clear_env && program.contains('=') {
            // env(1) would take it for a variable, and nothing else clears the environment.
            return Err(Error::invalid(
                "spec.argv[0]",
                format!(
                    "{} holds '=', which a container process with clear_env cannot be named by",
                    quote(program)
                ),
            ));
        }
        let tty = spec.pty;
        let fifos = match tty {
            None => self.fifos(spec.stdin).await,
            Some(_) => None,
        };
        let attach_stdin = tty.is_some() || (spec.stdin && fifos.is_none());
        // Made before the exec starts, so that nothing can fail between its start and its
        // return to the supervisor, which would leave it running untracked.
        let stdin_pipe = attach_stdin
            .then(|| nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC))
            .transpose()
            .map_err(|e| Error::io("pipe for stdin", e.into()))?;
        let config = self.exec_config(spec, cwd.clone(), fifos.as_ref());
        let docker = &self.engine.docker;
        let exec = docker
            .create_exec(&self.container, config)
            .await
            .map_err(|e| self.exec_error(program, cwd.as_deref(), e))?
            .id;
        let (mut output, input) = attach::start(&self.engine, &exec, tty.is_some())
            .await
            .map_err(|e| self.exec_error(program, cwd.as_deref(), e))?;
        if let Some(size) = tty {
            if let Err(e) = group::resize(&self.engine, &exec, size).await {
                tracing::debug!(exec, error = %e, "cannot size an exec's terminal");
            }
        }
        let first = tokio::time::timeout(START_TIMEOUT, first_line(&mut output, tty.is_some()))
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "{} did not start in container {} within {START_TIMEOUT:?}",
                    quote(program),
                    short(&self.container)
                ))
            })?;
        let (line, pending) = match first {
            First::Line(line, pending) => (line, pending),
            First::Ended(text) => {
                return Err(self
                    .start_failed(program, cwd.as_deref(), &exec, &text)
                    .await)
            }
        };
        let (pid, pgid) = match parse_first(&line) {
            Some(Start::Running { pid, pgid }) => (pid, pgid),
            Some(Start::Missing { not_found, path }) => {
                return Err(missing(program, not_found, &path))
            }
            None => {
                // Not ours: the engine's own complaint (the exec did not start), then the end.
                let mut text = String::from_utf8_lossy(&line).into_owned();
                for (_, b) in &pending {
                    text.push_str(&String::from_utf8_lossy(b));
                }
                text.push_str(&drain(output).await);
                return Err(self
                    .start_failed(program, cwd.as_deref(), &exec, &text)
                    .await);
            }
        };
        let (over, over_rx) = watch::channel(false);
        // Resizes under way (a terminal's): input waits for them.
        let resizing = Arc::new(watch::channel(0u32).0);
        let last_signal = Arc::new(AtomicI32::new(0));
        let group = ExecGroup {
            engine: self.engine.clone(),
            container: self.container.clone(),
            exec: exec.clone(),
            pid,
            own_group: pgid == pid,
            last_signal: last_signal.clone(),
        };
        if let Some(fifos) = fifos {
            // The wrapper has its ends open (it said so only after opening them).
            let (stdout, stderr, stdin) = match fifos.opened() {
                Ok(ends) => ends,
                Err(e) => {
                    // Started, but not to be tracked: it must not run on.
                    group.kill().await;
                    return Err(Error::io("open a container process's FIFOs", e));
                }
            };
            if let Err(e) = fifo::watch_hangup(&stdout, &stderr, over) {
                // The exit is then seen by asking the engine every so often.
                tracing::warn!(error = %e, "cannot watch a container process's FIFOs");
            }
            for (kind, b) in pending {
                tracing::debug!(?kind, text = %String::from_utf8_lossy(&b), "a container process's wrapper said more");
            }
            drop(input);
            // Nothing more comes this way (fd 3 is closed for the program), but the exec is
            // not to be held up by an unread connection.
            tokio::spawn(async move {
                while let Some(Ok(out)) = output.next().await {
                    if let Some((_, b)) = kind_of(out, false) {
                        tracing::debug!(text = %String::from_utf8_lossy(&b), "a container process's wrapper said more");
                    }
                }
            });
            let exit = group::wait_exit(self.engine.clone(), exec, over_rx, last_signal);
            return Ok(Launched {
                pid,
                io: Io::Pipes {
                    stdin,
                    stdout,
                    stderr,
                },
                exit: Box::pin(exit),
                group: Arc::new(group),
            });
        }
        let stdin = match stdin_pipe {
            Some((read, write)) => {
                let forward = attach::forward_stdin(
                    read,
                    input,
                    tty.map(|_| resizing.subscribe()),
                    over_rx.clone(),
                );
                tokio::spawn(forward);
                Some(write)
            }
            None => {
                drop(input);
                None
            }
        };
        let output = Output {
            pending,
            inner: output,
            tty: tty.is_some(),
            over,
        };
        let exit = group::wait_exit(self.engine.clone(), exec.clone(), over_rx, last_signal);
        let terminal = tty.map(|_| {
            Box::new(ExecTerminal {
                engine: self.engine.clone(),
                exec: exec.clone(),
                runtime: tokio::runtime::Handle::current(),
                resizing,
            }) as Box<dyn Terminal>
        });
        Ok(Launched {
            pid,
            io: Io::Stream {
                output: output.boxed(),
                stdin,
                terminal,
            },
            exit: Box::pin(exit),
            group: Arc::new(group),
        })
    }

    /// The exec of `spec`: the wrapper and the program, attached, with the exec's variables.
    fn exec_config(&self, spec: &Spec, cwd: Option<String>, fifos: Option<&Fifos>) -> ExecConfig {
        let tty = spec.pty;
        let env = exec_env(spec);
        let mut cmd: Vec<String> = ["/bin/sh", "-c", WRAPPER, "tend-exec"]
            .map(String::from)
            .into();
        match tty {
            Some(s) => cmd.extend([s.rows.to_string(), s.cols.to_string()]),
            None => cmd.extend(["-".to_string(), "-".to_string()]),
        }
        match fifos {
            Some(f) => cmd.extend([
                f.target.clone(),
                if spec.stdin { "in" } else { "-" }.to_string(),
            ]),
            None => cmd.extend(["-".to_string(), "-".to_string()]),
        }
        if spec.clear_env {
            // The engine adds the container's variables to an exec's; only env -i clears them.
            cmd.push(env.len().to_string());
            cmd.extend(env.iter().cloned());
        } else {
            cmd.push("-".to_string());
        }
        cmd.extend(spec.argv.iter().cloned());
        ExecConfig {
            attach_stdin: Some(tty.is_some() || (spec.stdin && fifos.is_none())),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty.is_some()),
            detach_keys: tty.map(|_| DETACH_KEYS.to_string()),
            // Engines from API 1.42 size the terminal at creation; older ones ignore it.
            console_size: tty.map(|s| vec![usize::from(s.rows), usize::from(s.cols)]),
            env: (!spec.clear_env).then_some(env),
            cmd: Some(cmd),
            user: self.user.clone(),
            working_dir: cwd,
            ..Default::default()
        }
    }

    /// An error of the exec calls, in terms of what was asked.
    fn exec_error(&self, program: &str, cwd: Option<&str>, e: BollardError) -> Error {
        if let BollardError::DockerResponseServerError { message, .. } = &e {
            if let Some(err) = classify(program, cwd, &self.container, message) {
                return err;
            }
        }
        self.engine.error(
            &format!(
                "run {} in container {}",
                quote(program),
                short(&self.container)
            ),
            e,
        )
    }

    /// The exec ended before the wrapper said anything: the engine could not start it.
    async fn start_failed(
        &self,
        program: &str,
        cwd: Option<&str>,
        exec: &str,
        text: &str,
    ) -> Error {
        let code = match self.engine.docker.inspect_exec(exec).await {
            Ok(info) => info.exit_code,
            Err(_) => None,
        };
        let text = text.trim();
        if let Some(err) = classify(program, cwd, &self.container, text) {
            return err;
        }
        Error::FailedPrecondition(format!(
            "cannot run {} in container {} (exit code {}): {}",
            quote(program),
            short(&self.container),
            code.map_or("unknown".to_string(), |c| c.to_string()),
            clip(if text.is_empty() { "no output" } else { text })
        ))
    }
}

impl Environment for DockerEnv {
    fn launch<'a>(&'a self, _id: &'a str, spec: &'a Spec) -> BoxFuture<'a, Result<Launched>> {
        Box::pin(self.start(spec))
    }

    fn sockets(&self) -> BoxFuture<'_, Sockets> {
        Box::pin(async move {
            let Some(f) = &self.fifo else {
                return Sockets::Unreachable(
                    "its Docker engine is not on this host, so a unix socket in the container \
                     cannot be dialled from the daemon"
                        .into(),
                );
            };
            if !self.shared(f).await {
                return Sockets::Unreachable(format!(
                    "files in its {TARGET} do not reach the daemon (an engine in a VM?), so a \
                     unix socket in the container cannot be dialled from the daemon"
                ));
            }
            Sockets::Shared {
                host: f.dir.clone(),
                inside: TARGET.into(),
                open: !matches!(self.user.as_deref(), None | Some("" | "root" | "0" | "0:0")),
            }
        })
    }

    /// The container's network namespace, when its engine runs on this host (its processes'
    /// pids are then this host's).
    fn netns(&self) -> BoxFuture<'_, std::result::Result<Option<PathBuf>, String>> {
        Box::pin(async move {
            if self.fifo.is_none() {
                return Err(
                    "the Docker engine is not on this host, so the container's network \
                            cannot be entered; give the probe a host (a port the engine \
                            publishes)"
                        .into(),
                );
            }
            self.engine.container_netns(&self.container).await.map(Some)
        })
    }
}

/// A container process is a `docker exec` in the container's cgroup, started by the engine: the
/// daemon has no hook before its program runs, and its limits would be the container's. Refused
/// rather than ignored, so that a caller never believes a limit holds that does not.
fn refuse_hints(spec: &Spec) -> Result<()> {
    let asked: Vec<&str> = [
        ("spec.nice", spec.nice.is_some()),
        ("spec.oom_score_adj", spec.oom_score_adj.is_some()),
        ("spec.limits", spec.limits.any()),
    ]
    .into_iter()
    .filter_map(|(f, set)| set.then_some(f))
    .collect();
    if asked.is_empty() {
        return Ok(());
    }
    Err(Error::FailedPrecondition(format!(
        "{}: resource hints are not applied in a Docker environment (its processes are \
         `docker exec`s sharing the container's cgroup); leave them unset there and limit the \
         container instead (`docker update --memory … --pids-limit …`), or run the process in \
         a native or Nix environment",
        asked.join(", ")
    )))
}

/// The wrapper found no program to run: the error a shell's 127 or 126 stands for.
fn missing(program: &str, not_found: bool, path: &str) -> Error {
    let message = match (program.contains('/'), not_found) {
        (true, true) => format!(
            "spec.argv[0]: {} does not exist in the container",
            quote(program)
        ),
        (false, true) => format!(
            "spec.argv[0]: {} not found on the container's PATH (looked in {})",
            quote(program),
            clip(path)
        ),
        (_, false) => format!(
            "spec.argv[0]: {} is not an executable file in the container",
            quote(program)
        ),
    };
    Error::Exec { message, not_found }
}

/// What the engine says when it cannot start an exec, as the caller's mistake where it is one.
fn classify(program: &str, cwd: Option<&str>, container: &str, message: &str) -> Option<Error> {
    let lower = message.to_lowercase();
    if lower.contains("chdir to cwd") || lower.contains("cwd must be") {
        return Some(Error::invalid(
            "spec.cwd",
            format!(
                "{} is not a directory in the container ({})",
                quote(cwd.unwrap_or("")),
                clip(message.trim())
            ),
        ));
    }
    if lower.contains("unable to find user") || lower.contains("no matching entries in passwd") {
        return Some(Error::FailedPrecondition(format!(
            "docker.user: {}; name a user of the image, or a numeric uid",
            clip(message.trim())
        )));
    }
    if lower.contains("/bin/sh") && (lower.contains("no such file") || lower.contains("not found"))
    {
        return Some(Error::FailedPrecondition(format!(
            "the image of container {} has no /bin/sh, which tend needs to start and signal \
             processes in it ({}); use an image with a shell",
            short(container),
            clip(message.trim())
        )));
    }
    if lower.contains("is not running") || lower.contains("no such container") {
        return Some(Error::FailedPrecondition(format!(
            "cannot run {}: container {} is not running; initialise the environment again",
            quote(program),
            short(container)
        )));
    }
    None
}

/// The exec's variables over the container's (image and settings): the non-interactive set
/// when it applies (or the terminal's TERM), then the client's. (The engine merges them over
/// the container's own; the daemon's environment is none of the container's business.)
fn exec_env(spec: &Spec) -> Vec<String> {
    let mut env = std::collections::BTreeMap::new();
    if spec.non_interactive.unwrap_or(spec.pty.is_none()) {
        for (k, v) in NON_INTERACTIVE_ENV {
            env.insert(k.to_string(), v.to_string());
        }
    } else if spec.pty.is_some() {
        env.insert("TERM".to_string(), "xterm-256color".to_string());
    }
    for (k, v) in &spec.env {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

pub(super) fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The wrapper's first line.
enum First {
    /// The line (without its end), and what came with or before it, in order.
    Line(Vec<u8>, VecDeque<(StreamKind, Bytes)>),
    /// The output ended first; all it held.
    Ended(String),
}

/// Read up to the end of the first line of stdout (or the terminal).
async fn first_line(output: &mut attach::Chunks, tty: bool) -> First {
    let mut pending = VecDeque::new();
    let mut buf = BytesMut::new();
    let mut seen = String::new();
    while let Some(item) = output.next().await {
        let (kind, message) = match item {
            Ok(out) => match kind_of(out, tty) {
                Some(x) => x,
                None => continue,
            },
            Err(e) => {
                seen.push_str(&e.to_string());
                break;
            }
        };
        if kind == StreamKind::Stderr {
            // The program's stderr may overtake the wrapper's line on stdout: keep it for later.
            seen.push_str(&String::from_utf8_lossy(&message));
            pending.push_back((kind, message));
            continue;
        }
        buf.extend_from_slice(&message);
        if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let mut line = buf.split_to(nl + 1);
            line.truncate(nl);
            if line.last() == Some(&b'\r') {
                line.truncate(nl - 1);
            }
            if !buf.is_empty() {
                pending.push_back((kind, buf.freeze()));
            }
            return First::Line(line.to_vec(), pending);
        }
        if buf.len() > FIRST_LINE_MAX {
            return First::Line(buf.to_vec(), pending);
        }
    }
    seen.insert_str(0, &String::from_utf8_lossy(&buf));
    First::Ended(seen)
}

/// The rest of an output that is not the program's, as text (bounded, for an error message).
async fn drain(mut output: attach::Chunks) -> String {
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(out)) = output.next().await {
            if let Some((_, b)) = kind_of(out, false) {
                text.push_str(&String::from_utf8_lossy(&b));
            }
            if text.len() > FIRST_LINE_MAX {
                break;
            }
        }
    })
    .await;
    text
}

/// What the first line says.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    Running { pid: u32, pgid: u32 },
    Missing { not_found: bool, path: String },
}

fn parse_first(line: &[u8]) -> Option<Start> {
    let line = std::str::from_utf8(line).ok()?;
    if let Some(rest) = line.strip_prefix('!') {
        let (code, path) = rest.split_once(' ').unwrap_or((rest, ""));
        return match code {
            "127" => Some(Start::Missing {
                not_found: true,
                path: path.to_string(),
            }),
            "126" => Some(Start::Missing {
                not_found: false,
                path: path.to_string(),
            }),
            _ => None,
        };
    }
    let (pid, pgid) = line.split_once(' ')?;
    Some(Start::Running {
        pid: pid.parse().ok()?,
        pgid: pgid.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_a_pid_or_a_missing_program() {
        assert_eq!(
            parse_first(b"42 42"),
            Some(Start::Running { pid: 42, pgid: 42 })
        );
        assert_eq!(
            parse_first(b"!127 /bin:/usr/bin"),
            Some(Start::Missing {
                not_found: true,
                path: "/bin:/usr/bin".into()
            })
        );
        assert_eq!(
            parse_first(b"!126 /bin"),
            Some(Start::Missing {
                not_found: false,
                path: "/bin".into()
            })
        );
        assert_eq!(parse_first(b"OCI runtime exec failed: x"), None);
        assert_eq!(parse_first(b"!1 x"), None);
    }

    #[test]
    fn exec_env_is_the_non_interactive_set_then_the_clients() {
        let mut spec = Spec {
            argv: vec!["true".into()],
            ..Spec::default()
        };
        spec.env.insert("PAGER".into(), "less".into());
        let env = exec_env(&spec);
        assert!(env.contains(&"TERM=dumb".to_string()), "{env:?}");
        assert!(env.contains(&"PAGER=less".to_string()), "{env:?}");
        // Nothing of the daemon's own environment.
        assert!(!env.iter().any(|e| e.starts_with("HOME=")), "{env:?}");
        spec.pty = Some(crate::supervisor::spec::PtySize { rows: 2, cols: 3 });
        let env = exec_env(&spec);
        assert!(env.contains(&"TERM=xterm-256color".to_string()), "{env:?}");
        assert!(!env.iter().any(|e| e.starts_with("NO_COLOR=")), "{env:?}");
    }
}
