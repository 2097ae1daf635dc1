//! OTLP ingest benchmark: pipewarden against the rotel collector (blackhole exporter), under the
//! same load in the same run, reported as ratios.
//!
//! For each mode, the two servers run in alternating order (pipewarden, rotel, pipewarden, ...),
//! each a fresh process pinned to one core (`taskset`, when there are two cores or more); the load
//! generator runs on another core with N senders, each on its own connection, sending pre-encoded
//! requests of 100 items. Modes:
//! - `{logs,spans,metrics}-{http,grpc}`: closed loop, as fast as the server answers; reports
//!   accepted items/s (2xx / grpc-status 0 only; refusals such as 503 are counted apart);
//! - `fixed`: all senders together send a fixed rate (default 10k items/s) of mixed signals, half
//!   over HTTP and half over gRPC; reports the server's CPU as % of one core and its peak RSS.
//!
//! Run it with `cargo bench --bench ingest` after `bash tests/install-bench.sh` (which installs
//! rotel and prints where `rotel-agent` is). Options come as `--name value` arguments after `--`
//! or as `INGEST_BENCH_NAME` environment variables; `--help` lists them. Under `cargo test` /
//! nextest (no `--bench` argument) it does nothing.

mod load;
mod payload;
mod server;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use tokio::time::Instant;

use crate::load::{Endpoints, Load, Transport, Workload};
use crate::payload::{Payloads, Signal};
use crate::server::{Launch, Server, Target};

const USAGE: &str = "\
usage: cargo bench --bench ingest -- [options]
options (each also as an environment variable INGEST_BENCH_<NAME>, e.g. INGEST_BENCH_REPS=1):
  --reps N             repetitions per server and mode, alternating servers (default 3)
  --duration SECS      measured time of each throughput run (default 5)
  --warmup SECS        unmeasured time before it (default 1)
  --senders N          concurrent senders, one connection each (default 8)
  --modes LIST         comma-separated: all, fixed, logs, spans, metrics, http, grpc, or
                       SIGNAL-TRANSPORT such as logs-http (default all)
  --targets LIST       pipewarden,rotel (default both)
  --fixed-rate N       items/s of the fixed-rate mode (default 10000)
  --fixed-duration S   measured time of the fixed-rate mode (default 10)
  --pool N             distinct pre-encoded requests per signal (default 512)
  --pipewarden PATH    pipewarden binary (default: the release binary cargo bench builds)
  --rotel PATH         rotel-agent binary (default: ROTEL_AGENT, else where
                       tests/install-bench.sh installs it)
  --pin on|off         pin the server to one core and the load to another (default on)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // cargo bench passes `--bench`; cargo test and nextest do not (nextest asks for `--list`):
    // the benchmark runs only under cargo bench (or with `--bench` given by hand).
    if !args.iter().any(|a| a == "--bench") {
        if !args.iter().any(|a| a == "--list") {
            println!("ingest: benchmark, not a test; run `cargo bench --bench ingest`");
        }
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("ingest: {err:#}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ingest: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Throughput(Signal, Transport),
    Fixed,
}

impl Mode {
    fn all() -> Vec<Mode> {
        let mut modes = Vec::new();
        for signal in Signal::ALL {
            for transport in Transport::ALL {
                modes.push(Mode::Throughput(signal, transport));
            }
        }
        modes.push(Mode::Fixed);
        modes
    }

    fn name(self) -> String {
        match self {
            Mode::Throughput(signal, transport) => {
                format!("{}-{}", signal.name(), transport.name())
            }
            Mode::Fixed => "fixed".to_owned(),
        }
    }

    fn matches(self, token: &str) -> bool {
        match self {
            _ if token == "all" || token == self.name() => true,
            Mode::Throughput(signal, transport) => {
                token == signal.name() || token == transport.name()
            }
            Mode::Fixed => false,
        }
    }
}

struct Options {
    reps: usize,
    duration: Duration,
    warmup: Duration,
    senders: usize,
    modes: Vec<Mode>,
    targets: Vec<Target>,
    fixed_rate: u64,
    fixed_duration: Duration,
    pool: usize,
    pipewarden: PathBuf,
    rotel: Option<PathBuf>,
    pin: bool,
    /// The options as given (for the reproduce line).
    given: Vec<(String, String)>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        const NAMES: [&str; 12] = [
            "reps",
            "duration",
            "warmup",
            "senders",
            "modes",
            "targets",
            "fixed-rate",
            "fixed-duration",
            "pool",
            "pipewarden",
            "rotel",
            "pin",
        ];
        let mut given: BTreeMap<String, String> = BTreeMap::new();
        for name in NAMES {
            let var = format!("INGEST_BENCH_{}", name.to_uppercase().replace('-', "_"));
            if let Ok(value) = std::env::var(var) {
                given.insert(name.to_owned(), value);
            }
        }
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if arg == "--bench" {
                continue;
            }
            let Some(flag) = arg.strip_prefix("--") else {
                bail!("unexpected argument {arg:?}");
            };
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => {
                    let value = iter
                        .next()
                        .ok_or_else(|| anyhow!("--{flag} needs a value"))?;
                    (flag.to_owned(), value.clone())
                }
            };
            if !NAMES.contains(&name.as_str()) {
                bail!("unknown option --{name}");
            }
            given.insert(name, value);
        }
        let get = |name: &str| given.get(name).map(String::as_str);
        let number = |name: &str, default: u64| -> Result<u64> {
            get(name).map_or(Ok(default), |v| {
                v.parse().with_context(|| format!("--{name} {v:?}"))
            })
        };
        let seconds = |name: &str, default: f64| -> Result<Duration> {
            let secs = get(name).map_or(Ok(default), |v| {
                v.parse::<f64>().with_context(|| format!("--{name} {v:?}"))
            })?;
            Duration::try_from_secs_f64(secs).with_context(|| format!("--{name} {secs}"))
        };
        let mode_tokens: Vec<&str> = get("modes")
            .unwrap_or("all")
            .split(',')
            .map(str::trim)
            .collect();
        for token in &mode_tokens {
            if !Mode::all().iter().any(|m| m.matches(token)) {
                bail!("unknown mode {token:?}");
            }
        }
        let modes: Vec<Mode> = Mode::all()
            .into_iter()
            .filter(|m| mode_tokens.iter().any(|t| m.matches(t)))
            .collect();
        let mut targets = Vec::new();
        for token in get("targets").unwrap_or("pipewarden,rotel").split(',') {
            match token.trim() {
                "pipewarden" => targets.push(Target::Pipewarden),
                "rotel" => targets.push(Target::Rotel),
                other => bail!("unknown target {other:?}"),
            }
        }
        targets.sort();
        targets.dedup();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let pipewarden = get("pipewarden").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_pipewarden")),
            PathBuf::from,
        );
        let rotel = get("rotel")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("ROTEL_AGENT").map(PathBuf::from))
            .or_else(|| server::find_rotel_agent(repo));
        let pin = match get("pin").unwrap_or("on") {
            "on" | "true" | "1" => true,
            "off" | "false" | "0" => false,
            other => bail!("--pin {other:?}: on or off"),
        };
        let options = Options {
            reps: number("reps", 3)?.max(1) as usize,
            duration: seconds("duration", 5.0)?,
            warmup: seconds("warmup", 1.0)?,
            senders: number("senders", 8)?.max(1) as usize,
            modes,
            targets,
            fixed_rate: number("fixed-rate", 10_000)?.max(1),
            fixed_duration: seconds("fixed-duration", 10.0)?,
            pool: number("pool", 512)?.max(1) as usize,
            pipewarden,
            rotel,
            pin,
            given: given
                .into_iter()
                .filter(|(k, _)| k != "pipewarden" && k != "rotel")
                .collect(),
        };
        if options.duration.is_zero() || options.fixed_duration.is_zero() {
            bail!("durations must be positive");
        }
        Ok(options)
    }

    fn reproduce_command(&self) -> String {
        let mut command = "bash tests/install-bench.sh && cargo bench --bench ingest --".to_owned();
        let defaults = [
            ("reps", self.reps.to_string()),
            ("duration", format_secs(self.duration)),
            ("warmup", format_secs(self.warmup)),
            ("senders", self.senders.to_string()),
            ("fixed-rate", self.fixed_rate.to_string()),
            ("fixed-duration", format_secs(self.fixed_duration)),
        ];
        for (name, value) in &defaults {
            let _ = write!(command, " --{name} {value}");
        }
        for (name, value) in &self.given {
            if !defaults.iter().any(|(n, _)| n == name) {
                let _ = write!(command, " --{name} {value}");
            }
        }
        command
    }
}

fn format_secs(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0}")
    } else {
        format!("{secs}")
    }
}

/// One server run of one mode.
struct RunResult {
    mode: Mode,
    target: Target,
    items_per_s: f64,
    accepted_requests: u64,
    refused_requests: u64,
    rejected_items: u64,
    errors: u64,
    kinds: BTreeMap<String, u64>,
    /// CPU of the server in the measured time, as a fraction of one core.
    cpu_core_fraction: f64,
    /// CPU of the load generator (this process).
    load_core_fraction: f64,
    /// CPU of every other process of the machine: noise.
    others_core_fraction: f64,
    peak_rss_kib: u64,
    rss_kib: u64,
    rss_anon_kib: u64,
    drain: Duration,
    exit: String,
    problems: Vec<String>,
    problem_count: usize,
    server_counters: Vec<String>,
}

fn run(options: Options) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let taskset = std::process::Command::new("taskset")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let pinned = options.pin && taskset && cores >= 2;
    if pinned {
        // Pins this process (all threads, and the runtime's threads started later) to core 0.
        let status = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .context("taskset")?;
        if !status.success() {
            bail!("taskset could not pin the load generator");
        }
    }
    let launch = Launch {
        pipewarden: options.pipewarden.clone(),
        rotel: options.rotel.clone(),
        server_core: pinned.then_some(cores - 1),
    };
    if options.targets.contains(&Target::Pipewarden) && !launch.pipewarden.is_file() {
        bail!("no pipewarden binary at {}", launch.pipewarden.display());
    }
    if options.targets.contains(&Target::Rotel)
        && launch.rotel.as_ref().is_none_or(|p| !p.is_file())
    {
        bail!("rotel-agent not found: run `bash tests/install-bench.sh` (or set ROTEL_AGENT)");
    }
    let clock_ticks = clock_ticks_per_s();
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let payloads = Arc::new(Payloads::build(options.pool, now_ns));
    payload::check_item_counts(&payloads)?;

    println!("# pipewarden OTLP ingest benchmark");
    println!(
        "# {} core(s); servers {}; load generator: {} senders, one connection each, {} requests of \
         {} items{}",
        cores,
        if pinned {
            format!("pinned with `taskset -c {}`", cores - 1)
        } else if !options.pin {
            "not pinned (--pin off)".to_owned()
        } else if !taskset {
            "NOT pinned (taskset not found)".to_owned()
        } else {
            "NOT pinned (one core)".to_owned()
        },
        options.senders,
        options.pool,
        payload::ITEMS_PER_REQUEST,
        if pinned { ", pinned to core 0" } else { "" },
    );
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "# load average before the run: {}",
        loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "# mean request body: logs {} B, spans {} B, metrics {} B (protobuf, uncompressed)",
        payloads.logs.mean_body_bytes,
        payloads.spans.mean_body_bytes,
        payloads.metrics.mean_body_bytes
    );
    println!(
        "# throughput runs: {} s warm-up + {} s measured; fixed-rate: {} items/s, {} s warm-up + {} \
         s measured; {} rep(s), servers alternating",
        format_secs(options.warmup),
        format_secs(options.duration),
        options.fixed_rate,
        format_secs(options.warmup),
        format_secs(options.fixed_duration),
        options.reps
    );
    if let Some(rotel) = &options.rotel {
        let version = std::process::Command::new(rotel)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        println!("# rotel: {version}, --exporter blackhole");
    }
    println!();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(async {
        let mut results = Vec::new();
        for &mode in &options.modes {
            for rep in 0..options.reps {
                for &target in &options.targets {
                    let result =
                        run_once(&options, &launch, &payloads, clock_ticks, mode, target).await;
                    match result {
                        Ok(result) => {
                            print_run(&result, rep);
                            results.push(result);
                        }
                        Err(err) => println!(
                            "run {} {} rep {}: FAILED: {err:#}",
                            mode.name(),
                            target.name(),
                            rep + 1
                        ),
                    }
                }
            }
        }
        results
    });
    println!();
    print_summary(&options, &results);
    Ok(())
}

async fn run_once(
    options: &Options,
    launch: &Launch,
    payloads: &Arc<Payloads>,
    clock_ticks: u64,
    mode: Mode,
    target: Target,
) -> Result<RunResult> {
    let (workload, measured) = match mode {
        Mode::Throughput(signal, transport) => {
            (Workload::Saturate { signal, transport }, options.duration)
        }
        Mode::Fixed => (
            Workload::Paced {
                items_per_s: options.fixed_rate,
            },
            options.fixed_duration,
        ),
    };
    let mut server = Server::start(target, launch).await?;
    let endpoints: Endpoints = server.endpoints;
    let load = Load::start(payloads, endpoints, workload, options.senders);
    tokio::time::sleep(options.warmup).await;
    let before = load.counters.snapshot();
    let cpu_before = server.cpu_time(clock_ticks)?;
    let own_before = server::process_cpu_time("/proc/self/stat", clock_ticks)?;
    let machine_before = server::machine_busy_time(clock_ticks)?;
    let started = Instant::now();
    tokio::time::sleep(measured).await;
    let after = load.counters.snapshot();
    let cpu_after = server.cpu_time(clock_ticks)?;
    let own_after = server::process_cpu_time("/proc/self/stat", clock_ticks)?;
    let machine_after = server::machine_busy_time(clock_ticks)?;
    let elapsed = started.elapsed();
    let counters = Arc::clone(&load.counters);
    load.stop(Duration::from_secs(5)).await;
    let alive = server.check_alive();
    let drain = if alive.is_ok() {
        wait_until_idle(&server, clock_ticks).await
    } else {
        Duration::ZERO
    };
    let memory = server.memory().unwrap_or_default();
    let server_counters = if alive.is_ok() {
        server
            .server_counters()
            .await
            .unwrap_or_else(|err| vec![format!("/metrics: {err:#}")])
    } else {
        Vec::new()
    };
    let stopped = server.stop(Duration::from_secs(20)).await?;
    let delta = after.since(before);
    let server_cpu = cpu_after.saturating_sub(cpu_before);
    let own_cpu = own_after.saturating_sub(own_before);
    let others_cpu = machine_after
        .saturating_sub(machine_before)
        .saturating_sub(server_cpu)
        .saturating_sub(own_cpu);
    let exit = match (&alive, stopped.killed, stopped.exit_code) {
        (Err(err), _, _) => format!("CRASHED during the run: {err:#}"),
        (Ok(()), true, _) => format!(
            "killed after {:.1} s (did not stop)",
            stopped.took.as_secs_f64()
        ),
        (Ok(()), false, Some(0)) => "exit 0".to_owned(),
        (Ok(()), false, Some(code)) => format!("exit {code} on SIGTERM"),
        (Ok(()), false, None) => "ended by a signal".to_owned(),
    };
    Ok(RunResult {
        mode,
        target,
        items_per_s: delta.accepted_items as f64 / elapsed.as_secs_f64(),
        accepted_requests: delta.accepted_requests,
        refused_requests: delta.refused_requests,
        rejected_items: delta.rejected_items,
        errors: delta.errors,
        kinds: counters.kinds(),
        cpu_core_fraction: server_cpu.as_secs_f64() / elapsed.as_secs_f64(),
        load_core_fraction: own_cpu.as_secs_f64() / elapsed.as_secs_f64(),
        others_core_fraction: others_cpu.as_secs_f64() / elapsed.as_secs_f64(),
        peak_rss_kib: memory.peak_rss_kib,
        rss_kib: memory.rss_kib,
        rss_anon_kib: memory.rss_anon_kib,
        drain,
        exit,
        problems: stopped.problems,
        problem_count: stopped.problem_count,
        server_counters,
    })
}

/// After the load stops, waits (up to 10 s) until the server uses under 5% of a core over 200 ms;
/// returns how long that took (work the server still had queued).
async fn wait_until_idle(server: &Server, clock_ticks: u64) -> Duration {
    let started = Instant::now();
    let step = Duration::from_millis(200);
    let Ok(mut last) = server.cpu_time(clock_ticks) else {
        return Duration::ZERO;
    };
    while started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(step).await;
        let Ok(now) = server.cpu_time(clock_ticks) else {
            break;
        };
        if now.saturating_sub(last).as_secs_f64() < 0.05 * step.as_secs_f64() {
            return started.elapsed().saturating_sub(step);
        }
        last = now;
    }
    started.elapsed()
}

fn clock_ticks_per_s() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print_run(r: &RunResult, rep: usize) {
    let mut line = format!(
        "run {:<13} {:<10} rep {}: {:>9.0} items/s, {} req ok, {} refused, {} errors, cpu {:>5.1}% \
         of a core (load generator {:.0}%, other processes {:.0}%), peak rss {:.1} MiB (at \
         the end {:.1} MiB, anonymous {:.1} MiB), drain {:.1} s, {}",
        r.mode.name(),
        r.target.name(),
        rep + 1,
        r.items_per_s,
        r.accepted_requests,
        r.refused_requests,
        r.errors,
        r.cpu_core_fraction * 100.0,
        r.load_core_fraction * 100.0,
        r.others_core_fraction * 100.0,
        mib(r.peak_rss_kib),
        mib(r.rss_kib),
        mib(r.rss_anon_kib),
        r.drain.as_secs_f64(),
        r.exit,
    );
    if r.rejected_items > 0 {
        let _ = write!(
            line,
            ", {} items rejected (partial_success)",
            r.rejected_items
        );
    }
    println!("{line}");
    if !r.kinds.is_empty() {
        let kinds: Vec<String> = r.kinds.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        println!("    refusals/errors (whole run): {}", kinds.join("; "));
    }
    if r.problem_count > 0 {
        println!(
            "    {} WARN/ERROR log line(s), first ones:",
            r.problem_count
        );
        for p in &r.problems {
            println!("      {}", truncate(p, 220));
        }
    }
    if !r.server_counters.is_empty() {
        println!("    /metrics: {}", r.server_counters.join(" | "));
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn print_summary(options: &Options, results: &[RunResult]) {
    let pick = |mode: Mode, target: Target| -> Vec<&RunResult> {
        results
            .iter()
            .filter(|r| r.mode == mode && r.target == target)
            .collect()
    };
    let med = |runs: &[&RunResult], f: fn(&RunResult) -> f64| -> Option<f64> {
        median(runs.iter().map(|r| f(r)).collect())
    };
    let fmt_rate = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    let fmt_ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".to_owned(),
    };

    println!(
        "## throughput on one core: accepted items/s, median of {} rep(s) (min-max)",
        options.reps
    );
    println!(
        "{:<8} {:<5} {:>28} {:>28} {:>21} {:>10} {:>10} {:>10}",
        "signal", "trans", "pipewarden", "rotel", "ratio (pairs)", "pw refused", "pw cpu", "pw rss"
    );
    let mut checks: Vec<String> = Vec::new();
    let spread = |runs: &[&RunResult]| -> String {
        let rates: Vec<f64> = runs.iter().map(|r| r.items_per_s).collect();
        let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rates.iter().copied().fold(0.0, f64::max);
        match median(rates) {
            Some(m) => format!("{m:.0} ({min:.0}-{max:.0})"),
            None => "-".to_owned(),
        }
    };
    for mode in options.modes.iter().copied() {
        let Mode::Throughput(signal, transport) = mode else {
            continue;
        };
        let pw = pick(mode, Target::Pipewarden);
        let rotel = pick(mode, Target::Rotel);
        let pw_rate = med(&pw, |r| r.items_per_s);
        let rotel_rate = med(&rotel, |r| r.items_per_s);
        let refused: u64 = pw.iter().map(|r| r.refused_requests).sum();
        let total: u64 = pw
            .iter()
            .map(|r| r.refused_requests + r.accepted_requests)
            .sum();
        let refused_share = if total > 0 {
            format!("{:.1}%", 100.0 * refused as f64 / total as f64)
        } else {
            "-".to_owned()
        };
        // The servers alternate, so rep k of each ran side by side in time: the spread of
        // their ratios shows how much the machine's drift moved the ratio of medians.
        let pairs: Vec<f64> = pw
            .iter()
            .zip(&rotel)
            .filter(|(_, r)| r.items_per_s > 0.0)
            .map(|(p, r)| p.items_per_s / r.items_per_s)
            .collect();
        let pair_spread = match (
            pairs.iter().copied().reduce(f64::min),
            pairs.iter().copied().reduce(f64::max),
        ) {
            (Some(min), Some(max)) => format!(" ({min:.2}-{max:.2})"),
            _ => String::new(),
        };
        println!(
            "{:<8} {:<5} {:>28} {:>28} {:>21} {:>10} {:>10} {:>10}",
            signal.name(),
            transport.name(),
            spread(&pw),
            spread(&rotel),
            format!("{}{pair_spread}", fmt_ratio(pw_rate, rotel_rate)),
            refused_share,
            med(&pw, |r| r.cpu_core_fraction * 100.0)
                .map_or("-".to_owned(), |v| format!("{v:.0}%")),
            med(&pw, |r| mib(r.peak_rss_kib)).map_or("-".to_owned(), |v| format!("{v:.1}M")),
        );
        if let (Some(a), Some(b)) = (pw_rate, rotel_rate)
            && b > 0.0
        {
            checks.push(format!(
                "{} {}/{}: {:.2}x rotel's {} (target >= 1.5x; side-by-side reps{pair_spread})",
                if a / b >= 1.5 { "PASS" } else { "FAIL" },
                signal.name(),
                transport.name(),
                a / b,
                signal.unit()
            ));
        }
        if signal == Signal::Logs
            && transport == Transport::Http
            && let Some(a) = pw_rate
        {
            checks.push(format!(
                "{} logs/http: {a:.0} log records/s on one core (target >= 400000)",
                if a >= 400_000.0 { "PASS" } else { "FAIL" }
            ));
        }
    }
    println!(
        "(ratio = median over median, with the lowest and highest ratio of the reps run side by side; pw refused = share of pipewarden's requests answered non-2xx / non-OK in the measured time; pw cpu, pw rss = its CPU (% of a core) and peak RSS, medians)"
    );

    if options.modes.contains(&Mode::Fixed) {
        println!();
        println!(
            "## fixed rate: {} items/s (logs, spans, metric points in turn; half HTTP, half gRPC), \
             medians of {} rep(s)",
            options.fixed_rate, options.reps
        );
        println!(
            "{:<11} {:>16} {:>16} {:>14} {:>10}",
            "server", "achieved items/s", "cpu % of a core", "peak rss MiB", "rss MiB"
        );
        let mut fixed = BTreeMap::new();
        for target in options.targets.iter().copied() {
            let runs = pick(Mode::Fixed, target);
            let cpu = med(&runs, |r| r.cpu_core_fraction * 100.0);
            let peak = med(&runs, |r| mib(r.peak_rss_kib));
            println!(
                "{:<11} {:>16} {:>16} {:>14} {:>10}",
                target.name(),
                fmt_rate(med(&runs, |r| r.items_per_s)),
                cpu.map_or("-".to_owned(), |v| format!("{v:.1}")),
                peak.map_or("-".to_owned(), |v| format!("{v:.1}")),
                med(&runs, |r| mib(r.rss_kib)).map_or("-".to_owned(), |v| format!("{v:.1}")),
            );
            fixed.insert(target, (cpu, peak));
        }
        if let Some(&(Some(cpu), Some(peak))) = fixed.get(&Target::Pipewarden) {
            checks.push(format!(
                "{} fixed {} items/s: {cpu:.1}% of a core (target <= 5%)",
                if cpu <= 5.0 { "PASS" } else { "FAIL" },
                options.fixed_rate
            ));
            checks.push(format!(
                "{} fixed {} items/s: peak RSS {peak:.1} MiB (target <= 40 MiB)",
                if peak <= 40.0 { "PASS" } else { "FAIL" },
                options.fixed_rate
            ));
        }
    }
    let noisy = results
        .iter()
        .filter(|r| r.others_core_fraction > 0.1)
        .count();
    if noisy > 0 {
        println!();
        println!(
            "WARNING: in {noisy} of {} run(s) other processes used over 10% of a core: the machine \
             was not quiet, figures are noisy",
            results.len()
        );
    }
    let load_bound = results
        .iter()
        .filter(|r| r.load_core_fraction > 0.9)
        .count();
    if load_bound > 0 {
        println!(
            "WARNING: in {load_bound} run(s) the load generator used over 90% of its core: those \
             figures may be the generator's limit, not the server's"
        );
    }
    if !checks.is_empty() {
        println!();
        println!("## targets");
        for check in &checks {
            println!("{check}");
        }
    }
    println!();
    println!("## reproduce");
    println!("{}", options.reproduce_command());
}
