//! The async wrapper: one `select!` loop over shutdown, an evaluation tick and the input
//! queue; a separate delivery task connected through the persisted outbox and a bounded wake-up
//! channel, so a slow or failing receiver never delays evaluation.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::AlertError;
use super::config::{RuleSpec, SliConfig, ValidAlertConfig, millis};
use super::engine::AlertEngine;
use super::incident::Incident;
use super::input::{AlertEvent, PointInput};
use super::model::{Alert, AlertStatus, HistoryEvent};
use super::notify::Notifier;
use super::notify::delivery::{Delivery, DeliveryHealth};
use super::silence::{Silence, SilenceRequest, SilenceState};
use super::store::{AlertStore, HistoryQuery, Persist};
use super::telemetry::{AlertTelemetry, KindLabel, ReasonLabel, StatusLabel};
use crate::sink::elasticsearch::{EsDocument, SinkInput};
use crate::sink::local::StoreBatch;

pub use super::notify::delivery::ReceiverHealth;

/// Rule states are written at least this often (and whenever alerts change).
const RULE_STATE_SAVE_MS: i64 = 60_000;
/// Old history, silences and delivered notifications are deleted this often.
const GC_INTERVAL_MS: i64 = 3_600_000;
/// Most notifications (and history events) kept in memory while the store refuses writes.
const MAX_UNPERSISTED: usize = 10_000;

/// Where the service reads the time (Unix ms).
#[derive(Debug, Clone)]
pub enum Clock {
    /// The wall time at creation, advanced by tokio's monotonic clock: a test runtime with
    /// paused time controls it (`tokio::time::advance`).
    Tokio {
        /// Tokio instant at creation.
        start: Instant,
        /// Wall time at creation, Unix ms.
        start_ms: i64,
    },
    /// Set by hand (tests).
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// Returns a clock starting at the current wall time.
    pub fn system() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis);
        Self::tokio_from(ms)
    }

    /// Returns a tokio-driven clock that reads `start_ms` now.
    pub fn tokio_from(start_ms: i64) -> Self {
        Self::Tokio {
            start: Instant::now(),
            start_ms,
        }
    }

    /// Returns a manual clock reading `start_ms`.
    pub fn manual(start_ms: i64) -> Self {
        Self::Manual(Arc::new(AtomicI64::new(start_ms)))
    }

    /// Sets a manual clock (no effect on a tokio clock).
    pub fn set_ms(&self, ms: i64) {
        if let Self::Manual(now) = self {
            now.store(ms, Ordering::SeqCst);
        }
    }

    /// Advances a manual clock (no effect on a tokio clock).
    pub fn advance(&self, by: Duration) {
        if let Self::Manual(now) = self {
            now.fetch_add(millis(by), Ordering::SeqCst);
        }
    }

    /// Returns the time, Unix ms.
    pub fn now_ms(&self) -> i64 {
        match self {
            Self::Tokio { start, start_ms } => start_ms.saturating_add(millis(start.elapsed())),
            Self::Manual(now) => now.load(Ordering::SeqCst),
        }
    }
}

/// The service has stopped; the input was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the alert service has stopped")]
pub struct AlertInputClosed;

/// Which inputs some rule can use (the rest is not sent to the service).
#[derive(Debug, Default)]
struct InputFilter {
    all_points: bool,
    names: BTreeSet<String>,
    keys: BTreeSet<String>,
    stage_windows: bool,
}

impl InputFilter {
    fn new(config: &ValidAlertConfig) -> Self {
        let mut f = Self::default();
        for rule in &config.rules {
            match &rule.spec {
                RuleSpec::Threshold { select, .. } | RuleSpec::Anomaly { select, .. } => {
                    match (&select.series_key, &select.signal) {
                        (Some(key), _) => {
                            f.keys.insert(key.clone());
                        }
                        (None, Some(name)) => {
                            f.names.insert(name.clone());
                        }
                        (None, None) => f.all_points = true,
                    }
                }
                RuleSpec::Slo(slo) => {
                    if matches!(
                        slo.sli,
                        SliConfig::SpanSuccess { .. } | SliConfig::SpanLatency { .. }
                    ) {
                        f.stage_windows = true;
                    }
                }
                RuleSpec::Lag { .. } | RuleSpec::Probe { .. } => {}
            }
        }
        f
    }

    /// Whether some rule reads series points at all.
    fn wants_points(&self) -> bool {
        self.all_points || !self.names.is_empty() || !self.keys.is_empty()
    }

    fn wants_point(&self, key: &str, name: &str) -> bool {
        self.all_points || self.names.contains(name) || self.keys.contains(key)
    }
}

/// The sending side of the service's bounded input queue; cheap to clone.
#[derive(Debug, Clone)]
pub struct AlertInput {
    tx: mpsc::Sender<Vec<AlertEvent>>,
    filter: Arc<InputFilter>,
    telemetry: AlertTelemetry,
}

impl AlertInput {
    /// Sends a batch of events, waiting for room in the queue.
    ///
    /// # Errors
    /// [`AlertInputClosed`] when the service has stopped.
    pub async fn send(&self, events: Vec<AlertEvent>) -> Result<(), AlertInputClosed> {
        if events.is_empty() {
            return Ok(());
        }
        self.tx.send(events).await.map_err(|_| {
            self.dropped("closed");
            AlertInputClosed
        })
    }

    /// Sends a batch without waiting; a full queue drops the batch (counted with reason
    /// `queue_full`) and returns `Ok(false)`.
    ///
    /// # Errors
    /// [`AlertInputClosed`] when the service has stopped.
    pub fn try_send(&self, events: Vec<AlertEvent>) -> Result<bool, AlertInputClosed> {
        if events.is_empty() {
            return Ok(true);
        }
        match self.tx.try_send(events) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(_)) => {
                self.dropped("queue_full");
                Ok(false)
            }
            Err(TrySendError::Closed(_)) => {
                self.dropped("closed");
                Err(AlertInputClosed)
            }
        }
    }

    fn dropped(&self, reason: &str) {
        self.telemetry
            .inputs_dropped
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Returns the events of a scored batch that some rule can use: series points (with their
    /// scores) that a threshold or anomaly rule selects, and stage windows when a span SLO
    /// exists. Anomalies are not repeated: the points carry their scores.
    pub fn events_from_store_batch(&self, batch: &StoreBatch) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        // Without a rule on points, their series are not even looked at.
        let points = if self.filter.wants_points() {
            batch.signals.points.as_slice()
        } else {
            &[]
        };
        for (i, point) in points.iter().enumerate() {
            if self
                .filter
                .wants_point(&point.series.key, &point.series.name)
            {
                let score = batch.scores.get(i).copied();
                events.push(AlertEvent::Point(PointInput::from_series_point(
                    point, score,
                )));
            }
        }
        if self.filter.stage_windows {
            events.extend(
                batch
                    .signals
                    .stage_windows
                    .iter()
                    .cloned()
                    .map(AlertEvent::StageWindow),
            );
        }
        events
    }

    /// Sends what the rules can use of a scored batch (see
    /// [`AlertInput::events_from_store_batch`]), waiting for room.
    ///
    /// # Errors
    /// [`AlertInputClosed`] when the service has stopped.
    pub async fn send_store_batch(&self, batch: &StoreBatch) -> Result<(), AlertInputClosed> {
        self.send(self.events_from_store_batch(batch)).await
    }
}

/// Health of the alert service for `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct AlertHealth {
    /// The evaluation loop runs.
    pub running: bool,
    /// The last write to the alert tables succeeded.
    pub store_ok: bool,
    /// Every receiver's delivery state.
    pub receivers: Vec<ReceiverHealth>,
}

impl AlertHealth {
    /// Returns `ready`, `degraded` (a receiver is failing: notifications wait and are
    /// retried) or `not_ready` (the loop is not running or the store fails).
    pub fn status(&self) -> &'static str {
        if !self.running || !self.store_ok {
            "not_ready"
        } else if self.receivers.iter().any(|r| r.failing) {
            "degraded"
        } else {
            "ready"
        }
    }
}

fn lock(engine: &Mutex<AlertEngine>) -> MutexGuard<'_, AlertEngine> {
    // The engine's invariants hold between calls; a panic mid-call is a bug already logged.
    engine.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cloneable handle for the API and CLI: reads alerts, incidents and history, manages
/// silences, reports health.
#[derive(Debug, Clone)]
pub struct AlertHandle {
    engine: Arc<Mutex<AlertEngine>>,
    store: AlertStore,
    clock: Clock,
    health: Arc<DeliveryHealth>,
    running: Arc<AtomicBool>,
    store_ok: Arc<AtomicBool>,
}

impl AlertHandle {
    /// Returns the current alerts (pending, firing, resolved not yet notified), firing first.
    pub fn alerts(&self) -> Vec<Alert> {
        lock(&self.engine).alerts()
    }

    /// Returns open incidents (newest first), then recently closed ones.
    pub fn incidents(&self) -> Vec<Incident> {
        lock(&self.engine).incidents()
    }

    /// Returns every silence with its state now, newest first.
    pub fn silences(&self) -> Vec<(Silence, SilenceState)> {
        let now = self.clock.now_ms();
        lock(&self.engine).silences(now)
    }

    /// Creates a silence and stores it; it mutes from the next evaluation.
    ///
    /// # Errors
    /// [`AlertError::BadSilence`] for an invalid request, a store error when it cannot be
    /// written (it still applies until the next restart).
    pub async fn create_silence(&self, request: SilenceRequest) -> Result<Silence, AlertError> {
        let now = self.clock.now_ms();
        let silence = lock(&self.engine).create_silence(request, now)?;
        let stored = silence.clone();
        self.store
            .blocking(move |s| s.upsert_silence(&stored))
            .await?;
        info!(id = %silence.id, "silence created");
        Ok(silence)
    }

    /// Expires a silence now and stores it.
    ///
    /// # Errors
    /// [`AlertError::SilenceNotFound`], or a store error.
    pub async fn expire_silence(&self, id: &str) -> Result<Silence, AlertError> {
        let now = self.clock.now_ms();
        let silence = lock(&self.engine).expire_silence(id, now)?;
        let stored = silence.clone();
        self.store
            .blocking(move |s| s.upsert_silence(&stored))
            .await?;
        info!(id = %silence.id, "silence expired");
        Ok(silence)
    }

    /// Returns history events, newest first: all, or one alert's (`fingerprint`), between
    /// `from_ms` and `to_ms`, at most `limit`.
    ///
    /// # Errors
    /// A store error.
    pub async fn history(
        &self,
        fingerprint: Option<String>,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<HistoryEvent>, AlertError> {
        let query = HistoryQuery {
            fingerprint,
            from_ms,
            to_ms,
            limit,
        };
        self.store.blocking(move |s| s.history(&query)).await
    }

    /// Returns the service's health (for `/readyz`: see [`AlertHealth::status`]).
    pub fn health(&self) -> AlertHealth {
        AlertHealth {
            running: self.running.load(Ordering::Relaxed),
            store_ok: self.store_ok.load(Ordering::Relaxed),
            receivers: self.health.snapshot(),
        }
    }

    /// Returns the time the service reads, Unix ms.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// The alert service: evaluation loop, state persistence and delivery.
pub struct AlertService {
    config: ValidAlertConfig,
    engine: Arc<Mutex<AlertEngine>>,
    store: AlertStore,
    input: mpsc::Receiver<Vec<AlertEvent>>,
    telemetry: AlertTelemetry,
    clock: Clock,
    handle: AlertHandle,
    delivery: Delivery,
    wake_tx: mpsc::Sender<()>,
    wake_rx: mpsc::Receiver<()>,
    elasticsearch: Option<SinkInput>,
}

impl std::fmt::Debug for AlertService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertService")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl AlertService {
    /// Opens the alert tables in the database of `data_dir` (the store's directory), restores
    /// the persisted state and prepares the receivers. Time is the wall clock.
    ///
    /// # Errors
    /// When the database cannot be opened or the HTTP client cannot be built.
    pub fn build(
        config: ValidAlertConfig,
        data_dir: &Path,
        telemetry: AlertTelemetry,
    ) -> Result<(Self, AlertInput), AlertError> {
        Self::build_with_clock(config, data_dir, telemetry, Clock::system())
    }

    /// [`AlertService::build`] with a chosen clock (tests).
    ///
    /// # Errors
    /// As [`AlertService::build`].
    pub fn build_with_clock(
        config: ValidAlertConfig,
        data_dir: &Path,
        telemetry: AlertTelemetry,
        clock: Clock,
    ) -> Result<(Self, AlertInput), AlertError> {
        std::fs::create_dir_all(data_dir).map_err(|source| AlertError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let store = AlertStore::open(&crate::sink::local::database_path(data_dir))?;
        let snapshot = store.load(config.incidents.max_closed)?;
        let restored = snapshot.alerts.len();
        let unknown = store.drop_unknown_receivers(&config.receiver_names())?;
        if unknown > 0 {
            warn!(
                notifications = unknown,
                "dropped undelivered notifications of receivers no longer configured"
            );
        }
        let engine = Arc::new(Mutex::new(AlertEngine::restore(config.clone(), snapshot)));
        if restored > 0 {
            info!(alerts = restored, "alert state restored");
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("pipewarden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AlertError::HttpClient(e.to_string()))?;
        let health = Arc::new(DeliveryHealth::new(&config.receivers));
        let delivery = Delivery {
            store: store.clone(),
            client,
            notifiers: config.receivers.iter().map(Notifier::new).collect(),
            external_url: config.external_url.clone(),
            config: config.delivery.clone(),
            telemetry: telemetry.clone(),
            health: Arc::clone(&health),
            clock: clock.clone(),
        };
        let handle = AlertHandle {
            engine: Arc::clone(&engine),
            store: store.clone(),
            clock: clock.clone(),
            health,
            running: Arc::new(AtomicBool::new(false)),
            store_ok: Arc::new(AtomicBool::new(true)),
        };
        let (tx, rx) = mpsc::channel(config.input_queue_capacity);
        let (wake_tx, wake_rx) = mpsc::channel(1);
        let input = AlertInput {
            tx,
            filter: Arc::new(InputFilter::new(&config)),
            telemetry: telemetry.clone(),
        };
        Ok((
            Self {
                config,
                engine,
                store,
                input: rx,
                telemetry,
                clock,
                handle,
                delivery,
                wake_tx,
                wake_rx,
                elasticsearch: None,
            },
            input,
        ))
    }

    /// Mirrors the alert history (state changes and notifications) to the Elasticsearch sink
    /// (`logs-pipewarden.alert-*`) once it is written to the local store.
    pub fn with_elasticsearch(mut self, input: SinkInput) -> Self {
        self.elasticsearch = Some(input);
        self
    }

    /// Returns a handle for the API and CLI helpers.
    pub fn handle(&self) -> AlertHandle {
        self.handle.clone()
    }

    /// Evaluates every `evaluation_interval` and takes inputs until `shutdown` is cancelled;
    /// then takes the inputs already queued, writes the state and stops the delivery task
    /// (undelivered notifications stay in the outbox for the next start).
    ///
    /// # Errors
    /// None so far: store failures are counted and retried at the next evaluation.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AlertError> {
        let Self {
            config,
            engine,
            store,
            mut input,
            telemetry,
            clock,
            handle,
            delivery,
            wake_tx,
            wake_rx,
            elasticsearch,
        } = self;
        let delivery_stop = CancellationToken::new();
        let delivery_task = tokio::spawn(delivery.run(wake_rx, delivery_stop.clone()));
        let mut state = LoopState {
            engine,
            store,
            telemetry,
            clock,
            wake: wake_tx,
            pending: Persist::default(),
            retry: false,
            last_rules_save_ms: None,
            last_gc_ms: None,
            untracked_seen: 0,
            retention_ms: config.history_retention_ms,
            store_ok: Arc::clone(&handle.store_ok),
            elasticsearch,
        };
        handle.running.store(true, Ordering::Relaxed);
        info!(
            rules = config.rules.len(),
            receivers = config.receivers.len(),
            "alert service started"
        );
        let mut tick = tokio::time::interval(config.evaluation_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut inputs_open = true;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = tick.tick() => state.evaluate().await,
                batch = input.recv(), if inputs_open => match batch {
                    Some(events) => state.observe(&events),
                    None => inputs_open = false,
                },
            }
        }
        input.close();
        while let Ok(events) = input.try_recv() {
            state.observe(&events);
        }
        let now = state.clock.now_ms();
        state.persist(now, true).await;
        handle.running.store(false, Ordering::Relaxed);
        delivery_stop.cancel();
        if let Err(err) = delivery_task.await {
            warn!(error = %err, "alert delivery task failed");
        }
        info!("alert service stopped");
        Ok(())
    }
}

/// One history event as an Elasticsearch document (id: fingerprint, event and time).
fn history_document(event: &HistoryEvent) -> EsDocument {
    let id = if event.fingerprint.is_empty() {
        event.rule.as_str()
    } else {
        event.fingerprint.as_str()
    };
    let severity = event.labels.get("severity").map_or("", String::as_str);
    let message = event
        .detail
        .get("summary")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(&event.event);
    EsDocument::alert(
        id,
        &event.rule,
        &event.event,
        severity,
        event.timestamp_ms,
        message,
        &event.labels,
    )
}

struct LoopState {
    /// Where the history is mirrored, when the Elasticsearch sink is on.
    elasticsearch: Option<SinkInput>,
    engine: Arc<Mutex<AlertEngine>>,
    store: AlertStore,
    telemetry: AlertTelemetry,
    clock: Clock,
    wake: mpsc::Sender<()>,
    /// History and notifications not yet written (a failed write is retried).
    pending: Persist,
    retry: bool,
    last_rules_save_ms: Option<i64>,
    last_gc_ms: Option<i64>,
    untracked_seen: u64,
    retention_ms: i64,
    store_ok: Arc<AtomicBool>,
}

impl LoopState {
    fn observe(&mut self, events: &[AlertEvent]) {
        let mut engine = lock(&self.engine);
        for event in events {
            engine.observe(event);
            self.telemetry
                .inputs
                .get_or_create(&KindLabel {
                    kind: event.kind().to_owned(),
                })
                .inc();
        }
    }

    async fn evaluate(&mut self) {
        let now = self.clock.now_ms();
        let gc_due = self
            .last_gc_ms
            .is_none_or(|t| now.saturating_sub(t) >= GC_INTERVAL_MS);
        let cutoff = now.saturating_sub(self.retention_ms);
        {
            let mut engine = lock(&self.engine);
            if gc_due {
                engine.gc_silences(cutoff);
            }
            let notifications = engine.evaluate(now);
            self.telemetry.evaluations.inc();
            self.telemetry
                .notifications
                .inc_by(notifications.len() as u64);
            let untracked = engine.untracked_total();
            self.telemetry
                .untracked
                .inc_by(untracked.saturating_sub(self.untracked_seen));
            self.untracked_seen = untracked;
            let alerts = engine.alerts();
            let count = |f: &dyn Fn(&Alert) -> bool| alerts.iter().filter(|a| f(a)).count() as i64;
            for (status, n) in [
                ("pending", count(&|a| a.status == AlertStatus::Pending)),
                (
                    "firing",
                    count(&|a| a.status == AlertStatus::Firing && !a.is_muted()),
                ),
                (
                    "muted",
                    count(&|a| a.status == AlertStatus::Firing && a.is_muted()),
                ),
            ] {
                self.telemetry
                    .alerts
                    .get_or_create(&StatusLabel {
                        status: status.to_owned(),
                    })
                    .set(n);
            }
            self.pending.notifications.extend(notifications);
        }
        self.persist(now, false).await;
        if gc_due {
            self.last_gc_ms = Some(now);
            if let Err(err) = self.store.blocking(move |s| s.gc(cutoff)).await {
                self.telemetry.store_errors.inc();
                warn!(error = %err, "cannot delete old alert history");
            }
        }
    }

    async fn persist(&mut self, now: i64, force_rules: bool) {
        let (snapshot, with_rules) = {
            let mut engine = lock(&self.engine);
            self.pending.history.extend(engine.take_history());
            let dirty = engine.take_dirty() || self.retry;
            let rules_due = force_rules
                || self
                    .last_rules_save_ms
                    .is_none_or(|t| now.saturating_sub(t) >= RULE_STATE_SAVE_MS);
            if !dirty
                && !rules_due
                && self.pending.history.is_empty()
                && self.pending.notifications.is_empty()
            {
                return;
            }
            let with_rules = rules_due || dirty;
            (engine.snapshot(with_rules), with_rules)
        };
        let persist = Persist {
            snapshot,
            history: std::mem::take(&mut self.pending.history),
            notifications: std::mem::take(&mut self.pending.notifications),
            now_ms: now,
        };
        let has_notifications = !persist.notifications.is_empty();
        let result = self
            .store
            .blocking(move |s| {
                let result = s.persist(&persist);
                Ok((persist, result))
            })
            .await;
        match result {
            Ok((persist, Ok(()))) => {
                if let Some(es) = &self.elasticsearch
                    && let Err(err) = es
                        .send(persist.history.iter().map(history_document).collect())
                        .await
                {
                    warn!(error = %err, "elasticsearch spool refused alert history");
                }
                self.retry = false;
                self.store_ok.store(true, Ordering::Relaxed);
                if with_rules {
                    self.last_rules_save_ms = Some(now);
                }
                if has_notifications {
                    // A full channel already holds a wake-up: the delivery task will look.
                    let _ = self.wake.try_send(());
                }
            }
            Ok((persist, Err(err))) => {
                self.retry = true;
                self.store_ok.store(false, Ordering::Relaxed);
                self.telemetry.store_errors.inc();
                warn!(error = %err, "cannot write alert state; retrying at the next evaluation");
                let mut history = persist.history;
                history.append(&mut self.pending.history);
                self.pending.history = history;
                let mut notifications = persist.notifications;
                notifications.append(&mut self.pending.notifications);
                self.pending.notifications = notifications;
                for (what, excess) in [
                    (
                        "notifications",
                        self.pending
                            .notifications
                            .len()
                            .saturating_sub(MAX_UNPERSISTED),
                    ),
                    (
                        "history events",
                        self.pending.history.len().saturating_sub(MAX_UNPERSISTED),
                    ),
                ] {
                    if excess > 0 {
                        warn!(
                            what,
                            dropped = excess,
                            "alert store unavailable; dropping the oldest"
                        );
                    }
                }
                let excess = self
                    .pending
                    .notifications
                    .len()
                    .saturating_sub(MAX_UNPERSISTED);
                self.pending.notifications.drain(..excess);
                let excess = self.pending.history.len().saturating_sub(MAX_UNPERSISTED);
                self.pending.history.drain(..excess);
            }
            Err(err) => {
                self.retry = true;
                self.store_ok.store(false, Ordering::Relaxed);
                self.telemetry.store_errors.inc();
                warn!(error = %err, "alert state write task failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc as StdArc;

    use pipewarden_collector::{Series, SeriesPoint};

    use super::*;
    use crate::alert::AlertConfig;

    fn input(rules: &str) -> (AlertInput, mpsc::Receiver<Vec<AlertEvent>>) {
        let config = toml::from_str::<AlertConfig>(rules)
            .unwrap()
            .validate()
            .unwrap();
        let (tx, rx) = mpsc::channel(4);
        let input = AlertInput {
            tx,
            filter: Arc::new(InputFilter::new(&config)),
            telemetry: AlertTelemetry::default(),
        };
        (input, rx)
    }

    fn batch() -> StoreBatch {
        let point = |name: &str| SeriesPoint {
            series: StdArc::new(Series::new("svc", name, Vec::new())),
            timestamp_ms: 1,
            value: 1.0,
            start_ms: 0,
        };
        let mut batch = StoreBatch::default();
        batch.signals.points = vec![point("span.error_ratio"), point("queue.depth")];
        batch.scores = vec![0.0, 0.0];
        batch
    }

    #[test]
    fn only_points_some_rule_reads_are_sent() {
        let (none, _rx) = input("");
        assert!(none.events_from_store_batch(&batch()).is_empty());
        let (by_name, _rx) = input(crate::alert::tests::THRESHOLD);
        let events = by_name.events_from_store_batch(&batch());
        let names: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                AlertEvent::Point(p) => Some(p.name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["span.error_ratio"]);
    }
}
