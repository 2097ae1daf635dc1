//! Hyperparameters of the robust baseline.

use linfa::ParamGuard;

use super::error::RobustBaselineParamsError;

/// Default of `recurrence_min_count`.
const RECURRENCE_DEFAULT: f64 = 0.0;

/// Default of `record_hold_ms`: eight days, so a weekly peak holds its record.
const RECORD_HOLD_DEFAULT_MS: i64 = 8 * 86_400_000;

/// Default of `context_half_life_periods`.
const CONTEXT_HALF_LIFE_DEFAULT: f64 = 7.0;

/// Default of `context_tolerance_bins`.
const CONTEXT_TOLERANCE_DEFAULT: usize = 3;

/// Checked hyperparameters of [`RobustBaseline`](super::RobustBaseline); obtained from
/// [`RobustBaselineParams`] through [`ParamGuard::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct RobustBaselineValidParams {
    pub(crate) window_points: usize,
    pub(crate) warmup_points: usize,
    pub(crate) ewma_alpha: f64,
    pub(crate) clip_z: f64,
    pub(crate) relative_scale_floor: f64,
    pub(crate) absolute_scale_floor: f64,
    pub(crate) season_period_ms: i64,
    pub(crate) season_bins: usize,
    pub(crate) season_alpha: f64,
    pub(crate) tail_quantile: f64,
    pub(crate) tail_half_life_points: f64,
    pub(crate) shift_confirm_points: usize,
    pub(crate) shift_z: f64,
    pub(crate) record_half_life_points: f64,
    pub(crate) record_hold_ms: i64,
    pub(crate) long_spread_floor: f64,
    pub(crate) record_gain: f64,
    pub(crate) stuck_min_points: usize,
    pub(crate) sequence_weight: f64,
    pub(crate) sequence_alpha: f64,
    pub(crate) recurrence_min_count: f64,
    pub(crate) context_half_life_periods: f64,
    pub(crate) context_tolerance_bins: usize,
}

impl RobustBaselineValidParams {
    /// Returns the number of recent values the median and MAD are computed over.
    pub fn window_points(&self) -> usize {
        self.window_points
    }

    /// Returns the number of values absorbed before the model scores.
    pub fn warmup_points(&self) -> usize {
        self.warmup_points
    }

    /// Returns the weight of a new value in the EWMA level.
    pub fn ewma_alpha(&self) -> f64 {
        self.ewma_alpha
    }

    /// Returns the z beyond which a value is clipped before it updates the EWMA level.
    pub fn clip_z(&self) -> f64 {
        self.clip_z
    }

    /// Returns the smallest scale as a fraction of `|median|`.
    pub fn relative_scale_floor(&self) -> f64 {
        self.relative_scale_floor
    }

    /// Returns the smallest scale in the unit of the series.
    pub fn absolute_scale_floor(&self) -> f64 {
        self.absolute_scale_floor
    }

    /// Returns the period of the seasonal profile in milliseconds (0: no season).
    pub fn season_period_ms(&self) -> i64 {
        self.season_period_ms
    }

    /// Returns the number of phase bins of the seasonal profile.
    pub fn season_bins(&self) -> usize {
        self.season_bins
    }

    /// Returns the learning rate of each bin of the seasonal profile.
    pub fn season_alpha(&self) -> f64 {
        self.season_alpha
    }

    /// Returns the tail level at which z-scores are calibrated (0: no tail calibration).
    pub fn tail_quantile(&self) -> f64 {
        self.tail_quantile
    }

    /// Returns the half-life of the tail histogram, in points.
    pub fn tail_half_life_points(&self) -> f64 {
        self.tail_half_life_points
    }

    /// Returns how many consecutive same-side deviations confirm a level shift (0: never).
    pub fn shift_confirm_points(&self) -> usize {
        self.shift_confirm_points
    }

    /// Returns the calibrated z from which a deviation counts towards a level shift.
    pub fn shift_z(&self) -> f64 {
        self.shift_z
    }

    /// Returns the half-life of the high and low records, in points.
    pub fn record_half_life_points(&self) -> f64 {
        self.record_half_life_points
    }

    /// Returns how long a record the series keeps reaching holds before it decays, in ms.
    pub fn record_hold_ms(&self) -> i64 {
        self.record_hold_ms
    }

    /// Returns the smallest scale as a fraction of the long-term mean spread.
    pub fn long_spread_floor(&self) -> f64 {
        self.long_spread_floor
    }

    /// Returns the shortest run of identical values that can alert (0: never).
    pub fn stuck_min_points(&self) -> usize {
        self.stuck_min_points
    }

    /// Returns the decayed count of earlier points at least as far out from which a deviation is
    /// judged by its tail probability (0: never).
    pub fn recurrence_min_count(&self) -> f64 {
        self.recurrence_min_count
    }

    /// Returns the half-life, in periods, of the time-of-day context (0: no context).
    pub fn context_half_life_periods(&self) -> f64 {
        self.context_half_life_periods
    }

    /// Returns how many phase bins on either side the time-of-day context looks at.
    pub fn context_tolerance_bins(&self) -> usize {
        self.context_tolerance_bins
    }

    /// Returns the weight of the sequence score (0: unused).
    pub fn sequence_weight(&self) -> f64 {
        self.sequence_weight
    }

    /// Returns the weight of a new point in the short-term mean of |z|.
    pub fn sequence_alpha(&self) -> f64 {
        self.sequence_alpha
    }

    /// Returns the z-score added per range of excess beyond the records (0: records unused).
    pub fn record_gain(&self) -> f64 {
        self.record_gain
    }
}

/// Unchecked hyperparameters of [`RobustBaseline`](super::RobustBaseline), built with consuming
/// setters from [`RobustBaseline::params`](super::RobustBaseline::params) and checked with
/// [`ParamGuard::check`].
///
/// ```
/// use linfa::ParamGuard;
/// use pipewarden_detector::RobustBaseline;
///
/// let params = RobustBaseline::params().window_points(128).warmup_points(30).check()?;
/// assert_eq!(params.window_points(), 128);
/// # Ok::<(), pipewarden_detector::RobustBaselineParamsError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RobustBaselineParams(pub(crate) RobustBaselineValidParams);

impl Default for RobustBaselineParams {
    fn default() -> Self {
        RobustBaselineParams::new()
    }
}

impl RobustBaselineParams {
    /// Returns the defaults:
    ///
    /// | parameter | default | |
    /// |---|---|---|
    /// | `window_points` | 64 | recent values for median and spread |
    /// | `warmup_points` | 20 | values absorbed before scoring |
    /// | `ewma_alpha` | 0.1 | weight of a new value in the EWMA level |
    /// | `clip_z` | 3 | clip of values entering the EWMA, in scales |
    /// | `relative_scale_floor` | 0.01 | smallest scale, fraction of the typical value |
    /// | `absolute_scale_floor` | 1e-9 | smallest scale, unit of the series |
    /// | `long_spread_floor` | 1 | smallest scale, fraction of the long-term spread |
    /// | `season_period_ms` | 86400000 | seasonal period (a day) |
    /// | `season_bins` | 288 | phase bins per period (5 minutes each) |
    /// | `season_alpha` | 0.1 | learning rate of a phase bin (weight of the latest period) |
    /// | `tail_quantile` | 0.006 | tail level of the z calibration |
    /// | `tail_half_life_points` | 8000 | memory of the tail histogram and long-term spread |
    /// | `shift_confirm_points` | 3 | consecutive deviations confirming a level shift |
    /// | `shift_z` | 5 | calibrated z counting towards a level shift |
    /// | `record_gain` | 150 | z per records' range of excess beyond the records |
    /// | `record_half_life_points` | 4000 | memory of the high and low records |
    /// | `record_hold_ms` | RECORD_HOLD_DEFAULT_MS | how long a record the series keeps reaching holds |
    /// | `stuck_min_points` | 24 | shortest run of identical values that can alert |
    /// | `recurrence_min_count` | RECURRENCE_DEFAULT | earlier points as far out that make a deviation a recurrence |
    /// | `sequence_weight` | 0 | weight of the sequence score (short-term mean of \|z\|) |
    /// | `sequence_alpha` | 0.1 | weight of a new point in that short-term mean |
    /// | `context_half_life_periods` | CONTEXT_HALF_LIFE_DEFAULT | memory of the time-of-day context, in periods (0: off) |
    /// | `context_tolerance_bins` | CONTEXT_TOLERANCE_DEFAULT | phase bins either side the context compares with |
    pub fn new() -> Self {
        RobustBaselineParams(RobustBaselineValidParams {
            window_points: 64,
            warmup_points: 20,
            ewma_alpha: 0.1,
            clip_z: 3.0,
            relative_scale_floor: 0.01,
            absolute_scale_floor: 1e-9,
            season_period_ms: 86_400_000,
            season_bins: 288,
            season_alpha: 0.1,
            tail_quantile: 0.006,
            tail_half_life_points: 8000.0,
            shift_confirm_points: 3,
            shift_z: 5.0,
            record_half_life_points: 4000.0,
            record_hold_ms: RECORD_HOLD_DEFAULT_MS,
            long_spread_floor: 1.0,
            record_gain: 150.0,
            stuck_min_points: 24,
            sequence_weight: 0.0,
            sequence_alpha: 0.1,
            recurrence_min_count: RECURRENCE_DEFAULT,
            context_half_life_periods: CONTEXT_HALF_LIFE_DEFAULT,
            context_tolerance_bins: CONTEXT_TOLERANCE_DEFAULT,
        })
    }

    /// Sets how many recent values (4..=65536) the median and MAD are computed over; after a
    /// lasting level shift, alerts stop within about half of this many points.
    pub fn window_points(mut self, window_points: usize) -> Self {
        self.0.window_points = window_points;
        self
    }

    /// Sets how many values (at least 2) are absorbed before the model scores; earlier points
    /// score 0.
    pub fn warmup_points(mut self, warmup_points: usize) -> Self {
        self.0.warmup_points = warmup_points;
        self
    }

    /// Sets the weight (0, 1] of a new value in the EWMA level.
    pub fn ewma_alpha(mut self, ewma_alpha: f64) -> Self {
        self.0.ewma_alpha = ewma_alpha;
        self
    }

    /// Sets the z (> 0) beyond which a value is clipped before it updates the EWMA level.
    pub fn clip_z(mut self, clip_z: f64) -> Self {
        self.0.clip_z = clip_z;
        self
    }

    /// Sets the smallest scale as a fraction (>= 0) of `|median|`.
    pub fn relative_scale_floor(mut self, relative_scale_floor: f64) -> Self {
        self.0.relative_scale_floor = relative_scale_floor;
        self
    }

    /// Sets the smallest scale (> 0) in the unit of the series.
    pub fn absolute_scale_floor(mut self, absolute_scale_floor: f64) -> Self {
        self.0.absolute_scale_floor = absolute_scale_floor;
        self
    }

    /// Sets the period (>= 0 ms) of the seasonal profile; 0 disables it. The profile is learnt
    /// for every series and used only while it predicts clearly better than no season.
    pub fn season_period_ms(mut self, season_period_ms: i64) -> Self {
        self.0.season_period_ms = season_period_ms;
        self
    }

    /// Sets the number of phase bins (1..=8640) of the seasonal profile; each costs 5 bytes per
    /// series.
    pub fn season_bins(mut self, season_bins: usize) -> Self {
        self.0.season_bins = season_bins;
        self
    }

    /// Sets the learning rate (0, 1] of each bin of the seasonal profile: the weight of the
    /// latest period in a bin's offset (until a bin has seen `1 / alpha` periods, its offset is
    /// their plain mean). The default 0.1 remembers about ten periods, so one unusual day (a
    /// holiday, an outage) moves the profile by a tenth of its departure and the next ordinary
    /// day does not alert at every point where it departed; a lasting change of the daily shape
    /// takes correspondingly longer to be learnt.
    pub fn season_alpha(mut self, season_alpha: f64) -> Self {
        self.0.season_alpha = season_alpha;
        self
    }

    /// Sets the tail level (0..0.5) at which z-scores are calibrated: where the series' own
    /// |z| quantile at this level exceeds the Gaussian one, its z-scores are divided by the
    /// ratio. 0 disables tail calibration.
    pub fn tail_quantile(mut self, tail_quantile: f64) -> Self {
        self.0.tail_quantile = tail_quantile;
        self
    }

    /// Sets the half-life (>= 1 point) of the tail histogram and of the long-term spread.
    pub fn tail_half_life_points(mut self, tail_half_life_points: f64) -> Self {
        self.0.tail_half_life_points = tail_half_life_points;
        self
    }

    /// Sets how many consecutive deviations on the same side (0..=`window_points`) confirm a
    /// level shift, after which the window is moved to the new level; 0 disables it.
    pub fn shift_confirm_points(mut self, shift_confirm_points: usize) -> Self {
        self.0.shift_confirm_points = shift_confirm_points;
        self
    }

    /// Sets the calibrated z (> 0) from which a deviation counts towards a level shift.
    pub fn shift_z(mut self, shift_z: f64) -> Self {
        self.0.shift_z = shift_z;
        self
    }

    /// Sets the shortest run of identical values (0 disables) that alerts as a stuck value, in
    /// a series that otherwise varies; the run must also be twice as long as the longest recent
    /// one.
    pub fn stuck_min_points(mut self, stuck_min_points: usize) -> Self {
        self.0.stuck_min_points = stuck_min_points;
        self
    }

    /// Sets the smallest scale as a fraction (>= 0) of the long-term mean spread of the window
    /// (averaged with the tail histogram's half-life), so quiet spells do not turn ordinary
    /// movements into huge z-scores.
    pub fn long_spread_floor(mut self, long_spread_floor: f64) -> Self {
        self.0.long_spread_floor = long_spread_floor;
        self
    }

    /// Sets the z-score (>= 0) added per range of excess beyond the records: a value beyond the
    /// high or low record by a fraction `e` of the records' range (at least 60 scales) scores
    /// at least `3 + gain * e`. 0 disables records.
    pub fn record_gain(mut self, record_gain: f64) -> Self {
        self.0.record_gain = record_gain;
        self
    }

    /// Sets the weight (>= 0) of the sequence score: the short-term mean of the calibrated |z|
    /// (an EWMA with weight `sequence_alpha`) as a z-score against its own long-term mean and
    /// spread (the tail histogram's half-life), times this weight. It catches a run of moderate
    /// deviations (a small level shift, a variance change) that no single point shows. 0
    /// disables it.
    pub fn sequence_weight(mut self, sequence_weight: f64) -> Self {
        self.0.sequence_weight = sequence_weight;
        self
    }

    /// Sets the decayed count (>= 0) of earlier points at least as far out on the same side (in
    /// the tail histogram) from which a deviation is a recurrence: its z is then capped at the
    /// Gaussian z of the same tail probability (the share of such points in the history), so a
    /// spike the series has produced before (a daily job, a bursty source) is judged by how
    /// rare it is for this series rather than by its distance. A deviation further out than
    /// anything seen keeps its calibrated z. 0 disables the cap.
    pub fn recurrence_min_count(mut self, recurrence_min_count: f64) -> Self {
        self.0.recurrence_min_count = recurrence_min_count;
        self
    }

    /// Sets the memory (>= 1 period, or 0 to disable) of the time-of-day context: per phase bin
    /// of the seasonal period (`season_bins` bins of `season_period_ms`), the largest calibrated
    /// deviation on each side, halving every this many visits of the bin. A deviation the series
    /// has already reached near this time of day (within `context_tolerance_bins`) is scored
    /// relative to it (`z' = 3 z / z_context`): a daily job's spike that comes back at about the
    /// same time, a few minutes early or late, stops alerting, while one much larger than before
    /// still does. Used whether or not the seasonal profile is on; needs a few points per period.
    pub fn context_half_life_periods(mut self, context_half_life_periods: f64) -> Self {
        self.0.context_half_life_periods = context_half_life_periods;
        self
    }

    /// Sets how many phase bins (0..=`season_bins` / 2) on either side of a point's own the
    /// time-of-day context compares it with (see
    /// [`RobustBaselineParams::context_half_life_periods`]): the tolerated jitter of a recurring
    /// event, 3 bins = 15 minutes with the defaults.
    pub fn context_tolerance_bins(mut self, context_tolerance_bins: usize) -> Self {
        self.0.context_tolerance_bins = context_tolerance_bins;
        self
    }

    /// Sets the weight (0, 1] of a new point in the short-term mean of the sequence score.
    pub fn sequence_alpha(mut self, sequence_alpha: f64) -> Self {
        self.0.sequence_alpha = sequence_alpha;
        self
    }

    /// Sets the half-life (>= 1 point) with which the high and low records decay towards the
    /// median.
    pub fn record_half_life_points(mut self, record_half_life_points: f64) -> Self {
        self.0.record_half_life_points = record_half_life_points;
        self
    }

    /// Sets how long (>= 0 ms) a record holds before it starts to decay: every value within 20%
    /// of the records' range of a record restarts its hold, so a peak the series reaches every
    /// day or week stays the reference, and only going beyond it is news. 0: records decay at
    /// every point that does not come near them.
    pub fn record_hold_ms(mut self, record_hold_ms: i64) -> Self {
        self.0.record_hold_ms = record_hold_ms;
        self
    }
}

/// Returns the first invalid field of `params`, if any.
pub(crate) fn validate(
    params: &RobustBaselineValidParams,
) -> Result<(), RobustBaselineParamsError> {
    if !(4..=65536).contains(&params.window_points) {
        return Err(RobustBaselineParamsError::WindowPoints(
            params.window_points,
        ));
    }
    if params.warmup_points < 2 {
        return Err(RobustBaselineParamsError::WarmupPoints(
            params.warmup_points,
        ));
    }
    if !(params.ewma_alpha > 0.0 && params.ewma_alpha <= 1.0) {
        return Err(RobustBaselineParamsError::EwmaAlpha(params.ewma_alpha));
    }
    if !(params.clip_z.is_finite() && params.clip_z > 0.0) {
        return Err(RobustBaselineParamsError::ClipZ(params.clip_z));
    }
    if !(params.relative_scale_floor.is_finite() && params.relative_scale_floor >= 0.0) {
        return Err(RobustBaselineParamsError::RelativeScaleFloor(
            params.relative_scale_floor,
        ));
    }
    if !(params.absolute_scale_floor.is_finite() && params.absolute_scale_floor > 0.0) {
        return Err(RobustBaselineParamsError::AbsoluteScaleFloor(
            params.absolute_scale_floor,
        ));
    }
    if params.season_period_ms < 0 {
        return Err(RobustBaselineParamsError::SeasonPeriodMs(
            params.season_period_ms,
        ));
    }
    if !(1..=8640).contains(&params.season_bins) {
        return Err(RobustBaselineParamsError::SeasonBins(params.season_bins));
    }
    if !(params.season_alpha > 0.0 && params.season_alpha <= 1.0) {
        return Err(RobustBaselineParamsError::SeasonAlpha(params.season_alpha));
    }
    if !(0.0..0.5).contains(&params.tail_quantile) {
        return Err(RobustBaselineParamsError::TailQuantile(
            params.tail_quantile,
        ));
    }
    if !(params.tail_half_life_points.is_finite() && params.tail_half_life_points >= 1.0) {
        return Err(RobustBaselineParamsError::TailHalfLifePoints(
            params.tail_half_life_points,
        ));
    }
    if params.shift_confirm_points > params.window_points {
        return Err(RobustBaselineParamsError::ShiftConfirmPoints(
            params.shift_confirm_points,
        ));
    }
    if !(params.shift_z.is_finite() && params.shift_z > 0.0) {
        return Err(RobustBaselineParamsError::ShiftZ(params.shift_z));
    }
    if !(params.long_spread_floor.is_finite() && params.long_spread_floor >= 0.0) {
        return Err(RobustBaselineParamsError::LongSpreadFloor(
            params.long_spread_floor,
        ));
    }
    if params.record_hold_ms < 0 {
        return Err(RobustBaselineParamsError::RecordHoldMs(
            params.record_hold_ms,
        ));
    }
    if !(params.record_gain.is_finite() && params.record_gain >= 0.0) {
        return Err(RobustBaselineParamsError::RecordGain(params.record_gain));
    }
    if !(params.record_half_life_points.is_finite() && params.record_half_life_points >= 1.0) {
        return Err(RobustBaselineParamsError::RecordHalfLifePoints(
            params.record_half_life_points,
        ));
    }
    if !(params.sequence_weight.is_finite() && params.sequence_weight >= 0.0) {
        return Err(RobustBaselineParamsError::SequenceWeight(
            params.sequence_weight,
        ));
    }
    if !(params.recurrence_min_count.is_finite() && params.recurrence_min_count >= 0.0) {
        return Err(RobustBaselineParamsError::RecurrenceMinCount(
            params.recurrence_min_count,
        ));
    }
    let half_life = params.context_half_life_periods;
    if !(half_life.is_finite() && (half_life == 0.0 || half_life >= 1.0)) {
        return Err(RobustBaselineParamsError::ContextHalfLifePeriods(half_life));
    }
    if half_life > 0.0 && params.context_tolerance_bins > params.season_bins / 2 {
        return Err(RobustBaselineParamsError::ContextToleranceBins(
            params.context_tolerance_bins,
        ));
    }
    if !(params.sequence_alpha > 0.0 && params.sequence_alpha <= 1.0) {
        return Err(RobustBaselineParamsError::SequenceAlpha(
            params.sequence_alpha,
        ));
    }
    Ok(())
}

impl ParamGuard for RobustBaselineParams {
    type Checked = RobustBaselineValidParams;
    type Error = RobustBaselineParamsError;

    fn check_ref(&self) -> Result<&Self::Checked, Self::Error> {
        validate(&self.0)?;
        Ok(&self.0)
    }

    fn check(self) -> Result<Self::Checked, Self::Error> {
        validate(&self.0)?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RobustBaseline;

    #[test]
    fn defaults_are_valid() {
        let params = RobustBaseline::params().check().unwrap();
        assert_eq!(params.window_points(), 64);
        assert_eq!(params.warmup_points(), 20);
    }

    #[test]
    fn rejects_context_half_life_periods() {
        for half_life in [0.5, -1.0, f64::INFINITY, f64::NAN] {
            let error = RobustBaseline::params()
                .context_half_life_periods(half_life)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, RobustBaselineParamsError::ContextHalfLifePeriods(_)),
                "{half_life}"
            );
        }
        assert!(
            RobustBaseline::params()
                .context_half_life_periods(0.0)
                .check()
                .is_ok()
        );
    }

    #[test]
    fn rejects_context_tolerance_bins_beyond_half_the_bins() {
        let error = RobustBaseline::params()
            .season_bins(24)
            .context_tolerance_bins(13)
            .check()
            .unwrap_err();
        assert_eq!(error, RobustBaselineParamsError::ContextToleranceBins(13));
        // Without a context the tolerance is not used, so it is not checked.
        assert!(
            RobustBaseline::params()
                .season_bins(24)
                .context_tolerance_bins(13)
                .context_half_life_periods(0.0)
                .check()
                .is_ok()
        );
    }

    #[test]
    fn rejects_window_points_too_small() {
        let error = RobustBaseline::params()
            .window_points(3)
            .check()
            .unwrap_err();
        assert_eq!(error, RobustBaselineParamsError::WindowPoints(3));
    }

    #[test]
    fn rejects_window_points_too_large() {
        let error = RobustBaseline::params()
            .window_points(65537)
            .check()
            .unwrap_err();
        assert_eq!(error, RobustBaselineParamsError::WindowPoints(65537));
    }

    #[test]
    fn rejects_warmup_points() {
        let error = RobustBaseline::params()
            .warmup_points(1)
            .check()
            .unwrap_err();
        assert_eq!(error, RobustBaselineParamsError::WarmupPoints(1));
    }

    #[test]
    fn rejects_ewma_alpha() {
        for alpha in [0.0, -0.1, 1.5, f64::NAN] {
            let error = RobustBaseline::params()
                .ewma_alpha(alpha)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, RobustBaselineParamsError::EwmaAlpha(_)),
                "{alpha}"
            );
        }
    }

    #[test]
    fn rejects_clip_z() {
        for clip in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            let error = RobustBaseline::params().clip_z(clip).check().unwrap_err();
            assert!(
                matches!(error, RobustBaselineParamsError::ClipZ(_)),
                "{clip}"
            );
        }
    }

    #[test]
    fn rejects_relative_scale_floor() {
        for floor in [-0.1, f64::INFINITY, f64::NAN] {
            let error = RobustBaseline::params()
                .relative_scale_floor(floor)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, RobustBaselineParamsError::RelativeScaleFloor(_)),
                "{floor}"
            );
        }
    }

    #[test]
    fn rejects_absolute_scale_floor() {
        for floor in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            let error = RobustBaseline::params()
                .absolute_scale_floor(floor)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, RobustBaselineParamsError::AbsoluteScaleFloor(_)),
                "{floor}"
            );
        }
    }

    #[test]
    fn rejects_season_period_ms() {
        let error = RobustBaseline::params()
            .season_period_ms(-1)
            .check()
            .unwrap_err();
        assert_eq!(error, RobustBaselineParamsError::SeasonPeriodMs(-1));
        assert!(RobustBaseline::params().season_period_ms(0).check().is_ok());
    }

    #[test]
    fn rejects_season_bins() {
        for bins in [0, 8641] {
            let error = RobustBaseline::params()
                .season_bins(bins)
                .check()
                .unwrap_err();
            assert_eq!(error, RobustBaselineParamsError::SeasonBins(bins));
        }
    }

    #[test]
    fn rejects_season_alpha() {
        for alpha in [0.0, 1.5, f64::NAN] {
            let error = RobustBaseline::params()
                .season_alpha(alpha)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, RobustBaselineParamsError::SeasonAlpha(_)),
                "{alpha}"
            );
        }
    }

    #[test]
    fn rejects_tail_quantile() {
        for quantile in [-0.1, 0.5, f64::NAN] {
            let error = RobustBaseline::params()
                .tail_quantile(quantile)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, RobustBaselineParamsError::TailQuantile(_)),
                "{quantile}"
            );
        }
    }

    #[test]
    fn rejects_tail_half_life_points() {
        for half_life in [0.5, -1.0, f64::INFINITY, f64::NAN] {
            let params = RobustBaseline::params().tail_half_life_points(half_life);
            let error = params.check().unwrap_err();
            assert!(matches!(
                error,
                RobustBaselineParamsError::TailHalfLifePoints(_)
            ));
        }
    }

    #[test]
    fn rejects_shift_confirm_points() {
        let params = RobustBaseline::params()
            .window_points(8)
            .shift_confirm_points(9);
        assert_eq!(
            params.check().unwrap_err(),
            RobustBaselineParamsError::ShiftConfirmPoints(9)
        );
    }

    #[test]
    fn rejects_shift_z() {
        for shift_z in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            let error = RobustBaseline::params()
                .shift_z(shift_z)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, RobustBaselineParamsError::ShiftZ(_)),
                "{shift_z}"
            );
        }
    }

    #[test]
    fn rejects_record_half_life_points() {
        for half_life in [0.5, -1.0, f64::INFINITY, f64::NAN] {
            let params = RobustBaseline::params().record_half_life_points(half_life);
            let error = params.check().unwrap_err();
            assert!(matches!(
                error,
                RobustBaselineParamsError::RecordHalfLifePoints(_)
            ));
        }
    }

    #[test]
    fn rejects_a_negative_record_hold() {
        let error = RobustBaseline::params()
            .record_hold_ms(-1)
            .check()
            .unwrap_err();
        assert!(matches!(error, RobustBaselineParamsError::RecordHoldMs(-1)));
        assert!(RobustBaseline::params().record_hold_ms(0).check().is_ok());
    }

    #[test]
    fn rejects_sequence_weight_and_alpha() {
        for weight in [-1.0, f64::INFINITY, f64::NAN] {
            let params = RobustBaseline::params().sequence_weight(weight);
            let error = params.check().unwrap_err();
            assert!(matches!(
                error,
                RobustBaselineParamsError::SequenceWeight(_)
            ));
        }
        for alpha in [0.0, 1.5, f64::NAN] {
            let params = RobustBaseline::params().sequence_alpha(alpha);
            let error = params.check().unwrap_err();
            assert!(matches!(error, RobustBaselineParamsError::SequenceAlpha(_)));
        }
    }

    #[test]
    fn rejects_long_spread_floor() {
        for floor in [-0.1, f64::INFINITY, f64::NAN] {
            let error = RobustBaseline::params()
                .long_spread_floor(floor)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, RobustBaselineParamsError::LongSpreadFloor(_)),
                "{floor}"
            );
        }
    }

    #[test]
    fn rejects_record_gain() {
        for gain in [-1.0, f64::INFINITY, f64::NAN] {
            let error = RobustBaseline::params()
                .record_gain(gain)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, RobustBaselineParamsError::RecordGain(_)),
                "{gain}"
            );
        }
    }

    #[test]
    fn check_ref_agrees_with_check() {
        let params = RobustBaseline::params().window_points(2);
        assert_eq!(params.check_ref().unwrap_err(), params.check().unwrap_err());
    }
}
