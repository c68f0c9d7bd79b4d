//! Why a plugin did not load: one variant per way it fails, each carrying what makes its message
//! actionable, and their mapping to the crate's `Error` (so to gRPC codes, as `loader.proto`
//! documents them on `Load`).
//!
//! A status message travels in a header and is capped (`crate::error::MESSAGE_MAX`, cut at the
//! end), so each message puts what happened and what to do first, then at most
//! `NOISE_LINES_SHOWN` stdout lines and the last `STDERR_TAIL_SHOWN` bytes of stderr, the part
//! of a crash report that names the cause.
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{clip, clip_path, quote, Error};
use crate::loader::handshake::{Malformed, Mismatch};

/// Stdout lines that were not a handshake, shown in a message (the first ones).
pub const NOISE_LINES_SHOWN: usize = 3;
/// Bytes of each noise line shown.
const NOISE_LINE_BYTES: usize = 80;
/// Bytes of the end of the plugin's stderr shown in a message.
pub const STDERR_TAIL_SHOWN: usize = 400;

/// A failed `Load`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The binary does not exist, or a bare name is on no directory of PATH.
    #[error(
        "plugin binary {} not found (looked in {}){}",
        quote(binary),
        clip(&looked_in.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")),
        if looked_in.len() > 1 { ": put it on PATH, or give its path" } else { "" }
    )]
    BinaryNotFound {
        /// The binary as the request gave it.
        binary: String,
        /// The file checked for a path, or each PATH directory for a bare name.
        looked_in: Vec<PathBuf>,
    },

    /// The binary was found but could not be started: not executable (`PermissionDenied`), not
    /// a program for this machine or a script whose interpreter is missing (`ENOEXEC`,
    /// `ENOENT`), or out of processes.
    #[error("plugin binary {} could not be started: {source}", clip_path(binary))]
    SpawnFailed {
        /// The resolved path.
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The plugin exited before printing a handshake line: often a plugin refusing to run
    /// without its magic cookie, or one that crashed at start.
    #[error(
        "the plugin exited ({status}) before printing its handshake line; if it wants a magic \
         cookie, give its key and value in magic_cookie_key and magic_cookie_value{}",
        seen(noise, stderr_tail)
    )]
    ExitedBeforeHandshake {
        /// How it ended, for a person ("exit code 1", "killed by SIGSEGV").
        status: String,
        /// Its stdout lines that were not a handshake, in order.
        noise: Vec<String>,
        /// The end of its stderr.
        stderr_tail: String,
    },

    /// No handshake line within the handshake timeout.
    #[error(
        "no handshake line from the plugin within {} (handshake_timeout_ms); a plugin prints \
         one line such as 1|1|unix|/path.sock|grpc on stdout once it listens{}",
        secs(timeout),
        seen(noise, stderr_tail)
    )]
    HandshakeTimeout {
        /// The timeout that passed.
        timeout: Duration,
        /// Its stdout lines that were not a handshake, in order.
        noise: Vec<String>,
        /// The end of its stderr.
        stderr_tail: String,
    },

    /// A line that starts like a handshake but is not a valid one.
    #[error("malformed handshake: {malformed}{}", seen(&[], stderr_tail))]
    HandshakeMalformed {
        /// The line and what is wrong with it.
        malformed: Malformed,
        /// The end of its stderr.
        stderr_tail: String,
    },

    /// A valid handshake tend cannot use yet (a go-plugin AutoMTLS certificate).
    #[error("unsupported handshake: {reason}: {line}")]
    HandshakeUnsupported {
        /// The line, quoted and clipped.
        line: String,
        /// Why (`Handshake::unsupported`).
        reason: String,
    },

    /// The plugin's core or app protocol version is not one the host speaks.
    #[error("{mismatch}: {line}")]
    VersionMismatch {
        /// Both sides' versions.
        mismatch: Mismatch,
        /// The handshake line, quoted and clipped.
        line: String,
    },

    /// The announced address was not dialled, or health did not answer SERVING, in time.
    #[error(
        "the plugin announced {address} but did not serve within {} (dial_timeout_ms): \
         {last_error}; it must serve grpc.health.v1 with service \"\" or \"plugin\" \
         SERVING{}",
        secs(timeout),
        seen(&[], stderr_tail)
    )]
    DialTimeout {
        /// Network and address, as `Network`'s Display shows them (`unix:/run/p.sock`).
        address: String,
        /// The timeout that passed.
        timeout: Duration,
        /// The last dial error, or the last health answer ("health: NOT_SERVING").
        last_error: String,
        /// The end of its stderr.
        stderr_tail: String,
    },
}

/// `30 s`, `1.5 s`, `250 ms`.
fn secs(d: &Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// `; its stdout before that: "…", "…" (and N more); its stderr ended with: …`, each part only
/// when there is something to show.
fn seen(noise: &[String], stderr_tail: &str) -> String {
    let mut out = String::new();
    if !noise.is_empty() {
        out.push_str("; stdout lines that were not a handshake: ");
        let shown: Vec<String> = noise
            .iter()
            .take(NOISE_LINES_SHOWN)
            .map(|l| quote_short(l, NOISE_LINE_BYTES))
            .collect();
        out.push_str(&shown.join(", "));
        if noise.len() > NOISE_LINES_SHOWN {
            let _ = write!(out, " (and {} more)", noise.len() - NOISE_LINES_SHOWN);
        }
    }
    let tail = stderr_tail.trim_end();
    if tail.is_empty() {
        out.push_str("; its stderr is empty");
    } else {
        out.push_str("; its stderr ended with:\n");
        let shown = last_bytes(tail, STDERR_TAIL_SHOWN);
        if shown.len() < tail.len() {
            out.push('…');
        }
        out.push_str(shown);
    }
    out
}

/// `s` quoted, its first `max` bytes only (at a char boundary), with its size when cut.
fn quote_short(s: &str, max: usize) -> String {
    if s.len() <= max {
        return format!("{s:?}");
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}…({} bytes)", &s[..end], s.len())
}

/// The last `max` bytes of `s` (fewer, to start at a char boundary).
fn last_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

impl LoadError {
    /// A `Malformed` line that is not noise, as the error that ends the load.
    pub fn malformed(malformed: Malformed, stderr_tail: impl Into<String>) -> Self {
        LoadError::HandshakeMalformed {
            malformed,
            stderr_tail: stderr_tail.into(),
        }
    }

    /// A version mismatch of the handshake `line` (as printed).
    pub fn mismatch(mismatch: Mismatch, line: &str) -> Self {
        LoadError::VersionMismatch {
            mismatch,
            line: quote(line),
        }
    }
}

/// The codes `loader.proto` documents on `Load`.
impl From<LoadError> for Error {
    fn from(err: LoadError) -> Error {
        let message = err.to_string();
        match err {
            // As ProcessService reports a program it cannot run: NotFound / PermissionDenied,
            // with what a shell would exit with (127 / 126) in `tend-exit-code`.
            LoadError::BinaryNotFound { .. } => Error::Exec {
                message,
                not_found: true,
            },
            LoadError::SpawnFailed { ref source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Error::Exec {
                    message,
                    not_found: false,
                }
            }
            LoadError::SpawnFailed { .. }
            | LoadError::ExitedBeforeHandshake { .. }
            | LoadError::HandshakeMalformed { .. }
            | LoadError::HandshakeUnsupported { .. }
            | LoadError::VersionMismatch { .. } => Error::FailedPrecondition(message),
            LoadError::HandshakeTimeout { .. } => Error::DeadlineExceeded(message),
            LoadError::DialTimeout { .. } => Error::Unavailable(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MESSAGE_MAX;
    use crate::loader::handshake::{self, Dialect};
    use tonic::{Code, Status};

    fn malformed(line: &str) -> Malformed {
        handshake::parse(line).unwrap_err()
    }

    #[test]
    fn every_load_error_maps_to_its_documented_code_and_says_what_to_do() {
        let panic_tail = "goroutine 1 [running]:\npanic: listen unix /x: bind: address in use\n";
        let noise = vec![
            "Listening on :8080".to_string(),
            "\u{1b}[32mready\u{1b}[0m".into(),
        ];
        let cases: Vec<(LoadError, Code, Vec<&str>)> = vec![
            (
                LoadError::BinaryNotFound {
                    binary: "kv-plugin".into(),
                    looked_in: vec!["/usr/local/bin".into(), "/usr/bin".into()],
                },
                Code::NotFound,
                vec![
                    "plugin binary \"kv-plugin\" not found",
                    "looked in /usr/local/bin:/usr/bin",
                    "put it on PATH",
                ],
            ),
            (
                LoadError::BinaryNotFound {
                    binary: "./kv".into(),
                    looked_in: vec!["/srv/kv".into()],
                },
                Code::NotFound,
                vec!["\"./kv\" not found (looked in /srv/kv)"],
            ),
            (
                LoadError::SpawnFailed {
                    binary: "/srv/kv".into(),
                    source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
                },
                Code::PermissionDenied,
                vec!["plugin binary /srv/kv could not be started: permission denied"],
            ),
            (
                LoadError::SpawnFailed {
                    binary: "/srv/kv".into(),
                    source: std::io::Error::from_raw_os_error(libc::ENOEXEC),
                },
                Code::FailedPrecondition,
                vec!["/srv/kv could not be started: Exec format error"],
            ),
            (
                LoadError::ExitedBeforeHandshake {
                    status: "exit code 1".into(),
                    noise: vec![],
                    stderr_tail: "This binary is a plugin. Do not run it directly.\n".into(),
                },
                Code::FailedPrecondition,
                vec![
                    "exited (exit code 1) before printing its handshake line",
                    "magic_cookie_key",
                    "stderr ended with:\nThis binary is a plugin.",
                ],
            ),
            (
                LoadError::HandshakeTimeout {
                    timeout: Duration::from_secs(30),
                    noise: noise.clone(),
                    stderr_tail: panic_tail.into(),
                },
                Code::DeadlineExceeded,
                vec![
                    "no handshake line from the plugin within 30 s (handshake_timeout_ms)",
                    "not a handshake: \"Listening on :8080\", \"\\u{1b}[32mready\\u{1b}[0m\"",
                    "stderr ended with:\ngoroutine 1",
                ],
            ),
            (
                LoadError::malformed(malformed("1|1|unix|/s|netrpc"), ""),
                Code::FailedPrecondition,
                vec![
                    "malformed handshake: protocol \"netrpc\" is not \"grpc\"",
                    "\"1|1|unix|/s|netrpc\"; its stderr is empty",
                ],
            ),
            (
                LoadError::HandshakeUnsupported {
                    line: quote("1|1|unix|/s|grpc|MIIB..."),
                    reason: "the plugin sent a TLS certificate".into(),
                },
                Code::FailedPrecondition,
                vec!["unsupported handshake: the plugin sent a TLS certificate"],
            ),
            (
                LoadError::mismatch(
                    Mismatch::App {
                        plugin: 3,
                        offered: vec![1, 2],
                        dialect: Dialect::GoPlugin,
                    },
                    "1|3|unix|/s|grpc",
                ),
                Code::FailedPrecondition,
                vec![
                    "the plugin chose app protocol version 3",
                    "the host offered 1, 2",
                    ": \"1|3|unix|/s|grpc\"",
                ],
            ),
            (
                LoadError::DialTimeout {
                    address: "unix:/run/tend/p/kv.sock".into(),
                    timeout: Duration::from_millis(1500),
                    last_error: "health: NOT_SERVING".into(),
                    stderr_tail: String::new(),
                },
                Code::Unavailable,
                vec![
                    "announced unix:/run/tend/p/kv.sock but did not serve within 1.5 s \
                     (dial_timeout_ms): health: NOT_SERVING",
                    "\"plugin\" SERVING",
                ],
            ),
        ];
        for (err, code, wants) in cases {
            let status = Status::from(Error::from(err));
            assert_eq!(status.code(), code, "{}", status.message());
            for want in wants {
                assert!(
                    status.message().contains(want),
                    "{want:?} in {}",
                    status.message()
                );
            }
        }
    }

    #[test]
    fn not_found_and_not_executable_carry_the_shell_exit_code() {
        let nf = Error::from(LoadError::BinaryNotFound {
            binary: "x".into(),
            looked_in: vec!["/bin".into()],
        });
        assert_eq!(nf.shell_exit_code(), Some(127));
        let pd = Error::from(LoadError::SpawnFailed {
            binary: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        });
        assert_eq!(pd.shell_exit_code(), Some(126));
    }

    #[test]
    fn a_flood_of_noise_and_a_huge_stderr_keep_the_head_of_the_message_and_the_end_of_stderr() {
        let noise: Vec<String> = (0..500)
            .map(|i| format!("log line {i} {}", "x".repeat(300)))
            .collect();
        let stderr = format!("{}\npanic: the real cause", "y".repeat(1 << 20));
        let err = LoadError::HandshakeTimeout {
            timeout: Duration::from_millis(250),
            noise,
            stderr_tail: stderr,
        };
        let msg = err.to_string();
        assert!(msg.len() < MESSAGE_MAX, "{}", msg.len());
        assert!(
            msg.starts_with("no handshake line from the plugin within 250 ms"),
            "{msg}"
        );
        assert!(msg.contains("(and 497 more)"), "{msg}");
        assert!(msg.contains("…(311 bytes)"), "{msg}");
        assert!(msg.contains("ended with:\n…yyy"), "{msg}");
        assert!(msg.ends_with("panic: the real cause"), "{msg}");
        // The status keeps all of it: nothing was cut by the status cap.
        let status = Status::from(Error::from(err));
        assert_eq!(status.message(), msg);
        // Multi-byte stderr is cut at a char boundary.
        assert!(last_bytes(&"é".repeat(1000), 401).starts_with('é'));
        assert_eq!(last_bytes("short", 400), "short");
    }
}
