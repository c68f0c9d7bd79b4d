//! The AgentService adapter: validate, call the agent registry, map errors.
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::agent_convert as conv;
use super::limit::Streams;
use super::stream::{
    forward_input, opening, pump_run, Input, Pumped, Reading, CHANNEL_DEPTH, REPLAY_DEFAULT,
};
use crate::agent::spec::check_name;
use crate::agent::{Agents, IdleOutcome, NudgeOutcome};
use crate::error::{quote, Error};
use crate::pb;
use crate::pb::agent_service_server::AgentService;
use crate::server::caller::Caller;
use crate::supervisor::Cursor;

/// Largest nudge message.
const MAX_NUDGE: usize = 64 << 10;
/// Largest RecentOutput and attach replay (the default is `REPLAY_DEFAULT`).
const RECENT_MAX: u32 = 8 << 20;

/// The service over the agent registry.
pub struct AgentApi {
    agents: Agents,
    max_input: usize,
    streams: Streams,
}

impl AgentApi {
    /// Serve `agents`, with at most `streams` streaming calls open at once (shared).
    pub fn new(agents: Agents, max_input: usize, streams: Streams) -> Self {
        AgentApi {
            agents,
            max_input,
            streams,
        }
    }

    /// Refuse `caller` an agent it may not see: a plugin sees only the agents it spawned, and
    /// any other is as unknown to it as one that never existed.
    fn visible(&self, caller: &Caller, agent: &str) -> Result<(), Status> {
        let a = self.agents.get(agent)?;
        if caller.may_touch(&a.spec.tags) {
            return Ok(());
        }
        Err(Error::NotFound(format!(
            "no agent {} spawned by this plugin (a plugin's token reaches only the agents it \
             spawned)",
            crate::error::quote(agent)
        ))
        .into())
    }
}

type Events<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

fn name(field: &str, n: &str) -> Result<(), Error> {
    check_name(field, n)
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn spawn(
        &self,
        request: Request<pb::SpawnRequest>,
    ) -> Result<Response<pb::SpawnResponse>, Status> {
        let caller = Caller::of(&request);
        let mut spec = conv::spec(request.into_inner().spec)?;
        caller.tag(&mut spec.tags);
        // The spawn and the crew store's locked, fsynced update are blocking work: off the
        // async workers, which on two cores are half the daemon each.
        let agents = self.agents.clone();
        let info = tokio::task::spawn_blocking(move || agents.spawn(spec))
            .await
            .map_err(|e| Error::Internal(format!("spawn task: {e}")))??;
        Ok(Response::new(pb::SpawnResponse {
            agent: Some(conv::info(info)),
        }))
    }

    async fn list(
        &self,
        request: Request<pb::AgentServiceListRequest>,
    ) -> Result<Response<pb::AgentServiceListResponse>, Status> {
        let caller = Caller::of(&request);
        let agents = self
            .agents
            .list()
            .iter()
            .filter(|a| caller.may_touch(&a.spec.tags))
            .map(|a| conv::info(self.agents.info(a)))
            .collect();
        Ok(Response::new(pb::AgentServiceListResponse { agents }))
    }

    async fn get(
        &self,
        request: Request<pb::AgentServiceGetRequest>,
    ) -> Result<Response<pb::AgentServiceGetResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        name("name", &r.name)?;
        self.visible(&caller, &r.name)?;
        let a = self.agents.get(&r.name)?;
        Ok(Response::new(pb::AgentServiceGetResponse {
            agent: Some(conv::info(self.agents.info(&a))),
        }))
    }

    async fn stop(
        &self,
        request: Request<pb::StopRequest>,
    ) -> Result<Response<pb::StopResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        name("name", &r.name)?;
        self.visible(&caller, &r.name)?;
        let timeout = conv::ms("timeout_ms", r.timeout_ms, Duration::from_secs(5))?;
        let info = self.agents.stop(&r.name, timeout).await?;
        Ok(Response::new(pb::StopResponse {
            agent: Some(conv::info(info)),
        }))
    }

    async fn respawn(
        &self,
        request: Request<pb::RespawnRequest>,
    ) -> Result<Response<pb::RespawnResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        name("name", &r.name)?;
        self.visible(&caller, &r.name)?;
        let info = self.agents.respawn(&r.name).await?;
        Ok(Response::new(pb::RespawnResponse {
            agent: Some(conv::info(info)),
        }))
    }

    async fn remove(
        &self,
        request: Request<pb::AgentServiceRemoveRequest>,
    ) -> Result<Response<pb::AgentServiceRemoveResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        name("name", &r.name)?;
        self.visible(&caller, &r.name)?;
        self.agents.remove(&r.name).await?;
        Ok(Response::new(pb::AgentServiceRemoveResponse {}))
    }

    async fn nudge(
        &self,
        request: Request<pb::NudgeRequest>,
    ) -> Result<Response<pb::NudgeResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        name("name", &r.name)?;
        self.visible(&caller, &r.name)?;
        if r.message.len() > MAX_NUDGE {
            return Err(Error::invalid(
                "message",
                format!("{} bytes; at most {MAX_NUDGE}", r.message.len()),
            )
            .into());
        }
        let wait = match pb::NudgeMode::try_from(r.mode) {
            Ok(pb::NudgeMode::Unspecified | pb::NudgeMode::Immediate) => None,
            Ok(pb::NudgeMode::WaitIdle) => Some(conv::ms(
                "timeout_ms",
                r.timeout_ms,
                Duration::from_secs(30),
            )?),
            Err(_) => return Err(Error::invalid("mode", format!("unknown mode {}", r.mode)).into()),
        };
        let outcome = self
            .agents
            .nudge(&r.name, &r.message, wait, !r.no_submit)
            .await?;
        Ok(Response::new(pb::NudgeResponse {
            outcome: match outcome {
                NudgeOutcome::Delivered => pb::NudgeOutcome::Delivered,
                NudgeOutcome::NotRunning => pb::NudgeOutcome::NotRunning,
                NudgeOutcome::TimedOut => pb::NudgeOutcome::TimedOut,
            } as i32,
        }))
    }

    async fn wait_idle(
        &self,
        request: Request<pb::WaitIdleRequest>,
    ) -> Result<Response<pb::WaitIdleResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        name("name", &r.name)?;
        self.visible(&caller, &r.name)?;
        let q = conv::ms("quiescence_ms", r.quiescence_ms, self.agents.quiescence())?;
        let timeout = conv::ms("timeout_ms", r.timeout_ms, Duration::from_secs(30))?;
        let outcome = self.agents.wait_idle(&r.name, q, timeout).await?;
        Ok(Response::new(pb::WaitIdleResponse {
            outcome: match outcome {
                IdleOutcome::Idle => pb::IdleOutcome::Idle,
                IdleOutcome::TimedOut => pb::IdleOutcome::TimedOut,
                IdleOutcome::NotRunning => pb::IdleOutcome::NotRunning,
            } as i32,
        }))
    }

    async fn recent_output(
        &self,
        request: Request<pb::RecentOutputRequest>,
    ) -> Result<Response<pb::RecentOutputResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        name("name", &r.name)?;
        self.visible(&caller, &r.name)?;
        if r.bytes > RECENT_MAX {
            return Err(
                Error::invalid("bytes", format!("{} is more than {RECENT_MAX}", r.bytes)).into(),
            );
        }
        let want = if r.bytes == 0 {
            REPLAY_DEFAULT
        } else {
            r.bytes
        } as u64;
        let a = self.agents.get(&r.name)?;
        let Some(p) = a.process() else {
            return Ok(Response::new(pb::RecentOutputResponse::default()));
        };
        let total = p.output.stats().first().map_or(0, |s| s.total);
        let from = total.saturating_sub(want);
        let kind = crate::supervisor::StreamKind::Pty;
        let (data, lost) = p.output.slice(kind, from, total);
        Ok(Response::new(pb::RecentOutputResponse {
            data,
            offset: from + lost,
        }))
    }

    type AttachStream = Events<pb::AgentServiceAttachResponse>;

    async fn attach(
        &self,
        request: Request<Streaming<pb::AgentServiceAttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        use pb::agent_service_attach_request::Kind;
        let caller = Caller::of(&request);
        let mut inbound = request.into_inner();
        let open = opening(
            &mut inbound,
            |m| match m.kind {
                Some(Kind::Open(open)) => Some(open),
                _ => None,
            },
            "agent",
        )
        .await?;
        name("open.name", &open.name)?;
        if open.replay_bytes > RECENT_MAX {
            return Err(
                Error::invalid("open.replay_bytes", format!("at most {RECENT_MAX}")).into(),
            );
        }
        self.visible(&caller, &open.name)?;
        let a = self.agents.get(&open.name)?;
        let p = a.running().ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "agent {} is not running; Respawn it, or read RecentOutput",
                quote(&open.name)
            ))
        })?;
        let permit = self.streams.admit()?;
        let back = if open.replay_bytes == 0 {
            REPLAY_DEFAULT
        } else {
            open.replay_bytes
        };
        let mut cursor = p.output.cursor_from_end(&p.output.kinds(), back.into());
        if open.lossless {
            p.output.hold(&mut cursor);
        }
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let errors = tx.downgrade();
        let wrap = |e| pb::AgentServiceAttachResponse { event: Some(e) };
        let (moved, target) = watch::channel(p.clone());
        let agents = self.agents.clone();
        let follow = open.follow_restarts;
        let lossless = open.lossless;
        tokio::spawn(async move {
            let _permit = permit;
            let (mut p, mut cursor) = (p, cursor);
            let how = Reading {
                follow: true,
                lossless,
                owner: false,
            };
            while pump_run(&p, cursor, how, &tx, wrap).await == Pumped::Exited && follow {
                let next = tokio::select! {
                    next = agents.next_run(&a, &p) => next,
                    _ = tx.closed() => return,
                };
                let Some(next) = next else { return };
                let started = super::convert::started_event(&next);
                if tx.send(Ok(wrap(started))).await.is_err() {
                    return;
                }
                // The whole new run, from its first byte.
                cursor = Cursor::new(&next.output.kinds(), 0);
                if lossless {
                    next.output.hold(&mut cursor);
                }
                let _ = moved.send(next.clone());
                p = next;
            }
        });
        let inbound = inbound.map(|m| {
            m.map(|m| match m.kind {
                Some(Kind::Input(data)) => Input::Data(data),
                Some(Kind::Resize(size)) => Input::Resize(size),
                Some(Kind::Open(_)) => Input::Open,
                None => Input::Nothing,
            })
        });
        forward_input(
            target,
            open.read_only,
            self.max_input,
            Box::pin(inbound),
            errors,
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchStream = Events<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        if !r.name.is_empty() {
            name("name", &r.name)?;
        }
        let agents = self.agents.clone();
        let permit = self.streams.admit()?;
        let mut events = self.agents.subscribe();
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        tokio::spawn(async move {
            let _permit = permit;
            loop {
                let ev = tokio::select! {
                    ev = events.recv() => ev,
                    _ = tx.closed() => return,
                };
                let ev = match ev {
                    // A plugin follows only its own agents (one removed since is no longer
                    // known, and its last events are not shown).
                    Ok(e)
                        if (r.name.is_empty() || e.name == r.name)
                            && (caller == Caller::Owner
                                || agents
                                    .get(&e.name)
                                    .is_ok_and(|a| caller.may_touch(&a.spec.tags))) =>
                    {
                        conv::event(e)
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => pb::AgentEvent {
                        kind: pb::AgentEventKind::Lagged as i32,
                        missed: n,
                        at_unix_ms: std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_millis() as i64)
                            .unwrap_or(0),
                        ..Default::default()
                    },
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if tx
                    .send(Ok(pb::WatchResponse { event: Some(ev) }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
