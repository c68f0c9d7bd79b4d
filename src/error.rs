//! The core's error type, and its one mapping to `tonic::Status`.
use tonic::{Code, Status};

/// Errors of the core. Each message says what went wrong and, where it can, what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; `field` is its path in the request, e.g. `spec.argv`.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// No such process, agent, environment or file.
    #[error("{0}")]
    NotFound(String),
    /// A name or request id is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The target is not in a state that allows the call; the message says what to do.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A limit was hit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The daemon is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A bug or an unexpected state.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An `InvalidArgument` naming the request field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An `Io` error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => Code::NotFound,
                std::io::ErrorKind::PermissionDenied => Code::PermissionDenied,
                _ => Code::Internal,
            },
            Error::Internal(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        Status::new(err.code(), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_code_and_keeps_the_message() {
        let io = |kind| Error::io("open /x", std::io::Error::from(kind));
        let cases: Vec<(Error, Code, &str)> = vec![
            (
                Error::invalid("spec.argv", "must not be empty"),
                Code::InvalidArgument,
                "spec.argv: must not be empty",
            ),
            (
                Error::NotFound("no process p-9".into()),
                Code::NotFound,
                "no process p-9",
            ),
            (
                Error::AlreadyExists("name web is taken".into()),
                Code::AlreadyExists,
                "name web is taken",
            ),
            (
                Error::FailedPrecondition("p-1 is running".into()),
                Code::FailedPrecondition,
                "p-1 is running",
            ),
            (
                Error::ResourceExhausted("too many".into()),
                Code::ResourceExhausted,
                "too many",
            ),
            (
                Error::Unavailable("shutting down".into()),
                Code::Unavailable,
                "shutting down",
            ),
            (io(std::io::ErrorKind::NotFound), Code::NotFound, "open /x"),
            (
                io(std::io::ErrorKind::PermissionDenied),
                Code::PermissionDenied,
                "open /x",
            ),
            (io(std::io::ErrorKind::Other), Code::Internal, "open /x"),
            (
                Error::Internal("bug".into()),
                Code::Internal,
                "internal error: bug",
            ),
        ];
        for (err, code, msg) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(status.message().starts_with(msg), "{}", status.message());
        }
    }
}
