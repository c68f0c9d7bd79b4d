//! The process supervisor: the table of processes, starting them, their output and exit, signals,
//! retention and shutdown. Knows nothing of gRPC.
mod cgroup;
mod clone_spawn;
mod dispositions;
pub mod environment;
mod fdio;
pub mod hints;
mod input;
mod native;
pub mod output;
mod process;
pub mod readiness;
pub mod reaper;
pub mod records;
mod ring;
pub mod signal;
mod sock_diag;
mod spawn;
pub mod spec;
pub mod usage;
pub mod view;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BufMut;

use futures_util::{FutureExt, StreamExt};

use self::environment::{Environment, Group, Io, Launched, Resolve, SignalError, Terminal};
use self::input::{CloseBy, Input};
pub use self::native::NativeEnv;
pub use self::output::{Chunk, Cursor, Read, StreamKind, StreamStats};
pub use self::process::{ExitInfo, Process};
pub use self::reaper::Ended;
use self::records::{Owner, Records};
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
    /// This host's processes: records, cgroups, the reaper.
    native: Arc<native::Native>,
    /// The host as an environment ("native").
    host: NativeEnv,
    /// The other environments, once the runner is there.
    resolver: std::sync::OnceLock<Arc<dyn Resolve>>,
    table: Mutex<Table>,
    shutting_down: AtomicBool,
    /// Started, exited and removed, for watchers; a slow one lags (and is told how much).
    events: tokio::sync::broadcast::Sender<Lifecycle>,
}

/// What happened to a process, for `ProcessService.Watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleKind {
    Started,
    /// Its readiness probe succeeded.
    Ready,
    Exited,
    Removed,
}

/// One lifecycle event.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub kind: LifecycleKind,
    pub process: Arc<Process>,
    pub at: std::time::SystemTime,
}

/// Lifecycle events kept for watchers; one that falls further behind is told it lagged.
const LIFECYCLE_EVENTS: usize = 1024;

#[derive(Default)]
struct Table {
    next: u64,
    procs: BTreeMap<u64, Arc<Process>>,
    ids: HashMap<String, u64>,
    names: HashMap<String, u64>,
    requests: HashMap<String, u64>,
    running: usize,
    /// What starts under way (launched, not in the table yet) hold: their names, request ids,
    /// and places under --max-running.
    pending_names: HashSet<String>,
    pending_requests: HashSet<String>,
    pending: usize,
    /// Processes whose leader exited while something of theirs lived on (other members of the
    /// group, or processes in their cgroup), by sequence number.
    lingering: HashMap<u64, Arc<dyn Group>>,
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

/// What a start under way holds in the table until its process is in it; given back when
/// dropped (a start that failed) or released into the table (one that succeeded).
struct Reservation<'a> {
    sup: &'a Supervisor,
    name: Option<String>,
    request: Option<String>,
    held: bool,
}

impl<'a> Reservation<'a> {
    fn take(sup: &'a Supervisor, table: &mut Table, spec: &Spec) -> Reservation<'a> {
        if let Some(name) = &spec.name {
            table.pending_names.insert(name.clone());
        }
        if let Some(req) = &spec.request_id {
            table.pending_requests.insert(req.clone());
        }
        table.pending += 1;
        Reservation {
            sup,
            name: spec.name.clone(),
            request: spec.request_id.clone(),
            held: true,
        }
    }

    /// Give it back, under the table lock the caller holds (to insert the process in the same
    /// step, so that no other start sees the name free in between).
    fn release(mut self, table: &mut Table) {
        self.give_back(table);
    }

    fn give_back(&mut self, table: &mut Table) {
        if !std::mem::take(&mut self.held) {
            return;
        }
        if let Some(name) = &self.name {
            table.pending_names.remove(name);
        }
        if let Some(req) = &self.request {
            table.pending_requests.remove(req);
        }
        table.pending -= 1;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.held {
            let sup = self.sup;
            self.give_back(&mut sup.table());
        }
    }
}

/// Bytes read from a pipe per wake-up, at most (reads also stop at the end of a block, see
/// `ring::Blocks`).
const READ_CHUNK: usize = 1 << 20;
/// The capacity asked for the output pipe of a busy stream (Linux's default is 64 KiB): a
/// process writing faster than it is read fills more before it waits, so it and the reader wake
/// each other less often, and each read takes more at once.
const PIPE_BYTES: i32 = 1 << 20;

impl Supervisor {
    /// A supervisor keeping its records in `state_dir`. What a dead predecessor left is swept
    /// in the background: the daemon serves at once, and the sweep never touches what this one
    /// starts. Must run inside a tokio runtime.
    pub fn new(state_dir: &std::path::Path, limits: Limits) -> Result<Supervisor> {
        let owner = Owner::current()?;
        let mut no_cgroups = String::new();
        let cgroups = match cgroup::Cgroups::create(&owner.name()) {
            Ok(c) => {
                tracing::info!(
                    cgroup = %c.root().display(),
                    "containment: a cgroup v2 per process (cgroup.kill), and the TEND_ORIGIN marker"
                );
                for root in c.v1_roots() {
                    tracing::info!(
                        root = %root.display(),
                        "limits: a hybrid host's cgroup v1 hierarchy holds a controller cgroup v2 lacks"
                    );
                }
                Some(c)
            }
            Err(why) => {
                tracing::info!(
                    reason = why,
                    "containment: process groups and the TEND_ORIGIN marker (no writable cgroup v2)"
                );
                no_cgroups = why;
                None
            }
        };
        let records = Records::open(state_dir, owner, cgroups.as_ref().map(|c| c.root()))?;
        let sweeping = records.clone();
        let sweeping_v1 = cgroups.clone();
        let _ = std::thread::Builder::new()
            .name("tend-sweep".into())
            .spawn(move || {
                let swept = sweeping.sweep();
                // After the records' sweep, which kills what dead daemons left through their
                // v2 cgroups: their v1 roots (a hybrid host's) are empty then.
                if let Some(c) = &sweeping_v1 {
                    c.sweep_v1();
                }
                if swept.removed > 0 || !swept.killed.is_empty() {
                    tracing::info!(
                        records = swept.removed,
                        killed = swept.killed.len(),
                        "swept what a previous daemon left"
                    );
                }
            });
        let native = Arc::new(native::Native {
            records,
            cgroups,
            no_cgroups,
            reaper: reaper::Reaper::start(),
        });
        Ok(Supervisor {
            inner: Arc::new(Inner {
                limits,
                host: NativeEnv::new(native.clone()),
                native,
                resolver: std::sync::OnceLock::new(),
                table: Mutex::new(Table::default()),
                shutting_down: AtomicBool::new(false),
                events: tokio::sync::broadcast::channel(LIFECYCLE_EVENTS).0,
            }),
        })
    }

    /// Lifecycle events from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Lifecycle> {
        self.inner.events.subscribe()
    }

    fn emit(&self, kind: LifecycleKind, process: &Arc<Process>) {
        let _ = self.inner.events.send(Lifecycle {
            kind,
            process: process.clone(),
            at: std::time::SystemTime::now(),
        });
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

    /// Sweep again what dead daemons left on this host (their recorded groups, cgroups and
    /// marked processes), as at start-up.
    pub async fn sweep(&self) -> records::SweepReport {
        let records = self.inner.native.records.clone();
        tokio::task::spawn_blocking(move || records.sweep())
            .await
            .unwrap_or_default()
    }

    /// The host as an environment (for environments built on it, such as a Nix shell's).
    pub fn host(&self) -> &NativeEnv {
        &self.inner.host
    }

    /// Where environments other than "native" are found. Set once, by the runner.
    pub fn set_resolver(&self, resolver: Arc<dyn Resolve>) {
        let _ = self.inner.resolver.set(resolver);
    }

    /// The environment `id` names ("" and "native" are the host), with its id.
    pub fn environment(&self, id: &str) -> Result<(String, Arc<dyn Environment>)> {
        if id.is_empty() || id == "native" {
            return Ok(("native".into(), Arc::new(self.inner.host.clone())));
        }
        match self.inner.resolver.get() {
            Some(r) => r.resolve(id),
            None => Err(Error::NotFound(format!(
                "spec.environment_id: no environment {}; this daemon runs \"native\" only",
                crate::error::quote(id)
            ))),
        }
    }

    /// Start a process. A spec with a request id seen before returns that first process.
    pub fn start(&self, spec: Spec) -> Result<Arc<Process>> {
        self.start_reading(spec, false).map(|(p, _)| p)
    }

    /// Start a process, with a cursor at the start of every stream for its first reader. A
    /// `lossless` cursor holds the output from before the process can write its first byte,
    /// so nothing is overwritten before that reader's first read (a `Run`). A request id seen
    /// before returns that process, with a new cursor at 0.
    pub fn start_reading(&self, spec: Spec, lossless: bool) -> Result<(Arc<Process>, Cursor)> {
        let first_reader = |p: &Process| {
            let mut cursor = Cursor::new(&p.output.kinds(), 0);
            if lossless {
                p.output.hold(&mut cursor);
            }
            cursor
        };
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(Error::Unavailable(
                "the daemon is shutting down; start the process on another daemon".into(),
            ));
        }
        let mut spec = spec;
        let environment;
        (spec.environment, environment) = self.environment(&spec.environment)?;

        // The table is locked only to look and reserve, then to insert: the record's file
        // write and the launch (a container engine's exec may take a while) happen outside it,
        // and neither other starts nor Get or List wait for them. What a start under way holds
        // (its name, its request id, a place under --max-running) is reserved meanwhile, so two
        // starts with one name, or two retries with one request id, cannot both run.
        let mut table = self.table();
        if let Some(req) = &spec.request_id {
            if let Some(p) = table.requests.get(req).and_then(|s| table.procs.get(s)) {
                if p.spec.argv != spec.argv {
                    return Err(Error::AlreadyExists(format!(
                        "request_id {} already started {} with another argv ({})",
                        crate::error::quote(req),
                        p.id,
                        crate::error::clip(&format!("{:?}", p.spec.argv))
                    )));
                }
                let cursor = first_reader(p);
                return Ok((p.clone(), cursor));
            }
            if table.pending_requests.contains(req) {
                return Err(Error::Unavailable(format!(
                    "a start with request_id {} is under way; retry in a moment to get its process",
                    crate::error::quote(req)
                )));
            }
        }
        if let Some(name) = &spec.name {
            if let Some(p) = table.names.get(name).and_then(|s| table.procs.get(s)) {
                return Err(Error::AlreadyExists(format!(
                    "spec.name {} is taken by {}; remove it or choose another name",
                    crate::error::quote(name),
                    p.id
                )));
            }
            if table.pending_names.contains(name) {
                return Err(Error::AlreadyExists(format!(
                    "spec.name {} is taken by a process being started; choose another name",
                    crate::error::quote(name)
                )));
            }
        }
        if table.running + table.pending >= self.inner.limits.max_running {
            return Err(Error::ResourceExhausted(format!(
                "{} processes are running (and {} starting), the limit; wait for some to exit or \
                 raise --max-running",
                table.running, table.pending
            )));
        }
        table.next += 1;
        let seq = table.next;
        let reservation = Reservation::take(self, &mut table, &spec);
        drop(table);
        let id = format!("p-{seq}");
        // A host spawn is done when first polled; an environment that waits on something (a
        // container engine) is waited for off the async workers.
        let launched = {
            let mut launching = environment.launch(&id, &spec);
            match (&mut launching).now_or_never() {
                Some(done) => done,
                // The same launch, carried on: what its first poll began is not done twice.
                None => tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(launching)
                }),
            }
        }?;
        let Launched {
            pid,
            io,
            exit,
            group,
        } = launched;
        let limits = &self.inner.limits;
        let max_pending = limits.max_pending_input;

        let failed = |what: &str, e: std::io::Error| {
            let group = group.clone();
            tokio::spawn(async move { group.kill().await });
            Error::Internal(format!("{what}: {e}"))
        };
        let (kinds, input, terminal, readers) = match io {
            Io::Pipes {
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
            Io::Pty { master } => {
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
                    Some(Box::new(master) as Box<dyn Terminal>),
                    Readers::Pty(reader),
                )
            }
            Io::Stream {
                output,
                stdin,
                terminal,
            } => {
                let close_by = if terminal.is_some() {
                    CloseBy::Eot
                } else {
                    CloseBy::Drop
                };
                let input = match stdin {
                    Some(fd) => Some(
                        Input::start(fd, close_by, max_pending)
                            .map_err(|e| failed("set up stdin", e))?,
                    ),
                    None => None,
                };
                let kinds = if terminal.is_some() {
                    vec![StreamKind::Pty]
                } else {
                    vec![StreamKind::Stdout, StreamKind::Stderr]
                };
                (kinds, input, terminal, Readers::Stream(output))
            }
        };
        let output = output::Output::new(&kinds, limits.head_bytes, limits.tail_bytes);
        let mut cursor = Cursor::new(&kinds, 0);
        if lossless {
            // Before the output tasks start: the child's first byte waits for this reader.
            output.hold(&mut cursor);
        }
        let process = Arc::new(Process::new(
            id.clone(),
            seq,
            spec,
            pid,
            output,
            (input, terminal),
            group.clone(),
        ));
        {
            let mut table = self.table();
            reservation.release(&mut table);
            table.insert(process.clone());
            table.running += 1;
        }
        self.emit(LifecycleKind::Started, &process);
        if process.spec.readiness.is_some() {
            tokio::spawn(readiness::run(
                self.clone(),
                process.clone(),
                environment.clone(),
            ));
        }

        // Completing the record is file work the caller need not wait for: the child is already
        // findable by its prepared record and its TEND_ORIGIN marker.
        let completing = tokio::task::spawn_blocking(move || group.complete());
        let pipe_tasks = readers.start(&process);
        let this = self.clone();
        let p = process.clone();
        tokio::spawn(async move { this.lifecycle(p, exit, pipe_tasks, completing).await });
        Ok((process, cursor))
    }

    /// Wait for the leader, drain output (bounded), record the exit, clean up.
    async fn lifecycle(
        self,
        p: Arc<Process>,
        exit: environment::BoxFuture<'static, Ended>,
        pipe_tasks: Vec<tokio::task::JoinHandle<()>>,
        completing: tokio::task::JoinHandle<()>,
    ) {
        let ended = exit.await;
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
        self.emit(LifecycleKind::Exited, &p);

        {
            let mut table = self.table();
            table.running -= 1;
            self.evict(&mut table);
            table.lingering.insert(p.seq, p.group.clone());
        }
        // The pgid records are the daemon's own business: let the streams woken by finish send
        // their exited events before the file system work below.
        tokio::task::yield_now().await;
        // The record must not be rewritten after it is removed below.
        let _ = completing.await;

        // Forget groups that have emptied since (this one included), and their records.
        let lingering: Vec<(u64, Arc<dyn Group>)> = self
            .table()
            .lingering
            .iter()
            .map(|(seq, g)| (*seq, g.clone()))
            .collect();
        let mut gone = Vec::new();
        for (seq, group) in lingering {
            if !group.alive().await {
                gone.push(seq);
            }
        }
        let forgotten: Vec<Arc<dyn Group>> = {
            let mut table = self.table();
            gone.iter()
                .filter_map(|seq| table.lingering.remove(seq))
                .collect()
        };
        if !forgotten.is_empty() {
            let _ = tokio::task::spawn_blocking(move || {
                for g in forgotten {
                    g.forget();
                }
            })
            .await;
        }
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
            if let Some(p) = table.procs.get(&seq) {
                self.emit(LifecycleKind::Removed, p);
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
                    "no process {}: it never existed, was removed, or was evicted after exit; \
                     List shows the known ones",
                    crate::error::quote(id)
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
    pub async fn signal(&self, p: &Process, signal: i32, leader_only: bool) -> Result<()> {
        if !p.running() {
            let lingering = self.table().lingering.contains_key(&p.seq);
            if leader_only || !lingering || !p.group.remains().await {
                return Err(Error::FailedPrecondition(format!(
                    "{} has exited and nothing is left in its group to signal",
                    p.id
                )));
            }
        }
        match p.group.signal(signal, leader_only).await {
            Ok(()) => Ok(()),
            Err(SignalError::Gone) => Err(Error::FailedPrecondition(format!(
                "{} is exiting; nothing is left to signal",
                p.id
            ))),
            Err(SignalError::Failed(why)) => {
                Err(Error::Internal(format!("signal {}: {why}", p.id)))
            }
        }
    }

    /// Stop a process in the background, as `terminate` does.
    pub fn stop(&self, p: &Arc<Process>, grace: Duration) {
        let (this, p) = (self.clone(), p.clone());
        tokio::spawn(async move { this.terminate(&p, grace).await });
    }

    /// Stop a process and everything it started: SIGTERM to its group and its cgroup (and
    /// SIGHUP, on a PTY, whose terminal is going away); after `grace`, or once they are gone,
    /// SIGKILL to whatever is left of the group, the cgroup, and every process carrying its
    /// marker (what left both with `setsid` or a double fork). Returns once the leader's exit
    /// is recorded (bounded).
    pub async fn terminate(&self, p: &Arc<Process>, grace: Duration) {
        let group = p.group.clone();
        group.signal_all(libc::SIGTERM).await;
        if p.pty_size().is_some() {
            group.signal_all(libc::SIGHUP).await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        while (p.running() || group.alive().await) && tokio::time::Instant::now() < deadline {
            let step = tokio::time::Instant::now() + Duration::from_millis(20);
            let _ = tokio::time::timeout_at(step.min(deadline), self.wait(p, None)).await;
        }
        group.kill().await;
        self.wait(
            p,
            Some(self.inner.limits.drain_timeout + Duration::from_secs(5)),
        )
        .await;
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
            self.terminate(&p, Duration::ZERO).await;
        }
        self.table().remove(p.seq);
        self.emit(LifecycleKind::Removed, &p);
        Ok(())
    }

    /// Stop everything: SIGTERM every group and cgroup (and SIGHUP every PTY session), wait up
    /// to `grace`, then SIGKILL what is left — the daemon's whole cgroup, every group, and every
    /// process carrying this daemon's marker, `setsid` or not — and remove the records (and this
    /// daemon's own) once nothing is left.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutting_down.store(true, Ordering::Release);
        let (groups, terminals) = {
            let table = self.table();
            let running = table.procs.values().filter(|p| p.running());
            let mut groups: Vec<Arc<dyn Group>> =
                running.clone().map(|p| p.group.clone()).collect();
            groups.extend(table.lingering.values().cloned());
            let terminals: Vec<Arc<dyn Group>> = running
                .filter(|p| p.pty_size().is_some())
                .map(|p| p.group.clone())
                .collect();
            (groups, terminals)
        };
        futures_util::future::join_all(groups.iter().map(|g| g.signal_all(libc::SIGTERM))).await;
        // Their terminals are going away: interactive shells ignore SIGTERM but obey a hangup.
        futures_util::future::join_all(terminals.iter().map(|g| g.signal_all(libc::SIGHUP))).await;
        let deadline = Instant::now() + grace;
        loop {
            let alive = futures_util::future::join_all(groups.iter().map(|g| g.alive())).await;
            if !alive.contains(&true) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        futures_util::future::join_all(groups.iter().map(|g| g.kill())).await;
        let native = self.inner.native.clone();
        let left = tokio::task::spawn_blocking(move || native.kill_everything())
            .await
            .unwrap_or(1);
        let alive = futures_util::future::join_all(groups.iter().map(|g| g.alive())).await;
        let native = self.inner.native.clone();
        let all_gone = !alive.contains(&true);
        let _ = tokio::task::spawn_blocking(move || {
            for (g, alive) in groups.iter().zip(alive) {
                if !alive {
                    g.forget();
                }
            }
            if left == 0 && all_gone {
                native.close();
            }
        })
        .await;
        if left > 0 || !all_gone {
            tracing::warn!(
                left,
                "processes of this daemon survived the shutdown; the next daemon's sweep kills them"
            );
        }
    }
}

/// The tasks that move a child's output into its log.
enum Readers {
    Pipes(Vec<(StreamKind, std::os::fd::OwnedFd)>),
    Pty(std::os::fd::OwnedFd),
    Stream(futures_util::stream::BoxStream<'static, (StreamKind, bytes::Bytes)>),
}

impl Readers {
    /// Ask for a larger pipe. Only streams that fill the default one ask: the pages count
    /// against the user's pipe limit. The default stays if the system refuses.
    fn widen(rx: &tokio::net::unix::pipe::Receiver) {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl(2) on a descriptor the receiver owns.
        unsafe { libc::fcntl(rx.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
    }

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
                        let mut blocks = ring::Blocks::default();
                        let mut widened = false;
                        loop {
                            if rx.readable().await.is_err() {
                                break;
                            }
                            // Behind a lossless reader the pipe is left unread, so the process
                            // blocks on its write until the reader catches up. Asked once data
                            // is there, not before the wait for it: a hold taken meanwhile
                            // must limit this read.
                            let room = p.output.room(kind, READ_CHUNK).await;
                            let buf = blocks.buffer();
                            let limit = room.min(buf.capacity() - buf.len());
                            match rx.try_read_buf(&mut buf.limit(limit)) {
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                                Ok(0) | Err(_) => break,
                                // A large read is handed over as it is, without a copy; the
                                // first one (a full default pipe) widens the pipe.
                                Ok(n) if n >= ring::LARGE => {
                                    p.output.append_bytes(kind, buf.split().freeze());
                                    if !widened {
                                        widened = true;
                                        Readers::widen(&rx);
                                    }
                                }
                                // A small one is copied, and its room read into again.
                                Ok(_) => {
                                    p.output.append(kind, buf);
                                    buf.clear();
                                }
                            }
                        }
                        p.output.eof(kind);
                    })
                })
                .collect(),
            Readers::Stream(mut chunks) => {
                let p = p.clone();
                vec![tokio::spawn(async move {
                    // The next chunk is asked for only once this one is in the log, so a
                    // lossless reader holds back the stream, and through it the process.
                    while let Some((kind, mut chunk)) = chunks.next().await {
                        while !chunk.is_empty() {
                            let room = p.output.room(kind, chunk.len()).await.max(1);
                            p.output
                                .append_bytes(kind, chunk.split_to(room.min(chunk.len())));
                        }
                    }
                    for kind in p.output.kinds() {
                        p.output.eof(kind);
                    }
                })]
            }
            Readers::Pty(fd) => {
                let p = p.clone();
                vec![tokio::spawn(async move {
                    if let Err(e) = fdio::read_pty(fd, &p.output).await {
                        tracing::error!(id = p.id, error = %e, "cannot read the PTY");
                    }
                    p.output.eof(StreamKind::Pty);
                })]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host, behind a gate: a launch waits until the gate opens (a container engine that
    /// takes its time).
    struct Gated {
        host: NativeEnv,
        open: tokio::sync::watch::Receiver<bool>,
    }

    impl Environment for Gated {
        fn launch<'a>(
            &'a self,
            id: &'a str,
            spec: &'a Spec,
        ) -> environment::BoxFuture<'a, Result<Launched>> {
            Box::pin(async move {
                let mut open = self.open.clone();
                let _ = open.wait_for(|o| *o).await;
                self.host.launch(id, spec).await
            })
        }
    }

    struct Finder(Arc<Gated>);

    impl Resolve for Finder {
        fn resolve(&self, _: &str) -> Result<(String, Arc<dyn Environment>)> {
            Ok(("gated".into(), self.0.clone()))
        }
    }

    fn spec(name: &str, environment: &str) -> Spec {
        Spec {
            argv: vec!["true".into()],
            name: Some(name.into()),
            environment: environment.into(),
            ..Spec::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_launch_held_up_holds_up_no_other_start_and_keeps_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(dir.path(), Limits::default()).unwrap();
        let (gate, open) = tokio::sync::watch::channel(false);
        sup.set_resolver(Arc::new(Finder(Arc::new(Gated {
            host: sup.host().clone(),
            open,
        }))));
        let held = {
            let sup = sup.clone();
            tokio::task::spawn_blocking(move || sup.start(spec("slow", "gated")))
        };
        // Until the held start has reserved its place (no clock: it either has or has not).
        while sup.table().pending == 0 {
            tokio::task::yield_now().await;
        }
        // Meanwhile another start goes through, and the held one's name is taken.
        let quick = {
            let sup = sup.clone();
            tokio::task::spawn_blocking(move || sup.start(spec("quick", "native")))
        }
        .await
        .unwrap()
        .unwrap();
        assert!(sup.wait(&quick, None).await);
        let taken = {
            let sup = sup.clone();
            tokio::task::spawn_blocking(move || sup.start(spec("slow", "native")))
        }
        .await
        .unwrap()
        .unwrap_err();
        assert!(matches!(taken, Error::AlreadyExists(_)), "{taken}");
        assert!(!held.is_finished(), "the held start is still held");
        gate.send(true).unwrap();
        let slow = held.await.unwrap().unwrap();
        assert_eq!(slow.spec.environment, "gated");
        assert!(sup.wait(&slow, None).await);
        assert_eq!(sup.table().pending, 0);
        sup.shutdown(Duration::from_secs(1)).await;
    }
}
