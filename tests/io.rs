//! Input: SendInput, CloseInput and Attach on pipes, and the bound on unread input.
use tend::pb::{self, attach_request::Kind as In};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::helper::*;

#[tokio::test]
async fn stdin_is_echoed_through_cat() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let mut s = spec(&["cat"]);
    s.stdin = true;
    let id = start(&mut c, s).await;
    let r = c
        .send_input(pb::SendInputRequest {
            id: id.clone(),
            data: b"hello\n".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.bytes_accepted, 6);
    c.close_input(pb::CloseInputRequest { id: id.clone() })
        .await
        .unwrap();
    let got = connect(&mut c, &id, 0).await;
    assert_eq!(got.stdout, b"hello\n");
    assert_eq!(got.exit.unwrap().exit_code, Some(0));
}

#[tokio::test]
async fn queued_input_reaches_a_slow_reader_whole_and_in_order_before_the_close() {
    use sha2::{Digest, Sha256};
    let d = Daemon::start().await;
    let mut c = d.c().await;
    // Not reading for a while: the pipe fills and the rest waits in the daemon's queue.
    let mut s = sh("sleep 0.5; sha256sum");
    s.stdin = true;
    let id = start(&mut c, s).await;
    let mut all = Vec::new();
    for i in 0..3u8 {
        let chunk: Vec<u8> = (0..1u32 << 20).map(|n| (n % 251) as u8 ^ i).collect();
        c.send_input(pb::SendInputRequest {
            id: id.clone(),
            data: chunk.clone(),
        })
        .await
        .unwrap();
        all.extend(chunk);
    }
    // Closing with bytes still queued: they go first, then the end of file.
    c.close_input(pb::CloseInputRequest { id: id.clone() })
        .await
        .unwrap();
    let got = connect(&mut c, &id, 0).await;
    let want = format!("{:x}  -\n", Sha256::digest(&all));
    assert_eq!(String::from_utf8_lossy(&got.stdout), want);
}

#[tokio::test]
async fn input_nobody_reads_is_let_go_when_the_process_exits() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    // A background sleep keeps stdin open and never reads it; the leader exits after one line.
    // (sh gives a background job /dev/null for stdin unless it is redirected from another fd.)
    let mut s = sh("exec 3<&0; sleep 1000 <&3 3<&- & exec 3<&-; echo $!; read _");
    s.stdin = true;
    let id = start(&mut c, s).await;
    // The newline lets the leader's `read` return; the rest fills the pipe and the queue.
    for data in [b"\n".to_vec(), vec![b'x'; 1 << 20], vec![b'x'; 1 << 20]] {
        c.send_input(pb::SendInputRequest {
            id: id.clone(),
            data,
        })
        .await
        .unwrap();
    }
    c.close_input(pb::CloseInputRequest { id: id.clone() })
        .await
        .unwrap();
    let got = connect(&mut c, &id, 0).await;
    let sleeper: u32 = String::from_utf8_lossy(&got.stdout).trim().parse().unwrap();
    let pipe = std::fs::read_link(format!("/proc/{sleeper}/fd/0")).unwrap();
    let daemon_holds_it = || {
        std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
            .unwrap()
            .flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == pipe))
    };
    // The queue will never drain: once the process has exited the daemon closes its end.
    eventually(10, "the daemon let go of the stdin pipe", || {
        !daemon_holds_it()
    })
    .await;
    // SAFETY: kill(2) of the sleep this test started.
    unsafe { libc::kill(sleeper as i32, libc::SIGKILL) };
}

#[tokio::test]
async fn input_to_a_process_without_stdin_is_refused_clearly() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let id = start(&mut c, spec(&["sleep", "1000"])).await;
    let err = c
        .send_input(pb::SendInputRequest {
            id,
            data: b"x".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("stdin"), "{}", err.message());
}

#[tokio::test]
async fn unread_input_is_bounded() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let mut s = spec(&["sleep", "1000"]);
    s.stdin = true;
    let id = start(&mut c, s).await;
    let mut refused = None;
    for _ in 0..16 {
        match c
            .send_input(pb::SendInputRequest {
                id: id.clone(),
                data: vec![b'x'; 1 << 20],
            })
            .await
        {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("16 MiB of unread input must not all be accepted");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    let err = c
        .send_input(pb::SendInputRequest {
            id,
            data: vec![0; (1 << 20) + 1],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn attach_sends_input_and_receives_output_on_pipes() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let mut s = spec(&["cat"]);
    s.stdin = true;
    let id = start(&mut c, s).await;
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
    tx.send(pb::AttachRequest {
        kind: Some(In::Input(b"ping\n".to_vec())),
    })
    .await
    .unwrap();
    let mut got = Collected::default();
    while got.stdout != b"ping\n" {
        got.add(events.next().await.unwrap().unwrap().event);
    }
    tx.send(pb::AttachRequest {
        kind: Some(In::CloseInput(true)),
    })
    .await
    .unwrap();
    while let Some(ev) = events.next().await {
        got.add(ev.unwrap().event);
    }
    assert_eq!(got.exit.unwrap().exit_code, Some(0));
}

#[tokio::test]
async fn a_read_only_attacher_cannot_type() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let mut s = spec(&["cat"]);
    s.stdin = true;
    let id = start(&mut c, s).await;
    let (tx, rx) = mpsc::channel(8);
    tx.send(pb::AttachRequest {
        kind: Some(In::Open(pb::AttachOpen {
            id,
            read_only: true,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    tx.send(pb::AttachRequest {
        kind: Some(In::Input(b"x".to_vec())),
    })
    .await
    .unwrap();
    let mut events = c
        .attach(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let err = loop {
        match events
            .next()
            .await
            .expect("an error before the stream ends")
        {
            Err(e) => break e,
            Ok(_) => continue,
        }
    };
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("read-only"));
}

#[tokio::test]
async fn an_attach_that_does_not_open_first_is_refused() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let (tx, rx) = mpsc::channel(8);
    tx.send(pb::AttachRequest {
        kind: Some(In::Input(b"x".to_vec())),
    })
    .await
    .unwrap();
    let err = c.attach(ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("open:"), "{}", err.message());
    let mut a = d.agents().await;
    let (tx, rx) = mpsc::channel(8);
    tx.send(pb::AgentServiceAttachRequest {
        kind: Some(pb::agent_service_attach_request::Kind::Input(b"x".to_vec())),
    })
    .await
    .unwrap();
    let err = a.attach(ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("naming the agent"),
        "{}",
        err.message()
    );
}
