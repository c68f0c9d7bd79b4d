//! Persisted crew specs: `<state_dir>/agents.json`, read and written under an exclusive lock on
//! `agents.lock`, written atomically (tmp, fsync, rename, fsync dir). A corrupt or unreadable file
//! is reported and never overwritten: persistence refuses until someone fixes or moves it.
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::spec::AgentSpec;
use crate::error::{Error, Result};

/// One persisted crew agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub spec: AgentSpec,
    /// Stopped by hand: listed but not started when the daemon starts.
    pub stopped: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File_ {
    version: u32,
    agents: Vec<Saved>,
}

/// The store of one state dir.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `state_dir`.
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("agents.json")
    }

    fn lock(&self) -> Result<Flock<File>> {
        let path = self.dir.join("agents.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(format!("lock {}", path.display()), e.into()))
    }

    fn read_locked(&self) -> Result<Vec<Saved>> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::FailedPrecondition(format!(
                    "cannot read {}: {e}; fix its permissions (crew agents are not persisted \
                     until then)",
                    path.display()
                )))
            }
        };
        let file: File_ = serde_json::from_slice(&bytes).map_err(|e| {
            Error::FailedPrecondition(format!(
                "{} is corrupt ({e}); fix it or move it away — tend will not overwrite it, and \
                 crew agents are not persisted until then",
                path.display()
            ))
        })?;
        Ok(file.agents)
    }

    /// Every saved agent.
    pub fn load(&self) -> Result<Vec<Saved>> {
        let _lock = self.lock()?;
        self.read_locked()
    }

    /// Read, change and write back, under the lock.
    pub fn update(&self, change: impl FnOnce(&mut Vec<Saved>)) -> Result<()> {
        let _lock = self.lock()?;
        let mut agents = self.read_locked()?;
        change(&mut agents);
        agents.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        let text = serde_json::to_vec_pretty(&File_ { version: 1, agents })
            .map_err(|e| Error::Internal(format!("encode agents: {e}")))?;
        let path = self.path();
        let tmp = self.dir.join("agents.json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            // The rename is durable only once the directory is.
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| Error::io(format!("write {}", path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::spec::{Kind, Policy};

    fn saved(name: &str) -> Saved {
        Saved {
            spec: AgentSpec {
                name: name.into(),
                argv: vec!["sh".into()],
                env: Default::default(),
                cwd: None,
                prompt_file: None,
                rows: 24,
                cols: 80,
                kind: Kind::Crew,
                policy: Policy::default(),
                environment: String::new(),
                tags: Default::default(),
            },
            stopped: false,
        }
    }

    #[test]
    fn the_environment_round_trips_and_older_files_without_it_load_as_native() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut boxed = saved("boxed");
        boxed.spec.environment = "e-3".into();
        store.update(|a| a.push(boxed.clone())).unwrap();
        assert_eq!(store.load().unwrap(), [boxed]);

        // A file written before agents had an environment.
        let mut old: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("agents.json")).unwrap())
                .unwrap();
        old["agents"][0]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("environment");
        std::fs::write(dir.path().join("agents.json"), old.to_string()).unwrap();
        assert_eq!(store.load().unwrap()[0].spec.environment, "");
    }

    #[test]
    fn specs_round_trip_and_a_corrupt_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(store.load().unwrap().is_empty());
        store.update(|a| a.push(saved("b"))).unwrap();
        store.update(|a| a.push(saved("a"))).unwrap();
        let names: Vec<String> = store
            .load()
            .unwrap()
            .into_iter()
            .map(|s| s.spec.name)
            .collect();
        assert_eq!(names, ["a", "b"]);

        std::fs::write(dir.path().join("agents.json"), b"{not json").unwrap();
        let err = store.load().unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert!(store.update(|a| a.clear()).is_err());
        assert_eq!(
            std::fs::read(dir.path().join("agents.json")).unwrap(),
            b"{not json"
        );
    }
}
