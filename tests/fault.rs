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
    for _ in 0..count {
        start(&mut c, sh(script)).await;
    }
    let want = count * per_tree;
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
