//! Plugins calling back into tend (issue 11, item 6): a plugin starts a process through the host
//! with the address and token it was given; the process carries the owner tag; the token cannot
//! load or unload plugins, works on TCP in place of the daemon's token, and stops working at
//! Unload, which also stops and removes what the plugin started.
use std::path::{Path, PathBuf};
use std::time::Duration;

use tend::cli::connect::{self, Addr};
use tend::pb;
use tonic::Code;

use crate::helper::{alive, eventually, Daemon};

/// The tag tend puts on what a plugin starts through its callbacks.
const OWNER_TAG: &str = "tend.plugin.owner";

/// The Python with what the plugins here import.
fn python() -> Option<PathBuf> {
    crate::helper::python_with("grpc, grpc_health.v1.health, tend_client")
}

/// kvplugin-py in `callback` mode: once serving, it starts `sleep 300` through TEND_ADDR with
/// TEND_TOKEN.
fn callback_plugin(python: &Path, name: &str) -> pb::PluginSpec {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plugins/py/kvplugin.py");
    pb::PluginSpec {
        name: name.into(),
        binary: python.display().to_string(),
        args: vec![script.display().to_string()],
        env: [("KVPLUGIN_MODE".to_string(), "callback".to_string())].into(),
        ..Default::default()
    }
}

/// The TEND_TOKEN in a process's environment.
fn token_of(pid: u32) -> String {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"TEND_TOKEN="))
        .map(|t| String::from_utf8(t.to_vec()).unwrap())
        .expect("the plugin has TEND_TOKEN")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn owned_by(c: &mut connect::ProcessClient, plugin: &str) -> Vec<pb::ProcessInfo> {
    c.list(pb::ListRequest {
        tags: [(OWNER_TAG.to_string(), plugin.to_string())].into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .processes
}

#[tokio::test]
async fn a_plugin_starts_a_process_through_the_host_which_goes_with_its_token_at_unload() {
    let Some(python) = python() else {
        return;
    };
    let tcp = format!("127.0.0.1:{}", free_port());
    let d = Daemon::with_args(&["--listen", &format!("tcp://{tcp}")]).await;
    let unix = Addr::Unix(d.socket());
    let tcp = Addr::Tcp(tcp);
    let mut owner_loader = connect::loader_client(&unix, None).await.unwrap();
    let mut owner = d.c().await;

    let info = owner_loader
        .load(pb::LoadRequest {
            spec: Some(callback_plugin(&python, "cb")),
        })
        .await
        .unwrap()
        .into_inner()
        .plugin
        .unwrap();
    let token = token_of(info.pid);
    assert!(token.starts_with("tp_"), "{token}");

    // What the plugin started through the host: tagged with the plugin, and its own tag kept.
    let mut started = Vec::new();
    for _ in 0..200 {
        started = owned_by(&mut owner, "cb").await;
        if !started.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(started.len(), 1, "the plugin's process: {started:?}");
    let p = &started[0];
    assert_eq!(p.argv, ["sleep", "300"]);
    assert_eq!(p.state, pb::ProcessState::Running as i32);
    assert_eq!(p.tags.get("kvplugin").map(String::as_str), Some("callback"));
    assert!(alive(p.pid));

    // The plugin's token: it cannot load or unload plugins (on the socket as on TCP)...
    for addr in [&unix, &tcp] {
        let mut as_plugin = connect::loader_client(addr, Some(token.clone()))
            .await
            .unwrap();
        let err = as_plugin
            .load(pb::LoadRequest {
                spec: Some(callback_plugin(&python, "another")),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(
            err.message()
                .contains("a plugin's token cannot load or unload plugins"),
            "{err:?}"
        );
        let err = as_plugin
            .unload(pb::UnloadRequest {
                name: "cb".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        // ...but reads the plugin table.
        as_plugin
            .list(pb::LoaderServiceListRequest::default())
            .await
            .unwrap();
    }
    // On TCP it stands in for the daemon's token; what it starts there is the plugin's too.
    let mut over_tcp = connect::process_client(&tcp, Some(token.clone()))
        .await
        .unwrap();
    let listed = over_tcp
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .processes;
    assert!(listed.iter().any(|q| q.id == p.id), "{listed:?}");
    let second = over_tcp
        .start(pb::StartRequest {
            spec: Some(pb::ProcessSpec {
                argv: vec!["sleep".into(), "301".into()],
                // A plugin cannot hand what it starts to someone else.
                tags: [(OWNER_TAG.to_string(), "someone-else".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap();
    assert_eq!(
        second.tags.get(OWNER_TAG).map(String::as_str),
        Some("cb"),
        "{second:?}"
    );
    // An agent it spawns: its runs carry the tag, and it goes at Unload (a crew agent, which
    // would otherwise restart).
    let mut agents = connect::agent_client(&unix, Some(token.clone()))
        .await
        .unwrap();
    let agent = agents
        .spawn(pb::SpawnRequest {
            spec: Some(pb::AgentSpec {
                name: "cb-agent".into(),
                argv: vec!["sleep".into(), "303".into()],
                kind: pb::AgentKind::Crew as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .agent
        .unwrap();
    let run = owner
        .get(pb::GetRequest {
            id: agent.process_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap();
    assert_eq!(
        run.tags.get(OWNER_TAG).map(String::as_str),
        Some("cb"),
        "{run:?}"
    );
    // The owner's calls are not tagged.
    let mine = owner
        .start(pb::StartRequest {
            spec: Some(crate::helper::spec(&["sleep", "302"])),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap();
    assert!(!mine.tags.contains_key(OWNER_TAG), "{mine:?}");

    // The plugin's token reaches only what the plugin started: the owner's process is unknown
    // to it, by id and by List; Signal and Remove of it are NotFound, and it runs on.
    let listed = over_tcp
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .processes;
    assert!(
        listed
            .iter()
            .all(|q| q.tags.get(OWNER_TAG).map(String::as_str) == Some("cb")),
        "{listed:?}"
    );
    let err = over_tcp
        .get(pb::GetRequest {
            id: mine.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = over_tcp
        .signal(pb::SignalRequest {
            id: mine.id.clone(),
            signal: "KILL".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = over_tcp
        .remove(pb::RemoveRequest {
            id: mine.id.clone(),
            force: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(alive(mine.pid), "the owner's process runs on");
    // Its own, it may act on.
    over_tcp
        .get(pb::GetRequest {
            id: second.id.clone(),
        })
        .await
        .unwrap();
    // The owner's agents likewise; environments it may not stop.
    d.agents()
        .await
        .spawn(pb::SpawnRequest {
            spec: Some(pb::AgentSpec {
                name: "owners-agent".into(),
                argv: vec!["sleep".into(), "304".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let err = agents
        .get(pb::AgentServiceGetRequest {
            name: "owners-agent".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let names: Vec<String> = agents
        .list(pb::AgentServiceListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .agents
        .into_iter()
        .map(|a| a.spec.unwrap_or_default().name)
        .collect();
    assert_eq!(names, ["cb-agent"]);
    let mut runner = connect::runner_client(&unix, Some(token.clone()))
        .await
        .unwrap();
    let err = runner
        .stop_environment(pb::StopEnvironmentRequest {
            environment_id: "native".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Unload: the plugin, then what it started, stopped and removed.
    owner_loader
        .unload(pb::UnloadRequest {
            name: "cb".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(owned_by(&mut owner, "cb").await.is_empty());
    for q in [p, &second] {
        let err = owner
            .get(pb::GetRequest { id: q.id.clone() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        let pid = q.pid;
        eventually(5, "the plugin's process exits", || !alive(pid)).await;
    }
    let err = d
        .agents()
        .await
        .get(pb::AgentServiceGetRequest {
            name: "cb-agent".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    eventually(5, "the plugin's agent exits", || !alive(agent.pid)).await;
    // The owner's own process is untouched.
    assert!(alive(mine.pid));

    // The token no longer works, anywhere.
    for addr in [&unix, &tcp] {
        let mut stale = connect::process_client(addr, Some(token.clone()))
            .await
            .unwrap();
        let err = stale.list(pb::ListRequest::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert!(
            err.message()
                .contains("the plugin token is no longer valid (plugin \"cb\" was unloaded)"),
            "{err:?}"
        );
    }
    // A plugin-shaped token nobody was given.
    let mut never = connect::process_client(&unix, Some(format!("tp_{:032x}", 7)))
        .await
        .unwrap();
    let err = never.list(pb::ListRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    // The owner, without a token on the socket, as before.
    owner.list(pb::ListRequest::default()).await.unwrap();
}
