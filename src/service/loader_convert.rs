//! Conversions between the LoaderService messages and the loader core, and the shape checks of
//! its requests (as `loader.proto` documents them on `Load`).
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use super::agent_convert::restart_policy;
use super::convert;
use crate::agent::spec::Policy;
use crate::error::{Error, Result};
use crate::loader::handshake::{Dialect, Network};
use crate::loader::registry::{Event, EventKind, Info, Status, UnloadStage};
use crate::loader::spec::{check_name, PluginSpec};
use crate::loader::store::{Package, Phase, Progress, Resolved, Want};
use crate::pb;

/// A day, the longest handshake or dial timeout.
const MAX_TIMEOUT_MS: u32 = 86_400_000;
/// An hour, the longest unload grace period.
pub const MAX_GRACE_MS: u32 = 3_600_000;
/// Protocol versions offered in one Load, at most.
const MAX_VERSIONS: usize = 64;

/// Check a Load request's spec and turn it into the core's.
pub fn spec(s: Option<pb::PluginSpec>, limits: &crate::config::Limits) -> Result<PluginSpec> {
    let s = s.ok_or_else(|| Error::invalid("spec", "is required"))?;
    check_name("spec.name", &s.name)?;
    let package = if s.package.is_empty() {
        if !s.version.is_empty() {
            return Err(Error::invalid(
                "spec.version",
                "is the version of spec.package, which is not set",
            ));
        }
        None
    } else {
        if !s.binary.is_empty() {
            return Err(Error::invalid(
                "spec.binary",
                "must be empty when spec.package is set (the installed binary is run)",
            ));
        }
        Some((
            Package::parse("spec.package", &s.package)?,
            Want::parse("spec.version", &s.version)?,
        ))
    };
    if s.binary.is_empty() && package.is_none() {
        return Err(Error::invalid(
            "spec.binary",
            "is required (the plugin's executable: a path, or a name on PATH), unless \
             spec.package names one to install",
        ));
    }
    // argv, env, cwd and environment_id follow ProcessSpec's rules and limits (an installed
    // binary's path stands in for argv[0]).
    let program = if s.binary.is_empty() {
        "/plugins/installed".to_string()
    } else {
        s.binary.clone()
    };
    let mut argv = vec![program];
    argv.extend(s.args.iter().cloned());
    convert::spec(
        Some(pb::ProcessSpec {
            argv,
            env: s.env.clone(),
            cwd: s.cwd.clone(),
            environment_id: s.environment_id.clone(),
            ..Default::default()
        }),
        String::new(),
        limits,
    )
    .map_err(|e| match e {
        Error::InvalidArgument { field, reason } => Error::InvalidArgument {
            field: args_field(&field),
            reason,
        },
        e => e,
    })?;
    if s.magic_cookie_key.is_empty() != s.magic_cookie_value.is_empty() {
        let (field, other) = if s.magic_cookie_key.is_empty() {
            ("spec.magic_cookie_key", "magic_cookie_value")
        } else {
            ("spec.magic_cookie_value", "magic_cookie_key")
        };
        return Err(Error::invalid(
            field,
            format!("is required with {other} (give both, or neither for tend's own cookie)"),
        ));
    }
    if s.magic_cookie_key.contains(['=', '\0']) || s.magic_cookie_value.contains('\0') {
        return Err(Error::invalid(
            "spec.magic_cookie_key",
            "must hold no '=' or NUL (it is an environment variable)",
        ));
    }
    if s.protocol_versions.len() > MAX_VERSIONS {
        return Err(Error::invalid(
            "spec.protocol_versions",
            format!(
                "has {} versions; at most {MAX_VERSIONS}",
                s.protocol_versions.len()
            ),
        ));
    }
    if let Some(i) = s.protocol_versions.iter().position(|v| *v == 0) {
        return Err(Error::invalid(
            format!("spec.protocol_versions[{i}]"),
            "is 0; versions start at 1",
        ));
    }
    for (field, v) in [
        ("spec.handshake_timeout_ms", s.handshake_timeout_ms),
        ("spec.dial_timeout_ms", s.dial_timeout_ms),
    ] {
        if v > MAX_TIMEOUT_MS {
            return Err(Error::invalid(
                field,
                format!("{v} ms is more than a day ({MAX_TIMEOUT_MS})"),
            ));
        }
    }
    if let Some(g) = s.unload_grace_ms {
        grace("spec.unload_grace_ms", g)?;
    }
    let restart = match s.restart {
        Some(r) => Some(restart_policy("spec.restart", Some(r))?),
        None => None,
    };
    Ok(PluginSpec {
        name: s.name,
        binary: s.binary,
        args: s.args,
        env: s.env.into_iter().collect(),
        cwd: (!s.cwd.is_empty()).then(|| PathBuf::from(s.cwd)),
        environment: s.environment_id,
        handshake_timeout_ms: s.handshake_timeout_ms,
        dial_timeout_ms: s.dial_timeout_ms,
        magic_cookie_key: s.magic_cookie_key,
        magic_cookie_value: s.magic_cookie_value,
        protocol_versions: s.protocol_versions,
        restart,
        unload_grace_ms: s.unload_grace_ms,
        package,
    })
}

/// A ProcessSpec field as the PluginSpec field it came from: argv[0] is the binary, argv[i]
/// is args[i - 1].
fn args_field(field: &str) -> String {
    let index = field
        .strip_prefix("spec.argv[")
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|n| n.parse::<usize>().ok());
    match index {
        Some(0) => "spec.binary".into(),
        Some(i) => format!("spec.args[{}]", i - 1),
        None if field == "spec.argv" => "spec.args".into(),
        None => field.into(),
    }
}

/// Check a grace period in milliseconds.
pub fn grace(field: &str, ms: u32) -> Result<Duration> {
    if ms > MAX_GRACE_MS {
        return Err(Error::invalid(
            field,
            format!("{ms} ms is more than an hour ({MAX_GRACE_MS})"),
        ));
    }
    Ok(Duration::from_millis(ms.into()))
}

fn policy_to_pb(p: &Policy) -> pb::RestartPolicy {
    pb::RestartPolicy {
        initial_backoff_ms: p.initial_backoff_ms,
        max_backoff_ms: p.max_backoff_ms,
        stable_after_ms: p.stable_after_ms,
        start_limit: p.start_limit,
    }
}

fn spec_to_pb(s: &PluginSpec) -> pb::PluginSpec {
    pb::PluginSpec {
        name: s.name.clone(),
        binary: s.binary.clone(),
        args: s.args.clone(),
        env: s.env.clone().into_iter().collect(),
        cwd: s
            .cwd
            .as_ref()
            .map(|c| c.display().to_string())
            .unwrap_or_default(),
        environment_id: s.environment.clone(),
        handshake_timeout_ms: s.handshake_timeout_ms,
        dial_timeout_ms: s.dial_timeout_ms,
        magic_cookie_key: s.magic_cookie_key.clone(),
        magic_cookie_value: s.magic_cookie_value.clone(),
        protocol_versions: s.protocol_versions.clone(),
        restart: s.restart.as_ref().map(policy_to_pb),
        unload_grace_ms: s.unload_grace_ms,
        package: s
            .package
            .as_ref()
            .map(|(p, _)| p.to_string())
            .unwrap_or_default(),
        version: s
            .package
            .as_ref()
            .map(|(_, w)| w.to_string())
            .unwrap_or_default(),
    }
}

fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn state_to_pb(s: Status) -> pb::PluginState {
    match s {
        Status::Starting => pb::PluginState::Starting,
        Status::Serving => pb::PluginState::Serving,
        Status::Exited => pb::PluginState::Exited,
        Status::Restarting => pb::PluginState::Restarting,
        Status::Failed => pb::PluginState::Failed,
        Status::Unloaded => pb::PluginState::Unloaded,
    }
}

/// A plugin as sent.
pub fn info(i: &Info) -> pb::PluginInfo {
    let s = &i.state;
    let p = s.process.as_ref();
    let hs = s.handshake.as_ref();
    pb::PluginInfo {
        spec: Some(spec_to_pb(&i.spec)),
        state: state_to_pb(s.status) as i32,
        pid: p.filter(|p| p.running()).map_or(0, |p| p.pid),
        process_id: p.map(|p| p.id.clone()).unwrap_or_default(),
        binary_path: s
            .binary_path
            .as_ref()
            .map(|b| b.display().to_string())
            .unwrap_or_default(),
        network: match hs.map(|h| &h.network) {
            None => pb::PluginNetwork::Unspecified,
            Some(Network::Unix(_)) => pb::PluginNetwork::Unix,
            Some(Network::Tcp(_)) => pb::PluginNetwork::Tcp,
        } as i32,
        address: hs.map(|h| h.network.address()).unwrap_or_default(),
        dialect: match hs.map(|h| h.dialect) {
            None => pb::HandshakeDialect::Unspecified,
            Some(Dialect::GoPlugin) => pb::HandshakeDialect::GoPlugin,
            Some(Dialect::Codefly) => pb::HandshakeDialect::Codefly,
        } as i32,
        core_protocol_version: hs.map_or(0, |h| h.core),
        app_protocol_version: hs.map_or(0, |h| h.app),
        handshake_line: s.handshake_line.clone(),
        services: s.services.clone(),
        version: s.version.clone(),
        started_at_unix_ms: p.map_or(0, |p| unix_ms(p.started_at)),
        serving_since_unix_ms: s.serving_since.map_or(0, unix_ms),
        restart_count: s.restart_count,
        last_exit: s.last_exit.as_ref().map(convert::exit_to_pb),
        last_error: s.last_error.clone(),
    }
}

/// An unload stage as sent.
pub fn stage(s: UnloadStage) -> pb::UnloadStage {
    match s {
        UnloadStage::NotRunning => pb::UnloadStage::NotRunning,
        UnloadStage::Shutdown => pb::UnloadStage::Shutdown,
        UnloadStage::Sigterm => pb::UnloadStage::Sigterm,
        UnloadStage::Sigkill => pb::UnloadStage::Sigkill,
    }
}

/// An event as sent.
pub fn event(e: &Event) -> pb::PluginEvent {
    pb::PluginEvent {
        name: e.name.clone(),
        kind: match e.kind {
            EventKind::Loaded => pb::PluginEventKind::Loaded,
            EventKind::Exited => pb::PluginEventKind::Exited,
            EventKind::Restarting => pb::PluginEventKind::Restarting,
            EventKind::Restarted => pb::PluginEventKind::Restarted,
            EventKind::Failed => pb::PluginEventKind::Failed,
            EventKind::Unloaded => pb::PluginEventKind::Unloaded,
            EventKind::Installing => pb::PluginEventKind::Installing,
        } as i32,
        plugin: Some(info(&e.info)),
        exit: e.exit.as_ref().map(convert::exit_to_pb),
        stderr_tail: e.stderr_tail.clone(),
        backoff_ms: e.backoff.map_or(0, |b| b.as_millis() as u64),
        error: e.error.clone(),
        at_unix_ms: unix_ms(e.at),
        missed: 0,
        install: e.install.as_ref().map(progress),
    }
}

/// A found plugin as sent.
pub fn resolved(r: &Resolved) -> pb::ResolvedPlugin {
    pb::ResolvedPlugin {
        package: r.package.to_string(),
        version: r.version.to_string(),
        store: r.store.clone(),
        digest: r.digest.clone(),
        path: r
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        size: r.size.unwrap_or(0),
    }
}

/// An install's progress as sent.
pub fn progress(p: &Progress) -> pb::InstallResponse {
    pb::InstallResponse {
        phase: match p.phase {
            Phase::Resolve => pb::InstallPhase::Resolve,
            Phase::Download => pb::InstallPhase::Download,
            Phase::Verify => pb::InstallPhase::Verify,
            Phase::Done => pb::InstallPhase::Done,
        } as i32,
        done_bytes: p.done,
        total_bytes: p.total,
        plugin: p.resolved.as_ref().map(resolved),
        message: p.message.clone(),
    }
}

/// A Resolve or Install request's package and version, checked.
pub fn package(package: &str, version: &str) -> Result<(Package, Want)> {
    if package.is_empty() {
        return Err(Error::invalid(
            "package",
            "is required (publisher/name, e.g. acme/kv)",
        ));
    }
    Ok((
        Package::parse("package", package)?,
        Want::parse("version", version)?,
    ))
}

/// A LAGGED event.
pub fn lagged(missed: u64) -> pb::PluginEvent {
    pb::PluginEvent {
        kind: pb::PluginEventKind::Lagged as i32,
        missed,
        at_unix_ms: unix_ms(std::time::SystemTime::now()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn good() -> pb::PluginSpec {
        pb::PluginSpec {
            name: "kv".into(),
            binary: "kv-plugin".into(),
            ..Default::default()
        }
    }

    #[test]
    fn bad_specs_name_their_field() {
        let limits = crate::config::Limits::default();
        type Break = fn(&mut pb::PluginSpec);
        let cases: Vec<(Break, &str)> = vec![
            (|s| s.name.clear(), "spec.name"),
            (|s| s.name = "-x".into(), "spec.name"),
            (|s| s.binary.clear(), "spec.binary"),
            (
                |s| s.magic_cookie_key = "K".into(),
                "spec.magic_cookie_value",
            ),
            (
                |s| s.magic_cookie_value = "v".into(),
                "spec.magic_cookie_key",
            ),
            (
                |s| s.protocol_versions = vec![1, 0],
                "spec.protocol_versions[1]",
            ),
            (
                |s| s.protocol_versions = vec![1; 65],
                "spec.protocol_versions",
            ),
            (
                |s| s.handshake_timeout_ms = MAX_TIMEOUT_MS + 1,
                "spec.handshake_timeout_ms",
            ),
            (
                |s| s.dial_timeout_ms = MAX_TIMEOUT_MS + 1,
                "spec.dial_timeout_ms",
            ),
            (
                |s| s.unload_grace_ms = Some(MAX_GRACE_MS + 1),
                "spec.unload_grace_ms",
            ),
            (|s| s.args = vec!["a\0b".into()], "spec.args[0]"),
            (
                |s| {
                    s.restart = Some(pb::RestartPolicy {
                        initial_backoff_ms: 3_600_001,
                        ..Default::default()
                    })
                },
                "spec.restart.initial_backoff_ms",
            ),
        ];
        for (break_it, field) in cases {
            let mut s = good();
            break_it(&mut s);
            let e = spec(Some(s), &limits).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e}");
            assert!(
                e.to_string().starts_with(&format!("{field}:")),
                "{field}: {e}"
            );
        }
        assert!(spec(None, &limits).is_err());
        let s = spec(Some(good()), &limits).unwrap();
        assert_eq!(s.restart, None);
        assert_eq!(spec_to_pb(&s), good());
    }
}
