//! HDFS log benchmark: block sessions scored by the session workflow model and by the PCA
//! residual baseline in the same run.
//!
//! ```text
//! cargo bench -p pipewarden-detector --bench hdfs -- [HDFS_DIR] [--details]
//! ```
//!
//! `HDFS_DIR` holds `hdfs.log.gz` (lines `date time pid level component: message`, in time
//! order) and `anomaly_label.csv` (`BlockId,Label`). It defaults to `$PIPEWARDEN_HDFS_DIR`, else
//! to `../shared/datasets/hdfs` relative to the repository root.
//!
//! Every message goes through the streaming template miner; a session is every event of a block
//! (each `blk_<id>` a line mentions). Sessions are ordered by their first line; both models learn
//! from the earlier half (labels unused) and judge the later half as it stands when the log ends
//! (the time of its last line). Reported: precision, recall and F1 on anomalous blocks of the
//! later half, for the workflow model (alert threshold 70) and the PCA baseline (tf-idf weighted
//! event counts, Q-statistic threshold), and their ratio. `$PIPEWARDEN_HDFS_MODEL`
//! (`name=value,...`) overrides workflow parameters for experiments; `--details` lists the rare
//! templates found; `--errors` prints each misjudged test session (findings, template ids).
//! `$PIPEWARDEN_HDFS_TRAIN_SHARE` (default 0.5) moves the split for robustness checks.
//! Also printed: the workflow model's fit and assessment throughput (training sessions, resp.
//! test sessions, per second of this thread's CPU time; each repeated for at least a second).

// A benchmark binary reports bad input by aborting with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use linfa::{DatasetBase, ParamGuard, traits::Fit};
use ndarray::Array2;
use pipewarden_detector::models::pca_residual::PcaResidual;
use pipewarden_detector::models::session_workflow::{
    SessionEvent, SessionFinding, SessionSet, SessionWorkflow, SessionWorkflowParams,
};
use pipewarden_detector::templates::TemplateMiner;

/// Score from which a session is an anomaly (the bank's default alert threshold).
const ALERT_THRESHOLD: f64 = 70.0;

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    true_positives: usize,
    false_positives: usize,
    false_negatives: usize,
}

impl Counts {
    fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.true_positives += 1,
            (true, false) => self.false_positives += 1,
            (false, true) => self.false_negatives += 1,
            (false, false) => {}
        }
    }

    fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }

    fn f1(&self) -> f64 {
        let (precision, recall) = (self.precision(), self.recall());
        if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        }
    }
}

fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("PIPEWARDEN_HDFS_DIR").map(PathBuf::from))
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/hdfs")
        });
    let labels = load_labels(&dir.join("anomaly_label.csv"));

    let mut miner = TemplateMiner::new(TemplateMiner::params().check().unwrap());
    let mut sessions: Vec<Vec<SessionEvent>> = Vec::new();
    let mut session_of: HashMap<String, usize> = HashMap::new();
    let mut block_names: Vec<String> = Vec::new();
    let mut lines = 0usize;
    let mut last_ms = i64::MIN;
    let path = dir.join("hdfs.log.gz");
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", path.display()));
    for line in BufReader::new(flate2::read::GzDecoder::new(file)).lines() {
        let line = line.expect("the log is UTF-8 text");
        let Some((timestamp_ms, severity, message)) = parse_line(&line) else {
            continue;
        };
        lines += 1;
        last_ms = last_ms.max(timestamp_ms);
        let template = miner.add(message, severity).id;
        let mut blocks = block_ids(message);
        blocks.sort_unstable();
        blocks.dedup();
        for block in blocks {
            let index = *session_of.entry(block.to_owned()).or_insert_with(|| {
                block_names.push(block.to_owned());
                sessions.push(Vec::new());
                sessions.len() - 1
            });
            sessions[index].push(SessionEvent {
                timestamp_ms,
                template,
            });
        }
    }
    // The earlier half trains; `$PIPEWARDEN_HDFS_TRAIN_SHARE` (0..1) moves the split to check
    // that figures do not hinge on it.
    let train_share: f64 = std::env::var("PIPEWARDEN_HDFS_TRAIN_SHARE")
        .ok()
        .map_or(0.5, |share| share.parse().expect("a share in (0, 1)"));
    let split = ((sessions.len() as f64 * train_share) as usize).clamp(1, sessions.len() - 1);
    let (train, test) = sessions.split_at(split);
    let truth: Vec<bool> = block_names[split..]
        .iter()
        .map(|block| {
            *labels
                .get(block)
                .unwrap_or_else(|| panic!("no label for {block}"))
        })
        .collect();
    println!(
        "HDFS: {lines} lines, {} templates, {} sessions ({} train / {} test, {} anomalous in test)",
        miner.len(),
        sessions.len(),
        train.len(),
        test.len(),
        truth.iter().filter(|&&anomalous| anomalous).count()
    );

    let workflow_params = workflow_params().check().unwrap();
    let set = SessionSet {
        sessions: train,
        miner: &miner,
    };
    let workflow: SessionWorkflow = workflow_params.fit(&DatasetBase::new(set, ())).unwrap();
    let (fits, fit_seconds) = repeat_for_a_second(|| {
        let refit: SessionWorkflow = workflow_params.fit(&DatasetBase::new(set, ())).unwrap();
        std::hint::black_box(refit);
    });
    let (passes, assess_seconds) = repeat_for_a_second(|| {
        for session in test {
            std::hint::black_box(workflow.assess(session, last_ms, &miner));
        }
    });
    let mut workflow_counts = Counts::default();
    let mut findings_by_kind: BTreeMap<(&str, bool), usize> = BTreeMap::new();
    let mut rare_templates: BTreeMap<(String, bool), usize> = BTreeMap::new();
    for (session, &anomalous) in test.iter().zip(&truth) {
        let assessment = workflow.assess(session, last_ms, &miner);
        let predicted = assessment.score >= ALERT_THRESHOLD;
        workflow_counts.add(predicted, anomalous);
        if predicted != anomalous && std::env::args().any(|arg| arg == "--errors") {
            let sequence: Vec<String> = session
                .iter()
                .map(|event| event.template.0.to_string())
                .collect();
            println!(
                "{} score {:.1} findings {:?} events {}",
                if anomalous { "missed" } else { "false alarm" },
                assessment.score,
                assessment.findings,
                sequence.join(" ")
            );
        }
        for finding in &assessment.findings {
            let kind = match finding {
                SessionFinding::RareTemplate { template, .. } => {
                    let text = miner.template(*template).map_or("?", |t| t.text());
                    *rare_templates
                        .entry((text.to_owned(), anomalous))
                        .or_default() += 1;
                    "rare template"
                }
                SessionFinding::Stalled { .. } => "stalled",
                SessionFinding::BrokenInvariant { .. } => "broken invariant",
            };
            *findings_by_kind.entry((kind, anomalous)).or_default() += 1;
        }
    }

    let columns = miner.len();
    let counts = |sessions: &[Vec<SessionEvent>]| {
        let mut matrix = Array2::<f64>::zeros((sessions.len(), columns));
        for (row, session) in sessions.iter().enumerate() {
            for event in session {
                matrix[(row, event.template.0 as usize)] += 1.0;
            }
        }
        matrix
    };
    let pca_params = PcaResidual::params().check().unwrap();
    let pca: PcaResidual = pca_params
        .fit(&DatasetBase::new(counts(train), ()))
        .unwrap();
    let test_counts = counts(test);
    let mut pca_counts = Counts::default();
    for (row, &anomalous) in test_counts.rows().into_iter().zip(&truth) {
        pca_counts.add(pca.is_anomaly(pca.spe(row)), anomalous);
    }

    println!();
    println!(
        "{:<18} {:>9} {:>9} {:>9} {:>6} {:>6} {:>6}",
        "model", "precision", "recall", "F1", "tp", "fp", "fn"
    );
    for (name, counts) in [
        ("session_workflow", workflow_counts),
        ("pca_residual", pca_counts),
    ] {
        println!(
            "{name:<18} {:>9.3} {:>9.3} {:>9.3} {:>6} {:>6} {:>6}",
            counts.precision(),
            counts.recall(),
            counts.f1(),
            counts.true_positives,
            counts.false_positives,
            counts.false_negatives
        );
    }
    if pca_counts.f1() > 0.0 {
        println!(
            "ratio F1 session_workflow / pca_residual: {:.2}",
            workflow_counts.f1() / pca_counts.f1()
        );
    }
    println!(
        "pca_residual: {} components, SPE threshold {:.4}; session_workflow v{}: {} invariants, \
         {} workflow states",
        pca.components(),
        pca.threshold(),
        SessionWorkflow::VERSION,
        workflow.invariants().count(),
        workflow.states()
    );
    println!(
        "session_workflow throughput (CPU time of this thread): fit {:.0} training sessions/s, \
         assess {:.0} sessions/s",
        (fits * train.len()) as f64 / fit_seconds,
        (passes * test.len()) as f64 / assess_seconds
    );
    println!();
    println!(
        "findings of the workflow model in test sessions (kind, on anomalous / normal blocks):"
    );
    for ((kind, anomalous), count) in findings_by_kind {
        println!(
            "  {kind:<17} {:<9} {count}",
            if anomalous { "anomalous" } else { "normal" }
        );
    }
    if std::env::args().any(|arg| arg == "--details") {
        println!();
        println!("rare templates found in test sessions (on anomalous / normal blocks):");
        for ((text, anomalous), count) in rare_templates {
            let kind = if anomalous { "anomalous" } else { "normal" };
            println!("  {kind:<9} {count:>4}  {text}");
        }
    }
}

/// Returns the workflow model's parameters: the defaults, with the overrides of
/// `$PIPEWARDEN_HDFS_MODEL` (`name=value,...`, for experiments).
fn workflow_params() -> SessionWorkflowParams {
    let mut params = SessionWorkflow::params();
    let overrides = std::env::var("PIPEWARDEN_HDFS_MODEL").unwrap_or_default();
    for setting in overrides.split(',').filter(|setting| !setting.is_empty()) {
        let (name, value) = setting.split_once('=').expect("overrides are name=value");
        let number: f64 = value.parse().expect("override values are numbers");
        params = match name {
            "novel_fraction" => params.novel_fraction(number),
            "rare_fraction" => params.rare_fraction(number),
            "timeout_margin" => params.timeout_margin(number),
            "invariant_support" => params.invariant_support(number),
            "invariant_hold" => params.invariant_hold(number),
            "min_lag_ms" => params.min_lag_ms(number as i64),
            "min_state_sessions" => params.min_state_sessions(number as u32),
            "max_refinement_terms" => params.max_refinement_terms(number as usize),
            _ => panic!("unknown model parameter {name}"),
        };
    }
    params
}

fn load_labels(path: &Path) -> HashMap<String, bool> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_once(','))
        .map(|(block, label)| (block.trim().to_owned(), label.trim() == "Anomaly"))
        .collect()
}

/// Parses `yymmdd hhmmss pid LEVEL component: message` into (ms since the epoch, OTLP severity
/// number, message).
fn parse_line(line: &str) -> Option<(i64, u8, &str)> {
    let mut fields = line.splitn(5, ' ');
    let (date, time, _pid, level, rest) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let number = |text: &str, range: std::ops::Range<usize>| -> Option<i64> {
        text.get(range)?.parse().ok()
    };
    let days = days_from_civil(
        2000 + number(date, 0..2)?,
        number(date, 2..4)?,
        number(date, 4..6)?,
    );
    let seconds = number(time, 0..2)? * 3600 + number(time, 2..4)? * 60 + number(time, 4..6)?;
    let severity = match level {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" => 9,
        "WARN" | "WARNING" => 13,
        "ERROR" => 17,
        "FATAL" => 21,
        _ => 0,
    };
    let message = rest
        .split_once(": ")
        .map_or(rest, |(_component, message)| message);
    Some(((days * 86_400 + seconds) * 1000, severity, message))
}

/// Returns every `blk_<id>` (with an optional minus sign) in a message.
fn block_ids(message: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = message;
    while let Some(start) = rest.find("blk_") {
        let tail = &rest[start + 4..];
        let sign = usize::from(tail.starts_with('-'));
        let digits = tail[sign..].bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            blocks.push(&rest[start..start + 4 + sign + digits]);
        }
        rest = &rest[start + 4 + sign + digits..];
    }
    blocks
}

/// Returns days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Runs `work` until it has taken at least a second of this thread's CPU time (at least once)
/// and returns the number of runs and the seconds they took.
fn repeat_for_a_second(mut work: impl FnMut()) -> (usize, f64) {
    let start = thread_cpu_seconds();
    let mut runs = 0;
    loop {
        work();
        runs += 1;
        let elapsed = thread_cpu_seconds() - start;
        if elapsed >= 1.0 {
            return (runs, elapsed);
        }
    }
}

/// Returns the CPU time this thread has run, in seconds (Linux `schedstat`), else the wall
/// clock.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<f64>().ok())
        .map(|nanoseconds| nanoseconds / 1e9)
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |elapsed| elapsed.as_secs_f64())
        })
}
