//! Against a real engine (`DOCKER_HOST`, e.g. from scripts/docker-up): skipped when it is unset,
//! except under `CI=true`. No test starts a `Reaper`: nothing here spawns host processes
//! but `tar`, waited for by std.
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::*;
use crate::error::Error;
use crate::runner::progress::Progress;
use crate::supervisor::environment::{Environment, Io, Launched, Terminal};
use crate::supervisor::output::StreamKind;
use crate::supervisor::reaper::Ended;
use crate::supervisor::records::Owner;
use crate::supervisor::spec::{PtySize, Spec};

const IMAGE: &str = "tend-test/busybox:latest";

/// Whether the engine is there to test against.
fn have_engine() -> bool {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => true,
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "docker missing: DOCKER_HOST unset (CI=true: the Docker tests must run)"
            );
            println!("SKIP: docker missing: DOCKER_HOST unset");
            false
        }
    }
}

/// A container of the test image, removed when dropped (even by a failing test).
struct Container {
    engine: Engine,
    id: String,
    env: DockerEnv,
    /// Its FIFO directory's parent (a daemon's state directory).
    _state: tempfile::TempDir,
}

/// The way a process's output and input go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// FIFOs in a directory mounted into the container (what a local engine gets).
    Fifo,
    /// The engine's attach stream (a remote engine, a terminal, the fallback).
    Stream,
}

const BOTH: [Path; 2] = [Path::Fifo, Path::Stream];

impl Container {
    async fn new(name: &str) -> Container {
        Container::with(name, settings()).await
    }

    async fn on(name: &str, path: Path) -> Container {
        Container::with_path(name, settings(), path).await
    }

    async fn with(name: &str, settings: DockerSettings) -> Container {
        Container::with_path(name, settings, Path::Fifo).await
    }

    async fn with_path(name: &str, settings: DockerSettings, path: Path) -> Container {
        let engine = Engine::connect().await.expect("connect");
        engine
            .ensure_image(&settings, &|_| {})
            .await
            .expect("the test image (scripts/docker-up builds it)");
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("docker").join(name);
        let id = engine
            .create_container(&format!("test-{name}"), &settings, Some(&dir))
            .await
            .expect("create container");
        let fifo = (path == Path::Fifo).then_some(dir);
        let env = DockerEnv::new(engine.clone(), id.clone(), &settings, fifo);
        Container {
            engine,
            id,
            env,
            _state: state,
        }
    }
}

type Chunks = futures_util::stream::BoxStream<'static, (StreamKind, Bytes)>;

/// A process's output as one stream of chunks (host pipes read as they come), its stdin, and
/// its terminal.
fn streams(
    io: Io,
) -> (
    Chunks,
    Option<std::os::fd::OwnedFd>,
    Option<Box<dyn Terminal>>,
) {
    match io {
        Io::Stream {
            output,
            stdin,
            terminal,
        } => (output, stdin, terminal),
        Io::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            let read = |fd, kind| {
                let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd).unwrap();
                tokio_util::io::ReaderStream::with_capacity(rx, 256 * 1024)
                    .map(move |b| (kind, b.expect("read")))
            };
            let output = futures_util::stream::select(
                read(stdout, StreamKind::Stdout),
                read(stderr, StreamKind::Stderr),
            );
            (output.boxed(), stdin, None)
        }
        Io::Pty { .. } => panic!("a container process has no host PTY"),
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let id = self.id.clone();
        // Drop cannot await, and the test's runtime may be unwinding: a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(engine) = Engine::connect().await {
                    let _ = engine.remove_container(&id).await;
                }
            });
        })
        .join();
    }
}

fn settings() -> DockerSettings {
    DockerSettings {
        image: IMAGE.into(),
        ..DockerSettings::default()
    }
}

fn spec(argv: &[&str]) -> Spec {
    Spec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Spec::default()
    }
}

/// All a process wrote, by stream, and how it ended.
#[derive(Debug, Default)]
struct Ran {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    pty: Vec<u8>,
}

async fn collect(launched: Launched) -> (Ran, Ended) {
    let (mut output, _, _) = streams(launched.io);
    let mut ran = Ran::default();
    while let Some((kind, bytes)) = output.next().await {
        match kind {
            StreamKind::Stdout => ran.stdout.extend_from_slice(&bytes),
            StreamKind::Stderr => ran.stderr.extend_from_slice(&bytes),
            StreamKind::Pty => ran.pty.extend_from_slice(&bytes),
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), launched.exit)
        .await
        .expect("the exit is seen");
    (ran, ended)
}

async fn run(env: &DockerEnv, spec: Spec) -> (Ran, Ended) {
    let launched = env.launch("p-1", &spec).await.expect("launch");
    collect(launched).await
}

#[tokio::test]
async fn a_missing_engine_is_a_failed_precondition_naming_the_socket() {
    let path = "/tmp/tend-no-such-dir/docker.sock";
    let err = Engine::connect_to(&format!("unix://{path}"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    let m = err.to_string();
    assert!(m.contains(path) && m.contains("start dockerd"), "{m}");
    assert!(!m.contains("chmod"), "{m}");
    // A socket file nobody listens on.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let err = Engine::connect_to(&format!("unix://{}", sock.display()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
    let err = Engine::connect_to("ssh://host").await.unwrap_err();
    assert!(err.to_string().contains("unix:// or tcp://"), "{err}");
}

#[tokio::test]
async fn connects_and_reports_versions() {
    if !have_engine() {
        return;
    }
    let engine = Engine::connect().await.expect("connect");
    let (version, api) = engine.version().await;
    assert!(
        !version.is_empty() && api.starts_with("1."),
        "{version} {api}"
    );
    println!("engine {version}, API {api}");
}

#[tokio::test]
async fn a_missing_image_without_a_tarball_fails_naming_it_and_the_way_out() {
    if !have_engine() {
        return;
    }
    let engine = Engine::connect().await.unwrap();
    let settings = DockerSettings {
        image: "tend-test/no-such-image:v0".into(),
        ..DockerSettings::default()
    };
    let events = Mutex::new(Vec::new());
    let started = Instant::now();
    let err = engine
        .ensure_image(&settings, &|p| events.lock().unwrap().push(p))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound(_) | Error::FailedPrecondition(_)),
        "{err}"
    );
    let m = err.to_string();
    assert!(m.contains("tend-test/no-such-image"), "{m}");
    assert!(m.contains("docker.image_tarball"), "{m}");
    println!("{:?} after {:?}: {m}", err.code(), started.elapsed());
    assert_eq!(events.lock().unwrap()[0].phase, "pull");
}

/// A root filesystem tarball (busybox and its applets), as `docker import` takes.
fn rootfs_tarball(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    for applet in ["sh", "echo", "cat", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tarball = dir.join("rootfs.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    tarball
}

#[tokio::test]
async fn an_image_comes_from_a_tarball_offline_and_is_then_present() {
    if !have_engine() {
        return;
    }
    let engine = Engine::connect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("t{}", std::process::id());
    let remove = |image: String| {
        let engine = engine.clone();
        async move {
            let _ = engine
                .docker
                .remove_image(
                    &image,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
        }
    };

    // A root filesystem: imported as one layer and tagged.
    let imported = format!("tend-test/imported:{tag}");
    let settings = DockerSettings {
        image: imported.clone(),
        image_tarball: Some(rootfs_tarball(dir.path())),
        ..DockerSettings::default()
    };
    settings.validate().unwrap();
    let events: Mutex<Vec<Progress>> = Mutex::new(Vec::new());
    engine
        .ensure_image(&settings, &|p| events.lock().unwrap().push(p))
        .await
        .expect("import");
    let total = std::fs::metadata(settings.image_tarball.as_ref().unwrap())
        .unwrap()
        .len();
    {
        let events = events.lock().unwrap();
        let last_import = events.iter().rev().find(|p| p.phase == "import").unwrap();
        assert_eq!(
            (last_import.done, last_import.total, last_import.unit),
            (total, total, "bytes"),
            "{events:?}"
        );
        assert_eq!(events.last().unwrap().phase, "image", "{events:?}");
    }
    // Present now: one "image" event, the tarball untouched.
    let again = Mutex::new(Vec::new());
    engine
        .ensure_image(&settings, &|p| again.lock().unwrap().push(p))
        .await
        .unwrap();
    let again = again.into_inner().unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].phase, "image");
    // It runs.
    let c = Container::with("imported", settings.clone()).await;
    let (ran, ended) = run(&c.env, spec(&["echo", "from the tarball"])).await;
    assert_eq!(ended, Ended::Code(0));
    assert_eq!(ran.stdout, b"from the tarball\n");
    drop(c);
    remove(imported).await;

    // `docker save` output of the test image, loaded and tagged with another name.
    let saved = dir.path().join("saved.tar");
    let mut file = tokio::fs::File::create(&saved).await.unwrap();
    let mut export = engine.docker.export_image(IMAGE);
    while let Some(chunk) = export.next().await {
        file.write_all(&chunk.unwrap()).await.unwrap();
    }
    file.flush().await.unwrap();
    let loaded = format!("tend-test/loaded:{tag}");
    let settings = DockerSettings {
        image: loaded.clone(),
        image_tarball: Some(saved),
        ..DockerSettings::default()
    };
    engine
        .ensure_image(&settings, &|_| {})
        .await
        .expect("load a saved image");
    let c = Container::with("loaded", settings).await;
    let (ran, ended) = run(&c.env, spec(&["echo", "loaded"])).await;
    assert_eq!(
        (ended, ran.stdout.as_slice()),
        (Ended::Code(0), &b"loaded\n"[..])
    );
    drop(c);
    remove(loaded).await;
}

#[tokio::test]
async fn stdout_and_stderr_come_apart_with_the_exit_code() {
    if !have_engine() {
        return;
    }
    for path in BOTH {
        let c = Container::on("apart", path).await;
        let (ran, ended) = run(
            &c.env,
            spec(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
        )
        .await;
        assert_eq!(ended, Ended::Code(3));
        assert_eq!(ran.stdout, b"out\n");
        assert_eq!(ran.stderr, b"err\n");
        assert!(ran.pty.is_empty());

        // Early output on both streams, beside the wrapper's first line.
        let (ran, _) = run(&c.env, spec(&["sh", "-c", "echo e >&2; echo o"])).await;
        assert_eq!(
            (ran.stdout.as_slice(), ran.stderr.as_slice()),
            (&b"o\n"[..], &b"e\n"[..])
        );

        // A shell's own 127 comes through as a code; the variables are the exec's.
        let (ran, ended) = run(&c.env, spec(&["sh", "-c", "nope-not-here"])).await;
        assert_eq!(ended, Ended::Code(127), "{ran:?}");
        let mut s = spec(&["sh", "-c", "echo $TERM $PAGER $FROM_CLIENT $PATH"]);
        s.env.insert("FROM_CLIENT".into(), "yes".into());
        let (ran, _) = run(&c.env, s).await;
        assert_eq!(ran.stdout, b"dumb cat yes /bin\n");
        // clear_env: nothing of the container's, only the non-interactive set and the client's.
        let mut s = spec(&["/bin/env"]);
        s.clear_env = true;
        s.env.insert("ONLY".into(), "this".into());
        let (ran, ended) = run(&c.env, s).await;
        assert_eq!(ended, Ended::Code(0));
        let text = String::from_utf8(ran.stdout).unwrap();
        assert!(
            text.contains("ONLY=this") && text.contains("TERM=dumb"),
            "{text}"
        );
        for gone in ["PATH=", "SHLVL=", "PWD=", "HOSTNAME="] {
            assert!(!text.contains(gone), "{text}");
        }
        // Otherwise the container's variables, and none the wrapper's shell made.
        let (ran, _) = run(&c.env, spec(&["env"])).await;
        let text = String::from_utf8(ran.stdout).unwrap();
        assert!(
            text.contains("PATH=/bin\n") && text.contains("HOSTNAME="),
            "{text}"
        );
        assert!(!text.contains("SHLVL=") && !text.contains("PWD="), "{text}");
    }
}

#[tokio::test]
async fn a_missing_program_fails_the_launch_as_a_shell_would() {
    if !have_engine() {
        return;
    }
    for path in BOTH {
        let c = Container::on("missing", path).await;
        let err = c
            .env
            .launch("p", &spec(&["no-such-program", "x"]))
            .await
            .err()
            .expect("fails");
        assert!(
            matches!(
                &err,
                Error::Exec {
                    not_found: true,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.shell_exit_code(), Some(127));
        assert!(err.to_string().contains("/bin"), "{err}");
        let err = c
            .env
            .launch("p", &spec(&["/etc/passwd"]))
            .await
            .err()
            .expect("fails");
        assert!(
            matches!(
                &err,
                Error::Exec {
                    not_found: false,
                    ..
                }
            ),
            "{err}"
        );
        let err = c
            .env
            .launch("p", &spec(&["/no/such"]))
            .await
            .err()
            .expect("fails");
        assert!(
            matches!(
                &err,
                Error::Exec {
                    not_found: true,
                    ..
                }
            ),
            "{err}"
        );
        let mut s = spec(&["true"]);
        s.cwd = Some("/no/such/dir".into());
        let err = c.env.launch("p", &s).await.err().expect("fails");
        assert!(
            err.to_string().starts_with("spec.cwd: ") && err.to_string().contains("/no/such/dir"),
            "{err}"
        );
        let mut s = spec(&["pwd"]);
        s.cwd = Some("/tmp".into());
        let (ran, _) = run(&c.env, s).await;
        assert_eq!(ran.stdout, b"/tmp\n");
    }
}

#[tokio::test]
async fn twenty_megabytes_arrive_byte_exact() {
    if !have_engine() {
        return;
    }
    for path in BOTH {
        let c = Container::on("bulk", path).await;
        let started = Instant::now();
        let launched = c
            .env
            .launch("p", &spec(&["head", "-c", "20000000", "/dev/zero"]))
            .await
            .unwrap();
        let (mut output, _, _) = streams(launched.io);
        let mut n = 0usize;
        while let Some((kind, bytes)) = output.next().await {
            assert_eq!(kind, StreamKind::Stdout);
            assert!(bytes.iter().all(|&b| b == 0));
            n += bytes.len();
        }
        assert_eq!(n, 20_000_000);
        assert_eq!(launched.exit.await, Ended::Code(0));
        println!("20 MB in {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn a_terminal_has_its_size_and_its_own_stream() {
    if !have_engine() {
        return;
    }
    let c = Container::new("pty").await;
    let mut s = spec(&["stty", "size"]);
    s.pty = Some(PtySize {
        rows: 40,
        cols: 100,
    });
    let (ran, ended) = run(&c.env, s).await;
    assert_eq!(ended, Ended::Code(0));
    assert!(ran.stdout.is_empty() && ran.stderr.is_empty());
    assert_eq!(ran.pty, b"40 100\r\n");

    // Resized through the environment, while it runs: the program sees SIGWINCH's new size.
    let mut s = spec(&[
        "sh",
        "-c",
        "trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 1; done",
    ]);
    s.pty = Some(PtySize { rows: 10, cols: 20 });
    let launched = c.env.launch("p", &s).await.unwrap();
    let (mut output, _, terminal) = streams(launched.io);
    let mut terminal = terminal.expect("a terminal");
    let mut seen = Vec::new();
    while !seen.ends_with(b"ready\r\n") {
        let (_, b) = output.next().await.unwrap();
        seen.extend_from_slice(&b);
    }
    terminal.resize(PtySize { rows: 33, cols: 77 }).unwrap();
    while let Some((_, b)) = output.next().await {
        seen.extend_from_slice(&b);
    }
    assert!(
        seen.ends_with(b"33 77\r\n"),
        "{:?}",
        String::from_utf8_lossy(&seen)
    );
    assert_eq!(launched.exit.await, Ended::Code(0));

    // Every byte, even a read that starts with 0, 1 or 2 (which bollard's decoder takes for a
    // stream header); and the end of input does not end the output.
    let mut s = spec(&[
        "sh",
        "-c",
        r"printf 'a\n'; sleep 1; printf '\001\002\000xyz\n'; sleep 1; printf 'end\n'",
    ]);
    s.pty = Some(PtySize {
        rows: 40,
        cols: 100,
    });
    let launched = c.env.launch("p", &s).await.unwrap();
    let (output, stdin, _) = streams(launched.io);
    drop(stdin.expect("a terminal has input"));
    let got: Vec<u8> = output
        .flat_map(|(kind, b)| {
            assert_eq!(kind, StreamKind::Pty);
            futures_util::stream::iter(b.to_vec())
        })
        .collect()
        .await;
    assert_eq!(got, b"a\r\n\x01\x02\x00xyz\r\nend\r\n");
    assert_eq!(launched.exit.await, Ended::Code(0));

    // Keys typed reach the program, echoed by the terminal.
    let mut s = spec(&["sh", "-c", "read x; echo got $x"]);
    s.pty = Some(PtySize {
        rows: 40,
        cols: 100,
    });
    let launched = c.env.launch("p", &s).await.unwrap();
    let (output, stdin, _) = streams(launched.io);
    let mut stdin = std::fs::File::from(stdin.unwrap());
    std::io::Write::write_all(&mut stdin, b"hi\n").unwrap();
    let got: Vec<u8> = output
        .flat_map(|(_, b)| futures_util::stream::iter(b.to_vec()))
        .collect()
        .await;
    assert_eq!(got, b"hi\r\ngot hi\r\n");
    assert_eq!(launched.exit.await, Ended::Code(0));
    drop(stdin);
}

#[tokio::test]
async fn stdin_reaches_cat_and_its_end_is_end_of_file() {
    if !have_engine() {
        return;
    }
    for path in BOTH {
        let c = Container::on("stdin", path).await;
        let mut s = spec(&["cat"]);
        s.stdin = true;
        let launched = c.env.launch("p", &s).await.unwrap();
        let (output, stdin, _) = streams(launched.io);
        let stdin = stdin.expect("stdin asked for");
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::from(stdin);
            for i in 0..1000 {
                writeln!(f, "line {i}").unwrap();
            }
            // Dropped: end of input.
        });
        let got: Vec<(StreamKind, Bytes)> = output.collect().await;
        writer.join().unwrap();
        let text: Vec<u8> = got.iter().flat_map(|(_, b)| b.to_vec()).collect();
        let want: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8(text).unwrap(), want);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), launched.exit)
                .await
                .unwrap(),
            Ended::Code(0)
        );
        // Without stdin asked for, none is given and the program reads end of file.
        let (ran, ended) = run(&c.env, spec(&["cat"])).await;
        assert_eq!((ended, ran.stdout.len()), (Ended::Code(0), 0));
    }
}

/// The process groups of the container's `sleep 1000`s.
async fn sleeps(env: &DockerEnv) -> Vec<u32> {
    let (ran, _) = run(env, spec(&["ps", "-o", "pid,pgid,args"])).await;
    let text = String::from_utf8(ran.stdout).unwrap();
    text.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields[2..] == ["sleep", "1000"]).then(|| fields[1].parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_signal_reaches_the_whole_group_and_is_reported_as_the_death() {
    if !have_engine() {
        return;
    }
    for path in BOTH {
        let c = Container::on("signal", path).await;
        let launched = c
            .env
            .launch("p", &spec(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]))
            .await
            .unwrap();
        let pid = launched.pid;
        let group = launched.group.clone();
        assert_eq!(sleeps(&c.env).await, [pid, pid]);
        assert!(group.alive().await);
        group.signal(libc::SIGTERM, false).await.expect("delivered");
        let (_, ended) = collect(launched).await;
        assert_eq!(
            ended,
            Ended::Signal {
                signal: libc::SIGTERM,
                core_dumped: false
            }
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while group.alive().await {
            assert!(Instant::now() < deadline, "the group outlived SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(sleeps(&c.env).await, Vec::<u32>::new());
        assert!(matches!(
            group.signal(libc::SIGTERM, false).await,
            Err(crate::supervisor::environment::SignalError::Gone)
        ));

        // An exit with 143 that tend did not cause is a code.
        let (_, ended) = run(&c.env, spec(&["sh", "-c", "exit 143"])).await;
        assert_eq!(ended, Ended::Code(143));

        // kill: a TERM-ignoring group goes, leader and child.
        let launched = c
            .env
            .launch(
                "p",
                &spec(&["sh", "-c", "trap '' TERM; sleep 1000 & wait; wait"]),
            )
            .await
            .unwrap();
        let group = launched.group.clone();
        group.kill().await;
        assert!(!group.alive().await);
        let (_, ended) = collect(launched).await;
        assert_eq!(
            ended,
            Ended::Signal {
                signal: libc::SIGKILL,
                core_dumped: false
            }
        );
        assert_eq!(sleeps(&c.env).await, Vec::<u32>::new());

        // leader_only: the child lives on.
        let launched = c
            .env
            .launch("p", &spec(&["sh", "-c", "sleep 1000 & wait"]))
            .await
            .unwrap();
        let group = launched.group.clone();
        group.signal(libc::SIGTERM, true).await.unwrap();
        // The child holds the output open (a FIFO for as long as it lives, as a host pipe
        // would be): the exit comes first.
        let ended = tokio::time::timeout(Duration::from_secs(10), launched.exit)
            .await
            .expect("the exit is seen while the child holds the output");
        assert_eq!(
            ended,
            Ended::Signal {
                signal: libc::SIGTERM,
                core_dumped: false
            }
        );
        assert!(group.alive().await, "the child is left");
        assert_eq!(sleeps(&c.env).await.len(), 1);
        group.kill().await;
        assert_eq!(sleeps(&c.env).await, Vec::<u32>::new());
    }
}

#[tokio::test]
async fn a_leader_that_exits_before_its_child_is_seen_to_exit() {
    if !have_engine() {
        return;
    }
    for path in BOTH {
        let c = Container::on("leader", path).await;
        let launched = c
            .env
            .launch("p", &spec(&["sh", "-c", "sleep 30 & echo started"]))
            .await
            .unwrap();
        let group = launched.group.clone();
        let (output, _, _) = streams(launched.io);
        // The output is held open by the child; the exit is seen by asking the engine.
        let started = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(5), launched.exit)
            .await
            .expect("exit seen while the child holds the output");
        assert_eq!(ended, Ended::Code(0));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(group.alive().await, "the child still runs");
        group.kill().await;
        drop(output);
    }
}

#[tokio::test]
async fn one_launch_of_true_end_to_end() {
    if !have_engine() {
        return;
    }
    let c = Container::new("timing").await;
    let docker = &c.engine.docker;
    let median = |mut t: Vec<Duration>| {
        t.sort();
        (t[0], t[t.len() / 2], t[t.len() - 1])
    };
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let started = Instant::now();
        let (_, ended) = run(&c.env, spec(&["/bin/true"])).await;
        ours.push(started.elapsed());
        assert_eq!(ended, Ended::Code(0));
        // The engine's own cost: a bare exec of /bin/true, its output to the end, its code.
        let started = Instant::now();
        let config = bollard::models::ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(vec!["/bin/true".into()]),
            ..Default::default()
        };
        let id = docker.create_exec(&c.id, config).await.unwrap().id;
        let bollard::exec::StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&id, None).await.unwrap()
        else {
            panic!()
        };
        while output.next().await.is_some() {}
        let code = docker.inspect_exec(&id).await.unwrap().exit_code;
        bare.push(started.elapsed());
        assert_eq!(code, Some(0));
    }
    let (a, b, c) = median(ours);
    let (x, y, z) = median(bare);
    println!("launch of /bin/true to its exit code: min {a:?}, median {b:?}, max {c:?}");
    println!("a bare exec of /bin/true:             min {x:?}, median {y:?}, max {z:?}");
}

#[tokio::test]
async fn containers_carry_settings_and_labels_and_stop() {
    if !have_engine() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "from the host\n").unwrap();
    let settings = DockerSettings {
        env: BTreeMap::from([("SETTING".to_string(), "on".to_string())]),
        workdir: Some("/tmp".into()),
        user: Some("65534".into()),
        mounts: vec![Mount {
            host_path: dir.path().to_path_buf(),
            container_path: "/host".into(),
            read_only: true,
        }],
        ports: vec![PortMapping {
            host_ip: "127.0.0.1".into(),
            host_port: 18999,
            container_port: 8080,
            protocol: "tcp".into(),
        }],
        ..settings()
    };
    let c = Container::with("settings", settings).await;
    let (ran, ended) = run(
        &c.env,
        spec(&[
            "sh",
            "-c",
            "echo $SETTING $(pwd) $(id -u); cat /host/f; touch /host/g",
        ]),
    )
    .await;
    assert_eq!(ended, Ended::Code(1), "read-only: touch fails");
    assert_eq!(ran.stdout, b"on /tmp 65534\nfrom the host\n");
    let info = c
        .engine
        .docker
        .inspect_container(&c.id, None)
        .await
        .unwrap();
    let labels = info.config.unwrap().labels.unwrap();
    assert_eq!(labels[LABEL_ENVIRONMENT], "test-settings");
    assert_eq!(labels[LABEL_OWNER], Owner::current().unwrap().label());
    assert!(info.name.unwrap().starts_with("/tend-test-settings-"));
    assert!(c.engine.container_running(&c.id).await);
    let started = Instant::now();
    c.engine
        .stop_container(&c.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the idle command stops on SIGTERM"
    );
    assert!(!c.engine.container_running(&c.id).await);
    let err = c.env.launch("p", &spec(&["true"])).await.err().unwrap();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    c.engine.remove_container(&c.id).await.unwrap();
    c.engine.remove_container(&c.id).await.unwrap();
    assert!(!c.engine.container_running(&c.id).await);
}

#[tokio::test]
async fn the_sweep_removes_only_containers_of_dead_owners() {
    if !have_engine() {
        return;
    }
    let engine = Engine::connect().await.unwrap();
    let me = Owner::current().unwrap();
    let dead = Owner {
        pid: 1,
        start_ticks: u64::MAX,
        ..me.clone()
    };
    let make = |labels: HashMap<String, String>| {
        let engine = engine.clone();
        async move {
            let body = bollard::models::ContainerCreateBody {
                image: Some(IMAGE.into()),
                cmd: Some(vec!["true".into()]),
                labels: Some(labels),
                ..Default::default()
            };
            engine
                .docker
                .create_container(
                    None::<bollard::query_parameters::CreateContainerOptions>,
                    body,
                )
                .await
                .unwrap()
                .id
        }
    };
    let label = |owner: &str| {
        HashMap::from([
            (LABEL_OWNER.to_string(), owner.to_string()),
            (LABEL_ENVIRONMENT.to_string(), "swept-env".to_string()),
        ])
    };
    let dead_one = make(label(&dead.label())).await;
    let live_one = make(label(&me.label())).await;
    let unlabelled = make(HashMap::new()).await;
    let garbled = make(label("not-an-owner")).await;

    let dry = engine.sweep(true).await.unwrap();
    let found = dry.iter().find(|s| s.id == dead_one).expect("reported");
    assert!(!found.removed && found.environment_id == "swept-env" && found.error.is_empty());
    let swept = engine.sweep(false).await.unwrap();
    let found = swept.iter().find(|s| s.id == dead_one).expect("swept");
    assert!(found.removed, "{found:?}");
    assert_eq!(found.owner, dead.label());
    assert!(!swept.iter().any(|s| s.id == live_one || s.id == unlabelled));
    let bad = swept.iter().find(|s| s.id == garbled).expect("reported");
    assert!(!bad.removed && bad.error.contains("left alone"), "{bad:?}");
    // Idempotent: nothing more to remove.
    let again = engine.sweep(false).await.unwrap();
    assert!(!again.iter().any(|s| s.removed && s.id == dead_one));
    let exists = |id: String| {
        let engine = engine.clone();
        async move { engine.docker.inspect_container(&id, None).await.is_ok() }
    };
    assert!(!exists(dead_one).await);
    assert!(exists(live_one.clone()).await);
    assert!(exists(unlabelled.clone()).await);
    assert!(exists(garbled.clone()).await);
    for id in [live_one, unlabelled, garbled] {
        engine.remove_container(&id).await.unwrap();
    }
}

#[tokio::test]
async fn an_images_entrypoint_does_not_wrap_the_container() {
    if !have_engine() {
        return;
    }
    let engine = Engine::connect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(dir.path());
    let image = format!("tend-test/entrypoint:t{}", std::process::id());
    let body = tokio_util::io::ReaderStream::new(tokio::fs::File::open(&tarball).await.unwrap());
    let options = bollard::query_parameters::CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some("tend-test/entrypoint".into()),
        tag: Some(format!("t{}", std::process::id())),
        changes: vec![r#"ENTRYPOINT ["/bin/false"]"#.into()],
        ..Default::default()
    };
    let mut events =
        engine
            .docker
            .create_image(Some(options), Some(bollard::body_try_stream(body)), None);
    while let Some(e) = events.next().await {
        e.unwrap();
    }
    let settings = DockerSettings {
        image: image.clone(),
        ..DockerSettings::default()
    };
    let c = Container::with("entrypoint", settings).await;
    assert!(c.engine.container_running(&c.id).await);
    let (ran, ended) = run(&c.env, spec(&["echo", "ran"])).await;
    assert_eq!(
        (ended, ran.stdout.as_slice()),
        (Ended::Code(0), &b"ran\n"[..])
    );
    drop(c);
    let _ = engine
        .docker
        .remove_image(
            &image,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}

#[tokio::test]
async fn an_unread_output_holds_the_process_back() {
    if !have_engine() {
        return;
    }
    for path in BOTH {
        let c = Container::on("backpressure", path).await;
        let launched = c
            .env
            .launch("p", &spec(&["head", "-c", "50000000", "/dev/zero"]))
            .await
            .unwrap();
        // Unread for a while: the engine does not buffer 50 MB for us, so head cannot finish.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            launched.group.alive().await,
            "head finished with nobody reading"
        );
        let (output, _, _) = streams(launched.io);
        let n: usize = output
            .map(|(_, b)| b.len())
            .fold(0, |a, b| async move { a + b })
            .await;
        assert_eq!(n, 50_000_000);
        assert_eq!(launched.exit.await, Ended::Code(0));
    }
}

#[tokio::test]
async fn a_local_engine_gives_host_pipes_through_fifos_for_any_user() {
    if !have_engine() {
        return;
    }
    // A user the image does not name, as a numeric uid: the FIFOs must be open to it.
    let settings = DockerSettings {
        user: Some("1234".into()),
        ..settings()
    };
    let c = Container::with_path("fifo", settings.clone(), Path::Fifo).await;
    let dir = c._state.path().join("docker").join("fifo");
    let mut s = spec(&["sh", "-c", "id -u; cat; echo done >&2"]);
    s.stdin = true;
    let launched = c.env.launch("p", &s).await.unwrap();
    let Io::Pipes {
        stdin: Some(stdin),
        stdout,
        stderr,
    } = launched.io
    else {
        panic!("host pipes with stdin");
    };
    // Opened by both sides, the names are gone.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let mut stdin = std::fs::File::from(stdin);
    std::io::Write::write_all(&mut stdin, b"typed\n").unwrap();
    drop(stdin);
    let (output, _, _) = streams(Io::Pipes {
        stdin: None,
        stdout,
        stderr,
    });
    let got: Vec<(StreamKind, Bytes)> = output.collect().await;
    let text = |k| -> Vec<u8> {
        got.iter()
            .filter(|(kind, _)| *kind == k)
            .flat_map(|(_, b)| b.to_vec())
            .collect()
    };
    assert_eq!(text(StreamKind::Stdout), b"1234\ntyped\n");
    assert_eq!(text(StreamKind::Stderr), b"done\n");
    assert_eq!(launched.exit.await, Ended::Code(0));

    // The exit is seen when the output hangs up, not at the next poll of the engine.
    let started = Instant::now();
    let (_, ended) = run(&c.env, spec(&["sleep", "1"])).await;
    assert_eq!(ended, Ended::Code(0));
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );

    // A process that closed its stdin makes writes to it fail, as a host pipe's would.
    let mut s = spec(&["sh", "-c", "exec <&-; sleep 1"]);
    s.stdin = true;
    let launched = c.env.launch("p", &s).await.unwrap();
    let Io::Pipes {
        stdin: Some(stdin), ..
    } = launched.io
    else {
        panic!("host pipes with stdin");
    };
    let mut stdin = std::fs::File::from(stdin);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::io::Write::write(&mut stdin, b"x") {
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => panic!("{e}"),
            r => assert!(Instant::now() < deadline, "{r:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(launched.exit.await, Ended::Code(0));

    // A terminal goes through the engine.
    let mut s = spec(&["true"]);
    s.pty = Some(PtySize { rows: 5, cols: 5 });
    let launched = c.env.launch("p", &s).await.unwrap();
    assert!(matches!(launched.io, Io::Stream { .. }));
    assert_eq!(launched.exit.await, Ended::Code(0));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

    // Without the FIFO directory, all goes through the engine.
    let c = Container::with_path("nofifo", settings, Path::Stream).await;
    let launched = c.env.launch("p", &spec(&["true"])).await.unwrap();
    assert!(matches!(launched.io, Io::Stream { .. }));
    assert_eq!(launched.exit.await, Ended::Code(0));
}
