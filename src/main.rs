//! `pipewarden`: arguments, configuration, logging, signals and exit codes. Everything else is
//! in the library (`app::run`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pipewarden::{app, config};
use tokio_util::sync::CancellationToken;
use tracing::error;

/// mimalloc instead of the system allocator: decoding OTLP allocates many small, short-lived
/// strings per item, and glibc's malloc and free took about a third of the ingest CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Scores a recorded series (or log file) offline with the live detector's code path.
    Replay {
        /// Input: CSV (`timestamp,value` rows in time order), or log lines with `--format log`.
        #[arg(long)]
        input: PathBuf,
        /// Output CSV (`timestamp,value,score` rows, or `line,template_id,score` rows, one
        /// per input line, with `--format log`); `-` for standard output.
        #[arg(long)]
        output: PathBuf,
        /// Input format: `csv` (a series) or `log` (one log record per line).
        #[arg(long, value_enum, default_value = "csv")]
        format: ReplayFormat,
        /// Configuration file whose `[detector]` section applies.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Lists alerts or incidents of a running pipewarden.
    Alerts {
        /// Base URL of the running pipewarden's web address.
        #[arg(long, default_value = "http://127.0.0.1:9464")]
        url: String,
        /// List incidents instead of alerts.
        #[arg(long)]
        incidents: bool,
    },
    /// Creates, lists or expires silences of a running pipewarden.
    Silence {
        /// Base URL of the running pipewarden's web address.
        #[arg(long, default_value = "http://127.0.0.1:9464", global = true)]
        url: String,
        #[command(subcommand)]
        command: SilenceCommand,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Synthetic probe commands.
    Probe {
        #[command(subcommand)]
        command: ProbeCommand,
    },
}

#[derive(Subcommand)]
enum ProbeCommand {
    /// Runs the probes of `[synthetic]` (or the one named) and prints one line per result; exits
    /// 0 when every result is up, 1 when one is down or timed out, 64 on a configuration problem.
    Run {
        /// Probe name; all probes without it.
        name: Option<String>,
        /// One run per probe, then exit (otherwise on schedule until Ctrl-C).
        #[arg(long)]
        once: bool,
        /// Prints results as JSON lines.
        #[arg(long)]
        json: bool,
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Input formats of `pipewarden replay`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ReplayFormat {
    /// `timestamp,value` rows of one series.
    Csv,
    /// One log record per line.
    Log,
}

#[derive(Subcommand)]
enum SilenceCommand {
    /// Creates a silence; prints it as JSON.
    Create {
        /// Label matchers, e.g. `alertname=Lagging` or `cluster=~"eu-.*"` (repeatable).
        #[arg(long = "matcher", short, required = true)]
        matchers: Vec<String>,
        /// How long it lasts, e.g. `2h`.
        #[arg(long, default_value = "1h")]
        duration: humantime::Duration,
        /// Who creates it.
        #[arg(long, default_value = "")]
        created_by: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Lists silences as JSON.
    List,
    /// Expires a silence now.
    Expire {
        /// Silence id.
        id: String,
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
            format,
            config,
        } => match load_config(config, &env) {
            Ok(valid) => replay(&input, &output, format, &valid.detector),
            Err(code) => code,
        },
        Command::Alerts { url, incidents } => client_call(async move {
            let base = alerting_url(&url);
            if incidents {
                pipewarden::alert::cli::incidents_list(&base).await
            } else {
                pipewarden::alert::cli::alerts_list(&base).await
            }
        }),
        Command::Silence { url, command } => client_call(async move {
            let base = alerting_url(&url);
            match command {
                SilenceCommand::Create {
                    matchers,
                    duration,
                    created_by,
                    comment,
                } => {
                    let request = pipewarden::alert::SilenceRequest {
                        matchers,
                        starts_at_ms: None,
                        ends_at_ms: None,
                        duration: Some(duration.into()),
                        created_by,
                        comment,
                    };
                    pipewarden::alert::cli::silence_create(&base, &request).await
                }
                SilenceCommand::List => pipewarden::alert::cli::silence_list(&base).await,
                SilenceCommand::Expire { id } => {
                    pipewarden::alert::cli::silence_expire(&base, &id).await
                }
            }
        }),
        Command::Probe {
            command:
                ProbeCommand::Run {
                    name,
                    once,
                    json,
                    config,
                },
        } => match load_config(config, &env) {
            Ok(valid) => pipewarden::probe::run_cli(&valid.synthetic, name.as_deref(), once, json),
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

fn replay(
    input: &Path,
    output: &Path,
    format: ReplayFormat,
    detector: &config::DetectorConfig,
) -> ExitCode {
    let run = |reader: std::io::BufReader<std::fs::File>, out: Box<dyn std::io::Write>| match format
    {
        ReplayFormat::Csv => pipewarden::replay::replay_csv(reader, out, detector),
        ReplayFormat::Log => pipewarden::replay::replay_log(reader, out, detector),
    };
    let result = std::fs::File::open(input)
        .map_err(|err| format!("cannot open {}: {err}", input.display()))
        .and_then(|file| {
            let reader = std::io::BufReader::new(file);
            let scored = if output == Path::new("-") {
                run(reader, Box::new(std::io::stdout().lock()))
            } else {
                let out = std::fs::File::create(output)
                    .map_err(|err| format!("cannot create {}: {err}", output.display()))?;
                run(reader, Box::new(out))
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

fn alerting_url(web: &str) -> String {
    format!("{}/api/v1/alerting", web.trim_end_matches('/'))
}

/// Runs one API call of a client subcommand and prints its JSON answer.
fn client_call<F, E>(call: F) -> ExitCode
where
    F: std::future::Future<Output = Result<serde_json::Value, E>>,
    E: std::fmt::Display,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(call) {
        Ok(value) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
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
