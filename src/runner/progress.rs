//! Progress of an environment's initialisation (an image pulled or imported, a flake
//! evaluated), as `InitEnvironment` streams it.

/// One step of progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// A short word for the phase: "connect", "image", "pull", "import", "remove", "create",
    /// "evaluate", "cached", "ready".
    pub phase: String,
    /// Work done and in all, in `unit`, when known (0 otherwise).
    pub done: u64,
    pub total: u64,
    /// "bytes", "steps", or "" when there is no count.
    pub unit: &'static str,
    /// A line for a person.
    pub message: String,
}

impl Progress {
    /// A phase with a line and no count.
    pub fn line(phase: &str, message: impl Into<String>) -> Progress {
        Progress {
            phase: phase.to_string(),
            message: message.into(),
            ..Progress::default()
        }
    }
}

/// Where progress goes; a sink that is gone (the client left) is ignored.
pub type Sink<'a> = &'a (dyn Fn(Progress) + Send + Sync);
