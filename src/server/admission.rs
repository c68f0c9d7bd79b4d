//! Bounds on what clients hold open: calls in flight (counted from their first byte, a call
//! that sends only headers included), how long a call may take to send its first message, and
//! connections per listener. Without them, clients that open calls and never finish them grow
//! the daemon without bound.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tower::{Layer, Service};

/// The call bounds, shared by every listener.
#[derive(Debug, Clone)]
pub struct CallsLayer {
    calls: Arc<Semaphore>,
    max: usize,
    first_message: Duration,
}

impl CallsLayer {
    /// At most `max` calls in flight; each must send its first message within `first_message`.
    pub fn new(max: usize, first_message: Duration) -> Self {
        CallsLayer {
            calls: Arc::new(Semaphore::new(max)),
            max,
            first_message,
        }
    }
}

impl<S> Layer<S> for CallsLayer {
    type Service = Calls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Calls {
            inner,
            bounds: self.clone(),
        }
    }
}

/// A service whose calls are counted and whose request bodies have a first-message deadline.
#[derive(Debug, Clone)]
pub struct Calls<S> {
    inner: S,
    bounds: CallsLayer,
}

impl<S, RB> Service<Request<Body>> for Calls<S>
where
    S: Service<Request<Body>, Response = Response<RB>>,
    S::Future: Send + 'static,
    RB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    RB::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let Ok(permit) = self.bounds.calls.clone().try_acquire_owned() else {
            let status = tonic::Status::resource_exhausted(format!(
                "{} calls are in flight, the daemon's limit (--max-calls); retry when some \
                 have finished",
                self.bounds.max
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let (parts, body) = req.into_parts();
        let body = Body::new(FirstMessage {
            inner: body,
            deadline: Some(Box::pin(tokio::time::sleep(self.bounds.first_message))),
            within: self.bounds.first_message,
        });
        let fut = self.inner.call(Request::from_parts(parts, body));
        Box::pin(async move {
            let resp = fut.await?;
            // The call counts until its response body (a stream's events) ends.
            Ok(resp.map(|b| {
                Body::new(Holding {
                    inner: Box::pin(b),
                    _permit: permit,
                })
            }))
        })
    }
}

/// A request body that fails if its first frame does not come within the deadline.
struct FirstMessage {
    inner: Body,
    /// Cleared by the first frame.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    within: Duration,
}

impl http_body::Body for FirstMessage {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.deadline = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if !expired {
                    return Poll::Pending;
                }
                this.deadline = None;
                Poll::Ready(Some(Err(tonic::Status::deadline_exceeded(format!(
                    "request: no message within {} ms of the call's start (an Attach must \
                     send `open` first); the daemon gave up on it",
                    this.within.as_millis()
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds the call's permit until it ends or is dropped.
struct Holding<B> {
    inner: Pin<Box<B>>,
    _permit: OwnedSemaphorePermit,
}

impl<B: http_body::Body> http_body::Body for Holding<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.inner.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Connections open on one listener: an accepted connection over the bound is closed at once,
/// with a warning (at most one a second).
#[derive(Debug, Clone)]
pub struct Connections {
    open: Arc<Semaphore>,
    max: usize,
    listener: String,
    last_warning: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl Connections {
    /// At most `max` connections on the listener named `listener`.
    pub fn new(max: usize, listener: impl Into<String>) -> Self {
        Connections {
            open: Arc::new(Semaphore::new(max)),
            max,
            listener: listener.into(),
            last_warning: Arc::default(),
        }
    }

    /// A permit for a new connection, or `None` (logged) when the listener is full.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.open.clone().try_acquire_owned().ok();
        if permit.is_none() {
            let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                *last = Some(std::time::Instant::now());
                tracing::warn!(
                    listener = self.listener,
                    max = self.max,
                    "refused a connection: the listener has its maximum open (--max-connections)"
                );
            }
        }
        permit
    }
}

/// A connection that holds its listener's permit for as long as it is open.
#[derive(Debug)]
pub struct Admitted<IO> {
    io: IO,
    _permit: OwnedSemaphorePermit,
}

impl<IO> Admitted<IO> {
    pub fn new(io: IO, permit: OwnedSemaphorePermit) -> Self {
        Admitted {
            io,
            _permit: permit,
        }
    }
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Admitted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Admitted<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Admitted<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}
