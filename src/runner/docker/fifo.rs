//! The fast path for a container process's output and input: named pipes in a host directory
//! that is bind-mounted into the container, so that the bytes go from the process to the
//! daemon through the kernel alone, not through the engine's stream copy (which caps a
//! process's output at a few hundred MB/s). Only for an engine on this host (a unix socket),
//! and only once a probe has shown that a pipe opened in the container is the daemon's: an
//! engine in a VM (Docker Desktop) shares the files, but a FIFO opened there is another pipe.
//!
//! The daemon makes the FIFOs, opens their read ends, and holds a write end of each output
//! until the wrapper reports that it has opened its own: until then a read would see end of
//! file. Once both sides have them open, the names are unlinked.
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::watch;

/// Where the environment's FIFO directory appears in its container.
pub(super) const TARGET: &str = "/.tend";

/// Make (afresh) an environment's FIFO directory: 0711, so that a container process of any
/// user can open the FIFOs it is told the names of, and list none. It lies inside the daemon's
/// own 0700 state directory, which no other host user can enter.
pub(super) fn make_dir(dir: &Path) -> std::io::Result<()> {
    remove_dir(dir);
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::create_dir(dir)?;
    // Set after creation: mkdir's mode is cut by the umask.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
}

/// Remove an environment's FIFO directory; a missing one is fine, and a failure only logged.
pub fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a FIFO directory")
        }
    }
}

/// Make FIFO `path` with `mode` (set after mkfifo, past the umask).
fn mkfifo(path: &Path, mode: u32) -> std::io::Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Open `path` with `flags` (and close-on-exec: nothing the daemon spawns may hold a FIFO).
fn open(path: &Path, read: bool, write: bool, flags: i32) -> std::io::Result<OwnedFd> {
    let f = OpenOptions::new()
        .read(read)
        .write(write)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open(path)?;
    Ok(f.into())
}

/// Names of FIFOs, unlinked when dropped.
#[derive(Default)]
struct Names(Vec<PathBuf>);

impl Drop for Names {
    fn drop(&mut self) {
        for p in self.0.drain(..) {
            if let Err(e) = std::fs::remove_file(&p) {
                tracing::debug!(path = %p.display(), error = %e, "cannot unlink a FIFO");
            }
        }
    }
}

/// One process's FIFOs, from their making until the wrapper has opened its ends.
pub(super) struct Fifos {
    names: Names,
    /// The names' prefix in the container (`/.tend/pN`): `.out`, `.err`, `.in` follow.
    pub(super) target: String,
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// The daemon's write ends of the outputs, held until the wrapper has its own.
    holds: Vec<OwnedFd>,
    /// Stdin's name, and its read-write end: that lets the wrapper's open for reading through
    /// (which blocks until there is a writer), and is never read.
    stdin: Option<(PathBuf, OwnedFd)>,
}

impl Fifos {
    /// Make `<dir>/<name>.out`, `.err` and, with `stdin`, `.in`, and open the daemon's ends.
    pub(super) fn make(dir: &Path, name: &str, stdin: bool) -> std::io::Result<Fifos> {
        let mut names = Names::default();
        let mut holds = Vec::new();
        let mut output = |ext: &str| -> std::io::Result<OwnedFd> {
            let path = dir.join(format!("{name}.{ext}"));
            // Written by the container's user, whoever that is; read by the daemon only.
            mkfifo(&path, 0o622)?;
            names.0.push(path.clone());
            // A FIFO's O_RDONLY|O_NONBLOCK open returns at once; its O_WRONLY|O_NONBLOCK open
            // succeeds only once a reader exists (ENXIO before), which it now does.
            let read = open(&path, true, false, libc::O_NONBLOCK)?;
            holds.push(open(&path, false, true, libc::O_NONBLOCK)?);
            Ok(read)
        };
        let stdout = output("out")?;
        let stderr = output("err")?;
        let stdin = if stdin {
            let path = dir.join(format!("{name}.in"));
            // Read by the container's user.
            mkfifo(&path, 0o644)?;
            names.0.push(path.clone());
            // O_RDWR on a FIFO never blocks on Linux (POSIX leaves it undefined).
            let hold = open(&path, true, true, 0)?;
            Some((path, hold))
        } else {
            None
        };
        Ok(Fifos {
            names,
            target: format!("{TARGET}/{name}"),
            stdout,
            stderr,
            holds,
            stdin,
        })
    }

    /// The wrapper has opened its ends: let go of the daemon's holds, unlink the names, and
    /// give the daemon's ends of stdout, stderr and (when asked for) stdin.
    ///
    /// Stdin is reopened write-only: with the read-write hold the daemon would count as a
    /// reader itself, and a process that closed its stdin would never make a write fail; and
    /// once the daemon's end is the only writer, closing it is end of file for the process.
    pub(super) fn opened(self) -> std::io::Result<(OwnedFd, OwnedFd, Option<OwnedFd>)> {
        let Fifos {
            names,
            stdout,
            stderr,
            holds,
            stdin,
            ..
        } = self;
        drop(holds);
        let stdin = match stdin {
            None => None,
            Some((path, hold)) => {
                let fd = match open(&path, false, true, libc::O_NONBLOCK) {
                    Ok(fd) => fd,
                    // No reader any more: the process closed its stdin (or ended) already.
                    // A pipe without a reader gives the writer EPIPE, as a native one would.
                    Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
                        drop(read);
                        write
                    }
                    Err(e) => return Err(e),
                };
                drop(hold);
                Some(fd)
            }
        };
        drop(names);
        Ok((stdout, stderr, stdin))
    }
}

/// Whether a FIFO in `dir` reaches the container's processes run as `user`: a process opens
/// `/.tend/probe` (not creating it) read-write (which never blocks, so a pipe that is not the daemon's cannot
/// hang it) and writes a line, which the daemon must then find in its end.
pub(super) async fn probe(
    engine: &super::engine::Engine,
    container: &str,
    user: Option<String>,
    dir: &Path,
) -> std::result::Result<(), String> {
    use futures_util::StreamExt;
    let path = dir.join("probe");
    let _ = std::fs::remove_file(&path);
    // Read-write in the container, by any user.
    mkfifo(&path, 0o666).map_err(|e| format!("mkfifo {}: {e}", path.display()))?;
    let unlink = Names(vec![path.clone()]);
    let read = open(&path, true, false, libc::O_NONBLOCK).map_err(|e| e.to_string())?;
    let config = bollard::models::ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(
            [
                "/bin/sh",
                "-c",
                &format!("[ -p {TARGET}/probe ] && exec 4<>{TARGET}/probe && echo tend >&4"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        user,
        ..Default::default()
    };
    let docker = &engine.docker;
    let exec = docker
        .create_exec(container, config)
        .await
        .map_err(|e| e.to_string())?
        .id;
    let mut said = String::new();
    match docker.start_exec(&exec, None).await {
        Ok(bollard::exec::StartExecResults::Attached { mut output, .. }) => {
            while let Some(Ok(out)) = output.next().await {
                said.push_str(&String::from_utf8_lossy(&out.into_bytes()));
            }
        }
        Ok(bollard::exec::StartExecResults::Detached) => return Err("started detached".into()),
        Err(e) => return Err(e.to_string()),
    }
    let mut got = [0u8; 16];
    let n = File::from(read).read(&mut got).unwrap_or(0);
    drop(unlink);
    if &got[..n] == b"tend\n" {
        Ok(())
    } else {
        Err(format!(
            "a line written to a FIFO in the container did not arrive ({})",
            if said.trim().is_empty() {
                "the container's process said nothing"
            } else {
                said.trim()
            }
        ))
    }
}

/// Turns `over` true once every writer of both outputs has closed them (the process and all
/// that inherited them ended, or closed them): the moment to ask the engine for the exit.
///
/// It watches dups of the read ends in an epoll set of its own with no events asked for:
/// EPOLLHUP (always reported) is what it waits for, and data arriving does not wake it. The
/// dups are held only until then, or until nobody waits for `over` any more.
pub(super) fn watch_hangup(
    stdout: &OwnedFd,
    stderr: &OwnedFd,
    over: watch::Sender<bool>,
) -> std::io::Result<()> {
    // SAFETY: epoll_create1 returns a new descriptor or -1.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `ep` was just created and is owned here alone.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    let dups = [
        stdout.as_fd().try_clone_to_owned()?,
        stderr.as_fd().try_clone_to_owned()?,
    ];
    for fd in &dups {
        let mut event = libc::epoll_event {
            events: 0,
            u64: fd.as_raw_fd() as u64,
        };
        // SAFETY: both descriptors are open; `event` outlives the call.
        if unsafe {
            libc::epoll_ctl(
                ep.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut event,
            )
        } < 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    // An epoll descriptor is readable while it has events to give.
    // SAFETY: the AsyncFd owns `ep` from here on, so its descriptor stays the same open one
    // for the AsyncFd's whole life.
    let ep = unsafe { AsyncFd::register_with_interest(ep, Interest::READABLE) }?;
    tokio::spawn(async move {
        let _dups = dups;
        let mut open = 2;
        let waiting = async {
            while open > 0 {
                let Ok(mut guard) = ep.readable().await else {
                    return;
                };
                let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
                // SAFETY: `events` has room for 2; a zero timeout does not block.
                let n = unsafe {
                    libc::epoll_wait(ep.get_ref().as_raw_fd(), events.as_mut_ptr(), 2, 0)
                };
                if n <= 0 {
                    guard.clear_ready();
                    continue;
                }
                for e in &events[..n as usize] {
                    // Level-triggered: a hung-up pipe stays so, so it leaves the set.
                    // SAFETY: the descriptor is one of `_dups`, still open.
                    unsafe {
                        libc::epoll_ctl(
                            ep.get_ref().as_raw_fd(),
                            libc::EPOLL_CTL_DEL,
                            e.u64 as i32,
                            std::ptr::null_mut(),
                        )
                    };
                    open -= 1;
                }
            }
            over.send_replace(true);
        };
        tokio::select! {
            () = waiting => {}
            () = over.closed() => {}
        }
    });
    Ok(())
}
