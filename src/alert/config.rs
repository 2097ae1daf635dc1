//! `[alert]`: rules, routing, inhibition, incidents, receivers and delivery.
//!
//! ```toml
//! [alert]
//! evaluation_interval = "10s"
//! external_url = "http://127.0.0.1:9464"
//!
//! [[alert.rules]]
//! kind = "threshold"
//! name = "HighErrorRatio"
//! signal = "span.error_ratio"
//! op = ">"
//! value = 0.05
//! for = "2m"
//!
//! [[alert.rules]]
//! kind = "slo"
//! name = "CheckoutAvailability"
//! objective = 0.999
//! sli = { source = "span_success", stage = "checkout" }
//!
//! [alert.route]
//! group_by = ["alertname", "stage"]
//!
//! [[alert.receivers]]
//! kind = "webhook"
//! name = "ops"
//! url = "http://127.0.0.1:5001/hook"
//! ```
//!
//! [`AlertConfig::validate`] does every I/O-free check; its errors name the key path relative
//! to the section (`rules[2].for`), the app prefixes `alert.`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use super::matcher::Matcher;
use super::model::Labels;

/// A problem in the `[alert]` section, naming the key path relative to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct AlertConfigError {
    /// Key path relative to `[alert]`, e.g. `rules[2].for`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

fn problem(field: impl Into<String>, problem: impl Into<String>) -> AlertConfigError {
    AlertConfigError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// `[alert]`: the alerting section. The default has no rule and no receiver (nothing fires,
/// nothing is sent) and validates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// How often rules are evaluated, groups flushed and forwards re-sent. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub evaluation_interval: Duration,
    /// Base URL of the pipewarden web UI, used in the `ui_url` annotation of alerts
    /// (`<external_url>/?series=<key>`) and as `externalURL` in webhook bodies.
    /// Default `http://127.0.0.1:9464`.
    pub external_url: String,
    /// Flap damping: how long a firing alert whose condition cleared keeps firing before it
    /// resolves. When the condition returns within it, the same alert continues and nothing is
    /// sent. `0s` resolves at the first evaluation that sees the condition clear.
    /// Default `5m`.
    #[serde(with = "humantime_serde")]
    pub resolve_hold_down: Duration,
    /// A series, consumer group or probe without new input for this long no longer satisfies
    /// a rule (its alert clears) and is forgotten. Default `10m`.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// Most series (or consumer groups, or probes) one rule tracks; input for more is ignored
    /// and counted in `pipewarden_alert_untracked_total`. Default 10000.
    pub max_series_per_rule: usize,
    /// Capacity, in event batches, of the queue into the alert service. Memory is about
    /// capacity x batch size. Default 256.
    pub input_queue_capacity: usize,
    /// Alerting rules; each `[[alert.rules]]` has a `kind`: `threshold`, `anomaly`, `lag`,
    /// `probe` or `slo`. Default none.
    pub rules: Vec<RuleConfig>,
    /// How alerts are grouped into notifications.
    pub route: RouteConfig,
    /// Inhibition rules: a firing alert matching `source_matchers` mutes alerts matching
    /// `target_matchers` that have the same values for the `equal` labels. Default none.
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// Correlation of alerts into incidents.
    pub incidents: IncidentConfig,
    /// Where notifications go; each `[[alert.receivers]]` has a `kind`: `webhook`, `slack` or
    /// `alertmanager`. Default none (notifications are only recorded in history).
    pub receivers: Vec<ReceiverConfig>,
    /// Retries and limits of notification delivery.
    pub delivery: DeliveryConfig,
    /// Retention of alert history, silences, incidents and delivered notifications.
    pub history: HistoryConfig,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            evaluation_interval: Duration::from_secs(10),
            external_url: "http://127.0.0.1:9464".to_owned(),
            resolve_hold_down: Duration::from_secs(300),
            stale_after: Duration::from_secs(600),
            max_series_per_rule: 10_000,
            input_queue_capacity: 256,
            rules: Vec::new(),
            route: RouteConfig::default(),
            inhibit_rules: Vec::new(),
            incidents: IncidentConfig::default(),
            receivers: Vec::new(),
            delivery: DeliveryConfig::default(),
            history: HistoryConfig::default(),
        }
    }
}

/// One alerting rule, tagged by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleConfig {
    /// A series value compared with a bound.
    Threshold(ThresholdRuleConfig),
    /// Consecutive points of a series scored at least `min_score` by the detector.
    Anomaly(AnomalyRuleConfig),
    /// A Kafka consumer group's lag verdict at least `min_status`.
    Lag(LagRuleConfig),
    /// A synthetic probe down in `failures` of its last `runs` runs.
    Probe(ProbeRuleConfig),
    /// A service level objective with multi-window burn-rate alerts.
    Slo(SloRuleConfig),
}

fn default_severity() -> String {
    "warning".to_owned()
}

/// Comparison of a threshold rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum ThresholdOp {
    /// Strictly greater.
    #[serde(rename = ">")]
    Greater,
    /// Greater or equal.
    #[serde(rename = ">=")]
    GreaterOrEqual,
    /// Strictly less.
    #[serde(rename = "<")]
    Less,
    /// Less or equal.
    #[serde(rename = "<=")]
    LessOrEqual,
}

impl ThresholdOp {
    /// Returns true when `value op bound`.
    pub fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Self::Greater => value > bound,
            Self::GreaterOrEqual => value >= bound,
            Self::Less => value < bound,
            Self::LessOrEqual => value <= bound,
        }
    }

    /// Returns the operator as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Greater => ">",
            Self::GreaterOrEqual => ">=",
            Self::Less => "<",
            Self::LessOrEqual => "<=",
        }
    }
}

/// `kind = "threshold"`: the latest value of each matching series compared with `value`.
/// One alert per series (labels `stage`, `signal`, `series`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRuleConfig {
    /// Rule name, the `alertname` label. Required, unique.
    pub name: String,
    /// Series name to watch, e.g. `span.error_ratio`, `span.latency_p95_ms` (a stage figure)
    /// or an OTLP metric name. Required unless `series_key` is set.
    pub signal: Option<String>,
    /// Only series of this stage. Default: every stage.
    pub stage: Option<String>,
    /// Only this exact series key (`stage|name|k=v`). Default: every series of `signal`.
    pub series_key: Option<String>,
    /// Only series having all these attributes. Default none.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Comparison: `>`, `>=`, `<` or `<=`. Required.
    pub op: ThresholdOp,
    /// Bound the latest value is compared with, in the series' unit. Required.
    pub value: f64,
    /// How long the condition must hold before the alert fires. Default `0s`.
    #[serde(rename = "for", default, with = "humantime_serde")]
    pub for_: Duration,
    /// `severity` label. Default `warning`.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// Extra labels. Default none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Summary template replacing the generated one; `{label}` and `{value}` are substituted.
    pub summary: Option<String>,
    /// `runbook_url` annotation. Default none.
    pub runbook_url: Option<String>,
}

fn default_min_score() -> f64 {
    70.0
}

fn default_points() -> u32 {
    3
}

fn default_clear_after() -> Duration {
    Duration::from_secs(300)
}

/// `kind = "anomaly"`: the last `points` scored points of a series all scored at least
/// `min_score` (0-100). A lower-scored point, or no qualifying point for `clear_after`, ends
/// the streak. One alert per series.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyRuleConfig {
    /// Rule name, the `alertname` label. Required, unique.
    pub name: String,
    /// Only series of this name. Default: every series.
    pub signal: Option<String>,
    /// Only series of this stage. Default: every stage.
    pub stage: Option<String>,
    /// Only this exact series key. Default: every series.
    pub series_key: Option<String>,
    /// Lowest score (0-100) that counts. Default 70.
    #[serde(default = "default_min_score")]
    pub min_score: f64,
    /// Consecutive qualifying points needed. Default 3.
    #[serde(default = "default_points")]
    pub points: u32,
    /// A streak ends when no qualifying point arrived for this long. Default `5m`.
    #[serde(default = "default_clear_after", with = "humantime_serde")]
    pub clear_after: Duration,
    /// How long the condition must hold before the alert fires. Default `0s`.
    #[serde(rename = "for", default, with = "humantime_serde")]
    pub for_: Duration,
    /// `severity` label. Default `warning`.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// Extra labels. Default none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Summary template; `{label}` and `{value}` (the score) are substituted.
    pub summary: Option<String>,
    /// `runbook_url` annotation. Default none.
    pub runbook_url: Option<String>,
}

fn default_min_status() -> String {
    "WARN".to_owned()
}

/// Lag statuses in severity order (as the Kafka lag source reports them).
pub(crate) const LAG_STATUSES: [&str; 6] = ["OK", "WARN", "REWIND", "STALL", "STOP", "ERR"];

/// Returns the severity rank of a lag status (unknown text ranks as `WARN`).
pub(crate) fn lag_rank(status: &str) -> u8 {
    LAG_STATUSES
        .iter()
        .position(|s| s.eq_ignore_ascii_case(status.trim()))
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(1)
}

/// `kind = "lag"`: the latest verdict of a consumer group at least `min_status`. One alert per
/// cluster and group (labels `cluster`, `group`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LagRuleConfig {
    /// Rule name, the `alertname` label. Required, unique.
    pub name: String,
    /// Only this cluster. Default: every cluster.
    pub cluster: Option<String>,
    /// Only this consumer group. Default: every group.
    pub group: Option<String>,
    /// Lowest status that counts, in the order OK < WARN < REWIND < STALL < STOP < ERR.
    /// Default `WARN`.
    #[serde(default = "default_min_status")]
    pub min_status: String,
    /// How long the condition must hold before the alert fires. Default `0s`.
    #[serde(rename = "for", default, with = "humantime_serde")]
    pub for_: Duration,
    /// `severity` label. Default `warning`.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// Extra labels (e.g. `stage` to correlate with a pipeline stage). Default none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Summary template; `{label}`, `{status}` and `{value}` (the status rank) are substituted.
    pub summary: Option<String>,
    /// `runbook_url` annotation. Default none.
    pub runbook_url: Option<String>,
}

fn default_failures() -> u32 {
    3
}

fn default_runs() -> u32 {
    5
}

/// `kind = "probe"`: a probe down (or slower than `max_latency_ms`) in at least `failures` of
/// its last `runs` runs. One alert per probe (label `probe`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeRuleConfig {
    /// Rule name, the `alertname` label. Required, unique.
    pub name: String,
    /// Only this probe. Default: every probe.
    pub probe: Option<String>,
    /// Failed runs needed (N). Default 3.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// Recent runs considered (M, at least N). Default 5.
    #[serde(default = "default_runs")]
    pub runs: u32,
    /// A run slower than this, in milliseconds, counts as failed. Default none.
    pub max_latency_ms: Option<f64>,
    /// How long the condition must hold before the alert fires. Default `0s`.
    #[serde(rename = "for", default, with = "humantime_serde")]
    pub for_: Duration,
    /// `severity` label. Default `warning`.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// Extra labels (e.g. `cluster` so a broker probe can inhibit lag alerts). Default none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Summary template; `{label}` and `{value}` (failed runs) are substituted.
    pub summary: Option<String>,
    /// `runbook_url` annotation. Default none.
    pub runbook_url: Option<String>,
}

/// Where an SLO's good and total events come from, tagged by `source`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum SliConfig {
    /// Each run of a probe is an event, good when up (and not slower than `max_latency_ms`).
    Probe {
        /// Probe name.
        probe: String,
        /// A run slower than this, in milliseconds, is bad. Default none.
        max_latency_ms: Option<f64>,
    },
    /// Spans of a stage: good when not in error (counts per window).
    SpanSuccess {
        /// Stage name.
        stage: String,
    },
    /// Windows of a stage (time slices): good when the window's latency percentile is at
    /// most `max_latency_ms`. Windows without spans are not counted.
    SpanLatency {
        /// Stage name.
        stage: String,
        /// 50, 95 or 99. Default 95.
        #[serde(default = "default_percentile")]
        percentile: u8,
        /// Bound in milliseconds. Required.
        max_latency_ms: f64,
    },
    /// Good and total counts fed as [`SpanSliInput`](super::SpanSliInput) with this `sli`
    /// name for this stage.
    Counts {
        /// Stage name.
        stage: String,
        /// SLI name (`success` is what the stage windows give).
        sli: String,
    },
}

fn default_percentile() -> u8 {
    95
}

/// One burn-rate alert of an SLO: fires when the error budget burns at least `burn_rate`
/// times the sustainable rate over both the long and the short window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnWindowConfig {
    /// Long window. Required.
    #[serde(with = "humantime_serde")]
    pub long: Duration,
    /// Short window. Default: 1/12 of `long`.
    #[serde(default, with = "humantime_serde")]
    pub short: Option<Duration>,
    /// Burn rate threshold (1 = the budget lasts exactly the period). Required.
    pub burn_rate: f64,
    /// `severity` label of this window pair's alert. Default `page`.
    #[serde(default = "default_page")]
    pub severity: String,
}

fn default_page() -> String {
    "page".to_owned()
}

fn default_burn_windows() -> Vec<BurnWindowConfig> {
    vec![
        BurnWindowConfig {
            long: Duration::from_secs(3600),
            short: None,
            burn_rate: 14.4,
            severity: default_page(),
        },
        BurnWindowConfig {
            long: Duration::from_secs(6 * 3600),
            short: None,
            burn_rate: 6.0,
            severity: default_page(),
        },
    ]
}

fn default_period() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_resolution() -> Duration {
    Duration::from_secs(60)
}

fn default_min_events() -> u64 {
    1
}

/// `kind = "slo"`: an objective on an SLI with multi-window burn-rate alerts, one alert per
/// window pair (labels `slo`, `window`, `severity`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloRuleConfig {
    /// Rule name, the `alertname` and `slo` labels. Required, unique.
    pub name: String,
    /// Target ratio of good events, within (0, 1), e.g. 0.999. Required.
    pub objective: f64,
    /// Where the events come from. Required.
    pub sli: SliConfig,
    /// Budget period, used for the "budget lasts" estimate. Default `30d`.
    #[serde(default = "default_period", with = "humantime_serde")]
    pub period: Duration,
    /// Burn-rate alerts. Default `1h`/`5m` at 14.4 and `6h`/`30m` at 6 (both `page`).
    #[serde(default = "default_burn_windows")]
    pub windows: Vec<BurnWindowConfig>,
    /// Width of the time buckets events are counted in (windows are rounded to it).
    /// Default `1m`.
    #[serde(default = "default_resolution", with = "humantime_serde")]
    pub resolution: Duration,
    /// Fewest events in the short window for its burn rate to count. Default 1.
    #[serde(default = "default_min_events")]
    pub min_events: u64,
    /// How long the condition must hold before the alert fires. Default `0s`.
    #[serde(rename = "for", default, with = "humantime_serde")]
    pub for_: Duration,
    /// Extra labels. Default none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Summary template; `{label}` and `{value}` (the long-window burn rate) are substituted.
    pub summary: Option<String>,
    /// `runbook_url` annotation. Default none.
    pub runbook_url: Option<String>,
}

/// `[alert.route]`: Alertmanager-style grouping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Labels whose values form a group; `["..."]` groups by every label (one group per
    /// alert). Default `["alertname"]`.
    pub group_by: Vec<String>,
    /// How long a new group waits for more alerts before its first notification.
    /// Default `30s`.
    #[serde(with = "humantime_serde")]
    pub group_wait: Duration,
    /// How long to wait before notifying about changes (new or resolved alerts) of a group
    /// that was already notified. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub group_interval: Duration,
    /// How long to wait before re-sending an unchanged firing group. Default `4h`.
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Duration,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            group_by: vec!["alertname".to_owned()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
        }
    }
}

/// `[[alert.inhibit_rules]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    /// Matchers (`name=value`, `!=`, `=~`, `!~`) a firing alert must satisfy to inhibit.
    /// Required, not empty.
    pub source_matchers: Vec<String>,
    /// Matchers an alert must satisfy to be inhibited. Required, not empty.
    pub target_matchers: Vec<String>,
    /// Labels that must have equal values in source and target. Default none.
    #[serde(default)]
    pub equal: Vec<String>,
}

/// `[alert.incidents]`: correlation of alerts into incidents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentConfig {
    /// Labels that correlate alerts, tried in order: the first one an alert has is its
    /// correlation key. Alerts with none of them join no incident. Default `["stage"]`.
    pub correlate_by: Vec<String>,
    /// Alerts with the same key starting within this time of the incident's last activity
    /// join it; an incident closes once all its alerts resolved and this time passed.
    /// Default `10m`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Closed incidents kept in memory for the API. Default 200.
    pub max_closed: usize,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self {
            correlate_by: vec!["stage".to_owned()],
            window: Duration::from_secs(600),
            max_closed: 200,
        }
    }
}

/// One receiver, tagged by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReceiverConfig {
    /// A generic webhook receiving the Alertmanager v4 webhook JSON body.
    Webhook(WebhookReceiverConfig),
    /// A Slack-compatible incoming webhook (`{"text": ..., "blocks": [...]}`).
    Slack(SlackReceiverConfig),
    /// An Alertmanager: alerts are posted to `<url>/api/v2/alerts`.
    Alertmanager(AlertmanagerReceiverConfig),
}

impl ReceiverConfig {
    /// Returns the receiver's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Webhook(r) => &r.name,
            Self::Slack(r) => &r.name,
            Self::Alertmanager(r) => &r.name,
        }
    }

    /// Returns the URL notifications are posted to.
    pub fn url(&self) -> &str {
        match self {
            Self::Webhook(r) => &r.url,
            Self::Slack(r) => &r.url,
            Self::Alertmanager(r) => &r.url,
        }
    }
}

fn default_true() -> bool {
    true
}

/// `kind = "webhook"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookReceiverConfig {
    /// Receiver name (metrics label). Required, unique.
    pub name: String,
    /// URL the JSON body is POSTed to (`http` or `https`). Required.
    pub url: String,
    /// Also notify when alerts resolve. Default true.
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Most alerts in one body (the rest are counted in `truncatedAlerts`); 0 = all.
    /// Default 0.
    #[serde(default)]
    pub max_alerts: usize,
    /// Extra request headers (e.g. `Authorization`). Default none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `kind = "slack"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackReceiverConfig {
    /// Receiver name (metrics label). Required, unique.
    pub name: String,
    /// Incoming webhook URL. Required.
    pub url: String,
    /// Also notify when alerts resolve. Default true.
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Channel override sent as `channel`. Default none (the webhook's channel).
    pub channel: Option<String>,
    /// Sender name sent as `username`. Default none.
    pub username: Option<String>,
    /// Also send Block Kit `blocks` (a header and one section per alert). Default true.
    #[serde(default = "default_true")]
    pub blocks: bool,
}

fn default_resend() -> Duration {
    Duration::from_secs(60)
}

/// `kind = "alertmanager"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerReceiverConfig {
    /// Receiver name (metrics label). Required, unique.
    pub name: String,
    /// Base URL of the Alertmanager (`http://am:9093`); alerts go to `<url>/api/v2/alerts`.
    /// Required.
    pub url: String,
    /// Firing alerts are re-sent this often (Alertmanager resolves alerts it stops hearing
    /// about); each carries `endsAt` = send time + 4 x this. Default `1m`.
    #[serde(default = "default_resend", with = "humantime_serde")]
    pub resend_interval: Duration,
    /// Extra request headers. Default none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[alert.delivery]`: how notifications are delivered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Notifications held in memory per receiver; the rest wait in the persisted outbox.
    /// Default 256.
    pub queue_capacity: usize,
    /// Timeout of one delivery attempt (connect, send, response). Default `10s`.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// Delay before the first retry; doubles per attempt with full jitter (a random delay
    /// between half and all of it). Default `1s`.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest delay between retries. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// A notification not delivered after this long is dropped (counted with reason
    /// `expired`). Default `24h`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 256,
            attempt_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// `[alert.history]`: retention of what the alert tables keep.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// History events, expired silences, closed incidents and delivered or dropped
    /// notifications older than this are deleted (checked hourly). Default `30d`.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// An `[alert]` section that passed every I/O-free check.
#[derive(Debug, Clone)]
pub struct ValidAlertConfig {
    pub(crate) evaluation_interval: Duration,
    pub(crate) external_url: String,
    pub(crate) resolve_hold_down_ms: i64,
    pub(crate) stale_after_ms: i64,
    pub(crate) max_series_per_rule: usize,
    pub(crate) input_queue_capacity: usize,
    pub(crate) rules: Vec<ValidRule>,
    pub(crate) route: ValidRoute,
    pub(crate) inhibit_rules: Vec<ValidInhibitRule>,
    pub(crate) incidents: ValidIncidents,
    pub(crate) receivers: Vec<ReceiverConfig>,
    pub(crate) delivery: DeliveryConfig,
    pub(crate) history_retention_ms: i64,
}

impl ValidAlertConfig {
    /// Returns the evaluation interval.
    pub fn evaluation_interval(&self) -> Duration {
        self.evaluation_interval
    }

    /// Returns the capacity of the input queue, in event batches.
    pub fn input_queue_capacity(&self) -> usize {
        self.input_queue_capacity
    }

    /// Returns the names of the rules.
    pub fn rule_names(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.name.clone()).collect()
    }

    /// Returns the names of the receivers.
    pub fn receiver_names(&self) -> Vec<String> {
        self.receivers.iter().map(|r| r.name().to_owned()).collect()
    }
}

/// A validated rule.
#[derive(Debug, Clone)]
pub(crate) struct ValidRule {
    pub(crate) name: String,
    pub(crate) for_ms: i64,
    /// `alertname`, `severity` (not for SLOs: per window) and the configured labels.
    pub(crate) labels: Labels,
    pub(crate) summary: Option<String>,
    pub(crate) runbook_url: Option<String>,
    pub(crate) spec: RuleSpec,
}

/// Which series a threshold or anomaly rule watches.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeriesSelector {
    pub(crate) signal: Option<String>,
    pub(crate) stage: Option<String>,
    pub(crate) series_key: Option<String>,
    pub(crate) attributes: Vec<(String, String)>,
}

impl SeriesSelector {
    pub(crate) fn matches(
        &self,
        key: &str,
        stage: &str,
        name: &str,
        attributes: &[(String, String)],
    ) -> bool {
        self.series_key.as_deref().is_none_or(|k| k == key)
            && self.signal.as_deref().is_none_or(|s| s == name)
            && self.stage.as_deref().is_none_or(|s| s == stage)
            && self
                .attributes
                .iter()
                .all(|want| attributes.iter().any(|have| have == want))
    }
}

#[derive(Debug, Clone)]
pub(crate) enum RuleSpec {
    Threshold {
        select: SeriesSelector,
        op: ThresholdOp,
        value: f64,
    },
    Anomaly {
        select: SeriesSelector,
        min_score: f64,
        points: u32,
        clear_after_ms: i64,
    },
    Lag {
        cluster: Option<String>,
        group: Option<String>,
        min_rank: u8,
    },
    Probe {
        probe: Option<String>,
        failures: u32,
        runs: u32,
        max_latency_ms: Option<f64>,
    },
    Slo(ValidSlo),
}

#[derive(Debug, Clone)]
pub(crate) struct ValidSlo {
    pub(crate) objective: f64,
    pub(crate) sli: SliConfig,
    pub(crate) period_ms: i64,
    pub(crate) windows: Vec<ValidBurnWindow>,
    pub(crate) resolution_ms: i64,
    pub(crate) min_events: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct ValidBurnWindow {
    pub(crate) long_ms: i64,
    pub(crate) short_ms: i64,
    pub(crate) burn_rate: f64,
    pub(crate) severity: String,
    /// `1h`, as the `window` label.
    pub(crate) label: String,
}

#[derive(Debug, Clone)]
pub(crate) struct ValidRoute {
    /// `None`: group by every label.
    pub(crate) group_by: Option<Vec<String>>,
    pub(crate) group_wait_ms: i64,
    pub(crate) group_interval_ms: i64,
    pub(crate) repeat_interval_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct ValidInhibitRule {
    pub(crate) source: Vec<Matcher>,
    pub(crate) target: Vec<Matcher>,
    pub(crate) equal: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ValidIncidents {
    pub(crate) correlate_by: Vec<String>,
    pub(crate) window_ms: i64,
    pub(crate) max_closed: usize,
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_labels(path: &str, labels: &BTreeMap<String, String>) -> Result<(), AlertConfigError> {
    for name in labels.keys() {
        if !is_label_name(name) {
            return Err(problem(
                format!("{path}.labels.{name}"),
                "label names must match [a-zA-Z_][a-zA-Z0-9_]*",
            ));
        }
        if name == "alertname" {
            return Err(problem(
                format!("{path}.labels.alertname"),
                "alertname is the rule name and cannot be set",
            ));
        }
    }
    Ok(())
}

fn check_url(path: &str, url: &str) -> Result<(), AlertConfigError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(()),
        _ => Err(problem(
            path,
            format!("must be an http:// or https:// URL with a host, got {url:?}"),
        )),
    }
}

fn non_empty(path: &str, value: &str) -> Result<(), AlertConfigError> {
    if value.trim().is_empty() {
        Err(problem(path, "must not be empty"))
    } else {
        Ok(())
    }
}

fn positive(path: &str, d: Duration) -> Result<i64, AlertConfigError> {
    if d.is_zero() {
        Err(problem(path, "must be greater than 0s"))
    } else {
        Ok(millis(d))
    }
}

struct Common<'a> {
    name: &'a str,
    for_: Duration,
    severity: Option<&'a str>,
    labels: &'a BTreeMap<String, String>,
    summary: &'a Option<String>,
    runbook_url: &'a Option<String>,
}

fn common(path: &str, c: Common<'_>) -> Result<ValidRule, AlertConfigError> {
    non_empty(&format!("{path}.name"), c.name)?;
    check_labels(path, c.labels)?;
    let mut labels: Labels = c.labels.clone();
    labels.insert("alertname".to_owned(), c.name.to_owned());
    if let Some(severity) = c.severity {
        non_empty(&format!("{path}.severity"), severity)?;
        labels.insert("severity".to_owned(), severity.to_owned());
    }
    Ok(ValidRule {
        name: c.name.to_owned(),
        for_ms: millis(c.for_),
        labels,
        summary: c.summary.clone(),
        runbook_url: c.runbook_url.clone(),
        // Replaced by the caller.
        spec: RuleSpec::Lag {
            cluster: None,
            group: None,
            min_rank: 0,
        },
    })
}

fn selector(
    path: &str,
    signal: &Option<String>,
    stage: &Option<String>,
    series_key: &Option<String>,
    attributes: &BTreeMap<String, String>,
) -> Result<SeriesSelector, AlertConfigError> {
    for (field, value) in [
        ("signal", signal),
        ("stage", stage),
        ("series_key", series_key),
    ] {
        if let Some(v) = value {
            non_empty(&format!("{path}.{field}"), v)?;
        }
    }
    Ok(SeriesSelector {
        signal: signal.clone(),
        stage: stage.clone(),
        series_key: series_key.clone(),
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

fn validate_rule(path: &str, rule: &RuleConfig) -> Result<ValidRule, AlertConfigError> {
    match rule {
        RuleConfig::Threshold(r) => {
            let mut valid = common(
                path,
                Common {
                    name: &r.name,
                    for_: r.for_,
                    severity: Some(&r.severity),
                    labels: &r.labels,
                    summary: &r.summary,
                    runbook_url: &r.runbook_url,
                },
            )?;
            if r.signal.is_none() && r.series_key.is_none() {
                return Err(problem(
                    format!("{path}.signal"),
                    "a threshold rule needs `signal` or `series_key`",
                ));
            }
            if !r.value.is_finite() {
                return Err(problem(format!("{path}.value"), "must be a finite number"));
            }
            valid.spec = RuleSpec::Threshold {
                select: selector(path, &r.signal, &r.stage, &r.series_key, &r.attributes)?,
                op: r.op,
                value: r.value,
            };
            Ok(valid)
        }
        RuleConfig::Anomaly(r) => {
            let mut valid = common(
                path,
                Common {
                    name: &r.name,
                    for_: r.for_,
                    severity: Some(&r.severity),
                    labels: &r.labels,
                    summary: &r.summary,
                    runbook_url: &r.runbook_url,
                },
            )?;
            if !(0.0..=100.0).contains(&r.min_score) {
                return Err(problem(
                    format!("{path}.min_score"),
                    format!("must be within 0..=100, got {}", r.min_score),
                ));
            }
            if r.points == 0 {
                return Err(problem(format!("{path}.points"), "must be at least 1"));
            }
            valid.spec = RuleSpec::Anomaly {
                select: selector(path, &r.signal, &r.stage, &r.series_key, &BTreeMap::new())?,
                min_score: r.min_score,
                points: r.points,
                clear_after_ms: positive(&format!("{path}.clear_after"), r.clear_after)?,
            };
            Ok(valid)
        }
        RuleConfig::Lag(r) => {
            let mut valid = common(
                path,
                Common {
                    name: &r.name,
                    for_: r.for_,
                    severity: Some(&r.severity),
                    labels: &r.labels,
                    summary: &r.summary,
                    runbook_url: &r.runbook_url,
                },
            )?;
            let known = LAG_STATUSES
                .iter()
                .any(|s| s.eq_ignore_ascii_case(r.min_status.trim()));
            if !known || r.min_status.eq_ignore_ascii_case("OK") {
                return Err(problem(
                    format!("{path}.min_status"),
                    format!(
                        "must be one of WARN, REWIND, STALL, STOP, ERR, got {:?}",
                        r.min_status
                    ),
                ));
            }
            valid.spec = RuleSpec::Lag {
                cluster: r.cluster.clone(),
                group: r.group.clone(),
                min_rank: lag_rank(&r.min_status),
            };
            Ok(valid)
        }
        RuleConfig::Probe(r) => {
            let mut valid = common(
                path,
                Common {
                    name: &r.name,
                    for_: r.for_,
                    severity: Some(&r.severity),
                    labels: &r.labels,
                    summary: &r.summary,
                    runbook_url: &r.runbook_url,
                },
            )?;
            if r.failures == 0 {
                return Err(problem(format!("{path}.failures"), "must be at least 1"));
            }
            if r.runs < r.failures {
                return Err(problem(
                    format!("{path}.runs"),
                    format!("must be at least failures ({}), got {}", r.failures, r.runs),
                ));
            }
            if r.runs > 10_000 {
                return Err(problem(format!("{path}.runs"), "must be at most 10000"));
            }
            if let Some(ms) = r.max_latency_ms
                && !(ms.is_finite() && ms > 0.0)
            {
                return Err(problem(format!("{path}.max_latency_ms"), "must be > 0"));
            }
            valid.spec = RuleSpec::Probe {
                probe: r.probe.clone(),
                failures: r.failures,
                runs: r.runs,
                max_latency_ms: r.max_latency_ms,
            };
            Ok(valid)
        }
        RuleConfig::Slo(r) => {
            let mut valid = common(
                path,
                Common {
                    name: &r.name,
                    for_: r.for_,
                    severity: None,
                    labels: &r.labels,
                    summary: &r.summary,
                    runbook_url: &r.runbook_url,
                },
            )?;
            valid.labels.insert("slo".to_owned(), r.name.clone());
            valid.spec = RuleSpec::Slo(validate_slo(path, r)?);
            Ok(valid)
        }
    }
}

fn validate_slo(path: &str, r: &SloRuleConfig) -> Result<ValidSlo, AlertConfigError> {
    if !(r.objective > 0.0 && r.objective < 1.0) {
        return Err(problem(
            format!("{path}.objective"),
            format!(
                "must be a ratio within (0, 1), e.g. 0.999, got {}",
                r.objective
            ),
        ));
    }
    match &r.sli {
        SliConfig::Probe {
            probe,
            max_latency_ms,
        } => {
            non_empty(&format!("{path}.sli.probe"), probe)?;
            if let Some(ms) = max_latency_ms
                && !(ms.is_finite() && *ms > 0.0)
            {
                return Err(problem(format!("{path}.sli.max_latency_ms"), "must be > 0"));
            }
        }
        SliConfig::SpanSuccess { stage } => non_empty(&format!("{path}.sli.stage"), stage)?,
        SliConfig::SpanLatency {
            stage,
            percentile,
            max_latency_ms,
        } => {
            non_empty(&format!("{path}.sli.stage"), stage)?;
            if ![50, 95, 99].contains(percentile) {
                return Err(problem(
                    format!("{path}.sli.percentile"),
                    format!("must be 50, 95 or 99, got {percentile}"),
                ));
            }
            if !(max_latency_ms.is_finite() && *max_latency_ms > 0.0) {
                return Err(problem(format!("{path}.sli.max_latency_ms"), "must be > 0"));
            }
        }
        SliConfig::Counts { stage, sli } => {
            non_empty(&format!("{path}.sli.stage"), stage)?;
            non_empty(&format!("{path}.sli.sli"), sli)?;
        }
    }
    let resolution_ms = positive(&format!("{path}.resolution"), r.resolution)?;
    let period_ms = positive(&format!("{path}.period"), r.period)?;
    if r.windows.is_empty() {
        return Err(problem(
            format!("{path}.windows"),
            "needs at least one window",
        ));
    }
    let mut windows = Vec::with_capacity(r.windows.len());
    let mut labels = BTreeSet::new();
    for (i, w) in r.windows.iter().enumerate() {
        let wpath = format!("{path}.windows[{i}]");
        let long_ms = positive(&format!("{wpath}.long"), w.long)?;
        let short = w.short.unwrap_or(w.long / 12);
        let short_ms = millis(short);
        if short_ms >= long_ms {
            return Err(problem(
                format!("{wpath}.short"),
                "must be shorter than the long window",
            ));
        }
        if short_ms < resolution_ms {
            return Err(problem(
                format!("{wpath}.short"),
                format!(
                    "must be at least the resolution ({}), got {}",
                    humantime::format_duration(r.resolution),
                    humantime::format_duration(short)
                ),
            ));
        }
        if long_ms / resolution_ms > 100_000 {
            return Err(problem(
                format!("{wpath}.long"),
                "spans more than 100000 resolution buckets; raise the resolution",
            ));
        }
        if !(w.burn_rate.is_finite() && w.burn_rate > 0.0) {
            return Err(problem(format!("{wpath}.burn_rate"), "must be > 0"));
        }
        non_empty(&format!("{wpath}.severity"), &w.severity)?;
        let label = humantime::format_duration(w.long).to_string();
        if !labels.insert(label.clone()) {
            return Err(problem(
                format!("{wpath}.long"),
                format!("another window of {label} exists"),
            ));
        }
        windows.push(ValidBurnWindow {
            long_ms,
            short_ms,
            burn_rate: w.burn_rate,
            severity: w.severity.clone(),
            label,
        });
    }
    Ok(ValidSlo {
        objective: r.objective,
        sli: r.sli.clone(),
        period_ms,
        windows,
        resolution_ms,
        min_events: r.min_events,
    })
}

impl AlertConfig {
    /// Checks every key without I/O.
    ///
    /// # Errors
    /// The first problem found, naming its key path relative to `[alert]`.
    pub fn validate(&self) -> Result<ValidAlertConfig, AlertConfigError> {
        if self.evaluation_interval < Duration::from_millis(10) {
            return Err(problem("evaluation_interval", "must be at least 10ms"));
        }
        check_url("external_url", &self.external_url)?;
        let stale_after_ms = positive("stale_after", self.stale_after)?;
        if self.max_series_per_rule == 0 {
            return Err(problem("max_series_per_rule", "must be at least 1"));
        }
        if self.input_queue_capacity == 0 {
            return Err(problem("input_queue_capacity", "must be at least 1"));
        }

        let mut names = BTreeSet::new();
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            let path = format!("rules[{i}]");
            let valid = validate_rule(&path, rule)?;
            if !names.insert(valid.name.clone()) {
                return Err(problem(
                    format!("{path}.name"),
                    format!("another rule is named {:?}", valid.name),
                ));
            }
            rules.push(valid);
        }

        let r = &self.route;
        let group_by = if r.group_by.iter().any(|l| l == "...") {
            if r.group_by.len() != 1 {
                return Err(problem(
                    "route.group_by",
                    "\"...\" (every label) cannot be combined with other labels",
                ));
            }
            None
        } else {
            for (i, l) in r.group_by.iter().enumerate() {
                if !is_label_name(l) {
                    return Err(problem(
                        format!("route.group_by[{i}]"),
                        format!("{l:?} is not a label name"),
                    ));
                }
            }
            Some(r.group_by.clone())
        };
        let route = ValidRoute {
            group_by,
            group_wait_ms: millis(r.group_wait),
            group_interval_ms: positive("route.group_interval", r.group_interval)?,
            repeat_interval_ms: positive("route.repeat_interval", r.repeat_interval)?,
        };

        let mut inhibit_rules = Vec::with_capacity(self.inhibit_rules.len());
        for (i, rule) in self.inhibit_rules.iter().enumerate() {
            let parse = |field: &str, texts: &[String]| -> Result<Vec<Matcher>, AlertConfigError> {
                if texts.is_empty() {
                    return Err(problem(
                        format!("inhibit_rules[{i}].{field}"),
                        "needs at least one matcher",
                    ));
                }
                texts
                    .iter()
                    .enumerate()
                    .map(|(j, t)| {
                        Matcher::parse(t).map_err(|e| {
                            problem(format!("inhibit_rules[{i}].{field}[{j}]"), e.to_string())
                        })
                    })
                    .collect()
            };
            for (j, l) in rule.equal.iter().enumerate() {
                if !is_label_name(l) {
                    return Err(problem(
                        format!("inhibit_rules[{i}].equal[{j}]"),
                        format!("{l:?} is not a label name"),
                    ));
                }
            }
            inhibit_rules.push(ValidInhibitRule {
                source: parse("source_matchers", &rule.source_matchers)?,
                target: parse("target_matchers", &rule.target_matchers)?,
                equal: rule.equal.clone(),
            });
        }

        for (i, l) in self.incidents.correlate_by.iter().enumerate() {
            if !is_label_name(l) {
                return Err(problem(
                    format!("incidents.correlate_by[{i}]"),
                    format!("{l:?} is not a label name"),
                ));
            }
        }
        let incidents = ValidIncidents {
            correlate_by: self.incidents.correlate_by.clone(),
            window_ms: positive("incidents.window", self.incidents.window)?,
            max_closed: self.incidents.max_closed,
        };

        let mut receiver_names = BTreeSet::new();
        for (i, receiver) in self.receivers.iter().enumerate() {
            let path = format!("receivers[{i}]");
            non_empty(&format!("{path}.name"), receiver.name())?;
            if !receiver_names.insert(receiver.name().to_owned()) {
                return Err(problem(
                    format!("{path}.name"),
                    format!("another receiver is named {:?}", receiver.name()),
                ));
            }
            check_url(&format!("{path}.url"), receiver.url())?;
            let headers = match receiver {
                ReceiverConfig::Webhook(r) => Some(&r.headers),
                ReceiverConfig::Alertmanager(r) => {
                    positive(&format!("{path}.resend_interval"), r.resend_interval)?;
                    Some(&r.headers)
                }
                ReceiverConfig::Slack(_) => None,
            };
            for name in headers.into_iter().flat_map(BTreeMap::keys) {
                let ok = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b));
                if !ok {
                    return Err(problem(
                        format!("{path}.headers.{name}"),
                        "is not a valid header name",
                    ));
                }
            }
        }

        let d = &self.delivery;
        if d.queue_capacity == 0 {
            return Err(problem("delivery.queue_capacity", "must be at least 1"));
        }
        positive("delivery.attempt_timeout", d.attempt_timeout)?;
        positive("delivery.initial_backoff", d.initial_backoff)?;
        if d.max_backoff < d.initial_backoff {
            return Err(problem(
                "delivery.max_backoff",
                "must be at least delivery.initial_backoff",
            ));
        }
        positive("delivery.max_age", d.max_age)?;

        Ok(ValidAlertConfig {
            evaluation_interval: self.evaluation_interval,
            external_url: self.external_url.trim_end_matches('/').to_owned(),
            resolve_hold_down_ms: millis(self.resolve_hold_down),
            stale_after_ms,
            max_series_per_rule: self.max_series_per_rule,
            input_queue_capacity: self.input_queue_capacity,
            rules,
            route,
            inhibit_rules,
            incidents,
            receivers: self.receivers.clone(),
            delivery: d.clone(),
            history_retention_ms: positive("history.retention", self.history.retention)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> AlertConfig {
        toml::from_str(text).unwrap()
    }

    fn error(text: &str) -> AlertConfigError {
        parse(text).validate().unwrap_err()
    }

    #[test]
    fn default_validates() {
        let valid = AlertConfig::default().validate().unwrap();
        assert!(valid.rules.is_empty());
        assert!(valid.receivers.is_empty());
        assert_eq!(valid.evaluation_interval(), Duration::from_secs(10));
    }

    #[test]
    fn parses_every_rule_kind_and_receiver() {
        let config = parse(
            r#"
            evaluation_interval = "5s"
            [[rules]]
            kind = "threshold"
            name = "HighErrors"
            signal = "span.error_ratio"
            stage = "svc/a"
            op = ">="
            value = 1
            for = "2m"
            labels = { team = "data" }
            [[rules]]
            kind = "anomaly"
            name = "Anomalous"
            points = 2
            [[rules]]
            kind = "lag"
            name = "Lagging"
            min_status = "stall"
            for = "5m"
            [[rules]]
            kind = "probe"
            name = "ProbeDown"
            failures = 2
            runs = 3
            labels = { cluster = "main" }
            [[rules]]
            kind = "slo"
            name = "Availability"
            objective = 0.999
            sli = { source = "span_success", stage = "svc/a" }
            [[rules]]
            kind = "slo"
            name = "Latency"
            objective = 0.99
            sli = { source = "span_latency", stage = "svc/a", max_latency_ms = 250 }
            windows = [{ long = "6h", short = "30m", burn_rate = 6, severity = "ticket" }]
            [route]
            group_by = ["alertname", "stage"]
            group_wait = "0s"
            [[inhibit_rules]]
            source_matchers = ["alertname=ProbeDown"]
            target_matchers = ["alertname=Lagging"]
            equal = ["cluster"]
            [[receivers]]
            kind = "webhook"
            name = "hook"
            url = "http://127.0.0.1:1/x"
            headers = { Authorization = "Bearer t" }
            [[receivers]]
            kind = "slack"
            name = "chat"
            url = "https://hooks.example.com/services/T/B/X"
            [[receivers]]
            kind = "alertmanager"
            name = "am"
            url = "http://am:9093"
            "#,
        );
        let valid = config.validate().unwrap();
        assert_eq!(valid.rules.len(), 6);
        assert_eq!(valid.rules[0].for_ms, 120_000);
        assert_eq!(valid.rules[0].labels["team"], "data");
        assert_eq!(valid.rules[0].labels["alertname"], "HighErrors");
        assert_eq!(valid.rules[0].labels["severity"], "warning");
        match &valid.rules[2].spec {
            RuleSpec::Lag { min_rank, .. } => assert_eq!(*min_rank, 3),
            other => panic!("unexpected {other:?}"),
        }
        match &valid.rules[4].spec {
            RuleSpec::Slo(slo) => {
                assert_eq!(slo.windows.len(), 2);
                assert_eq!(slo.windows[0].long_ms, 3_600_000);
                assert_eq!(slo.windows[0].short_ms, 300_000, "1/12 of the long window");
                assert_eq!(slo.windows[1].short_ms, 1_800_000);
                assert_eq!(slo.windows[0].label, "1h");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(valid.rules[4].labels["slo"], "Availability");
        assert!(!valid.rules[4].labels.contains_key("severity"));
        assert_eq!(valid.route.group_wait_ms, 0);
        assert_eq!(valid.receiver_names(), ["hook", "chat", "am"]);
    }

    #[test]
    fn refuses_unknown_keys_in_rules() {
        let err = toml::from_str::<AlertConfig>(
            r#"
            [[rules]]
            kind = "probe"
            name = "P"
            failure = 3
            "#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("failure"), "{err}");
        assert!(toml::from_str::<AlertConfig>("[[rules]]\nkind = \"nope\"\nname = \"x\"").is_err());
        assert!(toml::from_str::<AlertConfig>("unknown = 1").is_err());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "[[rules]]\nkind='probe'\nname='a'\n[[rules]]\nkind='probe'\nname='b'\nfailures=4\nruns=2",
                "rules[1].runs",
            ),
            (
                "[[rules]]\nkind='threshold'\nname='t'\nop='>'\nvalue=1",
                "rules[0].signal",
            ),
            (
                "[[rules]]\nkind='lag'\nname='l'\nmin_status='OK'",
                "rules[0].min_status",
            ),
            (
                "[[rules]]\nkind='anomaly'\nname='a'\nmin_score=101",
                "rules[0].min_score",
            ),
            (
                "[[rules]]\nkind='slo'\nname='s'\nobjective=1.0\nsli={source='probe',probe='p'}",
                "rules[0].objective",
            ),
            (
                "[[rules]]\nkind='slo'\nname='s'\nobjective=0.9\nsli={source='probe',probe='p'}\nwindows=[{long='1h',short='2h',burn_rate=1}]",
                "rules[0].windows[0].short",
            ),
            (
                "[[rules]]\nkind='probe'\nname='a'\n[[rules]]\nkind='lag'\nname='a'",
                "rules[1].name",
            ),
            (
                "[[rules]]\nkind='probe'\nname='a'\nlabels={alertname='x'}",
                "rules[0].labels.alertname",
            ),
            ("[route]\ngroup_by=['a-b']", "route.group_by[0]"),
            ("[route]\ngroup_interval='0s'", "route.group_interval"),
            (
                "[[inhibit_rules]]\nsource_matchers=['a=b']\ntarget_matchers=['x']",
                "inhibit_rules[0].target_matchers[0]",
            ),
            (
                "[[receivers]]\nkind='webhook'\nname='w'\nurl='ftp://x'",
                "receivers[0].url",
            ),
            (
                "[[receivers]]\nkind='webhook'\nname='w'\nurl='http://x'\n[[receivers]]\nkind='slack'\nname='w'\nurl='http://y'",
                "receivers[1].name",
            ),
            ("[delivery]\nmax_backoff='1ms'", "delivery.max_backoff"),
            ("external_url='localhost'", "external_url"),
        ];
        for (text, field) in cases {
            assert_eq!(error(text).field, field, "for {text}");
        }
    }

    #[test]
    fn lag_rank_orders_statuses() {
        assert_eq!(lag_rank("OK"), 0);
        assert_eq!(lag_rank("warn"), 1);
        assert_eq!(lag_rank("ERR"), 5);
        assert_eq!(lag_rank("SOMETHING"), 1);
    }
}
