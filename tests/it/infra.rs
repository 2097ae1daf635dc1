//! The harness itself: the external tools start on free ports and answer, and pipewarden serves
//! its health, readiness and metrics endpoints.

use crate::harness::{DEADLINE, Osmem, Pipewarden, Tansu, eventually};

#[tokio::test]
async fn tansu_starts_and_accepts_connections() {
    let tansu = Tansu::start().await;
    let addr = tansu.bootstrap_servers();
    tokio::net::TcpStream::connect(&addr)
        .await
        .unwrap_or_else(|err| panic!("connect to tansu at {addr}: {err}"));
    // SIGINT stops tansu unless this test process inherited SIGINT as ignored (then tansu ignores
    // it too and `stop` falls back to SIGKILL): either way it is gone afterwards.
    if !tansu.stop().await {
        eprintln!("tansu ignored SIGINT (inherited disposition?); stopped with SIGKILL");
    }
}

#[tokio::test]
async fn osmem_answers_info_with_a_version() {
    let osmem = Osmem::start().await;
    assert!(
        osmem.url().starts_with("http://127.0.0.1:"),
        "{}",
        osmem.url()
    );
    assert_eq!(
        u64::from(osmem.pid()),
        osmem.reported_pid(),
        "pid in the startup line"
    );
    let info = osmem.wait_ready(DEADLINE).await;
    let number = info["version"]["number"]
        .as_str()
        .unwrap_or_else(|| panic!("GET / has no version.number: {info}"));
    assert!(!number.is_empty(), "{info}");
    assert_eq!(
        number,
        osmem.version(),
        "version in GET / and in the startup line"
    );
}

#[tokio::test]
async fn pipewarden_serves_health_readiness_and_metrics() {
    let pipewarden = Pipewarden::start().await;
    let addrs = pipewarden.addrs();
    for addr in [addrs.grpc, addrs.http, addrs.web] {
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{addrs:?}");
    }
    let health = pipewarden.get_json("/healthz").await;
    assert_eq!(health["status"], "ok", "{health}");
    let ready = eventually("/readyz 200", DEADLINE, || async {
        match pipewarden.try_get_json("/readyz").await? {
            (200, body) => Ok(body),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["components"]["otlp"], "ready", "{ready}");
    assert_eq!(ready["components"]["store"], "ready", "{ready}");
    let metrics = pipewarden.metrics_text().await.expect("GET /metrics");
    assert!(
        metrics.contains("pipewarden_pipeline_queue_depth"),
        "/metrics lacks pipewarden_pipeline_queue_depth:\n{metrics}"
    );
    let stages = pipewarden.get_json("/api/v1/stages").await;
    assert!(stages["stages"].is_array(), "{stages}");
}
