//! State, update and scoring of the robust baseline.

use std::sync::Arc;

use linfa::{DatasetBase, prelude::*};
use ndarray::{Array1, ArrayBase, Data, Ix2};

use super::context::PhaseContext;
use super::error::RobustBaselineError;
use super::hyperparams::{RobustBaselineParams, RobustBaselineValidParams};
use super::record::{RecordDecay, RecordEnvelope};
use super::season::Season;
use super::tail::{TailHistogram, gaussian_upper_quantile};
use super::window::{RobustWindow, WindowStats};
use crate::score::{Deviation, Score, Z_FLOOR};

/// Smallest range of the records, in scales, that record excesses are measured against: a
/// value just above the maximum of a narrow, noisy history is not news.
const RECORD_MIN_RANGE_SCALES: f64 = 60.0;

/// Fraction of the records' range within which a value counts as reaching a record (holding
/// it for `record_hold_ms`): a recurring peak comes back near its record, not exactly to it.
const RECORD_REACH: f64 = 0.2;

/// Points a model absorbs (since its window was last emptied) before records can raise scores.
const RECORD_MIN_POINTS: u64 = 200;

/// Clip of |z| entering the short-term mean of the sequence score.
const SEQUENCE_CLIP_Z: f64 = 6.0;

/// Fewest points per period for which a seasonal profile is learnt.
const MIN_POINTS_PER_SEASON: f64 = 24.0;

/// Streaming robust baseline of one series (see the [module docs](super)).
///
/// ```
/// use linfa::ParamGuard;
/// use pipewarden_detector::{RobustBaseline, Score};
///
/// let mut model = RobustBaseline::new(RobustBaseline::params().check()?);
/// for i in 0..100 {
///     model.observe(i * 1000, 10.0 + (i % 3) as f64);
/// }
/// let deviation = model.observe(100_000, 50.0).expect("warm model scores finite values");
/// assert!(Score::from_deviation(&deviation).value() > 90.0);
/// # Ok::<(), pipewarden_detector::RobustBaselineParamsError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
// Laid out in declaration order: the scalars every point reads or writes first, then the
// records, window, season and context, and the tail histogram (whose bins a point touches only
// when it lands in the tail) last, so a point of a cold model (one series among many) touches
// as few cache lines as it can (the compiler's order scattered them over the whole struct).
#[repr(C)]
pub struct RobustBaseline {
    /// Shared by every model of a series bank: read at each point, so one hot copy beats a
    /// cold one per series.
    params: Arc<RobustBaselineValidParams>,
    /// Finite values absorbed since creation or the last reset.
    absorbed: u64,
    /// Values absorbed since the window was last emptied (warm-up counts these).
    since_window_reset: u64,
    last_timestamp_ms: Option<i64>,
    /// Typical spacing of the points (EWMA of positive timestamp steps), 0 until known.
    interval_ms: f64,
    /// EWMA of the (clipped) deseasonalised values; `None` before the first value.
    ewma_level: Option<f64>,
    /// Long-term mean of the window spread.
    long_spread: f64,
    /// Per-point decay of the tail histogram and of the records.
    tail_keep: f64,
    record_keep: f64,
    /// The last finite value, how many times in a row it came, and the longest recent run
    /// (decaying like the records).
    last_value: Option<f64>,
    longest_run: f64,
    /// Consecutive strong deviations on one side (sign carried), towards a level shift.
    shift_run: i64,
    /// Short-term EWMA of the calibrated |z| (clipped), and the long-term mean and variance of
    /// that EWMA (the sequence score's reference).
    short_abs_z: f64,
    sequence_mean: f64,
    sequence_var: f64,
    run: u32,
    /// Whether the value of the current run was frequent in the window when it first repeated
    /// (`None` before it repeats: most values never do, and this is not worth a lookup).
    run_value_usual: Option<bool>,
    /// High and low records of the deseasonalised values (`None` when disabled or empty).
    records: Option<RecordEnvelope>,
    /// Recent deseasonalised values.
    window: RobustWindow,
    season: Option<Season>,
    /// Time-of-day context (`None` when disabled or before the sampling allows it).
    context: Option<PhaseContext>,
    tail: TailHistogram,
}

/// The signed z-scores of a scored value: raw, and divided by the tail inflation of its side.
#[derive(Debug, Clone, Copy)]
struct SignedZ {
    raw_z: f64,
    calibrated_z: f64,
}

/// What the model expects of the next value.
#[derive(Debug, Clone, Copy)]
struct Expectation {
    timestamp_ms: i64,
    /// Phase bin of the timestamp (`None` without a season): one division, shared by the
    /// season and the time-of-day context.
    bin: Option<usize>,
    /// Seasonal offset in force (0 without a season or while the profile is off).
    offset: f64,
    /// Learnt seasonal offset of the bin, whether or not the profile is on.
    learnt_offset: f64,
    stats: WindowStats,
    /// Scale of normal variation, floors applied.
    scale: f64,
}

impl RobustBaseline {
    /// Name of the model in anomaly records.
    pub const NAME: &'static str = "robust_baseline";

    /// Version of the model in anomaly records; bumped whenever its scores change (3: the
    /// series bank damps repeats of an episode, see
    /// [`SeriesBankParams::repeat_half_life_points`](crate::SeriesBankParams::repeat_half_life_points);
    /// 4: the time-of-day context, see
    /// [`RobustBaselineParams::context_half_life_periods`]; 5: records that hold while the
    /// series keeps reaching them, see [`RobustBaselineParams::record_hold_ms`], and the
    /// defaults `record_gain` 150, `tail_quantile` 0.006; 6: the series bank remembers an
    /// episode longer and needs a clearer escalation to alert again, `repeat_half_life_points`
    /// 200 and `repeat_margin` 15; 7: a switch of the seasonal profile moves the window and the
    /// records into the other frame instead of emptying them, and stands for at least a
    /// period; 8: the prediction errors that switch the seasonal profile are clipped, so
    /// spikes do not keep it off, and the profile remembers about ten periods, `season_alpha`
    /// 0.1).
    pub const VERSION: u32 = 8;

    /// Returns the default hyperparameters (see [`RobustBaselineParams::new`]).
    pub fn params() -> RobustBaselineParams {
        RobustBaselineParams::new()
    }

    /// Returns an empty model.
    pub fn new(params: RobustBaselineValidParams) -> Self {
        RobustBaseline::with_shared_params(Arc::new(params))
    }

    /// Returns an empty model whose hyperparameters are shared with other models.
    pub(crate) fn with_shared_params(params: Arc<RobustBaselineValidParams>) -> Self {
        RobustBaseline {
            window: RobustWindow::new(params.window_points),
            season: None,
            context: None,
            tail_keep: 0.5f64.powf(1.0 / params.tail_half_life_points),
            record_keep: 0.5f64.powf(1.0 / params.record_half_life_points),
            params,
            ewma_level: None,
            absorbed: 0,
            since_window_reset: 0,
            last_timestamp_ms: None,
            interval_ms: 0.0,
            tail: TailHistogram::new(),
            records: None,
            long_spread: 0.0,
            last_value: None,
            run: 0,
            longest_run: 0.0,
            run_value_usual: None,
            shift_run: 0,
            short_abs_z: 0.0,
            sequence_mean: 0.0,
            sequence_var: 0.0,
        }
    }

    /// Returns the hyperparameters of the model.
    pub fn hyperparams(&self) -> &RobustBaselineValidParams {
        &self.params
    }

    /// Forgets every absorbed value, keeping the window's allocation.
    pub fn reset(&mut self) {
        let params = Arc::clone(&self.params);
        let mut window = std::mem::replace(&mut self.window, RobustWindow::new(0));
        window.clear();
        *self = RobustBaseline {
            window,
            ..RobustBaseline::with_shared_params(params)
        };
    }

    /// Returns whether the model has absorbed `warmup_points` values and therefore scores.
    pub fn is_warm(&self) -> bool {
        self.since_window_reset >= self.params.warmup_points as u64
    }

    /// Returns the number of finite values absorbed.
    pub fn absorbed(&self) -> u64 {
        self.absorbed
    }

    /// Returns the timestamp of the last observed point, if any.
    pub fn last_timestamp_ms(&self) -> Option<i64> {
        self.last_timestamp_ms
    }

    /// Returns whether the seasonal profile is in use.
    pub fn is_seasonal(&self) -> bool {
        self.season.as_ref().is_some_and(Season::is_active)
    }

    /// Returns the level the model expects without season (the window median), if any.
    pub fn typical(&self) -> Option<f64> {
        self.window.median()
    }

    /// Returns the heap bytes held by the model (window and seasonal profile).
    pub fn approx_heap_bytes(&self) -> usize {
        self.window.heap_bytes()
            + self.season.as_ref().map_or(0, Season::heap_bytes)
            + self.context.as_ref().map_or(0, PhaseContext::heap_bytes)
    }

    /// Returns the heap bytes a model with `params` holds once it has a seasonal profile.
    pub fn approx_heap_bytes_for(params: &RobustBaselineValidParams) -> usize {
        let window =
            RobustWindow::heap_bytes_for(params.window_points, params.season_period_ms > 0);
        let season = if params.season_period_ms > 0 {
            params.season_bins * 5
        } else {
            0
        };
        let context = if params.season_period_ms > 0 && params.context_half_life_periods > 0.0 {
            params.season_bins * size_of::<[u8; 4]>()
        } else {
            0
        };
        window + season + context
    }

    /// Returns the deviation of `value` at `timestamp_ms` from the current state without
    /// absorbing it; `None` during warm-up or when `value` is not finite.
    pub fn deviation(&self, timestamp_ms: i64, value: f64) -> Option<Deviation> {
        if !value.is_finite() || !self.is_warm() {
            return None;
        }
        let expectation = self.expectation(timestamp_ms)?;
        Some(self.deviation_with(value, &expectation).0)
    }

    /// Scores `value` against the state before it, then absorbs it: returns its deviation, or
    /// `None` during warm-up or when `value` is not finite (a non-finite value is not absorbed).
    pub fn observe(&mut self, timestamp_ms: i64, value: f64) -> Option<Deviation> {
        if !value.is_finite() {
            self.last_timestamp_ms = Some(timestamp_ms);
            return None;
        }
        let expectation = self.expectation(timestamp_ms);
        let scored = match expectation {
            Some(expectation) if self.is_warm() => Some(self.deviation_with(value, &expectation)),
            _ => None,
        };
        self.absorb(timestamp_ms, value, expectation, scored.map(|(_, z)| z));
        scored.map(|(deviation, _)| deviation)
    }

    /// Absorbs `value` without scoring it (a non-finite value is ignored).
    pub fn update(&mut self, timestamp_ms: i64, value: f64) {
        if !value.is_finite() {
            self.last_timestamp_ms = Some(timestamp_ms);
            return;
        }
        let expectation = self.expectation(timestamp_ms);
        let z = match expectation {
            Some(expectation) if self.is_warm() => Some(self.deviation_with(value, &expectation).1),
            _ => None,
        };
        self.absorb(timestamp_ms, value, expectation, z);
    }

    fn expectation(&self, timestamp_ms: i64) -> Option<Expectation> {
        let stats = self.window.stats()?;
        let bin = self.phase_bin(timestamp_ms);
        let (offset, learnt_offset) = match (&self.season, bin) {
            (Some(season), Some(bin)) => (season.offset(bin), season.learnt_offset(bin)),
            _ => (0.0, 0.0),
        };
        let scale = stats
            .spread
            .max(self.params.long_spread_floor * self.long_spread)
            .max(self.params.relative_scale_floor * (stats.median + offset).abs())
            .max(self.params.absolute_scale_floor);
        Some(Expectation {
            timestamp_ms,
            bin,
            offset,
            learnt_offset,
            stats,
            scale,
        })
    }

    /// Returns the phase bin of `timestamp_ms`, if the model has a season (and so a context).
    fn phase_bin(&self, timestamp_ms: i64) -> Option<usize> {
        self.season.as_ref().map(|season| season.bin(timestamp_ms))
    }

    /// Returns the calibrated deviation of `value` and its signed z-scores, raw and calibrated
    /// (divided by the tail inflation of its side; `absorb` learns from both).
    fn deviation_with(&self, value: f64, expectation: &Expectation) -> (Deviation, SignedZ) {
        let deseasonalised = value - expectation.offset;
        let level = match self.ewma_level {
            Some(level)
                if (deseasonalised - level).abs()
                    < (deseasonalised - expectation.stats.median).abs() =>
            {
                level
            }
            _ => expectation.stats.median,
        };
        let departure = deseasonalised - level;
        let raw_z = departure / expectation.scale;
        let inflation = self.tail_inflation(raw_z);
        let calibrated_z = raw_z / inflation;
        // |raw_z| / inflation to the bit: the inflation is positive and rounding is symmetric.
        let mut z = calibrated_z.abs();
        // Before the records (which still lift a value beyond the recent range): capping after
        // them cost most of the NAB detections.
        if self.params.recurrence_min_count > 0.0 && z > Z_FLOOR {
            let (count, probability) = self.tail.survival(raw_z);
            if count >= self.params.recurrence_min_count {
                z = z.min(gaussian_upper_quantile(probability.max(f64::MIN_POSITIVE)));
            }
        }
        if let Some(records) = &self.records {
            let excess =
                records.excess(deseasonalised, RECORD_MIN_RANGE_SCALES * expectation.scale);
            if excess > 0.0 && self.since_window_reset > RECORD_MIN_POINTS {
                z = z.max(Z_FLOOR + excess * self.params.record_gain);
            }
        }
        // A deviation this series keeps reaching at this time of day is scored relative to
        // that reach, the record floor included: a daily spike that decays its record between
        // runs and beats it again is a recurrence too (unlike the tail cap above).
        if z > Z_FLOOR
            && let Some(context) = &self.context
        {
            z = z.min(context.contextual_z(expectation.timestamp_ms, z.copysign(raw_z), Z_FLOOR));
        }
        z = z.max(self.stuck_z(value, deseasonalised));
        if self.params.sequence_weight > 0.0 {
            z = z.max(self.params.sequence_weight * self.sequence_z(calibrated_z));
        }
        let deviation = Deviation {
            actual: value,
            typical: level + expectation.offset,
            scale: expectation.scale * inflation,
            z,
        };
        (
            deviation,
            SignedZ {
                raw_z,
                calibrated_z,
            },
        )
    }

    fn absorb(
        &mut self,
        timestamp_ms: i64,
        value: f64,
        expectation: Option<Expectation>,
        z: Option<SignedZ>,
    ) {
        if let Some(previous) = self.last_timestamp_ms {
            let step = timestamp_ms.saturating_sub(previous) as f64;
            if step > 0.0 {
                let weight = if self.interval_ms > 0.0 { 0.05 } else { 1.0 };
                self.interval_ms += weight * (step - self.interval_ms);
            }
        }
        self.last_timestamp_ms = Some(timestamp_ms);
        self.absorbed += 1;
        self.since_window_reset += 1;
        let bin = match expectation {
            Some(expectation) => expectation.bin,
            None => self.phase_bin(timestamp_ms),
        };
        let (offset, learnt_offset) = match (expectation, &self.season, bin) {
            (Some(expectation), _, _) => (expectation.offset, expectation.learnt_offset),
            (None, Some(season), Some(bin)) => (season.offset(bin), season.learnt_offset(bin)),
            _ => (0.0, 0.0),
        };
        let deseasonalised = value - offset;
        self.longest_run *= self.record_keep;
        if self.last_value == Some(value) {
            self.run = self.run.saturating_add(1);
            if self.run == 2 {
                self.run_value_usual = Some(self.window.is_usual(deseasonalised));
            }
        } else {
            self.longest_run = self.longest_run.max(f64::from(self.run));
            self.run = 1;
            self.last_value = Some(value);
            self.run_value_usual = None;
        }

        // The weight of a point in the long-term means (spread and sequence reference).
        let long_weight = running_weight(1.0 - self.tail_keep, self.since_window_reset);
        let mut shift_confirmed = false;
        if let Some(SignedZ {
            raw_z,
            calibrated_z,
        }) = z
        {
            if self.params.tail_quantile > 0.0 {
                self.tail
                    .learn(raw_z, self.tail_keep, self.params.tail_quantile);
            }
            shift_confirmed = self.track_shift(calibrated_z);
            if let (Some(context), Some(bin)) = (&mut self.context, bin) {
                context.learn_in_bin(bin, calibrated_z, Z_FLOOR);
            }
            if self.params.sequence_weight > 0.0 {
                self.learn_sequence(calibrated_z, long_weight);
            }
        }
        if let Some(expectation) = expectation {
            self.long_spread += long_weight * (expectation.stats.spread - self.long_spread);
        }

        self.ewma_level = Some(match (self.ewma_level, expectation) {
            (None, _) => deseasonalised,
            (Some(level), expectation) => {
                let target = match expectation {
                    Some(expectation) if z.is_some() => {
                        let reach = self.params.clip_z * expectation.scale;
                        let median = expectation.stats.median;
                        deseasonalised.clamp(median - reach, median + reach)
                    }
                    _ => deseasonalised,
                };
                // The running mean until 1/n drops below alpha, so early values weigh evenly.
                let alpha = running_weight(self.params.ewma_alpha, self.since_window_reset);
                level + alpha * (target - level)
            }
        });
        // The offset travels with the value (and the records): a switch of the profile moves
        // them into the other frame instead of emptying the window.
        let learnt_offset = learnt_offset as f32;
        self.window.push_with_offset(deseasonalised, learnt_offset);
        if self.params.record_gain > 0.0 {
            let median = expectation.map_or(deseasonalised, |e| e.stats.median);
            let decay = RecordDecay {
                keep: self.record_keep,
                hold_ms: self.params.record_hold_ms,
                reach: RECORD_REACH,
            };
            self.records
                .get_or_insert_with(|| RecordEnvelope::new(deseasonalised, timestamp_ms))
                .learn(deseasonalised, learnt_offset, median, timestamp_ms, decay);
        }

        if shift_confirmed {
            self.move_window_to_new_level(expectation.map(|e| e.stats.median));
        }
        self.learn_season(timestamp_ms, value, bin);
    }

    /// Returns the raw score of a run of identical values ending with `value`: 0 until the run
    /// reaches `max(stuck_min_points, 2 x the longest recent run)` in a series that varies, then
    /// 6 (an alert) growing by 3 per further threshold's worth of points.
    fn stuck_z(&self, value: f64, deseasonalised: f64) -> f64 {
        let min_points = self.params.stuck_min_points as f64;
        if min_points == 0.0
            || self.long_spread <= 0.0
            || self.since_window_reset <= RECORD_MIN_POINTS
        {
            return 0.0;
        }
        let continues = self.last_value == Some(value);
        let run = f64::from(if continues { self.run + 1 } else { 1 });
        let threshold = min_points.max(2.0 * self.longest_run);
        if run < threshold {
            return 0.0;
        }
        // A series resting at a usual value (zero traffic, idle CPU) is quiet, not stuck.
        let usual = match self.run_value_usual {
            Some(usual) if continues => usual,
            _ => self.window.is_usual(deseasonalised),
        };
        if usual {
            0.0
        } else {
            2.0 * Z_FLOOR + Z_FLOOR * (run / threshold - 1.0)
        }
    }

    /// Returns the short-term mean of |z| including a point of calibrated z `calibrated_z`,
    /// clipped so one huge value cannot hold it up for long.
    fn next_short_abs_z(&self, calibrated_z: f64) -> f64 {
        let abs_z = calibrated_z.abs().min(SEQUENCE_CLIP_Z);
        self.short_abs_z + self.params.sequence_alpha * (abs_z - self.short_abs_z)
    }

    /// Returns how far the short-term mean of |z| with a point of calibrated z `calibrated_z`
    /// sits above its long-term mean, in long-term standard deviations (0 until the reference
    /// holds enough points).
    fn sequence_z(&self, calibrated_z: f64) -> f64 {
        if self.since_window_reset <= RECORD_MIN_POINTS || self.sequence_var <= 0.0 {
            return 0.0;
        }
        let short = self.next_short_abs_z(calibrated_z);
        ((short - self.sequence_mean) / self.sequence_var.sqrt()).max(0.0)
    }

    /// Absorbs a point of calibrated z into the short-term mean and its long-term reference
    /// (`weight`: the point's weight in the long-term means).
    fn learn_sequence(&mut self, calibrated_z: f64, weight: f64) {
        let short = self.next_short_abs_z(calibrated_z);
        self.short_abs_z = short;
        let delta = short - self.sequence_mean;
        self.sequence_mean += weight * delta;
        self.sequence_var = (1.0 - weight) * (self.sequence_var + weight * delta * delta);
    }

    fn tail_inflation(&self, raw_z: f64) -> f64 {
        if self.params.tail_quantile > 0.0 {
            self.tail.inflation(raw_z)
        } else {
            1.0
        }
    }

    /// Counts consecutive strong deviations on one side; returns whether they confirm a shift.
    fn track_shift(&mut self, calibrated_z: f64) -> bool {
        let confirm = self.params.shift_confirm_points as i64;
        if confirm == 0 || calibrated_z.abs() < self.params.shift_z {
            self.shift_run = 0;
            return false;
        }
        let side = if calibrated_z > 0.0 { 1 } else { -1 };
        self.shift_run = if self.shift_run.signum() == side {
            self.shift_run + side
        } else {
            side
        };
        self.shift_run.abs() >= confirm
    }

    /// Moves the older part of the window (and the EWMA) to the level of the newest
    /// `shift_confirm_points` values, keeping its spread.
    fn move_window_to_new_level(&mut self, old_median: Option<f64>) {
        let confirm = self.params.shift_confirm_points;
        let mut newest: Vec<f64> = self.window.newest(confirm).collect();
        newest.sort_by(f64::total_cmp);
        let new_level = newest[newest.len() / 2];
        if let Some(old_median) = old_median {
            self.window.shift_older(new_level - old_median, confirm);
        }
        self.ewma_level = Some(new_level);
        self.shift_run = 0;
    }

    /// Moves the window and the records into the seasonal frame (`deseasonalise`) or out of
    /// it, after the profile was switched on or off; the EWMA and the long-term spread restart
    /// from the moved window's median and spread.
    fn reframe(&mut self, deseasonalise: bool) {
        self.window.reframe(deseasonalise);
        if let Some(records) = &mut self.records {
            records.reframe(deseasonalise);
        }
        if let Some(stats) = self.window.stats() {
            self.ewma_level = Some(stats.median);
            self.long_spread = stats.spread;
        }
        self.shift_run = 0;
    }

    /// Learns the season (creating it and the context when the sampling allows); `bin` is the
    /// phase bin of `timestamp_ms` when the season already existed.
    fn learn_season(&mut self, timestamp_ms: i64, value: f64, bin: Option<usize>) {
        if self.params.season_period_ms == 0 || self.interval_ms <= 0.0 {
            return;
        }
        // A profile needs a few points per period to mean anything.
        if self.season.is_none()
            && self.interval_ms > self.params.season_period_ms as f64 / MIN_POINTS_PER_SEASON
        {
            return;
        }
        if self.context.is_none() && self.params.context_half_life_periods > 0.0 {
            self.context = Some(PhaseContext::new(
                self.params.season_period_ms,
                self.params.season_bins,
                self.params.context_tolerance_bins,
                self.params.context_half_life_periods,
            ));
        }
        let season = self.season.get_or_insert_with(|| {
            Season::new(self.params.season_period_ms, self.params.season_bins)
        });
        let switched = season.learn(
            bin.unwrap_or_else(|| season.bin(timestamp_ms)),
            timestamp_ms,
            value,
            self.interval_ms,
            self.params.season_alpha,
        );
        let active = season.is_active();
        if switched {
            // The window and the records hold values in the other frame: move each by the
            // offset of its own phase bin, so the model stays warm through the switch.
            self.reframe(active);
        }
    }
}

/// Returns the weight of a new point in a running mean over `points` points that turns into an
/// exponential one of weight `floor`: `max(floor, 1 / points)`, dividing only while the running
/// mean is in force.
fn running_weight(floor: f64, points: u64) -> f64 {
    let points = points as f64;
    if points * floor >= 1.0 {
        floor
    } else {
        1.0 / points
    }
}

/// Warm-up and incremental update: absorbs every row `[timestamp_ms, value]` of the records in
/// order into `model` (a new model when `None`). An existing model keeps its own hyperparameters.
///
/// ```
/// use linfa::{DatasetBase, ParamGuard, traits::FitWith};
/// use ndarray::array;
/// use pipewarden_detector::{RobustBaseline, RobustBaselineError};
///
/// let params = RobustBaseline::params().warmup_points(3).check()?;
/// let history = DatasetBase::new(array![[0.0, 1.0], [1000.0, 1.2], [2000.0, 0.9]], ());
/// let model = FitWith::<_, _, RobustBaselineError>::fit_with(&params, None, &history)?;
/// assert!(model.is_warm());
/// # Ok::<(), RobustBaselineError>(())
/// ```
impl<'a, D, T> FitWith<'a, ArrayBase<D, Ix2>, T, RobustBaselineError> for RobustBaselineValidParams
where
    D: Data<Elem = f64> + 'a,
    T: 'a,
{
    type ObjectIn = Option<RobustBaseline>;
    type ObjectOut = RobustBaseline;

    fn fit_with(
        &self,
        model: Self::ObjectIn,
        dataset: &'a DatasetBase<ArrayBase<D, Ix2>, T>,
    ) -> Result<Self::ObjectOut, RobustBaselineError> {
        let records = dataset.records();
        if records.ncols() != 2 {
            return Err(RobustBaselineError::RecordColumns(records.ncols()));
        }
        let mut model = model.unwrap_or_else(|| RobustBaseline::new(self.clone()));
        for row in records.rows() {
            // Timestamps travel as f64 in records; integral milliseconds are exact up to 2^53.
            model.update(row[0] as i64, row[1]);
        }
        Ok(model)
    }
}

/// Scores a micro-batch without updating the model: one 0-100 score per row `[timestamp_ms,
/// value]`, each against the current state; 0 during warm-up and for non-finite values. A
/// one-column row is a value at the last observed timestamp.
impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for RobustBaseline {
    fn predict_inplace(&self, records: &ArrayBase<D, Ix2>, targets: &mut Array1<f64>) {
        for (row, target) in records.rows().into_iter().zip(targets.iter_mut()) {
            let (timestamp_ms, value) = match row.len() {
                0 => (0, f64::NAN),
                1 => (self.last_timestamp_ms.unwrap_or(0), row[0]),
                // Timestamps travel as f64 in records; integral milliseconds are exact up to 2^53.
                _ => (row[0] as i64, row[row.len() - 1]),
            };
            *target = self
                .deviation(timestamp_ms, value)
                .map_or(0.0, |deviation| Score::from_deviation(&deviation).value());
        }
    }

    fn default_target(&self, records: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(records.nrows())
    }
}

impl RobustBaselineParams {
    /// Checks the parameters and returns an empty model.
    ///
    /// # Errors
    /// Returns the first invalid parameter.
    pub fn build(self) -> Result<RobustBaseline, RobustBaselineError> {
        Ok(RobustBaseline::new(self.check()?))
    }
}

#[cfg(test)]
mod tests {
    use linfa::traits::Predict;
    use ndarray::{Array2, array};

    use super::*;

    fn model(window: usize, warmup: usize) -> RobustBaseline {
        RobustBaseline::params()
            .window_points(window)
            .warmup_points(warmup)
            .build()
            .unwrap()
    }

    #[test]
    fn update_absorbs_the_last_window_of_values() {
        let mut model = model(4, 2);
        for (i, value) in [4.0, 1.0, 3.0, 2.0, 10.0, 0.0].into_iter().enumerate() {
            model.update(i as i64, value);
        }
        assert_eq!(model.window.sorted(), [0.0, 2.0, 3.0, 10.0]);
        assert_eq!(model.typical(), Some(2.5));
    }

    #[test]
    fn scores_nothing_during_warmup_and_ignores_non_finite_values() {
        let mut model = model(8, 3);
        assert!(model.observe(0, 1.0).is_none());
        assert!(model.observe(1, f64::NAN).is_none());
        assert!(model.observe(2, f64::INFINITY).is_none());
        assert!(model.observe(3, 1.0).is_none());
        assert_eq!(model.absorbed(), 2);
        assert!(model.observe(4, 1.0).is_none());
        assert!(model.observe(5, 1.0).is_some());
        assert_eq!(model.last_timestamp_ms(), Some(5));
    }

    #[test]
    fn fit_with_then_predict_scores_a_batch_without_updating() {
        let params = RobustBaseline::params().warmup_points(5).check().unwrap();
        let history =
            Array2::from_shape_fn(
                (50, 2),
                |(i, j)| if j == 0 { i as f64 } else { (i % 5) as f64 },
            );
        let dataset = DatasetBase::new(history, ());
        let model =
            FitWith::<_, _, RobustBaselineError>::fit_with(&params, None, &dataset).unwrap();
        assert_eq!(model.absorbed(), 50);
        let batch = array![[50.0, 2.0], [51.0, 100.0], [52.0, f64::NAN]];
        let scores: Array1<f64> = model.predict(&batch);
        assert_eq!(scores[0], 0.0);
        assert!(scores[1] > 90.0);
        assert_eq!(scores[2], 0.0);
        assert_eq!(model.absorbed(), 50);
    }

    #[test]
    fn sequence_score_raises_a_variance_change_that_no_single_point_shows() {
        // Uniform noise (no tails), then the same noise twice as wide.
        let noise = |i: u64| ((i.wrapping_mul(2_654_435_761) % 1000) as f64 / 500.0) - 1.0;
        let values: Vec<f64> = (0..3200u64)
            .map(|i| 100.0 + if i < 3000 { 1.0 } else { 2.0 } * noise(i))
            .collect();
        let peak_after_change = |weight: f64| {
            let mut model = RobustBaseline::params()
                .sequence_weight(weight)
                .season_period_ms(0)
                .build()
                .unwrap();
            let mut peak: f64 = 0.0;
            for (i, &value) in values.iter().enumerate() {
                let deviation = model.observe(i as i64 * 1000, value);
                if i >= 3000 {
                    let score = deviation.map_or(0.0, |d| Score::from_deviation(&d).value());
                    peak = peak.max(score);
                }
            }
            peak
        };
        let without = peak_after_change(0.0);
        let with = peak_after_change(1.0);
        assert!(with > without + 20.0, "{with} vs {without}");
    }

    #[test]
    fn recurrence_cap_quiets_a_spike_the_series_keeps_producing_but_not_a_new_one() {
        let noise = |i: u64| ((i.wrapping_mul(2_654_435_761) % 1000) as f64 / 500.0) - 1.0;
        // A +40 spike every 400 points (0.25% of points: rarer than the tail quantile), then a
        // spike five times larger.
        let values: Vec<f64> = (0..8001u64)
            .map(|i| {
                let spike = match i {
                    8000 => 200.0,
                    _ if i % 400 == 399 => 40.0,
                    _ => 0.0,
                };
                100.0 + noise(i) + spike
            })
            .collect();
        let spike_scores = |min_count: f64| {
            // Records off: they lift a spike beyond the decayed high record whatever the cap.
            let mut model = RobustBaseline::params()
                .recurrence_min_count(min_count)
                .record_gain(0.0)
                .season_period_ms(0)
                .build()
                .unwrap();
            let mut scores = Vec::new();
            for (i, &value) in values.iter().enumerate() {
                let deviation = model.observe(i as i64 * 1000, value);
                if i % 400 == 399 || i == 8000 {
                    scores.push(deviation.map_or(0.0, |d| Score::from_deviation(&d).value()));
                }
            }
            scores
        };
        let plain = spike_scores(0.0);
        let capped = spike_scores(2.0);
        // Without the cap the repeats keep scoring high; with it, once the histogram holds two
        // earlier points as far out (within a bin the points are taken as log-uniform, so a few
        // more identical spikes), they do not.
        let repeats = 7..plain.len() - 1;
        let plain_alerts = plain[repeats.clone()]
            .iter()
            .filter(|&&s| s >= 70.0)
            .count();
        assert!(plain_alerts >= 5, "{plain:?}");
        assert!(
            capped[repeats].iter().all(|&score| score < 20.0),
            "{capped:?}"
        );
        // A spike beyond anything seen keeps its score.
        assert!(capped[capped.len() - 1] >= 70.0, "{capped:?}");
    }

    #[test]
    fn time_of_day_context_quiets_a_daily_spike_arriving_a_few_minutes_off_but_not_a_new_one() {
        const MINUTE_MS: i64 = 60_000;
        let noise = |i: i64| ((i.wrapping_mul(2_654_435_761) % 1000) as f64 / 500.0) - 1.0;
        // Five-minute points for ten days; a +30 spike every day around 03:00, up to 10 minutes
        // early or late; on the last day a +30 spike at 15:00 instead.
        let jitter = [0, 2, -1, 1, -2, 0, 2, -2, 1];
        let points_per_day = 288;
        let spike_at = |day: i64| {
            if day < 9 {
                36 + jitter[day as usize]
            } else {
                180
            }
        };
        let scores_of_spikes = |half_life: f64| {
            let mut model = RobustBaseline::params()
                .context_half_life_periods(half_life)
                .build()
                .unwrap();
            let mut scores = Vec::new();
            for i in 0..10 * points_per_day {
                let (day, point) = (i / points_per_day, i % points_per_day);
                let spike = point == spike_at(day);
                let value = 100.0 + noise(i) + if spike { 30.0 } else { 0.0 };
                let deviation = model.observe(i * 5 * MINUTE_MS, value);
                if spike {
                    scores.push(deviation.map_or(0.0, |d| Score::from_deviation(&d).value()));
                }
            }
            scores
        };
        let plain = scores_of_spikes(0.0);
        let context = scores_of_spikes(7.0);
        // Without the context the daily spike keeps alerting; with it, from the third day on
        // (two earlier runs near that time) it stays well below the alert threshold; the spike
        // at a new time still alerts.
        assert!(plain[3..9].iter().all(|&score| score >= 70.0), "{plain:?}");
        assert!(
            context[3..9].iter().all(|&score| score < 40.0),
            "{context:?}"
        );
        assert!(context[9] >= 70.0, "{context:?}");
    }

    #[test]
    fn a_weekly_peak_at_the_same_height_stops_alerting_once_its_record_holds() {
        const HOUR_MS: i64 = 3_600_000;
        let noise = |i: i64| ((i.wrapping_mul(2_654_435_761) % 1000) as f64 / 500.0) - 1.0;
        // Hourly points for ten weeks: a three-hour +8 peak every Saturday from 20:00, more
        // common than the tail calibration's level, so only the records can make it score; no
        // season and no time-of-day context; records that fade within days. Then a +16 peak.
        let weeks = 10;
        let scores_of_peaks = |hold_ms: i64| {
            let mut model = RobustBaseline::params()
                .season_period_ms(0)
                .record_half_life_points(200.0)
                .record_hold_ms(hold_ms)
                .build()
                .unwrap();
            let mut scores = Vec::new();
            for i in 0..weeks * 168 + 141 {
                let peak = if i == weeks * 168 + 140 {
                    16.0
                } else if (140..143).contains(&(i % 168)) {
                    8.0
                } else {
                    0.0
                };
                let deviation = model.observe(i * HOUR_MS, 100.0 + noise(i) + peak);
                if i % 168 == 140 {
                    scores.push(deviation.map_or(0.0, |d| Score::from_deviation(&d).value()));
                }
            }
            scores
        };
        let fading = scores_of_peaks(0);
        let holding = scores_of_peaks(8 * 24 * HOUR_MS);
        let repeats = 3..weeks as usize;
        // Without the hold the high record fades during the week and each peak beats it again.
        assert!(
            fading[repeats.clone()].iter().all(|&score| score >= 70.0),
            "{fading:?}"
        );
        // Held, the record stays at the peak's height: a repeat is not news.
        assert!(
            holding[repeats].iter().all(|&score| score < 40.0),
            "{holding:?}"
        );
        // A peak beyond the held record still alerts.
        assert!(holding[weeks as usize] >= 70.0, "{holding:?}");
    }

    #[test]
    fn a_switch_of_the_seasonal_profile_keeps_the_model_warm() {
        const MINUTE_MS: i64 = 60_000;
        let noise = |i: i64| ((i.wrapping_mul(2_654_435_761) % 1000) as f64 / 500.0) - 1.0;
        // Five-minute points of a daily wave: the profile goes on after a day and a half; the
        // point just after the switch is scored (no new warm-up), and a spike there alerts.
        let value = |i: i64| {
            let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
            100.0 + 50.0 * phase.sin() + noise(i)
        };
        let mut model = RobustBaseline::params().build().unwrap();
        let mut switched_at = None;
        for i in 0..6 * 288 {
            model.observe(i * 5 * MINUTE_MS, value(i));
            if model.is_seasonal() {
                switched_at = Some(i);
                break;
            }
        }
        let switched_at = switched_at.expect("a daily wave switches the profile on");
        assert!(model.is_warm());
        let next = switched_at + 1;
        let deviation = model
            .observe(next * 5 * MINUTE_MS, value(next) + 30.0)
            .expect("scored right after the switch");
        assert!(
            Score::from_deviation(&deviation).value() >= 70.0,
            "{deviation:?}"
        );
    }

    #[test]
    fn running_weight_is_the_larger_of_the_floor_and_one_over_the_points() {
        for floor in [0.05, 0.1, 1.0 - 0.5f64.powf(1.0 / 8000.0)] {
            for points in 1..20_000u64 {
                let expected = floor.max(1.0 / points as f64);
                let weight = running_weight(floor, points);
                assert!(
                    (weight - expected).abs() <= 1e-15 * expected,
                    "{floor} {points}"
                );
            }
        }
    }

    #[test]
    fn fit_with_rejects_wrong_columns_and_bad_params() {
        let dataset = DatasetBase::new(Array2::<f64>::zeros((3, 1)), ());
        let params = RobustBaseline::params().check().unwrap();
        let error = FitWith::<_, _, RobustBaselineError>::fit_with(&params, None, &dataset);
        assert!(matches!(error, Err(RobustBaselineError::RecordColumns(1))));
        let dataset = DatasetBase::new(Array2::<f64>::zeros((3, 2)), ());
        let bad = RobustBaseline::params().window_points(0);
        let error = FitWith::<_, _, RobustBaselineError>::fit_with(&bad, None, &dataset);
        assert!(matches!(error, Err(RobustBaselineError::Params(_))));
    }
}
