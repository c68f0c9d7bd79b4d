//! (g) Docker environments against the docker CLI, a user's alternative; (h) a process start in
//! a materialised Nix environment against the same start on the host.
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tend::cli::connect::{process_client, runner_client, Addr, ProcessClient, RunnerClient};
use tend::pb::{self, process_event::Kind};
use tokio_stream::StreamExt;

/// Iterations of the start benches, after warm-up.
const ITERS: usize = 40;
const WARMUP: usize = 5;
/// Bytes of the Docker throughput bench, and its runs.
const BIG: u64 = 100_000_000;
const BIG_RUNS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn clients(socket: &Path) -> (ProcessClient, RunnerClient) {
    let addr = Addr::Unix(socket.to_path_buf());
    (
        process_client(&addr, None).await.expect("process client"),
        runner_client(&addr, None).await.expect("runner client"),
    )
}

/// Create and initialise an environment; its id and container.
async fn ready(r: &mut RunnerClient, req: pb::CreateEnvironmentRequest) -> (String, String) {
    let id = r
        .create_environment(req)
        .await
        .expect("create")
        .into_inner()
        .environment
        .unwrap()
        .id;
    let mut events = r
        .init_environment(pb::InitEnvironmentRequest {
            environment_id: id.clone(),
        })
        .await
        .expect("init")
        .into_inner();
    let mut container = String::new();
    while let Some(ev) = events.next().await {
        if let Some(e) = ev.expect("init event").environment {
            container = e.container_id;
        }
    }
    (id, container)
}

/// Run argv in `env` through the Run RPC; the time to the exited event and the stdout bytes.
async fn run(c: &mut ProcessClient, env: &str, argv: &[&str]) -> (Duration, u64) {
    let t0 = Instant::now();
    let mut events = c
        .run(pb::RunRequest {
            spec: Some(pb::ProcessSpec {
                argv: argv.iter().map(|s| s.to_string()).collect(),
                environment_id: env.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("run")
        .into_inner();
    let mut bytes = 0;
    while let Some(ev) = events.next().await {
        match ev.expect("event").event.and_then(|e| e.kind) {
            Some(Kind::Data(d)) => bytes += d.data.len() as u64,
            Some(Kind::Gap(_)) => panic!("a lossless Run had a gap"),
            Some(Kind::Exited(x)) => {
                assert_eq!(x.exit_code, Some(0), "{argv:?} in {env}");
                break;
            }
            _ => {}
        }
    }
    (t0.elapsed(), bytes)
}

fn docker_cli(args: &[&str]) -> Duration {
    let t0 = Instant::now();
    let status = Command::new("/usr/bin/docker")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("docker CLI");
    assert!(status.success(), "docker {args:?}");
    t0.elapsed()
}

pub struct DockerResult {
    pub tend_true_us: f64,
    pub cli_true_us: f64,
    pub tend_mbps: f64,
    pub cli_mbps: f64,
}

/// (g): `None` when there is no engine (DOCKER_HOST unset).
pub async fn bench_docker(socket: &Path) -> Option<DockerResult> {
    std::env::var("DOCKER_HOST").ok()?;
    let (mut c, mut r) = clients(socket).await;
    let (env, container) = ready(
        &mut r,
        pb::CreateEnvironmentRequest {
            kind: pb::EnvironmentKind::Docker.into(),
            docker: Some(pb::DockerSettings {
                image: "tend-test/busybox:latest".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    for _ in 0..WARMUP {
        run(&mut c, &env, &["/bin/true"]).await;
        docker_cli(&["exec", &container, "/bin/true"]);
    }
    let (mut tend, mut cli) = (Vec::new(), Vec::new());
    for _ in 0..ITERS {
        tend.push(run(&mut c, &env, &["/bin/true"]).await.0.as_secs_f64() * 1e6);
        cli.push(docker_cli(&["exec", &container, "/bin/true"]).as_secs_f64() * 1e6);
    }
    let big = format!("head -c {BIG} /dev/zero > /tmp/big");
    run(&mut c, &env, &["sh", "-c", &big]).await;
    let (mut tend_bw, mut cli_bw) = (Vec::new(), Vec::new());
    for _ in 0..BIG_RUNS {
        let (t, bytes) = run(&mut c, &env, &["cat", "/tmp/big"]).await;
        assert_eq!(bytes, BIG);
        tend_bw.push(BIG as f64 / t.as_secs_f64() / 1e6);
        let t0 = Instant::now();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "/usr/bin/docker exec {container} cat /tmp/big | wc -c"
            ))
            .output()
            .expect("docker exec | wc");
        let t = t0.elapsed();
        let n: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert_eq!(n, BIG, "docker exec cat | wc -c");
        cli_bw.push(BIG as f64 / t.as_secs_f64() / 1e6);
    }
    let _ = r
        .shutdown_environment(pb::ShutdownEnvironmentRequest {
            environment_id: env,
            grace_ms: None,
        })
        .await;
    Some(DockerResult {
        tend_true_us: median(tend),
        cli_true_us: median(cli),
        tend_mbps: median(tend_bw),
        cli_mbps: median(cli_bw),
    })
}

pub fn report_docker(g: &Option<DockerResult>) {
    println!();
    println!("(g) Docker: Run in a Docker environment vs the docker CLI's exec");
    let Some(g) = g else {
        println!("    skipped: no engine (DOCKER_HOST unset; scripts/docker-up starts one)");
        return;
    };
    let ratio = g.tend_true_us / g.cli_true_us;
    println!(
        "    /bin/true: tend Run {:.0} µs, docker exec {:.0} µs: {ratio:.2}x (target <= 0.5x) {}",
        g.tend_true_us,
        g.cli_true_us,
        if ratio <= 0.5 { "PASS" } else { "MISS" }
    );
    let ratio = g.tend_mbps / g.cli_mbps;
    println!(
        "    100 MB cat: tend lossless Run {:.0} MB/s, docker exec | wc -c {:.0} MB/s: {ratio:.2}x \
         (target >= 2x) {}",
        g.tend_mbps,
        g.cli_mbps,
        if ratio >= 2.0 { "PASS" } else { "MISS" }
    );
}

pub struct NixResult {
    pub nix_us: f64,
    pub native_us: f64,
}

/// (h): `None` when nix is not installed.
pub async fn bench_nix(socket: &Path) -> Option<NixResult> {
    Command::new("nix")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())?;
    let tmp = tempfile::tempdir().expect("temp dir");
    let flake = tmp.path().join("flake");
    std::fs::create_dir_all(&flake).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nix-shell/flake.nix"),
        flake.join("flake.nix"),
    )
    .unwrap();
    let (mut c, mut r) = clients(socket).await;
    let (env, _) = ready(
        &mut r,
        pb::CreateEnvironmentRequest {
            kind: pb::EnvironmentKind::Nix.into(),
            nix: Some(pb::NixSettings {
                flake_dir: flake.display().to_string(),
                dev_shell: String::new(),
            }),
            ..Default::default()
        },
    )
    .await;
    for _ in 0..WARMUP {
        run(&mut c, &env, &["/bin/true"]).await;
        run(&mut c, "native", &["/bin/true"]).await;
    }
    let (mut nix, mut native) = (Vec::new(), Vec::new());
    for _ in 0..ITERS {
        nix.push(run(&mut c, &env, &["/bin/true"]).await.0.as_secs_f64() * 1e6);
        native.push(run(&mut c, "native", &["/bin/true"]).await.0.as_secs_f64() * 1e6);
    }
    Some(NixResult {
        nix_us: median(nix),
        native_us: median(native),
    })
}

pub fn report_nix(h: &Option<NixResult>) {
    println!();
    println!("(h) Nix: Run of /bin/true in a materialised Nix environment vs native");
    let Some(h) = h else {
        println!("    skipped: nix is not installed (scripts/nix-setup installs it)");
        return;
    };
    let ratio = h.nix_us / h.native_us;
    println!(
        "    nix {:.0} µs, native {:.0} µs: {ratio:.2}x (target <= 1.2x) {}",
        h.nix_us,
        h.native_us,
        if ratio <= 1.2 { "PASS" } else { "MISS" }
    );
}
