//! RunnerService against the real engines: a process in a Docker container or a Nix shell has
//! the semantics it has on the host (streams apart, exit codes, signals to the group, lossless
//! output, PTY and resize, stdin), agents run there too, and a dead daemon's containers are
//! swept by the next one.
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tend::cli::connect::{self, Addr, ProcessClient, RunnerClient};
use tend::pb;
use tokio_stream::StreamExt;

use crate::helper::*;

const IMAGE: &str = "tend-test/busybox:latest";

async fn runner(d: &Daemon) -> RunnerClient {
    connect::runner_client(&Addr::Unix(d.socket()), None)
        .await
        .expect("runner client")
}

/// Create an environment and initialise it; its id and the progress events.
async fn ready(
    r: &mut RunnerClient,
    req: pb::CreateEnvironmentRequest,
) -> (String, Vec<pb::InitEnvironmentResponse>) {
    let env = r
        .create_environment(req)
        .await
        .expect("create")
        .into_inner()
        .environment
        .unwrap();
    let events = init(r, &env.id).await.expect("init");
    let last = events.last().and_then(|e| e.environment.clone()).unwrap();
    assert_eq!(last.state, pb::EnvironmentState::Ready as i32, "{last:?}");
    (env.id, events)
}

async fn init(
    r: &mut RunnerClient,
    id: &str,
) -> Result<Vec<pb::InitEnvironmentResponse>, tonic::Status> {
    let mut stream = r
        .init_environment(pb::InitEnvironmentRequest {
            environment_id: id.into(),
        })
        .await?
        .into_inner();
    let mut events = Vec::new();
    while let Some(ev) = stream.next().await {
        events.push(ev?);
    }
    Ok(events)
}

fn docker_env() -> pb::CreateEnvironmentRequest {
    pb::CreateEnvironmentRequest {
        kind: pb::EnvironmentKind::Docker.into(),
        docker: Some(pb::DockerSettings {
            image: IMAGE.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A copy of the offline fixture flake, so that its cache key is this test's.
fn flake_copy(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nix-shell/flake.nix");
    let flake = dir.join("flake");
    std::fs::create_dir_all(&flake).unwrap();
    std::fs::copy(src, flake.join("flake.nix")).unwrap();
    flake
}

fn nix_env(flake: &Path) -> pb::CreateEnvironmentRequest {
    pb::CreateEnvironmentRequest {
        kind: pb::EnvironmentKind::Nix.into(),
        nix: Some(pb::NixSettings {
            flake_dir: flake.display().to_string(),
            dev_shell: String::new(),
        }),
        ..Default::default()
    }
}

fn in_env(mut spec: pb::ProcessSpec, env: &str) -> pb::ProcessSpec {
    spec.environment_id = env.into();
    spec
}

/// The exec semantics every environment must keep, checked in `env`.
async fn semantics(c: &mut ProcessClient, env: &str) {
    // Streams apart, and the exit code.
    let out = run(c, in_env(sh("echo out; echo err >&2; exit 3"), env)).await;
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.exit.as_ref().unwrap().exit_code, Some(3));

    // 20 MB through a lossless Run, byte-exact.
    let out = run(
        c,
        in_env(
            sh("i=0; while [ $i -lt 20 ]; do head -c 1000000 /dev/zero | tr '\\0' x; i=$((i+1)); done"),
            env,
        ),
    )
    .await;
    assert_eq!(out.stdout.len(), 20_000_000);
    assert!(out.gaps.is_empty());
    assert_eq!(
        Sha256::digest(&out.stdout),
        Sha256::digest(vec![b'x'; 20_000_000])
    );

    // stdin through cat, with end of input.
    let mut spec = in_env(spec(&["cat"]), env);
    spec.stdin = true;
    let id = start(c, spec).await;
    c.send_input(pb::SendInputRequest {
        id: id.clone(),
        data: b"hello through cat\n".to_vec(),
    })
    .await
    .expect("input");
    c.close_input(pb::CloseInputRequest { id: id.clone() })
        .await
        .expect("close input");
    let out = connect(c, &id, 0).await;
    assert_eq!(out.stdout, b"hello through cat\n");
    assert_eq!(out.exit.unwrap().exit_code, Some(0));

    // A PTY, its size, and a resize.
    let mut spec = in_env(sh("stty size; read line; stty size"), env);
    spec.pty = Some(pb::PtySize {
        rows: 40,
        cols: 100,
    });
    let id = start(c, spec).await;
    let mut pty = String::new();
    eventually_async(10, "the first stty size", || {
        let (mut c, id) = (c.clone(), id.clone());
        async move {
            let o = output_pty(&mut c, &id).await;
            o.contains("40 100").then_some(o)
        }
    })
    .await;
    c.resize(pb::ResizeRequest {
        id: id.clone(),
        size: Some(pb::PtySize {
            rows: 50,
            cols: 120,
        }),
    })
    .await
    .expect("resize");
    c.send_input(pb::SendInputRequest {
        id: id.clone(),
        data: b"\n".to_vec(),
    })
    .await
    .expect("enter");
    let out = connect(c, &id, 0).await;
    pty.push_str(&String::from_utf8_lossy(&out.pty));
    assert!(pty.contains("50 120"), "{pty:?}");

    // SIGTERM to the group reaches the background children too: nothing is left.
    let id = start(c, in_env(sh("sleep 7331 & sleep 7331 & wait"), env)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.signal(pb::SignalRequest {
        id: id.clone(),
        signal: "TERM".into(),
        leader_only: false,
    })
    .await
    .expect("signal");
    let out = connect(c, &id, 0).await;
    let exit = out.exit.unwrap();
    assert!(
        exit.signal == Some(libc::SIGTERM) || exit.exit_code == Some(128 + libc::SIGTERM),
        "{exit:?}"
    );
    let left = run(
        c,
        in_env(
            sh("for p in /proc/[0-9]*; do cat $p/cmdline 2>/dev/null | tr '\\0' ' '; echo; done | grep -c '^sleep 7331' || true"),
            env,
        ),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "0");
}

/// Poll an async check until it gives a value.
async fn eventually_async<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn output_pty(c: &mut ProcessClient, id: &str) -> String {
    let o = c
        .output(pb::OutputRequest {
            id: id.into(),
            ..Default::default()
        })
        .await
        .expect("output")
        .into_inner();
    o.output.iter().map(|s| s.text.clone()).collect()
}

#[tokio::test]
async fn native_is_listed_ready_and_unknown_environments_are_named() {
    let d = Daemon::start().await;
    let mut r = runner(&d).await;
    let list = r
        .list_environments(pb::ListEnvironmentsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.environments[0].id, "native");
    let err = r
        .get_environment(pb::GetEnvironmentRequest {
            environment_id: "e-99".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains("e-99"), "{err:?}");

    // A process in an unknown environment: NotFound, naming it.
    let mut c = d.c().await;
    let err = c
        .start(pb::StartRequest {
            spec: Some(in_env(spec(&["true"]), "nowhere")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains("nowhere"), "{err:?}");

    // A native environment is ready at once, and runs processes.
    let env = r
        .create_environment(pb::CreateEnvironmentRequest {
            name: "here".into(),
            kind: pb::EnvironmentKind::Native.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .environment
        .unwrap();
    assert_eq!(env.state, pb::EnvironmentState::Ready as i32);
    let out = run(&mut c, in_env(sh("echo hi"), "here")).await;
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(out.started.unwrap().environment_id, env.id);

    // Auto with nothing to go on is native, and says why.
    let env = r
        .create_environment(pb::CreateEnvironmentRequest {
            kind: pb::EnvironmentKind::Auto.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .environment
        .unwrap();
    assert_eq!(env.resolved_kind, pb::EnvironmentKind::Native as i32);
    assert!(env.kind_reason.contains("no docker.image"), "{env:?}");

    // Bad requests name the field.
    let err = r
        .create_environment(pb::CreateEnvironmentRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("kind"), "{err:?}");
    let err = r
        .stop_environment(pb::StopEnvironmentRequest {
            environment_id: "native".into(),
            grace_ms: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn find_free_port_never_returns_one_port_twice() {
    let d = Daemon::start().await;
    let mut r = runner(&d).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let p = r
            .find_free_port(pb::FindFreePortRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(p.address, "127.0.0.1");
        assert!(seen.insert(p.port), "port {} returned twice", p.port);
        // Free for the caller to bind.
        std::net::TcpListener::bind(("127.0.0.1", p.port as u16)).expect("bind the free port");
    }
    let err = r
        .find_free_port(pb::FindFreePortRequest {
            address: "not an address".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("address"), "{err:?}");
}

#[tokio::test]
async fn capabilities_name_docker_nix_and_tools() {
    let d = Daemon::start().await;
    let mut r = runner(&d).await;
    let caps = r
        .capabilities(pb::CapabilitiesRequest { refresh: true })
        .await
        .unwrap()
        .into_inner();
    assert!(caps.cpus >= 1);
    assert!(caps.memory_bytes > 0);
    assert!(caps.tools.iter().any(|t| t.name == "git"), "{caps:?}");
    let docker = caps.docker.unwrap();
    if require("docker", docker_missing()) {
        assert!(docker.available, "{docker:?}");
        assert!(!docker.version.is_empty());
    } else {
        assert!(!docker.reason.is_empty());
    }
    let nix = caps.nix.unwrap();
    if require("nix", nix_missing()) {
        assert!(nix.available, "{nix:?}");
        assert!(nix.version.contains('.'), "{nix:?}");
    }
}

#[tokio::test]
async fn docker_processes_behave_as_on_the_host() {
    if !require("docker", docker_missing()) {
        return;
    }
    let d = Daemon::start().await;
    let mut r = runner(&d).await;
    let (env, events) = ready(&mut r, docker_env()).await;
    assert!(events.iter().any(|e| e.phase == "create"), "{events:?}");
    let mut c = d.c().await;
    semantics(&mut c, &env).await;

    // An agent in the container.
    let mut a = d.agents().await;
    let info = a
        .spawn(pb::SpawnRequest {
            spec: Some(pb::AgentSpec {
                name: "boxed".into(),
                argv: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo in $(hostname); sleep 1000".into(),
                ],
                environment_id: env.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("spawn in docker")
        .into_inner()
        .agent
        .unwrap();
    let pid = info.process_id.clone();
    let p = c
        .get(pb::GetRequest { id: pid.clone() })
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap();
    assert_eq!(p.environment_id, env);

    // Stop: its processes and its container; the definition stays.
    let stopped = r
        .stop_environment(pb::StopEnvironmentRequest {
            environment_id: env.clone(),
            grace_ms: Some(1000),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stopped.stopped_processes >= 1);
    assert_eq!(
        stopped.environment.unwrap().state,
        pb::EnvironmentState::Stopped as i32
    );
    let err = c
        .start(pb::StartRequest {
            spec: Some(in_env(spec(&["true"]), &env)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("InitEnvironment"), "{err:?}");
    let removed = r
        .shutdown_environment(pb::ShutdownEnvironmentRequest {
            environment_id: env,
            grace_ms: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(removed.container_removed);
}

#[tokio::test]
async fn docker_processes_report_their_containers_usage() {
    if !require("docker", docker_missing()) {
        return;
    }
    let d = Daemon::start().await;
    let mut r = runner(&d).await;
    let (env, _) = ready(&mut r, docker_env()).await;
    let mut c = d.c().await;
    let mut busy = sh("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo done; sleep 100");
    busy.environment_id = env.clone();
    let busy = start(&mut c, busy).await;
    let mut idle = sh("sleep 100");
    idle.environment_id = env.clone();
    let idle = start(&mut c, idle).await;
    eventually_async(30, "the busy loop ends", || {
        let mut c = c.clone();
        let busy = busy.clone();
        async move {
            let out = c
                .output(pb::OutputRequest {
                    id: busy,
                    options: None,
                })
                .await
                .ok()?
                .into_inner();
            out.output
                .iter()
                .any(|o| o.text.contains("done"))
                .then_some(())
        }
    })
    .await;
    let usage = |id: String| {
        let mut c = c.clone();
        async move {
            c.get(pb::GetRequest { id })
                .await
                .unwrap()
                .into_inner()
                .process
                .unwrap()
        }
    };
    let (busy_info, idle_info) = (usage(busy.clone()).await, usage(idle.clone()).await);
    let u = busy_info.usage.expect("the container's usage");
    assert!(u.whole_environment, "{u:?}");
    assert!(
        u.processes >= 3,
        "the idle shell and two processes at least: {u:?}"
    );
    assert!(u.rss_bytes > 0, "{u:?}");
    assert!(
        u.user_cpu_ms + u.system_cpu_ms > 0,
        "a busy loop ran: {u:?}"
    );
    // Counted from the container's start, not from the younger process's: at most every CPU.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(u.cpu_percent <= 100.0 * cpus as f64 + 1.0, "{u:?}");
    assert!(busy_info.leader_usage.is_none() && busy_info.ports.is_empty());
    let v = idle_info.usage.expect("the same container's");
    assert!(
        v.whole_environment && v.processes == u.processes,
        "{v:?} {u:?}"
    );
    for id in [busy, idle] {
        c.remove(pb::RemoveRequest { id, force: true })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn readiness_probes_dial_the_containers_own_localhost() {
    if !require("docker", docker_missing()) {
        return;
    }
    let d = Daemon::start().await;
    let mut r = runner(&d).await;
    let (env, _) = ready(&mut r, docker_env()).await;
    let mut c = d.c().await;
    // busybox httpd on the container's 8080, which nothing publishes: only the container's
    // network reaches it, where the probe dials from.
    let mut spec = sh(
        "mkdir -p /tmp/www && echo up > /tmp/www/up.txt && sleep 0.3 && \
                       exec httpd -f -p 8080 -h /tmp/www",
    );
    spec.environment_id = env.clone();
    spec.readiness = Some(pb::ReadinessProbe {
        check: Some(pb::readiness_probe::Check::Http(pb::HttpProbe {
            port: 8080,
            host: String::new(),
            path: "/up.txt".into(),
        })),
        interval_ms: 50,
        ..Default::default()
    });
    let id = start(&mut c, spec).await;
    let waited = c
        .wait_ready(pb::WaitReadyRequest {
            id: id.clone(),
            timeout_ms: 20_000,
            output: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        waited.result,
        pb::WaitReadyResult::Ready as i32,
        "{waited:?}"
    );
    // A port nobody listens on in the container: refused there.
    let mut spec = sh("sleep 100");
    spec.environment_id = env.clone();
    spec.readiness = Some(pb::ReadinessProbe {
        check: Some(pb::readiness_probe::Check::Tcp(pb::TcpProbe {
            port: 9,
            host: String::new(),
        })),
        interval_ms: 50,
        ..Default::default()
    });
    let idle = start(&mut c, spec).await;
    let waited = c
        .wait_ready(pb::WaitReadyRequest {
            id: idle.clone(),
            timeout_ms: 500,
            output: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(waited.result, pb::WaitReadyResult::TimedOut as i32);
    let why = waited.process.unwrap().readiness.unwrap().last_error;
    assert!(
        why.contains("localhost:9") && why.contains("refused"),
        "{why}"
    );
    for id in [id, idle] {
        c.remove(pb::RemoveRequest { id, force: true })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn docker_auto_imports_and_clear_errors() {
    if !require("docker", docker_missing()) {
        return;
    }
    let d = Daemon::start().await;
    let mut r = runner(&d).await;
    // Auto with an image and an engine: docker, and why.
    let env = r
        .create_environment(pb::CreateEnvironmentRequest {
            kind: pb::EnvironmentKind::Auto.into(),
            ..docker_env()
        })
        .await
        .unwrap()
        .into_inner()
        .environment
        .unwrap();
    assert_eq!(env.resolved_kind, pb::EnvironmentKind::Docker as i32);
    assert!(env.kind_reason.contains("engine"), "{env:?}");

    // An image nobody has, and no registry: the error names it and the offline way.
    let env = r
        .create_environment(pb::CreateEnvironmentRequest {
            kind: pb::EnvironmentKind::Docker.into(),
            docker: Some(pb::DockerSettings {
                image: "tend-test/no-such-image:1".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .environment
        .unwrap();
    let err = init(&mut r, &env.id).await.unwrap_err();
    assert!(
        err.message().contains("tend-test/no-such-image:1"),
        "{err:?}"
    );
    assert!(err.message().contains("image_tarball"), "{err:?}");
    let failed = r
        .get_environment(pb::GetEnvironmentRequest {
            environment_id: env.id,
        })
        .await
        .unwrap()
        .into_inner()
        .environment
        .unwrap();
    assert_eq!(failed.state, pb::EnvironmentState::Failed as i32);

    // A local tarball is imported, with progress.
    if let Ok(tar) = std::env::var("TEND_TEST_BUSYBOX_TAR") {
        let tag = format!("tend-imported/busybox:{}", std::process::id());
        let (id, events) = ready(
            &mut r,
            pb::CreateEnvironmentRequest {
                kind: pb::EnvironmentKind::Docker.into(),
                docker: Some(pb::DockerSettings {
                    image: tag,
                    image_tarball: tar,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await;
        assert!(events.iter().any(|e| e.phase == "import"), "{events:?}");
        let mut c = d.c().await;
        let out = run(&mut c, in_env(sh("echo imported"), &id)).await;
        assert_eq!(out.stdout, b"imported\n");
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "TEND_TEST_BUSYBOX_TAR is required under CI=true; scripts/test sets it"
        );
    }
}

/// Whether a container exists, by the engine's own CLI (a user's view).
fn container_exists(id: &str) -> bool {
    std::process::Command::new("/usr/bin/docker")
        .args(["inspect", "--format", "{{.Id}}", id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn a_dead_daemons_containers_are_swept_by_the_next() {
    if !require("docker", docker_missing()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut first = Daemon::spawn_in(dir.path(), &[]).await;
    let mut r = runner(&first).await;
    let mut containers = Vec::new();
    for _ in 0..5 {
        let (id, _) = ready(&mut r, docker_env()).await;
        let env = r
            .get_environment(pb::GetEnvironmentRequest { environment_id: id })
            .await
            .unwrap()
            .into_inner()
            .environment
            .unwrap();
        assert!(container_exists(&env.container_id));
        containers.push(env.container_id);
    }
    // An unlabelled container of someone else's is never touched.
    let bystander = String::from_utf8(
        std::process::Command::new("/usr/bin/docker")
            .args(["run", "-d", IMAGE, "sleep", "1000"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    first.kill9();
    drop(first);
    let second = Daemon::spawn_in(dir.path(), &[]).await;
    eventually(10, "the dead daemon's containers are removed", || {
        containers.iter().all(|c| !container_exists(c))
    })
    .await;
    assert!(container_exists(&bystander));
    let mut r = runner(&second).await;
    let dry = r
        .reap(pb::ReapRequest { dry_run: true })
        .await
        .unwrap()
        .into_inner();
    assert!(dry.containers.iter().all(|c| c.id != bystander));
    let _ = std::process::Command::new("/usr/bin/docker")
        .args(["rm", "-f", &bystander])
        .output();
}

#[tokio::test]
async fn nix_processes_run_in_the_shell_and_behave_as_on_the_host() {
    if !require("nix", nix_missing()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let flake = flake_copy(tmp.path());
    let d = Daemon::start().await;
    let mut r = runner(&d).await;
    let (env, events) = ready(&mut r, nix_env(&flake)).await;
    assert!(events.iter().any(|e| e.phase == "evaluate"), "{events:?}");
    let mut c = d.c().await;
    let out = run(&mut c, in_env(sh("echo $TEND_NIX_TEST"), &env)).await;
    assert_eq!(out.stdout, b"1\n");
    // The host's PATH is still there after the shell's.
    let out = run(&mut c, in_env(sh("command -v git"), &env)).await;
    assert_eq!(out.exit.unwrap().exit_code, Some(0));
    semantics(&mut c, &env).await;

    // Evaluated once: a second environment on the same flake is a cache hit.
    let (_, events) = ready(&mut r, nix_env(&flake)).await;
    assert!(
        events.iter().all(|e| e.phase != "evaluate"),
        "cached: {events:?}"
    );

    // Auto on a flake with nix installed: nix.
    let env = r
        .create_environment(pb::CreateEnvironmentRequest {
            kind: pb::EnvironmentKind::Auto.into(),
            ..nix_env(&flake)
        })
        .await
        .unwrap()
        .into_inner()
        .environment
        .unwrap();
    assert_eq!(
        env.resolved_kind,
        pb::EnvironmentKind::Nix as i32,
        "{env:?}"
    );

    // A broken flake: the error names it and ends with nix's own words.
    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("flake.nix"), "{ outputs = { self }: {  ").unwrap();
    let env = r
        .create_environment(nix_env(&broken))
        .await
        .unwrap()
        .into_inner()
        .environment
        .unwrap();
    let err = init(&mut r, &env.id).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains(&broken.display().to_string()),
        "{err:?}"
    );
    assert!(err.message().contains("error"), "{err:?}");
}

#[tokio::test]
async fn a_stopping_daemon_removes_its_containers_and_a_stopped_environment_starts_again() {
    if !require("docker", docker_missing()) {
        return;
    }
    let mut d = Daemon::start().await;
    let mut r = runner(&d).await;
    let (env, _) = ready(&mut r, docker_env()).await;
    let first = r
        .get_environment(pb::GetEnvironmentRequest {
            environment_id: env.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .environment
        .unwrap()
        .container_id;
    r.stop_environment(pb::StopEnvironmentRequest {
        environment_id: env.clone(),
        grace_ms: Some(0),
    })
    .await
    .unwrap();
    // Init again: a fresh container, and processes run in it.
    let events = init(&mut r, &env).await.expect("init after stop");
    let second = events
        .last()
        .and_then(|e| e.environment.clone())
        .unwrap()
        .container_id;
    assert_ne!(first, second);
    assert!(!container_exists(&first));
    let mut c = d.c().await;
    let id = start(&mut c, in_env(sh("trap '' TERM; sleep 1000"), &env)).await;
    assert!(!id.is_empty());
    // A TERM-ignoring process holds the daemon in its grace period; then all of it goes.
    let status = d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        !container_exists(&second),
        "the daemon's container outlived it"
    );
}
