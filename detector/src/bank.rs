//! The series bank: one model per series key, capped in number, scored point by point.
//!
//! [`SeriesBank::observe`] scores a point of a series against that series' model *before* the
//! point updates it, maps the raw score to 0-100 ([`crate::score`]) and explains it. Points of a
//! series still in warm-up score 0 and never alert. At most `max_series` models are held: a new
//! series beyond the cap evicts the least-recently-updated one (its history is lost; the key
//! starts a fresh warm-up if it comes back), and every eviction is counted.
//!
//! ```
//! use linfa::ParamGuard;
//! use pipewarden_detector::{Direction, SeriesBank};
//!
//! let mut bank = SeriesBank::new(SeriesBank::params().max_series(1000).check()?);
//! for i in 0..100 {
//!     bank.observe("svc/ingest|span.count", i * 10_000, 100.0 + (i % 7) as f64);
//! }
//! let point = bank.observe("svc/ingest|span.count", 1_000_000, 400.0);
//! assert!(point.is_anomaly);
//! assert_eq!(point.explanation.direction, Direction::Up);
//! # Ok::<(), pipewarden_detector::SeriesBankParamsError>(())
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use linfa::ParamGuard;

use crate::error::SeriesBankParamsError;
use crate::models::robust_baseline::{
    RobustBaseline, RobustBaselineParams, RobustBaselineValidParams, validate_params,
};
use crate::score::{Explanation, Score, z_at_score};

/// Feature named by the explanations of univariate models.
const VALUE_FEATURE: &str = "value";

/// Marks the end of the recency list.
const NIL: usize = usize::MAX;

/// Checked parameters of a [`SeriesBank`]; obtained from [`SeriesBankParams`] through
/// [`ParamGuard::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesBankValidParams {
    max_series: usize,
    alert_threshold: f64,
    model: RobustBaselineValidParams,
}

impl SeriesBankValidParams {
    /// Returns the most series held at once.
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// Returns the score (0-100) from which a point is an anomaly.
    pub fn alert_threshold(&self) -> f64 {
        self.alert_threshold
    }

    /// Returns the hyperparameters of every per-series model.
    pub fn model(&self) -> &RobustBaselineValidParams {
        &self.model
    }
}

/// Unchecked parameters of a [`SeriesBank`], built with consuming setters from
/// [`SeriesBank::params`] and checked with [`ParamGuard::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesBankParams(SeriesBankValidParams);

impl Default for SeriesBankParams {
    fn default() -> Self {
        SeriesBankParams::new()
    }
}

impl SeriesBankParams {
    /// Returns the defaults: `max_series` 100000, `alert_threshold` 70, the model defaults of
    /// [`RobustBaselineParams::new`] (`warmup_points` 20, `window_points` 64).
    pub fn new() -> Self {
        SeriesBankParams(SeriesBankValidParams {
            max_series: 100_000,
            alert_threshold: 70.0,
            model: RobustBaselineParams::new().0,
        })
    }

    /// Sets the most series (at least 1) held at once.
    pub fn max_series(mut self, max_series: usize) -> Self {
        self.0.max_series = max_series;
        self
    }

    /// Sets the score (0-100) from which a point past warm-up is an anomaly.
    pub fn alert_threshold(mut self, alert_threshold: f64) -> Self {
        self.0.alert_threshold = alert_threshold;
        self
    }

    /// Sets the hyperparameters of every per-series model (checked with the bank's).
    pub fn model(mut self, model: RobustBaselineParams) -> Self {
        self.0.model = model.0;
        self
    }

    /// Sets the per-series model's `warmup_points` (see [`RobustBaselineParams::warmup_points`]).
    pub fn warmup_points(mut self, warmup_points: usize) -> Self {
        self.0.model.warmup_points = warmup_points;
        self
    }

    /// Sets the per-series model's `window_points` (see [`RobustBaselineParams::window_points`]).
    pub fn window_points(mut self, window_points: usize) -> Self {
        self.0.model.window_points = window_points;
        self
    }
}

fn validate(params: &SeriesBankValidParams) -> Result<(), SeriesBankParamsError> {
    if params.max_series == 0 {
        return Err(SeriesBankParamsError::MaxSeries(params.max_series));
    }
    if !(0.0..=100.0).contains(&params.alert_threshold) {
        return Err(SeriesBankParamsError::AlertThreshold(
            params.alert_threshold,
        ));
    }
    validate_params(&params.model)?;
    Ok(())
}

impl ParamGuard for SeriesBankParams {
    type Checked = SeriesBankValidParams;
    type Error = SeriesBankParamsError;

    fn check_ref(&self) -> Result<&Self::Checked, Self::Error> {
        validate(&self.0)?;
        Ok(&self.0)
    }

    fn check(self) -> Result<Self::Checked, Self::Error> {
        validate(&self.0)?;
        Ok(self.0)
    }
}

/// One scored point of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPoint {
    /// Anomaly score in 0..=100 (0 during warm-up and for non-finite values).
    pub score: f64,
    /// Whether the score reached the alert threshold (never during warm-up).
    pub is_anomaly: bool,
    /// What was seen against what was expected.
    pub explanation: Explanation,
    /// Whether the previous point of the same series was an anomaly too.
    pub continuing: bool,
    /// Name of the model that scored the point.
    pub model: &'static str,
    /// Version of that model.
    pub model_version: u32,
}

/// One series: its model and its place in the recency list.
#[derive(Debug, Clone)]
struct Slot {
    key: Arc<str>,
    model: RobustBaseline,
    previous_was_anomaly: bool,
    /// Neighbour updated more recently (`NIL` for the most recent).
    newer: usize,
    /// Neighbour updated less recently (`NIL` for the least recent).
    older: usize,
}

/// Per-series models, capped at `max_series` with least-recently-updated eviction.
#[derive(Debug, Clone)]
pub struct SeriesBank {
    params: SeriesBankValidParams,
    /// z at which a deviation reaches the alert threshold: half-width of explanation bands.
    band_z: f64,
    index: HashMap<Arc<str>, usize>,
    slots: Vec<Slot>,
    most_recent: usize,
    least_recent: usize,
    evictions: u64,
    key_bytes: usize,
}

impl SeriesBank {
    /// Returns the default parameters (see [`SeriesBankParams::new`]).
    pub fn params() -> SeriesBankParams {
        SeriesBankParams::new()
    }

    /// Returns an empty bank.
    pub fn new(params: SeriesBankValidParams) -> Self {
        SeriesBank {
            band_z: z_at_score(params.alert_threshold),
            params,
            index: HashMap::new(),
            slots: Vec::new(),
            most_recent: NIL,
            least_recent: NIL,
            evictions: 0,
            key_bytes: 0,
        }
    }

    /// Returns the parameters of the bank.
    pub fn hyperparams(&self) -> &SeriesBankValidParams {
        &self.params
    }

    /// Returns the number of series held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Returns whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Returns how many series were evicted to respect `max_series`.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Returns an estimate of the memory one series costs: its slot, model buffers, index entry
    /// and key (average key length of the series held).
    pub fn approx_bytes_per_series(&self) -> usize {
        let model_heap = RobustBaseline::approx_heap_bytes_for(&self.params.model);
        // An Arc<str> allocation holds two counters besides the bytes.
        let key_heap = 2 * size_of::<usize>() + self.key_bytes / self.slots.len().max(1);
        // A hash table entry plus one control byte, at its typical 7/8 load.
        let index_entry = (size_of::<(Arc<str>, usize)>() + 1) * 8 / 7;
        size_of::<Slot>() + model_heap + key_heap + index_entry
    }

    /// Scores the point `value` of series `key` at `timestamp_ms` against the series' history,
    /// then adds it to that history. Never panics: non-finite values score 0 and are not
    /// absorbed.
    pub fn observe(&mut self, key: &str, timestamp_ms: i64, value: f64) -> ScoredPoint {
        let slot_index = self.slot_for(key);
        self.touch(slot_index);
        let band_z = self.band_z;
        let alert_threshold = self.params.alert_threshold;
        let slot = &mut self.slots[slot_index];
        let typical_before = slot.model.typical();
        let scored = slot.model.is_warm() && value.is_finite();
        let (score, explanation) = match slot.model.observe(timestamp_ms, value) {
            Some(deviation) => (
                Score::from_deviation(&deviation).value(),
                Explanation::from_deviation(VALUE_FEATURE, &deviation, band_z),
            ),
            None => (
                0.0,
                Explanation::unscored(VALUE_FEATURE, value, typical_before.unwrap_or(value)),
            ),
        };
        let is_anomaly = scored && score >= alert_threshold;
        let continuing = is_anomaly && slot.previous_was_anomaly;
        slot.previous_was_anomaly = is_anomaly;
        ScoredPoint {
            score,
            is_anomaly,
            explanation,
            continuing,
            model: RobustBaseline::NAME,
            model_version: RobustBaseline::VERSION,
        }
    }

    /// Returns the slot of `key`, creating it (and evicting the least recent series at the cap).
    fn slot_for(&mut self, key: &str) -> usize {
        if let Some(&slot_index) = self.index.get(key) {
            return slot_index;
        }
        let key: Arc<str> = Arc::from(key);
        self.key_bytes += key.len();
        if self.slots.len() < self.params.max_series {
            let slot_index = self.slots.len();
            self.slots.push(Slot {
                key: Arc::clone(&key),
                model: RobustBaseline::new(self.params.model.clone()),
                previous_was_anomaly: false,
                newer: NIL,
                older: NIL,
            });
            self.link_as_most_recent(slot_index);
            self.index.insert(key, slot_index);
            return slot_index;
        }
        // At the cap (max_series >= 1, so there is a least recent slot): reuse it.
        let slot_index = self.least_recent;
        let slot = &mut self.slots[slot_index];
        let evicted = std::mem::replace(&mut slot.key, Arc::clone(&key));
        slot.model.reset();
        slot.previous_was_anomaly = false;
        self.key_bytes -= evicted.len();
        self.index.remove(&evicted);
        self.index.insert(key, slot_index);
        self.evictions += 1;
        slot_index
    }

    /// Moves `slot_index` to the most recent end of the recency list.
    fn touch(&mut self, slot_index: usize) {
        if self.most_recent == slot_index {
            return;
        }
        let Slot { newer, older, .. } = self.slots[slot_index];
        if newer != NIL {
            self.slots[newer].older = older;
        }
        if older != NIL {
            self.slots[older].newer = newer;
        } else if self.least_recent == slot_index {
            self.least_recent = newer;
        }
        self.link_as_most_recent(slot_index);
    }

    /// Puts an unlinked slot at the most recent end of the recency list.
    fn link_as_most_recent(&mut self, slot_index: usize) {
        let previous = self.most_recent;
        self.slots[slot_index].newer = NIL;
        self.slots[slot_index].older = previous;
        if previous != NIL {
            self.slots[previous].newer = slot_index;
        }
        self.most_recent = slot_index;
        if self.least_recent == NIL {
            self.least_recent = slot_index;
        }
    }
}

#[cfg(test)]
mod tests;
