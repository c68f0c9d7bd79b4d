//! Processes in a container: each one a Docker exec, behind the supervisor's `Environment`.
//!
//! Docker has no call to signal an exec, nor to learn its PID inside the container, so each
//! process starts under a small `/bin/sh` wrapper (`WRAPPER`) that checks the program exists,
//! prints its PID and process group as the first line of output, and execs the program as the
//! leader of a group of its own. Signals are then `kill` run by a second, short exec.
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::ResizeExecOptionsBuilder;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::engine::Engine;
use super::settings::DockerSettings;
use crate::error::{clip, quote, Error, Result};
use crate::supervisor::environment::{
    BoxFuture, Environment, Group, Io, Launched, SignalError, Terminal,
};
use crate::supervisor::output::StreamKind;
use crate::supervisor::reaper::Ended;
use crate::supervisor::spec::{PtySize, Spec, NON_INTERACTIVE_ENV};

/// Runs as `sh -c WRAPPER tend-exec ROWS COLS N [NAME=VALUE × N] PROGRAM ARGS…`. ROWS and COLS
/// are `-` without a terminal; N is `-` when the program gets the exec's environment (the
/// container's, with the exec's variables over it), else the count of the only variables it
/// gets (`clear_env`). Its first line of output is `PID PGID`, or `!127 PATH` / `!126 PATH`
/// when the program is missing or not executable (the codes a shell gives), before anything of
/// the program's own.
///
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
const WRAPPER: &str = r#"r=$1 c=$2 n=$3; shift 3
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
else case $a in -*|*=*) ;; *)
  command -v env >/dev/null 2>&1 && set -- env -u SHLVL -u PWD "$@" ;; esac
fi
read -r _ _ _ _ g _ </proc/self/stat
if [ "$g" = $$ ]; then echo "$$ $$"; exec "$@"; fi
if command -v setsid >/dev/null 2>&1; then echo "$$ $$"; exec setsid "$@"; fi
echo "$$ $g"; exec "$@""#;

/// Runs as `sh -c KILL tend-kill -SIG TARGET`: the shell's kill (no /bin/kill needed), then its
/// status as the last word of output, which spares an inspect round trip. (busybox's kill takes
/// no `--`; a negative target after the signal is a group in every shell.)
const KILL: &str = r#"kill "$@" 2>&1; echo " $?""#;

/// Docker's default detach keys (ctrl-p ctrl-q) would end a TTY exec's input when a program is
/// sent them; an exec cannot be without detach keys, so they are a sequence nobody types. (The
/// engine holds back a byte that starts the sequence until the next one arrives.)
const DETACH_KEYS: &str = "ctrl-@,ctrl-^,ctrl-@,ctrl-_,ctrl-@,ctrl-]";

/// How often the exit future asks the engine while the output is still open.
const EXIT_POLL: Duration = Duration::from_millis(250);
/// The first asks after the output ended, when the exit is due at once.
const EXIT_POLL_FAST: Duration = Duration::from_millis(5);
/// How long the engine may be unreachable before an exit is given up on.
const ENGINE_LOST: Duration = Duration::from_secs(60);
/// How long the wrapper has to print its first line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes read looking for the first line.
const FIRST_LINE_MAX: usize = 4096;
/// How long `Group::kill` waits for the group to go.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A container that processes run in.
pub struct DockerEnv {
    engine: Engine,
    container: String,
    user: Option<String>,
}

impl DockerEnv {
    /// Processes in `container` (made by `Engine::create_container` from `settings`).
    pub fn new(engine: Engine, container: String, settings: &DockerSettings) -> DockerEnv {
        DockerEnv {
            engine,
            container,
            user: settings.user.clone(),
        }
    }

    /// The container's id.
    pub fn container(&self) -> &str {
        &self.container
    }

    async fn start(&self, spec: &Spec) -> Result<Launched> {
        let Some(program) = spec.argv.first() else {
            return Err(Error::invalid("spec.argv", "must not be empty"));
        };
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
        let tty = spec.pty;
        let attach_stdin = spec.stdin || tty.is_some();
        let env = exec_env(spec);
        let mut cmd: Vec<String> = ["/bin/sh", "-c", WRAPPER, "tend-exec"]
            .map(String::from)
            .into();
        match tty {
            Some(s) => cmd.extend([s.rows.to_string(), s.cols.to_string()]),
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
        let config = ExecConfig {
            attach_stdin: Some(attach_stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty.is_some()),
            detach_keys: tty.map(|_| DETACH_KEYS.to_string()),
            // Engines from API 1.42 size the terminal at creation; older ones ignore it.
            console_size: tty.map(|s| vec![usize::from(s.rows), usize::from(s.cols)]),
            env: (!spec.clear_env).then_some(env),
            cmd: Some(cmd),
            user: self.user.clone(),
            working_dir: cwd.clone(),
            ..Default::default()
        };
        let docker = &self.engine.docker;
        let exec = docker
            .create_exec(&self.container, config)
            .await
            .map_err(|e| self.exec_error(program, cwd.as_deref(), e))?
            .id;
        let options = StartExecOptions {
            detach: false,
            tty: tty.is_some(),
            output_capacity: Some(64 * 1024),
        };
        let (mut output, input) = match docker.start_exec(&exec, Some(options)).await {
            Ok(StartExecResults::Attached { output, input }) => (output, input),
            Ok(StartExecResults::Detached) => {
                return Err(Error::Internal("an attached exec started detached".into()))
            }
            Err(e) => return Err(self.exec_error(program, cwd.as_deref(), e)),
        };
        if let Some(size) = tty {
            resize(&self.engine, &exec, size).await;
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
                let message = match (program.contains('/'), not_found) {
                    (true, true) => {
                        format!(
                            "spec.argv[0]: {} does not exist in the container",
                            quote(program)
                        )
                    }
                    (false, true) => format!(
                        "spec.argv[0]: {} not found on the container's PATH (looked in {})",
                        quote(program),
                        clip(&path)
                    ),
                    (_, false) => format!(
                        "spec.argv[0]: {} is not an executable file in the container",
                        quote(program)
                    ),
                };
                return Err(Error::Exec { message, not_found });
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
        let stdin = if attach_stdin {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| Error::io("pipe for stdin", e.into()))?;
            tokio::spawn(forward_stdin(read, input));
            Some(write)
        } else {
            drop(input);
            None
        };
        let (ended_tx, ended_rx) = oneshot::channel();
        let output = Output {
            pending,
            inner: output,
            tty: tty.is_some(),
            ended: Some(ended_tx),
        };
        let last_signal = Arc::new(AtomicI32::new(0));
        let exit = wait_exit(
            self.engine.clone(),
            exec.clone(),
            ended_rx,
            last_signal.clone(),
        );
        let terminal = tty.map(|_| {
            Box::new(ExecTerminal {
                engine: self.engine.clone(),
                exec: exec.clone(),
                runtime: tokio::runtime::Handle::current(),
            }) as Box<dyn Terminal>
        });
        let group = ExecGroup {
            engine: self.engine.clone(),
            container: self.container.clone(),
            exec,
            pid,
            own_group: pgid == pid,
            last_signal,
        };
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

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

type Chunks = Pin<Box<dyn Stream<Item = std::result::Result<LogOutput, BollardError>> + Send>>;

/// The wrapper's first line.
enum First {
    /// The line (without its end), and what came with or before it, in order.
    Line(Vec<u8>, VecDeque<(StreamKind, Bytes)>),
    /// The output ended first; all it held.
    Ended(String),
}

/// Read up to the end of the first line of stdout (or the terminal).
async fn first_line(output: &mut Chunks, tty: bool) -> First {
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
async fn drain(mut output: Chunks) -> String {
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

/// A chunk of the exec's output as the supervisor's kind; `None` for nothing to deliver.
fn kind_of(out: LogOutput, tty: bool) -> Option<(StreamKind, Bytes)> {
    let (kind, message) = match out {
        LogOutput::StdOut { message } => (StreamKind::Stdout, message),
        LogOutput::StdErr { message } => (StreamKind::Stderr, message),
        // A terminal's output comes raw (no stream headers).
        LogOutput::Console { message } if tty => (StreamKind::Pty, message),
        LogOutput::Console { message } => (StreamKind::Stdout, message),
        LogOutput::StdIn { .. } => return None,
    };
    (!message.is_empty()).then_some((kind, message))
}

/// The exec's output, adapted chunk by chunk as the supervisor polls it: nothing is read from
/// the engine ahead of the supervisor, so a full log holds the process back. Its end is told
/// to the exit future.
struct Output {
    pending: VecDeque<(StreamKind, Bytes)>,
    inner: Chunks,
    tty: bool,
    ended: Option<oneshot::Sender<()>>,
}

impl Stream for Output {
    type Item = (StreamKind, Bytes);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(item) = this.pending.pop_front() {
            return Poll::Ready(Some(item));
        }
        if this.ended.is_none() {
            return Poll::Ready(None);
        }
        loop {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(out))) => {
                    if let Some(item) = kind_of(out, this.tty) {
                        return Poll::Ready(Some(item));
                    }
                }
                Poll::Ready(end) => {
                    if let Some(Err(e)) = end {
                        tracing::warn!(error = %e, "a container process's output broke off");
                    }
                    if let Some(tx) = this.ended.take() {
                        let _ = tx.send(());
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

/// Copy the supervisor's stdin pipe to the exec's input; at its end, half-close the
/// connection, which the engine passes on as end of file (for a terminal, the program sees
/// it only as the ^D it is sent).
async fn forward_stdin(read: OwnedFd, mut input: Pin<Box<dyn AsyncWrite + Send>>) {
    // from_owned_fd sets O_NONBLOCK on the read end's open file description only; the write
    // end that the supervisor holds is its own.
    let mut read = match tokio::net::unix::pipe::Receiver::from_owned_fd(read) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a container process's stdin pipe");
            return;
        }
    };
    if let Err(e) = tokio::io::copy(&mut read, &mut input).await {
        tracing::debug!(error = %e, "a container process's stdin ended early");
    }
    if let Err(e) = input.shutdown().await {
        tracing::debug!(error = %e, "cannot close a container process's stdin");
    }
}

async fn resize(engine: &Engine, exec: &str, size: PtySize) {
    let options = ResizeExecOptionsBuilder::default()
        .h(i32::from(size.rows))
        .w(i32::from(size.cols))
        .build();
    if let Err(e) = engine.docker.resize_exec(exec, options).await {
        tracing::debug!(exec, error = %e, "cannot resize an exec's terminal");
    }
}

/// How the exec ended, once the engine says it no longer runs: asked every `EXIT_POLL` (a
/// leader may exit while a child holds the output open, which the engine then closes within
/// 2 s), and at once when the output ends (the engine records the exit code before it closes
/// the output).
///
/// The engine reports a death by signal N as 128+N, as a shell does, so a code cannot tell
/// one from an exit(128+N). It is `Ended::Signal` only when tend itself sent N to this
/// process last; otherwise the code as it is.
async fn wait_exit(
    engine: Engine,
    exec: String,
    mut output_ended: oneshot::Receiver<()>,
    last_signal: Arc<AtomicI32>,
) -> Ended {
    let mut open = true;
    let mut delay = EXIT_POLL;
    let mut failing_since: Option<Instant> = None;
    loop {
        if open {
            tokio::select! {
                r = &mut output_ended => {
                    open = false;
                    if r.is_ok() {
                        delay = EXIT_POLL_FAST;
                    } else {
                        // The output was dropped unread: no news of the exit.
                        tokio::time::sleep(delay).await;
                    }
                }
                _ = tokio::time::sleep(delay) => {}
            }
        } else {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(EXIT_POLL);
        }
        match engine.docker.inspect_exec(&exec).await {
            Ok(info) if info.running == Some(false) => {
                let Some(code) = info.exit_code else {
                    tracing::warn!(
                        exec,
                        "the engine reports no exit code for an exec that ended"
                    );
                    return Ended::Code(255);
                };
                let code = i32::try_from(code).unwrap_or(255);
                let signal = code - 128;
                if (1..=31).contains(&signal) && last_signal.load(Ordering::SeqCst) == signal {
                    return Ended::Signal {
                        signal,
                        core_dumped: false,
                    };
                }
                return Ended::Code(code);
            }
            Ok(_) => failing_since = None,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                // Its container went (removed with it): killed with the container.
                tracing::warn!(exec, "the exec is gone with its container");
                return Ended::Signal {
                    signal: libc::SIGKILL,
                    core_dumped: false,
                };
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                tracing::warn!(exec, error = %e, "cannot ask the engine whether a process ended");
                if since.elapsed() > ENGINE_LOST {
                    return Ended::Code(255);
                }
                delay = EXIT_POLL;
            }
        }
    }
}

/// Resizes an exec's terminal through the engine.
struct ExecTerminal {
    engine: Engine,
    exec: String,
    runtime: tokio::runtime::Handle,
}

impl Terminal for ExecTerminal {
    fn resize(&mut self, size: PtySize) -> std::result::Result<(), String> {
        let engine = self.engine.clone();
        let exec = self.exec.clone();
        // The call is synchronous; the engine's answer is logged when it fails.
        self.runtime.spawn(async move {
            let options = ResizeExecOptionsBuilder::default()
                .h(i32::from(size.rows))
                .w(i32::from(size.cols))
                .build();
            if let Err(e) = engine.docker.resize_exec(&exec, options).await {
                tracing::warn!(exec, error = %e, "cannot resize a container process's terminal");
            }
        });
        Ok(())
    }
}

/// A process's group in the container, signalled by `kill` in a second exec.
struct ExecGroup {
    engine: Engine,
    container: String,
    exec: String,
    pid: u32,
    /// Whether the process leads a group of its own (see `WRAPPER`); if not, only it is
    /// signalled.
    own_group: bool,
    /// The last signal tend sent, for telling a death by it from an exit with 128+N.
    last_signal: Arc<AtomicI32>,
}

impl ExecGroup {
    fn target(&self, leader_only: bool) -> String {
        if leader_only || !self.own_group {
            self.pid.to_string()
        } else {
            format!("-{}", self.pid)
        }
    }

    /// Run `kill -SIG TARGET` in the container as root (the process may have changed its user;
    /// the container's root has CAP_KILL): its status and what it said.
    async fn kill_exec(
        &self,
        sig: i32,
        target: &str,
    ) -> std::result::Result<(i32, String), String> {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(
                [
                    "/bin/sh",
                    "-c",
                    KILL,
                    "tend-kill",
                    &format!("-{sig}"),
                    target,
                ]
                .map(String::from)
                .to_vec(),
            ),
            user: Some("0".to_string()),
            ..Default::default()
        };
        let docker = &self.engine.docker;
        let exec = docker
            .create_exec(&self.container, config)
            .await
            .map_err(|e| e.to_string())?
            .id;
        let mut output = match docker.start_exec(&exec, None).await {
            Ok(StartExecResults::Attached { output, .. }) => output,
            Ok(StartExecResults::Detached) => return Err("started detached".into()),
            Err(e) => return Err(e.to_string()),
        };
        let mut text = String::new();
        while let Some(item) = output.next().await {
            match item {
                Ok(out) => {
                    if let Some((_, b)) = kind_of(out, false) {
                        text.push_str(&String::from_utf8_lossy(&b));
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        let text = text.trim_end();
        let (said, status) = text.rsplit_once(' ').unwrap_or(("", text));
        match status.parse() {
            Ok(code) => Ok((code, said.trim().to_string())),
            Err(_) => Err(format!("kill said {}", quote(text))),
        }
    }
}

impl Group for ExecGroup {
    fn signal(
        &self,
        sig: i32,
        leader_only: bool,
    ) -> BoxFuture<'_, std::result::Result<(), SignalError>> {
        Box::pin(async move {
            let target = self.target(leader_only);
            // Recorded first: the exit may be seen before the kill exec returns.
            let before = if sig != 0 {
                self.last_signal.swap(sig, Ordering::SeqCst)
            } else {
                0
            };
            let result = self.kill_exec(sig, &target).await;
            match result {
                Ok((0, _)) => Ok(()),
                Ok((_, said)) if said.contains("No such process") => {
                    if sig != 0 {
                        let _ = self.last_signal.compare_exchange(
                            sig,
                            before,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                    }
                    Err(SignalError::Gone)
                }
                Ok((code, said)) => Err(SignalError::Failed(format!(
                    "kill -{sig} {target} in container {} exited {code}: {said}",
                    short(&self.container)
                ))),
                Err(why) => {
                    if why.contains("is not running") || why.contains("No such container") {
                        Err(SignalError::Gone)
                    } else {
                        Err(SignalError::Failed(format!(
                            "cannot run kill in container {}: {why}",
                            short(&self.container)
                        )))
                    }
                }
            }
        })
    }

    fn alive(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            if let Ok(info) = self.engine.docker.inspect_exec(&self.exec).await {
                if info.running == Some(true) {
                    return true;
                }
            }
            // Zombies count too, briefly: the container's PID 1 reaps them.
            matches!(self.kill_exec(0, &self.target(false)).await, Ok((0, _)))
        })
    }

    fn kill(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(SignalError::Failed(why)) = self.signal(libc::SIGKILL, false).await {
                tracing::warn!(error = %why, "cannot kill a container process's group");
            }
            let deadline = Instant::now() + KILL_WAIT;
            let mut delay = Duration::from_millis(10);
            while self.alive().await {
                if Instant::now() >= deadline {
                    tracing::warn!(
                        pid = self.pid,
                        container = short(&self.container),
                        "a container process's group outlived SIGKILL for {KILL_WAIT:?}"
                    );
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(250));
            }
        })
    }
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
        spec.pty = Some(PtySize { rows: 2, cols: 3 });
        let env = exec_env(&spec);
        assert!(env.contains(&"TERM=xterm-256color".to_string()), "{env:?}");
        assert!(!env.iter().any(|e| e.starts_with("NO_COLOR=")), "{env:?}");
    }
}
