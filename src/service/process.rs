//! The ProcessService adapter: validate, call the supervisor, map errors.
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::limit::Streams;
use super::stream::{
    forward_input, opening, pump, Input, Pumped, Reading, CHANNEL_DEPTH, REPLAY_DEFAULT,
};
use crate::error::Error;
use crate::pb;
use crate::pb::process_service_server::ProcessService;
use crate::server::caller::{Caller, ClientCert};
use crate::supervisor::{view, Cursor, ListFilter, Process, Supervisor};

/// The service over a supervisor.
pub struct ProcessApi {
    sup: Supervisor,
    streams: Streams,
    /// From SIGTERM to SIGKILL when a disconnect stops a process.
    grace: Duration,
}

impl ProcessApi {
    /// Serve `sup`, with at most `streams` streaming calls open at once (shared), stopping the
    /// processes of clients that vanish with `grace` from SIGTERM to SIGKILL.
    pub fn new(sup: Supervisor, streams: Streams, grace: Duration) -> Self {
        ProcessApi {
            sup,
            streams,
            grace,
        }
    }

    /// Pump `p`'s output into `tx` in a task of its own; see `owned_pump`.
    fn pump_owned<R: Send + 'static>(
        &self,
        permit: tokio::sync::OwnedSemaphorePermit,
        p: Arc<Process>,
        cursor: Cursor,
        how: Reading,
        tx: mpsc::Sender<Result<R, Status>>,
        wrap: fn(pb::ProcessEvent) -> R,
    ) {
        let mut cursor = cursor;
        if how.lossless {
            // Before the call returns: nothing is overwritten before this reader's first read.
            p.output.hold(&mut cursor);
        }
        let stopper = self.stopper();
        tokio::spawn(owned_pump(stopper, permit, p, cursor, how, tx, wrap));
    }

    fn stopper(&self) -> Stopper {
        Stopper {
            sup: self.sup.clone(),
            grace: self.grace,
        }
    }

    /// The process `id` names, as `caller` may see it: a plugin sees only what it started,
    /// and anything else is as unknown to it as an id that never existed.
    fn find(&self, caller: &Caller, field: &str, id: &str) -> Result<Arc<Process>, Error> {
        convert::id(field, id)?;
        let p = self.sup.get(id)?;
        if caller.may_touch(&p.spec.tags) {
            Ok(p)
        } else {
            Err(Error::NotFound(format!(
                "no process {} started by this plugin (a plugin's token reaches only the \
                 processes it started)",
                crate::error::quote(id)
            )))
        }
    }
}

type EventStream<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

/// What stops a process whose owning stream went away.
struct Stopper {
    sup: Supervisor,
    grace: Duration,
}

/// Pump `p`'s output into `tx`; when the stream ends before the process does and it is the
/// process's owner, stop the process, as sshd does when its client goes.
async fn owned_pump<R>(
    stopper: Stopper,
    permit: tokio::sync::OwnedSemaphorePermit,
    p: Arc<Process>,
    cursor: Cursor,
    how: Reading,
    tx: mpsc::Sender<Result<R, Status>>,
    wrap: fn(pb::ProcessEvent) -> R,
) {
    if pump(permit, p.clone(), cursor, how, tx, wrap).await == Pumped::Gone
        && how.owner
        && p.running()
    {
        tracing::info!(id = p.id, "the client went away; stopping its process");
        stopper.sup.stop(&p, stopper.grace);
    }
}

/// The argv a Run asks for, for the log.
fn r_argv(r: &pb::RunRequest) -> &[String] {
    r.spec.as_ref().map_or(&[], |s| &s.argv[..])
}

#[tonic::async_trait]
impl ProcessService for ProcessApi {
    async fn start(
        &self,
        request: Request<pb::StartRequest>,
    ) -> Result<Response<pb::StartResponse>, Status> {
        let caller = Caller::of(&request);
        let client = ClientCert::of(&request).map(str::to_string);
        let r = request.into_inner();
        let wait = convert::wait_ms("wait_timeout_ms", r.wait_timeout_ms)?;
        let opts = convert::view_options("output", r.output.as_ref())?;
        let mut spec = convert::spec(r.spec, r.request_id, self.sup.limits())?;
        caller.tag(&mut spec.tags);
        let sup = self.sup.clone();
        // Blocking work (the record's file write, the spawn): off the async workers.
        let p = tokio::task::spawn_blocking(move || sup.start(spec))
            .await
            .map_err(|e| Error::Internal(format!("start task: {e}")))??;
        // Who started what, for a caller known by its certificate rather than a shared token.
        if let Some(subject) = client {
            tracing::info!(id = %p.id, argv = ?p.spec.argv, %subject, "Start by a client certificate");
        }
        let mut resp = pb::StartResponse::default();
        if let Some(wait) = wait {
            if self.sup.wait(&p, Some(wait)).await {
                let raw = r.output.as_ref().map_or(0, |o| o.stream);
                resp.output = convert::streams("output.stream", raw, &p)?
                    .into_iter()
                    .map(|k| convert::view_to_pb(view::view(&p.output, k, opts)))
                    .collect();
            } else {
                resp.timed_out = true;
            }
        }
        resp.process = Some(convert::info(&p));
        Ok(Response::new(resp))
    }

    type RunStream = EventStream<pb::RunResponse>;

    async fn run(
        &self,
        request: Request<pb::RunRequest>,
    ) -> Result<Response<Self::RunStream>, Status> {
        let caller = Caller::of(&request);
        if let Some(subject) = ClientCert::of(&request) {
            let argv = r_argv(request.get_ref());
            tracing::info!(?argv, %subject, "Run by a client certificate");
        }
        let r = request.into_inner();
        let mut spec = convert::spec(r.spec, r.request_id, self.sup.limits())?;
        caller.tag(&mut spec.tags);
        let permit = self.streams.admit()?;
        let wrap = |e| pb::RunResponse { event: Some(e) };
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let how = Reading {
            follow: true,
            lossless: !r.observer,
            owner: r.kill_on_disconnect.unwrap_or(true),
        };
        // The start (blocking work, on a blocking thread) and the pump share a task of their
        // own: if this call is dropped while the process starts, it is still pumped — and, its
        // client gone, stopped — so its lossless hold never outlives the call.
        let (opened, open) = tokio::sync::oneshot::channel();
        let (sup, stopper) = (self.sup.clone(), self.stopper());
        tokio::spawn(async move {
            let started =
                tokio::task::spawn_blocking(move || sup.start_reading(spec, how.lossless))
                    .await
                    .map_err(|e| Error::Internal(format!("start task: {e}")))
                    .and_then(|r| r);
            let (p, cursor) = match started {
                Ok(v) => v,
                Err(e) => {
                    let _ = opened.send(Err(e));
                    return;
                }
            };
            let _ = tx.try_send(Ok(wrap(convert::started_event(&p))));
            let _ = opened.send(Ok(()));
            owned_pump(stopper, permit, p, cursor, how, tx, wrap).await;
        });
        open.await
            .map_err(|_| Error::Internal("the start task ended early".into()))??;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ConnectStream = EventStream<pb::ConnectResponse>;

    async fn connect(
        &self,
        request: Request<pb::ConnectRequest>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let p = self.find(&caller, "id", &r.id)?;
        let kinds = convert::streams("stream", r.stream, &p)?;
        let permit = self.streams.admit()?;
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let cursor = Cursor::new(&kinds, r.from_offset);
        let wrap = |e| pb::ConnectResponse { event: Some(e) };
        let how = Reading {
            follow: !r.no_follow,
            lossless: r.lossless,
            owner: false,
        };
        self.pump_owned(permit, p, cursor, how, tx, wrap);
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type AttachStream = EventStream<pb::AttachResponse>;

    async fn attach(
        &self,
        request: Request<Streaming<pb::AttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        use pb::attach_request::Kind;
        let caller = Caller::of(&request);
        let mut inbound = request.into_inner();
        let open = opening(
            &mut inbound,
            |m| match m.kind {
                Some(Kind::Open(open)) => Some(open),
                _ => None,
            },
            "process",
        )
        .await?;
        let p = self.find(&caller, "open.id", &open.id)?;
        let permit = self.streams.admit()?;
        let kinds = p.output.kinds();
        let cursor = match open.from_offset {
            Some(off) => Cursor::new(&kinds, off),
            None => {
                let back = if open.replay_bytes == 0 {
                    REPLAY_DEFAULT
                } else {
                    open.replay_bytes
                };
                p.output.cursor_from_end(&kinds, back.into())
            }
        };
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let wrap = |e| pb::AttachResponse { event: Some(e) };
        // The input task holds only a weak sender: the response stream must end with the exited
        // event even while the client keeps its side open.
        let errors = tx.downgrade();
        let how = Reading {
            follow: true,
            lossless: open.lossless,
            owner: open.kill_on_disconnect,
        };
        self.pump_owned(permit, p.clone(), cursor, how, tx, wrap);

        let inbound = inbound.map(|m| {
            m.map(|m| match m.kind {
                Some(Kind::Input(data)) => Input::Data(data),
                Some(Kind::Resize(size)) => Input::Resize(size),
                Some(Kind::CloseInput(true)) => Input::Close,
                Some(Kind::CloseInput(false)) | None => Input::Nothing,
                Some(Kind::Open(_)) => Input::Open,
            })
        });
        let max_input = self.sup.limits().max_input_bytes;
        // One process for the whole session: the sender goes, the receiver keeps the value.
        let target = tokio::sync::watch::channel(p).1;
        forward_input(target, open.read_only, max_input, Box::pin(inbound), errors);
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn send_input(
        &self,
        request: Request<pb::SendInputRequest>,
    ) -> Result<Response<pb::SendInputResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let p = self.find(&caller, "id", &r.id)?;
        let max = self.sup.limits().max_input_bytes;
        if r.data.len() > max {
            return Err(Error::invalid(
                "data",
                format!("{} bytes; at most {max} per call", r.data.len()),
            )
            .into());
        }
        let n = p.send_input(r.data)?;
        Ok(Response::new(pb::SendInputResponse {
            bytes_accepted: n as u64,
        }))
    }

    async fn close_input(
        &self,
        request: Request<pb::CloseInputRequest>,
    ) -> Result<Response<pb::CloseInputResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        self.find(&caller, "id", &r.id)?.close_input()?;
        Ok(Response::new(pb::CloseInputResponse {}))
    }

    async fn resize(
        &self,
        request: Request<pb::ResizeRequest>,
    ) -> Result<Response<pb::ResizeResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let p = self.find(&caller, "id", &r.id)?;
        let size = r
            .size
            .ok_or_else(|| Error::invalid("size", "is required"))?;
        p.resize(convert::pty_size("size", size)?)?;
        Ok(Response::new(pb::ResizeResponse {}))
    }

    async fn signal(
        &self,
        request: Request<pb::SignalRequest>,
    ) -> Result<Response<pb::SignalResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let p = self.find(&caller, "id", &r.id)?;
        let sig = convert::signal("signal", &r.signal)?;
        self.sup.signal(&p, sig, r.leader_only).await?;
        Ok(Response::new(pb::SignalResponse {}))
    }

    async fn wait(
        &self,
        request: Request<pb::WaitRequest>,
    ) -> Result<Response<pb::WaitResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let p = self.find(&caller, "id", &r.id)?;
        let timeout = convert::wait_ms("timeout_ms", r.timeout_ms)?;
        let exited = self.sup.wait(&p, timeout).await;
        Ok(Response::new(pb::WaitResponse {
            process: Some(convert::info(&p)),
            timed_out: !exited,
        }))
    }

    async fn wait_ready(
        &self,
        request: Request<pb::WaitReadyRequest>,
    ) -> Result<Response<pb::WaitReadyResponse>, Status> {
        use crate::supervisor::readiness::State;
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let p = self.find(&caller, "id", &r.id)?;
        let timeout = convert::wait_ms("timeout_ms", r.timeout_ms)?;
        let opts = convert::view_options("output", r.output.as_ref())?;
        let kinds = convert::streams(
            "output.stream",
            r.output.as_ref().map_or(0, |o| o.stream),
            &p,
        )?;
        let Some(mut readiness) = p.watch_readiness() else {
            return Err(Error::FailedPrecondition(format!(
                "{} was started without a readiness probe; start it with spec.readiness \
                 (tend run --ready-port, --ready-http, --ready-log or --ready-cmd), or use Wait \
                 for its exit",
                p.id
            ))
            .into());
        };
        let settled = async {
            loop {
                let state = readiness.borrow_and_update().state;
                if state != State::Pending || readiness.changed().await.is_err() {
                    return state;
                }
            }
        };
        let state = match timeout {
            Some(t) => tokio::time::timeout(t, settled).await.ok(),
            None => Some(settled.await),
        };
        let mut resp = pb::WaitReadyResponse::default();
        resp.result = match state {
            Some(State::Ready) => pb::WaitReadyResult::Ready,
            Some(State::Failed) => {
                resp.output = kinds
                    .into_iter()
                    .map(|k| convert::view_to_pb(view::view(&p.output, k, opts)))
                    .collect();
                pb::WaitReadyResult::Failed
            }
            Some(State::Pending) | None => pb::WaitReadyResult::TimedOut,
        } as i32;
        resp.process = Some(convert::info(&p));
        Ok(Response::new(resp))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let p = self.find(&caller, "id", &r.id)?;
        let measured = measure(vec![p.clone()], true).await;
        Ok(Response::new(pb::GetResponse {
            process: Some(convert::info_with(&p, measured[0].as_ref())),
        }))
    }

    type WatchStream = std::pin::Pin<
        Box<
            dyn tokio_stream::Stream<Item = Result<pb::ProcessServiceWatchResponse, Status>> + Send,
        >,
    >;

    async fn watch(
        &self,
        request: Request<pb::ProcessServiceWatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        use crate::supervisor::LifecycleKind;
        let caller = Caller::of(&request);
        let tags = convert::tags(request.into_inner().tags);
        let permit = self.streams.admit()?;
        let mut events = self.sup.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(super::stream::CHANNEL_DEPTH);
        tokio::spawn(async move {
            let _permit = permit;
            loop {
                let ev = tokio::select! {
                    ev = events.recv() => ev,
                    _ = tx.closed() => return,
                };
                let msg = match ev {
                    Ok(e)
                        if caller.may_touch(&e.process.spec.tags)
                            && tags
                                .iter()
                                .all(|(k, v)| e.process.spec.tags.get(k) == Some(v)) =>
                    {
                        pb::ProcessServiceWatchResponse {
                            kind: match e.kind {
                                LifecycleKind::Started => pb::ProcessEventKind::Started,
                                LifecycleKind::Ready => pb::ProcessEventKind::Ready,
                                LifecycleKind::Exited => pb::ProcessEventKind::Exited,
                                LifecycleKind::Removed => pb::ProcessEventKind::Removed,
                            } as i32,
                            process: Some(convert::info(&e.process)),
                            at_unix_ms: e
                                .at
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_millis() as i64),
                            missed: 0,
                        }
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        pb::ProcessServiceWatchResponse {
                            kind: pb::ProcessEventKind::Lagged as i32,
                            missed: n,
                            at_unix_ms: std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_millis() as i64),
                            ..Default::default()
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let running = match pb::ProcessState::try_from(r.state) {
            Ok(pb::ProcessState::Unspecified) => None,
            Ok(pb::ProcessState::Running) => Some(true),
            Ok(pb::ProcessState::Exited) => Some(false),
            Err(_) => {
                return Err(Error::invalid("state", format!("unknown state {}", r.state)).into())
            }
        };
        let filter = ListFilter {
            running,
            tags: convert::tags(r.tags),
        };
        let mut found = self.sup.list(&filter);
        found.retain(|p| caller.may_touch(&p.spec.tags));
        if !r.name.is_empty() {
            found.retain(|p| p.spec.name.as_deref() == Some(r.name.as_str()));
        }
        let processes = if r.with_usage || r.listening || r.with_ports {
            // Ports cost a look at every descriptor of every process: only when asked for.
            let measured = measure(found.clone(), r.listening || r.with_ports).await;
            found
                .iter()
                .zip(&measured)
                .filter(|(_, m)| !r.listening || m.as_ref().is_some_and(|m| !m.ports.is_empty()))
                .map(|(p, m)| convert::info_with(p, m.as_ref()))
                .collect()
        } else {
            found.iter().map(|p| convert::info(p)).collect()
        };
        Ok(Response::new(pb::ListResponse { processes }))
    }

    async fn output(
        &self,
        request: Request<pb::OutputRequest>,
    ) -> Result<Response<pb::OutputResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let p = self.find(&caller, "id", &r.id)?;
        let opts = convert::view_options("options", r.options.as_ref())?;
        let raw = r.options.as_ref().map_or(0, |o| o.stream);
        let output = convert::streams("options.stream", raw, &p)?
            .into_iter()
            .map(|k| convert::view_to_pb(view::view(&p.output, k, opts)))
            .collect();
        // With what it uses and listens on, as Get gives it: "is it stuck or working?" is
        // asked together with "what did it print?".
        let measured = measure(vec![p.clone()], true).await;
        Ok(Response::new(pb::OutputResponse {
            process: Some(convert::info_with(&p, measured[0].as_ref())),
            output,
        }))
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let p = self.find(&caller, "id", &r.id)?;
        self.sup.remove(&p.id, r.force).await?;
        Ok(Response::new(pb::RemoveResponse {}))
    }
}

/// What `procs` use and listen on, read off the async workers (a pass over /proc).
async fn measure(
    procs: Vec<std::sync::Arc<crate::supervisor::Process>>,
    ports: bool,
) -> Vec<Option<crate::supervisor::usage::Measured>> {
    use crate::supervisor::usage::{self, Measured};
    use std::collections::HashMap;
    let n = procs.len();
    let host = procs.clone();
    let mut measured = tokio::task::spawn_blocking(move || usage::measure(&host, ports))
        .await
        .unwrap_or_else(|_| vec![None; n]);
    // The others (a container's): what their environment's engine gives, asked once per
    // environment, all at once.
    let mut asks = HashMap::new();
    let keys: Vec<Option<String>> = procs
        .iter()
        .zip(&measured)
        .map(|(p, m)| {
            let (key, ask) = p
                .environment_usage()
                .filter(|_| m.is_none() && p.running())?;
            asks.entry(key.clone()).or_insert(ask);
            Some(key)
        })
        .collect();
    if asks.is_empty() {
        return measured;
    }
    let (names, futures): (Vec<String>, Vec<_>) = asks.into_iter().unzip();
    let answers: HashMap<String, usage::EnvironmentUsage> = names
        .into_iter()
        .zip(futures_util::future::join_all(futures).await)
        .filter_map(|(k, u)| Some((k, u?)))
        .collect();
    for ((p, m), key) in procs.iter().zip(measured.iter_mut()).zip(keys) {
        let Some(u) = key.and_then(|k| answers.get(&k).copied()) else {
            continue;
        };
        // The engine's CPU time counts from the container's start, not the process's.
        let counted_from = u
            .since
            .and_then(|t| t.elapsed().ok())
            .and_then(|ago| std::time::Instant::now().checked_sub(ago))
            .unwrap_or(p.started_instant());
        let u = u.usage;
        *m = Some(Measured {
            cpu_percent: usage::recent_cpu_counted_from(
                p,
                u.user_cpu_ms + u.system_cpu_ms,
                counted_from,
            ),
            tree: u,
            leader: None,
            ports: Vec::new(),
            whole_environment: true,
        });
    }
    measured
}
