//! The series bank: one model per series key, capped in number, scored point by point.
//!
//! [`SeriesBank::observe`] scores a point of a series against that series' model *before* the
//! point updates it, maps the raw score to 0-100 ([`crate::score`]) and explains it. Points of a
//! series still in warm-up score 0 and never alert. A point whose score does not exceed the
//! series' remembered peak (the highest recent alert-level score, decaying with
//! `repeat_half_life_points`) by `repeat_margin` is a repeat of an episode already reported: its
//! score is multiplied by `repeat_damping` (0 by default), so one incident raises one alert, plus
//! one whenever it gets clearly worse. Scores below the alert threshold are not remembered, so
//! an episode that opens just below it still alerts once it reaches it. At most
//! `max_series` models are held: a new series beyond the cap evicts the least-recently-updated
//! one (its history is lost; the key starts a fresh warm-up if it comes back), and every eviction
//! is counted.
//!
//! A caller that feeds the same series again and again can take a [`SeriesId`] for a key once
//! ([`SeriesBank::handle`]) and observe through it ([`SeriesBank::observe_id`]), skipping the
//! hashing and comparison of the key string at every point. A handle names the series, not its
//! place: once the series is evicted, observing through the handle returns `None` (the point is
//! not absorbed) and a fresh handle must be taken, so a stale handle never feeds another
//! series' model.
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

use foldhash::fast::RandomState;
use linfa::ParamGuard;

use crate::error::SeriesBankParamsError;
use crate::models::robust_baseline::{
    RobustBaseline, RobustBaselineParams, RobustBaselineValidParams, validate_params,
};
use crate::score::{Explanation, Score, z_at_score};

/// Feature named by the explanations of univariate models.
const VALUE_FEATURE: &str = "value";

/// Feature named by the explanations of running totals: what is scored is their rate.
pub const RATE_FEATURE: &str = "rate_per_s";

/// Default half-life of the remembered peak score, in points of a series: an episode of a
/// series sampled every 5 minutes is remembered for most of a day.
const DEFAULT_REPEAT_HALF_LIFE_POINTS: f64 = 200.0;

/// Default margin over the remembered peak for a new alert, in score points: a repeat must be
/// clearly worse (at a near-100 peak, no repeat is) to alert again.
const DEFAULT_REPEAT_MARGIN: f64 = 15.0;

/// Marks the end of the recency list.
const NIL: usize = usize::MAX;

/// Checked parameters of a [`SeriesBank`]; obtained from [`SeriesBankParams`] through
/// [`ParamGuard::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesBankValidParams {
    max_series: usize,
    alert_threshold: f64,
    repeat_half_life_points: f64,
    repeat_damping: f64,
    repeat_margin: f64,
    min_point_interval_ms: i64,
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

    /// Returns the half-life, in points of a series, of the memory of its highest recent score
    /// (0: repeats are not damped).
    pub fn repeat_half_life_points(&self) -> f64 {
        self.repeat_half_life_points
    }

    /// Returns the factor applied to a score that does not exceed the remembered peak.
    pub fn repeat_damping(&self) -> f64 {
        self.repeat_damping
    }

    /// Returns by how many score points a point must exceed the remembered peak to count as
    /// new.
    pub fn repeat_margin(&self) -> f64 {
        self.repeat_margin
    }

    /// Returns the least time, in ms, between two points of a series that are scored (0: every
    /// point is).
    pub fn min_point_interval_ms(&self) -> i64 {
        self.min_point_interval_ms
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
    /// Returns the defaults: `max_series` 100000, `alert_threshold` 70,
    /// `repeat_half_life_points` 200, `repeat_damping` 0, `repeat_margin` 15,
    /// `min_point_interval_ms` 0 (every point scored), the model defaults of
    /// [`RobustBaselineParams::new`] (`warmup_points` 20, `window_points` 64).
    pub fn new() -> Self {
        SeriesBankParams(SeriesBankValidParams {
            max_series: 100_000,
            alert_threshold: 70.0,
            repeat_half_life_points: DEFAULT_REPEAT_HALF_LIFE_POINTS,
            repeat_damping: 0.0,
            repeat_margin: DEFAULT_REPEAT_MARGIN,
            min_point_interval_ms: 0,
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

    /// Sets the half-life (>= 0 points of the series) of the memory of the series' highest
    /// recent alert-level score: a point whose score does not exceed that remembered peak by
    /// `repeat_margin` is a repeat of an episode already reported, and its score is multiplied by
    /// `repeat_damping` (its explanation still describes the raw deviation). A lasting
    /// anomaly therefore alerts when it starts and again only when it gets worse, as one alert
    /// per incident should. 0 disables the damping.
    pub fn repeat_half_life_points(mut self, repeat_half_life_points: f64) -> Self {
        self.0.repeat_half_life_points = repeat_half_life_points;
        self
    }

    /// Sets the factor (0..=1) applied to the score of a repeat (see
    /// [`SeriesBankParams::repeat_half_life_points`]); 1 disables the damping.
    pub fn repeat_damping(mut self, repeat_damping: f64) -> Self {
        self.0.repeat_damping = repeat_damping;
        self
    }

    /// Sets by how many score points (0..=100) a point must exceed the remembered peak to be
    /// new rather than a repeat (see [`SeriesBankParams::repeat_half_life_points`]); a margin
    /// keeps a slowly escalating episode (a value stuck ever longer) to one alert.
    pub fn repeat_margin(mut self, repeat_margin: f64) -> Self {
        self.0.repeat_margin = repeat_margin;
        self
    }

    /// Sets the least time (>= 0 ms) between two scored points of a series: a point less than
    /// that after the series' last kept point (by their timestamps) is *thinned*: it scores 0,
    /// never alerts and teaches the model nothing, as if it had not been sent. A running total's
    /// next rate then spans the thinned points (the total keeps counting them); a thinned
    /// increment is a sample left out. It bounds the model's work per series, and so the whole
    /// bank's to `max_series` points per interval, whatever rate a sender exports at; points at
    /// or above the interval apart, and points earlier than the last kept one, are scored as
    /// usual. 0 (the default) scores every point. A thinned point costs almost nothing: it is
    /// explained as its value sent (feature `value`, compared with nothing), does not refresh
    /// its series' recency (its kept points do) and is counted ([`SeriesBank::thinned`]).
    ///
    /// ```
    /// use linfa::ParamGuard;
    /// use pipewarden_detector::SeriesBank;
    ///
    /// let mut bank = SeriesBank::new(SeriesBank::params().min_point_interval_ms(1_000).check()?);
    /// // A gauge exported every 100 ms: one point a second is scored.
    /// for i in 0..100 {
    ///     bank.observe("svc|queue.depth", i * 100, 50.0 + (i % 3) as f64);
    /// }
    /// assert_eq!(bank.thinned(), 90);
    /// # Ok::<(), pipewarden_detector::SeriesBankParamsError>(())
    /// ```
    pub fn min_point_interval_ms(mut self, min_point_interval_ms: i64) -> Self {
        self.0.min_point_interval_ms = min_point_interval_ms;
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
    if !(params.repeat_half_life_points.is_finite() && params.repeat_half_life_points >= 0.0) {
        return Err(SeriesBankParamsError::RepeatHalfLife(
            params.repeat_half_life_points,
        ));
    }
    if !(0.0..=1.0).contains(&params.repeat_damping) {
        return Err(SeriesBankParamsError::RepeatDamping(params.repeat_damping));
    }
    if !(0.0..=100.0).contains(&params.repeat_margin) {
        return Err(SeriesBankParamsError::RepeatMargin(params.repeat_margin));
    }
    if params.min_point_interval_ms < 0 {
        return Err(SeriesBankParamsError::MinPointInterval(
            params.min_point_interval_ms,
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
    /// Whether this anomaly continues an episode of the same series already reported: an
    /// earlier point alerted and the remembered peak score (see
    /// [`SeriesBankParams::repeat_half_life_points`]) is still at the alert threshold.
    pub continuing: bool,
    /// Name of the model that scored the point.
    pub model: &'static str,
    /// Version of that model.
    pub model_version: u32,
}

/// A handle on one series of a [`SeriesBank`] (see [`SeriesBank::handle`]): observing through it
/// skips the lookup of the key. It stays valid until the series is evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesId {
    slot: usize,
    /// The slot's generation when the handle was taken; a slot moves to the next generation
    /// whenever it is given to another series.
    generation: u64,
}

/// One series: its key and model.
#[derive(Debug, Clone)]
struct Slot {
    key: Arc<str>,
    model: RobustBaseline,
    /// Highest recent undamped score at or above the alert threshold (0 if none), decaying with
    /// `repeat_half_life_points`.
    peak_score: f64,
    /// For a running total or an increment: the time and value of its last point, the start of
    /// the next rate.
    last_total: Option<(i64, f64)>,
}

/// A slot's place in the recency list. The links live apart from the slots, in one small
/// array: moving a series to the front rewrites its neighbours' links, and those neighbours'
/// (large, cold) slots need not be touched for it.
#[derive(Debug, Clone, Copy)]
struct Link {
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
    /// Per-point decay of the remembered peak score (0: repeats are not damped).
    peak_keep: f64,
    /// The models' hyperparameters, one copy shared by every series.
    model_params: Arc<RobustBaselineValidParams>,
    /// Key to slot; foldhash (randomly seeded) rather than SipHash: the lookup is a large share
    /// of the cost of a point.
    index: HashMap<Arc<str>, usize, RandomState>,
    slots: Vec<Slot>,
    /// Recency list, one entry per slot (same index).
    links: Vec<Link>,
    /// Per slot, how many times it was given to another series (checks handles).
    generations: Vec<u64>,
    /// Per slot, the time of its series' last point that was not thinned (see
    /// [`SeriesBankParams::min_point_interval_ms`]); apart from the slots, so that a thinned
    /// reading or running total touches one small array and nothing of the (large, cold) slot
    /// (a thinned increment also records its time in the slot, for the next interval).
    kept_ms: Vec<Option<i64>>,
    most_recent: usize,
    least_recent: usize,
    evictions: u64,
    /// Points thinned by `min_point_interval_ms`.
    thinned: u64,
    key_bytes: usize,
}

impl SeriesBank {
    /// Returns the default parameters (see [`SeriesBankParams::new`]).
    pub fn params() -> SeriesBankParams {
        SeriesBankParams::new()
    }

    /// Returns an empty bank.
    pub fn new(params: SeriesBankValidParams) -> Self {
        let peak_keep = if params.repeat_half_life_points > 0.0 {
            0.5f64.powf(1.0 / params.repeat_half_life_points)
        } else {
            0.0
        };
        SeriesBank {
            band_z: z_at_score(params.alert_threshold),
            peak_keep,
            model_params: Arc::new(params.model.clone()),
            params,
            index: HashMap::with_hasher(RandomState::default()),
            slots: Vec::new(),
            links: Vec::new(),
            generations: Vec::new(),
            kept_ms: Vec::new(),
            most_recent: NIL,
            least_recent: NIL,
            evictions: 0,
            thinned: 0,
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

    /// Returns how many points were thinned (see [`SeriesBankParams::min_point_interval_ms`]).
    pub fn thinned(&self) -> u64 {
        self.thinned
    }

    /// Returns an estimate of the memory one series costs: its slot, model buffers, index entry
    /// and key (average key length of the series held).
    pub fn approx_bytes_per_series(&self) -> usize {
        let model_heap = RobustBaseline::approx_heap_bytes_for(&self.params.model);
        // An Arc<str> allocation holds two counters besides the bytes.
        let key_heap = 2 * size_of::<usize>() + self.key_bytes / self.slots.len().max(1);
        // A hash table entry plus one control byte, at its typical 7/8 load.
        let index_entry = (size_of::<(Arc<str>, usize)>() + 1) * 8 / 7;
        size_of::<Slot>()
            + size_of::<Link>()
            + size_of::<u64>()
            + model_heap
            + key_heap
            + index_entry
    }

    /// Scores the point `value` of series `key` at `timestamp_ms` against the series' history,
    /// then adds it to that history. Never panics: non-finite values score 0 and are not
    /// absorbed.
    pub fn observe(&mut self, key: &str, timestamp_ms: i64, value: f64) -> ScoredPoint {
        let slot_index = self.slot_for(key);
        self.observe_value_slot(slot_index, timestamp_ms, value)
    }

    /// Scores a point of series `key` whose values are a running total (a cumulative counter):
    /// what is scored is its rate per second since the series' previous point, and the
    /// explanation names the feature [`RATE_FEATURE`]. The first point of a series, a point
    /// whose total fell (a reset) and a point not later than the previous one start the next
    /// rate instead: they score 0 and teach the model nothing. A non-finite total scores 0 and
    /// is ignored. A series should keep to one kind: observing its totals as plain values (or
    /// the reverse) feeds one model two different quantities.
    ///
    /// ```
    /// use linfa::ParamGuard;
    /// use pipewarden_detector::{RATE_FEATURE, SeriesBank};
    ///
    /// let mut bank = SeriesBank::new(SeriesBank::params().check()?);
    /// // 100 events a second, counted every 10 s, then the counter stops.
    /// for i in 0..60 {
    ///     bank.observe_total("consumer|events_total", i * 10_000, (i * 1_000) as f64);
    /// }
    /// let stalled = bank.observe_total("consumer|events_total", 600_000, 59_000.0);
    /// assert!(stalled.is_anomaly);
    /// assert_eq!(stalled.explanation.feature, RATE_FEATURE);
    /// assert_eq!((stalled.explanation.actual, stalled.explanation.typical), (0.0, 100.0));
    /// # Ok::<(), pipewarden_detector::SeriesBankParamsError>(())
    /// ```
    pub fn observe_total(&mut self, key: &str, timestamp_ms: i64, total: f64) -> ScoredPoint {
        let slot_index = self.slot_for(key);
        self.observe_total_slot(slot_index, timestamp_ms, total)
    }

    /// Scores a running total through a handle, exactly as [`SeriesBank::observe_total`] with
    /// the series' key does; `None` (nothing absorbed) when the handle is stale.
    pub fn observe_total_id(
        &mut self,
        id: SeriesId,
        timestamp_ms: i64,
        total: f64,
    ) -> Option<ScoredPoint> {
        if !self.is_current(id) {
            return None;
        }
        Some(self.observe_total_slot(id.slot, timestamp_ms, total))
    }

    /// Turns a running total into its rate since the previous point and scores that (see
    /// [`SeriesBank::observe_total`]).
    fn observe_total_slot(
        &mut self,
        slot_index: usize,
        timestamp_ms: i64,
        total: f64,
    ) -> ScoredPoint {
        if !total.is_finite() {
            // Scores 0 and is not absorbed, as a non-finite value is; the baseline stays.
            return self.observe_slot(slot_index, timestamp_ms, total, RATE_FEATURE);
        }
        // A thinned total leaves the rate's start where it was: the next rate spans it.
        if self.thin(slot_index, timestamp_ms) {
            return thinned_point(total);
        }
        let slot = &mut self.slots[slot_index];
        match slot.last_total.replace((timestamp_ms, total)) {
            Some((previous_ms, previous)) if timestamp_ms > previous_ms && total >= previous => {
                // Later, so positive; `abs_diff` cannot overflow whatever the two times are.
                let seconds = timestamp_ms.abs_diff(previous_ms) as f64 / 1000.0;
                let rate = (total - previous) / seconds;
                self.observe_slot(slot_index, timestamp_ms, rate, RATE_FEATURE)
            }
            // A new baseline: no rate to score.
            _ => self.unscored_rate(slot_index),
        }
    }

    /// Scores a point of series `key` whose value is an increment: the increase over its own
    /// interval, from `start_ms` to `timestamp_ms` (a delta sum). What is scored is the rate per
    /// second, `increment` over the interval, and the explanation names [`RATE_FEATURE`]. When
    /// the start is unknown (0) or not before the time, the interval runs from the series'
    /// previous point instead, and a first point without a start scores 0 and teaches the model
    /// nothing (as a negative increment does). A non-finite increment scores 0 and is ignored.
    ///
    /// ```
    /// use linfa::ParamGuard;
    /// use pipewarden_detector::{RATE_FEATURE, SeriesBank};
    ///
    /// let mut bank = SeriesBank::new(SeriesBank::params().check()?);
    /// // 100 events a second, exported every 10 s as the increase since the last export.
    /// for i in 1..60 {
    ///     bank.observe_increment("consumer|events", i * 10_000, (i - 1) * 10_000, 1_000.0);
    /// }
    /// // A flush 2 s after the last export: fewer events, the same rate.
    /// let flushed = bank.observe_increment("consumer|events", 592_000, 590_000, 200.0);
    /// assert!(!flushed.is_anomaly);
    /// assert_eq!(flushed.explanation.actual, 100.0);
    /// // The source stops: nothing in the next 10 s.
    /// let stalled = bank.observe_increment("consumer|events", 602_000, 592_000, 0.0);
    /// assert!(stalled.is_anomaly);
    /// assert_eq!(stalled.explanation.feature, RATE_FEATURE);
    /// # Ok::<(), pipewarden_detector::SeriesBankParamsError>(())
    /// ```
    pub fn observe_increment(
        &mut self,
        key: &str,
        timestamp_ms: i64,
        start_ms: i64,
        increment: f64,
    ) -> ScoredPoint {
        let slot_index = self.slot_for(key);
        self.observe_increment_slot(slot_index, timestamp_ms, start_ms, increment)
    }

    /// Scores an increment through a handle, exactly as [`SeriesBank::observe_increment`] with
    /// the series' key does; `None` (nothing absorbed) when the handle is stale.
    pub fn observe_increment_id(
        &mut self,
        id: SeriesId,
        timestamp_ms: i64,
        start_ms: i64,
        increment: f64,
    ) -> Option<ScoredPoint> {
        if !self.is_current(id) {
            return None;
        }
        Some(self.observe_increment_slot(id.slot, timestamp_ms, start_ms, increment))
    }

    /// Turns an increment into its rate over its interval and scores that (see
    /// [`SeriesBank::observe_increment`]).
    fn observe_increment_slot(
        &mut self,
        slot_index: usize,
        timestamp_ms: i64,
        start_ms: i64,
        increment: f64,
    ) -> ScoredPoint {
        if !increment.is_finite() {
            return self.observe_slot(slot_index, timestamp_ms, increment, RATE_FEATURE);
        }
        if self.thin(slot_index, timestamp_ms) {
            // Its time still ends the interval of the next increment without a start.
            self.slots[slot_index].last_total = Some((timestamp_ms, increment));
            return thinned_point(increment);
        }
        let slot = &mut self.slots[slot_index];
        // The previous point's time (its value is not needed).
        let previous_ms = slot
            .last_total
            .replace((timestamp_ms, increment))
            .map(|(previous_ms, _)| previous_ms);
        let from_ms = match previous_ms {
            _ if start_ms != 0 && start_ms < timestamp_ms => Some(start_ms),
            Some(previous_ms) if previous_ms < timestamp_ms => Some(previous_ms),
            _ => None,
        };
        match from_ms {
            Some(from_ms) if increment >= 0.0 => {
                // Earlier, so positive; `abs_diff` cannot overflow whatever the two times are.
                let seconds = timestamp_ms.abs_diff(from_ms) as f64 / 1000.0;
                self.observe_slot(slot_index, timestamp_ms, increment / seconds, RATE_FEATURE)
            }
            _ => self.unscored_rate(slot_index),
        }
    }

    /// The score of a point that only starts the next rate: 0, the model untouched.
    fn unscored_rate(&mut self, slot_index: usize) -> ScoredPoint {
        let typical = self.slots[slot_index].model.typical().unwrap_or(0.0);
        self.touch(slot_index);
        unscored_point(RATE_FEATURE, typical, typical)
    }

    /// Returns the handle of series `key`, adding the series (as the most recently updated, with
    /// an empty model) when it is not held; at the cap that evicts the least recently updated
    /// series, as [`SeriesBank::observe`] would. Taking the handle of a held series does not
    /// count as an update.
    ///
    /// ```
    /// use linfa::ParamGuard;
    /// use pipewarden_detector::SeriesBank;
    ///
    /// let mut bank = SeriesBank::new(SeriesBank::params().max_series(1).check()?);
    /// let ingest = bank.handle("svc/ingest|span.count");
    /// for i in 0..100 {
    ///     let point = bank.observe_id(ingest, i * 10_000, 100.0 + (i % 7) as f64);
    ///     assert!(point.is_some_and(|point| !point.is_anomaly));
    /// }
    /// // Another series takes the only slot: the handle is stale, take a new one.
    /// bank.observe("svc/export|span.count", 1_000_000, 5.0);
    /// assert!(bank.observe_id(ingest, 1_000_000, 100.0).is_none());
    /// let ingest = bank.handle("svc/ingest|span.count");
    /// assert!(bank.observe_id(ingest, 1_010_000, 100.0).is_some());
    /// # Ok::<(), pipewarden_detector::SeriesBankParamsError>(())
    /// ```
    pub fn handle(&mut self, key: &str) -> SeriesId {
        let slot = self.slot_for(key);
        SeriesId {
            slot,
            generation: self.generations[slot],
        }
    }

    /// Scores the point `value` of the series of handle `id` at `timestamp_ms`, then adds it to
    /// that history, exactly as [`SeriesBank::observe`] with the series' key does. Returns `None`
    /// (and absorbs nothing) when the series was evicted since the handle was taken. A handle
    /// means something only to the bank that gave it.
    pub fn observe_id(
        &mut self,
        id: SeriesId,
        timestamp_ms: i64,
        value: f64,
    ) -> Option<ScoredPoint> {
        if !self.is_current(id) {
            return None;
        }
        Some(self.observe_value_slot(id.slot, timestamp_ms, value))
    }

    /// Scores a plain value of the series in `slot_index`, unless it is thinned (a non-finite
    /// value, which the model ignores, neither is thinned nor becomes the last kept point).
    #[inline(always)]
    fn observe_value_slot(
        &mut self,
        slot_index: usize,
        timestamp_ms: i64,
        value: f64,
    ) -> ScoredPoint {
        if value.is_finite() && self.thin(slot_index, timestamp_ms) {
            return thinned_point(value);
        }
        self.observe_slot(slot_index, timestamp_ms, value, VALUE_FEATURE)
    }

    /// Returns whether a point of the series in `slot_index` at `timestamp_ms` is thinned
    /// (counting it); otherwise it becomes the series' last kept point.
    #[inline(always)]
    fn thin(&mut self, slot_index: usize, timestamp_ms: i64) -> bool {
        let min = self.params.min_point_interval_ms;
        if min == 0 {
            return false;
        }
        let kept = &mut self.kept_ms[slot_index];
        // Later than the last kept point, so the difference is positive; `abs_diff` cannot
        // overflow whatever the two times are.
        let thinned = kept.is_some_and(|kept| {
            timestamp_ms >= kept && timestamp_ms.abs_diff(kept) < min.unsigned_abs()
        });
        if thinned {
            self.thinned += 1;
        } else {
            *kept = Some(timestamp_ms);
        }
        thinned
    }

    /// Returns whether handle `id` still names the series it was taken for (not evicted since).
    fn is_current(&self, id: SeriesId) -> bool {
        self.generations.get(id.slot) == Some(&id.generation)
    }

    /// Returns the key of the series of handle `id`, `None` when the handle is stale.
    pub fn key_of(&self, id: SeriesId) -> Option<&str> {
        if !self.is_current(id) {
            return None;
        }
        self.slots.get(id.slot).map(|slot| &*slot.key)
    }

    /// Scores a point of the series in `slot_index` and absorbs it (see [`SeriesBank::observe`]).
    /// Inlined into both callers: as a call of its own it cost a few percent of a point.
    #[inline(always)]
    fn observe_slot(
        &mut self,
        slot_index: usize,
        timestamp_ms: i64,
        value: f64,
        feature: &'static str,
    ) -> ScoredPoint {
        self.touch(slot_index);
        let band_z = self.band_z;
        let alert_threshold = self.params.alert_threshold;
        let slot = &mut self.slots[slot_index];
        let scored = slot.model.is_warm() && value.is_finite();
        // Only an unscored point needs the level from before it (the median, one lookup).
        let typical_before = if scored { None } else { slot.model.typical() };
        let (raw_score, explanation) = match slot.model.observe(timestamp_ms, value) {
            Some(deviation) => (
                Score::from_deviation(&deviation).value(),
                Explanation::from_deviation(feature, &deviation, band_z),
            ),
            None => (
                0.0,
                Explanation::unscored(feature, value, typical_before.unwrap_or(value)),
            ),
        };
        let peak = slot.peak_score;
        let score = if raw_score > peak + self.params.repeat_margin || self.peak_keep == 0.0 {
            raw_score
        } else {
            raw_score * self.params.repeat_damping
        };
        // Only an alert-level score is remembered: the memory is of episodes already reported,
        // so an episode that opens just below the threshold still alerts once it gets there.
        let remembered = if raw_score >= alert_threshold {
            raw_score
        } else {
            0.0
        };
        slot.peak_score = (peak * self.peak_keep).max(remembered);
        let is_anomaly = scored && score >= alert_threshold;
        let continuing = is_anomaly && peak >= alert_threshold;
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
    #[inline(always)]
    fn slot_for(&mut self, key: &str) -> usize {
        match self.index.get(key) {
            Some(&slot_index) => slot_index,
            None => self.add_series(key),
        }
    }

    /// Returns the slot of a new series `key`: a new one below the cap, else the least recent
    /// one, whose series is evicted. Either way the series becomes the most recent.
    #[cold]
    fn add_series(&mut self, key: &str) -> usize {
        let key: Arc<str> = Arc::from(key);
        self.key_bytes += key.len();
        if self.slots.len() < self.params.max_series {
            let slot_index = self.slots.len();
            self.slots.push(Slot {
                key: Arc::clone(&key),
                model: RobustBaseline::with_shared_params(Arc::clone(&self.model_params)),
                peak_score: 0.0,
                last_total: None,
            });
            self.links.push(Link {
                newer: NIL,
                older: NIL,
            });
            self.generations.push(0);
            self.kept_ms.push(None);
            self.link_as_most_recent(slot_index);
            self.index.insert(key, slot_index);
            return slot_index;
        }
        // At the cap (max_series >= 1, so there is a least recent slot): reuse it.
        let slot_index = self.least_recent;
        let slot = &mut self.slots[slot_index];
        let evicted = std::mem::replace(&mut slot.key, Arc::clone(&key));
        slot.model.reset();
        slot.peak_score = 0.0;
        slot.last_total = None;
        self.kept_ms[slot_index] = None;
        self.key_bytes -= evicted.len();
        self.index.remove(&evicted);
        self.index.insert(key, slot_index);
        self.generations[slot_index] += 1;
        self.evictions += 1;
        // The slot now holds the newest series.
        self.touch(slot_index);
        slot_index
    }

    /// Moves `slot_index` to the most recent end of the recency list.
    #[inline(always)]
    fn touch(&mut self, slot_index: usize) {
        if self.most_recent == slot_index {
            return;
        }
        let Link { newer, older } = self.links[slot_index];
        if newer != NIL {
            self.links[newer].older = older;
        }
        if older != NIL {
            self.links[older].newer = newer;
        } else if self.least_recent == slot_index {
            self.least_recent = newer;
        }
        self.link_as_most_recent(slot_index);
    }

    /// Puts an unlinked slot at the most recent end of the recency list.
    fn link_as_most_recent(&mut self, slot_index: usize) {
        let previous = self.most_recent;
        self.links[slot_index] = Link {
            newer: NIL,
            older: previous,
        };
        if previous != NIL {
            self.links[previous].newer = slot_index;
        }
        self.most_recent = slot_index;
        if self.least_recent == NIL {
            self.least_recent = slot_index;
        }
    }
}

/// A point scored 0 that alerts nothing.
fn unscored_point(feature: &'static str, actual: f64, typical: f64) -> ScoredPoint {
    ScoredPoint {
        score: 0.0,
        is_anomaly: false,
        explanation: Explanation::unscored(feature, actual, typical),
        continuing: false,
        model: RobustBaseline::NAME,
        model_version: RobustBaseline::VERSION,
    }
}

/// The score of a thinned point (see [`SeriesBankParams::min_point_interval_ms`]): 0, explained
/// as the value sent (`value` feature, actual and typical alike), since nothing was compared.
fn thinned_point(sent: f64) -> ScoredPoint {
    unscored_point(VALUE_FEATURE, sent, sent)
}

#[cfg(test)]
mod tests;
