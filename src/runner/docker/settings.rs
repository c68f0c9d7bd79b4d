//! A Docker environment's settings as plain Rust, their validation, and image references.
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::error::{clip_path, quote, Error, Result};

/// How a Docker environment's container is made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerSettings {
    /// The image, as `docker run` takes it: `busybox`, `ghcr.io/org/tool:1.2`, `name@sha256:…`.
    pub image: String,
    /// A local image tarball to load when the image is not present (`docker save` output, or a
    /// root filesystem as `docker import` takes it); works offline.
    pub image_tarball: Option<PathBuf>,
    pub mounts: Vec<Mount>,
    pub ports: Vec<PortMapping>,
    /// Variables of the container, over the image's.
    pub env: BTreeMap<String, String>,
    /// The container's working directory (the image's when unset).
    pub workdir: Option<String>,
    /// The user processes run as (`name`, `uid`, `uid:gid`); the image's when unset.
    pub user: Option<String>,
}

/// A host directory or file bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// The host address to bind; empty for all.
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

impl DockerSettings {
    /// Check the settings' shape, and that the host paths of mounts exist.
    pub fn validate(&self) -> Result<()> {
        let image = ImageRef::parse(&self.image)?;
        if let Some(tarball) = &self.image_tarball {
            if image.digest.is_some() {
                return Err(Error::invalid(
                    "docker.image",
                    format!(
                        "{} names a digest, which an image loaded from docker.image_tarball \
                         cannot be tagged with; name it by a tag",
                        quote(&self.image)
                    ),
                ));
            }
            if !tarball.is_absolute() {
                return Err(Error::invalid(
                    "docker.image_tarball",
                    format!("{} must be an absolute path", clip_path(tarball)),
                ));
            }
            match std::fs::metadata(tarball) {
                Ok(m) if m.is_file() => {}
                Ok(_) => {
                    return Err(Error::invalid(
                        "docker.image_tarball",
                        format!("{} is not a file", clip_path(tarball)),
                    ))
                }
                Err(e) => {
                    return Err(Error::invalid(
                        "docker.image_tarball",
                        format!("{}: {e}", clip_path(tarball)),
                    ))
                }
            }
        }
        for (i, m) in self.mounts.iter().enumerate() {
            let field = |f: &str| format!("docker.mounts[{i}].{f}");
            if !m.host_path.is_absolute() {
                return Err(Error::invalid(
                    field("host_path"),
                    format!("{} must be an absolute path", clip_path(&m.host_path)),
                ));
            }
            if let Err(e) = std::fs::metadata(&m.host_path) {
                return Err(Error::invalid(
                    field("host_path"),
                    format!("{}: {e}", clip_path(&m.host_path)),
                ));
            }
            if !m.container_path.starts_with('/') {
                return Err(Error::invalid(
                    field("container_path"),
                    format!("{} must be an absolute path", quote(&m.container_path)),
                ));
            }
            if m.container_path.trim_end_matches('/').is_empty() {
                return Err(Error::invalid(
                    field("container_path"),
                    "cannot be the container's root",
                ));
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            let field = |f: &str| format!("docker.ports[{i}].{f}");
            if p.host_port == 0 {
                return Err(Error::invalid(field("host_port"), "must be 1..=65535"));
            }
            if p.container_port == 0 {
                return Err(Error::invalid(field("container_port"), "must be 1..=65535"));
            }
            if p.protocol != "tcp" && p.protocol != "udp" {
                return Err(Error::invalid(
                    field("protocol"),
                    format!("{} must be tcp or udp", quote(&p.protocol)),
                ));
            }
            if !p.host_ip.is_empty() && p.host_ip.parse::<IpAddr>().is_err() {
                return Err(Error::invalid(
                    field("host_ip"),
                    format!("{} is not an IP address", quote(&p.host_ip)),
                ));
            }
        }
        for name in self.env.keys() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(Error::invalid(
                    "docker.env",
                    format!("{} is not a variable name", quote(name)),
                ));
            }
        }
        if let Some(dir) = &self.workdir {
            if !dir.starts_with('/') {
                return Err(Error::invalid(
                    "docker.workdir",
                    format!("{} must be an absolute path", quote(dir)),
                ));
            }
        }
        if let Some(user) = &self.user {
            if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c == '\0') {
                return Err(Error::invalid(
                    "docker.user",
                    format!("{} is not a user (name, uid or uid:gid)", quote(user)),
                ));
            }
        }
        Ok(())
    }
}

/// An image reference split as the engine's API takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ImageRef<'a> {
    /// `[registry/]path`.
    pub repo: &'a str,
    pub tag: Option<&'a str>,
    /// `algorithm:hex`.
    pub digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    /// Parse `reference` by Docker's grammar (distribution/reference): `[domain/]path[:tag][@digest]`.
    pub fn parse(reference: &'a str) -> Result<ImageRef<'a>> {
        let bad = |why: &str| {
            Error::invalid(
                "docker.image",
                format!("{} is not an image reference: {why}", quote(reference)),
            )
        };
        if reference.is_empty() {
            return Err(Error::invalid("docker.image", "is required"));
        }
        let (name, digest) = match reference.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (reference, None),
        };
        if let Some(d) = digest {
            let (alg, hex) = d
                .split_once(':')
                .ok_or_else(|| bad("a digest is algorithm:hex"))?;
            let alg_ok = alg.starts_with(|c: char| c.is_ascii_alphabetic())
                && alg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_+.".contains(c));
            if !alg_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(
                    "a digest is algorithm:hex, e.g. sha256:<64 hex digits>",
                ));
            }
        }
        // A tag is after the last ':' that follows the last '/' (a registry's port comes before).
        let slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match name[slash..].rfind(':') {
            Some(i) => (&name[..slash + i], Some(&name[slash + i + 1..])),
            None => (name, None),
        };
        if let Some(t) = tag {
            let ok = t.len() <= 128
                && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(bad(
                    "a tag is up to 128 of [A-Za-z0-9_.-], not starting with . or -",
                ));
            }
        }
        if repo.is_empty() || repo.len() > 255 {
            return Err(bad("the name must be 1 to 255 characters"));
        }
        let mut parts: Vec<&str> = repo.split('/').collect();
        // The first part is a registry when it looks like a host: a dot, a port, or localhost.
        if parts.len() > 1
            && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
        {
            let host = parts.remove(0);
            let (domain, port) = match host.split_once(':') {
                Some((d, p)) => (d, Some(p)),
                None => (host, None),
            };
            let domain_ok = domain.split('.').all(|c| {
                !c.is_empty()
                    && !c.starts_with('-')
                    && !c.ends_with('-')
                    && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
            });
            let port_ok =
                port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if !domain_ok || !port_ok {
                return Err(bad("the registry is not host[:port]"));
            }
        }
        for part in parts {
            if !path_component_ok(part) {
                return Err(bad(
                    "each part of the name is lowercase letters and digits, separated by \
                     '.', '_', '__' or dashes",
                ));
            }
        }
        Ok(ImageRef { repo, tag, digest })
    }

    /// The reference to pull: with the tag (`latest` when none) or the digest, since the API
    /// pulls every tag of a repository given without one.
    pub fn pull_tag(&self) -> String {
        match (self.digest, self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        }
    }
}

/// `[a-z0-9]+` separated by `.`, `_`, `__` or runs of `-`.
fn path_component_ok(part: &str) -> bool {
    let b = part.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A container or image name part made from an id: Docker allows `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub(super) fn name_part(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        s
    } else {
        format!("x{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_parse_as_docker_does() {
        let ok = [
            ("busybox", "busybox", None, None),
            (
                "tend-test/busybox:latest",
                "tend-test/busybox",
                Some("latest"),
                None,
            ),
            (
                "localhost:5000/a/b:v1.2",
                "localhost:5000/a/b",
                Some("v1.2"),
                None,
            ),
            ("ghcr.io/org/tool", "ghcr.io/org/tool", None, None),
            ("my_image__x.y-z", "my_image__x.y-z", None, None),
        ];
        for (s, repo, tag, digest) in ok {
            let r = ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!((r.repo, r.tag, r.digest), (repo, tag, digest), "{s}");
        }
        let d = format!("alpine@sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&d).unwrap();
        assert_eq!(r.repo, "alpine");
        assert_eq!(r.pull_tag(), format!("sha256:{}", "a".repeat(64)));
        assert_eq!(ImageRef::parse("busybox").unwrap().pull_tag(), "latest");
        for bad in [
            "",
            "Busybox",
            "a b",
            "x:",
            "x:-bad",
            "x@sha256:12",
            "-x",
            "x/",
            "a..b",
            "host:port/x",
            "x@",
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("docker.image: "),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn validation_names_the_field() {
        let base = DockerSettings {
            image: "busybox".into(),
            ..DockerSettings::default()
        };
        base.validate().unwrap();
        let mount = |host: &str, container: &str| Mount {
            host_path: host.into(),
            container_path: container.into(),
            read_only: false,
        };
        let port = |host_port, container_port, protocol: &str| PortMapping {
            host_ip: String::new(),
            host_port,
            container_port,
            protocol: protocol.into(),
        };
        let cases: Vec<(DockerSettings, &str)> = vec![
            (
                DockerSettings {
                    image: String::new(),
                    ..base.clone()
                },
                "docker.image: is required",
            ),
            (
                DockerSettings {
                    mounts: vec![mount("/tmp", "/a"), mount("relative", "/b")],
                    ..base.clone()
                },
                "docker.mounts[1].host_path: ",
            ),
            (
                DockerSettings {
                    mounts: vec![mount("/no/such/tend/dir", "/b")],
                    ..base.clone()
                },
                "docker.mounts[0].host_path: /no/such/tend/dir: ",
            ),
            (
                DockerSettings {
                    mounts: vec![mount("/tmp", "b")],
                    ..base.clone()
                },
                "docker.mounts[0].container_path: ",
            ),
            (
                DockerSettings {
                    ports: vec![port(0, 80, "tcp")],
                    ..base.clone()
                },
                "docker.ports[0].host_port: ",
            ),
            (
                DockerSettings {
                    ports: vec![port(8080, 0, "tcp")],
                    ..base.clone()
                },
                "docker.ports[0].container_port: ",
            ),
            (
                DockerSettings {
                    ports: vec![port(8080, 80, "tcp"), port(53, 53, "sctp")],
                    ..base.clone()
                },
                "docker.ports[1].protocol: ",
            ),
            (
                DockerSettings {
                    image_tarball: Some("/no/such/image.tar".into()),
                    ..base.clone()
                },
                "docker.image_tarball: ",
            ),
            (
                DockerSettings {
                    workdir: Some("work".into()),
                    ..base.clone()
                },
                "docker.workdir: ",
            ),
            (
                DockerSettings {
                    env: BTreeMap::from([("A=B".to_string(), "c".to_string())]),
                    ..base.clone()
                },
                "docker.env: ",
            ),
        ];
        for (settings, want) in cases {
            let err = settings.validate().unwrap_err();
            assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
            assert!(err.to_string().starts_with(want), "{err} (want {want})");
        }
    }

    #[test]
    fn names_made_from_ids_are_docker_names() {
        assert_eq!(name_part("env-1"), "env-1");
        assert_eq!(name_part("a/b c"), "a-b-c");
        assert_eq!(name_part("_x"), "x_x");
    }
}
