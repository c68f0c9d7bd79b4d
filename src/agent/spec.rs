//! What an agent is: its spec, its restart policy and the backoff that follows from it.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{quote, Error, Result};
use crate::supervisor::spec::PtySize;

/// Crew agents restart; task agents run once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Crew,
    Task,
}

/// How a crew agent restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub stable_after_ms: u64,
    pub start_limit: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            initial_backoff_ms: 1000,
            max_backoff_ms: 60_000,
            stable_after_ms: 60_000,
            start_limit: 5,
        }
    }
}

impl Policy {
    /// The wait before restart number `attempt` (1-based): doubling from the initial backoff,
    /// capped, plus up to a quarter of it as jitter so that agents that died together do not
    /// restart together. `unit` in [0, 1) picks the jitter.
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let base = self
            .initial_backoff_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(32))
            .min(self.max_backoff_ms);
        let jitter = (base as f64 * 0.25 * unit.clamp(0.0, 1.0)) as u64;
        Duration::from_millis(base + jitter)
    }
}

/// An agent as spawned (and, for crew agents, as persisted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub name: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub prompt_file: Option<PathBuf>,
    pub rows: u16,
    pub cols: u16,
    pub kind: Kind,
    pub policy: Policy,
    /// The environment its runs start in, by id or name; empty is the host ("native"). Specs
    /// persisted before environments existed have none.
    #[serde(default)]
    pub environment: String,
    /// Tags its runs carry besides `tend.agent` (set by the daemon: `tend.plugin.owner` for an
    /// agent a plugin spawned, so that it goes when the plugin is unloaded).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl AgentSpec {
    /// The PTY size.
    pub fn size(&self) -> PtySize {
        PtySize {
            rows: self.rows,
            cols: self.cols,
        }
    }
}

/// Names: 1 to 64 of `[A-Za-z0-9._-]`, starting with a letter or digit.
pub fn check_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(field, "is required (the agent's name)"));
    }
    if name.len() > 64 {
        return Err(Error::invalid(
            field,
            format!("is {} characters; at most 64", name.len()),
        ));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.chars().all(ok_char) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(Error::invalid(
            field,
            format!(
                "{} must be letters, digits, '.', '_' or '-', starting with a letter or digit",
                quote(name)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_up_to_a_quarter() {
        let p = Policy {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            stable_after_ms: 0,
            start_limit: 0,
        };
        let ms = |a, u| p.backoff(a, u).as_millis() as u64;
        assert_eq!(
            [ms(1, 0.0), ms(2, 0.0), ms(3, 0.0), ms(4, 0.0)],
            [100, 200, 400, 800]
        );
        assert_eq!(ms(5, 0.0), 1000);
        assert_eq!(ms(60, 0.0), 1000);
        assert_eq!(ms(1, 0.99), 124);
        assert_eq!(ms(5, 0.99), 1247);
    }

    #[test]
    fn names_are_checked() {
        for good in ["a", "crew-1", "Bob.v2_x", &"x".repeat(64)] {
            check_name("name", good).unwrap();
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "ä", &"x".repeat(65)] {
            let e = check_name("spec.name", bad).unwrap_err();
            assert!(e.to_string().starts_with("spec.name:"), "{e}");
        }
    }
}
