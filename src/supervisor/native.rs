//! The native environment: processes on this host. What only a host process needs — its
//! working directory checked, its program found on PATH, its pgid record and marker, the spawn,
//! its cgroup — is kept here, apart from the process table that every environment shares.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::cgroup::{self, Cgroups};
use super::reaper::Reaper;
use super::records::Records;
use super::spawn::{self, Spawned};
use super::spec::{self, Spec};
use crate::error::Result;

/// Host processes: their records, their cgroups, and the one reaper of every child.
pub struct Native {
    pub(super) records: Records,
    pub(super) cgroups: Option<Cgroups>,
    pub(super) reaper: Arc<Reaper>,
}

/// What a spec needs on this host, checked before the table reserves an id for it.
pub struct Checked {
    program: PathBuf,
    env: BTreeMap<String, String>,
}

/// A host process just started.
pub struct Launched {
    pub spawned: Spawned,
    /// Its cgroup, where the daemon has cgroups.
    pub cgroup: Option<PathBuf>,
}

impl Native {
    /// The working directory exists, the program is found, the child's environment is made.
    pub fn check(&self, spec: &Spec) -> Result<Checked> {
        spec.check_cwd()?;
        let env = spec.environment();
        let program = spec::resolve_program(&spec.argv[0], &env, spec.cwd.as_deref())?;
        Ok(Checked { program, env })
    }

    /// Start `spec` as process `id`: its record is written before the spawn and its marker is
    /// in its environment, so no child can run without being findable; then it is moved into
    /// its cgroup at once, so that what it starts from then on is born there.
    pub fn launch(&self, id: &str, spec: &Spec, checked: Checked) -> Result<Launched> {
        self.records.prepare(id)?;
        let (key, marker) = self.records.marker(id);
        let mut env = checked.env;
        env.insert(key, marker);
        let spawned = spawn::spawn(spec, &checked.program, &env, &self.reaper)
            .inspect_err(|_| self.records.remove(id))?;
        let cgroup = self.cgroups.as_ref().and_then(|c| {
            c.adopt(id, spawned.pid)
                .inspect_err(|e| tracing::warn!(id, error = %e, "cannot make the process's cgroup"))
                .ok()
        });
        Ok(Launched { spawned, cgroup })
    }

    /// Complete the record with the group and cgroup: file work, for a blocking thread.
    pub fn complete(&self, id: &str, pgid: u32, cgroup: Option<&std::path::Path>) {
        if let Err(e) = self.records.complete(id, pgid, cgroup) {
            tracing::warn!(id, error = %e, "cannot complete the pgid record");
        }
    }

    /// Forget a process of which nothing runs any more: its record and its cgroup.
    pub fn forget(&self, id: &str, cgroup: Option<&std::path::Path>) {
        self.records.remove(id);
        if let Some(cg) = cgroup {
            cgroup::remove(cg);
        }
    }
}
