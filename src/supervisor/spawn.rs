//! Spawning a child into its own process group (or its own session with a PTY), in its cgroup,
//! with its resource hints, through `clone_spawn`: a vfork whose cost does not grow with the
//! daemon's memory, as fork's page-table copy does, and whose child sets up what posix_spawn
//! cannot (niceness, OOM score, the cgroup) before the program runs.
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use portable_pty::{native_pty_system, MasterPty};
use tokio::sync::oneshot;

use super::clone_spawn::{self, SpawnError, Stdio, Step};
use super::hints;
use super::reaper::{Ended, Reaper};
use super::spec::{PtySize, Spec};
use crate::error::{Error, Result};

/// The daemon's ends of a child's stdio.
pub enum ChildIo {
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Pty {
        master: Box<dyn MasterPty + Send>,
    },
}

/// A running child.
pub struct Spawned {
    pub pid: u32,
    pub io: ChildIo,
    pub exit: oneshot::Receiver<Ended>,
    /// In the cgroup it was given before the program ran.
    pub in_cgroup: bool,
}

/// Larger pipes mean fewer wake-ups per megabyte for chatty processes.
const PIPE_BYTES: libc::c_int = 1 << 20;

/// Spawn `program` for `spec` with exactly `env`, into `cgroup` (an open cgroup directory)
/// where the kernel allows, which `in_cgroup` says; where `spec` has limits (written into that
/// cgroup already), a child that cannot be in it is an error. The child joins each of `v1`
/// (a hybrid host's cgroup v1 groups of its limits) before exec, or the spawn fails.
pub fn spawn(
    spec: &Spec,
    program: &Path,
    env: &BTreeMap<String, String>,
    reaper: &Reaper,
    cgroup: Option<&OwnedFd>,
    v1: &[hints::V1Group],
) -> Result<Spawned> {
    let argv0 = spec.argv[0].clone();
    let oom_score_adj = spec.oom_score_adj.or_else(hints::child_oom_score_adj);
    let fail = |e: SpawnError| match e.step {
        Step::Nice => hints::nice_failed(spec.nice.unwrap_or_default(), e.source),
        Step::OomScoreAdj => hints::oom_score_adj_failed(
            oom_score_adj.unwrap_or_default(),
            spec.oom_score_adj.is_some(),
            e.source,
        ),
        Step::Cgroup => hints::join_failed(e.source),
        Step::CgroupV1(i) => hints::join_v1_failed(&v1[i].dir, e.source),
        // exec(2)'s own failures are the shell's 127 and 126; anything else is the daemon's.
        Step::Prepare | Step::Exec => match e.source.raw_os_error() {
            Some(libc::ENOENT) => Error::Exec {
                message: format!("spawn {argv0}: {}", e.source),
                not_found: true,
            },
            Some(libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::ETXTBSY) => Error::Exec {
                message: format!("spawn {argv0}: {}", e.source),
                not_found: false,
            },
            _ => Error::io(format!("spawn {argv0}"), e.source),
        },
    };
    let setup = clone_spawn::Setup {
        cwd: spec.cwd.as_deref(),
        nice: spec.nice,
        oom_score_adj,
        cgroup,
        cgroup_required: spec.limits.any(),
        v1: v1.iter().map(|g| g.fd.as_raw_fd()).collect(),
    };

    match spec.pty {
        None => {
            let mut guard = reaper.guard();
            let child = clone_spawn::spawn(
                program,
                &spec.argv,
                env,
                Stdio::Pipes { stdin: spec.stdin },
                &setup,
            )
            .map_err(fail)?;
            let exit = guard.watch(child.pid);
            drop(guard);
            let (stdout, stderr) = (child.stdout.expect("piped"), child.stderr.expect("piped"));
            for fd in [&stdout, &stderr] {
                // SAFETY: fcntl on a pipe fd we own; failure only means a smaller pipe.
                unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
            }
            Ok(Spawned {
                pid: child.pid,
                io: ChildIo::Pipes {
                    stdin: child.stdin,
                    stdout,
                    stderr,
                },
                exit,
                in_cgroup: child.in_cgroup,
            })
        }
        Some(size) => {
            let pair = native_pty_system()
                .openpty(pty_size(size))
                .map_err(|e| Error::Internal(format!("openpty: {e}")))?;
            let tty = pair
                .master
                .tty_name()
                .ok_or_else(|| Error::Internal("the new PTY has no device name".into()))?;
            let mut guard = reaper.guard();
            let child = clone_spawn::spawn(program, &spec.argv, env, Stdio::Tty(&tty), &setup)
                .map_err(fail)?;
            let exit = guard.watch(child.pid);
            drop(guard);
            // Drop portable-pty's slave end so that the master reads EIO (end of file) once the
            // child and its descendants close theirs.
            drop(pair.slave);
            Ok(Spawned {
                pid: child.pid,
                io: ChildIo::Pty {
                    master: pair.master,
                },
                exit,
                in_cgroup: child.in_cgroup,
            })
        }
    }
}

/// portable-pty's size from ours.
pub fn pty_size(size: PtySize) -> portable_pty::PtySize {
    portable_pty::PtySize {
        rows: size.rows,
        cols: size.cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}
