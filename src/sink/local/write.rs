//! The store's single writer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use pipewarden_collector::SignalBatch;
use pipewarden_collector::kafka_lag::LagReport;
use rusqlite::{Connection, Transaction, params};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{StoreError, open_store};
use crate::anomaly::Anomaly;
use crate::telemetry::AppTelemetry;

/// Attempts at one transaction before its batches are dropped (counted).
const WRITE_ATTEMPTS: u32 = 5;

/// What the pipeline hands to the store: derived signals, the score of each point, anomalies.
#[derive(Debug, Default)]
pub struct StoreBatch {
    /// Signals from the collector.
    pub signals: SignalBatch,
    /// Score of each of `signals.points`, same order (0 when unscored).
    pub scores: Vec<f64>,
    /// Anomalies found in this batch.
    pub anomalies: Vec<Anomaly>,
    /// Kafka lag reports: latest group verdicts, status changes and the window state.
    pub lag: Vec<LagReport>,
}

/// The writer thread and its input queue.
pub struct StoreWriter {
    conn: Connection,
    path: PathBuf,
    series_ids: HashMap<String, i64>,
    max_batches_per_transaction: usize,
    retention_ms: i64,
    telemetry: AppTelemetry,
}

impl StoreWriter {
    /// Opens the database in `dir` and prepares the writer.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated.
    pub fn open(
        dir: &std::path::Path,
        max_batches_per_transaction: usize,
        retention: Duration,
        telemetry: AppTelemetry,
    ) -> Result<Self, StoreError> {
        let (conn, path) = open_store(dir)?;
        Ok(Self {
            conn,
            path,
            series_ids: HashMap::new(),
            max_batches_per_transaction,
            retention_ms: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
            telemetry,
        })
    }

    /// Runs the writer on a dedicated thread until every sender of `input` is dropped, then
    /// commits what it holds and checkpoints the WAL.
    pub fn spawn(self, input: mpsc::Receiver<StoreBatch>) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("pipewarden-store".to_owned())
            .spawn(move || self.run(input))
            .unwrap_or_else(|err| {
                // Spawning a thread only fails when the OS is out of resources at startup.
                panic!("cannot spawn store writer thread: {err}")
            })
    }

    fn run(mut self, mut input: mpsc::Receiver<StoreBatch>) {
        info!(path = %self.path.display(), "store writer started");
        let mut pending = Vec::with_capacity(self.max_batches_per_transaction);
        let mut last_retention = 0_i64;
        while let Some(first) = input.blocking_recv() {
            pending.push(first);
            while pending.len() < self.max_batches_per_transaction {
                match input.try_recv() {
                    Ok(batch) => pending.push(batch),
                    Err(_) => break,
                }
            }
            self.telemetry.store_queue_depth.set(input.len() as i64);
            self.write_with_retries(&mut pending);
            let now = now_ms();
            if now - last_retention > 3_600_000 {
                last_retention = now;
                if let Err(err) = self.apply_retention(now - self.retention_ms) {
                    warn!(error = %err, "store retention failed");
                }
            }
        }
        if let Err(err) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            warn!(error = %err, "store checkpoint at shutdown failed");
        }
        info!("store writer stopped");
    }

    fn write_with_retries(&mut self, pending: &mut Vec<StoreBatch>) {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=WRITE_ATTEMPTS {
            match self.write(pending) {
                Ok(()) => {
                    pending.clear();
                    self.telemetry.store_last_write_ok.set(1);
                    return;
                }
                Err(err) => {
                    self.telemetry.store_write_errors.inc();
                    self.telemetry.store_last_write_ok.set(0);
                    warn!(attempt, error = %err, "store write failed");
                    // Known-stale ids after a rollback are re-read on the next attempt.
                    self.series_ids.clear();
                    if attempt < WRITE_ATTEMPTS {
                        std::thread::sleep(delay);
                        delay *= 2;
                    }
                }
            }
        }
        let dropped: usize = pending.iter().map(batch_rows).sum();
        error!(
            rows = dropped,
            "store write failed repeatedly; rows dropped"
        );
        self.telemetry
            .store_dropped_rows
            .get_or_create(&crate::telemetry::ReasonLabel {
                reason: "store_error".to_owned(),
            })
            .inc_by(dropped as u64);
        pending.clear();
    }

    fn write(&mut self, pending: &[StoreBatch]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sqlite = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sqlite)?;
        let mut counts = WriteCounts::default();
        for batch in pending {
            write_batch(&tx, &mut self.series_ids, batch, &mut counts).map_err(sqlite)?;
        }
        tx.commit().map_err(sqlite)?;
        counts.report(&self.telemetry);
        Ok(())
    }

    fn apply_retention(&mut self, cutoff_ms: i64) -> rusqlite::Result<()> {
        self.conn
            .execute("DELETE FROM points WHERE ts_ms < ?1", [cutoff_ms])?;
        self.conn
            .execute("DELETE FROM logs WHERE ts_ms < ?1", [cutoff_ms])?;
        self.conn
            .execute("DELETE FROM anomalies WHERE ts_ms < ?1", [cutoff_ms])?;
        self.conn
            .execute("DELETE FROM job_runs WHERE end_ms < ?1", [cutoff_ms])?;
        Ok(())
    }
}

fn batch_rows(batch: &StoreBatch) -> usize {
    let s = &batch.signals;
    s.points.len()
        + s.stage_windows.len()
        + s.logs.len()
        + s.job_runs.len()
        + batch.anomalies.len()
        + batch.lag.len()
}

#[derive(Default)]
struct WriteCounts {
    points: u64,
    stage_windows: u64,
    logs: u64,
    job_runs: u64,
    anomalies: u64,
    kafka_groups: u64,
}

impl WriteCounts {
    fn report(&self, telemetry: &AppTelemetry) {
        for (table, n) in [
            ("points", self.points),
            ("stage_windows", self.stage_windows),
            ("logs", self.logs),
            ("job_runs", self.job_runs),
            ("anomalies", self.anomalies),
            ("kafka_groups", self.kafka_groups),
        ] {
            if n > 0 {
                telemetry.store_writes(table).inc_by(n);
            }
        }
    }
}

fn series_id(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, i64>,
    point: &pipewarden_collector::SeriesPoint,
) -> rusqlite::Result<i64> {
    if let Some(id) = cache.get(&point.key) {
        return Ok(*id);
    }
    let attributes: serde_json::Map<String, serde_json::Value> = point
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let attributes = serde_json::Value::Object(attributes).to_string();
    tx.prepare_cached(
        "INSERT INTO series (key, stage, name, attributes) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO NOTHING",
    )?
    .execute(params![point.key, point.stage, point.name, attributes])?;
    let id: i64 = tx
        .prepare_cached("SELECT id FROM series WHERE key = ?1")?
        .query_row([&point.key], |row| row.get(0))?;
    cache.insert(point.key.clone(), id);
    Ok(id)
}

fn write_batch(
    tx: &Transaction<'_>,
    series_ids: &mut HashMap<String, i64>,
    batch: &StoreBatch,
    counts: &mut WriteCounts,
) -> rusqlite::Result<()> {
    let signals = &batch.signals;
    for (i, point) in signals.points.iter().enumerate() {
        let id = series_id(tx, series_ids, point)?;
        let score = batch.scores.get(i).copied().unwrap_or(0.0);
        tx.prepare_cached(
            "INSERT INTO points (series_id, ts_ms, value, score) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![id, point.timestamp_ms, point.value, score])?;
        counts.points += 1;
    }
    for w in &signals.stage_windows {
        let severities = serde_json::to_string(&w.logs_by_severity).unwrap_or_default();
        tx.prepare_cached(
            "INSERT INTO stage_windows (stage, window_start_ms, window_end_ms, spans, span_errors,
             latency_p50_ms, latency_p95_ms, latency_p99_ms, metric_points, log_records,
             logs_by_severity) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            w.stage,
            w.window_start_ms,
            w.window_end_ms,
            w.spans as i64,
            w.span_errors as i64,
            w.latency_p50_ms,
            w.latency_p95_ms,
            w.latency_p99_ms,
            w.metric_points as i64,
            w.log_records as i64,
            severities
        ])?;
        counts.stage_windows += 1;
    }
    for log in &signals.logs {
        tx.prepare_cached(
            "INSERT INTO logs (stage, ts_ms, severity_number, severity_text, body, attributes,
             trace_id, span_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            log.stage,
            log.timestamp_ms,
            log.severity_number,
            log.severity_text,
            log.body,
            log.attributes.to_string(),
            log.trace_id,
            log.span_id
        ])?;
        counts.logs += 1;
    }
    for run in &signals.job_runs {
        let status = match run.status {
            pipewarden_collector::JobStatus::Ok => "ok",
            pipewarden_collector::JobStatus::Error => "error",
        };
        tx.prepare_cached(
            "INSERT INTO job_runs (job, stage, trace_id, span_id, start_ms, end_ms, runtime_ms,
             status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            run.job,
            run.stage,
            run.trace_id,
            run.span_id,
            run.start_ms,
            run.end_ms,
            run.runtime_ms,
            status
        ])?;
        counts.job_runs += 1;
    }
    for a in &batch.anomalies {
        tx.prepare_cached(
            "INSERT INTO anomalies (ts_ms, series_key, stage, name, model, model_version, score,
             actual, typical, lower, upper, feature, direction, continuing)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            a.timestamp_ms,
            a.series_key,
            a.stage,
            a.name,
            a.model,
            a.model_version,
            a.score,
            a.actual,
            a.typical,
            a.lower,
            a.upper,
            a.feature,
            a.direction,
            a.continuing
        ])?;
        counts.anomalies += 1;
    }
    for report in &batch.lag {
        write_lag_report(tx, report, counts)?;
    }
    Ok(())
}

fn write_lag_report(
    tx: &Transaction<'_>,
    report: &LagReport,
    counts: &mut WriteCounts,
) -> rusqlite::Result<()> {
    for group in &report.groups {
        let body = serde_json::to_string(group).unwrap_or_default();
        tx.prepare_cached(
            "INSERT INTO kafka_groups (cluster, consumer_group, ts_ms, status, body)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (cluster, consumer_group) DO UPDATE SET
               ts_ms = excluded.ts_ms, status = excluded.status, body = excluded.body",
        )?
        .execute(params![
            group.cluster,
            group.group,
            report.timestamp_ms,
            group.status.as_str(),
            body
        ])?;
        counts.kafka_groups += 1;
    }
    for change in &report.status_changes {
        let (topic, partition) = match &change.partition {
            Some((topic, partition)) => (Some(topic.as_str()), Some(*partition)),
            None => (None, None),
        };
        tx.prepare_cached(
            "INSERT INTO kafka_status_changes (ts_ms, cluster, consumer_group, topic, partition,
             from_status, to_status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            report.timestamp_ms,
            change.cluster,
            change.group,
            topic,
            partition,
            change.from.map(|s| s.as_str()),
            change.to.as_str()
        ])?;
    }
    let state = serde_json::to_string(&report.state).unwrap_or_default();
    tx.prepare_cached(
        "INSERT INTO kafka_lag_state (cluster, state) VALUES (?1, ?2)
         ON CONFLICT (cluster) DO UPDATE SET state = excluded.state",
    )?
    .execute(params![report.cluster, state])?;
    Ok(())
}

/// Wall clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
