//! The local cache: `<state dir>/plugins/<publisher>/<name>/<version>/`, each holding the
//! plugin's binary (named as the package's name) and `manifest.json` (package, version, digest,
//! size, store, when). A version directory only ever appears whole: an install fills a staging
//! directory (`plugins/.staging/…`), checks the digest, fsyncs, and renames it into place, so a
//! crash leaves at most a staging directory, which the next daemon removes.
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use semver::Version;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::version::Package;
use crate::error::{clip_path, Error, Result};

const MANIFEST: &str = "manifest.json";
const STAGING: &str = ".staging";
/// Where Nix stores' GC roots live (`nix.rs`): out of the version directories, so that a
/// rename never breaks a root.
pub const NIX_ROOTS: &str = ".nix-roots";

/// What an installed version's `manifest.json` says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub package: String,
    pub version: String,
    /// `sha256:<hex>` of the binary, as verified at install.
    pub digest: String,
    pub size: u64,
    /// The store it came from.
    pub store: String,
    pub installed_at_unix_ms: u64,
    /// The binary's path inside the version directory (for Nix, a symlink into the store).
    pub binary: String,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// An installed version.
#[derive(Debug, Clone)]
pub struct Installed {
    pub manifest: Manifest,
    pub path: PathBuf,
}

impl Cache {
    /// The cache under `state_dir`; staging directories a crashed install left are removed.
    pub fn new(state_dir: &Path) -> Cache {
        let root = state_dir.join("plugins");
        let _ = std::fs::remove_dir_all(root.join(STAGING));
        Cache { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn package_dir(&self, p: &Package) -> PathBuf {
        self.root.join(&p.publisher).join(&p.name)
    }

    /// The versions installed (whole ones: a directory without a readable manifest is not one).
    pub fn versions(&self, p: &Package) -> Vec<Version> {
        let Ok(dir) = std::fs::read_dir(self.package_dir(p)) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| Version::parse(e.file_name().to_str()?).ok())
            .filter(|v| self.get(p, v).is_some())
            .collect()
    }

    /// Version `v`, when installed and its binary is there.
    pub fn get(&self, p: &Package, v: &Version) -> Option<Installed> {
        let dir = self.package_dir(p).join(v.to_string());
        let manifest: Manifest =
            serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).ok()?).ok()?;
        let path = dir.join(&manifest.binary);
        path.exists().then_some(Installed { manifest, path })
    }

    /// A fresh staging directory, removed when dropped unless committed.
    pub fn stage(&self) -> Result<Staging> {
        let dir = self
            .root
            .join(STAGING)
            .join(format!("{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", clip_path(&dir)), e))?;
        Ok(Staging { dir: Some(dir) })
    }

    /// Move a staged version into place: its manifest written and everything fsynced first, then
    /// one rename. If another install put the version there meanwhile, that one stays.
    pub fn commit(
        &self,
        mut staging: Staging,
        p: &Package,
        manifest: Manifest,
    ) -> Result<Installed> {
        let dir = staging
            .dir
            .clone()
            .expect("a staging directory until committed");
        let io = |what: &str, path: &Path, e| Error::io(format!("{what} {}", clip_path(path)), e);
        let binary = dir.join(&manifest.binary);
        if std::fs::symlink_metadata(&binary).is_ok_and(|m| m.is_file()) {
            std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io("chmod", &binary, e))?;
            sync(&binary).map_err(|e| io("fsync", &binary, e))?;
        }
        let path = dir.join(MANIFEST);
        let mut f = std::fs::File::create(&path).map_err(|e| io("create", &path, e))?;
        f.write_all(&serde_json::to_vec_pretty(&manifest).expect("a manifest serializes"))
            .and_then(|()| f.sync_all())
            .map_err(|e| io("write", &path, e))?;
        sync(&dir).map_err(|e| io("fsync", &dir, e))?;
        let parent = self.package_dir(p);
        std::fs::create_dir_all(&parent).map_err(|e| io("create", &parent, e))?;
        let target = parent.join(&manifest.version);
        match std::fs::rename(&dir, &target) {
            Ok(()) => {
                staging.dir = None;
                sync(&parent).map_err(|e| io("fsync", &parent, e))?;
            }
            // Installed by someone else meanwhile (rename(2) will not replace a non-empty
            // directory): theirs is as good, and ours goes with `staging`.
            Err(_)
                if self
                    .get(p, &Version::parse(&manifest.version).unwrap())
                    .is_some() => {}
            Err(e) => return Err(io("rename into", &target, e)),
        }
        let v = Version::parse(&manifest.version)
            .map_err(|e| Error::Internal(format!("a manifest's version: {e}")))?;
        self.get(p, &v).ok_or_else(|| {
            Error::Internal(format!("{} vanished after its install", clip_path(&target)))
        })
    }
}

/// A staging directory; removed on drop unless committed.
pub struct Staging {
    dir: Option<PathBuf>,
}

impl Staging {
    pub fn path(&self) -> &Path {
        self.dir
            .as_deref()
            .expect("a staging directory until committed")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn sync(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// `sha256:<hex>` of a file and its size.
pub fn digest_of(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((format!("sha256:{}", hex(&h.finalize())), size))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(version: &str, digest: String, size: u64) -> Manifest {
        Manifest {
            package: "acme/kv".into(),
            version: version.into(),
            digest,
            size,
            store: "test".into(),
            installed_at_unix_ms: now_ms(),
            binary: "kv".into(),
        }
    }

    #[test]
    fn a_version_appears_only_when_committed_and_a_dropped_stage_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        let p = Package::parse("package", "acme/kv").unwrap();
        let v = Version::parse("1.2.0").unwrap();

        // An install that dies halfway (dropped, or a crash: the next Cache::new).
        let staging = cache.stage().unwrap();
        std::fs::write(staging.path().join("kv"), b"half a bin").unwrap();
        assert!(cache.versions(&p).is_empty());
        drop(staging);
        assert_eq!(
            std::fs::read_dir(cache.root().join(STAGING))
                .unwrap()
                .count(),
            0
        );
        let crashed = cache.stage().unwrap();
        std::fs::write(crashed.path().join("kv"), b"half").unwrap();
        std::mem::forget(crashed);
        let cache = Cache::new(tmp.path());
        assert!(!cache.root().join(STAGING).exists());

        let staging = cache.stage().unwrap();
        std::fs::write(staging.path().join("kv"), b"#!/bin/sh\n").unwrap();
        let (digest, size) = digest_of(&staging.path().join("kv")).unwrap();
        let installed = cache
            .commit(staging, &p, manifest("1.2.0", digest.clone(), size))
            .unwrap();
        assert_eq!(cache.versions(&p), [v]);
        assert_eq!(installed.manifest.digest, digest);
        let mode = std::fs::metadata(&installed.path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);

        // A second install of the same version keeps the first.
        let staging = cache.stage().unwrap();
        std::fs::write(staging.path().join("kv"), b"other").unwrap();
        let again = cache
            .commit(staging, &p, manifest("1.2.0", "sha256:00".into(), 5))
            .unwrap();
        assert_eq!(again.manifest.digest, digest);
        assert_eq!(
            std::fs::read_dir(cache.root().join(STAGING))
                .unwrap()
                .count(),
            0
        );
    }
}
