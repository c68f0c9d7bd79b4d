//! PluginService, served by `tend serve --handshake`: tend as a plugin of another host, which
//! asks who it is and tells it to stop.
use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::pb;
use crate::pb::plugin_service_server::PluginService;

/// The service of a tend started as a plugin.
pub struct PluginApi {
    services: Vec<String>,
    /// Set to the grace the host asked for when it says Shutdown.
    stop: tokio::sync::watch::Sender<Option<Duration>>,
}

impl PluginApi {
    /// Answer Info with `services`; a Shutdown sends its grace on `stop`.
    pub fn new(
        services: Vec<String>,
        stop: tokio::sync::watch::Sender<Option<Duration>>,
    ) -> PluginApi {
        PluginApi { services, stop }
    }
}

#[tonic::async_trait]
impl PluginService for PluginApi {
    async fn info(
        &self,
        _request: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        Ok(Response::new(pb::InfoResponse {
            name: "tend".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            services: self.services.clone(),
            app_protocol_version: crate::loader::handshake::CORE_PROTOCOL_VERSION,
        }))
    }

    async fn shutdown(
        &self,
        request: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownResponse>, Status> {
        let grace = Duration::from_millis(request.into_inner().grace_ms.into());
        // Answered first: the daemon's shutdown begins as this call returns.
        let _ = self.stop.send(Some(grace));
        Ok(Response::new(pb::ShutdownResponse {}))
    }
}
