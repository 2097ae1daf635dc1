//! Points per second of `observe()`: the robust baseline beside a windowed Gaussian baseline,
//! per model and through the series bank.
//!
//! Run with `cargo bench -p pipewarden-detector --bench score`; compare the models as ratios of
//! their throughputs measured in the same run.

// The parameters are constants known to be valid: a failure is a bug to surface at once.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use linfa::ParamGuard;
use pipewarden_detector::{RobustBaseline, SeriesBank, WindowedGaussian};

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
    }
    group.finish();
}

criterion_group!(benches, bench_models, bench_bank);
criterion_main!(benches);
