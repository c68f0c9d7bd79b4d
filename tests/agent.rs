//! AgentService with real interactive programs: attach, resize, nudge, idle, crew restarts,
//! persistence, and clear errors.
use std::time::Duration;

use tend::cli::connect::AgentClient;
use tend::pb::{self, agent_service_attach_request::Kind as In};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::helper::*;

fn agent(name: &str, argv: &[&str]) -> pb::AgentSpec {
    pb::AgentSpec {
        name: name.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn spawn(a: &mut AgentClient, spec: pb::AgentSpec) -> pb::AgentInfo {
    a.spawn(pb::SpawnRequest { spec: Some(spec) })
        .await
        .expect("spawn")
        .into_inner()
        .agent
        .unwrap()
}

async fn get(a: &mut AgentClient, name: &str) -> pb::AgentInfo {
    a.get(pb::AgentServiceGetRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .agent
        .unwrap()
}

async fn recent(a: &mut AgentClient, name: &str) -> String {
    let r = a
        .recent_output(pb::RecentOutputRequest {
            name: name.into(),
            bytes: 0,
        })
        .await
        .unwrap()
        .into_inner();
    String::from_utf8_lossy(&r.data).into_owned()
}

/// Poll RecentOutput until it contains `want`.
async fn await_output(a: &mut AgentClient, name: &str, want: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = recent(a, name).await;
        if out.contains(want) {
            return out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{want:?} never appeared in {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// An attach session: a sender for input and the stream of PTY text.
struct Session {
    tx: mpsc::Sender<pb::AgentServiceAttachRequest>,
    events: tonic::Streaming<pb::AgentServiceAttachResponse>,
    text: String,
}

impl Session {
    async fn open(a: &mut AgentClient, name: &str, read_only: bool) -> Session {
        let open = pb::AgentAttachOpen {
            name: name.into(),
            read_only,
            ..Default::default()
        };
        Session::open_with(a, open).await
    }

    async fn open_with(a: &mut AgentClient, open: pb::AgentAttachOpen) -> Session {
        let (tx, rx) = mpsc::channel(16);
        tx.send(pb::AgentServiceAttachRequest {
            kind: Some(In::Open(open)),
        })
        .await
        .unwrap();
        let events = a
            .attach(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Session {
            tx,
            events,
            text: String::new(),
        }
    }

    async fn send(&self, kind: In) {
        self.tx
            .send(pb::AgentServiceAttachRequest { kind: Some(kind) })
            .await
            .unwrap();
    }

    /// The next event that is not data (its data added to the text), or `None` at the end of
    /// the stream (bounded).
    async fn next_non_data(&mut self) -> Option<pb::process_event::Kind> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("no event within 20 s; got {:?}", self.text))?
                .expect("event");
            match ev.event.and_then(|e| e.kind) {
                Some(pb::process_event::Kind::Data(d)) => {
                    self.text.push_str(&String::from_utf8_lossy(&d.data))
                }
                other => return other,
            }
        }
    }

    /// Read until the text contains `want` (bounded).
    async fn until(&mut self, want: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !self.text.contains(want) {
            let ev = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("{want:?} never arrived; got {:?}", self.text))
                .expect("stream open")
                .expect("event");
            if let Some(pb::process_event::Kind::Data(d)) = ev.event.and_then(|e| e.kind) {
                self.text.push_str(&String::from_utf8_lossy(&d.data));
            }
        }
    }
}

#[tokio::test]
async fn attach_and_type_into_bash() {
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    let mut spec = agent("bash", &["bash", "--norc", "--noprofile", "-i"]);
    spec.env.insert("PS1".into(), "$ ".into());
    spawn(&mut a, spec).await;
    let mut s = Session::open(&mut a, "bash", false).await;
    s.send(In::Input(b"echo $((6*7))x\n".to_vec())).await;
    s.until("42x").await;
}

#[tokio::test]
async fn a_resize_is_seen_by_stty() {
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    spawn(&mut a, agent("sh", &["sh"])).await;
    let mut s = Session::open(&mut a, "sh", false).await;
    s.send(In::Resize(pb::PtySize {
        rows: 41,
        cols: 121,
    }))
    .await;
    s.send(In::Input(b"stty size\n".to_vec())).await;
    s.until("41 121").await;
}

#[tokio::test]
async fn two_attachers_see_the_same_bytes() {
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    spawn(&mut a, agent("cat", &["cat"])).await;
    let mut one = Session::open(&mut a, "cat", false).await;
    let mut two = Session::open(&mut d.agents().await, "cat", true).await;
    one.send(In::Input(b"hello both\n".to_vec())).await;
    one.until("hello both\r\nhello both\r\n").await;
    two.until("hello both\r\nhello both\r\n").await;
    assert_eq!(one.text, two.text);
}

#[tokio::test]
async fn a_late_attacher_first_gets_the_recent_output() {
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    spawn(
        &mut a,
        agent("ring", &["sh", "-c", "echo ring-marker; exec cat"]),
    )
    .await;
    await_output(&mut a, "ring", "ring-marker").await;
    let mut late = Session::open(&mut a, "ring", true).await;
    late.until("ring-marker").await;
}

#[tokio::test]
async fn a_nudge_reaches_a_python_repl() {
    let d = Daemon::with_args(&["--quiescence-ms", "300"]).await;
    let mut a = d.agents().await;
    spawn(&mut a, agent("py", &["python3", "-i", "-q"])).await;
    await_output(&mut a, "py", ">>> ").await;
    let r = a
        .nudge(pb::NudgeRequest {
            name: "py".into(),
            message: "print(6*7)".into(),
            mode: pb::NudgeMode::WaitIdle as i32,
            timeout_ms: 10_000,
            no_submit: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome, pb::NudgeOutcome::Delivered as i32);
    await_output(&mut a, "py", "42\r\n").await;
}

#[tokio::test]
async fn wait_idle_times_out_on_a_chatty_program_and_succeeds_on_a_quiet_one() {
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    spawn(
        &mut a,
        agent(
            "chatty",
            &["sh", "-c", "while :; do echo x; sleep 0.1; done"],
        ),
    )
    .await;
    let wait = |name: &str, q, t| pb::WaitIdleRequest {
        name: name.into(),
        quiescence_ms: q,
        timeout_ms: t,
    };
    let r = a
        .wait_idle(wait("chatty", 1000, 1500))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome, pb::IdleOutcome::TimedOut as i32);
    let r = a
        .nudge(pb::NudgeRequest {
            name: "chatty".into(),
            message: "x".into(),
            mode: pb::NudgeMode::WaitIdle as i32,
            timeout_ms: 500,
            no_submit: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome, pb::NudgeOutcome::TimedOut as i32);

    // Never idle before the first output.
    spawn(&mut a, agent("silent", &["sleep", "1000"])).await;
    let r = a
        .wait_idle(wait("silent", 100, 600))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome, pb::IdleOutcome::TimedOut as i32);
    assert!(!get(&mut a, "silent").await.idle);

    spawn(
        &mut a,
        agent("quiet", &["sh", "-c", "echo ready; exec sleep 1000"]),
    )
    .await;
    let r = a
        .wait_idle(wait("quiet", 200, 10_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome, pb::IdleOutcome::Idle as i32);
}

#[tokio::test]
async fn a_crew_agent_restarts_with_backoff_until_its_start_limit() {
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    let mut watch = d
        .agents()
        .await
        .watch(pb::WatchRequest {
            name: "flaky".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut spec = agent("flaky", &["sh", "-c", "exit 7"]);
    spec.kind = pb::AgentKind::Crew as i32;
    spec.restart = Some(pb::RestartPolicy {
        initial_backoff_ms: 100,
        max_backoff_ms: 250,
        stable_after_ms: 60_000,
        start_limit: 3,
    });
    spawn(&mut a, spec).await;
    let mut backoffs = Vec::new();
    let mut exits = 0;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), watch.next())
            .await
            .expect("events keep coming until FAILED")
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        assert_eq!(ev.name, "flaky");
        match pb::AgentEventKind::try_from(ev.kind).unwrap() {
            pb::AgentEventKind::Restarting => backoffs.push(ev.backoff_ms),
            pb::AgentEventKind::Exited => {
                exits += 1;
                assert_eq!(ev.exit.unwrap().exit_code, Some(7));
            }
            pb::AgentEventKind::Failed => break,
            _ => {}
        }
    }
    assert_eq!(exits, 4, "the first run and three restarts");
    assert_eq!(backoffs.len(), 3);
    // Doubling from 100 ms, capped at 250 ms, each with up to 25% jitter.
    for (b, base) in backoffs.iter().zip([100u64, 200, 250]) {
        assert!((base..=base + base / 4).contains(b), "{backoffs:?}");
    }
    let info = get(&mut a, "flaky").await;
    assert_eq!(info.status, pb::AgentStatus::Failed as i32);
    assert_eq!(info.restart_count, 3);
    // Respawn revives a failed agent.
    let r = a
        .respawn(pb::RespawnRequest {
            name: "flaky".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.agent.unwrap().restart_count, 4);
}

#[tokio::test]
async fn stop_keeps_a_crew_agent_down_and_respawn_brings_it_back() {
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    let mut spec = agent("keeper", &["sh", "-c", "trap '' TERM; exec sleep 1000"]);
    spec.kind = pb::AgentKind::Crew as i32;
    let first = spawn(&mut a, spec).await;
    let stopped = a
        .stop(pb::StopRequest {
            name: "keeper".into(),
            timeout_ms: 300,
        })
        .await
        .unwrap()
        .into_inner()
        .agent
        .unwrap();
    assert_eq!(stopped.status, pb::AgentStatus::Stopped as i32);
    assert!(!alive(first.pid), "SIGKILL after the timeout");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let info = get(&mut a, "keeper").await;
    assert_eq!(
        (info.status, info.pid),
        (pb::AgentStatus::Stopped as i32, 0)
    );
    let n = a
        .nudge(pb::NudgeRequest {
            name: "keeper".into(),
            message: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.outcome, pb::NudgeOutcome::NotRunning as i32);

    let back = a
        .respawn(pb::RespawnRequest {
            name: "keeper".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .agent
        .unwrap();
    assert_eq!(back.status, pb::AgentStatus::Running as i32);
    assert!(back.pid != 0 && back.pid != first.pid && alive(back.pid));
    assert_eq!(back.restart_count, 1);
    a.remove(pb::AgentServiceRemoveRequest {
        name: "keeper".into(),
    })
    .await
    .unwrap();
    assert!(!alive(back.pid));
    let err = a
        .get(pb::AgentServiceGetRequest {
            name: "keeper".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn crew_agents_come_back_after_a_daemon_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut d = Daemon::spawn_in(&dir, &[]).await;
    let mut a = d.agents().await;
    let mut crew = agent("survivor", &["sleep", "1000"]);
    crew.kind = pb::AgentKind::Crew as i32;
    let first = spawn(&mut a, crew.clone()).await;
    crew.name = "resting".into();
    spawn(&mut a, crew).await;
    a.stop(pb::StopRequest {
        name: "resting".into(),
        timeout_ms: 1000,
    })
    .await
    .unwrap();
    spawn(&mut a, agent("once", &["sleep", "1000"])).await;
    drop(a);
    assert!(d.terminate().success());
    assert!(!alive(first.pid));

    let d2 = Daemon::spawn_in(&dir, &[]).await;
    let mut a = d2.agents().await;
    let list = a
        .list(pb::AgentServiceListRequest {})
        .await
        .unwrap()
        .into_inner()
        .agents;
    let names: Vec<String> = list.iter().map(|i| i.spec.clone().unwrap().name).collect();
    assert_eq!(
        names,
        ["resting", "survivor"],
        "task agents are not persisted"
    );
    let survivor = get(&mut a, "survivor").await;
    assert_eq!(survivor.status, pb::AgentStatus::Running as i32);
    assert!(survivor.pid != 0 && alive(survivor.pid));
    assert_eq!(
        get(&mut a, "resting").await.status,
        pb::AgentStatus::Stopped as i32
    );
}

#[tokio::test]
async fn a_corrupt_agent_store_is_reported_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("agents.json"), b"{ this is not json").unwrap();
    let d = Daemon::spawn_in(&dir, &[]).await;
    let mut a = d.agents().await;
    let mut crew = agent("c1", &["sleep", "1000"]);
    crew.kind = pb::AgentKind::Crew as i32;
    let err = a
        .spawn(pb::SpawnRequest { spec: Some(crew) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("corrupt"), "{}", err.message());
    assert_eq!(
        std::fs::read(dir.join("agents.json")).unwrap(),
        b"{ this is not json"
    );
    // Task agents do not need the store.
    spawn(&mut a, agent("t1", &["sleep", "1000"])).await;
}

#[tokio::test]
async fn bad_names_and_unknown_agents_are_rejected_clearly() {
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    for bad in ["", "-x", "a b", "a/b", &"n".repeat(65)] {
        let err = a
            .spawn(pb::SpawnRequest {
                spec: Some(agent(bad, &["true"])),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
        assert!(err.message().starts_with("spec.name:"), "{}", err.message());
    }
    let err = a
        .spawn(pb::SpawnRequest {
            spec: Some(agent("ok", &[])),
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("spec.argv:"), "{}", err.message());
    let mut pf = agent("ok", &["true"]);
    pf.prompt_file = "/no/such/prompt.md".into();
    let err = a
        .spawn(pb::SpawnRequest { spec: Some(pf) })
        .await
        .unwrap_err();
    assert!(
        err.message().starts_with("spec.prompt_file:"),
        "{}",
        err.message()
    );
    let err = a
        .spawn(pb::SpawnRequest {
            spec: Some(agent("ok", &["no-such-agent-program"])),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    for (env, code, msg) in [
        ("x\ty", Code::InvalidArgument, "spec.environment_id:"),
        (
            &*"e".repeat(129),
            Code::InvalidArgument,
            "spec.environment_id:",
        ),
        (
            "mars",
            Code::NotFound,
            "spec.environment_id: no environment \"mars\"",
        ),
    ] {
        let mut spec = agent("ok", &["true"]);
        spec.environment_id = env.into();
        let err = a
            .spawn(pb::SpawnRequest { spec: Some(spec) })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{env:?}: {}", err.message());
        assert!(err.message().starts_with(msg), "{}", err.message());
    }

    spawn(&mut a, agent("dup", &["sleep", "1000"])).await;
    let err = a
        .spawn(pb::SpawnRequest {
            spec: Some(agent("dup", &["true"])),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    let nf = |r: Result<(), tonic::Status>| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{}", e.message());
        assert!(e.message().contains("ghost"), "{}", e.message());
    };
    let name = || "ghost".to_string();
    nf(a.get(pb::AgentServiceGetRequest { name: name() })
        .await
        .map(drop));
    nf(a.stop(pb::StopRequest {
        name: name(),
        timeout_ms: 0,
    })
    .await
    .map(drop));
    nf(a.respawn(pb::RespawnRequest { name: name() })
        .await
        .map(drop));
    nf(a.remove(pb::AgentServiceRemoveRequest { name: name() })
        .await
        .map(drop));
    nf(a.nudge(pb::NudgeRequest {
        name: name(),
        ..Default::default()
    })
    .await
    .map(drop));
    nf(a.wait_idle(pb::WaitIdleRequest {
        name: name(),
        ..Default::default()
    })
    .await
    .map(drop));
    nf(a.recent_output(pb::RecentOutputRequest {
        name: name(),
        bytes: 0,
    })
    .await
    .map(drop));
}

#[tokio::test]
async fn an_agent_runs_in_the_environment_its_spec_names() {
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    let mut c = d.c().await;
    for (given, runs_in) in [("", "native"), ("native", "native")] {
        let name = format!("env-{}", given.len());
        let mut spec = agent(&name, &["sleep", "1000"]);
        spec.environment_id = given.into();
        let info = spawn(&mut a, spec).await;
        assert_eq!(
            info.spec.unwrap().environment_id,
            given,
            "read back as sent"
        );
        let p = c
            .get(pb::GetRequest {
                id: info.process_id,
            })
            .await
            .unwrap()
            .into_inner()
            .process
            .unwrap();
        assert_eq!(p.environment_id, runs_in);
    }
}

#[tokio::test]
async fn the_prompt_file_reaches_the_program() {
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    let tmp = tempfile::tempdir().unwrap();
    let prompt = tmp.path().join("prompt.md");
    std::fs::write(&prompt, "be brief").unwrap();
    let mut spec = agent(
        "reader",
        &[
            "sh",
            "-c",
            "cat \"$TEND_PROMPT_FILE\"; echo; exec sleep 1000",
        ],
    );
    spec.prompt_file = prompt.display().to_string();
    spawn(&mut a, spec).await;
    await_output(&mut a, "reader", "be brief").await;
}

#[tokio::test]
async fn stop_hangs_up_an_interactive_shell_and_reports_the_exit() {
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    let mut watch = d
        .agents()
        .await
        .watch(pb::WatchRequest {
            name: "shell".into(),
        })
        .await
        .unwrap()
        .into_inner();
    spawn(&mut a, agent("shell", &["sh", "-i"])).await;
    let stopped = a
        .stop(pb::StopRequest {
            name: "shell".into(),
            timeout_ms: 60_000,
        })
        .await
        .unwrap()
        .into_inner()
        .agent
        .unwrap();
    // An interactive shell ignores SIGTERM; the hangup ends it, long before SIGKILL.
    let exit = stopped.last_exit.unwrap();
    assert_eq!(exit.signal_name, "SIGHUP", "{exit:?}");
    let mut kinds = Vec::new();
    while !kinds.contains(&pb::AgentEventKind::Stopped) {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        kinds.push(pb::AgentEventKind::try_from(ev.kind).unwrap());
    }
    assert_eq!(
        kinds,
        [
            pb::AgentEventKind::Spawned,
            pb::AgentEventKind::Exited,
            pb::AgentEventKind::Stopped
        ]
    );
}

#[tokio::test]
async fn get_right_after_the_exit_event_says_exited() {
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    spawn(&mut a, agent("brief", &["sh"])).await;
    let mut s = Session::open(&mut a, "brief", false).await;
    s.send(In::Input(b"exit 6\n".to_vec())).await;
    while let Some(ev) = s.events.next().await {
        if let Some(pb::process_event::Kind::Exited(_)) = ev.unwrap().event.and_then(|e| e.kind) {
            break;
        }
    }
    let info = get(&mut a, "brief").await;
    assert_eq!(info.status, pb::AgentStatus::Exited as i32);
    assert_eq!(info.last_exit.unwrap().exit_code, Some(6));
    assert_eq!(info.pid, 0);
}

#[tokio::test]
async fn concurrent_spawns_of_one_name_start_one_program() {
    let d = Daemon::start().await;
    let mut tries = Vec::new();
    for _ in 0..8 {
        let mut a = d.agents().await;
        tries.push(tokio::spawn(async move {
            a.spawn(pb::SpawnRequest {
                spec: Some(agent("only", &["sleep", "1000"])),
            })
            .await
            .map(drop)
            .map_err(|e| e.code())
        }));
    }
    let mut ok = 0;
    for t in tries {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(code) => assert_eq!(code, Code::AlreadyExists),
        }
    }
    assert_eq!(ok, 1);
    let mut c = d.c().await;
    let running = c
        .list(pb::ListRequest {
            state: pb::ProcessState::Running as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .processes;
    assert_eq!(running.len(), 1, "{running:?}");
}

#[tokio::test]
async fn an_attacher_can_follow_a_crew_agent_across_restarts() {
    use pb::process_event::Kind as Ev;
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    let script = "echo ready-$$; read line; eval \"$line\"; exit 3";
    let mut spec = agent("phoenix", &["sh", "-c", script]);
    spec.kind = pb::AgentKind::Crew as i32;
    spec.restart = Some(pb::RestartPolicy {
        initial_backoff_ms: 50,
        max_backoff_ms: 50,
        stable_after_ms: 60_000,
        start_limit: 5,
    });
    let first = spawn(&mut a, spec).await;
    let open = |follow_restarts| pb::AgentAttachOpen {
        name: "phoenix".into(),
        follow_restarts,
        ..Default::default()
    };
    let mut follower = Session::open_with(&mut a, open(true)).await;
    let mut one_run = Session::open_with(&mut a, open(false)).await;
    follower.until(&format!("ready-{}", first.pid)).await;
    follower
        .send(In::Resize(pb::PtySize { rows: 33, cols: 99 }))
        .await;
    follower
        .send(In::Input(b"echo got-$((40+2))\n".to_vec()))
        .await;
    match follower.next_non_data().await {
        Some(Ev::Exited(x)) => assert_eq!(x.exit_code, Some(3)),
        other => panic!("expected the exit, got {other:?}"),
    }
    assert!(follower.text.contains("got-42"), "{:?}", follower.text);

    // Without follow_restarts the stream ends with the run.
    assert!(matches!(one_run.next_non_data().await, Some(Ev::Exited(_))));
    assert!(one_run.next_non_data().await.is_none(), "no second run");

    // With it, the restarted run follows, from its first byte, and takes this client's input
    // and size.
    let second = match follower.next_non_data().await {
        Some(Ev::Started(info)) => info,
        other => panic!("expected the next run, got {other:?}"),
    };
    assert_ne!(second.pid, first.pid);
    follower.until(&format!("ready-{}", second.pid)).await;
    assert_eq!(
        second.pty.map(|s| (s.rows, s.cols)),
        Some((24, 80)),
        "a new run starts at the spec's size"
    );
    follower.send(In::Input(b"stty size\n".to_vec())).await;
    follower.until("33 99").await;

    // Stopped for good: the stream ends after the run's exit.
    a.stop(pb::StopRequest {
        name: "phoenix".into(),
        timeout_ms: 1000,
    })
    .await
    .unwrap();
    loop {
        match follower.next_non_data().await {
            Some(Ev::Exited(_)) => continue,
            Some(Ev::Started(_)) => continue,
            None => break,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_lossless_attacher_holds_the_agent_back_instead_of_skipping() {
    // A 64 KiB ring and 24 MB of PTY output (`y\r\n` 8,000,000 times), more than can be in
    // flight to the client (its HTTP/2 window and the stream's channel): an observer that
    // pauses would skip much of it; a lossless attacher holds the agent back and gets it all.
    let d = Daemon::with_args(&["--head-bytes", "0", "--tail-bytes", "65536"]).await;
    let mut a = d.agents().await;
    spawn(
        &mut a,
        agent(
            "flood",
            &[
                "sh",
                "-c",
                "stty -echo; echo ready; read go; yes | head -n 8000000",
            ],
        ),
    )
    .await;
    let open = pb::AgentAttachOpen {
        name: "flood".into(),
        lossless: true,
        ..Default::default()
    };
    let mut s = Session::open_with(&mut a, open).await;
    s.until("ready").await;
    s.send(In::Input(b"go\n".to_vec())).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        get(&mut a, "flood").await.status,
        pb::AgentStatus::Running as i32,
        "held back while the attacher did not read"
    );
    let mut ys = 0usize;
    let mut gaps = 0;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(60), s.events.next())
            .await
            .expect("the flood ends")
            .expect("stream open")
            .expect("event");
        match ev.event.and_then(|e| e.kind) {
            Some(pb::process_event::Kind::Data(d)) => {
                ys += d.data.iter().filter(|&&b| b == b'y').count()
            }
            Some(pb::process_event::Kind::Gap(_)) => gaps += 1,
            Some(pb::process_event::Kind::Exited(_)) => break,
            _ => {}
        }
    }
    assert_eq!((gaps, ys), (0, 8_000_000));
}
