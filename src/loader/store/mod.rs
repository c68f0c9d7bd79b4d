//! Plugin stores: where a plugin is found by package and version, and how it is installed into
//! the local cache.
//!
//! - `version`: packages (`publisher/name`) and what a request wants (exact, range, latest);
//! - `local`: the cache under the state dir, and its atomic installs;
//! - `oci`: OCI registries (the layout, pulls, `tend plugin push`);
//! - `nix`: Nix flake outputs (the attribute convention).
//!
//! The daemon's stores are an ordered list (`--plugin-store`, default `local`). Resolve asks
//! them all at once and takes the highest matching version; on a tie the first store in order
//! wins, so an installed version beats a download.
pub mod local;
pub mod nix;
pub mod oci;
pub mod version;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use semver::Version;

use self::local::{now_ms, Cache, Manifest};
use self::nix::NixStore;
use self::oci::OciStore;
pub use self::version::{Package, Want};
use crate::error::{Error, Result};
use crate::supervisor::reaper::Reaper;

/// At most this many installs download at once; more wait their turn.
const CONCURRENT_INSTALLS: usize = 4;

/// What a store says of a version before fetching it.
#[derive(Debug, Clone, Default)]
pub struct Artifact {
    /// `sha256:<hex>` of the binary, when the store knows it beforehand.
    pub digest: Option<String>,
    pub size: Option<u64>,
}

/// A fetched binary in a staging directory.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its file name in the staging directory.
    pub binary: String,
    /// `sha256:<hex>` of what was fetched.
    pub digest: String,
    pub size: u64,
}

/// One store.
enum Store {
    Local,
    Oci(OciStore),
    Nix(NixStore),
}

impl Store {
    fn id(&self) -> &str {
        match self {
            Store::Local => "local",
            Store::Oci(s) => s.id(),
            Store::Nix(s) => s.id(),
        }
    }
}

/// A version found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub package: Package,
    pub version: Version,
    /// The store's id, as configured.
    pub store: String,
    /// `sha256:<hex>`; empty when the store knows it only once fetched (Nix).
    pub digest: String,
    pub size: Option<u64>,
    /// The binary, when installed.
    pub path: Option<PathBuf>,
}

/// Where an install is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Resolve,
    Download,
    Verify,
    Done,
}

/// One progress report of an install.
#[derive(Debug, Clone)]
pub struct Progress {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
    pub resolved: Option<Resolved>,
    pub message: String,
}

/// The daemon's stores, in order, and its cache.
pub struct Stores {
    cache: Cache,
    stores: Vec<Store>,
    installs: tokio::sync::Semaphore,
}

impl Stores {
    /// Stores from their ids, in order: `local`, `oci://HOST[:PORT][/PREFIX]` (or
    /// `oci+http://…`), `nix:FLAKE`. `Err` names the one that does not parse.
    pub fn new(
        ids: &[String],
        state_dir: &Path,
        reaper: Arc<Reaper>,
    ) -> std::result::Result<Stores, String> {
        let cache = Cache::new(state_dir);
        let mut stores = Vec::new();
        for id in ids {
            let store = if id == "local" {
                Store::Local
            } else if id.starts_with("oci://") || id.starts_with("oci+http://") {
                Store::Oci(OciStore::new(id)?)
            } else if id.starts_with("nix:") {
                Store::Nix(NixStore::new(id, reaper.clone(), cache.root())?)
            } else {
                return Err(format!(
                    "{} is not a plugin store: use local, oci://HOST[:PORT][/PREFIX], \
                     oci+http://HOST[:PORT][/PREFIX] or nix:FLAKE",
                    crate::error::quote(id)
                ));
            };
            if stores.iter().any(|s: &Store| s.id() == store.id()) {
                return Err(format!("plugin store {id} is given twice"));
            }
            stores.push(store);
        }
        if stores.is_empty() {
            stores.push(Store::Local);
        }
        Ok(Stores {
            cache,
            stores,
            installs: tokio::sync::Semaphore::new(CONCURRENT_INSTALLS),
        })
    }

    pub fn ids(&self) -> Vec<&str> {
        self.stores.iter().map(Store::id).collect()
    }

    /// The highest version of `p` that `want` accepts, across the stores.
    pub async fn resolve(&self, p: &Package, want: &Want) -> Result<Resolved> {
        let answers = futures_util::future::join_all(self.stores.iter().map(|s| async move {
            match s {
                Store::Local => Ok(self.cache.versions(p)),
                Store::Oci(o) => o.versions(p).await,
                Store::Nix(n) => n.versions(p).await,
            }
        }))
        .await;
        let mut best: Option<(Version, usize)> = None;
        let mut seen = Vec::new();
        let mut failed = Vec::new();
        for (i, answer) in answers.into_iter().enumerate() {
            let id = self.stores[i].id();
            match answer {
                Ok(mut versions) => {
                    versions.sort();
                    if let Some(v) = want.best(&versions) {
                        // Strictly higher only: on a tie the earlier store stays.
                        if best.as_ref().is_none_or(|(b, _)| v > b) {
                            best = Some((v.clone(), i));
                        }
                    }
                    let listed: Vec<String> = versions.iter().map(Version::to_string).collect();
                    seen.push(format!(
                        "{id}: {}",
                        if listed.is_empty() {
                            "none".into()
                        } else {
                            listed.join(", ")
                        }
                    ));
                }
                Err(e) => failed.push(format!("{id}: {e}")),
            }
        }
        let Some((version, i)) = best else {
            // A store that could not be asked may have it: that is the answer, not NotFound.
            if !failed.is_empty() {
                let asked = if seen.is_empty() {
                    String::new()
                } else {
                    format!(" (the others have {})", seen.join("; "))
                };
                return Err(Error::Unavailable(format!(
                    "no version of {p} matching {want} was found, and a plugin store could not \
                     be asked: {}{asked}",
                    failed.join("; ")
                )));
            }
            return Err(Error::NotFound(format!(
                "no version of {p} matches {want}; the stores have {}",
                seen.join("; ")
            )));
        };
        let store = &self.stores[i];
        let (digest, size, path) = match store {
            Store::Local => {
                let installed = self.cache.get(p, &version).ok_or_else(|| {
                    Error::NotFound(format!("{p} {version} left the local cache meanwhile"))
                })?;
                (
                    installed.manifest.digest,
                    Some(installed.manifest.size),
                    Some(installed.path),
                )
            }
            Store::Oci(o) => {
                let a = o.describe(p, &version).await?;
                (a.digest.unwrap_or_default(), a.size, None)
            }
            Store::Nix(n) => {
                let a = n.describe(p, &version).await?;
                (a.digest.unwrap_or_default(), a.size, None)
            }
        };
        // A version installed from another store is as good as that store's (the cache
        // checked it against the digest at install).
        let path = path.or_else(|| {
            self.cache
                .get(p, &version)
                .filter(|i| digest.is_empty() || i.manifest.digest == digest)
                .map(|i| i.path)
        });
        Ok(Resolved {
            package: p.clone(),
            version,
            store: store.id().to_string(),
            digest,
            size,
            path,
        })
    }

    /// Resolve, then install into the local cache unless there already: `progress` gets each
    /// step. The result has its `path`.
    pub async fn install(
        &self,
        p: &Package,
        want: &Want,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Resolved> {
        let report = |phase, done, total, resolved: Option<&Resolved>, message: String| {
            progress(Progress {
                phase,
                done,
                total,
                resolved: resolved.cloned(),
                message,
            })
        };
        report(
            Phase::Resolve,
            0,
            0,
            None,
            format!("resolving {p} {want} in {}", self.ids().join(", ")),
        );
        let mut resolved = self.resolve(p, want).await?;
        if resolved.path.is_some() {
            report(
                Phase::Done,
                0,
                0,
                Some(&resolved),
                format!("{p} {} is installed", resolved.version),
            );
            return Ok(resolved);
        }
        report(
            Phase::Resolve,
            0,
            0,
            Some(&resolved),
            format!("{p} {} from {}", resolved.version, resolved.store),
        );
        let _turn = self
            .installs
            .acquire()
            .await
            .map_err(|_| Error::Unavailable("the daemon is shutting down".into()))?;
        let staging = self.cache.stage()?;
        let v = resolved.version.clone();
        let total = resolved.size.unwrap_or(0);
        let fetched = match self.stores.iter().find(|s| s.id() == resolved.store) {
            Some(Store::Oci(o)) => {
                let artifact = Artifact {
                    digest: Some(resolved.digest.clone()),
                    size: resolved.size,
                };
                let r = &resolved;
                let on_bytes = move |done: u64, total: u64| {
                    report(Phase::Download, done, total, Some(r), String::new())
                };
                o.fetch(p, &v, &artifact, staging.path(), &on_bytes).await?
            }
            Some(Store::Nix(n)) => {
                report(
                    Phase::Download,
                    0,
                    total,
                    Some(&resolved),
                    format!("nix build of {p} {v}"),
                );
                n.fetch(p, &v, staging.path()).await?
            }
            _ => {
                return Err(Error::Internal(format!(
                    "{p} {v} resolved to {}, which installs nothing",
                    resolved.store
                )))
            }
        };
        report(
            Phase::Verify,
            fetched.size,
            total,
            Some(&resolved),
            format!("checking {}", fetched.digest),
        );
        if !resolved.digest.is_empty() && fetched.digest != resolved.digest {
            return Err(Error::FailedPrecondition(format!(
                "{p} {v} from {}: digest mismatch: the registry names {}, the download is {} \
                 ({} bytes); nothing was installed",
                resolved.store, resolved.digest, fetched.digest, fetched.size
            )));
        }
        if resolved.size.is_some_and(|s| s != fetched.size) {
            return Err(Error::FailedPrecondition(format!(
                "{p} {v} from {}: {} bytes came, the registry names {}; nothing was installed",
                resolved.store,
                fetched.size,
                resolved.size.unwrap_or(0)
            )));
        }
        let manifest = Manifest {
            package: p.to_string(),
            version: v.to_string(),
            digest: fetched.digest.clone(),
            size: fetched.size,
            store: resolved.store.clone(),
            installed_at_unix_ms: now_ms(),
            binary: fetched.binary.clone(),
        };
        let cache = self.cache.clone();
        let package = p.clone();
        let installed =
            tokio::task::spawn_blocking(move || cache.commit(staging, &package, manifest))
                .await
                .map_err(|e| Error::Internal(format!("install: {e}")))??;
        resolved.digest = installed.manifest.digest.clone();
        resolved.size = Some(installed.manifest.size);
        resolved.path = Some(installed.path);
        report(
            Phase::Done,
            fetched.size,
            total,
            Some(&resolved),
            format!("installed {p} {v}"),
        );
        Ok(resolved)
    }
}
