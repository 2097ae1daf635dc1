//! Turns collector signals into detector observations, and scored points into anomaly records.
//!
//! [`run_detector`] is the loop between the collector and the store: every series point of every
//! batch is scored by the [`SeriesBank`] (one online model per series, capped), points at or
//! above the alert threshold become [`Anomaly`] records, and the batch goes on to the store with
//! its scores. Sends await, so a slow store slows the collector down instead of losing data.
//! Stage windows are also scored per stage by the multivariate model, anomalies matching
//! false-positive feedback are suppressed, and log records are offered (without waiting) to the
//! log detector task (see [`crate::detect`]).

use pipewarden_collector::{LogRecord, SeriesKind, SeriesPoint, SignalBatch};
use pipewarden_detector::{ScoredPoint, SeriesBank, SeriesBankValidParams, SeriesId};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::alert::AlertInput;
use crate::anomaly::{Anomaly, SeriesAt};
use crate::config::DetectorConfig;
use crate::detect::stages::StageScorer;
use crate::detect::{LogFeed, Suppressor};
use crate::shared_series::SharedSeriesMap;
use crate::sink::elasticsearch::{EsDocument, Redactor, SinkInput};
use crate::sink::local::{LogChunk, LogChunkEncoder, StoreBatch};
use crate::telemetry::{AppTelemetry, ReasonLabel};

/// Maps the `[detector]` section onto the detector's parameters.
///
/// # Errors
/// When the detector refuses a value (the config's own validation normally catches it first).
pub fn bank_params(config: &DetectorConfig) -> anyhow::Result<SeriesBankValidParams> {
    use linfa::ParamGuard;
    SeriesBank::params()
        .max_series(config.max_series)
        .alert_threshold(config.alert_threshold)
        .warmup_points(config.warmup_points)
        .window_points(config.window_points)
        // At most a day (validated): far below i64::MAX ms.
        .min_point_interval_ms(
            i64::try_from(config.min_point_interval.as_millis()).unwrap_or(i64::MAX),
        )
        .check()
        .map_err(|err| anyhow::anyhow!("detector: {err}"))
}

/// The bank's handles of the series the collector keeps, so their points skip the bank's lookup
/// of the key string (see [`SharedSeriesMap`]: only series the collector also holds get a handle;
/// the others are scored by key). A handle the bank no longer honours (its series was evicted) is
/// taken again, so scores are exactly those of scoring by key.
#[derive(Debug)]
pub struct SeriesHandles {
    /// Each series' handle, and the kind of its values.
    ids: SharedSeriesMap<(SeriesId, SeriesKind)>,
}

impl SeriesHandles {
    /// An empty map of at most `max_entries` handles (at least one).
    pub fn new(max_entries: usize) -> Self {
        Self {
            ids: SharedSeriesMap::new(max_entries),
        }
    }

    /// Returns how many series have a handle.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Returns whether no series has a handle.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Scores `point` in `bank`, through the series' handle when it has one. A running total or
    /// an increment is scored by its rate (see [`SeriesBank::observe_total`] and
    /// [`SeriesBank::observe_increment`]).
    pub fn observe(&mut self, bank: &mut SeriesBank, point: &SeriesPoint) -> ScoredPoint {
        let series = &point.series;
        let (timestamp_ms, value) = (point.timestamp_ms, point.value);
        let by_id = |bank: &mut SeriesBank, (id, kind): (SeriesId, SeriesKind)| match kind {
            SeriesKind::Reading => bank.observe_id(id, timestamp_ms, value),
            SeriesKind::RunningTotal => bank.observe_total_id(id, timestamp_ms, value),
            SeriesKind::Increment => {
                bank.observe_increment_id(id, timestamp_ms, point.start_ms, value)
            }
        };
        // A hit reads nothing of the series itself (only its address), so its memory stays
        // cold: the handle's entry says what kind the series is.
        if let Some(handle) = self.ids.get(series)
            && let Some(scored) = by_id(bank, handle)
        {
            return scored;
        }
        let kind = series.kind;
        let by_key = |bank: &mut SeriesBank| match kind {
            SeriesKind::Reading => bank.observe(&series.key, timestamp_ms, value),
            SeriesKind::RunningTotal => bank.observe_total(&series.key, timestamp_ms, value),
            SeriesKind::Increment => {
                bank.observe_increment(&series.key, timestamp_ms, point.start_ms, value)
            }
        };
        if !SharedSeriesMap::<(SeriesId, SeriesKind)>::is_shared(series) {
            return by_key(bank);
        }
        let handle = (bank.handle(&series.key), kind);
        self.ids.insert(series, handle);
        match by_id(bank, handle) {
            Some(scored) => scored,
            // A handle just taken is always honoured; scoring by key is the same anyway.
            None => by_key(bank),
        }
    }
}

/// Scores one batch: returns the batch for the store with one score per point and the anomalies.
pub fn score_batch(
    bank: &mut SeriesBank,
    handles: &mut SeriesHandles,
    signals: SignalBatch,
) -> StoreBatch {
    let mut scores = Vec::with_capacity(signals.points.len());
    let mut anomalies = Vec::new();
    for point in &signals.points {
        let scored = handles.observe(bank, point);
        scores.push(scored.score);
        if scored.is_anomaly {
            let e = &scored.explanation;
            // Univariate models name their only feature `value`: the series name says more.
            let feature = if e.feature.is_empty() || e.feature == "value" {
                point.series.name.clone()
            } else {
                e.feature.to_string()
            };
            let series = SeriesAt {
                key: &point.series.key,
                stage: &point.series.stage,
                name: &point.series.name,
                timestamp_ms: point.timestamp_ms,
            };
            anomalies.push(Anomaly::from_scored(series, &scored, feature));
        }
    }
    StoreBatch {
        signals,
        scores,
        anomalies,
        lag: Vec::new(),
        log_chunks: Vec::new(),
    }
}

/// Masks (or hashes) personal data in log bodies and attributes before anything keeps them.
pub fn redact_logs(redactor: &Redactor, logs: &mut [LogRecord]) {
    if redactor.is_noop() {
        return;
    }
    for log in logs {
        if let std::borrow::Cow::Owned(body) = redactor.redact_str(&log.body) {
            log.body = body;
        }
        redactor.redact_value(&mut log.attributes);
    }
}

/// Encodes the store's log records with the loop's encoder (made at the first records);
/// records that cannot be encoded are counted as dropped.
fn encode_log_chunks(
    encoder: &mut Option<LogChunkEncoder>,
    records: &[LogRecord],
    telemetry: &AppTelemetry,
) -> Vec<LogChunk> {
    if records.is_empty() {
        return Vec::new();
    }
    let encoded = match encoder {
        Some(encoder) => encoder.encode(records),
        None => LogChunkEncoder::new().and_then(|made| encoder.insert(made).encode(records)),
    };
    match encoded {
        Ok(chunks) => chunks,
        Err(err) => {
            warn!(error = %err, records = records.len(), "log records cannot be encoded; not stored");
            telemetry
                .store_dropped_rows
                .get_or_create(&ReasonLabel {
                    reason: "encode_error".to_owned(),
                })
                .inc_by(records.len() as u64);
            Vec::new()
        }
    }
}

/// A token bucket limiting how many raw log records per second reach the store.
#[derive(Debug)]
pub struct LogRateLimit {
    per_second: u64,
    tokens: f64,
    last: Option<Instant>,
}

impl LogRateLimit {
    /// A bucket of `per_second` tokens refilled continuously; 0 means no limit.
    pub fn new(per_second: u64) -> Self {
        Self {
            per_second,
            tokens: per_second as f64,
            last: None,
        }
    }

    /// Keeps the records the bucket allows at `now` (in arrival order) and returns how many it
    /// removed.
    pub fn apply(&mut self, logs: &mut Vec<LogRecord>, now: Instant) -> usize {
        let keep = self.allow(logs.len(), now);
        let removed = logs.len() - keep;
        logs.truncate(keep);
        removed
    }

    /// Takes up to `wanted` tokens at `now` and returns how many records may be kept.
    pub fn allow(&mut self, wanted: usize, now: Instant) -> usize {
        if self.per_second == 0 || wanted == 0 {
            return wanted;
        }
        let capacity = self.per_second as f64;
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * capacity;
            self.tokens = (self.tokens + refill).min(capacity);
        }
        self.last = Some(now);
        let allowed = self.tokens.floor() as usize;
        let keep = allowed.min(wanted);
        self.tokens -= keep as f64;
        keep
    }
}

/// The loop between the collector and the sinks, with everything it feeds.
pub struct DetectorLoop {
    /// One online model per series.
    pub bank: SeriesBank,
    /// Signals from the collector and the lag source.
    pub input: mpsc::Receiver<SignalBatch>,
    /// Scored batches to the local store.
    pub output: mpsc::Sender<StoreBatch>,
    /// Points, anomalies and windows to alerting.
    pub alerts: AlertInput,
    /// Cap on raw log records stored per second.
    pub log_limit: LogRateLimit,
    /// Anomalies and stage windows to Elasticsearch, when the sink is on.
    pub elasticsearch: Option<SinkInput>,
    /// PII redaction of log records before they are stored.
    pub redactor: Redactor,
    /// The app's instruments.
    pub telemetry: AppTelemetry,
    /// The log detector's queue (`None` when it is off): every log record is offered to it,
    /// before the store's rate limit.
    pub logs: Option<LogFeed>,
    /// False-positive suppression of anomalies.
    pub suppressor: Option<Suppressor>,
    /// Multivariate scoring of each stage's windows (`None` when it is off).
    pub stages: Option<StageScorer>,
}

/// Scores every batch from `input` and forwards it to `output`, until `input` closes (the
/// collector has flushed); then returns, dropping `output` so the store finishes too.
pub async fn run_detector(detector: DetectorLoop) {
    let DetectorLoop {
        mut bank,
        mut input,
        output,
        alerts,
        mut log_limit,
        elasticsearch,
        redactor,
        telemetry,
        mut logs,
        suppressor,
        mut stages,
    } = detector;
    info!("detector started");
    let mut handles = SeriesHandles::new(bank.hyperparams().max_series());
    let mut encoder = None;
    let mut store_closed = false;
    while let Some(signals) = input.recv().await {
        telemetry.pipeline_queue_depth.set(input.len() as i64);
        let points = signals.points.len() as u64;
        let evictions_before = bank.evictions();
        let thinned_before = bank.thinned();
        let mut batch = score_batch(&mut bank, &mut handles, signals);
        if let Some(stages) = &mut stages {
            stages
                .observe(&batch.signals.stage_windows, &mut batch.anomalies)
                .await;
        }
        if let Some(suppressor) = &suppressor {
            suppressor.filter(&mut batch.anomalies).await;
        }
        // Records are redacted before anything keeps them (the log detector's templates
        // included); the store's share is encoded here, so the records themselves move on to
        // the log detector without a copy.
        let mut records = std::mem::take(&mut batch.signals.logs);
        let limited = match &mut logs {
            Some(feed) if !records.is_empty() => {
                redact_logs(&redactor, &mut records);
                let keep = log_limit.allow(records.len(), Instant::now());
                batch.log_chunks = encode_log_chunks(&mut encoder, &records[..keep], &telemetry);
                let removed = records.len() - keep;
                // Every record is offered to the log detector (which never blocks and applies
                // its own cap).
                feed.offer(records);
                removed
            }
            _ => {
                let removed = log_limit.apply(&mut records, Instant::now());
                redact_logs(&redactor, &mut records);
                batch.log_chunks = encode_log_chunks(&mut encoder, &records, &telemetry);
                removed
            }
        };
        if limited > 0 {
            telemetry
                .store_dropped_rows
                .get_or_create(&ReasonLabel {
                    reason: "log_rate_limit".to_owned(),
                })
                .inc_by(limited as u64);
        }
        let thinned = bank.thinned().saturating_sub(thinned_before);
        telemetry
            .detector_points_scored
            .inc_by(points.saturating_sub(thinned));
        telemetry.detector_points_thinned.inc_by(thinned);
        telemetry
            .detector_anomalies
            .inc_by(batch.anomalies.len() as u64);
        telemetry
            .detector_evictions
            .inc_by(bank.evictions().saturating_sub(evictions_before));
        telemetry.detector_series.set(bank.len() as i64);
        telemetry
            .detector_bytes_per_series
            .set(bank.approx_bytes_per_series() as u64);
        if let Some(es) = &elasticsearch {
            let docs: Vec<EsDocument> = batch
                .anomalies
                .iter()
                .map(EsDocument::from_anomaly)
                .chain(
                    batch
                        .signals
                        .stage_windows
                        .iter()
                        .map(EsDocument::from_stage_window),
                )
                .collect();
            // Returns once the documents are in the durable spool (awaits when it is full).
            if let Err(err) = es.send(docs).await {
                warn!(error = %err, "elasticsearch spool refused documents");
            }
        }
        if alerts.send_store_batch(&batch).await.is_err() {
            warn!("alerting stopped before the detector; its inputs are dropped");
        }
        if store_closed {
            let rows = batch.signals.points.len()
                + batch.log_chunks.iter().map(|c| c.count).sum::<usize>();
            telemetry
                .store_dropped_rows
                .get_or_create(&ReasonLabel {
                    reason: "store_gone".to_owned(),
                })
                .inc_by(rows as u64);
            continue;
        }
        if output.send(batch).await.is_err() {
            // Only happens when the store writer thread died; keep draining so intake never
            // blocks forever, and make it loud.
            warn!("store writer is gone; results are no longer stored");
            store_closed = true;
        }
    }
    info!("detector drained");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use pipewarden_collector::Series;
    use pipewarden_detector::RATE_FEATURE;

    use super::*;

    fn small_bank(max_series: usize) -> SeriesBank {
        use linfa::ParamGuard;
        SeriesBank::new(SeriesBank::params().max_series(max_series).check().unwrap())
    }

    /// Points of two series kept by a "collector" (shared `Arc`s), one one-off series per point,
    /// with a spike now and then.
    fn shared_points(kept: &[Arc<Series>], n: usize) -> Vec<SeriesPoint> {
        (0..n)
            .flat_map(|i| {
                let value = if i % 97 == 96 {
                    400.0
                } else {
                    100.0 + (i % 7) as f64
                };
                let ts = i as i64 * 10_000;
                kept.iter()
                    .map(move |series| SeriesPoint {
                        series: Arc::clone(series),
                        timestamp_ms: ts,
                        value,
                        start_ms: 0,
                    })
                    .chain(std::iter::once(SeriesPoint::new(
                        "svc",
                        "span.count",
                        vec![],
                        ts,
                        value / 2.0,
                    )))
                    // Now and then a series that takes the place of a kept one in a full bank.
                    .chain(
                        (i % 50 == 49)
                            .then(|| SeriesPoint::new("svc", "intruder", vec![], ts, 1.0)),
                    )
            })
            .collect()
    }

    #[test]
    fn scoring_through_handles_equals_scoring_by_key() {
        let kept = [
            Arc::new(Series::new(
                "svc",
                "queue.depth",
                vec![("q".into(), "a".into())],
            )),
            Arc::new(Series::new(
                "svc",
                "queue.depth",
                vec![("q".into(), "b".into())],
            )),
        ];
        // Roomy, and a bank of three series, where the intruder evicts a kept series now and
        // then, so its handle goes stale.
        for max_series in [100, 3] {
            let points = shared_points(&kept, 400);
            let mut by_key = small_bank(max_series);
            let expected: Vec<ScoredPoint> = points
                .iter()
                .map(|p| by_key.observe(&p.series.key, p.timestamp_ms, p.value))
                .collect();
            let mut bank = small_bank(max_series);
            let mut handles = SeriesHandles::new(100);
            let scored: Vec<ScoredPoint> = points
                .iter()
                .map(|p| handles.observe(&mut bank, p))
                .collect();
            assert_eq!(scored, expected, "max_series {max_series}");
            let peak = expected.iter().map(|p| p.score).fold(0.0, f64::max);
            assert!(expected.iter().any(|p| p.is_anomaly), "peak {peak}");
            // Only the kept series have handles; the one-off series went by key.
            assert_eq!(handles.len(), 2, "max_series {max_series}");
            assert_eq!(bank.evictions(), by_key.evictions());
            assert_eq!(by_key.evictions() > 0, max_series == 3);

            // Batch by batch (handles taken within a batch, handles gone stale between
            // batches): the same scores.
            let mut bank = small_bank(max_series);
            let mut handles = SeriesHandles::new(100);
            let mut scores = Vec::new();
            for chunk in points.chunks(37) {
                let batch = SignalBatch {
                    points: chunk.to_vec(),
                    ..SignalBatch::default()
                };
                scores.extend(score_batch(&mut bank, &mut handles, batch).scores);
            }
            let expected_scores: Vec<f64> = expected.iter().map(|p| p.score).collect();
            assert_eq!(scores, expected_scores, "max_series {max_series}");
            assert_eq!(bank.evictions(), by_key.evictions());
        }
    }

    #[test]
    fn running_totals_are_scored_by_their_rate_with_or_without_a_handle() {
        let kept =
            Arc::new(Series::new("svc", "rows_total", vec![]).with_kind(SeriesKind::RunningTotal));
        // 40 rows a second for 300 points 10 s apart, then the counter stops; a one-off series
        // (no handle) counts the same.
        let totals: Vec<f64> = (0..320)
            .map(|i: u32| 1_000.0 + 400.0 * f64::from(i.min(300)) + f64::from(i.min(300) % 3))
            .collect();
        let points: Vec<SeriesPoint> = totals
            .iter()
            .enumerate()
            .flat_map(|(i, &total)| {
                let ts = i as i64 * 10_000;
                let one_off = Series::new("svc", "rows_total", vec![("copy".into(), "1".into())])
                    .with_kind(SeriesKind::RunningTotal);
                [
                    SeriesPoint {
                        series: Arc::clone(&kept),
                        timestamp_ms: ts,
                        value: total,
                        start_ms: 0,
                    },
                    SeriesPoint {
                        series: Arc::new(one_off),
                        timestamp_ms: ts,
                        value: total,
                        start_ms: 0,
                    },
                ]
            })
            .collect();
        let mut by_key = small_bank(100);
        let expected: Vec<ScoredPoint> = points
            .iter()
            .map(|p| by_key.observe_total(&p.series.key, p.timestamp_ms, p.value))
            .collect();
        let expected: Vec<f64> = expected.iter().map(|p| p.score).collect();
        let stalls = anomalies_through_handles(points, &expected);
        // The stall (point 301 of each series) is the only anomaly of each: on the rate.
        let at = 301 * 10_000;
        assert_eq!(
            stalls,
            [
                (at, kept.key.clone(), 0.0, RATE_FEATURE.to_owned()),
                (
                    at,
                    "svc|rows_total|copy=1".to_owned(),
                    0.0,
                    RATE_FEATURE.to_owned()
                ),
            ]
        );
    }

    /// Scores `points` through handles in a fresh bank, checks that the scores are `expected`
    /// (those of scoring by key) and that only the shared series took a handle, and returns the
    /// anomalies' time, series key, actual value and feature.
    fn anomalies_through_handles(
        points: Vec<SeriesPoint>,
        expected: &[f64],
    ) -> Vec<(i64, String, f64, String)> {
        let mut bank = small_bank(100);
        let mut handles = SeriesHandles::new(100);
        let batch = SignalBatch {
            points,
            ..SignalBatch::default()
        };
        let scored = score_batch(&mut bank, &mut handles, batch);
        assert_eq!(scored.scores, expected);
        assert_eq!(handles.len(), 1);
        scored
            .anomalies
            .into_iter()
            .map(|a| (a.timestamp_ms, a.series_key, a.actual, a.feature))
            .collect()
    }

    #[test]
    fn increments_are_scored_by_their_rate_with_or_without_a_handle() {
        let kept =
            Arc::new(Series::new("svc", "rows_delta", vec![]).with_kind(SeriesKind::Increment));
        // 40 rows a second, exported every 10 s as the rows since the last export (each point
        // says where its interval starts), then none from point 300 on; a one-off series (no
        // handle) counts the same.
        let points: Vec<SeriesPoint> = (1..320u32)
            .flat_map(|i| {
                let ts = i64::from(i) * 10_000;
                let rows = if i < 300 {
                    4_000.0 + f64::from(i % 3)
                } else {
                    0.0
                };
                let one_off = Series::new("svc", "rows_delta", vec![("copy".into(), "1".into())])
                    .with_kind(SeriesKind::Increment);
                [Arc::clone(&kept), Arc::new(one_off)].map(|series| SeriesPoint {
                    series,
                    timestamp_ms: ts,
                    value: rows,
                    start_ms: ts - 10_000,
                })
            })
            .collect();
        let mut by_key = small_bank(100);
        let expected: Vec<f64> = points
            .iter()
            .map(|p| {
                by_key
                    .observe_increment(&p.series.key, p.timestamp_ms, p.start_ms, p.value)
                    .score
            })
            .collect();
        let stalls = anomalies_through_handles(points, &expected);
        let at = 300 * 10_000;
        assert_eq!(
            stalls,
            [
                (at, kept.key.clone(), 0.0, RATE_FEATURE.to_owned()),
                (
                    at,
                    "svc|rows_delta|copy=1".to_owned(),
                    0.0,
                    RATE_FEATURE.to_owned()
                ),
            ]
        );
    }

    #[test]
    fn the_handle_map_is_bounded_and_starts_over() {
        let kept: Vec<Arc<Series>> = (0..5)
            .map(|i| {
                Arc::new(Series::new(
                    "svc",
                    "rows",
                    vec![("n".into(), i.to_string())],
                ))
            })
            .collect();
        let mut bank = small_bank(100);
        let mut handles = SeriesHandles::new(3);
        for point in shared_points(&kept, 20) {
            handles.observe(&mut bank, &point);
            assert!(handles.len() <= 3);
        }
        assert!(!handles.is_empty());
        assert_eq!(bank.len(), 6, "five kept series and the one-off one");
    }

    fn logs(n: usize) -> Vec<LogRecord> {
        (0..n)
            .map(|i| LogRecord {
                stage: "s".into(),
                timestamp_ms: i as i64,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: format!("record {i}"),
                attributes: serde_json::Value::Null,
                trace_id: String::new(),
                span_id: String::new(),
            })
            .collect()
    }

    #[test]
    fn log_rate_limit_keeps_a_second_of_burst_then_the_rate() {
        let mut limit = LogRateLimit::new(100);
        let t0 = Instant::now();
        let mut batch = logs(150);
        assert_eq!(limit.apply(&mut batch, t0), 50);
        assert_eq!(batch.len(), 100);
        assert_eq!(batch[99].body, "record 99", "the earliest records are kept");
        let mut batch = logs(100);
        assert_eq!(limit.apply(&mut batch, t0 + Duration::from_millis(500)), 50);
        let mut batch = logs(10);
        assert_eq!(limit.apply(&mut batch, t0 + Duration::from_secs(10)), 0);
    }

    #[test]
    fn log_bodies_and_attributes_are_redacted_by_default() {
        let redactor = crate::sink::elasticsearch::RedactionConfig::default()
            .build()
            .unwrap();
        let mut batch = logs(1);
        batch[0].body = "login by ann@example.com from 10.1.2.3".into();
        batch[0].attributes = serde_json::json!({ "client": "10.9.8.7", "n": 3 });
        redact_logs(&redactor, &mut batch);
        assert!(
            !batch[0].body.contains("ann@example.com"),
            "{}",
            batch[0].body
        );
        assert!(!batch[0].body.contains("10.1.2.3"), "{}", batch[0].body);
        assert!(batch[0].body.starts_with("login by "), "{}", batch[0].body);
        assert!(!batch[0].attributes.to_string().contains("10.9.8.7"));
        assert_eq!(batch[0].attributes["n"], 3);
    }

    #[test]
    fn zero_means_no_limit() {
        let mut limit = LogRateLimit::new(0);
        let mut batch = logs(100_000);
        assert_eq!(limit.apply(&mut batch, Instant::now()), 0);
        assert_eq!(batch.len(), 100_000);
    }
}
