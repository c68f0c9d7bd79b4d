//! `tend env …` and `tend caps`: environments and what this host can run, printed for people.
use tokio_stream::StreamExt;

use super::connect::RunnerClient;
use super::EnvCommand;
use crate::pb;

/// `tend env …`.
pub async fn command(mut c: RunnerClient, cmd: EnvCommand) -> anyhow::Result<i32> {
    match cmd {
        EnvCommand::Create {
            kind,
            name,
            image,
            image_tarball,
            mounts,
            ports,
            env,
            workdir,
            user,
            flake,
            shell,
        } => {
            let kind = match kind.as_str() {
                "native" => pb::EnvironmentKind::Native,
                "docker" => pb::EnvironmentKind::Docker,
                "nix" => pb::EnvironmentKind::Nix,
                _ => pb::EnvironmentKind::Auto,
            };
            let docker = (image.is_some() || image_tarball.is_some()).then(|| {
                Ok::<_, anyhow::Error>(pb::DockerSettings {
                    image: image.unwrap_or_default(),
                    image_tarball: image_tarball.unwrap_or_default(),
                    mounts: mounts.iter().map(|m| mount(m)).collect::<Result<_, _>>()?,
                    ports: ports.iter().map(|p| port(p)).collect::<Result<_, _>>()?,
                    env: env.into_iter().collect(),
                    workdir: workdir.unwrap_or_default(),
                    user: user.unwrap_or_default(),
                })
            });
            let nix = flake
                .map(|dir| -> anyhow::Result<pb::NixSettings> {
                    Ok(pb::NixSettings {
                        flake_dir: std::path::absolute(&dir)?.display().to_string(),
                        dev_shell: shell,
                    })
                })
                .transpose()?;
            let e = c
                .create_environment(pb::CreateEnvironmentRequest {
                    name: name.unwrap_or_default(),
                    kind: kind.into(),
                    docker: docker.transpose()?,
                    nix,
                })
                .await?
                .into_inner()
                .environment
                .unwrap_or_default();
            println!("{}", e.id);
            eprintln!("{}: {}", kind_word(e.resolved_kind), e.kind_reason);
            Ok(0)
        }
        EnvCommand::Ls => {
            let list = c
                .list_environments(pb::ListEnvironmentsRequest {})
                .await?
                .into_inner();
            println!(
                "{:<8} {:<16} {:<7} {:<13} {:>5} WHAT",
                "ID", "NAME", "KIND", "STATE", "PROCS"
            );
            for e in list.environments {
                let what = match (&e.docker, &e.nix) {
                    (Some(d), _) if e.resolved_kind == pb::EnvironmentKind::Docker as i32 => {
                        d.image.clone()
                    }
                    (_, Some(n)) if e.resolved_kind == pb::EnvironmentKind::Nix as i32 => {
                        format!("{}#{}", n.flake_dir, n.dev_shell)
                    }
                    _ => e.kind_reason.clone(),
                };
                println!(
                    "{:<8} {:<16} {:<7} {:<13} {:>5} {}",
                    e.id,
                    e.name,
                    kind_word(e.resolved_kind),
                    state_word(e.state),
                    e.running_processes,
                    what
                );
            }
            Ok(0)
        }
        EnvCommand::Init { id } => {
            let mut events = c
                .init_environment(pb::InitEnvironmentRequest { environment_id: id })
                .await?
                .into_inner();
            while let Some(ev) = events.next().await {
                let ev = ev?;
                let count = match (ev.total, ev.unit.as_str()) {
                    (0, _) => String::new(),
                    (t, "bytes") => format!(" {}/{} MB", ev.done >> 20, t >> 20),
                    (t, _) => format!(" {}/{}", ev.done, t),
                };
                eprintln!("[{}]{count} {}", ev.phase, ev.message);
                if let Some(e) = ev.environment {
                    println!("{} {}", e.id, state_word(e.state));
                }
            }
            Ok(0)
        }
        EnvCommand::Stop { id, grace_ms } => {
            let r = c
                .stop_environment(pb::StopEnvironmentRequest {
                    environment_id: id,
                    grace_ms,
                })
                .await?
                .into_inner();
            let e = r.environment.unwrap_or_default();
            println!(
                "{} {} ({} processes stopped)",
                e.id,
                state_word(e.state),
                r.stopped_processes
            );
            Ok(0)
        }
        EnvCommand::Rm { id, grace_ms } => {
            let r = c
                .shutdown_environment(pb::ShutdownEnvironmentRequest {
                    environment_id: id.clone(),
                    grace_ms,
                })
                .await?
                .into_inner();
            let container = if r.container_removed {
                ", its container removed"
            } else {
                ""
            };
            println!(
                "{id} removed ({} processes stopped{container})",
                r.stopped_processes
            );
            Ok(0)
        }
    }
}

/// `tend caps`.
pub async fn caps(mut c: RunnerClient, refresh: bool) -> anyhow::Result<i32> {
    let caps = c
        .capabilities(pb::CapabilitiesRequest { refresh })
        .await?
        .into_inner();
    println!(
        "host    {} {}, {} CPUs, {} MiB",
        caps.os,
        caps.arch,
        caps.cpus,
        caps.memory_bytes >> 20
    );
    let d = caps.docker.unwrap_or_default();
    if d.available {
        println!("docker  {} (API {})", d.version, d.api_version);
    } else {
        println!("docker  no: {}", d.reason);
    }
    let n = caps.nix.unwrap_or_default();
    if n.available {
        println!("nix     {}", n.version);
    } else {
        println!("nix     no: {}", n.reason);
    }
    for t in caps.tools {
        if t.found {
            println!("{:<7} {} ({})", t.name, t.version, t.path);
        } else {
            println!("{:<7} -", t.name);
        }
    }
    for g in caps.gpus {
        println!("gpu     {} {} ({})", g.vendor, g.name, g.device);
    }
    Ok(0)
}

fn kind_word(k: i32) -> &'static str {
    match pb::EnvironmentKind::try_from(k) {
        Ok(pb::EnvironmentKind::Native) => "native",
        Ok(pb::EnvironmentKind::Docker) => "docker",
        Ok(pb::EnvironmentKind::Nix) => "nix",
        Ok(pb::EnvironmentKind::Auto) => "auto",
        _ => "?",
    }
}

fn state_word(s: i32) -> &'static str {
    match pb::EnvironmentState::try_from(s) {
        Ok(pb::EnvironmentState::Created) => "created",
        Ok(pb::EnvironmentState::Initializing) => "initializing",
        Ok(pb::EnvironmentState::Ready) => "ready",
        Ok(pb::EnvironmentState::Stopped) => "stopped",
        Ok(pb::EnvironmentState::Failed) => "failed",
        _ => "?",
    }
}

/// HOST:CONTAINER[:ro].
fn mount(s: &str) -> anyhow::Result<pb::Mount> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, ro) = match parts.as_slice() {
        [h, c] => (h, c, false),
        [h, c, "ro"] => (h, c, true),
        [h, c, "rw"] => (h, c, false),
        _ => anyhow::bail!("--mount {s:?}: use HOST:CONTAINER or HOST:CONTAINER:ro"),
    };
    Ok(pb::Mount {
        host_path: std::path::absolute(host)?.display().to_string(),
        container_path: container.to_string(),
        read_only: ro,
    })
}

/// [IP:]HOST:CONTAINER[/PROTO].
fn port(s: &str) -> anyhow::Result<pb::PortMapping> {
    let bad = || anyhow::anyhow!("--port {s:?}: use [IP:]HOST:CONTAINER[/tcp|/udp]");
    let (spec, protocol) = s.split_once('/').unwrap_or((s, "tcp"));
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (container, host, ip) = match parts.as_slice() {
        [c, h] => (c, h, ""),
        [c, h, ip] => (c, h, *ip),
        _ => return Err(bad()),
    };
    Ok(pb::PortMapping {
        host_ip: ip.to_string(),
        host_port: host.parse().map_err(|_| bad())?,
        container_port: container.parse().map_err(|_| bad())?,
        protocol: protocol.to_string(),
    })
}
