//! Process-group records in `<state_dir>/pgids/`, and the start-up sweep that kills what a
//! crashed predecessor left behind.
//!
//! Each daemon also writes a record of its own there (`daemon.<pid>.<start>.json`, with its
//! cgroup when it has one), removed at a clean shutdown once nothing of it is left. So a crashed
//! daemon's descendants are found even after their process's record went (a `setsid` child
//! whose leader exited normally): by the daemon's cgroup, and by the marker.
//!
//! A record is written before the child is spawned, and the child carries a marker in its
//! environment (`TEND_ORIGIN`), so no child can run without being findable: once the spawn
//! returns, the record is completed with the process group; if the daemon died in between, the
//! sweep finds the child by its marker instead. An owner is its boot id, PID and start time,
//! never a bare PID, which the kernel reuses.
//!
//! Writing the record in the parent (rather than between fork and exec) lets pipe processes be
//! spawned with posix_spawn (vfork), whose cost does not grow with the daemon's memory.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Who owns a record: a daemon, identified so that PID reuse cannot fool the sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub boot_id: String,
    pub pid: u32,
    pub start_ticks: u64,
}

impl Owner {
    /// This daemon.
    pub fn current() -> Result<Owner> {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map_err(|e| Error::io("read /proc/sys/kernel/random/boot_id", e))?
            .trim()
            .to_string();
        let pid = std::process::id();
        let start_ticks = proc_stat(pid)
            .map(|s| s.start_ticks)
            .ok_or_else(|| Error::Internal("cannot read /proc/self/stat".into()))?;
        Ok(Owner {
            boot_id,
            pid,
            start_ticks,
        })
    }

    fn alive(&self, boot_id: &str) -> bool {
        self.boot_id == boot_id
            && proc_stat(self.pid).is_some_and(|s| s.start_ticks == self.start_ticks)
    }

    /// The part of every marker of this owner's children before the process id.
    fn marker_prefix(&self) -> String {
        format!("{}:{}:{}:", self.boot_id, self.pid, self.start_ticks)
    }

    /// This owner as a label value (`<boot id>:<pid>:<start time>`), for what it owns outside
    /// the host's process table: containers.
    pub fn label(&self) -> String {
        format!("{}:{}:{}", self.boot_id, self.pid, self.start_ticks)
    }

    /// An owner from its label; `None` when the value is not one.
    pub fn from_label(label: &str) -> Option<Owner> {
        let mut parts = label.rsplitn(3, ':');
        let start_ticks = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let boot_id = parts.next()?.to_string();
        (!boot_id.is_empty()).then_some(Owner {
            boot_id,
            pid,
            start_ticks,
        })
    }

    /// Whether this owner still runs on this boot of this host.
    pub fn is_alive(&self) -> bool {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .is_ok_and(|b| self.alive(b.trim()))
    }

    /// The name of this owner's own record (and cgroup).
    pub fn name(&self) -> String {
        format!("tend.{}.{}", self.pid, self.start_ticks)
    }
}

/// A daemon's own record: who it is and where its cgroup is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DaemonRecord {
    owner: Owner,
    cgroup: Option<PathBuf>,
}

/// One process group the daemon started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// Unknown until the spawn returns.
    pub pgid: Option<u32>,
    pub owner: Owner,
    /// The leader's start time, filled in after the spawn; tells a reused PGID from ours.
    pub leader_start_ticks: Option<u64>,
    /// The process's cgroup, when the daemon has cgroups.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
}

/// The facts of `/proc/<pid>/stat` the sweep needs.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    pub pgrp: u32,
    pub start_ticks: u64,
    pub zombie: bool,
}

/// Read `/proc/<pid>/stat`; `None` when the process is gone.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &raw[raw.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        zombie: fields.first()? == &"Z",
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// Whether any process is left in group `pgid` (kill(2) with signal 0: no /proc scan).
pub fn group_alive(pgid: u32) -> bool {
    super::signal::group_exists(pgid)
}

/// Every live process in group `pgid`.
pub fn group_members(pgid: u32) -> Vec<(u32, ProcStat)> {
    // Usually the group is empty by the time anyone asks (its leader was reaped and left nothing
    // behind). kill(-pgid, 0) failing with ESRCH proves that without reading every /proc/*/stat,
    // which costs about a millisecond on each exit. (Not for pgid 0 or 1: kill(0) and kill(-1)
    // address our own group and every process.)
    if pgid > 1 && !super::signal::group_exists(pgid) {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, proc_stat(pid)?)))
        .filter(|(_, s)| s.pgrp == pgid && !s.zombie)
        .collect()
}

/// The record directory of one daemon.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
    owner: Owner,
}

/// One pass over `/proc`: every process's group, start time and marker.
struct Snapshot {
    procs: Vec<(u32, ProcStat, Option<String>)>,
}

impl Snapshot {
    fn take() -> Snapshot {
        let procs = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let stat = proc_stat(pid)?;
                Some((pid, stat, marker_of(pid)))
            })
            .collect();
        Snapshot { procs }
    }
}

/// The `TEND_ORIGIN` value in a process's environment.
pub(crate) fn marker_of(pid: u32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let want = format!("{MARKER}=");
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(want.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// SIGKILL every live process whose marker `pick` chooses; their PIDs.
pub fn kill_marked(pick: impl Fn(&str) -> bool) -> Vec<u32> {
    let snap = Snapshot::take();
    kill_in(&snap, |_, _, m| m.is_some_and(&pick))
}

/// The live processes whose marker `pick` chooses.
pub fn marked(pick: impl Fn(&str) -> bool) -> Vec<u32> {
    let me = std::process::id();
    Snapshot::take()
        .procs
        .into_iter()
        .filter(|(pid, stat, m)| *pid != me && !stat.zombie && m.as_deref().is_some_and(&pick))
        .map(|(pid, _, _)| pid)
        .collect()
}

/// SIGKILL the processes of a snapshot that `pick` chooses.
fn kill_in(snap: &Snapshot, pick: impl Fn(u32, &ProcStat, Option<&str>) -> bool) -> Vec<u32> {
    let me = std::process::id();
    let mut killed = Vec::new();
    for (pid, stat, marker) in &snap.procs {
        if stat.zombie || *pid == me || !pick(*pid, stat, marker.as_deref()) {
            continue;
        }
        if super::signal::to_process(*pid, libc::SIGKILL).is_ok() {
            killed.push(*pid);
        }
    }
    killed
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Processes killed, by PID.
    pub killed: Vec<u32>,
    /// Records removed.
    pub removed: usize,
}

impl Records {
    /// Open (creating) `<state_dir>/pgids`, and record this daemon there, with its cgroup.
    pub fn open(state_dir: &Path, owner: Owner, cgroup: Option<&Path>) -> Result<Records> {
        let dir = state_dir.join("pgids");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let records = Records { dir, owner };
        let me = DaemonRecord {
            owner: records.owner.clone(),
            cgroup: cgroup.map(Path::to_path_buf),
        };
        let text =
            serde_json::to_vec(&me).map_err(|e| Error::Internal(format!("encode record: {e}")))?;
        let path = records.daemon_path(&records.owner);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        Ok(records)
    }

    fn daemon_path(&self, owner: &Owner) -> PathBuf {
        self.dir
            .join(format!("daemon.{}.{}.json", owner.pid, owner.start_ticks))
    }

    /// The marker prefix of this daemon's children.
    pub fn marker_prefix(&self) -> String {
        self.owner.marker_prefix()
    }

    /// Forget this daemon's own record: at a clean shutdown that left nothing behind.
    pub fn close(&self) {
        let _ = std::fs::remove_file(self.daemon_path(&self.owner));
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// The environment variable every child of process `id` carries, naming this daemon.
    pub fn marker(&self, id: &str) -> (String, String) {
        (MARKER.to_string(), self.owner.marker(id))
    }

    /// Write the record of process `id` before it is spawned. Written in place, not renamed:
    /// if the daemon dies mid-write, the child was never spawned, and the sweep drops the torn
    /// record.
    pub fn prepare(&self, id: &str) -> Result<()> {
        let record = Record {
            id: id.to_string(),
            pgid: None,
            owner: self.owner.clone(),
            leader_start_ticks: None,
            cgroup: None,
        };
        let text = serde_json::to_vec(&record)
            .map_err(|e| Error::Internal(format!("encode record: {e}")))?;
        let path = self.path(id);
        std::fs::write(&path, text).map_err(|e| Error::io(format!("write {}", path.display()), e))
    }

    fn write(&self, record: &Record) -> Result<()> {
        let tmp = self.dir.join(format!("{}.json.tmp", record.id));
        let text = serde_json::to_vec(record)
            .map_err(|e| Error::Internal(format!("encode record: {e}")))?;
        // No fsync: the record must survive the daemon's death, not the machine's; after a
        // reboot the boot id differs and every old group is gone anyway.
        std::fs::write(&tmp, text).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, self.path(&record.id))
            .map_err(|e| Error::io(format!("rename {}", tmp.display()), e))
    }

    /// Add the process group, the leader's start time and the cgroup once the child runs.
    pub fn complete(&self, id: &str, pgid: u32, cgroup: Option<&Path>) -> Result<()> {
        self.write(&Record {
            id: id.to_string(),
            pgid: Some(pgid),
            owner: self.owner.clone(),
            leader_start_ticks: proc_stat(pgid).map(|s| s.start_ticks),
            cgroup: cgroup.map(Path::to_path_buf),
        })
    }

    /// Forget a group that has no member left.
    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_file(self.path(id));
    }

    /// Kill everything a dead owner left — its cgroup, its recorded groups, every process
    /// carrying its marker — and remove its records. Reads `/proc` once, whatever the number of
    /// records; what belongs to a live owner (this daemon included) is left alone. Idempotent.
    pub fn sweep(&self) -> SweepReport {
        let mut report = SweepReport::default();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return report;
        };
        let mut dead_daemons: Vec<(PathBuf, DaemonRecord)> = Vec::new();
        let mut dead_records: Vec<(PathBuf, Record)> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".json.tmp") {
                // A rename that never happened; the previous version (if any) is in place.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            let bytes = std::fs::read(&path).ok();
            if name.starts_with("daemon.") {
                match bytes.and_then(|b| serde_json::from_slice::<DaemonRecord>(&b).ok()) {
                    Some(d) if d.owner.alive(&self.owner.boot_id) => {}
                    Some(d) => dead_daemons.push((path, d)),
                    None => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                continue;
            }
            match bytes.and_then(|b| serde_json::from_slice::<Record>(&b).ok()) {
                Some(r) if r.owner.alive(&self.owner.boot_id) => {}
                Some(r) => dead_records.push((path, r)),
                None => {
                    // Complete records are renamed into place whole; a torn one is a prepared
                    // record whose child was never spawned.
                    tracing::warn!(path = %path.display(), "removing a torn pgid record");
                    let _ = std::fs::remove_file(&path);
                    report.removed += 1;
                }
            }
        }
        if dead_daemons.is_empty() && dead_records.is_empty() {
            return report;
        }
        // After a reboot (another boot id) nothing of the old owners can be alive.
        let this_boot = |o: &Owner| o.boot_id == self.owner.boot_id;
        let mut cgroups: Vec<PathBuf> = Vec::new();
        for (_, d) in dead_daemons.iter().filter(|(_, d)| this_boot(&d.owner)) {
            if let Some(cg) = &d.cgroup {
                report.killed.extend(super::cgroup::members(cg));
                let _ = super::cgroup::kill(cg);
                cgroups.push(cg.clone());
            }
        }
        for (_, r) in dead_records.iter().filter(|(_, r)| this_boot(&r.owner)) {
            if let Some(cg) = &r.cgroup {
                report.killed.extend(super::cgroup::members(cg));
                let _ = super::cgroup::kill(cg);
                cgroups.push(cg.clone());
            }
        }
        let prefixes: std::collections::HashSet<String> = dead_daemons
            .iter()
            .map(|(_, d)| d.owner.marker_prefix())
            .chain(dead_records.iter().map(|(_, r)| r.owner.marker_prefix()))
            .collect();
        let groups: std::collections::HashMap<u32, Option<u64>> = dead_records
            .iter()
            .filter(|(_, r)| this_boot(&r.owner))
            .filter_map(|(_, r)| Some((r.pgid?, r.leader_start_ticks)))
            .collect();
        let snap = Snapshot::take();
        // A recorded group whose live leader started at another time was reused: not ours.
        let reused: std::collections::HashSet<u32> = snap
            .procs
            .iter()
            .filter(|(pid, stat, _)| {
                groups.get(pid).is_some_and(|want| {
                    want.is_some_and(|t| stat.pgrp == *pid && stat.start_ticks != t)
                })
            })
            .map(|(pid, _, _)| *pid)
            .collect();
        report.killed.extend(kill_in(&snap, |_, stat, marker| {
            let by_marker = marker.is_some_and(|m| {
                m.rsplit_once(':')
                    .is_some_and(|(owner, _)| prefixes.contains(&format!("{owner}:")))
            });
            let by_group = !reused.contains(&stat.pgrp)
                && groups
                    .get(&stat.pgrp)
                    .is_some_and(|t| t.is_none_or(|t| stat.start_ticks >= t));
            by_marker || by_group
        }));
        report.killed.sort_unstable();
        report.killed.dedup();
        for (path, _) in &dead_records {
            let _ = std::fs::remove_file(path);
            report.removed += 1;
        }
        // cgroup.kill is asynchronous: the cgroups empty as their processes die.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while cgroups.iter().any(|c| super::cgroup::populated(c))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for cg in &cgroups {
            super::cgroup::remove(cg);
        }
        for (path, _) in &dead_daemons {
            let _ = std::fs::remove_file(path);
            report.removed += 1;
        }
        report
    }
}

/// The environment variable that marks a daemon's children.
pub const MARKER: &str = "TEND_ORIGIN";

impl Owner {
    fn marker(&self, id: &str) -> String {
        format!("{}:{}:{}:{id}", self.boot_id, self.pid, self.start_ticks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// A dead daemon of its own per test (`n`): PID 1's start time is never this, so the owner
    /// is "dead" without touching a real daemon; and tests run side by side, so one test's
    /// sweep must not find another's ghost (the sweep kills every carrier of a dead owner's
    /// marker prefix on the host).
    fn dead_owner(boot_id: &str, n: u64) -> Owner {
        Owner {
            boot_id: boot_id.to_string(),
            pid: 1,
            start_ticks: u64::MAX - n,
        }
    }

    #[test]
    fn the_sweep_kills_a_dead_owners_marked_child_and_drops_torn_records() {
        let dir = tempfile::tempdir().unwrap();
        let me = Owner::current().unwrap();
        let ghost = Records::open(dir.path(), dead_owner(&me.boot_id, 0), None).unwrap();
        // The ghost prepared p-1 and spawned it, then "crashed" before completing the record.
        ghost.prepare("p-1").unwrap();
        let (k, v) = ghost.marker("p-1");
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .env(k, v)
            .spawn()
            .unwrap();
        std::fs::write(dir.path().join("pgids/p-2.json"), b"{\"id\":\"p-2\",\"own").unwrap();
        // A vfork parent resumes before exec has set up the child's environment: wait for it.
        let environ = format!("/proc/{}/environ", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read(&environ).is_ok_and(|e| e.windows(11).any(|w| w == b"TEND_ORIGIN")) {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never showed its environment"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }

        let records = Records::open(dir.path(), me, None).unwrap();
        let report = records.sweep();
        assert_eq!(report.killed, vec![child.id()]);
        // p-1, the torn p-2 and the ghost's own record; this daemon's own record stays.
        assert_eq!(report.removed, 3);
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(
            std::fs::read_dir(dir.path().join("pgids")).unwrap().count(),
            1
        );
        // Idempotent.
        assert_eq!(records.sweep(), SweepReport::default());
    }

    #[test]
    fn a_live_owners_records_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path(), Owner::current().unwrap(), None).unwrap();
        records.prepare("p-1").unwrap();
        records.complete("p-1", std::process::id(), None).unwrap();
        assert_eq!(records.sweep(), SweepReport::default());
        assert!(dir.path().join("pgids/p-1.json").exists());
    }

    /// Wait until `pid` shows `TEND_ORIGIN` in its environment (a vfork parent resumes first).
    fn await_marker(pid: u32) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while marker_of(pid).is_none() {
            assert!(std::time::Instant::now() < deadline, "no marker in {pid}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_dead_daemons_marked_child_dies_after_its_process_record_went() {
        // The leader exited normally and its record was removed, but a setsid child lives on
        // with the marker: the dead daemon's own record is enough to find it.
        let dir = tempfile::tempdir().unwrap();
        let me = Owner::current().unwrap();
        let ghost = Records::open(dir.path(), dead_owner(&me.boot_id, 1), None).unwrap();
        let (k, v) = ghost.marker("p-7");
        let mut orphan = std::process::Command::new("sleep")
            .arg("1000")
            .env(&k, v)
            .spawn()
            .unwrap();
        // A live owner's child (this test's) is left alone.
        let mine = Records::open(dir.path(), me, None).unwrap();
        let (k2, v2) = mine.marker("p-1");
        let mut kept = std::process::Command::new("sleep")
            .arg("1000")
            .env(k2, v2)
            .spawn()
            .unwrap();
        await_marker(orphan.id());
        await_marker(kept.id());
        let report = mine.sweep();
        assert_eq!(report.killed, vec![orphan.id()]);
        assert_eq!(orphan.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(kept.try_wait().unwrap().is_none());
        kept.kill().unwrap();
        kept.wait().unwrap();
    }
}
