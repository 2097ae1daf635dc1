//! Synthetic probe results and dead-man's switch findings in the local store, on a connection of
//! their own (the database runs in WAL mode; probe writes are few).

use std::path::Path;
use std::sync::Arc;

use pipewarden_synthetic::{DeadManFinding, ProbeResult};
use rusqlite::{Connection, params};
use serde::Serialize;

use super::{SharedConnection, StoreError, database_path, open, open_store};

/// Results kept per retention check: rows older than the store retention are deleted every this
/// many inserts.
const RETENTION_EVERY: u64 = 500;

/// Outcome counts of one probe over the stored results.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProbeCounts {
    /// Runs stored.
    pub runs: u64,
    /// Runs `up`.
    pub up: u64,
    /// Runs `down`.
    pub down: u64,
    /// Runs `timeout`.
    pub timeout: u64,
}

/// One probe: its last result, counts and the dead-man's switch findings still active.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeSummary {
    /// Probe name.
    pub probe: String,
    /// Stored run counts.
    pub counts: ProbeCounts,
    /// The latest result.
    pub last: Option<ProbeResult>,
    /// Active findings.
    pub findings: Vec<DeadManFinding>,
}

/// Read and write handle of the probe tables; cheap to clone.
#[derive(Clone)]
pub struct ProbeStore {
    conn: SharedConnection,
    retention_ms: i64,
    inserts: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for ProbeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProbeStore({})", self.conn.path().display())
    }
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "
        CREATE TABLE IF NOT EXISTS probe_results (
            run_id TEXT PRIMARY KEY,
            probe TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            status TEXT NOT NULL,
            latency_ms REAL,
            body TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS probe_results_probe_ts ON probe_results (probe, ts_ms);
        CREATE TABLE IF NOT EXISTS probe_findings (
            id INTEGER PRIMARY KEY,
            probe TEXT NOT NULL,
            subject TEXT NOT NULL,
            active INTEGER NOT NULL,
            ts_ms INTEGER NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS probe_findings_probe ON probe_findings (probe, subject, id);
        ",
    )
}

impl ProbeStore {
    /// Opens the probe tables of the database in `dir` (creating them when missing).
    ///
    /// # Errors
    /// When the database cannot be opened or migrated.
    pub fn open(dir: &Path, retention: std::time::Duration) -> Result<Self, StoreError> {
        drop(open_store(dir)?);
        let path = database_path(dir);
        let conn = open(&path)?;
        migrate(&conn).map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            conn: SharedConnection::new(conn, path),
            retention_ms: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
            inserts: Arc::default(),
        })
    }

    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.conn.with_conn(f).await
    }

    /// Stores a result (replacing one with the same run id).
    ///
    /// # Errors
    /// When SQLite refuses the write.
    pub async fn insert_result(&self, result: &ProbeResult) -> Result<(), StoreError> {
        let body = serde_json::to_string(result).unwrap_or_default();
        let (run_id, probe, ts, status, latency) = (
            result.run_id.clone(),
            result.probe.clone(),
            result.finished_ms,
            result.status.as_str(),
            result.latency_ms,
        );
        let n = self
            .inserts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cutoff = n
            .is_multiple_of(RETENTION_EVERY)
            .then(|| ts.saturating_sub(self.retention_ms));
        self.with_conn(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO probe_results (run_id, probe, ts_ms, status, latency_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run_id, probe, ts, status, latency, body],
            )?;
            if let Some(cutoff) = cutoff {
                c.execute("DELETE FROM probe_results WHERE ts_ms < ?1", params![cutoff])?;
                c.execute("DELETE FROM probe_findings WHERE ts_ms < ?1", params![cutoff])?;
            }
            Ok(())
        })
        .await
    }

    /// Stores a dead-man's switch change.
    ///
    /// # Errors
    /// When SQLite refuses the write.
    pub async fn insert_finding(&self, finding: &DeadManFinding) -> Result<(), StoreError> {
        let body = serde_json::to_string(finding).unwrap_or_default();
        let (probe, subject, active, ts) = (
            finding.probe.clone(),
            finding.subject.clone(),
            finding.active,
            finding.timestamp_ms,
        );
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO probe_findings (probe, subject, active, ts_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![probe, subject, active, ts, body],
            )
            .map(|_| ())
        })
        .await
    }

    /// Returns the latest results, newest first, of one probe or all.
    ///
    /// # Errors
    /// When the query fails.
    pub async fn results(
        &self,
        probe: Option<String>,
        limit: usize,
    ) -> Result<Vec<ProbeResult>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(move |c| {
            let mut stmt = c.prepare(
                "SELECT body FROM probe_results WHERE (?1 IS NULL OR probe = ?1)
                 ORDER BY ts_ms DESC, rowid DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![probe, limit], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for body in rows {
                if let Ok(result) = serde_json::from_str(&body?) {
                    out.push(result);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Returns the findings, newest first, of one probe or all.
    ///
    /// # Errors
    /// When the query fails.
    pub async fn findings(
        &self,
        probe: Option<String>,
        limit: usize,
    ) -> Result<Vec<DeadManFinding>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(move |c| {
            let mut stmt = c.prepare(
                "SELECT body FROM probe_findings WHERE (?1 IS NULL OR probe = ?1)
                 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![probe, limit], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for body in rows {
                if let Ok(finding) = serde_json::from_str(&body?) {
                    out.push(finding);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Returns every probe with stored results: counts, last result, active findings.
    ///
    /// # Errors
    /// When a query fails.
    pub async fn summaries(&self) -> Result<Vec<ProbeSummary>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare(
                "SELECT probe, COUNT(*), SUM(status = 'up'), SUM(status = 'down'),
                        SUM(status = 'timeout')
                 FROM probe_results GROUP BY probe ORDER BY probe",
            )?;
            let counts: Vec<(String, ProbeCounts)> = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        ProbeCounts {
                            runs: r.get::<_, i64>(1)?.max(0) as u64,
                            up: r.get::<_, i64>(2)?.max(0) as u64,
                            down: r.get::<_, i64>(3)?.max(0) as u64,
                            timeout: r.get::<_, i64>(4)?.max(0) as u64,
                        },
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut last_stmt = c.prepare(
                "SELECT body FROM probe_results WHERE probe = ?1
                 ORDER BY ts_ms DESC, rowid DESC LIMIT 1",
            )?;
            // The latest change per subject; active ones are listed.
            let mut findings_stmt = c.prepare(
                "SELECT body, active FROM probe_findings f WHERE probe = ?1 AND id = (
                     SELECT MAX(id) FROM probe_findings g
                     WHERE g.probe = f.probe AND g.subject = f.subject)
                 ORDER BY subject",
            )?;
            let mut out = Vec::with_capacity(counts.len());
            for (probe, counts) in counts {
                let last = last_stmt
                    .query_map(params![probe], |r| r.get::<_, String>(0))?
                    .next()
                    .transpose()?
                    .and_then(|body| serde_json::from_str(&body).ok());
                let mut findings = Vec::new();
                let rows = findings_stmt.query_map(params![probe], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))
                })?;
                for row in rows {
                    let (body, active) = row?;
                    if active && let Ok(finding) = serde_json::from_str(&body) {
                        findings.push(finding);
                    }
                }
                out.push(ProbeSummary {
                    probe,
                    counts,
                    last,
                    findings,
                });
            }
            Ok(out)
        })
        .await
    }
}
