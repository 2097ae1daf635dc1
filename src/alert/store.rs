//! Alert state in the local SQLite database: the service's own connection on the same file
//! (WAL mode, so it never blocks the store writer for long), and its own `alert_*` tables.
//!
//! * `alert_state`: the engine's core (groups, forward state, sequences) and each rule's
//!   state, as JSON rows.
//! * `alert_alerts`: pending, firing and unflushed resolved alerts (replaced at each persist).
//! * `alert_silences`, `alert_incidents`: upserted, deleted after the history retention.
//! * `alert_history`: lifecycle and notification events.
//! * `alert_outbox`: one row per notification and receiver, written in the same transaction
//!   as the state that produced it; delivered rows keep `delivered_ms` so they are never sent
//!   again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde::de::DeserializeOwned;
use tracing::warn;

use super::AlertError;
use super::engine::{EngineCore, EngineSnapshot};
use super::incident::{Incident, IncidentStatus, Incidents};
use super::model::{HistoryEvent, Notification};
use super::rule::RuleState;
use super::silence::Silence;

/// Everything one evaluation writes, in one transaction.
#[derive(Debug, Default)]
pub(crate) struct Persist {
    pub(crate) snapshot: EngineSnapshot,
    pub(crate) history: Vec<HistoryEvent>,
    pub(crate) notifications: Vec<Notification>,
    pub(crate) now_ms: i64,
}

/// One undelivered notification for one receiver.
#[derive(Debug, Clone)]
pub(crate) struct OutboxRow {
    pub(crate) seq: i64,
    pub(crate) created_ms: i64,
    pub(crate) attempts: u32,
    pub(crate) notification: Notification,
}

/// Filter of the history query.
#[derive(Debug, Clone, Default)]
pub(crate) struct HistoryQuery {
    pub(crate) fingerprint: Option<String>,
    pub(crate) from_ms: Option<i64>,
    pub(crate) to_ms: Option<i64>,
    pub(crate) limit: usize,
}

/// The alert tables, behind one connection shared by the service, the delivery task and the
/// API (every operation is short).
#[derive(Clone)]
pub(crate) struct AlertStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for AlertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertStore")
            .field("path", &self.path)
            .finish()
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS alert_state (
        name TEXT PRIMARY KEY,
        json TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS alert_alerts (
        fingerprint TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        status TEXT NOT NULL,
        starts_at_ms INTEGER,
        json TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS alert_silences (
        id TEXT PRIMARY KEY,
        ends_at_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        json TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS alert_incidents (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        opened_ms INTEGER NOT NULL,
        closed_ms INTEGER,
        json TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS alert_history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ms INTEGER NOT NULL,
        event TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        rule TEXT NOT NULL,
        labels TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS alert_history_ts ON alert_history (ts_ms);
    CREATE INDEX IF NOT EXISTS alert_history_fp ON alert_history (fingerprint, ts_ms);
    CREATE TABLE IF NOT EXISTS alert_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        notification_id TEXT NOT NULL,
        receiver TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        delivered_ms INTEGER,
        dropped_reason TEXT,
        UNIQUE (notification_id, receiver)
    );
    CREATE INDEX IF NOT EXISTS alert_outbox_pending ON alert_outbox (receiver, delivered_ms, seq);
";

fn decode<T: DeserializeOwned>(what: &str, json: &str) -> Option<T> {
    match serde_json::from_str(json) {
        Ok(v) => Some(v),
        Err(err) => {
            warn!(what, error = %err, "skipping an undecodable alert store row");
            None
        }
    }
}

fn encode<T: serde::Serialize>(value: &T) -> String {
    // Serializing plain data structs with string keys cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

impl AlertStore {
    /// Opens the database file (creating the directory and tables when needed).
    pub(crate) fn open(path: &Path) -> Result<Self, AlertError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| AlertError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let sql = |source| AlertError::Store {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> AlertError {
        AlertError::Store {
            path: self.path.clone(),
            source,
        }
    }

    /// Runs `f` on the blocking pool.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, AlertError>
    where
        T: Send + 'static,
        F: FnOnce(&AlertStore) -> Result<T, AlertError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| AlertError::Join(e.to_string()))?
    }

    /// Reads the persisted state (empty when nothing was persisted).
    pub(crate) fn load(&self, max_closed: usize) -> Result<EngineSnapshot, AlertError> {
        let conn = self.lock();
        let e = |s| self.err(s);
        let mut snapshot = EngineSnapshot::default();
        let core: Option<String> = conn
            .query_row(
                "SELECT json FROM alert_state WHERE name = 'engine'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        snapshot.core = core
            .and_then(|j| decode::<EngineCore>("engine state", &j))
            .unwrap_or_default();

        let mut stmt = conn
            .prepare("SELECT name, json FROM alert_state WHERE name LIKE 'rule:%'")
            .map_err(e)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(e)?;
        let mut rule_states = BTreeMap::new();
        for row in rows {
            let (name, json) = row.map_err(e)?;
            if let Some(state) = decode::<RuleState>("rule state", &json) {
                rule_states.insert(name.trim_start_matches("rule:").to_owned(), state);
            }
        }
        snapshot.rule_states = rule_states;

        snapshot.alerts =
            Self::json_rows(&conn, "SELECT json FROM alert_alerts", "alert").map_err(e)?;
        snapshot.silences =
            Self::json_rows(&conn, "SELECT json FROM alert_silences", "silence").map_err(e)?;
        let open: Vec<Incident> = Self::json_rows(
            &conn,
            "SELECT json FROM alert_incidents WHERE status = 'open' ORDER BY opened_ms",
            "incident",
        )
        .map_err(e)?;
        let mut closed: Vec<Incident> = Self::json_rows(
            &conn,
            &format!(
                "SELECT json FROM alert_incidents WHERE status = 'closed' \
                 ORDER BY closed_ms DESC LIMIT {max_closed}"
            ),
            "incident",
        )
        .map_err(e)?;
        closed.reverse();
        snapshot.incidents = Incidents {
            open,
            closed: closed.into(),
        };
        Ok(snapshot)
    }

    fn json_rows<T: DeserializeOwned>(
        conn: &Connection,
        sql: &str,
        what: &str,
    ) -> rusqlite::Result<Vec<T>> {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(v) = decode(what, &row?) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Writes one evaluation's state, history and outbox rows in one transaction.
    pub(crate) fn persist(&self, p: &Persist) -> Result<(), AlertError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|s| self.err(s))?;
        Self::persist_in(&tx, p).map_err(|s| self.err(s))?;
        tx.commit().map_err(|s| self.err(s))
    }

    fn persist_in(tx: &rusqlite::Transaction<'_>, p: &Persist) -> rusqlite::Result<()> {
        let s = &p.snapshot;
        tx.execute(
            "INSERT INTO alert_state (name, json, updated_ms) VALUES ('engine', ?1, ?2)
             ON CONFLICT (name) DO UPDATE SET json = excluded.json, updated_ms = excluded.updated_ms",
            params![encode(&s.core), p.now_ms],
        )?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO alert_state (name, json, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET json = excluded.json, updated_ms = excluded.updated_ms",
            )?;
            for (name, state) in &s.rule_states {
                stmt.execute(params![format!("rule:{name}"), encode(state), p.now_ms])?;
            }
        }
        tx.execute("DELETE FROM alert_alerts", [])?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO alert_alerts (fingerprint, rule, status, starts_at_ms, json)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for a in &s.alerts {
                stmt.execute(params![
                    a.fingerprint,
                    a.rule,
                    a.status.as_str(),
                    a.starts_at_ms,
                    encode(a)
                ])?;
            }
        }
        for silence in &s.silences {
            Self::upsert_silence_in(tx, silence)?;
        }
        {
            let mut stmt = tx.prepare(
                "INSERT INTO alert_incidents (id, status, opened_ms, closed_ms, json)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                    closed_ms = excluded.closed_ms, json = excluded.json",
            )?;
            for i in s.incidents.open.iter().chain(s.incidents.closed.iter()) {
                let status = match i.status {
                    IncidentStatus::Open => "open",
                    IncidentStatus::Closed => "closed",
                };
                stmt.execute(params![i.id, status, i.opened_ms, i.closed_ms, encode(i)])?;
            }
        }
        {
            let mut stmt = tx.prepare(
                "INSERT INTO alert_history (ts_ms, event, fingerprint, rule, labels, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for h in &p.history {
                stmt.execute(params![
                    h.timestamp_ms,
                    h.event,
                    h.fingerprint,
                    h.rule,
                    encode(&h.labels),
                    encode(&h.detail)
                ])?;
            }
        }
        {
            let mut stmt = tx.prepare(
                "INSERT OR IGNORE INTO alert_outbox (notification_id, receiver, created_ms, payload)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for n in &p.notifications {
                let payload = encode(n);
                for receiver in &n.receivers {
                    stmt.execute(params![n.id, receiver, n.created_ms, payload])?;
                }
            }
        }
        Ok(())
    }

    fn upsert_silence_in(conn: &Connection, s: &Silence) -> rusqlite::Result<()> {
        conn.execute(
            "INSERT INTO alert_silences (id, ends_at_ms, updated_ms, json) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET ends_at_ms = excluded.ends_at_ms,
                updated_ms = excluded.updated_ms, json = excluded.json
             WHERE excluded.updated_ms >= alert_silences.updated_ms",
            params![s.id, s.ends_at_ms, s.updated_at_ms, encode(s)],
        )?;
        Ok(())
    }

    /// Writes one silence (creation or expiry through the API).
    pub(crate) fn upsert_silence(&self, silence: &Silence) -> Result<(), AlertError> {
        let conn = self.lock();
        Self::upsert_silence_in(&conn, silence).map_err(|s| self.err(s))
    }

    /// Returns up to `limit` undelivered rows of `receiver` after `after_seq`, oldest first.
    pub(crate) fn pending_outbox(
        &self,
        receiver: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, AlertError> {
        let conn = self.lock();
        let e = |s| self.err(s);
        let mut stmt = conn
            .prepare(
                "SELECT seq, created_ms, attempts, payload FROM alert_outbox
                 WHERE receiver = ?1 AND seq > ?2 AND delivered_ms IS NULL
                   AND dropped_reason IS NULL
                 ORDER BY seq LIMIT ?3",
            )
            .map_err(e)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![receiver, after_seq, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(e)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, created_ms, attempts, payload) = row.map_err(e)?;
            match serde_json::from_str::<Notification>(&payload) {
                Ok(notification) => out.push(OutboxRow {
                    seq,
                    created_ms,
                    attempts,
                    notification,
                }),
                Err(err) => {
                    warn!(seq, error = %err, "dropping an undecodable outbox row");
                    conn.execute(
                        "UPDATE alert_outbox SET dropped_reason = 'undecodable' WHERE seq = ?1",
                        params![seq],
                    )
                    .map_err(e)?;
                }
            }
        }
        Ok(out)
    }

    /// Drops undelivered rows of receivers that are no longer configured; returns how many.
    pub(crate) fn drop_unknown_receivers(&self, known: &[String]) -> Result<usize, AlertError> {
        let conn = self.lock();
        let e = |s| self.err(s);
        let mut stmt = conn
            .prepare(
                "SELECT DISTINCT receiver FROM alert_outbox
                 WHERE delivered_ms IS NULL AND dropped_reason IS NULL",
            )
            .map_err(e)?;
        let receivers: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(e)?
            .collect::<Result<_, _>>()
            .map_err(e)?;
        let mut dropped = 0;
        for receiver in receivers.iter().filter(|r| !known.contains(r)) {
            dropped += conn
                .execute(
                    "UPDATE alert_outbox SET dropped_reason = 'unknown_receiver'
                     WHERE receiver = ?1 AND delivered_ms IS NULL AND dropped_reason IS NULL",
                    params![receiver],
                )
                .map_err(e)?;
        }
        Ok(dropped)
    }

    /// Returns the number of undelivered rows per receiver.
    pub(crate) fn outbox_backlog(&self) -> Result<BTreeMap<String, u64>, AlertError> {
        let conn = self.lock();
        let e = |s| self.err(s);
        let mut stmt = conn
            .prepare(
                "SELECT receiver, COUNT(*) FROM alert_outbox
                 WHERE delivered_ms IS NULL AND dropped_reason IS NULL GROUP BY receiver",
            )
            .map_err(e)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
            .map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    /// Marks a row delivered: it is never sent again.
    pub(crate) fn mark_delivered(
        &self,
        seq: i64,
        attempts: u32,
        now_ms: i64,
    ) -> Result<(), AlertError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE alert_outbox SET delivered_ms = ?2, attempts = ?3, last_error = NULL WHERE seq = ?1",
            params![seq, now_ms, attempts],
        )
        .map_err(|s| self.err(s))?;
        Ok(())
    }

    /// Records a failed attempt.
    pub(crate) fn mark_attempt_failed(
        &self,
        seq: i64,
        attempts: u32,
        error: &str,
    ) -> Result<(), AlertError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE alert_outbox SET attempts = ?2, last_error = ?3 WHERE seq = ?1",
            params![seq, attempts, error],
        )
        .map_err(|s| self.err(s))?;
        Ok(())
    }

    /// Gives up on a row (`rejected` by the receiver, `expired`, or `unknown_receiver`).
    pub(crate) fn mark_dropped(
        &self,
        seq: i64,
        reason: &str,
        error: &str,
    ) -> Result<(), AlertError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE alert_outbox SET dropped_reason = ?2, last_error = ?3 WHERE seq = ?1",
            params![seq, reason, error],
        )
        .map_err(|s| self.err(s))?;
        Ok(())
    }

    /// Returns history events, newest first.
    pub(crate) fn history(&self, q: &HistoryQuery) -> Result<Vec<HistoryEvent>, AlertError> {
        let conn = self.lock();
        let e = |s| self.err(s);
        let mut stmt = conn
            .prepare(
                "SELECT ts_ms, event, fingerprint, rule, labels, detail FROM alert_history
                 WHERE (?1 IS NULL OR fingerprint = ?1) AND ts_ms >= ?2 AND ts_ms <= ?3
                 ORDER BY seq DESC LIMIT ?4",
            )
            .map_err(e)?;
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(
                params![
                    q.fingerprint,
                    q.from_ms.unwrap_or(i64::MIN),
                    q.to_ms.unwrap_or(i64::MAX),
                    limit
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                },
            )
            .map_err(e)?;
        let mut out = Vec::new();
        for row in rows {
            let (timestamp_ms, event, fingerprint, rule, labels, detail) = row.map_err(e)?;
            out.push(HistoryEvent {
                timestamp_ms,
                event,
                fingerprint,
                rule,
                labels: decode("history labels", &labels).unwrap_or_default(),
                detail: decode("history detail", &detail).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Deletes history, finished outbox rows, closed incidents and silences older than
    /// `cutoff_ms`.
    pub(crate) fn gc(&self, cutoff_ms: i64) -> Result<(), AlertError> {
        let conn = self.lock();
        conn.execute_batch(&format!(
            "DELETE FROM alert_history WHERE ts_ms < {cutoff_ms};
             DELETE FROM alert_outbox WHERE created_ms < {cutoff_ms}
                AND (delivered_ms IS NOT NULL OR dropped_reason IS NOT NULL);
             DELETE FROM alert_incidents WHERE status = 'closed' AND closed_ms < {cutoff_ms};
             DELETE FROM alert_silences WHERE ends_at_ms < {cutoff_ms};"
        ))
        .map_err(|s| self.err(s))
    }

    /// Returns the outbox rows of one notification id: (receiver, delivered_ms, attempts).
    #[cfg(test)]
    pub(crate) fn outbox_rows(&self) -> Vec<(String, String, Option<i64>, u32)> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT notification_id, receiver, delivered_ms, attempts FROM alert_outbox ORDER BY seq",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}
