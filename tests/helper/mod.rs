//! The fixture: the real `tend` binary on a unix socket in a temp dir, and small client helpers.
//!
//! # Engines (Docker, Nix) for the RunnerService tests
//!
//! A test that needs an engine starts with
//!
//! ```ignore
//! if !helper::require("docker", helper::docker_missing()) { return; }
//! if !helper::require("nix", helper::nix_missing()) { return; }
//! ```
//!
//! `require(component, why_missing)` is `true` when `why_missing` is `None`. Otherwise it prints
//! `SKIP <test>: <component> missing: <why>` to stderr and is `false` -- except under `CI=true`,
//! where it panics: scripts/test installs and starts both engines, so one missing there is a
//! failure, not a skip.
//!
//! - `docker_missing()`: `None` when `DOCKER_HOST` (`docker_host()`) answers `GET /_ping`.
//!   scripts/test exports `DOCKER_HOST` (a private engine started by scripts/docker-up, stopped
//!   by scripts/docker-down at the end) to the daemon under test and the tests alike. By hand:
//!   `export "$(scripts/docker-up)"`. Its test image is `BUSYBOX_IMAGE`
//!   (`tend-test/busybox:latest`); `busybox_tar()` is `TEND_TEST_BUSYBOX_TAR`, the busybox
//!   rootfs tarball it was imported from, for tests of importing a local tarball. The engine
//!   runs with `--bridge=none`: containers have loopback only, or `--network host`.
//! - `nix_missing()` / `nix_available()`: single-user Nix as root, no daemon, offline
//!   (scripts/nix-setup); `nix_fixture()` is the tests' flake, `path:.../tests/fixtures/nix-shell`.
//!
//! Containers, volumes and networks the tests leave are removed by scripts/docker-down; still,
//! tests should name or label what they create so that they can run side by side.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tend::cli::connect::{self, Addr, ProcessClient};
use tend::pb::{self, process_event::Kind};
use tokio_stream::StreamExt;

mod engines;
#[allow(unused_imports)] // until the RunnerService tests use them
pub use engines::*;

/// A running daemon; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    pub dir: PathBuf,
    _tmp: Option<TempDir>,
    pub child: Child,
    pub args: Vec<String>,
    /// Dropped with the daemon, which stands the watchdog down.
    _watchdog: std::sync::mpsc::Sender<()>,
}

/// The longest a test may keep one daemon. A test that hangs on the daemon (a stream that never
/// ends) then fails, its daemon killed, instead of holding CI until its time limit.
const WATCHDOG: Duration = Duration::from_secs(240);

/// SIGKILL the daemon `pid` after `WATCHDOG` unless `cancel` is dropped first; the start time
/// keeps it from killing another process that reuses the PID.
fn watchdog(pid: u32) -> std::sync::mpsc::Sender<()> {
    let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
    let started = tend::supervisor::records::proc_stat(pid).map(|s| s.start_ticks);
    std::thread::spawn(move || {
        if cancelled.recv_timeout(WATCHDOG) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            return;
        }
        if started.is_some()
            && tend::supervisor::records::proc_stat(pid).map(|s| s.start_ticks) == started
        {
            eprintln!("watchdog: the test kept tend (pid {pid}) over {WATCHDOG:?}; killing it");
            // SAFETY: kill(2) of the daemon this test started, checked by its start time.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    cancel
}

impl Daemon {
    /// A daemon with default settings.
    pub async fn start() -> Daemon {
        Daemon::with_args(&[]).await
    }

    /// A daemon with extra `tend serve` options.
    pub async fn with_args(args: &[&str]) -> Daemon {
        Daemon::in_tempdir(args, |_| {}).await
    }

    /// A daemon started the way a shell starts a background job under `nohup`: with `signals`
    /// ignored, which its children would inherit.
    pub async fn ignoring(signals: &'static [i32]) -> Daemon {
        Daemon::in_tempdir(&[], |cmd| {
            use std::os::unix::process::CommandExt;
            // SAFETY: signal(2) between fork and exec touches no memory of the parent.
            unsafe {
                cmd.pre_exec(move || {
                    for &s in signals {
                        libc::signal(s, libc::SIG_IGN);
                    }
                    Ok(())
                });
            }
        })
        .await
    }

    /// A daemon on a state dir of its own, removed with it.
    pub async fn in_tempdir(args: &[&str], customize: impl FnOnce(&mut Command)) -> Daemon {
        let tmp = tempfile::Builder::new()
            .prefix("tend-test")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("state");
        let mut d = Daemon::spawn_with(&dir, args, customize).await;
        d._tmp = Some(tmp);
        d
    }

    /// A daemon on an existing state dir (for restart tests). The caller keeps the dir alive.
    pub async fn spawn_in(dir: &Path, args: &[&str]) -> Daemon {
        Daemon::spawn_with(dir, args, |_| {}).await
    }

    async fn spawn_with(dir: &Path, args: &[&str], customize: impl FnOnce(&mut Command)) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tend"));
        cmd.arg("serve")
            .arg("--state-dir")
            .arg(dir)
            .args(["--grace-ms", "1000"])
            .args(args)
            .env("TEND_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        customize(&mut cmd);
        let child = cmd.spawn().expect("spawn tend serve");
        let d = Daemon {
            dir: dir.to_path_buf(),
            _tmp: None,
            _watchdog: watchdog(child.id()),
            child,
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        d.wait_ready().await;
        d
    }

    /// Poll until the daemon answers, bounded.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = self.client().await {
                if c.list(pb::ListRequest::default()).await.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "tend did not answer within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("tend.sock")
    }

    pub async fn client(&self) -> anyhow::Result<ProcessClient> {
        connect::process_client(&Addr::Unix(self.socket()), None).await
    }

    /// An AgentService client, or panic.
    pub async fn agents(&self) -> connect::AgentClient {
        connect::agent_client(&Addr::Unix(self.socket()), None)
            .await
            .expect("connect to tend")
    }

    /// A connected client, or panic.
    pub async fn c(&self) -> ProcessClient {
        self.client().await.expect("connect to tend")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL the daemon and reap it, leaving its processes orphaned.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM the daemon and wait for it to exit (bounded).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) of our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "tend did not exit within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) of our child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A spec for argv.
pub fn spec(argv: &[&str]) -> pb::ProcessSpec {
    pb::ProcessSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// `sh -c script`.
pub fn sh(script: &str) -> pb::ProcessSpec {
    spec(&["sh", "-c", script])
}

/// Start in the background; the id.
pub async fn start(c: &mut ProcessClient, spec: pb::ProcessSpec) -> String {
    c.start(pb::StartRequest {
        spec: Some(spec),
        ..Default::default()
    })
    .await
    .expect("start")
    .into_inner()
    .process
    .unwrap()
    .id
}

/// What a stream of events carried.
#[derive(Debug, Default)]
pub struct Collected {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub pty: Vec<u8>,
    pub gaps: Vec<pb::GapEvent>,
    pub exit: Option<pb::ExitStatus>,
    pub started: Option<pb::ProcessInfo>,
    /// The ready event, and how many output bytes had arrived before it.
    pub ready: Option<(pb::ReadyEvent, usize)>,
    next: std::collections::HashMap<i32, u64>,
}

impl Collected {
    pub fn add(&mut self, ev: Option<pb::ProcessEvent>) {
        match ev.and_then(|e| e.kind) {
            Some(Kind::Data(d)) => {
                let s = match pb::Stream::try_from(d.stream).unwrap() {
                    pb::Stream::Stdout => &mut self.stdout,
                    pb::Stream::Stderr => &mut self.stderr,
                    _ => &mut self.pty,
                };
                let next = self.next.entry(d.stream).or_insert(d.offset);
                assert_eq!(d.offset, *next, "offsets are contiguous");
                *next += d.data.len() as u64;
                s.extend_from_slice(&d.data);
            }
            Some(Kind::Gap(g)) => {
                let next = self.next.entry(g.stream).or_insert(g.offset);
                assert_eq!(g.offset, *next, "offsets are contiguous");
                *next += g.length;
                self.gaps.push(g)
            }
            Some(Kind::Exited(x)) => self.exit = Some(x),
            Some(Kind::Started(p)) => self.started = Some(p),
            Some(Kind::Ready(r)) => {
                assert!(self.ready.is_none(), "one ready event");
                let before = self.stdout.len() + self.stderr.len() + self.pty.len();
                self.ready = Some((r, before));
            }
            None => {}
        }
    }
}

/// Run to exit through the Run RPC.
pub async fn run(c: &mut ProcessClient, spec: pb::ProcessSpec) -> Collected {
    let mut events = c
        .run(pb::RunRequest {
            spec: Some(spec),
            request_id: String::new(),
            ..Default::default()
        })
        .await
        .expect("run")
        .into_inner();
    let mut out = Collected::default();
    while let Some(ev) = events.next().await {
        out.add(ev.expect("event").event);
    }
    out
}

/// Connect from an offset and collect until the stream ends.
pub async fn connect(c: &mut ProcessClient, id: &str, from: u64) -> Collected {
    let mut events = c
        .connect(pb::ConnectRequest {
            id: id.into(),
            from_offset: from,
            ..Default::default()
        })
        .await
        .expect("connect")
        .into_inner();
    let mut out = Collected::default();
    while let Some(ev) = events.next().await {
        out.add(ev.expect("event").event);
    }
    out
}

/// Poll `f` until true, at most `secs` seconds.
pub async fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a PID names a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let rest = &s[s.rfind(')').unwrap() + 1..];
            rest.split_whitespace().next() != Some("Z")
        })
        .unwrap_or(false)
}

/// Whether a PID exists at all (zombies included).
pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Live members of a process group.
pub fn group(pgid: u32) -> Vec<u32> {
    tend::supervisor::records::group_members(pgid)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}
