//! The daemon: listeners, the services with health and reflection, and orderly shutdown.
mod admission;
mod auth;
mod authority;
pub mod caller;
mod cert;
mod decode_errors;
mod forward;
mod huffman;
mod listen;
pub mod plugin_mode;
mod socket;
mod tls;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;

use futures_util::FutureExt;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_stream::StreamExt;
use tonic::service::InterceptorLayer;
use tonic::transport::Server;

use crate::agent::Agents;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::loader::Loader;
use crate::pb;
use crate::runner::caps::Prober;
use crate::runner::registry::Runner;
use crate::service::agent::AgentApi;
use crate::service::limit::Streams;
use crate::service::loader::LoaderApi;
use crate::service::process::ProcessApi;
use crate::service::runner::RunnerApi;
use crate::supervisor::Supervisor;

/// How long open streams get to finish after processes are stopped.
const DRAIN_CONNECTIONS: std::time::Duration = std::time::Duration::from_secs(2);

/// Larger HTTP/2 windows and frames for bulk input and output (the defaults are 64 KiB windows
/// and 16 KiB frames), a bound on calls per connection (h2 refuses more), and keepalive pings so
/// that connections of vanished clients are closed.
fn tuned(b: Server) -> Server {
    b.initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(1 << 20)
        .max_concurrent_streams(1024)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(60)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
}

/// The daemon's services, for every router, and their names, for health.
#[derive(Default)]
struct Services {
    routes: tonic::service::RoutesBuilder,
    names: Vec<&'static str>,
}

impl Services {
    fn add<S>(&mut self, svc: S)
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(svc);
    }
}

/// Server reflection (v1 and v1alpha) of the daemon's protos and health's.
/// Reflection of tend's protos and health, listing only the services this daemon serves
/// (`names`: PluginService only in plugin mode), besides health and reflection itself.
fn reflection(
    names: &[&str],
) -> Result<(
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let builder = || {
        let b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        names
            .iter()
            .copied()
            .chain([
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ])
            .fold(b, |b, name| b.with_service_name(name))
    };
    let v1 = builder()
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let v1alpha = builder()
        .build_v1alpha()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    Ok((v1, v1alpha))
}

/// What `serve` reports once it listens, e.g. for the plugin handshake.
#[derive(Debug, Clone)]
pub struct Listening {
    pub socket: std::path::PathBuf,
    pub tcp: Vec<std::net::SocketAddr>,
    pub tls: Vec<std::net::SocketAddr>,
    /// The TLS certificate's fingerprint (`sha256:…`) and file, when there are TLS listeners.
    pub tls_cert: Option<(String, std::path::PathBuf)>,
    /// Clients need a certificate (`--tls-require-client-cert`), not a token.
    pub tls_client_cert_required: bool,
    /// The bearer token's file, when there are TCP or TLS listeners and no `--token`.
    pub token_file: Option<std::path::PathBuf>,
}

/// Read the TLS files again at each item of `reload`; an error keeps what is in use.
fn spawn_reload(
    reload: impl futures_util::Stream<Item = ()> + Send + 'static,
    tls: Option<tls::Tls>,
) {
    tokio::spawn(async move {
        let mut reload = std::pin::pin!(reload);
        while reload.next().await.is_some() {
            match &tls {
                None => tracing::info!("SIGHUP: no TLS listener, nothing to reload"),
                Some(tls) => match tls.reload() {
                    Ok(fingerprint) => tracing::info!(
                        %fingerprint,
                        "SIGHUP: TLS certificate reloaded; new connections use it, open ones go on"
                    ),
                    Err(e) => tracing::error!(
                        fingerprint = %tls.fingerprint(),
                        "SIGHUP: the TLS files could not be reloaded, so the certificate in use \
                         stays: {e}"
                    ),
                },
            }
        }
    });
}

/// Run the daemon until `shutdown` resolves; then stop every process (SIGTERM, grace, SIGKILL)
/// and remove the socket. `ready` is called once every listener is bound. Each item of
/// `reload` (SIGHUP) reads the TLS certificate, key and client CA again.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()>,
    reload: impl futures_util::Stream<Item = ()> + Send + 'static,
    ready: impl FnOnce(&Listening),
) -> Result<()> {
    let dir = &config.state_dir;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    // The state dir holds the socket, the token and the records: the daemon's user only.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        Error::io(
            format!(
                "make the state dir {} private (mode 0700); give a state dir this user owns",
                dir.display()
            ),
            e,
        )
    })?;

    let socket_path = config.socket_path();
    let unix = socket::bind(&socket_path).await?;
    let listen::Bound {
        plain: tcp,
        tls: tls_listeners,
        tls_config,
    } = listen::bind(&config).await?;
    spawn_reload(reload, tls_config.clone());
    let token = if tcp.is_empty() && tls_listeners.is_empty() {
        None
    } else {
        Some(auth::load_or_create(
            config.token.as_deref(),
            &config.token_path(),
        )?)
    };

    // Before the first child: each is set back to the score the daemon had.
    crate::supervisor::hints::protect_daemon();
    let sup = Supervisor::new(dir, config.limits.clone())?;
    let (health, health_service) = tonic_health::server::health_reporter();
    let agents = Agents::new(
        sup.clone(),
        dir,
        config.quiescence,
        config.limits.max_agents,
    );
    let runner = Runner::new(sup.clone(), dir);
    runner.sweep_in_background();
    let streams = Streams::new(config.limits.max_streams);
    let loader = Loader::new(sup.clone(), dir, &socket_path, config.grace);
    loader.set_agents(agents.clone());
    let stores = crate::loader::store::Stores::new(&config.plugin_stores, dir, sup.host().reaper())
        .map_err(|e| Error::invalid("--plugin-store", e))?;
    loader.set_stores(std::sync::Arc::new(stores));
    // Every service, once: the routers of every listener, health and reflection take them from
    // this list, so a new service is one line here.
    let mut services = Services::default();
    services.add(pb::process_service_server::ProcessServiceServer::new(
        ProcessApi::new(sup.clone(), streams.clone(), config.grace),
    ));
    services.add(pb::agent_service_server::AgentServiceServer::new(
        AgentApi::new(agents, config.limits.max_input_bytes, streams.clone()),
    ));
    services.add(pb::runner_service_server::RunnerServiceServer::new(
        RunnerApi::new(
            runner.clone(),
            Prober::new(sup.host().reaper()),
            streams.clone(),
        ),
    ));
    services.add(pb::loader_service_server::LoaderServiceServer::new(
        LoaderApi::new(loader.clone(), config.limits.clone(), streams),
    ));
    // As a plugin, the host may ask it to stop: that ends the daemon as SIGTERM would, with
    // the grace the host gave when it is shorter.
    let (plugin_stop, mut plugin_stopped) = tokio::sync::watch::channel(None);
    if config.plugin {
        let mut offered: Vec<String> = services.names.iter().map(|n| n.to_string()).collect();
        offered.push("tend.v1.PluginService".into());
        services.add(pb::plugin_service_server::PluginServiceServer::new(
            crate::service::plugin::PluginApi::new(offered, plugin_stop),
        ));
    }
    for name in &services.names {
        health
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let names = services.names.clone();
    services.routes.add_service(health_service);
    let (v1, v1alpha) = reflection(&names)?;
    services.routes.add_service(v1);
    services.routes.add_service(v1alpha);
    let routes = services.routes.routes();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let calls = admission::CallsLayer::new(config.limits.max_calls, config.limits.first_message);
    let mut servers = tokio::task::JoinSet::new();
    {
        // Who calls (the owner, or a plugin with its token): see caller.rs. Calls with a
        // `tend-plugin` header then go to that plugin (forward.rs): admitted like any call, and
        // past decode_errors, which is for tend's own services.
        let who = caller::identify(loader.clone(), None);
        let router = tuned(Server::builder())
            .layer(calls.clone())
            .layer(InterceptorLayer::new(who))
            .layer(forward::ForwardLayer::new(loader.clone()))
            .layer(decode_errors::DecodeErrorsLayer)
            .add_routes(routes.clone());
        // Clients that send the socket's path as :authority: see authority.rs.
        let conns = admission::Connections::new(config.limits.max_connections, "unix");
        let incoming = UnixListenerStream::new(unix).filter_map(move |c| match c {
            Ok(c) => conns.admit().map(|permit| {
                Ok(admission::Admitted::new(
                    authority::LocalAuthority::new(c),
                    permit,
                ))
            }),
            Err(e) => Some(Err(e)),
        });
        servers.spawn(router.serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone())));
    }
    let mut tcp_addrs = Vec::new();
    for l in tcp {
        let addr = l.local_addr().map_err(|e| Error::io("local_addr", e))?;
        tcp_addrs.push(addr);
        // The daemon's token, or a loaded plugin's (scoped): see caller.rs.
        let check = caller::identify(
            loader.clone(),
            Some(token.clone().expect("a token when listening on TCP")),
        );
        let router = tuned(Server::builder())
            .layer(calls.clone())
            .layer(InterceptorLayer::new(check))
            .layer(forward::ForwardLayer::behind_token(loader.clone()))
            .layer(decode_errors::DecodeErrorsLayer)
            .add_routes(routes.clone());
        // serve_with_incoming ignores the builder's tcp_nodelay: without it, Nagle holds small
        // events (a keystroke's echo) back until the peer's delayed ACK.
        let conns = admission::Connections::new(config.limits.max_connections, addr.to_string());
        let incoming = TcpListenerStream::new(l).filter_map(move |conn| {
            let c = match conn.and_then(|c| c.set_nodelay(true).map(|()| c)) {
                Ok(c) => c,
                Err(e) => return Some(Err(e)),
            };
            conns
                .admit()
                .map(|permit| Ok(admission::Admitted::new(c, permit)))
        });
        servers.spawn(router.serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone())));
    }
    let mut tls_addrs = Vec::new();
    if let Some(tls) = &tls_config {
        for l in tls_listeners {
            let addr = l.local_addr().map_err(|e| Error::io("local_addr", e))?;
            tls_addrs.push(addr);
            // The token, a plugin's, or a client certificate signed by --tls-client-ca.
            let check = caller::identify(
                loader.clone(),
                Some(token.clone().expect("a token when listening on TCP")),
            );
            let router = tuned(Server::builder())
                .layer(calls.clone())
                .layer(InterceptorLayer::new(check))
                .layer(forward::ForwardLayer::behind_token(loader.clone()))
                .layer(decode_errors::DecodeErrorsLayer)
                .add_routes(routes.clone());
            let conns =
                admission::Connections::new(config.limits.max_connections, format!("tls://{addr}"));
            let incoming = tls::incoming(l, tls.clone(), conns);
            servers.spawn(router.serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone())));
        }
    }
    tracing::info!(
        socket = %socket_path.display(),
        tcp = ?tcp_addrs,
        tls = ?tls_addrs,
        "tend is serving"
    );
    let any_tcp = !tcp_addrs.is_empty() || !tls_addrs.is_empty();
    ready(&Listening {
        socket: socket_path.clone(),
        tcp: tcp_addrs,
        tls: tls_addrs,
        tls_cert: tls_config
            .as_ref()
            .map(|t| (t.fingerprint(), t.options().files.cert.clone())),
        tls_client_cert_required: config.tls.require_client_cert,
        token_file: (any_tcp && config.token.is_none()).then(|| config.token_path()),
    });

    let mut grace = config.grace;
    tokio::select! {
        _ = shutdown => tracing::info!("shutting down"),
        Ok(asked) = plugin_stopped.wait_for(|g| g.is_some()).map(|r| r.map(|g| *g)) => {
            // The host waits `asked` for the exit: the processes get three quarters of it, so
            // that the stopping after them still fits.
            grace = grace.min(asked.map_or(grace, |a| a * 3 / 4));
            tracing::info!(?grace, "the host asked this plugin to shut down");
        }
        Some(r) = servers.join_next() => {
            tracing::error!(result = ?r, "a listener stopped unexpectedly; shutting down");
        }
    }
    // Visible at once: health checks answer NOT_SERVING while the processes are stopped.
    for name in &names {
        health
            .set_service_status(*name, tonic_health::ServingStatus::NotServing)
            .await;
    }
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    // Plugins first, in stages (Shutdown, SIGTERM, SIGKILL) within the grace period; then the
    // processes: their streams end with their exit events, then the listeners close.
    loader.shutdown(grace).await;
    sup.shutdown(grace).await;
    runner.shutdown().await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN_CONNECTIONS, async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    let _ = std::fs::remove_file(&socket_path);
    Ok(())
}
