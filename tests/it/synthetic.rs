//! Synthetic probes through a real mini pipeline: broker topic `in` -> relay stage (tests/harness/
//! relay.rs: delay, drop every Nth, duplicate every Mth, stop) -> topic `out`, with the relay
//! exporting a span of each probe trace to pipewarden's collector. Asserts exact loss and
//! duplicate counts, latency against the injected delay, per-stage latency from the relay's
//! spans, timeouts and the dead-man's switch when the relay stops, alerts, and the exit codes of
//! `pipewarden probe run --once`.

use std::time::Duration;

use serde_json::Value;

use crate::harness::relay::{Relay, RelayRules};
use crate::harness::{DEADLINE, Pipewarden, Tansu, eventually};
use crate::kafka_lag::create_topic;

/// Latency the relay adds.
const DELAY_MS: f64 = 200.0;
/// Allowed overhead over the injected delay (two Kafka hops on a busy 2-core machine).
const TOLERANCE_MS: f64 = 100.0;

fn probe_config(bootstrap: &str, interval: &str, timeout: &str) -> String {
    format!(
        r#"
[[synthetic.probes]]
name = "orders"
interval = "{interval}"
timeout = "{timeout}"
stages = ["relay"]
span_wait = "1s"
dead_man_intervals = 3

[synthetic.probes.inject.kafka]
bootstrap_servers = "{bootstrap}"
topic = "in"

[synthetic.probes.observe.kafka]
bootstrap_servers = "{bootstrap}"
topic = "out"
"#
    )
}

async fn results(pipewarden: &Pipewarden) -> Result<Vec<Value>, String> {
    let (status, body) = pipewarden
        .try_get_json("/api/v1/probes/results?probe=orders&limit=1000")
        .await?;
    if status != 200 {
        return Err(format!("status {status}: {body}"));
    }
    let mut list = body["results"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("no results array: {body}"))?;
    list.sort_by_key(|r| r["seq"].as_u64());
    Ok(list)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_probe_counts_losses_duplicates_latency_stages_and_dead_man() {
    let tansu = Tansu::start().await;
    let bootstrap = tansu.bootstrap_servers();
    create_topic(&bootstrap, "in", 1).await;
    create_topic(&bootstrap, "out", 1).await;
    // Drops records 3, 6, 9, 12; duplicates 4 and 8 (12 is dropped); stops after 12.
    let rules = RelayRules {
        delay: Duration::from_millis(DELAY_MS as u64),
        drop_every: 3,
        duplicate_every: 4,
        stop_after: 12,
    };
    let relay = Relay::start(&bootstrap, "in", "out", rules, "relay").await;
    let config = format!(
        "{}\n{}",
        probe_config(&bootstrap, "300ms", "1500ms"),
        r#"
[alert]
resolve_hold_down = "0s"
[[alert.rules]]
kind = "probe"
name = "OrdersProbeDown"
probe = "orders"
failures = 1
runs = 1
[[alert.rules]]
kind = "probe"
name = "OrdersDeadMan"
probe = "deadman/orders"
failures = 1
runs = 1
"#
    );
    let pipewarden = Pipewarden::start_with_config(Some(&config), &[]).await;
    relay.export_spans_to(&pipewarden.http_endpoint());

    // Every run up to 12 decided, and the relay's silence noticed by later runs.
    let list = eventually("probe runs past seq 15", DEADLINE, || async {
        let list = results(&pipewarden).await?;
        let decided = list
            .iter()
            .filter(|r| r["seq"].as_u64() <= Some(16))
            .count();
        if decided >= 16 {
            Ok(list)
        } else {
            Err(format!("{decided} of the first 16 runs decided"))
        }
    })
    .await;
    let by_seq = |seq: u64| {
        list.iter()
            .find(|r| r["seq"] == seq)
            .unwrap_or_else(|| panic!("no result for seq {seq}"))
    };
    let mut latencies = Vec::new();
    let mut steady_latencies = Vec::new();
    let mut stage_durations = Vec::new();
    for seq in 1..=12_u64 {
        let r = by_seq(seq);
        if seq % 3 == 0 {
            assert_eq!(r["status"], "timeout", "seq {seq}: {r}");
            assert_eq!(r["losses"], 1, "seq {seq}: {r}");
            assert_eq!(r["received"], 0, "seq {seq}: {r}");
        } else {
            assert_eq!(r["status"], "up", "seq {seq}: {r}");
            assert_eq!(r["losses"], 0, "seq {seq}: {r}");
            let latency = r["latency_ms"].as_f64().unwrap();
            latencies.push(latency);
            // Never faster than the relay's delay. The first runs may wait for the relay's own
            // start; from the third on, the latency is the delay plus two broker hops (their
            // median is checked below: one run may be slowed by a busy machine).
            assert!(
                latency >= DELAY_MS,
                "seq {seq}: latency {latency} ms for a {DELAY_MS} ms relay delay: {r}"
            );
            if seq >= 3 {
                steady_latencies.push(latency);
            }
            let stage = &r["stages"][0];
            assert_eq!(stage["stage"], "relay", "{r}");
            if stage["seen"] == true {
                let duration = stage["duration_ms"].as_f64().unwrap();
                stage_durations.push(duration);
                assert!(
                    (DELAY_MS..=DELAY_MS + TOLERANCE_MS).contains(&duration),
                    "seq {seq}: relay span {duration} ms: {r}"
                );
                let offset = stage["offset_ms"].as_f64().unwrap();
                // The span ends after the relay's produce is acknowledged, which may be after
                // pipewarden already consumed the record: no upper bound from the latency.
                assert!(
                    offset >= duration && offset < DELAY_MS + 10.0 * TOLERANCE_MS,
                    "seq {seq}: relay span ends {offset} ms after injection: {r}"
                );
            }
        }
    }
    steady_latencies.sort_by(f64::total_cmp);
    let median = steady_latencies[steady_latencies.len() / 2];
    assert!(
        (DELAY_MS..=DELAY_MS + TOLERANCE_MS).contains(&median),
        "median latency {median} ms for a {DELAY_MS} ms relay delay: {steady_latencies:?}"
    );
    assert!(
        stage_durations.len() >= 6,
        "per-stage latency from the relay's spans on most up runs: {stage_durations:?}"
    );
    for seq in 13..=16_u64 {
        assert_eq!(by_seq(seq)["status"], "timeout", "{}", by_seq(seq));
    }
    // Exactly the relay's losses and duplicates; nothing else counted.
    let counts = relay.counts();
    assert_eq!(counts.dropped.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert_eq!(
        counts.duplicated.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    let duplicates: u64 = list.iter().map(|r| r["duplicates"].as_u64().unwrap()).sum();
    assert_eq!(duplicates, 2, "duplicates of seq 4 and 8");
    let late: u64 = list.iter().map(|r| r["late"].as_u64().unwrap()).sum();
    assert_eq!(late, 0);
    let last = list.last().unwrap();
    assert_eq!(last["totals"]["received"], 8, "{last}");
    assert_eq!(last["totals"]["duplicates"], 2, "{last}");
    assert_eq!(last["totals"]["stale"], 0, "{last}");
    let losses_in_first_12: u64 = list
        .iter()
        .filter(|r| r["seq"].as_u64() <= Some(12))
        .map(|r| r["losses"].as_u64().unwrap())
        .sum();
    assert_eq!(losses_in_first_12, 4);
    eprintln!("end-to-end latency (ms) for a {DELAY_MS} ms relay: {latencies:?}");
    eprintln!("relay span durations (ms): {stage_durations:?}");

    // The stopped relay: the dead-man's switch for the probe and for its stage, and alerts.
    let summary = eventually("dead-man findings", DEADLINE, || async {
        let body = pipewarden.get_json("/api/v1/probes").await;
        let probe = body["probes"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["probe"] == "orders").cloned())
            .ok_or_else(|| format!("orders not listed: {body}"))?;
        let subjects: Vec<&str> = probe["findings"]
            .as_array()
            .map(|f| f.iter().filter_map(|f| f["subject"].as_str()).collect())
            .unwrap_or_default();
        if subjects == ["probe", "stage:relay"] {
            Ok(probe)
        } else {
            Err(format!("findings {subjects:?}: {probe}"))
        }
    })
    .await;
    assert_eq!(summary["last"]["status"], "timeout", "{summary}");
    assert!(
        summary["counts"]["timeout"].as_u64() >= Some(8),
        "{summary}"
    );
    assert_eq!(summary["counts"]["down"], 0, "{summary}");
    eventually("probe and dead-man alerts firing", DEADLINE, || async {
        let body = pipewarden.get_json("/api/v1/alerting/alerts").await;
        let text = body.to_string();
        if text.contains("OrdersProbeDown") && text.contains("OrdersDeadMan") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;
    // Probe series reach the detector and the store (folded into time buckets there).
    eventually("16 probe.losses points stored", DEADLINE, || async {
        let points = pipewarden
            .series_points("synthetic", "probe.losses")
            .await?;
        let stored: u64 = points.iter().map(|p| p.count).sum();
        if stored >= 16 {
            Ok(())
        } else {
            Err(format!("{stored} points: {points:?}"))
        }
    })
    .await;
    let metrics = pipewarden
        .metric(
            "pipewarden_synthetic_runs_total",
            &[("probe", "orders"), ("status", "up")],
        )
        .await
        .unwrap();
    assert_eq!(metrics, 8.0);
    relay.stop().await;
}

async fn probe_run_once(config: &str, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipewarden.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = Pipewarden::command();
    command
        .args(["probe", "run", "--once", "--config"])
        .arg(&path)
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}\n--- stderr ---\n{stderr}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_run_once_exits_0_when_up_and_1_when_the_relay_stops() {
    let tansu = Tansu::start().await;
    let bootstrap = tansu.bootstrap_servers();
    create_topic(&bootstrap, "in", 1).await;
    create_topic(&bootstrap, "out", 1).await;
    let relay = Relay::start(&bootstrap, "in", "out", RelayRules::default(), "relay").await;
    let config = probe_config(&bootstrap, "1s", "3s");

    let (code, output) = probe_run_once(&config, &[]).await;
    assert_eq!(code, 0, "{output}");
    let line = output.lines().next().unwrap();
    assert!(line.starts_with("orders up seq=1 latency_ms="), "{output}");
    assert!(
        line.contains("events=1/1 losses=0 duplicates=0"),
        "{output}"
    );
    // No collector here: the relay's spans are not joined.
    assert!(line.contains("stage[relay]=unseen"), "{output}");

    relay.pause();
    let (code, output) = probe_run_once(&config, &["orders", "--json"]).await;
    assert_eq!(code, 1, "{output}");
    let result: Value = serde_json::from_str(output.lines().next().unwrap()).unwrap();
    assert_eq!(result["status"], "timeout", "{output}");
    assert_eq!(result["losses"], 1, "{output}");

    let (code, output) = probe_run_once(&config, &["nope"]).await;
    assert_eq!(code, 64, "{output}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_reports_status_body_match_and_exit_codes() {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/ok", get(|| async { "service healthy" }))
        .route(
            "/down",
            get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let check = |name: &str, path: &str, body: &str| {
        format!(
            "[[synthetic.probes]]\nname = \"{name}\"\n[synthetic.probes.http_check]\n\
             url = \"http://{addr}{path}\"\nbody_matches = \"{body}\"\n"
        )
    };

    let (code, output) = probe_run_once(&check("web", "/ok", "health(y)?"), &["--json"]).await;
    assert_eq!(code, 0, "{output}");
    let result: Value = serde_json::from_str(output.lines().next().unwrap()).unwrap();
    assert_eq!(result["status"], "up", "{output}");
    assert_eq!(result["http_status"], 200, "{output}");
    assert!(result["latency_ms"].as_f64().unwrap() >= 0.0, "{output}");

    let (code, output) = probe_run_once(&check("web", "/ok", "^unhealthy"), &["--json"]).await;
    assert_eq!(code, 1, "{output}");
    let result: Value = serde_json::from_str(output.lines().next().unwrap()).unwrap();
    assert_eq!(result["status"], "down", "{output}");
    assert_eq!(
        result["error"], "body does not match `^unhealthy`",
        "{output}"
    );

    let (code, output) = probe_run_once(&check("web", "/down", "."), &[]).await;
    assert_eq!(code, 1, "{output}");
    assert!(
        output.starts_with("web down seq=1") && output.contains("http_status=503"),
        "{output}"
    );
    server.abort();
}

/// A stage that indexes every record of `in` into `index` on the OpenSearch-compatible server,
/// every `duplicate_every`th one twice (one bulk request, so both copies appear together), and
/// stops after `stop_after` records.
fn start_indexer(
    bootstrap: &str,
    url: &str,
    index: &str,
    duplicate_every: u64,
    stop_after: u64,
) -> tokio::task::JoinHandle<()> {
    use rdkafka::consumer::{Consumer as _, StreamConsumer};
    use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "indexer")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("in", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let bulk_url = format!("{url}/_bulk?refresh=true");
    let index = index.to_owned();
    tokio::spawn(async move {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        for n in 1..=stop_after {
            let message = consumer.recv().await.unwrap();
            let payload = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            drop(message);
            let copies = if n % duplicate_every == 0 { 2 } else { 1 };
            let mut body = String::new();
            for _ in 0..copies {
                body.push_str(&format!(
                    "{{\"index\":{{\"_index\":\"{index}\"}}}}\n{payload}\n"
                ));
            }
            let response = http
                .post(&bulk_url)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{response:?}");
        }
        tokio::task::spawn_blocking(move || drop(consumer))
            .await
            .ok();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_observer_counts_duplicates_and_cleans_up() {
    let tansu = Tansu::start().await;
    let osmem = crate::harness::Osmem::start().await;
    let bootstrap = tansu.bootstrap_servers();
    let url = osmem.url().to_owned();
    create_topic(&bootstrap, "in", 1).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let created = http
        .put(format!("{url}/orders"))
        .json(&serde_json::json!({
            "mappings": { "properties": { "probe_id": { "type": "keyword" } } }
        }))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{created:?}");
    let indexer = start_indexer(&bootstrap, &url, "orders", 2, 6);
    let config = format!(
        r#"
[[synthetic.probes]]
name = "indexed"
interval = "400ms"
timeout = "3s"
dead_man_intervals = 0

[synthetic.probes.inject.kafka]
bootstrap_servers = "{bootstrap}"
topic = "in"

[synthetic.probes.observe.elasticsearch]
url = "{url}"
index = "orders"
poll_interval = "50ms"
cleanup = true
"#
    );
    let pipewarden = Pipewarden::start_with_config(Some(&config), &[]).await;
    let list = eventually("runs 1-7 decided", DEADLINE, || async {
        let (_, body) = pipewarden
            .try_get_json("/api/v1/probes/results?probe=indexed")
            .await?;
        let mut list = body["results"].as_array().cloned().unwrap_or_default();
        list.sort_by_key(|r| r["seq"].as_u64());
        let decided = list.iter().filter(|r| r["seq"].as_u64() <= Some(7)).count();
        if decided == 7 {
            Ok(list)
        } else {
            Err(format!("{decided} decided: {body}"))
        }
    })
    .await;
    for r in list.iter().filter(|r| r["seq"].as_u64() <= Some(6)) {
        assert_eq!(r["status"], "up", "{r}");
        let latency = r["latency_ms"].as_f64().unwrap();
        assert!(latency > 0.0 && latency < 2000.0, "{r}");
    }
    assert_eq!(
        list[6]["status"], "timeout",
        "the indexer stopped after 6: {}",
        list[6]
    );
    let duplicates: u64 = list.iter().map(|r| r["duplicates"].as_u64().unwrap()).sum();
    assert_eq!(duplicates, 3, "seq 2, 4 and 6 were indexed twice");
    assert_eq!(list[6]["totals"]["received"], 6, "{}", list[6]);
    // Cleanup deleted every probe document found.
    let count = http
        .post(format!("{url}/orders/_search"))
        .json(&serde_json::json!({ "size": 0, "query": { "match_all": {} } }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(count["hits"]["total"]["value"], 0, "{count}");
    indexer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_arrivals_after_the_timeout_turn_losses_into_late() {
    let tansu = Tansu::start().await;
    let bootstrap = tansu.bootstrap_servers();
    create_topic(&bootstrap, "in", 1).await;
    create_topic(&bootstrap, "out", 1).await;
    // Every event takes 700 ms, the probe waits 300 ms: each run times out, and its event
    // arrives during the next run.
    let rules = RelayRules {
        delay: Duration::from_millis(700),
        ..RelayRules::default()
    };
    let relay = Relay::start(&bootstrap, "in", "out", rules, "relay").await;
    let config = probe_config(&bootstrap, "1s", "300ms")
        .replace("dead_man_intervals = 3", "dead_man_intervals = 0");
    let pipewarden = Pipewarden::start_with_config(Some(&config), &[]).await;
    let list = eventually("five runs decided", DEADLINE, || async {
        let list = results(&pipewarden).await?;
        if list.len() >= 5 {
            Ok(list)
        } else {
            Err(format!("{} runs", list.len()))
        }
    })
    .await;
    for r in &list[..5] {
        let seq = r["seq"].as_u64().unwrap();
        assert_eq!(r["status"], "timeout", "{r}");
        assert_eq!(r["losses"], 1, "{r}");
        // The previous run's event arrived late, after that run's result.
        assert_eq!(r["late"], u64::from(seq > 1), "{r}");
        assert_eq!(r["duplicates"], 0, "{r}");
        let totals = &r["totals"];
        assert_eq!(totals["sent"], seq, "{r}");
        assert_eq!(totals["late"], seq - 1, "{r}");
        assert_eq!(totals["received"], seq - 1, "{r}");
        assert_eq!(
            totals["losses"], 1,
            "only the run just decided is still lost: {r}"
        );
    }
    relay.stop().await;
}
