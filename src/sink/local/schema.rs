//! Tables of the local store.

use rusqlite::Connection;

/// Creates the tables and indices when missing (idempotent).
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "
        CREATE TABLE IF NOT EXISTS series (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            stage TEXT NOT NULL,
            name TEXT NOT NULL,
            attributes TEXT NOT NULL,
            -- 'reading' or 'running_total' (the detector scores a running total's rate).
            kind TEXT NOT NULL DEFAULT 'reading'
        );
        CREATE INDEX IF NOT EXISTS series_stage ON series (stage, name);
        -- One row per series and time bucket (`store.point_resolution`): every point of the
        -- bucket is folded into count, sum, min, max, the last value and the highest score.
        CREATE TABLE IF NOT EXISTS series_points (
            series_id INTEGER NOT NULL,
            bucket_ms INTEGER NOT NULL,
            ts_ms INTEGER NOT NULL,
            value REAL NOT NULL,
            min REAL NOT NULL,
            max REAL NOT NULL,
            sum REAL NOT NULL,
            count INTEGER NOT NULL,
            score REAL NOT NULL,
            PRIMARY KEY (series_id, bucket_ms)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS stage_windows (
            stage TEXT NOT NULL,
            window_start_ms INTEGER NOT NULL,
            window_end_ms INTEGER NOT NULL,
            spans INTEGER NOT NULL,
            span_errors INTEGER NOT NULL,
            latency_p50_ms REAL,
            latency_p95_ms REAL,
            latency_p99_ms REAL,
            metric_points INTEGER NOT NULL,
            log_records INTEGER NOT NULL,
            logs_by_severity TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS stage_windows_stage ON stage_windows (stage, window_end_ms);
        -- Raw log records in chunks: one row per stage and write transaction, `records` a JSON
        -- array of the records in arrival order, compressed with zstd (a blob; rows written
        -- before compression hold the JSON text, which the TEXT affinity leaves alone either
        -- way). One insert per chunk instead of one per record keeps the store's cost per record
        -- small; reads walk the chunks newest first.
        CREATE TABLE IF NOT EXISTS log_chunks (
            id INTEGER PRIMARY KEY,
            stage TEXT NOT NULL,
            min_ts_ms INTEGER NOT NULL,
            max_ts_ms INTEGER NOT NULL,
            count INTEGER NOT NULL,
            records TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS log_chunks_stage ON log_chunks (stage, id);
        CREATE TABLE IF NOT EXISTS job_runs (
            id INTEGER PRIMARY KEY,
            job TEXT NOT NULL,
            stage TEXT NOT NULL,
            trace_id TEXT NOT NULL,
            span_id TEXT NOT NULL,
            start_ms INTEGER NOT NULL,
            end_ms INTEGER NOT NULL,
            runtime_ms REAL NOT NULL,
            status TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS job_runs_job ON job_runs (job, end_ms);
        CREATE TABLE IF NOT EXISTS anomalies (
            id INTEGER PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            series_key TEXT NOT NULL,
            stage TEXT NOT NULL,
            name TEXT NOT NULL,
            model TEXT NOT NULL,
            model_version INTEGER NOT NULL,
            score REAL NOT NULL,
            actual REAL NOT NULL,
            typical REAL NOT NULL,
            lower REAL NOT NULL,
            upper REAL NOT NULL,
            feature TEXT NOT NULL,
            direction TEXT NOT NULL,
            continuing INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS anomalies_ts ON anomalies (ts_ms);
        CREATE TABLE IF NOT EXISTS kafka_groups (
            cluster TEXT NOT NULL,
            consumer_group TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            status TEXT NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (cluster, consumer_group)
        );
        CREATE TABLE IF NOT EXISTS kafka_status_changes (
            id INTEGER PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            cluster TEXT NOT NULL,
            consumer_group TEXT NOT NULL,
            topic TEXT,
            partition INTEGER,
            from_status TEXT,
            to_status TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS kafka_status_changes_ts ON kafka_status_changes (ts_ms);
        CREATE TABLE IF NOT EXISTS kafka_lag_state (
            cluster TEXT PRIMARY KEY,
            state TEXT NOT NULL
        );
        ",
    )?;
    migrate_series_kind(conn)?;
    migrate_log_rows(conn)
}

/// Stores written before series had a kind get the column, every series a reading (as they
/// were scored then) until its next point says otherwise.
fn migrate_series_kind(conn: &Connection) -> rusqlite::Result<()> {
    let has_kind: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('series') WHERE name = 'kind'",
        [],
        |r| r.get(0),
    )?;
    if has_kind == 0 {
        conn.execute(
            "ALTER TABLE series ADD COLUMN kind TEXT NOT NULL DEFAULT 'reading'",
            [],
        )?;
    }
    Ok(())
}

/// Stores written before log chunks kept one row per record in `logs`: those rows become
/// one-record chunks (in their order) and the old table is dropped, in one transaction.
fn migrate_log_rows(conn: &Connection) -> rusqlite::Result<()> {
    let old: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'logs'",
        [],
        |r| r.get(0),
    )?;
    if old == 0 {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(
        "
        INSERT INTO log_chunks (stage, min_ts_ms, max_ts_ms, count, records)
            SELECT stage, ts_ms, ts_ms, 1, json_array(json_object(
                'stage', stage, 'timestamp_ms', ts_ms, 'severity_number', severity_number,
                'severity_text', severity_text, 'body', body, 'attributes', json(attributes),
                'trace_id', trace_id, 'span_id', span_id))
            FROM logs ORDER BY id;
        DROP TABLE logs;
        ",
    )?;
    tx.commit()
}
