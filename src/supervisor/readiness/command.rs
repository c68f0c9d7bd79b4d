//! The exec probe: a command run beside the process, in its environment, ready when it exits 0.
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use crate::supervisor::environment::{Environment, Io, Launched};
use crate::supervisor::reaper::Ended;
use crate::supervisor::spec::Spec;
use crate::supervisor::Process;

/// The end of a failed check's output quoted in its error.
const TAIL: usize = 512;

/// Run the probe command once, within `limit`; the error says how it failed, with the end of
/// what it wrote. It is started like a process of the daemon's (a record, a cgroup, the
/// marker), so a crash or a shutdown mid-check leaves nothing behind either, and what it
/// leaves running when it exits is killed.
pub async fn run(
    p: &Process,
    argv: &[String],
    env: &dyn Environment,
    limit: Duration,
) -> Result<(), String> {
    let spec = Spec {
        argv: argv.to_vec(),
        env: p.spec.env.clone(),
        cwd: p.spec.cwd.clone(),
        non_interactive: Some(true),
        clear_env: p.spec.clear_env,
        environment: p.spec.environment.clone(),
        ..Spec::default()
    };
    let id = format!("{}-probe", p.id);
    let Launched {
        io, exit, group, ..
    } = env.launch(&id, &spec).await.map_err(|e| e.to_string())?;
    let completing = {
        let group = group.clone();
        tokio::task::spawn_blocking(move || group.complete())
    };
    let finished = tokio::time::timeout(limit, async {
        let (ended, tail) = tokio::join!(exit, collect(io));
        (ended, tail)
    })
    .await;
    group.kill().await;
    let _ = completing.await;
    let forgetting = group.clone();
    let _ = tokio::task::spawn_blocking(move || forgetting.forget()).await;
    // The whole command, as the person wrote it (`sh -c 'test -e flag'`), shortened.
    let program = crate::error::clip(&argv.join(" "));
    match finished {
        Err(_) => Err(format!(
            "{program} did not finish within {} ms (killed)",
            limit.as_millis()
        )),
        Ok((Ended::Code(0), _)) => Ok(()),
        Ok((ended, tail)) => {
            let how = match ended {
                Ended::Code(code) => format!("exited with {code}"),
                Ended::Signal { signal, .. } => match nix::sys::signal::Signal::try_from(signal) {
                    Ok(s) => format!("was killed by {}", s.as_str()),
                    Err(_) => format!("was killed by signal {signal}"),
                },
            };
            let tail = String::from_utf8_lossy(&tail);
            let tail = tail.trim();
            if tail.is_empty() {
                Err(format!("{program} {how}"))
            } else {
                Err(format!("{program} {how}: {tail}"))
            }
        }
    }
}

/// Everything the command writes, keeping the last `TAIL` bytes; ends when its output closes.
async fn collect(io: Io) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut keep = |data: &[u8]| {
        tail.extend_from_slice(data);
        if tail.len() > TAIL {
            tail.drain(..tail.len() - TAIL);
        }
    };
    match io {
        Io::Pipes { stdout, stderr, .. } => {
            let open = |fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok();
            let (mut out, mut err) = (open(stdout), open(stderr));
            let (mut a, mut b) = ([0u8; 4096], [0u8; 4096]);
            while out.is_some() || err.is_some() {
                tokio::select! {
                    n = async { out.as_mut().unwrap().read(&mut a).await }, if out.is_some() => match n {
                        Ok(n) if n > 0 => keep(&a[..n]),
                        _ => out = None,
                    },
                    n = async { err.as_mut().unwrap().read(&mut b).await }, if err.is_some() => match n {
                        Ok(n) if n > 0 => keep(&b[..n]),
                        _ => err = None,
                    },
                }
            }
        }
        Io::Stream { mut output, .. } => {
            while let Some((_, data)) = output.next().await {
                keep(&data);
            }
        }
        Io::Pty { .. } => {}
    }
    tail
}
