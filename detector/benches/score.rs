//! Throughput of the detector's hot paths, each beside a trivial baseline in the same run:
//! points per second of the robust baseline (windowed Gaussian baseline), per model and through
//! the series bank (by key, and by series handle: the same points without the key lookup);
//! vectors per second of the embedding monitor (distance to the running mean); lines per second
//! of template mining (hashing the line); log records per second of template mining plus schema
//! drift (the log detector's per-record work in this crate).
//!
//! Run with `cargo bench -p pipewarden-detector --bench score`; compare the models as ratios of
//! their throughputs measured in the same run.

// The parameters are constants known to be valid: a failure is a bug to surface at once.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use linfa::ParamGuard;
use pipewarden_detector::models::embedding_drift::EmbeddingDrift;
use pipewarden_detector::models::schema_drift::{EventFields, FieldType, SchemaDrift};
use pipewarden_detector::templates::TemplateMiner;
use pipewarden_detector::{RobustBaseline, SeriesBank, SeriesId, WindowedGaussian};

const POINTS: usize = 100_000;
const STEP_MS: i64 = 10_000;

/// A daily-looking wave with deterministic pseudo-noise and a spike every 5000 points.
fn series(points: usize) -> Vec<f64> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..points)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let spike = if i % 5000 == 4999 { 50.0 } else { 0.0 };
            100.0 + 10.0 * (i as f64 / 1440.0 * std::f64::consts::TAU).sin() + 4.0 * noise + spike
        })
        .collect()
}

fn bench_models(c: &mut Criterion) {
    let values = series(POINTS);
    let mut group = c.benchmark_group("observe");
    group.throughput(Throughput::Elements(POINTS as u64));
    for window in [64usize, 256] {
        let params = RobustBaseline::params()
            .window_points(window)
            .check()
            .unwrap();
        let mut model = RobustBaseline::new(params);
        group.bench_with_input(
            BenchmarkId::new("robust_baseline", format!("window_points={window}")),
            &values,
            |b, values| {
                b.iter(|| {
                    for (i, &value) in values.iter().enumerate() {
                        black_box(model.observe(i as i64 * STEP_MS, value));
                    }
                })
            },
        );
        let mut baseline = WindowedGaussian::new(window);
        group.bench_with_input(
            BenchmarkId::new("windowed_gaussian", format!("window_points={window}")),
            &values,
            |b, values| {
                b.iter(|| {
                    for &value in values {
                        black_box(baseline.observe(value));
                    }
                })
            },
        );
    }
    group.finish();
}

fn bench_bank(c: &mut Criterion) {
    let values = series(POINTS);
    let keys: Vec<String> = (0..1000)
        .map(|i| format!("svc/stage-{i}|span.count"))
        .collect();
    let mut group = c.benchmark_group("bank_observe");
    group.throughput(Throughput::Elements(POINTS as u64));
    for series_count in [1usize, 1000] {
        let mut bank = SeriesBank::new(SeriesBank::params().check().unwrap());
        group.bench_with_input(
            BenchmarkId::new("robust_baseline", format!("series={series_count}")),
            &values,
            |b, values| {
                b.iter(|| {
                    for (i, &value) in values.iter().enumerate() {
                        let key = &keys[i % series_count];
                        black_box(bank.observe(key, i as i64 * STEP_MS, value));
                    }
                })
            },
        );
        // The same points through series handles taken once (as a caller holding them would):
        // no key lookup per point; the same scores.
        let mut bank = SeriesBank::new(SeriesBank::params().check().unwrap());
        let ids: Vec<SeriesId> = keys[..series_count]
            .iter()
            .map(|key| bank.handle(key))
            .collect();
        group.bench_with_input(
            BenchmarkId::new(
                "robust_baseline_by_handle",
                format!("series={series_count}"),
            ),
            &values,
            |b, values| {
                b.iter(|| {
                    for (i, &value) in values.iter().enumerate() {
                        let id = ids[i % series_count];
                        black_box(bank.observe_id(id, i as i64 * STEP_MS, value));
                    }
                })
            },
        );
    }
    group.finish();
}

/// Embedding monitor (64 dimensions, default reference and window) beside the trivial baseline:
/// distance to the running mean vector.
fn bench_embeddings(c: &mut Criterion) {
    const DIMENSIONS: usize = 64;
    const VECTORS: usize = 2_000;
    let values = series(VECTORS * DIMENSIONS);
    let vectors: Vec<&[f64]> = values.chunks_exact(DIMENSIONS).collect();
    let mut group = c.benchmark_group("embedding_observe");
    group.throughput(Throughput::Elements(VECTORS as u64));
    let mut monitor = EmbeddingDrift::params(DIMENSIONS).build().unwrap();
    group.bench_function(BenchmarkId::new("embedding_drift", "dimensions=64"), |b| {
        b.iter(|| {
            for vector in &vectors {
                black_box(monitor.observe(vector).unwrap());
            }
        })
    });
    let mut mean = vec![0.0; DIMENSIONS];
    let mut seen = 0.0;
    group.bench_function(
        BenchmarkId::new("centroid_distance", "dimensions=64"),
        |b| {
            b.iter(|| {
                for vector in &vectors {
                    let distance: f64 = vector
                        .iter()
                        .zip(&mean)
                        .map(|(x, m)| (x - m) * (x - m))
                        .sum::<f64>()
                        .sqrt();
                    seen += 1.0;
                    for (m, x) in mean.iter_mut().zip(vector.iter()) {
                        *m += (x - *m) / seen;
                    }
                    black_box(distance);
                }
            })
        },
    );
    group.finish();
}

/// Template mining of HDFS-like lines beside the trivial baseline: hashing the whole line.
fn bench_templates(c: &mut Criterion) {
    let lines: Vec<String> = (0..10_000)
        .map(|i| match i % 4 {
            0 => format!("Receiving block blk_{i} src: /10.250.{}.7:50010 dest: /10.250.3.9:50010", i % 250),
            1 => format!("PacketResponder {} for block blk_{i} terminating", i % 3),
            2 => format!("Received block blk_{i} of size {} from /10.251.{}.2", 67_108_864 - i, i % 250),
            _ => format!("BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.251.{}.9:50010 is added to blk_{i} size 67108864", i % 250),
        })
        .collect();
    let mut group = c.benchmark_group("template_add");
    group.throughput(Throughput::Elements(lines.len() as u64));
    let mut miner = TemplateMiner::new(TemplateMiner::params().check().unwrap());
    group.bench_function("drain", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(miner.add(line, 9));
            }
        })
    });
    group.bench_function("hash_line", |b| {
        b.iter(|| {
            for line in &lines {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(line, &mut hasher);
                black_box(std::hash::Hasher::finish(&hasher));
            }
        })
    });
    group.finish();
}

/// OTLP-like log records: a message of one of six shapes and 5-10 attributes (the shape of the
/// attributes follows the message, with an optional field now and then), as the log detector
/// sees them after flattening.
fn log_records(count: usize) -> Vec<(String, Vec<(String, FieldType)>)> {
    (0..count)
        .map(|i| {
            let kind = i % 6;
            let message = match kind {
                0 => format!("GET /api/orders/{i} completed status=200 in {}ms", i % 97),
                1 => format!(
                    "user {} logged in from 10.1.{}.{}",
                    i % 1000,
                    i % 250,
                    i % 7
                ),
                2 => format!(
                    "Receiving block blk_{i} src: /10.250.{}.7:50010 dest: /10.250.3.9:50010",
                    i % 250
                ),
                3 => format!("PacketResponder {} for block blk_{i} terminating", i % 3),
                4 => format!(
                    "published {} messages to topic orders partition {}",
                    i % 50,
                    i % 12
                ),
                _ => format!(
                    "job etl-{} finished rows={} retries={}",
                    i % 9,
                    i * 3,
                    i % 2
                ),
            };
            let mut fields: Vec<(String, FieldType)> = [
                ("service.name", FieldType::String),
                ("stage", FieldType::String),
                ("host.name", FieldType::String),
                ("thread.id", FieldType::Number),
                ("code.function", FieldType::String),
            ]
            .iter()
            .map(|(path, field_type)| ((*path).to_owned(), *field_type))
            .collect();
            let extra: &[(&str, FieldType)] = match kind {
                0 => &[
                    ("http.method", FieldType::String),
                    ("http.status_code", FieldType::Number),
                    ("http.route", FieldType::String),
                    ("duration_ms", FieldType::Number),
                ],
                1 => &[
                    ("user.id", FieldType::Number),
                    ("client.ip", FieldType::String),
                ],
                2 | 3 => &[("block.id", FieldType::String)],
                4 => &[
                    ("messaging.destination", FieldType::String),
                    ("messaging.batch.size", FieldType::Number),
                    ("messaging.partition", FieldType::Number),
                ],
                _ => &[
                    ("job.name", FieldType::String),
                    ("job.rows", FieldType::Number),
                    ("job.retries", FieldType::Number),
                    ("job.success", FieldType::Bool),
                    ("job.tags", FieldType::Array),
                ],
            };
            fields.extend(extra.iter().map(|(p, t)| ((*p).to_owned(), *t)));
            if i % 17 == 0 {
                fields.push(("exception.type".to_owned(), FieldType::String));
            }
            (message, fields)
        })
        .collect()
}

/// Per log record, what the log detector runs of this crate: template mining of the message
/// and schema drift of the flattened attributes (given to the model in its reused buffer, as
/// the log detector does).
fn bench_log_records(c: &mut Criterion) {
    let records = log_records(12_000);
    let mut group = c.benchmark_group("log_record");
    group.throughput(Throughput::Elements(records.len() as u64));
    let mut miner = TemplateMiner::new(TemplateMiner::params().check().unwrap());
    let mut schema = SchemaDrift::new(SchemaDrift::params().check().unwrap());
    let mut fields = EventFields::new();
    group.bench_function("drain_and_schema_drift", |b| {
        b.iter(|| {
            for (message, attributes) in &records {
                black_box(miner.add(message, 9));
                fields.clear();
                for (path, field_type) in attributes {
                    fields.push(path, *field_type);
                }
                black_box(schema.observe_fields(&fields));
            }
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_models,
    bench_bank,
    bench_embeddings,
    bench_templates,
    bench_log_records
);

/// One fixed pass for instruction-count profilers (criterion picks its iteration counts by time,
/// so its runs do not repeat exactly): `--fixed=by_key|by_handle|model --passes=N` feeds the
/// criterion workload of that bench (1000 series for the bank) `N` times and exits; the
/// difference between two pass counts is the cost of the points alone.
fn fixed_run(mode: &str, passes: usize) {
    let values = series(POINTS);
    let keys: Vec<String> = (0..1000)
        .map(|i| format!("svc/stage-{i}|span.count"))
        .collect();
    let mut bank = SeriesBank::new(SeriesBank::params().check().unwrap());
    let ids: Vec<SeriesId> = keys.iter().map(|key| bank.handle(key)).collect();
    let mut model = RobustBaseline::new(RobustBaseline::params().check().unwrap());
    for _ in 0..passes {
        for (i, &value) in values.iter().enumerate() {
            let timestamp_ms = i as i64 * STEP_MS;
            match mode {
                "by_key" => {
                    black_box(bank.observe(&keys[i % keys.len()], timestamp_ms, value));
                }
                "by_handle" => {
                    black_box(bank.observe_id(ids[i % ids.len()], timestamp_ms, value));
                }
                _ => {
                    black_box(model.observe(timestamp_ms, value));
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |name: &str| {
        args.iter()
            .find_map(|arg| arg.strip_prefix(name).map(str::to_owned))
    };
    if let Some(mode) = value_of("--fixed=") {
        let passes = value_of("--passes=").map_or(1, |passes| passes.parse().unwrap());
        fixed_run(&mode, passes);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
