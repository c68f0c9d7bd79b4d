//! The `tend` command line: `serve` runs the daemon, the rest are clients of it.
mod agent;
pub mod connect;
mod env;
mod inspect;
mod plugin;
mod ready;
mod run;
pub mod serve_hint;
pub mod tls;
mod tty;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, Limits};

/// tend runs and tends processes and PTY sessions for other programs, over gRPC.
#[derive(Parser, Debug)]
#[command(name = "tend", version)]
pub struct Cli {
    /// The daemon to talk to: unix:///path/tend.sock, tls://host:port, tcp://host:port or a
    /// socket path. Default: the socket in the state dir.
    #[arg(long, global = true, env = "TEND_ADDR")]
    pub connect: Option<String>,
    /// Bearer token for a TCP or TLS daemon (default: the state dir's token file).
    #[arg(long, global = true, env = "TEND_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// tls://: the CA file (PEM) the daemon's certificate must chain to; for a generated
    /// certificate, the daemon's <state-dir>/tls-cert.pem (the default, when it is here).
    #[arg(long, global = true, env = "TEND_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// tls://: the daemon certificate's SHA-256 fingerprint (sha256:…, as `tend serve` logs
    /// it), pinned as ssh pins a host key.
    #[arg(
        long,
        global = true,
        env = "TEND_TLS_FINGERPRINT",
        value_name = "sha256:HEX"
    )]
    pub tls_fingerprint: Option<String>,
    /// tls://: a client certificate (PEM) signed by the daemon's --tls-client-ca.
    #[arg(long, global = true, env = "TEND_TLS_CLIENT_CERT", value_name = "FILE")]
    pub tls_client_cert: Option<PathBuf>,
    /// tls://: the private key (PEM) of --tls-client-cert.
    #[arg(long, global = true, env = "TEND_TLS_CLIENT_KEY", value_name = "FILE")]
    pub tls_client_key: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. Wherever a command takes an `<ID>`, a process's name works too.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon (a unix socket in the state dir, mode 0600; the native runner).
    Serve(ServeArgs),
    /// Run a command through the daemon as if it ran here, and exit with its code.
    ///
    /// Every byte of output is delivered: the stream is lossless, so while this terminal or pipe
    /// reads slowly, the command blocks on its writes (as under ssh). Ctrl-C, SIGTERM, SIGHUP and
    /// SIGQUIT received by `tend run` are forwarded to the command's process group; a second
    /// Ctrl-C within 2 seconds sends SIGKILL, a third leaves at once. When stdout is a
    /// closed pipe (`tend run -- yes | head -1`) the command gets SIGPIPE and `tend run` exits
    /// 141 quietly. If `tend run` itself dies or its connection drops, the daemon stops the command
    /// (SIGTERM, then SIGKILL after its grace period). `--detach` starts it and prints its id
    /// instead; with a --ready-… probe, once the command is ready.
    ///
    /// Exit codes: the command's code; 128+N when a signal N killed it; 127 when the program
    /// is not found, 126 when it is not executable; 141 on a closed stdout; 254 when output was
    /// lost on the way (never in a normal run; see --allow-gaps); 1 when tend itself failed.
    /// With --detach and a --ready-… probe: 0 once ready; the command's code (1 for 0) when it
    /// exited before it was ready, its output's tail on stderr; 124 when --ready-timeout
    /// passed first (it runs on). The id is printed in every case.
    #[command(verbatim_doc_comment)]
    Run {
        /// Run in a pseudo-terminal, with this terminal in raw mode (Ctrl-C is then typed into
        /// the command's terminal, not forwarded as a signal).
        #[arg(short = 't', long)]
        pty: bool,
        /// Forward this terminal's stdin to the command (closed when stdin ends).
        #[arg(short, long)]
        interactive: bool,
        /// Start the command, print its id and exit; it runs on in the daemon (see `tend logs`,
        /// `tend wait`, `tend kill`).
        #[arg(short, long, conflicts_with_all = ["pty", "interactive"])]
        detach: bool,
        /// Environment variable KEY=VALUE for the command (repeatable).
        #[arg(short = 'e', long = "var", value_name = "KEY=VALUE", value_parser = key_value)]
        env: Vec<(String, String)>,
        /// Run in this environment (an id or name from `tend env ls`; default: native, the
        /// host).
        #[arg(long = "env", value_name = "ENV", value_parser = environment_id)]
        environment: Option<String>,
        /// Working directory of the command (default: the daemon's).
        #[arg(long, value_name = "DIR")]
        cwd: Option<String>,
        /// A unique name for the process, usable wherever an id is.
        #[arg(long)]
        name: Option<String>,
        /// Exit with the command's code even if output was lost (a gap) on the way.
        #[arg(long)]
        allow_gaps: bool,
        #[command(flatten)]
        ready: ready::ReadyArgs,
        #[command(flatten)]
        ready_wait: ready::ReadyWait,
        /// Niceness of the command, -20 (most favoured; below 0 needs CAP_SYS_NICE) to 19.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        nice: Option<i32>,
        /// OOM score adjustment of the command, -1000 (never killed) to 1000 (killed first);
        /// default: the score the daemon started with.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        oom_score_adj: Option<i32>,
        /// Memory limit of the command's tree (its cgroup's memory.max): bytes, or with a
        /// suffix K, M, G or T (powers of 1024), e.g. 512M.
        #[arg(long, value_name = "SIZE", value_parser = run::parse_size)]
        memory_max: Option<u64>,
        /// Most processes and threads the command's tree may hold (its cgroup's pids.max).
        #[arg(long, value_name = "N")]
        pids_max: Option<u64>,
        /// The command and its arguments. Everything from the first of them on belongs to the
        /// command, options included (`tend run ls -l`); `--` before it also works.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        argv: Vec<String>,
    },
    /// List processes, running and exited, with what each running one's tree uses (state, CPU
    /// %, resident memory, processes) and the ports it listens on.
    Ps {
        /// Only processes carrying this tag KEY=VALUE (repeatable: all of them).
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = key_value)]
        tags: Vec<(String, String)>,
        /// Only running or only exited processes.
        #[arg(long, value_parser = ["running", "exited"])]
        state: Option<String>,
        /// Only the process with this name.
        #[arg(long)]
        name: Option<String>,
        /// Only processes that listen on a port.
        #[arg(long)]
        listening: bool,
        /// Refresh every second (every N seconds with -w N) until interrupted.
        #[arg(short = 'w', long = "watch", value_name = "SECS", num_args = 0..=1, default_missing_value = "1")]
        watch: Option<u64>,
    },
    /// Print a process's retained output; -f follows it until it exits.
    ///
    /// Reads losslessly: while following, the process waits for this reader rather than
    /// overwrite what it has not printed. Output no longer retained (evicted from the ring, or
    /// before --from) is reported on stderr, and tend exits 254 unless --allow-gaps.
    Logs {
        /// Process id or name.
        id: String,
        /// Follow live output until the process exits.
        #[arg(short, long)]
        follow: bool,
        /// Start at this byte offset of each stream.
        #[arg(long, default_value_t = 0, value_name = "OFFSET")]
        from: u64,
        /// Exit 0 even when part of the output was no longer retained.
        #[arg(long)]
        allow_gaps: bool,
    },
    /// Signal a process's group (SIGTERM by default).
    Kill {
        /// Process id or name.
        id: String,
        /// The signal: a name (TERM, SIGKILL, int) or a number.
        #[arg(short, long, default_value = "TERM")]
        signal: String,
        /// Only the leader, not its group.
        #[arg(long)]
        leader: bool,
    },
    /// Wait for a process to exit; exits with its code (128+N when signal N killed it).
    ///
    /// With --ready, wait until a process started with a readiness probe is ready instead:
    /// exits 0 once ready; with the command's code (1 for 0) when it exited first, its output's
    /// tail on stderr; 124 when --timeout passed first.
    Wait {
        /// Process id or name.
        id: String,
        /// Wait until it is ready (its readiness probe succeeded), not until it exits.
        #[arg(long)]
        ready: bool,
        /// Give up after this many seconds and exit 124 (default: no limit).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Print the bounded head+tail view of a process's output (16 KiB each, long lines cut).
    Output {
        /// Process id or name.
        id: String,
    },
    /// Forget an exited process (--force kills a running one first).
    Rm {
        /// Process id or name.
        id: String,
        /// Kill the process's group first if it is still running.
        #[arg(long)]
        force: bool,
    },
    /// Named interactive agents in their own PTYs.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Environments processes run in: native (the host), Docker containers, Nix dev shells.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Plugins: executables that serve gRPC, started by the daemon and announced by a handshake
    /// line (go-plugin's 1|1|unix|/path.sock|grpc, or codefly's).
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// What this host can run: Docker, Nix, languages and tools on PATH, CPUs, memory, GPUs.
    Caps {
        /// Probe again instead of answering from the cache (a minute old at most).
        #[arg(long)]
        refresh: bool,
    },
    /// Attach this terminal to an agent; Ctrl-] detaches. Stays attached across the agent's
    /// restarts until it stops for good.
    Attach {
        /// The agent's name.
        name: String,
        /// Detach when the current run exits instead of following the agent's next run.
        #[arg(long)]
        no_follow: bool,
    },
    /// Type a message (and Enter) into an agent; prints the outcome and exits 0 when it was
    /// delivered, 1 otherwise (not running, timed out waiting for idle).
    Nudge {
        /// The agent's name.
        name: String,
        /// The text to type; Enter is added.
        message: String,
        /// Wait until the agent is idle before typing.
        #[arg(long)]
        wait_idle: bool,
        /// Seconds to wait for idle.
        #[arg(long, default_value_t = 30, value_name = "SECS")]
        timeout: u64,
    },
}

/// `tend agent …`.
#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Start a named agent in its own PTY (the size of this terminal, if it is one).
    Spawn {
        /// A unique name for the agent.
        name: String,
        /// Restart it when it exits (with backoff) and bring it back when the daemon restarts.
        #[arg(long)]
        crew: bool,
        /// Environment variable KEY=VALUE for the agent (repeatable).
        #[arg(short = 'e', long = "var", value_name = "KEY=VALUE", value_parser = key_value)]
        env: Vec<(String, String)>,
        /// Run in this environment (an id or name from `tend env ls`; default: native).
        #[arg(long = "env", value_name = "ENV", value_parser = environment_id)]
        environment: Option<String>,
        /// Working directory of the agent.
        #[arg(long, value_name = "DIR")]
        cwd: Option<String>,
        /// A prompt file, passed to the program as TEND_PROMPT_FILE.
        #[arg(long, value_name = "FILE")]
        prompt_file: Option<String>,
        /// The program and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        argv: Vec<String>,
    },
    /// List agents.
    Ls,
    /// Stop an agent (SIGTERM, SIGKILL after --timeout-ms); a crew agent stays stopped.
    Stop {
        /// The agent's name.
        name: String,
        /// Milliseconds from SIGTERM to SIGKILL.
        #[arg(long, default_value_t = 5000, value_name = "MS")]
        timeout_ms: u64,
    },
    /// Restart an agent by hand.
    Respawn {
        /// The agent's name.
        name: String,
    },
    /// Stop and forget an agent.
    Rm {
        /// The agent's name.
        name: String,
    },
}

/// `tend plugin …`.
#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Load a plugin and wait until it serves; prints its address and services.
    Load {
        /// Environment variable KEY=VALUE for the plugin (repeatable).
        #[arg(short = 'e', long = "var", value_name = "KEY=VALUE", value_parser = key_value)]
        env: Vec<(String, String)>,
        /// Run in this environment (an id or name from `tend env ls`; default: native).
        #[arg(long = "env", value_name = "ENV", value_parser = environment_id)]
        environment: Option<String>,
        /// Working directory of the plugin.
        #[arg(long, value_name = "DIR")]
        cwd: Option<String>,
        /// The magic cookie the plugin expects (a go-plugin HandshakeConfig's MagicCookieKey
        /// and MagicCookieValue); default: tend's own.
        #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
        cookie: Option<(String, String)>,
        /// App protocol versions the host offers, comma-separated (default 1).
        #[arg(long, value_name = "1,2", value_delimiter = ',')]
        protocol_versions: Vec<u32>,
        /// Milliseconds to wait for the handshake line (default 30000).
        #[arg(long, value_name = "MS")]
        handshake_timeout_ms: Option<u32>,
        /// Milliseconds to wait, after the handshake line, for health to answer SERVING
        /// (default 10000).
        #[arg(long, value_name = "MS")]
        dial_timeout_ms: Option<u32>,
        /// Restart it when it exits, with backoff (the crew agents' policy).
        #[arg(long)]
        restart: bool,
        /// Unload's grace period: SIGTERM at half of it, SIGKILL at all of it.
        #[arg(long, value_name = "MS")]
        grace_ms: Option<u32>,
        /// Load a package under this name instead of the package's NAME.
        #[arg(long = "as", value_name = "NAME")]
        rename: Option<String>,
        /// The plugin's name, unique among loaded plugins (then BINARY follows); or a package
        /// from the daemon's stores, PUBLISHER/NAME[@VERSION] (a version, a range like ^1.2, or
        /// latest; default latest), installed first when needed and loaded under its NAME (or
        /// --as), with the arguments that follow. A name has no `/`; a package always has one.
        name: String,
        /// The plugin's executable (a path, or a name on PATH) and its arguments; after a
        /// package, only the arguments. Everything from here on belongs to the plugin.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "BINARY"
        )]
        command: Vec<String>,
    },
    /// List plugins, in any state.
    Ls,
    /// Print a plugin's output (stderr, and stdout including what preceded its handshake).
    Logs {
        /// The plugin's name.
        name: String,
        /// Follow live output, across restarts, until it is unloaded.
        #[arg(short, long)]
        follow: bool,
        /// Only this stream.
        #[arg(long, value_parser = ["stdout", "stderr"])]
        stream: Option<String>,
        /// Start this many bytes before the end of each stream.
        #[arg(long, default_value_t = 0, value_name = "BYTES")]
        tail: u32,
    },
    /// Find a package in the daemon's stores: the highest matching version and its store.
    Resolve {
        /// PUBLISHER/NAME[@VERSION] (a version, a range like ^1.2 or ">=1.0, <2", or latest).
        package: String,
    },
    /// Install a package into the daemon's local cache, with progress; prints the binary's path.
    Install {
        /// PUBLISHER/NAME[@VERSION], as for resolve.
        package: String,
    },
    /// Push a binary to an OCI registry as a plugin version, for this host's platform (run
    /// here, not by the daemon; credentials from ~/.docker/config.json).
    Push {
        /// The plugin's executable.
        binary: std::path::PathBuf,
        /// REGISTRY[:PORT]/[PREFIX/]PUBLISHER/NAME:VERSION, e.g. 127.0.0.1:5000/acme/kv:1.2.0.
        /// Plain HTTP for a loopback registry, or with --plain-http.
        target: String,
        /// Talk plain HTTP to a registry that is not on loopback.
        #[arg(long)]
        plain_http: bool,
    },
    /// Stop a plugin in stages (Shutdown, SIGTERM, SIGKILL) and forget it.
    Unload {
        /// The plugin's name.
        name: String,
        /// Milliseconds of grace: SIGTERM at half, SIGKILL at all of it (default: the plugin's,
        /// else the daemon's).
        #[arg(long, value_name = "MS")]
        grace_ms: Option<u32>,
    },
}

/// Options of `tend serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// State directory (socket, token, pgid records). Default: $XDG_RUNTIME_DIR/tend, else
    /// ~/.tend.
    #[arg(long, env = "TEND_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Also listen on TCP (repeatable): tls://HOST:PORT with TLS (a certificate is generated
    /// into the state dir unless --tls-cert), or tcp://127.0.0.1:PORT, plaintext, on loopback
    /// only (unless --insecure-plaintext). Either requires the bearer token in
    /// <state-dir>/token (or, on TLS, a client certificate signed by --tls-client-ca).
    #[arg(long, value_name = "tls://HOST:PORT")]
    pub listen: Vec<String>,
    /// The TLS listeners' certificate chain (PEM) instead of the generated one; reloaded on
    /// SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert; reloaded on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Accept client certificates signed by this CA (PEM) on TLS listeners: such a client needs
    /// no token (its certificate's subject is logged with each Start).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Refuse TLS clients without a certificate signed by --tls-client-ca (at the handshake).
    #[arg(long, requires = "tls_client_ca")]
    pub tls_require_client_cert: bool,
    /// Allow plaintext tcp:// listeners on addresses other than loopback (a warning is logged at
    /// every start): only behind a tunnel or on a network you trust.
    #[arg(long)]
    pub insecure_plaintext: bool,
    /// Milliseconds from SIGTERM to SIGKILL when stopping processes (shutdown, a vanished
    /// client's Run).
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub grace_ms: u64,
    /// Processes running at once; Start beyond it fails with ResourceExhausted.
    #[arg(long, default_value_t = Limits::default().max_running, value_name = "N")]
    pub max_running: usize,
    /// Exited processes kept; the oldest are evicted beyond it.
    #[arg(long, default_value_t = Limits::default().max_exited, value_name = "N")]
    pub max_exited: usize,
    /// Output bytes of exited processes kept in all; the oldest are evicted beyond it.
    #[arg(long, default_value_t = Limits::default().max_exited_bytes, value_name = "BYTES")]
    pub max_exited_bytes: u64,
    /// Bytes of output kept from the start of each stream.
    #[arg(long, default_value_t = Limits::default().head_bytes, value_name = "BYTES")]
    pub head_bytes: usize,
    /// Bytes of output kept from the end of each stream (the ring): how far a lossless reader
    /// may fall behind before the process waits for it.
    #[arg(long, default_value_t = Limits::default().tail_bytes, value_name = "BYTES")]
    pub tail_bytes: usize,
    /// Milliseconds to keep reading output held open by a background child after the leader
    /// exits (time spent waiting for a lossless reader does not count).
    #[arg(long, default_value_t = Limits::default().drain_timeout.as_millis() as u64, value_name = "MS")]
    pub drain_ms: u64,
    /// Bytes of argv, env, cwd and tags together in one request.
    #[arg(long, default_value_t = Limits::default().max_spec_bytes, value_name = "BYTES")]
    pub max_spec_bytes: usize,
    /// Bytes in one SendInput call or Attach input message.
    #[arg(long, default_value_t = Limits::default().max_input_bytes, value_name = "BYTES")]
    pub max_input_bytes: usize,
    /// Input bytes queued for a process that has not read them yet.
    #[arg(long, default_value_t = Limits::default().max_pending_input, value_name = "BYTES")]
    pub max_pending_input: usize,
    /// Streaming calls (Run, Connect, Attach, Watch) open at once.
    #[arg(long, default_value_t = Limits::default().max_streams, value_name = "N")]
    pub max_streams: usize,
    /// Agents registered at once, running or not.
    #[arg(long, default_value_t = Limits::default().max_agents, value_name = "N")]
    pub max_agents: usize,
    /// Calls in flight at once, on all listeners, counted from their first byte (a call that
    /// sends only headers too); beyond it a call fails with ResourceExhausted.
    #[arg(long, default_value_t = Limits::default().max_calls, value_name = "N")]
    pub max_calls: usize,
    /// Connections open at once on each listener; a new one beyond it is closed (and logged).
    #[arg(long, default_value_t = Limits::default().max_connections, value_name = "N")]
    pub max_connections: usize,
    /// Milliseconds a call may take to send its first message (an Attach its `open`); then it
    /// fails with DeadlineExceeded.
    #[arg(long, default_value_t = Limits::default().first_message.as_millis() as u64, value_name = "MS")]
    pub first_message_ms: u64,
    /// Milliseconds of PTY silence after which an agent is idle.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub quiescence_ms: u64,
    /// Run as a plugin of another tend (or any go-plugin host): requires the host's magic
    /// cookie, serves on a socket in PLUGIN_UNIX_SOCKET_DIR (also the state dir unless
    /// --state-dir), prints the handshake line `1|1|unix|PATH|grpc` on stdout, serves
    /// tend.v1.PluginService too, and stops on Shutdown, SIGTERM, or when its parent dies.
    #[arg(long)]
    pub handshake: bool,
    /// A plugin store, consulted in the order given (repeatable): `local` (the cache in the
    /// state dir), `oci://HOST[:PORT][/PREFIX]` (plain HTTP for loopback, or with
    /// `oci+http://`), `nix:FLAKE`. Default: local only.
    #[arg(long = "plugin-store", value_name = "STORE")]
    pub plugin_stores: Vec<String>,
}

/// `tend env …`.
// Parsed once per run of the CLI: the size of one variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum EnvCommand {
    /// Define an environment and print its id; `tend env init` makes it ready (a native one is
    /// ready at once).
    Create {
        /// native, docker, nix, or auto (docker when an engine answers and --image is given,
        /// nix when --flake has a flake.nix and nix is installed, else native).
        #[arg(long, default_value = "auto", value_parser = ["native", "docker", "nix", "auto"])]
        kind: String,
        /// A unique name, usable wherever the id is.
        #[arg(long)]
        name: Option<String>,
        /// Docker: the image.
        #[arg(long)]
        image: Option<String>,
        /// Docker: a local image tarball to import as --image (no registry needed).
        #[arg(long, value_name = "FILE")]
        image_tarball: Option<String>,
        /// Docker: a bind mount HOST:CONTAINER[:ro] (repeatable).
        #[arg(long = "mount", value_name = "HOST:CONTAINER[:ro]")]
        mounts: Vec<String>,
        /// Docker: a port mapping [IP:]HOST:CONTAINER[/udp] (repeatable).
        #[arg(long = "port", short = 'p', value_name = "[IP:]HOST:CONTAINER[/PROTO]")]
        ports: Vec<String>,
        /// Docker: a variable KEY=VALUE of the container (repeatable).
        #[arg(short = 'e', long = "var", value_name = "KEY=VALUE", value_parser = key_value)]
        env: Vec<(String, String)>,
        /// Docker: the working directory in the container.
        #[arg(long)]
        workdir: Option<String>,
        /// Docker: the user in the container.
        #[arg(long)]
        user: Option<String>,
        /// Nix: the directory of the flake (made absolute).
        #[arg(long, value_name = "DIR")]
        flake: Option<PathBuf>,
        /// Nix: the devShell attribute.
        #[arg(long, default_value = "default")]
        shell: String,
    },
    /// List environments.
    Ls,
    /// Make an environment ready (pull or import the image and start the container, or
    /// evaluate the flake), printing progress.
    Init {
        /// Environment id or name.
        id: String,
    },
    /// Stop an environment's processes and its container; `tend env init` starts it again.
    Stop {
        /// Environment id or name.
        id: String,
        /// Milliseconds from SIGTERM to SIGKILL.
        #[arg(long, value_name = "MS")]
        grace_ms: Option<u32>,
    },
    /// Stop an environment and remove all it holds (its container), and forget it.
    Rm {
        /// Environment id or name.
        id: String,
        /// Milliseconds from SIGTERM to SIGKILL.
        #[arg(long, value_name = "MS")]
        grace_ms: Option<u32>,
    },
}

fn environment_id(s: &str) -> Result<String, String> {
    if s.contains('=') {
        return Err(format!(
            "{s:?} looks like a variable: use -e KEY=VALUE (or --var) for variables; --env takes \
             an environment id or name"
        ));
    }
    Ok(s.to_string())
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

impl ServeArgs {
    /// The daemon configuration these options describe.
    pub fn config(&self, token: Option<String>) -> anyhow::Result<Config> {
        let mut c = Config::new(
            self.state_dir
                .clone()
                .unwrap_or_else(config::default_state_dir),
        );
        for l in &self.listen {
            if let Some(a) = l.strip_prefix("tcp://") {
                c.tcp.push(a.to_string());
            } else if let Some(a) = l.strip_prefix("tls://") {
                c.tls_listen.push(a.to_string());
            } else {
                anyhow::bail!(
                    "--listen {l:?}: use tls://HOST:PORT, or tcp://127.0.0.1:PORT (plaintext, \
                     loopback only)"
                );
            }
        }
        c.tls = config::TlsConfig {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            client_ca: self.tls_client_ca.clone(),
            require_client_cert: self.tls_require_client_cert,
        };
        c.insecure_plaintext = self.insecure_plaintext;
        c.token = token;
        c.plugin = self.handshake;
        c.plugin_stores = self.plugin_stores.clone();
        c.grace = Duration::from_millis(self.grace_ms);
        c.quiescence = Duration::from_millis(self.quiescence_ms);
        c.limits = Limits {
            max_running: self.max_running,
            max_exited: self.max_exited,
            max_exited_bytes: self.max_exited_bytes,
            head_bytes: self.head_bytes,
            tail_bytes: self.tail_bytes,
            drain_timeout: Duration::from_millis(self.drain_ms),
            max_spec_bytes: self.max_spec_bytes,
            max_input_bytes: self.max_input_bytes,
            max_pending_input: self.max_pending_input,
            max_streams: self.max_streams,
            max_agents: self.max_agents,
            max_calls: self.max_calls,
            max_connections: self.max_connections,
            first_message: Duration::from_millis(self.first_message_ms),
        };
        Ok(c)
    }
}

/// Run a client subcommand; returns the exit code.
pub async fn client(cli: Cli) -> anyhow::Result<i32> {
    let tls = tls::ClientTls {
        ca: cli.tls_ca.clone(),
        fingerprint: cli.tls_fingerprint.clone(),
        cert: cli.tls_client_cert.clone(),
        key: cli.tls_client_key.clone(),
    };
    let addr = connect::parse_addr(cli.connect.as_deref(), tls)?;
    let token = cli.token.clone();
    let agents = || connect::agent_client(&addr, token.clone());
    match cli.command {
        Command::Agent(cmd) => {
            let c = agents().await?;
            return match cmd {
                AgentCommand::Spawn {
                    name,
                    crew,
                    env,
                    environment,
                    cwd,
                    prompt_file,
                    argv,
                } => {
                    let spec = crate::pb::AgentSpec {
                        name,
                        argv,
                        env: env.into_iter().collect(),
                        cwd: cwd.unwrap_or_default(),
                        prompt_file: prompt_file.unwrap_or_default(),
                        size: tty::size().map(|(rows, cols)| crate::pb::PtySize { rows, cols }),
                        kind: if crew {
                            crate::pb::AgentKind::Crew
                        } else {
                            crate::pb::AgentKind::Task
                        } as i32,
                        restart: None,
                        environment_id: environment.unwrap_or_default(),
                    };
                    agent::spawn(c, spec).await
                }
                AgentCommand::Ls => agent::list(c).await,
                AgentCommand::Stop { name, timeout_ms } => agent::stop(c, name, timeout_ms).await,
                AgentCommand::Respawn { name } => agent::respawn(c, name).await,
                AgentCommand::Rm { name } => agent::remove(c, name).await,
            };
        }
        Command::Attach { name, no_follow } => {
            return agent::attach(agents().await?, name, !no_follow).await
        }
        Command::Nudge {
            name,
            message,
            wait_idle,
            timeout,
        } => return agent::nudge(agents().await?, name, message, wait_idle, timeout).await,
        Command::Env(cmd) => {
            return env::command(connect::runner_client(&addr, token).await?, cmd).await
        }
        Command::Caps { refresh } => {
            return env::caps(connect::runner_client(&addr, token).await?, refresh).await
        }
        Command::Plugin(PluginCommand::Push {
            binary,
            target,
            plain_http,
        }) => return plugin::push(&binary, &target, plain_http).await,
        Command::Plugin(cmd) => {
            let c = connect::loader_client(&addr, token).await?;
            return match cmd {
                PluginCommand::Load {
                    env,
                    environment,
                    cwd,
                    cookie,
                    protocol_versions,
                    handshake_timeout_ms,
                    dial_timeout_ms,
                    restart,
                    grace_ms,
                    rename,
                    name,
                    command,
                } => {
                    let (key, value) = cookie.unwrap_or_default();
                    let (name, binary, package, version, args) = if name.contains('/') {
                        let (package, version) = plugin::package_arg(&name)?;
                        let short = package.rsplit('/').next().unwrap_or_default().to_string();
                        let name = rename.unwrap_or(short);
                        (name, String::new(), package, version, command)
                    } else {
                        let Some((binary, args)) = command.split_first() else {
                            anyhow::bail!(
                                "give the plugin's executable after its name ({name} BINARY \
                                 [ARGS]...), or load a package: PUBLISHER/NAME[@VERSION]"
                            );
                        };
                        (
                            name,
                            binary.clone(),
                            String::new(),
                            String::new(),
                            args.to_vec(),
                        )
                    };
                    let spec = crate::pb::PluginSpec {
                        name,
                        binary,
                        package,
                        version,
                        args,
                        env: env.into_iter().collect(),
                        cwd: cwd.unwrap_or_default(),
                        environment_id: environment.unwrap_or_default(),
                        handshake_timeout_ms: handshake_timeout_ms.unwrap_or(0),
                        dial_timeout_ms: dial_timeout_ms.unwrap_or(0),
                        magic_cookie_key: key,
                        magic_cookie_value: value,
                        protocol_versions,
                        restart: restart.then(crate::pb::RestartPolicy::default),
                        unload_grace_ms: grace_ms,
                    };
                    plugin::load(c, spec).await
                }
                PluginCommand::Ls => plugin::list(c).await,
                PluginCommand::Logs {
                    name,
                    follow,
                    stream,
                    tail,
                } => {
                    let stream = match stream.as_deref() {
                        Some("stdout") => crate::pb::Stream::Stdout,
                        Some("stderr") => crate::pb::Stream::Stderr,
                        _ => crate::pb::Stream::Unspecified,
                    };
                    plugin::logs(c, name, stream, tail, follow).await
                }
                PluginCommand::Unload { name, grace_ms } => plugin::unload(c, name, grace_ms).await,
                PluginCommand::Resolve { package } => plugin::resolve(c, &package).await,
                PluginCommand::Install { package } => plugin::install(c, &package).await,
                PluginCommand::Push { .. } => unreachable!("pushed above, without a daemon"),
            };
        }
        _ => {}
    }
    let c = connect::process_client(&addr, cli.token).await?;
    match cli.command {
        Command::Agent(_)
        | Command::Attach { .. }
        | Command::Nudge { .. }
        | Command::Env(_)
        | Command::Plugin(_)
        | Command::Caps { .. } => {
            unreachable!("handled above")
        }
        Command::Serve(_) => unreachable!("serve is not a client command"),
        Command::Run {
            pty,
            interactive,
            detach,
            env,
            environment,
            cwd,
            name,
            allow_gaps,
            ready,
            ready_wait,
            nice,
            oom_score_adj,
            memory_max,
            pids_max,
            argv,
        } => {
            let probe = ready.probe(&ready_wait)?;
            run::run(
                c,
                run::RunArgs {
                    argv,
                    env,
                    environment,
                    cwd,
                    name,
                    pty,
                    interactive,
                    detach,
                    allow_gaps,
                    ready: probe,
                    ready_timeout: Duration::from_secs(ready_wait.ready_timeout),
                    nice,
                    oom_score_adj,
                    memory_max,
                    pids_max,
                },
            )
            .await
        }
        Command::Ps {
            tags,
            state,
            name,
            listening,
            watch,
        } => {
            let request = crate::pb::ListRequest {
                state: match state.as_deref() {
                    Some("running") => crate::pb::ProcessState::Running,
                    Some("exited") => crate::pb::ProcessState::Exited,
                    _ => crate::pb::ProcessState::Unspecified,
                } as i32,
                tags: tags.into_iter().collect(),
                with_usage: true,
                with_ports: true,
                listening,
                name: name.unwrap_or_default(),
            };
            inspect::ps(c, request, watch).await
        }
        Command::Logs {
            id,
            follow,
            from,
            allow_gaps,
        } => inspect::logs(c, id, follow, from, allow_gaps).await,
        Command::Kill { id, signal, leader } => inspect::kill(c, id, signal, leader).await,
        Command::Wait { id, ready, timeout } => {
            let timeout = timeout.map(Duration::from_secs);
            if ready {
                let mut c = c;
                ready::wait(&mut c, &id, timeout.unwrap_or_default()).await
            } else {
                inspect::wait(c, id, timeout).await
            }
        }
        Command::Output { id } => inspect::output(c, id).await,
        Command::Rm { id, force } => inspect::remove(c, id, force).await,
    }
}
