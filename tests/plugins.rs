//! The test plugins of tests/fixtures/plugins (a Python one, a plain-gRPC Go one and an
//! unmodified hashicorp/go-plugin 1.0.1 one) against the real daemon: each loaded, serving
//! `kv.KV` at its own address, unloaded leaving no process; the go-plugin one with its own
//! cookie and protocol version, and unloaded by `GRPCController.Shutdown`; each misbehaviour
//! mode of the Python plugin giving its typed error end to end; a crashing plugin restarted.
//!
//! The binaries come from `scripts/build-test-plugins` (scripts/test exports their paths as
//! KVPLUGIN_PY, KVPLUGIN_GO, KVPLUGIN_GOPLUGIN); without the variable, the default build
//! directory `target/test-plugins` is looked in. A missing binary skips its test, saying why,
//! and fails it under CI=true.
use std::path::{Path, PathBuf};
use std::time::Duration;

use tend::cli::connect::{self, Addr, LoaderClient};
use tend::pb;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

use crate::helper::{alive, eventually, Daemon};

/// go-plugin's cookie and app protocol version for kvplugin-goplugin (`goplugin/shared`).
const GOPLUGIN_COOKIE: (&str, &str) = ("KVPLUGIN_GOPLUGIN_COOKIE", "kv-go-plugin-4c1e9b27");
const GOPLUGIN_VERSION: u32 = 2;

fn py() -> Option<PathBuf> {
    crate::helper::test_plugin("KVPLUGIN_PY", "kvplugin-py")
}
fn go() -> Option<PathBuf> {
    crate::helper::test_plugin("KVPLUGIN_GO", "kvplugin-go")
}
fn goplugin() -> Option<PathBuf> {
    crate::helper::test_plugin("KVPLUGIN_GOPLUGIN", "kvplugin-goplugin")
}

async fn loader(d: &Daemon) -> LoaderClient {
    connect::loader_client(&Addr::Unix(d.socket()), None)
        .await
        .expect("connect to tend")
}

fn spec(name: &str, bin: &Path) -> pb::PluginSpec {
    pb::PluginSpec {
        name: name.into(),
        binary: bin.display().to_string(),
        ..Default::default()
    }
}

/// kvplugin-goplugin's spec: its cookie and protocol version.
fn goplugin_spec(name: &str, bin: &Path) -> pb::PluginSpec {
    pb::PluginSpec {
        magic_cookie_key: GOPLUGIN_COOKIE.0.into(),
        magic_cookie_value: GOPLUGIN_COOKIE.1.into(),
        protocol_versions: vec![GOPLUGIN_VERSION],
        ..spec(name, bin)
    }
}

/// The Python plugin in misbehaviour `mode` (KVPLUGIN_MODE), with short timeouts.
fn py_mode(name: &str, bin: &Path, mode: &str) -> pb::PluginSpec {
    pb::PluginSpec {
        env: [("KVPLUGIN_MODE".to_string(), mode.to_string())].into(),
        handshake_timeout_ms: 3000,
        dial_timeout_ms: 1000,
        ..spec(name, bin)
    }
}

async fn load(c: &mut LoaderClient, spec: pb::PluginSpec) -> Result<pb::PluginInfo, tonic::Status> {
    c.load(pb::LoadRequest { spec: Some(spec) })
        .await
        .map(|r| r.into_inner().plugin.unwrap())
}

async fn unload(c: &mut LoaderClient, name: &str, grace_ms: u32) -> pb::UnloadResponse {
    c.unload(pb::UnloadRequest {
        name: name.into(),
        grace_ms: Some(grace_ms),
    })
    .await
    .unwrap()
    .into_inner()
}

// --- kv.KV, straight to the plugin's address (no generated Rust code: the messages by hand) ---

#[derive(Clone, PartialEq, prost::Message)]
struct GetRequest {
    #[prost(string, tag = "1")]
    key: String,
}
#[derive(Clone, PartialEq, prost::Message)]
struct GetResponse {
    #[prost(string, tag = "1")]
    value: String,
}
#[derive(Clone, PartialEq, prost::Message)]
struct PutRequest {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}
#[derive(Clone, PartialEq, prost::Message)]
struct PutResponse {}

async fn dial(address: &str) -> Channel {
    let path = PathBuf::from(address);
    tonic::transport::Endpoint::from_static("http://plugin")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .unwrap_or_else(|e| panic!("dial {address}: {e}"))
}

async fn unary<Q, R>(ch: &Channel, method: &'static str, req: Q) -> Result<R, tonic::Status>
where
    Q: prost::Message + Send + Sync + 'static,
    R: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(req),
        http::uri::PathAndQuery::from_static(method),
        tonic_prost::ProstCodec::<Q, R>::default(),
    )
    .await
    .map(|r| r.into_inner())
}

/// Put then Get a key through the plugin's own address.
async fn kv_put_get(address: &str) {
    let ch = dial(address).await;
    let key = format!("k-{}", std::process::id());
    let _: PutResponse = unary(
        &ch,
        "/kv.KV/Put",
        PutRequest {
            key: key.clone(),
            value: "v1".into(),
        },
    )
    .await
    .unwrap();
    let got: GetResponse = unary(&ch, "/kv.KV/Get", GetRequest { key }).await.unwrap();
    assert_eq!(got.value, "v1");
    let e = unary::<_, GetResponse>(
        &ch,
        "/kv.KV/Get",
        GetRequest {
            key: "never-put".into(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

/// Load, check, talk kv, unload at `stage`; no process left behind.
async fn load_serve_unload(
    d: &Daemon,
    spec: pb::PluginSpec,
    stage: pb::UnloadStage,
    exit_code: Option<i32>,
) {
    let mut c = loader(d).await;
    let name = spec.name.clone();
    let info = load(&mut c, spec).await.expect("load");
    assert_eq!(info.state, pb::PluginState::Serving as i32, "{info:?}");
    assert_eq!(info.services, ["kv.KV"], "{name}: {info:?}");
    assert_eq!(info.network, pb::PluginNetwork::Unix as i32);
    assert!(info.pid > 0 && alive(info.pid));
    // The socket is in the plugin's private directory (for go-plugin 1.0.1: through TMPDIR).
    let dir = Path::new(&info.address).parent().unwrap().to_path_buf();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700,
        "{name}: {}",
        info.address
    );
    assert!(
        dir.starts_with(&d.dir) || dir.starts_with("/tmp/tend-"),
        "{name}: the socket {} is in tend's socket directory",
        info.address
    );
    kv_put_get(&info.address).await;
    let listed = c
        .list(pb::LoaderServiceListRequest {})
        .await
        .unwrap()
        .into_inner()
        .plugins;
    assert!(listed.iter().any(|p| p.spec.as_ref().unwrap().name == name));

    let r = unload(&mut c, &name, 4000).await;
    assert_eq!(r.stage, stage as i32, "{name}: {r:?}");
    let gone = r.plugin.unwrap();
    assert_eq!(gone.state, pb::PluginState::Unloaded as i32);
    if let Some(code) = exit_code {
        assert_eq!(
            gone.last_exit.as_ref().and_then(|e| e.exit_code),
            Some(code),
            "{name}: {gone:?}"
        );
    }
    assert!(!alive(info.pid), "{name}: pid {} gone", info.pid);
    assert!(!dir.exists(), "{name}: socket dir removed");
    let p = d
        .c()
        .await
        .get(pb::GetRequest {
            id: info.process_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap();
    assert!(
        p.exit.is_some(),
        "{name}: ProcessService shows it exited: {p:?}"
    );
    assert_eq!(p.state, pb::ProcessState::Exited as i32, "{name}: {p:?}");
}

#[tokio::test]
async fn the_python_plugin_loads_serves_kv_and_unloads_by_shutdown() {
    let Some(bin) = py() else { return };
    let d = Daemon::start().await;
    load_serve_unload(&d, spec("kvpy", &bin), pb::UnloadStage::Shutdown, Some(0)).await;
}

#[tokio::test]
async fn the_go_plugin_loads_serves_kv_and_unloads_by_shutdown() {
    let Some(bin) = go() else { return };
    let d = Daemon::start().await;
    load_serve_unload(&d, spec("kvgo", &bin), pb::UnloadStage::Shutdown, Some(0)).await;
}

/// An unmodified go-plugin 1.0.1 plugin: its own cookie and protocol version 2, its 6-field
/// line, health "plugin", its socket in $TMPDIR (the private directory), and Unload by
/// `plugin.GRPCController/Shutdown`, which 1.0.1 answers with Unavailable (EOF) as it exits.
#[tokio::test]
async fn an_unmodified_go_plugin_plugin_loads_serves_kv_and_unloads_by_grpc_controller() {
    let Some(bin) = goplugin() else { return };
    let d = Daemon::start().await;
    let mut c = loader(&d).await;
    let info = load(&mut c, goplugin_spec("kvgp-peek", &bin))
        .await
        .expect("load");
    assert_eq!(info.dialect, pb::HandshakeDialect::GoPlugin as i32);
    assert_eq!(
        (info.core_protocol_version, info.app_protocol_version),
        (1, GOPLUGIN_VERSION)
    );
    assert_eq!(
        info.handshake_line,
        format!("1|2|unix|{}|grpc|", info.address),
        "go-plugin 1.0.1's line has an empty CERT field"
    );
    assert!(
        Path::new(&info.address)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("plugin"),
        "{}",
        info.address
    );
    unload(&mut c, "kvgp-peek", 0).await;
    load_serve_unload(
        &d,
        goplugin_spec("kvgp", &bin),
        pb::UnloadStage::Shutdown,
        None,
    )
    .await;
}

#[tokio::test]
async fn the_go_plugin_plugin_offered_another_version_or_no_cookie_is_refused_naming_why() {
    let Some(bin) = goplugin() else { return };
    let d = Daemon::start().await;
    let mut c = loader(&d).await;
    // Offered 1, it announces its own 2 (go-plugin's way): a mismatch naming both.
    let e = load(
        &mut c,
        pb::PluginSpec {
            protocol_versions: vec![1],
            ..goplugin_spec("kvgp-v1", &bin)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    for want in [
        "chose app protocol version 2",
        "the host offered 1",
        "1|2|unix|",
    ] {
        assert!(e.message().contains(want), "{want:?} in {}", e.message());
    }
    // With tend's cookie instead of its own, it refuses to run: go-plugin's message.
    let e = load(&mut c, spec("kvgp-nocookie", &bin)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    for want in [
        "exited (exit code 1) before printing its handshake line",
        "This binary is a plugin",
    ] {
        assert!(e.message().contains(want), "{want:?} in {}", e.message());
    }
    let list = c
        .list(pb::LoaderServiceListRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(list.plugins.is_empty(), "{list:?}");
}

#[tokio::test]
async fn each_misbehaviour_of_the_python_plugin_has_its_typed_error() {
    let Some(bin) = py() else { return };
    let d = Daemon::start().await;
    let mut c = loader(&d).await;
    let cases: Vec<(&str, Code, Vec<&str>)> = vec![
        (
            "noise,silent",
            Code::DeadlineExceeded,
            vec![
                "no handshake line from the plugin within 3 s",
                "\"Starting kvplugin...\"",
                "\"WARNING: stdout is not for logs, but plugins print there anyway\"",
                "silent mode: serving, but never printing the handshake line",
            ],
        ),
        (
            "malformed",
            Code::FailedPrecondition,
            vec!["malformed handshake", "\"1|1|carrier-pigeon|x|grpc\""],
        ),
        (
            "exit",
            Code::FailedPrecondition,
            vec![
                "exited (exit code 3) before printing its handshake line",
                "exit mode: giving up before the handshake (exit status 3)",
            ],
        ),
        (
            "badversion",
            Code::FailedPrecondition,
            vec!["chose app protocol version 99", "the host offered 1"],
        ),
        (
            "unhealthy",
            Code::Unavailable,
            vec![
                "did not serve within 1 s (dial_timeout_ms)",
                "NOT_SERVING",
                "unhealthy mode",
            ],
        ),
    ];
    for (mode, code, wants) in cases {
        let name = format!("py-{}", mode.replace(',', "-"));
        let started = std::time::Instant::now();
        let e = load(&mut c, py_mode(&name, &bin, mode)).await.unwrap_err();
        assert_eq!(e.code(), code, "{mode}: {}", e.message());
        for want in wants {
            assert!(
                e.message().contains(want),
                "{mode}: {want:?} in {}",
                e.message()
            );
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{mode}");
    }
    let list = c
        .list(pb::LoaderServiceListRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(list.plugins.is_empty(), "{list:?}");
    // Every run is gone (the hanging ones were killed), kept exited in ProcessService.
    let procs = d
        .c()
        .await
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .processes;
    let tagged: Vec<_> = procs
        .iter()
        .filter(|p| p.tags.contains_key("tend.plugin"))
        .collect();
    assert_eq!(tagged.len(), 5, "{tagged:?}");
    for p in tagged {
        assert!(p.exit.is_some() && !alive(p.pid), "{p:?}");
    }
}

#[tokio::test]
async fn noise_before_the_handshake_loads_and_stays_in_the_stdout_log() {
    let Some(bin) = py() else { return };
    let d = Daemon::start().await;
    let mut c = loader(&d).await;
    let info = load(&mut c, py_mode("noisy", &bin, "noise")).await.unwrap();
    assert_eq!(info.state, pb::PluginState::Serving as i32);
    let mut logs = c
        .logs(pb::LogsRequest {
            name: "noisy".into(),
            stream: pb::Stream::Stdout as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut stdout = Vec::new();
    while let Some(ev) = logs.next().await {
        if let Some(pb::process_event::Kind::Data(d)) = ev.unwrap().event.unwrap().kind {
            stdout.extend_from_slice(&d.data);
        }
    }
    let stdout = String::from_utf8_lossy(&stdout);
    assert!(
        stdout.starts_with("Starting kvplugin...\n\n\x1b[32mINFO\x1b[0m plugin"),
        "{stdout}"
    );
    assert!(stdout.contains(&info.handshake_line), "{stdout}");
    unload(&mut c, "noisy", 4000).await;
}

#[tokio::test]
async fn a_plugin_that_ignores_shutdown_and_sigterm_is_unloaded_by_sigkill() {
    let Some(bin) = py() else { return };
    let d = Daemon::start().await;
    let mut c = loader(&d).await;
    let info = load(&mut c, py_mode("stubborn", &bin, "ignore-term"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let r = unload(&mut c, "stubborn", 1000).await;
    assert_eq!(r.stage, pb::UnloadStage::Sigkill as i32, "{r:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "SIGKILL at the grace period: {waited:?}"
    );
    assert_eq!(
        r.plugin.unwrap().last_exit.unwrap().signal,
        Some(libc::SIGKILL)
    );
    assert!(!alive(info.pid));
}

async fn next_event(
    events: &mut tonic::Streaming<pb::LoaderServiceWatchResponse>,
) -> pb::PluginEvent {
    tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("an event within 20 s")
        .unwrap()
        .unwrap()
        .event
        .unwrap()
}

#[tokio::test]
async fn a_crashing_plugin_is_reported_exited_on_watch_and_restarted_by_its_policy() {
    let Some(bin) = py() else { return };
    let d = Daemon::start().await;
    let mut c = loader(&d).await;
    let mut events = c
        .watch(pb::LoaderServiceWatchRequest {
            name: "crashy".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut s = py_mode("crashy", &bin, "crash");
    s.env.insert("KVPLUGIN_CRASH_AFTER_MS".into(), "300".into());
    s.restart = Some(pb::RestartPolicy {
        initial_backoff_ms: 100,
        ..Default::default()
    });
    let first = load(&mut c, s).await.unwrap();
    let e = next_event(&mut events).await;
    assert_eq!(e.kind, pb::PluginEventKind::Loaded as i32, "{e:?}");
    let e = next_event(&mut events).await;
    assert_eq!(e.kind, pb::PluginEventKind::Exited as i32, "{e:?}");
    assert_eq!(e.exit.as_ref().unwrap().exit_code, Some(4), "{e:?}");
    assert!(
        e.stderr_tail.contains("crash mode: exiting with status 4"),
        "{e:?}"
    );
    let e = next_event(&mut events).await;
    assert_eq!(e.kind, pb::PluginEventKind::Restarting as i32, "{e:?}");
    let e = next_event(&mut events).await;
    assert_eq!(e.kind, pb::PluginEventKind::Restarted as i32, "{e:?}");
    let again = e.plugin.unwrap();
    assert_eq!(again.state, pb::PluginState::Serving as i32);
    assert_eq!(again.restart_count, 1);
    assert_ne!(again.pid, first.pid);
    assert!(!alive(first.pid));
    let r = unload(&mut c, "crashy", 2000).await;
    assert_ne!(r.stage, pb::UnloadStage::Sigkill as i32, "{r:?}");
    let last = r.plugin.unwrap();
    eventually(5, "the last run is gone", || !alive(last.pid)).await;
}
