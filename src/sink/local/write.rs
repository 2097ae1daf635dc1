//! The store's single writer.

use std::path::PathBuf;
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};
use pipewarden_collector::kafka_lag::LagReport;
use pipewarden_collector::{LogRecord, SeriesKind, SignalBatch};
use rusqlite::{Connection, Transaction, params};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{StoreError, open_store};
use crate::anomaly::Anomaly;
use crate::shared_series::SharedSeriesMap;
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
    /// Log records already encoded for the store (the detector loop encodes them, so the
    /// records themselves go on to the log detector without a copy). Records left in
    /// `signals.logs` are encoded by the writer.
    pub log_chunks: Vec<LogChunk>,
}

/// zstd level of stored log chunks: the fastest. Pipeline logs (repeated keys, templated bodies)
/// come out about 7 times smaller than their JSON, so the store writes about a third of the
/// bytes (to the WAL, then the database file), and the CPU the compression costs is about what
/// the smaller writes save.
const LOG_CHUNK_ZSTD_LEVEL: i32 = 1;

/// Largest decompressed log chunk read back: a damaged row cannot make a read allocate without
/// bound (a chunk holds one batch's records of one stage, far below this).
const MAX_LOG_CHUNK_BYTES: u64 = 256 << 20;

/// Log records of one stage, encoded as the store keeps them: a JSON array in arrival order,
/// compressed with zstd.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogChunk {
    /// Stage of every record of the chunk.
    pub stage: String,
    /// Earliest and latest record time, Unix milliseconds.
    pub min_ts_ms: i64,
    pub max_ts_ms: i64,
    /// Number of records.
    pub count: usize,
    /// The records as a JSON array, compressed (one zstd frame).
    pub compressed: Vec<u8>,
}

/// Why log records could not be encoded into a chunk, or a stored chunk not decoded.
#[derive(Debug, thiserror::Error)]
pub enum LogChunkError {
    /// A record could not be written as JSON, or a stored chunk is not a JSON array of records.
    #[error("log chunk JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// zstd failed to compress, or a stored chunk is not a valid zstd frame.
    #[error("log chunk compression: {0}")]
    Zstd(std::io::Error),
    /// A stored chunk decompresses to more than the limit (bytes).
    #[error("log chunk decompresses to more than {0} bytes")]
    TooLarge(u64),
    /// The `records` column holds neither text nor a blob.
    #[error("log chunk column holds a {0}, not text or a blob")]
    ColumnType(rusqlite::types::Type),
}

/// Encodes log records into [`LogChunk`]s, reusing one zstd compression context: creating a
/// context per chunk (and zeroing its tables) cost more than compressing a small chunk.
pub struct LogChunkEncoder {
    compressor: zstd::bulk::Compressor<'static>,
}

impl std::fmt::Debug for LogChunkEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogChunkEncoder").finish_non_exhaustive()
    }
}

impl LogChunkEncoder {
    /// An encoder at the store's compression level.
    ///
    /// # Errors
    /// When zstd cannot create a compression context (out of memory).
    pub fn new() -> Result<Self, LogChunkError> {
        Ok(Self {
            compressor: zstd::bulk::Compressor::new(LOG_CHUNK_ZSTD_LEVEL)
                .map_err(LogChunkError::Zstd)?,
        })
    }

    /// Encodes `logs` as one chunk per stage (stages in order of first appearance).
    ///
    /// # Errors
    /// When a record cannot be encoded as JSON, or zstd fails.
    pub fn encode(&mut self, logs: &[LogRecord]) -> Result<Vec<LogChunk>, LogChunkError> {
        // Records grouped by stage, stages in order of first appearance.
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut groups: Vec<Vec<&LogRecord>> = Vec::new();
        for log in logs {
            let i = *index.entry(log.stage.as_str()).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[i].push(log);
        }
        let mut chunks = Vec::with_capacity(groups.len());
        for records in groups {
            chunks.push(LogChunk {
                stage: records[0].stage.clone(),
                min_ts_ms: records.iter().map(|l| l.timestamp_ms).min().unwrap_or(0),
                max_ts_ms: records.iter().map(|l| l.timestamp_ms).max().unwrap_or(0),
                count: records.len(),
                compressed: self
                    .compressor
                    .compress(&to_json(&records)?)
                    .map_err(LogChunkError::Zstd)?,
            });
        }
        Ok(chunks)
    }
}

impl LogChunk {
    /// Encodes `logs` as one chunk per stage with a one-off [`LogChunkEncoder`].
    ///
    /// # Errors
    /// When a record cannot be encoded as JSON, or zstd fails.
    pub fn encode(logs: &[LogRecord]) -> Result<Vec<LogChunk>, LogChunkError> {
        LogChunkEncoder::new()?.encode(logs)
    }

    /// Decodes the `records` column of a stored chunk: a zstd frame of the JSON array, or the
    /// JSON text itself in rows written before chunks were compressed.
    ///
    /// # Errors
    /// When the frame or the JSON is damaged, or the chunk is over the size limit.
    pub fn decode(column: rusqlite::types::ValueRef<'_>) -> Result<Vec<LogRecord>, LogChunkError> {
        Self::decode_limited(column, MAX_LOG_CHUNK_BYTES)
    }

    fn decode_limited(
        column: rusqlite::types::ValueRef<'_>,
        max_bytes: u64,
    ) -> Result<Vec<LogRecord>, LogChunkError> {
        use rusqlite::types::ValueRef;
        use std::io::Read as _;
        match column {
            ValueRef::Text(json) => Ok(serde_json::from_slice(json)?),
            ValueRef::Blob(frame) => {
                let decoder =
                    zstd::stream::read::Decoder::new(frame).map_err(LogChunkError::Zstd)?;
                let mut json = Vec::new();
                decoder
                    .take(max_bytes + 1)
                    .read_to_end(&mut json)
                    .map_err(LogChunkError::Zstd)?;
                if json.len() as u64 > max_bytes {
                    return Err(LogChunkError::TooLarge(max_bytes));
                }
                Ok(serde_json::from_slice(&json)?)
            }
            other => Err(LogChunkError::ColumnType(other.data_type())),
        }
    }
}

/// Encodes `records` as a JSON array in a buffer sized for them up front (a growing buffer
/// copied itself over and over).
fn to_json(records: &[&LogRecord]) -> Result<Vec<u8>, serde_json::Error> {
    // Fields, ids and punctuation take about 200 bytes besides the body.
    let estimate: usize = records.iter().map(|r| r.body.len() + 256).sum();
    let mut out = Vec::with_capacity(estimate);
    serde_json::to_writer(&mut out, records)?;
    Ok(out)
}

/// Limits of the store writer (from `[store]`).
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Most batches written in one transaction.
    pub max_batches_per_transaction: usize,
    /// Rows older than this are deleted.
    pub retention: Duration,
    /// Width of the time buckets series points are folded into.
    pub point_resolution: Duration,
    /// How long batches are gathered after the first before they are committed together.
    pub commit_delay: Duration,
    /// How often folded series points are written out.
    pub point_flush_interval: Duration,
}

/// The writer thread and its input queue.
pub struct StoreWriter {
    conn: Connection,
    path: PathBuf,
    series_ids: SeriesIds,
    max_batches_per_transaction: usize,
    commit_delay: Duration,
    point_flush_interval: Duration,
    /// Series points folded per series and bucket, not yet written.
    buckets: PointBuckets,
    /// The fold of the transaction being written, merged into `buckets` once committed (kept
    /// between transactions for its capacity).
    fold: PointBuckets,
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
        limits: StoreLimits,
        telemetry: AppTelemetry,
    ) -> Result<Self, StoreError> {
        let StoreLimits {
            max_batches_per_transaction,
            retention,
            point_resolution,
            commit_delay,
            point_flush_interval,
        } = limits;
        let (conn, path) = open_store(dir)?;
        let resolution_ms = i64::try_from(point_resolution.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        Ok(Self {
            conn,
            path,
            series_ids: SeriesIds::new(),
            max_batches_per_transaction,
            commit_delay,
            // A zero interval would spin the idle wait below.
            point_flush_interval: point_flush_interval.max(Duration::from_millis(1)),
            buckets: PointBuckets::new(resolution_ms),
            fold: PointBuckets::new(resolution_ms),
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
        // Waits for input with a timeout, so folded points are written out while input is idle.
        let waiter = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|err| warn!(error = %err, "store writer waits without a timeout"))
            .ok();
        let mut pending = Vec::with_capacity(self.max_batches_per_transaction);
        let mut last_retention = 0_i64;
        let mut last_point_flush = now_ms();
        let flush_ms = i64::try_from(self.point_flush_interval.as_millis()).unwrap_or(i64::MAX);
        let mut open = true;
        while open {
            let first = match &waiter {
                Some(rt) => {
                    // The timer is made inside the runtime: `timeout` needs its time driver.
                    // Idle, it wakes when the folded points are due.
                    let due = (last_point_flush + flush_ms - now_ms()).max(1);
                    let wait = Duration::from_millis(u64::try_from(due).unwrap_or(1));
                    let next = async { tokio::time::timeout(wait, input.recv()).await };
                    match rt.block_on(next) {
                        Ok(Some(batch)) => Some(batch),
                        Ok(None) => break,
                        Err(_idle) => None,
                    }
                }
                None => match input.blocking_recv() {
                    Some(batch) => Some(batch),
                    None => break,
                },
            };
            if let Some(first) = first {
                pending.push(first);
                open = self.gather(waiter.as_ref(), &mut input, &mut pending);
                self.telemetry.store_queue_depth.set(input.len() as i64);
                self.write_with_retries(&mut pending);
            }
            let now = now_ms();
            if now - last_point_flush >= flush_ms {
                last_point_flush = now;
                self.flush_points();
            }
            if now - last_retention > 3_600_000 {
                last_retention = now;
                if let Err(err) = self.apply_retention(now - self.retention_ms) {
                    warn!(error = %err, "store retention failed");
                }
            }
        }
        for _ in 0..WRITE_ATTEMPTS {
            if self.flush_points() {
                break;
            }
        }
        if !self.buckets.is_empty() {
            let rows = self.buckets.len();
            error!(
                rows,
                "series points could not be written at shutdown; dropped"
            );
            self.telemetry
                .store_dropped_rows
                .get_or_create(&crate::telemetry::ReasonLabel {
                    reason: "store_error".to_owned(),
                })
                .inc_by(rows as u64);
        }
        if let Err(err) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            warn!(error = %err, "store checkpoint at shutdown failed");
        }
        info!("store writer stopped");
    }

    /// Adds to `pending` what arrives within `commit_delay` of the first batch (or what is
    /// already queued, without a waiter), up to `max_batches_per_transaction`. False once the
    /// input is closed: the caller writes what it holds and stops.
    fn gather(
        &self,
        waiter: Option<&tokio::runtime::Runtime>,
        input: &mut mpsc::Receiver<StoreBatch>,
        pending: &mut Vec<StoreBatch>,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + self.commit_delay;
        while pending.len() < self.max_batches_per_transaction {
            match input.try_recv() {
                Ok(batch) => {
                    pending.push(batch);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let Some(rt) = waiter else { break };
            if self.commit_delay.is_zero() {
                break;
            }
            let next = async { tokio::time::timeout_at(deadline, input.recv()).await };
            match rt.block_on(next) {
                Ok(Some(batch)) => pending.push(batch),
                Ok(None) => return false,
                Err(_elapsed) => break,
            }
        }
        true
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
        // Folded apart and merged only once committed: a retried transaction never counts a
        // point twice, and every series id in `self.buckets` is committed.
        self.fold.clear();
        for batch in pending {
            self.fold
                .add(&tx, &mut self.series_ids, batch)
                .map_err(sqlite)?;
            write_batch(&tx, batch, &mut counts).map_err(sqlite)?;
        }
        tx.commit().map_err(sqlite)?;
        self.telemetry.store_transactions.inc();
        self.buckets.merge(&mut self.fold);
        counts.report(&self.telemetry);
        Ok(())
    }

    /// Writes the folded series points (one upsert per series and bucket); true when done.
    /// On failure they stay folded for the next attempt.
    fn flush_points(&mut self) -> bool {
        if self.buckets.is_empty() {
            return true;
        }
        let mut counts = WriteCounts::default();
        let result = self.conn.transaction().and_then(|tx| {
            self.buckets.write(&tx, &mut counts)?;
            tx.commit()
        });
        match result {
            Ok(()) => {
                self.buckets.clear();
                counts.report(&self.telemetry);
                true
            }
            Err(err) => {
                self.telemetry.store_write_errors.inc();
                warn!(error = %err, "store write of series points failed; retried");
                false
            }
        }
    }

    fn apply_retention(&mut self, cutoff_ms: i64) -> rusqlite::Result<()> {
        self.conn
            .execute("DELETE FROM series_points WHERE ts_ms < ?1", [cutoff_ms])?;
        self.conn
            .execute("DELETE FROM log_chunks WHERE max_ts_ms < ?1", [cutoff_ms])?;
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
        + batch.log_chunks.iter().map(|c| c.count).sum::<usize>()
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

/// The store's ids of the series seen: by the identity of the collector's shared series first
/// (no hash of the key string), then by key.
#[derive(Debug)]
pub(crate) struct SeriesIds {
    shared: SharedSeriesMap<SharedId>,
    /// Id and stored kind by key.
    by_key: HashMap<String, (i64, SeriesKind)>,
}

/// What the store remembers of a shared series: its id, and where its latest point was folded
/// (so the next point of the same bucket folds there without a lookup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SharedId {
    id: i64,
    /// Row of [`PointBuckets::rows`] of the series' latest point; checked before use (the
    /// fold may have been cleared since, or the point be in another bucket).
    row: u32,
}

impl SeriesIds {
    fn new() -> Self {
        Self {
            shared: SharedSeriesMap::new(SHARED_SERIES_IDS),
            by_key: HashMap::new(),
        }
    }

    fn clear(&mut self) {
        self.shared.clear();
        self.by_key.clear();
    }
}

/// Series ids remembered by the identity of the shared series (the key cache is unbounded as
/// before: it holds one id per series of the store).
const SHARED_SERIES_IDS: usize = 100_000;

/// Returns the id of the series of `point`, adding the series to the table when it is new.
fn series_id(
    tx: &Transaction<'_>,
    ids: &mut SeriesIds,
    point: &pipewarden_collector::SeriesPoint,
) -> rusqlite::Result<i64> {
    let series = &point.series;
    if let Some(shared) = ids.shared.get(series) {
        return Ok(shared.id);
    }
    let remember = |ids: &mut SeriesIds, id| {
        ids.shared.insert(series, SharedId { id, row: u32::MAX });
    };
    if let Some(&(id, kind)) = ids.by_key.get(&series.key) {
        // The same key sent as another kind (a gauge that became a counter): the row says
        // what its latest points are.
        if kind != series.kind {
            tx.prepare_cached("UPDATE series SET kind = ?1 WHERE id = ?2")?
                .execute(params![kind_name(series.kind), id])?;
            ids.by_key.insert(series.key.clone(), (id, series.kind));
        }
        remember(ids, id);
        return Ok(id);
    }
    let attributes: serde_json::Map<String, serde_json::Value> = series
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let attributes = serde_json::Value::Object(attributes).to_string();
    tx.prepare_cached(
        "INSERT INTO series (key, stage, name, attributes, kind) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (key) DO UPDATE SET kind = excluded.kind WHERE kind != excluded.kind",
    )?
    .execute(params![
        series.key,
        series.stage,
        series.name,
        attributes,
        kind_name(series.kind)
    ])?;
    let id: i64 = tx
        .prepare_cached("SELECT id FROM series WHERE key = ?1")?
        .query_row([&series.key], |row| row.get(0))?;
    ids.by_key.insert(series.key.clone(), (id, series.kind));
    remember(ids, id);
    Ok(id)
}

/// The `kind` column's value for `kind`: its name in the API.
fn kind_name(kind: SeriesKind) -> &'static str {
    match kind {
        SeriesKind::Reading => "reading",
        SeriesKind::RunningTotal => "running_total",
        SeriesKind::Increment => "increment",
    }
}

/// The points of one transaction folded per series and time bucket, so the store writes one
/// row per series and bucket however many points arrive (an upsert merges a bucket that an
/// earlier transaction already wrote).
struct PointBuckets {
    resolution_ms: i64,
    /// The folded buckets, in the order they were opened.
    rows: Vec<FoldRow>,
    /// Position in `rows` by series id and bucket start.
    index: HashMap<(i64, i64), u32>,
}

/// One series' bucket.
struct FoldRow {
    id: i64,
    bucket_ms: i64,
    bucket: Bucket,
}

/// Running fold of the points of one bucket.
struct Bucket {
    ts_ms: i64,
    value: f64,
    min: f64,
    max: f64,
    sum: f64,
    count: u64,
    score: f64,
}

impl PointBuckets {
    fn new(resolution_ms: i64) -> Self {
        Self {
            resolution_ms,
            rows: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.index.clear();
    }

    /// Folds `bucket` into the row of series `id` and bucket `bucket_ms`, opening it if needed;
    /// returns the row.
    fn fold_into(&mut self, id: i64, bucket_ms: i64, bucket: Bucket) -> u32 {
        match self.index.entry((id, bucket_ms)) {
            std::collections::hash_map::Entry::Occupied(entry) => {
                let row = *entry.get();
                if let Some(open) = self.rows.get_mut(row as usize) {
                    open.bucket.fold(&bucket);
                }
                row
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                // Rows stay far below 2^32: a transaction holds a bounded number of batches.
                let row = u32::try_from(self.rows.len()).unwrap_or(u32::MAX);
                entry.insert(row);
                self.rows.push(FoldRow {
                    id,
                    bucket_ms,
                    bucket,
                });
                row
            }
        }
    }

    /// Moves every bucket of `other` into this fold, leaving `other` empty (with its capacity).
    fn merge(&mut self, other: &mut PointBuckets) {
        for row in other.rows.drain(..) {
            self.fold_into(row.id, row.bucket_ms, row.bucket);
        }
        other.index.clear();
    }

    fn add(
        &mut self,
        tx: &Transaction<'_>,
        series_ids: &mut SeriesIds,
        batch: &StoreBatch,
    ) -> rusqlite::Result<()> {
        for (i, point) in batch.signals.points.iter().enumerate() {
            let score = batch.scores.get(i).copied().unwrap_or(0.0);
            let bucket_ms = point.timestamp_ms.div_euclid(self.resolution_ms) * self.resolution_ms;
            let one = Bucket {
                ts_ms: point.timestamp_ms,
                value: point.value,
                min: point.value,
                max: point.value,
                sum: point.value,
                count: 1,
                score,
            };
            // A shared series whose previous point opened this very bucket folds into it
            // without a lookup (points of a series mostly come bucket by bucket).
            if let Some(shared) = series_ids.shared.get_mut(&point.series) {
                let id = shared.id;
                match self.rows.get_mut(shared.row as usize) {
                    Some(open) if open.id == id && open.bucket_ms == bucket_ms => {
                        open.bucket.fold(&one);
                    }
                    _ => shared.row = self.fold_into(id, bucket_ms, one),
                }
                continue;
            }
            let id = series_id(tx, series_ids, point)?;
            let row = self.fold_into(id, bucket_ms, one);
            if let Some(shared) = series_ids.shared.get_mut(&point.series) {
                shared.row = row;
            }
        }
        Ok(())
    }

    fn write(&self, tx: &Transaction<'_>, counts: &mut WriteCounts) -> rusqlite::Result<()> {
        // SET expressions read the row as it was before the update.
        let mut upsert = tx.prepare_cached(
            "INSERT INTO series_points (series_id, bucket_ms, ts_ms, value, min, max, sum, count,
             score) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (series_id, bucket_ms) DO UPDATE SET
               ts_ms = MAX(ts_ms, excluded.ts_ms),
               value = CASE WHEN excluded.ts_ms >= ts_ms THEN excluded.value ELSE value END,
               min = MIN(min, excluded.min),
               max = MAX(max, excluded.max),
               sum = sum + excluded.sum,
               count = count + excluded.count,
               score = MAX(score, excluded.score)",
        )?;
        for row in &self.rows {
            let b = &row.bucket;
            upsert.execute(params![
                row.id,
                row.bucket_ms,
                b.ts_ms,
                b.value,
                b.min,
                b.max,
                b.sum,
                b.count as i64,
                b.score
            ])?;
            counts.points += b.count;
        }
        Ok(())
    }
}

impl Bucket {
    /// Folds `other` (points of the same series and bucket) into this one.
    fn fold(&mut self, other: &Bucket) {
        if other.ts_ms >= self.ts_ms {
            self.ts_ms = other.ts_ms;
            self.value = other.value;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.count += other.count;
        self.score = self.score.max(other.score);
    }
}

fn write_batch(
    tx: &Transaction<'_>,
    batch: &StoreBatch,
    counts: &mut WriteCounts,
) -> rusqlite::Result<()> {
    let signals = &batch.signals;
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
    if !signals.logs.is_empty() {
        let chunks = LogChunk::encode(&signals.logs)
            .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
        write_log_chunks(tx, &chunks, counts)?;
    }
    write_log_chunks(tx, &batch.log_chunks, counts)?;
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

/// Writes log chunks, one row each.
fn write_log_chunks(
    tx: &Transaction<'_>,
    chunks: &[LogChunk],
    counts: &mut WriteCounts,
) -> rusqlite::Result<()> {
    for chunk in chunks {
        tx.prepare_cached(
            "INSERT INTO log_chunks (stage, min_ts_ms, max_ts_ms, count, records)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            chunk.stage,
            chunk.min_ts_ms,
            chunk.max_ts_ms,
            chunk.count as i64,
            chunk.compressed
        ])?;
        counts.logs += chunk.count as u64;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pipewarden_collector::{Series, SeriesPoint, SignalBatch, series_key};
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::sink::local::StoreReader;

    /// A writer with a day of retention and 10 s point buckets.
    fn test_writer(dir: &std::path::Path, max_batches_per_transaction: usize) -> StoreWriter {
        timed_writer(
            dir,
            max_batches_per_transaction,
            Duration::ZERO,
            Duration::from_secs(1),
        )
        .0
    }

    /// A writer with the given commit delay and point flush interval, and its telemetry.
    fn timed_writer(
        dir: &std::path::Path,
        max_batches_per_transaction: usize,
        commit_delay: Duration,
        point_flush_interval: Duration,
    ) -> (StoreWriter, AppTelemetry) {
        let mut registry = Registry::default();
        let telemetry = AppTelemetry::register(&mut registry);
        let limits = StoreLimits {
            max_batches_per_transaction,
            retention: Duration::from_secs(86_400),
            point_resolution: Duration::from_secs(10),
            commit_delay,
            point_flush_interval,
        };
        let writer = StoreWriter::open(dir, limits, telemetry.clone()).unwrap();
        (writer, telemetry)
    }

    /// Sends five one-point batches 20 ms apart, closes the input and returns how many
    /// transactions the writer committed.
    async fn transactions_for_five_spaced_batches(commit_delay: Duration) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let (writer, telemetry) =
            timed_writer(dir.path(), 64, commit_delay, Duration::from_secs(1));
        let (tx, rx) = mpsc::channel(8);
        let thread = writer.spawn(rx);
        let t0 = (now_ms() / 10_000 - 6) * 10_000;
        for i in 0..5 {
            tx.send(batch(&[(t0 + i * 1_000, i as f64)], 0.0))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(tx);
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
        let reader = StoreReader::open(dir.path()).unwrap();
        let key = series_key("svc", "queue.depth", &[]);
        let rows = reader.points(key, t0, t0 + 60_000, 100).await.unwrap();
        assert_eq!(rows[0].count, 5, "every batch is written: {rows:?}");
        telemetry.store_transactions.get()
    }

    #[tokio::test]
    async fn the_commit_delay_gathers_batches_into_one_transaction() {
        // Five batches within 80 ms, a 10 s delay: one transaction, written when the input
        // closes (long before the delay ends).
        assert_eq!(
            transactions_for_five_spaced_batches(Duration::from_secs(10)).await,
            1
        );
        // Without a delay each arrival is committed on its own (a slow writer may still find
        // two queued at once).
        assert!(transactions_for_five_spaced_batches(Duration::ZERO).await >= 2);
    }

    #[tokio::test]
    async fn folded_points_are_written_out_at_the_flush_interval_while_running() {
        for (interval, visible_while_running) in [
            (Duration::from_millis(100), true),
            (Duration::from_secs(3600), false),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (writer, _) = timed_writer(dir.path(), 64, Duration::ZERO, interval);
            let (tx, rx) = mpsc::channel(8);
            let thread = writer.spawn(rx);
            let t0 = (now_ms() / 10_000 - 6) * 10_000;
            tx.send(batch(&[(t0, 3.0)], 0.0)).await.unwrap();
            let reader = StoreReader::open(dir.path()).unwrap();
            let key = series_key("svc", "queue.depth", &[]);
            let mut seen = false;
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if !reader
                    .points(key.clone(), t0, t0 + 60_000, 10)
                    .await
                    .unwrap()
                    .is_empty()
                {
                    seen = true;
                    break;
                }
            }
            assert_eq!(seen, visible_while_running, "flush interval {interval:?}");
            drop(tx);
            tokio::task::spawn_blocking(move || thread.join().unwrap())
                .await
                .unwrap();
            let rows = reader.points(key, t0, t0 + 60_000, 10).await.unwrap();
            assert_eq!(rows.len(), 1, "everything folded is written at shutdown");
        }
    }

    fn batch(points: &[(i64, f64)], score: f64) -> StoreBatch {
        StoreBatch {
            signals: SignalBatch {
                points: points
                    .iter()
                    .map(|&(timestamp_ms, value)| {
                        SeriesPoint::new("svc", "queue.depth", vec![], timestamp_ms, value)
                    })
                    .collect(),
                ..SignalBatch::default()
            },
            scores: vec![score; points.len()],
            ..StoreBatch::default()
        }
    }

    #[tokio::test]
    async fn points_fold_per_series_and_bucket_across_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let writer = test_writer(dir.path(), 1);
        let (tx, rx) = mpsc::channel(8);
        let thread = writer.spawn(rx);
        let t0 = (now_ms() / 10_000 - 6) * 10_000;
        // Bucket [t0, t0+10s): 4, 9 in one transaction, then 1 (earlier) and 7 (latest) in
        // two more; bucket [t0+10s, ...): one point.
        tx.send(batch(&[(t0 + 1_000, 4.0), (t0 + 3_000, 9.0)], 10.0))
            .await
            .unwrap();
        tx.send(batch(&[(t0 + 500, 1.0)], 80.0)).await.unwrap();
        tx.send(batch(&[(t0 + 9_999, 7.0), (t0 + 10_000, 2.0)], 5.0))
            .await
            .unwrap();
        drop(tx);
        thread.join().unwrap();

        let reader = StoreReader::open(dir.path()).unwrap();
        let key = series_key("svc", "queue.depth", &[]);
        let rows = reader.points(key, t0, t0 + 60_000, 100).await.unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        let first = &rows[0];
        assert_eq!(first.count, 4);
        assert_eq!(first.timestamp_ms, t0 + 9_999);
        assert_eq!(
            first.value, 7.0,
            "the latest point's value, whatever the arrival order"
        );
        assert_eq!((first.min, first.max), (1.0, 9.0));
        assert_eq!(first.mean, 21.0 / 4.0);
        assert_eq!(first.score, 80.0, "the highest score of the bucket");
        assert_eq!((rows[1].count, rows[1].value), (1, 2.0));
        let series = reader.series(None, None, 10).await.unwrap();
        assert_eq!(series[0].points, 5, "every point is counted");
    }

    /// Writes one point of series `svc|queue.depth|` of `kind` per batch, in one writer run.
    fn write_kinds(dir: &std::path::Path, kinds: &[SeriesKind]) {
        let writer = test_writer(dir, 1);
        let (tx, rx) = mpsc::channel(8);
        let thread = writer.spawn(rx);
        let t0 = (now_ms() / 10_000 - 6) * 10_000;
        for (i, &kind) in kinds.iter().enumerate() {
            let mut batch = batch(&[(t0 + i as i64, 1.0)], 0.0);
            let point = &mut batch.signals.points[0];
            point.series = Arc::new(Series::clone(&point.series).with_kind(kind));
            tx.blocking_send(batch).unwrap();
        }
        drop(tx);
        thread.join().unwrap();
    }

    #[tokio::test]
    async fn a_series_is_listed_with_the_kind_of_its_latest_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let kind_after = |kinds: &'static [SeriesKind]| {
            let path = path.clone();
            async move {
                tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || write_kinds(&path, kinds)
                })
                .await
                .unwrap();
                let reader = StoreReader::open(&path).unwrap();
                let series = reader.series(None, None, 10).await.unwrap();
                assert_eq!(series.len(), 1, "{series:?}");
                series[0].kind.clone()
            }
        };
        assert_eq!(
            kind_after(&[SeriesKind::RunningTotal]).await,
            "running_total"
        );
        // Within one run (the id cached by key) and across runs (the upsert).
        let both = &[SeriesKind::RunningTotal, SeriesKind::Reading];
        assert_eq!(kind_after(both).await, "reading");
        assert_eq!(
            kind_after(&[SeriesKind::RunningTotal]).await,
            "running_total"
        );
    }

    #[tokio::test]
    async fn series_of_a_store_from_before_kinds_are_readings() {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(super::super::database_path(dir.path())).unwrap();
        conn.execute_batch(
            "CREATE TABLE series (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,
                 stage TEXT NOT NULL, name TEXT NOT NULL, attributes TEXT NOT NULL);
             INSERT INTO series (key, stage, name, attributes)
                 VALUES ('svc|queue.depth|', 'svc', 'queue.depth', '{}');",
        )
        .unwrap();
        drop(conn);
        drop(open_store(dir.path()).unwrap());
        let reader = StoreReader::open(dir.path()).unwrap();
        let series = reader.series(None, None, 10).await.unwrap();
        assert_eq!(series.len(), 1, "{series:?}");
        assert_eq!(
            (series[0].key.as_str(), series[0].kind.as_str()),
            ("svc|queue.depth|", "reading")
        );
    }

    #[tokio::test]
    async fn a_bucket_written_twice_is_merged_by_the_upsert() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, _) = open_store(dir.path()).unwrap();
        let mut ids = SeriesIds::new();
        let t0 = (now_ms() / 10_000 - 6) * 10_000;
        for points in [[(t0 + 5_000, 3.0)], [(t0 + 2_000, 8.0)]] {
            let tx = conn.transaction().unwrap();
            let mut fold = PointBuckets::new(10_000);
            fold.add(&tx, &mut ids, &batch(&points, 1.0)).unwrap();
            fold.write(&tx, &mut WriteCounts::default()).unwrap();
            tx.commit().unwrap();
        }
        drop(conn);
        let reader = StoreReader::open(dir.path()).unwrap();
        let key = series_key("svc", "queue.depth", &[]);
        let rows = reader.points(key, t0, t0 + 60_000, 100).await.unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].count, rows[0].min, rows[0].max), (2, 3.0, 8.0));
        assert_eq!(
            (rows[0].timestamp_ms, rows[0].value),
            (t0 + 5_000, 3.0),
            "the later point stays the bucket's value although it was written first"
        );
    }

    #[test]
    fn points_of_shared_series_fold_exactly_as_one_off_copies_do() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, _) = open_store(dir.path()).unwrap();
        let kept = [
            Arc::new(Series::new("svc", "a", Vec::new())),
            Arc::new(Series::new("svc", "b", Vec::new())),
        ];
        // The collector's cache holds them too, so they are shared.
        let _cache: Vec<Arc<Series>> = kept.iter().map(Arc::clone).collect();
        let t0 = 1_700_000_000_000;
        // Two series interleaved (now and then a copy of one instead), buckets crossed every
        // 14 points or so, one point back in time now and then.
        let point = |i: usize, copy: bool| {
            let shared = &kept[i % 2];
            let series = if copy {
                Arc::new(Series::new(&shared.stage, &shared.name, Vec::new()))
            } else {
                Arc::clone(shared)
            };
            let back = if i % 31 == 30 { 15_000 } else { 0 };
            SeriesPoint {
                series,
                timestamp_ms: t0 + i as i64 * 700 - back,
                value: (i * 7 % 23) as f64,
                start_ms: 0,
            }
        };
        let fold_all = |tx: &Transaction<'_>, copies: bool| {
            let mut ids = SeriesIds::new();
            let (mut fold, mut merged) = (PointBuckets::new(10_000), PointBuckets::new(10_000));
            let points: Vec<SeriesPoint> =
                (0..400).map(|i| point(i, copies || i % 7 == 6)).collect();
            // Transactions of 37 points: the fold starts empty each time.
            for chunk in points.chunks(37) {
                let batch = StoreBatch {
                    signals: SignalBatch {
                        points: chunk.to_vec(),
                        ..SignalBatch::default()
                    },
                    scores: (0..chunk.len()).map(|i| i as f64).collect(),
                    ..StoreBatch::default()
                };
                fold.clear();
                fold.add(tx, &mut ids, &batch).unwrap();
                merged.merge(&mut fold);
            }
            let mut rows: Vec<_> = merged
                .rows
                .iter()
                .map(|r| {
                    let b = &r.bucket;
                    (
                        r.id,
                        r.bucket_ms,
                        b.ts_ms,
                        b.count,
                        [b.value, b.min, b.max, b.sum, b.score],
                    )
                })
                .collect();
            rows.sort_by_key(|r| (r.0, r.1));
            rows
        };
        let tx = conn.transaction().unwrap();
        let by_identity = fold_all(&tx, false);
        let by_key = fold_all(&tx, true);
        assert_eq!(by_identity, by_key);
        // Both series, several buckets each, every point counted once.
        assert!(by_key.len() > 40, "{}", by_key.len());
        assert_eq!(by_key.iter().map(|r| r.3).sum::<u64>(), 400);
    }

    #[test]
    fn a_shared_series_keeps_its_id_by_identity_and_agrees_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, _) = open_store(dir.path()).unwrap();
        let mut ids = SeriesIds::new();
        let kept = Arc::new(Series::new("svc", "queue.depth", Vec::new()));
        let cache = Arc::clone(&kept);
        let point = |series: Arc<Series>| SeriesPoint {
            series,
            timestamp_ms: 1,
            value: 1.0,
            start_ms: 0,
        };
        let tx = conn.transaction().unwrap();
        let first = series_id(&tx, &mut ids, &point(Arc::clone(&kept))).unwrap();
        assert_eq!(ids.shared.get(&cache).map(|s| s.id), Some(first));
        // The same series in another allocation (a one-off copy) goes by key: same id.
        let copy = Arc::new(Series::new("svc", "queue.depth", Vec::new()));
        assert_eq!(series_id(&tx, &mut ids, &point(copy)).unwrap(), first);
        let other = Arc::new(Series::new("svc", "lag", Vec::new()));
        let other_cache = Arc::clone(&other);
        let second = series_id(&tx, &mut ids, &point(Arc::clone(&other))).unwrap();
        assert_ne!(second, first);
        assert_eq!(ids.shared.get(&other_cache).map(|s| s.id), Some(second));
        assert_eq!(ids.shared.len(), 2, "the one-off copy gets no entry");
        // After a rollback the ids are forgotten and read again from the table.
        ids.clear();
        assert_eq!(ids.shared.get(&cache), None);
        assert_eq!(
            series_id(&tx, &mut ids, &point(Arc::clone(&kept))).unwrap(),
            first
        );
        tx.commit().unwrap();
    }

    fn log(stage: &str, n: i64) -> LogRecord {
        LogRecord {
            stage: stage.into(),
            timestamp_ms: now_ms() - 60_000 + n,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: format!("record {n} \"quoted\" \u{e9}"),
            attributes: serde_json::json!({ "n": n, "nested": { "k": [1, 2] } }),
            trace_id: format!("{n:032x}"),
            span_id: String::new(),
        }
    }

    fn log_batch(logs: Vec<LogRecord>) -> StoreBatch {
        StoreBatch {
            signals: SignalBatch {
                logs,
                ..SignalBatch::default()
            },
            ..StoreBatch::default()
        }
    }

    #[tokio::test]
    async fn log_records_are_stored_in_chunks_and_read_newest_first_per_stage() {
        let dir = tempfile::tempdir().unwrap();
        let writer = test_writer(dir.path(), 1);
        let (tx, rx) = mpsc::channel(8);
        let thread = writer.spawn(rx);
        // Two transactions, two stages interleaved within the first.
        tx.send(log_batch(vec![log("a", 0), log("b", 1), log("a", 2)]))
            .await
            .unwrap();
        tx.send(log_batch(vec![log("a", 3), log("b", 4)]))
            .await
            .unwrap();
        drop(tx);
        thread.join().unwrap();

        let reader = StoreReader::open(dir.path()).unwrap();
        let (all, total) = reader.logs(None, 100).await.unwrap();
        assert_eq!(total, 5);
        let order: Vec<i64> = all
            .iter()
            .map(|l| l.attributes["n"].as_i64().unwrap())
            .collect();
        // Chunks newest first (b and a of the second transaction, then of the first), each
        // chunk's records newest first.
        assert_eq!(order, [4, 3, 1, 2, 0]);
        let (a, total_a) = reader.logs(Some("a".into()), 2).await.unwrap();
        assert_eq!(total_a, 3);
        let bodies: Vec<&str> = a.iter().map(|l| l.body.as_str()).collect();
        assert_eq!(
            bodies,
            ["record 3 \"quoted\" \u{e9}", "record 2 \"quoted\" \u{e9}"],
            "newest first, across chunks, cut at the limit"
        );
        assert_eq!(
            a[1].attributes,
            serde_json::json!({ "n": 2, "nested": { "k": [1, 2] } })
        );
        assert_eq!(a[1].trace_id, format!("{:032x}", 2));
    }

    #[tokio::test]
    async fn chunks_are_stored_compressed_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = test_writer(dir.path(), 1);
        let records: Vec<LogRecord> = (0..200).map(|n| log("a", n)).collect();
        writer.write(&[log_batch(records.clone())]).unwrap();
        drop(writer);
        let json_bytes = serde_json::to_vec(&records).unwrap().len() as i64;
        let (conn, _) = open_store(dir.path()).unwrap();
        let (kind, stored_bytes): (String, i64) = conn
            .query_row(
                "SELECT typeof(records), length(records) FROM log_chunks",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(kind, "blob");
        assert!(
            stored_bytes * 4 < json_bytes,
            "{stored_bytes} bytes stored for {json_bytes} bytes of JSON"
        );
        drop(conn);
        let reader = StoreReader::open(dir.path()).unwrap();
        let (mut back, total) = reader.logs(None, 1000).await.unwrap();
        back.reverse();
        assert_eq!(total, 200);
        assert_eq!(back, records);
    }

    #[tokio::test]
    async fn a_damaged_chunk_is_a_read_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _) = open_store(dir.path()).unwrap();
        conn.execute(
            "INSERT INTO log_chunks (stage, min_ts_ms, max_ts_ms, count, records)
             VALUES ('a', 1, 1, 1, ?1)",
            [b"not a zstd frame".to_vec()],
        )
        .unwrap();
        drop(conn);
        let reader = StoreReader::open(dir.path()).unwrap();
        let err = reader.logs(None, 10).await.unwrap_err().to_string();
        assert!(err.contains("log chunk compression"), "{err}");
    }

    #[test]
    fn a_chunk_over_the_size_limit_is_refused() {
        use rusqlite::types::ValueRef;
        let records: Vec<LogRecord> = (0..20).map(|n| log("a", n)).collect();
        let chunk = LogChunk::encode(&records).unwrap().remove(0);
        let frame = ValueRef::Blob(&chunk.compressed);
        assert_eq!(LogChunk::decode_limited(frame, 1 << 20).unwrap(), records);
        assert!(matches!(
            LogChunk::decode_limited(frame, 100),
            Err(LogChunkError::TooLarge(100))
        ));
    }

    #[test]
    fn one_encoder_reused_encodes_each_batch_as_a_new_one_would() {
        use rusqlite::types::ValueRef;
        let mut encoder = LogChunkEncoder::new().unwrap();
        // A large batch first (the context grows its tables), then small ones of two stages.
        let batches: Vec<Vec<LogRecord>> = vec![
            (0..2000).map(|n| log("big", n)).collect(),
            (0..3)
                .map(|n| log(if n % 2 == 0 { "a" } else { "b" }, n))
                .collect(),
            (0..50).map(|n| log("a", n)).collect(),
        ];
        for records in &batches {
            let reused = encoder.encode(records).unwrap();
            assert_eq!(reused, LogChunk::encode(records).unwrap());
            let decoded: Vec<LogRecord> = reused
                .iter()
                .flat_map(|chunk| LogChunk::decode(ValueRef::Blob(&chunk.compressed)).unwrap())
                .collect();
            let mut expected = records.clone();
            expected.sort_by_key(|record| record.stage != records[0].stage);
            assert_eq!(decoded, expected);
        }
    }
    #[tokio::test]
    async fn log_rows_of_an_older_store_become_chunks_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(super::super::database_path(dir.path())).unwrap();
            conn.execute_batch(
                "CREATE TABLE logs (id INTEGER PRIMARY KEY, stage TEXT NOT NULL,
                 ts_ms INTEGER NOT NULL, severity_number INTEGER NOT NULL,
                 severity_text TEXT NOT NULL, body TEXT NOT NULL, attributes TEXT NOT NULL,
                 trace_id TEXT NOT NULL, span_id TEXT NOT NULL);
                 INSERT INTO logs VALUES (1, 'a', 1000, 17, 'ERROR', 'first', '{\"k\":1}', 't', 's');
                 INSERT INTO logs VALUES (2, 'a', 2000, 9, 'INFO', 'second', '{}', '', '');",
            )
            .unwrap();
        }
        let (conn, _) = open_store(dir.path()).unwrap();
        let old: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'logs'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0, "the old table is gone");
        drop(conn);
        let reader = StoreReader::open(dir.path()).unwrap();
        let (logs, total) = reader.logs(Some("a".into()), 10).await.unwrap();
        assert_eq!(total, 2);
        assert_eq!(logs[0].body, "second");
        assert_eq!(logs[1].body, "first");
        assert_eq!(logs[1].severity_number, 17);
        assert_eq!(logs[1].attributes, serde_json::json!({ "k": 1 }));
        assert_eq!(
            (logs[1].trace_id.as_str(), logs[1].span_id.as_str()),
            ("t", "s")
        );
    }

    #[tokio::test]
    async fn retention_deletes_chunks_whose_newest_record_is_older_than_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = test_writer(dir.path(), 1);
        let mut old = log("a", 0);
        old.timestamp_ms = 1_000;
        let mut mixed = log("a", 1);
        mixed.timestamp_ms = 4_000;
        writer
            .write(&[log_batch(vec![old.clone()]), log_batch(vec![old, mixed])])
            .unwrap();
        writer.write(&[log_batch(vec![log("a", 2)])]).unwrap();
        writer.apply_retention(3_000).unwrap();
        drop(writer);
        let reader = StoreReader::open(dir.path()).unwrap();
        let (logs, total) = reader.logs(None, 10).await.unwrap();
        assert_eq!(
            (logs.len(), total),
            (3, 3),
            "the chunk that only holds old records is gone, the one with a newer record stays"
        );
    }

    #[tokio::test]
    async fn pre_encoded_chunks_read_back_as_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = test_writer(dir.path(), 4);
        let records = vec![log("a", 0), log("b", 1), log("a", 2)];
        let chunks = LogChunk::encode(&records).unwrap();
        assert_eq!(chunks.len(), 2, "one chunk per stage");
        assert_eq!(
            (chunks[0].count, chunks[0].min_ts_ms, chunks[0].max_ts_ms),
            (2, records[0].timestamp_ms, records[2].timestamp_ms)
        );
        let batch = StoreBatch {
            log_chunks: chunks,
            ..StoreBatch::default()
        };
        assert_eq!(batch_rows(&batch), 3);
        writer.write(&[batch]).unwrap();
        drop(writer);
        let reader = StoreReader::open(dir.path()).unwrap();
        let (a, total) = reader.logs(Some("a".into()), 10).await.unwrap();
        assert_eq!(total, 2);
        assert_eq!(a, vec![records[2].clone(), records[0].clone()]);
    }
}
