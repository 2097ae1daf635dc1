//! The Elasticsearch sink through the whole process, against the OpenSearch-compatible server:
//! stage windows reach dated indices with their fields, and after a SIGKILL mid-stream and a
//! restart every window the local store holds is in the cluster exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{DEADLINE, Osmem, Pipewarden, eventually, otlp, query_escape};

const STAGE: &str = "es-e2e/enrich";

async fn send_spans(pipewarden: &Pipewarden, seed: u64) {
    let request = otlp::trace_request("es-e2e", "enrich", seed, 10, 0, 5, 20);
    let answer = otlp::post(
        &otlp::http_client(),
        &pipewarden.http_endpoint(),
        "/v1/traces",
        "application/x-protobuf",
        None,
        otlp::encode(&request),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

/// Stage documents in the cluster: window start -> number of documents with it.
async fn cluster_windows(url: &str) -> Result<BTreeMap<String, u64>, String> {
    let client = reqwest::Client::new();
    let pattern = "pipewarden-stage-e2e-*";
    client
        .post(format!("{url}/{pattern}/_refresh"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body: Value = client
        .get(format!("{url}/{pattern}/_search?size=10000"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let hits = body["hits"]["hits"]
        .as_array()
        .ok_or_else(|| format!("no hits: {body}"))?;
    let mut windows = BTreeMap::new();
    for hit in hits {
        let source = &hit["_source"];
        assert_eq!(source["pipewarden"]["stage"], STAGE, "{hit}");
        assert!(source["@timestamp"].is_string(), "{hit}");
        let start = source["pipewarden"]["window"]["start"]
            .as_str()
            .ok_or_else(|| format!("no window.start: {hit}"))?
            .to_owned();
        *windows.entry(start).or_insert(0) += 1;
    }
    Ok(windows)
}

fn rfc3339_millis(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_windows_survive_sigkill_and_reach_the_cluster_once() {
    let osmem = Osmem::start().await;
    osmem.wait_ready(DEADLINE).await;
    let config = format!(
        r#"
[collector.signals]
window = "200ms"

[sink.elasticsearch]
enabled = true
urls = ["{}"]
mode = "index"
namespace = "e2e"

[sink.elasticsearch.batch]
flush_interval = "100ms"

[alert]
evaluation_interval = "100ms"

[[alert.rules]]
kind = "threshold"
name = "SpansSeen"
signal = "span.count"
op = ">"
value = 0.0
for = "0s"
"#,
        osmem.url()
    );
    let mut pipewarden = Pipewarden::start_with_config(Some(&config), &[]).await;
    for seed in 0..5 {
        send_spans(&pipewarden, seed).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eventually("documents in the cluster", DEADLINE, || async {
        let windows = cluster_windows(osmem.url()).await?;
        if windows.len() >= 2 {
            Ok(())
        } else {
            Err(format!("{windows:?}"))
        }
    })
    .await;
    // Crash mid-stream: a request answered, its window maybe not yet written.
    send_spans(&pipewarden, 5).await;
    pipewarden.kill();
    pipewarden.restart().await;
    for seed in 6..9 {
        send_spans(&pipewarden, seed).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    pipewarden.terminate();
    assert!(pipewarden.wait_exit(DEADLINE).await.success());
    pipewarden.restart().await;

    let path = format!("/api/v1/stages/windows?stage={}", query_escape(STAGE));
    let stored = pipewarden.get_json(&path).await;
    let stored: Vec<String> = stored["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|w| rfc3339_millis(w["window_start_ms"].as_i64().expect("start")))
        .collect();
    assert!(stored.len() >= 4, "{stored:?}");
    let windows = eventually("every stored window in the cluster", DEADLINE, || async {
        let windows = cluster_windows(osmem.url()).await?;
        match stored.iter().find(|s| !windows.contains_key(*s)) {
            None => Ok(windows),
            Some(missing) => Err(format!("{missing} missing from {windows:?}")),
        }
    })
    .await;
    for (start, copies) in &windows {
        assert_eq!(
            *copies, 1,
            "window {start} is in the cluster {copies} times"
        );
    }
}
