//! Resource hints of a process — its niceness, its OOM score adjustment, and the memory and pids
//! limits of its cgroup — and the daemon's own protection from the OOM killer.
//!
//! The daemon lowers its own OOM score at start (`protect_daemon`), so that under memory
//! pressure the kernel kills a tool process before the daemon that tends it. A child inherits
//! its parent's score, so every child is set back to the daemon's original score before exec,
//! unless its spec asks for another: none inherits the protection.
use std::io;
use std::path::Path;
use std::sync::OnceLock;

use super::cgroup::Cgroups;
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
            "spec.limits: memory and pids limits are written into the process's own cgroup v2, \
             and this daemon makes none ({why}); run tend where it can write a cgroup v2 \
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
                    "spec.limits.{field}: the limit needs the cgroup v2 {controller} controller \
                     in tend's cgroups, and {why}"
                ))
            })?;
        }
    }
    Ok(())
}

/// Write `limits` into the cgroup at `dir`, before anything is born in it.
pub fn apply_limits(dir: &Path, limits: &ResourceLimits) -> Result<()> {
    for (field, file, value) in [
        ("memory_max_bytes", "memory.max", limits.memory_max),
        ("pids_max", "pids.max", limits.pids_max),
    ] {
        let Some(value) = value else { continue };
        let path = dir.join(file);
        std::fs::write(&path, value.to_string()).map_err(|e| {
            Error::FailedPrecondition(format!(
                "spec.limits.{field}: cannot write {value} to {}: {e}",
                path.display()
            ))
        })?;
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
