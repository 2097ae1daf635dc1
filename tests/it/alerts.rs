//! Alert notifications to real HTTP receivers: an axum server inside the test on 127.0.0.1:0
//! records every request it gets (and can answer 503, hang, or not listen at all). The alert
//! service runs on the wall clock with short intervals; the time-exact lifecycle, grouping,
//! inhibition, silence and burn-rate cases are unit tests in `src/alert/`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use pipewarden::alert::{
    AlertConfig, AlertEvent, AlertHandle, AlertInput, AlertService, AlertStatus, AlertTelemetry,
    PointInput, ValidAlertConfig,
};
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    notification_id: String,
    body: Value,
    accepted: bool,
}

#[derive(Default)]
struct RecorderState {
    received: Mutex<Vec<Received>>,
    down: AtomicBool,
    hang: AtomicBool,
    attempts: AtomicUsize,
}

/// An HTTP receiver recording what it gets.
#[derive(Clone)]
struct Recorder {
    state: Arc<RecorderState>,
    addr: SocketAddr,
}

async fn record(
    State(state): State<Arc<RecorderState>>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    state.attempts.fetch_add(1, Ordering::SeqCst);
    if state.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let accepted = !state.down.load(Ordering::SeqCst);
    let notification_id = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    state.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        notification_id,
        body,
        accepted,
    });
    if accepted {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

impl Recorder {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, Arc::default())
    }

    /// Starts on a given address (a port that refused connections until now).
    async fn start_on(addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(listener, Arc::default())
    }

    fn serve(listener: tokio::net::TcpListener, state: Arc<RecorderState>) -> Self {
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/{*path}", post(record))
            .with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { state, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn accepted(&self) -> Vec<Received> {
        let received = self.state.received.lock().unwrap();
        received.iter().filter(|r| r.accepted).cloned().collect()
    }

    fn attempts(&self) -> usize {
        self.state.attempts.load(Ordering::SeqCst)
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn config(receivers: &str) -> ValidAlertConfig {
    let text = format!(
        r#"
        evaluation_interval = "50ms"
        resolve_hold_down = "0s"
        [[rules]]
        kind = "threshold"
        name = "HighErrorRatio"
        signal = "span.error_ratio"
        op = ">"
        value = 0.05
        [route]
        group_by = ["alertname", "stage"]
        group_wait = "0s"
        group_interval = "1h"
        repeat_interval = "4h"
        [delivery]
        initial_backoff = "50ms"
        max_backoff = "200ms"
        attempt_timeout = "300ms"
        {receivers}
        "#
    );
    toml::from_str::<AlertConfig>(&text)
        .unwrap()
        .validate()
        .unwrap()
}

fn webhook(url: &str) -> String {
    format!("[[receivers]]\nkind = \"webhook\"\nname = \"ops\"\nurl = \"{url}\"\n")
}

fn breach(stage: &str) -> Vec<AlertEvent> {
    vec![AlertEvent::Point(PointInput {
        key: pipewarden_collector::series_key(stage, "span.error_ratio", &[]),
        stage: stage.to_owned(),
        name: "span.error_ratio".to_owned(),
        attributes: vec![],
        timestamp_ms: now_ms(),
        value: 0.4,
        score: None,
    })]
}

struct Running {
    handle: AlertHandle,
    input: AlertInput,
    registry: Registry,
    stop: CancellationToken,
    task: JoinHandle<Result<(), pipewarden::alert::AlertError>>,
}

impl Running {
    fn start(config: ValidAlertConfig, dir: &std::path::Path) -> Self {
        let mut registry = Registry::default();
        let telemetry = AlertTelemetry::register(&mut registry);
        let (service, input) = AlertService::build(config, dir, telemetry).unwrap();
        let handle = service.handle();
        let stop = CancellationToken::new();
        let task = tokio::spawn(service.run(stop.clone()));
        Self {
            handle,
            input,
            registry,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn receiver_down_then_up_gets_the_page_exactly_once() {
    let recorder = Recorder::start().await;
    recorder.state.down.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let service = Running::start(config(&webhook(&recorder.url("/hook"))), dir.path());
    service.input.send(breach("svc/a")).await.unwrap();

    eventually("three failed attempts", || recorder.attempts() >= 3).await;
    assert!(recorder.accepted().is_empty());
    let health = service.handle.health();
    assert_eq!(health.status(), "degraded");
    assert!(health.receivers[0].failing);
    let metrics = service.metrics();
    assert!(
        metrics.contains("pipewarden_alert_receiver_up{receiver=\"ops\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "pipewarden_alert_notifications_send_failed_total{receiver=\"ops\",reason=\"status_5xx\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("pipewarden_alert_outbox_pending{receiver=\"ops\"} 1"),
        "{metrics}"
    );
    // Evaluation goes on while the receiver fails: a second stage fires right away.
    service.input.send(breach("svc/b")).await.unwrap();
    eventually("the second alert fires", || {
        service
            .handle
            .alerts()
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .count()
            == 2
    })
    .await;

    recorder.state.down.store(false, Ordering::SeqCst);
    eventually("both pages delivered", || recorder.accepted().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted = recorder.accepted();
    assert_eq!(accepted.len(), 2, "each page exactly once: {accepted:?}");
    // In order: the first stage's page was retried until it went through.
    let stages: Vec<&str> = accepted
        .iter()
        .map(|r| r.body["groupLabels"]["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["svc/a", "svc/b"]);
    let first = &accepted[0];
    assert_eq!(first.path, "/hook");
    assert_eq!(first.body["version"], "4");
    assert_eq!(first.body["status"], "firing");
    assert_eq!(first.body["receiver"], "ops");
    assert_eq!(
        first.body["alerts"][0]["labels"]["alertname"],
        "HighErrorRatio"
    );
    assert!(first.notification_id.starts_with("g-"), "{first:?}");
    assert_ne!(first.notification_id, accepted[1].notification_id);

    assert_eq!(service.handle.health().status(), "ready");
    let metrics = service.metrics();
    assert!(
        metrics.contains("pipewarden_alert_receiver_up{receiver=\"ops\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pipewarden_alert_notifications_sent_total{receiver=\"ops\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pipewarden_alert_outbox_pending{receiver=\"ops\"} 0"),
        "{metrics}"
    );
    service.stop().await;
}

#[tokio::test]
async fn receiver_not_listening_then_listening_gets_the_page_once() {
    // A port nobody listens on (yet): connections are refused.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/hook");
    let service = Running::start(config(&webhook(&url)), dir.path());
    service.input.send(breach("svc/a")).await.unwrap();
    eventually("a refused connection is counted", || {
        service.metrics().contains("reason=\"connect\"")
    })
    .await;
    assert_eq!(service.handle.health().status(), "degraded");

    let recorder = Recorder::start_on(addr).await;
    eventually("the page arrives", || recorder.accepted().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(recorder.accepted().len(), 1);
    service.stop().await;
}

#[tokio::test]
async fn a_hanging_receiver_times_out_and_never_blocks_evaluation() {
    let recorder = Recorder::start().await;
    recorder.state.hang.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let service = Running::start(config(&webhook(&recorder.url("/hook"))), dir.path());
    service.input.send(breach("svc/a")).await.unwrap();
    eventually("an attempt timed out", || {
        service.metrics().contains("reason=\"timeout\"")
    })
    .await;
    for stage in ["svc/b", "svc/c", "svc/d"] {
        service.input.send(breach(stage)).await.unwrap();
    }
    eventually("every alert fires", || service.handle.alerts().len() == 4).await;
    recorder.state.hang.store(false, Ordering::SeqCst);
    eventually("all four pages arrive", || recorder.accepted().len() == 4).await;
    service.stop().await;
}

#[tokio::test]
async fn a_restart_in_the_middle_neither_duplicates_nor_forgets() {
    let recorder = Recorder::start().await;
    recorder.state.down.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let config = config(&webhook(&recorder.url("/hook")));

    // First run: the alert fires, its page cannot be delivered yet.
    let first = Running::start(config.clone(), dir.path());
    first.input.send(breach("svc/a")).await.unwrap();
    eventually("a failed attempt", || recorder.attempts() >= 1).await;
    let before = first.handle.alerts();
    assert_eq!(before[0].status, AlertStatus::Firing);
    first.stop().await;

    // Second run, receiver back: the page waiting in the outbox goes out once, and the alert
    // is still firing with the same start (no second page for it).
    recorder.state.down.store(false, Ordering::SeqCst);
    let second = Running::start(config.clone(), dir.path());
    assert_eq!(
        second.handle.alerts()[0].starts_at_ms,
        before[0].starts_at_ms
    );
    eventually("the page arrives", || recorder.accepted().len() == 1).await;
    second.input.send(breach("svc/a")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alerts = second.handle.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].status, AlertStatus::Firing);
    assert_eq!(alerts[0].starts_at_ms, before[0].starts_at_ms);
    assert_eq!(recorder.accepted().len(), 1);
    let id = recorder.accepted()[0].notification_id.clone();
    second.stop().await;

    // Third run: what was delivered is never sent again.
    let third = Running::start(config, dir.path());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(third.handle.alerts()[0].status, AlertStatus::Firing);
    let accepted = recorder.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(accepted[0].notification_id, id);
    let history = third.handle.history(None, None, None, 100).await.unwrap();
    let notified = history.iter().filter(|h| h.event == "notified").count();
    assert_eq!(notified, 1, "{history:?}");
    third.stop().await;
}

#[tokio::test]
async fn slack_and_alertmanager_receivers_get_their_formats() {
    let recorder = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let receivers = format!(
        "[[receivers]]\nkind = \"slack\"\nname = \"chat\"\nurl = \"{}\"\n\
         [[receivers]]\nkind = \"alertmanager\"\nname = \"am\"\nurl = \"{}\"\n\
         resend_interval = \"200ms\"\n",
        recorder.url("/services/T/B/X"),
        recorder.url("/am"),
    );
    let service = Running::start(config(&receivers), dir.path());
    service.input.send(breach("svc/a")).await.unwrap();
    eventually("a Slack message and two Alertmanager posts", || {
        let accepted = recorder.accepted();
        accepted.iter().any(|r| r.path == "/services/T/B/X")
            && accepted
                .iter()
                .filter(|r| r.path == "/am/api/v2/alerts")
                .count()
                >= 2
    })
    .await;
    let accepted = recorder.accepted();
    let slack: Vec<&Received> = accepted
        .iter()
        .filter(|r| r.path == "/services/T/B/X")
        .collect();
    assert_eq!(slack.len(), 1);
    let text = slack[0].body["text"].as_str().unwrap();
    assert!(
        text.starts_with("[FIRING:1] HighErrorRatio svc/a"),
        "{text}"
    );
    assert!(
        text.contains("span.error_ratio of svc/a is 0.4 (> 0.05)"),
        "{text}"
    );
    let am = accepted
        .iter()
        .find(|r| r.path == "/am/api/v2/alerts")
        .unwrap();
    let alert = &am.body[0];
    assert_eq!(alert["labels"]["alertname"], "HighErrorRatio");
    assert_eq!(alert["labels"]["stage"], "svc/a");
    assert!(alert["startsAt"].as_str().unwrap().ends_with('Z'));
    assert!(alert["endsAt"].as_str().unwrap() > alert["startsAt"].as_str().unwrap());
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .contains("/?series=")
    );
    service.stop().await;
}
