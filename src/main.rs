//! The `wharf` binary: parses the command line, loads the configuration, and runs the services.

#![forbid(unsafe_code)]

mod addresses;
mod control_api_only;
mod logshuttle_only;
mod router_only;
mod secrets;
mod serve;

/// mimalloc: the proxy allocates a few small buffers per request, and mimalloc's per-thread
/// free lists make that markedly cheaper than glibc's allocator (benches/RESULTS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Wharf: the data plane of a Heroku-style platform.
#[derive(Parser, Debug)]
#[command(name = "wharf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the control API, the router and the logshuttle in one process, with embedded
    /// storage and log bus: nothing else to install.
    Serve(serve::ServeArgs),
    /// Runs the router alone, following a control API elsewhere (`--control-api URL`) and
    /// serving its last good snapshot, kept on disk, while that API is away.
    Router(router_only::RouterArgs),
    /// Runs the logshuttle alone, reading Kafka and following a control API elsewhere
    /// (`--control-api URL`) for its drains; it serves live tails and `/metrics`.
    Logshuttle(logshuttle_only::LogshuttleArgs),
    /// Runs the control API and its store alone (no router, logshuttle or supervisor): replicas
    /// on one PostgreSQL database (`--database-url`) feed `wharf router` and `wharf logshuttle`
    /// elsewhere.
    ControlApi(control_api_only::ControlApiArgs),
}

/// Options every service shares.
#[derive(clap::Args, Debug)]
struct Common {
    /// TOML configuration file (examples in config/examples/). Environment variables
    /// WHARF_SECTION__KEY override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for state; overrides `data_dir` in the configuration.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl Common {
    /// The configuration: the file and `WHARF_*` variables, then the command line's data
    /// directory and Kafka brokers on top, validated again after they are applied.
    fn load(&self, kafka: Option<String>) -> anyhow::Result<wharf_config::Config> {
        let mut config = wharf_config::Config::load(self.config.as_deref(), std::env::vars())?;
        for var in wharf_config::unrecognised_variables(std::env::vars()) {
            // `WHARF_ROUTER_WORKERS` is most likely `WHARF_ROUTER__WORKERS` with one underscore lost.
            let rest = var.trim_start_matches("WHARF_");
            let meant = rest.contains('_').then(|| format!("WHARF_{}", rest.replacen('_', "__", 1)));
            tracing::warn!(%var, did_you_mean = meant.as_deref().unwrap_or("-"), "ignoring a WHARF_ variable that is not configuration (configuration is WHARF_SECTION__KEY)");
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(brokers) = kafka {
            let mut k = config.kafka.take().unwrap_or_default();
            k.brokers = brokers;
            config.kafka = Some(k);
            config.validate()?;
        }
        Ok(config)
    }
}

/// The control API a remote data plane follows as `role` (one URL, or its replicas' URLs
/// separated by commas), with that role's token from the
/// environment (`WHARF_ROUTER_TOKEN` or `WHARF_LOGSHUTTLE_TOKEN`, the control API's
/// `router-token` or `logshuttle-token` file) and the `[feed]` settings. Errors when the token
/// is missing, or the URL is malformed or plain HTTP to a host that is not loopback.
fn control_api_url(
    url: &str,
    role: wharf_domain::DataPlaneRole,
    config: &wharf_config::Config,
) -> anyhow::Result<wharf_control_api::watch::ControlApiUrl> {
    use anyhow::Context;
    let (var, file) = match role {
        wharf_domain::DataPlaneRole::Router => ("WHARF_ROUTER_TOKEN", "router-token"),
        wharf_domain::DataPlaneRole::Logshuttle => ("WHARF_LOGSHUTTLE_TOKEN", "logshuttle-token"),
        wharf_domain::DataPlaneRole::Runtime => ("WHARF_RUNTIME_TOKEN", "runtime-token"),
    };
    // The URL first: a refused URL is refused whatever the token.
    wharf_control_api::watch::ControlApiUrl::new(url, role, "", &config.feed)?;
    let token = std::env::var(var)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .with_context(|| format!("{var} must hold the control API's {role} token (its {file} file)"))?;
    Ok(wharf_control_api::watch::ControlApiUrl::new(url, role, token.trim(), &config.feed)?)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // PostgreSQL's notices (`relation "wharf_schema" already exists, skipping` on every start)
    // are the server's chatter, not Wharf's news: only from WARN up unless WHARF_LOG asks.
    let filter = std::env::var("WHARF_LOG").unwrap_or_else(|_| "info,tokio_postgres=warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a log redirected to a file or journald is read
        // by grep and jq, which the escape codes would break (FE25's F11).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Router(args) => router_only::run(args),
        Command::Logshuttle(args) => logshuttle_only::run(args),
        Command::ControlApi(args) => control_api_only::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: error: {}", error_text(e.chain().map(ToString::to_string)));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes, outermost first, joined by ": " as anyhow's `{:#}` does, but a cause
/// that the text so far already ends with is said once: an error that shows its source in its
/// own message and also gives it as its source (thiserror's `{source}` field) would otherwise
/// print it twice (`cannot listen on ADDR: Address already in use (os error 98): Address already
/// in use (os error 98)`, FE31).
fn error_text(chain: impl Iterator<Item = String>) -> String {
    let mut text = String::new();
    for cause in chain {
        if text.ends_with(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

#[cfg(test)]
mod tests {
    /// Each cause once, in order; one already at the end of the text is not said again.
    #[test]
    fn an_error_says_each_cause_once() {
        let check = |chain: &[&str], expected: &str| {
            assert_eq!(super::error_text(chain.iter().map(|c| c.to_string())), expected, "{chain:?}");
        };
        check(
            &["cannot listen on 127.0.0.1:1: in use (os error 98)", "in use (os error 98)"],
            "cannot listen on 127.0.0.1:1: in use (os error 98)",
        );
        check(
            &["cannot listen on 127.0.0.1:1", "in use (os error 98)"],
            "cannot listen on 127.0.0.1:1: in use (os error 98)",
        );
        check(&["a", "b: c", "c"], "a: b: c");
        check(&["a: b", "a"], "a: b: a");
        check(&["only"], "only");
    }
}
