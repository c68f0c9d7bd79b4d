//! Feeding a process's output to a streaming RPC: a task reads with its own cursor and sends into a
//! bounded channel whose receiver is the response stream. A failed send means the client left.
use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::Status;

use super::convert;
use crate::pb;
use crate::supervisor::{Cursor, Process, Read};

/// The most data bytes read into one batch of events.
const BATCH_BYTES: usize = 1 << 20;
/// Events buffered per client; a slower client makes its own task wait, never the process.
pub const CHANNEL_DEPTH: usize = 16;

/// Send output events from `cursor` until the process exits (or, with `follow` false, until
/// what is retained now is sent), then the exited event. Holds the stream's admission `permit`
/// until it ends.
pub async fn pump<R>(
    permit: tokio::sync::OwnedSemaphorePermit,
    p: Arc<Process>,
    mut cursor: Cursor,
    follow: bool,
    tx: mpsc::Sender<Result<R, Status>>,
    wrap: fn(pb::ProcessEvent) -> R,
) {
    let _permit = permit;
    let mut changed = p.output.subscribe();
    loop {
        changed.borrow_and_update();
        match p.output.read(&mut cursor, BATCH_BYTES) {
            Read::Chunks(chunks) => {
                for c in chunks {
                    if tx.send(Ok(wrap(convert::chunk_event(c)))).await.is_err() {
                        return;
                    }
                }
            }
            Read::Done(exit) => {
                let event = pb::ProcessEvent {
                    kind: Some(pb::process_event::Kind::Exited(convert::exit_to_pb(&exit))),
                };
                let _ = tx.send(Ok(wrap(event))).await;
                return;
            }
            Read::Pending if !follow => return,
            Read::Pending => {
                tokio::select! {
                    r = changed.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        }
    }
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

/// Apply an attached client's messages to the process until the client ends its side or sends
/// something invalid; an error ends the session with that status. Holds only a weak sender so
/// the response stream still ends with the exit event.
pub fn forward_input<S, R>(
    p: Arc<Process>,
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
        while let Some(msg) = inbound.next().await {
            let Ok(msg) = msg else { return };
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
                Input::Resize(size) => convert::pty_size("resize", size).and_then(|s| p.resize(s)),
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
