//! PTY processes: a real terminal, its size, resizes, and input echo.
use tend::pb::{self, attach_request::Kind as In};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::helper::*;

fn pty(argv: &[&str], rows: u32, cols: u32) -> pb::ProcessSpec {
    let mut s = spec(argv);
    s.pty = Some(pb::PtySize { rows, cols });
    s
}

#[tokio::test]
async fn tty_reports_a_terminal() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let got = run(&mut c, pty(&["tty"], 24, 80)).await;
    let out = String::from_utf8_lossy(&got.pty);
    assert!(out.starts_with("/dev/pts/"), "{out:?}");
    assert_eq!(got.exit.unwrap().exit_code, Some(0));
    // Without a PTY it is not a terminal.
    let got = run(&mut c, spec(&["tty"])).await;
    assert_eq!(got.exit.unwrap().exit_code, Some(1));
}

#[tokio::test]
async fn stty_sees_the_size_and_a_resize() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let id = start(
        &mut c,
        pty(&["sh", "-c", "stty size; read x; stty size"], 33, 101),
    )
    .await;
    let (tx, rx) = mpsc::channel(8);
    tx.send(pb::AttachRequest {
        kind: Some(In::Open(pb::AttachOpen {
            id: id.clone(),
            from_offset: Some(0),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut events = c
        .attach(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut got = Collected::default();
    while !String::from_utf8_lossy(&got.pty).contains("33 101") {
        got.add(events.next().await.unwrap().unwrap().event);
    }
    tx.send(pb::AttachRequest {
        kind: Some(In::Resize(pb::PtySize {
            rows: 50,
            cols: 132,
        })),
    })
    .await
    .unwrap();
    tx.send(pb::AttachRequest {
        kind: Some(In::Input(b"\n".to_vec())),
    })
    .await
    .unwrap();
    while let Some(ev) = events.next().await {
        got.add(ev.unwrap().event);
    }
    let out = String::from_utf8_lossy(&got.pty);
    assert!(out.contains("50 132"), "{out:?}");
    let info = c
        .get(pb::GetRequest { id })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap();
    assert_eq!(
        info.pty,
        Some(pb::PtySize {
            rows: 50,
            cols: 132
        })
    );
}

#[tokio::test]
async fn typed_input_is_echoed_and_eof_ends_cat() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let id = start(&mut c, pty(&["cat"], 24, 80)).await;
    c.send_input(pb::SendInputRequest {
        id: id.clone(),
        data: b"abc\n".to_vec(),
    })
    .await
    .unwrap();
    c.close_input(pb::CloseInputRequest { id: id.clone() })
        .await
        .unwrap();
    let got = connect(&mut c, &id, 0).await;
    // The terminal echoes the line, then cat writes it back.
    assert_eq!(String::from_utf8_lossy(&got.pty), "abc\r\nabc\r\n");
    assert_eq!(got.exit.unwrap().exit_code, Some(0));
}

#[tokio::test]
async fn resize_rpc_and_its_errors() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let id = start(&mut c, pty(&["sleep", "1000"], 24, 80)).await;
    c.resize(pb::ResizeRequest {
        id: id.clone(),
        size: Some(pb::PtySize { rows: 10, cols: 20 }),
    })
    .await
    .unwrap();
    let err = c
        .resize(pb::ResizeRequest {
            id,
            size: Some(pb::PtySize { rows: 0, cols: 20 }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let plain = start(&mut c, spec(&["sleep", "1000"])).await;
    let err = c
        .resize(pb::ResizeRequest {
            id: plain,
            size: Some(pb::PtySize { rows: 10, cols: 20 }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn a_late_attacher_gets_recent_output_first() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let id = start(
        &mut c,
        pty(&["sh", "-c", "echo early-bird; sleep 1000"], 24, 80),
    )
    .await;
    eventually(10, "output arrived", || true).await;
    let mut seen = String::new();
    for _ in 0..500 {
        let (tx, rx) = mpsc::channel(8);
        tx.send(pb::AttachRequest {
            kind: Some(In::Open(pb::AttachOpen {
                id: id.clone(),
                read_only: true,
                ..Default::default()
            })),
        })
        .await
        .unwrap();
        let mut events = c
            .attach(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        if let Ok(Some(Ok(ev))) =
            tokio::time::timeout(std::time::Duration::from_millis(200), events.next()).await
        {
            let mut got = Collected::default();
            got.add(ev.event);
            seen = String::from_utf8_lossy(&got.pty).into_owned();
            break;
        }
    }
    assert!(seen.contains("early-bird"), "{seen:?}");
}

#[tokio::test]
async fn children_start_with_default_signal_dispositions() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let ignored = |out: &[u8]| {
        let text = String::from_utf8_lossy(out);
        let hex = text
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .expect("SigIgn line")
            .trim()
            .to_string();
        u64::from_str_radix(&hex, 16).unwrap()
    };
    let sigpipe = 1u64 << (libc::SIGPIPE - 1);
    // The daemon ignores SIGPIPE; its children must not inherit that.
    let piped = run(&mut c, spec(&["grep", "SigIgn", "/proc/self/status"])).await;
    assert_eq!(ignored(&piped.stdout) & sigpipe, 0);
    // In a terminal every standard signal is at its default.
    let tty = run(
        &mut c,
        pty(&["grep", "SigIgn", "/proc/self/status"], 24, 80),
    )
    .await;
    assert_eq!(ignored(&tty.pty) & 0x7fff_ffff, 0);
}

#[tokio::test]
async fn children_of_a_nohup_daemon_do_not_inherit_its_ignored_signals() {
    const INHERITED: &[i32] = &[libc::SIGHUP, libc::SIGINT, libc::SIGQUIT];
    let d = Daemon::ignoring(INHERITED).await;
    let mut c = d.c().await;
    let piped = run(&mut c, spec(&["grep", "SigIgn", "/proc/self/status"])).await;
    let tty = run(
        &mut c,
        pty(&["grep", "SigIgn", "/proc/self/status"], 24, 80),
    )
    .await;
    for out in [&piped.stdout, &tty.pty] {
        let child = sig_ign(&String::from_utf8_lossy(out));
        for &s in INHERITED {
            assert_eq!(child & (1 << (s - 1)), 0, "signal {s} ignored in {child:x}");
        }
    }
    // The daemon itself keeps ignoring SIGHUP: a hangup must not take it down.
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        c.list(pb::ListRequest::default()).await.is_ok(),
        "daemon survived SIGHUP"
    );
}

/// The SigIgn mask of a /proc/<pid>/status text.
fn sig_ign(status: &str) -> u64 {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .expect("SigIgn line")
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}
