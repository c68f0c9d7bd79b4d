//! RunnerService messages to and from the runner's types, with the checks of every field.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::pb;
use crate::runner::caps::Capabilities;
use crate::runner::docker::{DockerSettings, Mount, PortMapping};
use crate::runner::progress::Progress;
use crate::runner::registry::{Definition, Info, Kind, NixSettings, State};

/// Longest environment name, in bytes.
const MAX_NAME: usize = 128;
/// Most mounts, ports and variables of one environment.
const MAX_ITEMS: usize = 256;
/// Longest grace a stop may ask for.
const MAX_GRACE_MS: u32 = 3_600_000;

/// Check an environment id or name field.
pub fn id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(
            field,
            "is required (an environment id or name)",
        ));
    }
    if id.len() > MAX_NAME {
        return Err(Error::invalid(
            field,
            format!("is longer than {MAX_NAME} bytes"),
        ));
    }
    Ok(())
}

/// A grace period in milliseconds.
pub fn grace(field: &str, ms: Option<u32>) -> Result<Option<Duration>> {
    match ms {
        Some(ms) if ms > MAX_GRACE_MS => Err(Error::invalid(
            field,
            format!("is {ms}; at most {MAX_GRACE_MS} (an hour)"),
        )),
        Some(ms) => Ok(Some(Duration::from_millis(ms.into()))),
        None => Ok(None),
    }
}

fn kind(field: &str, raw: i32) -> Result<Kind> {
    match pb::EnvironmentKind::try_from(raw) {
        Ok(pb::EnvironmentKind::Native) => Ok(Kind::Native),
        Ok(pb::EnvironmentKind::Docker) => Ok(Kind::Docker),
        Ok(pb::EnvironmentKind::Nix) => Ok(Kind::Nix),
        Ok(pb::EnvironmentKind::Auto) => Ok(Kind::Auto),
        Ok(pb::EnvironmentKind::Unspecified) => Err(Error::invalid(
            field,
            "is required: ENVIRONMENT_KIND_NATIVE, _DOCKER, _NIX or _AUTO",
        )),
        Err(_) => Err(Error::invalid(
            field,
            format!("{raw} is not an EnvironmentKind"),
        )),
    }
}

fn kind_to_pb(k: Kind) -> pb::EnvironmentKind {
    match k {
        Kind::Native => pb::EnvironmentKind::Native,
        Kind::Docker => pb::EnvironmentKind::Docker,
        Kind::Nix => pb::EnvironmentKind::Nix,
        Kind::Auto => pb::EnvironmentKind::Auto,
    }
}

fn state_to_pb(s: State) -> pb::EnvironmentState {
    match s {
        State::Created => pb::EnvironmentState::Created,
        State::Initializing => pb::EnvironmentState::Initializing,
        State::Ready => pb::EnvironmentState::Ready,
        State::Stopped => pb::EnvironmentState::Stopped,
        State::Failed => pb::EnvironmentState::Failed,
    }
}

fn no_nul(field: &str, s: &str) -> Result<()> {
    if s.contains('\0') {
        return Err(Error::invalid(field, "must not contain NUL bytes"));
    }
    Ok(())
}

fn port(field: &str, p: u32) -> Result<u16> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::invalid(field, format!("{p} is not a port (1-65535)")))
}

fn docker(d: pb::DockerSettings) -> Result<DockerSettings> {
    for (name, n) in [
        ("docker.mounts", d.mounts.len()),
        ("docker.ports", d.ports.len()),
        ("docker.env", d.env.len()),
    ] {
        if n > MAX_ITEMS {
            return Err(Error::invalid(
                name,
                format!("has {n} entries; at most {MAX_ITEMS}"),
            ));
        }
    }
    no_nul("docker.image", &d.image)?;
    no_nul("docker.image_tarball", &d.image_tarball)?;
    no_nul("docker.workdir", &d.workdir)?;
    no_nul("docker.user", &d.user)?;
    let mut mounts = Vec::new();
    for (i, m) in d.mounts.into_iter().enumerate() {
        no_nul(&format!("docker.mounts[{i}].host_path"), &m.host_path)?;
        no_nul(
            &format!("docker.mounts[{i}].container_path"),
            &m.container_path,
        )?;
        mounts.push(Mount {
            host_path: PathBuf::from(m.host_path),
            container_path: m.container_path,
            read_only: m.read_only,
        });
    }
    let mut ports = Vec::new();
    for (i, p) in d.ports.into_iter().enumerate() {
        no_nul(&format!("docker.ports[{i}].host_ip"), &p.host_ip)?;
        ports.push(PortMapping {
            host_ip: p.host_ip,
            host_port: port(&format!("docker.ports[{i}].host_port"), p.host_port)?,
            container_port: port(
                &format!("docker.ports[{i}].container_port"),
                p.container_port,
            )?,
            protocol: if p.protocol.is_empty() {
                "tcp".into()
            } else {
                p.protocol
            },
        });
    }
    let mut env = BTreeMap::new();
    for (k, v) in d.env {
        let field = format!("docker.env[{}]", crate::error::quote(&k));
        if k.is_empty() || k.contains('=') {
            return Err(Error::invalid(
                field,
                "names must be non-empty and hold no '='",
            ));
        }
        no_nul(&field, &k)?;
        no_nul(&field, &v)?;
        env.insert(k, v);
    }
    let opt = |s: String| (!s.is_empty()).then_some(s);
    Ok(DockerSettings {
        image: d.image,
        image_tarball: opt(d.image_tarball).map(PathBuf::from),
        mounts,
        ports,
        env,
        workdir: opt(d.workdir),
        user: opt(d.user),
    })
}

fn nix(n: pb::NixSettings) -> Result<NixSettings> {
    no_nul("nix.flake_dir", &n.flake_dir)?;
    no_nul("nix.dev_shell", &n.dev_shell)?;
    Ok(NixSettings {
        flake_dir: PathBuf::from(n.flake_dir),
        dev_shell: if n.dev_shell.is_empty() {
            "default".into()
        } else {
            n.dev_shell
        },
    })
}

/// A definition from CreateEnvironment.
pub fn definition(r: pb::CreateEnvironmentRequest) -> Result<Definition> {
    let name = if r.name.is_empty() {
        None
    } else {
        crate::agent::spec::check_name("name", &r.name)?;
        if r.name.starts_with("e-") {
            return Err(Error::invalid(
                "name",
                "must not start with \"e-\", the prefix of environment ids",
            ));
        }
        Some(r.name)
    };
    Ok(Definition {
        name,
        kind: kind("kind", r.kind)?,
        docker: r.docker.map(docker).transpose()?,
        nix: r.nix.map(nix).transpose()?,
    })
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn docker_to_pb(d: DockerSettings) -> pb::DockerSettings {
    pb::DockerSettings {
        image: d.image,
        image_tarball: d
            .image_tarball
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        mounts: d
            .mounts
            .into_iter()
            .map(|m| pb::Mount {
                host_path: m.host_path.display().to_string(),
                container_path: m.container_path,
                read_only: m.read_only,
            })
            .collect(),
        ports: d
            .ports
            .into_iter()
            .map(|p| pb::PortMapping {
                host_ip: p.host_ip,
                host_port: p.host_port.into(),
                container_port: p.container_port.into(),
                protocol: p.protocol,
            })
            .collect(),
        env: d.env.into_iter().collect(),
        workdir: d.workdir.unwrap_or_default(),
        user: d.user.unwrap_or_default(),
    }
}

/// An environment as the API shows it.
pub fn info(i: Info) -> pb::Environment {
    pb::Environment {
        id: i.id,
        name: i.name.unwrap_or_default(),
        kind: kind_to_pb(i.kind).into(),
        resolved_kind: kind_to_pb(i.resolved).into(),
        kind_reason: i.reason,
        state: state_to_pb(i.state).into(),
        error: i.error,
        docker: i.docker.map(docker_to_pb),
        nix: i.nix.map(|n| pb::NixSettings {
            flake_dir: n.flake_dir.display().to_string(),
            dev_shell: n.dev_shell,
        }),
        container_id: i.container.unwrap_or_default(),
        running_processes: i.running as u32,
        created_at_unix_ms: unix_ms(i.created_at),
    }
}

/// One progress event of InitEnvironment.
pub fn progress(p: Progress) -> pb::InitEnvironmentResponse {
    pb::InitEnvironmentResponse {
        phase: p.phase,
        done: p.done,
        total: p.total,
        unit: p.unit.to_string(),
        message: p.message,
        environment: None,
    }
}

/// What this host can run.
pub fn capabilities(c: &Capabilities) -> pb::CapabilitiesResponse {
    pb::CapabilitiesResponse {
        docker: Some(pb::DockerCapability {
            available: c.docker.available,
            version: c.docker.version.clone(),
            api_version: c.docker.api_version.clone(),
            reason: c.docker.reason.clone(),
        }),
        nix: Some(pb::NixCapability {
            available: c.nix.available,
            version: c.nix.version.clone(),
            reason: c.nix.reason.clone(),
        }),
        tools: c
            .tools
            .iter()
            .map(|t| pb::Tool {
                name: t.name.clone(),
                found: t.path.is_some(),
                path: t
                    .path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                version: t.version.clone().unwrap_or_default(),
            })
            .collect(),
        cpus: c.cpus,
        memory_bytes: c.memory_bytes,
        os: c.os.clone(),
        arch: c.arch.clone(),
        gpus: c
            .gpus
            .iter()
            .map(|g| pb::Gpu {
                vendor: g.vendor.clone(),
                name: g.name.clone(),
                device: g.device.clone(),
            })
            .collect(),
        probed_at_unix_ms: unix_ms(c.probed_at),
    }
}

/// A time as the API shows it.
pub fn time(t: SystemTime) -> i64 {
    unix_ms(t)
}
