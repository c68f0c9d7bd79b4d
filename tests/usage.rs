//! What a process tree uses and listens on, from `Get` and `List`: memory and CPU of a process
//! that allocates and burns a known amount, the process count of a tree (a setsid child
//! included), and the port of `python3 -m http.server 0` matched to its pid.
use std::time::Duration;

use tend::pb;

use crate::helper::*;

async fn get(c: &mut tend::cli::connect::ProcessClient, id: &str) -> pb::ProcessInfo {
    c.get(pb::GetRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap()
}

#[tokio::test]
async fn a_tree_reports_its_memory_cpu_and_process_count() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    // 64 MiB written (so resident), a second of CPU time, then rest; two children, one of them
    // in a session of its own.
    let hog = start(
        &mut c,
        sh("sleep 100 & setsid sleep 100 & exec python3 -c '
import time
x = bytearray(b\"\\x01\") * (64 << 20)
while time.process_time() < 1.0: pass
print(\"ready\", flush=True)
time.sleep(100)'"),
    )
    .await;
    let mut ready = false;
    for _ in 0..200 {
        let out = c
            .output(pb::OutputRequest {
                id: hog.clone(),
                options: None,
            })
            .await
            .unwrap()
            .into_inner();
        if out.output.iter().any(|o| o.text.contains("ready")) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the hog did not get ready");
    let p = get(&mut c, &hog).await;
    let tree = p.usage.expect("usage of a running process");
    let leader = p.leader_usage.expect("the leader's own usage");
    assert_eq!(tree.processes, 3, "python and two sleeps: {tree:?}");
    assert_eq!(leader.processes, 1);
    assert!(leader.rss_bytes >= 64 << 20, "{leader:?}");
    assert!(tree.rss_bytes >= leader.rss_bytes, "{tree:?} {leader:?}");
    assert!(leader.peak_rss_bytes >= leader.rss_bytes);
    assert!(
        leader.user_cpu_ms + leader.system_cpu_ms >= 700,
        "a second of CPU: {leader:?}"
    );
    assert!(
        tree.cpu_percent > 10.0,
        "busy for most of its life so far: {tree:?}"
    );
    assert_eq!(tree.state, pb::KernelState::Sleeping as i32, "{tree:?}");

    // Stopped shows as such; an exited process has no usage.
    c.signal(pb::SignalRequest {
        id: hog.clone(),
        signal: "STOP".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut stopped = false;
    for _ in 0..100 {
        let u = get(&mut c, &hog).await.leader_usage.unwrap();
        if u.state == pb::KernelState::Stopped as i32 {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped, "SIGSTOP shows as KERNEL_STATE_STOPPED");
    let quick = start(&mut c, sh("exit 0")).await;
    let list = c
        .list(pb::ListRequest {
            with_usage: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..100 {
        if get(&mut c, &quick).await.exit.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(get(&mut c, &quick).await.usage.is_none());
    assert!(list
        .processes
        .iter()
        .any(|p| p.id == hog && p.usage.is_some()));
    let plain = c
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        plain.processes.iter().all(|p| p.usage.is_none()),
        "usage only when asked"
    );
}

#[tokio::test]
async fn the_port_a_server_listens_on_is_found_and_matched_to_its_pid() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let web = start(
        &mut c,
        spec(&["python3", "-m", "http.server", "0", "--bind", "127.0.0.1"]),
    )
    .await;
    let _quiet = start(&mut c, spec(&["sleep", "100"])).await;
    let mut found = None;
    for _ in 0..200 {
        let p = get(&mut c, &web).await;
        if let Some(port) = p.ports.first() {
            found = Some((p.pid, port.clone()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (pid, port) = found.expect("http.server's port");
    assert_eq!(
        (port.protocol.as_str(), port.address.as_str(), port.pid),
        ("tcp", "127.0.0.1", pid)
    );
    // It is the server's port: it answers HTTP.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port.port as u16)).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");

    let listening = c
        .list(pb::ListRequest {
            listening: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listening.processes.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, [web.as_str()]);
}

#[tokio::test]
async fn watch_streams_started_exited_and_removed_of_the_tagged_processes() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let mut events = c
        .watch(pb::ProcessServiceWatchRequest {
            tags: [("team".to_string(), "a".to_string())].into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut untagged = sh("exit 0");
    untagged.name = "other".into();
    start(&mut c, untagged).await;
    let mut tagged = sh("exit 3");
    tagged.tags = [("team".to_string(), "a".to_string())].into();
    let id = start(&mut c, tagged).await;
    use tokio_stream::StreamExt;
    async fn next(
        events: &mut tonic::Streaming<pb::ProcessServiceWatchResponse>,
    ) -> pb::ProcessServiceWatchResponse {
        tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event")
            .unwrap()
            .unwrap()
    }
    let started = next(&mut events).await;
    assert_eq!(
        started.kind,
        pb::ProcessEventKind::Started as i32,
        "{started:?}"
    );
    assert_eq!(started.process.as_ref().unwrap().id, id);
    let exited = next(&mut events).await;
    assert_eq!(
        exited.kind,
        pb::ProcessEventKind::Exited as i32,
        "{exited:?}"
    );
    let exit = exited.process.unwrap().exit.unwrap();
    assert_eq!(exit.exit_code, Some(3));
    c.remove(pb::RemoveRequest {
        id: id.clone(),
        force: false,
    })
    .await
    .unwrap();
    let removed = next(&mut events).await;
    assert_eq!(
        removed.kind,
        pb::ProcessEventKind::Removed as i32,
        "{removed:?}"
    );
    assert_eq!(removed.process.unwrap().id, id);
}
