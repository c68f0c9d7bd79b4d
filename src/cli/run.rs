//! `tend run`: start a command, stream its output here, forward input (and the terminal with
//! `--pty`), and exit with its exit code.
use std::io::Write;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::connect::ProcessClient;
use super::tty;
use crate::pb::{self, attach_request, process_event::Kind};

/// What to run and how.
pub struct RunArgs {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub name: Option<String>,
    pub pty: bool,
    pub interactive: bool,
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
        ..Default::default()
    };
    if !args.pty && !args.interactive {
        let mut events = client
            .run(pb::RunRequest {
                spec: Some(spec),
                request_id: String::new(),
            })
            .await?
            .into_inner();
        while let Some(ev) = events.next().await {
            if let Some(code) = show(ev?.event)? {
                return Ok(code);
            }
        }
        anyhow::bail!("the daemon ended the stream before the process exited");
    }

    let started = client
        .start(pb::StartRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await?
        .into_inner();
    let id = started.process.map(|p| p.id).unwrap_or_default();
    let (tx, rx) = mpsc::channel::<pb::AttachRequest>(64);
    tx.send(pb::AttachRequest {
        kind: Some(attach_request::Kind::Open(pb::AttachOpen {
            id,
            from_offset: Some(0),
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
    let mut events = client.attach(ReceiverStream::new(rx)).await?.into_inner();
    while let Some(ev) = events.next().await {
        if let Some(code) = show(ev?.event)? {
            return Ok(code);
        }
    }
    anyhow::bail!("the daemon ended the stream before the process exited")
}

/// Print one event; `Some(code)` once the process exited.
pub fn show(event: Option<pb::ProcessEvent>) -> anyhow::Result<Option<i32>> {
    match event.and_then(|e| e.kind) {
        Some(Kind::Data(d)) => {
            if d.stream == pb::Stream::Stderr as i32 {
                let mut err = std::io::stderr().lock();
                err.write_all(&d.data)?;
                err.flush()?;
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(&d.data)?;
                out.flush()?;
            }
        }
        Some(Kind::Gap(g)) => {
            eprintln!(
                "[tend: {} bytes at offset {} are no longer retained]",
                g.length, g.offset
            );
        }
        Some(Kind::Exited(x)) => {
            if x.output_drain_timed_out {
                eprintln!("[tend: a background process still held the output; stopped reading]");
            }
            return Ok(Some(exit_code(&x)));
        }
        Some(Kind::Started(_)) | None => {}
    }
    Ok(None)
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
