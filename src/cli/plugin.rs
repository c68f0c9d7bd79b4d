//! `tend plugin load|ls|logs|unload|resolve|install|push`: the LoaderService from the command
//! line (push talks to the registry itself).
use tokio_stream::StreamExt;

use super::connect::LoaderClient;
use super::run::{Printer, Shown, EXIT_BROKEN_PIPE};
use crate::pb;

fn state_name(s: i32) -> String {
    pb::PluginState::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("PLUGIN_STATE_")
                .to_lowercase()
        })
        .unwrap_or_default()
}

fn address(p: &pb::PluginInfo) -> String {
    match pb::PluginNetwork::try_from(p.network) {
        Ok(pb::PluginNetwork::Unix) => format!("unix:{}", p.address),
        Ok(pb::PluginNetwork::Tcp) => format!("tcp:{}", p.address),
        _ => "-".into(),
    }
}

/// `tend plugin load`: prints where the plugin serves and what.
pub async fn load(mut c: LoaderClient, spec: pb::PluginSpec) -> anyhow::Result<i32> {
    let p = c
        .load(pb::LoadRequest { spec: Some(spec) })
        .await?
        .into_inner()
        .plugin
        .unwrap_or_default();
    let name = p.spec.as_ref().map(|s| s.name.as_str()).unwrap_or_default();
    let dialect = if p.dialect == pb::HandshakeDialect::Codefly as i32 {
        "codefly"
    } else {
        "go-plugin"
    };
    println!(
        "{name} serving at {} (pid {}, process {}, {dialect} handshake, app protocol {}{})",
        address(&p),
        p.pid,
        p.process_id,
        p.app_protocol_version,
        if p.version.is_empty() {
            String::new()
        } else {
            format!(", version {}", p.version)
        }
    );
    if p.services.is_empty() {
        println!(
            "services: none listed (it serves neither tend.v1.PluginService nor server reflection)"
        );
    } else {
        println!("services: {}", p.services.join(", "));
    }
    Ok(0)
}

/// `tend plugin ls`.
pub async fn list(mut c: LoaderClient) -> anyhow::Result<i32> {
    let r = c.list(pb::LoaderServiceListRequest {}).await?.into_inner();
    println!(
        "{:<20} {:<10} {:>8} {:>8} {:<40} SERVICES",
        "NAME", "STATE", "PID", "RESTARTS", "ADDRESS"
    );
    for p in r.plugins {
        println!(
            "{:<20} {:<10} {:>8} {:>8} {:<40} {}",
            p.spec.as_ref().map(|s| s.name.as_str()).unwrap_or_default(),
            state_name(p.state),
            p.pid,
            p.restart_count,
            address(&p),
            p.services.join(",")
        );
        if !p.last_error.is_empty() {
            println!("  last error: {}", p.last_error);
        }
    }
    Ok(0)
}

/// `tend plugin logs`: stdout to stdout, stderr to stderr; with `follow`, across restarts
/// until the plugin is unloaded or will not run again.
pub async fn logs(
    mut c: LoaderClient,
    name: String,
    stream: pb::Stream,
    tail_bytes: u32,
    follow: bool,
) -> anyhow::Result<i32> {
    let mut events = c
        .logs(pb::LogsRequest {
            name,
            stream: stream as i32,
            tail_bytes,
            follow,
        })
        .await?
        .into_inner();
    let mut printer = Printer::default();
    while let Some(ev) = events.next().await {
        if let Shown::BrokenPipe = printer.show(ev?.event)? {
            return Ok(EXIT_BROKEN_PIPE);
        }
    }
    Ok(0)
}

/// `tend plugin unload`: prints the stage that ended it.
pub async fn unload(
    mut c: LoaderClient,
    name: String,
    grace_ms: Option<u32>,
) -> anyhow::Result<i32> {
    let r = c
        .unload(pb::UnloadRequest { name, grace_ms })
        .await?
        .into_inner();
    let stage = pb::UnloadStage::try_from(r.stage)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("UNLOAD_STAGE_")
                .to_lowercase()
        })
        .unwrap_or_default();
    println!("unloaded ({})", stage.replace('_', " "));
    Ok(0)
}

/// `PUBLISHER/NAME[@VERSION]` as a package and a version (empty: latest).
pub fn package_arg(arg: &str) -> anyhow::Result<(String, String)> {
    let (package, version) = arg.split_once('@').unwrap_or((arg, ""));
    if !package.contains('/') {
        anyhow::bail!(
            "{arg:?} is neither NAME BINARY… nor a package PUBLISHER/NAME[@VERSION]: give the \
             plugin's executable after its name, or a package from the daemon's stores"
        );
    }
    Ok((package.to_string(), version.to_string()))
}

fn describe(r: &pb::ResolvedPlugin) -> String {
    let mut s = format!("{} {} from {}", r.package, r.version, r.store);
    if !r.digest.is_empty() {
        s.push_str(&format!(" ({})", r.digest));
    }
    s
}

/// `tend plugin resolve`.
pub async fn resolve(mut c: LoaderClient, arg: &str) -> anyhow::Result<i32> {
    let (package, version) = package_arg(arg)?;
    let r = c
        .resolve(pb::ResolveRequest { package, version })
        .await?
        .into_inner()
        .plugin
        .unwrap_or_default();
    if r.path.is_empty() {
        println!("{}, not installed", describe(&r));
    } else {
        println!("{}, installed at {}", describe(&r), r.path);
    }
    Ok(0)
}

/// `tend plugin install`: progress on stderr, the binary's path on stdout.
pub async fn install(mut c: LoaderClient, arg: &str) -> anyhow::Result<i32> {
    let (package, version) = package_arg(arg)?;
    let mut events = c
        .install(pb::InstallRequest { package, version })
        .await?
        .into_inner();
    // A line per tenth of the download is enough for a terminal or a log.
    let mut shown = None;
    while let Some(ev) = events.next().await {
        let ev = ev?;
        match pb::InstallPhase::try_from(ev.phase) {
            Ok(pb::InstallPhase::Download) if ev.total_bytes > 0 => {
                let tenth = ev.done_bytes * 10 / ev.total_bytes;
                if shown.replace(tenth) != Some(tenth) {
                    eprintln!(
                        "[download] {} / {} bytes ({}%)",
                        ev.done_bytes,
                        ev.total_bytes,
                        ev.done_bytes * 100 / ev.total_bytes
                    );
                }
            }
            Ok(pb::InstallPhase::Download) if ev.message.is_empty() => {
                eprintln!("[download] {} bytes", ev.done_bytes)
            }
            Ok(pb::InstallPhase::Done) => {
                let r = ev.plugin.unwrap_or_default();
                eprintln!("[done] {}", ev.message);
                println!("{}", r.path);
                return Ok(0);
            }
            Ok(phase) => eprintln!(
                "[{}] {}",
                phase
                    .as_str_name()
                    .trim_start_matches("INSTALL_PHASE_")
                    .to_lowercase(),
                ev.message
            ),
            Err(_) => {}
        }
    }
    anyhow::bail!("the install stream ended before the install did")
}

/// `tend plugin push`: straight to the registry.
pub async fn push(binary: &std::path::Path, target: &str, plain_http: bool) -> anyhow::Result<i32> {
    use crate::loader::store::oci;
    let (mut registry, package, version) =
        oci::parse_target(target).map_err(|e| anyhow::anyhow!("target: {e}"))?;
    registry.http |= plain_http;
    let bytes = std::fs::read(binary)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", binary.display()))?;
    let digest = oci::push(&registry, &package, &version, &bytes, &|line: &str| {
        eprintln!("[push] {line}")
    })
    .await
    .map_err(|e| anyhow::Error::from(tonic::Status::from(e)))?;
    let (os, arch) = oci::platform();
    println!(
        "pushed {package} {version} for {os}/{arch} to {} ({digest})",
        registry.host
    );
    Ok(0)
}
