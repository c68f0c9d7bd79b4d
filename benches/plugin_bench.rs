//! (j) Plugins: tend's `Load` of the go-plugin test plugin (tests/fixtures/plugins/goplugin, an
//! unmodified hashicorp/go-plugin 1.0.1 plugin) until SERVING, against go-plugin's own host
//! loading the same binary (`kvplugin-goplugin-host`: `NewClient` → `Client()` → `Ping`, then
//! `Kill`), and against the plugin's own time to its handshake line (spawned here with the same
//! environment, timed to its first stdout line); tend's `Unload` against go-plugin's `Kill`.
//!
//! The three are measured in the same rounds, interleaved. The binaries are `$KVPLUGIN_GOPLUGIN`
//! and `$KVPLUGIN_GOPLUGIN_HOST`, else what `scripts/build-test-plugins` builds (run here; it is
//! fast when up to date); without Go the section is skipped, saying why.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tend::cli::connect::{loader_client, Addr};
use tend::pb;
use tokio::io::AsyncBufReadExt;

/// Rounds, each of `PER_ROUND` loads by each of the three, after `WARMUP` of each.
const ROUNDS: usize = 4;
const PER_ROUND: usize = 10;
const WARMUP: usize = 3;
const COOKIE: (&str, &str) = ("KVPLUGIN_GOPLUGIN_COOKIE", "kv-go-plugin-4c1e9b27");
const VERSION: u32 = 2;

pub struct PluginResult {
    /// The plugin spawned here: spawn to its handshake line, µs.
    own: Vec<f64>,
    /// go-plugin's host: NewClient → Client() → Ping, and Kill, µs.
    gp_load: Vec<f64>,
    gp_kill: Vec<f64>,
    /// tend: Load until SERVING, Unload, µs, and Unload's stages.
    load: Vec<f64>,
    unload: Vec<f64>,
    stages: Vec<i32>,
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn median(v: &[f64]) -> f64 {
    pct(v, 0.5)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

/// The plugin and the go-plugin host: from the environment, else built.
fn binaries() -> Result<(PathBuf, PathBuf), String> {
    let from_env = |v: &str| std::env::var_os(v).map(PathBuf::from);
    if let (Some(p), Some(h)) = (
        from_env("KVPLUGIN_GOPLUGIN"),
        from_env("KVPLUGIN_GOPLUGIN_HOST"),
    ) {
        return Ok((p, h));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join("scripts/build-test-plugins"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("scripts/build-test-plugins: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let find = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(PathBuf::from)
    };
    match (find("KVPLUGIN_GOPLUGIN"), find("KVPLUGIN_GOPLUGIN_HOST")) {
        (Some(p), Some(h)) => Ok((p, h)),
        _ => Err("scripts/build-test-plugins built no kvplugin-goplugin (see above)".into()),
    }
}

/// The plugin spawned here with go-plugin's environment: the time to its first stdout line.
async fn own_handshake(plugin: &Path) -> Duration {
    let dir = tempfile::Builder::new()
        .prefix("tj")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(plugin)
        .env(COOKIE.0, COOKIE.1)
        .env("PLUGIN_PROTOCOL_VERSIONS", VERSION.to_string())
        .env("PLUGIN_UNIX_SOCKET_DIR", dir.path())
        .env("TMPDIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kvplugin-goplugin");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.expect("read").expect("a line");
    let took = t0.elapsed();
    assert!(line.starts_with("1|2|unix|"), "{line}");
    let _ = child.kill().await;
    took
}

/// go-plugin's host, `n` runs in one process: its load and kill times, µs (its first run, a
/// cold Go host, left out).
async fn go_plugin_host(host: &Path, plugin: &Path, n: usize) -> (Vec<f64>, Vec<f64>) {
    let out = tokio::process::Command::new(host)
        .arg("-plugin")
        .arg(plugin)
        .arg("-n")
        .arg((n + 1).to_string())
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run kvplugin-goplugin-host");
    assert!(
        out.status.success(),
        "kvplugin-goplugin-host: {:?}",
        out.status
    );
    let (mut load, mut kill) = (Vec::new(), Vec::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.starts_with("run=") || line.starts_with("run=1 ") {
            continue;
        }
        let field = |k: &str| -> f64 {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{k} in {line:?}"))
        };
        load.push(field("load_us="));
        kill.push(field("kill_us="));
    }
    assert_eq!(
        load.len(),
        n,
        "kvplugin-goplugin-host printed {} runs",
        load.len()
    );
    (load, kill)
}

pub async fn bench_plugins(socket: &Path) -> Option<PluginResult> {
    let (plugin, host) = match binaries() {
        Ok(b) => b,
        Err(why) => {
            println!("(j) skipped: {why}");
            return None;
        }
    };
    let mut c = loader_client(&Addr::Unix(socket.to_path_buf()), None)
        .await
        .expect("loader client");
    let spec = pb::PluginSpec {
        name: "kv-j".into(),
        binary: plugin.display().to_string(),
        magic_cookie_key: COOKIE.0.into(),
        magic_cookie_value: COOKIE.1.into(),
        protocol_versions: vec![VERSION],
        ..Default::default()
    };
    let mut r = PluginResult {
        own: Vec::new(),
        gp_load: Vec::new(),
        gp_kill: Vec::new(),
        load: Vec::new(),
        unload: Vec::new(),
        stages: Vec::new(),
    };
    for round in 0..=ROUNDS {
        let (n, keep) = if round == 0 {
            (WARMUP, false)
        } else {
            (PER_ROUND, true)
        };
        let (gl, gk) = go_plugin_host(&host, &plugin, n).await;
        for _ in 0..n {
            let t0 = Instant::now();
            let info = c
                .load(pb::LoadRequest {
                    spec: Some(spec.clone()),
                })
                .await
                .expect("Load kvplugin-goplugin")
                .into_inner()
                .plugin
                .unwrap();
            let load = t0.elapsed();
            assert_eq!(info.state, pb::PluginState::Serving as i32);
            let t1 = Instant::now();
            let u = c
                .unload(pb::UnloadRequest {
                    name: spec.name.clone(),
                    grace_ms: Some(2000),
                })
                .await
                .expect("Unload")
                .into_inner();
            let unload = t1.elapsed();
            if keep {
                r.load.push(load.as_secs_f64() * 1e6);
                r.unload.push(unload.as_secs_f64() * 1e6);
                r.stages.push(u.stage);
            }
        }
        for _ in 0..n {
            let own = own_handshake(&plugin).await;
            if keep {
                r.own.push(own.as_secs_f64() * 1e6);
            }
        }
        if keep {
            r.gp_load.extend(gl);
            r.gp_kill.extend(gk);
        }
    }
    Some(r)
}

pub fn report_plugins(j: &PluginResult) {
    println!();
    println!(
        "(j) Load of kvplugin-goplugin (unmodified go-plugin 1.0.1) until SERVING: tend vs \
         go-plugin's own host vs the plugin's own handshake; {} of each, {ROUNDS} interleaved \
         rounds",
        j.load.len()
    );
    println!("    {:<44} {:>10} {:>10}", "", "median µs", "p90 µs");
    let row = |what: &str, v: &[f64]| {
        println!("    {:<44} {:>10.0} {:>10.0}", what, median(v), pct(v, 0.9))
    };
    row("plugin's own handshake line (spawned here)", &j.own);
    row("go-plugin host: NewClient→Client()→Ping", &j.gp_load);
    row("tend Load until SERVING", &j.load);
    row("go-plugin host: Kill", &j.gp_kill);
    row("tend Unload", &j.unload);
    let shutdown = j
        .stages
        .iter()
        .filter(|s| **s == pb::UnloadStage::Shutdown as i32)
        .count();
    println!(
        "    Unload stages: {shutdown} of {} at SHUTDOWN (GRPCController.Shutdown)",
        j.stages.len()
    );
    let ratio = median(&j.load) / median(&j.gp_load);
    println!(
        "    Load vs go-plugin's load: ratio {ratio:.2}x  (target <= 1.00x)  {}",
        verdict(ratio <= 1.0)
    );
    let beyond = median(&j.load) - median(&j.own);
    println!(
        "    Load beyond the plugin's own handshake: {beyond:.0} µs  (target <= 1000 µs)  {}",
        verdict(beyond <= 1000.0)
    );
    let kill = median(&j.unload) / median(&j.gp_kill);
    println!(
        "    Unload vs go-plugin's Kill: ratio {kill:.2}x  (target <= 1.00x)  {}",
        verdict(kill <= 1.0)
    );
}
