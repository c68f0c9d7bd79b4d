//! The core's error type, and its one mapping to `tonic::Status`.
use std::path::Path;

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
    /// Something the call waits for did not happen in time (a plugin's handshake line); the
    /// message says what, how long, and what was seen meanwhile.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The call was overtaken by another that ended what it waited for (an Unload of a plugin
    /// still loading).
    #[error("{0}")]
    Aborted(String),
    /// Someone else refused the caller (a registry its credentials); the message says how to
    /// get in.
    #[error("{0}")]
    PermissionDenied(String),
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
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Aborted(_) => Code::Aborted,
            Error::PermissionDenied(_) => Code::PermissionDenied,
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

/// Most bytes of client input an error message quotes; longer input is cut, with its size.
pub const QUOTE_MAX: usize = 200;
/// Most bytes of a status message: the message travels in a header (`grpc-message`), and a
/// large one makes clients see `RESOURCE_EXHAUSTED` on the metadata instead of the real code.
pub const MESSAGE_MAX: usize = 1024;

/// The longest prefix of `s` of at most `max` bytes that ends at a char boundary.
fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Client input quoted for an error message: `"{s:?}"` when short; past `QUOTE_MAX` bytes (of
/// the escaped form), the quoted start and `…(N bytes)` with the input's full size.
pub fn quote(s: &str) -> String {
    // Escapes only lengthen, so start from `QUOTE_MAX` bytes and shorten until the quoted start
    // fits (a prefix's Debug form is the start of the whole's).
    let mut max = QUOTE_MAX;
    loop {
        let start = prefix(s, max);
        let quoted = format!("{start:?}");
        if quoted.len() <= QUOTE_MAX + 2 {
            if start.len() == s.len() {
                return quoted;
            }
            return format!("{quoted}…({} bytes)", s.len());
        }
        max = (start.len() * QUOTE_MAX / (quoted.len() - 2)).min(start.len() - 1);
    }
}

/// Client input shown as it is (unquoted) in an error message, cut past `QUOTE_MAX` bytes at a
/// char boundary, with `…(N bytes)` giving the input's full size.
pub fn clip(s: &str) -> String {
    if s.len() <= QUOTE_MAX {
        return s.to_string();
    }
    format!("{}…({} bytes)", prefix(s, QUOTE_MAX), s.len())
}

/// A client-given path for an error message, as `display()` shows it, cut as `clip` cuts.
pub fn clip_path(p: &Path) -> String {
    clip(&p.to_string_lossy())
}

/// `message` cut to at most `MESSAGE_MAX` bytes, at a char boundary, marked when cut.
fn cap(message: String) -> String {
    if message.len() <= MESSAGE_MAX {
        return message;
    }
    let marker = format!("…(message cut; {} bytes)", message.len());
    let kept = prefix(&message, MESSAGE_MAX - marker.len());
    format!("{kept}{marker}")
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        // The backstop: whatever a message quotes, it stays small.
        let mut status = Status::new(err.code(), cap(err.to_string()));
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
    fn quote_is_debug_when_short_and_cut_with_the_size_when_long() {
        assert_eq!(quote("web"), "\"web\"");
        assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
        let edge = "x".repeat(QUOTE_MAX);
        assert_eq!(quote(&edge), format!("{edge:?}"));
        let long = "y".repeat(70_000);
        let q = quote(&long);
        assert_eq!(q, format!("\"{}\"…(70000 bytes)", "y".repeat(QUOTE_MAX)));
        // Multi-byte chars are not split.
        let wide = "é".repeat(50_000);
        let q = quote(&wide);
        assert!(
            q.starts_with("\"éé") && q.ends_with("\"…(100000 bytes)"),
            "{q}"
        );
        assert!(q.len() < QUOTE_MAX + 40, "{}", q.len());
        // Escapes count: control chars expand, the bound is on what is shown.
        let ctl = "\u{1b}".repeat(150);
        let q = quote(&ctl);
        assert!(q.len() < QUOTE_MAX + 40, "{}", q.len());
        assert!(
            q.starts_with("\"\\u{1b}") && q.ends_with("…(150 bytes)"),
            "{q}"
        );
        // The escaped start is the Debug form of the input's start.
        let mixed = format!("{}{}", "a\tb\"c\u{301}é", "z".repeat(500));
        let q = quote(&mixed);
        let shown = &q[..q.rfind('…').unwrap()];
        let open = &shown[..shown.len() - 1];
        assert!(format!("{mixed:?}").starts_with(open), "{q}");
    }

    #[test]
    fn clip_keeps_short_input_and_cuts_long_at_a_char_boundary() {
        assert_eq!(clip("/tmp/x"), "/tmp/x");
        assert_eq!(clip_path(Path::new("/no/such/dir")), "/no/such/dir");
        let long = format!("/{}", "é".repeat(1000));
        let c = clip(&long);
        assert!(c.ends_with("…(2001 bytes)"), "{c}");
        assert!(c.len() <= QUOTE_MAX + 20, "{}", c.len());
        assert!(long.starts_with(&c[..c.rfind('…').unwrap()]));
    }

    #[test]
    fn the_status_message_is_capped_whatever_the_error_says() {
        for unit in ["x", "é", "😀"] {
            let huge = unit.repeat(100_000);
            for err in [
                Error::NotFound(huge.clone()),
                Error::invalid("spec.argv[0]", huge.clone()),
                Error::Exec {
                    message: huge.clone(),
                    not_found: true,
                },
            ] {
                let code = err.code();
                let status = Status::from(err);
                assert_eq!(status.code(), code);
                let m = status.message();
                assert!(m.len() <= MESSAGE_MAX, "{}", m.len());
                assert!(
                    m.ends_with(" bytes)") && m.contains("…(message cut; "),
                    "{m}"
                );
            }
        }
        let short = Status::from(Error::NotFound("no process \"p-9\"".into()));
        assert_eq!(short.message(), "no process \"p-9\"");
        let exact = "z".repeat(MESSAGE_MAX);
        assert_eq!(
            Status::from(Error::NotFound(exact.clone())).message(),
            exact
        );
    }

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
            (
                Error::DeadlineExceeded("no handshake line within 30 s".into()),
                Code::DeadlineExceeded,
                "no handshake line within 30 s",
            ),
            (
                Error::Aborted("unloaded while loading".into()),
                Code::Aborted,
                "unloaded while loading",
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
