//! Error messages quote client input shortened: a huge value in any field still gets the real
//! code and a small message naming the field (a large `grpc-message` makes C-core clients see
//! RESOURCE_EXHAUSTED on the metadata instead).
use std::collections::HashMap;

use tend::pb;
use tokio_stream::StreamExt;
use tonic::{Code, Status};

use crate::helper::*;

/// Bytes of each oversized value.
const HUGE: usize = 70_000;
/// What any status message must stay under.
const MESSAGE_LIMIT: usize = 1024;

fn huge(c: char) -> String {
    c.to_string().repeat(HUGE)
}

/// The status of a unary call that must fail.
fn failed<T: std::fmt::Debug>(r: Result<tonic::Response<T>, Status>) -> Status {
    r.expect_err("an error")
}

/// The status of a streaming call that must fail, at the call or on its first message.
async fn failed_stream<T: std::fmt::Debug>(
    r: Result<tonic::Response<tonic::Streaming<T>>, Status>,
) -> Status {
    match r {
        Err(s) => s,
        Ok(resp) => {
            let mut s = resp.into_inner();
            loop {
                match s.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(status)) => return status,
                    None => panic!("the stream ended without an error"),
                }
            }
        }
    }
}

/// A Start with `f` applied to a spec running `true`.
fn start_with(f: impl FnOnce(&mut pb::StartRequest)) -> pb::StartRequest {
    let mut r = pb::StartRequest {
        spec: Some(spec(&["true"])),
        ..Default::default()
    };
    f(&mut r);
    r
}

fn agent_with(f: impl FnOnce(&mut pb::AgentSpec)) -> pb::SpawnRequest {
    let mut s = pb::AgentSpec {
        name: "a1".into(),
        argv: vec!["cat".into()],
        ..Default::default()
    };
    f(&mut s);
    pb::SpawnRequest { spec: Some(s) }
}

/// One case: what was sent, what came back, the code wanted, and what the message must hold.
type Case = (&'static str, Status, Code, Vec<&'static str>);

fn check(cases: Vec<Case>) {
    let mut bad = Vec::new();
    for (what, status, code, wants) in cases {
        let m = status.message();
        let shown = head(m);
        if status.code() != code {
            bad.push(format!(
                "{what}: code {:?}, want {code:?}: {shown}",
                status.code()
            ));
        }
        if m.len() >= MESSAGE_LIMIT {
            bad.push(format!("{what}: message of {} bytes: {shown}…", m.len()));
        }
        for w in wants {
            if !m.contains(w) {
                bad.push(format!("{what}: message lacks {w:?}: {shown}"));
            }
        }
    }
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
}

/// The start of a message, for a failure's report.
fn head(m: &str) -> &str {
    let mut i = m.len().min(300);
    while !m.is_char_boundary(i) {
        i -= 1;
    }
    &m[..i]
}

#[tokio::test]
async fn huge_process_request_values_get_the_real_code_and_a_short_message() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let x = huge('x');
    let slashed = format!("/{x}");
    let wide = huge('é');
    let sleeper = start(&mut c, spec(&["sleep", "30"])).await;

    let mut cases: Vec<Case> = Vec::new();
    let mut add = |what, status, code, wants: &[&'static str]| {
        cases.push((what, status, code, wants.to_vec()));
    };

    // Start: every field that can carry client text.
    let argv0 = x.clone();
    add(
        "start argv[0] not on PATH",
        failed(
            c.start(start_with(|r| r.spec = Some(spec(&[argv0.as_str()]))))
                .await,
        ),
        Code::NotFound,
        &["spec.argv[0]:", "not found on PATH", "(70000 bytes)"],
    );
    add(
        "start argv[0] a path",
        failed(
            c.start(start_with(|r| r.spec = Some(spec(&[slashed.as_str()]))))
                .await,
        ),
        Code::NotFound,
        &["spec.argv[0]:", "does not exist", "(70001 bytes)"],
    );
    add(
        "start argv[0] multi-byte",
        failed(
            c.start(start_with(|r| r.spec = Some(spec(&[wide.as_str()]))))
                .await,
        ),
        Code::NotFound,
        &["spec.argv[0]:", "(140000 bytes)"],
    );
    add(
        "start cwd",
        failed(
            c.start(start_with(|r| {
                r.spec.as_mut().unwrap().cwd = slashed.clone()
            }))
            .await,
        ),
        Code::InvalidArgument,
        &["spec.cwd:", "does not exist", "(70001 bytes)"],
    );
    add(
        "start environment_id",
        failed(
            c.start(start_with(|r| {
                r.spec.as_mut().unwrap().environment_id = x.clone()
            }))
            .await,
        ),
        Code::InvalidArgument,
        &["spec.environment_id:", "70000 bytes"],
    );
    add(
        "start env key with '='",
        failed(
            c.start(start_with(|r| {
                r.spec
                    .as_mut()
                    .unwrap()
                    .env
                    .insert(format!("{x}=y"), "v".into());
            }))
            .await,
        ),
        Code::InvalidArgument,
        &["spec.env[", "hold no '='", "(70002 bytes)"],
    );
    add(
        "start env key with NUL",
        failed(
            c.start(start_with(|r| {
                r.spec
                    .as_mut()
                    .unwrap()
                    .env
                    .insert(format!("{x}\0"), "v".into());
            }))
            .await,
        ),
        Code::InvalidArgument,
        &["spec.env[", "NUL", "(70001 bytes)"],
    );
    add(
        "start env value with NUL under a huge key",
        failed(
            c.start(start_with(|r| {
                r.spec.as_mut().unwrap().env.insert(x.clone(), "v\0".into());
            }))
            .await,
        ),
        Code::InvalidArgument,
        &["spec.env[", "NUL"],
    );
    add(
        "start huge tag key, argv[0] not found",
        failed(
            c.start(start_with(|r| {
                let s = r.spec.as_mut().unwrap();
                s.argv = vec!["no-such-program-xyz".into()];
                s.tags.insert(x.clone(), x.clone());
            }))
            .await,
        ),
        Code::NotFound,
        &["spec.argv[0]:", "no-such-program-xyz"],
    );
    add(
        "start name",
        failed(
            c.start(start_with(|r| r.spec.as_mut().unwrap().name = x.clone()))
                .await,
        ),
        Code::InvalidArgument,
        &["spec.name:"],
    );
    add(
        "start request_id",
        failed(c.start(start_with(|r| r.request_id = x.clone())).await),
        Code::InvalidArgument,
        &["request_id:"],
    );
    let run = pb::RunRequest {
        spec: Some(spec(&[x.as_str()])),
        ..Default::default()
    };
    add(
        "run argv[0]",
        failed_stream(c.run(run).await).await,
        Code::NotFound,
        &["spec.argv[0]:", "(70000 bytes)"],
    );

    // Ids and names of existing processes.
    add(
        "get id",
        failed(c.get(pb::GetRequest { id: x.clone() }).await),
        Code::InvalidArgument,
        &["id:"],
    );
    // The longest id accepted, all escapes: unknown, and quoted short.
    let ctl = "\u{1b}".repeat(128);
    add(
        "get unknown control-char id",
        failed(c.get(pb::GetRequest { id: ctl.clone() }).await),
        Code::NotFound,
        &["no process \"\\u{1b}", "(128 bytes)"],
    );
    add(
        "wait id",
        failed(
            c.wait(pb::WaitRequest {
                id: x.clone(),
                timeout_ms: 1,
            })
            .await,
        ),
        Code::InvalidArgument,
        &["id:"],
    );
    add(
        "output id",
        failed(
            c.output(pb::OutputRequest {
                id: x.clone(),
                options: None,
            })
            .await,
        ),
        Code::InvalidArgument,
        &["id:"],
    );
    add(
        "signal id",
        failed(
            c.signal(pb::SignalRequest {
                id: x.clone(),
                ..Default::default()
            })
            .await,
        ),
        Code::InvalidArgument,
        &["id:"],
    );
    add(
        "signal signal",
        failed(
            c.signal(pb::SignalRequest {
                id: sleeper.clone(),
                signal: x.clone(),
                leader_only: false,
            })
            .await,
        ),
        Code::InvalidArgument,
        &["signal:", "is not a signal", "(70000 bytes)"],
    );
    add(
        "remove id",
        failed(
            c.remove(pb::RemoveRequest {
                id: x.clone(),
                force: true,
            })
            .await,
        ),
        Code::InvalidArgument,
        &["id:"],
    );
    add(
        "connect id",
        failed_stream(
            c.connect(pb::ConnectRequest {
                id: x.clone(),
                ..Default::default()
            })
            .await,
        )
        .await,
        Code::InvalidArgument,
        &["id:"],
    );
    let open = pb::AttachRequest {
        kind: Some(pb::attach_request::Kind::Open(pb::AttachOpen {
            id: x.clone(),
            ..Default::default()
        })),
    };
    add(
        "attach open.id",
        failed_stream(c.attach(tokio_stream::iter(vec![open])).await).await,
        Code::InvalidArgument,
        &["open.id:"],
    );

    // A huge tag key in a List filter is no error: it matches nothing.
    let listed = c
        .list(pb::ListRequest {
            tags: HashMap::from([(x.clone(), x.clone())]),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert!(listed.processes.is_empty());

    check(cases);
}

#[tokio::test]
async fn huge_agent_request_values_get_the_real_code_and_a_short_message() {
    let d = Daemon::start().await;
    let mut a = d.agents().await;
    let x = huge('x');
    let slashed = format!("/{x}");

    let mut cases: Vec<Case> = Vec::new();
    let mut add = |what, status, code, wants: &[&'static str]| {
        cases.push((what, status, code, wants.to_vec()));
    };

    add(
        "spawn name",
        failed(a.spawn(agent_with(|s| s.name = x.clone())).await),
        Code::InvalidArgument,
        &["spec.name:"],
    );
    add(
        "spawn name with bad characters",
        failed(
            a.spawn(agent_with(|s| s.name = format!("a{}", "\u{1b}".repeat(63))))
                .await,
        ),
        Code::InvalidArgument,
        &["spec.name:", "must be letters", "(64 bytes)"],
    );
    add(
        "spawn environment_id",
        failed(a.spawn(agent_with(|s| s.environment_id = x.clone())).await),
        Code::InvalidArgument,
        &["spec.environment_id:", "70000 bytes"],
    );
    add(
        "spawn cwd",
        failed(a.spawn(agent_with(|s| s.cwd = slashed.clone())).await),
        Code::InvalidArgument,
        &["spec.cwd:", "(70001 bytes)"],
    );
    add(
        "spawn prompt_file",
        failed(
            a.spawn(agent_with(|s| s.prompt_file = slashed.clone()))
                .await,
        ),
        Code::InvalidArgument,
        &["spec.prompt_file:", "not an existing file", "(70001 bytes)"],
    );
    add(
        "spawn argv[0]",
        failed(a.spawn(agent_with(|s| s.argv = vec![x.clone()])).await),
        Code::NotFound,
        &["spec.argv[0]:", "(70000 bytes)"],
    );
    add(
        "spawn argv[0] a path",
        failed(
            a.spawn(agent_with(|s| s.argv = vec![slashed.clone()]))
                .await,
        ),
        Code::NotFound,
        &["spec.argv[0]:", "does not exist", "(70001 bytes)"],
    );
    add(
        "spawn env key",
        failed(
            a.spawn(agent_with(|s| {
                s.env.insert(format!("{x}="), "v".into());
            }))
            .await,
        ),
        Code::InvalidArgument,
        &["spec.env[", "(70001 bytes)"],
    );
    add(
        "get name",
        failed(a.get(pb::AgentServiceGetRequest { name: x.clone() }).await),
        Code::InvalidArgument,
        &["name:"],
    );
    add(
        "get unknown name",
        failed(
            a.get(pb::AgentServiceGetRequest {
                name: "n".repeat(64),
            })
            .await,
        ),
        Code::NotFound,
        &["no agent named \"nnnn"],
    );
    add(
        "nudge name",
        failed(
            a.nudge(pb::NudgeRequest {
                name: x.clone(),
                message: "hi".into(),
                ..Default::default()
            })
            .await,
        ),
        Code::InvalidArgument,
        &["name:"],
    );
    add(
        "stop name",
        failed(
            a.stop(pb::StopRequest {
                name: x.clone(),
                timeout_ms: 0,
            })
            .await,
        ),
        Code::InvalidArgument,
        &["name:"],
    );
    add(
        "respawn name",
        failed(a.respawn(pb::RespawnRequest { name: x.clone() }).await),
        Code::InvalidArgument,
        &["name:"],
    );
    add(
        "remove name",
        failed(
            a.remove(pb::AgentServiceRemoveRequest { name: x.clone() })
                .await,
        ),
        Code::InvalidArgument,
        &["name:"],
    );
    add(
        "wait_idle name",
        failed(
            a.wait_idle(pb::WaitIdleRequest {
                name: x.clone(),
                ..Default::default()
            })
            .await,
        ),
        Code::InvalidArgument,
        &["name:"],
    );
    add(
        "recent_output name",
        failed(
            a.recent_output(pb::RecentOutputRequest {
                name: x.clone(),
                bytes: 0,
            })
            .await,
        ),
        Code::InvalidArgument,
        &["name:"],
    );
    let open = pb::AgentServiceAttachRequest {
        kind: Some(pb::agent_service_attach_request::Kind::Open(
            pb::AgentAttachOpen {
                name: x.clone(),
                ..Default::default()
            },
        )),
    };
    add(
        "attach open.name",
        failed_stream(a.attach(tokio_stream::iter(vec![open])).await).await,
        Code::InvalidArgument,
        &["open.name:"],
    );

    check(cases);
}
