//! The one normalisation from raw model output to a 0-100 anomaly score, and the explanation
//! attached to every scored point.
//!
//! Every model reduces a point to a [`Deviation`]: the observed value, the value the model
//! expected (`typical`), the model's scale of normal variation around it and a raw score `z` on
//! the scale of a robust z-score (`|actual - typical| / scale` unless the model has more to say).
//! This module alone turns `z` into a score:
//!
//! ```text
//! score(z) = 100 * (1 - exp(-max(0, z - Z_FLOOR) / Z_SCALE))      Z_FLOOR = 3, Z_SCALE = 2.4
//! ```
//!
//! | z     | 3 | 4  | 5  | 6  | 8  | 10 | 15 |
//! |-------|---|----|----|----|----|----|----|
//! | score | 0 | 34 | 57 | 71 | 87 | 95 | 99 |
//!
//! Deviations within three scales are normal and score 0; the default alert threshold of 70 sits
//! just below six scales. The mapping is monotonic, so thresholds on the score are thresholds on
//! `z`, and [`z_at_score`] gives the inverse used to draw the expected band of an
//! [`Explanation`].

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Robust z below which a deviation scores 0.
pub const Z_FLOOR: f64 = 3.0;

/// Scale of the exponential approach to 100, in units of z beyond [`Z_FLOOR`].
pub const Z_SCALE: f64 = 2.4;

/// Highest score used to compute a band by [`z_at_score`]; keeps bands finite.
const MAX_BAND_SCORE: f64 = 99.99;

/// An anomaly score in 0..=100 (0 = normal, 100 = as anomalous as it gets).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
pub struct Score(f64);

impl Score {
    /// The score of a normal point.
    pub const ZERO: Score = Score(0.0);

    /// Returns the score of a robust z-score (its sign is ignored; NaN scores 0, infinity 100).
    pub fn from_z(z: f64) -> Score {
        // f64::max ignores a NaN operand, so a NaN z gives an excess of 0.
        let excess = (z.abs() - Z_FLOOR).max(0.0);
        // Most points are normal: skip the exponential.
        if excess == 0.0 {
            return Score::ZERO;
        }
        let score = 100.0 * (1.0 - (-excess / Z_SCALE).exp());
        Score(score.clamp(0.0, 100.0))
    }

    /// Returns the score of a deviation.
    pub fn from_deviation(deviation: &Deviation) -> Score {
        Score::from_z(deviation.z())
    }

    /// Returns the score in 0..=100.
    pub fn value(self) -> f64 {
        self.0
    }

    /// Returns the score in 0..=1 (the scale of benchmarks such as NAB).
    pub fn unit(self) -> f64 {
        self.0 / 100.0
    }
}

/// Returns the robust z at which a deviation reaches `score` (clamped to 0..=99.99, so the result
/// is finite): the inverse of [`Score::from_z`].
pub fn z_at_score(score: f64) -> f64 {
    let score = if score.is_nan() {
        0.0
    } else {
        score.clamp(0.0, MAX_BAND_SCORE)
    };
    Z_FLOOR - Z_SCALE * (1.0 - score / 100.0).ln()
}

/// What a model saw against what it expected, the raw material of a score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deviation {
    /// The observed value.
    pub actual: f64,
    /// The value the model expected.
    pub typical: f64,
    /// The model's scale of normal variation around `typical` (same unit as the value, > 0).
    pub scale: f64,
    /// The model's raw score (>= 0): usually `|actual - typical| / scale`, but a model may
    /// raise or lower it with evidence the distance alone does not carry (a calibrated tail, a
    /// broken record, a stuck value).
    pub z: f64,
}

impl Deviation {
    /// Returns the deviation whose raw score is the robust z-score `|actual - typical| / scale`
    /// (NaN when undefined).
    pub fn from_distance(actual: f64, typical: f64, scale: f64) -> Deviation {
        Deviation {
            actual,
            typical,
            scale,
            z: ((actual - typical) / scale).abs(),
        }
    }

    /// Returns the raw score.
    pub fn z(&self) -> f64 {
        self.z
    }
}

/// Which way a point departed from what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Above the typical value.
    Up,
    /// Below the typical value.
    Down,
    /// No departure (score 0, warm-up or an unusable value).
    #[default]
    None,
}

impl Direction {
    /// Returns the direction as a lowercase word: `up`, `down` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::None => "none",
        }
    }
}

/// Why a point got its score: what was seen, what was expected, and the expected band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The feature that contributed most (for univariate models: `value`); borrowed when it is
    /// a fixed name, so the explanation of an ordinary point costs no allocation.
    pub feature: Cow<'static, str>,
    /// The observed value.
    pub actual: f64,
    /// The value the model expected.
    pub typical: f64,
    /// Lower edge of the band inside which the point would not alert.
    pub lower: f64,
    /// Upper edge of the band inside which the point would not alert.
    pub upper: f64,
    /// Which way the point departed from `typical`.
    pub direction: Direction,
}

impl Explanation {
    /// Returns the explanation of a scored deviation, with the band `typical ± band_z * scale`
    /// (use [`z_at_score`] of the alert threshold). The direction is `None` when the deviation
    /// scores 0.
    pub fn from_deviation(
        feature: impl Into<Cow<'static, str>>,
        deviation: &Deviation,
        band_z: f64,
    ) -> Explanation {
        let half_width = band_z * deviation.scale;
        let direction = if Score::from_deviation(deviation).value() <= 0.0 {
            Direction::None
        } else if deviation.actual > deviation.typical {
            Direction::Up
        } else if deviation.actual < deviation.typical {
            Direction::Down
        } else {
            Direction::None
        };
        Explanation {
            feature: feature.into(),
            actual: deviation.actual,
            typical: deviation.typical,
            lower: deviation.typical - half_width,
            upper: deviation.typical + half_width,
            direction,
        }
    }

    /// Returns the explanation of a point that was not scored (warm-up or a non-finite value):
    /// the band collapses to `typical`, the direction is `None`.
    pub fn unscored(
        feature: impl Into<Cow<'static, str>>,
        actual: f64,
        typical: f64,
    ) -> Explanation {
        Explanation {
            feature: feature.into(),
            actual,
            typical,
            lower: typical,
            upper: typical,
            direction: Direction::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_zero_within_the_floor_and_grows_monotonically() {
        assert_eq!(Score::from_z(0.0).value(), 0.0);
        assert_eq!(Score::from_z(3.0).value(), 0.0);
        assert_eq!(Score::from_z(-2.0).value(), 0.0);
        let mut previous = 0.0;
        for step in 31..200 {
            let score = Score::from_z(f64::from(step) / 10.0).value();
            assert!(
                score > previous,
                "not increasing at z = {}",
                f64::from(step) / 10.0
            );
            previous = score;
        }
        assert!(Score::from_z(6.0).value() > 70.0);
        assert!(Score::from_z(5.0).value() < 70.0);
    }

    #[test]
    fn score_handles_non_finite_z() {
        assert_eq!(Score::from_z(f64::NAN).value(), 0.0);
        assert_eq!(Score::from_z(f64::INFINITY).value(), 100.0);
        assert_eq!(Score::from_z(f64::NEG_INFINITY).value(), 100.0);
    }

    #[test]
    fn z_at_score_inverts_from_z() {
        for score in [0.0, 10.0, 50.0, 70.0, 95.0, 99.0] {
            let z = z_at_score(score);
            assert!(
                (Score::from_z(z).value() - score).abs() < 1e-9,
                "score {score}"
            );
        }
        assert!(z_at_score(100.0).is_finite());
        assert_eq!(z_at_score(f64::NAN), Z_FLOOR);
    }

    #[test]
    fn explanation_gives_direction_and_band() {
        let up = Deviation::from_distance(20.0, 10.0, 1.0);
        let explanation = Explanation::from_deviation("value", &up, 6.0);
        assert_eq!(explanation.direction, Direction::Up);
        assert_eq!((explanation.lower, explanation.upper), (4.0, 16.0));
        let down = Deviation::from_distance(0.0, 10.0, 1.0);
        assert_eq!(
            Explanation::from_deviation("value", &down, 6.0).direction,
            Direction::Down
        );
        let normal = Deviation::from_distance(11.0, 10.0, 1.0);
        assert_eq!(
            Explanation::from_deviation("value", &normal, 6.0).direction,
            Direction::None
        );
    }
}
