//! Exit codes, signals, groups, reaping, drain, idempotency, foreground timeouts, limits.
use std::time::Duration;

use tend::pb;

use crate::helper::*;

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let x = run(&mut c, sh("exit 42")).await.exit.unwrap();
    assert_eq!((x.exit_code, x.signal), (Some(42), None));
    let x = run(&mut c, sh("kill -9 $$")).await.exit.unwrap();
    assert_eq!((x.exit_code, x.signal), (None, Some(9)));
    assert_eq!(x.signal_name, "SIGKILL");

    let id = start(&mut c, spec(&["sleep", "1000"])).await;
    c.signal(pb::SignalRequest {
        id: id.clone(),
        signal: "INT".into(),
        leader_only: false,
    })
    .await
    .unwrap();
    let w = c
        .wait(pb::WaitRequest {
            id,
            timeout_ms: 30_000,
        })
        .await
        .unwrap()
        .into_inner();
    let x = w.process.unwrap().exit.unwrap();
    assert_eq!(x.signal, Some(libc::SIGINT));
}

#[tokio::test]
async fn a_group_signal_leaves_no_child() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let r = c
        .start(pb::StartRequest {
            spec: Some(sh("sleep 1000 & sleep 1000")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let p = r.process.unwrap();
    eventually(10, "both sleeps started", || {
        group(p.pgid).len() == 3 || group(p.pgid).len() == 2
    })
    .await;
    eventually(10, "background sleep exists", || group(p.pgid).len() >= 2).await;
    c.signal(pb::SignalRequest {
        id: p.id.clone(),
        signal: "TERM".into(),
        leader_only: false,
    })
    .await
    .unwrap();
    c.wait(pb::WaitRequest {
        id: p.id,
        timeout_ms: 30_000,
    })
    .await
    .unwrap();
    eventually(10, "the group is empty", || group(p.pgid).is_empty()).await;
}

#[tokio::test]
async fn a_leader_only_signal_spares_the_group() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let r = c
        .start(pb::StartRequest {
            spec: Some(sh("sleep 1000 & wait")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let p = r.process.unwrap();
    eventually(10, "background sleep exists", || group(p.pgid).len() >= 2).await;
    c.signal(pb::SignalRequest {
        id: p.id.clone(),
        signal: "KILL".into(),
        leader_only: true,
    })
    .await
    .unwrap();
    c.wait(pb::WaitRequest {
        id: p.id.clone(),
        timeout_ms: 30_000,
    })
    .await
    .unwrap();
    assert_eq!(group(p.pgid).len(), 1, "the sleep lives on");
    // The group can still be signalled after the leader's exit, while members remain.
    c.signal(pb::SignalRequest {
        id: p.id.clone(),
        signal: "KILL".into(),
        leader_only: false,
    })
    .await
    .unwrap();
    eventually(10, "the group is empty", || group(p.pgid).is_empty()).await;
    let err = c
        .signal(pb::SignalRequest {
            id: p.id,
            signal: "KILL".into(),
            leader_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn an_orphaned_grandchild_is_reaped() {
    let d = Daemon::with_args(&["--drain-ms", "200"]).await;
    let mut c = d.c().await;
    // The grandchild outlives sh, is reparented to the daemon (subreaper), then exits.
    let got = run(&mut c, sh("sleep 0.5 >/dev/null 2>&1 & echo $!")).await;
    let pid: u32 = String::from_utf8(got.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually(20, "the grandchild is gone, not a zombie", || !exists(pid)).await;
}

#[tokio::test]
async fn a_background_child_holding_stdout_cannot_hold_the_exit() {
    let d = Daemon::with_args(&["--drain-ms", "300"]).await;
    let mut c = d.c().await;
    let got = run(&mut c, sh("sleep 1000 & echo started")).await;
    assert_eq!(got.stdout, b"started\n");
    let x = got.exit.unwrap();
    assert_eq!(x.exit_code, Some(0));
    assert!(x.output_drain_timed_out);
    // Output that ended in time is not marked.
    let x = run(&mut c, sh("echo quick")).await.exit.unwrap();
    assert!(!x.output_drain_timed_out);
}

#[tokio::test]
async fn a_retried_start_with_one_request_id_runs_once() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("count");
    let script = format!("echo run >> {}", file.display());
    let req = || pb::StartRequest {
        spec: Some(sh(&script)),
        request_id: "req-1".into(),
        wait_timeout_ms: 10_000,
        ..Default::default()
    };
    let a = c.start(req()).await.unwrap().into_inner().process.unwrap();
    let b = c.start(req()).await.unwrap().into_inner().process.unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "run\n");
    // The same id with another command is refused rather than silently answered.
    let mut other = req();
    other.spec = Some(sh("true"));
    assert_eq!(
        c.start(other).await.unwrap_err().code(),
        tonic::Code::AlreadyExists
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_with_one_name_or_request_id_start_one_process() {
    let d = Daemon::start().await;
    let c = d.c().await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("count");
    let script = format!("echo run >> {}; sleep 100", file.display());
    // 16 at once with one name: one wins, the others are told the name is taken.
    let starts = (0..16).map(|_| {
        let mut c = c.clone();
        let mut spec = sh(&script);
        spec.name = "only".into();
        tokio::spawn(async move {
            c.start(pb::StartRequest {
                spec: Some(spec),
                ..Default::default()
            })
            .await
        })
    });
    let results: Vec<_> = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e.code() == tonic::Code::AlreadyExists));
    // 16 at once with one request id: one process; every answer is it, or "under way".
    let starts = (0..16).map(|_| {
        let mut c = c.clone();
        let spec = sh(&script);
        tokio::spawn(async move {
            c.start(pb::StartRequest {
                spec: Some(spec),
                request_id: "req-once".into(),
                ..Default::default()
            })
            .await
        })
    });
    let results: Vec<_> = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let ids: std::collections::HashSet<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.get_ref().process.as_ref().unwrap().id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e.code() == tonic::Code::Unavailable));
    eventually(10, "both ran", || {
        std::fs::read_to_string(&file).is_ok_and(|s| s == "run\nrun\n")
    })
    .await;
}

#[tokio::test]
async fn a_foreground_timeout_returns_a_handle_and_the_process_runs_on() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let r = c
        .start(pb::StartRequest {
            spec: Some(sh("sleep 1; echo done")),
            wait_timeout_ms: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.timed_out);
    let p = r.process.unwrap();
    assert_eq!(p.state, pb::ProcessState::Running as i32);
    let w = c
        .wait(pb::WaitRequest {
            id: p.id.clone(),
            timeout_ms: 30_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!w.timed_out);
    assert_eq!(w.process.unwrap().exit.unwrap().exit_code, Some(0));
    assert_eq!(connect(&mut c, &p.id, 0).await.stdout, b"done\n");
}

#[tokio::test]
async fn wait_with_a_timeout_reports_it() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let id = start(&mut c, spec(&["sleep", "1000"])).await;
    let w = c
        .wait(pb::WaitRequest {
            id: id.clone(),
            timeout_ms: 50,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(w.timed_out);
    assert_eq!(w.process.unwrap().state, pb::ProcessState::Running as i32);
    c.remove(pb::RemoveRequest {
        id: id.clone(),
        force: true,
    })
    .await
    .unwrap();
    let err = c.get(pb::GetRequest { id }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn names_tags_list_and_remove() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let mut s = spec(&["sleep", "1000"]);
    s.name = "web".into();
    s.tags.insert("role".into(), "server".into());
    let id = start(&mut c, s.clone()).await;
    assert_eq!(
        c.start(pb::StartRequest {
            spec: Some(s),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .code(),
        tonic::Code::AlreadyExists
    );
    run(&mut c, spec(&["true"])).await;
    let by_name = c
        .get(pb::GetRequest { id: "web".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_name.process.unwrap().id, id);
    let tagged = c
        .list(pb::ListRequest {
            tags: [("role".to_string(), "server".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tagged.processes.len(), 1);
    let exited = c
        .list(pb::ListRequest {
            state: pb::ProcessState::Exited as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exited.processes.len(), 1);
    let err = c
        .remove(pb::RemoveRequest {
            id: "web".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("force"), "{}", err.message());
    c.remove(pb::RemoveRequest {
        id: "web".into(),
        force: true,
    })
    .await
    .unwrap();
    assert_eq!(
        c.list(pb::ListRequest::default())
            .await
            .unwrap()
            .into_inner()
            .processes
            .len(),
        1
    );
}

#[tokio::test]
async fn limits_on_running_and_retained_processes() {
    let d = Daemon::with_args(&["--max-running", "2", "--max-exited", "2"]).await;
    let mut c = d.c().await;
    let a = start(&mut c, spec(&["sleep", "1000"])).await;
    let _b = start(&mut c, spec(&["sleep", "1000"])).await;
    let err = c
        .start(pb::StartRequest {
            spec: Some(spec(&["true"])),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    c.remove(pb::RemoveRequest { id: a, force: true })
        .await
        .unwrap();

    let first = run(&mut c, spec(&["true"])).await.started.unwrap().id;
    run(&mut c, spec(&["true"])).await;
    run(&mut c, spec(&["true"])).await;
    // The oldest exited process was evicted to keep two.
    let err = c.get(pb::GetRequest { id: first }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let exited = c
        .list(pb::ListRequest {
            state: pb::ProcessState::Exited as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exited.processes.len(), 2);
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test]
async fn limits_on_open_streams_and_agents() {
    let d = Daemon::with_args(&["--max-streams", "2", "--max-agents", "1"]).await;
    let mut c = d.c().await;
    let id = start(&mut c, spec(&["sleep", "1000"])).await;
    let follow = || pb::ConnectRequest {
        id: id.clone(),
        ..Default::default()
    };
    let one = c.connect(follow()).await.unwrap();
    let two = c.connect(follow()).await.unwrap();
    let err = c.connect(follow()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.message().contains("--max-streams"), "{}", err.message());
    drop(one);
    // The permit returns once the server notices the client left.
    let mut admitted = false;
    for _ in 0..200 {
        if c.connect(follow()).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a closed stream frees its place");
    drop(two);

    let mut a = d.agents().await;
    let agent = |name: &str| pb::SpawnRequest {
        spec: Some(pb::AgentSpec {
            name: name.into(),
            argv: vec!["sleep".into(), "1000".into()],
            ..Default::default()
        }),
    };
    a.spawn(agent("one")).await.unwrap();
    let err = a.spawn(agent("two")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
}
