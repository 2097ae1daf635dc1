//! The delivery task: takes undelivered notifications from the persisted outbox and sends
//! them, one receiver lane at a time in order, each lane independent of the others.
//!
//! A lane holds at most `queue_capacity` rows in memory; the rest wait in the outbox and are
//! loaded as the lane empties or when the evaluation loop signals new rows. An attempt that
//! fails with a retriable error is retried after an exponential backoff with jitter (the
//! lane's later rows wait, so a receiver never sees a resolution before its firing); a
//! refused request (4xx) or a row older than `max_age` is dropped and counted. Delivered rows
//! are marked in the outbox and never sent again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Notifier, SendError};
use crate::alert::config::{DeliveryConfig, ReceiverConfig, millis};
use crate::alert::service::Clock;
use crate::alert::store::{AlertStore, OutboxRow};
use crate::alert::telemetry::AlertTelemetry;

/// Delivery state of one receiver, as `/readyz` and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiverHealth {
    /// Receiver name.
    pub name: String,
    /// `webhook`, `slack` or `alertmanager`.
    pub kind: String,
    /// True when the last attempt failed and notifications wait.
    pub failing: bool,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Last error, when failing.
    pub last_error: Option<String>,
    /// Last delivery, Unix ms.
    pub last_success_ms: Option<i64>,
    /// Undelivered notifications.
    pub pending: u64,
}

/// Health of every receiver, shared with the handle.
#[derive(Debug, Default)]
pub(crate) struct DeliveryHealth {
    receivers: Mutex<BTreeMap<String, ReceiverHealth>>,
}

impl DeliveryHealth {
    pub(crate) fn new(receivers: &[ReceiverConfig]) -> Self {
        let map = receivers
            .iter()
            .map(|r| {
                let kind = match r {
                    ReceiverConfig::Webhook(_) => "webhook",
                    ReceiverConfig::Slack(_) => "slack",
                    ReceiverConfig::Alertmanager(_) => "alertmanager",
                };
                (
                    r.name().to_owned(),
                    ReceiverHealth {
                        name: r.name().to_owned(),
                        kind: kind.to_owned(),
                        failing: false,
                        consecutive_failures: 0,
                        last_error: None,
                        last_success_ms: None,
                        pending: 0,
                    },
                )
            })
            .collect();
        Self {
            receivers: Mutex::new(map),
        }
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut ReceiverHealth)) {
        let mut map = self.receivers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = map.get_mut(name) {
            f(h);
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<ReceiverHealth> {
        let map = self.receivers.lock().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }
}

struct Lane {
    notifier: Arc<Notifier>,
    queue: VecDeque<OutboxRow>,
    last_seq: i64,
    next_attempt: Option<Instant>,
    in_flight: bool,
}

pub(crate) struct Delivery {
    pub(crate) store: AlertStore,
    pub(crate) client: reqwest::Client,
    pub(crate) notifiers: Vec<Notifier>,
    pub(crate) external_url: String,
    pub(crate) config: DeliveryConfig,
    pub(crate) telemetry: AlertTelemetry,
    pub(crate) health: Arc<DeliveryHealth>,
    pub(crate) clock: Clock,
}

type AttemptResult = (usize, i64, Result<(), SendError>);

impl Delivery {
    /// Runs until `stop` is cancelled; in-flight attempts then get one attempt timeout to
    /// finish. Rows not delivered stay in the outbox for the next start.
    pub(crate) async fn run(self, mut wake: mpsc::Receiver<()>, stop: CancellationToken) {
        let mut lanes: Vec<Lane> = self
            .notifiers
            .iter()
            .map(|n| Lane {
                notifier: Arc::new(n.clone()),
                queue: VecDeque::new(),
                last_seq: 0,
                next_attempt: None,
                in_flight: false,
            })
            .collect();
        if lanes.is_empty() {
            stop.cancelled().await;
            return;
        }
        info!(receivers = lanes.len(), "alert delivery started");
        for lane in &mut lanes {
            self.refill(lane).await;
        }
        self.update_backlog().await;
        let mut attempts: JoinSet<AttemptResult> = JoinSet::new();
        let mut wake_open = true;
        loop {
            self.start_due(&mut lanes, &mut attempts).await;
            let next_timer = lanes
                .iter()
                .filter(|l| !l.in_flight && !l.queue.is_empty())
                .filter_map(|l| l.next_attempt)
                .min();
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(joined) = attempts.join_next(), if !attempts.is_empty() => {
                    if let Ok(result) = joined {
                        self.finish(&mut lanes, result).await;
                    }
                }
                message = wake.recv(), if wake_open => match message {
                    Some(()) => {
                        for lane in &mut lanes {
                            self.refill(lane).await;
                        }
                        self.update_backlog().await;
                    }
                    None => wake_open = false,
                },
                () = sleep_until_opt(next_timer), if next_timer.is_some() => {}
            }
        }
        let drain = async {
            while let Some(joined) = attempts.join_next().await {
                if let Ok(result) = joined {
                    self.finish(&mut lanes, result).await;
                }
            }
        };
        if tokio::time::timeout(self.config.attempt_timeout, drain)
            .await
            .is_err()
        {
            attempts.abort_all();
        }
        info!("alert delivery stopped");
    }

    async fn refill(&self, lane: &mut Lane) {
        let room = self.config.queue_capacity.saturating_sub(lane.queue.len());
        if room == 0 {
            return;
        }
        let receiver = lane.notifier.name.clone();
        let after = lane.last_seq;
        match self
            .store
            .blocking(move |s| s.pending_outbox(&receiver, after, room))
            .await
        {
            Ok(rows) => {
                for row in rows {
                    lane.last_seq = lane.last_seq.max(row.seq);
                    lane.queue.push_back(row);
                }
            }
            Err(err) => {
                self.telemetry.store_errors.inc();
                warn!(error = %err, receiver = %lane.notifier.name, "cannot read the alert outbox");
            }
        }
    }

    async fn update_backlog(&self) {
        if let Ok(backlog) = self.store.blocking(|s| s.outbox_backlog()).await {
            for n in &self.notifiers {
                let pending = backlog.get(&n.name).copied().unwrap_or(0);
                self.telemetry
                    .outbox_pending
                    .get_or_create(&self.telemetry.receiver(&n.name))
                    .set(i64::try_from(pending).unwrap_or(i64::MAX));
                self.health.update(&n.name, |h| h.pending = pending);
            }
        }
    }

    async fn start_due(&self, lanes: &mut [Lane], attempts: &mut JoinSet<AttemptResult>) {
        let now = Instant::now();
        for (index, lane) in lanes.iter_mut().enumerate() {
            while !lane.in_flight && lane.next_attempt.is_none_or(|t| t <= now) {
                let Some(row) = lane.queue.front() else {
                    break;
                };
                let seq = row.seq;
                let age_ms = self.clock.now_ms().saturating_sub(row.created_ms);
                if age_ms > millis(self.config.max_age) {
                    self.drop_row(lane, seq, "expired", "older than delivery.max_age")
                        .await;
                    continue;
                }
                let Some(body) = lane.notifier.body(&row.notification, &self.external_url) else {
                    // Nothing for this receiver (resolved only, send_resolved = false).
                    self.mark_done(lane, seq, row.attempts).await;
                    continue;
                };
                let notifier = Arc::clone(&lane.notifier);
                let client = self.client.clone();
                let id = row.notification.id.clone();
                let timeout = self.config.attempt_timeout;
                lane.in_flight = true;
                attempts.spawn(async move {
                    let result = notifier.send(&client, &id, &body, timeout).await;
                    (index, seq, result)
                });
            }
        }
    }

    async fn finish(&self, lanes: &mut [Lane], (index, seq, result): AttemptResult) {
        let Some(lane) = lanes.get_mut(index) else {
            return;
        };
        lane.in_flight = false;
        let Some(row) = lane.queue.front_mut() else {
            return;
        };
        if row.seq != seq {
            return;
        }
        let name = lane.notifier.name.clone();
        row.attempts = row.attempts.saturating_add(1);
        let attempts = row.attempts;
        match result {
            Ok(()) => {
                self.telemetry
                    .sent
                    .get_or_create(&self.telemetry.receiver(&name))
                    .inc();
                let now_ms = self.clock.now_ms();
                self.telemetry
                    .receiver_up
                    .get_or_create(&self.telemetry.receiver(&name))
                    .set(1);
                self.telemetry
                    .receiver_last_success
                    .get_or_create(&self.telemetry.receiver(&name))
                    .set(now_ms / 1000);
                let recovered = {
                    let mut was_failing = false;
                    self.health.update(&name, |h| {
                        was_failing = h.failing;
                        h.failing = false;
                        h.consecutive_failures = 0;
                        h.last_error = None;
                        h.last_success_ms = Some(now_ms);
                    });
                    was_failing
                };
                if recovered {
                    info!(receiver = %name, "alert receiver recovered");
                }
                self.mark_done(lane, seq, attempts).await;
            }
            Err(err) if err.is_retriable() => {
                self.telemetry
                    .send_failed
                    .get_or_create(&self.telemetry.receiver_reason(&name, err.reason()))
                    .inc();
                self.telemetry
                    .receiver_up
                    .get_or_create(&self.telemetry.receiver(&name))
                    .set(0);
                let text = err.to_string();
                let mut first = false;
                self.health.update(&name, |h| {
                    first = !h.failing;
                    h.failing = true;
                    h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                    h.last_error = Some(text.clone());
                });
                if first {
                    warn!(receiver = %name, error = %err, "alert receiver failing; retrying with backoff");
                }
                let delay = backoff(&self.config, attempts, err.retry_after());
                lane.next_attempt = Some(Instant::now() + delay);
                let store_text = text.clone();
                if let Err(e) = self
                    .store
                    .blocking(move |s| s.mark_attempt_failed(seq, attempts, &store_text))
                    .await
                {
                    self.telemetry.store_errors.inc();
                    warn!(error = %e, "cannot record a delivery attempt");
                }
            }
            Err(err) => {
                self.telemetry
                    .send_failed
                    .get_or_create(&self.telemetry.receiver_reason(&name, err.reason()))
                    .inc();
                let text = err.to_string();
                self.health.update(&name, |h| {
                    h.failing = true;
                    h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                    h.last_error = Some(text.clone());
                });
                warn!(receiver = %name, error = %err, "alert receiver refused a notification; dropping it");
                self.drop_row(lane, seq, "rejected", &text).await;
            }
        }
    }

    async fn mark_done(&self, lane: &mut Lane, seq: i64, attempts: u32) {
        let now_ms = self.clock.now_ms();
        if let Err(err) = self
            .store
            .blocking(move |s| s.mark_delivered(seq, attempts, now_ms))
            .await
        {
            // Kept in memory as delivered: it would only be re-sent after a restart.
            self.telemetry.store_errors.inc();
            warn!(error = %err, "cannot mark a notification delivered");
        }
        lane.queue.pop_front();
        lane.next_attempt = None;
        if lane.queue.is_empty() {
            self.refill(lane).await;
        }
        self.update_backlog().await;
    }

    async fn drop_row(&self, lane: &mut Lane, seq: i64, reason: &'static str, error: &str) {
        let name = lane.notifier.name.clone();
        self.telemetry
            .dropped
            .get_or_create(&self.telemetry.receiver_reason(&name, reason))
            .inc();
        let error = error.to_owned();
        if let Err(err) = self
            .store
            .blocking(move |s| s.mark_dropped(seq, reason, &error))
            .await
        {
            self.telemetry.store_errors.inc();
            warn!(error = %err, "cannot mark a notification dropped");
        }
        lane.queue.pop_front();
        lane.next_attempt = None;
        if lane.queue.is_empty() {
            self.refill(lane).await;
        }
        self.update_backlog().await;
    }
}

/// Returns the delay before retry number `attempts` (1 = the first retry): the initial
/// backoff doubled per attempt, capped, with full jitter between half and all of it; at least
/// what the receiver asked for (capped too).
pub(crate) fn backoff(config: &DeliveryConfig, attempts: u32, asked: Option<Duration>) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let base = config
        .initial_backoff
        .saturating_mul(1u32 << exponent)
        .min(config.max_backoff);
    let half = base / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis().min(u128::from(u64::MAX)) as u64);
    let delay = half + Duration::from_millis(jitter);
    match asked {
        Some(asked) => delay.max(asked.min(config.max_backoff)),
        None => delay,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let config = DeliveryConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..DeliveryConfig::default()
        };
        for _ in 0..50 {
            let first = backoff(&config, 1, None);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let third = backoff(&config, 3, None);
            assert!(third >= Duration::from_secs(2) && third <= Duration::from_secs(4));
            let late = backoff(&config, 40, None);
            assert!(late >= Duration::from_secs(5) && late <= Duration::from_secs(10));
            let asked = backoff(&config, 1, Some(Duration::from_secs(7)));
            assert!(asked >= Duration::from_secs(7));
            let capped = backoff(&config, 1, Some(Duration::from_secs(700)));
            assert_eq!(capped, Duration::from_secs(10));
        }
    }
}
