//! (i) A unary `kv.KV/Get` forwarded through tend (the `tend-plugin` header, issue 11 item 5)
//! vs the same `Get` sent straight to the plugin's socket, interleaved, in the same run. The Go
//! test plugin (`kvplugin-go`) when it can be built, else the Python one; both from
//! `scripts/build-test-plugins`.
use std::path::{Path, PathBuf};
use std::time::Instant;

use tend::cli::connect::{channel, loader_client, Addr};
use tend::pb;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// Round trips per path, after warm-up.
const ITERS: usize = 2000;
const WARMUP: usize = 200;
/// The target: forwarding adds at most this much at the median.
const TARGET_US: f64 = 100.0;

#[derive(Clone, PartialEq, prost::Message)]
struct GetRequest {
    #[prost(string, tag = "1")]
    key: String,
}
#[derive(Clone, PartialEq, prost::Message)]
struct GetResponse {
    #[prost(string, tag = "1")]
    value: String,
}
#[derive(Clone, PartialEq, prost::Message)]
struct PutRequest {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}
#[derive(Clone, PartialEq, prost::Message)]
struct PutResponse {}

pub struct ForwardResult {
    plugin: String,
    /// Microseconds, sorted.
    through: Vec<f64>,
    direct: Vec<f64>,
    /// tend's own unary Health/Check: the cost of the hop to tend alone.
    own: Vec<f64>,
}

/// The plugin to bench: (which, path).
fn plugin() -> Option<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join("scripts/build-test-plugins"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .ok()?;
    let built: Vec<(String, PathBuf)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
        .collect();
    ["KVPLUGIN_GO", "KVPLUGIN_PY"].iter().find_map(|want| {
        built
            .iter()
            .find(|(k, _)| k == want)
            .map(|(_, p)| (want.to_string(), p.clone()))
    })
}

async fn call<Q, R>(
    g: &mut tonic::client::Grpc<Channel>,
    path: &'static str,
    r: tonic::Request<Q>,
) -> R
where
    Q: prost::Message + Send + Sync + 'static,
    R: prost::Message + Default + Send + Sync + 'static,
{
    g.ready().await.expect("channel ready");
    g.unary(
        r,
        PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .expect("the call")
    .into_inner()
}

fn through(msg: GetRequest) -> tonic::Request<GetRequest> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "tend-plugin",
        tonic::metadata::MetadataValue::from_static("kv"),
    );
    r
}

/// Load the plugin in the daemon on `socket`, then time Gets through tend and direct, alternately.
pub async fn bench_forward(socket: &Path) -> Option<ForwardResult> {
    let Some((which, bin)) = plugin() else {
        println!("(i) skipped: no test plugin could be built (scripts/build-test-plugins)");
        return None;
    };
    let addr = Addr::Unix(socket.to_path_buf());
    let mut loader = loader_client(&addr, None).await.expect("loader client");
    let info = loader
        .load(pb::LoadRequest {
            spec: Some(pb::PluginSpec {
                name: "kv".into(),
                binary: bin.display().to_string(),
                ..Default::default()
            }),
        })
        .await
        .expect("load the plugin")
        .into_inner()
        .plugin
        .expect("plugin info");
    let mut tend = tonic::client::Grpc::new(channel(&addr).await.expect("tend channel"));
    let mut direct = tonic::client::Grpc::new(
        channel(&Addr::Unix(PathBuf::from(&info.address)))
            .await
            .expect("plugin channel"),
    );
    let _: PutResponse = call(
        &mut direct,
        "/kv.KV/Put",
        tonic::Request::new(PutRequest {
            key: "k".into(),
            value: "v".into(),
        }),
    )
    .await;
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(channel(&addr).await.expect("tend"));
    let get = || GetRequest { key: "k".into() };
    let (mut t, mut d, mut o) = (
        Vec::with_capacity(ITERS),
        Vec::with_capacity(ITERS),
        Vec::with_capacity(ITERS),
    );
    for i in 0..WARMUP + ITERS {
        let t0 = Instant::now();
        let a: GetResponse = call(&mut tend, "/kv.KV/Get", through(get())).await;
        let t1 = Instant::now();
        let b: GetResponse = call(&mut direct, "/kv.KV/Get", tonic::Request::new(get())).await;
        let t2 = Instant::now();
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("tend's health");
        let t3 = Instant::now();
        assert!(a.value == "v" && b.value == "v");
        if i >= WARMUP {
            t.push((t1 - t0).as_secs_f64() * 1e6);
            d.push((t2 - t1).as_secs_f64() * 1e6);
            o.push((t3 - t2).as_secs_f64() * 1e6);
        }
    }
    let _ = loader
        .unload(pb::UnloadRequest {
            name: "kv".into(),
            ..Default::default()
        })
        .await;
    t.sort_by(f64::total_cmp);
    d.sort_by(f64::total_cmp);
    o.sort_by(f64::total_cmp);
    Some(ForwardResult {
        plugin: format!("{which} ({})", bin.display()),
        through: t,
        direct: d,
        own: o,
    })
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

pub fn report_forward(r: &ForwardResult) {
    println!();
    println!(
        "(i) unary kv.KV/Get: through tend (tend-plugin header) vs direct to the plugin's socket, \
         interleaved, {ITERS} each after {WARMUP} warm-up; plugin {}",
        r.plugin
    );
    println!("    {:<28} {:>10} {:>10}", "", "p50 µs", "p90 µs");
    for (label, v) in [
        ("through tend", &r.through),
        ("direct", &r.direct),
        ("(tend's own Health/Check)", &r.own),
    ] {
        println!(
            "    {:<28} {:>10.1} {:>10.1}",
            label,
            pct(v, 0.5),
            pct(v, 0.9)
        );
    }
    let diff = pct(&r.through, 0.5) - pct(&r.direct, 0.5);
    println!(
        "    added at p50 {diff:.1} µs (p90: {:.1} µs)  (target <= +{TARGET_US:.0} µs at p50)  {}",
        pct(&r.through, 0.9) - pct(&r.direct, 0.9),
        if diff <= TARGET_US { "PASS" } else { "MISS" }
    );
    println!(
        "    (a forwarded call is two hops: beyond the direct call and tend's own unary, \
         forwarding adds {:.1} µs at p50)",
        pct(&r.through, 0.5) - pct(&r.direct, 0.5) - pct(&r.own, 0.5)
    );
}
