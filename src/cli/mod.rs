//! The `tend` command line: `serve` runs the daemon, the rest are clients of it.
mod agent;
pub mod connect;
mod inspect;
mod run;
mod tty;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};

/// tend runs and tends processes and PTY sessions for other programs, over gRPC.
#[derive(Parser, Debug)]
#[command(name = "tend", version)]
pub struct Cli {
    /// The daemon to talk to: unix:///path/tend.sock, tcp://host:port or a socket path.
    /// Default: the socket in the state dir.
    #[arg(long, global = true, env = "TEND_ADDR")]
    pub connect: Option<String>,
    /// Bearer token for a TCP daemon (default: the state dir's token file).
    #[arg(long, global = true, env = "TEND_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
    /// Run a command through the daemon, streaming its output; exits with its code.
    Run {
        /// Run in a pseudo-terminal, with this terminal in raw mode.
        #[arg(long)]
        pty: bool,
        /// Forward this terminal's stdin to the command.
        #[arg(short, long)]
        interactive: bool,
        /// Environment variable for the command (repeatable).
        #[arg(long = "env", short = 'e', value_parser = key_value)]
        env: Vec<(String, String)>,
        /// Working directory.
        #[arg(long)]
        cwd: Option<String>,
        /// A unique name for the process.
        #[arg(long)]
        name: Option<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// List processes.
    Ps,
    /// Print a process's output; -f follows it until exit.
    Logs {
        id: String,
        #[arg(short, long)]
        follow: bool,
        /// Start at this byte offset of each stream.
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
    /// Signal a process group (SIGTERM by default).
    Kill {
        id: String,
        #[arg(short, long, default_value = "TERM")]
        signal: String,
        /// Only the leader, not its group.
        #[arg(long)]
        leader: bool,
    },
    /// Wait for a process to exit; exits with its code.
    Wait { id: String },
    /// Print the bounded head+tail view of a process's output.
    Output { id: String },
    /// Forget an exited process (--force kills a running one first).
    Rm {
        id: String,
        #[arg(long)]
        force: bool,
    },
    /// Named interactive agents in their own PTYs.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Attach this terminal to an agent; Ctrl-] detaches. Stays attached across the agent's
    /// restarts until it stops for good.
    Attach {
        name: String,
        /// Detach when the current run exits instead of following the agent's next run.
        #[arg(long)]
        no_follow: bool,
    },
    /// Type a message (and Enter) into an agent; exits 0 when delivered.
    Nudge {
        name: String,
        message: String,
        /// Wait until the agent is idle before typing.
        #[arg(long)]
        wait_idle: bool,
        /// Seconds to wait for idle.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

/// `tend agent …`.
#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Start a named agent.
    Spawn {
        name: String,
        /// Restart it when it exits (with backoff) and bring it back when the daemon restarts.
        #[arg(long)]
        crew: bool,
        #[arg(long = "env", short = 'e', value_parser = key_value)]
        env: Vec<(String, String)>,
        #[arg(long)]
        cwd: Option<String>,
        /// A prompt file, passed to the program as TEND_PROMPT_FILE.
        #[arg(long)]
        prompt_file: Option<String>,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// List agents.
    Ls,
    /// Stop an agent (SIGTERM, SIGKILL after --timeout-ms); a crew agent stays stopped.
    Stop {
        name: String,
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// Restart an agent by hand.
    Respawn { name: String },
    /// Stop and forget an agent.
    Rm { name: String },
}

/// Options of `tend serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// State directory (socket, token, pgid records).
    #[arg(long, env = "TEND_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Also listen on TCP, e.g. tcp://127.0.0.1:7070 (requires the bearer token).
    #[arg(long)]
    pub listen: Vec<String>,
    /// Milliseconds from SIGTERM to SIGKILL when stopping processes.
    #[arg(long, default_value_t = 5000)]
    pub grace_ms: u64,
    /// Processes running at once.
    #[arg(long)]
    pub max_running: Option<usize>,
    /// Exited processes kept.
    #[arg(long)]
    pub max_exited: Option<usize>,
    /// Bytes of output kept from the start of each stream.
    #[arg(long)]
    pub head_bytes: Option<usize>,
    /// Bytes of output kept from the end of each stream.
    #[arg(long)]
    pub tail_bytes: Option<usize>,
    /// Milliseconds to keep reading output held open by a background child after exit.
    #[arg(long)]
    pub drain_ms: Option<u64>,
    /// Streaming calls (Run, Connect, Attach, Watch) open at once.
    #[arg(long)]
    pub max_streams: Option<usize>,
    /// Agents registered at once.
    #[arg(long)]
    pub max_agents: Option<usize>,
    /// Milliseconds of PTY silence after which an agent is idle.
    #[arg(long, default_value_t = 2000)]
    pub quiescence_ms: u64,
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
            match l.strip_prefix("tcp://") {
                Some(a) => c.tcp.push(a.to_string()),
                None => anyhow::bail!("--listen {l:?}: use tcp://HOST:PORT"),
            }
        }
        c.token = token;
        c.grace = Duration::from_millis(self.grace_ms);
        c.quiescence = Duration::from_millis(self.quiescence_ms);
        let l = &mut c.limits;
        if let Some(v) = self.max_running {
            l.max_running = v;
        }
        if let Some(v) = self.max_exited {
            l.max_exited = v;
        }
        if let Some(v) = self.head_bytes {
            l.head_bytes = v;
        }
        if let Some(v) = self.tail_bytes {
            l.tail_bytes = v;
        }
        if let Some(v) = self.max_streams {
            l.max_streams = v;
        }
        if let Some(v) = self.max_agents {
            l.max_agents = v;
        }
        if let Some(v) = self.drain_ms {
            l.drain_timeout = Duration::from_millis(v);
        }
        Ok(c)
    }
}

/// Run a client subcommand; returns the exit code.
pub async fn client(cli: Cli) -> anyhow::Result<i32> {
    let addr = connect::parse_addr(cli.connect.as_deref())?;
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
        _ => {}
    }
    let c = connect::process_client(&addr, cli.token).await?;
    match cli.command {
        Command::Agent(_) | Command::Attach { .. } | Command::Nudge { .. } => {
            unreachable!("handled above")
        }
        Command::Serve(_) => unreachable!("serve is not a client command"),
        Command::Run {
            pty,
            interactive,
            env,
            cwd,
            name,
            argv,
        } => {
            run::run(
                c,
                run::RunArgs {
                    argv,
                    env,
                    cwd,
                    name,
                    pty,
                    interactive,
                },
            )
            .await
        }
        Command::Ps => inspect::ps(c).await,
        Command::Logs { id, follow, from } => inspect::logs(c, id, follow, from).await,
        Command::Kill { id, signal, leader } => inspect::kill(c, id, signal, leader).await,
        Command::Wait { id } => inspect::wait(c, id).await,
        Command::Output { id } => inspect::output(c, id).await,
        Command::Rm { id, force } => inspect::remove(c, id, force).await,
    }
}
