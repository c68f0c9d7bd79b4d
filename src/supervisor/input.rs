//! Input to a child (stdin pipe or PTY master), so that a process that does not read can never
//! block a client: what the child can take at once is written straight from the caller (no
//! thread hop on the keystroke path); the rest waits in a queue that a task writes as the child
//! reads. Queued bytes are bounded and over the bound is an error.
use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use super::fdio::{register, set_nonblocking, write};
use crate::error::{Error, Result};

/// How closing input is expressed to the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseBy {
    /// Close the pipe: the child reads end of file.
    Drop,
    /// Type ^D: in canonical mode the terminal turns it into end of file.
    Eot,
}

/// The sending side, held by the process. `close` (on a pipe) and dropping it close the
/// descriptor once the queue is written; `abandon` closes it without waiting.
pub struct Input {
    shared: Arc<Shared>,
    close_by: CloseBy,
    max_pending: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Work for the writer task: queued bytes, a close, or abandonment.
    wake: Notify,
}

struct State {
    /// The descriptor, until input ends: taken away then, so that it closes (the child reads end
    /// of file) even while the `Input` itself lives on.
    fd: Option<Arc<AsyncFd<OwnedFd>>>,
    queue: VecDeque<Vec<u8>>,
    /// Bytes of the queue's front already written.
    front_written: usize,
    /// Bytes queued and not yet written.
    pending: usize,
    /// Close once the queue is written.
    closing: bool,
    /// Close now, dropping the queue.
    abandoned: bool,
    /// The child's end is gone (EPIPE, EIO): nothing more can be written.
    broken: bool,
}

/// What a write attempt found.
enum Wrote {
    All,
    Blocked,
    Broken,
}

impl State {
    /// Write the queue until it is empty, the descriptor would block, or the child is gone.
    fn write_queue(&mut self) -> Wrote {
        let Some(fd) = self.fd.clone() else {
            return Wrote::Broken;
        };
        while let Some(front) = self.queue.front() {
            match write(fd.get_ref(), &front[self.front_written..]) {
                Ok(n) => {
                    self.front_written += n;
                    self.pending -= n;
                    if self.front_written == front.len() {
                        self.queue.pop_front();
                        self.front_written = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Wrote::Blocked,
                Err(_) => {
                    self.break_off();
                    return Wrote::Broken;
                }
            }
        }
        Wrote::All
    }

    fn break_off(&mut self) {
        self.broken = true;
        self.fd = None;
        self.queue.clear();
        self.pending = 0;
        self.front_written = 0;
    }
}

impl Input {
    /// Take over `fd` (made non-blocking) and start its writer task. Must run inside a tokio
    /// runtime.
    pub fn start(fd: OwnedFd, close_by: CloseBy, max_pending: usize) -> io::Result<Input> {
        set_nonblocking(&fd)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                fd: Some(Arc::new(register(fd, Interest::WRITABLE)?)),
                queue: VecDeque::new(),
                front_written: 0,
                pending: 0,
                closing: false,
                abandoned: false,
                broken: false,
            }),
            wake: Notify::new(),
        });
        tokio::spawn(write_queued(shared.clone()));
        Ok(Input {
            shared,
            close_by,
            max_pending,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Send bytes to the child: written at once if it can take them, else queued. Fails rather
    /// than waits when the child is not reading.
    pub fn send(&self, id: &str, data: Vec<u8>) -> Result<usize> {
        let len = data.len();
        let mut st = self.state();
        if st.broken {
            return Err(Error::FailedPrecondition(format!(
                "{id} no longer reads input (its end of the input is closed)"
            )));
        }
        if st.closing || st.abandoned {
            return Err(Error::FailedPrecondition(format!(
                "the input of {id} is closed"
            )));
        }
        if st.pending > 0 && st.pending + len > self.max_pending {
            return Err(Error::ResourceExhausted(format!(
                "{id} has {} bytes of input it has not read yet (limit {}); \
                 wait for it to read, or check that it reads stdin",
                st.pending, self.max_pending
            )));
        }
        st.pending += len;
        st.queue.push_back(data);
        if st.queue.len() == 1 {
            // Nothing queued before: the child may take it all now, in this thread.
            match st.write_queue() {
                Wrote::All => return Ok(len),
                Wrote::Broken => {
                    return Err(Error::FailedPrecondition(format!(
                        "{id} no longer reads input (its end of the input is closed)"
                    )))
                }
                Wrote::Blocked => {}
            }
        }
        drop(st);
        self.shared.wake.notify_one();
        Ok(len)
    }

    /// Close input after what is queued (on a PTY: type ^D after it).
    pub fn close(&self) {
        let mut st = self.state();
        if st.broken || st.closing || st.abandoned {
            return;
        }
        match self.close_by {
            CloseBy::Eot => {
                st.pending += 1;
                st.queue.push_back(vec![0x04]);
                if st.queue.len() == 1 {
                    st.write_queue();
                }
            }
            CloseBy::Drop => st.closing = true,
        }
        drop(st);
        self.shared.wake.notify_one();
    }

    /// Whether input is still accepted.
    pub fn is_open(&self) -> bool {
        let st = self.state();
        !(st.closing || st.abandoned || st.broken)
    }

    /// Stop writing and close the descriptor now: the process is gone, and whoever still holds
    /// its terminal or stdin may never read what is queued.
    pub fn abandon(&self) {
        self.state().abandoned = true;
        self.shared.wake.notify_one();
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        self.state().closing = true;
        self.shared.wake.notify_one();
    }
}

/// The writer task: writes the queue as the child reads, until input is closed, abandoned or
/// broken; then it takes the descriptor away, which closes it.
async fn write_queued(shared: Arc<Shared>) {
    let lock = || shared.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let fd = {
            let mut st = lock();
            if st.abandoned || st.broken || (st.closing && st.queue.is_empty()) {
                st.fd = None;
                return;
            }
            if st.queue.is_empty() {
                None
            } else {
                st.fd.clone()
            }
        };
        let Some(fd) = fd else {
            shared.wake.notified().await;
            continue;
        };
        let mut ready = tokio::select! {
            ready = fd.writable() => match ready {
                Ok(r) => r,
                Err(_) => {
                    lock().break_off();
                    return;
                }
            },
            // Abandoned (or more queued) while the child does not read.
            _ = shared.wake.notified() => continue,
        };
        let mut st = lock();
        if st.abandoned {
            continue;
        }
        match st.write_queue() {
            Wrote::Blocked => ready.clear_ready(),
            Wrote::All => {}
            Wrote::Broken => return,
        }
    }
}
