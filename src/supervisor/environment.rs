//! The seam between the process table and where processes run: this host, a container, a Nix
//! shell. The supervisor asks an environment to start a spec and gets back the process's id in
//! its environment (also its group), its I/O, a future of its exit, and its group to signal.
//! Everything else — the table, ids, names, limits, the output logs, lossless readers, stdin
//! queues, retention — is the supervisor's, the same for every environment.
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use portable_pty::MasterPty;

use super::output::StreamKind;
use super::reaper::Ended;
use super::spec::{PtySize, Spec};
use crate::error::Result;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where processes run.
pub trait Environment: Send + Sync {
    /// Check `spec` against the environment (working directory, program, …) and start it as
    /// process `id`, in a process group of its own so that signals reach all it starts.
    fn launch<'a>(&'a self, id: &'a str, spec: &'a Spec) -> BoxFuture<'a, Result<Launched>>;

    /// Where a process here can bind a unix socket for the daemon to dial (a plugin's). The
    /// host's own paths unless the environment says otherwise; it may probe.
    fn sockets(&self) -> BoxFuture<'_, Sockets> {
        Box::pin(async { Sockets::Host })
    }

    /// The network namespace its processes see (a file to setns(2) into), where a readiness
    /// probe dials from so that "localhost" is theirs: `None` for the daemon's own; an error
    /// says why it cannot be entered.
    fn netns(&self) -> BoxFuture<'_, std::result::Result<Option<std::path::PathBuf>, String>> {
        Box::pin(async { Ok(None) })
    }
}

/// Where an environment's processes can put unix sockets the daemon dials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sockets {
    /// Anywhere: the environment sees the host's files (the host, a Nix shell).
    Host,
    /// In a directory both sides see, at `host` on the host and `inside` in the environment (a
    /// container's bind mount). `open`: the environment's processes run as another user, who
    /// must be able to create sockets there.
    Shared {
        host: std::path::PathBuf,
        inside: std::path::PathBuf,
        open: bool,
    },
    /// Nowhere, and why (a remote engine).
    Unreachable(String),
}

/// Finds environments by id for the supervisor; the runner's registry implements it.
pub trait Resolve: Send + Sync {
    /// The environment `id` (or name) names, with its id, ready to start processes; an error
    /// says why not (unknown, not initialised yet, stopped).
    fn resolve(&self, id: &str) -> Result<(String, Arc<dyn Environment>)>;
}

/// A process just started.
pub struct Launched {
    /// Its process id in its environment, which is also its process group id.
    pub pid: u32,
    pub io: Io,
    /// Resolves once the leader has ended.
    pub exit: BoxFuture<'static, Ended>,
    pub group: Arc<dyn Group>,
}

/// The daemon's side of a process's I/O.
pub enum Io {
    /// Host pipes (stdin when asked for).
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A host PTY master.
    Pty { master: Box<dyn MasterPty + Send> },
    /// Output as a stream of chunks (a container's exec: `StreamKind::Stdout`/`Stderr` apart, or
    /// `StreamKind::Pty` for a terminal), which the supervisor polls only as fast as its log
    /// takes them, so that backpressure reaches the process. Input is the write end of a pipe
    /// whose read end the environment forwards (closing it is end of input); a terminal is
    /// resized through the environment.
    Stream {
        output: BoxStream<'static, (StreamKind, Bytes)>,
        stdin: Option<OwnedFd>,
        terminal: Option<Box<dyn Terminal>>,
    },
}

/// A terminal that can be resized (the kernel, or the environment, tells its foreground group).
pub trait Terminal: Send {
    fn resize(&mut self, size: PtySize) -> std::result::Result<(), String>;
}

impl Terminal for Box<dyn MasterPty + Send> {
    fn resize(&mut self, size: PtySize) -> std::result::Result<(), String> {
        MasterPty::resize(&**self, super::spawn::pty_size(size)).map_err(|e| e.to_string())
    }
}

/// Why a signal was not delivered.
#[derive(Debug)]
pub enum SignalError {
    /// Nothing is left to receive it.
    Gone,
    /// The environment could not deliver it; the text says why.
    Failed(String),
}

/// A process's group, for signals and the final kill.
pub trait Group: Send + Sync {
    /// Where its tree's processes are on this host, for what they use and listen on; `None`
    /// where they are not host processes the daemon can read (a container's).
    fn tree(&self) -> Option<super::usage::Tree> {
        None
    }

    /// Where the tree cannot be read: what the engine says the whole environment it runs in
    /// uses (a container's, as `docker stats` gives it), with a key naming that environment so
    /// that processes sharing it are asked once; `None` where there is no such figure.
    #[allow(clippy::type_complexity)]
    fn environment_usage(
        &self,
    ) -> Option<(
        String,
        BoxFuture<'_, Option<super::usage::EnvironmentUsage>>,
    )> {
        None
    }

    /// Send `sig` to the whole group, or to the leader only (a client's Signal).
    fn signal(
        &self,
        sig: i32,
        leader_only: bool,
    ) -> BoxFuture<'_, std::result::Result<(), SignalError>>;
    /// Send `sig` to all of it the environment can find, the group and beyond (a stop's
    /// SIGTERM); nothing left is not an error.
    fn signal_all(&self, sig: i32) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.signal(sig, false).await;
        })
    }
    /// Whether anything of it may still run; cheap, asked often while waiting for a stop.
    fn alive(&self) -> BoxFuture<'_, bool>;
    /// Whether something of it runs for certain (not only an unreaped zombie): asked before a
    /// client's signal to an exited leader's group.
    fn remains(&self) -> BoxFuture<'_, bool> {
        self.alive()
    }
    /// SIGKILL all of it that the environment can find, and wait (bounded) until it is gone.
    fn kill(&self) -> BoxFuture<'_, ()>;
    /// Record that the process is started (file work: the supervisor calls it from a blocking
    /// thread).
    fn complete(&self) {}
    /// Nothing of it runs any more: drop what the environment kept for it (file work).
    fn forget(&self) {}
}
