//! The daemon itself: socket hygiene, TCP auth, shutdown, and the sweep after a crash.
use std::os::unix::fs::PermissionsExt;

use tend::cli::connect::{self, Addr};
use tend::pb;

use crate::helper::*;

#[tokio::test]
async fn the_socket_is_private_and_a_second_daemon_is_refused() {
    let d = Daemon::start().await;
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tend"))
        .args(["serve", "--state-dir"])
        .arg(&d.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another tend daemon answers"), "{err}");
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    std::fs::create_dir_all(&dir).unwrap();
    // A socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(dir.join("tend.sock")).unwrap());
    let d = Daemon::spawn_in(&dir, &[]).await;
    let mut c = d.c().await;
    assert_eq!(
        run(&mut c, spec(&["true"])).await.exit.unwrap().exit_code,
        Some(0)
    );
}

#[tokio::test]
async fn tcp_requires_the_bearer_token() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::with_args(&["--listen", &format!("tcp://{addr}")]).await;
    let token_path = d.dir.join("token");
    assert_eq!(
        std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let token = std::fs::read_to_string(&token_path).unwrap();

    let tcp = Addr::Tcp(addr.clone());
    let mut none = pb::process_service_client::ProcessServiceClient::new(
        connect::channel(&tcp).await.unwrap(),
    );
    let err = none.list(pb::ListRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let mut wrong = connect::process_client(&tcp, Some("not-the-token-at-all".into()))
        .await
        .unwrap();
    let err = wrong.list(pb::ListRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let mut right = connect::process_client(&tcp, Some(token)).await.unwrap();
    let got = run(&mut right, spec(&["echo", "over tcp"])).await;
    assert_eq!(got.stdout, b"over tcp\n");
}

#[tokio::test]
async fn sigterm_stops_every_process_even_one_ignoring_it() {
    let mut d = Daemon::start().await;
    let mut c = d.c().await;
    let stubborn = c
        .start(pb::StartRequest {
            spec: Some(sh("trap '' TERM; sleep 1000 & sleep 1000")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap();
    let plain = c
        .start(pb::StartRequest {
            spec: Some(spec(&["sleep", "1000"])),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap();
    eventually(10, "the stubborn group started", || {
        group(stubborn.pgid).len() >= 2
    })
    .await;
    drop(c);
    let status = d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(group(stubborn.pgid).is_empty());
    assert!(group(plain.pgid).is_empty());
    assert!(!d.socket().exists(), "the socket is removed on shutdown");
    assert_eq!(std::fs::read_dir(d.dir.join("pgids")).unwrap().count(), 0);
}

#[tokio::test]
async fn a_restart_after_sigkill_sweeps_the_old_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut d = Daemon::spawn_in(&dir, &[]).await;
    let mut c = d.c().await;
    let mut pids = Vec::new();
    let mut pty = spec(&["sleep", "1000"]);
    pty.pty = Some(pb::PtySize { rows: 24, cols: 80 });
    for s in [spec(&["sleep", "1000"]), sh("sleep 1000 & sleep 1000"), pty] {
        let p = c
            .start(pb::StartRequest {
                spec: Some(s),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .process
            .unwrap();
        pids.push(p.pgid);
    }
    eventually(10, "the background sleep started", || {
        group(pids[1]).len() >= 2
    })
    .await;
    // A child that left its group (setsid) is found by the marker in its environment.
    let escaped = start(&mut c, sh("setsid sleep 1000 & echo $!; sleep 1000")).await;
    let mut escapee = 0u32;
    eventually(10, "the escapee's pid is printed", || {
        let (out, _) = std::process::Command::new(env!("CARGO_BIN_EXE_tend"))
            .arg("--connect")
            .arg(format!("unix://{}", d.socket().display()))
            .args(["logs", &escaped])
            .output()
            .map(|o| (o.stdout, o.status))
            .unwrap();
        escapee = String::from_utf8_lossy(&out).trim().parse().unwrap_or(0);
        escapee != 0
    })
    .await;
    let mut members: Vec<u32> = pids.iter().flat_map(|p| group(*p)).collect();
    members.push(escapee);
    // The PTY session gets SIGHUP when the daemon's master closes; pipe groups live on.
    let mut orphans: Vec<u32> = pids[..2].iter().flat_map(|p| group(*p)).collect();
    orphans.push(escapee);
    drop(c);
    d.kill9();
    assert!(
        orphans.iter().all(|p| alive(*p)),
        "kill -9 of the daemon leaves its processes"
    );
    let _d2 = Daemon::spawn_in(&dir, &[]).await;
    eventually(10, "the old processes are gone", || {
        members.iter().all(|p| !alive(*p))
    })
    .await;
    // The sweep runs beside the new daemon; in the end only the new daemon's own record stays.
    eventually(10, "the old records are gone", || {
        let names: Vec<String> = std::fs::read_dir(dir.join("pgids"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.len() == 1 && names[0].starts_with(&format!("daemon.{}.", _d2.pid()))
    })
    .await;
}

#[tokio::test]
async fn a_token_file_others_can_read_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    for (token, mode, want) in [
        ("0123456789abcdef0123", 0o644, "chmod 600"),
        ("abc", 0o600, "at least 16"),
    ] {
        let path = dir.join("token");
        std::fs::write(&path, token).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tend"))
            .args(["serve", "--listen", "tcp://127.0.0.1:0", "--state-dir"])
            .arg(&dir)
            .env_remove("TEND_TOKEN")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "started with a {mode:o} token file {token:?}"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
    }
}

#[tokio::test]
async fn the_cli_says_permission_denied_for_another_users_socket() {
    if !std::path::Path::new("/usr/bin/setpriv").exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "setpriv (util-linux) is needed to run the CLI as another user"
        );
        eprintln!("SKIP: no setpriv to run the CLI as another user");
        return;
    }
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: not root, so no other user to become");
        return;
    }
    let d = Daemon::start().await;
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_tend"))
        .arg("--connect")
        .arg(d.socket())
        .arg("ps")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied"), "{err}");
}
