//! Process-group records in `<state_dir>/pgids/`, and the start-up sweep that kills the groups a
//! crashed predecessor left behind.
//!
//! The child writes its own record between fork and exec, so no child can run without one: if the
//! daemon is killed at any point after that, its successor finds the group. An owner is its boot
//! id, PID and start time, never a bare PID, which the kernel reuses.
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
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
    pub pgid: u32,
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

/// Everything the child needs to write its record without allocating: between fork and exec
/// only async-signal-safe calls are allowed, so paths and text are prepared here.
pub struct ChildRecord {
    tmp: CString,
    path: CString,
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

impl ChildRecord {
    /// Write `<prefix><getpid()><suffix>` to the tmp file and rename it into place. Runs in the
    /// forked child: only raw syscalls, no allocation, no locks.
    pub fn write_in_child(&self) -> std::io::Result<()> {
        let mut buf = [0u8; 1024];
        let mut len = 0;
        let mut put = |bytes: &[u8]| -> std::io::Result<()> {
            let end = len + bytes.len();
            if end > buf.len() {
                return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
            }
            buf[len..end].copy_from_slice(bytes);
            len = end;
            Ok(())
        };
        put(&self.prefix)?;
        // SAFETY: getpid is async-signal-safe and cannot fail.
        let mut pid = unsafe { libc::getpid() } as u32;
        let mut digits = [0u8; 10];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (pid % 10) as u8;
            n += 1;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        digits[..n].reverse();
        put(&digits[..n])?;
        put(&self.suffix)?;
        // SAFETY: open/write/close/rename are async-signal-safe; the pointers outlive the calls.
        unsafe {
            let fd = libc::open(
                self.tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o600,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let wrote = libc::write(fd, buf.as_ptr().cast(), len);
            libc::close(fd);
            if wrote != len as isize {
                return Err(std::io::Error::last_os_error());
            }
            // No fsync: the record must survive the daemon's death, not the machine's; after a
            // reboot the boot id differs and every old group is gone anyway.
            if libc::rename(self.tmp.as_ptr(), self.path.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
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

    /// Prepare the record the child of process `id` will write.
    pub fn for_child(&self, id: &str) -> Result<ChildRecord> {
        let path = self.path(id);
        let tmp = self.dir.join(format!("{id}.json.tmp"));
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| Error::Internal(format!("NUL in {}", p.display())))
        };
        let owner = serde_json::to_string(&self.owner)
            .map_err(|e| Error::Internal(format!("encode owner: {e}")))?;
        Ok(ChildRecord {
            tmp: c(&tmp)?,
            path: c(&path)?,
            prefix: format!("{{\"id\":\"{id}\",\"owner\":{owner},\"pgid\":").into_bytes(),
            suffix: b",\"leader_start_ticks\":null}\n".to_vec(),
        })
    }

    /// Add the leader's start time to a record once the child is running.
    pub fn complete(&self, id: &str, pgid: u32) -> Result<()> {
        let record = Record {
            id: id.to_string(),
            pgid,
            owner: self.owner.clone(),
            leader_start_ticks: proc_stat(pgid).map(|s| s.start_ticks),
        };
        let tmp = self.dir.join(format!("{id}.json.tmp"));
        let text = serde_json::to_vec(&record)
            .map_err(|e| Error::Internal(format!("encode record: {e}")))?;
        std::fs::write(&tmp, text).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, self.path(id))
            .map_err(|e| Error::io(format!("rename {}", tmp.display()), e))
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
                // A write that never finished: its child never reached exec.
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
                    tracing::warn!(path = %path.display(), "unreadable pgid record left in place");
                    continue;
                }
            };
            if record.owner.alive(&self.owner.boot_id) {
                continue;
            }
            if record.owner.boot_id == self.owner.boot_id {
                report.killed.extend(kill_recorded_group(&record));
            }
            let _ = std::fs::remove_file(&path);
            report.removed += 1;
        }
        report
    }
}

fn kill_recorded_group(record: &Record) -> Vec<u32> {
    let members = group_members(record.pgid);
    // A live leader with another start time means the PGID was reused: not ours.
    if let (Some(want), Some((_, leader))) = (
        record.leader_start_ticks,
        members.iter().find(|(pid, _)| *pid == record.pgid),
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
