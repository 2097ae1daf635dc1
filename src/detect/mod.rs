//! Detectors beside the per-series scorer, and what steers them.
//!
//! - [`logs`]: the log detector (templates, template rates, sessions, schema drift,
//!   embeddings), run by [`run_log_detector`] in its own task. The pipeline offers it every
//!   batch of log records through a bounded queue with `try_send` ([`LogFeed::offer`]): when
//!   the queue is full the batch is skipped by the log detector only (it is still stored) and
//!   counted in `pipewarden_detector_skipped_total{reason="backlog"}`, so ingest never waits
//!   for it.
//! - [`feedback`]: false-positive feedback and the suppression it drives, shared by both
//!   detectors.
//! - [`config`]: the `[detector.logs]`, `[detector.schema]` and `[detector.embeddings]`
//!   sections.

pub mod config;
pub mod feedback;
pub mod logs;
pub mod stages;
pub mod telemetry;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pipewarden_collector::LogRecord;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tracing::{info, warn};

pub use feedback::{Feedback, FeedbackStore, Suppressor};
pub use logs::{LogDetector, LogDetectorStats, LogOutcome};
pub use telemetry::DetectTelemetry;

use crate::alert::AlertInput;
use crate::anomaly::Anomaly;
use crate::features::LogRateLimit;
use crate::sink::elasticsearch::{EsDocument, Redactor, SinkInput};
use crate::sink::local::StoreBatch;

/// How often the log detector closes rate windows and idle sessions by the wall clock.
const TICK: Duration = Duration::from_secs(1);

/// The pipeline's end of the log detector's queue.
#[derive(Debug)]
pub struct LogFeed {
    sender: mpsc::Sender<Vec<LogRecord>>,
    limit: LogRateLimit,
    telemetry: DetectTelemetry,
}

impl LogFeed {
    /// Offers a batch without waiting: records beyond the rate limit, and the whole batch when
    /// the queue is full (or the detector stopped), are skipped by the log detector and counted.
    pub fn offer(&mut self, mut logs: Vec<LogRecord>) {
        let keep = self.limit.allow(logs.len(), Instant::now());
        if keep < logs.len() {
            self.telemetry
                .skip("rate_limit", (logs.len() - keep) as u64);
            logs.truncate(keep);
        }
        if logs.is_empty() {
            return;
        }
        match self.sender.try_send(logs) {
            Ok(()) => {}
            Err(TrySendError::Full(logs)) => self.telemetry.skip("backlog", logs.len() as u64),
            Err(TrySendError::Closed(logs)) => self.telemetry.skip("stopped", logs.len() as u64),
        }
    }
}

/// Returns a bounded queue of `capacity` batches taking at most `per_second` records per
/// second (0: all): the pipeline's end and the detector's end.
pub fn log_queue(
    capacity: usize,
    per_second: u64,
    telemetry: DetectTelemetry,
) -> (LogFeed, mpsc::Receiver<Vec<LogRecord>>) {
    let (sender, receiver) = mpsc::channel(capacity);
    let feed = LogFeed {
        sender,
        limit: LogRateLimit::new(per_second),
        telemetry,
    };
    (feed, receiver)
}

/// The log detector task and everything it feeds.
pub struct LogDetectorTask {
    /// The detector.
    pub detector: LogDetector,
    /// Batches of log records from the pipeline.
    pub input: mpsc::Receiver<Vec<LogRecord>>,
    /// Anomalies to the local store.
    pub output: mpsc::Sender<StoreBatch>,
    /// Anomalies to alerting.
    pub alerts: AlertInput,
    /// Anomalies to Elasticsearch, when the sink is on.
    pub elasticsearch: Option<SinkInput>,
    /// False-positive suppression.
    pub suppressor: Suppressor,
    /// Redaction of the texts anomalies carry (templates, session keys).
    pub redactor: Redactor,
    /// Instruments.
    pub telemetry: DetectTelemetry,
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs the log detector until its input closes (the pipeline has drained), then returns,
/// dropping its store sender so the store can finish.
pub async fn run_log_detector(task: LogDetectorTask) {
    let LogDetectorTask {
        mut detector,
        mut input,
        output,
        alerts,
        elasticsearch,
        suppressor,
        redactor,
        telemetry,
    } = task;
    info!("log detector started");
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = LogDetectorStats::default();
    loop {
        let mut anomalies = Vec::new();
        tokio::select! {
            batch = input.recv() => {
                let Some(batch) = batch else { break };
                telemetry.log_records.inc_by(batch.len() as u64);
                for log in &batch {
                    detector.observe(log, &mut anomalies);
                }
            }
            _ = tick.tick() => {
                detector.tick(wall_clock_ms(), &mut anomalies);
                reported = report(&detector, &telemetry, reported);
            }
        }
        if anomalies.is_empty() {
            continue;
        }
        suppressor.filter(&mut anomalies).await;
        if anomalies.is_empty() {
            continue;
        }
        for anomaly in &mut anomalies {
            redact(&redactor, anomaly);
        }
        telemetry.log_anomalies.inc_by(anomalies.len() as u64);
        let batch = StoreBatch {
            anomalies,
            ..StoreBatch::default()
        };
        if let Some(es) = &elasticsearch {
            let docs = batch
                .anomalies
                .iter()
                .map(EsDocument::from_anomaly)
                .collect();
            if let Err(err) = es.send(docs).await {
                warn!(error = %err, "elasticsearch spool refused documents");
            }
        }
        if alerts.send_store_batch(&batch).await.is_err() {
            warn!("alerting stopped before the log detector; its inputs are dropped");
        }
        if output.send(batch).await.is_err() {
            warn!("store writer is gone; log anomalies are no longer stored");
        }
    }
    report(&detector, &telemetry, reported);
    info!("log detector drained");
}

/// Publishes the detector's sizes and the growth of its counters since `previous`.
fn report(
    detector: &LogDetector,
    telemetry: &DetectTelemetry,
    previous: LogDetectorStats,
) -> LogDetectorStats {
    let stats = detector.stats();
    telemetry.stages.set(stats.stages as i64);
    telemetry.templates.set(stats.templates as i64);
    telemetry.open_sessions.set(stats.open_sessions as i64);
    telemetry.bytes_per_stage.set(stats.bytes_per_stage as u64);
    telemetry.skip(
        "stage_cap",
        stats.stage_skipped.saturating_sub(previous.stage_skipped),
    );
    telemetry.evict(
        "template",
        stats
            .template_overflow
            .saturating_sub(previous.template_overflow),
    );
    telemetry.evict(
        "session",
        stats
            .session_evictions
            .saturating_sub(previous.session_evictions),
    );
    telemetry.evict(
        "rate_series",
        stats.rate_evictions.saturating_sub(previous.rate_evictions),
    );
    telemetry.evict(
        "field",
        stats.field_overflow.saturating_sub(previous.field_overflow),
    );
    telemetry.evict(
        "embedding_stage",
        stats
            .embedding_skipped
            .saturating_sub(previous.embedding_skipped),
    );
    stats
}

fn redact(redactor: &Redactor, anomaly: &mut Anomaly) {
    if redactor.is_noop() {
        return;
    }
    if let std::borrow::Cow::Owned(feature) = redactor.redact_str(&anomaly.feature) {
        anomaly.feature = feature;
    }
}

/// What [`build`] hands to the app.
pub struct DetectParts {
    /// The pipeline's end of the log detector's queue (`None` when the log detector is off).
    pub log_feed: Option<LogFeed>,
    /// The running log detector (`None` when it is off).
    pub log_task: Option<tokio::task::JoinHandle<()>>,
    /// False-positive suppression, shared with the API.
    pub suppressor: Suppressor,
    /// Multivariate scoring of stage windows (`None` when it is off).
    pub stage_scorer: Option<stages::StageScorer>,
}

/// Opens the feedback table, loads the suppression rules and starts the log detector task.
///
/// # Errors
/// When the feedback table cannot be opened or read, or a detector setting is refused.
pub async fn build(
    config: &crate::config::ValidConfig,
    registry: &mut prometheus_client::registry::Registry,
    output: mpsc::Sender<StoreBatch>,
    alerts: AlertInput,
    elasticsearch: Option<SinkInput>,
) -> anyhow::Result<DetectParts> {
    use anyhow::Context as _;
    let telemetry = DetectTelemetry::register(registry);
    let store = FeedbackStore::open(&config.store.path).context("opening the feedback table")?;
    let suppressor = Suppressor::load(store, telemetry.clone())
        .await
        .context("loading anomaly feedback")?;
    let stage_scorer = if config.detector.multivariate.enabled {
        Some(stages::StageScorer::new(
            config.detector.multivariate.clone(),
            config.detector.alert_threshold,
            stages::Refit::Background,
            telemetry.clone(),
        )?)
    } else {
        None
    };
    if !config.detector.logs.enabled {
        return Ok(DetectParts {
            log_feed: None,
            log_task: None,
            suppressor,
            stage_scorer,
        });
    }
    let detector = LogDetector::from_config(&config.detector)?;
    let logs = &config.detector.logs;
    let (feed, input) = log_queue(
        logs.queue_capacity,
        logs.max_records_per_second,
        telemetry.clone(),
    );
    let task = tokio::spawn(run_log_detector(LogDetectorTask {
        detector,
        input,
        output,
        alerts,
        elasticsearch,
        suppressor: suppressor.clone(),
        redactor: config.redactor.clone(),
        telemetry,
    }));
    Ok(DetectParts {
        log_feed: Some(feed),
        log_task: Some(task),
        suppressor,
        stage_scorer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LogRecord {
        LogRecord {
            stage: "s".into(),
            timestamp_ms: 0,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: "b".into(),
            attributes: serde_json::Value::Null,
            trace_id: String::new(),
            span_id: String::new(),
        }
    }

    #[test]
    fn a_full_queue_skips_and_counts_without_waiting() {
        let telemetry = DetectTelemetry::default();
        let (mut feed, mut input) = log_queue(1, 0, telemetry.clone());
        feed.offer(vec![record(), record()]);
        feed.offer(vec![record(), record(), record()]);
        let skipped = |reason: &str| {
            telemetry
                .skipped
                .get_or_create(&crate::telemetry::ReasonLabel {
                    reason: reason.to_owned(),
                })
                .get()
        };
        assert_eq!(skipped("backlog"), 3);
        assert_eq!(input.try_recv().unwrap().len(), 2);
        drop(input);
        feed.offer(vec![record()]);
        assert_eq!(skipped("stopped"), 1);
    }

    #[test]
    fn records_beyond_the_rate_are_skipped_and_counted() {
        let telemetry = DetectTelemetry::default();
        let (mut feed, mut input) = log_queue(4, 3, telemetry.clone());
        feed.offer(vec![record(), record(), record(), record(), record()]);
        assert_eq!(
            input.try_recv().unwrap().len(),
            3,
            "the earliest records are taken"
        );
        let skipped = telemetry
            .skipped
            .get_or_create(&crate::telemetry::ReasonLabel {
                reason: "rate_limit".to_owned(),
            })
            .get();
        assert_eq!(skipped, 2);
    }
}
