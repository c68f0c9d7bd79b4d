//! The bound on streaming RPCs (Run, Connect, Attach, Watch) open at once: each holds a task and
//! a few buffered events, so their number must be capped like every other resource.
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;

/// Admission to a streaming RPC; the permit lives as long as the stream's task.
#[derive(Clone)]
pub struct Streams {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Streams {
    /// Allow `max` streams at once.
    pub fn new(max: usize) -> Streams {
        Streams {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A permit, or `ResourceExhausted` when the limit is reached.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "{} streams (Run, Connect, Attach, Watch) are open, the limit; close some or \
                 raise --max-streams",
                self.max
            ))
        })
    }
}
