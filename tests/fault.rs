//! The fault suite: nothing a daemon starts escapes — not through `setsid`, a double fork, a
//! TERM-ignoring tree, a leader that exits normally, or a `kill -9` of the daemon. Counts decide,
//! never timings: every process a daemon started carries its `TEND_ORIGIN` marker, and the
//! tests count the live carriers of one daemon's marker.
use tend::pb;
use tend::supervisor::records;

use crate::helper::*;

/// The live processes carrying the marker of the daemon `pid` (`<boot id>:<pid>:<start>:<id>`).
fn carriers(pid: u32) -> Vec<u32> {
    let want = format!("{pid}:");
    records::marked(|m| {
        m.split_once(':')
            .is_some_and(|(_, rest)| rest.starts_with(&want))
    })
}

/// Start `count` copies of `script`; returns once each has at least `per_tree` marked processes.
async fn trees(d: &Daemon, count: usize, script: &str, per_tree: usize) {
    let mut c = d.c().await;
    let already = carriers(d.pid()).len();
    for _ in 0..count {
        start(&mut c, sh(script)).await;
    }
    let want = already + count * per_tree;
    eventually(30, &format!("{want} processes running"), || {
        carriers(d.pid()).len() >= want
    })
    .await;
}

#[tokio::test]
async fn a_clean_shutdown_leaves_nothing_setsid_or_term_ignoring() {
    let mut d = Daemon::start().await;
    // 3 processes each: sh, a setsid'd sleep (its own session), and sleep.
    trees(&d, 10, "setsid sleep 1000 & sleep 1000 & wait", 3).await;
    // TERM-ignoring trees with a double fork: sh, and a setsid'd sh that ignores TERM too.
    trees(
        &d,
        10,
        "trap '' TERM; setsid sh -c \"trap '' TERM; sleep 1000 & wait\" & wait",
        3,
    )
    .await;
    let pid = d.pid();
    let before = carriers(pid).len();
    assert!(before >= 60, "{before}");
    assert!(d.terminate().success());
    let left = carriers(pid);
    assert!(
        left.is_empty(),
        "{} of {before} processes survived: {left:?}",
        left.len()
    );
    assert_eq!(
        std::fs::read_dir(d.dir.join("pgids")).unwrap().count(),
        0,
        "a clean shutdown leaves no record"
    );
}

#[tokio::test]
async fn readiness_probe_commands_die_with_a_shutdown_and_in_the_sweep_after_a_crash() {
    // Each process's exec probe hangs (a TERM-ignoring setsid'd sleep it leaves behind, and a
    // sleep it waits on), far within its 10-minute timeout.
    let probe = |spec: pb::ProcessSpec| pb::ProcessSpec {
        readiness: Some(pb::ReadinessProbe {
            check: Some(pb::readiness_probe::Check::Exec(pb::ExecProbe {
                argv: vec![
                    "sh".into(),
                    "-c".into(),
                    "trap '' TERM; setsid sleep 1002 & sleep 1003".into(),
                ],
            })),
            timeout_ms: 600_000,
            ..Default::default()
        }),
        ..spec
    };
    for crash in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let mut d = Daemon::spawn_in(&dir, &[]).await;
        let mut c = d.c().await;
        for _ in 0..5 {
            start(&mut c, probe(sh("sleep 1000"))).await;
        }
        let pid = d.pid();
        // Per process: its sleep, and the probe's sh, setsid'd sleep and sleep.
        eventually(30, "20 processes running", || carriers(pid).len() >= 20).await;
        let before = carriers(pid);
        drop(c);
        if crash {
            d.kill9();
            assert_eq!(carriers(pid).len(), before.len(), "kill -9 leaves them");
            let _d2 = Daemon::spawn_in(&dir, &[]).await;
            eventually(10, "the sweep kills them all", || carriers(pid).is_empty()).await;
        } else {
            assert!(d.terminate().success());
            let left = carriers(pid);
            assert!(
                left.is_empty(),
                "{} of {} survived: {left:?}",
                left.len(),
                before.len()
            );
        }
    }
}

#[tokio::test]
async fn a_setsid_child_of_a_finished_run_dies_in_the_sweep_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut d = Daemon::spawn_in(&dir, &[]).await;
    let mut c = d.c().await;
    let got = run(
        &mut c,
        sh("setsid sleep 1001 >/dev/null 2>&1 </dev/null & echo started"),
    )
    .await;
    assert_eq!(got.exit.unwrap().exit_code, Some(0));
    let pid = d.pid();
    eventually(10, "the setsid sleep runs", || carriers(pid).len() == 1).await;
    let orphan = carriers(pid)[0];
    drop(c);
    d.kill9();
    assert!(alive(orphan), "kill -9 of the daemon leaves it running");
    let _d2 = Daemon::spawn_in(&dir, &[]).await;
    eventually(10, "the orphan is killed by the sweep", || !alive(orphan)).await;
    assert!(carriers(pid).is_empty());
}

#[tokio::test]
async fn the_sweep_after_a_crash_kills_a_hundred_trees_and_serves_meanwhile() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut d = Daemon::spawn_in(&dir, &[]).await;
    // 4 processes each, one of them setsid'd, one in a PTY tree.
    trees(
        &d,
        90,
        "sleep 1000 & setsid sleep 1000 & sleep 1000 & wait",
        4,
    )
    .await;
    let mut c = d.c().await;
    for _ in 0..10 {
        let mut s = sh("sleep 1000 & setsid sleep 1000 & sleep 1000 & wait");
        s.pty = Some(pb::PtySize { rows: 24, cols: 80 });
        start(&mut c, s).await;
    }
    drop(c);
    let pid = d.pid();
    eventually(30, "400 processes", || carriers(pid).len() >= 400).await;
    d.kill9();
    // The PTY trees lose their terminal with the daemon; the rest live on.
    let orphans = carriers(pid).len();
    assert!(orphans >= 300, "{orphans}");
    let d2 = Daemon::spawn_in(&dir, &[]).await;
    // Serving while it sweeps: a new process runs, and is not touched by the sweep.
    let mut c2 = d2.c().await;
    let fresh = start(&mut c2, spec(&["sleep", "1000"])).await;
    eventually(30, "every orphan killed", || carriers(pid).is_empty()).await;
    let info = c2
        .get(pb::GetRequest { id: fresh })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap();
    assert!(
        info.exit.is_none(),
        "the sweep left the new daemon's process alone"
    );
}

#[tokio::test]
async fn a_stop_kills_what_left_the_group() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    // A Run whose client goes away is stopped: its setsid'd child goes with it.
    let mut events = c
        .run(pb::RunRequest {
            spec: Some(sh("setsid sleep 1002 & echo up; sleep 1000")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Collected::default();
    while got.stdout.is_empty() {
        use tokio_stream::StreamExt;
        got.add(events.next().await.unwrap().unwrap().event);
    }
    eventually(10, "both sleeps run", || carriers(d.pid()).len() == 3).await;
    drop(events);
    eventually(10, "the whole tree is gone", || {
        carriers(d.pid()).is_empty()
    })
    .await;
    // Remove with force does the same.
    let id2 = start(&mut c, sh("setsid sleep 1003 & sleep 1000")).await;
    eventually(10, "both sleeps run", || carriers(d.pid()).len() == 3).await;
    c.remove(pb::RemoveRequest {
        id: id2,
        force: true,
    })
    .await
    .unwrap();
    eventually(10, "the whole tree is gone", || {
        carriers(d.pid()).is_empty()
    })
    .await;
}

/// A raw HTTP/2 connection to the daemon's socket, and the task that drives it (aborting it
/// closes the connection).
async fn h2_conn(
    d: &Daemon,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<()>,
) {
    try_h2_conn(d).await.expect("an HTTP/2 connection")
}

/// `h2_conn`, or `None` when the daemon closed the connection at once.
async fn try_h2_conn(
    d: &Daemon,
) -> Option<(
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<()>,
)> {
    let io = tokio::net::UnixStream::connect(d.socket()).await.ok()?;
    let (client, conn) = h2::client::handshake(io).await.ok()?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Some((client, task))
}

async fn h2_client(d: &Daemon) -> h2::client::SendRequest<bytes::Bytes> {
    h2_conn(d).await.0
}

/// A gRPC request's headers, without a body yet.
fn grpc_request(method: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// The grpc-status of a response (from its headers, or its trailers).
async fn grpc_status(resp: h2::client::ResponseFuture) -> Option<String> {
    let resp = resp.await.ok()?;
    if let Some(s) = resp.headers().get("grpc-status") {
        return Some(s.to_str().unwrap().to_string());
    }
    let mut body = resp.into_body();
    while let Some(d) = body.data().await {
        let _ = d;
    }
    let trailers = body.trailers().await.ok()??;
    Some(trailers.get("grpc-status")?.to_str().unwrap().to_string())
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn calls_that_send_no_message_time_out_and_an_attach_without_open_too() {
    let d = Daemon::with_args(&["--first-message-ms", "300"]).await;
    // A unary call that sends its headers and nothing more.
    let mut client = h2_client(&d).await.ready().await.unwrap();
    let (resp, _body) = client
        .send_request(grpc_request("/tend.v1.ProcessService/List"), false)
        .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), grpc_status(resp))
        .await
        .expect("the call ends");
    assert_eq!(status.as_deref(), Some("4"), "DeadlineExceeded");
    // An Attach that never opens.
    let mut c = d.c().await;
    let (_tx, rx) = tokio::sync::mpsc::channel::<pb::AttachRequest>(1);
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        c.attach(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .expect("the call ends");
    let err = r.expect_err("no open");
    assert_eq!(
        err.code(),
        tonic::Code::DeadlineExceeded,
        "{}",
        err.message()
    );
    assert!(err.message().contains("open"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_header_only_calls_is_bounded() {
    // 40 connections × 1000 calls that never send a message: --max-calls of them are held (until
    // the first-message deadline, far off here), the rest are refused at once, and the daemon
    // stays small.
    let d = Daemon::with_args(&["--max-calls", "2000", "--first-message-ms", "600000"]).await;
    let before = rss_kib(d.pid());
    let finished = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Option<String>>::new()));
    let mut conns = Vec::new();
    for _ in 0..40 {
        let (client, task) = h2_conn(&d).await;
        let mut client = client.ready().await.unwrap();
        let mut bodies = Vec::new();
        for _ in 0..1000 {
            let (resp, body) = client
                .send_request(grpc_request("/tend.v1.ProcessService/Get"), false)
                .unwrap();
            bodies.push(body);
            let finished = finished.clone();
            tokio::spawn(async move {
                let status = grpc_status(resp).await;
                finished.lock().unwrap().push(status);
            });
            client = client.ready().await.unwrap();
        }
        conns.push((client, bodies, task));
    }
    let count = || finished.lock().unwrap().len();
    eventually(120, "38,000 calls refused", || count() >= 38_000).await;
    let peak = rss_kib(d.pid());
    // The held ones stay held: no more answers come.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(count(), 38_000, "exactly --max-calls are held at once");
    assert!(
        finished
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.as_deref() == Some("8")),
        "the refused calls are ResourceExhausted"
    );
    // An ordinary call meanwhile is refused too, at once, not hung.
    let mut c = d.c().await;
    let e = c.list(pb::ListRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{}", e.message());
    let grown = peak.saturating_sub(before);
    eprintln!("flood: RSS {before} KiB before, {peak} KiB with 40,000 header-only calls open");
    assert!(
        grown < 200 * 1024,
        "the daemon grew by {grown} KiB under 40,000 header-only calls (from {before} KiB)"
    );
    // The clients go: their calls no longer count, and the daemon serves again.
    for (_, _, task) in &conns {
        task.abort();
    }
    drop(conns);
    let mut served = false;
    for _ in 0..500 {
        if c.list(pb::ListRequest::default()).await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        served,
        "calls are admitted again once the flood's connections closed"
    );
}

#[tokio::test]
async fn health_says_not_serving_from_the_start_of_shutdown() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    // The fixture gives processes 1 s from SIGTERM to SIGKILL.
    let mut d = Daemon::start().await;
    let ch = tend::cli::connect::channel(&tend::cli::connect::Addr::Unix(d.socket()))
        .await
        .unwrap();
    let mut health = HealthClient::new(ch);
    let status = |r: tonic::Response<tonic_health::pb::HealthCheckResponse>| r.into_inner().status;
    let check = HealthCheckRequest::default();
    assert_eq!(
        status(health.check(check.clone()).await.unwrap()),
        ServingStatus::Serving as i32
    );
    // A process that ignores SIGTERM keeps the shutdown in its grace period.
    let mut c = d.c().await;
    start(&mut c, sh("trap '' TERM; echo up; sleep 1000 & wait")).await;
    eventually(10, "the process runs", || carriers(d.pid()).len() == 2).await;
    // SAFETY: kill(2) of the daemon this test started.
    unsafe { libc::kill(d.pid() as i32, libc::SIGTERM) };
    let mut seen = None;
    for _ in 0..100 {
        match health.check(check.clone()).await.map(status) {
            Ok(s) if s == ServingStatus::Serving as i32 => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            Ok(s) => {
                seen = Some(s);
                break;
            }
            Err(e) => panic!("health went away before saying NOT_SERVING: {e}"),
        }
    }
    assert_eq!(seen, Some(ServingStatus::NotServing as i32));
    assert!(d.terminate().success());
    assert!(carriers(d.pid()).is_empty());
}

#[tokio::test]
async fn connections_beyond_the_listeners_bound_are_refused() {
    let d = Daemon::with_args(&["--max-connections", "2"]).await;
    // A health check over a raw connection: whether the connection is served.
    async fn served(client: h2::client::SendRequest<bytes::Bytes>) -> bool {
        let Ok(mut client) = client.ready().await else {
            return false;
        };
        let Ok((resp, mut body)) =
            client.send_request(grpc_request("/grpc.health.v1.Health/Check"), false)
        else {
            return false;
        };
        let _ = body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true);
        tokio::time::timeout(std::time::Duration::from_secs(10), grpc_status(resp))
            .await
            .ok()
            .flatten()
            .as_deref()
            == Some("0")
    }
    // A connection that is served, retrying while the fixture's own readiness connection
    // is still closing.
    async fn admitted(
        d: &Daemon,
    ) -> (
        h2::client::SendRequest<bytes::Bytes>,
        tokio::task::JoinHandle<()>,
    ) {
        for _ in 0..100 {
            if let Some((c, t)) = try_h2_conn(d).await {
                if served(c.clone()).await {
                    return (c, t);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no connection was served");
    }
    let (a, ta) = admitted(&d).await;
    let (b, _tb) = admitted(&d).await;
    assert!(served(b.clone()).await);
    let third = match try_h2_conn(&d).await {
        Some((c, _tc)) => served(c).await,
        None => false,
    };
    assert!(!third, "a third connection is closed at once");
    // One goes: a new connection is served again.
    ta.abort();
    drop(a);
    let (e, _te) = admitted(&d).await;
    assert!(served(e).await, "a slot is free once a connection closed");
}
