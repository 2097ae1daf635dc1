//! `pipewarden replay`: scores a recorded series offline with the same code path as live
//! scoring (the [`SeriesBank`] built from the same `[detector]` settings).
//!
//! Input: CSV with a header and `timestamp,value` rows in time order; timestamps are
//! RFC 3339-like (`2014-02-14 14:30:00`, `2014-02-14T14:30:00Z`) or Unix milliseconds. Output: one
//! `timestamp,value,score` row per input row, the score (0-100) computed only from earlier rows.
//! The same input always gives the same output.
//!
//! `--format log` ([`replay_log`]) runs the live log detector ([`LogDetector`], same
//! `[detector]` settings) over a log file, one record per line: line `n` (1-based) is a record
//! of stage `replay` at `n` seconds (so `detector.logs.rate_window` counts lines); a line that is
//! a JSON object gives the record's attributes, and its `body`, `message` or `msg` string (else
//! the line) is the message. Output: a `line,template_id,score` header, then exactly one row per
//! input line (empty lines included, with an empty template id and score 0): the line number,
//! the id of the template the line joined (dense from 0 in order of discovery), and the highest
//! score (0-100) of the anomalies the line produced (a new template, a schema change, an
//! embedding outlier, or a template-rate window or session that the line closed). Windows and
//! sessions still open at the end are not scored.

use std::io::{BufRead, BufWriter, Write};

use pipewarden_detector::SeriesBank;

use crate::config::DetectorConfig;
use crate::detect::LogDetector;
use crate::features;

/// A replay failure, naming the line it is about.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading or writing failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A row is malformed.
    #[error("line {line}: {problem}")]
    Row {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The detector settings are refused.
    #[error("detector settings: {0}")]
    Params(String),
}

/// Series key used for the replayed series.
const REPLAY_KEY: &str = "replay|value|";

/// Scores every row of `input` and writes `timestamp,value,score` rows to `output`.
///
/// # Errors
/// On I/O failure or a malformed row (a bad timestamp or value), naming the line.
pub fn replay_csv(
    input: impl BufRead,
    output: impl Write,
    detector: &DetectorConfig,
) -> Result<usize, ReplayError> {
    let params = features::bank_params(detector).map_err(|e| ReplayError::Params(e.to_string()))?;
    let mut bank = SeriesBank::new(params);
    let mut out = BufWriter::new(output);
    let io = |context: &str| {
        let context = context.to_owned();
        move |source| ReplayError::Io { context, source }
    };
    writeln!(out, "timestamp,value,score").map_err(io("writing output"))?;
    let mut rows = 0;
    for (index, line) in input.lines().enumerate() {
        let line_no = index + 1;
        let line = line.map_err(io("reading input"))?;
        let trimmed = line.trim();
        if trimmed.is_empty() || (index == 0 && is_header(trimmed)) {
            continue;
        }
        let (ts_text, value_text) = trimmed.split_once(',').ok_or_else(|| ReplayError::Row {
            line: line_no,
            problem: "expected `timestamp,value`".to_owned(),
        })?;
        let timestamp_ms = parse_timestamp_ms(ts_text.trim()).ok_or_else(|| ReplayError::Row {
            line: line_no,
            problem: format!("timestamp `{ts_text}` is neither RFC 3339 nor Unix milliseconds"),
        })?;
        let value: f64 = value_text.trim().parse().map_err(|_| ReplayError::Row {
            line: line_no,
            problem: format!("value `{value_text}` is not a number"),
        })?;
        let scored = bank.observe(REPLAY_KEY, timestamp_ms, value);
        writeln!(
            out,
            "{},{},{:.4}",
            ts_text.trim(),
            value_text.trim(),
            scored.score
        )
        .map_err(io("writing output"))?;
        rows += 1;
    }
    out.flush().map_err(io("writing output"))?;
    Ok(rows)
}

/// Stage of replayed log records.
const REPLAY_STAGE: &str = "replay";

/// Runs the log detector over every line of `input` and writes `line,template_id,score` rows
/// to `output`, one per input line; returns the number of lines.
///
/// # Errors
/// On I/O failure or refused detector settings.
pub fn replay_log(
    input: impl BufRead,
    output: impl Write,
    detector: &DetectorConfig,
) -> Result<usize, ReplayError> {
    let mut logs =
        LogDetector::from_config(detector).map_err(|e| ReplayError::Params(e.to_string()))?;
    let mut out = BufWriter::new(output);
    let io = |context: &str| {
        let context = context.to_owned();
        move |source| ReplayError::Io { context, source }
    };
    writeln!(out, "line,template_id,score").map_err(io("writing output"))?;
    let mut anomalies = Vec::new();
    let mut rows = 0;
    for (index, line) in input.lines().enumerate() {
        let line = line.map_err(io("reading input"))?;
        let line_no = index + 1;
        rows += 1;
        if line.trim().is_empty() {
            writeln!(out, "{line_no},,0.0000").map_err(io("writing output"))?;
            continue;
        }
        let record = log_record_of_line(&line, line_no);
        anomalies.clear();
        let outcome = logs.observe(&record, &mut anomalies);
        let template = outcome
            .template
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        writeln!(out, "{line_no},{template},{:.4}", outcome.score).map_err(io("writing output"))?;
    }
    out.flush().map_err(io("writing output"))?;
    Ok(rows)
}

/// Returns the record a replayed line stands for (see the [module docs](self)).
fn log_record_of_line(line: &str, line_no: usize) -> pipewarden_collector::LogRecord {
    let mut attributes = serde_json::Value::Null;
    let mut body = line.to_owned();
    if line.trim_start().starts_with('{')
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str(line)
    {
        if let Some(message) = ["body", "message", "msg"]
            .iter()
            .find_map(|key| map.get(*key).and_then(serde_json::Value::as_str))
        {
            body = message.to_owned();
        }
        attributes = serde_json::Value::Object(map);
    }
    pipewarden_collector::LogRecord {
        stage: REPLAY_STAGE.to_owned(),
        timestamp_ms: i64::try_from(line_no)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000),
        severity_number: 0,
        severity_text: String::new(),
        body,
        attributes,
        trace_id: String::new(),
        span_id: String::new(),
    }
}

fn is_header(line: &str) -> bool {
    line.split(',')
        .nth(1)
        .is_some_and(|second| second.trim().parse::<f64>().is_err())
}

/// Parses an RFC 3339-like timestamp (space or `T`, optional zone: UTC assumed) or Unix
/// milliseconds.
pub fn parse_timestamp_ms(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let t = humantime::parse_rfc3339_weak(text).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> Result<String, ReplayError> {
        let mut out = Vec::new();
        replay_csv(input.as_bytes(), &mut out, &DetectorConfig::default())?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn series_with_spike() -> String {
        let mut csv = String::from("timestamp,value\n");
        for i in 0..200 {
            let v = if i == 150 {
                500.0
            } else {
                10.0 + (i % 7) as f64 * 0.5
            };
            csv.push_str(&format!("2014-02-14 {:02}:{:02}:00,{v}\n", i / 60, i % 60));
        }
        csv
    }

    #[test]
    fn one_row_out_per_row_in_and_the_spike_scores_high() {
        let out = run(&series_with_spike()).unwrap();
        let rows: Vec<&str> = out.lines().collect();
        assert_eq!(rows[0], "timestamp,value,score");
        assert_eq!(rows.len(), 201);
        let score = |row: &str| row.rsplit(',').next().unwrap().parse::<f64>().unwrap();
        assert!(score(rows[151]) >= 70.0, "{}", rows[151]);
        assert!(score(rows[100]) < 70.0, "{}", rows[100]);
        assert!(rows[151].starts_with("2014-02-14 02:30:00,500,"));
    }

    #[test]
    fn rerun_gives_the_same_output() {
        assert_eq!(
            run(&series_with_spike()).unwrap(),
            run(&series_with_spike()).unwrap()
        );
    }

    #[test]
    fn scores_use_only_earlier_rows() {
        let full = run(&series_with_spike()).unwrap();
        let truncated: String = series_with_spike()
            .lines()
            .take(120)
            .map(|l| format!("{l}\n"))
            .collect();
        let part = run(&truncated).unwrap();
        assert!(full.starts_with(&part));
    }

    #[test]
    fn bad_rows_name_their_line() {
        let err = run("timestamp,value\n2014-02-14 00:00:00,1\nnot-a-time,2\n").unwrap_err();
        assert!(err.to_string().starts_with("line 3:"), "{err}");
        let err = run("timestamp,value\n2014-02-14 00:00:00,abc\n").unwrap_err();
        assert!(err.to_string().contains("abc"), "{err}");
    }

    fn replay_lines(input: &str, detector: &DetectorConfig) -> String {
        let mut out = Vec::new();
        replay_log(input.as_bytes(), &mut out, detector).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn log_input() -> String {
        let mut text = String::new();
        for i in 0..300 {
            match i % 3 {
                0 => text.push_str(&format!(
                    "Receiving block blk_{i} src: /10.0.0.{}:50010\n",
                    i % 9
                )),
                1 => text.push_str(&format!(
                    "PacketResponder {i} for block blk_{i} terminating\n"
                )),
                _ => text.push_str(&format!("Verification succeeded for blk_{i}\n")),
            }
            if i == 10 {
                text.push('\n');
            }
        }
        text.push_str("Exception in receiveBlock for block blk_77 java.io.IOException: Connection reset by peer\n");
        text
    }

    #[test]
    fn log_replay_writes_one_row_per_line_and_repeats_exactly() {
        let mut detector = DetectorConfig::default();
        detector.logs.warmup_records = 100;
        let input = log_input();
        let out = replay_lines(&input, &detector);
        let rows: Vec<&str> = out.lines().collect();
        assert_eq!(rows[0], "line,template_id,score");
        assert_eq!(rows.len() - 1, input.lines().count());
        assert_eq!(rows[12], "12,,0.0000", "the empty line keeps its row");
        assert!(rows[1].starts_with("1,0,"), "{}", rows[1]);
        let last = rows.last().unwrap();
        let score: f64 = last.rsplit(',').next().unwrap().parse().unwrap();
        assert!(score >= 70.0, "a new template after the warm-up: {last}");
        assert!(last.starts_with("302,3,"), "{last}");
        assert_eq!(
            out,
            replay_lines(&input, &detector),
            "a re-run is identical"
        );
    }

    #[test]
    fn json_lines_feed_the_schema_model() {
        let mut detector = DetectorConfig::default();
        detector.schema.warmup_events = 20;
        let mut input = String::new();
        for i in 0..30 {
            input.push_str(&format!(
                "{{\"msg\":\"order {i} done\",\"order_id\":{i}}}\n"
            ));
        }
        input.push_str("{\"msg\":\"order 31 done\",\"order_id\":\"x-31\"}\n");
        let out = replay_lines(&input, &detector);
        let last = out.lines().last().unwrap();
        let score: f64 = last.rsplit(',').next().unwrap().parse().unwrap();
        assert!(score >= 70.0, "order_id changed type: {last}");
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_timestamp_ms("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_timestamp_ms("1970-01-01 00:00:01"), Some(1000));
        assert_eq!(parse_timestamp_ms("1970-01-01T00:00:02Z"), Some(2000));
        assert_eq!(parse_timestamp_ms("yesterday"), None);
    }
}
