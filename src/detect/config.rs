//! The `[detector.logs]`, `[detector.schema]` and `[detector.embeddings]` sections: the log
//! detector beside the per-series scorer.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, DetectorConfig};

/// `[detector.logs]`: template mining, template rates and log sessions, per stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogDetectorConfig {
    /// Runs the log detector. Default true.
    pub enabled: bool,
    /// Capacity, in batches of log records, of the queue from the pipeline to the log
    /// detector. When it is full the records are skipped by the log detector (still stored)
    /// and counted in `pipewarden_detector_skipped_total{reason="backlog"}`; ingest never
    /// waits for it. Default 64.
    pub queue_capacity: usize,
    /// Most log records per second the log detector takes (a token bucket with one second of
    /// burst), bounding its CPU share next to ingest; the rest are skipped by the detector only
    /// (still stored) and counted (`reason="rate_limit"`); template rates and sessions then
    /// see a sample. 0 takes every record. Default 50000.
    pub max_records_per_second: u64,
    /// Most stages with log state; records of further stages are skipped and counted
    /// (`reason="stage_cap"`). Default 1000.
    pub max_stages: usize,
    /// Most templates per stage; further messages join one overflow template (counted in
    /// `pipewarden_detector_log_evictions_total{kind="template"}`). Default 1000.
    pub max_templates_per_stage: usize,
    /// Records a stage must see before a new template is reported. Default 1000.
    pub warmup_records: u64,
    /// Window over which each template's count is scored as a series (event time). Default `1m`.
    #[serde(with = "humantime_serde")]
    pub rate_window: Duration,
    /// Most template-rate series scored at once (least recently updated evicted). Default 20000.
    pub max_rate_series: usize,
    /// Attributes whose value keys a session (the first present wins), e.g. `block_id` or
    /// `job.id`. Default empty.
    pub session_attributes: Vec<String>,
    /// Keys a record without a session attribute by its trace id. Default true.
    pub session_by_trace_id: bool,
    /// A session closes when no record arrived for it for this long (event time) and is then
    /// scored. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Most open sessions over all stages; past it the least recently active one closes early
    /// (counted in `pipewarden_detector_log_evictions_total{kind="session"}`). Default 10000.
    pub max_open_sessions: usize,
    /// Most events kept per session (later ones are not kept). Default 1024.
    pub max_session_events: usize,
    /// Closed sessions of a stage the session model learns from (a bounded buffer); it is
    /// fitted once this many closed and refitted after every further this many. Default 200.
    pub session_training: usize,
}

impl Default for LogDetectorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            queue_capacity: 64,
            max_records_per_second: 50_000,
            max_stages: 1000,
            max_templates_per_stage: 1000,
            warmup_records: 1000,
            rate_window: Duration::from_secs(60),
            max_rate_series: 20_000,
            session_attributes: Vec::new(),
            session_by_trace_id: true,
            session_timeout: Duration::from_secs(300),
            max_open_sessions: 10_000,
            max_session_events: 1024,
            session_training: 200,
        }
    }
}

/// `[detector.schema]`: schema drift of structured log attributes (and JSON bodies), per stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaDriftConfig {
    /// Learns field sets and types and reports changes. Default true.
    pub enabled: bool,
    /// Records of a stage that only teach the model. Default 100.
    pub warmup_events: u64,
    /// Consecutive records without an always-present field before it is reported missing.
    /// Default 50.
    pub missing_after: u64,
    /// Most field paths tracked per stage (further ones ignored and counted). Default 256.
    pub max_fields: usize,
}

impl Default for SchemaDriftConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            warmup_events: 100,
            missing_after: 50,
            max_fields: 256,
        }
    }
}

/// `[detector.embeddings]`: outliers and drift of vectors carried by log records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// Log attribute holding a numeric array (empty turns embeddings off). Default empty.
    pub attribute: String,
    /// Reference population per stage, in vectors. Default 256.
    pub reference_points: usize,
    /// Vectors per drift test (the window compared with the reference). Default 64.
    pub window_points: usize,
    /// Largest vector accepted, in dimensions (memory per stage is about
    /// (reference_points + window_points) x dimensions x 8 bytes). Default 512.
    pub max_dimensions: usize,
    /// Most stages with an embedding monitor (vectors of further stages are skipped, counted
    /// in `pipewarden_detector_log_evictions_total{kind="embedding_stage"}`). Default 8.
    pub max_stages: usize,
    /// Also embeds each record's template (a hashed bag of its tokens) and monitors those
    /// vectors per stage (outliers and drift of the template mix; at most `max_stages` stages).
    /// Default false.
    pub templates: bool,
    /// Dimensions of a template embedding. Default 32.
    pub template_dimensions: usize,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        Self {
            attribute: String::new(),
            reference_points: 256,
            window_points: 64,
            max_dimensions: 512,
            max_stages: 8,
            templates: false,
            template_dimensions: 32,
        }
    }
}

/// Approximate bytes of log-detector state per stage and per open session, for the memory
/// budget check.
pub const APPROX_STAGE_BYTES: u64 = 16 * 1024;
/// See [`APPROX_STAGE_BYTES`].
pub const APPROX_SESSION_EVENT_BYTES: u64 = 16;

/// Returns the bytes the log detector's caps allow (0 when it is off).
pub fn approx_log_detector_bytes(d: &DetectorConfig) -> u64 {
    let multivariate = d.multivariate.approx_bytes();
    if !d.logs.enabled {
        return multivariate;
    }
    let l = &d.logs;
    let e = &d.embeddings;
    let per_vector = |dimensions: usize| {
        ((e.reference_points + e.window_points) * dimensions * 8 * e.max_stages) as u64
    };
    let mut embeddings = 0;
    if !e.attribute.is_empty() {
        embeddings += per_vector(e.max_dimensions);
    }
    if e.templates {
        embeddings += per_vector(e.template_dimensions);
    }
    multivariate
        + embeddings
        + l.max_stages as u64 * APPROX_STAGE_BYTES
        + l.max_open_sessions as u64
            * l.max_session_events.min(64) as u64
            * APPROX_SESSION_EVENT_BYTES
}

fn err(path: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        path: format!("detector.{path}"),
        problem: problem.into(),
    }
}

/// Checks the log detector's sections without I/O.
///
/// # Errors
/// The first problem found, naming its key path.
pub fn validate(d: &DetectorConfig) -> Result<(), ConfigError> {
    let l = &d.logs;
    let at_least_one = [
        ("logs.queue_capacity", l.queue_capacity),
        ("logs.max_stages", l.max_stages),
        ("logs.max_templates_per_stage", l.max_templates_per_stage),
        ("logs.max_rate_series", l.max_rate_series),
        ("logs.max_open_sessions", l.max_open_sessions),
        ("logs.max_session_events", l.max_session_events),
        ("schema.max_fields", d.schema.max_fields),
    ];
    for (path, value) in at_least_one {
        if value == 0 {
            return Err(err(path, "must be at least 1"));
        }
    }
    if l.session_training < 3 {
        return Err(err(
            "logs.session_training",
            format!("must be at least 3, got {}", l.session_training),
        ));
    }
    if l.rate_window < Duration::from_secs(1) {
        return Err(err("logs.rate_window", "must be at least 1s"));
    }
    if l.session_timeout < Duration::from_secs(1) {
        return Err(err("logs.session_timeout", "must be at least 1s"));
    }
    if d.schema.warmup_events == 0 {
        return Err(err("schema.warmup_events", "must be at least 1"));
    }
    if d.schema.missing_after == 0 {
        return Err(err("schema.missing_after", "must be at least 1"));
    }
    let e = &d.embeddings;
    if !(8..=65_536).contains(&e.reference_points) {
        return Err(err(
            "embeddings.reference_points",
            format!("must be within 8..=65536, got {}", e.reference_points),
        ));
    }
    if e.window_points < 4 || e.window_points > e.reference_points {
        return Err(err(
            "embeddings.window_points",
            format!(
                "must be within 4..=reference_points ({}), got {}",
                e.reference_points, e.window_points
            ),
        ));
    }
    if e.max_dimensions == 0 {
        return Err(err("embeddings.max_dimensions", "must be at least 1"));
    }
    if e.max_stages == 0 {
        return Err(err("embeddings.max_stages", "must be at least 1"));
    }
    if !(2..=4096).contains(&e.template_dimensions) {
        return Err(err(
            "embeddings.template_dimensions",
            format!("must be within 2..=4096, got {}", e.template_dimensions),
        ));
    }
    d.multivariate
        .validate()
        .map_err(|(path, problem)| err(&path, problem))?;
    Ok(())
}
