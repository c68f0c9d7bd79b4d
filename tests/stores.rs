//! Plugin stores against real components: a private `docker-registry` on loopback (pushed to
//! with `tend plugin push`), the local cache's atomic installs (a corrupted layer, a daemon
//! killed mid-install), and a Nix flake with two plugin versions as outputs.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tend::cli::connect::{self, Addr, LoaderClient};
use tend::pb;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::helper::{nix_missing, registry_missing, require, test_plugin, Daemon, Registry};

async fn loader(d: &Daemon) -> LoaderClient {
    connect::loader_client(&Addr::Unix(d.socket()), None)
        .await
        .expect("loader client")
}

/// `tend plugin push BINARY TARGET`, which must succeed.
fn push(binary: &Path, target: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_tend"))
        .args(["plugin", "push"])
        .arg(binary)
        .arg(target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tend plugin push {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("pushed "), "{said}");
}

async fn resolve(
    c: &mut LoaderClient,
    package: &str,
    version: &str,
) -> Result<pb::ResolvedPlugin, tonic::Status> {
    c.resolve(pb::ResolveRequest {
        package: package.into(),
        version: version.into(),
    })
    .await
    .map(|r| r.into_inner().plugin.unwrap())
}

/// Install, collecting every progress event; the error, if it failed.
async fn install(
    c: &mut LoaderClient,
    package: &str,
    version: &str,
) -> (Vec<pb::InstallResponse>, Option<tonic::Status>) {
    let mut stream = match c
        .install(pb::InstallRequest {
            package: package.into(),
            version: version.into(),
        })
        .await
    {
        Ok(s) => s.into_inner(),
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut events = Vec::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev) => events.push(ev),
            Err(e) => return (events, Some(e)),
        }
    }
    (events, None)
}

fn phase(ev: &pb::InstallResponse) -> pb::InstallPhase {
    pb::InstallPhase::try_from(ev.phase).unwrap()
}

/// A small executable script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Every version directory of the cache is whole: a manifest, and a binary with its digest.
fn cache_is_whole(state: &Path) {
    let root = state.join("plugins");
    if let Ok(staging) = std::fs::read_dir(root.join(".staging")) {
        assert_eq!(staging.count(), 0, "staging directories left behind");
    }
    let Ok(publishers) = std::fs::read_dir(&root) else {
        return;
    };
    for publisher in publishers
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
    {
        for name in std::fs::read_dir(publisher.path()).unwrap().flatten() {
            for version in std::fs::read_dir(name.path()).unwrap().flatten() {
                let m: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(version.path().join("manifest.json"))
                        .unwrap_or_else(|e| panic!("{:?} has no manifest: {e}", version.path())),
                )
                .unwrap();
                let bin = version.path().join(m["binary"].as_str().unwrap());
                let (digest, _) = tend::loader::store::local::digest_of(&bin).unwrap();
                assert_eq!(digest, m["digest"].as_str().unwrap(), "{bin:?}");
            }
        }
    }
}

#[tokio::test]
async fn pushed_versions_resolve_by_semver_install_with_progress_and_load_by_package() {
    if !require("docker-registry", registry_missing()) {
        return;
    }
    let Some(kv) = test_plugin("KVPLUGIN_PY", "kvplugin-py") else {
        return;
    };
    let reg = Registry::start();
    for v in ["1.0.0", "1.2.0", "2.0.0-rc.1"] {
        push(&kv, &format!("{}/acme/kv:{v}", reg.addr));
    }
    let store = reg.store();
    let d = Daemon::with_args(&["--plugin-store", "local", "--plugin-store", &store]).await;
    let mut c = loader(&d).await;

    let latest = resolve(&mut c, "acme/kv", "latest").await.unwrap();
    assert_eq!(
        (latest.version.as_str(), latest.store.as_str()),
        ("1.2.0", store.as_str())
    );
    assert!(
        latest.digest.starts_with("sha256:") && latest.path.is_empty(),
        "{latest:?}"
    );
    assert_eq!(latest.size, std::fs::metadata(&kv).unwrap().len());
    assert_eq!(
        resolve(&mut c, "acme/kv", "~1.0").await.unwrap().version,
        "1.0.0"
    );
    assert_eq!(
        resolve(&mut c, "acme/kv", ">=1.0, <2")
            .await
            .unwrap()
            .version,
        "1.2.0"
    );
    assert_eq!(
        resolve(&mut c, "acme/kv", ">=2.0.0-rc.0")
            .await
            .unwrap()
            .version,
        "2.0.0-rc.1"
    );
    let e = resolve(&mut c, "acme/kv", "^3").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(
        e.message().contains("1.0.0, 1.2.0, 2.0.0-rc.1"),
        "{}",
        e.message()
    );
    let e = resolve(&mut c, "kv", "").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("package:"), "{}", e.message());
    let e = resolve(&mut c, "acme/kv", "one").await.unwrap_err();
    assert!(e.message().starts_with("version:"), "{}", e.message());

    // Install: resolve, download to the last byte, verify, done; then it is the local one.
    let (events, failed) = install(&mut c, "acme/kv", "^1").await;
    assert!(failed.is_none(), "{failed:?}");
    let phases: Vec<_> = events.iter().map(phase).collect();
    assert_eq!(phases.first(), Some(&pb::InstallPhase::Resolve));
    assert_eq!(phases.last(), Some(&pb::InstallPhase::Done));
    assert!(phases.contains(&pb::InstallPhase::Verify), "{phases:?}");
    let downloads: Vec<_> = events
        .iter()
        .filter(|e| phase(e) == pb::InstallPhase::Download)
        .collect();
    let last = downloads.last().expect("download progress");
    assert_eq!(
        (last.done_bytes, last.total_bytes),
        (latest.size, latest.size)
    );
    let done = events.last().unwrap().plugin.clone().unwrap();
    assert_eq!(done.version, "1.2.0");
    assert_eq!(done.digest, latest.digest);
    assert_eq!(
        std::fs::read(&done.path).unwrap(),
        std::fs::read(&kv).unwrap()
    );
    let local = resolve(&mut c, "acme/kv", "").await.unwrap();
    assert_eq!(
        (local.store.as_str(), local.path.as_str()),
        ("local", done.path.as_str())
    );
    cache_is_whole(&d.dir);

    // Load by package: a version not installed yet installs first, its progress on Watch.
    if crate::helper::python_with("grpc, grpc_health.v1.health").is_none() {
        return;
    }
    let mut watch = c
        .watch(pb::LoaderServiceWatchRequest { name: "kv".into() })
        .await
        .unwrap()
        .into_inner();
    let info = c
        .load(pb::LoadRequest {
            spec: Some(pb::PluginSpec {
                name: "kv".into(),
                package: "acme/kv".into(),
                version: "1.0.0".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("load by package")
        .into_inner()
        .plugin
        .unwrap();
    assert_eq!(info.state, pb::PluginState::Serving as i32, "{info:?}");
    assert!(
        info.binary_path.ends_with("plugins/acme/kv/1.0.0/kv"),
        "{info:?}"
    );
    let mut kinds = Vec::new();
    while !kinds.contains(&pb::PluginEventKind::Loaded) {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("events")
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        let kind = pb::PluginEventKind::try_from(ev.kind).unwrap();
        if kind == pb::PluginEventKind::Installing {
            assert!(ev.install.is_some());
        }
        kinds.push(kind);
    }
    assert_eq!(
        kinds.first(),
        Some(&pb::PluginEventKind::Installing),
        "{kinds:?}"
    );
    c.unload(pb::UnloadRequest {
        name: "kv".into(),
        grace_ms: Some(2000),
    })
    .await
    .unwrap();

    let e = c
        .load(pb::LoadRequest {
            spec: Some(pb::PluginSpec {
                name: "kv".into(),
                binary: "/bin/true".into(),
                package: "acme/kv".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("spec.binary:"), "{}", e.message());
}

#[tokio::test]
async fn a_corrupted_layer_is_refused_and_nothing_is_kept() {
    if !require("docker-registry", registry_missing()) {
        return;
    }
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let bin = script(tmp.path(), "tool", "echo the real one");
    push(&bin, &format!("{}/acme/tool:1.0.0", reg.addr));
    let d = Daemon::with_args(&["--plugin-store", &reg.store()]).await;
    let mut c = loader(&d).await;
    let found = resolve(&mut c, "acme/tool", "").await.unwrap();
    // Same length, other bytes: only the digest can tell.
    let blob = reg.blob(&found.digest);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    std::fs::write(&blob, bytes).unwrap();

    let (_, failed) = install(&mut c, "acme/tool", "1.0.0").await;
    let e = failed.expect("a corrupted layer must not install");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("digest mismatch"), "{}", e.message());
    assert!(e.message().contains(&found.digest), "{}", e.message());
    assert!(
        e.message().contains("nothing was installed"),
        "{}",
        e.message()
    );
    assert!(!d.dir.join("plugins/acme/tool").exists());
    cache_is_whole(&d.dir);
    let again = resolve(&mut c, "acme/tool", "").await.unwrap();
    assert!(again.path.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_registry_that_is_down_is_unavailable_and_a_bad_store_stops_the_daemon() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("oci://127.0.0.1:{port}");
    let d = Daemon::with_args(&["--plugin-store", "local", "--plugin-store", &down]).await;
    let mut c = loader(&d).await;
    let e = resolve(&mut c, "acme/kv", "").await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains(&down) && e.message().contains("cannot be reached"),
        "{}",
        e.message()
    );
    let (_, failed) = install(&mut c, "acme/kv", "1.0.0").await;
    assert_eq!(failed.unwrap().code(), Code::Unavailable);

    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tend"))
        .args(["serve", "--plugin-store", "ftp://x", "--state-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("--plugin-store") && said.contains("ftp://x"),
        "{said}"
    );
}

#[tokio::test]
async fn a_daemon_killed_mid_install_leaves_nothing_loadable() {
    if !require("docker-registry", registry_missing()) {
        return;
    }
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    // 48 MiB that compress to nothing the registry could shortcut.
    let big = tmp.path().join("big");
    let mut bytes = vec![0u8; 48 << 20];
    let mut x = 0x2545F4914F6CDD1Du64;
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&big, &bytes).unwrap();
    push(&big, &format!("{}/acme/big:1.0.0", reg.addr));
    let state = tmp.path().join("state");
    let store = reg.store();
    let mut d = Daemon::spawn_in(&state, &["--plugin-store", &store]).await;
    let mut c = loader(&d).await;
    let mut stream = c
        .install(pb::InstallRequest {
            package: "acme/big".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut killed_at = None;
    while let Some(Ok(ev)) = stream.next().await {
        if phase(&ev) == pb::InstallPhase::Download && ev.done_bytes > 0 {
            d.kill9();
            killed_at = Some((ev.done_bytes, ev.total_bytes));
            break;
        }
    }
    let (done, total) = killed_at.expect("download progress before the end");
    eprintln!("killed at {done} of {total} bytes");
    drop(c);
    let d = Daemon::spawn_in(&state, &["--plugin-store", "local"]).await;
    cache_is_whole(&state);
    let mut c = loader(&d).await;
    // Nothing half-installed: the local store has the whole version or none.
    match resolve(&mut c, "acme/big", "").await {
        Ok(found) => assert_eq!(found.size, 48 << 20, "{found:?}"),
        Err(e) => assert_eq!(e.code(), Code::NotFound, "{e:?}"),
    }
    drop(d);
}

#[tokio::test]
async fn nix_flake_outputs_resolve_by_version_and_load() {
    if !require("nix", nix_missing()) {
        return;
    }
    let Some(kv) = test_plugin("KVPLUGIN_PY", "kvplugin-py") else {
        return;
    };
    if crate::helper::python_with("grpc, grpc_health.v1.health").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let flake = tmp.path().join("flake");
    std::fs::create_dir_all(&flake).unwrap();
    let system = format!("{}-linux", std::env::consts::ARCH);
    // Each version is a derivation whose output is an executable that runs the Python test
    // plugin with PLUGIN_FLAVOUR set to its version.
    std::fs::write(
        flake.join("flake.nix"),
        format!(
            r#"{{
  outputs = {{ self }}: let
    plugin = version: derivation {{
      name = "kvnix-${{version}}";
      system = "{system}";
      builder = "/bin/sh";
      args = [ "-c" "printf '#!/bin/sh\nexport PLUGIN_FLAVOUR=${{version}}\nexec {kv} \"$@\"\n' > $out; /bin/chmod +x $out" ];
    }};
  in {{
    tendPlugins.{system}."acme"."kvnix" = {{
      "1.0.0" = plugin "1.0.0";
      "1.1.0" = plugin "1.1.0";
    }};
  }};
}}
"#,
            kv = kv.display()
        ),
    )
    .unwrap();
    let store = format!("nix:path:{}", flake.display());
    let d = Daemon::with_args(&["--plugin-store", "local", "--plugin-store", &store]).await;
    let mut c = loader(&d).await;
    let found = resolve(&mut c, "acme/kvnix", "").await.unwrap();
    assert_eq!(
        (found.version.as_str(), found.store.as_str()),
        ("1.1.0", store.as_str())
    );
    assert_eq!(
        resolve(&mut c, "acme/kvnix", "<1.1").await.unwrap().version,
        "1.0.0"
    );
    let e = resolve(&mut c, "acme/other", "").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    let info = c
        .load(pb::LoadRequest {
            spec: Some(pb::PluginSpec {
                name: "kvnix".into(),
                package: "acme/kvnix".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("load from the flake")
        .into_inner()
        .plugin
        .unwrap();
    assert_eq!(info.state, pb::PluginState::Serving as i32, "{info:?}");
    let installed = d.dir.join("plugins/acme/kvnix/1.1.0/kvnix");
    assert!(std::fs::read_link(&installed)
        .unwrap()
        .starts_with("/nix/store"));
    let root = d.dir.join("plugins/.nix-roots/acme/kvnix/1.1.0");
    assert!(
        std::fs::read_link(&root).unwrap().starts_with("/nix/store"),
        "the GC root"
    );
    let now = resolve(&mut c, "acme/kvnix", "").await.unwrap();
    assert_eq!(now.store, "local");
    cache_is_whole(&d.dir);
    c.unload(pb::UnloadRequest {
        name: "kvnix".into(),
        grace_ms: Some(2000),
    })
    .await
    .unwrap();
}
