//! Spawning a child into its own process group (or its own session with a PTY).
//!
//! Both go through posix_spawn, a vfork whose cost does not grow with the daemon's memory, as
//! fork's page-table copy does: pipe processes through std's Command (which uses posix_spawn when
//! there is no pre_exec closure), PTY processes through `pty_spawn`, since std cannot start a new
//! session without a pre_exec closure (and so a fork).
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use portable_pty::{native_pty_system, MasterPty};
use tokio::sync::oneshot;

use super::reaper::{Ended, Reaper};
use super::spec::{PtySize, Spec};
use super::{clone_spawn, pty_spawn};
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
    /// Born in the cgroup it was given: nothing to move.
    pub in_cgroup: bool,
}

/// Larger pipes mean fewer wake-ups per megabyte for chatty processes.
const PIPE_BYTES: libc::c_int = 1 << 20;

/// Spawn `program` for `spec` with exactly `env`; a pipe process into `cgroup` (an open cgroup
/// directory) where the kernel allows, which `in_cgroup` says.
pub fn spawn(
    spec: &Spec,
    program: &Path,
    env: &BTreeMap<String, String>,
    reaper: &Reaper,
    cgroup: Option<&OwnedFd>,
) -> Result<Spawned> {
    let argv0 = spec.argv[0].clone();
    // exec(2)'s own failures are the shell's 127 and 126; anything else is the daemon's.
    let spawn_err = move |e: std::io::Error| match e.raw_os_error() {
        Some(libc::ENOENT) => Error::Exec {
            message: format!("spawn {argv0}: {e}"),
            not_found: true,
        },
        Some(libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::ETXTBSY) => Error::Exec {
            message: format!("spawn {argv0}: {e}"),
            not_found: false,
        },
        _ => Error::io(format!("spawn {argv0}"), e),
    };

    match spec.pty {
        None if cgroup.is_some() => {
            let mut guard = reaper.guard();
            let cloned = clone_spawn::spawn(
                program,
                &spec.argv,
                env,
                spec.cwd.as_deref(),
                spec.stdin,
                cgroup.expect("checked"),
            )
            .map_err(spawn_err)?;
            let Some(child) = cloned else {
                drop(guard);
                return spawn(spec, program, env, reaper, None);
            };
            let exit = guard.watch(child.pid);
            drop(guard);
            for fd in [&child.stdout, &child.stderr] {
                // SAFETY: fcntl on a pipe fd we own; failure only means a smaller pipe.
                unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
            }
            Ok(Spawned {
                pid: child.pid,
                io: ChildIo::Pipes {
                    stdin: child.stdin,
                    stdout: child.stdout,
                    stderr: child.stderr,
                },
                exit,
                in_cgroup: true,
            })
        }
        None => {
            let mut cmd = Command::new(program);
            cmd.arg0(&spec.argv[0])
                .args(&spec.argv[1..])
                .env_clear()
                .envs(env);
            if let Some(cwd) = &spec.cwd {
                cmd.current_dir(cwd);
            }
            cmd.stdin(if spec.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so signals and the final kill reach everything it starts.
            .process_group(0);
            let mut guard = reaper.guard();
            let mut child = cmd.spawn().map_err(spawn_err)?;
            let exit = guard.watch(child.id());
            drop(guard);
            let stdout: OwnedFd = child.stdout.take().expect("piped").into();
            let stderr: OwnedFd = child.stderr.take().expect("piped").into();
            for fd in [&stdout, &stderr] {
                // SAFETY: fcntl on a pipe fd we own; failure only means a smaller pipe.
                unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
            }
            Ok(Spawned {
                pid: child.id(),
                io: ChildIo::Pipes {
                    stdin: child.stdin.take().map(Into::into),
                    stdout,
                    stderr,
                },
                exit,
                in_cgroup: false,
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
            let pid = pty_spawn::spawn(program, &spec.argv, env, spec.cwd.as_deref(), &tty)
                .map_err(spawn_err)?;
            let exit = guard.watch(pid);
            drop(guard);
            // Drop portable-pty's slave end so that the master reads EIO (end of file) once the
            // child and its descendants close theirs.
            drop(pair.slave);
            Ok(Spawned {
                pid,
                io: ChildIo::Pty {
                    master: pair.master,
                },
                exit,
                in_cgroup: false,
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
