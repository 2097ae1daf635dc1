use std::time::Duration;

use serde_json::json;

use super::*;

fn record(stage: &str, ts: i64, body: &str, attributes: Value, trace: &str) -> LogRecord {
    LogRecord {
        stage: stage.into(),
        timestamp_ms: ts,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: body.into(),
        attributes,
        trace_id: trace.into(),
        span_id: String::new(),
    }
}

fn config() -> DetectorConfig {
    let mut config = DetectorConfig::default();
    config.logs.warmup_records = 50;
    config.logs.rate_window = Duration::from_secs(10);
    config.logs.session_timeout = Duration::from_secs(5);
    config.logs.session_training = 20;
    config.schema.warmup_events = 50;
    config
}

fn routine(i: i64) -> String {
    match i % 3 {
        0 => format!("Receiving block blk_{i} src: /10.0.0.{}:50010", i % 7),
        1 => format!("PacketResponder {i} for block blk_{i} terminating"),
        _ => format!("Verification succeeded for blk_{i}"),
    }
}

#[test]
fn a_new_template_after_the_warm_up_is_an_anomaly() {
    let mut detector = LogDetector::from_config(&config()).unwrap();
    let mut out = Vec::new();
    for i in 0..20 {
        detector.observe(&record("s", i, &routine(i), Value::Null, ""), &mut out);
    }
    detector.observe(
        &record("s", 20, "early novelty 1", Value::Null, ""),
        &mut out,
    );
    assert!(out.is_empty(), "no report during the warm-up: {out:?}");
    for i in 21..100 {
        detector.observe(&record("s", i, &routine(i), Value::Null, ""), &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
    let outcome = detector.observe(
        &record("s", 100, "Disk quota exceeded on volume 7", Value::Null, ""),
        &mut out,
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let a = &out[0];
    assert_eq!(a.model, "log_template");
    assert_eq!(a.name, "log.template");
    assert_eq!(a.feature, "Disk quota exceeded on volume <*>");
    assert_eq!(
        a.series_key,
        format!("s|log.template|template={}", outcome.template.unwrap().0)
    );
    assert!(a.score >= 70.0 && a.score == outcome.score);
    assert_eq!(
        (a.actual, a.typical, a.direction.as_str()),
        (1.0, 0.0, "up")
    );
}

#[test]
fn schema_changes_name_the_field() {
    let mut detector = LogDetector::from_config(&config()).unwrap();
    let mut out = Vec::new();
    for i in 0..60 {
        let attributes = json!({ "order": { "id": i, "region": "eu" }, "user": "u" });
        detector.observe(&record("s", i, "order placed", attributes, ""), &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
    let attributes =
        json!({ "order": { "id": "x-1", "region": "eu" }, "user": "u", "coupon": true });
    detector.observe(&record("s", 61, "order placed", attributes, ""), &mut out);
    let mut names: Vec<(&str, &str)> = out
        .iter()
        .map(|a| (a.name.as_str(), a.feature.as_str()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("log.schema.new_field", "coupon"),
            ("log.schema.type_change", "order.id")
        ]
    );
    let change = out.iter().find(|a| a.feature == "order.id").unwrap();
    assert_eq!(
        (change.actual, change.typical),
        (3.0, 2.0),
        "number -> string"
    );
    assert_eq!(change.model, "schema_drift");
    assert_eq!(change.series_key, "s|log.schema|field=order.id");
}

#[test]
fn sessions_are_learnt_and_a_deviating_one_is_an_anomaly() {
    let mut config = config();
    // A never-seen template reaches the alert threshold once the model learnt from at least
    // 0.5 / novel_fraction (125) sessions.
    config.logs.session_training = 200;
    let mut detector = LogDetector::from_config(&config).unwrap();
    let mut out = Vec::new();
    let mut ts = 0;
    for session in 0..200 {
        let trace = format!("t{session}");
        for step in [
            "start",
            "load the input",
            "write all the output",
            "job finished without any error",
        ] {
            detector.observe(&record("s", ts, step, Value::Null, &trace), &mut out);
            ts += 10;
        }
        ts += 10_000;
    }
    detector.tick(ts + 10_000, &mut out);
    assert!(out.iter().all(|a| a.name != "log.session"), "{out:?}");
    out.clear();
    for step in [
        "start",
        "load the input",
        "quarantined rows of input sent aside",
        "job finished without any error",
    ] {
        detector.observe(&record("s", ts, step, Value::Null, "bad"), &mut out);
        ts += 10;
    }
    detector.tick(ts + 10_000, &mut out);
    let session = out
        .iter()
        .find(|a| a.name == "log.session")
        .expect("a session anomaly");
    assert_eq!(session.model, "session_workflow");
    assert!(
        session.feature.contains("quarantined rows"),
        "{}",
        session.feature
    );
    assert!(
        session.feature.contains("session bad"),
        "{}",
        session.feature
    );
    assert!(session.score >= 70.0);
}

#[test]
fn session_keys_come_from_the_configured_attribute_first() {
    let mut config = config();
    config.logs.session_attributes = vec!["block_id".into()];
    let detector = LogDetector::from_config(&config).unwrap();
    let keyed = record("s", 0, "x", json!({ "block_id": "blk_1" }), "trace");
    assert_eq!(detector.session_key(&keyed).as_deref(), Some("blk_1"));
    let traced = record("s", 0, "x", Value::Null, "trace");
    assert_eq!(detector.session_key(&traced).as_deref(), Some("trace"));
    let neither = record("s", 0, "x", Value::Null, "");
    assert_eq!(detector.session_key(&neither), None);
}

#[test]
fn an_unusual_template_rate_is_an_anomaly() {
    let mut detector = LogDetector::from_config(&config()).unwrap();
    let mut out = Vec::new();
    for window in 0..40_i64 {
        let count = if window == 39 { 300 } else { 10 + window % 3 };
        for i in 0..count {
            let ts = window * 10_000 + i;
            detector.observe(&record("s", ts, "heartbeat ok", Value::Null, ""), &mut out);
        }
    }
    detector.tick(400_000, &mut out);
    let rate = out
        .iter()
        .find(|a| a.name == "log.template_rate")
        .unwrap_or_else(|| panic!("a rate anomaly: {out:?}"));
    assert_eq!(rate.series_key, "s|log.template_rate|template=0");
    assert_eq!(rate.feature, "heartbeat ok");
    assert_eq!(rate.actual, 300.0);
    assert_eq!(rate.direction, "up");
    assert_eq!(rate.timestamp_ms, 400_000);
}

#[test]
fn stages_and_sessions_are_capped_and_counted() {
    let mut config = config();
    config.logs.max_stages = 1;
    config.logs.max_open_sessions = 2;
    let mut detector = LogDetector::from_config(&config).unwrap();
    let mut out = Vec::new();
    for (i, trace) in ["a", "b", "c", "d"].iter().enumerate() {
        detector.observe(&record("s", i as i64, "step", Value::Null, trace), &mut out);
    }
    let outcome = detector.observe(&record("other", 5, "step", Value::Null, ""), &mut out);
    assert_eq!(outcome.template, None);
    let stats = detector.stats();
    assert_eq!(stats.stages, 1);
    assert_eq!(stats.stage_skipped, 1);
    assert_eq!(stats.open_sessions, 2);
    assert_eq!(stats.session_evictions, 2);
    assert!(stats.bytes_per_stage > 0);
}

#[test]
fn an_embedding_far_from_the_population_is_an_outlier() {
    let mut config = config();
    config.embeddings.attribute = "embedding".into();
    config.embeddings.reference_points = 32;
    config.embeddings.window_points = 8;
    let mut detector = LogDetector::from_config(&config).unwrap();
    let mut out = Vec::new();
    for i in 0..64 {
        let angle = i as f64;
        let attributes = json!({ "embedding": [angle.cos(), angle.sin()] });
        detector.observe(&record("s", i, "doc indexed", attributes, ""), &mut out);
    }
    assert!(
        out.iter().all(|a| a.name != "log.embedding.outlier"),
        "{out:?}"
    );
    let attributes = json!({ "embedding": [8.0, 8.0] });
    detector.observe(&record("s", 64, "doc indexed", attributes, ""), &mut out);
    let outlier = out
        .iter()
        .find(|a| a.name == "log.embedding.outlier")
        .expect("an outlier");
    assert_eq!(outlier.model, "embedding_drift");
    assert!(outlier.actual > outlier.typical);
}

#[test]
fn flatten_reads_attributes_and_a_json_body() {
    let log = record(
        "s",
        0,
        r#"{"status": 200, "meta": {"path": "/x"}}"#,
        json!({ "a": { "b": [1, 2] }, "c": null }),
        "",
    );
    let mut fields = flatten_record(&log);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            ("a.b".to_owned(), FieldType::Array),
            ("body.meta.path".to_owned(), FieldType::String),
            ("body.status".to_owned(), FieldType::Number),
            ("c".to_owned(), FieldType::Null),
        ]
    );
}

#[test]
fn embedding_monitors_are_capped_per_stage_and_counted() {
    let mut config = config();
    config.embeddings.attribute = "embedding".into();
    config.embeddings.max_stages = 1;
    let mut detector = LogDetector::from_config(&config).unwrap();
    let mut out = Vec::new();
    let attributes = json!({ "embedding": [1.0, 2.0] });
    detector.observe(&record("a", 0, "x", attributes.clone(), ""), &mut out);
    detector.observe(&record("b", 0, "x", attributes.clone(), ""), &mut out);
    detector.observe(&record("b", 1, "x", attributes, ""), &mut out);
    assert_eq!(detector.stats().embedding_skipped, 2);
    assert_eq!(
        detector.stats().stages,
        2,
        "the records themselves are processed"
    );
}

#[test]
fn template_embeddings_are_stable_and_a_foreign_template_is_an_outlier() {
    let a = hashed_bag_of_tokens("Receiving block <*> src: <*>", 32);
    assert_eq!(a, hashed_bag_of_tokens("Receiving block <*> src: <*>", 32));
    assert_eq!(a.len(), 32);
    assert!((a.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-12);

    let mut config = config();
    config.embeddings.templates = true;
    config.embeddings.reference_points = 32;
    config.embeddings.window_points = 8;
    let mut detector = LogDetector::from_config(&config).unwrap();
    let mut out = Vec::new();
    for i in 0..64 {
        detector.observe(&record("s", i, &routine(i), Value::Null, ""), &mut out);
    }
    assert!(
        out.iter()
            .all(|a| !a.name.starts_with("log.template_embedding")),
        "{out:?}"
    );
    detector.observe(
        &record("s", 64, "Disk quota exceeded on volume 7", Value::Null, ""),
        &mut out,
    );
    let outlier = out
        .iter()
        .find(|a| a.name == "log.template_embedding.outlier")
        .unwrap_or_else(|| panic!("{out:?}"));
    assert_eq!(outlier.series_key, "s|log.template_embedding");
    assert_eq!(outlier.model, "embedding_drift");
}

/// The first flattening: a `String` per field, built with `format!`.
fn reference_flatten(log: &LogRecord) -> Vec<(String, FieldType)> {
    fn object(
        map: &serde_json::Map<String, Value>,
        prefix: &str,
        depth: usize,
        out: &mut Vec<(String, FieldType)>,
    ) {
        for (key, value) in map {
            let path = format!("{prefix}{key}");
            match value {
                Value::Object(inner) if !inner.is_empty() && depth + 1 < MAX_SCHEMA_DEPTH => {
                    object(inner, &format!("{path}."), depth + 1, out);
                }
                other => out.push((path, field_type(other))),
            }
        }
    }
    let mut fields = Vec::new();
    if let Value::Object(map) = &log.attributes {
        object(map, "", 0, &mut fields);
    }
    let body = log.body.trim_start();
    if body.starts_with('{')
        && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(body)
    {
        object(&map, "body.", 0, &mut fields);
    }
    fields
}

#[test]
fn the_reused_flattening_buffers_give_the_fields_of_each_record() {
    let records = [
        record(
            "s",
            0,
            r#"{"status": 200, "meta": {"path": "/x", "deep": {"a": {"b": {"c": 1}}}}}"#,
            json!({ "a": { "b": [1, 2], "e": {} }, "c": null, "user": { "id": 7 } }),
            "",
        ),
        record("s", 1, "plain text", json!({ "x": true }), ""),
        record("s", 2, "  {not json", Value::Null, ""),
        record("s", 3, "{}", json!({ "k": "v", "é": { "ü": 1.5 } }), ""),
        record("s", 4, "", json!([1, 2]), ""),
    ];
    let mut flat = Flattener::default();
    // Twice through, so that every record follows a longer and a shorter one.
    for log in records.iter().chain(records.iter()) {
        let fields: Vec<(String, FieldType)> = flat
            .flatten(log)
            .iter()
            .map(|(path, field_type)| (path.to_owned(), field_type))
            .collect();
        assert_eq!(fields, reference_flatten(log), "{log:?}");
        assert_eq!(flatten_record(log), fields);
    }
}

/// Open sessions are closed by idleness in order of last activity, and the oldest one is
/// evicted at `max_open_sessions`, after any number of updates of the same sessions.
#[test]
fn sessions_close_in_order_of_last_activity() {
    let mut config = config();
    config.logs.session_attributes = vec!["job".into()];
    config.logs.max_open_sessions = 3;
    config.logs.session_timeout = Duration::from_secs(100);
    let mut detector = LogDetector::from_config(&config).unwrap();
    let mut out = Vec::new();
    // Sessions a, b, c; a is touched last, so b is the idlest when d arrives.
    for (ts, job) in [(0, "a"), (1, "b"), (2, "c"), (3, "a"), (4, "c"), (5, "a")] {
        detector.observe(
            &record("s", ts, &routine(ts), json!({ "job": job }), ""),
            &mut out,
        );
    }
    assert_eq!(detector.stats().open_sessions, 3);
    detector.observe(
        &record("s", 6, &routine(6), json!({ "job": "d" }), ""),
        &mut out,
    );
    assert_eq!(detector.stats().session_evictions, 1);
    let open: Vec<&str> = detector
        .session_order
        .values()
        .map(|(_, key)| &**key)
        .collect();
    assert_eq!(open, ["c", "a", "d"]);
    // Idle for the timeout (100 s) from their last record: c (4 ms) and a (5 ms) close by
    // 100.005 s, d (6 ms) later.
    detector.tick(100_005, &mut out);
    let open: Vec<&str> = detector
        .session_order
        .values()
        .map(|(_, key)| &**key)
        .collect();
    assert_eq!(open, ["d"]);
    assert_eq!(detector.sessions.len(), 1);
}
