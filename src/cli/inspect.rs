//! `tend ps`, `logs`, `kill`, `wait`, `output`, `rm`: one call each, printed for people.
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_stream::StreamExt;

use super::connect::ProcessClient;
use super::run::{exit_code, Printer, Shown, EXIT_BROKEN_PIPE};
use crate::pb;

/// `tend ps`.
pub async fn ps(
    mut c: ProcessClient,
    request: pb::ListRequest,
    watch: Option<u64>,
) -> anyhow::Result<i32> {
    loop {
        let list = c.list(request.clone()).await?.into_inner();
        if watch.is_some() {
            // Clear the screen and go home, as watch(1) does.
            print!("\x1b[H\x1b[2J");
        }
        print_ps(&list.processes);
        let Some(secs) = watch else { return Ok(0) };
        tokio::time::sleep(std::time::Duration::from_secs(secs.max(1))).await;
    }
}

fn print_ps(processes: &[pb::ProcessInfo]) {
    println!(
        "{:<8} {:<16} {:<10} {:>8} {:>7} {:<9} {:>6} {:>9} {:>5} {:<16} COMMAND",
        "ID", "NAME", "STATE", "PID", "AGE", "KERNEL", "CPU%", "RSS", "PROCS", "PORTS"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    for p in processes {
        let state = match &p.exit {
            Some(x) if x.exit_code.is_some() => format!("exit {}", exit_code(x)),
            Some(x) => x.signal_name.clone(),
            // With a readiness probe: whether it is ready yet.
            None => match p.readiness.as_ref().map(|r| r.state()) {
                Some(pb::ReadinessState::Ready) => "ready".into(),
                Some(pb::ReadinessState::Pending) => "starting".into(),
                _ => "running".into(),
            },
        };
        let age = (now - p.started_at_unix_ms).max(0) / 1000;
        let (kernel, cpu, rss, procs) = match &p.usage {
            // A container's figures: the whole container's, so said.
            Some(u) if u.whole_environment => (
                "container".into(),
                format!("{:.1}", u.cpu_percent),
                human_bytes(u.rss_bytes),
                u.processes.to_string(),
            ),
            Some(u) => (
                pb::KernelState::try_from(u.state)
                    .map(|k| {
                        k.as_str_name()
                            .trim_start_matches("KERNEL_STATE_")
                            .to_lowercase()
                    })
                    .unwrap_or_default(),
                format!("{:.1}", u.cpu_percent),
                human_bytes(u.rss_bytes),
                u.processes.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let ports = if p.ports.is_empty() {
            "-".to_string()
        } else {
            p.ports
                .iter()
                .map(|l| format!("{}/{}", l.port, l.protocol))
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "{:<8} {:<16} {:<10} {:>8} {:>6}s {:<9} {:>6} {:>9} {:>5} {:<16} {}",
            p.id,
            p.name,
            state,
            p.pid,
            age,
            kernel,
            cpu,
            rss,
            procs,
            ports,
            p.argv.join(" ")
        );
    }
}

/// `1.5M`, `320K`, `12G`, as ps and top show sizes.
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

/// `tend logs`: exits 0, or `EXIT_OUTPUT_LOST` when part of the output was no longer retained
/// (unless `allow_gaps`). Follows losslessly: the process waits for this reader.
pub async fn logs(
    mut c: ProcessClient,
    id: String,
    follow: bool,
    from: u64,
    allow_gaps: bool,
) -> anyhow::Result<i32> {
    let mut events = c
        .connect(pb::ConnectRequest {
            id,
            from_offset: from,
            stream: 0,
            no_follow: !follow,
            lossless: true,
        })
        .await?
        .into_inner();
    let mut printer = Printer::default();
    while let Some(ev) = events.next().await {
        match printer.show(ev?.event)? {
            Shown::More | Shown::Exited(_) => {}
            Shown::BrokenPipe => return Ok(EXIT_BROKEN_PIPE),
        }
    }
    Ok(printer.exit_code(None, allow_gaps))
}

/// `tend kill`.
pub async fn kill(
    mut c: ProcessClient,
    id: String,
    signal: String,
    leader: bool,
) -> anyhow::Result<i32> {
    c.signal(pb::SignalRequest {
        id,
        signal,
        leader_only: leader,
    })
    .await?;
    Ok(0)
}

/// `tend wait`: exits with the process's code.
pub async fn wait(
    mut c: ProcessClient,
    id: String,
    timeout: Option<std::time::Duration>,
) -> anyhow::Result<i32> {
    let r = c
        .wait(pb::WaitRequest {
            id: id.clone(),
            timeout_ms: timeout.map_or(0, |t| t.as_millis() as u64),
        })
        .await?
        .into_inner();
    if r.timed_out {
        eprintln!("tend: {id} is still running");
        return Ok(super::ready::EXIT_NOT_READY);
    }
    let exit = r.process.and_then(|p| p.exit).unwrap_or_default();
    Ok(exit_code(&exit))
}

/// `tend output`.
pub async fn output(mut c: ProcessClient, id: String) -> anyhow::Result<i32> {
    let r = c
        .output(pb::OutputRequest { id, options: None })
        .await?
        .into_inner();
    let many = r.output.len() > 1;
    for s in r.output {
        if many {
            let name = pb::Stream::try_from(s.stream)
                .map(|s| s.as_str_name().trim_start_matches("STREAM_").to_lowercase())
                .unwrap_or_default();
            println!("--- {name} ({} bytes) ---", s.total_bytes);
        }
        print!("{}", s.text);
        if !s.text.is_empty() && !s.text.ends_with('\n') {
            println!();
        }
    }
    Ok(0)
}

/// `tend rm`.
pub async fn remove(mut c: ProcessClient, id: String, force: bool) -> anyhow::Result<i32> {
    c.remove(pb::RemoveRequest { id, force }).await?;
    Ok(0)
}
