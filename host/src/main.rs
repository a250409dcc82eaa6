//! The `host` command: parse the command line, run it, map the result to an exit code.
//!
//! Exit codes: 0 success; 1 refused or failed (bad input, unreachable job, corrupt point);
//! 2 usage error; 3 the job started but failed while running.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal, plain text for files, pipes and log collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOST_LOG")
                .unwrap_or_else(|_| "host=info".into()),
        )
        .init();
    let args = cli::Args::parse();
    let home = args.home.clone().unwrap_or_else(|| ".host".into());
    match cli::run(args, home) {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "error: {}",
                cli::terminal::escaped(&cli::terminal::said_once(&e))
            );
            ExitCode::from(1)
        }
    }
}
