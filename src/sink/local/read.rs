//! Queries the web API runs against the store, on a connection of their own.

use std::path::Path;

use pipewarden_collector::kafka_lag::LagState;
use pipewarden_collector::{JobRun, JobStatus, LogRecord, StageWindow};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{LogChunk, SharedConnection, StoreError, database_path, open, open_store};
use crate::anomaly::Anomaly;

/// Totals of one stage over every stored window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StageTotals {
    /// Spans.
    pub spans: u64,
    /// Spans with status ERROR.
    pub span_errors: u64,
    /// Log records.
    pub log_records: u64,
    /// Metric data points.
    pub metric_points: u64,
    /// Windows stored.
    pub windows: u64,
}

/// A stage with its totals and its most recent window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageRow {
    /// Stage name.
    pub stage: String,
    /// Sums over all windows.
    pub totals: StageTotals,
    /// Error ratio over all windows (spans with errors / spans), `None` without spans.
    pub error_ratio: Option<f64>,
    /// The latest window.
    pub last_window: Option<StageWindow>,
}

/// A series and its number of stored points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesRow {
    /// Canonical key.
    pub key: String,
    /// Stage.
    pub stage: String,
    /// Signal name.
    pub name: String,
    /// Attributes as a JSON object.
    pub attributes: serde_json::Value,
    /// `reading`, or `running_total` (a cumulative counter: values are stored as sent, the
    /// detector scores their rate per second).
    pub kind: String,
    /// Points stored.
    pub points: u64,
}

/// The points of one series in one time bucket (`store.point_resolution`), folded together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointRow {
    /// Unix milliseconds of the bucket's latest point.
    pub timestamp_ms: i64,
    /// Value of the bucket's latest point.
    pub value: f64,
    /// Highest detector score (0-100) in the bucket.
    pub score: f64,
    /// Smallest value in the bucket.
    pub min: f64,
    /// Largest value in the bucket.
    pub max: f64,
    /// Mean of the bucket's values.
    pub mean: f64,
    /// Number of points folded into the bucket.
    pub count: u64,
}

/// Alias kept for the API's naming.
pub type AnomalyRow = Anomaly;

/// Read-side handle of the store; cheap to clone.
#[derive(Clone)]
pub struct StoreReader {
    conn: SharedConnection,
}

impl StoreReader {
    /// Opens a read connection to the database in `dir` (creating the schema if needed).
    ///
    /// # Errors
    /// When the database cannot be opened.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        // Make sure the file and schema exist, then open a separate connection for reads.
        drop(open_store(dir)?);
        let path = database_path(dir);
        let conn = open(&path)?;
        Ok(Self {
            conn: SharedConnection::new(conn, path),
        })
    }

    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.conn.with_conn(f).await
    }

    /// Returns true when a trivial query answers.
    pub async fn ping(&self) -> bool {
        self.with_conn(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .await
            .is_ok()
    }

    /// Every stage with totals and its latest window.
    ///
    /// # Errors
    /// On a SQLite failure.
    pub async fn stages(&self) -> Result<Vec<StageRow>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare(
                "SELECT stage, SUM(spans), SUM(span_errors), SUM(log_records), SUM(metric_points),
                        COUNT(*)
                 FROM stage_windows GROUP BY stage ORDER BY stage",
            )?;
            let totals: Vec<(String, StageTotals)> = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        StageTotals {
                            spans: r.get::<_, i64>(1)? as u64,
                            span_errors: r.get::<_, i64>(2)? as u64,
                            log_records: r.get::<_, i64>(3)? as u64,
                            metric_points: r.get::<_, i64>(4)? as u64,
                            windows: r.get::<_, i64>(5)? as u64,
                        },
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut rows = Vec::with_capacity(totals.len());
            for (stage, totals) in totals {
                let last_window = c
                    .query_row(
                        "SELECT stage, window_start_ms, window_end_ms, spans, span_errors,
                            latency_p50_ms, latency_p95_ms, latency_p99_ms, metric_points,
                            log_records, logs_by_severity
                     FROM stage_windows WHERE stage = ?1
                     ORDER BY window_end_ms DESC, rowid DESC LIMIT 1",
                        [&stage],
                        stage_window_from_row,
                    )
                    .optional()?;
                let error_ratio =
                    (totals.spans > 0).then(|| totals.span_errors as f64 / totals.spans as f64);
                rows.push(StageRow {
                    stage,
                    totals,
                    error_ratio,
                    last_window,
                });
            }
            Ok(rows)
        })
        .await
    }

    /// Windows of one stage in a time range, oldest first.
    ///
    /// # Errors
    /// On a SQLite failure.
    pub async fn stage_windows(
        &self,
        stage: String,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<StageWindow>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare(
                "SELECT stage, window_start_ms, window_end_ms, spans, span_errors,
                        latency_p50_ms, latency_p95_ms, latency_p99_ms, metric_points,
                        log_records, logs_by_severity
                 FROM stage_windows WHERE stage = ?1 AND window_end_ms >= ?2 AND window_end_ms <= ?3
                 ORDER BY window_end_ms LIMIT ?4",
            )?;
            stmt.query_map(
                params![stage, from_ms, to_ms, limit as i64],
                stage_window_from_row,
            )?
            .collect()
        })
        .await
    }

    /// Series, optionally filtered by stage and name.
    ///
    /// # Errors
    /// On a SQLite failure.
    pub async fn series(
        &self,
        stage: Option<String>,
        name: Option<String>,
        limit: usize,
    ) -> Result<Vec<SeriesRow>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare(
                "SELECT s.key, s.stage, s.name, s.attributes,
                        (SELECT COALESCE(SUM(p.count), 0) FROM series_points p
                         WHERE p.series_id = s.id), s.kind
                 FROM series s
                 WHERE (?1 IS NULL OR s.stage = ?1) AND (?2 IS NULL OR s.name = ?2)
                 ORDER BY s.key LIMIT ?3",
            )?;
            stmt.query_map(params![stage, name, limit as i64], |r| {
                let attributes: String = r.get(3)?;
                Ok(SeriesRow {
                    key: r.get(0)?,
                    stage: r.get(1)?,
                    name: r.get(2)?,
                    attributes: serde_json::from_str(&attributes)
                        .unwrap_or(serde_json::Value::Null),
                    kind: r.get(5)?,
                    points: r.get::<_, i64>(4)? as u64,
                })
            })?
            .collect()
        })
        .await
    }

    /// Points of one series in `[from_ms, to_ms]`, oldest first.
    ///
    /// # Errors
    /// On a SQLite failure.
    pub async fn points(
        &self,
        key: String,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<PointRow>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare(
                "SELECT p.ts_ms, p.value, p.score, p.min, p.max, p.sum, p.count
                 FROM series_points p JOIN series s ON s.id = p.series_id
                 WHERE s.key = ?1 AND p.ts_ms >= ?2 AND p.ts_ms <= ?3
                 ORDER BY p.bucket_ms LIMIT ?4",
            )?;
            stmt.query_map(params![key, from_ms, to_ms, limit as i64], |r| {
                let count = r.get::<_, i64>(6)?.max(1) as u64;
                Ok(PointRow {
                    timestamp_ms: r.get(0)?,
                    value: r.get(1)?,
                    score: r.get(2)?,
                    min: r.get(3)?,
                    max: r.get(4)?,
                    mean: r.get::<_, f64>(5)? / count as f64,
                    count,
                })
            })?
            .collect()
        })
        .await
    }

    /// The latest log records (newest first), optionally of one stage, and the total count.
    ///
    /// # Errors
    /// On a SQLite failure.
    pub async fn logs(
        &self,
        stage: Option<String>,
        limit: usize,
    ) -> Result<(Vec<LogRecord>, u64), StoreError> {
        self.with_conn(move |c| {
            let total: i64 = c.query_row(
                "SELECT COALESCE(SUM(count), 0) FROM log_chunks WHERE (?1 IS NULL OR stage = ?1)",
                [&stage],
                |r| r.get(0),
            )?;
            // Chunks newest first; each chunk's records are in arrival order.
            let mut stmt = c.prepare(
                "SELECT records FROM log_chunks WHERE (?1 IS NULL OR stage = ?1) ORDER BY id DESC",
            )?;
            let mut rows = stmt.query(params![stage])?;
            let mut logs = Vec::with_capacity(limit.min(1024));
            while logs.len() < limit
                && let Some(row) = rows.next()?
            {
                let column = row.get_ref(0)?;
                let chunk = LogChunk::decode(column).map_err(|err| {
                    rusqlite::Error::FromSqlConversionFailure(0, column.data_type(), Box::new(err))
                })?;
                logs.extend(chunk.into_iter().rev().take(limit - logs.len()));
            }
            Ok((logs, total as u64))
        })
        .await
    }

    /// The latest job runs (newest first), optionally of one job.
    ///
    /// # Errors
    /// On a SQLite failure.
    pub async fn job_runs(
        &self,
        job: Option<String>,
        limit: usize,
    ) -> Result<Vec<JobRun>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare(
                "SELECT job, stage, trace_id, span_id, start_ms, end_ms, runtime_ms, status
                 FROM job_runs WHERE (?1 IS NULL OR job = ?1) ORDER BY end_ms DESC, id DESC
                 LIMIT ?2",
            )?;
            stmt.query_map(params![job, limit as i64], |r| {
                let status: String = r.get(7)?;
                Ok(JobRun {
                    job: r.get(0)?,
                    stage: r.get(1)?,
                    trace_id: r.get(2)?,
                    span_id: r.get(3)?,
                    start_ms: r.get(4)?,
                    end_ms: r.get(5)?,
                    runtime_ms: r.get(6)?,
                    status: if status == "error" {
                        JobStatus::Error
                    } else {
                        JobStatus::Ok
                    },
                })
            })?
            .collect()
        })
        .await
    }

    /// Anomalies in `[from_ms, to_ms]`, newest first.
    ///
    /// # Errors
    /// On a SQLite failure.
    pub async fn anomalies(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<Anomaly>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, ts_ms, series_key, stage, name, model, model_version, score, actual,
                        typical, lower, upper, feature, direction, continuing
                 FROM anomalies WHERE ts_ms >= ?1 AND ts_ms <= ?2
                 ORDER BY ts_ms DESC, id DESC LIMIT ?3",
            )?;
            stmt.query_map(params![from_ms, to_ms, limit as i64], |r| {
                Ok(Anomaly {
                    id: r.get(0)?,
                    timestamp_ms: r.get(1)?,
                    series_key: r.get(2)?,
                    stage: r.get(3)?,
                    name: r.get(4)?,
                    model: r.get(5)?,
                    model_version: r.get(6)?,
                    score: r.get(7)?,
                    actual: r.get(8)?,
                    typical: r.get(9)?,
                    lower: r.get(10)?,
                    upper: r.get(11)?,
                    feature: r.get(12)?,
                    direction: r.get(13)?,
                    continuing: r.get(14)?,
                })
            })?
            .collect()
        })
        .await
    }
}

impl StoreReader {
    /// The latest lag and verdict of every consumer group, by cluster and group.
    ///
    /// # Errors
    /// On a SQLite failure.
    pub async fn kafka_groups(
        &self,
        cluster: Option<String>,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare(
                "SELECT ts_ms, body FROM kafka_groups WHERE (?1 IS NULL OR cluster = ?1)
                 ORDER BY cluster, consumer_group",
            )?;
            stmt.query_map([cluster], |r| {
                let ts: i64 = r.get(0)?;
                let body: String = r.get(1)?;
                let mut value: serde_json::Value =
                    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                if let Some(object) = value.as_object_mut() {
                    object.insert("timestamp_ms".to_owned(), ts.into());
                }
                Ok(value)
            })?
            .collect()
        })
        .await
    }

    /// Verdict changes, newest first.
    ///
    /// # Errors
    /// On a SQLite failure.
    pub async fn kafka_status_changes(
        &self,
        group: Option<String>,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        self.with_conn(move |c| {
            let mut stmt = c.prepare(
                "SELECT ts_ms, cluster, consumer_group, topic, partition, from_status, to_status
                 FROM kafka_status_changes WHERE (?1 IS NULL OR consumer_group = ?1)
                 ORDER BY id DESC LIMIT ?2",
            )?;
            stmt.query_map(params![group, limit as i64], |r| {
                Ok(serde_json::json!({
                    "timestamp_ms": r.get::<_, i64>(0)?,
                    "cluster": r.get::<_, String>(1)?,
                    "group": r.get::<_, String>(2)?,
                    "topic": r.get::<_, Option<String>>(3)?,
                    "partition": r.get::<_, Option<i64>>(4)?,
                    "from": r.get::<_, Option<String>>(5)?,
                    "to": r.get::<_, String>(6)?,
                }))
            })?
            .collect()
        })
        .await
    }

    /// The persisted lag window state of every cluster, merged (`None` when there is none).
    ///
    /// # Errors
    /// On a SQLite failure.
    pub async fn kafka_lag_state(&self) -> Result<Option<LagState>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare("SELECT state FROM kafka_lag_state")?;
            let states: Vec<String> = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut merged: Option<LagState> = None;
            for text in states {
                // A state that no longer parses (older format) is dropped: windows refill.
                if let Ok(state) = serde_json::from_str::<LagState>(&text) {
                    merged.get_or_insert_with(LagState::default).merge(state);
                }
            }
            Ok(merged)
        })
        .await
    }
}

fn stage_window_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StageWindow> {
    let severities: String = r.get(10)?;
    Ok(StageWindow {
        stage: r.get(0)?,
        window_start_ms: r.get(1)?,
        window_end_ms: r.get(2)?,
        spans: r.get::<_, i64>(3)? as u64,
        span_errors: r.get::<_, i64>(4)? as u64,
        latency_p50_ms: r.get(5)?,
        latency_p95_ms: r.get(6)?,
        latency_p99_ms: r.get(7)?,
        metric_points: r.get::<_, i64>(8)? as u64,
        log_records: r.get::<_, i64>(9)? as u64,
        logs_by_severity: serde_json::from_str(&severities).unwrap_or_default(),
    })
}
