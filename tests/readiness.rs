//! Readiness probes: each kind reaching READY (TCP, HTTP, a log line, a command), a process
//! exiting first giving FAILED with its exit and output, a timeout, the `ready` event of a Run
//! stream placed after the output written before it, READY on Watch, and the CLI's
//! `tend run --detach --ready-…` and `tend wait --ready`.
use std::process::{Command, Stdio};
use std::time::Duration;

use tend::cli::connect::ProcessClient;
use tend::pb;
use tend::pb::readiness_probe::Check;

use crate::helper::*;

/// A TCP port nothing listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn probe(check: Check) -> pb::ReadinessProbe {
    pb::ReadinessProbe {
        check: Some(check),
        interval_ms: 50,
        ..Default::default()
    }
}

fn with_probe(mut spec: pb::ProcessSpec, check: Check) -> pb::ProcessSpec {
    spec.readiness = Some(probe(check));
    spec
}

async fn wait_ready(c: &mut ProcessClient, id: &str, timeout_ms: u64) -> pb::WaitReadyResponse {
    c.wait_ready(pb::WaitReadyRequest {
        id: id.into(),
        timeout_ms,
        output: None,
    })
    .await
    .unwrap()
    .into_inner()
}

fn readiness(r: &pb::WaitReadyResponse) -> pb::Readiness {
    r.process.as_ref().unwrap().readiness.clone().unwrap()
}

async fn assert_ready(c: &mut ProcessClient, id: &str) -> pb::Readiness {
    let r = wait_ready(c, id, 20_000).await;
    assert_eq!(r.result, pb::WaitReadyResult::Ready as i32, "{r:?}");
    let ready = readiness(&r);
    assert_eq!(ready.state, pb::ReadinessState::Ready as i32, "{ready:?}");
    assert!(ready.checks >= 1 && ready.ready_at_unix_ms > 0, "{ready:?}");
    assert!(ready.last_error.is_empty(), "{ready:?}");
    // Get says the same.
    let got = c
        .get(pb::GetRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap()
        .readiness
        .unwrap();
    assert_eq!(got.state, pb::ReadinessState::Ready as i32);
    ready
}

#[tokio::test]
async fn each_probe_kind_reaches_ready() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let dir = tempfile::tempdir().unwrap();

    // TCP: a server that starts listening after a while.
    let port = free_port();
    let tcp = start(
        &mut c,
        with_probe(
            sh(&format!(
                "sleep 0.3; exec python3 -m http.server {port} --bind 127.0.0.1"
            )),
            Check::Tcp(pb::TcpProbe {
                port: port.into(),
                host: String::new(),
            }),
        ),
    )
    .await;
    let ready = assert_ready(&mut c, &tcp).await;
    assert!(ready.ready_after_ms >= 300, "{ready:?}");
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("ready means it accepts");

    // HTTP: 404 is not ready; the same server once the path exists is.
    let port = free_port();
    let mut web = sh(&format!(
        "exec python3 -m http.server {port} --bind 127.0.0.1"
    ));
    web.cwd = dir.path().display().to_string();
    let http = start(
        &mut c,
        with_probe(
            web,
            Check::Http(pb::HttpProbe {
                port: port.into(),
                host: String::new(),
                path: "/up.txt".into(),
            }),
        ),
    )
    .await;
    let r = wait_ready(&mut c, &http, 1500).await;
    assert_eq!(r.result, pb::WaitReadyResult::TimedOut as i32, "{r:?}");
    let why = readiness(&r).last_error;
    assert!(why.contains("404") && why.contains("/up.txt"), "{why}");
    std::fs::write(dir.path().join("up.txt"), "up").unwrap();
    assert_ready(&mut c, &http).await;

    // A log line, on either stream.
    let log = start(
        &mut c,
        with_probe(
            sh("echo starting; sleep 0.2; echo 'listening on port 4321' >&2; sleep 100"),
            Check::Log(pb::LogProbe {
                pattern: r"listening on port \d+".into(),
                stream: 0,
            }),
        ),
    )
    .await;
    let ready = assert_ready(&mut c, &log).await;
    assert!(ready.checks >= 2, "lines read: {ready:?}");

    // A command, run in the process's working directory and with its variables.
    let mut spec = sh("sleep 0.3; touch flag; sleep 100");
    spec.cwd = dir.path().display().to_string();
    spec.env.insert("FLAG".into(), "flag".into());
    let exec = start(
        &mut c,
        with_probe(
            spec,
            Check::Exec(pb::ExecProbe {
                argv: vec!["sh".into(), "-c".into(), "test -e \"$FLAG\"".into()],
            }),
        ),
    )
    .await;
    let ready = assert_ready(&mut c, &exec).await;
    assert!(ready.checks >= 2, "it failed before the flag: {ready:?}");

    for id in [tcp, http, log, exec] {
        c.remove(pb::RemoveRequest { id, force: true })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn exiting_first_is_failed_with_the_exit_and_output_and_waiting_too_long_times_out() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let port = free_port();
    let tcp = || {
        Check::Tcp(pb::TcpProbe {
            port: port.into(),
            host: String::new(),
        })
    };
    let failing = start(
        &mut c,
        with_probe(sh("echo 'cannot bind' >&2; exit 7"), tcp()),
    )
    .await;
    let r = wait_ready(&mut c, &failing, 20_000).await;
    assert_eq!(r.result, pb::WaitReadyResult::Failed as i32, "{r:?}");
    let p = r.process.as_ref().unwrap();
    assert_eq!(p.exit.as_ref().unwrap().exit_code, Some(7));
    assert_eq!(
        p.readiness.as_ref().unwrap().state,
        pb::ReadinessState::Failed as i32
    );
    let stderr = r
        .output
        .iter()
        .find(|o| o.stream == pb::Stream::Stderr as i32)
        .unwrap();
    assert!(stderr.text.contains("cannot bind"), "{stderr:?}");

    // Not ready in time: TIMED_OUT, the last check's error, and the process runs on.
    let slow = start(&mut c, with_probe(sh("sleep 100"), tcp())).await;
    let r = wait_ready(&mut c, &slow, 500).await;
    assert_eq!(r.result, pb::WaitReadyResult::TimedOut as i32, "{r:?}");
    let state = readiness(&r);
    assert_eq!(state.state, pb::ReadinessState::Pending as i32);
    assert!(state.checks >= 2, "{state:?}");
    assert!(
        state.last_error.contains(&format!("localhost:{port}"))
            && state.last_error.contains("refused"),
        "{state:?}"
    );
    assert_eq!(
        r.process.unwrap().state,
        pb::ProcessState::Running as i32,
        "it runs on"
    );

    // A log probe whose line never comes fails at the exit, having read every line.
    let quiet = start(
        &mut c,
        with_probe(
            sh("echo one; echo two"),
            Check::Log(pb::LogProbe {
                pattern: "three".into(),
                stream: 0,
            }),
        ),
    )
    .await;
    let r = wait_ready(&mut c, &quiet, 20_000).await;
    assert_eq!(r.result, pb::WaitReadyResult::Failed as i32, "{r:?}");
    assert_eq!(readiness(&r).checks, 2);

    // Errors a person can act on.
    let plain = start(&mut c, sh("sleep 100")).await;
    let err = c
        .wait_ready(pb::WaitReadyRequest {
            id: plain.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("spec.readiness"), "{err:?}");
    let err = c
        .wait_ready(pb::WaitReadyRequest {
            id: "p-999999".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let err = c
        .start(pb::StartRequest {
            spec: Some(with_probe(
                sh("true"),
                Check::Log(pb::LogProbe {
                    pattern: "(unclosed".into(),
                    stream: 0,
                }),
            )),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().starts_with("spec.readiness.log.pattern"),
        "{err:?}"
    );
    for id in [slow, plain] {
        c.remove(pb::RemoveRequest { id, force: true })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_ready_event_follows_the_output_before_it_and_watch_says_ready() {
    use tokio_stream::StreamExt;
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let mut watch = c
        .watch(pb::ProcessServiceWatchRequest {
            tags: [("app".to_string(), "web".to_string())].into(),
        })
        .await
        .unwrap()
        .into_inner();

    // Two matching lines are needed; the event comes after the second and before what follows.
    let mut spec = with_probe(
        sh("echo boot; echo 'ready 1'; echo 'ready 2'; sleep 0.5; echo after"),
        Check::Log(pb::LogProbe {
            pattern: "^ready".into(),
            stream: pb::Stream::Stdout as i32,
        }),
    );
    spec.readiness.as_mut().unwrap().success_threshold = 2;
    spec.tags.insert("app".into(), "web".into());
    let out = run(&mut c, spec).await;
    assert_eq!(out.stdout, b"boot\nready 1\nready 2\nafter\n");
    let (event, before) = out.ready.expect("a ready event");
    assert_eq!(before, "boot\nready 1\nready 2\n".len(), "{event:?}");
    let stdout = event
        .offsets
        .iter()
        .find(|s| s.stream == pb::Stream::Stdout as i32)
        .unwrap();
    assert_eq!(stdout.total_bytes, before as u64, "{event:?}");
    assert_eq!(
        event.readiness.unwrap().state,
        pb::ReadinessState::Ready as i32
    );

    // A stream connecting later replays the output with the event in the same place.
    let id = out.started.unwrap().id;
    let replay = connect(&mut c, &id, 0).await;
    assert_eq!(replay.ready.unwrap().1, before);

    // Watch: STARTED, READY, EXITED of the tagged process.
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("an event")
            .unwrap()
            .unwrap();
        assert_eq!(ev.process.as_ref().unwrap().id, id);
        kinds.push(ev.kind);
    }
    assert_eq!(
        kinds,
        [
            pb::ProcessEventKind::Started as i32,
            pb::ProcessEventKind::Ready as i32,
            pb::ProcessEventKind::Exited as i32
        ]
    );
}

fn tend(d: &Daemon, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tend"))
        .arg("--connect")
        .arg(format!("unix://{}", d.socket().display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tend")
}

#[tokio::test]
async fn the_cli_returns_once_ready_and_says_why_not() {
    let d = Daemon::start().await;
    let port = free_port().to_string();
    let server = format!("sleep 0.3; exec python3 -m http.server {port} --bind 127.0.0.1");
    let out = tend(
        &d,
        &[
            "run",
            "--detach",
            "--ready-http",
            &port,
            "--",
            "sh",
            "-c",
            &server,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(id.starts_with("p-"), "{id}");
    std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()))
        .expect("returned once ready");
    let out = tend(&d, &["wait", "--ready", &id]);
    assert!(out.status.success(), "ready already: {out:?}");

    let out = tend(
        &d,
        &[
            "run",
            "--detach",
            "--ready-log",
            "never",
            "--",
            "sh",
            "-c",
            "echo boom >&2; exit 5",
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exited before it was ready (exit code 5)"),
        "{err}"
    );
    assert!(err.contains("boom"), "{err}");

    let out = tend(
        &d,
        &[
            "run",
            "--detach",
            "--ready-cmd",
            "false",
            "--ready-timeout",
            "1",
            "--",
            "sleep",
            "100",
        ],
    );
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("false exited with 1"), "{err}");
    let slow = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = tend(&d, &["wait", "--ready", &slow, "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(124), "{out:?}");

    let out = tend(&d, &["run", "--ready-port", "80", "--", "true"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--ready-… needs --detach: {out:?}"
    );
    tend(&d, &["kill", &id]);
    tend(&d, &["kill", &slow]);
}
