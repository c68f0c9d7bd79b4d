//! The `tend` binary: parses the command line and calls the library.
use clap::Parser;
use tend::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    // Logs go to stderr: stdout belongs to the commands' output (and, for plugins, the handshake).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TEND_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tend: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        match cli.command {
            Command::Serve(ref args) => serve(args, cli.token.clone()).await,
            _ => tend::cli::client(cli).await,
        }
    });
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => {
                    eprintln!("tend: {:?}: {}", s.code(), s.message());
                    // The program could not be run: exit as a shell would (127, 126).
                    if let Some(code) = s
                        .metadata()
                        .get(tend::error::EXIT_CODE_KEY)
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                    {
                        std::process::exit(code);
                    }
                }
                None => eprintln!("tend: {e:#}"),
            }
            std::process::exit(1);
        }
    }
}

async fn serve(args: &tend::cli::ServeArgs, token: Option<String>) -> anyhow::Result<i32> {
    use tend::server::plugin_mode;
    use tokio::signal::unix::{signal, SignalKind};
    let mut config = args.config(token)?;
    if args.handshake {
        match plugin_mode::check() {
            Ok(dir) => {
                if let (None, Some(dir)) = (&args.state_dir, dir) {
                    config.state_dir = dir;
                }
            }
            Err(why) => {
                eprintln!("tend: {why}");
                return Ok(1);
            }
        }
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    // SIGHUP reads the TLS certificate, key and client CA again.
    let reload = tokio_stream::wrappers::SignalStream::new(signal(SignalKind::hangup())?);
    let handshake = args.handshake;
    tend::server::serve(config, shutdown, reload, |listening| {
        if handshake {
            // After the SIGTERM handler above: a parent that is gone stops it in order.
            plugin_mode::die_with_parent();
            plugin_mode::announce(&listening.socket);
        } else {
            // For the person who started it, whatever TEND_LOG says.
            for line in tend::cli::serve_hint::client_command_lines(listening) {
                eprintln!("tend: connect with: {line}");
            }
        }
    })
    .await?;
    Ok(0)
}
