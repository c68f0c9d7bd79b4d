//! LoaderService against the real daemon: a minimal Python plugin loaded, served, listed, its
//! logs read, unloaded leaving nothing; every typed Load error produced by a misbehaving script;
//! a SIGKILLed plugin reported on Watch and restarted; plugins of a crashed daemon swept.
use std::path::{Path, PathBuf};
use std::time::Duration;

use tend::cli::connect::{self, Addr, LoaderClient};
use tend::pb;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::helper::{alive, eventually, Daemon};

/// The Python with what the plugins here import.
fn python() -> Option<PathBuf> {
    crate::helper::python_with("grpc, grpc_health.v1.health")
}

/// A plugin in a few lines: refuses to run without tend's cookie, prints noise on stdout and a
/// line on stderr, serves health ("" SERVING) on a socket in PLUGIN_UNIX_SOCKET_DIR, then
/// prints its go-plugin handshake line.
const PLUGIN: &str = r#"
import os, sys
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
if os.environ.get("TEND_PLUGIN_MAGIC_COOKIE") != "tend-plugin-7b3e0f1c9d2a4e85":
    print("This binary is a plugin: load it with tend plugin load", file=sys.stderr)
    sys.exit(1)
path = os.path.join(os.environ["PLUGIN_UNIX_SOCKET_DIR"], "plugin.sock")
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
h = health.HealthServicer()
h.set("", health_pb2.HealthCheckResponse.SERVING)
health_pb2_grpc.add_HealthServicer_to_server(h, server)
if os.environ.get("KV_NATIVE"):
    import threading
    from tend_client._gen.tend.v1 import loader_pb2, loader_pb2_grpc
    class Plugin(loader_pb2_grpc.PluginServiceServicer):
        def Info(self, request, context):
            return loader_pb2.InfoResponse(name="kv", version="0.1.0", services=["kv.v1.KV", "grpc.health.v1.Health"], app_protocol_version=1)
        def Shutdown(self, request, context):
            print("shutdown asked, grace " + str(request.grace_ms), file=sys.stderr, flush=True)
            threading.Timer(0.05, lambda: os._exit(0)).start()
            return loader_pb2.ShutdownResponse()
    loader_pb2_grpc.add_PluginServiceServicer_to_server(Plugin(), server)
server.add_insecure_port("unix:" + path)
server.start()
print("kv plugin starting, host " + os.environ["TEND_ADDR"] + " token " + str(len(os.environ["TEND_TOKEN"])), file=sys.stderr, flush=True)
print("some noise before the handshake", flush=True)
print("1|1|unix|" + path + "|grpc", flush=True)
server.wait_for_termination()
"#;

struct Fixture {
    d: Daemon,
    c: LoaderClient,
    python: PathBuf,
    script: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Fixture {
    async fn new(d: Daemon) -> Option<Fixture> {
        let python = python()?;
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("kvplugin.py");
        std::fs::write(&script, PLUGIN).unwrap();
        let c = loader(&d).await;
        Some(Fixture {
            d,
            c,
            python,
            script,
            _tmp: tmp,
        })
    }

    fn spec(&self, name: &str) -> pb::PluginSpec {
        pb::PluginSpec {
            name: name.into(),
            binary: self.python.display().to_string(),
            args: vec![self.script.display().to_string()],
            ..Default::default()
        }
    }

    async fn load(&mut self, spec: pb::PluginSpec) -> Result<pb::PluginInfo, tonic::Status> {
        self.c
            .load(pb::LoadRequest { spec: Some(spec) })
            .await
            .map(|r| r.into_inner().plugin.unwrap())
    }
}

async fn loader(d: &Daemon) -> LoaderClient {
    connect::loader_client(&Addr::Unix(d.socket()), None)
        .await
        .expect("connect to tend")
}

/// A plugin that is a shell script.
fn sh(name: &str, script: &str) -> pb::PluginSpec {
    pb::PluginSpec {
        name: name.into(),
        binary: "sh".into(),
        args: vec!["-c".into(), script.into()],
        ..Default::default()
    }
}

async fn health(address: &str) -> i32 {
    let path = PathBuf::from(address);
    let ch = tonic::transport::Endpoint::from_static("http://plugin")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test]
async fn a_python_plugin_loads_serves_shows_its_logs_and_unloads_leaving_nothing() {
    let Some(mut f) = Fixture::new(Daemon::start().await).await else {
        return;
    };
    let info = f.load(f.spec("kv")).await.unwrap();
    assert_eq!(info.state, pb::PluginState::Serving as i32, "{info:?}");
    assert_eq!(info.network, pb::PluginNetwork::Unix as i32);
    assert_eq!(info.dialect, pb::HandshakeDialect::GoPlugin as i32);
    assert_eq!(
        (info.core_protocol_version, info.app_protocol_version),
        (1, 1)
    );
    assert!(info.address.ends_with("/plugin.sock"), "{}", info.address);
    assert!(info.address.len() <= 107);
    assert_eq!(
        info.handshake_line,
        format!("1|1|unix|{}|grpc", info.address)
    );
    assert!(info.pid > 0 && alive(info.pid));
    assert_eq!(info.binary_path, f.python.display().to_string());
    let dir = Path::new(&info.address).parent().unwrap().to_path_buf();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        health(&info.address).await,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // List and Get show it, with its address.
    let list =
        f.c.list(pb::LoaderServiceListRequest {})
            .await
            .unwrap()
            .into_inner()
            .plugins;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].address, info.address);
    let got =
        f.c.get(pb::LoaderServiceGetRequest { name: "kv".into() })
            .await
            .unwrap()
            .into_inner()
            .plugin
            .unwrap();
    assert_eq!(
        (got.pid, got.address.as_str()),
        (info.pid, info.address.as_str())
    );

    // Its process is a ProcessService process, tagged.
    let procs =
        f.d.c()
            .await
            .list(pb::ListRequest {
                tags: [("tend.plugin".to_string(), "kv".to_string())].into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .processes;
    assert_eq!(procs.len(), 1);
    assert_eq!(procs[0].id, info.process_id);
    assert_eq!(procs[0].pid, info.pid);

    // Logs: its stderr and the stdout noise before the handshake.
    let mut logs =
        f.c.logs(pb::LogsRequest {
            name: "kv".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(ev) = logs.next().await {
        if let Some(pb::process_event::Kind::Data(d)) = ev.unwrap().event.unwrap().kind {
            if d.stream == pb::Stream::Stderr as i32 {
                stderr.extend_from_slice(&d.data);
            } else {
                stdout.extend_from_slice(&d.data);
            }
        }
    }
    let (stdout, stderr) = (
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr),
    );
    assert!(
        stderr.contains(&format!(
            "kv plugin starting, host unix://{} token 35",
            f.d.socket().display()
        )),
        "{stderr}"
    );
    assert!(
        stdout.starts_with("some noise before the handshake\n1|1|unix|"),
        "{stdout}"
    );

    // A second of the same name is refused.
    let e = f.load(f.spec("kv")).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");

    // Unload: SIGTERM (it serves no PluginService), nothing left, the name free again.
    let r =
        f.c.unload(pb::UnloadRequest {
            name: "kv".into(),
            grace_ms: Some(2000),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.stage, pb::UnloadStage::Sigterm as i32, "{r:?}");
    let gone = r.plugin.unwrap();
    assert_eq!(gone.state, pb::PluginState::Unloaded as i32);
    assert!(gone.last_exit.is_some());
    assert!(!alive(info.pid));
    assert!(!dir.exists(), "the socket dir is removed");
    let e =
        f.c.get(pb::LoaderServiceGetRequest { name: "kv".into() })
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let again = f.load(f.spec("kv")).await.unwrap();
    assert_ne!(again.pid, info.pid);
    // A zero grace kills at once.
    let r =
        f.c.unload(pb::UnloadRequest {
            name: "kv".into(),
            grace_ms: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.stage, pb::UnloadStage::Sigkill as i32);
    assert!(!alive(again.pid));
}

#[tokio::test]
async fn a_tend_native_plugin_is_described_by_info_and_unloaded_by_shutdown() {
    let Some(mut f) = Fixture::new(Daemon::start().await).await else {
        return;
    };
    let mut spec = f.spec("native");
    spec.env = [
        ("KV_NATIVE".to_string(), "1".to_string()),
        (
            "PYTHONPATH".to_string(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python/src").to_string(),
        ),
    ]
    .into();
    let info = f.load(spec).await.unwrap();
    assert_eq!(info.services, ["kv.v1.KV"], "{info:?}");
    assert_eq!(info.version, "0.1.0");
    let r =
        f.c.unload(pb::UnloadRequest {
            name: "native".into(),
            grace_ms: Some(4000),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.stage, pb::UnloadStage::Shutdown as i32, "{r:?}");
    let exit = r.plugin.unwrap().last_exit.unwrap();
    assert_eq!(exit.exit_code, Some(0), "{exit:?}");
    assert!(!alive(info.pid));
    let procs =
        f.d.c()
            .await
            .list(pb::ListRequest::default())
            .await
            .unwrap()
            .into_inner();
    let p = procs
        .processes
        .iter()
        .find(|p| p.id == info.process_id)
        .unwrap();
    assert!(p.exit.is_some(), "kept in ProcessService, exited");
}

#[tokio::test]
async fn each_load_error_has_its_code_and_says_what_happened() {
    let d = Daemon::start().await;
    let mut c = loader(&d).await;
    let fast = |mut s: pb::PluginSpec| {
        s.handshake_timeout_ms = 1500;
        s.dial_timeout_ms = 700;
        s
    };
    let cases: Vec<(pb::PluginSpec, Code, Vec<&str>)> = vec![
        (
            pb::PluginSpec {
                name: "nf".into(),
                binary: "no-such-plugin-xyz".into(),
                env: [("PATH".to_string(), "/nonexistent:/usr/bin".to_string())].into(),
                ..Default::default()
            },
            Code::NotFound,
            vec![
                "\"no-such-plugin-xyz\" not found",
                "looked in /nonexistent:/usr/bin",
            ],
        ),
        (
            pb::PluginSpec {
                name: "nf2".into(),
                binary: "/nonexistent/plugin".into(),
                ..Default::default()
            },
            Code::NotFound,
            vec!["(looked in /nonexistent/plugin)"],
        ),
        (
            fast(sh(
                "early",
                "echo 'This binary is a plugin. Do not run it directly.' >&2; exit 3",
            )),
            Code::FailedPrecondition,
            vec![
                "exited (exit code 3) before printing its handshake line",
                "stderr ended with:\nThis binary is a plugin. Do not run it directly.",
            ],
        ),
        (
            fast(sh(
                "noisy",
                "echo 'Listening on :8080'; echo 'ready!'; echo waiting >&2; exec sleep 60",
            )),
            Code::DeadlineExceeded,
            vec![
                "no handshake line from the plugin within 1.5 s",
                "\"Listening on :8080\", \"ready!\"",
                "stderr ended with:\nwaiting",
            ],
        ),
        (
            fast(sh("broken", "echo '1|1|unix|relative.sock|grpc'; exec sleep 60")),
            Code::FailedPrecondition,
            vec![
                "malformed handshake",
                "is not an absolute path",
                "\"1|1|unix|relative.sock|grpc\"",
            ],
        ),
        (
            fast(sh("netrpc", "echo '1|1|unix|/tmp/x.sock|netrpc'; exec sleep 60")),
            Code::FailedPrecondition,
            vec!["protocol \"netrpc\" is not \"grpc\""],
        ),
        (
            fast(sh("v3", "echo \"1|3|unix|$PLUGIN_UNIX_SOCKET_DIR/p.sock|grpc\"; exec sleep 60")),
            Code::FailedPrecondition,
            vec![
                "chose app protocol version 3",
                "the host offered 1, 2",
                "PLUGIN_PROTOCOL_VERSIONS=1,2",
            ],
        ),
        (
            fast(sh(
                "mute",
                "echo \"1|1|unix|$PLUGIN_UNIX_SOCKET_DIR/p.sock|grpc\"; echo 'no server' >&2; exec sleep 60",
            )),
            Code::Unavailable,
            vec![
                "announced unix:/",
                "/p.sock but did not serve within 700 ms (dial_timeout_ms)",
                "stderr ended with:\nno server",
            ],
        ),
    ];
    for (mut spec, code, wants) in cases {
        let name = spec.name.clone();
        if name == "v3" {
            spec.protocol_versions = vec![1, 2];
        }
        let started = std::time::Instant::now();
        let e = c
            .load(pb::LoadRequest { spec: Some(spec) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{name}: {}", e.message());
        for want in wants {
            assert!(
                e.message().contains(want),
                "{name}: {want:?} in {}",
                e.message()
            );
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{name}");
    }
    // The name is free again after each, and no plugin is left; their processes are kept,
    // exited and tagged, so that their output can be read.
    let list = c
        .list(pb::LoaderServiceListRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(list.plugins.is_empty(), "{list:?}");
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
    assert_eq!(tagged.len(), 6, "{tagged:?}");
    assert!(tagged.iter().all(|p| p.exit.is_some()), "{tagged:?}");
}

#[tokio::test]
async fn bad_requests_name_their_field_and_unknown_names_are_not_found() {
    let d = Daemon::start().await;
    let mut c = loader(&d).await;
    let cases: Vec<(pb::PluginSpec, &str)> = vec![
        (pb::PluginSpec::default(), "spec.name"),
        (sh("a b", "true"), "spec.name"),
        (
            pb::PluginSpec {
                name: "x".into(),
                ..Default::default()
            },
            "spec.binary",
        ),
        (
            pb::PluginSpec {
                magic_cookie_key: "K".into(),
                ..sh("x", "true")
            },
            "spec.magic_cookie_value",
        ),
        (
            pb::PluginSpec {
                protocol_versions: vec![0],
                ..sh("x", "true")
            },
            "spec.protocol_versions[0]",
        ),
        (
            pb::PluginSpec {
                handshake_timeout_ms: 86_400_001,
                ..sh("x", "true")
            },
            "spec.handshake_timeout_ms",
        ),
        (
            pb::PluginSpec {
                unload_grace_ms: Some(3_600_001),
                ..sh("x", "true")
            },
            "spec.unload_grace_ms",
        ),
    ];
    for (spec, field) in cases {
        let e = c
            .load(pb::LoadRequest { spec: Some(spec) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    let e = c
        .unload(pb::UnloadRequest {
            name: "nope".into(),
            grace_ms: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .unload(pb::UnloadRequest {
            name: "x".into(),
            grace_ms: Some(3_600_001),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .logs(pb::LogsRequest {
            name: "nope".into(),
            stream: pb::Stream::Pty as i32,
            ..Default::default()
        })
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("stream"), "{}", e.message());
}

#[tokio::test]
async fn unload_while_loading_aborts_the_load() {
    let d = Daemon::start().await;
    let mut c = loader(&d).await;
    let mut c2 = c.clone();
    let load = tokio::spawn(async move {
        c2.load(pb::LoadRequest {
            spec: Some(sh("slow", "echo starting >&2; exec sleep 60")),
        })
        .await
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let pid = loop {
        let got = c
            .get(pb::LoaderServiceGetRequest {
                name: "slow".into(),
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().plugin);
        if let Some(p) = got.filter(|p| p.pid > 0) {
            assert_eq!(p.state, pb::PluginState::Starting as i32);
            break p.pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "STARTING with a process"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let r = c
        .unload(pb::UnloadRequest {
            name: "slow".into(),
            grace_ms: Some(1000),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.stage, pb::UnloadStage::Sigterm as i32);
    let e = load.await.unwrap().unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    assert!(!alive(pid));
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
async fn a_sigkilled_plugin_is_reported_on_watch_and_restarted_by_its_policy() {
    let Some(mut f) = Fixture::new(Daemon::start().await).await else {
        return;
    };
    let mut events =
        f.c.watch(pb::LoaderServiceWatchRequest {
            name: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut spec = f.spec("crashy");
    spec.restart = Some(pb::RestartPolicy {
        initial_backoff_ms: 100,
        ..Default::default()
    });
    let first = f.load(spec).await.unwrap();
    let e = next_event(&mut events).await;
    assert_eq!(
        (e.kind, e.name.as_str()),
        (pb::PluginEventKind::Loaded as i32, "crashy")
    );

    let mut logs =
        f.c.logs(pb::LogsRequest {
            name: "crashy".into(),
            stream: pb::Stream::Stderr as i32,
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // SAFETY: kill(2) of the plugin this test loaded.
    unsafe { libc::kill(first.pid as i32, libc::SIGKILL) };
    let e = next_event(&mut events).await;
    assert_eq!(e.kind, pb::PluginEventKind::Exited as i32, "{e:?}");
    assert_eq!(e.exit.as_ref().unwrap().signal, Some(libc::SIGKILL));
    assert!(e.stderr_tail.contains("kv plugin starting"), "{e:?}");
    let e = next_event(&mut events).await;
    assert_eq!(e.kind, pb::PluginEventKind::Restarting as i32, "{e:?}");
    assert!((100..=125).contains(&e.backoff_ms), "{}", e.backoff_ms);
    let e = next_event(&mut events).await;
    assert_eq!(e.kind, pb::PluginEventKind::Restarted as i32, "{e:?}");
    let again = e.plugin.unwrap();
    assert_eq!(again.state, pb::PluginState::Serving as i32);
    assert_eq!(again.restart_count, 1);
    assert_ne!(again.pid, first.pid);
    assert!(alive(again.pid));
    assert_eq!(
        health(&again.address).await,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Logs followed the plugin: its first run's stderr, its exit, the next run's start and
    // stderr.
    let mut kinds = Vec::new();
    let mut text = String::new();
    while !(kinds.contains(&"started") && text.matches("kv plugin starting").count() == 2) {
        let ev = tokio::time::timeout(Duration::from_secs(10), logs.next())
            .await
            .expect("logs within 10 s")
            .unwrap()
            .unwrap();
        match ev.event.unwrap().kind.unwrap() {
            pb::process_event::Kind::Data(d) => text.push_str(&String::from_utf8_lossy(&d.data)),
            pb::process_event::Kind::Exited(_) => kinds.push("exited"),
            pb::process_event::Kind::Started(p) => {
                assert_eq!(p.pid, again.pid);
                kinds.push("started")
            }
            _ => {}
        }
    }
    assert_eq!(kinds, ["exited", "started"]);

    // Without a policy it stays EXITED, and Unload only forgets it.
    let plain = f.load(f.spec("plain")).await.unwrap();
    let _loaded = next_event(&mut events).await;
    // SAFETY: as above.
    unsafe { libc::kill(plain.pid as i32, libc::SIGKILL) };
    let e = next_event(&mut events).await;
    assert_eq!(
        (e.kind, e.name.as_str()),
        (pb::PluginEventKind::Exited as i32, "plain")
    );
    assert_eq!(
        e.plugin.unwrap().state,
        pb::PluginState::Exited as i32,
        "no restart"
    );
    let r =
        f.c.unload(pb::UnloadRequest {
            name: "plain".into(),
            grace_ms: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.stage, pb::UnloadStage::NotRunning as i32);
    let e = next_event(&mut events).await;
    assert_eq!(
        (e.kind, e.name.as_str()),
        (pb::PluginEventKind::Unloaded as i32, "plain")
    );
}

#[tokio::test]
async fn kill_9_of_the_daemon_with_three_plugins_and_a_restart_leaves_none_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let Some(mut f) = Fixture::new(Daemon::spawn_in(&dir, &[]).await).await else {
        return;
    };
    let mut pids = Vec::new();
    for name in ["a", "b", "c"] {
        pids.push(f.load(f.spec(name)).await.unwrap().pid);
    }
    assert!(pids.iter().all(|p| alive(*p)));
    f.d.kill9();
    assert!(
        pids.iter().all(|p| alive(*p)),
        "kill -9 of the daemon leaves them running"
    );
    let d2 = Daemon::spawn_in(&dir, &[]).await;
    eventually(10, "every plugin of the dead daemon is killed", || {
        pids.iter().all(|p| !alive(*p))
    })
    .await;
    // The new daemon has none, and its state dir holds no socket dirs of the old one.
    let list = loader(&d2)
        .await
        .list(pb::LoaderServiceListRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(list.plugins.is_empty());
    assert!(!dir.join("p").exists() || std::fs::read_dir(dir.join("p")).unwrap().count() == 0);
}

#[tokio::test]
async fn the_daemon_stopping_unloads_its_plugins() {
    let Some(mut f) = Fixture::new(Daemon::start().await).await else {
        return;
    };
    let a = f.load(f.spec("a")).await.unwrap();
    let b = f.load(f.spec("b")).await.unwrap();
    let status = f.d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!alive(a.pid) && !alive(b.pid));
    assert!(!Path::new(&a.address).exists());
}

/// `tend …` against the fixture's daemon: its stdout, or panic with its stderr.
fn tend(d: &Daemon, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tend"))
        .arg("--connect")
        .arg(d.socket())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tend {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test]
async fn the_cli_loads_lists_shows_logs_and_unloads() {
    let Some(f) = Fixture::new(Daemon::start().await).await else {
        return;
    };
    let (py, script) = (
        f.python.display().to_string(),
        f.script.display().to_string(),
    );
    let d = f.d.socket();
    let load = tokio::task::spawn_blocking({
        let f_sock = d.clone();
        move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_tend"))
                .arg("--connect")
                .arg(&f_sock)
                .args([
                    "plugin",
                    "load",
                    "--protocol-versions",
                    "1,2",
                    "kv",
                    &py,
                    &script,
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    })
    .await
    .unwrap();
    assert!(load.starts_with("kv serving at unix:/"), "{load}");
    assert!(
        load.contains("go-plugin handshake, app protocol 1"),
        "{load}"
    );
    assert!(load.contains("services: none listed"), "{load}");
    let ls = tend(&f.d, &["plugin", "ls"]);
    assert!(ls.contains("kv ") && ls.contains("serving"), "{ls}");
    let logs = tend(&f.d, &["plugin", "logs", "kv"]);
    assert!(logs.contains("some noise before the handshake"), "{logs}");
    assert!(logs.contains("kv plugin starting"), "{logs}");
    let out = tend(&f.d, &["plugin", "unload", "kv", "--grace-ms", "2000"]);
    assert_eq!(out.trim(), "unloaded (sigterm)");
    let ls = tend(&f.d, &["plugin", "ls"]);
    assert!(!ls.contains("kv "), "{ls}");
}

/// Live processes carrying `marker` in their environment (TEND_ORIGIN of a given daemon).
fn carriers_of(pid_prefix: &str) -> usize {
    tend::supervisor::records::marked(|m| m.contains(pid_prefix)).len()
}

#[tokio::test]
async fn tend_loads_tend_runs_a_process_in_it_and_unload_leaves_nothing() {
    let d = Daemon::start().await;
    let mut c = loader(&d).await;
    let info = c
        .load(pb::LoadRequest {
            spec: Some(pb::PluginSpec {
                name: "inner".into(),
                binary: env!("CARGO_BIN_EXE_tend").into(),
                args: vec!["serve".into(), "--handshake".into()],
                ..Default::default()
            }),
        })
        .await
        .expect("load tend as a plugin")
        .into_inner()
        .plugin
        .unwrap();
    assert_eq!(info.state, pb::PluginState::Serving as i32, "{info:?}");
    assert!(
        info.services.iter().any(|s| s == "tend.v1.ProcessService"),
        "{:?}",
        info.services
    );
    // A process started in the loaded tend, through its own address.
    let mut inner = connect::process_client(&Addr::Unix(PathBuf::from(&info.address)), None)
        .await
        .unwrap();
    let started = inner
        .start(pb::StartRequest {
            spec: Some(crate::helper::sh("trap '' TERM; sleep 1000")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap();
    assert!(alive(started.pid));
    let inner_marker = format!(":{}:", info.pid);
    assert!(carriers_of(&inner_marker) >= 1);

    let unloaded = c
        .unload(pb::UnloadRequest {
            name: "inner".into(),
            grace_ms: Some(2000),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        unloaded.stage,
        pb::UnloadStage::Shutdown as i32,
        "the inner tend stopped on PluginService.Shutdown: {unloaded:?}"
    );
    eventually(10, "the inner tend and its process are gone", || {
        !alive(info.pid) && !alive(started.pid) && carriers_of(&inner_marker) == 0
    })
    .await;
}

/// How many processes in environment `env` run exactly `args`, as its `ps` shows them.
async fn running_in(d: &Daemon, env: &str, args: &str) -> usize {
    let mut spec = crate::helper::spec(&["ps", "-o", "args"]);
    spec.environment_id = env.into();
    let out = crate::helper::run(&mut d.c().await, spec).await;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == args)
        .count()
}

#[tokio::test]
async fn tend_loads_tend_in_a_docker_environment_reachable_through_the_host() {
    use crate::helper::{docker_missing, require, BUSYBOX_IMAGE};
    if !require("docker", docker_missing()) {
        return;
    }
    let d = Daemon::start().await;
    // The test binary's own tend, run in a busybox container: its directory and the host's
    // glibc (a dynamically linked binary's loader and libraries) mounted read-only.
    let bin = Path::new(env!("CARGO_BIN_EXE_tend"));
    let mount = |host: &Path, inside: &str| pb::Mount {
        host_path: host.display().to_string(),
        container_path: inside.into(),
        read_only: true,
    };
    let mut mounts = vec![mount(bin.parent().unwrap(), "/opt/tend")];
    for lib in ["/lib64", "/lib/x86_64-linux-gnu"] {
        if Path::new(lib).exists() {
            mounts.push(mount(Path::new(lib), lib));
        }
    }
    let mut r = connect::runner_client(&Addr::Unix(d.socket()), None)
        .await
        .unwrap();
    let env = r
        .create_environment(pb::CreateEnvironmentRequest {
            kind: pb::EnvironmentKind::Docker.into(),
            name: "box".into(),
            docker: Some(pb::DockerSettings {
                image: BUSYBOX_IMAGE.into(),
                mounts,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .environment
        .unwrap();
    let mut init = r
        .init_environment(pb::InitEnvironmentRequest {
            environment_id: env.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(ev) = init.next().await {
        ev.expect("init the environment");
    }

    let mut c = loader(&d).await;
    let info = c
        .load(pb::LoadRequest {
            spec: Some(pb::PluginSpec {
                name: "boxed".into(),
                binary: "/opt/tend/tend".into(),
                args: vec!["serve".into(), "--handshake".into()],
                environment_id: "box".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("load tend into the container")
        .into_inner()
        .plugin
        .unwrap();
    assert_eq!(info.state, pb::PluginState::Serving as i32, "{info:?}");
    // The address is the host's side of the container's socket, which a host client can dial.
    let socket = info.address.trim_start_matches("unix:");
    assert!(
        socket.starts_with(d.dir.to_str().unwrap()) && Path::new(socket).exists(),
        "{info:?}"
    );

    // Through the host's forwarding: a process of the inner tend runs in the container.
    let ch = connect::channel(&Addr::Unix(d.socket())).await.unwrap();
    let mut inner = pb::process_service_client::ProcessServiceClient::with_interceptor(
        ch,
        |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("tend-plugin", "boxed".parse().unwrap());
            Ok(r)
        },
    );
    let mut events = inner
        .run(pb::RunRequest {
            spec: Some(crate::helper::sh("test -d /.tend && echo in the container")),
            ..Default::default()
        })
        .await
        .expect("Run through the forwarding")
        .into_inner();
    let mut out = crate::helper::Collected::default();
    while let Some(ev) = events.next().await {
        out.add(ev.expect("event").event);
    }
    assert_eq!(out.stdout, b"in the container\n");
    // A tree that ignores SIGTERM, one of it in a session of its own.
    inner
        .start(pb::StartRequest {
            spec: Some(crate::helper::sh(
                "trap '' TERM; setsid sleep 1000 & sleep 1000",
            )),
            ..Default::default()
        })
        .await
        .unwrap();
    for tries in 0.. {
        if running_in(&d, &env.id, "sleep 1000").await == 2 {
            break;
        }
        assert!(tries < 100, "both sleeps should run in the container");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let unloaded = c
        .unload(pb::UnloadRequest {
            name: "boxed".into(),
            grace_ms: Some(2000),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        unloaded.stage,
        pb::UnloadStage::Shutdown as i32,
        "{unloaded:?}"
    );
    assert_eq!(running_in(&d, &env.id, "sleep 1000").await, 0);
    assert_eq!(
        running_in(&d, &env.id, "/opt/tend/tend serve --handshake").await,
        0
    );
    assert!(
        !Path::new(socket).exists(),
        "the socket directory went with the plugin"
    );
}
