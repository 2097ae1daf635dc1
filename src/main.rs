//! `pipewarden`: arguments, configuration, logging, signals and exit codes. Everything else is
//! in the library (`app::run`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pipewarden::{app, config};
use tokio_util::sync::CancellationToken;
use tracing::error;

/// Exit code of a bad configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "pipewarden",
    version,
    about = "Observability and anomaly sidecar for data pipelines"
)]
struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `pipewarden=debug`.
    #[arg(long, global = true, default_value = "info", env = "PIPEWARDEN_LOG")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the collector, detector, store and web UI until SIGINT/SIGTERM.
    Run {
        /// Configuration file (TOML); without it every default applies.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Scores a recorded series offline with the live detector's code path.
    Replay {
        /// Input CSV (`timestamp,value` rows in time order).
        #[arg(long)]
        input: PathBuf,
        /// Output CSV (`timestamp,value,score` rows); `-` for standard output.
        #[arg(long)]
        output: PathBuf,
        /// Configuration file whose `[detector]` section applies.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Checks a configuration file (with environment overrides) and reports the first problem.
    Validate {
        /// Configuration file (TOML).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    let env: BTreeMap<String, String> = std::env::vars().collect();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Validate { file },
        } => match load_config(Some(file.clone()), &env) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Replay {
            input,
            output,
            config,
        } => match load_config(config, &env) {
            Ok(valid) => replay(&input, &output, &valid.detector),
            Err(code) => code,
        },
        Command::Run { config } => {
            let valid = match load_config(config, &env) {
                Ok(valid) => valid,
                Err(code) => return code,
            };
            run(valid)
        }
    }
}

fn load_config(
    path: Option<PathBuf>,
    env: &BTreeMap<String, String>,
) -> Result<config::ValidConfig, ExitCode> {
    let file = path
        .as_ref()
        .map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
    config::load(path.as_deref(), env)
        .and_then(|c| c.validate())
        .map_err(|err| {
            eprintln!("invalid configuration ({file}): {err}");
            ExitCode::from(EXIT_CONFIG)
        })
}

fn replay(input: &Path, output: &Path, detector: &config::DetectorConfig) -> ExitCode {
    let result = std::fs::File::open(input)
        .map_err(|err| format!("cannot open {}: {err}", input.display()))
        .and_then(|file| {
            let reader = std::io::BufReader::new(file);
            let scored = if output == Path::new("-") {
                pipewarden::replay::replay_csv(reader, std::io::stdout().lock(), detector)
            } else {
                let out = std::fs::File::create(output)
                    .map_err(|err| format!("cannot create {}: {err}", output.display()))?;
                pipewarden::replay::replay_csv(reader, out, detector)
            };
            scored.map_err(|err| format!("{}: {err}", input.display()))
        });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("replay failed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: config::ValidConfig) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        match app::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                error!(error = format!("{err:#}"), "pipewarden failed");
                ExitCode::FAILURE
            }
        }
    })
}

async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            error!(error = %err, "cannot watch SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    shutdown.cancel();
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
