//! The log detector: per stage, streaming template mining, new templates, template rates,
//! log sessions, schema drift and embeddings, turned into [`Anomaly`] records.
//!
//! Synchronous and clock-free: time is the records' own timestamps (event time) and the `now_ms`
//! given to [`LogDetector::tick`], so `pipewarden replay --format log` and the live task run
//! exactly this code and a replay repeats exactly.
//!
//! Per stage (`series_key` of the anomalies in brackets):
//!
//! - **new template** (`STAGE|log.template|template=ID`, model `log_template`): a message that
//!   starts a template after the stage saw `warmup_records` records. Score from raw z
//!   `6 + ln(records / warmup_records)` (+1 when the template reads like a failure).
//! - **template rate** (`STAGE|log.template_rate|template=ID`): each template's count per
//!   `rate_window` (aligned to multiples of it) is a series point scored by a [`SeriesBank`]
//!   (the same robust per-series model as every derived series). Windows close when a later
//!   record arrives or a tick passes their end; empty windows in between are not scored.
//! - **session** (`STAGE|log.session`, model `session_workflow`): records sharing a session key
//!   (the first of `session_attributes` present, else the trace id) form a session; it closes
//!   after `session_timeout` without records (or early, at `max_open_sessions`) and is then
//!   assessed by the stage's session model, fitted on the last `session_training` closed
//!   sessions and refitted after every `session_training` more.
//! - **schema** (`STAGE|log.schema|field=PATH`, model `schema_drift`): flattened attributes
//!   (and the body when it is a JSON object, under `body.`); `name` is
//!   `log.schema.new_field|missing_field|type_change`, `feature` the field path, and
//!   actual/typical are presence (1/0) or the JSON type codes (0 null, 1 bool, 2 number,
//!   3 string, 4 array, 5 object).
//! - **embedding** (`STAGE|log.embedding`, model `embedding_drift`): the vector in the
//!   configured attribute is scored as an outlier (nearest-neighbour distance; name
//!   `log.embedding.outlier`), and each full window is tested for drift against the reference
//!   (MMD; name `log.embedding.drift`, feature = the dimensions that moved most). At most
//!   `embeddings.max_stages` stages get a monitor.
//! - **template embedding** (`STAGE|log.template_embedding`, with `embeddings.templates`): the
//!   record's template as a hashed bag of its tokens ([`hashed_bag_of_tokens`]), monitored the
//!   same way: a template unlike the recent ones is an outlier, a shift of the template mix is
//!   drift.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use linfa::traits::Fit;
use linfa::{DatasetBase, ParamGuard};
use pipewarden_collector::LogRecord;
use pipewarden_detector::models::embedding_drift::{DriftReport, EmbeddingDrift};
use pipewarden_detector::models::schema_drift::{
    CHANGE_Z, EventFields, FieldType, SchemaChange, SchemaDrift, SchemaDriftValidParams,
};
use pipewarden_detector::models::session_workflow::{
    SessionEvent, SessionFinding, SessionSet, SessionWorkflow, SessionWorkflowValidParams,
};
use pipewarden_detector::templates::{
    DrainValidParams, OVERFLOW_TEMPLATE, TemplateId, TemplateMiner, WILDCARD,
};
use pipewarden_detector::{Deviation, Score, SeriesBank, SeriesBankValidParams, score};
use serde_json::Value;

use crate::anomaly::{Anomaly, SeriesAt};
use crate::config::DetectorConfig;
use crate::detect::config::{EmbeddingConfig, LogDetectorConfig};

/// Version of the log models' wiring, reported with every anomaly they produce.
pub const MODEL_VERSION: u32 = 1;

/// Deepest object nesting flattened for the schema model.
const MAX_SCHEMA_DEPTH: usize = 4;

/// What the detector made of one record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogOutcome {
    /// The record's template (`None` when the record was skipped).
    pub template: Option<TemplateId>,
    /// Highest score of the anomalies produced while processing it (0 without any).
    pub score: f64,
}

/// Counters and sizes of the detector's state (cumulative counters; current sizes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogDetectorStats {
    /// Stages with state.
    pub stages: usize,
    /// Templates over all stages.
    pub templates: usize,
    /// Open sessions.
    pub open_sessions: usize,
    /// Approximate heap bytes per stage (average).
    pub bytes_per_stage: usize,
    /// Records skipped because `max_stages` stages had state.
    pub stage_skipped: u64,
    /// Messages that went to an overflow template.
    pub template_overflow: u64,
    /// Sessions closed early at `max_open_sessions`.
    pub session_evictions: u64,
    /// Template-rate series evicted at `max_rate_series`.
    pub rate_evictions: u64,
    /// Field paths ignored at `schema.max_fields`.
    pub field_overflow: u64,
    /// Vectors skipped because `embeddings.max_stages` stages had a monitor.
    pub embedding_skipped: u64,
}

/// An open session.
#[derive(Debug)]
struct OpenSession {
    events: Vec<SessionEvent>,
    last_ms: i64,
    seq: u64,
}

/// Stage and session key, shared (not copied) by the session map and the idle order: with
/// thousands of open sessions, most of them one record long, the key is most of their memory.
type SessionKey = (Arc<str>, Arc<str>);

/// Everything known about one stage's logs.
#[derive(Debug)]
struct StageLogs {
    /// The stage's name, shared by its session keys.
    name: Arc<str>,
    miner: TemplateMiner,
    records: u64,
    /// Start of the open rate window and the count of each template in it.
    window_start_ms: Option<i64>,
    window_counts: HashMap<TemplateId, u64>,
    schema: Option<SchemaDrift>,
    embedding: Option<EmbeddingDrift>,
    template_embedding: Option<EmbeddingDrift>,
    training: VecDeque<Vec<SessionEvent>>,
    closed_since_fit: usize,
    session_model: Option<SessionWorkflow>,
}

impl StageLogs {
    fn approx_heap_bytes(&self) -> usize {
        let templates: usize = self
            .miner
            .templates()
            .iter()
            .map(|t| 2 * t.text().len() + 96)
            .sum();
        let training: usize = self
            .training
            .iter()
            .map(|s| s.len() * size_of::<SessionEvent>())
            .sum();
        templates
            + training
            + self.window_counts.len() * 32
            + self
                .schema
                .as_ref()
                .map_or(0, SchemaDrift::approx_heap_bytes)
            + self
                .embedding
                .as_ref()
                .map_or(0, EmbeddingDrift::approx_heap_bytes)
            + self
                .template_embedding
                .as_ref()
                .map_or(0, EmbeddingDrift::approx_heap_bytes)
    }
}

/// The log detector of every stage (see the [module docs](self)).
#[derive(Debug)]
pub struct LogDetector {
    config: LogDetectorConfig,
    embeddings: EmbeddingConfig,
    threshold: f64,
    drain: DrainValidParams,
    schema: Option<SchemaDriftValidParams>,
    session: SessionWorkflowValidParams,
    stages: HashMap<String, StageLogs>,
    rates: SeriesBank,
    sessions: HashMap<SessionKey, OpenSession>,
    /// Open sessions by (last activity, sequence; the sequence is unique): the idle ones first.
    session_order: BTreeMap<(i64, u64), SessionKey>,
    seq: u64,
    latest_ms: i64,
    stage_skipped: u64,
    session_evictions: u64,
    embedding_stages: usize,
    embedding_skipped: u64,
    template_embedding_stages: usize,
    /// Buffers of the record being flattened for the schema model (reused across records).
    flat: Flattener,
}

impl LogDetector {
    /// Builds the detector from the `[detector]` section.
    ///
    /// # Errors
    /// When a model refuses a value (the config's validation normally catches it first).
    pub fn from_config(detector: &DetectorConfig) -> anyhow::Result<LogDetector> {
        let logs = &detector.logs;
        let drain = TemplateMiner::params()
            .max_templates(logs.max_templates_per_stage)
            .check()
            .map_err(|err| anyhow::anyhow!("detector.logs: {err}"))?;
        let schema = if detector.schema.enabled {
            Some(
                SchemaDrift::params()
                    .warmup_events(detector.schema.warmup_events)
                    .missing_after(detector.schema.missing_after)
                    .max_fields(detector.schema.max_fields)
                    .check()
                    .map_err(|err| anyhow::anyhow!("detector.schema: {err}"))?,
            )
        } else {
            None
        };
        let session = SessionWorkflow::params()
            .check()
            .map_err(|err| anyhow::anyhow!("detector.logs: {err}"))?;
        let rates: SeriesBankValidParams = SeriesBank::params()
            .max_series(logs.max_rate_series)
            .alert_threshold(detector.alert_threshold)
            .warmup_points(detector.warmup_points)
            .window_points(detector.window_points)
            .check()
            .map_err(|err| anyhow::anyhow!("detector.logs: {err}"))?;
        Ok(LogDetector {
            config: logs.clone(),
            embeddings: detector.embeddings.clone(),
            threshold: detector.alert_threshold,
            drain,
            schema,
            session,
            stages: HashMap::new(),
            rates: SeriesBank::new(rates),
            sessions: HashMap::new(),
            session_order: BTreeMap::new(),
            seq: 0,
            latest_ms: i64::MIN,
            stage_skipped: 0,
            session_evictions: 0,
            embedding_stages: 0,
            embedding_skipped: 0,
            template_embedding_stages: 0,
            flat: Flattener::default(),
        })
    }

    /// Returns the state's sizes and counters.
    pub fn stats(&self) -> LogDetectorStats {
        let bytes: usize = self.stages.values().map(StageLogs::approx_heap_bytes).sum();
        let session_bytes: usize = self
            .sessions
            .values()
            .map(|s| s.events.capacity() * size_of::<SessionEvent>() + 96)
            .sum();
        LogDetectorStats {
            stages: self.stages.len(),
            templates: self.stages.values().map(|s| s.miner.len()).sum(),
            open_sessions: self.sessions.len(),
            bytes_per_stage: (bytes + session_bytes) / self.stages.len().max(1),
            stage_skipped: self.stage_skipped,
            template_overflow: self.stages.values().map(|s| s.miner.overflowed()).sum(),
            session_evictions: self.session_evictions,
            rate_evictions: self.rates.evictions(),
            field_overflow: self
                .stages
                .values()
                .filter_map(|s| s.schema.as_ref())
                .map(SchemaDrift::overflowed)
                .sum(),
            embedding_skipped: self.embedding_skipped,
        }
    }

    /// Processes one record, appending the anomalies it produced to `out`.
    pub fn observe(&mut self, log: &LogRecord, out: &mut Vec<Anomaly>) -> LogOutcome {
        let first = out.len();
        let template = self.observe_record(log, out);
        self.latest_ms = self.latest_ms.max(log.timestamp_ms);
        self.close_idle_sessions(self.latest_ms, out);
        let score = out[first..].iter().map(|a| a.score).fold(0.0_f64, f64::max);
        LogOutcome { template, score }
    }

    /// Closes the rate windows that ended at or before `now_ms` and the sessions idle for
    /// `session_timeout` at `now_ms`, appending anomalies to `out`.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Anomaly>) {
        let window_ms = self.window_ms();
        let mut stages: Vec<&String> = self.stages.keys().collect();
        stages.sort();
        let stages: Vec<String> = stages.into_iter().cloned().collect();
        for stage in stages {
            let Some(st) = self.stages.get_mut(&stage) else {
                continue;
            };
            if let Some(start) = st.window_start_ms
                && start + window_ms <= now_ms
            {
                close_rate_window(
                    &stage,
                    st,
                    start + window_ms,
                    &mut self.rates,
                    self.threshold,
                    out,
                );
                st.window_start_ms = None;
            }
        }
        self.close_idle_sessions(now_ms, out);
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.config.rate_window.as_millis()).unwrap_or(i64::MAX)
    }

    fn observe_record(&mut self, log: &LogRecord, out: &mut Vec<Anomaly>) -> Option<TemplateId> {
        if !self.stages.contains_key(&log.stage) {
            if self.stages.len() >= self.config.max_stages {
                self.stage_skipped += 1;
                return None;
            }
            let stage = StageLogs {
                name: Arc::from(log.stage.as_str()),
                miner: TemplateMiner::new(self.drain.clone()),
                records: 0,
                window_start_ms: None,
                window_counts: HashMap::new(),
                schema: self.schema.clone().map(SchemaDrift::new),
                embedding: None,
                template_embedding: None,
                training: VecDeque::new(),
                closed_since_fit: 0,
                session_model: None,
            };
            self.stages.insert(log.stage.clone(), stage);
        }
        let window_ms = self.window_ms();
        let threshold = self.threshold;
        let st = self.stages.get_mut(&log.stage)?;
        st.records += 1;
        let severity = u8::try_from(log.severity_number.clamp(0, 255)).unwrap_or(0);
        let matched = st.miner.add(&log.body, severity);

        // Rate window: a record past the open window closes it first.
        let ts = log.timestamp_ms;
        if let Some(start) = st.window_start_ms
            && ts >= start + window_ms
        {
            close_rate_window(
                &log.stage,
                st,
                start + window_ms,
                &mut self.rates,
                threshold,
                out,
            );
            st.window_start_ms = None;
        }
        if st.window_start_ms.is_none() {
            st.window_start_ms = Some(ts - ts.rem_euclid(window_ms));
        }
        *st.window_counts.entry(matched.id).or_insert(0) += 1;

        if matched.is_new
            && st.records > self.config.warmup_records
            && let Some(template) = st.miner.template(matched.id)
            && template.text() != OVERFLOW_TEMPLATE
        {
            let mut z = 6.0 + (st.records as f64 / self.config.warmup_records.max(1) as f64).ln();
            if template.is_error_like() {
                z += 1.0;
            }
            let score = Score::from_z(z).value();
            if score >= threshold {
                out.push(Anomaly {
                    id: 0,
                    timestamp_ms: ts,
                    series_key: format!("{}|log.template|template={}", log.stage, matched.id.0),
                    stage: log.stage.clone(),
                    name: "log.template".to_owned(),
                    model: "log_template".to_owned(),
                    model_version: MODEL_VERSION,
                    score,
                    actual: 1.0,
                    typical: 0.0,
                    lower: 0.0,
                    upper: 0.0,
                    feature: template.text().to_owned(),
                    direction: "up".to_owned(),
                    continuing: false,
                });
            }
        }

        if self.embeddings.templates
            && let Some(template) = st.miner.template(matched.id)
        {
            let dimensions = self.embeddings.template_dimensions;
            if st.template_embedding.is_none()
                && self.template_embedding_stages < self.embeddings.max_stages
            {
                st.template_embedding = embedding_monitor(&self.embeddings, dimensions);
                self.template_embedding_stages += 1;
            }
            if let Some(monitor) = st.template_embedding.as_mut() {
                let vector = hashed_bag_of_tokens(template.text(), dimensions);
                observe_embedding(
                    &log.stage,
                    "log.template_embedding",
                    monitor,
                    ts,
                    &vector,
                    threshold,
                    out,
                );
            }
        }

        if let Some(schema) = st.schema.as_mut() {
            let fields = self.flat.flatten(log);
            for change in schema.observe_fields(fields) {
                if let Some(anomaly) = schema_anomaly(&log.stage, ts, &change, threshold) {
                    out.push(anomaly);
                }
            }
        }

        if !self.embeddings.attribute.is_empty()
            && let Some(vector) = numeric_array(log.attributes.get(&self.embeddings.attribute))
            && !vector.is_empty()
            && vector.len() <= self.embeddings.max_dimensions
        {
            if st.embedding.is_none() {
                let monitor = (self.embedding_stages < self.embeddings.max_stages)
                    .then(|| embedding_monitor(&self.embeddings, vector.len()))
                    .flatten();
                let Some(monitor) = monitor else {
                    self.embedding_skipped += 1;
                    return self.finish_record(log, matched.id, out);
                };
                st.embedding = Some(monitor);
                self.embedding_stages += 1;
            }
            if let Some(monitor) = st.embedding.as_mut() {
                observe_embedding(
                    &log.stage,
                    "log.embedding",
                    monitor,
                    ts,
                    &vector,
                    threshold,
                    out,
                );
            }
        }

        self.finish_record(log, matched.id, out)
    }

    /// Adds the record to its session and returns its template.
    fn finish_record(
        &mut self,
        log: &LogRecord,
        template: TemplateId,
        out: &mut Vec<Anomaly>,
    ) -> Option<TemplateId> {
        if let Some(key) = self.session_key(log) {
            let stage = self
                .stages
                .get(log.stage.as_str())
                .map_or_else(|| Arc::from(log.stage.as_str()), |st| Arc::clone(&st.name));
            self.add_session_event(
                (stage, key),
                SessionEvent {
                    timestamp_ms: log.timestamp_ms,
                    template,
                },
                out,
            );
        }
        Some(template)
    }

    fn session_key(&self, log: &LogRecord) -> Option<Arc<str>> {
        for attribute in &self.config.session_attributes {
            match log.attributes.get(attribute) {
                Some(Value::String(s)) if !s.is_empty() => return Some(Arc::from(s.as_str())),
                Some(Value::Number(n)) => return Some(Arc::from(n.to_string())),
                _ => {}
            }
        }
        (self.config.session_by_trace_id && !log.trace_id.is_empty())
            .then(|| Arc::from(log.trace_id.as_str()))
    }

    fn add_session_event(&mut self, key: SessionKey, event: SessionEvent, out: &mut Vec<Anomaly>) {
        if !self.sessions.contains_key(&key)
            && self.sessions.len() >= self.config.max_open_sessions
            && let Some(oldest) = self.session_order.values().next().cloned()
        {
            self.session_evictions += 1;
            self.close_session(&oldest, event.timestamp_ms, out);
        }
        self.seq += 1;
        let seq = self.seq;
        let max_events = self.config.max_session_events;
        match self.sessions.get_mut(&key) {
            Some(session) => {
                let key = self
                    .session_order
                    .remove(&(session.last_ms, session.seq))
                    .unwrap_or(key);
                if session.events.len() < max_events {
                    session.events.push(event);
                }
                session.last_ms = session.last_ms.max(event.timestamp_ms);
                session.seq = seq;
                self.session_order.insert((session.last_ms, seq), key);
            }
            None => {
                // Most sessions stay short: room for one event, grown on demand.
                let mut events = Vec::with_capacity(1);
                if max_events > 0 {
                    events.push(event);
                }
                self.session_order
                    .insert((event.timestamp_ms, seq), key.clone());
                self.sessions.insert(
                    key,
                    OpenSession {
                        events,
                        last_ms: event.timestamp_ms,
                        seq,
                    },
                );
            }
        }
    }

    fn close_idle_sessions(&mut self, now_ms: i64, out: &mut Vec<Anomaly>) {
        let timeout_ms = i64::try_from(self.config.session_timeout.as_millis()).unwrap_or(i64::MAX);
        while let Some((&(last_ms, _), _)) = self.session_order.first_key_value() {
            if last_ms.saturating_add(timeout_ms) > now_ms {
                break;
            }
            let Some((_, key)) = self.session_order.pop_first() else {
                break;
            };
            self.close_session(&key, last_ms.saturating_add(timeout_ms), out);
        }
    }

    fn close_session(&mut self, key: &SessionKey, now_ms: i64, out: &mut Vec<Anomaly>) {
        let Some(session) = self.sessions.remove(key) else {
            return;
        };
        self.session_order.remove(&(session.last_ms, session.seq));
        let Some(st) = self.stages.get_mut(&*key.0) else {
            return;
        };
        if let Some(model) = &st.session_model {
            let assessment = model.assess(&session.events, now_ms, &st.miner);
            if assessment.score >= self.threshold
                && let Some(finding) = assessment.findings.first()
            {
                out.push(session_anomaly(
                    &key.0,
                    &key.1,
                    now_ms,
                    assessment.score,
                    finding,
                    &st.miner,
                ));
            }
        }
        let capacity = self.config.session_training;
        if st.training.len() >= capacity {
            st.training.pop_front();
        }
        st.training.push_back(session.events);
        st.closed_since_fit += 1;
        if st.closed_since_fit >= capacity {
            st.closed_since_fit = 0;
            let set = SessionSet {
                sessions: st.training.make_contiguous(),
                miner: &st.miner,
            };
            // A failed fit (no sessions) keeps the previous model.
            if let Ok(model) = self.session.fit(&DatasetBase::new(set, ())) {
                st.session_model = Some(model);
            }
        }
    }
}

fn close_rate_window(
    stage: &str,
    st: &mut StageLogs,
    end_ms: i64,
    rates: &mut SeriesBank,
    threshold: f64,
    out: &mut Vec<Anomaly>,
) {
    for (index, template) in st.miner.templates().iter().enumerate() {
        let id = TemplateId(index as u32);
        let count = st.window_counts.get(&id).copied().unwrap_or(0) as f64;
        let key = format!("{stage}|log.template_rate|template={index}");
        let scored = rates.observe(&key, end_ms, count);
        if scored.is_anomaly && scored.score >= threshold {
            let series = SeriesAt {
                key: &key,
                stage,
                name: "log.template_rate",
                timestamp_ms: end_ms,
            };
            out.push(Anomaly::from_scored(
                series,
                &scored,
                template.text().to_owned(),
            ));
        }
    }
    st.window_counts.clear();
}

fn schema_anomaly(stage: &str, ts: i64, change: &SchemaChange, threshold: f64) -> Option<Anomaly> {
    let score = Score::from_z(CHANGE_Z).value();
    if score < threshold {
        return None;
    }
    let (actual, typical, direction) = match change {
        SchemaChange::NewField { .. } => (1.0, 0.0, "up"),
        SchemaChange::MissingField { .. } => (0.0, 1.0, "down"),
        SchemaChange::TypeChange { from, to, .. } => (
            f64::from(to.code()),
            f64::from(from.code()),
            if to.code() > from.code() {
                "up"
            } else {
                "down"
            },
        ),
    };
    Some(Anomaly {
        id: 0,
        timestamp_ms: ts,
        series_key: format!("{stage}|log.schema|field={}", change.path()),
        stage: stage.to_owned(),
        name: format!("log.schema.{}", change.kind()),
        model: "schema_drift".to_owned(),
        model_version: MODEL_VERSION,
        score,
        actual,
        typical,
        lower: typical,
        upper: typical,
        feature: change.path().to_owned(),
        direction: direction.to_owned(),
        continuing: false,
    })
}

fn session_anomaly(
    stage: &str,
    session: &str,
    now_ms: i64,
    score: f64,
    finding: &SessionFinding,
    miner: &TemplateMiner,
) -> Anomaly {
    let text = |id: TemplateId| miner.template(id).map_or("?", |t| t.text()).to_owned();
    let (feature, actual, typical, direction) = match finding {
        SessionFinding::RareTemplate {
            template,
            training_share,
            limit,
            ..
        } => (
            format!("rare template: {}", text(*template)),
            *training_share,
            *limit,
            "down",
        ),
        SessionFinding::Stalled {
            after,
            idle_ms,
            limit_ms,
        } => (
            format!("stalled after: {}", text(*after)),
            *idle_ms as f64,
            *limit_ms as f64,
            "up",
        ),
        SessionFinding::BrokenInvariant {
            first,
            second,
            first_count,
            second_count,
            ..
        } => (
            format!("count mismatch: {} / {}", text(*first), text(*second)),
            f64::from(*first_count),
            f64::from(*second_count),
            if first_count > second_count {
                "up"
            } else {
                "down"
            },
        ),
    };
    Anomaly {
        id: 0,
        timestamp_ms: now_ms,
        series_key: format!("{stage}|log.session"),
        stage: stage.to_owned(),
        name: "log.session".to_owned(),
        model: "session_workflow".to_owned(),
        model_version: SessionWorkflow::VERSION,
        score,
        actual,
        typical,
        lower: typical,
        upper: typical,
        feature: format!("{feature} (session {session})"),
        direction: direction.to_owned(),
        continuing: false,
    }
}

/// Scores `vector` with `monitor`; anomalies are named `{signal}.outlier|drift` on the series
/// `STAGE|{signal}`.
fn observe_embedding(
    stage: &str,
    signal: &str,
    monitor: &mut EmbeddingDrift,
    ts: i64,
    vector: &[f64],
    threshold: f64,
    out: &mut Vec<Anomaly>,
) {
    // A vector of another dimension or with a non-finite value is ignored.
    let Ok(assessment) = monitor.observe(vector) else {
        return;
    };
    let band_z = score::z_at_score(threshold);
    if let Some(deviation) = assessment.outlier {
        let score = Score::from_deviation(&deviation).value();
        if score >= threshold {
            out.push(embedding_outlier(
                stage, signal, ts, &deviation, score, band_z,
            ));
        }
    }
    if let Some(report) = assessment.drift
        && report.score >= threshold
    {
        out.push(embedding_drift(stage, signal, ts, &report));
    }
}

/// Returns a monitor for vectors of `dimensions` (`None` when the settings are refused).
fn embedding_monitor(config: &EmbeddingConfig, dimensions: usize) -> Option<EmbeddingDrift> {
    EmbeddingDrift::params(dimensions)
        .reference_points(config.reference_points)
        .window_points(config.window_points)
        .neighbours(5.min(config.reference_points - 1))
        .build()
        .ok()
}

fn embedding_outlier(
    stage: &str,
    signal: &str,
    ts: i64,
    d: &Deviation,
    score: f64,
    band_z: f64,
) -> Anomaly {
    Anomaly {
        id: 0,
        timestamp_ms: ts,
        series_key: format!("{stage}|{signal}"),
        stage: stage.to_owned(),
        name: format!("{signal}.outlier"),
        model: "embedding_drift".to_owned(),
        model_version: MODEL_VERSION,
        score,
        actual: d.actual,
        typical: d.typical,
        lower: (d.typical - band_z * d.scale).max(0.0),
        upper: d.typical + band_z * d.scale,
        feature: "neighbour_distance".to_owned(),
        direction: if d.actual >= d.typical { "up" } else { "down" }.to_owned(),
        continuing: false,
    }
}

fn embedding_drift(stage: &str, signal: &str, ts: i64, report: &DriftReport) -> Anomaly {
    let feature = report
        .shifts
        .iter()
        .map(|s| format!("dim {} ({:+.1} sd)", s.dimension, s.shift))
        .collect::<Vec<_>>()
        .join(", ");
    Anomaly {
        id: 0,
        timestamp_ms: ts,
        series_key: format!("{stage}|{signal}"),
        stage: stage.to_owned(),
        name: format!("{signal}.drift"),
        model: "embedding_drift".to_owned(),
        model_version: MODEL_VERSION,
        score: report.score,
        actual: report.mmd2,
        typical: 0.0,
        lower: 0.0,
        upper: 0.0,
        feature,
        direction: "up".to_owned(),
        continuing: false,
    }
}

/// Returns the embedding of a template: its tokens (but `<*>`) hashed (FNV-1a, stable across
/// runs) into `dimensions` counts, scaled to unit length.
pub fn hashed_bag_of_tokens(text: &str, dimensions: usize) -> Vec<f64> {
    let mut vector = vec![0.0; dimensions.max(1)];
    for token in text.split_whitespace().filter(|t| *t != WILDCARD) {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in token.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let slot = (hash % vector.len() as u64) as usize;
        vector[slot] += 1.0;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in &mut vector {
            *x /= norm;
        }
    }
    vector
}

/// Returns the numbers of a JSON array of numbers (`None` for anything else).
fn numeric_array(value: Option<&Value>) -> Option<Vec<f64>> {
    value?.as_array()?.iter().map(Value::as_f64).collect()
}

/// Returns the flattened fields of a record: its attributes, and its body under `body.` when
/// the body is a JSON object.
pub fn flatten_record(log: &LogRecord) -> Vec<(String, FieldType)> {
    let mut flat = Flattener::default();
    flat.flatten(log)
        .iter()
        .map(|(path, field_type)| (path.to_owned(), field_type))
        .collect()
}

/// Flattens records into reused buffers (see [`flatten_record`]).
#[derive(Debug, Default)]
struct Flattener {
    path: String,
    fields: EventFields,
}

impl Flattener {
    /// Returns the flattened fields of `log`, valid until the next call.
    fn flatten(&mut self, log: &LogRecord) -> &EventFields {
        self.fields.clear();
        if let Value::Object(map) = &log.attributes {
            self.path.clear();
            flatten_object(map, &mut self.path, 0, &mut self.fields);
        }
        let body = log.body.trim_start();
        if body.starts_with('{')
            && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(body)
        {
            self.path.clear();
            self.path.push_str("body.");
            flatten_object(&map, &mut self.path, 0, &mut self.fields);
        }
        &self.fields
    }
}

/// Appends the leaves of `map` to `out`, each path being `path` (the prefix) and the keys.
fn flatten_object(
    map: &serde_json::Map<String, Value>,
    path: &mut String,
    depth: usize,
    out: &mut EventFields,
) {
    let prefix_len = path.len();
    for (key, value) in map {
        path.truncate(prefix_len);
        path.push_str(key);
        match value {
            Value::Object(inner) if !inner.is_empty() && depth + 1 < MAX_SCHEMA_DEPTH => {
                path.push('.');
                flatten_object(inner, path, depth + 1, out);
            }
            other => out.push(path, field_type(other)),
        }
    }
    path.truncate(prefix_len);
}

fn field_type(value: &Value) -> FieldType {
    match value {
        Value::Null => FieldType::Null,
        Value::Bool(_) => FieldType::Bool,
        Value::Number(_) => FieldType::Number,
        Value::String(_) => FieldType::String,
        Value::Array(_) => FieldType::Array,
        Value::Object(_) => FieldType::Object,
    }
}

#[cfg(test)]
mod tests;
