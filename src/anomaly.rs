//! Anomaly records: what the detector found, as stored and served.

use pipewarden_detector::ScoredPoint;
use serde::{Deserialize, Serialize};

/// One scored point at or above the alert threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Store id (0 before it is stored).
    pub id: i64,
    /// Time of the point, Unix milliseconds.
    pub timestamp_ms: i64,
    /// Canonical key of the series.
    pub series_key: String,
    /// Stage of the series.
    pub stage: String,
    /// Signal name of the series.
    pub name: String,
    /// Model that scored it.
    pub model: String,
    /// Version of that model.
    pub model_version: u32,
    /// Score, 0-100.
    pub score: f64,
    /// Observed value.
    pub actual: f64,
    /// What the model expected.
    pub typical: f64,
    /// Lower end of the expected band.
    pub lower: f64,
    /// Upper end of the expected band.
    pub upper: f64,
    /// Feature that contributed most.
    pub feature: String,
    /// `up`, `down` or `none`.
    pub direction: String,
    /// True when the previous point of the series was anomalous too.
    pub continuing: bool,
}

/// Which series an anomaly is about, and its time.
#[derive(Debug, Clone, Copy)]
pub struct SeriesAt<'a> {
    /// Canonical key of the series.
    pub key: &'a str,
    /// Stage of the series.
    pub stage: &'a str,
    /// Signal name of the series.
    pub name: &'a str,
    /// Time of the point, Unix milliseconds.
    pub timestamp_ms: i64,
}

impl Anomaly {
    /// The record of a point a series model scored as anomalous; `feature` names what moved
    /// (the model's own explanation is used for everything else).
    pub fn from_scored(series: SeriesAt<'_>, scored: &ScoredPoint, feature: String) -> Self {
        let e = &scored.explanation;
        Self {
            id: 0,
            timestamp_ms: series.timestamp_ms,
            series_key: series.key.to_owned(),
            stage: series.stage.to_owned(),
            name: series.name.to_owned(),
            model: scored.model.to_owned(),
            model_version: scored.model_version,
            score: scored.score,
            actual: e.actual,
            typical: e.typical,
            lower: e.lower,
            upper: e.upper,
            feature,
            direction: e.direction.as_str().to_owned(),
            continuing: scored.continuing,
        }
    }
}
