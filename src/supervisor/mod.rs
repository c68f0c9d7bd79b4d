//! The process supervisor: the table of processes, starting them, their output and exit, signals,
//! retention and shutdown. Knows nothing of gRPC.
mod dispositions;
mod fdio;
mod input;
pub mod output;
mod process;
mod pty_spawn;
pub mod reaper;
pub mod records;
mod ring;
mod spawn;
pub mod spec;
pub mod view;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BufMut;

use self::input::{CloseBy, Input};
pub use self::output::{Chunk, Cursor, Read, StreamKind, StreamStats};
pub use self::process::{ExitInfo, Process};
pub use self::reaper::Ended;
use self::records::{group_alive, group_members, Owner, Records};
use self::spawn::ChildIo;
use self::spec::Spec;
use crate::config::Limits;
use crate::error::{Error, Result};

/// Filters of `list`.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub running: Option<bool>,
    pub tags: BTreeMap<String, String>,
}

/// Runs processes and keeps what they wrote.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    limits: Limits,
    records: Records,
    reaper: Arc<reaper::Reaper>,
    table: Mutex<Table>,
    shutting_down: AtomicBool,
}

#[derive(Default)]
struct Table {
    next: u64,
    procs: BTreeMap<u64, Arc<Process>>,
    ids: HashMap<String, u64>,
    names: HashMap<String, u64>,
    requests: HashMap<String, u64>,
    running: usize,
    /// Groups whose leader exited while other members lived on, by pgid, with their record id.
    lingering: HashMap<u32, String>,
}

impl Table {
    fn insert(&mut self, p: Arc<Process>) {
        self.ids.insert(p.id.clone(), p.seq);
        if let Some(name) = &p.spec.name {
            self.names.insert(name.clone(), p.seq);
        }
        if let Some(req) = &p.spec.request_id {
            self.requests.insert(req.clone(), p.seq);
        }
        self.procs.insert(p.seq, p);
    }

    fn remove(&mut self, seq: u64) -> Option<Arc<Process>> {
        let p = self.procs.remove(&seq)?;
        self.ids.remove(&p.id);
        if let Some(name) = &p.spec.name {
            self.names.remove(name);
        }
        if let Some(req) = &p.spec.request_id {
            self.requests.remove(req);
        }
        Some(p)
    }
}

/// Bytes read from a pipe per wake-up.
const READ_CHUNK: usize = 256 << 10;

impl Supervisor {
    /// A supervisor keeping its records in `state_dir`. Sweeps the groups a dead predecessor
    /// left first. Must run inside a tokio runtime.
    pub fn new(state_dir: &std::path::Path, limits: Limits) -> Result<Supervisor> {
        let records = Records::open(state_dir, Owner::current()?)?;
        let swept = records.sweep();
        if swept.removed > 0 {
            tracing::info!(
                records = swept.removed,
                killed = ?swept.killed,
                "swept process groups left by a previous daemon"
            );
        }
        Ok(Supervisor {
            inner: Arc::new(Inner {
                limits,
                records,
                reaper: reaper::Reaper::start(),
                table: Mutex::new(Table::default()),
                shutting_down: AtomicBool::new(false),
            }),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `shutdown` has begun.
    pub fn shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Start a process. A spec with a request id seen before returns that first process.
    pub fn start(&self, spec: Spec) -> Result<Arc<Process>> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(Error::Unavailable(
                "the daemon is shutting down; start the process on another daemon".into(),
            ));
        }
        spec.check_cwd()?;
        let env = spec.environment();
        let program = spec::resolve_program(&spec.argv[0], &env, spec.cwd.as_deref())?;

        // The table stays locked through the spawn so that two retries with one request id, or two
        // starts with one name, cannot both run.
        let mut table = self.table();
        if let Some(req) = &spec.request_id {
            if let Some(p) = table.requests.get(req).and_then(|s| table.procs.get(s)) {
                if p.spec.argv != spec.argv {
                    return Err(Error::AlreadyExists(format!(
                        "request_id {req:?} already started {} with another argv ({:?})",
                        p.id, p.spec.argv
                    )));
                }
                return Ok(p.clone());
            }
        }
        if let Some(name) = &spec.name {
            if let Some(p) = table.names.get(name).and_then(|s| table.procs.get(s)) {
                return Err(Error::AlreadyExists(format!(
                    "spec.name {name:?} is taken by {}; remove it or choose another name",
                    p.id
                )));
            }
        }
        if table.running >= self.inner.limits.max_running {
            return Err(Error::ResourceExhausted(format!(
                "{} processes are running, the limit; wait for some to exit or raise --max-running",
                table.running
            )));
        }
        table.next += 1;
        let seq = table.next;
        let id = format!("p-{seq}");
        self.inner.records.prepare(&id)?;
        let (key, marker) = self.inner.records.marker(&id);
        let mut env = env;
        env.insert(key, marker);
        let spawned = spawn::spawn(&spec, &program, &env, &self.inner.reaper)
            .inspect_err(|_| self.inner.records.remove(&id))?;
        let limits = &self.inner.limits;
        let max_pending = limits.max_pending_input;

        let pid = spawned.pid;
        let failed = |what: &str, e: std::io::Error| {
            // SAFETY: kill(2) of the group we just created.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            Error::Internal(format!("{what}: {e}"))
        };
        let (kinds, input, master, readers) = match spawned.io {
            ChildIo::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                let input = match stdin {
                    Some(fd) => Some(
                        Input::start(fd, CloseBy::Drop, max_pending)
                            .map_err(|e| failed("set up stdin", e))?,
                    ),
                    None => None,
                };
                (
                    vec![StreamKind::Stdout, StreamKind::Stderr],
                    input,
                    None,
                    Readers::Pipes(vec![
                        (StreamKind::Stdout, stdout),
                        (StreamKind::Stderr, stderr),
                    ]),
                )
            }
            ChildIo::Pty { master } => {
                // The master is read and written through dups of it, so the task that reads
                // and the input that writes close theirs on their own schedule; `master`
                // itself stays for resizes.
                let dup = || -> std::io::Result<std::os::fd::OwnedFd> {
                    let fd = master
                        .as_raw_fd()
                        .ok_or_else(|| std::io::Error::other("the PTY master has no descriptor"))?;
                    // SAFETY: the descriptor is open for as long as `master` lives.
                    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
                };
                let reader = dup().map_err(|e| failed("open the PTY master", e))?;
                let writer = dup().map_err(|e| failed("open the PTY master", e))?;
                let input = Input::start(writer, CloseBy::Eot, max_pending)
                    .map_err(|e| failed("open the PTY master", e))?;
                (
                    vec![StreamKind::Pty],
                    Some(input),
                    Some(master),
                    Readers::Pty(reader),
                )
            }
        };
        let output = output::Output::new(&kinds, limits.head_bytes, limits.tail_bytes);
        let process = Arc::new(Process::new(
            id.clone(),
            seq,
            spec,
            pid,
            output,
            input,
            master,
        ));
        table.insert(process.clone());
        table.running += 1;
        drop(table);

        // Completing the record is file work the caller need not wait for: the child is already
        // findable by its prepared record and its TEND_ORIGIN marker.
        let records = self.inner.records.clone();
        let completing = tokio::task::spawn_blocking(move || {
            if let Err(e) = records.complete(&id, pid) {
                tracing::warn!(id, error = %e, "cannot complete the pgid record");
            }
        });
        let pipe_tasks = readers.start(&process);
        let this = self.clone();
        let p = process.clone();
        tokio::spawn(async move {
            this.lifecycle(p, spawned.exit, pipe_tasks, completing)
                .await
        });
        Ok(process)
    }

    /// Wait for the leader, drain output (bounded), record the exit, clean up.
    async fn lifecycle(
        self,
        p: Arc<Process>,
        exit: tokio::sync::oneshot::Receiver<Ended>,
        pipe_tasks: Vec<tokio::task::JoinHandle<()>>,
        completing: tokio::task::JoinHandle<()>,
    ) {
        let ended = exit.await.unwrap_or(Ended::Signal {
            signal: libc::SIGKILL,
            core_dumped: false,
        });
        let wall = p.started.elapsed();
        // The drain is bounded for a background child that keeps the output open, but the time
        // the output tasks wait for a lossless reader does not count: bytes that reader is still
        // receiving from the process are never cut off.
        let drain = self.inner.limits.drain_timeout;
        let exited = tokio::time::Instant::now();
        let stalled_before = p.output.stalled_time();
        let mut deadline = exited + drain;
        let mut changed = p.output.subscribe();
        let mut drain_timed_out = false;
        while !p.output.all_eof() {
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    let stalled = p.output.stalled_time().saturating_sub(stalled_before);
                    deadline = exited + drain + stalled;
                    if deadline > tokio::time::Instant::now() {
                        continue;
                    }
                    drain_timed_out = !p.output.all_eof();
                    break;
                }
            }
        }
        for t in pipe_tasks {
            t.abort();
        }
        p.drop_input();
        p.output.finish(ExitInfo {
            ended,
            wall,
            drain_timed_out,
        });

        {
            let mut table = self.table();
            table.running -= 1;
            self.evict(&mut table);
            table.lingering.insert(p.pid, p.id.clone());
        }
        // The pgid records are the daemon's own business: let the streams woken by finish send
        // their exited events before the file system work below.
        tokio::task::yield_now().await;
        // The record must not be rewritten after it is removed below.
        let _ = completing.await;

        let mut table = self.table();
        // Forget groups that have emptied since (this one included), and their records.
        let records = &self.inner.records;
        table.lingering.retain(|pgid, id| {
            let alive = group_alive(*pgid);
            if !alive {
                records.remove(id);
            }
            alive
        });
    }

    /// Drop the oldest exited processes beyond the retention limits.
    fn evict(&self, table: &mut Table) {
        let limits = &self.inner.limits;
        let exited: Vec<(u64, u64)> = table
            .procs
            .values()
            .filter(|p| !p.running())
            .map(|p| (p.seq, p.output.retained_bytes()))
            .collect();
        let mut count = exited.len();
        let mut bytes: u64 = exited.iter().map(|e| e.1).sum();
        for (seq, size) in exited {
            if count <= limits.max_exited && bytes <= limits.max_exited_bytes {
                break;
            }
            table.remove(seq);
            count -= 1;
            bytes -= size;
        }
    }

    /// A process by id or name.
    pub fn get(&self, id: &str) -> Result<Arc<Process>> {
        let table = self.table();
        table
            .ids
            .get(id)
            .or_else(|| table.names.get(id))
            .and_then(|s| table.procs.get(s))
            .cloned()
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no process {id:?}: it never existed, was removed, or was evicted after exit; \
                     List shows the known ones"
                ))
            })
    }

    /// Processes matching the filter, oldest first.
    pub fn list(&self, filter: &ListFilter) -> Vec<Arc<Process>> {
        self.table()
            .procs
            .values()
            .filter(|p| filter.running.is_none_or(|r| p.running() == r))
            .filter(|p| {
                filter
                    .tags
                    .iter()
                    .all(|(k, v)| p.spec.tags.get(k) == Some(v))
            })
            .cloned()
            .collect()
    }

    /// Send `signal` to the process group, or only to the leader.
    pub fn signal(&self, p: &Process, signal: i32, leader_only: bool) -> Result<()> {
        let running = p.running();
        if !running {
            let lingering = self.table().lingering.contains_key(&p.pid);
            // Zombies awaiting the reaper still answer kill(-pgid, 0), so count live members.
            if leader_only || !lingering || group_members(p.pid).is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "{} has exited and nothing is left in its group to signal",
                    p.id
                )));
            }
        }
        let target = if leader_only {
            p.pid as i32
        } else {
            -(p.pid as i32)
        };
        // SAFETY: kill(2); the pgid is ours while the leader is unreaped or members remain.
        if unsafe { libc::kill(target, signal) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ESRCH) {
                return Err(Error::FailedPrecondition(format!(
                    "{} is exiting; nothing is left to signal",
                    p.id
                )));
            }
            return Err(Error::io(format!("signal {}", p.id), err));
        }
        Ok(())
    }

    /// Stop a running process in the background: SIGTERM to its group (and SIGHUP, on a PTY,
    /// whose terminal is going away), then SIGKILL if it is still running after `grace`.
    pub fn stop(&self, p: &Arc<Process>, grace: Duration) {
        let group = -(p.pid as i32);
        // SAFETY: kill(2) of a group whose leader we have not reaped.
        unsafe { libc::kill(group, libc::SIGTERM) };
        if p.pty_size().is_some() {
            // SAFETY: as above.
            unsafe { libc::kill(group, libc::SIGHUP) };
        }
        let (this, p) = (self.clone(), p.clone());
        tokio::spawn(async move {
            if !this.wait(&p, Some(grace)).await {
                // SAFETY: the leader is still unreaped, so the group is still ours.
                unsafe { libc::kill(group, libc::SIGKILL) };
            }
        });
    }

    /// Wait until the process exits or `timeout` passes; true when it exited.
    pub async fn wait(&self, p: &Process, timeout: Option<Duration>) -> bool {
        let mut changed = p.output.subscribe();
        let until = async {
            while p.running() {
                if changed.changed().await.is_err() {
                    return;
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, until).await.is_ok(),
            None => {
                until.await;
                true
            }
        }
    }

    /// Forget a process; a running one only with `force`, which kills its group first.
    pub async fn remove(&self, id: &str, force: bool) -> Result<()> {
        let p = self.get(id)?;
        if p.running() {
            if !force {
                return Err(Error::FailedPrecondition(format!(
                    "{} is running; Signal it and Wait, or Remove with force",
                    p.id
                )));
            }
            // SAFETY: kill(2) of a group whose leader we have not reaped.
            unsafe { libc::kill(-(p.pid as i32), libc::SIGKILL) };
            self.wait(
                &p,
                Some(self.inner.limits.drain_timeout + Duration::from_secs(5)),
            )
            .await;
        }
        let mut table = self.table();
        table.remove(p.seq);
        Ok(())
    }

    /// Stop everything: SIGTERM every group (and SIGHUP every PTY session), wait up to `grace`,
    /// SIGKILL what is left, and remove the records of groups that are gone.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutting_down.store(true, Ordering::Release);
        let (targets, terminals) = {
            let table = self.table();
            let running = table.procs.values().filter(|p| p.running());
            let mut targets: Vec<(u32, String)> =
                running.clone().map(|p| (p.pid, p.id.clone())).collect();
            targets.extend(table.lingering.iter().map(|(k, v)| (*k, v.clone())));
            let terminals: Vec<u32> = running
                .filter(|p| p.pty_size().is_some())
                .map(|p| p.pid)
                .collect();
            (targets, terminals)
        };
        let send = |sig| {
            for (pgid, _) in &targets {
                // SAFETY: kill(2) of our own groups.
                unsafe { libc::kill(-(*pgid as i32), sig) };
            }
        };
        send(libc::SIGTERM);
        // Their terminals are going away: interactive shells ignore SIGTERM but obey a hangup.
        for pgid in &terminals {
            // SAFETY: kill(2) of our own groups.
            unsafe { libc::kill(-(*pgid as i32), libc::SIGHUP) };
        }
        let all_gone = || targets.iter().all(|(pgid, _)| !group_alive(*pgid));
        let deadline = Instant::now() + grace;
        while !all_gone() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !all_gone() {
            send(libc::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(2);
            while !all_gone() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        for (pgid, id) in &targets {
            if !group_alive(*pgid) {
                self.inner.records.remove(id);
            }
        }
    }
}

/// The tasks that move a child's output into its log.
enum Readers {
    Pipes(Vec<(StreamKind, std::os::fd::OwnedFd)>),
    Pty(std::os::fd::OwnedFd),
}

impl Readers {
    fn start(self, p: &Arc<Process>) -> Vec<tokio::task::JoinHandle<()>> {
        match self {
            Readers::Pipes(pipes) => pipes
                .into_iter()
                .map(|(kind, fd)| {
                    let p = p.clone();
                    tokio::spawn(async move {
                        let rx = match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
                            Ok(rx) => rx,
                            Err(e) => {
                                tracing::error!(id = p.id, error = %e, "cannot read output");
                                p.output.eof(kind);
                                return;
                            }
                        };
                        let mut buf = bytes::BytesMut::with_capacity(READ_CHUNK);
                        loop {
                            if rx.readable().await.is_err() {
                                break;
                            }
                            // Behind a lossless reader the pipe is left unread, so the process
                            // blocks on its write until the reader catches up. Asked once data
                            // is there, not before the wait for it: a hold taken meanwhile
                            // must limit this read.
                            let room = p.output.room(kind, READ_CHUNK).await;
                            if buf.capacity() < READ_CHUNK {
                                buf.reserve(READ_CHUNK);
                            }
                            match rx.try_read_buf(&mut (&mut buf).limit(room)) {
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                                Ok(0) | Err(_) => break,
                                // A large read is handed over whole; it pins at most twice its
                                // size of buffer.
                                Ok(n) if n >= READ_CHUNK / 2 => {
                                    p.output.append_bytes(kind, buf.split().freeze())
                                }
                                Ok(_) => {
                                    p.output.append(kind, &buf);
                                    buf.clear();
                                }
                            }
                        }
                        p.output.eof(kind);
                    })
                })
                .collect(),
            Readers::Pty(fd) => {
                let p = p.clone();
                vec![tokio::spawn(async move {
                    if let Err(e) = fdio::read_pty(fd, &p).await {
                        tracing::error!(id = p.id, error = %e, "cannot read the PTY");
                    }
                    p.output.eof(StreamKind::Pty);
                })]
            }
        }
    }
}
