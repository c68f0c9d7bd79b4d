//! Input to a child (stdin pipe or PTY master), written by a thread so a process that does not
//! read can never block a client: pending bytes are bounded and over the bound is an error.
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use crate::error::{Error, Result};

enum Msg {
    Data(Vec<u8>),
    Close,
}

/// How closing input is expressed to the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseBy {
    /// Close the pipe: the child reads end of file.
    Drop,
    /// Type ^D: in canonical mode the terminal turns it into end of file.
    Eot,
}

/// The sending side, held by the process.
pub struct Input {
    tx: mpsc::Sender<Msg>,
    pending: Arc<AtomicUsize>,
    max_pending: usize,
}

impl Input {
    /// Start the writer thread for `sink`.
    pub fn start(
        id: &str,
        mut sink: Box<dyn Write + Send>,
        close_by: CloseBy,
        max_pending: usize,
    ) -> Input {
        let (tx, rx) = mpsc::channel::<Msg>();
        let pending = Arc::new(AtomicUsize::new(0));
        let p = pending.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("tend-input-{id}"))
            .spawn(move || {
                for msg in rx {
                    match msg {
                        Msg::Data(data) => {
                            let ok = sink.write_all(&data).and_then(|_| sink.flush()).is_ok();
                            p.fetch_sub(data.len(), Ordering::AcqRel);
                            if !ok {
                                // The child closed its end (EPIPE/EIO): nothing more can be written.
                                return;
                            }
                        }
                        Msg::Close if close_by == CloseBy::Eot => {
                            let _ = sink.write_all(b"\x04").and_then(|_| sink.flush());
                        }
                        Msg::Close => return,
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start an input writer thread");
        }
        Input {
            tx,
            pending,
            max_pending,
        }
    }

    /// Queue bytes for the child. Fails rather than waits when the child is not reading.
    pub fn send(&self, id: &str, data: Vec<u8>) -> Result<usize> {
        let len = data.len();
        let before = self.pending.fetch_add(len, Ordering::AcqRel);
        if before + len > self.max_pending && before > 0 {
            self.pending.fetch_sub(len, Ordering::AcqRel);
            return Err(Error::ResourceExhausted(format!(
                "{id} has {before} bytes of input it has not read yet (limit {}); \
                 wait for it to read, or check that it reads stdin",
                self.max_pending
            )));
        }
        self.tx.send(Msg::Data(data)).map_err(|_| {
            Error::FailedPrecondition(format!("{id} no longer reads input (its input is closed)"))
        })?;
        Ok(len)
    }

    /// Close input (or type ^D on a PTY).
    pub fn close(&self) {
        let _ = self.tx.send(Msg::Close);
    }
}
