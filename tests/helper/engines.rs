//! The engines behind the RunnerService's environments: a Docker engine and Nix. `scripts/test`
//! installs both and starts a private Docker engine for the whole run; a bare `cargo test` has
//! neither unless the caller set them up (see the top of `helper` and scripts/README-engines.md).
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The test image that scripts/docker-up imports into its engine (busybox-static: `sh`,
/// `sleep`, `cat`, `env`, ...; `CMD ["/bin/sh"]`, `PATH=/bin`; no registry involved).
pub const BUSYBOX_IMAGE: &str = "tend-test/busybox:latest";

/// `DOCKER_HOST` when set and not empty: scripts/test exports its private engine's
/// (`unix://.../docker.sock`). There is no fallback to the system's /var/run/docker.sock.
pub fn docker_host() -> Option<String> {
    std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty())
}

/// Why no Docker engine can be used, or `None` when `DOCKER_HOST` answers `GET /_ping`.
pub fn docker_missing() -> Option<String> {
    let Some(host) = docker_host() else {
        return Some(
            "DOCKER_HOST is not set (scripts/test sets it; by hand: export \"$(scripts/docker-up)\")"
                .into(),
        );
    };
    match docker_get(&host, "/_ping") {
        Ok(200) => None,
        Ok(status) => Some(format!("DOCKER_HOST={host}: GET /_ping answered {status}")),
        Err(e) => Some(format!("DOCKER_HOST={host}: {e}")),
    }
}

/// `TEND_TEST_BUSYBOX_TAR` (a busybox rootfs tarball, the one `BUSYBOX_IMAGE` was imported
/// from), when set and the file exists.
pub fn busybox_tar() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("TEND_TEST_BUSYBOX_TAR")?);
    p.is_file().then_some(p)
}

/// The tests' offline flake, as Nix wants it: `path:<repo>/tests/fixtures/nix-shell` (not a
/// plain path, which Nix would take as the whole git repository). Its devShell sets
/// `TEND_NIX_TEST=1` and `TEND_NIX_GREETING="hello from nix"`.
pub fn nix_fixture() -> String {
    format!(
        "path:{}/tests/fixtures/nix-shell",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Whether Nix works here: `nix_missing()` is `None`.
pub fn nix_available() -> bool {
    nix_missing().is_none()
}

/// Why Nix cannot be used, or `None` when `nix --offline print-dev-env --json` of
/// `nix_fixture()` works (checked once per test binary; scripts/nix-setup configures it).
pub fn nix_missing() -> Option<String> {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    MISSING
        .get_or_init(|| {
            let out = match std::process::Command::new("nix")
                .args(["--offline", "print-dev-env", "--json", &nix_fixture()])
                .stdin(std::process::Stdio::null())
                .output()
            {
                Ok(out) => out,
                Err(e) => {
                    return Some(format!(
                        "cannot run nix: {e} (scripts/nix-setup installs it)"
                    ))
                }
            };
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                return Some(format!(
                    "nix print-dev-env {} failed ({}): {last} (scripts/nix-setup configures Nix)",
                    nix_fixture(),
                    out.status
                ));
            }
            if !String::from_utf8_lossy(&out.stdout).contains("\"TEND_NIX_TEST\"") {
                return Some(format!(
                    "nix print-dev-env {} shows no TEND_NIX_TEST",
                    nix_fixture()
                ));
            }
            None
        })
        .clone()
}

/// `true` when `why_missing` is `None`. Otherwise the test cannot run: under `CI=true` this
/// panics (the engine is part of the suite there), elsewhere it prints
/// `SKIP <test>: <component> missing: <why>` to stderr and returns `false`, for the test to
/// return early:
///
/// ```ignore
/// if !helper::require("docker", helper::docker_missing()) { return; }
/// ```
#[track_caller]
pub fn require(component: &str, why_missing: Option<String>) -> bool {
    let Some(why) = why_missing else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{component} is required under CI=true; scripts/test installs and starts it \
             ({component} missing: {why})"
        );
    }
    // libtest names each test's thread after the test; with one test thread it may be "main".
    let at = std::panic::Location::caller();
    let test = match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => format!("{}:{}", at.file(), at.line()),
    };
    eprintln!("SKIP {test}: {component} missing: {why}");
    false
}

/// The HTTP status of `GET path` on the engine at `host` (`unix://` or `tcp://`), bounded by
/// a few seconds: enough to tell a live engine from a stale socket.
fn docker_get(host: &str, path: &str) -> Result<u16, String> {
    const LIMIT: Duration = Duration::from_secs(5);
    let mut conn: Box<dyn ReadWrite> = if let Some(sock) = host.strip_prefix("unix://") {
        let s = std::os::unix::net::UnixStream::connect(sock)
            .map_err(|e| format!("connect {sock}: {e}"))?;
        s.set_read_timeout(Some(LIMIT)).ok();
        s.set_write_timeout(Some(LIMIT)).ok();
        Box::new(s)
    } else if let Some(addr) = host.strip_prefix("tcp://") {
        let s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(LIMIT)).ok();
        s.set_write_timeout(Some(LIMIT)).ok();
        Box::new(s)
    } else {
        return Err("only unix:// and tcp:// are supported".into());
    };
    write!(conn, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").map_err(|e| e.to_string())?;
    let mut head = [0u8; 12]; // "HTTP/1.1 200"
    conn.read_exact(&mut head)
        .map_err(|e| format!("GET {path}: {e}"))?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: not an HTTP answer"))
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The wiring itself: under scripts/test both engines are there (and under CI=true they must
/// be), the test image is in the engine and the tarball is on disk.
#[test]
fn engines_from_scripts_test() {
    if require("docker", docker_missing()) {
        let host = docker_host().unwrap();
        assert_eq!(
            docker_get(&host, &format!("/images/{BUSYBOX_IMAGE}/json")),
            Ok(200),
            "{BUSYBOX_IMAGE} is not in the engine at {host}"
        );
        require(
            "busybox tarball",
            busybox_tar()
                .is_none()
                .then(|| "TEND_TEST_BUSYBOX_TAR is not set, or names no file".into()),
        );
    }
    require("nix", nix_missing());
}

/// The Python that can `import` each of `modules` (`TEND_TEST_PYTHON`, else the project's
/// `.venv`, which scripts/test fills), or `None` after `require` said why (a failure under
/// CI=true).
pub fn python_with(modules: &str) -> Option<PathBuf> {
    let p = std::env::var_os("TEND_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3"));
    let ok = std::process::Command::new(&p)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = (!ok).then(|| format!("{} cannot import {modules}", p.display()));
    require("python", missing).then_some(p)
}

/// The test plugins scripts/build-test-plugins builds, VAR -> path, built once per test
/// binary (empty when it fails).
fn built_plugins() -> &'static std::collections::HashMap<String, PathBuf> {
    static BUILT: std::sync::OnceLock<std::collections::HashMap<String, PathBuf>> =
        std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new(root.join("scripts/build-test-plugins"))
            .stderr(std::process::Stdio::inherit())
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
                .collect(),
            _ => std::collections::HashMap::new(),
        }
    })
}

/// A test plugin's binary: `$VAR`, else `target/test-plugins/<file>`, else what
/// scripts/build-test-plugins builds; `None` (and a printed reason) when none exists, a panic
/// under CI=true.
pub fn test_plugin(var: &str, file: &str) -> Option<PathBuf> {
    let from_env = std::env::var_os(var).map(PathBuf::from);
    let path = from_env.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-plugins")
            .join(file)
    });
    if path.is_file() {
        return Some(path);
    }
    // Not built yet (a plain `cargo test`): build them, once per test binary.
    if from_env.is_none() {
        if let Some(built) = built_plugins().get(var).filter(|p| p.is_file()) {
            return Some(built.clone());
        }
    }
    let why = match from_env {
        Some(_) => format!("{var}={} does not exist", path.display()),
        None => format!(
            "{var} is not set and scripts/build-test-plugins did not build {}",
            path.display()
        ),
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "test plugin {file} missing under CI=true: {why}"
    );
    eprintln!("SKIP: test plugin {file}: {why}");
    None
}

/// Why a registry cannot be started here, if it cannot: Debian's `docker-registry` (the
/// distribution registry, 2.8) must be on PATH (`scripts/install-deps` installs it).
pub fn registry_missing() -> Option<String> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("docker-registry").is_file()))
        .unwrap_or(false);
    (!found).then(|| "docker-registry is not on PATH (apt-get install docker-registry)".into())
}

/// A private OCI registry on a free loopback port, with its own config and storage, killed
/// when dropped.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its filesystem storage root.
    pub storage: PathBuf,
    child: std::process::Child,
    _tmp: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let tmp = tempfile::Builder::new()
            .prefix("tend-registry")
            .tempdir()
            .unwrap();
        let storage = tmp.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = tmp.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: \
                 {}\nhttp:\n  addr: {addr}\n",
                storage.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(tmp.path().join("log")).unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let r = Registry {
            addr,
            storage,
            child,
            _tmp: tmp,
        };
        for _ in 0..200 {
            if let Ok(mut s) = std::net::TcpStream::connect(&r.addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", r.addr);
                let mut answer = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut answer).is_ok()
                    && answer.starts_with("HTTP/1.0 200")
                {
                    return r;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not answer on {} within 10 s", r.addr);
    }

    /// The daemon's `--plugin-store` for it.
    pub fn store(&self) -> String {
        format!("oci://{}", self.addr)
    }

    /// Where the registry keeps the blob `sha256:<hex>`.
    pub fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
