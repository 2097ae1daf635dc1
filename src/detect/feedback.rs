//! Feedback on anomalies, and the suppression it drives.
//!
//! `POST /api/v1/anomalies/{id}/feedback {"label":"false_positive","note":"..."}` stores a row in
//! the `anomaly_feedback` table (same database file, own connection). A `false_positive` label
//! (`true_positive` is stored too, without effect) becomes a suppression rule: from then on an
//! anomaly of the **same series**, in the **same direction**, whose `|actual - typical|` is at
//! most the marked anomaly's is **not stored** and not sent anywhere (alerting, Elasticsearch);
//! it is counted in `pipewarden_detector_suppressed_total` and in the `suppressed` count of the
//! feedback row that matched, so an operator sees that suppression happened. Rules are loaded
//! from the table at start, so suppression survives a restart. `GET /api/v1/feedback` lists the
//! rows, newest first.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::anomaly::Anomaly;
use crate::detect::telemetry::DetectTelemetry;
use crate::sink::local::{StoreError, database_path, now_ms};
use crate::web::AppError;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS anomaly_feedback (
        id INTEGER PRIMARY KEY,
        anomaly_id INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        label TEXT NOT NULL,
        note TEXT NOT NULL,
        series_key TEXT NOT NULL,
        stage TEXT NOT NULL,
        name TEXT NOT NULL,
        model TEXT NOT NULL,
        direction TEXT NOT NULL,
        magnitude REAL NOT NULL,
        suppressed INTEGER NOT NULL DEFAULT 0
    );
";

/// Labels the API accepts.
pub const LABELS: [&str; 2] = ["false_positive", "true_positive"];

/// One stored feedback row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// Row id.
    pub id: i64,
    /// The anomaly it is about.
    pub anomaly_id: i64,
    /// When it was given, Unix milliseconds.
    pub created_ms: i64,
    /// `false_positive` or `true_positive`.
    pub label: String,
    /// Free text.
    pub note: String,
    /// Series of the anomaly.
    pub series_key: String,
    /// Stage of the anomaly.
    pub stage: String,
    /// Signal name of the anomaly.
    pub name: String,
    /// Model of the anomaly.
    pub model: String,
    /// Direction of the anomaly.
    pub direction: String,
    /// `|actual - typical|` of the anomaly: later ones up to this are suppressed.
    pub magnitude: f64,
    /// Anomalies suppressed by this feedback so far.
    pub suppressed: u64,
}

/// The feedback table behind its own connection (every operation is short).
#[derive(Clone)]
pub struct FeedbackStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for FeedbackStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedbackStore")
            .field("path", &self.path)
            .finish()
    }
}

impl FeedbackStore {
    /// Opens the store's database in `dir` (the store writer has created it) and creates the
    /// feedback table when missing.
    ///
    /// # Errors
    /// When SQLite refuses to open the file or create the table.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = database_path(dir);
        let sqlite = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sqlite)?;
        conn.execute_batch("PRAGMA busy_timeout = 5000;")
            .map_err(sqlite)?;
        conn.execute_batch(SCHEMA).map_err(sqlite)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn
                .lock()
                .map_err(|_| StoreError::Join("feedback store lock poisoned".to_owned()))?;
            call(&guard).map_err(|source| StoreError::Sqlite { path, source })
        })
        .await
        .map_err(|err| StoreError::Join(err.to_string()))?
    }

    /// Returns a stored anomaly by id.
    ///
    /// # Errors
    /// When SQLite fails.
    pub async fn anomaly(&self, id: i64) -> Result<Option<Anomaly>, StoreError> {
        self.blocking(move |conn| {
            conn.query_row(
                "SELECT id, ts_ms, series_key, stage, name, model, model_version, score, actual,
                        typical, lower, upper, feature, direction, continuing
                 FROM anomalies WHERE id = ?1",
                [id],
                |row| {
                    Ok(Anomaly {
                        id: row.get(0)?,
                        timestamp_ms: row.get(1)?,
                        series_key: row.get(2)?,
                        stage: row.get(3)?,
                        name: row.get(4)?,
                        model: row.get(5)?,
                        model_version: row.get(6)?,
                        score: row.get(7)?,
                        actual: row.get(8)?,
                        typical: row.get(9)?,
                        lower: row.get(10)?,
                        upper: row.get(11)?,
                        feature: row.get(12)?,
                        direction: row.get(13)?,
                        continuing: row.get(14)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    /// Stores a feedback row (its `id` is assigned) and returns it.
    ///
    /// # Errors
    /// When SQLite fails.
    pub async fn insert(&self, mut feedback: Feedback) -> Result<Feedback, StoreError> {
        self.blocking(move |conn| {
            conn.execute(
                "INSERT INTO anomaly_feedback (anomaly_id, created_ms, label, note, series_key,
                     stage, name, model, direction, magnitude, suppressed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0)",
                params![
                    feedback.anomaly_id,
                    feedback.created_ms,
                    feedback.label,
                    feedback.note,
                    feedback.series_key,
                    feedback.stage,
                    feedback.name,
                    feedback.model,
                    feedback.direction,
                    feedback.magnitude,
                ],
            )?;
            feedback.id = conn.last_insert_rowid();
            Ok(feedback)
        })
        .await
    }

    /// Returns every feedback row, newest first (at most `limit`).
    ///
    /// # Errors
    /// When SQLite fails.
    pub async fn list(&self, limit: usize) -> Result<Vec<Feedback>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.blocking(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, anomaly_id, created_ms, label, note, series_key, stage, name, model,
                        direction, magnitude, suppressed
                 FROM anomaly_feedback ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |row| {
                Ok(Feedback {
                    id: row.get(0)?,
                    anomaly_id: row.get(1)?,
                    created_ms: row.get(2)?,
                    label: row.get(3)?,
                    note: row.get(4)?,
                    series_key: row.get(5)?,
                    stage: row.get(6)?,
                    name: row.get(7)?,
                    model: row.get(8)?,
                    direction: row.get(9)?,
                    magnitude: row.get(10)?,
                    suppressed: u64::try_from(row.get::<_, i64>(11)?).unwrap_or(0),
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Adds suppression counts to feedback rows.
    ///
    /// # Errors
    /// When SQLite fails.
    pub async fn add_suppressed(&self, counts: Vec<(i64, u64)>) -> Result<(), StoreError> {
        self.blocking(move |conn| {
            for (id, n) in counts {
                conn.execute(
                    "UPDATE anomaly_feedback SET suppressed = suppressed + ?1 WHERE id = ?2",
                    params![i64::try_from(n).unwrap_or(i64::MAX), id],
                )?;
            }
            Ok(())
        })
        .await
    }
}

/// One suppression rule.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    feedback_id: i64,
    series_key: String,
    direction: String,
    magnitude: f64,
}

impl Rule {
    fn matches(&self, anomaly: &Anomaly) -> bool {
        anomaly.series_key == self.series_key
            && anomaly.direction == self.direction
            && (anomaly.actual - anomaly.typical).abs() <= self.magnitude
    }
}

/// The suppression rules, shared by the detectors and the API; cheap to clone.
#[derive(Debug, Clone)]
pub struct Suppressor {
    rules: Arc<RwLock<Vec<Rule>>>,
    store: FeedbackStore,
    telemetry: DetectTelemetry,
}

impl Suppressor {
    /// Loads the rules of every stored `false_positive` feedback.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn load(
        store: FeedbackStore,
        telemetry: DetectTelemetry,
    ) -> Result<Self, StoreError> {
        let rules = store
            .list(usize::MAX)
            .await?
            .into_iter()
            .rev()
            .filter_map(|f| rule_of(&f))
            .collect();
        Ok(Self {
            rules: Arc::new(RwLock::new(rules)),
            store,
            telemetry,
        })
    }

    /// Returns the feedback store.
    pub fn store(&self) -> &FeedbackStore {
        &self.store
    }

    fn add(&self, feedback: &Feedback) {
        if let Some(rule) = rule_of(feedback)
            && let Ok(mut rules) = self.rules.write()
        {
            rules.push(rule);
        }
    }

    /// Returns the id of the first feedback whose rule matches `anomaly`.
    pub fn matching_feedback(&self, anomaly: &Anomaly) -> Option<i64> {
        let rules = self.rules.read().ok()?;
        rules
            .iter()
            .find(|rule| rule.matches(anomaly))
            .map(|rule| rule.feedback_id)
    }

    /// Removes the suppressed anomalies from `anomalies`, counts them (metric and feedback
    /// rows) and returns how many were removed.
    pub async fn filter(&self, anomalies: &mut Vec<Anomaly>) -> usize {
        if anomalies.is_empty() || self.rules.read().map(|r| r.is_empty()).unwrap_or(true) {
            return 0;
        }
        let mut counts: Vec<(i64, u64)> = Vec::new();
        anomalies.retain(|anomaly| match self.matching_feedback(anomaly) {
            Some(id) => {
                match counts.iter_mut().find(|(fid, _)| *fid == id) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((id, 1)),
                }
                false
            }
            None => true,
        });
        let removed: u64 = counts.iter().map(|(_, n)| n).sum();
        if removed > 0 {
            self.telemetry.suppressed.inc_by(removed);
            if let Err(err) = self.store.add_suppressed(counts).await {
                tracing::warn!(error = %err, "cannot store suppression counts");
            }
        }
        removed as usize
    }
}

fn rule_of(feedback: &Feedback) -> Option<Rule> {
    (feedback.label == "false_positive").then(|| Rule {
        feedback_id: feedback.id,
        series_key: feedback.series_key.clone(),
        direction: feedback.direction.clone(),
        magnitude: feedback.magnitude,
    })
}

/// Body of `POST /api/v1/anomalies/{id}/feedback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackRequest {
    label: String,
    #[serde(default)]
    note: String,
}

/// State of the feedback endpoints.
#[derive(Debug, Clone)]
struct FeedbackState {
    suppressor: Suppressor,
    max_rows: usize,
}

/// Returns the feedback endpoints (full paths), to merge into the app's router.
pub fn routes(suppressor: Suppressor, max_rows: usize) -> Router {
    Router::new()
        .route("/api/v1/anomalies/{id}/feedback", post(give_feedback))
        .route("/api/v1/feedback", get(list_feedback))
        .with_state(FeedbackState {
            suppressor,
            max_rows,
        })
}

async fn give_feedback(
    State(state): State<FeedbackState>,
    UrlPath(id): UrlPath<i64>,
    body: Result<Json<FeedbackRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Feedback>), AppError> {
    let Json(request) = body.map_err(|err| AppError::BadRequest(err.body_text()))?;
    if !LABELS.contains(&request.label.as_str()) {
        return Err(AppError::BadRequest(format!(
            "label: must be one of {LABELS:?}, got `{}`",
            request.label
        )));
    }
    let store = state.suppressor.store();
    let anomaly = store
        .anomaly(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no anomaly {id}")))?;
    let feedback = store
        .insert(Feedback {
            id: 0,
            anomaly_id: id,
            created_ms: now_ms(),
            label: request.label,
            note: request.note,
            magnitude: (anomaly.actual - anomaly.typical).abs(),
            series_key: anomaly.series_key,
            stage: anomaly.stage,
            name: anomaly.name,
            model: anomaly.model,
            direction: anomaly.direction,
            suppressed: 0,
        })
        .await?;
    state.suppressor.add(&feedback);
    tracing::info!(anomaly = id, label = %feedback.label, "anomaly feedback stored");
    Ok((StatusCode::CREATED, Json(feedback)))
}

async fn list_feedback(
    State(state): State<FeedbackState>,
) -> Result<Json<serde_json::Value>, AppError> {
    let rows = state.suppressor.store().list(state.max_rows).await?;
    Ok(Json(json!({ "feedback": rows })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anomaly(series: &str, direction: &str, actual: f64) -> Anomaly {
        Anomaly {
            id: 0,
            timestamp_ms: 0,
            series_key: series.into(),
            stage: "s".into(),
            name: "n".into(),
            model: "m".into(),
            model_version: 1,
            score: 90.0,
            actual,
            typical: 10.0,
            lower: 0.0,
            upper: 20.0,
            feature: "n".into(),
            direction: direction.into(),
            continuing: false,
        }
    }

    #[tokio::test]
    async fn false_positive_feedback_suppresses_similar_anomalies_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let (_conn, _) = crate::sink::local::open_store(dir.path()).unwrap();
        let store = FeedbackStore::open(dir.path()).unwrap();
        let suppressor = Suppressor::load(store.clone(), DetectTelemetry::default())
            .await
            .unwrap();
        let feedback = store
            .insert(Feedback {
                id: 0,
                anomaly_id: 7,
                created_ms: 1,
                label: "false_positive".into(),
                note: "deploy".into(),
                series_key: "k".into(),
                stage: "s".into(),
                name: "n".into(),
                model: "m".into(),
                direction: "up".into(),
                magnitude: 40.0,
                suppressed: 0,
            })
            .await
            .unwrap();
        suppressor.add(&feedback);
        let mut batch = vec![
            anomaly("k", "up", 45.0),  // within 40: suppressed
            anomaly("k", "up", 60.0),  // larger: kept
            anomaly("k", "down", 5.0), // other direction: kept
            anomaly("other", "up", 45.0),
        ];
        assert_eq!(suppressor.filter(&mut batch).await, 1);
        assert_eq!(batch.len(), 3);
        assert_eq!(suppressor.telemetry.suppressed.get(), 1);

        let reloaded = Suppressor::load(
            FeedbackStore::open(dir.path()).unwrap(),
            DetectTelemetry::default(),
        )
        .await
        .unwrap();
        let mut again = vec![anomaly("k", "up", 12.0)];
        assert_eq!(reloaded.filter(&mut again).await, 1);
        let rows = reloaded.store().list(10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].suppressed, 2);
        assert_eq!(rows[0].note, "deploy");
    }

    #[tokio::test]
    async fn true_positive_feedback_suppresses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FeedbackStore::open(dir.path()).unwrap();
        let suppressor = Suppressor::load(store, DetectTelemetry::default())
            .await
            .unwrap();
        suppressor.add(&Feedback {
            id: 1,
            anomaly_id: 1,
            created_ms: 0,
            label: "true_positive".into(),
            note: String::new(),
            series_key: "k".into(),
            stage: "s".into(),
            name: "n".into(),
            model: "m".into(),
            direction: "up".into(),
            magnitude: 100.0,
            suppressed: 0,
        });
        let mut batch = vec![anomaly("k", "up", 45.0)];
        assert_eq!(suppressor.filter(&mut batch).await, 0);
    }
}
