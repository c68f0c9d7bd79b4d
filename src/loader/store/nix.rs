//! Plugins as Nix flake outputs: `nix:FLAKE` (any flake reference nix takes: `path:/abs/dir`,
//! `github:owner/repo`, …).
//!
//! The convention: version `V` of `publisher/name` is the attribute
//! `tendPlugins.<system>."<publisher>"."<name>"."<V>"` (system as nix names it, `x86_64-linux`),
//! a derivation whose output is the executable itself, or a directory with `bin/<name>`. The
//! versions are that attribute set's names (`builtins.attrNames`, evaluated without building).
//! A build is kept alive by a GC root in the state dir (`plugins/.nix-roots/<publisher>/<name>/<version>`), outside the
//! version directories, which only hold a symlink to the binary in the store.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use semver::Version;

use super::local::NIX_ROOTS;
use super::version::{versions_of, Package};
use super::{Artifact, Fetched};
use crate::error::{clip, quote, Error, Result};
use crate::runner::nix::{ended, spawn_error, with_tail};
use crate::supervisor::reaper::{Reaper, RunError};

/// How long an evaluation of the versions may take.
const EVAL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a build may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub struct NixStore {
    id: String,
    flake: String,
    reaper: Arc<Reaper>,
    roots: PathBuf,
}

/// Nix's name of this host's system.
fn system() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

impl NixStore {
    /// `nix:FLAKE`; builds are rooted under `cache_root`.
    pub fn new(
        id: &str,
        reaper: Arc<Reaper>,
        cache_root: &Path,
    ) -> std::result::Result<NixStore, String> {
        let flake = id
            .strip_prefix("nix:")
            .filter(|f| !f.is_empty())
            .ok_or_else(|| {
                format!(
                    "{} is not nix:FLAKE (e.g. nix:path:/srv/plugins)",
                    quote(id)
                )
            })?;
        Ok(NixStore {
            id: id.to_string(),
            flake: flake.to_string(),
            reaper,
            roots: cache_root.join(NIX_ROOTS),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn attr(&self, p: &Package) -> String {
        format!(
            "{}#tendPlugins.{}.\"{}\".\"{}\"",
            self.flake,
            system(),
            p.publisher,
            p.name
        )
    }

    async fn nix(&self, args: &[&str], timeout: Duration, what: &str) -> Result<Vec<u8>> {
        let mut cmd = std::process::Command::new("nix");
        cmd.args(["--extra-experimental-features", "nix-command flakes"])
            .args(args);
        let captured = match self.reaper.run(cmd, timeout, |_| {}).await {
            Ok(c) => c,
            Err(RunError::Spawn { source, .. }) => {
                return Err(match spawn_error(&source) {
                    Error::FailedPrecondition(m) => Error::Unavailable(m),
                    e => e,
                })
            }
            Err(RunError::Timeout { stderr, .. }) => {
                return Err(Error::Unavailable(with_tail(
                    format!(
                        "{what} timed out after {} s; nix said:\n",
                        timeout.as_secs()
                    ),
                    &stderr,
                )))
            }
        };
        if !captured.success() {
            return Err(Error::FailedPrecondition(with_tail(
                format!("{what} failed ({}); nix said:\n", ended(captured.ended)),
                &captured.stderr,
            )));
        }
        Ok(captured.stdout)
    }

    /// The versions the flake has of `p`; none when it has no such attribute.
    pub async fn versions(&self, p: &Package) -> Result<Vec<Version>> {
        let attr = self.attr(p);
        let what = format!("nix eval {attr}");
        match self
            .nix(
                &["eval", "--json", &attr, "--apply", "builtins.attrNames"],
                EVAL_TIMEOUT,
                &what,
            )
            .await
        {
            Ok(out) => {
                let names: Vec<String> = serde_json::from_slice(&out).map_err(|e| {
                    Error::FailedPrecondition(format!("{what} printed what tend cannot read: {e}"))
                })?;
                Ok(versions_of(names.iter().map(String::as_str)))
            }
            Err(Error::FailedPrecondition(m)) if m.contains("does not provide attribute") => {
                Ok(Vec::new())
            }
            Err(Error::FailedPrecondition(m)) => Err(Error::Unavailable(m)),
            Err(e) => Err(e),
        }
    }

    pub async fn describe(&self, _p: &Package, _v: &Version) -> Result<Artifact> {
        // Content-addressed by nix: the digest is known once built.
        Ok(Artifact {
            digest: None,
            size: None,
        })
    }

    /// Build version `v` (rooted), and link its binary into `into`.
    pub async fn fetch(&self, p: &Package, v: &Version, into: &Path) -> Result<Fetched> {
        let attr = format!("{}.\"{v}\"", self.attr(p));
        // One directory per package, so that no two packages' roots can share a name.
        let dir = self.roots.join(&p.publisher).join(&p.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let root = dir.join(v.to_string());
        // `--json` rather than `--print-out-paths`, which nix gained only in 2.9 (Debian 12
        // ships 2.8): `[{"drvPath": …, "outputs": {"out": PATH}}]`.
        let what = format!("nix build {attr}");
        let printed = self
            .nix(
                &[
                    "build",
                    "--json",
                    "--out-link",
                    root.to_str().unwrap_or_default(),
                    &attr,
                ],
                BUILD_TIMEOUT,
                &what,
            )
            .await?;
        #[derive(serde::Deserialize)]
        struct Built {
            outputs: std::collections::BTreeMap<String, PathBuf>,
        }
        let built: Vec<Built> = serde_json::from_slice(&printed).map_err(|e| {
            Error::FailedPrecondition(format!("{what} printed what tend cannot read: {e}"))
        })?;
        let out = built
            .into_iter()
            .next()
            .and_then(|b| b.outputs.get("out").cloned())
            .ok_or_else(|| Error::FailedPrecondition(format!("{what} built no `out` output")))?;
        let binary = if out.is_file() {
            out.clone()
        } else {
            out.join("bin").join(&p.name)
        };
        if !binary.is_file() {
            return Err(Error::FailedPrecondition(format!(
                "nix build {attr} made {}, which is neither an executable nor a directory with \
                 bin/{}",
                clip(&out.display().to_string()),
                p.name
            )));
        }
        std::os::unix::fs::symlink(&binary, into.join(&p.name))
            .map_err(|e| Error::io(format!("link {}", binary.display()), e))?;
        let (digest, size) = super::local::digest_of(&binary)
            .map_err(|e| Error::io(format!("read {}", binary.display()), e))?;
        Ok(Fetched {
            binary: p.name.clone(),
            digest,
            size,
        })
    }
}
