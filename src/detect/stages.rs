//! Multivariate scoring of each stage's window figures: one feature vector per closed window
//! (span throughput, error ratio, latency p50/p95/p99, log and metric-point rates), scored by a
//! PCA residual model of the stage ([`PcaResidual`]) fitted on the stage's recent windows.
//!
//! Per stage, the last `history_windows` vectors are kept (a ring). Once `min_history` are
//! there, and after every `refit_every` further windows, the model is refitted **in the
//! background** (`tokio::task::spawn_blocking`, on a copy of the history; the previous model
//! keeps scoring meanwhile): the training path. Every window is scored by the current model
//! before it joins the history: the prediction path. Columns are standardised with the
//! history's mean and standard deviation at fit time, so no unit dominates.
//!
//! An anomaly (`STAGE|stage.multivariate`, name `stage.multivariate`, model `pca_residual`)
//! names the feature with the largest share of the residual; `actual` is its value and
//! `typical` its mean over the history the model was fitted on, the band `typical ± 3` standard
//! deviations of that history. The score is the model's standard normal deviate of the residual through the shared
//! normalisation ([`Score::from_z`]).

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;

use linfa::DatasetBase;
use linfa::ParamGuard;
use linfa::traits::Fit;
use ndarray::{Array1, Array2};
use pipewarden_collector::StageWindow;
use pipewarden_detector::Score;
use pipewarden_detector::models::pca_residual::{PcaResidual, PcaResidualValidParams};
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::anomaly::Anomaly;
use crate::detect::DetectTelemetry;

/// Names of the features, in column order.
pub const FEATURES: [&str; 7] = [
    "span.throughput_per_s",
    "span.error_ratio",
    "span.latency_p50_ms",
    "span.latency_p95_ms",
    "span.latency_p99_ms",
    "log.rate_per_s",
    "metric.rate_per_s",
];

/// Squared residual, in standardised units, under which a window is normal whatever the
/// model's residual distribution: on nearly exact (low-rank) history the residual eigenvalues
/// vanish and any rounding would otherwise score 100.
const SPE_FLOOR: f64 = 0.25;

/// Version of this wiring, reported with its anomalies.
pub const MODEL_VERSION: u32 = 1;

/// `[detector.multivariate]`: per-stage scoring of the window feature vector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultivariateConfig {
    /// Scores each stage's windows. Default true.
    pub enabled: bool,
    /// Windows kept per stage for fitting (a ring). Default 256.
    pub history_windows: usize,
    /// Windows a stage needs before its first fit. Default 32.
    pub min_history: usize,
    /// Windows between refits. Default 32.
    pub refit_every: usize,
    /// Most stages scored (windows of further stages are not). Default 1000.
    pub max_stages: usize,
}

impl Default for MultivariateConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            history_windows: 256,
            min_history: 32,
            refit_every: 32,
            max_stages: 1000,
        }
    }
}

impl MultivariateConfig {
    /// Returns the bytes the caps allow.
    pub fn approx_bytes(&self) -> u64 {
        if !self.enabled {
            return 0;
        }
        let per_stage = (self.history_windows * FEATURES.len() * 8 + 4096) as u64;
        self.max_stages as u64 * per_stage
    }

    /// Checks the section (paths relative to `detector.`).
    ///
    /// # Errors
    /// The key path and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.min_history < 8 {
            return Err((
                "multivariate.min_history".into(),
                format!("must be at least 8, got {}", self.min_history),
            ));
        }
        if self.history_windows < self.min_history {
            return Err((
                "multivariate.history_windows".into(),
                format!(
                    "must be at least min_history ({}), got {}",
                    self.min_history, self.history_windows
                ),
            ));
        }
        if self.refit_every == 0 {
            return Err((
                "multivariate.refit_every".into(),
                "must be at least 1".into(),
            ));
        }
        if self.max_stages == 0 {
            return Err((
                "multivariate.max_stages".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A fitted model with the standardisation it was fitted with.
#[derive(Debug)]
struct Fitted {
    model: PcaResidual,
    mean: Array1<f64>,
    std: Array1<f64>,
}

impl Fitted {
    fn standardise(&self, row: &[f64; FEATURES.len()]) -> Array1<f64> {
        Array1::from_iter(
            row.iter()
                .zip(self.mean.iter().zip(self.std.iter()))
                .map(|(x, (m, s))| (x - m) / s),
        )
    }
}

#[derive(Debug, Default)]
struct StageState {
    history: VecDeque<[f64; FEATURES.len()]>,
    since_fit: usize,
    model: Option<Arc<Fitted>>,
    refit: Option<JoinHandle<Option<Fitted>>>,
    previous_was_anomaly: bool,
}

/// How refits run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refit {
    /// On a blocking thread (the live pipeline).
    Background,
    /// Inline (tests, replays).
    Inline,
}

/// The per-stage multivariate scorer.
#[derive(Debug)]
pub struct StageScorer {
    config: MultivariateConfig,
    params: PcaResidualValidParams,
    threshold: f64,
    refit: Refit,
    stages: HashMap<String, StageState>,
    skipped: u64,
    telemetry: DetectTelemetry,
}

/// Returns the feature vector of a window.
pub fn window_features(window: &StageWindow) -> [f64; FEATURES.len()] {
    let seconds = ((window.window_end_ms - window.window_start_ms) as f64 / 1000.0).max(1e-3);
    let error_ratio = if window.spans == 0 {
        0.0
    } else {
        window.span_errors as f64 / window.spans as f64
    };
    [
        window.spans as f64 / seconds,
        error_ratio,
        window.latency_p50_ms.unwrap_or(0.0),
        window.latency_p95_ms.unwrap_or(0.0),
        window.latency_p99_ms.unwrap_or(0.0),
        window.log_records as f64 / seconds,
        window.metric_points as f64 / seconds,
    ]
}

fn fit(params: &PcaResidualValidParams, rows: Vec<[f64; FEATURES.len()]>) -> Option<Fitted> {
    let n = rows.len();
    let data = Array2::from_shape_fn((n, FEATURES.len()), |(i, j)| rows[i][j]);
    let mean = data.mean_axis(ndarray::Axis(0))?;
    // A constant column gets a unit scale (it then only matters when it moves).
    let std = data
        .std_axis(ndarray::Axis(0), 1.0)
        .mapv(|s| if s > 1e-9 { s } else { 1.0 });
    let standardised = (&data - &mean) / &std;
    let model = params.fit(&DatasetBase::new(standardised, ())).ok()?;
    Some(Fitted { model, mean, std })
}

impl StageScorer {
    /// Returns a scorer.
    ///
    /// # Errors
    /// When the model refuses its parameters.
    pub fn new(
        config: MultivariateConfig,
        threshold: f64,
        refit: Refit,
        telemetry: DetectTelemetry,
    ) -> anyhow::Result<Self> {
        let params = PcaResidual::params()
            .tf_idf(false)
            .check()
            .map_err(|err| anyhow::anyhow!("detector.multivariate: {err}"))?;
        Ok(Self {
            config,
            params,
            threshold,
            refit,
            stages: HashMap::new(),
            skipped: 0,
            telemetry,
        })
    }

    /// Returns the number of stages scored and the windows skipped at `max_stages`.
    pub fn sizes(&self) -> (usize, u64) {
        (self.stages.len(), self.skipped)
    }

    /// Returns whether `stage` has a fitted model.
    pub fn is_fitted(&self, stage: &str) -> bool {
        self.stages.get(stage).is_some_and(|s| s.model.is_some())
    }

    /// Scores each window (prediction path), adds it to its stage's history and starts refits
    /// when due (training path); anomalies are appended to `out`.
    pub async fn observe(&mut self, windows: &[StageWindow], out: &mut Vec<Anomaly>) {
        for window in windows {
            if !self.stages.contains_key(&window.stage) {
                if self.stages.len() >= self.config.max_stages {
                    self.skipped += 1;
                    self.telemetry.evict("stage_window", 1);
                    continue;
                }
                self.stages
                    .insert(window.stage.clone(), StageState::default());
            }
            let Some(state) = self.stages.get_mut(&window.stage) else {
                continue;
            };
            // A finished background refit replaces the model.
            if let Some(handle) = state.refit.take() {
                if handle.is_finished() {
                    if let Ok(Some(fitted)) = handle.await {
                        state.model = Some(Arc::new(fitted));
                    }
                } else {
                    state.refit = Some(handle);
                }
            }
            let row = window_features(window);
            if let Some(fitted) = &state.model {
                let anomaly = score_row(
                    fitted,
                    &row,
                    window,
                    self.threshold,
                    state.previous_was_anomaly,
                );
                state.previous_was_anomaly = anomaly.is_some();
                out.extend(anomaly);
            }
            if state.history.len() >= self.config.history_windows {
                state.history.pop_front();
            }
            state.history.push_back(row);
            state.since_fit += 1;
            let due = state.history.len() >= self.config.min_history
                && (state.model.is_none() || state.since_fit >= self.config.refit_every);
            if due && state.refit.is_none() {
                state.since_fit = 0;
                let rows: Vec<_> = state.history.iter().copied().collect();
                let params = self.params.clone();
                match self.refit {
                    Refit::Inline => {
                        if let Some(fitted) = fit(&params, rows) {
                            state.model = Some(Arc::new(fitted));
                        }
                    }
                    Refit::Background => {
                        state.refit = Some(tokio::task::spawn_blocking(move || fit(&params, rows)));
                    }
                }
            }
        }
    }
}

fn score_row(
    fitted: &Fitted,
    row: &[f64; FEATURES.len()],
    window: &StageWindow,
    threshold: f64,
    continuing: bool,
) -> Option<Anomaly> {
    let standardised = fitted.standardise(row);
    let spe = fitted.model.spe(standardised.view());
    if spe <= SPE_FLOOR {
        return None;
    }
    let z = fitted.model.z(spe);
    // A degenerate residual spectrum (history with nearly constant columns) leaves the
    // deviate undefined: a residual beyond the floor and the Q-statistic is then unexplained.
    let z = if z.is_nan() {
        if spe > fitted.model.threshold() {
            f64::INFINITY
        } else {
            0.0
        }
    } else {
        z
    };
    let score = Score::from_z(z).value();
    if score < threshold {
        return None;
    }
    let (column, _share) = fitted.model.top_contributor(standardised.view())?;
    let std = fitted.std[column];
    let actual = row[column];
    let typical = fitted.mean[column];
    Some(Anomaly {
        id: 0,
        timestamp_ms: window.window_end_ms,
        series_key: format!("{}|stage.multivariate", window.stage),
        stage: window.stage.clone(),
        name: "stage.multivariate".to_owned(),
        model: "pca_residual".to_owned(),
        model_version: MODEL_VERSION,
        score,
        actual,
        typical,
        lower: typical - 3.0 * std,
        upper: typical + 3.0 * std,
        feature: FEATURES[column].to_owned(),
        direction: if actual > typical { "up" } else { "down" }.to_owned(),
        continuing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(i: i64, spans: u64, errors: u64, p95: f64) -> StageWindow {
        StageWindow {
            stage: "svc/s".into(),
            window_start_ms: i * 10_000,
            window_end_ms: (i + 1) * 10_000,
            spans,
            span_errors: errors,
            latency_p50_ms: Some(p95 / 2.0),
            latency_p95_ms: Some(p95),
            latency_p99_ms: Some(p95 * 1.2),
            metric_points: 100,
            log_records: spans / 2,
            ..Default::default()
        }
    }

    /// Deterministic noise in 0..1.
    fn noise(i: i64, salt: i64) -> f64 {
        ((i * 7919 + salt * 104_729) % 1000) as f64 / 1000.0
    }

    fn normal(i: i64) -> StageWindow {
        let spans = 1000 + (noise(i, 1) * 200.0) as u64;
        let errors = (spans as f64 * (0.01 + noise(i, 2) * 0.004)) as u64;
        let mut w = window(i, spans, errors, 50.0 + noise(i, 3) * 10.0);
        w.latency_p50_ms = Some(25.0 + noise(i, 4) * 5.0);
        w.latency_p99_ms = Some(70.0 + noise(i, 5) * 20.0);
        w.log_records = spans / 2 + (noise(i, 6) * 50.0) as u64;
        w.metric_points = 100 + (noise(i, 7) * 10.0) as u64;
        w
    }

    #[tokio::test]
    async fn a_window_off_the_stage_correlations_names_its_feature() {
        let config = MultivariateConfig::default();
        let mut scorer =
            StageScorer::new(config, 70.0, Refit::Inline, DetectTelemetry::default()).unwrap();
        let mut out = Vec::new();
        let windows: Vec<_> = (0..64).map(normal).collect();
        scorer.observe(&windows, &mut out).await;
        assert!(scorer.is_fitted("svc/s"));
        assert!(out.is_empty(), "{out:?}");
        // Throughput as usual, but half the spans fail.
        scorer
            .observe(&[window(64, 1000, 500, 52.0)], &mut out)
            .await;
        assert_eq!(out.len(), 1, "{out:?}");
        let a = &out[0];
        assert_eq!(a.feature, "span.error_ratio");
        assert_eq!(a.model, "pca_residual");
        assert_eq!(a.series_key, "svc/s|stage.multivariate");
        assert_eq!(a.actual, 0.5);
        assert!(a.typical < 0.1, "{a:?}");
        assert_eq!(a.direction, "up");
        assert!(a.score >= 70.0);
    }

    #[tokio::test]
    async fn refits_run_in_the_background_and_stages_are_capped() {
        let config = MultivariateConfig {
            max_stages: 1,
            ..MultivariateConfig::default()
        };
        let mut scorer =
            StageScorer::new(config, 70.0, Refit::Background, DetectTelemetry::default()).unwrap();
        let mut out = Vec::new();
        let windows: Vec<_> = (0..32).map(normal).collect();
        scorer.observe(&windows, &mut out).await;
        assert!(
            !scorer.is_fitted("svc/s"),
            "the first fit runs in the background"
        );
        for i in 32..200 {
            scorer.observe(&[normal(i)], &mut out).await;
            if scorer.is_fitted("svc/s") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(scorer.is_fitted("svc/s"));
        let mut other = normal(0);
        other.stage = "other".into();
        scorer.observe(&[other], &mut out).await;
        assert_eq!(scorer.sizes(), (1, 1));
    }

    #[tokio::test]
    async fn a_history_of_constant_columns_still_scores_a_change() {
        let config = MultivariateConfig {
            min_history: 16,
            ..MultivariateConfig::default()
        };
        let mut scorer =
            StageScorer::new(config, 70.0, Refit::Inline, DetectTelemetry::default()).unwrap();
        let mut out = Vec::new();
        let windows: Vec<_> = (0..40)
            .map(|i| window(i, 20, 2, 30.0 + (i % 5) as f64))
            .collect();
        scorer.observe(&windows, &mut out).await;
        assert!(out.is_empty(), "{out:?}");
        scorer.observe(&[window(41, 20, 15, 32.0)], &mut out).await;
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].feature, "span.error_ratio");
        assert_eq!(out[0].score, 100.0);
    }

    #[test]
    fn config_checks() {
        assert!(MultivariateConfig::default().validate().is_ok());
        let bad = MultivariateConfig {
            history_windows: 10,
            ..MultivariateConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().0,
            "multivariate.history_windows"
        );
    }
}
