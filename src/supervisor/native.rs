//! The native environment: processes on this host. What only a host process needs — its
//! working directory checked, its program found on PATH, its pgid record and marker, the spawn,
//! its cgroup, signals by kill(2) — is kept here, apart from the process table that every
//! environment shares.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cgroup::{self, Cgroups};
use super::environment::{BoxFuture, Environment, Group, Io, Launched, SignalError};
use super::hints;
use super::reaper::{Ended, Reaper};
use super::records::{self, group_alive, Records};
use super::signal;
use super::spawn::{self, ChildIo};
use super::spec::{self, Spec};
use crate::error::{Error, Result};

/// Host processes: their records, their cgroups, and the one reaper of every child.
pub struct Native {
    pub(super) records: Records,
    pub(super) cgroups: Option<Cgroups>,
    /// Why there are no `cgroups`, for errors that need them.
    pub(super) no_cgroups: String,
    pub(super) reaper: Arc<Reaper>,
}

/// The host itself, or the host with a base environment in place of the daemon's own (a Nix
/// shell's variables): the same spawn, records and signals either way.
#[derive(Clone)]
pub struct NativeEnv {
    native: Arc<Native>,
    base: Option<Arc<BTreeMap<String, String>>>,
}

impl NativeEnv {
    pub(super) fn new(native: Arc<Native>) -> NativeEnv {
        NativeEnv { native, base: None }
    }

    /// Host processes that start from `base` instead of the daemon's environment (the client's
    /// `clear_env` still clears it).
    pub fn with_base(&self, base: BTreeMap<String, String>) -> NativeEnv {
        NativeEnv {
            native: self.native.clone(),
            base: Some(Arc::new(base)),
        }
    }

    /// The one reaper of the daemon's children, for helper commands.
    pub fn reaper(&self) -> Arc<Reaper> {
        self.native.reaper.clone()
    }

    /// Check the spec and start it: its record is written before the spawn and its marker is in
    /// its environment, so no child can run without being findable; it is born in its cgroup
    /// (else moved into it at once), so that what it starts is there too.
    fn start(&self, id: &str, spec: &Spec) -> Result<Launched> {
        let native = &self.native;
        spec.check_cwd()?;
        hints::check_limits(
            &spec.limits,
            native.cgroups.as_ref().ok_or(native.no_cgroups.as_str()),
        )?;
        let mut env = spec.environment_from(self.base.as_deref());
        let program = spec::resolve_program(&spec.argv[0], &env, spec.cwd.as_deref())?;
        native.records.prepare(id)?;
        let (key, marker) = native.records.marker(id);
        env.insert(key, marker.clone());
        let warn =
            |e: &std::io::Error| tracing::warn!(id, error = %e, "cannot make the process's cgroup");
        // Made before the spawn, so that the child is born in it: moving a running process
        // waits for an RCU grace period (1 to 17 ms measured), and what it forks meanwhile
        // stays outside. Its limits are in place before the child is.
        // On a hybrid host its limits are in cgroup v1 groups of its own (`v1`), made only
        // for a process with limits.
        let mut v1 = Vec::new();
        let made = match native.cgroups.as_ref().map(|c| (c, c.make(id))) {
            Some((cgroups, Ok((dir, fd)))) => {
                match hints::apply_limits(cgroups, &dir, id, &spec.limits) {
                    Ok(groups) => {
                        v1 = groups;
                        Some((dir, fd))
                    }
                    Err(e) => {
                        native.records.remove(id);
                        cgroup::remove(&dir);
                        return Err(e);
                    }
                }
            }
            Some((_, Err(e))) if spec.limits.any() => {
                native.records.remove(id);
                return Err(Error::FailedPrecondition(format!(
                    "spec.limits: cannot make the process's cgroup, which would hold its \
                     limits: {e}"
                )));
            }
            Some((_, Err(e))) => {
                warn(&e);
                None
            }
            None => None,
        };
        let spawned = spawn::spawn(
            spec,
            &program,
            &env,
            &native.reaper,
            made.as_ref().map(|(_, fd)| fd),
            &v1,
        )
        .inspect_err(|_| {
            native.records.remove(id);
            if let Some((dir, _)) = &made {
                cgroup::remove(dir);
            }
            for g in &v1 {
                cgroup::remove(&g.dir);
            }
        })?;
        // The child has joined them (or the spawn failed): the descriptors were for it.
        let v1: Vec<PathBuf> = v1.into_iter().map(|g| g.dir).collect();
        let cgroup = match made {
            Some((dir, _)) if spawned.in_cgroup => Some(dir),
            Some((dir, _)) => {
                tracing::warn!(id, "the process could not join its cgroup; it runs outside");
                cgroup::remove(&dir);
                None
            }
            None => None,
        };
        let io = match spawned.io {
            ChildIo::Pipes {
                stdin,
                stdout,
                stderr,
            } => Io::Pipes {
                stdin,
                stdout,
                stderr,
            },
            ChildIo::Pty { master } => Io::Pty { master },
        };
        let exit = spawned.exit;
        Ok(Launched {
            pid: spawned.pid,
            io,
            exit: Box::pin(async move {
                exit.await.unwrap_or(Ended::Signal {
                    signal: libc::SIGKILL,
                    core_dumped: false,
                })
            }),
            group: Arc::new(HostGroup {
                native: self.native.clone(),
                id: id.to_string(),
                pgid: spawned.pid,
                cgroup,
                v1,
                marker,
            }),
        })
    }
}

impl Environment for NativeEnv {
    /// Runs to completion when first polled: a host spawn does not wait on anything.
    fn launch<'a>(&'a self, id: &'a str, spec: &'a Spec) -> BoxFuture<'a, Result<Launched>> {
        Box::pin(async move { self.start(id, spec) })
    }
}

/// A host process's group: its pgid, its cgroup, and its marker (for what left both).
struct HostGroup {
    native: Arc<Native>,
    id: String,
    pgid: u32,
    cgroup: Option<PathBuf>,
    /// Its groups in cgroup v1 hierarchies (a hybrid host's), holding its limits.
    v1: Vec<PathBuf>,
    marker: String,
}

impl HostGroup {
    fn send(&self, sig: i32) {
        // A group the daemon made (its leader unreaped, or members left).
        let _ = signal::to_group(self.pgid, sig);
        if let Some(cg) = &self.cgroup {
            for pid in cgroup::members(cg) {
                let _ = signal::to_process(pid, sig);
            }
        }
    }

    fn running(&self) -> bool {
        group_alive(self.pgid) || self.cgroup.as_deref().is_some_and(cgroup::populated)
    }
}

impl Group for HostGroup {
    fn tree(&self) -> Option<super::usage::Tree> {
        Some(super::usage::Tree {
            pgid: self.pgid,
            cgroup: self.cgroup.clone(),
            marker: self.marker.clone(),
        })
    }

    fn signal(
        &self,
        sig: i32,
        leader_only: bool,
    ) -> BoxFuture<'_, std::result::Result<(), SignalError>> {
        Box::pin(async move {
            // The pgid is ours while the leader is unreaped or members remain.
            let sent = if leader_only {
                signal::to_process(self.pgid, sig)
            } else {
                signal::to_group(self.pgid, sig)
            };
            match sent {
                Ok(()) => Ok(()),
                Err(e) if signal::is_gone(&e) => Err(SignalError::Gone),
                Err(e) => Err(SignalError::Failed(e.to_string())),
            }
        })
    }

    /// The group and every process in the cgroup.
    fn signal_all(&self, sig: i32) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.send(sig) })
    }

    /// Zombies awaiting the reaper still answer kill(-pgid, 0): count live members.
    fn remains(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            !records::group_members(self.pgid).is_empty()
                || self.cgroup.as_deref().is_some_and(cgroup::populated)
        })
    }

    fn alive(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.running() })
    }

    /// SIGKILL the group, the cgroup, and every carrier of the marker (what left both with
    /// `setsid` or a double fork); the /proc scan is blocking work.
    fn kill(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (pgid, cgroup, marker) = (self.pgid, self.cgroup.clone(), self.marker.clone());
            let _ = tokio::task::spawn_blocking(move || {
                let _ = signal::to_group(pgid, libc::SIGKILL);
                if let Some(cg) = &cgroup {
                    let _ = cgroup::kill(cg);
                }
                records::kill_marked(|m| m == marker);
            })
            .await;
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.running() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }

    fn complete(&self) {
        if let Err(e) = self
            .native
            .records
            .complete(&self.id, self.pgid, self.cgroup.as_deref())
        {
            tracing::warn!(id = self.id, error = %e, "cannot complete the pgid record");
        }
    }

    fn forget(&self) {
        self.native.records.remove(&self.id);
        if let Some(cg) = &self.cgroup {
            cgroup::remove(cg);
        }
        // Empty by now: everything in them is in the v2 cgroup too, which was killed. rmdir
        // only (a group still holding something stays, for the daemon's close or the next
        // start's sweep); a second call finds them gone.
        for dir in &self.v1 {
            cgroup::remove(dir);
        }
    }
}

impl Native {
    /// After SIGKILL to every group: kill what is left of this daemon's — its whole cgroup and
    /// every process carrying its marker prefix — and wait (bounded) until nothing is; returns
    /// how many are left. Blocking work.
    pub(super) fn kill_everything(&self) -> usize {
        let cgroups = self.cgroups.as_ref().map(|c| c.root().to_path_buf());
        let prefix = self.records.marker_prefix();
        if let Some(root) = &cgroups {
            let _ = cgroup::kill(root);
        }
        records::kill_marked(|m| m.starts_with(&prefix));
        // cgroup.kill and SIGKILL are asynchronous: wait (bounded) until nothing is left.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let cgroup_busy = cgroups.as_deref().is_some_and(cgroup::populated);
            let left = records::marked(|m| m.starts_with(&prefix));
            if (!cgroup_busy && left.is_empty()) || Instant::now() >= deadline {
                return left.len() + usize::from(cgroup_busy);
            }
            records::kill_marked(|m| m.starts_with(&prefix));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Nothing of this daemon runs any more: remove its cgroup and its own record.
    pub(super) fn close(&self) {
        if let Some(c) = &self.cgroups {
            c.remove_all();
        }
        self.records.close();
    }
}
