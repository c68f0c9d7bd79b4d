//! A Nix flake's dev shell materialised once into an environment map (`nix print-dev-env
//! --json`), cached on disk by what it depends on, so that host processes start with that
//! environment directly instead of through a `nix develop` each.
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::progress::{Progress, Sink};
use crate::error::{clip, clip_path, quote, Error, Result, MESSAGE_MAX};
use crate::supervisor::reaper::{Ended, Reaper, RunError};

/// A dev shell's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shell {
    /// The shell's exported variables, build-only ones stripped. `PATH` (and `XDG_DATA_DIRS`),
    /// when present, is the shell's own part only: `apply` prepends it to the host's.
    pub env: BTreeMap<String, String>,
    /// The cache key (hex sha256) the environment is stored under.
    pub key: String,
    /// Whether it came from the cache, without running nix.
    pub cached: bool,
}

/// A reasonable bound for `materialise`'s `timeout`: a first evaluation may fetch and build
/// the shell's inputs, and nix can hang there (a network fetch, a lock held by another nix).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Bound on `nix --version`, which only prints and exits.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// Most lines of nix's stderr quoted in an error.
const TAIL_LINES: usize = 10;

/// Most bytes of a dev shell name (an attribute name; nothing longer is plausible).
const DEV_SHELL_MAX: usize = 128;

/// Bumped when what is cached changes meaning (the stripping rules, the file's shape), so that
/// old entries stop matching instead of being read as if they were current.
const KEY_FORMAT: &str = "tend-nix-shell-v2";

/// Where `FailedPrecondition` sends someone without nix.
const INSTALL_HINT: &str = "install nix-bin (`apt-get install nix-bin`, or scripts/nix-setup, \
                            which also enables flakes offline; see scripts/README-engines.md)";

/// Colon-separated lists that `apply` prepends to the base environment's instead of replacing
/// it: `nix develop`'s `savedVars` (PATH for commands, XDG_DATA_DIRS for completions).
const PREPENDED: [&str; 2] = ["PATH", "XDG_DATA_DIRS"];

/// Variables of the build environment that a process outside the build must not see.
///
/// - `nix develop`'s own `ignoreVars`: the builder's sandbox facts (HOME=/homeless-shelter, the
///   build's TMPDIR and its aliases, NIX_BUILD_TOP, NIX_LOG_FD, the terminal, timezone, uid,
///   the shell's options and parent pid, the placeholder certificate file). `nix develop` then
///   points the temp dirs at a fresh `mktemp -d`; here the process keeps the host's.
/// - Derivation plumbing: `builder` (the build's interpreter), `out`/`outputs` and every output
///   `outputs` names (store paths of the `-env` derivation, which `nix develop` rewrites to
///   `./outputs/<name>` and no host process should write to), `system`, and
///   `NIX_BUILD_CORES` (the build's parallelism, not the host's; tools left without it pick
///   their own). `dontAddDisableDepTrack` is set by nix's get-env.sh for stdenv's configure
///   phase only.
/// - The builder's shell state: PWD, OLDPWD, SHLVL and `_` describe the bash that ran
///   get-env.sh, not the process (whose working directory is set when it is started).
///
/// Kept on purpose: NIX_STORE (nixpkgs' compiler wrappers read it), IN_NIX_SHELL (programs ask
/// whether they run in a dev shell), `name`, shellHook (as text: it is not run, there is no
/// shell), and everything a setup hook exported (PKG_CONFIG_PATH, NIX_CFLAGS_COMPILE, …).
const STRIPPED: &[&str] = &[
    // nix develop's ignoreVars.
    "BASHOPTS",
    "HOME",
    "NIX_BUILD_TOP",
    "NIX_ENFORCE_PURITY",
    "NIX_LOG_FD",
    "NIX_REMOTE",
    "PPID",
    "SHELLOPTS",
    "SSL_CERT_FILE",
    "TEMP",
    "TEMPDIR",
    "TERM",
    "TMP",
    "TMPDIR",
    "TZ",
    "UID",
    // Derivation plumbing (the outputs `outputs` names are stripped as well).
    "builder",
    "out",
    "outputs",
    "system",
    "NIX_BUILD_CORES",
    "dontAddDisableDepTrack",
    // The builder's shell state.
    "PWD",
    "OLDPWD",
    "SHLVL",
    "_",
];

/// The PATH a derivation's builder starts with when it sets none: nix's marker that no PATH was
/// given, naming no directory. Dropped from the shell's PATH.
const PATH_NOT_SET: &str = "/path-not-set";

/// What the cache file holds. Only `env` is read back; the rest is for a person looking.
#[derive(Serialize, Deserialize)]
struct Entry {
    format: String,
    flake: String,
    dev_shell: String,
    nix: String,
    env: BTreeMap<String, String>,
}

/// What `nix print-dev-env --json` prints (`bashFunctions` and `structuredAttrs` are ignored:
/// they only mean something to a bash that sources them).
#[derive(Deserialize)]
struct DevEnv {
    variables: BTreeMap<String, Variable>,
}

#[derive(Deserialize)]
struct Variable {
    #[serde(rename = "type")]
    kind: String,
    /// A string for `exported` and `var`; a list or an object for `array` and `associative`.
    #[serde(default)]
    value: serde_json::Value,
}

/// The flake's files that the cache key covers.
struct Inputs {
    flake_nix: Vec<u8>,
    flake_lock: Option<Vec<u8>>,
    /// A digest of the other `.nix` files under the flake's directory (what `flake.nix`
    /// imports, as `./shell.nix` or `./nix/*.nix`), by path and content.
    imports: Vec<u8>,
}

/// How deep, how many and how much of the flake directory's other `.nix` files are read for
/// the key: enough for a project's own nix files, bounded for a directory that holds more.
const IMPORTS_DEPTH: usize = 6;
const IMPORTS_MAX_FILES: usize = 512;
const IMPORTS_MAX_BYTES: u64 = 8 << 20;

/// The digest of the `.nix` files under `dir` other than its `flake.nix`, skipping hidden
/// directories, `node_modules`, `target` and nix's `result` links (file work). Beyond the
/// bounds the rest is not read, and the digest says so.
fn imports_digest(dir: &Path) -> Vec<u8> {
    let mut files = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    let mut truncated = false;
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                let skip = name.starts_with('.')
                    || matches!(name.as_ref(), "node_modules" | "target" | "result");
                if !skip {
                    if depth < IMPORTS_DEPTH {
                        stack.push((e.path(), depth + 1));
                    } else {
                        truncated = true;
                    }
                }
            } else if kind.is_file()
                && name.ends_with(".nix")
                && !(depth == 0 && name == "flake.nix")
            {
                files.push(e.path());
            }
        }
    }
    files.sort();
    if files.len() > IMPORTS_MAX_FILES {
        files.truncate(IMPORTS_MAX_FILES);
        truncated = true;
    }
    let mut h = Sha256::new();
    let mut budget = IMPORTS_MAX_BYTES;
    for f in files {
        let rel = f
            .strip_prefix(dir)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        let size = std::fs::metadata(&f).map_or(0, |m| m.len());
        if size > budget {
            truncated = true;
            break;
        }
        budget -= size;
        let bytes = std::fs::read(&f).unwrap_or_default();
        h.update((rel.len() as u64).to_le_bytes());
        h.update(rel.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    h.update([u8::from(truncated)]);
    h.finalize().to_vec()
}

/// Materialise `flake_dir`'s dev shell `dev_shell` ("" is "default") into an environment:
/// from `cache_dir` when the flake, its lock file, the system, the nix version and the shell
/// name are what they were, else by running `nix print-dev-env` (bounded by `timeout`, its
/// stderr lines forwarded to `progress`) and caching the result.
pub async fn materialise(
    reaper: &Reaper,
    flake_dir: &Path,
    dev_shell: &str,
    cache_dir: &Path,
    timeout: Duration,
    progress: Sink<'_>,
) -> Result<Shell> {
    let attr = validate_dev_shell(dev_shell)?.to_string();
    let dir = flake_dir.to_path_buf();
    let inputs = blocking("read the flake", move || read_inputs(&dir)).await?;
    let nix = version(reaper).await.map_err(Error::FailedPrecondition)?;
    let system = system();
    let key = cache_key(
        &inputs.flake_nix,
        inputs.flake_lock.as_deref(),
        &inputs.imports,
        &system,
        &nix,
        &attr,
    );
    let file = cache_dir.join(format!("{key}.json"));
    let path = file.clone();
    if let Some(env) = blocking("read the cache", move || Ok(read_cache(&path))).await? {
        progress(Progress::line(
            "cached",
            format!("dev shell {attr} from {}", file.display()),
        ));
        return Ok(Shell {
            env,
            key,
            cached: true,
        });
    }

    let installable = installable(flake_dir, &attr);
    let what = format!(
        "dev shell {} of flake {}",
        quote(&attr),
        clip_path(flake_dir)
    );
    progress(Progress::line(
        "evaluate",
        format!("nix print-dev-env {installable}"),
    ));
    let mut cmd = std::process::Command::new("nix");
    cmd.args([
        "--extra-experimental-features",
        "nix-command flakes",
        "print-dev-env",
        "--json",
        // Builders' output on stderr too ("<drv>> line"), so that progress shows what a long
        // first build is doing and a failed build's error ends with the builder's last lines.
        "--print-build-logs",
    ])
    .arg(&installable);
    let forward = |line: &str| {
        if !line.trim().is_empty() {
            progress(Progress::line("evaluate", line));
        }
    };
    let captured = match reaper.run(cmd, timeout, forward).await {
        Ok(c) => c,
        Err(RunError::Spawn { source, .. }) => return Err(spawn_error(&source)),
        Err(RunError::Timeout { stderr, .. }) => {
            // No DeadlineExceeded in the core's errors: Unavailable says "try again later",
            // which fits an evaluation that may finish once a fetch or a lock frees up.
            let head = format!(
                "nix print-dev-env for {what} timed out after {} s and was killed; nix said:\n",
                timeout.as_secs()
            );
            return Err(Error::Unavailable(with_tail(head, &stderr)));
        }
    };
    if !captured.success() {
        let head = format!(
            "nix print-dev-env for {what} failed ({}); nix said:\n",
            ended(captured.ended)
        );
        return Err(Error::FailedPrecondition(with_tail(head, &captured.stderr)));
    }
    let env = parse(&captured.stdout).map_err(|e| {
        Error::FailedPrecondition(format!(
            "nix print-dev-env for {what} printed what tend cannot read ({e}); nix is {}",
            clip(&nix)
        ))
    })?;

    // Evaluating writes flake.lock when a flake has inputs and no lock yet: key the entry by
    // that lock, which is what the next call will read. Only then: a flake.nix edited while
    // nix ran is not what was evaluated, so the entry keeps the key of what was.
    let mut key = key;
    if inputs.flake_lock.is_none() {
        let dir = flake_dir.to_path_buf();
        let after = blocking("read the flake", move || read_inputs(&dir)).await?;
        if after.flake_nix == inputs.flake_nix
            && after.imports == inputs.imports
            && after.flake_lock.is_some()
        {
            key = cache_key(
                &after.flake_nix,
                after.flake_lock.as_deref(),
                &after.imports,
                &system,
                &nix,
                &attr,
            );
        }
    }
    let entry = Entry {
        format: KEY_FORMAT.to_string(),
        flake: flake_dir.display().to_string(),
        dev_shell: attr,
        nix,
        env,
    };
    let dir = cache_dir.to_path_buf();
    let name = format!("{key}.json");
    let entry = blocking("write the cache", move || {
        write_cache(&dir, &name, &entry)?;
        Ok(entry)
    })
    .await?;
    Ok(Shell {
        env: entry.env,
        key,
        cached: false,
    })
}

/// `nix --version`, e.g. "nix (Nix) 2.8.0"; the error says what is wrong (nix not installed,
/// or failing) and what to do.
pub async fn version(reaper: &Reaper) -> std::result::Result<String, String> {
    let mut cmd = std::process::Command::new("nix");
    cmd.arg("--version");
    match reaper.run(cmd, VERSION_TIMEOUT, |_| {}).await {
        Ok(c) if c.success() => {
            let v = String::from_utf8_lossy(&c.stdout).trim().to_string();
            if v.is_empty() {
                Err("`nix --version` printed nothing".to_string())
            } else {
                Ok(v)
            }
        }
        Ok(c) => Err(format!(
            "`nix --version` failed ({}): {}",
            ended(c.ended),
            tail(&c.stderr, 512)
        )),
        Err(RunError::Spawn { source, .. }) => Err(spawn_error(&source).to_string()),
        Err(e @ RunError::Timeout { .. }) => Err(format!("`nix --version`: {e}")),
    }
}

/// Overlay a dev shell's variables (`Shell::env`) on `base`, as `nix develop` does: each
/// variable replaces the base's, except PATH and XDG_DATA_DIRS, which become the shell's value
/// then the base's (`<shell PATH>:<base PATH>`), so the shell's tools come first and the host's
/// stay reachable. An empty side adds no empty entry (which a shell would read as ".").
pub fn apply(shell_env: &BTreeMap<String, String>, base: &mut BTreeMap<String, String>) {
    for (name, value) in shell_env {
        if PREPENDED.contains(&name.as_str()) {
            let joined = match base.get(name) {
                Some(b) if !b.is_empty() && !value.is_empty() => format!("{value}:{b}"),
                Some(b) if value.is_empty() => b.clone(),
                _ => value.clone(),
            };
            base.insert(name.clone(), joined);
        } else {
            base.insert(name.clone(), value.clone());
        }
    }
}

/// Check a flake directory and dev shell name as `materialise` would, before anything runs
/// (file work: reads flake.nix and flake.lock).
pub fn check_flake(flake_dir: &Path, dev_shell: &str) -> Result<()> {
    validate_dev_shell(dev_shell)?;
    read_inputs(flake_dir).map(|_| ())
}

/// Whether `nix` is on the daemon's PATH; `Err` says what to do when it is not.
pub fn installed() -> std::result::Result<(), String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| d.join("nix").is_file()) {
        Ok(())
    } else {
        Err(format!(
            "nix is not installed (no `nix` on the daemon's PATH): {INSTALL_HINT}"
        ))
    }
}

/// The dev shell's attribute name: "" is "default"; otherwise a plain Nix attribute name (no
/// dots, which would select into nested sets, and nothing that would end the installable).
fn validate_dev_shell(dev_shell: &str) -> Result<&str> {
    if dev_shell.is_empty() {
        return Ok("default");
    }
    let field = "nix.dev_shell";
    if dev_shell.len() > DEV_SHELL_MAX {
        return Err(Error::invalid(
            field,
            format!("{} is longer than {DEV_SHELL_MAX} bytes", quote(dev_shell)),
        ));
    }
    let mut chars = dev_shell.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\''));
    if !(first_ok && rest_ok) {
        return Err(Error::invalid(
            field,
            format!(
                "{} is not a plain attribute name (a letter or _, then letters, digits, _, - \
                 or '), e.g. \"default\"",
                quote(dev_shell)
            ),
        ));
    }
    Ok(dev_shell)
}

/// Check the flake directory and read what the cache key covers (file work).
fn read_inputs(flake_dir: &Path) -> Result<Inputs> {
    let field = "nix.flake_dir";
    let shown = clip_path(flake_dir);
    if !flake_dir.is_absolute() {
        return Err(Error::invalid(
            field,
            format!("{shown} is not an absolute path"),
        ));
    }
    match std::fs::metadata(flake_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::invalid(field, format!("{shown} is not a directory")));
        }
        Err(e) => {
            return Err(Error::invalid(field, format!("{shown}: {e}")));
        }
    }
    let nix_file = flake_dir.join("flake.nix");
    let flake_nix = match std::fs::read(&nix_file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::invalid(field, format!("{shown} has no flake.nix")));
        }
        Err(e) => {
            return Err(Error::invalid(
                field,
                format!("cannot read {}: {e}", clip_path(&nix_file)),
            ));
        }
    };
    let lock_file = flake_dir.join("flake.lock");
    let flake_lock = match std::fs::read(&lock_file) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Error::invalid(
                field,
                format!("cannot read {}: {e}", clip_path(&lock_file)),
            ));
        }
    };
    Ok(Inputs {
        flake_nix,
        flake_lock,
        imports: imports_digest(flake_dir),
    })
}

/// The installable nix evaluates. `path:` so that a flake inside a git work tree is not a
/// `git+file` flake (which copies the whole repository and misses untracked files); "default"
/// is left to nix, whose default covers `devShells.<system>.default` and the older
/// `devShell.<system>`.
fn installable(flake_dir: &Path, attr: &str) -> String {
    let dir = flake_dir.display();
    if attr == "default" {
        format!("path:{dir}")
    } else {
        format!("path:{dir}#{attr}")
    }
}

/// The Nix system string of this host, e.g. "x86_64-linux" (what nix's `system` setting
/// defaults to; a nix.conf that overrides it is not seen).
fn system() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// Hex sha256 of what a dev shell's environment depends on, as far as tend can see without
/// evaluating: flake.nix, flake.lock, the system, nix's version, the shell's name. Each part
/// goes in with its length, so no two different inputs hash the same bytes. Other files the
/// flake reads (`./shell.nix`) are not covered: a change there needs the cache entry removed.
fn cache_key(
    flake_nix: &[u8],
    flake_lock: Option<&[u8]>,
    imports: &[u8],
    system: &str,
    nix_version: &str,
    dev_shell: &str,
) -> String {
    let mut h = Sha256::new();
    let mut part = |tag: &str, bytes: &[u8]| {
        h.update(tag.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part("format", KEY_FORMAT.as_bytes());
    part("flake.nix", flake_nix);
    match flake_lock {
        Some(lock) => part("flake.lock", lock),
        None => part("no flake.lock", b""),
    }
    part("imports", imports);
    part("system", system.as_bytes());
    part("nix", nix_version.as_bytes());
    part("dev_shell", dev_shell.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The environment from `nix print-dev-env --json`: the exported string variables, without the
/// build-only ones (`STRIPPED`, and the outputs `outputs` names), and PATH without nix's
/// placeholder.
fn parse(json: &[u8]) -> std::result::Result<BTreeMap<String, String>, String> {
    let dev: DevEnv = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let string = |name: &str| match dev.variables.get(name) {
        Some(v) if v.kind == "exported" || v.kind == "var" => v.value.as_str(),
        _ => None,
    };
    let outputs: Vec<&str> = string("outputs")
        .map(|s| s.split_whitespace().collect())
        .unwrap_or_default();
    let mut env = BTreeMap::new();
    for (name, var) in &dev.variables {
        // `var` is a shell variable the builder did not export, and bash cannot export arrays:
        // neither reaches a child process under `nix develop` either.
        if var.kind != "exported" {
            continue;
        }
        let Some(value) = var.value.as_str() else {
            continue;
        };
        if STRIPPED.contains(&name.as_str()) || outputs.contains(&name.as_str()) {
            continue;
        }
        // execve(2) takes NAME=VALUE C strings: a NUL or a '=' in the name cannot be passed.
        if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            continue;
        }
        let value = if name == "PATH" {
            let kept: Vec<&str> = value
                .split(':')
                .filter(|d| !d.is_empty() && *d != PATH_NOT_SET)
                .collect();
            if kept.is_empty() {
                continue;
            }
            kept.join(":")
        } else {
            value.to_string()
        };
        env.insert(name.clone(), value);
    }
    Ok(env)
}

/// A cached environment, if there is a readable one (a damaged entry is a miss, and is
/// replaced by the evaluation that follows).
fn read_cache(file: &Path) -> Option<BTreeMap<String, String>> {
    let bytes = std::fs::read(file).ok()?;
    let entry: Entry = serde_json::from_slice(&bytes).ok()?;
    (entry.format == KEY_FORMAT).then_some(entry.env)
}

/// Write `entry` to `<dir>/<name>` atomically: a temp file (0600) in the same directory,
/// fsynced, then renamed over the name, so a reader sees the old entry or the whole new one.
fn write_cache(dir: &Path, name: &str, entry: &Entry) -> Result<()> {
    // The mode applies to the directories created (a umask can only take bits away); an
    // existing directory is left as its owner set it.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let bytes = serde_json::to_vec_pretty(entry)
        .map_err(|e| Error::Internal(format!("encode the nix cache entry: {e}")))?;
    let file = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), nonce()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &file)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("write {}", file.display()), e)
    })
}

/// A number to tell apart temp files of concurrent writers in one process.
fn nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Run file work off the async workers.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("{what}: {e}")))?
}

/// The error for a `nix` that could not be started.
pub(crate) fn spawn_error(source: &std::io::Error) -> Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        Error::FailedPrecondition(format!(
            "nix is not installed (no `nix` on the daemon's PATH): {INSTALL_HINT}"
        ))
    } else {
        Error::FailedPrecondition(format!("cannot run nix: {source}; {INSTALL_HINT}"))
    }
}

/// How a command ended, for a message.
pub(crate) fn ended(e: Ended) -> String {
    match e {
        Ended::Code(c) => format!("exit code {c}"),
        Ended::Signal { signal, .. } => format!("killed by signal {signal}"),
    }
}

/// `head` followed by the last lines of `stderr`, cut so that the whole fits in a status
/// message (`MESSAGE_MAX`) with the last lines kept: they say what went wrong.
pub(crate) fn with_tail(head: String, stderr: &[u8]) -> String {
    let room = MESSAGE_MAX.saturating_sub(head.len()).max(256);
    let t = tail(stderr, room);
    if t.is_empty() {
        format!("{head}(nothing on stderr)")
    } else {
        format!("{head}{t}")
    }
}

/// The last `TAIL_LINES` non-blank lines of `stderr`, at most `max` bytes: when longer, the
/// start is cut (at a char boundary) and marked with "…".
fn tail(stderr: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let text = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    if text.len() <= max {
        return text;
    }
    let marker = "…";
    let mut start = text.len() - (max - marker.len());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("{marker}{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from what nix 2.8 prints for tests/fixtures/nix-shell, plus a second output,
    /// an array and a non-exported variable.
    const SAMPLE: &str = r#"{
      "bashFunctions": {"genericBuild": "..."},
      "variables": {
        "BASH": {"type": "var", "value": "/bin/bash"},
        "HOME": {"type": "exported", "value": "/homeless-shelter"},
        "IN_NIX_SHELL": {"type": "exported", "value": "impure"},
        "NIX_BUILD_CORES": {"type": "exported", "value": "2"},
        "NIX_BUILD_TOP": {"type": "exported", "value": "/tmp/nix-build-x-env.drv-0"},
        "NIX_LOG_FD": {"type": "exported", "value": "2"},
        "NIX_STORE": {"type": "exported", "value": "/nix/store"},
        "OLDPWD": {"type": "exported", "value": ""},
        "PATH": {"type": "exported", "value": "/nix/store/aaa-hello/bin:/path-not-set"},
        "TEMP": {"type": "exported", "value": "/tmp/nix-build-x-env.drv-0"},
        "TERM": {"type": "exported", "value": "xterm-256color"},
        "TMPDIR": {"type": "exported", "value": "/tmp/nix-build-x-env.drv-0"},
        "TEND_NIX_GREETING": {"type": "exported", "value": "hello from nix"},
        "TEND_NIX_TEST": {"type": "exported", "value": "1"},
        "builder": {"type": "exported", "value": "/bin/bash"},
        "dev": {"type": "exported", "value": "/nix/store/bbb-x-env-dev"},
        "dontAddDisableDepTrack": {"type": "exported", "value": "1"},
        "name": {"type": "exported", "value": "x-env"},
        "out": {"type": "exported", "value": "/nix/store/ccc-x-env"},
        "outputs": {"type": "exported", "value": "out dev"},
        "system": {"type": "exported", "value": "x86_64-linux"},
        "buildInputs": {"type": "var", "value": ""},
        "pkgs": {"type": "array", "value": ["a", "b"]},
        "assoc": {"type": "associative", "value": {"k": "v"}}
      }
    }"#;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parse_keeps_exported_strings_and_strips_build_only_variables() {
        let env = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(
            env,
            map(&[
                ("IN_NIX_SHELL", "impure"),
                ("NIX_STORE", "/nix/store"),
                ("PATH", "/nix/store/aaa-hello/bin"),
                ("TEND_NIX_GREETING", "hello from nix"),
                ("TEND_NIX_TEST", "1"),
                ("name", "x-env"),
            ])
        );
    }

    #[test]
    fn parse_drops_a_path_that_is_only_the_placeholder_and_unpassable_variables() {
        let json = r#"{"variables": {
            "PATH": {"type": "exported", "value": "/path-not-set"},
            "A=B": {"type": "exported", "value": "x"},
            "NUL": {"type": "exported", "value": "a\u0000b"},
            "NUM": {"type": "exported", "value": 3},
            "OK": {"type": "exported", "value": "a b\nc"}
        }}"#;
        assert_eq!(parse(json.as_bytes()).unwrap(), map(&[("OK", "a b\nc")]));
        assert!(parse(b"not json").is_err());
        assert!(parse(b"{}").is_err());
    }

    #[test]
    fn apply_overlays_and_prepends_path_like_nix_develop() {
        let shell = map(&[
            ("PATH", "/nix/store/a/bin"),
            ("XDG_DATA_DIRS", "/nix/store/a/share"),
            ("LANG", "C.UTF-8"),
            ("TEND_NIX_TEST", "1"),
        ]);
        let mut base = map(&[
            ("PATH", "/usr/bin:/bin"),
            ("LANG", "en_US.UTF-8"),
            ("USER", "root"),
        ]);
        apply(&shell, &mut base);
        assert_eq!(
            base,
            map(&[
                ("LANG", "C.UTF-8"),
                ("PATH", "/nix/store/a/bin:/usr/bin:/bin"),
                ("TEND_NIX_TEST", "1"),
                ("USER", "root"),
                ("XDG_DATA_DIRS", "/nix/store/a/share"),
            ])
        );

        // No empty entry (which would mean ".") when either side is empty or missing.
        let cases: [(Option<&str>, Option<&str>, Option<&str>); 4] = [
            (Some("/s"), Some(""), Some("/s")),
            (Some(""), Some("/b"), Some("/b")),
            (None, Some("/b"), Some("/b")),
            (Some("/s"), None, Some("/s")),
        ];
        for (shell_path, base_path, want) in cases {
            let shell: BTreeMap<_, _> = shell_path
                .map(|p| ("PATH".to_string(), p.to_string()))
                .into_iter()
                .collect();
            let mut base: BTreeMap<_, _> = base_path
                .map(|p| ("PATH".to_string(), p.to_string()))
                .into_iter()
                .collect();
            apply(&shell, &mut base);
            assert_eq!(
                base.get("PATH").map(String::as_str),
                want,
                "{shell_path:?} {base_path:?}"
            );
        }
    }

    #[test]
    fn the_cache_key_covers_the_nix_files_the_flake_imports() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("flake.nix"),
            "{ outputs = _: import ./nix/shell.nix; }",
        )
        .unwrap();
        std::fs::create_dir_all(d.join("nix")).unwrap();
        std::fs::create_dir_all(d.join("node_modules/x")).unwrap();
        std::fs::write(d.join("nix/shell.nix"), "{ a = 1; }").unwrap();
        let key = || {
            let i = read_inputs(d).unwrap();
            cache_key(
                &i.flake_nix,
                i.flake_lock.as_deref(),
                &i.imports,
                "s",
                "v",
                "default",
            )
        };
        let before = key();
        assert_eq!(before, key(), "the same files, the same key");
        std::fs::write(d.join("nix/shell.nix"), "{ a = 2; }").unwrap();
        let edited = key();
        assert_ne!(edited, before, "an imported file's edit changes the key");
        std::fs::write(d.join("README.md"), "not nix").unwrap();
        std::fs::write(d.join("node_modules/x/y.nix"), "{ }").unwrap();
        assert_eq!(key(), edited, "other files, and node_modules, do not count");
        std::fs::rename(d.join("nix/shell.nix"), d.join("nix/other.nix")).unwrap();
        assert_ne!(key(), edited, "a renamed file changes the key");
    }

    #[test]
    fn the_cache_key_changes_with_each_input() {
        let key = |nix: &[u8], lock: Option<&[u8]>, sys: &str, ver: &str, shell: &str| {
            cache_key(nix, lock, b"", sys, ver, shell)
        };
        let base = key(b"{ }", None, "x86_64-linux", "nix (Nix) 2.8.0", "default");
        assert_eq!(base.len(), 64);
        assert!(base.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            base,
            key(b"{ }", None, "x86_64-linux", "nix (Nix) 2.8.0", "default")
        );
        let changed = [
            key(b"{ } ", None, "x86_64-linux", "nix (Nix) 2.8.0", "default"),
            key(
                b"{ }",
                Some(b""),
                "x86_64-linux",
                "nix (Nix) 2.8.0",
                "default",
            ),
            key(b"{ }", None, "aarch64-linux", "nix (Nix) 2.8.0", "default"),
            key(b"{ }", None, "x86_64-linux", "nix (Nix) 2.18.1", "default"),
            key(b"{ }", None, "x86_64-linux", "nix (Nix) 2.8.0", "ci"),
            // Bytes moved between parts are a different input.
            key(b"{ }x", None, "86_64-linux", "nix (Nix) 2.8.0", "default"),
        ];
        for (i, k) in changed.iter().enumerate() {
            assert_ne!(*k, base, "case {i}");
        }
    }

    #[test]
    fn dev_shell_names_are_plain_attributes() {
        assert_eq!(validate_dev_shell("").unwrap(), "default");
        for ok in ["default", "ci", "_x", "rust-1_80'", "A9"] {
            assert_eq!(validate_dev_shell(ok).unwrap(), ok);
        }
        let long = "a".repeat(DEV_SHELL_MAX + 1);
        for bad in ["a.b", "x#y", "1x", "-x", "a b", "é", "\"q\"", long.as_str()] {
            match validate_dev_shell(bad) {
                Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "nix.dev_shell"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn flake_dirs_must_be_absolute_directories_with_a_flake_nix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        let empty = dir.join("empty");
        std::fs::create_dir(&empty).unwrap();
        let cases: [(&Path, &str); 4] = [
            (Path::new("relative/dir"), "not an absolute path"),
            (&dir.join("missing"), "No such file"),
            (&file, "not a directory"),
            (&empty, "has no flake.nix"),
        ];
        for (path, want) in cases {
            match read_inputs(path) {
                Err(Error::InvalidArgument { field, reason }) => {
                    assert_eq!(field, "nix.flake_dir");
                    assert!(reason.contains(want), "{path:?}: {reason}");
                    assert!(reason.contains(&*path.to_string_lossy()), "{reason}");
                }
                Err(other) => panic!("{path:?}: {other:?}"),
                Ok(_) => panic!("{path:?}: accepted"),
            }
        }
        std::fs::write(empty.join("flake.nix"), "{ }").unwrap();
        let inputs = read_inputs(&empty).unwrap();
        assert_eq!(inputs.flake_nix, b"{ }");
        assert!(inputs.flake_lock.is_none());
        std::fs::write(empty.join("flake.lock"), "{}").unwrap();
        assert_eq!(read_inputs(&empty).unwrap().flake_lock.unwrap(), b"{}");
    }

    #[test]
    fn the_cache_round_trips_with_private_modes_and_a_damaged_entry_is_a_miss() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache").join("nix");
        let entry = Entry {
            format: KEY_FORMAT.to_string(),
            flake: "/f".into(),
            dev_shell: "default".into(),
            nix: "nix (Nix) 2.8.0".into(),
            env: map(&[("TEND_NIX_TEST", "1")]),
        };
        write_cache(&dir, "k.json", &entry).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("k.json")), 0o600);
        assert_eq!(read_cache(&dir.join("k.json")), Some(entry.env.clone()));
        // Overwriting works, and leaves no temp file behind.
        write_cache(&dir, "k.json", &entry).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::write(dir.join("bad.json"), "{\"env\": ").unwrap();
        assert_eq!(read_cache(&dir.join("bad.json")), None);
        assert_eq!(read_cache(&dir.join("missing.json")), None);
    }

    #[test]
    fn error_tails_keep_the_last_lines_and_fit_a_status_message() {
        let stderr: String = (1..=30).map(|i| format!("line {i}\n\n")).collect();
        let t = tail(stderr.as_bytes(), 1024);
        assert_eq!(t.lines().count(), TAIL_LINES);
        assert!(t.starts_with("line 21\n") && t.ends_with("line 30"), "{t}");

        let long: String = (0..10)
            .map(|i| format!("{i}{}\n", "é".repeat(300)))
            .collect();
        let head = "nix print-dev-env for dev shell \"default\" failed; nix said:\n".to_string();
        let m = with_tail(head.clone(), long.as_bytes());
        assert!(m.len() <= MESSAGE_MAX, "{}", m.len());
        assert!(m.starts_with(&head) && m.ends_with("éé"), "{m}");
        assert!(m[head.len()..].starts_with('…'), "{m}");
        assert!(with_tail(head, b"").ends_with("(nothing on stderr)"));
    }
}
