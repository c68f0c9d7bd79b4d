//! Resource hints of a process — its niceness, its OOM score adjustment, and the memory and pids
//! limits of its cgroup — and the daemon's own protection from the OOM killer.
//!
//! The daemon lowers its own OOM score at start (`protect_daemon`), so that under memory
//! pressure the kernel kills a tool process before the daemon that tends it. A child inherits
//! its parent's score, so every child is set back to the daemon's original score before exec,
//! unless its spec asks for another: none inherits the protection.
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::cgroup::{Cgroups, Where};
use super::spec::ResourceLimits;
use crate::error::{Error, Result};

/// The daemon's own `oom_score_adj` where it may lower it (CAP_SYS_RESOURCE): far below any
/// tool process's, but above -1000 (never killed), which is left to whoever started it.
pub const DAEMON_OOM_SCORE_ADJ: i32 = -900;

/// The daemon's score before `protect_daemon` lowered it; unset when it did not.
static ORIGINAL_OOM_SCORE_ADJ: OnceLock<i32> = OnceLock::new();

const OWN_OOM: &str = "/proc/self/oom_score_adj";

fn own_oom_score_adj() -> Option<i32> {
    std::fs::read_to_string(OWN_OOM).ok()?.trim().parse().ok()
}

/// Lower the daemon's OOM score to `DAEMON_OOM_SCORE_ADJ`, unless it is lower already; without
/// CAP_SYS_RESOURCE the kernel refuses, and the daemon runs on as it was.
pub fn protect_daemon() {
    let Some(original) = own_oom_score_adj() else {
        tracing::debug!("no {OWN_OOM}: the daemon's OOM score stays as it is");
        return;
    };
    if original <= DAEMON_OOM_SCORE_ADJ {
        tracing::debug!(
            oom_score_adj = original,
            "the daemon's OOM score is low already"
        );
        return;
    }
    // Before the write, so that no child spawned meanwhile keeps the protection.
    let _ = ORIGINAL_OOM_SCORE_ADJ.set(original);
    match std::fs::write(OWN_OOM, DAEMON_OOM_SCORE_ADJ.to_string()) {
        Ok(()) => tracing::info!(
            oom_score_adj = DAEMON_OOM_SCORE_ADJ,
            children = original,
            "the OOM killer takes tool processes before the daemon"
        ),
        Err(e) => tracing::info!(
            error = %e,
            oom_score_adj = original,
            "cannot lower the daemon's OOM score (that needs CAP_SYS_RESOURCE): under memory \
             pressure it is as likely a victim as its processes"
        ),
    }
}

/// The OOM score a child gets when its spec asks for none: the daemon's original one, where
/// the daemon lowered its own (else it inherits the daemon's, which is the original).
pub fn child_oom_score_adj() -> Option<i32> {
    ORIGINAL_OOM_SCORE_ADJ.get().copied()
}

/// Whether the daemon can apply `limits` to a process's own cgroup: `cgroups` is the daemon's
/// cgroup, or why it has none.
pub fn check_limits(
    limits: &ResourceLimits,
    cgroups: std::result::Result<&Cgroups, &str>,
) -> Result<()> {
    if !limits.any() {
        return Ok(());
    }
    let cgroups = cgroups.map_err(|why| {
        Error::FailedPrecondition(format!(
            "spec.limits: memory and pids limits are written into the process's own cgroup v2 \
             (or, on a hybrid host, its groups in the cgroup v1 memory and pids hierarchies), \
             and this daemon makes no cgroup ({why}); run tend where it can write a cgroup v2 \
             hierarchy (a systemd unit with Delegate=yes, a container with a writable \
             /sys/fs/cgroup), or leave spec.limits unset"
        ))
    })?;
    for (field, controller, set) in [
        ("memory_max_bytes", "memory", limits.memory_max.is_some()),
        ("pids_max", "pids", limits.pids_max.is_some()),
    ] {
        if set {
            cgroups.controller(controller).map_err(|why| {
                Error::FailedPrecondition(format!(
                    "spec.limits.{field}: the limit needs the {controller} controller, in tend's \
                     cgroup v2 or (on a hybrid host) a cgroup v1 hierarchy, and {why}"
                ))
            })?;
        }
    }
    Ok(())
}

/// A process's group in a cgroup v1 hierarchy (a hybrid host's), its limit written, open for
/// the child to join before exec.
pub struct V1Group {
    pub dir: PathBuf,
    pub fd: OwnedFd,
}

/// Write `limits` before anything is born where they hold: into the process's cgroup v2 at
/// `dir` where v2 has the controller, else into a group `id` made under the daemon's root in
/// the controller's cgroup v1 hierarchy, which is returned for the child to join. On error
/// nothing made here is left.
pub fn apply_limits(
    cgroups: &Cgroups,
    dir: &Path,
    id: &str,
    limits: &ResourceLimits,
) -> Result<Vec<V1Group>> {
    let mut v1 = Vec::new();
    let written = write_limits(cgroups, dir, id, limits, &mut v1);
    if written.is_err() {
        for g in &v1 {
            super::cgroup::remove(&g.dir);
        }
    }
    written.map(|()| v1)
}

fn write_limits(
    cgroups: &Cgroups,
    dir: &Path,
    id: &str,
    limits: &ResourceLimits,
    v1: &mut Vec<V1Group>,
) -> Result<()> {
    for (field, controller, v2_file, v1_file, value) in [
        (
            "memory_max_bytes",
            "memory",
            "memory.max",
            "memory.limit_in_bytes",
            limits.memory_max,
        ),
        ("pids_max", "pids", "pids.max", "pids.max", limits.pids_max),
    ] {
        let Some(value) = value else { continue };
        let failed = |path: &Path, e: io::Error| {
            Error::FailedPrecondition(format!(
                "spec.limits.{field}: cannot write {value} to {}: {e}",
                path.display()
            ))
        };
        match cgroups.controller(controller) {
            Ok(Where::V2) => {
                let path = dir.join(v2_file);
                std::fs::write(&path, value.to_string()).map_err(|e| failed(&path, e))?;
            }
            Ok(Where::V1(root)) => {
                let group = root.join(id);
                let mut made = std::fs::create_dir(&group);
                if made
                    .as_ref()
                    .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
                {
                    // The root went (a sweep that took it for a dead daemon's, in another
                    // PID namespace sharing this hierarchy): make it again.
                    made = std::fs::create_dir_all(&group);
                }
                match made {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(Error::FailedPrecondition(format!(
                            "spec.limits.{field}: cannot make the process's cgroup v1 \
                             {controller} group {}: {e}",
                            group.display()
                        )))
                    }
                }
                // Listed before the writes, so that a failure below removes it too.
                let fd = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                    .open(&group);
                let fd = match fd {
                    Ok(fd) => fd,
                    Err(e) => {
                        super::cgroup::remove(&group);
                        return Err(failed(&group, e));
                    }
                };
                v1.push(V1Group {
                    dir: group.clone(),
                    fd: fd.into(),
                });
                let path = group.join(v1_file);
                std::fs::write(&path, value.to_string()).map_err(|e| failed(&path, e))?;
            }
            Err(why) => {
                return Err(Error::FailedPrecondition(format!(
                    "spec.limits.{field}: {why}"
                )))
            }
        }
    }
    Ok(())
}

fn refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM))
}

/// The child could not set its niceness to `nice`.
pub fn nice_failed(nice: i32, e: io::Error) -> Error {
    if refused(&e) {
        return Error::FailedPrecondition(format!(
            "spec.nice: {nice} is below 0, and raising a process's priority needs privilege \
             (CAP_SYS_NICE, or an RLIMIT_NICE that allows it), which the daemon lacks ({e}): \
             ask for 0 to 19, or give tend CAP_SYS_NICE"
        ));
    }
    Error::io(format!("spec.nice: set the niceness to {nice}"), e)
}

/// The child could not set its OOM score to `value` (`asked`: the spec's, else the daemon's
/// original).
pub fn oom_score_adj_failed(value: i32, asked: bool, e: io::Error) -> Error {
    if asked && refused(&e) {
        let own = own_oom_score_adj().map_or(String::new(), |v| format!(" ({v})"));
        return Error::FailedPrecondition(format!(
            "spec.oom_score_adj: {value} is below what the daemon may set without privilege: \
             lowering an OOM score below the daemon's own{own} needs CAP_SYS_RESOURCE, which \
             it lacks ({e}); ask for a higher score, or give tend CAP_SYS_RESOURCE"
        ));
    }
    let field = if asked {
        "spec.oom_score_adj"
    } else {
        "the daemon's original oom_score_adj"
    };
    Error::io(format!("set {field} {value} in the child"), e)
}

/// The child could not join the cgroup that holds its limits.
pub fn join_failed(e: io::Error) -> Error {
    Error::FailedPrecondition(format!(
        "spec.limits: the process could not join its own cgroup, which holds its limits ({e}); \
         leave spec.limits unset, or run tend where it can move processes between its cgroups"
    ))
}

/// The child could not join its group `dir` in a cgroup v1 hierarchy, which holds a limit.
pub fn join_v1_failed(dir: &Path, e: io::Error) -> Error {
    Error::FailedPrecondition(format!(
        "spec.limits: the process could not join its cgroup v1 group {}, which holds its \
         limit (writing 0 to cgroup.procs before exec: {e}); leave spec.limits unset, or run \
         tend where it can move processes between cgroups (as root, or with the hierarchy \
         delegated)",
        dir.display()
    ))
}
