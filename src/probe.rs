//! App glue of the synthetic prober (`pipewarden-synthetic`): builds the probes of the
//! `[synthetic]` section, installs the collector's span tap for probe traces, and fans every
//! result out: to the local store (`probe_results`, `probe_findings`), to alerting
//! (`ProbeResultInput`; a dead-man's switch finding is the pseudo-probe `deadman/<probe>` or
//! `deadman/<probe>/<stage>`, down while it lasts), to the Elasticsearch sink when it is on
//! (Heartbeat-shaped documents), and as series to the detector (stage `synthetic`, attribute
//! `probe`: `probe.up`, `probe.latency_ms`, `probe.losses`, `probe.duplicates`,
//! `probe.tls_days_left`, and `probe.stage_latency_ms` with attribute `stage`). Also serves `GET /api/v1/probes`,
//! `/api/v1/probes/results` and `/api/v1/probes/findings`, reports the prober on `/readyz`
//! ([`ProbeReadiness`]), and runs `pipewarden probe run`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use pipewarden_collector::probe_tap::{SpanSummary, SpanTap};
use pipewarden_collector::{SeriesPoint, SignalBatch};
use pipewarden_synthetic::{
    DeadManFinding, ProbeOutput, ProbeResult, Prober, RunMode, StageSpan, SyntheticTelemetry,
    TRACE_ID_PREFIX, ValidSyntheticConfig,
};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::alert::{AlertEvent, AlertInput, ProbeResultInput};
use crate::sink::elasticsearch::{EsDocument, SinkInput};
use crate::sink::local::ProbeStore;
use crate::web::AppError;

/// Stage of the probe series.
pub const SERIES_STAGE: &str = "synthetic";

/// Where probe outputs go.
pub struct ProbeSinks {
    /// Local store tables.
    pub store: ProbeStore,
    /// The detector's input (series).
    pub detector: mpsc::Sender<SignalBatch>,
    /// Alerting.
    pub alerts: AlertInput,
    /// The Elasticsearch sink, when on.
    pub elasticsearch: Option<SinkInput>,
}

/// The prober's part of `/readyz`: `disabled` when no probe is configured, `ready` while the
/// prober runs, `not_ready` once it stopped (shutdown began, or its task ended). A probe that
/// fails is a finding about the pipeline, not about pipewarden: it does not change readiness.
#[derive(Debug, Default)]
pub struct ProbeReadiness {
    configured: AtomicBool,
    running: AtomicBool,
}

impl ProbeReadiness {
    /// Records that the prober was built and started (`true`) or has stopped (`false`).
    pub fn set_running(&self, running: bool) {
        self.configured.store(true, Ordering::Relaxed);
        self.running.store(running, Ordering::Relaxed);
    }

    /// Returns `disabled`, `ready` or `not_ready`.
    pub fn status(&self) -> &'static str {
        if !self.configured.load(Ordering::Relaxed) {
            "disabled"
        } else if self.running.load(Ordering::Relaxed) {
            "ready"
        } else {
            "not_ready"
        }
    }

    /// Returns whether the prober keeps the process ready (running, or no probe configured).
    pub fn is_ready(&self) -> bool {
        self.status() != "not_ready"
    }
}

/// Marks the prober stopped when dropped.
struct MarkStoppedOnDrop(Arc<ProbeReadiness>);

impl Drop for MarkStoppedOnDrop {
    fn drop(&mut self) {
        self.0.set_running(false);
    }
}

/// A running prober: the tap to install on the collector and the tasks to await at shutdown.
pub struct RunningProbes {
    /// Span tap for [`pipewarden_collector::Collector::with_span_tap`].
    pub tap: SpanTap,
    /// Prober, span relay and output forwarder tasks.
    pub tasks: Vec<JoinHandle<()>>,
}

/// Builds and starts the probes when any is configured; they stop when `intake_stop` is
/// cancelled, and the forwarder drains what they produced. `readiness` follows the prober.
///
/// # Errors
/// When a probe cannot be built (a Kafka client, the observed topic's metadata).
pub async fn start(
    config: &ValidSyntheticConfig,
    registry: &mut Registry,
    sinks: ProbeSinks,
    intake_stop: CancellationToken,
    readiness: Arc<ProbeReadiness>,
) -> anyhow::Result<Option<RunningProbes>> {
    if !config.enabled() {
        return Ok(None);
    }
    let telemetry = SyntheticTelemetry::register(registry);
    let prober = Prober::build(config, None, telemetry).await?;
    let (tap_tx, tap_rx) = mpsc::channel(config.span_queue_capacity);
    let (span_tx, span_rx) = mpsc::channel(config.span_queue_capacity);
    let (output_tx, output_rx) = mpsc::channel(config.result_queue_capacity);
    readiness.set_running(true);
    let run_prober = async move {
        // Dropped when the prober returns, panics or its task is aborted.
        let _stopped = MarkStoppedOnDrop(readiness);
        prober
            .run(RunMode::Schedule, span_rx, output_tx, intake_stop)
            .await;
    };
    let tasks = vec![
        tokio::spawn(relay_spans(tap_rx, span_tx)),
        tokio::spawn(run_prober),
        tokio::spawn(forward_outputs(output_rx, sinks)),
    ];
    Ok(Some(RunningProbes {
        tap: SpanTap::new(&TRACE_ID_PREFIX, tap_tx),
        tasks,
    }))
}

async fn relay_spans(mut input: mpsc::Receiver<SpanSummary>, output: mpsc::Sender<StageSpan>) {
    while let Some(span) = input.recv().await {
        let span = StageSpan {
            trace_id: span.trace_id,
            stage: span.stage,
            start_unix_nano: span.start_unix_nano,
            end_unix_nano: span.end_unix_nano,
        };
        if output.send(span).await.is_err() {
            break;
        }
    }
}

/// Stores, alerts on, indexes and scores every output until the prober stops.
async fn forward_outputs(mut outputs: mpsc::Receiver<ProbeOutput>, sinks: ProbeSinks) {
    info!("probe result forwarder started");
    while let Some(output) = outputs.recv().await {
        match output {
            ProbeOutput::Result(result) => forward_result(&result, &sinks).await,
            ProbeOutput::DeadMan(finding) => forward_finding(&finding, &sinks).await,
        }
    }
    info!("probe result forwarder drained");
}

async fn forward_result(result: &ProbeResult, sinks: &ProbeSinks) {
    if let Err(err) = sinks.store.insert_result(result).await {
        warn!(error = %err, probe = %result.probe, "storing a probe result failed");
    }
    let up = result.status.is_up();
    let elapsed = (result.finished_ms - result.started_ms) as f64;
    let input = ProbeResultInput {
        probe: result.probe.clone(),
        up,
        timestamp_ms: result.finished_ms,
        latency_ms: result.latency_ms.unwrap_or(elapsed),
    };
    if sinks
        .alerts
        .send(vec![AlertEvent::Probe(input)])
        .await
        .is_err()
    {
        warn!("alerting stopped before the prober; probe results are not evaluated");
    }
    if let Some(es) = &sinks.elasticsearch {
        let details = json!({
            "status": result.status.as_str(),
            "seq": result.seq,
            "events": result.events,
            "received": result.received,
            "losses": result.losses,
            "duplicates": result.duplicates,
            "late": result.late,
            "stages": result.stages,
            "http_status": result.http_status,
            "tls_days_left": result.tls_days_left,
            "error": result.error,
        });
        let doc = EsDocument::probe(
            &result.run_id,
            &result.probe,
            &result.kind,
            result.finished_ms,
            up,
            result.latency_ms.or(Some(elapsed)),
            details,
        );
        if let Err(err) = es.send(vec![doc]).await {
            warn!(error = %err, "elasticsearch spool refused a probe document");
        }
    }
    let points = result_series(result);
    if sinks
        .detector
        .send(SignalBatch {
            points,
            ..SignalBatch::default()
        })
        .await
        .is_err()
    {
        warn!("detector stopped before the prober; probe series are not scored");
    }
}

async fn forward_finding(finding: &DeadManFinding, sinks: &ProbeSinks) {
    if finding.active {
        warn!(probe = %finding.probe, subject = %finding.subject, "{}", finding.message);
    } else {
        info!(probe = %finding.probe, subject = %finding.subject, "{}", finding.message);
    }
    if let Err(err) = sinks.store.insert_finding(finding).await {
        warn!(error = %err, "storing a dead-man's switch finding failed");
    }
    let input = ProbeResultInput {
        probe: dead_man_probe_name(finding),
        up: !finding.active,
        timestamp_ms: finding.timestamp_ms,
        latency_ms: 0.0,
    };
    if sinks
        .alerts
        .send(vec![AlertEvent::Probe(input)])
        .await
        .is_err()
    {
        warn!("alerting stopped before the prober; a dead-man finding is not evaluated");
    }
    if let Some(es) = &sinks.elasticsearch {
        let id = format!(
            "{}-{}-{}",
            dead_man_probe_name(finding),
            finding.timestamp_ms,
            finding.active
        );
        let details = json!({
            "status": if finding.active { "down" } else { "up" },
            "finding": finding.subject,
            "error": finding.message,
        });
        let doc = EsDocument::probe(
            &id,
            &dead_man_probe_name(finding),
            "deadman",
            finding.timestamp_ms,
            !finding.active,
            None,
            details,
        );
        if let Err(err) = es.send(vec![doc]).await {
            warn!(error = %err, "elasticsearch spool refused a dead-man document");
        }
    }
}

/// Returns the pseudo-probe name alert rules see for a finding: `deadman/<probe>` or
/// `deadman/<probe>/<stage>`.
pub fn dead_man_probe_name(finding: &DeadManFinding) -> String {
    match finding.subject.strip_prefix("stage:") {
        Some(stage) => format!("deadman/{}/{stage}", finding.probe),
        None => format!("deadman/{}", finding.probe),
    }
}

fn point(
    name: &str,
    attributes: Vec<(String, String)>,
    timestamp_ms: i64,
    value: f64,
) -> SeriesPoint {
    SeriesPoint::new(SERIES_STAGE, name, attributes, timestamp_ms, value)
}

/// Returns the series points of one result.
pub fn result_series(result: &ProbeResult) -> Vec<SeriesPoint> {
    let ts = result.finished_ms;
    let attrs = || vec![("probe".to_owned(), result.probe.clone())];
    let mut points = vec![point(
        "probe.up",
        attrs(),
        ts,
        if result.status.is_up() { 1.0 } else { 0.0 },
    )];
    if let Some(latency) = result.latency_ms {
        points.push(point("probe.latency_ms", attrs(), ts, latency));
    }
    if let Some(days) = result.tls_days_left {
        points.push(point("probe.tls_days_left", attrs(), ts, days));
    }
    if result.kind == "pipeline" {
        points.push(point("probe.losses", attrs(), ts, result.losses as f64));
        points.push(point(
            "probe.duplicates",
            attrs(),
            ts,
            result.duplicates as f64,
        ));
    }
    for stage in &result.stages {
        if let Some(duration) = stage.duration_ms {
            let attributes = vec![
                ("probe".to_owned(), result.probe.clone()),
                ("stage".to_owned(), stage.stage.clone()),
            ];
            points.push(point("probe.stage_latency_ms", attributes, ts, duration));
        }
    }
    points
}

#[derive(Clone)]
struct ApiState {
    store: ProbeStore,
    max_rows: usize,
}

/// Routes `GET /api/v1/probes` (every probe: counts, last result, active dead-man findings),
/// `GET /api/v1/probes/results?probe=&limit=` and `GET /api/v1/probes/findings?probe=&limit=`
/// (newest first).
pub fn api_router(store: ProbeStore, max_rows: usize) -> Router {
    Router::new()
        .route("/api/v1/probes", get(probes))
        .route("/api/v1/probes/results", get(results))
        .route("/api/v1/probes/findings", get(findings))
        .with_state(ApiState { store, max_rows })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    probe: Option<String>,
    limit: Option<usize>,
}

fn list_query(
    q: Result<Query<ListQuery>, QueryRejection>,
    max: usize,
) -> Result<(Option<String>, usize), AppError> {
    let Query(q) = q.map_err(|err| AppError::BadRequest(err.body_text()))?;
    Ok((q.probe, q.limit.unwrap_or(max).clamp(1, max)))
}

async fn probes(State(state): State<ApiState>) -> Result<Json<Value>, AppError> {
    let probes = state.store.summaries().await?;
    Ok(Json(json!({ "probes": probes })))
}

async fn results(
    State(state): State<ApiState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let (probe, limit) = list_query(q, state.max_rows)?;
    let results = state.store.results(probe, limit).await?;
    Ok(Json(json!({ "results": results })))
}

async fn findings(
    State(state): State<ApiState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let (probe, limit) = list_query(q, state.max_rows)?;
    let findings = state.store.findings(probe, limit).await?;
    Ok(Json(json!({ "findings": findings })))
}

/// Exit code of `probe run` when every result was up.
const EXIT_UP: u8 = 0;
/// Exit code when a result was down or timed out (or a probe could not be built).
const EXIT_FAILED: u8 = 1;
/// Exit code of a configuration problem (no such probe, none configured).
const EXIT_CONFIG: u8 = 64;

/// Returns one line describing a result.
pub fn result_line(result: &ProbeResult) -> String {
    let mut line = format!(
        "{} {} seq={}",
        result.probe,
        result.status.as_str(),
        result.seq
    );
    if let Some(latency) = result.latency_ms {
        line.push_str(&format!(" latency_ms={latency:.1}"));
    }
    if result.kind == "pipeline" {
        line.push_str(&format!(
            " events={}/{} losses={} duplicates={}",
            result.received, result.events, result.losses, result.duplicates
        ));
    }
    if let Some(status) = result.http_status {
        line.push_str(&format!(" http_status={status}"));
    }
    if let Some(days) = result.tls_days_left {
        line.push_str(&format!(" tls_days_left={days:.1}"));
    }
    for stage in &result.stages {
        match stage.duration_ms {
            Some(d) => line.push_str(&format!(" stage[{}]={d:.1}ms", stage.stage)),
            None => line.push_str(&format!(" stage[{}]=unseen", stage.stage)),
        }
    }
    if let Some(error) = &result.error {
        line.push_str(&format!(" error={error:?}"));
    }
    line
}

/// `pipewarden probe run [NAME] [--once] [--json]`: runs the named probe (or all), prints one
/// line (or one JSON object) per result, and returns 0 when every result was up, 1 otherwise,
/// 64 when no such probe is configured. Without `--once` probes run on their schedule until
/// Ctrl-C.
pub fn run_cli(
    config: &ValidSyntheticConfig,
    name: Option<&str>,
    once: bool,
    json_lines: bool,
) -> ExitCode {
    if let Some(name) = name
        && !config.probes.iter().any(|p| p.name == name)
    {
        eprintln!("no probe named `{name}` in [synthetic]");
        return ExitCode::from(EXIT_CONFIG);
    }
    if !config.enabled() {
        eprintln!("no probe configured in [synthetic]");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let mut registry = Registry::default();
        let prober =
            match Prober::build(config, name, SyntheticTelemetry::register(&mut registry)).await {
                Ok(prober) => prober,
                Err(err) => {
                    eprintln!("{err}");
                    return EXIT_FAILED;
                }
            };
        let stop = CancellationToken::new();
        let signal_stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                signal_stop.cancel();
            }
        });
        // No collector here: stage spans are not joined.
        let (_span_tx, span_rx) = mpsc::channel(1);
        let (output_tx, mut output_rx) = mpsc::channel(64);
        let mode = if once {
            RunMode::Once
        } else {
            RunMode::Schedule
        };
        let task = tokio::spawn(prober.run(mode, span_rx, output_tx, stop));
        let mut code = EXIT_UP;
        let mut results = 0;
        while let Some(output) = output_rx.recv().await {
            match output {
                ProbeOutput::Result(result) => {
                    results += 1;
                    if !result.status.is_up() {
                        code = EXIT_FAILED;
                    }
                    if json_lines {
                        println!("{}", serde_json::to_string(&result).unwrap_or_default());
                    } else {
                        println!("{}", result_line(&result));
                    }
                }
                ProbeOutput::DeadMan(finding) => {
                    if json_lines {
                        println!("{}", serde_json::to_string(&finding).unwrap_or_default());
                    } else {
                        println!("{} deadman {}", finding.probe, finding.message);
                    }
                }
            }
        }
        if task.await.is_err() || (once && results == 0) {
            code = EXIT_FAILED;
        }
        code
    });
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt as _;
    use pipewarden_synthetic::{ProbeStatus, SequenceTotals, StageLatency};
    use tower::ServiceExt as _;

    use super::*;

    fn result(seq: u64, status: ProbeStatus) -> ProbeResult {
        ProbeResult {
            probe: "orders".into(),
            kind: "pipeline".into(),
            run_id: format!("orders-0000000a-{seq}"),
            seq,
            status,
            started_ms: 1_000 * seq as i64,
            finished_ms: 1_000 * seq as i64 + 250,
            latency_ms: status.is_up().then_some(212.0),
            stages: vec![StageLatency {
                stage: "relay".into(),
                seen: true,
                duration_ms: Some(201.5),
                offset_ms: Some(205.0),
            }],
            events: 1,
            received: u32::from(status.is_up()),
            losses: u64::from(!status.is_up()),
            duplicates: 1,
            late: 0,
            totals: SequenceTotals::default(),
            http_status: None,
            tls_days_left: None,
            error: None,
        }
    }

    #[test]
    fn a_result_becomes_series_with_the_probe_attribute() {
        let points = result_series(&result(3, ProbeStatus::Up));
        let names: Vec<(&str, f64)> = points
            .iter()
            .map(|p| (p.series.name.as_str(), p.value))
            .collect();
        assert_eq!(
            names,
            [
                ("probe.up", 1.0),
                ("probe.latency_ms", 212.0),
                ("probe.losses", 0.0),
                ("probe.duplicates", 1.0),
                ("probe.stage_latency_ms", 201.5),
            ]
        );
        assert_eq!(points[0].series.key, "synthetic|probe.up|probe=orders");
        assert_eq!(
            points[4].series.key,
            "synthetic|probe.stage_latency_ms|probe=orders,stage=relay"
        );
        let down = result_series(&result(4, ProbeStatus::Timeout));
        assert_eq!(down[0].value, 0.0);
        assert!(down.iter().all(|p| p.series.name != "probe.latency_ms"));
    }

    #[test]
    fn readiness_is_disabled_without_probes_and_follows_the_prober() {
        let readiness = ProbeReadiness::default();
        assert_eq!(readiness.status(), "disabled");
        assert!(readiness.is_ready());
        readiness.set_running(true);
        assert_eq!(readiness.status(), "ready");
        assert!(readiness.is_ready());
        readiness.set_running(false);
        assert_eq!(readiness.status(), "not_ready");
        assert!(!readiness.is_ready());
        let readiness = Arc::new(ProbeReadiness::default());
        readiness.set_running(true);
        drop(MarkStoppedOnDrop(Arc::clone(&readiness)));
        assert_eq!(readiness.status(), "not_ready");
    }

    #[test]
    fn dead_man_findings_are_pseudo_probes() {
        let finding = |subject: &str| DeadManFinding {
            probe: "orders".into(),
            subject: subject.into(),
            active: true,
            last_seen_ms: 0,
            timestamp_ms: 1,
            intervals: 3,
            message: String::new(),
        };
        assert_eq!(dead_man_probe_name(&finding("probe")), "deadman/orders");
        assert_eq!(
            dead_man_probe_name(&finding("stage:relay")),
            "deadman/orders/relay"
        );
    }

    #[test]
    fn the_elasticsearch_document_is_heartbeat_shaped() {
        let r = result(5, ProbeStatus::Up);
        let doc = EsDocument::probe(
            &r.run_id,
            &r.probe,
            "pipeline",
            r.finished_ms,
            true,
            r.latency_ms,
            json!({ "seq": 5, "losses": 0, "stages": r.stages }),
        );
        assert_eq!(doc.id, "orders-0000000a-5");
        let b = &doc.body;
        assert_eq!(b["monitor"]["id"], "orders");
        assert_eq!(b["monitor"]["status"], "up");
        assert_eq!(b["monitor"]["type"], "pipeline");
        assert_eq!(b["monitor"]["duration"]["us"], 212_000);
        assert_eq!(b["event"]["duration"], 212_000_000_i64);
        assert_eq!(b["event"]["outcome"], "success");
        assert_eq!(b["pipewarden"]["probe"]["seq"], 5);
        assert_eq!(b["pipewarden"]["probe"]["stages"][0]["stage"], "relay");
    }

    async fn get(router: &Router, uri: &str) -> (StatusCode, Value) {
        let response = router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn the_api_lists_probes_results_and_findings() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProbeStore::open(dir.path(), std::time::Duration::from_secs(3600)).unwrap();
        for (seq, status) in [
            (1, ProbeStatus::Up),
            (2, ProbeStatus::Timeout),
            (3, ProbeStatus::Up),
        ] {
            store.insert_result(&result(seq, status)).await.unwrap();
        }
        // Idempotent: the same run id replaces.
        store
            .insert_result(&result(3, ProbeStatus::Up))
            .await
            .unwrap();
        let finding = DeadManFinding {
            probe: "orders".into(),
            subject: "stage:relay".into(),
            active: true,
            last_seen_ms: 1,
            timestamp_ms: 2,
            intervals: 3,
            message: "stage relay sent no span".into(),
        };
        store.insert_finding(&finding).await.unwrap();
        let router = api_router(store.clone(), 100);

        let (status, body) = get(&router, "/api/v1/probes").await;
        assert_eq!(status, StatusCode::OK);
        let probe = &body["probes"][0];
        assert_eq!(probe["probe"], "orders");
        assert_eq!(
            probe["counts"],
            json!({"runs": 3, "up": 2, "down": 0, "timeout": 1})
        );
        assert_eq!(probe["last"]["seq"], 3);
        assert_eq!(probe["findings"][0]["subject"], "stage:relay");

        let (_, body) = get(&router, "/api/v1/probes/results?probe=orders&limit=2").await;
        let seqs: Vec<u64> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [3, 2]);

        // The finding ends: no longer listed as active, still in the history.
        store
            .insert_finding(&DeadManFinding {
                active: false,
                timestamp_ms: 3,
                ..finding
            })
            .await
            .unwrap();
        let (_, body) = get(&router, "/api/v1/probes").await;
        assert_eq!(body["probes"][0]["findings"], json!([]));
        let (_, body) = get(&router, "/api/v1/probes/findings").await;
        assert_eq!(body["findings"].as_array().unwrap().len(), 2);

        let (status, _) = get(&router, "/api/v1/probes/results?nope=1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}
