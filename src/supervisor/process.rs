//! One supervised process: its spec, its output, its input and PTY, and how it ended.
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use std::sync::Arc;

use super::environment::{Group, Terminal};
use super::input::Input;
use super::output::Output;
use super::readiness::{self, Readiness};
use super::reaper::Ended;
use super::spec::{PtySize, Spec};
use crate::error::{Error, Result};

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub ended: Ended,
    pub wall: Duration,
    /// A background child still held the output open when the drain timeout passed.
    pub drain_timed_out: bool,
}

/// A process the supervisor started.
pub struct Process {
    pub id: String,
    pub seq: u64,
    pub spec: Spec,
    /// Its process id in its environment, which is also its process group id.
    pub pid: u32,
    pub started_at: SystemTime,
    pub(super) started: Instant,
    pub output: Output,
    /// Its group in its environment, for signals and the final kill.
    pub(super) group: Arc<dyn Group>,
    input: Mutex<Option<Input>>,
    pty: Option<Mutex<(Box<dyn Terminal>, PtySize)>>,
    /// The tree's CPU milliseconds at the last measure, and when: recent CPU % is measured
    /// from there.
    pub(super) cpu_sample: Mutex<Option<(u64, Instant)>>,
    /// Where its readiness probe is, when it has one.
    readiness: Option<tokio::sync::watch::Sender<Readiness>>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .field("argv", &self.spec.argv)
            .finish_non_exhaustive()
    }
}

impl Process {
    pub(super) fn new(
        id: String,
        seq: u64,
        spec: Spec,
        pid: u32,
        output: Output,
        (input, pty): (Option<Input>, Option<Box<dyn Terminal>>),
        group: Arc<dyn Group>,
    ) -> Process {
        let pty = pty.map(|m| Mutex::new((m, spec.pty.expect("a PTY process has a size"))));
        let readiness = readiness::watch_for(spec.readiness.as_ref());
        Process {
            id,
            seq,
            spec,
            pid,
            started_at: SystemTime::now(),
            started: Instant::now(),
            output,
            group,
            input: Mutex::new(input),
            pty,
            cpu_sample: Mutex::new(None),
            readiness,
        }
    }

    /// For a process whose tree the daemon cannot read: a key naming its environment and what
    /// the environment's engine says all of it uses (see `Group::environment_usage`).
    pub fn environment_usage(
        &self,
    ) -> Option<(
        String,
        super::environment::BoxFuture<'_, Option<super::usage::EnvironmentUsage>>,
    )> {
        self.group.environment_usage()
    }

    /// When it started, on the monotonic clock.
    pub fn started_instant(&self) -> Instant {
        self.started
    }

    /// Its readiness now; `None` without a probe.
    pub fn readiness(&self) -> Option<Readiness> {
        self.readiness.as_ref().map(|r| r.borrow().clone())
    }

    /// Follow its readiness; `None` without a probe.
    pub fn watch_readiness(&self) -> Option<tokio::sync::watch::Receiver<Readiness>> {
        self.readiness.as_ref().map(|r| r.subscribe())
    }

    pub(super) fn readiness_sender(&self) -> Option<&tokio::sync::watch::Sender<Readiness>> {
        self.readiness.as_ref()
    }

    /// The exit, once the process ended and its output is final.
    pub fn exit(&self) -> Option<ExitInfo> {
        self.output.exit()
    }

    /// Still running (from the client's point of view: its exit is not final yet).
    pub fn running(&self) -> bool {
        self.exit().is_none()
    }

    /// The current PTY size, if it has a PTY.
    pub fn pty_size(&self) -> Option<PtySize> {
        self.pty
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).1)
    }

    /// Whether input can still be sent.
    pub fn input_open(&self) -> bool {
        self.input
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(Input::is_open)
    }

    /// Queue bytes for the child's stdin or PTY.
    pub fn send_input(&self, data: Vec<u8>) -> Result<usize> {
        let guard = self.input.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(input) => input.send(&self.id, data),
            None if !self.running() => Err(Error::FailedPrecondition(format!(
                "{} has exited; it takes no more input",
                self.id
            ))),
            None if self.pty.is_none() && !self.spec.stdin => {
                Err(Error::FailedPrecondition(format!(
                    "{} was started without stdin; start it with spec.stdin = true or a PTY",
                    self.id
                )))
            }
            None => Err(Error::FailedPrecondition(format!(
                "the input of {} is closed",
                self.id
            ))),
        }
    }

    /// Close stdin; on a PTY, type end-of-file (^D) and keep the terminal open.
    pub fn close_input(&self) -> Result<()> {
        let guard = self.input.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            // A closed pipe input is kept (closing) rather than dropped, so that the exit can
            // still abandon what a child that never read left queued.
            Some(input) => {
                input.close();
                Ok(())
            }
            // A PTY always has input: none left means its exit is being recorded (the input
            // is dropped just before the exit is final), and closing it is done.
            None if self.running() && !self.spec.stdin && self.pty.is_none() => {
                Err(Error::FailedPrecondition(format!(
                    "{} was started without stdin; there is nothing to close",
                    self.id
                )))
            }
            None => Ok(()),
        }
    }

    /// Drop the input side once the process is gone.
    pub(super) fn drop_input(&self) {
        if let Some(input) = self.input.lock().unwrap_or_else(|e| e.into_inner()).take() {
            input.abandon();
        }
    }

    /// Change the PTY size; the kernel sends SIGWINCH to the foreground group.
    pub fn resize(&self, size: PtySize) -> Result<()> {
        let Some(pty) = &self.pty else {
            return Err(Error::FailedPrecondition(format!(
                "{} has no PTY; start it with spec.pty to resize it",
                self.id
            )));
        };
        if !self.running() {
            return Err(Error::FailedPrecondition(format!("{} has exited", self.id)));
        }
        let mut guard = pty.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .0
            .resize(size)
            .map_err(|e| Error::Internal(format!("resize the PTY of {}: {e}", self.id)))?;
        guard.1 = size;
        Ok(())
    }
}
