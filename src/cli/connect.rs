//! Reaching a daemon: `unix:///path`, `tls://host:port`, `tcp://host:port` or a bare socket
//! path, with the bearer token for TCP and TLS.
use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Status};

use super::tls::{self, ClientTls};
use crate::config;
use crate::pb::agent_service_client::AgentServiceClient;
use crate::pb::loader_service_client::LoaderServiceClient;
use crate::pb::process_service_client::ProcessServiceClient;
use crate::pb::runner_service_client::RunnerServiceClient;

/// Adds `authorization: Bearer <token>` when there is a token.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A ProcessService client as the CLI uses it.
pub type ProcessClient = ProcessServiceClient<InterceptedService<Channel, Bearer>>;
/// An AgentService client as the CLI uses it.
pub type AgentClient = AgentServiceClient<InterceptedService<Channel, Bearer>>;
/// A RunnerService client with the bearer token, if any.
pub type RunnerClient = RunnerServiceClient<InterceptedService<Channel, Bearer>>;

/// A LoaderService client with the bearer token, if any.
pub type LoaderClient = LoaderServiceClient<InterceptedService<Channel, Bearer>>;

/// Where a daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Unix(PathBuf),
    /// Plaintext TCP (a daemon serves it on loopback only, unless told otherwise).
    Tcp(String),
    /// TLS, verifying the daemon as `ClientTls` says.
    Tls(String, ClientTls),
}

/// Parse `unix:///path`, `tls://host:port`, `tcp://host:port` or a path; empty means the
/// default socket. `tls` is used for `tls://`.
pub fn parse_addr(addr: Option<&str>, tls: ClientTls) -> anyhow::Result<Addr> {
    let addr = addr.unwrap_or("");
    if addr.is_empty() {
        return Ok(Addr::Unix(config::socket_in(&config::default_state_dir())));
    }
    if let Some(p) = addr.strip_prefix("unix://") {
        return Ok(Addr::Unix(PathBuf::from(p)));
    }
    if let Some(hp) = addr.strip_prefix("tcp://") {
        return Ok(Addr::Tcp(hp.to_string()));
    }
    if let Some(hp) = addr.strip_prefix("tls://") {
        return Ok(Addr::Tls(hp.trim_end_matches('/').to_string(), tls));
    }
    if addr.contains("://") {
        anyhow::bail!(
            "--connect {addr:?}: use unix:///path/to/tend.sock, tls://host:port or tcp://host:port"
        );
    }
    Ok(Addr::Unix(PathBuf::from(addr)))
}

/// HTTP/2 sizes for bulk output: the defaults (16 KiB frames, a 2 MiB window) cap a stream of
/// output at a fraction of what a pipe delivers.
fn tuned(e: Endpoint) -> Endpoint {
    e.initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(1 << 20)
}

/// Open a channel to the daemon.
pub async fn channel(addr: &Addr) -> anyhow::Result<Channel> {
    match addr {
        Addr::Tcp(hp) => Ok(tuned(Endpoint::from_shared(format!("http://{hp}"))?)
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach tend at tcp://{hp}: {e}"))?),
        Addr::Tls(hp, opts) => {
            let config = std::sync::Arc::new(tls::client_config(opts)?);
            let name = tls::server_name(hp)?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let target = hp.clone();
            // The handshake, and so the daemon's verification, happens here, in `connect`:
            // before any request (and its token) is sent.
            tuned(Endpoint::from_shared(format!("http://{hp}"))?)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let (connector, name, target) =
                        (connector.clone(), name.clone(), target.clone());
                    async move {
                        let tcp = tokio::net::TcpStream::connect(&target).await?;
                        tcp.set_nodelay(true)?;
                        Ok::<_, std::io::Error>(TokioIo::new(connector.connect(name, tcp).await?))
                    }
                }))
                .await
                .map_err(|e| anyhow::anyhow!("cannot reach tend at tls://{hp}: {}", chain(&e)))
        }
        Addr::Unix(path) => {
            let path = path.clone();
            let shown = path.display().to_string();
            tuned(Endpoint::from_static("http://tend.local"))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .map_err(|e| unix_error(&shown, &e))
        }
    }
}

/// An error and its sources, `: `-separated: tonic's own message is only "transport error", and
/// the reason a handshake failed is deep inside.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// Say why the socket at `shown` cannot be reached, in terms a person can act on: tonic's own
/// message is only "transport error".
fn unix_error(shown: &str, e: &tonic::transport::Error) -> anyhow::Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut io = None;
    while let Some(err) = source {
        if let Some(x) = err.downcast_ref::<std::io::Error>() {
            io = Some(x.kind());
            break;
        }
        source = err.source();
    }
    match io {
        Some(std::io::ErrorKind::PermissionDenied) => anyhow::anyhow!(
            "cannot reach tend at {shown}: permission denied (the socket is mode 0600, its \
             daemon's user only); run as that user, or start a daemon of your own with `tend \
             serve`"
        ),
        Some(std::io::ErrorKind::NotFound) => anyhow::anyhow!(
            "cannot reach tend at {shown}: no such socket; start it with `tend serve`, or point \
             --connect/TEND_ADDR at a running one"
        ),
        Some(std::io::ErrorKind::ConnectionRefused) => anyhow::anyhow!(
            "cannot reach tend at {shown}: nothing listens there (a daemon that died left the \
             socket); start it with `tend serve`"
        ),
        _ => anyhow::anyhow!(
            "cannot reach tend at {shown}: {e}; start it with `tend serve`, or point \
             --connect/TEND_ADDR at a running one"
        ),
    }
}

/// A ProcessService client for `addr`, with `token` (or the state dir's token file for TCP).
pub async fn process_client(addr: &Addr, token: Option<String>) -> anyhow::Result<ProcessClient> {
    let (ch, bearer) = authorized(addr, token).await?;
    Ok(ProcessServiceClient::with_interceptor(ch, bearer).max_decoding_message_size(16 << 20))
}

/// A RunnerService client, like `process_client`.
pub async fn runner_client(addr: &Addr, token: Option<String>) -> anyhow::Result<RunnerClient> {
    let (ch, bearer) = authorized(addr, token).await?;
    Ok(RunnerServiceClient::with_interceptor(ch, bearer).max_decoding_message_size(16 << 20))
}

/// An AgentService client, like `process_client`.
pub async fn agent_client(addr: &Addr, token: Option<String>) -> anyhow::Result<AgentClient> {
    let (ch, bearer) = authorized(addr, token).await?;
    Ok(AgentServiceClient::with_interceptor(ch, bearer).max_decoding_message_size(16 << 20))
}

/// A LoaderService client, like `process_client`.
pub async fn loader_client(addr: &Addr, token: Option<String>) -> anyhow::Result<LoaderClient> {
    let (ch, bearer) = authorized(addr, token).await?;
    Ok(LoaderServiceClient::with_interceptor(ch, bearer).max_decoding_message_size(16 << 20))
}

async fn authorized(addr: &Addr, token: Option<String>) -> anyhow::Result<(Channel, Bearer)> {
    let token = match (token, addr) {
        (Some(t), _) => Some(t),
        (None, Addr::Tcp(_) | Addr::Tls(..)) => {
            std::fs::read_to_string(config::default_state_dir().join("token"))
                .ok()
                .map(|t| t.trim().to_string())
        }
        (None, Addr::Unix(_)) => None,
    };
    let value = token
        .map(|t| format!("Bearer {t}").parse())
        .transpose()
        .map_err(|_| anyhow::anyhow!("the token holds characters not allowed in a header"))?;
    Ok((channel(addr).await?, Bearer(value)))
}
