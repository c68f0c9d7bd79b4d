//! A container process's group, signalled by `kill` in a second exec; its exit, as the engine
//! tells it; its terminal, resized through the engine.
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use bollard::query_parameters::ResizeExecOptionsBuilder;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::attach::{kind_of, output_over};
use super::engine::Engine;
use super::exec::short;
use crate::error::quote;
use crate::supervisor::environment::{BoxFuture, Group, SignalError, Terminal};
use crate::supervisor::reaper::Ended;
use crate::supervisor::spec::PtySize;

/// Runs as `sh -c KILL tend-kill -SIG TARGET`: the shell's kill (no /bin/kill needed), then its
/// status as the last word of output, which spares an inspect round trip. (busybox's kill takes
/// no `--`; a negative target after the signal is a group in every shell.)
const KILL: &str = r#"kill "$@" 2>&1; echo " $?""#;

/// How often the exit future asks the engine while the output is still open.
const EXIT_POLL: Duration = Duration::from_millis(250);
/// The first asks after the output ended, when the exit is due at once.
const EXIT_POLL_FAST: Duration = Duration::from_millis(5);
/// How long the engine may be unreachable before an exit is given up on.
const ENGINE_LOST: Duration = Duration::from_secs(60);
/// How long `Group::kill` waits for the group to go.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Resize an exec's terminal.
pub(super) async fn resize(engine: &Engine, exec: &str, size: PtySize) -> Result<(), BollardError> {
    let options = ResizeExecOptionsBuilder::default()
        .h(i32::from(size.rows))
        .w(i32::from(size.cols))
        .build();
    engine.docker.resize_exec(exec, options).await
}

/// How the exec ended, once the engine says it no longer runs: asked every `EXIT_POLL` (a
/// leader may exit while a child holds the output open, which the engine then closes within
/// 2 s), and at once when the output ends (the engine records the exit code before it closes
/// the output).
///
/// The engine reports a death by signal N as 128+N, as a shell does, so a code cannot tell
/// one from an exit(128+N). It is `Ended::Signal` only when tend itself sent N to this
/// process last; otherwise the code as it is.
pub(super) async fn wait_exit(
    engine: Engine,
    exec: String,
    mut over: watch::Receiver<bool>,
    last_signal: Arc<AtomicI32>,
) -> Ended {
    let mut open = true;
    let mut delay = EXIT_POLL;
    let mut failing_since: Option<Instant> = None;
    loop {
        if open {
            tokio::select! {
                over = output_over(&mut over) => {
                    open = false;
                    if over {
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
pub(super) struct ExecTerminal {
    pub(super) engine: Engine,
    pub(super) exec: String,
    pub(super) runtime: tokio::runtime::Handle,
    /// How many resizes are under way; the terminal's input waits until none is, so that
    /// what a client types after a resize reaches a program that sees the new size.
    pub(super) resizing: Arc<watch::Sender<u32>>,
}

impl Terminal for ExecTerminal {
    fn resize(&mut self, size: PtySize) -> std::result::Result<(), String> {
        let engine = self.engine.clone();
        let exec = self.exec.clone();
        let resizing = self.resizing.clone();
        resizing.send_modify(|n| *n += 1);
        // The call is synchronous; the engine's answer is logged when it fails.
        self.runtime.spawn(async move {
            if let Err(e) = resize(&engine, &exec, size).await {
                tracing::warn!(exec, error = %e, "cannot resize a container process's terminal");
            }
            resizing.send_modify(|n| *n -= 1);
        });
        Ok(())
    }
}

/// A process's group in the container, signalled by `kill` in a second exec.
pub(super) struct ExecGroup {
    pub(super) engine: Engine,
    pub(super) container: String,
    pub(super) exec: String,
    pub(super) pid: u32,
    /// Whether the process leads a group of its own (see `WRAPPER`); if not, only it is
    /// signalled.
    pub(super) own_group: bool,
    /// The last signal tend sent, for telling a death by it from an exit with 128+N.
    pub(super) last_signal: Arc<AtomicI32>,
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
    /// The container's figures (`docker stats`, one sample): its processes are the engine's to
    /// account, and one exec's own share is not told apart.
    fn environment_usage(
        &self,
    ) -> Option<(
        String,
        BoxFuture<'_, Option<crate::supervisor::usage::EnvironmentUsage>>,
    )> {
        Some((
            self.container.clone(),
            Box::pin(self.engine.container_usage(&self.container)),
        ))
    }

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
