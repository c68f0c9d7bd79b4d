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
    /// The program cannot be run: not found (a shell exits 127) or found but not executable
    /// (126). The status carries that code in `tend-exit-code` so a client can exit as a shell
    /// would.
    #[error("{message}")]
    Exec { message: String, not_found: bool },
    /// A bug or an unexpected state.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Metadata key of a status whose call failed before the program ran: what a shell would exit
/// with (127 not found, 126 not executable).
pub const EXIT_CODE_KEY: &str = "tend-exit-code";

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
            Error::Exec {
                not_found: true, ..
            } => Code::NotFound,
            Error::Exec { .. } => Code::PermissionDenied,
            Error::Internal(_) => Code::Internal,
        }
    }

    /// What a shell would exit with for this error, when it is one a shell knows.
    pub fn shell_exit_code(&self) -> Option<i32> {
        match self {
            Error::Exec { not_found, .. } => Some(if *not_found { 127 } else { 126 }),
            _ => None,
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let mut status = Status::new(err.code(), err.to_string());
        if let Some(code) = err.shell_exit_code() {
            status
                .metadata_mut()
                .insert(EXIT_CODE_KEY, code.to_string().parse().expect("digits"));
        }
        status
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
                Error::Exec {
                    message: "spec.argv[0]: \"nope\" not found".into(),
                    not_found: true,
                },
                Code::NotFound,
                "spec.argv[0]: \"nope\" not found",
            ),
            (
                Error::Exec {
                    message: "spec.argv[0]: /etc/passwd is not executable".into(),
                    not_found: false,
                },
                Code::PermissionDenied,
                "spec.argv[0]: /etc/passwd",
            ),
            (
                Error::Internal("bug".into()),
                Code::Internal,
                "internal error: bug",
            ),
        ];
        for (err, code, msg) in cases {
            let shell = err.shell_exit_code();
            let status = Status::from(err);
            let carried = status
                .metadata()
                .get(EXIT_CODE_KEY)
                .and_then(|v| v.to_str().ok()?.parse().ok());
            assert_eq!(carried, shell, "{}", status.message());
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(status.message().starts_with(msg), "{}", status.message());
        }
    }
}
