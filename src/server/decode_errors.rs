//! Requests tonic could not decode get `InvalidArgument` with the reason, like every other bad
//! request: tonic itself answers `OUT_OF_RANGE` for a message over the decoding limit and
//! `INTERNAL` for bytes that are not the message (invalid UTF-8, wrong wire types, truncation),
//! which tells the client the daemon failed when it was the request.
//!
//! Such errors happen before any service code runs, so the status is in the response's headers
//! (a trailers-only response); this layer rewrites those headers and nothing else.
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

/// The largest request message the daemon decodes (tonic's default). The documented limits of
/// every field are far below it; above it the request is refused as `InvalidArgument`.
pub const MAX_REQUEST: usize = 4 << 20;

/// The layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeErrorsLayer;

impl<S> Layer<S> for DecodeErrorsLayer {
    type Service = DecodeErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DecodeErrors { inner }
    }
}

/// The service: `inner` with decode failures answered as `InvalidArgument`.
#[derive(Debug, Clone)]
pub struct DecodeErrors<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for DecodeErrors<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            rewrite(resp.headers_mut());
            Ok(resp)
        })
    }
}

/// gRPC status codes this layer looks at.
const OUT_OF_RANGE: &str = "11";
const INTERNAL: &str = "13";
const INVALID_ARGUMENT: &str = "3";

fn rewrite(headers: &mut http::HeaderMap) {
    let Some(code) = headers.get("grpc-status").and_then(|v| v.to_str().ok()) else {
        return;
    };
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    let new = match code {
        OUT_OF_RANGE if message.contains("message length too large") => format!(
            "request: too large to decode ({message}); a request may be at most {MAX_REQUEST} \
             bytes, and its fields have smaller limits (see the README's limits)"
        ),
        INTERNAL if message.starts_with("failed to decode Protobuf message") => format!(
            "request: not a valid message of this RPC ({message}); check the field types, that \
             strings are UTF-8, and that the body is complete"
        ),
        _ => return,
    };
    headers.insert("grpc-status", HeaderValue::from_static(INVALID_ARGUMENT));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(&new)) {
        headers.insert("grpc-message", v);
    }
}

/// grpc-message is percent-encoded (gRPC over HTTP/2: every byte outside 0x20–0x7E, and `%`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(code: &str, msg: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_str(code).unwrap());
        h.insert(
            "grpc-message",
            HeaderValue::from_str(&percent_encode(msg)).unwrap(),
        );
        h
    }

    #[test]
    fn decode_failures_become_invalid_argument_with_the_reason() {
        for (code, msg) in [
            (
                "11",
                "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
            ),
            ("13", "failed to decode Protobuf message: invalid string value: data is not UTF-8 encoded"),
        ] {
            let mut h = headers(code, msg);
            rewrite(&mut h);
            assert_eq!(h["grpc-status"], "3");
            let got = percent_decode(h["grpc-message"].to_str().unwrap());
            assert!(got.starts_with("request: "), "{got}");
            assert!(got.contains(msg), "{got}");
        }
    }

    #[test]
    fn other_statuses_are_left_alone() {
        for (code, msg) in [
            ("13", "internal error: bug"),
            ("11", "out of range"),
            ("5", "x"),
        ] {
            let mut h = headers(code, msg);
            rewrite(&mut h);
            assert_eq!(h["grpc-status"], code);
            assert_eq!(percent_decode(h["grpc-message"].to_str().unwrap()), msg);
        }
    }

    #[test]
    fn percent_coding_round_trips() {
        let s = "a 100% ünïcode\nline";
        assert_eq!(percent_decode(&percent_encode(s)), s);
        assert_eq!(percent_decode("50%"), "50%");
    }
}
