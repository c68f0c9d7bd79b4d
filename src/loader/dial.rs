//! The loader as a gRPC client of its plugins: the channel to an announced address, health
//! polled until SERVING, `PluginService.Info` and server reflection's service list, and the
//! shutdown calls (tend's `PluginService.Shutdown`, go-plugin's `GRPCController.Shutdown`).
//!
//! The rest of the core never imports tonic; this file does because talking gRPC to a plugin is
//! its whole job, and the forwarding of `tend-plugin` calls needs the same `Channel`.
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::loader::handshake::Network;
use crate::pb;

/// go-plugin serves health under this service name (`plugin.GRPCServiceName`).
pub const GO_PLUGIN_HEALTH: &str = "plugin";

/// Services a plugin serves that are plumbing, not its own: left out of `PluginInfo.services`.
const PLUMBING: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "tend.v1.PluginService",
    "plugin.GRPCBroker",
    "plugin.GRPCController",
    "plugin.GRPCStdio",
];

/// A channel to `network`, connected on first use (and again after the plugin goes away): the
/// health poll below is the first use, so dial errors and health answers are one loop.
pub fn channel(network: &Network) -> Channel {
    // HTTP/2 sizes as the CLI's (connect.rs): forwarded streams carry bulk data too.
    let tuned = |e: Endpoint| {
        e.initial_stream_window_size(8 << 20)
            .initial_connection_window_size(16 << 20)
            .tcp_nodelay(true)
    };
    match network {
        Network::Tcp(addr) => tuned(
            Endpoint::from_shared(format!("http://{addr}")).expect("an IP:PORT is a valid URI"),
        )
        .connect_lazy(),
        Network::Unix(path) => {
            let path = path.clone();
            tuned(Endpoint::from_static("http://plugin.local")).connect_with_connector_lazy(
                tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }),
            )
        }
    }
}

/// A status as a person reads it: tonic's message ("transport error") and its causes.
fn describe(s: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", s.code(), s.message());
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// Poll `grpc.health.v1.Health/Check` until it answers SERVING for `""` (or, where `""` is not
/// registered, for `"plugin"`, as go-plugin serves it) or `deadline` passes; the error is the
/// last dial error or health answer.
pub async fn wait_serving(ch: &Channel, deadline: Instant) -> Result<(), String> {
    let mut health = HealthClient::new(ch.clone());
    let mut service = "";
    let mut last = "not dialled yet".to_string();
    let mut pause = Duration::from_millis(2);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(last);
        }
        let mut req = Request::new(HealthCheckRequest {
            service: service.into(),
        });
        req.set_timeout(left);
        match tokio::time::timeout(left, health.check(req)).await {
            Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => return Ok(()),
            Ok(Ok(r)) => {
                let status = ServingStatus::try_from(r.get_ref().status)
                    .map(|s| s.as_str_name().to_string())
                    .unwrap_or_else(|_| r.get_ref().status.to_string());
                last = format!("health of {service:?}: {status}");
            }
            // The service "" is not registered (grpcio's health servicer registers only what it
            // is told): ask for go-plugin's, and back.
            Ok(Err(s)) if s.code() == Code::NotFound => {
                last = format!("health: neither \"\" nor {GO_PLUGIN_HEALTH:?} is registered");
                service = if service.is_empty() {
                    GO_PLUGIN_HEALTH
                } else {
                    ""
                };
                if !service.is_empty() {
                    continue;
                }
            }
            Ok(Err(s)) => last = describe(&s),
            Err(_) => last = "health: no answer".into(),
        }
        tracing::debug!(last, "health: not serving yet");
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The services of `names` that are the plugin's own (without health, reflection and the
/// plumbing of tend and go-plugin), sorted.
pub fn own_services(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = names
        .into_iter()
        .filter(|n| !PLUMBING.contains(&n.as_str()))
        .collect();
    v.sort();
    v.dedup();
    v
}

macro_rules! list_services {
    ($ch:expr, $timeout:expr, $v:ident) => {{
        use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::$v::ServerReflectionRequest;
        let ask = async {
            let mut c = ServerReflectionClient::new($ch.clone());
            let req = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut answers = c
                .server_reflection_info(tokio_stream::once(req))
                .await
                .ok()?
                .into_inner();
            match answers.message().await.ok()??.message_response? {
                MessageResponse::ListServicesResponse(l) => {
                    Some(l.service.into_iter().map(|s| s.name).collect::<Vec<_>>())
                }
                _ => None,
            }
        };
        tokio::time::timeout($timeout, ask).await.ok().flatten()
    }};
}

/// The services server reflection lists (v1, else v1alpha, both asked at once), or `None`
/// without reflection.
pub async fn reflected_services(ch: &Channel, timeout: Duration) -> Option<Vec<String>> {
    let (v1, v1alpha) = tokio::join!(async { list_services!(ch, timeout, v1) }, async {
        list_services!(ch, timeout, v1alpha)
    });
    v1.or(v1alpha)
}

/// What a plugin says it serves.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Described {
    /// Its own services (`own_services`).
    pub services: Vec<String>,
    pub version: String,
    /// It answered `PluginService.Info`.
    pub native: bool,
}

/// `PluginService.Info` and server reflection, asked at once (one round trip, not three):
/// Info's answer when it gives one, else reflection's list (empty without reflection). `None`
/// when Info's call failed in the transport (the plugin not reachable yet), so nothing can be
/// told.
pub async fn ask_what_it_serves(ch: &Channel, timeout: Duration) -> Option<Described> {
    let info = async {
        let mut c = pb::plugin_service_client::PluginServiceClient::new(ch.clone());
        let mut req = Request::new(pb::InfoRequest {});
        req.set_timeout(timeout);
        match tokio::time::timeout(timeout, c.info(req)).await {
            Ok(Ok(r)) => Some(Some(r.into_inner())),
            // A status with a source is tonic's own: the call did not reach the plugin.
            Ok(Err(s)) if std::error::Error::source(&s).is_some() => None,
            // Unimplemented (not a tend plugin), or any answer but Info's.
            Ok(Err(_)) => Some(None),
            Err(_) => Some(None),
        }
    };
    let (info, listed) = tokio::join!(info, reflected_services(ch, timeout));
    Some(match info? {
        Some(i) => Described {
            services: own_services(i.services),
            version: i.version,
            native: true,
        },
        None => Described {
            services: own_services(listed.unwrap_or_default()),
            ..Described::default()
        },
    })
}

/// Health polled until SERVING (`wait_serving`), with what the plugin serves
/// (`ask_what_it_serves`) asked meanwhile on the same connection: a plugin binds its socket
/// before it prints its handshake line, so the first health answer is usually SERVING, and
/// asked after it the description would cost a round trip of its own (on a go-plugin plugin,
/// whose reflection builds its list on the first call, more than the health check). Asked
/// before the plugin could be reached, it is asked again once it serves. `Err` is
/// `wait_serving`'s.
pub async fn serving_and_described(
    ch: &Channel,
    deadline: Instant,
    timeout: Duration,
) -> Result<Described, String> {
    // The early asking may wait on a plugin that is slow to serve: its own bound is the dial's.
    let early_bound = deadline.saturating_duration_since(Instant::now()) + timeout;
    let mut early = std::pin::pin!(ask_what_it_serves(ch, early_bound));
    let mut serving = std::pin::pin!(wait_serving(ch, deadline));
    let mut asked = None;
    loop {
        tokio::select! {
            r = &mut serving => {
                r?;
                break;
            }
            d = &mut early, if asked.is_none() => asked = Some(d),
        }
    }
    let asked = match asked {
        Some(d) => d,
        None => tokio::time::timeout(timeout, early).await.ok().flatten(),
    };
    Ok(match asked {
        Some(d) => d,
        None => ask_what_it_serves(ch, timeout).await.unwrap_or_default(),
    })
}

/// Ask a tend-native plugin to stop (`PluginService.Shutdown`); true when it answered.
pub async fn shutdown_tend(ch: &Channel, grace: Duration, timeout: Duration) -> bool {
    let mut c = pb::plugin_service_client::PluginServiceClient::new(ch.clone());
    let mut req = Request::new(pb::ShutdownRequest {
        grace_ms: grace.as_millis().min(u32::MAX as u128) as u32,
    });
    req.set_timeout(timeout);
    matches!(
        tokio::time::timeout(timeout, c.shutdown(req)).await,
        Ok(Ok(_))
    )
}

/// Ask a go-plugin plugin to stop (`plugin.GRPCController/Shutdown`, an empty message each
/// way); true when it took the request. go-plugin 1.0.1 (Debian 12's) stops its server before
/// it answers, so the call fails as its connection goes away (tonic: Unknown, "transport error",
/// broken pipe; grpc-go: Unavailable, EOF): a call that ends in a transport failure rather than
/// a status the plugin sent is taken as asked too, and the caller waits for the exit that
/// shows it.
pub async fn shutdown_go_plugin(ch: &Channel, timeout: Duration) -> bool {
    let call = async {
        let mut grpc = tonic::client::Grpc::new(ch.clone());
        grpc.ready().await.ok()?;
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let mut req = Request::new(());
        req.set_timeout(timeout);
        match grpc
            .unary(
                req,
                http::uri::PathAndQuery::from_static("/plugin.GRPCController/Shutdown"),
                codec,
            )
            .await
        {
            Ok(_) => Some(()),
            // A status with a source is tonic's own (the connection failed), not the plugin's.
            Err(s) if s.code() == Code::Unavailable || std::error::Error::source(&s).is_some() => {
                Some(())
            }
            Err(_) => None,
        }
    };
    matches!(tokio::time::timeout(timeout, call).await, Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plumbing_is_left_out_of_the_services() {
        let got = own_services(
            [
                "kv.v1.KV",
                "grpc.health.v1.Health",
                "plugin.GRPCController",
                "grpc.reflection.v1alpha.ServerReflection",
                "tend.v1.PluginService",
                "kv.v1.KV",
                "a.B",
            ]
            .map(String::from),
        );
        assert_eq!(got, ["a.B", "kv.v1.KV"]);
    }
}
