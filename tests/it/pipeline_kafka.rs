//! Kafka lag through the whole process: pipewarden configured with a real broker (tansu)
//! serves the group's lag and verdict at the API, scores its lag series, reports the source in
//! `/readyz`, and keeps the verdict window across a restart (no repeated status change).

use crate::harness::{DEADLINE, Pipewarden, Tansu, eventually, query_escape};
use crate::kafka_lag::{commit, create_topic, produce_n};

const TOPIC: &str = "orders";
const GROUP: &str = "billing";

async fn group_view(pipewarden: &Pipewarden) -> Result<serde_json::Value, String> {
    let (status, body) = pipewarden.try_get_json("/api/v1/kafka/groups").await?;
    if status != 200 {
        return Err(format!("{status} {body}"));
    }
    body["groups"]
        .as_array()
        .and_then(|groups| groups.iter().find(|g| g["group"] == GROUP).cloned())
        .ok_or_else(|| format!("group not listed yet: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_verdicts_series_and_state_survive_a_restart() {
    let tansu = Tansu::start().await;
    let bootstrap = tansu.bootstrap_servers();
    create_topic(&bootstrap, TOPIC, 1).await;
    produce_n(&bootstrap, TOPIC, 0, 10).await;
    // A group with no member, stuck at offset 4: lag 6 that never moves -> STOP.
    commit(&bootstrap, GROUP, TOPIC, &[(0, 4)]).await;

    let config = format!(
        r#"
[collector.kafka_lag]
poll_interval = "200ms"
window_samples = 3

[[collector.kafka_lag.clusters]]
name = "main"
bootstrap_servers = "{bootstrap}"
"#
    );
    let mut pipewarden = Pipewarden::start_with_config(Some(&config), &[]).await;
    let group = eventually("group STOP with lag 6", DEADLINE, || async {
        let group = group_view(&pipewarden).await?;
        if group["status"] == "STOP" && group["lag_messages"] == 6 {
            Ok(group)
        } else {
            Err(format!("{group}"))
        }
    })
    .await;
    assert_eq!(group["members"], 0, "{group}");
    assert_eq!(group["partitions"][0]["committed"], 4, "{group}");
    assert_eq!(group["partitions"][0]["high"], 10, "{group}");

    let ready = pipewarden.get_json("/readyz").await;
    assert_eq!(ready["components"]["kafka"], "ready", "{ready}");
    let stage = query_escape(&format!("kafka/main/{GROUP}"));
    eventually("lag series scored and stored", DEADLINE, || async {
        let series = pipewarden
            .get_json(&format!(
                "/api/v1/series?stage={stage}&name=kafka.lag_messages"
            ))
            .await;
        let stored = series["series"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["points"].as_u64() > Some(0)));
        if stored {
            Ok(())
        } else {
            Err(series.to_string())
        }
    })
    .await;
    let changes = |body: serde_json::Value| {
        body["changes"]
            .as_array()
            .map(|c| c.iter().filter(|c| c["partition"].is_null()).count())
            .unwrap_or(0)
    };
    let path = format!("/api/v1/kafka/changes?group={GROUP}");
    assert_eq!(
        changes(pipewarden.get_json(&path).await),
        1,
        "one change: to STOP"
    );

    pipewarden.terminate();
    assert!(pipewarden.wait_exit(DEADLINE).await.success());
    pipewarden.restart().await;
    // Several polls after the restart: the restored window keeps STOP, so no new change.
    eventually("polls after restart", DEADLINE, || async {
        let group = group_view(&pipewarden).await?;
        let fresh = group["timestamp_ms"].as_i64().unwrap_or(0);
        let age = crate::kafka_lag::unix_ms() - fresh;
        if group["status"] == "STOP" && age < 1_000 {
            Ok(())
        } else {
            Err(format!("{group}"))
        }
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    assert_eq!(
        changes(pipewarden.get_json(&path).await),
        1,
        "no repeated change after restart"
    );
    tansu.stop().await;
}
