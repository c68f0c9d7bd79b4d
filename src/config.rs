//! Daemon configuration: where its state lives, what it listens on, and its limits.
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds the socket, the token and the pgid records.
    pub state_dir: PathBuf,
    /// Plaintext TCP listeners (`127.0.0.1:7070`); each requires the bearer token. Loopback
    /// addresses only, unless `insecure_plaintext`.
    pub tcp: Vec<String>,
    /// TLS listeners (`0.0.0.0:7443`); each requires the bearer token or a client certificate.
    pub tls_listen: Vec<String>,
    /// The TLS listeners' certificate and what they ask of clients.
    pub tls: TlsConfig,
    /// Serve plaintext TCP on addresses other than loopback (with a warning at every start).
    pub insecure_plaintext: bool,
    /// The bearer token for TCP; generated into `<state_dir>/token` when absent.
    pub token: Option<String>,
    /// From SIGTERM to SIGKILL when stopping processes.
    pub grace: Duration,
    /// Limits on what clients may ask for.
    pub limits: Limits,
    /// Agents quiet this long are idle (default 2 s).
    pub quiescence: Duration,
    /// Started as a plugin (`tend serve --handshake`): PluginService is served too.
    pub plugin: bool,
    /// Plugin stores, in the order Resolve prefers them (`local`, `oci://…`, `nix:…`); empty
    /// means `local` only.
    pub plugin_stores: Vec<String>,
}

/// The TLS listeners' certificate (generated into the state dir unless given) and client
/// certificates.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// The operator's certificate chain (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// The operator's private key (PEM), with `cert`.
    pub key: Option<PathBuf>,
    /// Clients presenting a certificate signed by this CA (PEM) need no token.
    pub client_ca: Option<PathBuf>,
    /// Clients without such a certificate are refused at the handshake.
    pub require_client_cert: bool,
}

/// Every bound the daemon keeps. Hitting one is an error or a documented truncation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Processes running at once; `Start` beyond it is `ResourceExhausted`.
    pub max_running: usize,
    /// Exited processes kept for `Get`/`Output`; the oldest are evicted beyond it.
    pub max_exited: usize,
    /// Output bytes kept of exited processes in all; the oldest are evicted beyond it.
    pub max_exited_bytes: u64,
    /// Bytes kept from the start of each output stream.
    pub head_bytes: usize,
    /// Bytes kept from the end of each output stream (the ring).
    pub tail_bytes: usize,
    /// After the leader exits, how long to keep reading output a background child still holds.
    pub drain_timeout: Duration,
    /// Bytes of argv, env, cwd and tags together in one request.
    pub max_spec_bytes: usize,
    /// Bytes in one `SendInput` or `Attach` input message.
    pub max_input_bytes: usize,
    /// Bytes written to a process but not yet read by it.
    pub max_pending_input: usize,
    /// Streaming calls (Run, Connect, Attach, Watch) open at once.
    pub max_streams: usize,
    /// Agents registered at once, running or not.
    pub max_agents: usize,
    /// Calls in flight at once, on all listeners, counted from their first byte.
    pub max_calls: usize,
    /// Connections open at once on each listener.
    pub max_connections: usize,
    /// How long a call may take to send its first message (an Attach its `open`).
    pub first_message: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_running: 512,
            max_exited: 1000,
            max_exited_bytes: 1 << 30,
            head_bytes: 1 << 20,
            tail_bytes: 8 << 20,
            drain_timeout: Duration::from_secs(2),
            max_spec_bytes: 1 << 20,
            max_input_bytes: 1 << 20,
            max_pending_input: 4 << 20,
            max_streams: 1024,
            max_agents: 256,
            max_calls: 4096,
            max_connections: 256,
            first_message: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// A configuration with default limits for a state dir.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Config {
            state_dir: state_dir.into(),
            tcp: Vec::new(),
            tls_listen: Vec::new(),
            tls: TlsConfig::default(),
            insecure_plaintext: false,
            token: None,
            grace: Duration::from_secs(5),
            limits: Limits::default(),
            quiescence: Duration::from_secs(2),
            plugin: false,
            plugin_stores: Vec::new(),
        }
    }

    /// The unix socket the daemon always listens on.
    pub fn socket_path(&self) -> PathBuf {
        socket_in(&self.state_dir)
    }

    /// Where the TCP bearer token is kept.
    pub fn token_path(&self) -> PathBuf {
        self.state_dir.join("token")
    }
}

/// The socket path inside a state dir.
pub fn socket_in(state_dir: &Path) -> PathBuf {
    state_dir.join("tend.sock")
}

/// `$TEND_STATE_DIR`, else `$XDG_RUNTIME_DIR/tend`, else `~/.tend`.
pub fn default_state_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = var("TEND_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = var("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir).join("tend");
    }
    let home = var("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    home.join(".tend")
}
