//! What a probe run produces ([`ProbeResult`]), dead-man's switch findings
//! ([`DeadManFinding`]), probe event ids ([`EventId`]) and the per-partition sequence accounting
//! ([`SequenceTracker`]) that turns arrivals into exact loss and duplicate counts.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// Outcome of one probe run (the words synthetic-monitoring users know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeStatus {
    /// Every event arrived in time (a check passed).
    Up,
    /// Injecting failed, or a check failed (bad status, body, expiring certificate).
    Down,
    /// At least one event did not arrive before the timeout (a check got no answer in time).
    Timeout,
}

impl ProbeStatus {
    /// Returns `up`, `down` or `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Timeout => "timeout",
        }
    }

    /// Returns true for [`ProbeStatus::Up`].
    pub fn is_up(self) -> bool {
        self == Self::Up
    }
}

/// Latency of one stage for one run, from the stage's span joined by trace id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageLatency {
    /// Stage name (as the collector names stages).
    pub stage: String,
    /// True when a span of the stage was seen for every event of the run.
    pub seen: bool,
    /// Span duration (end − start), ms; the largest over the run's events.
    pub duration_ms: Option<f64>,
    /// From injection to the end of the stage's span, ms; the largest over the run's events.
    pub offset_ms: Option<f64>,
}

/// Counters of one probe since the prober started, per sequence accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceTotals {
    /// Events injected successfully.
    pub sent: u64,
    /// Distinct events observed.
    pub received: u64,
    /// Events not observed by their deadline, minus those that arrived late.
    pub losses: u64,
    /// Repeated arrivals of an event already observed.
    pub duplicates: u64,
    /// Events observed after their deadline (they no longer count as lost).
    pub late: u64,
    /// Arrivals too old for the sequence window, or of events this prober never sent.
    pub stale: u64,
}

/// One run of one probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Probe name (the monitor id).
    pub probe: String,
    /// `pipeline`, `http` or `tls`.
    pub kind: String,
    /// Deterministic run id, `<probe>-<instance>-<seq>` (the Elasticsearch `_id`).
    pub run_id: String,
    /// Run sequence number (1 for the first run of this prober).
    pub seq: u64,
    /// Outcome.
    pub status: ProbeStatus,
    /// When the run started, Unix ms.
    pub started_ms: i64,
    /// When the result was decided, Unix ms.
    pub finished_ms: i64,
    /// End-to-end latency, ms: the slowest event of the run (the check's answer time for checks).
    pub latency_ms: Option<f64>,
    /// Per-stage latency of the expected stages, in pipeline order.
    pub stages: Vec<StageLatency>,
    /// Events injected by this run.
    pub events: u32,
    /// Events of this run observed in time.
    pub received: u32,
    /// Events of this run not observed by the deadline.
    pub losses: u64,
    /// Duplicate arrivals observed since the previous result (of any run).
    pub duplicates: u64,
    /// Late arrivals observed since the previous result (of earlier runs).
    pub late: u64,
    /// The probe's counters since start.
    pub totals: SequenceTotals,
    /// HTTP status of a check.
    pub http_status: Option<u16>,
    /// Days left on the certificate of a TLS check.
    pub tls_days_left: Option<f64>,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

/// A dead-man's switch change: a probe observing nothing, or a stage sending no probe span, for
/// `intervals` schedule periods (or the end of such a silence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadManFinding {
    /// Probe name.
    pub probe: String,
    /// `probe` (nothing observed) or `stage:<name>` (no span of that stage).
    pub subject: String,
    /// True when the silence begins, false when it ends.
    pub active: bool,
    /// Last time something was seen, Unix ms (the prober's start when never).
    pub last_seen_ms: i64,
    /// When the change was noticed, Unix ms.
    pub timestamp_ms: i64,
    /// Configured periods of silence.
    pub intervals: u32,
    /// Human-readable text.
    pub message: String,
}

/// What the prober hands to the app.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeOutput {
    /// A run finished.
    Result(Box<ProbeResult>),
    /// A dead-man's switch changed.
    DeadMan(DeadManFinding),
}

/// The id of one probe event: `<probe>-<instance>-<partition>-<seq>`, where `instance` is 8 hex
/// digits chosen at start (events of an earlier process are not counted) and the probe name may
/// itself contain `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId {
    /// Probe name.
    pub probe: String,
    /// Prober instance.
    pub instance: u32,
    /// Partition injected to.
    pub partition: i32,
    /// Sequence number.
    pub seq: u64,
}

impl EventId {
    /// Returns the id text.
    pub fn render(&self) -> String {
        format!(
            "{}-{:08x}-{}-{}",
            self.probe, self.instance, self.partition, self.seq
        )
    }

    /// Parses an id text.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.rsplitn(4, '-');
        let seq = parts.next()?.parse().ok()?;
        let partition = parts.next()?.parse().ok()?;
        let instance = parts.next()?;
        if instance.len() != 8 {
            return None;
        }
        let instance = u32::from_str_radix(instance, 16).ok()?;
        let probe = parts.next()?;
        if probe.is_empty() {
            return None;
        }
        Some(Self {
            probe: probe.to_owned(),
            instance,
            partition,
            seq,
        })
    }
}

/// How an arrival was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First arrival, before its deadline.
    First,
    /// First arrival after its deadline (it had been counted as lost).
    Late,
    /// The event had already arrived.
    Duplicate,
    /// Outside the window, or never sent.
    Stale,
}

#[derive(Debug, Default)]
struct Stream {
    /// Highest sequence number sent.
    sent_max: u64,
    /// Sequence numbers sent and not yet pruned (so a never-sent number is told apart).
    sent: BTreeSet<u64>,
    /// Sequence numbers seen (within the window).
    seen: BTreeSet<u64>,
    /// Sequence numbers declared lost and not seen since (within the window).
    lost: BTreeSet<u64>,
}

/// Exact loss and duplicate accounting per partition of one probe: a sequence number not seen
/// by its deadline is a loss, a second arrival a duplicate, and an arrival after the deadline
/// turns its loss into a late arrival. Memory is bounded by `window` numbers per partition.
#[derive(Debug)]
pub struct SequenceTracker {
    window: u64,
    streams: HashMap<i32, Stream>,
    totals: SequenceTotals,
}

impl SequenceTracker {
    /// Creates a tracker remembering the last `window` sequence numbers per partition.
    pub fn new(window: u64) -> Self {
        Self {
            window: window.max(1),
            streams: HashMap::new(),
            totals: SequenceTotals::default(),
        }
    }

    /// Returns the counters so far.
    pub fn totals(&self) -> SequenceTotals {
        self.totals
    }

    /// Records that `seq` was sent to `partition`.
    pub fn sent(&mut self, partition: i32, seq: u64) {
        let window = self.window;
        let stream = self.streams.entry(partition).or_default();
        if stream.sent.insert(seq) {
            self.totals.sent += 1;
        }
        stream.sent_max = stream.sent_max.max(seq);
        let floor = stream.sent_max.saturating_sub(window);
        if stream.sent.first().is_some_and(|first| *first <= floor) {
            stream.sent = stream.sent.split_off(&(floor + 1));
            stream.seen = stream.seen.split_off(&(floor + 1));
            stream.lost = stream.lost.split_off(&(floor + 1));
        }
    }

    /// Takes back a send of `seq` to `partition` that failed.
    pub fn cancel(&mut self, partition: i32, seq: u64) {
        if let Some(stream) = self.streams.get_mut(&partition)
            && stream.sent.remove(&seq)
        {
            self.totals.sent -= 1;
        }
    }

    /// Records an arrival of `seq` on `partition` and says how it was counted.
    pub fn observe(&mut self, partition: i32, seq: u64) -> Arrival {
        let Some(stream) = self.streams.get_mut(&partition) else {
            self.totals.stale += 1;
            return Arrival::Stale;
        };
        if !stream.sent.contains(&seq) {
            self.totals.stale += 1;
            return Arrival::Stale;
        }
        if !stream.seen.insert(seq) {
            self.totals.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.totals.received += 1;
        if stream.lost.remove(&seq) {
            self.totals.losses -= 1;
            self.totals.late += 1;
            return Arrival::Late;
        }
        Arrival::First
    }

    /// Declares `seq` on `partition` due: a loss unless it was seen. Returns true for a loss.
    pub fn expire(&mut self, partition: i32, seq: u64) -> bool {
        let Some(stream) = self.streams.get_mut(&partition) else {
            return false;
        };
        if !stream.sent.contains(&seq) || stream.seen.contains(&seq) {
            return false;
        }
        if stream.lost.insert(seq) {
            self.totals.losses += 1;
            return true;
        }
        false
    }

    /// Returns true when `seq` on `partition` has been seen.
    pub fn is_seen(&self, partition: i32, seq: u64) -> bool {
        self.streams
            .get(&partition)
            .is_some_and(|s| s.seen.contains(&seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_with_dashes_in_the_probe_name() {
        let id = EventId {
            probe: "orders-eu.v2".into(),
            instance: 0xab,
            partition: 3,
            seq: 42,
        };
        assert_eq!(id.render(), "orders-eu.v2-000000ab-3-42");
        assert_eq!(EventId::parse(&id.render()), Some(id));
        assert_eq!(EventId::parse("x-1-2"), None);
        assert_eq!(EventId::parse("-000000ab-3-42"), None);
        assert_eq!(EventId::parse("p-zz-3-42"), None);
    }

    #[test]
    fn gaps_are_losses_and_repeats_are_duplicates_exactly() {
        let mut t = SequenceTracker::new(100);
        for seq in 1..=10 {
            t.sent(0, seq);
        }
        // The relay drops 3, 6, 9 and duplicates 4 and 8.
        for seq in [1, 2, 4, 4, 5, 7, 8, 8, 10] {
            t.observe(0, seq);
        }
        let lost: Vec<u64> = (1..=10).filter(|s| t.expire(0, *s)).collect();
        assert_eq!(lost, [3, 6, 9]);
        // Expiring again does not count twice.
        assert!(!t.expire(0, 3));
        assert_eq!(
            t.totals(),
            SequenceTotals {
                sent: 10,
                received: 7,
                losses: 3,
                duplicates: 2,
                late: 0,
                stale: 0
            }
        );
    }

    #[test]
    fn a_late_arrival_turns_a_loss_into_late_and_its_repeat_is_a_duplicate() {
        let mut t = SequenceTracker::new(100);
        t.sent(1, 1);
        t.sent(1, 2);
        assert_eq!(t.observe(1, 1), Arrival::First);
        assert!(t.expire(1, 2));
        assert_eq!(t.totals().losses, 1);
        assert_eq!(t.observe(1, 2), Arrival::Late);
        assert_eq!(t.observe(1, 2), Arrival::Duplicate);
        let totals = t.totals();
        assert_eq!(
            (
                totals.losses,
                totals.late,
                totals.duplicates,
                totals.received
            ),
            (0, 1, 1, 2)
        );
    }

    #[test]
    fn partitions_are_counted_apart_and_unknown_arrivals_are_stale() {
        let mut t = SequenceTracker::new(100);
        t.sent(0, 1);
        t.sent(1, 1);
        assert_eq!(t.observe(0, 1), Arrival::First);
        assert_eq!(t.observe(1, 1), Arrival::First);
        assert_eq!(t.observe(2, 1), Arrival::Stale);
        assert_eq!(t.observe(0, 7), Arrival::Stale);
        assert_eq!(t.totals().duplicates, 0);
        assert_eq!(t.totals().stale, 2);
    }

    #[test]
    fn the_window_bounds_memory_and_old_arrivals_are_stale() {
        let mut t = SequenceTracker::new(16);
        for seq in 1..=100 {
            t.sent(0, seq);
            assert_eq!(t.observe(0, seq), Arrival::First);
        }
        let stream = &t.streams[&0];
        assert!(stream.sent.len() <= 16 && stream.seen.len() <= 16);
        assert_eq!(t.observe(0, 10), Arrival::Stale);
        assert_eq!(t.observe(0, 100), Arrival::Duplicate);
    }
}
