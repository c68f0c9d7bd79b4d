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
/// what is retained now is sent), then the exited event.
pub async fn pump<R>(
    p: Arc<Process>,
    mut cursor: Cursor,
    follow: bool,
    tx: mpsc::Sender<Result<R, Status>>,
    wrap: fn(pb::ProcessEvent) -> R,
) {
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
