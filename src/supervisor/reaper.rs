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
