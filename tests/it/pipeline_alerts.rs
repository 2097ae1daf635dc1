//! Alerting through the whole process: OTLP logs in, a threshold rule on the derived
//! `log.count` series fires, and a real webhook receiver gets an Alertmanager-style page.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::routing::post;
use serde_json::Value;

use crate::harness::{DEADLINE, Pipewarden, eventually, otlp};

#[tokio::test]
async fn a_threshold_rule_on_a_derived_series_pages_the_webhook() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&received);
    let receiver = axum::Router::new().route(
        "/hook",
        post(move |Json(body): Json<Value>| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let config = format!(
        r#"
[collector.signals]
window = "300ms"

[alert]
evaluation_interval = "100ms"

[[alert.rules]]
kind = "threshold"
name = "TooManyLogs"
signal = "log.count"
op = ">"
value = 5.0
for = "0s"
summary = "more than 5 log records in a window"

[alert.route]
group_by = ["alertname"]
group_wait = "0s"

[[alert.receivers]]
kind = "webhook"
name = "ops"
url = "{hook}"
"#
    );
    let pipewarden = Pipewarden::start_with_config(Some(&config), &[]).await;
    let body = otlp::encode(&otlp::logs_request("alerting", "ingest", 20));
    let answer = otlp::post(
        &otlp::http_client(),
        &pipewarden.http_endpoint(),
        "/v1/logs",
        "application/x-protobuf",
        None,
        body,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());

    let page = eventually("a firing page at the webhook", DEADLINE, || async {
        let pages = received.lock().unwrap().clone();
        pages
            .into_iter()
            .find(|p| p["status"] == "firing")
            .ok_or_else(|| "no firing page yet".to_owned())
    })
    .await;
    assert_eq!(page["version"], "4", "{page}");
    let alert = &page["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "TooManyLogs", "{page}");
    assert_eq!(alert["labels"]["stage"], "alerting/ingest", "{page}");

    let alerts = pipewarden.get_json("/api/v1/alerting/alerts").await;
    let listed = alerts["alerts"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|a| a["labels"]["alertname"] == "TooManyLogs"),
        "{alerts}"
    );

    // The web UI lists it too (rendered by its script in headless Chromium).
    let url = pipewarden.web_url("/");
    let dom = tokio::task::spawn_blocking(move || crate::ui::rendered_dom(&url))
        .await
        .unwrap();
    assert!(
        dom.contains("<td>TooManyLogs</td>"),
        "alert row missing:\n{dom}"
    );
}
