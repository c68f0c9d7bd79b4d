//! What to run, as the core sees it, and the environment and binary it resolves to.
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{clip, clip_path, quote, Error, Result};

/// A process to start. Validated for shape by the service; the core checks it against the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub tags: BTreeMap<String, String>,
    pub name: Option<String>,
    pub pty: Option<PtySize>,
    pub stdin: bool,
    /// `None`: on without a PTY, off with one.
    pub non_interactive: Option<bool>,
    pub clear_env: bool,
    /// The environment's id or name; `NATIVE` (or empty) is the host.
    pub environment: String,
    pub request_id: Option<String>,
    /// How to tell that it is ready.
    pub readiness: Option<super::readiness::Probe>,
    /// Its niceness, -20 to 19; `None` keeps the daemon's.
    pub nice: Option<i32>,
    /// Its OOM score adjustment, -1000 to 1000; `None` is the daemon's original one.
    pub oom_score_adj: Option<i32>,
    /// Limits of its cgroup.
    pub limits: ResourceLimits,
}

/// Limits written into a process's own cgroup before it is born there; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    /// `memory.max`, bytes.
    pub memory_max: Option<u64>,
    /// `pids.max`, processes (and threads) in the tree.
    pub pids_max: Option<u64>,
}

impl ResourceLimits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory_max.is_some() || self.pids_max.is_some()
    }
}

/// The id (and name) of the host's own environment, the one a spec with no environment runs in.
pub const NATIVE: &str = "native";

/// A terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtySize {
    pub rows: u16,
    pub cols: u16,
}

/// Set for commands run on behalf of tools, so nothing waits for a human (coder's agentproc).
pub const NON_INTERACTIVE_ENV: &[(&str, &str)] = &[
    ("TERM", "dumb"),
    ("NO_COLOR", "1"),
    ("PAGER", "cat"),
    ("GIT_PAGER", "cat"),
    ("GIT_EDITOR", "true"),
    ("EDITOR", "true"),
    ("VISUAL", "true"),
    ("GIT_TERMINAL_PROMPT", "0"),
];

impl Spec {
    /// Whether it asks for any resource hint: niceness, OOM score, or limits.
    pub fn has_hints(&self) -> bool {
        self.nice.is_some() || self.oom_score_adj.is_some() || self.limits.any()
    }

    /// The full environment of the child: inherited (unless cleared), then the non-interactive
    /// set when it applies, then the client's variables, which win.
    pub fn environment(&self) -> BTreeMap<String, String> {
        self.environment_from(None)
    }

    /// The same, inheriting `base` (a Nix shell's variables over the daemon's) where given
    /// instead of the daemon's environment.
    pub fn environment_from(
        &self,
        base: Option<&BTreeMap<String, String>>,
    ) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = match (self.clear_env, base) {
            (true, _) => BTreeMap::new(),
            (false, Some(base)) => base.clone(),
            (false, None) => daemon_environment(),
        };
        if self.non_interactive.unwrap_or(self.pty.is_none()) {
            for (k, v) in NON_INTERACTIVE_ENV {
                env.insert(k.to_string(), v.to_string());
            }
        } else if self.pty.is_some() {
            env.insert("TERM".into(), "xterm-256color".into());
        }
        for (k, v) in &self.env {
            env.insert(k.clone(), v.clone());
        }
        env
    }

    /// Check the working directory exists.
    pub fn check_cwd(&self) -> Result<()> {
        if let Some(cwd) = &self.cwd {
            match std::fs::metadata(cwd) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Error::invalid(
                        "spec.cwd",
                        format!("{} is not a directory", clip_path(cwd)),
                    ))
                }
                Err(_) => {
                    return Err(Error::invalid(
                        "spec.cwd",
                        format!("{} does not exist", clip_path(cwd)),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The daemon's environment as its children inherit it: the daemon's own settings (TEND_*) are
/// not the child's business.
pub fn daemon_environment() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| !k.starts_with("TEND_"))
        .collect()
}

/// Find the program the way execvp would, so a missing one is a clear `NotFound` naming where we
/// looked instead of a bare ENOENT from the child.
pub fn resolve_program(
    program: &str,
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
) -> Result<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = match cwd {
            Some(dir) if !program.starts_with('/') => dir.join(program),
            _ => PathBuf::from(program),
        };
        if executable(&path) {
            return Ok(path);
        }
        let exists = path.exists();
        let why = if exists {
            "is not an executable file"
        } else {
            "does not exist"
        };
        return Err(Error::Exec {
            message: format!("spec.argv[0]: {} {why}", clip_path(&path)),
            not_found: !exists,
        });
    }
    let path_var = env
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(Error::Exec {
        message: format!(
            "spec.argv[0]: {} not found on PATH (looked in {})",
            quote(program),
            clip(&path_var)
        ),
        not_found: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_interactive_env_applies_without_a_pty_and_yields_to_the_client() {
        let mut spec = Spec {
            argv: vec!["true".into()],
            ..Spec::default()
        };
        spec.env.insert("PAGER".into(), "less".into());
        let env = spec.environment();
        assert_eq!(env["TERM"], "dumb");
        assert_eq!(env["PAGER"], "less");
        spec.pty = Some(PtySize { rows: 24, cols: 80 });
        assert_eq!(spec.environment()["TERM"], "xterm-256color");
        assert!(!spec.environment().contains_key("NO_COLOR") || std::env::var("NO_COLOR").is_ok());
    }

    #[test]
    fn a_missing_program_names_the_path_searched() {
        let env = BTreeMap::from([("PATH".to_string(), "/nonexistent:/bin".to_string())]);
        let err = resolve_program("no-such-tend-binary", &env, None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent:/bin"), "{err}");
        assert!(resolve_program("sh", &env, None).is_ok());
    }
}
