//! The `tend` CLI as a person uses it, against the real daemon.
use std::process::{Command, Output, Stdio};

use crate::helper::*;

fn tend(d: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tend"))
        .arg("--connect")
        .arg(format!("unix://{}", d.socket().display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tend")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn run_streams_both_streams_and_exits_with_the_code() {
    let d = Daemon::start().await;
    let out = tend(
        &d,
        &["run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    let out = tend(&d, &["run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15));
    let out = tend(&d, &["run", "--pty", "--", "tty"]);
    assert!(
        text(&out.stdout).starts_with("/dev/pts/"),
        "{}",
        text(&out.stdout)
    );
    let out = tend(
        &d,
        &[
            "run",
            "-e",
            "GREETING=hi",
            "--cwd",
            "/tmp",
            "--",
            "sh",
            "-c",
            "echo $GREETING; pwd",
        ],
    );
    assert_eq!(text(&out.stdout), "hi\n/tmp\n");
}

#[tokio::test]
async fn ps_logs_output_kill_wait_and_rm() {
    let d = Daemon::start().await;
    let out = tend(&d, &["run", "--name", "hello", "--", "echo", "hello"]);
    assert!(out.status.success());
    let ps = text(&tend(&d, &["ps"]).stdout);
    assert!(ps.contains("hello") && ps.contains("exit 0"), "{ps}");
    assert_eq!(text(&tend(&d, &["logs", "hello"]).stdout), "hello\n");
    assert_eq!(
        text(&tend(&d, &["logs", "hello", "--from", "2"]).stdout),
        "llo\n"
    );
    assert!(text(&tend(&d, &["output", "hello"]).stdout).contains("hello"));

    let mut c = d.c().await;
    let id = start(&mut c, spec(&["sleep", "1000"])).await;
    assert!(tend(&d, &["kill", &id, "-s", "KILL"]).status.success());
    assert_eq!(tend(&d, &["wait", &id]).status.code(), Some(128 + 9));
    assert!(tend(&d, &["rm", &id]).status.success());
    let gone = tend(&d, &["logs", &id]);
    assert!(!gone.status.success());
    assert!(
        text(&gone.stderr).contains("NotFound"),
        "{}",
        text(&gone.stderr)
    );
}

#[tokio::test]
async fn agent_commands() {
    let d = Daemon::with_args(&["--quiescence-ms", "300"]).await;
    assert!(
        tend(&d, &["agent", "spawn", "py", "--", "python3", "-i", "-q"])
            .status
            .success()
    );
    let ls = text(&tend(&d, &["agent", "ls"]).stdout);
    assert!(ls.contains("py") && ls.contains("running"), "{ls}");
    let out = tend(
        &d,
        &[
            "nudge",
            "py",
            "print(6*7)",
            "--wait-idle",
            "--timeout",
            "20",
        ],
    );
    assert_eq!(text(&out.stdout), "delivered\n");
    assert!(tend(&d, &["agent", "stop", "py"]).status.success());
    let out = tend(&d, &["nudge", "py", "x"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(1), "not_running\n".into())
    );
    assert!(tend(&d, &["agent", "respawn", "py"]).status.success());
    assert!(tend(&d, &["agent", "rm", "py"]).status.success());
    let out = tend(&d, &["agent", "rm", "py"]);
    assert!(
        text(&out.stderr).contains("NotFound"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn an_unreachable_daemon_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tend"))
        .args([
            "--connect",
            &format!("unix://{}/none.sock", tmp.path().display()),
            "ps",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("tend serve"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn attach_in_a_terminal_types_into_the_agent_and_detaches_on_ctrl_bracket() {
    use std::io::Write;
    let d = Daemon::start().await;
    assert!(tend(&d, &["agent", "spawn", "echoer", "--", "cat"])
        .status
        .success());
    // `script` gives `tend attach` a real terminal, as a person would have.
    let cmd = format!(
        "{} --connect unix://{} attach echoer",
        env!("CARGO_BIN_EXE_tend"),
        d.socket().display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs tend attach in a terminal");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    stdin.write_all(b"typed-line\n").unwrap();
    // The agent's terminal echoes the line and cat copies it: two more than any local echo.
    eventually(20, "the agent's echo and cat's copy", || {
        text(&seen.lock().unwrap()).matches("typed-line").count() >= 2
    })
    .await;
    stdin.write_all(&[0x1d]).unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "{status:?}");
    let ls = text(&tend(&d, &["agent", "ls"]).stdout);
    assert!(
        ls.contains("echoer") && ls.contains("running"),
        "detaching leaves the agent running: {ls}"
    );
}

#[tokio::test]
async fn run_pty_passes_the_terminal_size_and_restores_the_terminal() {
    let d = Daemon::start().await;
    let script = format!(
        "stty rows 33 cols 101; {} --connect unix://{} run --pty -- stty size; stty -a",
        env!("CARGO_BIN_EXE_tend"),
        d.socket().display()
    );
    let out = Command::new("script")
        .args(["-qec", &script, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs tend in a terminal");
    let seen = text(&out.stdout);
    assert!(seen.contains("33 101"), "{seen}");
    // Raw mode is gone once tend exits: canonical mode and echo are back.
    let after = &seen[seen.find("speed").expect("stty -a ran")..];
    assert!(
        after.contains(" icanon") && after.contains(" echo "),
        "{after}"
    );
}
