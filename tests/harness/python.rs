//! The real OpenTelemetry Python SDK, running the scripts in `tests/fixtures/`.

use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;

use super::pipewarden::StageTotals;
use super::tools;

/// Runs Python scripts with the venv's interpreter (which has the OpenTelemetry SDK).
pub struct PythonOtel {
    python: std::path::PathBuf,
}

/// How long one script run may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

impl PythonOtel {
    /// Finds the venv interpreter.
    ///
    /// # Panics
    /// When the venv is missing: run tests/install.sh.
    pub fn new() -> Self {
        Self {
            python: tools::python(),
        }
    }

    /// Runs `tests/fixtures/SCRIPT` with `args` and `env` (inherited `OTEL_*` variables are
    /// removed first) and returns its stdout.
    ///
    /// # Panics
    /// When the script fails or runs longer than 3 minutes (with its stdout and stderr).
    pub async fn run(&self, script: &str, args: &[String], env: &[(&str, &str)]) -> String {
        let script_path = tools::fixture(script);
        let mut command = tokio::process::Command::new(&self.python);
        command
            .arg(&script_path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.starts_with("OTEL_") || key_text.starts_with("PYTHON") {
                command.env_remove(&key);
            }
        }
        // Loopback only: no proxy may see the requests (Python's HTTP and gRPC clients honour
        // the proxy variables).
        command
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .envs(env.iter().copied());
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", self.python.display()));
        let output = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output()).await {
            Ok(result) => result.unwrap_or_else(|err| panic!("waiting for {script}: {err}")),
            Err(_) => panic!("{script} {args:?} ran longer than {SCRIPT_TIMEOUT:?}"),
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "{script} {args:?} failed with {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            output.status
        );
        stdout
    }

    /// Runs `otel_emit.py` for `spec` against `endpoint` (`http://HOST:PORT`) and returns its
    /// report.
    pub async fn emit(&self, spec: &EmitSpec, endpoint: &str) -> EmitReport {
        let stdout = self.run("otel_emit.py", &spec.args(endpoint), &[]).await;
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .unwrap_or_else(|| panic!("otel_emit.py printed no JSON report: {stdout}"));
        serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("otel_emit.py report is not valid ({err}): {line}"))
    }
}

impl Default for PythonOtel {
    fn default() -> Self {
        Self::new()
    }
}

/// OTLP transport of the Python exporters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
}

/// Request compression of the Python exporters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// None.
    None,
    /// gzip.
    Gzip,
}

/// What `otel_emit.py` sends (see the script's docstring for the exact items).
#[derive(Debug, Clone)]
pub struct EmitSpec {
    /// Transport.
    pub protocol: Protocol,
    /// Compression.
    pub compression: Compression,
    /// Resource `service.name`.
    pub service: String,
    /// Value of the `pipeline.stage` attribute on every item.
    pub stage: String,
    /// Spans; span i lasts `1 + (i * 7919) % spans` ms, a permutation of 1..=spans ms.
    pub spans: u64,
    /// How many of the spans have status ERROR.
    pub error_spans: u64,
    /// Metric data points (counter, gauge and histogram points in turn).
    pub metric_points: u64,
    /// Log records (severities INFO, WARN, ERROR, DEBUG in turn).
    pub log_records: u64,
    /// Items per export request (0: all of a signal in one request).
    pub batch_size: u64,
}

impl EmitSpec {
    /// Returns a spec with nothing to send.
    pub fn new(protocol: Protocol, compression: Compression, service: &str, stage: &str) -> Self {
        Self {
            protocol,
            compression,
            service: service.to_owned(),
            stage: stage.to_owned(),
            spans: 0,
            error_spans: 0,
            metric_points: 0,
            log_records: 0,
            batch_size: 0,
        }
    }

    /// Returns the stage name pipewarden derives: `service/stage`.
    pub fn stage_name(&self) -> String {
        format!("{}/{}", self.service, self.stage)
    }

    /// Returns the totals pipewarden must report for the stage.
    pub fn expected_totals(&self) -> StageTotals {
        StageTotals {
            spans: self.spans,
            span_errors: self.error_spans,
            log_records: self.log_records,
            metric_points: self.metric_points,
        }
    }

    /// Returns the nearest-rank `q`-quantile (0 < q <= 1) of the span durations in milliseconds:
    /// the durations are 1..=spans ms, so it is `ceil(q * spans)`.
    pub fn expected_latency_ms(&self, q: f64) -> f64 {
        let n = self.spans as f64;
        (q * n).ceil().clamp(1.0, n)
    }

    /// Returns the log records per severity text.
    pub fn expected_logs_by_severity(&self) -> Vec<(String, u64)> {
        let names = ["INFO", "WARN", "ERROR", "DEBUG"];
        let mut counts = vec![0u64; names.len()];
        for j in 0..self.log_records {
            counts[(j % names.len() as u64) as usize] += 1;
        }
        names
            .iter()
            .zip(counts)
            .filter(|(_, c)| *c > 0)
            .map(|(n, c)| ((*n).to_owned(), c))
            .collect()
    }

    fn args(&self, endpoint: &str) -> Vec<String> {
        let protocol = match self.protocol {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        };
        let compression = match self.compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        };
        [
            ("--endpoint", endpoint.to_owned()),
            ("--protocol", protocol.to_owned()),
            ("--compression", compression.to_owned()),
            ("--service", self.service.clone()),
            ("--stage", self.stage.clone()),
            ("--spans", self.spans.to_string()),
            ("--error-spans", self.error_spans.to_string()),
            ("--metric-points", self.metric_points.to_string()),
            ("--log-records", self.log_records.to_string()),
            ("--batch-size", self.batch_size.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
    }
}

/// What `otel_emit.py` reports having sent.
#[derive(Debug, Clone, Deserialize)]
pub struct EmitReport {
    /// `service/stage`.
    pub stage: String,
    /// Spans sent.
    pub spans: u64,
    /// ERROR spans sent.
    pub span_errors: u64,
    /// Span durations, sorted, milliseconds.
    pub span_durations_ms: Vec<u64>,
    /// Metric data points sent.
    pub metric_points: u64,
    /// Log records sent.
    pub log_records: u64,
    /// Log records per severity text.
    pub logs_by_severity: std::collections::BTreeMap<String, u64>,
}
