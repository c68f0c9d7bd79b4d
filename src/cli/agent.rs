//! `tend agent …`, `tend attach` and `tend nudge`: the AgentService from the command line.
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::connect::AgentClient;
use super::run::{Printer, Shown, EXIT_BROKEN_PIPE};
use super::tty;
use crate::pb::{self, agent_service_attach_request::Kind as In, process_event::Kind::Started};

/// The key that detaches `tend attach`: Ctrl-] (as telnet), which programs rarely need.
pub const DETACH_KEY: u8 = 0x1d;

/// `tend agent spawn`.
pub async fn spawn(mut c: AgentClient, spec: pb::AgentSpec) -> anyhow::Result<i32> {
    let r = c
        .spawn(pb::SpawnRequest { spec: Some(spec) })
        .await?
        .into_inner();
    let a = r.agent.unwrap_or_default();
    println!(
        "{} pid {}",
        a.spec.map(|s| s.name).unwrap_or_default(),
        a.pid
    );
    Ok(0)
}

fn status_name(s: i32) -> String {
    pb::AgentStatus::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("AGENT_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_default()
}

/// `tend agent ls`.
pub async fn list(mut c: AgentClient) -> anyhow::Result<i32> {
    let r = c.list(pb::AgentServiceListRequest {}).await?.into_inner();
    println!(
        "{:<20} {:<6} {:<11} {:>8} {:>8} {:>5} {:<5} COMMAND",
        "NAME", "KIND", "STATUS", "PID", "UPTIME", "RESTARTS", "IDLE"
    );
    for a in r.agents {
        let spec = a.spec.unwrap_or_default();
        let kind = if spec.kind == pb::AgentKind::Crew as i32 {
            "crew"
        } else {
            "task"
        };
        println!(
            "{:<20} {:<6} {:<11} {:>8} {:>7}s {:>8} {:<5} {}",
            spec.name,
            kind,
            status_name(a.status),
            a.pid,
            a.uptime_ms / 1000,
            a.restart_count,
            if a.idle { "yes" } else { "no" },
            spec.argv.join(" ")
        );
    }
    Ok(0)
}

/// `tend agent stop`.
pub async fn stop(mut c: AgentClient, name: String, timeout_ms: u64) -> anyhow::Result<i32> {
    c.stop(pb::StopRequest { name, timeout_ms }).await?;
    Ok(0)
}

/// `tend agent respawn`.
pub async fn respawn(mut c: AgentClient, name: String) -> anyhow::Result<i32> {
    let a = c.respawn(pb::RespawnRequest { name }).await?.into_inner();
    println!("pid {}", a.agent.map_or(0, |a| a.pid));
    Ok(0)
}

/// `tend agent rm`.
pub async fn remove(mut c: AgentClient, name: String) -> anyhow::Result<i32> {
    c.remove(pb::AgentServiceRemoveRequest { name }).await?;
    Ok(0)
}

/// `tend nudge`: prints the outcome; exits 0 only when delivered.
pub async fn nudge(
    mut c: AgentClient,
    name: String,
    message: String,
    wait_idle: bool,
    timeout_s: u64,
) -> anyhow::Result<i32> {
    let r = c
        .nudge(pb::NudgeRequest {
            name,
            message,
            mode: if wait_idle {
                pb::NudgeMode::WaitIdle
            } else {
                pb::NudgeMode::Immediate
            } as i32,
            timeout_ms: timeout_s.saturating_mul(1000),
            no_submit: false,
        })
        .await?
        .into_inner();
    let outcome = pb::NudgeOutcome::try_from(r.outcome).unwrap_or_default();
    println!(
        "{}",
        outcome
            .as_str_name()
            .trim_start_matches("NUDGE_OUTCOME_")
            .to_lowercase()
    );
    Ok(if outcome == pb::NudgeOutcome::Delivered {
        0
    } else {
        1
    })
}

/// `tend attach`: this terminal becomes the agent's until Ctrl-] or the agent stops running
/// (with `follow`, for good; without, when the current run exits). Exits with the last run's
/// code.
pub async fn attach(mut c: AgentClient, name: String, follow: bool) -> anyhow::Result<i32> {
    let (tx, rx) = mpsc::channel::<pb::AgentServiceAttachRequest>(64);
    tx.send(pb::AgentServiceAttachRequest {
        kind: Some(In::Open(pb::AgentAttachOpen {
            name: name.clone(),
            follow_restarts: follow,
            ..Default::default()
        })),
    })
    .await?;
    if let Some((rows, cols)) = tty::size() {
        tx.send(pb::AgentServiceAttachRequest {
            kind: Some(In::Resize(pb::PtySize { rows, cols })),
        })
        .await?;
    }
    let mut events = c.attach(ReceiverStream::new(rx)).await?.into_inner();
    let raw = tty::RawMode::enter();
    let (detach_tx, mut detached) = mpsc::channel::<()>(1);
    let input = tx.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            let (data, detach) = match chunk.iter().position(|&b| b == DETACH_KEY) {
                Some(i) => (&chunk[..i], true),
                None => (chunk, false),
            };
            if !data.is_empty() {
                let msg = pb::AgentServiceAttachRequest {
                    kind: Some(In::Input(data.to_vec())),
                };
                if input.blocking_send(msg).is_err() {
                    break;
                }
            }
            if detach {
                break;
            }
        }
        let _ = detach_tx.blocking_send(());
    });
    tty::forward_resize(tx, |size| pb::AgentServiceAttachRequest {
        kind: Some(In::Resize(size)),
    });
    let mut code = 0;
    let mut printer = Printer::default();
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(ev) => match ev?.event {
                    // The terminal is raw: a line needs its carriage return.
                    Some(pb::ProcessEvent { kind: Some(Started(info)) }) => {
                        eprint!("\r\n[tend: {name} restarted, pid {}]\r\n", info.pid);
                    }
                    event => match printer.show(event)? {
                        Shown::More => {}
                        Shown::Exited(c) => {
                            code = c;
                            eprint!("\r\n[tend: {name} exited with {c}]\r\n");
                        }
                        Shown::BrokenPipe => {
                            code = EXIT_BROKEN_PIPE;
                            break;
                        }
                    },
                },
                None => break,
            },
            _ = detached.recv() => break,
        }
    }
    drop(raw);
    Ok(code)
}
