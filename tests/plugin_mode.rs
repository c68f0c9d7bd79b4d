//! `tend serve --handshake`: tend as a plugin. It refuses to run without the host's cookie,
//! announces its socket with one go-plugin line on stdout (logs stay on stderr), serves
//! PluginService, stops on Shutdown, and dies with its parent.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tend::cli::connect::{self, Addr};
use tend::pb;

use crate::helper::*;

const COOKIE: (&str, &str) = (
    tend::loader::handshake::MAGIC_COOKIE_KEY,
    tend::loader::handshake::MAGIC_COOKIE_VALUE,
);

fn plugin_tend(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tend"));
    c.args(["serve", "--handshake"])
        .env(COOKIE.0, COOKIE.1)
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .env("PLUGIN_UNIX_SOCKET_DIR", dir)
        .env_remove("TEND_STATE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn wait_exit(child: &mut std::process::Child, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn without_the_cookie_it_says_it_is_a_plugin_and_exits_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_tend"))
        .args(["serve", "--handshake"])
        .env_remove(COOKIE.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugin") && err.contains("tend serve"),
        "{err}"
    );
}

#[tokio::test]
async fn it_announces_one_line_serves_plugin_service_and_stops_on_shutdown() {
    let dir = tempfile::Builder::new()
        .prefix("tp")
        .tempdir_in("/tmp")
        .unwrap();
    let mut child = plugin_tend(dir.path()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let socket = dir.path().join("tend.sock");
    assert_eq!(
        line.trim_end(),
        format!("1|1|unix|{}|grpc", socket.display())
    );
    let h = tend::loader::handshake::parse(line.trim_end()).expect("the line parses");
    assert_eq!(h.app, 1);

    let addr = Addr::Unix(socket.clone());
    // Its processes are a tend's like any other.
    let mut c = connect::process_client(&addr, None).await.unwrap();
    let out = run(&mut c, sh("echo from the plugin tend")).await;
    assert_eq!(out.stdout, b"from the plugin tend\n");
    let ch = connect::channel(&addr).await.unwrap();
    let mut p = pb::plugin_service_client::PluginServiceClient::new(ch);
    let info = p.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.name, "tend");
    assert!(info.services.iter().any(|s| s == "tend.v1.ProcessService"));
    let id = start(&mut c, sh("trap '' TERM; sleep 1000")).await;
    let pid = c
        .get(pb::GetRequest { id })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap()
        .pid;
    p.shutdown(pb::ShutdownRequest { grace_ms: 200 })
        .await
        .unwrap();
    let status = wait_exit(&mut child, 20).expect("it exits after Shutdown");
    assert!(status.success(), "{status:?}");
    assert!(!alive(pid), "its TERM-ignoring process died with it");
}

#[test]
fn it_dies_with_its_parent() {
    let dir = tempfile::Builder::new()
        .prefix("tp")
        .tempdir_in("/tmp")
        .unwrap();
    // The parent is a shell that starts it, prints its pid and exits a moment later.
    let cmd = format!(
        "'{}' serve --handshake >/dev/null 2>&1 & echo $!; sleep 1",
        env!("CARGO_BIN_EXE_tend")
    );
    let out = Command::new("sh")
        .args(["-c", &cmd])
        .env(COOKIE.0, COOKIE.1)
        .env("PLUGIN_UNIX_SOCKET_DIR", dir.path())
        .env_remove("TEND_STATE_DIR")
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while exists(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "the plugin tend outlived its parent");
}
