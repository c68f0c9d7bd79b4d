//! The sweep of containers whose daemon is gone.
use std::collections::HashMap;

use bollard::query_parameters::ListContainersOptionsBuilder;

use super::engine::{Engine, LABEL_ENVIRONMENT, LABEL_OWNER};
use crate::error::{Error, Result};
use crate::supervisor::records::Owner;

/// A container the sweep found whose owner is gone (or whose owner label it cannot read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    pub id: String,
    pub name: String,
    /// The `tend.owner` label as it is.
    pub owner: String,
    pub environment_id: String,
    /// Whether it was removed (never in a dry run).
    pub removed: bool,
    /// Why it was not removed, when it was meant to be; or why it was left alone.
    pub error: String,
}

/// What to do with one labelled container.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Its owner runs: not touched, not reported.
    Live,
    /// Its owner is gone: removed.
    Dead,
    /// Left alone and reported, for this reason.
    Leave(String),
}

impl Engine {
    /// Remove every container (running or not) labelled with an owner that no longer runs on
    /// this host (boot id, PID and start time: never a bare PID). Containers of a live owner
    /// and unlabelled ones are not touched; a label that does not parse is reported and left.
    /// With `dry_run`, only reports. Idempotent.
    ///
    /// Through a tcp:// engine, which other hosts may share, an owner of another boot id may be
    /// a daemon on another host: such containers are reported and left.
    pub async fn sweep(&self, dry_run: bool) -> Result<Vec<Swept>> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&HashMap::from([("label", vec![LABEL_OWNER])]))
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.error("list tend's containers", e))?;
        let local = self.host().starts_with("unix://");
        let labelled: Vec<(String, String, String, String)> = containers
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let owner = labels.get(LABEL_OWNER)?.clone();
                let environment = labels.get(LABEL_ENVIRONMENT).cloned().unwrap_or_default();
                let name = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default();
                Some((c.id.unwrap_or_default(), name, owner, environment))
            })
            .collect();
        // /proc reads: off the async workers.
        let verdicts = tokio::task::spawn_blocking(move || {
            let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|b| b.trim().to_string())
                .unwrap_or_default();
            labelled
                .into_iter()
                .map(|c| {
                    let verdict = verdict(&c.2, &boot_id, local);
                    (c, verdict)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Error::Internal(format!("sweep: {e}")))?;
        let mut swept = Vec::new();
        for ((id, name, owner, environment_id), verdict) in verdicts {
            let mut entry = Swept {
                id,
                name,
                owner,
                environment_id,
                ..Swept::default()
            };
            match verdict {
                Verdict::Live => continue,
                Verdict::Leave(why) => entry.error = why,
                Verdict::Dead if dry_run => {}
                Verdict::Dead => match self.remove_container(&entry.id).await {
                    Ok(()) => entry.removed = true,
                    Err(e) => entry.error = e.to_string(),
                },
            }
            swept.push(entry);
        }
        Ok(swept)
    }
}

fn verdict(label: &str, boot_id: &str, local: bool) -> Verdict {
    let Some(owner) = Owner::from_label(label) else {
        return Verdict::Leave(format!(
            "the {LABEL_OWNER} label is not <boot id>:<pid>:<start time>; left alone"
        ));
    };
    if owner.is_alive() {
        return Verdict::Live;
    }
    if !local && owner.boot_id != boot_id {
        return Verdict::Leave(
            "owned by a daemon of another boot or another host (the engine is reached over \
             tcp://, so it may be shared); left alone"
                .to_string(),
        );
    }
    Verdict::Dead
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owners_known_dead_are_swept() {
        let me = Owner::current().unwrap();
        let boot = me.boot_id.clone();
        assert_eq!(verdict(&me.label(), &boot, true), Verdict::Live);
        let dead = Owner {
            pid: 1,
            start_ticks: u64::MAX,
            ..me.clone()
        };
        assert_eq!(verdict(&dead.label(), &boot, true), Verdict::Dead);
        assert_eq!(verdict(&dead.label(), &boot, false), Verdict::Dead);
        let elsewhere = Owner {
            boot_id: "another-boot".into(),
            ..me.clone()
        };
        assert_eq!(verdict(&elsewhere.label(), &boot, true), Verdict::Dead);
        assert!(matches!(
            verdict(&elsewhere.label(), &boot, false),
            Verdict::Leave(_)
        ));
        assert!(matches!(verdict("garbage", &boot, true), Verdict::Leave(_)));
    }
}
