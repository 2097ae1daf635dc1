//! The pipewarden binary under test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tempfile::TempDir;

use super::process::{ChildProcess, Signal};
use super::{DEADLINE, eventually, prometheus, query_escape};

/// Prefix of the startup line: `pipewarden listening grpc=ADDR http=ADDR web=ADDR`.
pub const LISTENING: &str = "pipewarden listening ";

/// Addresses from the startup line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddrs {
    /// OTLP/gRPC receiver.
    pub grpc: SocketAddr,
    /// OTLP/HTTP receiver.
    pub http: SocketAddr,
    /// Web API, UI and /metrics.
    pub web: SocketAddr,
}

/// Parses the startup line (it may be embedded in a log line: the text after [`LISTENING`] counts).
pub fn parse_listening_line(line: &str) -> Option<ListenAddrs> {
    let start = line.find(LISTENING)? + LISTENING.len();
    let (mut grpc, mut http, mut web) = (None, None, None);
    for token in line[start..].split_whitespace() {
        let Some((key, value)) = token.split_once('=') else {
            continue;
        };
        let value = value.trim_matches(|c| c == '"' || c == ',' || c == '\'');
        let slot = match key {
            "grpc" => &mut grpc,
            "http" => &mut http,
            "web" => &mut web,
            _ => continue,
        };
        *slot = value.parse().ok();
    }
    Some(ListenAddrs {
        grpc: grpc?,
        http: http?,
        web: web?,
    })
}

/// Per-stage totals from `GET /api/v1/stages`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct StageTotals {
    /// Spans.
    pub spans: u64,
    /// Spans with status ERROR.
    pub span_errors: u64,
    /// Log records.
    pub log_records: u64,
    /// Metric data points.
    pub metric_points: u64,
}

/// A point of a stored series, from `GET /api/v1/series/points`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPoint {
    /// Series key.
    pub key: String,
    /// Series attributes (JSON object).
    pub attributes: Value,
    /// Timestamp, Unix milliseconds.
    pub timestamp_ms: i64,
    /// Value (of the latest point of the stored bucket).
    pub value: f64,
    /// Points folded into the stored bucket (`store.point_resolution`).
    pub count: u64,
}

/// A running `pipewarden run` on its own temporary data dir and free ports.
///
/// Config comes from environment overrides only: every listener on `127.0.0.1:0`, the store in the
/// data dir, plus what the test adds. The process is killed on drop.
pub struct Pipewarden {
    config_file: Option<PathBuf>,
    data_dir: TempDir,
    env: Vec<(String, String)>,
    process: Option<ChildProcess>,
    addrs: ListenAddrs,
    http: reqwest::Client,
    starts: u32,
}

impl Pipewarden {
    /// Returns the path of the binary under test.
    pub fn binary() -> PathBuf {
        PathBuf::from(env!("CARGO_BIN_EXE_pipewarden"))
    }

    /// Returns a command for the binary with every inherited `PIPEWARDEN_*` variable removed (so
    /// the developer's environment cannot change what a test sees).
    pub fn command() -> Command {
        let mut command = Command::new(Self::binary());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PIPEWARDEN_") {
                command.env_remove(key);
            }
        }
        command
    }

    /// Starts pipewarden with the default test overrides.
    pub async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    /// Starts pipewarden with the default test overrides plus `extra` (`PIPEWARDEN_...` pairs;
    /// an extra key replaces a default one).
    pub async fn start_with_env(extra: &[(&str, &str)]) -> Self {
        Self::start_with_config(None, extra).await
    }

    /// Starts pipewarden with `--config` pointing at a file holding `config` (TOML), plus the
    /// default test overrides and `extra`.
    pub async fn start_with_config(config: Option<&str>, extra: &[(&str, &str)]) -> Self {
        let data_dir = tempfile::Builder::new()
            .prefix("pipewarden-test-")
            .tempdir()
            .expect("create temp data dir");
        // `store.path` is the store directory (the database file goes inside it).
        let store = data_dir.path().join("store");
        let mut env: Vec<(String, String)> = vec![
            (
                "PIPEWARDEN_COLLECTOR__OTLP__GRPC_ADDRESS".into(),
                "127.0.0.1:0".into(),
            ),
            (
                "PIPEWARDEN_COLLECTOR__OTLP__HTTP_ADDRESS".into(),
                "127.0.0.1:0".into(),
            ),
            ("PIPEWARDEN_WEB__ADDRESS".into(), "127.0.0.1:0".into()),
            (
                "PIPEWARDEN_STORE__PATH".into(),
                store.to_string_lossy().into_owned(),
            ),
        ];
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push(((*key).to_owned(), (*value).to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .expect("build http client");
        let unspecified: SocketAddr = "0.0.0.0:0".parse().expect("addr");
        let config_file = config.map(|text| {
            let path = data_dir.path().join("pipewarden.toml");
            std::fs::write(&path, text).expect("write test config");
            path
        });
        let mut pipewarden = Self {
            config_file,
            data_dir,
            env,
            process: None,
            addrs: ListenAddrs {
                grpc: unspecified,
                http: unspecified,
                web: unspecified,
            },
            http,
            starts: 0,
        };
        pipewarden.spawn().await;
        pipewarden
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let mut command = Self::command();
        command.arg("run");
        if let Some(path) = &self.config_file {
            command.arg("--config").arg(path);
        }
        command
            .current_dir(self.data_dir.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        command.env("NO_COLOR", "1");
        let name = format!("pipewarden#{}", self.starts);
        let mut process = ChildProcess::spawn(&name, command, Signal::Kill);
        let line = process
            .wait_for_stdout_line("its startup line", DEADLINE, |line| {
                line.contains(LISTENING)
            })
            .await;
        self.addrs = parse_listening_line(&line).unwrap_or_else(|| {
            panic!("cannot parse the startup line {line:?}: want `{LISTENING}grpc=ADDR http=ADDR web=ADDR`")
        });
        self.process = Some(process);
    }

    /// Starts pipewarden again on the same data dir and config (new ports) after it exited.
    ///
    /// # Panics
    /// When the previous process still runs.
    pub async fn restart(&mut self) {
        if let Some(process) = self.process.as_mut() {
            assert!(
                !process.is_running(),
                "restart() needs the previous pipewarden to have exited"
            );
        }
        self.process = None;
        self.spawn().await;
    }

    fn process(&mut self) -> &mut ChildProcess {
        self.process.as_mut().expect("pipewarden was started")
    }

    /// Returns the addresses from the startup line of the current process.
    pub fn addrs(&self) -> ListenAddrs {
        self.addrs
    }

    /// Returns `http://ADDR` of the OTLP/gRPC receiver.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.addrs.grpc)
    }

    /// Returns `http://ADDR` of the OTLP/HTTP receiver.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.addrs.http)
    }

    /// Returns the URL of `path` on the web address.
    pub fn web_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addrs.web, path)
    }

    /// Returns the temporary data dir (kept across restarts).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Returns a shared HTTP client (no proxy, 30 s timeout).
    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// Returns the output of the current process so far.
    pub fn output(&self) -> String {
        self.process
            .as_ref()
            .map(ChildProcess::output)
            .unwrap_or_default()
    }

    /// GETs `path` (with query) on the web address and returns status and body text.
    pub async fn get_text(&self, path: &str) -> Result<(u16, String), String> {
        let response = self
            .http
            .get(self.web_url(path))
            .send()
            .await
            .map_err(|err| format!("GET {path}: {err}"))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|err| format!("GET {path}: reading body: {err}"))?;
        Ok((status, text))
    }

    /// GETs `path` and parses a JSON body whatever the status.
    pub async fn try_get_json(&self, path: &str) -> Result<(u16, Value), String> {
        let (status, text) = self.get_text(path).await?;
        let value = serde_json::from_str(&text).map_err(|err| {
            format!("GET {path}: status {status}, body is not JSON ({err}): {text}")
        })?;
        Ok((status, value))
    }

    /// GETs `path`, requires a 2xx status and returns the JSON body.
    ///
    /// # Panics
    /// On a transport error, a non-2xx status or a body that is not JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        match self.try_get_json(path).await {
            Ok((status, value)) if (200..300).contains(&status) => value,
            Ok((status, value)) => panic!("GET {path}: status {status}: {value}"),
            Err(err) => panic!("{err}"),
        }
    }

    /// GETs `/metrics` (Prometheus text).
    pub async fn metrics_text(&self) -> Result<String, String> {
        match self.get_text("/metrics").await? {
            (200, text) => Ok(text),
            (status, text) => Err(format!("GET /metrics: status {status}: {text}")),
        }
    }

    /// Returns the sum of the samples of `name` with `labels` on `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64, String> {
        let text = self.metrics_text().await?;
        Ok(prometheus::sample_sum(&text, name, labels).unwrap_or(0.0))
    }

    /// Returns `pipewarden_collector_accepted_total{signal=SIGNAL}`.
    pub async fn accepted(&self, signal: &str) -> Result<f64, String> {
        self.metric("pipewarden_collector_accepted_total", &[("signal", signal)])
            .await
    }

    /// Returns the entry of `stage` in `GET /api/v1/stages`, if listed.
    pub async fn stage(&self, stage: &str) -> Result<Option<Value>, String> {
        let (status, body) = self.try_get_json("/api/v1/stages").await?;
        if status != 200 {
            return Err(format!("GET /api/v1/stages: status {status}: {body}"));
        }
        let stages = body["stages"]
            .as_array()
            .ok_or_else(|| format!("GET /api/v1/stages: no `stages` array: {body}"))?;
        Ok(stages.iter().find(|s| s["stage"] == stage).cloned())
    }

    /// Returns the totals of `stage` (zero when the stage is not listed).
    pub async fn stage_totals(&self, stage: &str) -> Result<StageTotals, String> {
        match self.stage(stage).await? {
            None => Ok(StageTotals::default()),
            Some(entry) => serde_json::from_value(entry["totals"].clone())
                .map_err(|err| format!("stage {stage}: bad totals ({err}): {entry}")),
        }
    }

    /// Polls `GET /api/v1/stages` until the totals of `stage` equal `expected` and returns the
    /// stage entry.
    ///
    /// # Panics
    /// When `timeout` passes first: the message shows the last totals seen.
    pub async fn wait_stage_totals(
        &self,
        stage: &str,
        expected: StageTotals,
        timeout: Duration,
    ) -> Value {
        let what = format!("totals of stage {stage} to be {expected:?}");
        eventually(&what, timeout, || async {
            let entry = self
                .stage(stage)
                .await?
                .ok_or_else(|| format!("stage {stage} not listed yet"))?;
            let totals: StageTotals = serde_json::from_value(entry["totals"].clone())
                .map_err(|err| format!("bad totals ({err}): {entry}"))?;
            if totals == expected {
                Ok(entry)
            } else {
                Err(format!("last totals {totals:?}"))
            }
        })
        .await
    }

    /// Returns every stored point of the series of `stage` named `name` (all attribute sets),
    /// via `GET /api/v1/series` and `GET /api/v1/series/points`.
    pub async fn series_points(&self, stage: &str, name: &str) -> Result<Vec<StoredPoint>, String> {
        let path = format!(
            "/api/v1/series?stage={}&name={}",
            query_escape(stage),
            query_escape(name)
        );
        let (status, body) = self.try_get_json(&path).await?;
        if status != 200 {
            return Err(format!("GET {path}: status {status}: {body}"));
        }
        let series = body["series"]
            .as_array()
            .ok_or_else(|| format!("GET {path}: no `series` array: {body}"))?;
        let mut points = Vec::new();
        for entry in series {
            if entry["stage"] != stage || entry["name"] != name {
                continue;
            }
            let key = entry["key"]
                .as_str()
                .ok_or_else(|| format!("GET {path}: series without key: {entry}"))?;
            let path = format!(
                "/api/v1/series/points?key={}&from=0&to={}",
                query_escape(key),
                i64::MAX / 2
            );
            let (status, body) = self.try_get_json(&path).await?;
            if status != 200 {
                return Err(format!("GET {path}: status {status}: {body}"));
            }
            let list = body["points"]
                .as_array()
                .ok_or_else(|| format!("GET {path}: no `points` array: {body}"))?;
            for point in list {
                let timestamp_ms = point["timestamp_ms"]
                    .as_i64()
                    .ok_or_else(|| format!("GET {path}: point without timestamp_ms: {point}"))?;
                let value = point["value"]
                    .as_f64()
                    .ok_or_else(|| format!("GET {path}: point without numeric value: {point}"))?;
                points.push(StoredPoint {
                    key: key.to_owned(),
                    attributes: entry["attributes"].clone(),
                    timestamp_ms,
                    value,
                    count: point["count"].as_u64().unwrap_or(1),
                });
            }
        }
        Ok(points)
    }

    /// Sends SIGINT.
    pub fn interrupt(&mut self) {
        self.process().signal(Signal::Int);
    }

    /// Sends SIGTERM.
    pub fn terminate(&mut self) {
        self.process().signal(Signal::Term);
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) -> ExitStatus {
        self.process().kill()
    }

    /// Waits for the process to exit.
    ///
    /// # Panics
    /// When it still runs after `timeout` (the process is then killed and its output shown).
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.process().wait_exit(timeout).await {
            Some(status) => status,
            None => panic!("pipewarden did not exit within {timeout:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_startup_line() {
        let want = ListenAddrs {
            grpc: "127.0.0.1:4317".parse().unwrap(),
            http: "127.0.0.1:4318".parse().unwrap(),
            web: "127.0.0.1:9464".parse().unwrap(),
        };
        let plain =
            "pipewarden listening grpc=127.0.0.1:4317 http=127.0.0.1:4318 web=127.0.0.1:9464";
        assert_eq!(parse_listening_line(plain), Some(want));
        let logged = "2026-01-01T00:00:00Z  INFO pipewarden: pipewarden listening \
                      grpc=127.0.0.1:4317 http=127.0.0.1:4318 web=127.0.0.1:9464";
        assert_eq!(parse_listening_line(logged), Some(want));
        assert_eq!(
            parse_listening_line("pipewarden listening grpc=127.0.0.1:1"),
            None
        );
        assert_eq!(parse_listening_line("starting"), None);
    }
}
