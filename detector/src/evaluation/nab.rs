//! NAB-style scoring of anomaly scores against labelled anomaly windows.
//!
//! The rules of the Numenta Anomaly Benchmark (NAB v1.1), as the benchmark binary applies them:
//!
//! - A detector emits one score in `[0, 1]` per row, from past rows only. The first
//!   `min(floor(0.15 * n), 750)` rows of a file are a probation period and are never detections.
//! - A row is a detection when its score is at least the threshold.
//! - With `s(y) = 2 / (1 + exp(5 y)) - 1` (and `s(y) = -1` for `y > 3`): in a window `L..=R` of
//!   width `W`, the earliest detection `i` earns `A_TP * s(y) / s(-1)` with
//!   `y = -(R - i + 1) / W`; later detections in the window count nothing; a window without a
//!   detection costs `A_FN`.
//! - A detection outside every window costs `A_FP` when no window of the file has ended before
//!   it, and otherwise earns `A_FP * s((i - R') / (W' - 1))` where `R'`, `W'` are the end and width of
//!   the most recent window that ended before it.
//! - A window that ends inside probation has no scorable row and counts neither as found nor as
//!   missed (NAB drops probation rows before it counts windows).
//! - The corpus total `S` is normalised as `100 * (S - S_null) / (S_perfect - S_null)`, with
//!   `S_perfect = A_TP * windows` and `S_null = -A_FN * windows`.
//!
//! [`optimise_threshold`] sweeps every distinct score in one pass (rows sorted by decreasing
//! score), like NAB's own optimiser; [`score_at_threshold`] scores one fixed threshold;
//! [`window_outcomes`] tells, per window of a file, its peak score and its earliest detection.

/// Weights of one NAB application profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Name of the profile in reports.
    pub name: &'static str,
    /// Reward of a detected window (earliest possible detection).
    pub true_positive: f64,
    /// Cost of a detection far from any window.
    pub false_positive: f64,
    /// Cost of a missed window.
    pub false_negative: f64,
}

/// NAB's standard profile.
pub const STANDARD: Profile = Profile {
    name: "standard",
    true_positive: 1.0,
    false_positive: 0.11,
    false_negative: 1.0,
};

/// NAB's profile rewarding few false positives.
pub const REWARD_LOW_FP: Profile = Profile {
    name: "reward_low_FP",
    true_positive: 1.0,
    false_positive: 0.22,
    false_negative: 1.0,
};

/// NAB's profile rewarding few false negatives.
pub const REWARD_LOW_FN: Profile = Profile {
    name: "reward_low_FN",
    true_positive: 1.0,
    false_positive: 0.11,
    false_negative: 2.0,
};

/// The three NAB profiles in their usual order.
pub const PROFILES: [Profile; 3] = [STANDARD, REWARD_LOW_FP, REWARD_LOW_FN];

/// Returns NAB's scaled sigmoid `2 / (1 + exp(5 y)) - 1`, and -1 from `y = 3` on.
pub fn scaled_sigmoid(y: f64) -> f64 {
    if y >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// Returns the number of probation rows of a file of `rows` rows: `min(floor(0.15 n), 750)`.
pub fn probation_rows(rows: usize) -> usize {
    (rows * 15 / 100).min(750)
}

/// One labelled file and a detector's scores for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredFile {
    /// Anomaly windows as inclusive row ranges `(L, R)`, in order, not overlapping.
    pub windows: Vec<(usize, usize)>,
    /// One score in `[0, 1]` per row.
    pub scores: Vec<f64>,
}

/// Outcome of a threshold over a corpus for one profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorpusScore {
    /// The threshold (a row is a detection when its score is at least this).
    pub threshold: f64,
    /// Raw total `S`.
    pub raw: f64,
    /// Normalised score (100 = perfect, 0 = a detector that never fires).
    pub normalised: f64,
    /// Windows with a detection.
    pub true_positives: usize,
    /// Detections outside every window.
    pub false_positives: usize,
    /// Windows without a detection.
    pub false_negatives: usize,
}

/// What a detection at one row would be worth.
#[derive(Debug, Clone, Copy)]
enum RowValue {
    /// Inside window `window` (corpus-wide index): reward if it is the earliest detection.
    InWindow { window: usize, reward: f64 },
    /// Outside every window: the (usually negative) value of a false positive.
    Outside { value: f64 },
}

/// Rows that may be detections (past probation), with their score and value; the number of
/// window slots (every window of every file) and of windows that count (those ending after
/// probation: as in NAB, a window with no scorable row is neither found nor missed).
fn scorable_rows(files: &[ScoredFile], profile: &Profile) -> (Vec<(f64, RowValue)>, usize, usize) {
    let mut rows = Vec::new();
    let mut window_offset = 0;
    let mut counted = 0;
    for file in files {
        let probation = probation_rows(file.scores.len());
        counted += file
            .windows
            .iter()
            .filter(|&&(_, right)| right >= probation)
            .count();
        for (i, &score) in file.scores.iter().enumerate().skip(probation) {
            rows.push((score, row_value(file, i, window_offset, profile)));
        }
        window_offset += file.windows.len();
    }
    (rows, window_offset, counted)
}

fn row_value(file: &ScoredFile, i: usize, window_offset: usize, profile: &Profile) -> RowValue {
    let mut most_recent_ended = None;
    for (w, &(left, right)) in file.windows.iter().enumerate() {
        if (left..=right).contains(&i) {
            let width = (right - left + 1) as f64;
            let y = -((right - i + 1) as f64) / width;
            let reward = profile.true_positive * scaled_sigmoid(y) / scaled_sigmoid(-1.0);
            return RowValue::InWindow {
                window: window_offset + w,
                reward,
            };
        }
        if right < i {
            most_recent_ended = Some((left, right));
        }
    }
    let value = match most_recent_ended {
        None => -profile.false_positive,
        Some((left, right)) => {
            let width = (right - left + 1) as f64;
            // A one-row window has W' - 1 = 0: any later row is then "far", i.e. y > 3.
            let y = if width > 1.0 {
                (i - right) as f64 / (width - 1.0)
            } else {
                f64::INFINITY
            };
            profile.false_positive * scaled_sigmoid(y)
        }
    };
    RowValue::Outside { value }
}

fn normalise(raw: f64, windows: usize, profile: &Profile) -> f64 {
    let perfect = profile.true_positive * windows as f64;
    let null = -profile.false_negative * windows as f64;
    if perfect > null {
        100.0 * (raw - null) / (perfect - null)
    } else {
        0.0
    }
}

/// Returns the corpus score of a fixed threshold.
pub fn score_at_threshold(files: &[ScoredFile], profile: &Profile, threshold: f64) -> CorpusScore {
    let (rows, slots, windows) = scorable_rows(files, profile);
    let mut best: Vec<Option<f64>> = vec![None; slots];
    let mut outside = 0.0;
    let mut false_positives = 0;
    for (score, value) in rows {
        if score < threshold {
            continue;
        }
        match value {
            RowValue::InWindow { window, reward } => {
                best[window] =
                    Some(best[window].map_or(reward, |current: f64| current.max(reward)));
            }
            RowValue::Outside { value } => {
                outside += value;
                false_positives += 1;
            }
        }
    }
    let true_positives = best.iter().filter(|reward| reward.is_some()).count();
    let rewards: f64 = best.iter().flatten().sum();
    let raw = rewards + outside - profile.false_negative * (windows - true_positives) as f64;
    CorpusScore {
        threshold,
        raw,
        normalised: normalise(raw, windows, profile),
        true_positives,
        false_positives,
        false_negatives: windows - true_positives,
    }
}

/// How one labelled window of a file fared at a threshold: what an analysis of misses and late
/// detections needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowOutcome {
    /// The window as an inclusive row range.
    pub window: (usize, usize),
    /// The highest score of a scorable row in the window and its row (`None` when the window
    /// ends inside probation).
    pub peak: Option<(usize, f64)>,
    /// The earliest detection in the window and its reward (`None` when missed).
    pub detection: Option<(usize, f64)>,
}

/// Returns, for each window of `file` in order, its peak score and its earliest detection at
/// `threshold` with the reward `profile` gives it (rows inside probation are not scorable).
pub fn window_outcomes(file: &ScoredFile, profile: &Profile, threshold: f64) -> Vec<WindowOutcome> {
    let probation = probation_rows(file.scores.len());
    file.windows
        .iter()
        .map(|&(left, right)| {
            let first = left.max(probation);
            let rows = || (first..=right).filter_map(|i| Some((i, *file.scores.get(i)?)));
            let peak = rows().fold(None, |peak: Option<(usize, f64)>, (i, score)| match peak {
                Some((_, best)) if best >= score => peak,
                _ => Some((i, score)),
            });
            let detection = rows().find(|&(_, score)| score >= threshold).map(|(i, _)| {
                let width = (right - left + 1) as f64;
                let y = -((right - i + 1) as f64) / width;
                (
                    i,
                    profile.true_positive * scaled_sigmoid(y) / scaled_sigmoid(-1.0),
                )
            });
            WindowOutcome {
                window: (left, right),
                peak,
                detection,
            }
        })
        .collect()
}

/// Returns the threshold with the best corpus score among every distinct score (and "never
/// fire"), found in one sweep over the rows sorted by decreasing score.
pub fn optimise_threshold(files: &[ScoredFile], profile: &Profile) -> CorpusScore {
    let (mut rows, slots, windows) = scorable_rows(files, profile);
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best: Vec<Option<f64>> = vec![None; slots];
    let null = -profile.false_negative * windows as f64;
    let mut raw = null;
    let (mut true_positives, mut false_positives) = (0, 0);
    let mut optimum = CorpusScore {
        threshold: f64::INFINITY,
        raw,
        normalised: normalise(raw, windows, profile),
        true_positives,
        false_positives,
        false_negatives: windows,
    };
    let mut start = 0;
    while start < rows.len() {
        let threshold = rows[start].0;
        let mut end = start;
        while end < rows.len() && rows[end].0 == threshold {
            match rows[end].1 {
                RowValue::InWindow { window, reward } => match best[window] {
                    None => {
                        raw += reward + profile.false_negative;
                        best[window] = Some(reward);
                        true_positives += 1;
                    }
                    Some(current) if reward > current => {
                        raw += reward - current;
                        best[window] = Some(reward);
                    }
                    Some(_) => {}
                },
                RowValue::Outside { value } => {
                    raw += value;
                    false_positives += 1;
                }
            }
            end += 1;
        }
        if raw > optimum.raw {
            optimum = CorpusScore {
                threshold,
                raw,
                normalised: normalise(raw, windows, profile),
                true_positives,
                false_positives,
                false_negatives: windows - true_positives,
            };
        }
        start = end;
    }
    optimum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rows: usize, windows: Vec<(usize, usize)>, detections: &[usize]) -> ScoredFile {
        let mut scores = vec![0.0; rows];
        for &i in detections {
            scores[i] = 1.0;
        }
        ScoredFile { windows, scores }
    }

    #[test]
    fn window_outcomes_give_the_peak_and_the_earliest_detection_with_its_reward() {
        let mut scored = file(1000, vec![(100, 140), (500, 599), (700, 799)], &[]);
        // Window 0 ends inside probation (150 rows); window 1 is detected first at its peak
        // (0.9 at row 560; 0.4 before it does not count, 0.6 after it is later); window 2
        // never reaches 0.5.
        scored.scores[120] = 1.0;
        scored.scores[599] = 0.6;
        scored.scores[560] = 0.9;
        scored.scores[540] = 0.4;
        scored.scores[750] = 0.3;
        let outcomes = window_outcomes(&scored, &STANDARD, 0.5);
        assert_eq!(outcomes.len(), 3);
        assert_eq!(outcomes[0].peak, None);
        assert_eq!(outcomes[0].detection, None);
        assert_eq!(outcomes[1].peak, Some((560, 0.9)));
        let (row, reward) = outcomes[1].detection.unwrap();
        assert_eq!(row, 560);
        let expected = scaled_sigmoid(-40.0 / 100.0) / scaled_sigmoid(-1.0);
        assert!((reward - expected).abs() < 1e-12, "{reward} vs {expected}");
        assert_eq!(outcomes[2].peak, Some((750, 0.3)));
        assert_eq!(outcomes[2].detection, None);
        // The rewards agree with the corpus score of the same threshold.
        let corpus = score_at_threshold(std::slice::from_ref(&scored), &STANDARD, 0.5);
        assert!((corpus.raw - (reward - 1.0)).abs() < 1e-12, "{corpus:?}");
    }

    #[test]
    fn sigmoid_and_probation_follow_nab() {
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert!((scaled_sigmoid(-1.0) - 0.986_614).abs() < 1e-6);
        assert_eq!(scaled_sigmoid(3.5), -1.0);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
        assert_eq!(probation_rows(4032), 604);
        assert_eq!(probation_rows(22695), 750);
    }

    #[test]
    fn earliest_detection_in_a_window_earns_a_full_true_positive() {
        let files = [file(1000, vec![(500, 599)], &[500, 550])];
        let score = score_at_threshold(&files, &STANDARD, 0.5);
        assert!((score.raw - 1.0).abs() < 1e-12);
        assert!((score.normalised - 100.0).abs() < 1e-9);
        assert_eq!(
            (
                score.true_positives,
                score.false_positives,
                score.false_negatives
            ),
            (1, 0, 0)
        );
    }

    #[test]
    fn late_detection_earns_less_and_misses_cost_a_false_negative() {
        let late = score_at_threshold(&[file(1000, vec![(500, 599)], &[590])], &STANDARD, 0.5);
        assert!(late.raw > 0.0 && late.raw < 0.5, "{}", late.raw);
        let missed = score_at_threshold(&[file(1000, vec![(500, 599)], &[])], &REWARD_LOW_FN, 0.5);
        assert_eq!((missed.raw, missed.normalised), (-2.0, 0.0));
    }

    #[test]
    fn false_positives_cost_by_distance_and_probation_is_ignored() {
        // Row 10 is in probation; row 300 precedes every window: a full false positive.
        let before =
            score_at_threshold(&[file(1000, vec![(500, 599)], &[10, 300])], &STANDARD, 0.5);
        assert!((before.raw - (-1.0 - 0.11)).abs() < 1e-12);
        assert_eq!(before.false_positives, 1);
        // Just after the window the false positive is nearly free; far after it costs A_FP.
        let near = score_at_threshold(&[file(1000, vec![(500, 599)], &[600])], &STANDARD, 0.5);
        assert!(near.raw < -1.0 && near.raw > -1.01, "{}", near.raw);
        let far = score_at_threshold(&[file(2000, vec![(500, 599)], &[1500])], &STANDARD, 0.5);
        assert!((far.raw - (-1.11)).abs() < 1e-12);
    }

    #[test]
    fn window_ending_in_probation_counts_neither_way() {
        // 1000 rows: probation is rows 0..150, so the first window has no scorable row.
        let files = [file(1000, vec![(10, 50), (500, 599)], &[500])];
        let score = score_at_threshold(&files, &STANDARD, 0.5);
        assert_eq!(
            (
                score.true_positives,
                score.false_positives,
                score.false_negatives
            ),
            (1, 0, 0)
        );
        assert!((score.normalised - 100.0).abs() < 1e-9);
        assert!((optimise_threshold(&files, &STANDARD).normalised - 100.0).abs() < 1e-9);
    }

    #[test]
    fn optimised_threshold_matches_the_best_fixed_threshold() {
        let mut first = file(1000, vec![(500, 599)], &[]);
        first.scores[700] = 0.9;
        first.scores[520] = 0.8;
        first.scores[300] = 0.3;
        let mut second = file(1000, vec![(400, 449), (800, 849)], &[]);
        second.scores[410] = 0.8;
        second.scores[820] = 0.3;
        second.scores[200] = 0.5;
        let files = [first, second];
        for profile in PROFILES {
            let optimum = optimise_threshold(&files, &profile);
            let exhaustive = [1.1, 0.9, 0.8, 0.5, 0.3, 0.0]
                .into_iter()
                .map(|threshold| score_at_threshold(&files, &profile, threshold))
                .max_by(|a, b| a.raw.total_cmp(&b.raw))
                .unwrap();
            assert!(
                (optimum.raw - exhaustive.raw).abs() < 1e-12,
                "{}",
                profile.name
            );
        }
    }
}
