//! The `latchkey` binary.

use std::process::ExitCode;

use clap::Parser;
use latchkey_server::cli::{Cli, Command, run};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its links once started; its logs would bury them.
    let default_level = if matches!(cli.command, Command::Demo(_)) { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // One JSON object per line for log pipelines; text (coloured on a terminal) otherwise.
    match std::env::var("LATCHKEY_LOG_FORMAT").unwrap_or_default().as_str() {
        "" | "text" => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        "json" => logs.json().flatten_event(true).with_current_span(false).init(),
        other => {
            eprintln!("error: LATCHKEY_LOG_FORMAT is invalid: {other:?} (expected text or json)");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(64).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    match runtime.block_on(run(cli, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
