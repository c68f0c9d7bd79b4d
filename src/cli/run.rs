//! `tend run`: start a command, stream its output here, forward input (and the terminal with
//! `--pty`), and exit as the command did — as if it ran here: every byte (the stream is
//! lossless), signals forwarded, a closed stdout treated as SIGPIPE, the shell's exit codes.
use std::io::Write;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use super::connect::ProcessClient;
use super::tty;
use crate::pb::{self, attach_request, process_event::Kind};

/// `tend run`, `logs`, `attach` exit with this when output was lost on the way (a gap), whatever
/// the command's own code, unless `--allow-gaps`.
pub const EXIT_OUTPUT_LOST: i32 = 254;
/// The command's stdout here was a closed pipe: what a shell gives a pipeline member killed by
/// SIGPIPE.
pub const EXIT_BROKEN_PIPE: i32 = 128 + libc::SIGPIPE;
/// How long a forwarded signal may wait for the daemon's answer.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// A second Ctrl-C within this long of the first sends SIGKILL instead of SIGINT; a third
/// leaves at once (130), even if the daemon does not answer.
const ESCALATE_WITHIN: Duration = Duration::from_secs(2);

/// What to run and how.
pub struct RunArgs {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub environment: Option<String>,
    pub cwd: Option<String>,
    pub name: Option<String>,
    pub pty: bool,
    pub interactive: bool,
    pub detach: bool,
    pub allow_gaps: bool,
    /// With `detach`: return once this probe says the command is ready.
    pub ready: Option<pb::ReadinessProbe>,
    pub ready_timeout: Duration,
    pub nice: Option<i32>,
    pub oom_score_adj: Option<i32>,
    pub memory_max: Option<u64>,
    pub pids_max: Option<u64>,
}

/// A size in bytes: digits, then optionally K, M, G or T (powers of 1024, as Docker's --memory
/// takes them), with or without a trailing "B" or "iB", any case.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let unit = lower.trim_end_matches("ib").trim_end_matches('b');
    let (digits, shift) = match unit.char_indices().last() {
        Some((i, 'k')) => (&unit[..i], 10),
        Some((i, 'm')) => (&unit[..i], 20),
        Some((i, 'g')) => (&unit[..i], 30),
        Some((i, 't')) => (&unit[..i], 40),
        _ => (unit, 0),
    };
    let bad = || format!("{s:?} is not a size: bytes, or a number with K, M, G or T (e.g. 512M)");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is more bytes than fit in 64 bits"))
}

/// Run and return the exit code to exit with (128 + signal when killed).
pub async fn run(mut client: ProcessClient, args: RunArgs) -> anyhow::Result<i32> {
    let size = tty::size().unwrap_or((24, 80));
    let spec = pb::ProcessSpec {
        argv: args.argv,
        env: args.env.into_iter().collect(),
        cwd: args.cwd.unwrap_or_default(),
        name: args.name.unwrap_or_default(),
        pty: args.pty.then_some(pb::PtySize {
            rows: size.0,
            cols: size.1,
        }),
        stdin: args.interactive,
        environment_id: args.environment.unwrap_or_default(),
        readiness: args.ready.clone(),
        nice: args.nice,
        oom_score_adj: args.oom_score_adj,
        limits: (args.memory_max.is_some() || args.pids_max.is_some()).then(|| {
            pb::ResourceLimits {
                memory_max_bytes: args.memory_max.unwrap_or(0),
                pids_max: args.pids_max.unwrap_or(0),
            }
        }),
        ..Default::default()
    };
    if args.detach {
        let id = start(&mut client, spec).await?;
        let code = match args.ready {
            Some(_) => super::ready::wait(&mut client, &id, args.ready_timeout).await?,
            None => 0,
        };
        println!("{id}");
        return Ok(code);
    }
    // Before the call, so that a Ctrl-C while it starts is not lost.
    let mut signals = Signals::new(client.clone())?;
    let mut printer = Printer::default();
    if !args.pty && !args.interactive {
        let events = client
            .run(pb::RunRequest {
                spec: Some(spec),
                request_id: String::new(),
                observer: false,
                kill_on_disconnect: Some(true),
            })
            .await?
            .into_inner()
            .map(|e| e.map(|e| e.event));
        return follow(events, &mut signals, &mut printer, args.allow_gaps).await;
    }

    let id = start(&mut client, spec).await?;
    signals.target(id.clone());
    let (tx, rx) = mpsc::channel::<pb::AttachRequest>(64);
    tx.send(pb::AttachRequest {
        kind: Some(attach_request::Kind::Open(pb::AttachOpen {
            id,
            from_offset: Some(0),
            lossless: true,
            // This session owns the process: if tend goes, so does the command.
            kill_on_disconnect: true,
            ..Default::default()
        })),
    })
    .await?;
    let _raw = if args.pty {
        tty::RawMode::enter()
    } else {
        None
    };
    forward_stdin(tx.clone());
    if args.pty {
        tty::forward_resize(tx.clone(), |size| pb::AttachRequest {
            kind: Some(attach_request::Kind::Resize(size)),
        });
    }
    let events = client
        .attach(ReceiverStream::new(rx))
        .await?
        .into_inner()
        .map(|e| e.map(|e| e.event));
    follow(events, &mut signals, &mut printer, args.allow_gaps).await
}

/// Start `spec` in the background; its id.
async fn start(client: &mut ProcessClient, spec: pb::ProcessSpec) -> anyhow::Result<String> {
    let started = client
        .start(pb::StartRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(started.process.map(|p| p.id).unwrap_or_default())
}

/// Print events until the exit, forwarding this process's signals to the command's group.
async fn follow(
    mut events: impl Stream<Item = Result<Option<pb::ProcessEvent>, tonic::Status>> + Unpin,
    signals: &mut Signals,
    printer: &mut Printer,
    allow_gaps: bool,
) -> anyhow::Result<i32> {
    loop {
        let ev = tokio::select! {
            ev = events.next() => ev,
            sig = signals.next() => {
                signals.forward(sig);
                continue;
            }
        };
        let Some(ev) = ev else {
            anyhow::bail!("the daemon ended the stream before the process exited");
        };
        let ev = ev?;
        if let Some(Kind::Started(p)) = ev.as_ref().and_then(|e| e.kind.as_ref()) {
            signals.target(p.id.clone());
        }
        match printer.show(ev)? {
            Shown::More => {}
            Shown::Exited(code) => return Ok(printer.exit_code(Some(code), allow_gaps)),
            Shown::BrokenPipe => {
                // As a shell pipeline member would be: the command gets SIGPIPE (and, as the
                // stream closes, the daemon's disconnect stop), and we exit quietly with 141.
                let _ = tokio::time::timeout(SIGNAL_TIMEOUT, signals.deliver("PIPE")).await;
                return Ok(EXIT_BROKEN_PIPE);
            }
        }
    }
}

/// The signals `tend run` passes on to the command's process group.
struct Signals {
    client: ProcessClient,
    id: Option<String>,
    /// Signals that came before the command's id was known.
    pending: Vec<&'static str>,
    last_int: Option<Instant>,
    /// Ctrl-Cs in a row, each within `ESCALATE_WITHIN` of the last.
    ints: u32,
    /// SIGINT, SIGTERM, SIGHUP and SIGQUIT, in that order.
    streams: [Signal; 4],
}

impl Signals {
    fn new(client: ProcessClient) -> anyhow::Result<Signals> {
        let streams = [
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
            signal(SignalKind::quit())?,
        ];
        Ok(Signals {
            client,
            id: None,
            pending: Vec::new(),
            last_int: None,
            ints: 0,
            streams,
        })
    }

    /// The next signal this process received.
    async fn next(&mut self) -> &'static str {
        let [int, term, hup, quit] = &mut self.streams;
        tokio::select! {
            _ = int.recv() => "INT",
            _ = term.recv() => "TERM",
            _ = hup.recv() => "HUP",
            _ = quit.recv() => "QUIT",
        }
    }

    /// The command's id is known: deliver what came before.
    fn target(&mut self, id: String) {
        if self.id.is_some() {
            return;
        }
        self.id = Some(id);
        for sig in std::mem::take(&mut self.pending) {
            self.send(sig);
        }
    }

    /// Pass `sig` on; a second Ctrl-C soon after the first becomes SIGKILL, a third leaves.
    /// Never waits for the daemon: the loop must stay free to see the next Ctrl-C.
    fn forward(&mut self, sig: &'static str) {
        let mut sig = sig;
        if sig == "INT" {
            let now = Instant::now();
            let soon = self
                .last_int
                .is_some_and(|t| now.duration_since(t) < ESCALATE_WITHIN);
            self.ints = if soon { self.ints + 1 } else { 1 };
            self.last_int = Some(now);
            match self.ints {
                1 => {}
                2 => {
                    eprintln!("\r\n[tend: second interrupt; sending SIGKILL]");
                    sig = "KILL";
                }
                // The daemon does not answer: a third Ctrl-C gets the user their shell back.
                _ => {
                    eprintln!("\r\n[tend: third interrupt; leaving]");
                    std::process::exit(128 + libc::SIGINT);
                }
            }
        }
        if self.id.is_none() {
            self.pending.push(sig);
            return;
        }
        self.send(sig);
    }

    /// Send `sig` in a task of its own (bounded), so that a daemon slow to answer never keeps
    /// this process from seeing the next signal.
    fn send(&self, sig: &'static str) {
        let call = self.deliver(sig);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(SIGNAL_TIMEOUT, call).await;
        });
    }

    /// The Signal call for `sig`. The command may have exited meanwhile: nothing to do then.
    fn deliver(&self, sig: &'static str) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut client = self.client.clone();
        let id = self.id.clone();
        async move {
            let Some(id) = id else { return };
            let _ = client
                .signal(pb::SignalRequest {
                    id,
                    signal: sig.to_string(),
                    leader_only: false,
                })
                .await;
        }
    }
}

/// What showing one event led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Shown {
    More,
    /// The process exited with this (shell-convention) code.
    Exited(i32),
    /// Our stdout or stderr is a closed pipe.
    BrokenPipe,
}

/// Writes output events to this process's stdout and stderr, and counts what was lost.
#[derive(Default)]
pub struct Printer {
    /// Bytes the daemon said this reader will not get.
    pub lost: u64,
}

impl Printer {
    /// Print one event.
    pub fn show(&mut self, event: Option<pb::ProcessEvent>) -> anyhow::Result<Shown> {
        match event.and_then(|e| e.kind) {
            Some(Kind::Data(d)) => {
                let fd = if d.stream == pb::Stream::Stderr as i32 {
                    2
                } else {
                    1
                };
                match write_fd(fd, &d.data) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        return Ok(Shown::BrokenPipe)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Some(Kind::Gap(g)) => {
                self.lost += g.length;
                eprintln!(
                    "[tend: {} bytes at offset {} are no longer retained]",
                    g.length, g.offset
                );
            }
            Some(Kind::Exited(x)) => {
                if x.output_drain_timed_out {
                    eprintln!(
                        "[tend: a background process still held the output; stopped reading]"
                    );
                }
                return Ok(Shown::Exited(exit_code(&x)));
            }
            Some(Kind::Started(_) | Kind::Ready(_)) | None => {}
        }
        Ok(Shown::More)
    }

    /// The command's `code` (0 when there is none to give, as for `tend logs`), or
    /// `EXIT_OUTPUT_LOST` (with a note) when bytes were lost and that is not allowed.
    pub fn exit_code(&self, code: Option<i32>, allow_gaps: bool) -> i32 {
        if self.lost == 0 || allow_gaps {
            return code.unwrap_or(0);
        }
        let instead = match code {
            Some(code) => format!("the command's code was {code}; --allow-gaps exits with it"),
            None => "--allow-gaps exits 0 instead".to_string(),
        };
        eprintln!(
            "[tend: {} bytes of output were lost; exiting {EXIT_OUTPUT_LOST} ({instead})]",
            self.lost
        );
        EXIT_OUTPUT_LOST
    }
}

/// Write all of `data` to descriptor `fd`, unbuffered: output reaches the reader as it comes, and
/// nothing sits in a buffer when we exit. The write blocks while the reader is slow, which is the
/// backpressure that keeps the stream lossless, so it runs off the async workers.
fn write_fd(fd: i32, data: &[u8]) -> std::io::Result<()> {
    use std::os::fd::FromRawFd;
    // SAFETY: descriptors 1 and 2 stay open for the life of the process; ManuallyDrop keeps the
    // File from closing them.
    let mut file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    let mut write = || file.write_all(data);
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(write),
        _ => write(),
    }
}

/// The shell convention: the code, or 128 + the signal.
pub fn exit_code(x: &pb::ExitStatus) -> i32 {
    x.exit_code.unwrap_or_else(|| 128 + x.signal.unwrap_or(0))
}

fn forward_stdin(tx: mpsc::Sender<pb::AttachRequest>) {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 16 << 10];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.blocking_send(pb::AttachRequest {
                        kind: Some(attach_request::Kind::CloseInput(true)),
                    });
                    return;
                }
                Ok(n) => {
                    let msg = pb::AttachRequest {
                        kind: Some(attach_request::Kind::Input(buf[..n].to_vec())),
                    };
                    if tx.blocking_send(msg).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_binary_suffixes_in_any_case() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("4096", 4096),
            ("512M", 512 << 20),
            ("512m", 512 << 20),
            ("1G", 1 << 30),
            ("1GiB", 1 << 30),
            ("1gb", 1 << 30),
            ("64k", 64 << 10),
            ("2T", 2 << 40),
            ("100B", 100),
            (" 8M ", 8 << 20),
        ];
        for &(s, want) in cases {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        for s in ["", "M", "1.5G", "-1", "12X", "1 G", "99999999999T"] {
            assert!(parse_size(s).is_err(), "{s}");
        }
    }
}
