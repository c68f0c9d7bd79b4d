//! Feeding a process's output to a streaming RPC: a task reads with its own cursor and sends into a
//! bounded channel whose receiver is the response stream. A failed send means the client left.
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tonic::Status;

use super::{convert, readiness_convert};
use crate::pb;
use crate::supervisor::readiness::{Readiness, State};
use crate::supervisor::{Chunk, Cursor, Process, Read, StreamKind};

/// The most data bytes read into one batch of events.
const BATCH_BYTES: usize = 1 << 20;
/// Recent output an attacher gets first unless it asks for another amount.
pub const REPLAY_DEFAULT: u32 = 64 << 10;
/// Events buffered per client; a slower client makes its own task wait, never the process.
pub const CHANNEL_DEPTH: usize = 16;

/// How a stream reads a process's output.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// Follow live output until the exit, or stop at the end of what is retained now.
    pub follow: bool,
    /// Hold the output so nothing this reader has not received is overwritten (the cursor's
    /// hold, taken where the cursor is made).
    pub lossless: bool,
    /// The stream owns the process: when it ends before the exit, the process is stopped.
    pub owner: bool,
}

/// Send output events from `cursor` until the process exits (or, without `follow`, until what
/// is retained now is sent), then the exited event. Holds the stream's admission `permit` until
/// it ends.
pub async fn pump<R>(
    permit: tokio::sync::OwnedSemaphorePermit,
    p: Arc<Process>,
    cursor: Cursor,
    how: Reading,
    tx: mpsc::Sender<Result<R, Status>>,
    wrap: fn(pb::ProcessEvent) -> R,
) -> Pumped {
    let _permit = permit;
    pump_run(&p, cursor, how, &tx, wrap).await
}

/// How `pump_run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// The exited event was sent.
    Exited,
    /// Everything retained was sent (not following).
    CaughtUp,
    /// The client went away.
    Gone,
}

/// The body of `pump`, for streams that go on after one process (an agent's next run).
pub async fn pump_run<R>(
    p: &Process,
    mut cursor: Cursor,
    how: Reading,
    tx: &mpsc::Sender<Result<R, Status>>,
    wrap: fn(pb::ProcessEvent) -> R,
) -> Pumped {
    let follow = how.follow;
    // A lossless cursor's hold was taken by the caller, when it made the cursor: before this
    // task runs, so that no byte is overwritten meanwhile. Released when this returns or the
    // task is dropped: a reader that went away holds nothing.
    let _hold = p.output.release_on_drop(&cursor);
    let mut changed = p.output.subscribe();
    // The ready event goes once, between the output written before readiness was seen and what
    // came after (a chunk across that point is split there).
    let mut ready = p.watch_readiness();
    // How far this stream has sent each stream.
    let mut sent: Vec<(StreamKind, u64)> = cursor.positions().to_vec();
    loop {
        changed.borrow_and_update();
        let read = p.output.read(&mut cursor, BATCH_BYTES);
        match read {
            Read::Chunks(chunks) => {
                let point = ready_point(&ready);
                for chunk in chunks {
                    for part in split(chunk, point.as_deref()) {
                        let (kind, end) = chunk_end(&part);
                        if tx.send(Ok(wrap(convert::chunk_event(part)))).await.is_err() {
                            return Pumped::Gone;
                        }
                        if let Some(s) = sent.iter_mut().find(|s| s.0 == kind) {
                            s.1 = s.1.max(end);
                        }
                        if send_ready(&mut ready, &sent, false, tx, wrap)
                            .await
                            .is_err()
                        {
                            return Pumped::Gone;
                        }
                    }
                }
                continue;
            }
            Read::Done(exit) => {
                if send_ready(&mut ready, &sent, true, tx, wrap).await.is_err() {
                    return Pumped::Gone;
                }
                let event = pb::ProcessEvent {
                    kind: Some(pb::process_event::Kind::Exited(convert::exit_to_pb(&exit))),
                };
                return match tx.send(Ok(wrap(event))).await {
                    Ok(()) => Pumped::Exited,
                    Err(_) => Pumped::Gone,
                };
            }
            Read::Pending => {}
        }
        if send_ready(&mut ready, &sent, true, tx, wrap).await.is_err() {
            return Pumped::Gone;
        }
        if !follow {
            return Pumped::CaughtUp;
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return Pumped::Gone },
            // Readiness changed: look again (the ready event may be due).
            r = async { ready.as_mut().expect("guarded").changed().await }, if ready.is_some() => {
                if r.is_err() {
                    ready = None;
                }
            }
            _ = tx.closed() => return Pumped::Gone,
        }
    }
}

/// Where the process was when it became ready, if it is.
fn ready_point(ready: &Option<watch::Receiver<Readiness>>) -> Option<Vec<(StreamKind, u64)>> {
    let r = ready.as_ref()?.borrow();
    (r.state == State::Ready).then(|| r.offsets.clone())
}

/// A chunk, in two where it crosses its stream's ready point.
fn split(chunk: Chunk, point: Option<&[(StreamKind, u64)]>) -> Vec<Chunk> {
    let at = |kind: StreamKind| point?.iter().find(|p| p.0 == kind).map(|p| p.1);
    match chunk {
        Chunk::Data {
            stream,
            offset,
            data,
        } if at(stream).is_some_and(|at| at > offset && at < offset + data.len() as u64) => {
            let cut = (at(stream).unwrap_or(offset) - offset) as usize;
            vec![
                Chunk::Data {
                    stream,
                    offset,
                    data: data.slice(..cut),
                },
                Chunk::Data {
                    stream,
                    offset: offset + cut as u64,
                    data: data.slice(cut..),
                },
            ]
        }
        other => vec![other],
    }
}

/// The stream of a chunk and the offset just after it.
fn chunk_end(c: &Chunk) -> (StreamKind, u64) {
    match c {
        Chunk::Data {
            stream,
            offset,
            data,
        } => (*stream, offset + data.len() as u64),
        Chunk::Gap {
            stream,
            offset,
            len,
        } => (*stream, offset + len),
    }
}

/// Send the ready event if the process is ready and this stream has sent the output written
/// before (or, `caught_up`, all there is); then stop following readiness.
async fn send_ready<R>(
    ready: &mut Option<watch::Receiver<Readiness>>,
    sent: &[(StreamKind, u64)],
    caught_up: bool,
    tx: &mpsc::Sender<Result<R, Status>>,
    wrap: fn(pb::ProcessEvent) -> R,
) -> Result<(), ()> {
    let Some(watching) = ready else { return Ok(()) };
    // Asked after every chunk: look without copying until there is something to send.
    let r = {
        let r = watching.borrow_and_update();
        match r.state {
            State::Pending => return Ok(()),
            State::Failed => {
                drop(r);
                *ready = None;
                return Ok(());
            }
            State::Ready => r.clone(),
        }
    };
    let passed = || {
        sent.iter().all(|(kind, pos)| {
            r.offsets
                .iter()
                .find(|(k, _)| k == kind)
                .is_none_or(|(_, at)| pos >= at)
        })
    };
    if !(caught_up || passed()) {
        return Ok(());
    }
    *ready = None;
    tx.send(Ok(wrap(readiness_convert::ready_event(&r))))
        .await
        .map_err(drop)
}

/// What an attached client sends after opening the session.
pub enum Input {
    Data(Vec<u8>),
    Resize(pb::PtySize),
    Close,
    /// A second `open`: a protocol error.
    Open,
    /// An empty message.
    Nothing,
}

/// Apply an attached client's messages to the process `target` holds (an agent's attacher is
/// moved to each new run) until the client ends its side or sends something invalid; an error
/// ends the session with that status. Holds only a weak sender so the response stream still
/// ends with the exit event.
pub fn forward_input<S, R>(
    mut target: watch::Receiver<Arc<Process>>,
    read_only: bool,
    max_input: usize,
    mut inbound: S,
    errors: mpsc::WeakSender<Result<R, Status>>,
) where
    S: tokio_stream::Stream<Item = Result<Input, Status>> + Send + Unpin + 'static,
    R: Send + 'static,
{
    use crate::error::Error;
    use tokio_stream::StreamExt;
    tokio::spawn(async move {
        // This client's last size, given to each new run too: a restarted agent's terminal
        // starts at the spec's size, not the attacher's.
        let mut size = None;
        let mut moves = true;
        loop {
            let msg = tokio::select! {
                // A move first: input sent after the client saw the new run must reach it.
                biased;
                moved = target.changed(), if moves => {
                    match moved {
                        Ok(()) => if let Some(s) = size {
                            let _ = target.borrow_and_update().resize(s);
                        },
                        Err(_) => moves = false,
                    }
                    continue;
                }
                msg = inbound.next() => msg,
            };
            let Some(Ok(msg)) = msg else { return };
            let p = target.borrow().clone();
            let result = match msg {
                Input::Nothing => Ok(()),
                _ if read_only => Err(Error::FailedPrecondition(format!(
                    "attached to {} read-only; attach again without read_only to send input",
                    p.id
                ))),
                Input::Data(data) if data.len() > max_input => Err(Error::invalid(
                    "input",
                    format!("{} bytes in one message; at most {max_input}", data.len()),
                )),
                Input::Data(data) => p.send_input(data).map(drop),
                Input::Resize(s) => convert::pty_size("resize", s).and_then(|s| {
                    size = Some(s);
                    p.resize(s)
                }),
                Input::Close => p.close_input(),
                Input::Open => Err(Error::invalid(
                    "open",
                    "the session is already open; send input, resize or close_input",
                )),
            };
            if let Err(e) = result {
                if let Some(tx) = errors.upgrade() {
                    let _ = tx.send(Err(e.into())).await;
                }
                return;
            }
        }
    });
}

/// The first message of an Attach session, which must open it: `opening` picks the open payload
/// out of a message (`None` for anything else); `what` names the session for the error.
pub async fn opening<T, O>(
    inbound: &mut tonic::Streaming<T>,
    opening: fn(T) -> Option<O>,
    what: &str,
) -> Result<O, Status> {
    use tokio_stream::StreamExt;
    match inbound.next().await {
        Some(Ok(msg)) => opening(msg),
        Some(Err(status)) => return Err(status),
        None => None,
    }
    .ok_or_else(|| {
        crate::error::Error::invalid(
            "open",
            format!("the first message must be `open` naming the {what}"),
        )
        .into()
    })
}
