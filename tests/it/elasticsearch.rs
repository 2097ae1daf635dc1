//! The Elasticsearch sink against osmem-server (index mode: templates, documents read back, an
//! outage under a steady stream, a crash mid-stream), against a small `_bulk` endpoint that
//! refuses items with 429 and 400, and (opt-in, `PIPEWARDEN_TEST_ES_URL`) against a real cluster
//! in data-stream mode.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipewarden::sink::elasticsearch::{
    BatchConfig, ElasticsearchConfig, ElasticsearchSink, EsDocument, EsTelemetry, IndexKind,
    IndexMode, RetryConfig, SinkInput, SpoolConfig, rfc3339_millis,
};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::harness::{DEADLINE, Osmem, eventually};

fn config(
    url: &str,
    mode: IndexMode,
    namespace: &str,
    dir: &std::path::Path,
) -> ElasticsearchConfig {
    ElasticsearchConfig {
        enabled: true,
        urls: vec![url.to_owned()],
        namespace: namespace.to_owned(),
        mode,
        request_timeout: Duration::from_secs(5),
        batch: BatchConfig {
            max_docs: 50,
            max_bytes: 1024 * 1024,
            flush_interval: Duration::from_millis(50),
        },
        retry: RetryConfig {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(300),
            max_item_attempts: 20,
        },
        spool: SpoolConfig {
            dir: dir.join("spool"),
            segment_bytes: 64 * 1024,
            ..SpoolConfig::default()
        },
        dead_letter_path: dir.join("dead-letters.jsonl"),
        shutdown_timeout: Duration::from_secs(5),
        ..ElasticsearchConfig::default()
    }
}

struct Running {
    input: SinkInput,
    telemetry: EsTelemetry,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

fn start(config: &ElasticsearchConfig) -> Running {
    let valid = config.validate().expect("valid config");
    let telemetry = EsTelemetry::register(&mut Registry::default());
    let (sink, input) = ElasticsearchSink::build(valid, telemetry.clone()).expect("build sink");
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { sink.run(stop).await.expect("sink run") }
    });
    Running {
        input,
        telemetry,
        stop,
        task,
    }
}

impl Running {
    async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("sink stops by its deadline")
            .expect("sink task");
    }
}

/// A recent time (an hour ago, on a whole minute): older documents would be deleted by the
/// retention job of index mode.
fn recent_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    (now - 3_600_000) / 60_000 * 60_000
}

fn stage_doc(i: usize) -> EsDocument {
    let start = recent_ms() + i as i64 * 10;
    let window = pipewarden_collector::StageWindow {
        stage: format!("svc/stage-{}", i % 3),
        window_start_ms: start,
        window_end_ms: start + 10_000,
        spans: i as u64,
        span_errors: 0,
        latency_p50_ms: Some(1.0),
        latency_p95_ms: Some(2.0),
        latency_p99_ms: Some(3.0),
        metric_points: 0,
        log_records: 1,
        logs_by_severity: vec![("INFO".to_owned(), 1)],
    };
    EsDocument::from_stage_window(&window)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn count(url: &str, pattern: &str) -> Result<u64, String> {
    let client = http();
    client
        .post(format!("{url}/{pattern}/_refresh"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body: Value = client
        .get(format!("{url}/{pattern}/_count"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    body["count"]
        .as_u64()
        .ok_or_else(|| format!("no count: {body}"))
}

async fn wait_count(url: &str, pattern: &str, expected: u64) {
    let what = format!("{expected} documents in {pattern}");
    eventually(&what, DEADLINE, || async {
        let n = count(url, pattern).await?;
        if n == expected {
            Ok(())
        } else {
            Err(format!("count {n}"))
        }
    })
    .await;
}

#[tokio::test]
async fn index_mode_installs_templates_and_documents_read_back_with_their_fields() {
    let osmem = Osmem::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = start(&config(
        osmem.url(),
        IndexMode::Index,
        "readback",
        dir.path(),
    ));
    let anomaly = pipewarden::anomaly::Anomaly {
        id: 0,
        timestamp_ms: recent_ms(),
        series_key: "svc/a|span.count".into(),
        stage: "svc/a".into(),
        name: "span.count".into(),
        model: "robust_baseline".into(),
        model_version: 1,
        score: 93.5,
        actual: 3.0,
        typical: 40.0,
        lower: 30.0,
        upper: 50.0,
        feature: "span.count".into(),
        direction: "down".into(),
        continuing: false,
    };
    let mut leaky = EsDocument::from_anomaly(&anomaly);
    leaky.body["message"] = json!("owner ops@example.com from 10.1.2.3");
    sink.input
        .send(vec![leaky.clone(), stage_doc(1), stage_doc(2)])
        .await
        .unwrap();
    wait_count(osmem.url(), "pipewarden-anomaly-readback-*", 1).await;
    wait_count(osmem.url(), "pipewarden-stage-readback-*", 2).await;

    let client = http();
    for family in ["anomaly", "stage", "lag", "probe", "alert", "dead_letter"] {
        let status = client
            .get(format!(
                "{}/_index_template/pipewarden-{family}-readback",
                osmem.url()
            ))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "template {family}: {status}");
    }
    let index = &IndexKind::Anomaly.target(IndexMode::Index, "readback", anomaly.timestamp_ms);
    let mapping: Value = client
        .get(format!("{}/{index}/_mapping", osmem.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let props = &mapping[index]["mappings"]["properties"];
    assert_eq!(props["@timestamp"]["type"], "date", "{mapping}");
    assert_eq!(
        props["pipewarden"]["properties"]["anomaly"]["properties"]["score"]["type"],
        "double"
    );
    let hits: Value = client
        .get(format!("{}/{index}/_search", osmem.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hit = &hits["hits"]["hits"][0];
    assert_eq!(hit["_id"], leaky.id.as_str());
    let source = &hit["_source"];
    assert_eq!(
        source["@timestamp"],
        rfc3339_millis(anomaly.timestamp_ms).as_str()
    );
    assert_eq!(source["event"]["dataset"], "pipewarden.anomaly");
    assert_eq!(source["service"]["name"], "svc");
    assert_eq!(source["observer"]["name"], "pipewarden");
    assert_eq!(source["pipewarden"]["anomaly"]["score"], 93.5);
    assert_eq!(
        source["message"],
        "owner [REDACTED:email] from [REDACTED:ipv4]"
    );

    // The same document again is a 409 on its deterministic id: still one.
    sink.input.send(vec![leaky]).await.unwrap();
    eventually("the replay confirmed", DEADLINE, || async {
        if sink.telemetry.sent.get() == 4 {
            Ok(())
        } else {
            Err(sink.telemetry.sent.get())
        }
    })
    .await;
    assert_eq!(
        count(osmem.url(), "pipewarden-anomaly-readback-*")
            .await
            .unwrap(),
        1
    );
    sink.shutdown().await;
}

/// A TCP forwarder that can be switched off: connections are refused... by being closed at once,
/// and open ones are cut, while the server behind it keeps its data.
struct Outage {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    cut: Arc<Mutex<CancellationToken>>,
}

impl Outage {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let (down2, cut2) = (Arc::clone(&down), Arc::clone(&cut));
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if down2.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let token = cut2.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = token.cancelled() => {}
                    }
                });
            }
        });
        Self { addr, down, cut }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            let mut cut = self.cut.lock().unwrap();
            cut.cancel();
            *cut = CancellationToken::new();
        }
    }
}

fn socket_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test]
async fn cluster_outage_under_a_steady_stream_ends_with_the_exact_count() {
    let osmem = Osmem::start().await;
    let outage = Outage::start(socket_addr(osmem.url())).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = start(&config(
        &outage.url(),
        IndexMode::Index,
        "outage",
        dir.path(),
    ));
    let total = 600;
    for batch in 0..60 {
        if batch == 15 {
            outage.set_down(true);
        }
        if batch == 45 {
            // The spool held everything sent meanwhile.
            assert!(sink.telemetry.spool_bytes.get() > 0 || batch > 0);
            outage.set_down(false);
        }
        let docs = (batch * 10..batch * 10 + 10).map(stage_doc).collect();
        sink.input.send(docs).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_count(osmem.url(), "pipewarden-stage-outage-*", total).await;
    let failed: u64 = ["transport", "bad_response"]
        .iter()
        .map(|reason| {
            sink.telemetry
                .send_failed
                .get_or_create(&pipewarden::sink::elasticsearch::ReasonLabel {
                    reason: (*reason).to_owned(),
                })
                .get()
        })
        .sum();
    assert!(failed > 0, "the outage was noticed");
    assert_eq!(sink.telemetry.dead_lettered.get(), 0);
    sink.shutdown().await;
    assert_eq!(
        count(osmem.url(), "pipewarden-stage-outage-*")
            .await
            .unwrap(),
        total
    );
}

#[tokio::test]
async fn crash_mid_stream_then_rebuild_on_the_same_spool_ends_with_the_exact_count() {
    let osmem = Osmem::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(osmem.url(), IndexMode::Index, "crash", dir.path());
    let first = start(&config);
    for batch in 0..20 {
        let docs = (batch * 10..batch * 10 + 10).map(stage_doc).collect();
        first.input.send(docs).await.unwrap();
    }
    // Crash: the run loop and its requests vanish mid-stream, nothing is flushed.
    first.task.abort();
    let _ = first.task.await;
    first.stop.cancel();
    drop(first.input);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let _ = tracing_subscriber::fmt()
        .with_env_filter("pipewarden=debug")
        .with_test_writer()
        .try_init();
    let second = start(&config);
    for batch in 20..40 {
        let docs = (batch * 10..batch * 10 + 10).map(stage_doc).collect();
        second.input.send(docs).await.unwrap();
    }
    wait_count(osmem.url(), "pipewarden-stage-crash-*", 400).await;
    second.shutdown().await;
    assert_eq!(
        count(osmem.url(), "pipewarden-stage-crash-*")
            .await
            .unwrap(),
        400
    );
}

/// Per-id attempts seen by the fake cluster, and what went to its dead-letter index.
#[derive(Default)]
struct FakeCluster {
    attempts: HashMap<String, u32>,
    dead_letter_ids: Vec<String>,
}

async fn fake_bulk(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<FakeCluster>>>,
    body: String,
) -> axum::Json<Value> {
    let lines: Vec<&str> = body.lines().filter(|l| !l.is_empty()).collect();
    let mut items = Vec::new();
    let mut state = state.lock().unwrap();
    for pair in lines.chunks(2) {
        let action: Value = serde_json::from_str(pair[0]).unwrap();
        let source: Value = serde_json::from_str(pair[1]).unwrap();
        let index = action["create"]["_index"].as_str().unwrap().to_owned();
        let id = action["create"]["_id"].as_str().unwrap().to_owned();
        if index.contains("dead_letter") {
            state.dead_letter_ids.push(id.clone());
            items.push(json!({"create": {"_index": index, "_id": id, "status": 201}}));
            continue;
        }
        let attempt = {
            let n = state.attempts.entry(id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let item = match (source["mock"].as_str(), attempt) {
            (Some("429"), 1) => {
                json!({"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}})
            }
            (Some("400"), _) => {
                json!({"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [x]"}})
            }
            _ => json!({"status": 201, "result": "created"}),
        };
        let mut item = item;
        item["_index"] = json!(index);
        item["_id"] = json!(id);
        items.push(json!({"create": item}));
    }
    axum::Json(json!({"errors": true, "took": 1, "items": items}))
}

#[tokio::test]
async fn only_429_items_are_retried_and_400_items_reach_the_dead_letters() {
    use axum::routing::{get, post, put};
    let state = Arc::new(Mutex::new(FakeCluster::default()));
    let app = axum::Router::new()
        .route(
            "/",
            get(|| async { axum::Json(json!({"version": {"number": "8.15.0"}})) }),
        )
        .route("/_bulk", post(fake_bulk))
        .route(
            "/_ilm/policy/{name}",
            put(|| async { axum::Json(json!({"acknowledged": true})) }),
        )
        .route(
            "/_component_template/{name}",
            put(|| async { axum::Json(json!({"acknowledged": true})) }),
        )
        .route(
            "/_index_template/{name}",
            put(|| async { axum::Json(json!({"acknowledged": true})) }),
        )
        .with_state(Arc::clone(&state));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let sink = start(&config(
        &format!("http://{addr}"),
        IndexMode::DataStream,
        "fake",
        dir.path(),
    ));
    let (ok, retry, refuse) = (30, 12, 7);
    let mut docs = Vec::new();
    for (i, marker) in std::iter::repeat_n("ok", ok)
        .chain(std::iter::repeat_n("429", retry))
        .chain(std::iter::repeat_n("400", refuse))
        .enumerate()
    {
        docs.push(EsDocument::new(
            IndexKind::Probe,
            format!("probe-{i}-{marker}"),
            1_763_000_000_000 + i as i64,
            json!({"@timestamp": "2025-11-13T02:13:20.000Z", "mock": marker}),
        ));
    }
    sink.input.send(docs).await.unwrap();
    eventually("every item settled", DEADLINE, || async {
        let t = &sink.telemetry;
        let settled = t.sent.get() + t.dead_lettered.get();
        if settled == (ok + retry + refuse) as u64 {
            Ok(())
        } else {
            Err(settled)
        }
    })
    .await;
    let telemetry = sink.telemetry.clone();
    sink.shutdown().await;

    let state = state.lock().unwrap();
    for (id, attempts) in &state.attempts {
        let expected = if id.ends_with("-429") { 2 } else { 1 };
        assert_eq!(*attempts, expected, "{id}");
    }
    assert_eq!(state.attempts.len(), ok + retry + refuse);
    assert_eq!(telemetry.sent.get(), (ok + retry) as u64);
    assert_eq!(telemetry.retried.get(), retry as u64);
    assert_eq!(telemetry.dead_lettered.get(), refuse as u64);
    let mut dead_ids = state.dead_letter_ids.clone();
    dead_ids.sort();
    assert_eq!(dead_ids.len(), refuse);
    assert!(dead_ids.iter().all(|id| id.ends_with("-400")));
    let file = std::fs::read_to_string(dir.path().join("dead-letters.jsonl")).unwrap();
    let lines: Vec<Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), refuse);
    assert!(lines.iter().all(|l| l["status"] == 400
        && l["error_type"] == "mapper_parsing_exception"
        && l["target"] == "synthetics-pipewarden.probe-fake"
        && l["document"]["mock"] == "400"));
}

#[tokio::test]
async fn real_cluster_data_streams_ilm_and_templates() {
    let Ok(url) = std::env::var("PIPEWARDEN_TEST_ES_URL") else {
        eprintln!(
            "skipped: set PIPEWARDEN_TEST_ES_URL (e.g. http://elastic:pass@host:9200) to run the real-cluster suite"
        );
        return;
    };
    let namespace = format!("it{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let sink = start(&config(&url, IndexMode::DataStream, &namespace, dir.path()));
    let docs: Vec<EsDocument> = (0..25).map(stage_doc).collect();
    sink.input.send(docs).await.unwrap();
    let stream = format!("metrics-pipewarden.stage-{namespace}");
    wait_count(url.trim_end_matches('/'), &stream, 25).await;
    let client = http();
    let base = url.trim_end_matches('/');
    let ds: Value = client
        .get(format!("{base}/_data_stream/{stream}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ds["data_streams"][0]["name"], stream.as_str(), "{ds}");
    let policy = client
        .get(format!("{base}/_ilm/policy/pipewarden-{namespace}"))
        .send()
        .await
        .unwrap();
    assert!(policy.status().is_success());
    let template = client
        .get(format!("{base}/_index_template/{stream}"))
        .send()
        .await
        .unwrap();
    assert!(template.status().is_success());
    sink.shutdown().await;
    let _ = client
        .delete(format!("{base}/_data_stream/*-pipewarden.*-{namespace}"))
        .send()
        .await;
}

/// Throughput of the sink into osmem beside a minimal bulk client sending the same documents
/// (same batch size, same concurrency), in alternating runs; and the cost of spooling. Prints
/// figures; run with `cargo test --release --test it elasticsearch_throughput -- --ignored
/// --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures, asserts nothing about speed"]
async fn elasticsearch_throughput_sink_vs_minimal_bulk_client() {
    const DOCS: usize = 10_000;
    const BATCH: usize = 500;
    const IN_FLIGHT: usize = 4;
    let osmem = Osmem::start().await;
    let docs: Vec<EsDocument> = (0..DOCS).map(stage_doc).collect();
    let mut sink_rates = Vec::new();
    let mut client_rates = Vec::new();
    for round in 0..3 {
        // The sink: spool, batches, in-flight requests, every item checked.
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(
            osmem.url(),
            IndexMode::Index,
            &format!("bs{round}"),
            dir.path(),
        );
        cfg.batch.max_docs = BATCH;
        cfg.batch.max_bytes = 16 * 1024 * 1024;
        cfg.max_in_flight = IN_FLIGHT;
        cfg.spool.segment_bytes = 16 * 1024 * 1024;
        cfg.request_timeout = Duration::from_secs(120);
        let sink = start(&cfg);
        let begin = tokio::time::Instant::now();
        for chunk in docs.chunks(BATCH) {
            sink.input.send(chunk.to_vec()).await.unwrap();
        }
        eventually("sink sent all", DEADLINE * 5, || async {
            let sent = sink.telemetry.sent.get();
            if sent == DOCS as u64 {
                Ok(())
            } else {
                Err(sent)
            }
        })
        .await;
        sink_rates.push(DOCS as f64 / begin.elapsed().as_secs_f64());
        sink.shutdown().await;

        // The minimal client: pre-encoded NDJSON, `IN_FLIGHT` concurrent POSTs, no checks
        // beyond the status.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let namespace = format!("bc{round}");
        let bodies: Vec<String> = docs
            .chunks(BATCH)
            .map(|chunk| {
                let mut body = String::new();
                for doc in chunk {
                    let index =
                        doc.index_kind
                            .target(IndexMode::Index, &namespace, doc.timestamp_ms);
                    body.push_str(&json!({"create": {"_index": index, "_id": doc.id}}).to_string());
                    body.push('\n');
                    body.push_str(&doc.body.to_string());
                    body.push('\n');
                }
                body
            })
            .collect();
        let begin = tokio::time::Instant::now();
        let queue = Arc::new(Mutex::new(bodies));
        let mut workers = Vec::new();
        for _ in 0..IN_FLIGHT {
            let (queue, client, url) = (Arc::clone(&queue), client.clone(), osmem.url().to_owned());
            workers.push(tokio::spawn(async move {
                loop {
                    let Some(body) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let response = client
                        .post(format!("{url}/_bulk"))
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success());
                    let _ = response.bytes().await.unwrap();
                }
            }));
        }
        for worker in workers {
            worker.await.unwrap();
        }
        client_rates.push(DOCS as f64 / begin.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (sink_rate, client_rate) = (median(&mut sink_rates), median(&mut client_rates));
    println!(
        "elasticsearch throughput: sink {sink_rate:.0} docs/s, minimal bulk client {client_rate:.0} docs/s, ratio {:.2} (runs: sink {sink_rates:.0?}, client {client_rates:.0?})",
        sink_rate / client_rate
    );

    // Spooling cost: `send` (redaction, encoding, append, fsync per call) without a running
    // sink, per document, with and without redaction.
    for redact in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(osmem.url(), IndexMode::Index, "spoolcost", dir.path());
        cfg.redaction.enabled = redact;
        cfg.spool.segment_bytes = 16 * 1024 * 1024;
        let valid = cfg.validate().unwrap();
        let (_sink, input) =
            ElasticsearchSink::build(valid, EsTelemetry::register(&mut Registry::default()))
                .unwrap();
        let begin = tokio::time::Instant::now();
        for chunk in docs.chunks(BATCH) {
            input.send(chunk.to_vec()).await.unwrap();
        }
        let per_doc = begin.elapsed().as_secs_f64() / DOCS as f64 * 1e6;
        println!(
            "spool write cost (batches of {BATCH}, redaction {redact}): {per_doc:.2} µs/document"
        );
    }
}
