//! Process-group records in `<state_dir>/pgids/`, and the start-up sweep that kills the groups a
//! crashed predecessor left behind.
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
    // SAFETY: signal 0 only checks for existence and permission.
    unsafe { libc::kill(-(pgid as i32), 0) == 0 }
}

/// Every live process in group `pgid`.
pub fn group_members(pgid: u32) -> Vec<(u32, ProcStat)> {
    // Usually the group is empty by the time anyone asks (its leader was reaped and left nothing
    // behind). kill(-pgid, 0) failing with ESRCH proves that without reading every /proc/*/stat,
    // which costs about a millisecond on each exit. (Not for pgid 0 or 1: kill(0) and kill(-1)
    // address our own group and every process.)
    if pgid > 1 {
        // SAFETY: kill(2) with signal 0 only checks that the group exists; nothing is sent.
        let rc = unsafe { libc::kill(-(pgid as i32), 0) };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return Vec::new();
        }
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

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Processes killed, by PID.
    pub killed: Vec<u32>,
    /// Records removed.
    pub removed: usize,
}

impl Records {
    /// Open (creating) `<state_dir>/pgids`.
    pub fn open(state_dir: &Path, owner: Owner) -> Result<Records> {
        let dir = state_dir.join("pgids");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        Ok(Records { dir, owner })
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

    /// Add the process group and the leader's start time once the child is running.
    pub fn complete(&self, id: &str, pgid: u32) -> Result<()> {
        self.write(&Record {
            id: id.to_string(),
            pgid: Some(pgid),
            owner: self.owner.clone(),
            leader_start_ticks: proc_stat(pgid).map(|s| s.start_ticks),
        })
    }

    /// Forget a group that has no member left.
    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_file(self.path(id));
    }

    /// Kill every recorded group whose owner is dead and remove its record. Records of a live
    /// owner (this daemon included) are left alone. Idempotent.
    pub fn sweep(&self) -> SweepReport {
        let mut report = SweepReport::default();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return report;
        };
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
            let record: Record = match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(r) => r,
                None => {
                    // Complete records are renamed into place whole; a torn one is a prepared
                    // record whose child was never spawned.
                    tracing::warn!(path = %path.display(), "removing a torn pgid record");
                    let _ = std::fs::remove_file(&path);
                    report.removed += 1;
                    continue;
                }
            };
            if record.owner.alive(&self.owner.boot_id) {
                continue;
            }
            if record.owner.boot_id == self.owner.boot_id {
                report.killed.extend(kill_recorded_group(&record));
                // Children that left the group (or were never known by it) still carry the
                // marker in their environment.
                report
                    .killed
                    .extend(kill_marked(&record.owner.marker(&record.id)));
            }
            let _ = std::fs::remove_file(&path);
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

/// SIGKILL every process whose environment holds `TEND_ORIGIN=<marker>`.
fn kill_marked(marker: &str) -> Vec<u32> {
    let want = format!("{MARKER}={marker}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut killed = Vec::new();
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()) {
            // SAFETY: plain kill(2).
            if unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0 {
                killed.push(pid);
            }
        }
    }
    killed
}

fn kill_recorded_group(record: &Record) -> Vec<u32> {
    let Some(pgid) = record.pgid else {
        return Vec::new();
    };
    let members = group_members(pgid);
    // A live leader with another start time means the PGID was reused: not ours.
    if let (Some(want), Some((_, leader))) = (
        record.leader_start_ticks,
        members.iter().find(|(pid, _)| *pid == pgid),
    ) {
        if leader.start_ticks != want {
            return Vec::new();
        }
    }
    let mut killed = Vec::new();
    for (pid, stat) in members {
        if record
            .leader_start_ticks
            .is_some_and(|t| stat.start_ticks < t)
        {
            continue;
        }
        // SAFETY: plain kill(2).
        if unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0 {
            killed.push(pid);
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn dead_owner(boot_id: &str) -> Owner {
        // PID 1's start time is never this: the owner is "dead" without touching a real daemon.
        Owner {
            boot_id: boot_id.to_string(),
            pid: 1,
            start_ticks: u64::MAX,
        }
    }

    #[test]
    fn the_sweep_kills_a_dead_owners_marked_child_and_drops_torn_records() {
        let dir = tempfile::tempdir().unwrap();
        let me = Owner::current().unwrap();
        let ghost = Records::open(dir.path(), dead_owner(&me.boot_id)).unwrap();
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

        let records = Records::open(dir.path(), me).unwrap();
        let report = records.sweep();
        assert_eq!(report.killed, vec![child.id()]);
        assert_eq!(report.removed, 2);
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(
            std::fs::read_dir(dir.path().join("pgids")).unwrap().count(),
            0
        );
        // Idempotent.
        assert_eq!(records.sweep(), SweepReport::default());
    }

    #[test]
    fn a_live_owners_records_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path(), Owner::current().unwrap()).unwrap();
        records.prepare("p-1").unwrap();
        records.complete("p-1", std::process::id()).unwrap();
        assert_eq!(records.sweep(), SweepReport::default());
        assert!(dir.path().join("pgids/p-1.json").exists());
    }
}
