//! An exec's I/O: attached (by hand for a terminal), its output adapted to the supervisor's
//! chunks as they are polled, its input forwarded from a pipe.
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::engine::Engine;
use crate::supervisor::output::StreamKind;

/// An exec's output as the engine's API gives it.
pub(super) type Chunks =
    Pin<Box<dyn Stream<Item = std::result::Result<LogOutput, BollardError>> + Send>>;
/// An exec's input.
pub(super) type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// Bytes read from the engine at a time.
const READ_BYTES: usize = 64 * 1024;
/// Most bytes of a response head (or of an error's body) read from the engine.
const HEAD_MAX: usize = 16 * 1024;

/// Start exec `exec` attached.
///
/// Without a terminal, through bollard: the output comes in frames with a stream header.
/// A terminal's output comes raw, and bollard's decoder guesses which it gets from each read's
/// first byte (above 2: raw), so raw output whose read starts with 0, 1 or 2 loses 8 bytes as
/// a "header" or stalls on its "length" (seen: `printf '\001\002\003xyz\n'` vanished). So a
/// terminal's exec is started by hand on a connection of its own: the same request, a `101`
/// upgrade, then the socket's bytes as they are.
pub(super) async fn start(
    engine: &Engine,
    exec: &str,
    tty: bool,
) -> Result<(Chunks, Input), BollardError> {
    if tty {
        return start_raw(engine, exec).await;
    }
    let options = StartExecOptions {
        detach: false,
        tty: false,
        output_capacity: Some(READ_BYTES),
    };
    match engine.docker.start_exec(exec, Some(options)).await? {
        StartExecResults::Attached { output, input } => Ok((output, input)),
        StartExecResults::Detached => Err(BollardError::DockerStreamError {
            error: "an attached exec started detached".into(),
        }),
    }
}

async fn start_raw(engine: &Engine, exec: &str) -> Result<(Chunks, Input), BollardError> {
    let body = r#"{"Detach":false,"Tty":true}"#;
    // The API version the engine named when connecting.
    let version = match engine.api_version() {
        "" => String::new(),
        v => format!("/v{v}"),
    };
    let request = format!(
        "POST {version}/exec/{exec}/start HTTP/1.1\r\nHost: docker\r\nUser-Agent: tend\r\n\
         Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (mut read, mut write) = engine.connect_raw().await?;
    write.write_all(request.as_bytes()).await?;
    let mut head = BytesMut::with_capacity(1024);
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > HEAD_MAX || read.read_buf(&mut head).await? == 0 {
            return Err(BollardError::DockerStreamError {
                error: format!(
                    "the engine's answer to an exec start was cut short: {:?}",
                    String::from_utf8_lossy(&head)
                ),
            });
        }
    };
    let rest = head.split_off(end);
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // 101 after an upgrade; engines before API 1.?? hijack the connection with a 200.
    if status != 101 && status != 200 {
        return Err(error_response(status, &head, rest, read).await);
    }
    let first = (!rest.is_empty()).then(|| {
        Ok(LogOutput::Console {
            message: rest.freeze(),
        })
    });
    let raw = tokio_util::io::ReaderStream::with_capacity(read, READ_BYTES).map(|r| {
        r.map(|message| LogOutput::Console { message })
            .map_err(|err| BollardError::IOError { err })
    });
    Ok((
        Box::pin(futures_util::stream::iter(first).chain(raw)),
        write,
    ))
}

/// An engine's error answer (a JSON `{"message": …}`, with its length) as bollard gives it.
async fn error_response(
    status: u16,
    head: &str,
    mut body: BytesMut,
    mut read: Pin<Box<dyn AsyncRead + Send>>,
) -> BollardError {
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(HEAD_MAX)
        .min(HEAD_MAX);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while body.len() < len {
            match read.read_buf(&mut body).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&body).into_owned();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or(text);
    BollardError::DockerResponseServerError {
        status_code: status,
        message,
    }
}

/// A chunk of the exec's output as the supervisor's kind; `None` for nothing to deliver.
pub(super) fn kind_of(out: LogOutput, tty: bool) -> Option<(StreamKind, Bytes)> {
    let (kind, message) = match out {
        LogOutput::StdOut { message } => (StreamKind::Stdout, message),
        LogOutput::StdErr { message } => (StreamKind::Stderr, message),
        // A terminal's output comes raw (no stream headers).
        LogOutput::Console { message } if tty => (StreamKind::Pty, message),
        LogOutput::Console { message } => (StreamKind::Stdout, message),
        LogOutput::StdIn { .. } => return None,
    };
    (!message.is_empty()).then_some((kind, message))
}

/// The exec's output, adapted chunk by chunk as the supervisor polls it: nothing is read from
/// the engine ahead of the supervisor, so a full log holds the process back.
///
/// `over` turns true when the output ends (for the exit future, and for a terminal's input,
/// which must stay open until then); it closes unset when the output is dropped unread.
pub(super) struct Output {
    pub pending: VecDeque<(StreamKind, Bytes)>,
    pub inner: Chunks,
    pub tty: bool,
    pub over: watch::Sender<bool>,
}

impl Stream for Output {
    type Item = (StreamKind, Bytes);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(item) = this.pending.pop_front() {
            return Poll::Ready(Some(item));
        }
        if *this.over.borrow() {
            return Poll::Ready(None);
        }
        loop {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(out))) => {
                    if let Some(item) = kind_of(out, this.tty) {
                        return Poll::Ready(Some(item));
                    }
                }
                Poll::Ready(end) => {
                    if let Some(Err(e)) = end {
                        tracing::warn!(error = %e, "a container process's output broke off");
                    }
                    this.over.send_replace(true);
                    return Poll::Ready(None);
                }
            }
        }
    }
}

/// Copy `read` to `input`, each read once no resize is under way.
async fn copy(
    read: &mut tokio::net::unix::pipe::Receiver,
    input: &mut Input,
    mut resizing: Option<watch::Receiver<u32>>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = read.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if let Some(r) = &mut resizing {
            // Its sender gone: the terminal is, and no resize can come any more.
            let _ = r.wait_for(|n| *n == 0).await;
        }
        input.write_all(&buf[..n]).await?;
        input.flush().await?;
    }
}

/// Whether `over` says the output ended (false when it was dropped unread).
pub(super) async fn output_over(over: &mut watch::Receiver<bool>) -> bool {
    over.wait_for(|o| *o).await.is_ok()
}

/// Copy the supervisor's stdin pipe to the exec's input. At its end, without a terminal,
/// half-close the connection: the engine closes the program's stdin, which reads end of file.
/// A terminal's input is kept open until the output ends instead: when a TTY exec's input
/// ends, the engine ends its output too (seen: `echo before; sleep 1; echo after` lost
/// "after"), and a program on a terminal sees end of input only as the ^D it is sent anyway.
///
/// A terminal's input (`resizing`, the count of its resizes under way) waits while a resize
/// is under way: the engine's resize call and this connection are not ordered otherwise.
pub(super) async fn forward_stdin(
    read: OwnedFd,
    mut input: Input,
    resizing: Option<watch::Receiver<u32>>,
    mut over: watch::Receiver<bool>,
) {
    let tty = resizing.is_some();
    // from_owned_fd sets O_NONBLOCK on the read end's open file description only; the write
    // end that the supervisor holds is its own.
    let mut read = match tokio::net::unix::pipe::Receiver::from_owned_fd(read) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a container process's stdin pipe");
            return;
        }
    };
    tokio::select! {
        copied = copy(&mut read, &mut input, resizing) => {
            if let Err(e) = copied {
                tracing::debug!(error = %e, "a container process's stdin ended early");
            }
        }
        // Nobody left to read it.
        _ = output_over(&mut over) => return,
    }
    if tty {
        output_over(&mut over).await;
    } else if let Err(e) = input.shutdown().await {
        tracing::debug!(error = %e, "cannot close a container process's stdin");
    }
}
