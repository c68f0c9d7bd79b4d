//! The LoaderService adapter: validate, call the loader, map errors.
use std::pin::Pin;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::limit::Streams;
use super::loader_convert as conv;
use super::stream::{pump_run, Pumped, Reading, CHANNEL_DEPTH};
use crate::config::Limits;
use crate::error::Error;
use crate::loader::spec::check_name;
use crate::loader::Loader;
use crate::pb;
use crate::pb::loader_service_server::LoaderService;
use crate::server::caller::Caller;
use crate::supervisor::{Cursor, StreamKind};

/// Largest Logs tail.
const MAX_TAIL: u32 = 16 << 20;

/// The service over the plugin loader.
pub struct LoaderApi {
    loader: Loader,
    limits: Limits,
    streams: Streams,
}

impl LoaderApi {
    /// Serve `loader`, checking specs against `limits`, with at most `streams` streaming calls
    /// open at once (shared).
    pub fn new(loader: Loader, limits: Limits, streams: Streams) -> Self {
        LoaderApi {
            loader,
            limits,
            streams,
        }
    }
}

type Events<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

#[tonic::async_trait]
impl LoaderService for LoaderApi {
    async fn load(
        &self,
        request: Request<pb::LoadRequest>,
    ) -> Result<Response<pb::LoadResponse>, Status> {
        Caller::of(&request).owner_only("load or unload plugins")?;
        let spec = conv::spec(request.into_inner().spec, &self.limits)?;
        let info = self.loader.load(spec).await?;
        Ok(Response::new(pb::LoadResponse {
            plugin: Some(conv::info(&info)),
        }))
    }

    async fn unload(
        &self,
        request: Request<pb::UnloadRequest>,
    ) -> Result<Response<pb::UnloadResponse>, Status> {
        Caller::of(&request).owner_only("load or unload plugins")?;
        let r = request.into_inner();
        check_name("name", &r.name)?;
        let grace = r.grace_ms.map(|g| conv::grace("grace_ms", g)).transpose()?;
        let (info, stage) = self.loader.unload(&r.name, grace).await?;
        Ok(Response::new(pb::UnloadResponse {
            plugin: Some(conv::info(&info)),
            stage: conv::stage(stage) as i32,
        }))
    }

    async fn list(
        &self,
        _request: Request<pb::LoaderServiceListRequest>,
    ) -> Result<Response<pb::LoaderServiceListResponse>, Status> {
        let plugins = self.loader.list().iter().map(conv::info).collect();
        Ok(Response::new(pb::LoaderServiceListResponse { plugins }))
    }

    async fn get(
        &self,
        request: Request<pb::LoaderServiceGetRequest>,
    ) -> Result<Response<pb::LoaderServiceGetResponse>, Status> {
        let r = request.into_inner();
        check_name("name", &r.name)?;
        let info = self.loader.get(&r.name)?;
        Ok(Response::new(pb::LoaderServiceGetResponse {
            plugin: Some(conv::info(&info)),
        }))
    }

    type LogsStream = Events<pb::LogsResponse>;

    async fn logs(
        &self,
        request: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let r = request.into_inner();
        check_name("name", &r.name)?;
        let kinds = match pb::Stream::try_from(r.stream) {
            Ok(pb::Stream::Unspecified) => vec![StreamKind::Stdout, StreamKind::Stderr],
            Ok(pb::Stream::Stdout) => vec![StreamKind::Stdout],
            Ok(pb::Stream::Stderr) => vec![StreamKind::Stderr],
            Ok(pb::Stream::Pty) => {
                return Err(Error::invalid(
                    "stream",
                    "a plugin has no PTY: use STREAM_STDERR, STREAM_STDOUT, or neither for both",
                )
                .into())
            }
            Err(_) => {
                return Err(Error::invalid("stream", format!("unknown stream {}", r.stream)).into())
            }
        };
        if r.tail_bytes > MAX_TAIL {
            return Err(Error::invalid(
                "tail_bytes",
                format!("{} is more than {MAX_TAIL}", r.tail_bytes),
            )
            .into());
        }
        let plugin = self.loader.plugin(&r.name)?;
        let permit = self.streams.admit()?;
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let loader = self.loader.clone();
        let wrap = |e| pb::LogsResponse { event: Some(e) };
        tokio::spawn(async move {
            let _permit = permit;
            let Some(mut p) = plugin.process() else {
                return;
            };
            let mut cursor = if r.tail_bytes == 0 {
                Cursor::new(&kinds, 0)
            } else {
                p.output.cursor_from_end(&kinds, r.tail_bytes.into())
            };
            let how = Reading {
                follow: r.follow,
                lossless: false,
                owner: false,
            };
            while pump_run(&p, cursor, how, &tx, wrap).await == Pumped::Exited && r.follow {
                let next = tokio::select! {
                    next = loader.next_run(&plugin, &p) => next,
                    _ = tx.closed() => return,
                };
                let Some(next) = next else { return };
                let started = super::convert::started_event(&next);
                if tx.send(Ok(wrap(started))).await.is_err() {
                    return;
                }
                // The whole new run, from its first byte.
                cursor = Cursor::new(&kinds, 0);
                p = next;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resolve(
        &self,
        request: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        let r = request.into_inner();
        let (package, want) = conv::package(&r.package, &r.version)?;
        let found = self.loader.stores()?.resolve(&package, &want).await?;
        Ok(Response::new(pb::ResolveResponse {
            plugin: Some(conv::resolved(&found)),
        }))
    }

    type InstallStream = Events<pb::InstallResponse>;

    async fn install(
        &self,
        request: Request<pb::InstallRequest>,
    ) -> Result<Response<Self::InstallStream>, Status> {
        Caller::of(&request).owner_only("install plugins")?;
        let r = request.into_inner();
        let (package, want) = conv::package(&r.package, &r.version)?;
        let stores = self.loader.stores()?;
        let permit = self.streams.admit()?;
        // Unbounded, but bounded in count: a few phase events and at most ~100 download
        // events (one per percent, or per MiB when the size is unknown), so a slow reader
        // never stalls the install nor loses a phase.
        let (tx, rx) = mpsc::unbounded_channel();
        // The install runs to its end in its own task, whether or not the caller stays.
        tokio::spawn(async move {
            let _permit = permit;
            let last = std::sync::atomic::AtomicU64::new(u64::MAX);
            let report = |p: crate::loader::store::Progress| {
                if p.phase == crate::loader::store::Phase::Download {
                    let step = if p.total > 0 { p.total / 100 } else { 1 << 20 }.max(1);
                    let bucket = p.done / step;
                    if p.done != p.total
                        && last.swap(bucket, std::sync::atomic::Ordering::Relaxed) == bucket
                    {
                        return;
                    }
                }
                let _ = tx.send(Ok(conv::progress(&p)));
            };
            if let Err(e) = stores.install(&package, &want, &report).await {
                let _ = tx.send(Err(e.into()));
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        )))
    }

    type WatchStream = Events<pb::LoaderServiceWatchResponse>;

    async fn watch(
        &self,
        request: Request<pb::LoaderServiceWatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = request.into_inner();
        if !r.name.is_empty() {
            check_name("name", &r.name)?;
        }
        let permit = self.streams.admit()?;
        let mut events = self.loader.subscribe();
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        tokio::spawn(async move {
            let _permit = permit;
            loop {
                let ev = tokio::select! {
                    ev = events.recv() => ev,
                    _ = tx.closed() => return,
                };
                let ev = match ev {
                    Ok(e) if r.name.is_empty() || e.name == r.name => conv::event(&e),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => conv::lagged(n),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let msg = pb::LoaderServiceWatchResponse { event: Some(ev) };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
