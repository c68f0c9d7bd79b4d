//! The RunnerService adapter: validate, call the runner, map errors.
use std::pin::Pin;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::limit::Streams;
use super::runner_convert as conv;
use crate::error::Error;
use crate::pb;
use crate::pb::runner_service_server::RunnerService;
use crate::runner::caps::Prober;
use crate::runner::ports::Ports;
use crate::runner::registry::{docker_capability, Runner};
use crate::server::caller::Caller;

/// Progress events buffered for a slow client; beyond them, progress (not the final event) is
/// skipped until the client catches up.
const PROGRESS_DEPTH: usize = 64;

/// The service over the runner.
pub struct RunnerApi {
    runner: Runner,
    prober: Prober,
    ports: std::sync::Arc<Ports>,
    streams: Streams,
}

impl RunnerApi {
    pub fn new(runner: Runner, prober: Prober, streams: Streams) -> Self {
        RunnerApi {
            runner,
            prober,
            ports: std::sync::Arc::new(Ports::default()),
            streams,
        }
    }
}

type Events<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

#[tonic::async_trait]
impl RunnerService for RunnerApi {
    async fn create_environment(
        &self,
        request: Request<pb::CreateEnvironmentRequest>,
    ) -> Result<Response<pb::CreateEnvironmentResponse>, Status> {
        let def = conv::definition(request.into_inner())?;
        let info = self.runner.create(def).await?;
        Ok(Response::new(pb::CreateEnvironmentResponse {
            environment: Some(conv::info(info)),
        }))
    }

    type InitEnvironmentStream = Events<pb::InitEnvironmentResponse>;

    async fn init_environment(
        &self,
        request: Request<pb::InitEnvironmentRequest>,
    ) -> Result<Response<Self::InitEnvironmentStream>, Status> {
        let id = request.into_inner().environment_id;
        conv::id("environment_id", &id)?;
        // Fail at once for an unknown id, or one being initialised, rather than in the stream.
        let info = self.runner.get(&id)?;
        if info.state == crate::runner::registry::State::Initializing {
            return Err(Error::FailedPrecondition(format!(
                "{} is already initialising; wait for that InitEnvironment to finish \
                 (GetEnvironment shows its state)",
                info.id
            ))
            .into());
        }
        let permit = self.streams.admit()?;
        let (tx, rx) = tokio::sync::mpsc::channel(PROGRESS_DEPTH);
        let runner = self.runner.clone();
        // The initialisation goes on if the client leaves: the environment's state must not
        // depend on whether someone watches.
        tokio::spawn(async move {
            let _permit = permit;
            let progress_tx = tx.clone();
            let sink = move |p| {
                let _ = progress_tx.try_send(Ok(conv::progress(p)));
            };
            let last = match runner.init(&id, &sink).await {
                Ok(info) => Ok(pb::InitEnvironmentResponse {
                    phase: "ready".into(),
                    message: format!("{} is ready", info.id),
                    environment: Some(conv::info(info)),
                    ..Default::default()
                }),
                Err(e) => Err(Status::from(e)),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn stop_environment(
        &self,
        request: Request<pb::StopEnvironmentRequest>,
    ) -> Result<Response<pb::StopEnvironmentResponse>, Status> {
        Caller::of(&request).owner_only("stop environments, which the daemon's user shares")?;
        let r = request.into_inner();
        conv::id("environment_id", &r.environment_id)?;
        let grace = conv::grace("grace_ms", r.grace_ms)?;
        if r.environment_id == "native" {
            return Err(Error::FailedPrecondition(
                "native is the host and cannot be stopped; stop its processes with Signal or Remove"
                    .into(),
            )
            .into());
        }
        let (info, stopped) = self.runner.stop(&r.environment_id, grace).await?;
        Ok(Response::new(pb::StopEnvironmentResponse {
            environment: Some(conv::info(info)),
            stopped_processes: stopped as u32,
        }))
    }

    async fn shutdown_environment(
        &self,
        request: Request<pb::ShutdownEnvironmentRequest>,
    ) -> Result<Response<pb::ShutdownEnvironmentResponse>, Status> {
        Caller::of(&request)
            .owner_only("shut environments down, which the daemon's user shares")?;
        let r = request.into_inner();
        conv::id("environment_id", &r.environment_id)?;
        let grace = conv::grace("grace_ms", r.grace_ms)?;
        if r.environment_id == "native" {
            return Err(Error::FailedPrecondition(
                "native is the host and cannot be shut down; stop the daemon instead".into(),
            )
            .into());
        }
        let (stopped, removed) = self.runner.shutdown_one(&r.environment_id, grace).await?;
        Ok(Response::new(pb::ShutdownEnvironmentResponse {
            stopped_processes: stopped as u32,
            container_removed: removed,
        }))
    }

    async fn list_environments(
        &self,
        _request: Request<pb::ListEnvironmentsRequest>,
    ) -> Result<Response<pb::ListEnvironmentsResponse>, Status> {
        Ok(Response::new(pb::ListEnvironmentsResponse {
            environments: self.runner.list().into_iter().map(conv::info).collect(),
        }))
    }

    async fn get_environment(
        &self,
        request: Request<pb::GetEnvironmentRequest>,
    ) -> Result<Response<pb::GetEnvironmentResponse>, Status> {
        let id = request.into_inner().environment_id;
        conv::id("environment_id", &id)?;
        Ok(Response::new(pb::GetEnvironmentResponse {
            environment: Some(conv::info(self.runner.get(&id)?)),
        }))
    }

    async fn capabilities(
        &self,
        request: Request<pb::CapabilitiesRequest>,
    ) -> Result<Response<pb::CapabilitiesResponse>, Status> {
        let refresh = request.into_inner().refresh;
        let caps = self.prober.get(refresh, docker_capability()).await;
        Ok(Response::new(conv::capabilities(&caps)))
    }

    async fn reap(
        &self,
        request: Request<pb::ReapRequest>,
    ) -> Result<Response<pb::ReapResponse>, Status> {
        Caller::of(&request).owner_only("reap what dead daemons left")?;
        let dry_run = request.into_inner().dry_run;
        let (containers, records) = self.runner.reap(dry_run).await?;
        Ok(Response::new(pb::ReapResponse {
            containers: containers
                .into_iter()
                .map(|s| pb::ReapedContainer {
                    id: s.id,
                    name: s.name,
                    owner: s.owner,
                    environment_id: s.environment_id,
                    removed: s.removed,
                    error: s.error,
                })
                .collect(),
            process_records: records as u32,
        }))
    }

    async fn find_free_port(
        &self,
        request: Request<pb::FindFreePortRequest>,
    ) -> Result<Response<pb::FindFreePortResponse>, Status> {
        let r = request.into_inner();
        // Binding (to test a port) is blocking work, up to one socket per port of the range.
        let ports = self.ports.clone();
        let (ip, port, until) =
            tokio::task::spawn_blocking(move || ports.find(&r.address, r.min_port, r.max_port))
                .await
                .map_err(|e| Error::Internal(format!("port search: {e}")))??;
        Ok(Response::new(pb::FindFreePortResponse {
            port: port.into(),
            address: ip.to_string(),
            held_until_unix_ms: conv::time(until),
        }))
    }
}
