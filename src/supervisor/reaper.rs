//! The daemon as a child subreaper: one task reaps every child, ours and the orphans reparented to
//! us, and hands exit statuses to whoever registered the PID.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// How a child ended, as waitpid(2) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal { signal: i32, core_dumped: bool },
}

type Waiters = HashMap<i32, oneshot::Sender<Ended>>;

/// Hands out exit statuses by PID.
pub struct Reaper {
    waiters: Mutex<Waiters>,
}

/// Held while spawning: the reaper cannot reap the new child before its waiter is registered.
pub struct SpawnGuard<'a>(MutexGuard<'a, Waiters>);

impl SpawnGuard<'_> {
    /// Register the child just spawned.
    pub fn watch(&mut self, pid: u32) -> oneshot::Receiver<Ended> {
        let (tx, rx) = oneshot::channel();
        self.0.insert(pid as i32, tx);
        rx
    }
}

impl Reaper {
    /// Become a child subreaper and start reaping. Must run inside a tokio runtime.
    pub fn start() -> Arc<Reaper> {
        // PR_SET_CHILD_SUBREAPER: grandchildren whose parent dies are reparented to us instead of
        // init, so we reap them (no zombies) and their process groups stay ours to kill.
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if rc != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot become a child subreaper");
        }
        super::dispositions::reset_inherited_ignores();
        let reaper = Arc::new(Reaper {
            waiters: Mutex::new(HashMap::new()),
        });
        let r = reaper.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut sigchld = match signal(SignalKind::child()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch SIGCHLD; exits will not be seen");
                    return;
                }
            };
            // SIGCHLDs coalesce; a slow tick covers a signal that arrived before we listened.
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
            loop {
                r.reap_all();
                tokio::select! {
                    _ = sigchld.recv() => {}
                    _ = tick.tick() => {}
                }
            }
        });
        reaper
    }

    /// Lock the waiter table for a spawn.
    pub fn guard(&self) -> SpawnGuard<'_> {
        SpawnGuard(self.waiters.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn reap_all(&self) {
        loop {
            let ended = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Ended::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, core)) => (
                    pid,
                    Ended::Signal {
                        signal: sig as i32,
                        core_dumped: core,
                    },
                ),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            let tx = self
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&ended.0.as_raw());
            // Orphans reparented to us have no waiter: reaping them is all they need.
            if let Some(tx) = tx {
                let _ = tx.send(ended.1);
            }
        }
    }
}

/// What `Reaper::run` captured of a helper command.
#[derive(Debug)]
pub struct Captured {
    pub ended: Ended,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Captured {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.ended == Ended::Code(0)
    }

    /// The last `n` lines of stderr, for error messages.
    pub fn stderr_tail(&self, n: usize) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Why `Reaper::run` did not capture an exit.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {timeout:?}; it was killed")]
    Timeout {
        program: String,
        timeout: std::time::Duration,
        /// What it wrote to stderr before it was killed.
        stderr: Vec<u8>,
    },
}

/// Most bytes of a helper's stdout or stderr kept; a helper is a probe or an evaluation, and
/// what goes beyond this is not read into memory (it is drained and dropped).
pub const MAX_CAPTURE: usize = 16 << 20;

impl Reaper {
    /// Run a helper command (a probe, `nix print-dev-env`) to completion through the reaper, so
    /// that its exit status is not stolen by the `waitpid(-1)` above: stdin is null, stdout and
    /// stderr are captured (up to `MAX_CAPTURE` each), each complete stderr line is handed to
    /// `on_stderr_line` as it arrives, and after `timeout` its process group is killed.
    pub async fn run(
        &self,
        mut cmd: std::process::Command,
        timeout: std::time::Duration,
        mut on_stderr_line: impl FnMut(&str) + Send,
    ) -> Result<Captured, RunError> {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};

        let program = cmd.get_program().to_string_lossy().into_owned();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let (pid, exit, stdout, stderr) = {
            let mut guard = self.guard();
            let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
                program: program.clone(),
                source,
            })?;
            let exit = guard.watch(child.id());
            let stdout = child.stdout.take().expect("piped");
            let stderr = child.stderr.take().expect("piped");
            (child.id(), exit, stdout, stderr)
        };
        let pipe = |fd: std::os::fd::OwnedFd| {
            tokio::net::unix::pipe::Receiver::from_owned_fd(fd).map_err(|source| RunError::Spawn {
                program: program.clone(),
                source,
            })
        };
        let out_rx = pipe(stdout.into())?;
        let err_rx = pipe(stderr.into())?;
        let read_out = async move {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 64 << 10];
            let mut rx = out_rx;
            loop {
                match rx.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let keep = n.min(MAX_CAPTURE - buf.len().min(MAX_CAPTURE));
                        buf.extend_from_slice(&chunk[..keep]);
                    }
                }
            }
            buf
        };
        let mut err_lines = Vec::new();
        let read_err = async {
            let mut rx = tokio::io::BufReader::new(err_rx);
            let mut line = Vec::new();
            loop {
                line.clear();
                match rx.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        on_stderr_line(String::from_utf8_lossy(&line).trim_end());
                        if err_lines.len() + line.len() <= MAX_CAPTURE {
                            err_lines.extend_from_slice(&line);
                        }
                    }
                }
            }
        };
        let all = async {
            let (stdout, ()) = tokio::join!(read_out, read_err);
            let ended = exit.await.unwrap_or(Ended::Signal {
                signal: libc::SIGKILL,
                core_dumped: false,
            });
            (stdout, ended)
        };
        let mut all = Box::pin(all);
        let finished = match tokio::time::timeout(timeout, &mut all).await {
            Ok(done) => Some(done),
            Err(_) => {
                // SIGTERM first: nix stops the builders it started in sessions of their own,
                // which a SIGKILL to its group would leave running.
                let _ = super::signal::to_group(pid, libc::SIGTERM);
                let grace = std::time::Duration::from_secs(2);
                if tokio::time::timeout(grace, &mut all).await.is_err() {
                    let _ = super::signal::to_group(pid, libc::SIGKILL);
                }
                None
            }
        };
        drop(all);
        match finished {
            Some((stdout, ended)) => Ok(Captured {
                ended,
                stdout,
                stderr: err_lines,
            }),
            None => Err(RunError::Timeout {
                program,
                timeout,
                stderr: err_lines,
            }),
        }
    }
}
