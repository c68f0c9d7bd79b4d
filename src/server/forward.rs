//! Calls for a plugin, through tend: a request carrying the metadata `tend-plugin: <name>` is
//! forwarded, as the HTTP/2 stream it is, to the loaded plugin of that name (issue 11, item 5).
//!
//! ```sh
//! grpcurl -H 'tend-plugin: kv' -plaintext -unix "$STATE/tend.sock" list
//! grpcurl -H 'tend-plugin: kv' -plaintext -unix "$STATE/tend.sock" -d '{"key":"a"}' kv.KV/Get
//! ```
//!
//! What the plugin gets: the client's request as it came — method, path, every header but the
//! ones below, and the body frame by frame as the client sends it (so unary, client-, server-
//! and bidi-streaming calls are all the same) — over the loader's channel to the plugin
//! (`Loader::channel`, looked up per call: cheap, and a plugin restarted since is reached on its
//! new address). What the client gets: the plugin's response headers, messages and trailers
//! (`grpc-status`, `grpc-message`, `grpc-status-details-bin`, custom metadata) untouched.
//!
//! - **Headers dropped**: `tend-plugin` itself; the hop-by-hop ones (`connection`, `keep-alive`,
//!   `proxy-connection`, `transfer-encoding`, `upgrade`, `host`, and `te` unless `trailers`);
//!   on TCP listeners `authorization`, which is tend's own bearer token there (the interceptor
//!   in front accepted nothing else) and is not the plugin's to see. `:authority` becomes the
//!   plugin channel's (`plugin.local` for a unix socket).
//! - **Deadlines**: `grpc-timeout` goes to the plugin, which enforces it: a call that outlives
//!   it ends with the plugin's `DEADLINE_EXCEEDED`. (tend's own server also times the wait for
//!   the response *headers*: a unary call whose plugin answers too late may instead end with
//!   tonic's `CANCELLED: Timeout expired`, at the same instant; a client's own deadline fires
//!   there too, so a gRPC client reports `DEADLINE_EXCEEDED` either way.)
//! - **Cancellation**: a client that resets its stream (or goes away) drops the forwarded
//!   request and response, and the HTTP/2 client resets the plugin's stream (`CANCEL`): the
//!   plugin sees its call cancelled.
//! - **Reflection**: `grpc.reflection.v1(alpha).ServerReflection` with the header is forwarded
//!   like any call, so the plugin's own reflection answers with the plugin's services. A plugin
//!   that serves no reflection answers `UNIMPLEMENTED` (from the plugin), and `grpcurl list`
//!   says so; `PluginInfo.services` (from `tend plugin ls`) still names its services.
//! - **Errors of tend's own** end the call with a trailers-only response: no such plugin
//!   `NOT_FOUND` (naming it and `tend plugin ls`), loaded but not serving `UNAVAILABLE` (its
//!   state and last error), a header that is not a name `INVALID_ARGUMENT`, the plugin
//!   unreachable `UNAVAILABLE`. A stream that breaks midway (the plugin died, its connection
//!   was reset) ends with trailers carrying the status of the break (`UNAVAILABLE`,
//!   `CANCELLED`, ...), prefixed with the plugin's name, rather than a bare stream reset.
//! - **Admission**: this layer sits inside `admission::CallsLayer` (and inside the TCP auth
//!   interceptor), so a forwarded call is a call of the daemon like any other: it needs the
//!   token on TCP, holds one of `--max-calls` permits until its response ends, and must send its
//!   first message within `--first-message` (the stream through tend is held open by tend, so
//!   the same bound on idle streams applies; a client that would stay silent waiting for the
//!   plugin to speak first should dial the plugin, whose address `LoaderService.Get` returns).
//!   When that deadline cuts a forwarded call, the client gets its `DEADLINE_EXCEEDED` with
//!   tend's message, and the plugin a cancelled call.
//! - It sits *outside* `decode_errors`, which rewrites tend's own decoding failures: a
//!   plugin's statuses pass through as the plugin wrote them.
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{Layer, Service, ServiceExt};

use crate::error::quote;
use crate::loader::Loader;

/// The metadata naming the plugin a call is for.
pub const HEADER: &str = "tend-plugin";

/// Connection-specific headers (RFC 9113 8.2.2), never forwarded; `te` is kept when it is
/// `trailers`, which gRPC requires.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Forwards calls with the `tend-plugin` header; the rest go to the daemon's own services.
#[derive(Clone)]
pub struct ForwardLayer {
    loader: Loader,
    /// Drop `authorization` (tend's bearer token on TCP listeners).
    strip_authorization: bool,
}

impl ForwardLayer {
    /// For a unix listener: the client's headers go to the plugin, `authorization` included.
    pub fn new(loader: Loader) -> Self {
        ForwardLayer {
            loader,
            strip_authorization: false,
        }
    }

    /// For a TCP listener, behind the token check: `authorization` is tend's, and stays here.
    pub fn behind_token(loader: Loader) -> Self {
        ForwardLayer {
            loader,
            strip_authorization: true,
        }
    }
}

impl<S> Layer<S> for ForwardLayer {
    type Service = Forward<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Forward {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service: `inner`, or the plugin the call names.
#[derive(Clone)]
pub struct Forward<S> {
    inner: S,
    layer: ForwardLayer,
}

impl<S, RB> Service<Request<Body>> for Forward<S>
where
    S: Service<Request<Body>, Response = Response<RB>>,
    S::Future: Send + 'static,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if !req.headers().contains_key(HEADER) {
            let fut = self.inner.call(req);
            return Box::pin(async move { Ok(fut.await?.map(Body::new)) });
        }
        let fut = forward(&self.layer, req);
        Box::pin(async move { Ok(fut.await) })
    }
}

/// The plugin's name in the header, or why it is not one.
fn plugin_name(v: &HeaderValue) -> Result<String, Status> {
    match v.to_str() {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => Err(Status::invalid_argument(format!(
            "the {HEADER} header must name a loaded plugin (`tend plugin ls` lists them); got {}",
            quote(&String::from_utf8_lossy(v.as_bytes()))
        ))),
    }
}

/// Forward `req` to the plugin its header names; the plugin's response, or tend's status.
fn forward(
    layer: &ForwardLayer,
    mut req: Request<Body>,
) -> impl Future<Output = Response<Body>> + Send + 'static {
    let looked_up =
        plugin_name(&req.headers()[HEADER]).and_then(|name| match layer.loader.channel(&name) {
            Ok(ch) => Ok((name, ch)),
            Err(e) if e.code() == Code::NotFound => Err(Status::not_found(format!(
                "no plugin {} is loaded (named by the {HEADER} header); `tend plugin ls` lists \
                 the loaded plugins",
                quote(&name)
            ))),
            Err(e) => Err(Status::new(
                e.code(),
                format!("{e}; `tend plugin ls` shows its state, `tend plugin logs` its log"),
            )),
        });
    let (name, channel) = match looked_up {
        Ok(found) => found,
        Err(status) => return futures_util::future::Either::Left(async move { reply(status) }),
    };
    strip(req.headers_mut(), layer.strip_authorization);
    // The request side's own failure (the first-message deadline), to report instead of the
    // upstream stream reset it causes.
    let failed = Arc::new(OnceLock::new());
    let req = req.map(|b| {
        Body::new(Outgoing {
            inner: b,
            failed: failed.clone(),
        })
    });
    futures_util::future::Either::Right(async move {
        match channel.oneshot(req).await {
            Ok(resp) => resp.map(|b| {
                Body::new(Upstream {
                    inner: b,
                    failed,
                    plugin: name,
                    done: false,
                })
            }),
            Err(e) => reply(broken(&failed, &name, e.into())),
        }
    })
}

/// A trailers-only response carrying `status`.
fn reply(status: Status) -> Response<Body> {
    status.into_http()
}

/// What a failure of the forwarded stream is reported as: the request side's own status when
/// it failed first, else the transport's, named after the plugin.
fn broken(failed: &OnceLock<(Code, String)>, plugin: &str, e: tonic::codegen::StdError) -> Status {
    if let Some((code, msg)) = failed.get() {
        return Status::new(*code, msg.clone());
    }
    let s = Status::from_error(e);
    Status::new(
        s.code(),
        format!("plugin {}: {}", quote(plugin), s.message()),
    )
}

/// Drop what must not reach the plugin (see the module docs).
fn strip(h: &mut HeaderMap, authorization: bool) {
    h.remove(HEADER);
    for name in HOP_BY_HOP {
        h.remove(*name);
    }
    if h.get("te").is_some_and(|v| v != "trailers") {
        h.remove("te");
    }
    if authorization {
        h.remove("authorization");
    }
}

/// The client's request body on its way to the plugin, remembering its own error.
struct Outgoing {
    inner: Body,
    failed: Arc<OnceLock<(Code, String)>>,
}

impl http_body::Body for Outgoing {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(s))) = &polled {
            let _ = self.failed.set((s.code(), s.message().to_string()));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The plugin's response body on its way to the client: frames as they come; a break becomes
/// trailers with its status, then the end.
struct Upstream {
    inner: Body,
    failed: Arc<OnceLock<(Code, String)>>,
    plugin: String,
    done: bool,
}

impl http_body::Body for Upstream {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                let status = broken(&self.failed, &self.plugin, e.into());
                let mut trailers = HeaderMap::new();
                match status.add_header(&mut trailers) {
                    Ok(()) => Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers)))),
                    Err(status) => Poll::Ready(Some(Err(status))),
                }
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_plugin_header_are_dropped() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("tend-plugin", "kv"),
            ("connection", "close"),
            ("host", "x"),
            ("te", "trailers"),
            ("grpc-timeout", "5S"),
            ("authorization", "Bearer t"),
            ("x-custom", "1"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        let mut tcp = h.clone();
        strip(&mut h, false);
        let mut keys: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["authorization", "grpc-timeout", "te", "x-custom"]);
        strip(&mut tcp, true);
        assert!(!tcp.contains_key("authorization"));
        let mut bad_te = HeaderMap::new();
        bad_te.insert("te", HeaderValue::from_static("gzip"));
        strip(&mut bad_te, false);
        assert!(bad_te.is_empty());
    }

    #[test]
    fn a_header_that_is_no_name_is_invalid() {
        assert_eq!(
            plugin_name(&HeaderValue::from_static(" kv ")).unwrap(),
            "kv"
        );
        let e = plugin_name(&HeaderValue::from_static("  ")).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("tend plugin ls"), "{}", e.message());
    }
}
