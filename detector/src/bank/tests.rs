use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::score::Direction;

const STEP_MS: i64 = 10_000;

fn bank() -> SeriesBank {
    SeriesBank::new(SeriesBank::params().check().unwrap())
}

/// Standard normal draws (Box-Muller) from a seeded generator.
fn gaussian_noise(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            let u2: f64 = rng.random();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect()
}

fn observe_all(bank: &mut SeriesBank, key: &str, values: &[f64]) -> Vec<ScoredPoint> {
    values
        .iter()
        .enumerate()
        .map(|(i, &value)| bank.observe(key, i as i64 * STEP_MS, value))
        .collect()
}

#[test]
fn spike_is_detected_with_direction_actual_and_typical() {
    let mut bank = bank();
    let mut values: Vec<f64> = gaussian_noise(1, 300)
        .iter()
        .map(|x| 100.0 + 2.0 * x)
        .collect();
    values[200] = 160.0;
    values[250] = 40.0;
    let points = observe_all(&mut bank, "s", &values);

    let spike = &points[200];
    assert!(spike.is_anomaly);
    assert!(
        spike.score > bank.hyperparams().alert_threshold(),
        "{}",
        spike.score
    );
    assert_eq!(spike.explanation.direction, Direction::Up);
    assert_eq!(spike.explanation.actual, 160.0);
    assert!(
        (spike.explanation.typical - 100.0).abs() < 2.0,
        "{:?}",
        spike.explanation
    );
    assert!(spike.explanation.lower < 100.0 && spike.explanation.upper > 100.0);
    assert!(spike.explanation.upper < 160.0);
    assert_eq!(spike.explanation.feature, "value");
    assert_eq!(
        (spike.model, spike.model_version),
        (RobustBaseline::NAME, RobustBaseline::VERSION)
    );
    assert!(!spike.continuing);

    let dip = &points[250];
    assert!(dip.is_anomaly);
    assert_eq!(dip.explanation.direction, Direction::Down);
    assert_eq!(dip.explanation.actual, 40.0);

    let anomalies: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].is_anomaly)
        .collect();
    assert_eq!(anomalies, vec![200, 250]);
}

#[test]
fn constant_series_has_no_anomaly() {
    let mut bank = bank();
    let points = observe_all(&mut bank, "constant", &[42.0; 1000]);
    assert!(
        points
            .iter()
            .all(|point| point.score == 0.0 && !point.is_anomaly)
    );
    let zeros = observe_all(&mut bank, "zeros", &[0.0; 1000]);
    assert!(zeros.iter().all(|point| point.score == 0.0));
}

#[test]
fn gentle_noisy_series_has_no_anomaly() {
    let mut bank = bank();
    // Gentle: a slow wave plus Gaussian noise bounded at 4 sigma (this seed draws one 5-sigma
    // value, a real outlier for a series this regular).
    let noise = gaussian_noise(7, 20_000);
    let values: Vec<f64> = noise
        .iter()
        .enumerate()
        .map(|(i, x)| {
            500.0
                + 30.0 * (i as f64 / 2000.0 * std::f64::consts::TAU).sin()
                + 5.0 * x.clamp(-4.0, 4.0)
        })
        .collect();
    let points = observe_all(&mut bank, "gentle", &values);
    let anomalies = points.iter().filter(|point| point.is_anomaly).count();
    assert_eq!(anomalies, 0);
}

#[test]
fn level_shift_alerts_then_adapts() {
    let mut bank = bank();
    let window = bank.hyperparams().model().window_points();
    let noise = gaussian_noise(3, 600);
    let values: Vec<f64> = noise
        .iter()
        .enumerate()
        .map(|(i, x)| if i < 200 { 10.0 } else { 50.0 } + x)
        .collect();
    let points = observe_all(&mut bank, "shift", &values);
    assert!(points[200].is_anomaly);
    assert!(!points[200].continuing);
    assert_eq!(points[200].explanation.direction, Direction::Up);
    // The shift is one episode: later alerts of it (if it gets worse) are continuing ones.
    let episode: Vec<&ScoredPoint> = points[201..200 + window]
        .iter()
        .filter(|point| point.is_anomaly)
        .collect();
    assert!(episode.len() <= 3, "{}", episode.len());
    assert!(episode.iter().all(|point| point.continuing));
    let late_anomalies = points[200 + window..]
        .iter()
        .filter(|point| point.is_anomaly)
        .count();
    assert_eq!(late_anomalies, 0);
}

#[test]
fn repeats_of_an_episode_are_damped_unless_they_get_worse() {
    let mut values: Vec<f64> = gaussian_noise(17, 2000)
        .iter()
        .map(|x| 100.0 + 2.0 * x)
        .collect();
    // Three spikes in a row, the last one the highest, then a lone spike much later.
    values[300] = 118.0;
    values[301] = 117.0;
    values[302] = 400.0;
    values[1500] = 150.0;
    let mut damped = bank();
    let points = observe_all(&mut damped, "s", &values);
    let alerts = |points: &[ScoredPoint]| -> Vec<usize> {
        (0..points.len())
            .filter(|&i| points[i].is_anomaly)
            .collect()
    };
    // The default margin: 400 is not 15 score points above the first spike's near-100 score.
    assert_eq!(alerts(&points), vec![300, 1500]);
    assert!(!points[300].continuing && !points[1500].continuing);
    assert_eq!(points[301].score, 0.0);
    assert_eq!(points[302].score, 0.0);

    // Without a margin the worse third spike is news again, and continues the episode.
    let params = SeriesBank::params().repeat_margin(0.0);
    let mut no_margin = SeriesBank::new(params.check().unwrap());
    let points = observe_all(&mut no_margin, "s", &values);
    assert_eq!(alerts(&points), vec![300, 302, 1500]);
    assert!(points[302].continuing);
    assert_eq!(points[301].score, 0.0);

    // Without damping every point of the burst alerts and the scores are the raw ones.
    let params = SeriesBank::params().repeat_half_life_points(0.0);
    let mut undamped = SeriesBank::new(params.check().unwrap());
    let raw = observe_all(&mut undamped, "s", &values);
    assert!(raw[301].is_anomaly && raw[301].continuing);
    assert_eq!(raw[300].score, points[300].score);
    assert!(raw[301].score > 0.0);
}

#[test]
fn stuck_value_in_a_varying_series_alerts_but_a_usual_resting_value_does_not() {
    let mut bank = bank();
    let mut values: Vec<f64> = gaussian_noise(13, 600)
        .iter()
        .map(|x| 50.0 + 3.0 * x)
        .collect();
    values.extend(std::iter::repeat_n(51.25, 60));
    let points = observe_all(&mut bank, "frozen", &values);
    let first_alert = (600..660)
        .find(|&i| points[i].is_anomaly)
        .expect("stuck value alerts");
    assert!((620..=630).contains(&first_alert), "{first_alert}");

    // Bursts separated by idle stretches at zero of varying length: zero is a usual value.
    let mut bursty = Vec::new();
    for burst in 0..40 {
        bursty.extend(std::iter::repeat_n(0.0, 10 + (burst * 7) % 50));
        bursty.extend((0..5).map(|i| 100.0 + f64::from(i)));
    }
    let points = observe_all(&mut bank, "bursty", &bursty);
    let idle_alerts = points
        .iter()
        .zip(&bursty)
        .filter(|(p, v)| p.is_anomaly && **v == 0.0);
    assert_eq!(idle_alerts.count(), 0);
}

#[test]
fn daily_pattern_is_learnt_and_an_off_hours_surge_alerts() {
    let mut bank = bank();
    let step_ms = 300_000; // 5 minutes: 288 points a day
    let noise = gaussian_noise(17, 288 * 8);
    let mut values: Vec<f64> = noise
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let hour = (i % 288) / 12;
            (if (8..18).contains(&hour) { 80.0 } else { 20.0 }) + 2.0 * x
        })
        .collect();
    // Day 7, 3 a.m.: daytime traffic at night (well inside the range the series visits daily).
    let surge = 288 * 7 + 36;
    for value in &mut values[surge..surge + 6] {
        *value += 60.0;
    }
    let points: Vec<ScoredPoint> = values
        .iter()
        .enumerate()
        .map(|(i, &value)| bank.observe("daily", i as i64 * step_ms, value))
        .collect();
    assert!(points[surge].is_anomaly, "{:?}", points[surge]);
    assert_eq!(points[surge].explanation.direction, Direction::Up);
    // Once the profile is on (from day 2), the daily transitions stop alerting.
    let late_alerts: Vec<usize> = (288 * 3..surge).filter(|&i| points[i].is_anomaly).collect();
    assert!(late_alerts.is_empty(), "{late_alerts:?}");
}

#[test]
fn warmup_points_score_zero_and_never_alert() {
    let mut bank = SeriesBank::new(SeriesBank::params().alert_threshold(0.0).check().unwrap());
    let warmup = bank.hyperparams().model().warmup_points();
    let values: Vec<f64> = (0..100)
        .map(|i| if i % 2 == 0 { 0.0 } else { 1000.0 })
        .collect();
    let points = observe_all(&mut bank, "s", &values);
    assert!(
        points[..warmup]
            .iter()
            .all(|point| point.score == 0.0 && !point.is_anomaly)
    );
    assert!(points[warmup..].iter().all(|point| point.is_anomaly));
}

#[test]
fn non_finite_values_score_zero_and_are_not_absorbed() {
    let mut bank = bank();
    let values: Vec<f64> = gaussian_noise(5, 100).iter().map(|x| 10.0 + x).collect();
    observe_all(&mut bank, "s", &values);
    for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let point = bank.observe("s", 1_000_000, value);
        assert_eq!(point.score, 0.0);
        assert!(!point.is_anomaly);
        assert_eq!(point.explanation.direction, Direction::None);
        assert!((point.explanation.typical - 10.0).abs() < 1.0);
    }
    let fresh = bank.observe("new", 0, f64::NAN);
    assert_eq!(fresh.score, 0.0);
    assert_eq!(bank.slots[bank.index["s"]].model.absorbed(), 100);
    assert_eq!(bank.slots[bank.index["new"]].model.absorbed(), 0);
}

#[test]
fn least_recently_updated_series_is_evicted_at_the_cap() {
    let mut bank = SeriesBank::new(SeriesBank::params().max_series(3).check().unwrap());
    for key in ["a", "b", "c"] {
        bank.observe(key, 0, 1.0);
    }
    assert_eq!((bank.len(), bank.evictions()), (3, 0));
    bank.observe("a", 1, 1.0);
    bank.observe("d", 2, 1.0);
    assert_eq!((bank.len(), bank.evictions()), (3, 1));
    assert!(!bank.index.contains_key("b"));
    bank.observe("e", 3, 1.0);
    assert!(!bank.index.contains_key("c"));
    bank.observe("a", 4, 1.0);
    bank.observe("f", 5, 1.0);
    assert!(!bank.index.contains_key("d"));
    assert_eq!((bank.len(), bank.evictions()), (3, 3));
    let mut keys: Vec<&str> = bank.index.keys().map(|key| &**key).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["a", "e", "f"]);
    assert_eq!(bank.slots[bank.index["a"]].model.absorbed(), 3);
    assert_eq!(bank.slots[bank.index["f"]].model.absorbed(), 1);
}

#[test]
fn one_series_cap_evicts_on_every_new_key() {
    let mut bank = SeriesBank::new(SeriesBank::params().max_series(1).check().unwrap());
    for (i, key) in ["a", "b", "b", "a"].into_iter().enumerate() {
        bank.observe(key, i as i64, 1.0);
    }
    assert_eq!((bank.len(), bank.evictions()), (1, 2));
}

#[test]
fn memory_per_series_is_reported() {
    let mut bank = bank();
    bank.observe("svc/ingest|span.count", 0, 1.0);
    let bytes = bank.approx_bytes_per_series();
    let window = bank.hyperparams().model().window_points();
    // Window values (sorted), their arrival slots (2 bytes each) and their seasonal offsets (4);
    // seasonal profile (5 bytes per bin) and time-of-day context (4).
    let window = window * (8 + 2 + 4);
    let season = bank.hyperparams().model().season_bins() * (5 + 4);
    assert!(bytes > window + season, "{bytes}");
    assert!(bytes < window + season + 1280, "{bytes}");
}

#[test]
fn observing_through_handles_scores_exactly_as_through_keys() {
    // Three series through a two-series cap: evictions on the way.
    let values: Vec<f64> = gaussian_noise(5, 3000)
        .iter()
        .enumerate()
        .map(|(i, x)| if i % 400 == 399 { 25.0 } else { 100.0 + x })
        .collect();
    let params = SeriesBank::params().max_series(2).check().unwrap();
    let (mut by_key, mut by_handle) = (SeriesBank::new(params.clone()), SeriesBank::new(params));
    let keys = ["a", "b", "c"];
    // A handle is taken at a series' first point, and again whenever it is reported stale.
    let mut handles: Vec<Option<SeriesId>> = vec![None; keys.len()];
    let mut stale = 0;
    for (i, &value) in values.iter().enumerate() {
        // Mostly "a" and "b"; "c" now and then, evicting one of them.
        let which = if i % 50 == 49 { 2 } else { i % 2 };
        let timestamp_ms = i as i64 * STEP_MS;
        let expected = by_key.observe(keys[which], timestamp_ms, value);
        let held = handles[which].and_then(|id| by_handle.observe_id(id, timestamp_ms, value));
        let point = match held {
            Some(point) => point,
            None => {
                stale += usize::from(handles[which].is_some());
                let id = by_handle.handle(keys[which]);
                handles[which] = Some(id);
                by_handle
                    .observe_id(id, timestamp_ms, value)
                    .expect("a fresh handle is valid")
            }
        };
        assert_eq!(point, expected, "point {i}");
        assert_eq!(by_handle.key_of(handles[which].unwrap()), Some(keys[which]));
    }
    assert!(stale > 50, "{stale}");
    assert_eq!(by_handle.evictions(), by_key.evictions());
    assert!(by_handle.evictions() > 50);
}

#[test]
fn a_stale_handle_feeds_nothing_and_a_new_handle_starts_a_fresh_series() {
    let mut bank = SeriesBank::new(SeriesBank::params().max_series(1).check().unwrap());
    let a = bank.handle("a");
    for i in 0..30 {
        assert!(bank.observe_id(a, i, 1.0 + (i % 3) as f64).is_some());
    }
    // "b" takes the only slot: the handle of "a" is stale and must not feed "b"'s model.
    let b = bank.handle("b");
    assert_eq!(bank.evictions(), 1);
    assert_eq!(bank.key_of(a), None);
    assert_eq!(bank.key_of(b), Some("b"));
    assert_eq!(bank.observe_id(a, 30, 1e9), None);
    assert_eq!(bank.slots[bank.index["b"]].model.absorbed(), 0);
    assert!(bank.observe_id(b, 31, 1.0).is_some());
    assert_eq!(bank.slots[bank.index["b"]].model.absorbed(), 1);
    // "a" comes back in a fresh warm-up, under a new handle; the old one stays stale.
    let a_again = bank.handle("a");
    assert_ne!(a_again, a);
    assert_eq!(bank.observe_id(a, 32, 1.0), None);
    assert_eq!(bank.observe_id(b, 33, 1.0), None);
    let point = bank.observe_id(a_again, 34, 1e9).expect("fresh handle");
    assert!(!point.is_anomaly && point.score == 0.0);
    // A handle beyond this bank's slots (from a larger bank) names no series.
    let mut other = SeriesBank::new(SeriesBank::params().max_series(4).check().unwrap());
    for key in ["w", "x", "y", "z"] {
        other.handle(key);
    }
    assert_eq!(bank.observe_id(other.handle("z"), 35, 1.0), None);
}

#[test]
fn taking_a_handle_adds_a_new_series_as_the_most_recent_but_does_not_refresh_a_held_one() {
    let mut bank = SeriesBank::new(SeriesBank::params().max_series(2).check().unwrap());
    bank.observe("a", 0, 1.0);
    bank.observe("b", 1, 1.0);
    // A handle of the held "a" is not an update: "a" stays the least recent and goes first.
    let a = bank.handle("a");
    let c = bank.handle("c");
    assert_eq!(bank.evictions(), 1);
    assert_eq!(bank.key_of(a), None);
    // "c" was added as the most recent: the next new series evicts "b".
    bank.observe("d", 2, 1.0);
    assert!(bank.key_of(c).is_some());
    assert!(!bank.index.contains_key("b"));
}

#[test]
fn scoring_is_deterministic() {
    let values: Vec<f64> = gaussian_noise(11, 2000)
        .iter()
        .enumerate()
        .map(|(i, x)| if i % 300 == 299 { 30.0 } else { *x })
        .collect();
    let run = || {
        let mut bank = SeriesBank::new(SeriesBank::params().max_series(2).check().unwrap());
        let mut points = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let key = ["a", "b", "c"][i % 3];
            points.push(bank.observe(key, i as i64, *value));
        }
        points
    };
    assert_eq!(run(), run());
}

#[test]
fn params_reject_each_bad_value() {
    let error = SeriesBank::params().max_series(0).check().unwrap_err();
    assert_eq!(error, SeriesBankParamsError::MaxSeries(0));
    let error = SeriesBank::params()
        .min_point_interval_ms(-1)
        .check()
        .unwrap_err();
    assert_eq!(error, SeriesBankParamsError::MinPointInterval(-1));
    for threshold in [-1.0, 100.5, f64::NAN] {
        let error = SeriesBank::params()
            .alert_threshold(threshold)
            .check()
            .unwrap_err();
        assert!(
            matches!(error, SeriesBankParamsError::AlertThreshold(_)),
            "{threshold}"
        );
    }
    for half_life in [-1.0, f64::INFINITY, f64::NAN] {
        let error = SeriesBank::params()
            .repeat_half_life_points(half_life)
            .check()
            .unwrap_err();
        assert!(
            matches!(error, SeriesBankParamsError::RepeatHalfLife(_)),
            "{half_life}"
        );
    }
    for margin in [-1.0, 101.0, f64::NAN] {
        let error = SeriesBank::params()
            .repeat_margin(margin)
            .check()
            .unwrap_err();
        assert!(
            matches!(error, SeriesBankParamsError::RepeatMargin(_)),
            "{margin}"
        );
    }
    for damping in [-0.1, 1.5, f64::NAN] {
        let error = SeriesBank::params()
            .repeat_damping(damping)
            .check()
            .unwrap_err();
        assert!(
            matches!(error, SeriesBankParamsError::RepeatDamping(_)),
            "{damping}"
        );
    }
    let error = SeriesBank::params().window_points(2).check().unwrap_err();
    assert!(matches!(error, SeriesBankParamsError::Model(_)));
    let error = SeriesBank::params().warmup_points(0).check().unwrap_err();
    assert!(matches!(error, SeriesBankParamsError::Model(_)));
    let error = SeriesBank::params()
        .model(RobustBaseline::params().ewma_alpha(0.0))
        .check();
    assert!(matches!(error, Err(SeriesBankParamsError::Model(_))));
    let checked = SeriesBank::params()
        .warmup_points(5)
        .window_points(32)
        .check()
        .unwrap();
    assert_eq!(
        (
            checked.model().warmup_points(),
            checked.model().window_points()
        ),
        (5, 32)
    );
    assert_eq!(
        (checked.max_series(), checked.alert_threshold()),
        (100_000, 70.0)
    );
}

proptest! {
    #[test]
    fn scores_are_finite_and_within_0_to_100(
        values in proptest::collection::vec(
            prop_oneof![
                -1e6..1e6f64,
                proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
                Just(0.0),
                Just(1.0),
            ],
            0..300,
        ),
        window in 4usize..80,
        warmup in 2usize..30,
    ) {
        let params = SeriesBank::params().window_points(window).warmup_points(warmup).max_series(2);
        let mut bank = SeriesBank::new(params.check().unwrap());
        for (i, value) in values.iter().enumerate() {
            let point = bank.observe(if i % 5 == 0 { "x" } else { "y" }, i as i64, *value);
            prop_assert!(point.score.is_finite());
            prop_assert!((0.0..=100.0).contains(&point.score), "{}", point.score);
            prop_assert!(!point.is_anomaly || point.score >= 70.0);
        }
    }
}

#[test]
fn an_episode_that_opens_below_the_threshold_alerts_once_it_gets_there() {
    let base: Vec<f64> = gaussian_noise(29, 600)
        .iter()
        .map(|x| 100.0 + 2.0 * x)
        .collect();
    let undamped = || {
        SeriesBank::new(
            SeriesBank::params()
                .repeat_half_life_points(0.0)
                .check()
                .unwrap(),
        )
    };
    // Raw scores of two steps up at points 500 and 501, each found by a scan of the value.
    let raw = |first: f64, second: f64| -> (f64, f64) {
        let mut values = base[..502].to_vec();
        values[500] = first;
        values[501] = second;
        let points = observe_all(&mut undamped(), "s", &values);
        (points[500].score, points[501].score)
    };
    let first = (0..400)
        .map(|i| 100.0 + f64::from(i) * 0.1)
        .find(|&v| (60.0..68.0).contains(&raw(v, 100.0).0))
        .expect("a value scoring just below the threshold");
    let (below, _) = raw(first, 100.0);
    let second = (0..400)
        .map(|i| first + f64::from(i) * 0.1)
        .find(|&v| raw(first, v).1 >= 72.0)
        .expect("a value scoring above the threshold");
    let (_, above) = raw(first, second);
    // Within the margin of the first score: had the first been remembered, the second would
    // have been taken for a repeat.
    assert!(above <= below + 15.0, "{below} then {above}");

    let mut values = base.clone();
    values[500] = first;
    values[501] = second;
    let points = observe_all(&mut bank(), "s", &values);
    assert!(!points[500].is_anomaly, "{}", points[500].score);
    assert!(points[501].is_anomaly, "{below} then {above}");
    assert_eq!(points[501].score, above);
    assert!(!points[501].continuing);
}

#[test]
fn a_lesser_repeat_within_a_few_hundred_points_stays_part_of_the_episode() {
    let mut values: Vec<f64> = gaussian_noise(23, 2400)
        .iter()
        .map(|x| 100.0 + 2.0 * x)
        .collect();
    // A spike scoring 100, a lesser one (raw score about 72) 120 points later, and the same
    // lesser one 1,500 points later.
    values[500] = 400.0;
    values[620] = 116.0;
    values[2120] = 116.0;
    let alerts = |params: SeriesBankParams| -> Vec<usize> {
        let points = observe_all(&mut SeriesBank::new(params.check().unwrap()), "s", &values);
        (0..points.len())
            .filter(|&i| points[i].is_anomaly)
            .collect()
    };
    let defaults = SeriesBank::params().check().unwrap();
    assert_eq!(defaults.repeat_half_life_points(), 200.0);
    assert_eq!(defaults.repeat_margin(), 15.0);
    // The remembered peak, 100 halved over 200 points, is still about 66 at the repeat: 72 is
    // not 15 points above it. The later one finds the memory faded and alerts.
    assert_eq!(alerts(SeriesBank::params()), vec![500, 2120]);
    // A memory of half the length with a smaller margin (the defaults of model version 5)
    // took the repeat for a new incident.
    let shorter = SeriesBank::params()
        .repeat_half_life_points(100.0)
        .repeat_margin(10.0);
    assert_eq!(alerts(shorter), vec![500, 620, 2120]);
}

/// Running totals of a counter rising by `rate` per second give or take noise, one point every
/// `STEP_MS`.
fn noisy_totals(seed: u64, n: usize, rate: f64) -> Vec<f64> {
    let mut total = 1_000.0;
    gaussian_noise(seed, n)
        .iter()
        .map(|x| {
            total += (rate + 0.05 * rate * x).max(0.0) * (STEP_MS / 1000) as f64;
            total
        })
        .collect()
}

#[test]
fn a_running_total_is_scored_by_its_rate_and_a_stall_alerts() {
    let mut totals = noisy_totals(11, 300, 50.0);
    // The counter stops at point 250 for good.
    for i in 250..300 {
        totals[i] = totals[249];
    }
    let mut bank = bank();
    let points: Vec<ScoredPoint> = totals
        .iter()
        .enumerate()
        .map(|(i, &total)| bank.observe_total("c", i as i64 * STEP_MS, total))
        .collect();
    // The first point only starts the first rate.
    assert_eq!(points[0].score, 0.0);
    // A rising ramp is not news while its rate holds.
    assert!(points[1..250].iter().all(|p| !p.is_anomaly));
    let stall = &points[250];
    assert!(stall.is_anomaly, "{stall:?}");
    assert_eq!(stall.explanation.feature, RATE_FEATURE);
    assert_eq!(stall.explanation.actual, 0.0);
    assert!(
        (stall.explanation.typical - 50.0).abs() < 5.0,
        "{:?}",
        stall.explanation
    );
    assert_eq!(stall.explanation.direction, Direction::Down);
    // The same totals scored as plain values follow the ramp and see nothing at the stall.
    let mut plain = bank_with_records_off();
    let as_values: Vec<ScoredPoint> = totals
        .iter()
        .enumerate()
        .map(|(i, &total)| plain.observe("c", i as i64 * STEP_MS, total))
        .collect();
    assert!(!as_values[250].is_anomaly, "{:?}", as_values[250]);
}

/// A bank whose model has no record floor (a ramp beats its records at every point).
fn bank_with_records_off() -> SeriesBank {
    let model = RobustBaselineParams::default().record_gain(0.0);
    SeriesBank::new(SeriesBank::params().model(model).check().unwrap())
}

#[test]
fn a_reset_or_an_out_of_order_total_starts_the_next_rate_unscored() {
    let mut bank = bank();
    let steady: Vec<f64> = (0..100).map(|i| 1_000.0 + 500.0 * i as f64).collect();
    for (i, &total) in steady.iter().enumerate() {
        bank.observe_total("c", i as i64 * STEP_MS, total);
    }
    let t = 100 * STEP_MS;
    // The process restarted: the total fell. No rate, no alert, and the next rate starts here.
    let reset = bank.observe_total("c", t, 30.0);
    assert_eq!((reset.score, reset.is_anomaly), (0.0, false));
    assert_eq!(reset.explanation.feature, RATE_FEATURE);
    let after = bank.observe_total("c", t + STEP_MS, 530.0);
    assert!(!after.is_anomaly, "{after:?}");
    assert_eq!(after.explanation.actual, 50.0);
    // A point older than the last one (a late retry) starts the next rate too...
    let late = bank.observe_total("c", t - STEP_MS, 400.0);
    assert_eq!((late.score, late.is_anomaly), (0.0, false));
    // ...which is then the rate over the longer span, still 50 a second.
    let next = bank.observe_total("c", t + 2 * STEP_MS, 400.0 + 3.0 * 500.0);
    assert_eq!(next.explanation.actual, 50.0);
    assert!(!next.is_anomaly, "{next:?}");
    // Times as far apart as an i64 allows: a rate, no overflow.
    let mut far = SeriesBank::new(SeriesBank::params().check().unwrap());
    far.observe_total("c", i64::MIN, 0.0);
    let apart = far.observe_total("c", i64::MAX, 1e6);
    assert_eq!(apart.score, 0.0, "warming up");
    assert!(apart.explanation.actual > 0.0 && apart.explanation.actual < 1e-9);
    // A non-finite total scores 0 and leaves the baseline alone.
    let broken = bank.observe_total("c", t + 3 * STEP_MS, f64::NAN);
    assert_eq!((broken.score, broken.is_anomaly), (0.0, false));
    let resumed = bank.observe_total("c", t + 4 * STEP_MS, 1_900.0 + 2.0 * 500.0);
    assert_eq!(resumed.explanation.actual, 50.0);
}

#[test]
fn running_totals_through_handles_score_exactly_as_through_keys() {
    let totals = noisy_totals(12, 400, 20.0);
    let (mut by_key, mut by_handle) = (bank(), bank());
    let id = by_handle.handle("c");
    for (i, &total) in totals.iter().enumerate() {
        // Now and then a reset, to cover the baseline path too.
        let total = if i % 97 == 96 { 0.0 } else { total };
        let timestamp_ms = i as i64 * STEP_MS;
        let expected = by_key.observe_total("c", timestamp_ms, total);
        let point = by_handle
            .observe_total_id(id, timestamp_ms, total)
            .expect("the only series is never evicted");
        assert_eq!(point, expected, "point {i}");
    }
}

/// Increments of a counter rising by `rate` per second give or take noise, one point every
/// `STEP_MS`, each the increase since the previous point.
fn noisy_increments(seed: u64, n: usize, rate: f64) -> Vec<f64> {
    let totals = noisy_totals(seed, n + 1, rate);
    totals.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

#[test]
fn an_increment_is_scored_as_its_rate_over_its_own_interval() {
    let increments = noisy_increments(13, 300, 50.0);
    let mut bank = bank();
    let mut plain = bank_with_records_off();
    let mut points = Vec::new();
    for (i, &increment) in increments.iter().enumerate().take(250) {
        let end = (i as i64 + 1) * STEP_MS;
        points.push(bank.observe_increment("c", end, end - STEP_MS, increment));
        plain.observe("c", end, increment);
    }
    assert!(points.iter().all(|p| !p.is_anomaly), "a steady rate");
    assert!(
        points[200..]
            .iter()
            .all(|p| p.explanation.feature == RATE_FEATURE)
    );
    // A flush a fifth of an interval after the last export: a fifth of the events, at the same
    // rate. Scored as a plain value it is a drop.
    let last = 250 * STEP_MS;
    let flush = (last + STEP_MS / 5, increments[250] / 5.0);
    let flushed = bank.observe_increment("c", flush.0, last, flush.1);
    assert!(!flushed.is_anomaly, "{flushed:?}");
    assert!(
        (flushed.explanation.actual - 50.0).abs() < 10.0,
        "{flushed:?}"
    );
    let as_value = plain.observe("c", flush.0, flush.1);
    assert!(as_value.is_anomaly, "{as_value:?}");
    // Then the source stops: an interval without events.
    let stall = bank.observe_increment("c", flush.0 + STEP_MS, flush.0, 0.0);
    assert!(stall.is_anomaly, "{stall:?}");
    assert_eq!(stall.explanation.feature, RATE_FEATURE);
    assert_eq!(stall.explanation.actual, 0.0);
    assert!((stall.explanation.typical - 50.0).abs() < 5.0, "{stall:?}");
    assert_eq!(stall.explanation.direction, Direction::Down);
}

#[test]
fn an_increment_without_a_start_runs_from_the_previous_point() {
    let mut bank = bank();
    // No start time: the first point has no interval, so it only starts the next one.
    let first = bank.observe_increment("c", STEP_MS, 0, 500.0);
    assert_eq!((first.score, first.is_anomaly), (0.0, false));
    let second = bank.observe_increment("c", 2 * STEP_MS, 0, 500.0);
    assert_eq!(second.explanation.actual, 50.0);
    // A start not before the time is as good as none.
    let third = bank.observe_increment("c", 3 * STEP_MS, 3 * STEP_MS, 1_000.0);
    assert_eq!(third.explanation.actual, 100.0);
    // A negative increment (not a counter's) and a point not later than the last: unscored.
    let negative = bank.observe_increment("c", 4 * STEP_MS, 3 * STEP_MS, -5.0);
    assert_eq!((negative.score, negative.is_anomaly), (0.0, false));
    let late = bank.observe_increment("c", 2 * STEP_MS, 0, 500.0);
    assert_eq!((late.score, late.is_anomaly), (0.0, false));
    // A non-finite increment scores 0.
    let broken = bank.observe_increment("c", 6 * STEP_MS, 5 * STEP_MS, f64::NAN);
    assert_eq!((broken.score, broken.is_anomaly), (0.0, false));
}

#[test]
fn increments_through_handles_score_exactly_as_through_keys() {
    let increments = noisy_increments(14, 400, 20.0);
    let (mut by_key, mut by_handle) = (bank(), bank());
    let id = by_handle.handle("c");
    for (i, &increment) in increments.iter().enumerate() {
        let end = (i as i64 + 1) * STEP_MS;
        // Now and then no start time, to cover the fallback too.
        let start = if i % 53 == 52 { 0 } else { end - STEP_MS };
        let expected = by_key.observe_increment("c", end, start, increment);
        let point = by_handle
            .observe_increment_id(id, end, start, increment)
            .expect("the only series is never evicted");
        assert_eq!(point, expected, "point {i}");
    }
}

/// A bank that scores at most one point of a series per `STEP_MS`.
fn thinning_bank() -> SeriesBank {
    SeriesBank::new(
        SeriesBank::params()
            .min_point_interval_ms(STEP_MS)
            .check()
            .unwrap(),
    )
}

#[test]
fn points_closer_than_the_min_interval_are_thinned_unseen_by_the_model() {
    let noise = gaussian_noise(21, 300);
    let (mut thinning, mut every_step) = (thinning_bank(), bank());
    // Ten points per step; only the first of each step is kept, so the model sees exactly what
    // a bank fed one point per step sees.
    for (i, x) in noise.iter().enumerate() {
        let step = i as i64 * STEP_MS;
        let expected = every_step.observe("g", step, 100.0 + 2.0 * x);
        let kept = thinning.observe("g", step, 100.0 + 2.0 * x);
        assert_eq!(kept, expected, "step {i}");
        for k in 1..10 {
            // A wild value that the model never sees.
            let thinned = thinning.observe("g", step + k * STEP_MS / 10, 1e6);
            assert_eq!((thinned.score, thinned.is_anomaly), (0.0, false));
            assert_eq!(thinned.explanation.actual, 1e6);
        }
    }
    assert_eq!(thinning.thinned(), 300 * 9);
    assert_eq!(every_step.thinned(), 0);
    // The same spike a whole step after the last kept point is scored, and alerts.
    let spike = thinning.observe("g", 300 * STEP_MS, 1e6);
    assert!(spike.is_anomaly, "{spike:?}");
    // A point earlier than the last kept one is not thinned (it is scored as ever).
    let before = thinning.thinned();
    thinning.observe("g", 100 * STEP_MS + 1, 100.0);
    assert_eq!(thinning.thinned(), before);
    // A non-finite value is ignored, not kept: the next point, within the interval of it but
    // not of the last kept one, is scored.
    thinning.observe("g", 400 * STEP_MS, f64::NAN);
    thinning.observe("g", 400 * STEP_MS + 1, 100.0);
    assert_eq!(thinning.thinned(), before);
}

#[test]
fn a_thinned_running_total_is_spanned_by_the_next_rate() {
    let mut bank = thinning_bank();
    // 50 a second, a point every tenth of a step: the kept points' rates are exact.
    let tenth = STEP_MS / 10;
    let mut scored = Vec::new();
    for i in 0..3_000 {
        let total = 1_000.0 + 50.0 * (i * tenth) as f64 / 1000.0;
        let point = bank.observe_total("c", i * tenth, total);
        if i % 10 == 0 && i > 0 {
            scored.push(point);
        } else {
            assert_eq!((point.score, point.is_anomaly), (0.0, false), "point {i}");
        }
    }
    assert!(
        scored
            .iter()
            .all(|p| p.explanation.actual == 50.0 && !p.is_anomaly)
    );
    assert_eq!(bank.thinned(), 2_700);
    // The counter stops: the first kept point after it has a rate of 0, an anomaly.
    let last = 1_000.0 + 50.0 * (3_000 * tenth) as f64 / 1000.0;
    let steady = bank.observe_total("c", 3_000 * tenth, last);
    assert_eq!(steady.explanation.actual, 50.0);
    let stall = bank.observe_total("c", 3_010 * tenth, last);
    assert!(stall.is_anomaly, "{stall:?}");
    assert_eq!(stall.explanation.actual, 0.0);
}

#[test]
fn a_thinned_increment_still_ends_the_interval_of_the_next_one_without_a_start() {
    let mut bank = thinning_bank();
    let tenth = STEP_MS / 10;
    // 10 events per tenth of a step (100 a second), without start times.
    for i in 1..2_000 {
        let point = bank.observe_increment("c", i * tenth, 0, 100.0);
        if i % 10 == 1 && i > 1 {
            // Its interval runs from the thinned point just before it, not from the last kept
            // one: the rate is that of its own increment.
            assert_eq!(
                point.explanation.actual,
                100.0 / (tenth as f64 / 1000.0),
                "{i}"
            );
            assert!(!point.is_anomaly);
        } else if i > 1 {
            assert_eq!((point.score, point.is_anomaly), (0.0, false), "point {i}");
        }
    }
    assert_eq!(bank.thinned(), 1_799);
}

#[test]
fn a_thinned_point_does_not_refresh_its_series_recency() {
    let mut bank = SeriesBank::new(
        SeriesBank::params()
            .max_series(2)
            .min_point_interval_ms(STEP_MS)
            .check()
            .unwrap(),
    );
    let (a, b) = (bank.handle("a"), bank.handle("b"));
    bank.observe_id(a, 0, 1.0).unwrap();
    bank.observe_id(b, 0, 1.0).unwrap();
    // A point of `a` within the interval is thinned: `a` stays the least recently updated.
    bank.observe_id(a, STEP_MS / 2, 1.0).unwrap();
    assert_eq!(bank.thinned(), 1);
    bank.observe("c", 0, 1.0);
    assert!(bank.key_of(a).is_none(), "a was evicted");
    assert_eq!(bank.key_of(b), Some("b"));
}
