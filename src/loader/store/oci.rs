//! Plugins in an OCI registry, through `oci-client`.
//!
//! The layout: version `V` of `publisher/name` is the tag `V` of the repository
//! `[PREFIX/]publisher/name`, an **image index** (`application/vnd.oci.image.index.v1+json`,
//! artifact type `application/vnd.tend.plugin.v1`) with one entry per platform (`os`/
//! `architecture` as Go names them: `linux`/`amd64`). Each entry is an image manifest with the
//! same artifact type, a small JSON config (`application/vnd.tend.plugin.config.v1+json`: package,
//! version, os, architecture) and exactly one layer, the raw executable
//! (`application/vnd.tend.plugin.binary.v1`, titled with the name). An index rather than tags per
//! platform: one version is one tag, so `latest` is a semver question over the tags, and pushes
//! from several machines add their platforms to the same version.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use semver::Version;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::local::hex;
use super::version::Package;
use super::{Artifact, Fetched};
use crate::error::{clip, quote, Error, Result};

pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const ARTIFACT_TYPE: &str = "application/vnd.tend.plugin.v1";
pub const CONFIG_TYPE: &str = "application/vnd.tend.plugin.config.v1+json";
pub const BINARY_TYPE: &str = "application/vnd.tend.plugin.binary.v1";
const TITLE: &str = "org.opencontainers.image.title";
/// A manifest bigger than this is not one of ours.
const MANIFEST_MAX: usize = 1 << 20;
/// The largest plugin binary an install takes: a registry cannot fill the daemon's disk.
pub const BINARY_MAX: u64 = 4 << 30;

/// A registry as configured: `oci://HOST[:PORT][/PREFIX]`, plain HTTP with `oci+http://` (or
/// for a loopback host, which is never worth TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub host: String,
    pub prefix: String,
    pub http: bool,
}

impl Registry {
    pub fn parse(s: &str) -> std::result::Result<Registry, String> {
        let (rest, http) = if let Some(r) = s.strip_prefix("oci+http://") {
            (r, true)
        } else if let Some(r) = s.strip_prefix("oci://") {
            (r, false)
        } else {
            return Err(format!("{} is not oci://HOST[:PORT][/PREFIX]", quote(s)));
        };
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
            return Err(format!("{} names no registry host", quote(s)));
        }
        let prefix = prefix.trim_matches('/').to_string();
        Ok(Registry {
            http: http || loopback(host),
            host: host.to_string(),
            prefix,
        })
    }

    fn repository(&self, p: &Package) -> String {
        if self.prefix.is_empty() {
            format!("{}/{}", p.publisher, p.name)
        } else {
            format!("{}/{}/{}", self.prefix, p.publisher, p.name)
        }
    }

    fn tagged(&self, p: &Package, tag: &str) -> Reference {
        Reference::with_tag(self.host.clone(), self.repository(p), tag.into())
    }

    fn by_digest(&self, p: &Package, digest: &str) -> Reference {
        Reference::with_digest(self.host.clone(), self.repository(p), digest.into())
    }

    fn client(&self) -> Client {
        Client::new(ClientConfig {
            protocol: if self.http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        })
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The platform names of this host, as Go (and OCI) spell them.
pub fn platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    (std::env::consts::OS, arch)
}

/// Credentials for `host` from a docker `config.json` (`$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`): `auth` (base64 `user:password`), `username`/`password`, or
/// `registrytoken`; anonymous when there is none. Credential helpers are not run.
pub fn auth_for(host: &str) -> RegistryAuth {
    let path = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .map(|d| d.join("config.json"));
    path.and_then(|p| std::fs::read(p).ok())
        .and_then(|b| auth_from_config(&b, host))
        .unwrap_or(RegistryAuth::Anonymous)
}

fn auth_from_config(config: &[u8], host: &str) -> Option<RegistryAuth> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
        registrytoken: Option<String>,
    }
    let config: Config = serde_json::from_slice(config).ok()?;
    let entry = config.auths.iter().find_map(|(k, v)| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        (k.split('/').next() == Some(host)).then_some(v)
    })?;
    if let Some(token) = &entry.registrytoken {
        return Some(RegistryAuth::Bearer(token.clone()));
    }
    if let Some(auth) = &entry.auth {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()?;
        let (user, pass) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        return Some(RegistryAuth::Basic(user.into(), pass.into()));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Some(RegistryAuth::Basic(u.clone(), p.clone())),
        _ => None,
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<PlatformSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct PlatformSpec {
    os: String,
    architecture: String,
}

/// An image index or an image manifest, as far as this layout reads them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    manifests: Vec<Descriptor>,
}

/// A registry's error for a person, with the right code: unreachable (Unavailable), refused
/// credentials (PermissionDenied), or what it said.
fn registry_error(what: &str, e: OciDistributionError) -> Error {
    let text = clip(&e.to_string()).to_string();
    match &e {
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => Error::PermissionDenied(format!(
            "{what}: the registry refused the credentials ({text}); log in with `docker login` \
             (tend reads ~/.docker/config.json)"
        )),
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
            Error::Unavailable(format!("{what}: the registry cannot be reached: {text}"))
        }
        // The registry is there but failing (5xx), or asks to slow down: worth a retry.
        OciDistributionError::ServerError { code, .. } if *code >= 500 || *code == 429 => {
            Error::Unavailable(format!("{what}: the registry failed: {text}"))
        }
        OciDistributionError::RegistryError { envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, oci_client::errors::OciErrorCode::Toomanyrequests)) =>
        {
            Error::Unavailable(format!("{what}: the registry asks to retry later: {text}"))
        }
        // The registry answered, and what it holds (or said) is not what a package needs: a
        // retry would not help; the text says what is wrong.
        _ => Error::FailedPrecondition(format!(
            "{what}: the registry's answer is not a usable plugin package: {text}"
        )),
    }
}

/// Whether a registry error says the repository or tag is not there.
fn not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                oci_client::errors::OciErrorCode::NameUnknown
                    | oci_client::errors::OciErrorCode::ManifestUnknown
            )
        }),
        OciDistributionError::ServerError { code: 404, .. } => true,
        _ => false,
    }
}

/// An OCI registry as a store.
pub struct OciStore {
    id: String,
    registry: Registry,
    client: Client,
    auth: RegistryAuth,
}

impl OciStore {
    pub fn new(id: &str) -> std::result::Result<OciStore, String> {
        let registry = Registry::parse(id)?;
        Ok(OciStore {
            id: id.to_string(),
            client: registry.client(),
            auth: auth_for(&registry.host),
            registry,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The semver tags of the package's repository; none when it does not exist.
    pub async fn versions(&self, p: &Package) -> Result<Vec<Version>> {
        let r = self.registry.tagged(p, "latest");
        let mut tags = Vec::new();
        let mut last: Option<String> = None;
        // Paged, bounded: 10 pages of 1000 tags.
        for _ in 0..10 {
            match self
                .client
                .list_tags(&r, &self.auth, Some(1000), last.as_deref())
                .await
            {
                Ok(page) => {
                    let n = page.tags.len();
                    last = page.tags.last().cloned();
                    tags.extend(page.tags);
                    if n < 1000 {
                        break;
                    }
                }
                Err(e) if not_found(&e) => break,
                Err(e) => return Err(registry_error(&format!("{} at {}", p, self.id), e)),
            }
        }
        Ok(super::version::versions_of(tags.iter().map(String::as_str)))
    }

    /// The layer of version `v` for this host's platform.
    pub async fn describe(&self, p: &Package, v: &Version) -> Result<Artifact> {
        let what = format!("{p} {v} at {}", self.id);
        let (os, arch) = platform();
        let top = self
            .manifest(&self.registry.tagged(p, &v.to_string()), &what)
            .await?;
        let manifest = if top.manifests.is_empty() {
            top
        } else {
            let entry = top
                .manifests
                .iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_some_and(|pl| pl.os == os && pl.architecture == arch)
                })
                .ok_or_else(|| {
                    let has: Vec<String> = top
                        .manifests
                        .iter()
                        .filter_map(|m| m.platform.as_ref())
                        .map(|pl| format!("{}/{}", pl.os, pl.architecture))
                        .collect();
                    Error::NotFound(format!(
                        "{what} has no binary for {os}/{arch} (it has: {}); push one with `tend \
                         plugin push` on such a host",
                        if has.is_empty() {
                            "none".into()
                        } else {
                            has.join(", ")
                        }
                    ))
                })?;
            self.manifest(&self.registry.by_digest(p, &entry.digest), &what)
                .await?
        };
        let layers: Vec<&Descriptor> = manifest
            .layers
            .iter()
            .filter(|l| l.media_type == BINARY_TYPE)
            .collect();
        match layers.as_slice() {
            [layer] => Ok(Artifact {
                digest: Some(layer.digest.clone()),
                size: Some(layer.size),
            }),
            _ => Err(Error::FailedPrecondition(format!(
                "{what} is not a tend plugin: its manifest has {} layers of type {BINARY_TYPE} \
                 (one is expected; push with `tend plugin push`)",
                layers.len()
            ))),
        }
    }

    async fn manifest(&self, r: &Reference, what: &str) -> Result<Manifest> {
        let (body, _) = self
            .client
            .pull_manifest_raw(r, &self.auth, &[INDEX_TYPE, MANIFEST_TYPE])
            .await
            .map_err(|e| {
                if not_found(&e) {
                    Error::NotFound(format!("{what}: no such version in the registry"))
                } else {
                    registry_error(what, e)
                }
            })?;
        if body.len() > MANIFEST_MAX {
            return Err(Error::FailedPrecondition(format!(
                "{what}: a manifest of {} bytes is not a tend plugin's",
                body.len()
            )));
        }
        serde_json::from_slice(&body).map_err(|e| {
            Error::FailedPrecondition(format!("{what}: not a manifest tend can read: {e}"))
        })
    }

    /// Download the layer into `into`, reporting (done, total) as it goes. The digest is checked
    /// by the caller (and by oci-client's verifying stream, whose error at the end is taken for
    /// a mismatch when every byte came).
    pub async fn fetch(
        &self,
        p: &Package,
        v: &Version,
        artifact: &Artifact,
        into: &Path,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<Fetched> {
        let what = format!("{p} {v} at {}", self.id);
        let digest = artifact
            .digest
            .clone()
            .ok_or_else(|| Error::Internal("an OCI artifact without a digest".into()))?;
        let total = artifact.size.unwrap_or(0);
        if total > BINARY_MAX {
            return Err(Error::FailedPrecondition(format!(
                "{what}: its binary is {total} bytes, more than the {BINARY_MAX} a plugin may be"
            )));
        }
        let r = self.registry.tagged(p, &v.to_string());
        let mut blob = self
            .client
            .pull_blob_stream(&r, digest.as_str())
            .await
            .map_err(|e| registry_error(&what, e))?;
        let path = into.join(&p.name);
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        let mut hash = Sha256::new();
        let mut done = 0u64;
        progress(0, total);
        while let Some(chunk) = blob.stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                // The verifying stream's complaint comes after the last byte.
                Err(_) if total > 0 && done == total => break,
                Err(e) => {
                    return Err(Error::Unavailable(format!(
                        "{what}: the download failed after {done} of {total} bytes: {e}"
                    )))
                }
            };
            let limit = if total > 0 { total } else { BINARY_MAX };
            if done + chunk.len() as u64 > limit {
                return Err(Error::FailedPrecondition(format!(
                    "{what}: the registry sent more than the {limit} bytes the manifest names"
                )));
            }
            hash.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
            done += chunk.len() as u64;
            progress(done, total);
        }
        file.flush()
            .await
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        Ok(Fetched {
            binary: p.name.clone(),
            digest: format!("sha256:{}", hex(&hash.finalize())),
            size: done,
        })
    }
}

/// Where `tend plugin push` puts a binary: `HOST[:PORT]/[PREFIX/]publisher/name:version`
/// (the last two path parts are the package).
pub fn parse_target(s: &str) -> std::result::Result<(Registry, Package, Version), String> {
    let s = s
        .strip_prefix("oci://")
        .or_else(|| s.strip_prefix("oci+http://"))
        .unwrap_or(s);
    let (path, version) = s
        .rsplit_once(':')
        .filter(|(path, _)| path.contains('/'))
        .ok_or_else(|| {
            format!(
                "{} is not REGISTRY/PUBLISHER/NAME:VERSION (e.g. 127.0.0.1:5000/acme/kv:1.2.0)",
                quote(s)
            )
        })?;
    let version = Version::parse(version.strip_prefix('v').unwrap_or(version))
        .map_err(|e| format!("{} is not a semver version: {e}", quote(version)))?;
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() < 3 {
        return Err(format!(
            "{} is not REGISTRY/PUBLISHER/NAME:VERSION",
            quote(s)
        ));
    }
    let n = parts.len();
    let package = Package::parse("target", &format!("{}/{}", parts[n - 2], parts[n - 1]))
        .map_err(|e| e.to_string())?;
    let registry = Registry::parse(&format!("oci://{}", parts[..n - 2].join("/")))?;
    Ok((registry, package, version))
}

/// Push `binary` as version `version` of `package` for this host's platform: its layer and
/// config, its manifest by digest, then the tag's index with this platform's entry added (or
/// replaced). Returns the index's digest.
pub async fn push(
    registry: &Registry,
    package: &Package,
    version: &Version,
    binary: &[u8],
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<String> {
    let client = registry.client();
    let auth = auth_for(&registry.host);
    let what = format!("{package} {version} at {}", registry.host);
    let tag = registry.tagged(package, &version.to_string());
    client
        .auth(&tag, &auth, oci_client::RegistryOperation::Push)
        .await
        .map_err(|e| registry_error(&what, e))?;
    let (os, arch) = platform();
    let sha = |b: &[u8]| format!("sha256:{}", hex(&Sha256::digest(b)));

    let layer_digest = sha(binary);
    progress(&format!("layer {layer_digest} ({} bytes)", binary.len()));
    client
        .push_blob(&tag, binary.to_vec(), &layer_digest)
        .await
        .map_err(|e| registry_error(&what, e))?;
    let config = serde_json::to_vec(&serde_json::json!({
        "package": package.to_string(),
        "version": version.to_string(),
        "os": os,
        "architecture": arch,
    }))
    .expect("JSON");
    let config_digest = sha(&config);
    client
        .push_blob(&tag, config.clone(), &config_digest)
        .await
        .map_err(|e| registry_error(&what, e))?;

    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_TYPE.into()),
        artifact_type: Some(ARTIFACT_TYPE.into()),
        config: Some(Descriptor {
            media_type: CONFIG_TYPE.into(),
            digest: config_digest,
            size: config.len() as u64,
            platform: None,
            annotations: None,
            artifact_type: None,
        }),
        layers: vec![Descriptor {
            media_type: BINARY_TYPE.into(),
            digest: layer_digest,
            size: binary.len() as u64,
            platform: None,
            annotations: Some([(TITLE.to_string(), package.name.clone())].into()),
            artifact_type: None,
        }],
        manifests: Vec::new(),
    };
    let body = serde_json::to_vec(&manifest).expect("JSON");
    let manifest_digest = sha(&body);
    client
        .push_manifest_raw(
            &registry.by_digest(package, &manifest_digest),
            body.clone(),
            http::HeaderValue::from_static(MANIFEST_TYPE),
        )
        .await
        .map_err(|e| registry_error(&what, e))?;
    progress(&format!("manifest {manifest_digest} for {os}/{arch}"));

    // The tag's index, keeping the other platforms a previous push put there.
    let mut entries = match client.pull_manifest_raw(&tag, &auth, &[INDEX_TYPE]).await {
        Ok((b, _)) => serde_json::from_slice::<Manifest>(&b)
            .map(|m| m.manifests)
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let here = PlatformSpec {
        os: os.into(),
        architecture: arch.into(),
    };
    entries.retain(|e| e.platform.as_ref() != Some(&here));
    entries.push(Descriptor {
        media_type: MANIFEST_TYPE.into(),
        digest: manifest_digest,
        size: body.len() as u64,
        platform: Some(here),
        annotations: None,
        artifact_type: Some(ARTIFACT_TYPE.into()),
    });
    let index = Manifest {
        schema_version: 2,
        media_type: Some(INDEX_TYPE.into()),
        artifact_type: Some(ARTIFACT_TYPE.into()),
        config: None,
        layers: Vec::new(),
        manifests: entries,
    };
    let body = serde_json::to_vec(&index).expect("JSON");
    let index_digest = sha(&body);
    client
        .push_manifest_raw(&tag, body, http::HeaderValue::from_static(INDEX_TYPE))
        .await
        .map_err(|e| registry_error(&what, e))?;
    progress(&format!("index {index_digest} tagged {version}"));
    Ok(index_digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_parse_and_loopback_is_plain_http() {
        let r = Registry::parse("oci://127.0.0.1:5000").unwrap();
        assert_eq!(
            (r.host.as_str(), r.prefix.as_str(), r.http),
            ("127.0.0.1:5000", "", true)
        );
        let r = Registry::parse("oci://ghcr.io/acme/plugins/").unwrap();
        assert_eq!(
            (r.host.as_str(), r.prefix.as_str(), r.http),
            ("ghcr.io", "acme/plugins", false)
        );
        assert!(Registry::parse("oci+http://reg.lan:5000").unwrap().http);
        assert!(Registry::parse("oci://localhost:5000").unwrap().http);
        assert!(Registry::parse("oci://[::1]:5000").unwrap().http);
        assert!(Registry::parse("https://x").is_err());
        assert!(Registry::parse("oci:///x").is_err());
        let p = Package::parse("p", "acme/kv").unwrap();
        let r = Registry::parse("oci://ghcr.io/org").unwrap();
        assert_eq!(r.repository(&p), "org/acme/kv");
    }

    #[test]
    fn push_targets_name_registry_package_and_version() {
        let (r, p, v) = parse_target("127.0.0.1:5000/acme/kv:1.2.0").unwrap();
        assert_eq!(
            (r.host.as_str(), p.to_string(), v.to_string()),
            ("127.0.0.1:5000", "acme/kv".into(), "1.2.0".into())
        );
        let (r, p, _) = parse_target("ghcr.io/org/acme/kv:v2.0.0-rc.1").unwrap();
        assert_eq!(
            (r.host.as_str(), r.prefix.as_str(), p.to_string()),
            ("ghcr.io", "org", "acme/kv".into())
        );
        for bad in [
            "acme/kv:1.0.0",
            "127.0.0.1:5000/acme/kv",
            "127.0.0.1:5000/acme/kv:latest",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_come_from_a_docker_config() {
        let config = br#"{"auths":{"https://reg.lan:5000/v1/":{"auth":"dXNlcjpwYXNz"},"tok.io":{"registrytoken":"t0k"}}}"#;
        match auth_from_config(config, "reg.lan:5000") {
            Some(RegistryAuth::Basic(u, p)) => {
                assert_eq!((u.as_str(), p.as_str()), ("user", "pass"))
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(auth_from_config(config, "tok.io"), Some(RegistryAuth::Bearer(t)) if t == "t0k")
        );
        assert!(auth_from_config(config, "other.io").is_none());
    }
}
