//! `cargo bench --bench tend_bench`: tend against raw baselines measured in the same run.
//!
//! (a) `/bin/true` through `Run` vs `tokio::process::Command::status()`.
//! (b) 1 GiB through a lossless `Run` (and, as a second figure, an observer `Connect`, following
//!     live) vs reading the same command's stdout pipe.
//! (c) A one-byte PTY echo through `Attach` vs a PTY opened here, running the same `cat`.
//! (d) The same echo through `AgentService.Attach` (the `cat` as an agent) vs the same raw PTY.
//! (e) The p90 of a unary `Get` while bursts of 32 concurrent `Start`s and 8 `Spawn`s run, vs
//!     the same `Get` on a quiet daemon.
//! (f) After `kill -9` of a daemon with 500 process trees (2,000 processes), how long a new
//!     daemon on the same state dir takes to answer health SERVING, and to have swept them all.
//! (g) In a Docker environment: `Run` of `/bin/true` vs `docker exec CONTAINER /bin/true` (the
//!     CLI), and 100 MB through a lossless `Run` vs `docker exec CONTAINER cat FILE | wc -c`.
//! (h) `Run` of `/bin/true` in a materialised Nix environment vs the same `Run` on the host.
//! (i) A unary `Get` of a loaded plugin through tend (the `tend-plugin` header) vs direct to the
//!     plugin's socket, interleaved (forward_bench.rs).
//! (j) `Load` of the go-plugin test plugin until SERVING vs go-plugin's own host loading the same
//!     binary and vs the plugin's own time to its handshake line; `Unload` vs go-plugin's `Kill`.
//! (k) A unary `Get` and 1 GiB through a lossless `Run` over TLS on loopback vs plaintext TCP,
//!     one daemon listening on both.
//!
//! It prints medians and ratios, and PASS/MISS per target. It asserts nothing about time and
//! exits 0 whether targets are met or not: a benchmark reports, the tests decide.
mod env_bench;
mod forward_bench;
mod plugin_bench;
mod usage_bench;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tend::cli::connect::{agent_client, process_client, Addr, AgentClient, ProcessClient};
use tend::cli::tls::ClientTls;
use tend::pb::{self, agent_service_attach_request::Kind as AgentIn};
use tend::pb::{attach_request::Kind as In, process_event::Kind};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

/// Iterations of (a), (c) and (d), after warm-up.
const ITERS: usize = 400;
const WARMUP: usize = 30;
/// Runs of (b), after one smaller warm-up run.
const STREAM_RUNS: usize = 3;
const STREAM_BYTES: u64 = 1 << 30;
/// The (b) daemon's ring: memory stays bounded whatever the process writes.
const RING_BYTES: usize = 8 << 20;
/// The shell line of the echo process, in tend and in the raw PTY alike: raw mode, no echo by the
/// terminal, so one byte in is one byte out (from `cat`), and `R` once the mode is set.
const ECHO: &str = "stty raw -echo; printf R; exec cat";

/// A `tend serve` subprocess on a socket in a temp dir; SIGTERM on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Daemon {
    async fn start(args: &[&str]) -> Daemon {
        let tmp = tempfile::Builder::new()
            .prefix("tend-bench")
            .tempdir()
            .expect("temp dir");
        let dir = tmp.path().join("state");
        let mut d = Daemon::start_in(&dir, args).await;
        d._tmp = Some(tmp);
        d
    }

    /// A daemon on `dir`, answering `List`.
    async fn start_in(dir: &std::path::Path, args: &[&str]) -> Daemon {
        let d = Daemon::spawn_in(dir, args);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = d.client().await {
                if c.list(pb::ListRequest::default()).await.is_ok() {
                    return d;
                }
            }
            assert!(Instant::now() < deadline, "tend did not answer within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A daemon on `dir`, not waited for.
    fn spawn_in(dir: &std::path::Path, args: &[&str]) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_tend"))
            .arg("serve")
            .arg("--state-dir")
            .arg(dir)
            .args(args)
            .env("TEND_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn tend serve");
        Daemon {
            child,
            socket: dir.join("tend.sock"),
            _tmp: None,
        }
    }

    async fn client(&self) -> anyhow::Result<ProcessClient> {
        process_client(&Addr::Unix(self.socket.clone()), None).await
    }

    async fn agents(&self) -> anyhow::Result<AgentClient> {
        agent_client(&Addr::Unix(self.socket.clone()), None).await
    }

    /// The daemon's peak resident set, from /proc.
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
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

fn spec(argv: &[&str]) -> pb::ProcessSpec {
    pb::ProcessSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Sorted samples.
struct Stats(Vec<f64>);

impl Stats {
    fn new(mut v: Vec<f64>) -> Stats {
        v.sort_by(|a, b| a.total_cmp(b));
        Stats(v)
    }
    fn pct(&self, p: f64) -> f64 {
        let i = ((self.0.len() - 1) as f64 * p).round() as usize;
        self.0[i]
    }
    fn median(&self) -> f64 {
        self.pct(0.5)
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

// ---------------------------------------------------------------------------------------------
// (a) /bin/true

async fn true_via_run(c: &mut ProcessClient) -> Duration {
    let t0 = Instant::now();
    let mut events = c
        .run(pb::RunRequest {
            spec: Some(spec(&["/bin/true"])),
            request_id: String::new(),
            ..Default::default()
        })
        .await
        .expect("run")
        .into_inner();
    let mut exited = false;
    while let Some(ev) = events.next().await {
        if let Some(Kind::Exited(x)) = ev.expect("event").event.and_then(|e| e.kind) {
            assert_eq!(x.exit_code, Some(0));
            exited = true;
            break;
        }
    }
    let t = t0.elapsed();
    assert!(exited, "Run ended without an exited event");
    t
}

async fn true_raw() -> Duration {
    let t0 = Instant::now();
    let status = tokio::process::Command::new("/bin/true")
        .status()
        .await
        .expect("spawn /bin/true");
    let t = t0.elapsed();
    assert!(status.success());
    t
}

/// A unary RPC that does no work: the floor under any call, for reading (a), (c) and (d).
async fn unary_floor(c: &mut ProcessClient, id: &str) -> Duration {
    let t0 = Instant::now();
    c.get(pb::GetRequest { id: id.into() }).await.expect("get");
    t0.elapsed()
}

struct RunResult {
    tend: Stats,
    raw: Stats,
    floor: Stats,
}

async fn bench_run(d: &Daemon) -> RunResult {
    let mut c = d.client().await.expect("client");
    for _ in 0..WARMUP {
        true_via_run(&mut c).await;
        true_raw().await;
    }
    let (mut tend, mut raw, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved, so drift (other load, caches, frequency) hits both alike.
    for _ in 0..ITERS {
        tend.push(us(true_via_run(&mut c).await));
        raw.push(us(true_raw().await));
        floor.push(us(unary_floor(&mut c, "p-1").await));
    }
    RunResult {
        tend: Stats::new(tend),
        raw: Stats::new(raw),
        floor: Stats::new(floor),
    }
}

// ---------------------------------------------------------------------------------------------
// (b) 1 GiB through a lossless Run; an observer Connect as the second figure

struct Streamed {
    secs: f64,
    data: u64,
    gap: u64,
    /// Data events (tend) or reads (raw).
    pieces: u64,
    /// The run ended as it should: an exited event with status 0, offsets contiguous.
    clean: bool,
}

/// Count the events of one process's output stream until the exited event. Every data byte of
/// stdout counts, as does every gap; offsets must be contiguous. Nothing panics: a broken run
/// shows as `clean: false`.
async fn count_events<S, R>(events: &mut S, event: fn(R) -> Option<pb::ProcessEvent>) -> Streamed
where
    S: tokio_stream::Stream<Item = Result<R, tonic::Status>> + Unpin,
{
    let (mut data, mut gap, mut pieces) = (0u64, 0u64, 0u64);
    let mut next = 0u64;
    let mut clean = false;
    let stdout = pb::Stream::Stdout as i32;
    let mut contiguous = true;
    while let Some(ev) = events.next().await {
        let Ok(ev) = ev else { break };
        match event(ev).and_then(|e| e.kind) {
            Some(Kind::Data(x)) if x.stream == stdout => {
                contiguous &= x.offset == next;
                next = x.offset + x.data.len() as u64;
                data += x.data.len() as u64;
                pieces += 1;
            }
            Some(Kind::Gap(g)) if g.stream == stdout => {
                contiguous &= g.offset == next;
                next = g.offset + g.length;
                gap += g.length;
            }
            Some(Kind::Exited(x)) => {
                clean = x.exit_code == Some(0) && contiguous;
                break;
            }
            _ => {}
        }
    }
    Streamed {
        secs: 0.0,
        data,
        gap,
        pieces,
        clean,
    }
}

/// `head -c bytes /dev/zero` through `Run` as it is by default: lossless, so the process waits
/// for the reader and every byte arrives. Time from the call to the exited event.
async fn stream_via_run(c: &mut ProcessClient, bytes: u64) -> Streamed {
    let t0 = Instant::now();
    let mut events = c
        .run(pb::RunRequest {
            spec: Some(spec(&["head", "-c", &bytes.to_string(), "/dev/zero"])),
            ..Default::default()
        })
        .await
        .expect("run")
        .into_inner();
    let mut s = count_events(&mut events, |r: pb::RunResponse| r.event).await;
    s.secs = t0.elapsed().as_secs_f64();
    s
}

/// Start `head -c bytes /dev/zero` behind a `read` so that an observer `Connect` is following
/// before the first byte; time from the go-ahead to the exited event. The process never waits
/// for this reader, which gets gaps when it falls a ring behind.
async fn stream_via_connect(c: &mut ProcessClient, bytes: u64) -> Streamed {
    let script = format!("read go; exec head -c {bytes} /dev/zero");
    let mut s = spec(&["sh", "-c", &script]);
    s.stdin = true;
    let id = c
        .start(pb::StartRequest {
            spec: Some(s),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner()
        .process
        .expect("process")
        .id;
    let mut events = c
        .connect(pb::ConnectRequest {
            id: id.clone(),
            from_offset: 0,
            stream: pb::Stream::Stdout as i32,
            no_follow: false,
            lossless: false,
        })
        .await
        .expect("connect")
        .into_inner();
    let t0 = Instant::now();
    c.send_input(pb::SendInputRequest {
        id: id.clone(),
        data: b"go\n".to_vec(),
    })
    .await
    .expect("send input");
    let mut s = count_events(&mut events, |r: pb::ConnectResponse| r.event).await;
    s.secs = t0.elapsed().as_secs_f64();
    let _ = c.remove(pb::RemoveRequest { id, force: false }).await;
    s
}

/// The same command's stdout read straight from its pipe, as the daemon reads it (256 KiB reads).
async fn stream_raw(bytes: u64) -> Streamed {
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new("head")
        .args(["-c", &bytes.to_string(), "/dev/zero"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn head");
    let mut out = child.stdout.take().expect("piped");
    let mut buf = vec![0u8; 256 << 10];
    let (mut data, mut pieces) = (0u64, 0u64);
    loop {
        let n = out.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        data += n as u64;
        pieces += 1;
    }
    assert!(child.wait().await.expect("wait").success());
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(data, bytes);
    Streamed {
        secs,
        data,
        gap: 0,
        pieces,
        clean: true,
    }
}

struct StreamResult {
    lossless: Vec<Streamed>,
    observer: Vec<Streamed>,
    raw: Vec<Streamed>,
    peak_rss_kib: Option<u64>,
}

fn gbps(s: &Streamed) -> f64 {
    s.data as f64 / s.secs / 1e9
}

fn median_of(v: &[Streamed], f: fn(&Streamed) -> f64) -> f64 {
    Stats::new(v.iter().map(f).collect()).median()
}

async fn bench_stream(d: &Daemon) -> StreamResult {
    let mut c = d.client().await.expect("client");
    stream_via_run(&mut c, 64 << 20).await;
    stream_via_connect(&mut c, 64 << 20).await;
    stream_raw(64 << 20).await;
    let (mut lossless, mut observer, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..STREAM_RUNS {
        lossless.push(stream_via_run(&mut c, STREAM_BYTES).await);
        observer.push(stream_via_connect(&mut c, STREAM_BYTES).await);
        raw.push(stream_raw(STREAM_BYTES).await);
    }
    StreamResult {
        lossless,
        observer,
        raw,
        peak_rss_kib: d.peak_rss_kib(),
    }
}

// ---------------------------------------------------------------------------------------------
// (c) and (d) PTY echo

/// An Attach session on a PTY `cat` in raw mode: ProcessService's (`pb::AttachRequest`) or
/// AgentService's (`pb::AgentServiceAttachRequest`); both stream `ProcessEvent`s of the PTY.
struct Attached<Req, Resp> {
    tx: mpsc::Sender<Req>,
    events: tonic::Streaming<Resp>,
    /// Wraps input bytes in the service's request.
    input: fn(Vec<u8>) -> Req,
    /// Takes the PTY event out of the service's response.
    event: fn(Resp) -> Option<pb::ProcessEvent>,
}

impl Attached<pb::AttachRequest, pb::AttachResponse> {
    /// (c): start the echo process with a PTY and attach to it through ProcessService.
    async fn open(c: &mut ProcessClient) -> (Self, String) {
        let mut s = spec(&["sh", "-c", ECHO]);
        s.pty = Some(pb::PtySize { rows: 24, cols: 80 });
        let id = c
            .start(pb::StartRequest {
                spec: Some(s),
                ..Default::default()
            })
            .await
            .expect("start")
            .into_inner()
            .process
            .expect("process")
            .id;
        let (tx, rx) = mpsc::channel(8);
        tx.send(pb::AttachRequest {
            kind: Some(In::Open(pb::AttachOpen {
                id: id.clone(),
                from_offset: Some(0),
                ..Default::default()
            })),
        })
        .await
        .expect("open");
        let events = c
            .attach(ReceiverStream::new(rx))
            .await
            .expect("attach")
            .into_inner();
        let mut a = Attached {
            tx,
            events,
            input: |data| pb::AttachRequest {
                kind: Some(In::Input(data)),
            },
            event: |r| r.event,
        };
        a.expect(b'R').await;
        (a, id)
    }
}

impl Attached<pb::AgentServiceAttachRequest, pb::AgentServiceAttachResponse> {
    /// (d): spawn the echo process as a task agent named `name` and attach to it through
    /// AgentService (the replay of recent output brings the `R` if it came before the attach).
    async fn open_agent(a: &mut AgentClient, name: &str) -> Self {
        a.spawn(pb::SpawnRequest {
            spec: Some(pb::AgentSpec {
                name: name.into(),
                argv: ["sh", "-c", ECHO].map(String::from).to_vec(),
                size: Some(pb::PtySize { rows: 24, cols: 80 }),
                kind: pb::AgentKind::Task as i32,
                ..Default::default()
            }),
        })
        .await
        .expect("spawn agent");
        let (tx, rx) = mpsc::channel(8);
        tx.send(pb::AgentServiceAttachRequest {
            kind: Some(AgentIn::Open(pb::AgentAttachOpen {
                name: name.into(),
                ..Default::default()
            })),
        })
        .await
        .expect("open");
        let events = a
            .attach(ReceiverStream::new(rx))
            .await
            .expect("agent attach")
            .into_inner();
        let mut s = Attached {
            tx,
            events,
            input: |data| pb::AgentServiceAttachRequest {
                kind: Some(AgentIn::Input(data)),
            },
            event: |r| r.event,
        };
        s.expect(b'R').await;
        s
    }
}

impl<Req, Resp> Attached<Req, Resp> {
    /// Wait for data holding exactly `byte`.
    async fn expect(&mut self, byte: u8) {
        while let Some(ev) = self.events.next().await {
            if let Some(Kind::Data(d)) = (self.event)(ev.expect("event")).and_then(|e| e.kind) {
                assert_eq!(&d.data[..], [byte], "one byte in, the same byte out");
                return;
            }
        }
        panic!("the attach stream ended before the echo");
    }

    async fn round_trip(&mut self, byte: u8) -> Duration {
        let t0 = Instant::now();
        self.tx
            .send((self.input)(vec![byte]))
            .await
            .unwrap_or_else(|_| panic!("send"));
        self.expect(byte).await;
        t0.elapsed()
    }
}

/// The same `cat` on a PTY opened here; blocking reads and writes on the master.
struct RawPty {
    master: OwnedFd,
    child: Child,
}

impl RawPty {
    fn open() -> RawPty {
        let pty = nix::pty::openpty(
            Some(&nix::pty::Winsize {
                ws_row: 24,
                ws_col: 80,
                ws_xpixel: 0,
                ws_ypixel: 0,
            }),
            None,
        )
        .expect("openpty");
        let slave = std::fs::File::from(pty.slave);
        let dup = || slave.try_clone().expect("dup");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", ECHO])
            .stdin(dup())
            .stdout(dup())
            .stderr(slave);
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let child = cmd.spawn().expect("spawn the raw PTY cat");
        drop(cmd);
        let mut p = RawPty {
            master: pty.master,
            child,
        };
        p.expect(b'R');
        p
    }

    fn expect(&mut self, byte: u8) {
        let mut b = [0u8; 16];
        // SAFETY: read(2) into our buffer from our fd.
        let n = unsafe { libc::read(self.master.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
        assert_eq!(n, 1, "one byte back");
        assert_eq!(b[0], byte);
    }

    fn round_trip(&mut self, byte: u8) -> Duration {
        let t0 = Instant::now();
        // SAFETY: write(2) of one byte from our buffer to our fd.
        let n = unsafe { libc::write(self.master.as_raw_fd(), [byte].as_ptr().cast(), 1) };
        assert_eq!(n, 1);
        self.expect(byte);
        t0.elapsed()
    }
}

impl Drop for RawPty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct EchoResult {
    tend: Stats,
    raw: Stats,
}

/// The round trip through `attached`, interleaved with the same `cat` on a raw PTY opened here.
async fn echo_vs_raw<Req, Resp>(attached: &mut Attached<Req, Resp>) -> EchoResult {
    // The raw round trip blocks, so it runs on a blocking-pool thread, timed there.
    let raw_pty = std::sync::Arc::new(std::sync::Mutex::new(RawPty::open()));
    let raw_trip = |b: u8| {
        let p = raw_pty.clone();
        async move {
            tokio::task::spawn_blocking(move || p.lock().expect("raw pty").round_trip(b))
                .await
                .expect("raw round trip")
        }
    };
    let byte = |i: usize| b'a' + (i % 26) as u8;
    for i in 0..WARMUP {
        attached.round_trip(byte(i)).await;
        raw_trip(byte(i)).await;
    }
    let (mut tend, mut raw) = (Vec::new(), Vec::new());
    for i in 0..ITERS {
        tend.push(us(attached.round_trip(byte(i)).await));
        raw.push(us(raw_trip(byte(i)).await));
    }
    EchoResult {
        tend: Stats::new(tend),
        raw: Stats::new(raw),
    }
}

async fn bench_echo(d: &Daemon) -> EchoResult {
    let mut c = d.client().await.expect("client");
    let (mut attached, id) = Attached::open(&mut c).await;
    let r = echo_vs_raw(&mut attached).await;
    drop(attached);
    let _ = c.remove(pb::RemoveRequest { id, force: true }).await;
    r
}

async fn bench_agent_echo(d: &Daemon) -> EchoResult {
    let mut a = d.agents().await.expect("agent client");
    let mut attached = Attached::open_agent(&mut a, "bench-echo").await;
    let r = echo_vs_raw(&mut attached).await;
    drop(attached);
    let _ = a
        .remove(pb::AgentServiceRemoveRequest {
            name: "bench-echo".into(),
        })
        .await;
    r
}

// ---------------------------------------------------------------------------------------------
// (e) Get while Starts and Spawns burst

/// Bursts of (e), and their size.
const BURSTS: usize = 20;
const BURST_STARTS: usize = 32;
const BURST_SPAWNS: usize = 8;

struct BurstResult {
    quiet: Stats,
    busy: Stats,
}

/// `Get` latencies, one after another, until `stop` is set.
async fn gets_until(
    mut c: ProcessClient,
    id: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<f64> {
    let mut out = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        out.push(us(unary_floor(&mut c, &id).await));
    }
    out
}

async fn bench_burst(d: &Daemon) -> BurstResult {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut c = d.client().await.expect("client");
    let id = c
        .start(pb::StartRequest {
            spec: Some(spec(&["sleep", "1000"])),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner()
        .process
        .expect("process")
        .id;
    let measure = |stop: Arc<AtomicBool>| {
        let c = c.clone();
        let id = id.clone();
        tokio::spawn(gets_until(c, id, stop))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let quiet = measure(stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let quiet = Stats::new(quiet.await.expect("gets"));

    let stop = Arc::new(AtomicBool::new(false));
    let busy = measure(stop.clone());
    let agents = d.agents().await.expect("agents");
    for round in 0..BURSTS {
        let mut burst = tokio::task::JoinSet::new();
        for _ in 0..BURST_STARTS {
            let mut c = c.clone();
            burst.spawn(async move {
                let _ = c
                    .start(pb::StartRequest {
                        spec: Some(spec(&["/bin/true"])),
                        ..Default::default()
                    })
                    .await;
            });
        }
        for i in 0..BURST_SPAWNS {
            let mut a = agents.clone();
            burst.spawn(async move {
                let _ = a
                    .spawn(pb::SpawnRequest {
                        spec: Some(pb::AgentSpec {
                            name: format!("burst-{round}-{i}"),
                            argv: vec!["true".into()],
                            kind: pb::AgentKind::Crew as i32,
                            ..Default::default()
                        }),
                    })
                    .await;
            });
        }
        while burst.join_next().await.is_some() {}
        // Crew agents are persisted (a locked, fsynced store update): remove them again so
        // each burst's Spawns pay that again, and the agent limit is never reached.
        for i in 0..BURST_SPAWNS {
            let mut a = agents.clone();
            let _ = a
                .remove(pb::AgentServiceRemoveRequest {
                    name: format!("burst-{round}-{i}"),
                })
                .await;
        }
        let _ = c
            .list(pb::ListRequest::default())
            .await
            .map(|l| l.into_inner());
    }
    stop.store(true, Ordering::Relaxed);
    let busy = Stats::new(busy.await.expect("gets"));
    BurstResult { quiet, busy }
}

fn report_burst(e: &BurstResult) {
    println!();
    println!(
        "(e) unary Get during {BURSTS} bursts of {BURST_STARTS} Starts + {BURST_SPAWNS} crew \
         Spawns (+ their Removes)"
    );
    println!("                                  median µs     p90 µs    samples");
    for (label, s) in [("quiet daemon", &e.quiet), ("during the bursts", &e.busy)] {
        println!(
            "    {label:<28} {:>9.0} {:>10.0} {:>10}",
            s.median(),
            s.pct(0.9),
            s.0.len()
        );
    }
    let p90 = e.busy.pct(0.9);
    println!(
        "    p90 during the bursts {:.2} ms  (target <= 2 ms)  {}",
        p90 / 1000.0,
        verdict(p90 <= 2000.0)
    );
}

// ---------------------------------------------------------------------------------------------
// (f) the sweep after a crash

const SWEEP_TREES: usize = 500;
/// Four processes per tree, one of them out of the group by setsid.
const SWEEP_TREE: &str = "sleep 1000 & setsid sleep 1000 & sleep 1000 & wait";

struct SweepResult {
    orphans: usize,
    serving: Duration,
    swept: Option<Duration>,
    left: usize,
}

/// Live processes whose TEND_ORIGIN names daemon `pid`.
fn carriers(pid: u32) -> usize {
    let want = format!("{pid}:");
    tend::supervisor::records::marked(|m| {
        m.split_once(':')
            .is_some_and(|(_, rest)| rest.starts_with(&want))
    })
    .len()
}

async fn bench_sweep() -> SweepResult {
    let tmp = tempfile::Builder::new()
        .prefix("tend-bench")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path().join("state");
    let mut first = Daemon::start_in(&dir, &["--max-running", "1000"]).await;
    let mut c = first.client().await.expect("client");
    for _ in 0..SWEEP_TREES {
        c.start(pb::StartRequest {
            spec: Some(spec(&["sh", "-c", SWEEP_TREE])),
            ..Default::default()
        })
        .await
        .expect("start");
    }
    let pid = first.child.id();
    let want = SWEEP_TREES * 4;
    let deadline = Instant::now() + Duration::from_secs(120);
    while carriers(pid) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let orphans = carriers(pid);
    let _ = first.child.kill();
    let _ = first.child.wait();
    drop(c);

    let t0 = Instant::now();
    let second = Daemon::spawn_in(&dir, &[]);
    let serving = loop {
        if let Ok(ch) = tend::cli::connect::channel(&Addr::Unix(second.socket.clone())).await {
            let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
            if let Ok(r) = h
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
            {
                if r.into_inner().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                {
                    break t0.elapsed();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut swept = None;
    let mut left = orphans;
    while t0.elapsed() < Duration::from_secs(60) {
        left = carriers(pid);
        if left == 0 {
            swept = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(second);
    drop(first);
    SweepResult {
        orphans,
        serving,
        swept,
        left,
    }
}

fn report_sweep(f: &SweepResult) {
    println!();
    println!(
        "(f) restart after kill -9 of a daemon with {SWEEP_TREES} trees ({} processes found)",
        f.orphans
    );
    println!(
        "    health SERVING after {:.0} ms  (target <= 1000 ms)  {}",
        f.serving.as_secs_f64() * 1e3,
        verdict(f.serving <= Duration::from_secs(1))
    );
    match f.swept {
        Some(t) => println!(
            "    every orphan dead after {:.0} ms  (target <= 5000 ms)  {}",
            t.as_secs_f64() * 1e3,
            verdict(t <= Duration::from_secs(5))
        ),
        None => println!("    {} orphans still alive after 60 s  MISS", f.left),
    }
}

// ---------------------------------------------------------------------------------------------
// (k) TLS on loopback vs plaintext TCP
//
// One daemon listening on both, in the same run: a unary `Get` round trip (interleaved) and 1 GiB
// through a lossless `Run` (alternating), each over its own connection with the bearer token. TLS
// is rustls with aws-lc-rs, whose AES-GCM uses the CPU's AES-NI and carry-less multiply.

/// The target: TLS costs less than this on the stream.
const TARGET_STREAM: f64 = 2.0;

struct TlsResult {
    plain_unary: Stats,
    tls_unary: Stats,
    plain_stream: Vec<Streamed>,
    tls_stream: Vec<Streamed>,
}

/// A free loopback port (another process could take it before the daemon binds it).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local_addr").port()
}

/// Clients of the daemon whose state dir is `dir`, listening on `plain` (tcp://) and `tls`
/// (tls://, its generated certificate verified as the CA).
async fn clients(dir: &Path, plain: &str, tls: &str) -> (ProcessClient, ProcessClient) {
    let token = std::fs::read_to_string(dir.join("token")).expect("token");
    let p = process_client(&Addr::Tcp(plain.into()), Some(token.clone()))
        .await
        .expect("tcp client");
    let by_ca = ClientTls {
        ca: Some(dir.join("tls-cert.pem")),
        ..Default::default()
    };
    let t = process_client(&Addr::Tls(tls.into(), by_ca), Some(token))
        .await
        .expect("tls client");
    (p, t)
}

async fn bench_tls(dir: &Path, plain: &str, tls: &str) -> TlsResult {
    let (mut p, mut t) = clients(dir, plain, tls).await;
    let id = "p-none";
    let get = |c: &mut ProcessClient| {
        let mut c = c.clone();
        async move {
            // NotFound is an answer like any other: the round trip is what is measured.
            let t0 = std::time::Instant::now();
            let _ = c.get(pb::GetRequest { id: id.into() }).await;
            t0.elapsed()
        }
    };
    for _ in 0..WARMUP {
        get(&mut p).await;
        get(&mut t).await;
    }
    let (mut pu, mut tu) = (Vec::new(), Vec::new());
    for _ in 0..ITERS {
        pu.push(us(get(&mut p).await));
        tu.push(us(get(&mut t).await));
    }
    stream_via_run(&mut p, 64 << 20).await;
    stream_via_run(&mut t, 64 << 20).await;
    let (mut ps, mut ts) = (Vec::new(), Vec::new());
    for _ in 0..STREAM_RUNS {
        ps.push(stream_via_run(&mut p, STREAM_BYTES).await);
        ts.push(stream_via_run(&mut t, STREAM_BYTES).await);
    }
    TlsResult {
        plain_unary: Stats::new(pu),
        tls_unary: Stats::new(tu),
        plain_stream: ps,
        tls_stream: ts,
    }
}

fn report_tls(k: &TlsResult) {
    println!();
    println!(
        "(k) TLS (rustls, aws-lc-rs) vs plaintext TCP on loopback, one daemon: unary Get, and \
         {} MiB through a lossless Run",
        STREAM_BYTES >> 20
    );
    println!(
        "    {:<28} {:>10} {:>10}",
        "unary Get", "median µs", "p90 µs"
    );
    for (label, s) in [
        ("plaintext tcp://", &k.plain_unary),
        ("tls://", &k.tls_unary),
    ] {
        println!(
            "    {:<28} {:>10.1} {:>10.1}",
            label,
            s.median(),
            s.pct(0.9)
        );
    }
    let unary = k.tls_unary.median() / k.plain_unary.median();
    println!("    unary ratio {unary:.2}x");
    println!(
        "    {:<6} {:>9} {:>8} {:>10}",
        "run", "", "secs", "data GB/s"
    );
    for (i, (p, t)) in k.plain_stream.iter().zip(&k.tls_stream).enumerate() {
        for (what, s) in [("tcp", p), ("tls", t)] {
            println!(
                "    {:<6} {:>9} {:>8.3} {:>10.2}{}",
                if what == "tcp" {
                    (i + 1).to_string()
                } else {
                    String::new()
                },
                what,
                s.secs,
                gbps(s),
                if s.clean && s.gap == 0 && s.data == STREAM_BYTES {
                    ""
                } else {
                    "  (incomplete)"
                }
            );
        }
    }
    let plain = median_of(&k.plain_stream, gbps);
    let tls = median_of(&k.tls_stream, gbps);
    let cost = plain / tls;
    println!(
        "    stream: tcp {plain:.2} GB/s, tls {tls:.2} GB/s: TLS costs {cost:.2}x  (target < \
         {TARGET_STREAM:.0}x)  {}",
        verdict(cost < TARGET_STREAM)
    );
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Everything runs in a spawned task, on the runtime's workers like any tokio client: driven
    // from block_on's own thread instead, every event would cost a wake-up across threads.
    rt.block_on(async { tokio::spawn(bench()).await.expect("the bench panicked") });
}

async fn bench() {
    let started = Instant::now();
    println!(
        "tend_bench: {} CPUs, {ITERS} iterations of (a), (c) and (d) after {WARMUP} warm-up, \
         {STREAM_RUNS} runs of (b)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // TEND_BENCH_ONLY=a,c (say) runs only those sections, e.g. to profile one.
    let only = std::env::var("TEND_BENCH_ONLY").unwrap_or_default();
    let on = |s: &str| only.is_empty() || only.split(',').any(|o| o.trim() == s);

    let d = Daemon::start(&[]).await;
    let a = if on("a") {
        Some(bench_run(&d).await)
    } else {
        None
    };
    let c = if on("c") {
        Some(bench_echo(&d).await)
    } else {
        None
    };
    let agent = if on("d") {
        Some(bench_agent_echo(&d).await)
    } else {
        None
    };
    drop(d);

    let ring = RING_BYTES.to_string();
    let b = if on("b") {
        let d = Daemon::start(&["--head-bytes", "0", "--tail-bytes", &ring]).await;
        Some(bench_stream(&d).await)
    } else {
        None
    };

    let e = if on("e") {
        let d = Daemon::start(&[]).await;
        Some(bench_burst(&d).await)
    } else {
        None
    };
    let f = if on("f") {
        Some(bench_sweep().await)
    } else {
        None
    };
    let (g, h) = if on("g") || on("h") {
        let d = Daemon::start(&[]).await;
        let g = if on("g") {
            Some(env_bench::bench_docker(&d.socket).await)
        } else {
            None
        };
        let h = if on("h") {
            Some(env_bench::bench_nix(&d.socket).await)
        } else {
            None
        };
        (g, h)
    } else {
        (None, None)
    };
    let j = if on("j") {
        let d = Daemon::start(&[]).await;
        plugin_bench::bench_plugins(&d.socket).await
    } else {
        None
    };

    let l = if on("l") {
        let max = (usage_bench::PROCESSES + 100).to_string();
        let d = Daemon::start(&["--max-running", &max]).await;
        Some(usage_bench::bench_usage(&d.socket).await)
    } else {
        None
    };

    let i = if on("i") {
        let d = Daemon::start(&[]).await;
        forward_bench::bench_forward(&d.socket).await
    } else {
        None
    };
    let k = if on("k") {
        let plain = format!("127.0.0.1:{}", free_port());
        let tls = format!("127.0.0.1:{}", free_port());
        let d = Daemon::start(&[
            "--listen",
            &format!("tcp://{plain}"),
            "--listen",
            &format!("tls://{tls}"),
            "--head-bytes",
            "0",
            "--tail-bytes",
            &ring,
        ])
        .await;
        let dir = d.socket.parent().expect("state dir").to_path_buf();
        Some(bench_tls(&dir, &plain, &tls).await)
    } else {
        None
    };

    if let Some(a) = a {
        report_run(&a);
    }
    if let Some(l) = l {
        usage_bench::report_usage(&l);
    }
    if let Some(e) = e {
        report_burst(&e);
    }
    if let Some(f) = f {
        report_sweep(&f);
    }
    if let Some(g) = g {
        env_bench::report_docker(&g);
    }
    if let Some(h) = h {
        env_bench::report_nix(&h);
    }
    if let Some(i) = i {
        forward_bench::report_forward(&i);
    }
    if let Some(j) = j {
        plugin_bench::report_plugins(&j);
    }
    if let Some(b) = b {
        report_stream(&b);
    }
    if let Some(k) = k {
        report_tls(&k);
    }
    if let Some(c) = c {
        report_echo(
            "(c) PTY echo of one byte: Attach vs a raw PTY (same `cat`, raw mode)",
            "tend Attach",
            &c,
        );
    }
    if let Some(d) = agent {
        report_echo(
            "(d) PTY echo of one byte: AgentService.Attach vs a raw PTY (same `cat`, raw mode)",
            "tend agent Attach",
            &d,
        );
    }
    println!();
    println!("total {:.1} s", started.elapsed().as_secs_f64());
}

fn report_run(a: &RunResult) {
    println!();
    println!("(a) /bin/true: Run RPC (start, stream to exited) vs tokio::process status()");
    println!("    {:<28} {:>10} {:>10}", "", "median µs", "p90 µs");
    println!(
        "    {:<28} {:>10.0} {:>10.0}",
        "tend Run",
        a.tend.median(),
        a.tend.pct(0.9)
    );
    println!(
        "    {:<28} {:>10.0} {:>10.0}",
        "raw spawn+wait",
        a.raw.median(),
        a.raw.pct(0.9)
    );
    println!(
        "    {:<28} {:>10.0} {:>10.0}",
        "(unary Get, the RPC floor)",
        a.floor.median(),
        a.floor.pct(0.9)
    );
    let ratio_a = a.tend.median() / a.raw.median();
    println!(
        "    ratio {ratio_a:.2}x  (target <= 1.30x)  {}",
        verdict(ratio_a <= 1.3)
    );
}

fn report_stream(b: &StreamResult) {
    println!();
    println!(
        "(b) {} MiB through a lossless Run (and an observer Connect, following live; ring {} MiB) \
         vs raw pipe read",
        STREAM_BYTES >> 20,
        RING_BYTES >> 20
    );
    println!(
        "    {:<6} {:>9} {:>8} {:>10} {:>12} {:>14}",
        "run", "", "secs", "data GB/s", "avg KiB", "gap bytes"
    );
    let row = |run: String, what: &str, s: &Streamed| {
        println!(
            "    {:<6} {:>9} {:>8.3} {:>10.2} {:>12.1} {:>14}{}",
            run,
            what,
            s.secs,
            gbps(s),
            s.data as f64 / s.pieces.max(1) as f64 / 1024.0,
            s.gap,
            if s.clean { "" } else { "  (no clean exit)" }
        )
    };
    for (i, ((l, o), r)) in b.lossless.iter().zip(&b.observer).zip(&b.raw).enumerate() {
        row((i + 1).to_string(), "lossless", l);
        row(String::new(), "observer", o);
        row(String::new(), "raw", r);
    }
    println!("    (avg KiB: per data event for tend, per read(2) for raw)");
    let lossless_gbps = median_of(&b.lossless, gbps);
    let observer_gbps = median_of(&b.observer, gbps);
    let raw_gbps = median_of(&b.raw, gbps);
    let complete = b
        .lossless
        .iter()
        .all(|s| s.clean && s.gap == 0 && s.data == STREAM_BYTES);
    let ratio_b = lossless_gbps / raw_gbps;
    println!(
        "    lossless Run: {lossless_gbps:.2} GB/s, raw {raw_gbps:.2} GB/s, ratio {:.0}%  \
         (target >= 50% and >= 1 GB/s, every byte)  {}",
        ratio_b * 100.0,
        verdict(complete && ratio_b >= 0.5 && lossless_gbps >= 1.0)
    );
    let lossless_gap: u64 = b.lossless.iter().map(|s| s.gap).sum();
    let lossless_data: u64 = b.lossless.iter().map(|s| s.data).sum();
    let expected = STREAM_BYTES * b.lossless.len() as u64;
    if complete {
        println!(
            "    lossless: all {STREAM_BYTES} bytes arrived in each of {} runs, gap bytes 0",
            b.lossless.len()
        );
    } else {
        println!(
            "    lossless: MISS: {lossless_data} of {expected} data bytes arrived, \
             gap bytes {lossless_gap}"
        );
    }
    let observer_gap: u64 = b.observer.iter().map(|s| s.gap).sum();
    println!(
        "    observer Connect: {observer_gbps:.2} GB/s delivered, ratio {:.0}% of raw; \
         gap bytes over {} runs: {observer_gap}{}",
        observer_gbps / raw_gbps * 100.0,
        b.observer.len(),
        if observer_gap == 0 {
            " (the reader kept up)"
        } else {
            " (it fell behind the ring; GB/s counts delivered bytes)"
        }
    );
    if let Some(kib) = b.peak_rss_kib {
        println!("    daemon peak RSS: {} MiB", kib >> 10);
    }
}

fn report_echo(title: &str, label: &str, c: &EchoResult) {
    println!();
    println!("{title}");
    println!("    {:<28} {:>10} {:>10}", "", "median µs", "p90 µs");
    println!(
        "    {:<28} {:>10.1} {:>10.1}",
        label,
        c.tend.median(),
        c.tend.pct(0.9)
    );
    println!(
        "    {:<28} {:>10.1} {:>10.1}",
        "raw PTY",
        c.raw.median(),
        c.raw.pct(0.9)
    );
    let diff = c.tend.median() - c.raw.median();
    println!(
        "    difference of medians {diff:.1} µs (p90: {:.1} µs)  (target <= 100 µs)  {}",
        c.tend.pct(0.9) - c.raw.pct(0.9),
        verdict(diff <= 100.0)
    );
}
