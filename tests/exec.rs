//! Exec semantics: lossless readers hold the process back instead of losing bytes, a vanished
//! client's Run is stopped, and `tend run` behaves like the command run here (every byte,
//! signals, closed pipes, the shell's exit codes).
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tend::cli::connect::ProcessClient;
use tend::pb;
use tokio_stream::StreamExt;

use crate::helper::*;

/// A small ring makes every reader that falls behind fall behind it.
const RING: u64 = 1 << 20;
const SMALL_RING: &[&str] = &["--head-bytes", "0", "--tail-bytes", "1048576"];
/// What can be in flight between the log and a reader that does not read: the stream's channel
/// (16 events of at most one 1 MiB batch) and the client's HTTP/2 windows.
const IN_FLIGHT: u64 = 16 * (1 << 20) + (16 << 20);

fn tend_cmd(d: &Daemon) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tend"));
    c.arg("--connect")
        .arg(format!("unix://{}", d.socket().display()));
    c
}

async fn info(c: &mut ProcessClient, id: &str) -> pb::ProcessInfo {
    c.get(pb::GetRequest { id: id.into() })
        .await
        .expect("get")
        .into_inner()
        .process
        .unwrap()
}

fn stdout_total(p: &pb::ProcessInfo) -> u64 {
    p.streams
        .iter()
        .find(|s| s.stream == pb::Stream::Stdout as i32)
        .map_or(0, |s| s.total_bytes)
}

/// Start `script` waiting for a line on stdin before it writes; the id.
async fn start_gated(c: &mut ProcessClient, script: &str) -> String {
    let mut s = sh(&format!("read go; {script}"));
    s.stdin = true;
    start(c, s).await
}

async fn go(c: &mut ProcessClient, id: &str) {
    c.send_input(pb::SendInputRequest {
        id: id.into(),
        data: b"go\n".to_vec(),
    })
    .await
    .expect("send go");
}

async fn open(
    c: &mut ProcessClient,
    id: &str,
    lossless: bool,
) -> tonic::Streaming<pb::ConnectResponse> {
    c.connect(pb::ConnectRequest {
        id: id.into(),
        lossless,
        ..Default::default()
    })
    .await
    .expect("connect")
    .into_inner()
}

async fn collect(mut events: tonic::Streaming<pb::ConnectResponse>) -> Collected {
    let mut out = Collected::default();
    while let Some(ev) = events.next().await {
        out.add(ev.expect("event").event);
    }
    out
}

async fn wait_exit(c: &mut ProcessClient, id: &str, secs: u64) -> pb::ExitStatus {
    let r = c
        .wait(pb::WaitRequest {
            id: id.into(),
            timeout_ms: secs * 1000,
        })
        .await
        .expect("wait")
        .into_inner();
    assert!(!r.timed_out, "{id} did not exit within {secs} s");
    r.process.unwrap().exit.unwrap()
}

#[tokio::test]
async fn a_paused_lossless_reader_stalls_the_producer_and_then_gets_every_byte() {
    let d = Daemon::with_args(SMALL_RING).await;
    let mut c = d.c().await;
    const N: u64 = 100_000_000;
    let id = start_gated(&mut c, &format!("exec head -c {N} /dev/zero")).await;
    let events = open(&mut c, &id, true).await;
    go(&mut c, &id).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let first = info(&mut c, &id).await;
    assert!(
        first.exit.is_none(),
        "the producer finished: it was not held"
    );
    let written = stdout_total(&first);
    assert!(
        written <= RING + IN_FLIGHT,
        "{written} bytes were read from the process while its only reader read none"
    );
    let again = stdout_total(&info(&mut c, &id).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stdout_total(&info(&mut c, &id).await),
        again,
        "the output kept growing while the lossless reader was paused"
    );

    let got = collect(events).await;
    assert!(got.gaps.is_empty(), "gaps: {:?}", got.gaps);
    assert_eq!(got.stdout.len() as u64, N);
    assert_eq!(got.exit.unwrap().exit_code, Some(0));
}

#[tokio::test]
async fn an_observer_beside_a_lossless_reader_may_skip_the_lossless_one_gets_all() {
    let d = Daemon::with_args(SMALL_RING).await;
    let mut c = d.c().await;
    const N: u64 = 30_000_000;
    let id = start_gated(&mut c, &format!("exec head -c {N} /dev/zero")).await;
    let lossless = open(&mut c, &id, true).await;
    let observer = open(&mut c, &id, false).await;
    go(&mut c, &id).await;
    let observed = tokio::spawn(async move {
        // The observer reads slowly too: it falls behind and must skip, never hold.
        let mut observer = observer;
        let mut out = Collected::default();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        while let Some(ev) = observer.next().await {
            out.add(ev.expect("event").event);
        }
        out
    });
    let got = collect(lossless).await;
    assert!(
        got.gaps.is_empty(),
        "lossless reader got gaps: {:?}",
        got.gaps
    );
    assert_eq!(got.stdout.len() as u64, N);
    let seen = observed.await.unwrap();
    let skipped: u64 = seen.gaps.iter().map(|g| g.length).sum();
    assert_eq!(
        seen.stdout.len() as u64 + skipped,
        N,
        "data and gaps cover it all"
    );
    assert!(seen.exit.is_some());
}

#[tokio::test]
async fn a_lossless_reader_that_goes_away_releases_the_process() {
    let d = Daemon::with_args(SMALL_RING).await;
    let mut c = d.c().await;
    const N: u64 = 50_000_000;
    let id = start_gated(&mut c, &format!("exec head -c {N} /dev/zero")).await;
    let mut events = open(&mut c, &id, true).await;
    go(&mut c, &id).await;
    events.next().await.expect("a first event").expect("event");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        info(&mut c, &id).await.exit.is_none(),
        "held while connected"
    );
    drop(events);
    let exit = wait_exit(&mut c, &id, 30).await;
    assert_eq!(exit.exit_code, Some(0), "it ran to completion: {exit:?}");
    assert_eq!(stdout_total(&info(&mut c, &id).await), N);
}

#[tokio::test]
async fn the_drain_never_cuts_off_what_a_lossless_reader_is_still_receiving() {
    // The leader exits at once; a background child writes 20 MB through the held pipe, far
    // longer than the 400 ms drain, while the reader is slow. (The drain counts the time the
    // output is not held for the reader: on a loaded machine, moving 20 MB once the reader
    // reads took more than 100 ms of it, and the drain rightly ended.)
    let d = Daemon::with_args(&[
        "--head-bytes",
        "0",
        "--tail-bytes",
        "65536",
        "--drain-ms",
        "400",
    ])
    .await;
    let mut c = d.c().await;
    const N: u64 = 20_000_000;
    let id = start_gated(&mut c, &format!("head -c {N} /dev/zero & exit 0")).await;
    let events = open(&mut c, &id, true).await;
    go(&mut c, &id).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let got = collect(events).await;
    assert!(got.gaps.is_empty(), "{:?}", got.gaps);
    assert_eq!(got.stdout.len() as u64, N);
    assert!(!got.exit.unwrap().output_drain_timed_out);
}

#[tokio::test]
async fn a_run_whose_client_goes_away_is_stopped_unless_asked_otherwise() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    for (kill, name) in [(None, "owned"), (Some(false), "detached")] {
        let mut spec = sh("trap '' HUP; echo up; exec sleep 1000");
        spec.name = name.into();
        let mut events = c
            .run(pb::RunRequest {
                spec: Some(spec),
                kill_on_disconnect: kill,
                ..Default::default()
            })
            .await
            .expect("run")
            .into_inner();
        // The started event, then the "up" line: the shell is running.
        let mut got = Collected::default();
        while got.stdout.is_empty() {
            got.add(events.next().await.unwrap().unwrap().event);
        }
        drop(events);
        if kill.is_none() {
            let exit = wait_exit(&mut c, name, 10).await;
            assert_eq!(exit.signal, Some(libc::SIGTERM), "{exit:?}");
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(
                info(&mut c, name).await.exit.is_none(),
                "{name} must run on"
            );
            c.signal(pb::SignalRequest {
                id: name.into(),
                signal: "KILL".into(),
                leader_only: false,
            })
            .await
            .unwrap();
        }
    }
}

#[tokio::test]
async fn a_program_that_cannot_run_fails_as_a_shell_would() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    for (argv0, code, shell) in [
        ("no-such-program-x", tonic::Code::NotFound, "127"),
        ("/etc/passwd", tonic::Code::PermissionDenied, "126"),
    ] {
        let err = c
            .run(pb::RunRequest {
                spec: Some(spec(&[argv0])),
                ..Default::default()
            })
            .await
            .expect_err("cannot run");
        assert_eq!(err.code(), code, "{}", err.message());
        assert_eq!(
            err.metadata()
                .get(tend::error::EXIT_CODE_KEY)
                .map(|v| v.to_str().unwrap()),
            Some(shell)
        );
        let out = tend_cmd(&d).args(["run", argv0]).output().unwrap();
        assert_eq!(out.status.code(), Some(shell.parse().unwrap()));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(argv0),
            "the daemon's message is kept: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn tend_run_delivers_a_gigabyte_exactly() {
    let d = Daemon::with_args(SMALL_RING).await;
    const N: u64 = 1_000_000_000;
    let mut child = tend_cmd(&d)
        .args(["run", "--", "head", "-c", &N.to_string(), "/dev/zero"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let counted = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            match out.read(&mut buf).unwrap() {
                0 => return n,
                k => n += k as u64,
            }
        }
    })
    .await
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        counted,
        N,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn tend_run_cat_of_random_data_is_byte_identical() {
    let d = Daemon::with_args(SMALL_RING).await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("random");
    let made = Command::new("head")
        .args(["-c", "200000000", "/dev/urandom"])
        .stdout(std::fs::File::create(&file).unwrap())
        .status()
        .unwrap();
    assert!(made.success());
    let want = Sha256::digest(std::fs::read(&file).unwrap());
    let out = tend_cmd(&d)
        .args(["run", "cat"])
        .arg(&file)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout.len(), 200_000_000);
    assert_eq!(Sha256::digest(&out.stdout), want);
}

#[tokio::test]
async fn the_cli_says_when_output_was_lost_and_exits_254() {
    let d = Daemon::with_args(&["--head-bytes", "0", "--tail-bytes", "1000"]).await;
    let out = tend_cmd(&d)
        .args(["run", "--name", "long", "seq", "1", "100000"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "a live lossless reader loses nothing"
    );
    assert_eq!(out.stdout.len(), 588895);
    let logs = tend_cmd(&d).args(["logs", "long"]).output().unwrap();
    assert_eq!(logs.status.code(), Some(254));
    let err = String::from_utf8_lossy(&logs.stderr);
    assert!(err.contains("no longer retained"), "{err}");
    assert!(err.contains("--allow-gaps"), "{err}");
    assert!(logs.stdout.ends_with(b"100000\n"));
    let allowed = tend_cmd(&d)
        .args(["logs", "--allow-gaps", "long"])
        .output()
        .unwrap();
    assert_eq!(allowed.status.code(), Some(0));
}

/// Start `tend run` of a shell that traps `sig`, and wait until the trap is set.
fn trapping(d: &Daemon, sig: &str) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let script = format!(
        "trap 'echo got {sig}; kill $!; exit 5' {sig}; echo ready; \
         sleep 1000 >/dev/null 2>&1 </dev/null & wait"
    );
    let mut child = tend_cmd(d)
        .args(["run", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, out)
}

#[tokio::test]
async fn tend_run_forwards_int_term_hup_and_quit() {
    let d = Daemon::start().await;
    for (name, sig) in [
        ("INT", libc::SIGINT),
        ("TERM", libc::SIGTERM),
        ("HUP", libc::SIGHUP),
        ("QUIT", libc::SIGQUIT),
    ] {
        let (mut child, mut out) = trapping(&d, name);
        // SAFETY: kill(2) of the tend CLI this test started.
        unsafe { libc::kill(child.id() as i32, sig) };
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, format!("got {name}\n"));
        assert_eq!(child.wait().unwrap().code(), Some(5), "{name}");
    }
}

#[tokio::test]
async fn a_closed_stdout_stops_the_command_and_exits_141() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let mut child = tend_cmd(&d)
        .args(["run", "--name", "yes", "yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "y\n");
    drop(out);
    let done = child.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(141));
    assert!(
        done.stderr.is_empty(),
        "quietly: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let exit = wait_exit(&mut c, "yes", 10).await;
    assert!(exit.signal.is_some(), "yes was signalled: {exit:?}");
    let pid = info(&mut c, "yes").await.pid;
    assert!(group(pid).is_empty(), "nothing of yes is left");
}

#[tokio::test]
async fn a_cli_killed_with_sigkill_leaves_no_process_behind() {
    let d = Daemon::start().await;
    let mut c = d.c().await;
    let mut child = tend_cmd(&d)
        .args([
            "run",
            "--name",
            "orphan",
            "sh",
            "-c",
            "echo up; exec sleep 1000",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "up\n");
    child.kill().unwrap();
    child.wait().unwrap();
    let exit = wait_exit(&mut c, "orphan", 10).await;
    assert_eq!(exit.signal, Some(libc::SIGTERM), "{exit:?}");
    let pid = info(&mut c, "orphan").await.pid;
    assert!(group(pid).is_empty());
}

#[tokio::test]
async fn tend_run_takes_the_command_without_dashes_and_detach_prints_the_id() {
    let d = Daemon::start().await;
    let out = tend_cmd(&d)
        .args(["run", "echo", "-n", "hi"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi");
    let out = tend_cmd(&d)
        .args(["run", "-e", "X=1", "sh", "-c", "echo $X --help"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1 --help\n");
    let out = tend_cmd(&d)
        .args(["run", "--detach", "--name", "bg", "sleep", "1000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(id.starts_with("p-"), "{id}");
    let mut c = d.c().await;
    assert!(
        info(&mut c, "bg").await.exit.is_none(),
        "a detached run runs on"
    );
    assert_eq!(info(&mut c, &id).await.name, "bg");
}

#[test]
fn help_describes_arguments_signals_and_defaults() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tend"))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let run = help(&["run"]);
    for want in [
        "Ctrl-C",
        "closed pipe",
        "141",
        "127",
        "126",
        "254",
        "<COMMAND>",
    ] {
        assert!(run.contains(want), "tend run --help lacks {want:?}:\n{run}");
    }
    let serve = help(&["serve"]);
    for want in [
        "[default: 512]",
        "[default: 8388608]",
        "[default: 1048576]",
        "[default: 2000]",
        "[default: 1024]",
    ] {
        assert!(
            serve.contains(want),
            "tend serve --help lacks {want}:\n{serve}"
        );
    }
    for cmd in ["logs", "kill", "wait", "output", "rm"] {
        let h = help(&[cmd]);
        assert!(h.contains("Process id or name"), "tend {cmd} --help:\n{h}");
    }
}

#[tokio::test]
async fn a_third_ctrl_c_leaves_even_when_the_daemon_does_not_answer() {
    let d = Daemon::start().await;
    let (mut child, _out) = trapping(&d, "INT");
    // SAFETY: kill(2) of the daemon this test started: stopped, it answers nothing.
    unsafe { libc::kill(d.pid() as i32, libc::SIGSTOP) };
    for _ in 0..3 {
        // SAFETY: kill(2) of the tend CLI this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut status = None;
    for _ in 0..500 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(d.pid() as i32, libc::SIGCONT) };
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("tend run did not leave on the third Ctrl-C")
    });
    assert_eq!(status.code(), Some(130));
}
