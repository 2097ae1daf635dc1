//! Silences: label matchers and a time range during which matching alerts send nothing.
//! Created and expired through the API (expiring sets the end to now, as Alertmanager does);
//! expired silences stay listed until the history retention deletes them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::AlertError;
use super::matcher::{Matcher, all_match};
use super::model::{Fnv64, Labels};

/// Where a silence is in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Starts in the future.
    Pending,
    /// Mutes matching alerts now.
    Active,
    /// Ended.
    Expired,
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Id (`s-` and 16 hex digits).
    pub id: String,
    /// Every matcher must match an alert's labels.
    pub matchers: Vec<Matcher>,
    /// Start, Unix ms.
    pub starts_at_ms: i64,
    /// End, Unix ms (exclusive).
    pub ends_at_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// Last change (creation or expiry), Unix ms.
    pub updated_at_ms: i64,
}

impl Silence {
    /// Returns the state at `now_ms`.
    pub fn state(&self, now_ms: i64) -> SilenceState {
        if now_ms < self.starts_at_ms {
            SilenceState::Pending
        } else if now_ms < self.ends_at_ms {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    /// Returns true when the silence is active at `now_ms` and matches `labels`.
    pub fn mutes(&self, labels: &Labels, now_ms: i64) -> bool {
        self.state(now_ms) == SilenceState::Active && all_match(&self.matchers, labels)
    }
}

/// A request to create a silence (the JSON body of `POST /silences`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// Matchers such as `alertname=Lagging`, `cluster=~"eu-.*"`. At least one must not match
    /// the empty string (a silence cannot mute everything).
    pub matchers: Vec<String>,
    /// Start, Unix ms. Default: now.
    #[serde(default)]
    pub starts_at_ms: Option<i64>,
    /// End, Unix ms. Either this or `duration` is required.
    #[serde(default)]
    pub ends_at_ms: Option<i64>,
    /// Length from the start, e.g. `2h`.
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
    /// Who creates it. Default empty.
    #[serde(default)]
    pub created_by: String,
    /// Why. Default empty.
    #[serde(default)]
    pub comment: String,
}

impl SilenceRequest {
    /// Checks the request and builds the silence, created at `now_ms` with sequence `seq`.
    ///
    /// # Errors
    /// [`AlertError::BadSilence`] naming the field that is wrong.
    pub(crate) fn into_silence(self, now_ms: i64, seq: u64) -> Result<Silence, AlertError> {
        let bad = |msg: String| AlertError::BadSilence(msg);
        if self.matchers.is_empty() {
            return Err(bad("matchers: at least one matcher is required".to_owned()));
        }
        let mut matchers = Vec::with_capacity(self.matchers.len());
        for (i, text) in self.matchers.iter().enumerate() {
            matchers.push(Matcher::parse(text).map_err(|e| bad(format!("matchers[{i}]: {e}")))?);
        }
        if matchers.iter().all(|m| m.matches(&Labels::new())) {
            return Err(bad(
                "matchers: at least one matcher must not match the empty string".to_owned(),
            ));
        }
        let starts = self.starts_at_ms.unwrap_or(now_ms);
        let ends = match (self.ends_at_ms, self.duration) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "ends_at_ms: give either ends_at_ms or duration".to_owned()
                ));
            }
            (Some(ends), None) => ends,
            (None, Some(d)) => {
                starts.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }
            (None, None) => {
                return Err(bad(
                    "duration: ends_at_ms or duration is required".to_owned()
                ));
            }
        };
        if ends <= starts {
            return Err(bad("ends_at_ms: must be after the start".to_owned()));
        }
        if ends <= now_ms {
            return Err(bad("ends_at_ms: must be in the future".to_owned()));
        }
        let mut hash = Fnv64::default();
        hash.write(&now_ms.to_le_bytes());
        hash.write(&seq.to_le_bytes());
        for m in &matchers {
            hash.write(m.to_string().as_bytes());
        }
        Ok(Silence {
            id: format!("s-{:016x}", hash.0),
            matchers,
            starts_at_ms: starts,
            ends_at_ms: ends,
            created_by: self.created_by,
            comment: self.comment,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(matchers: &[&str]) -> SilenceRequest {
        SilenceRequest {
            matchers: matchers.iter().map(|m| (*m).to_owned()).collect(),
            duration: Some(Duration::from_secs(3600)),
            ..SilenceRequest::default()
        }
    }

    #[test]
    fn builds_and_times_a_silence() {
        let s = request(&["alertname=Lagging"])
            .into_silence(1_000, 0)
            .unwrap();
        assert_eq!((s.starts_at_ms, s.ends_at_ms), (1_000, 3_601_000));
        assert!(s.id.starts_with("s-") && s.id.len() == 18);
        assert_eq!(s.state(999), SilenceState::Pending);
        assert_eq!(s.state(1_000), SilenceState::Active);
        assert_eq!(s.state(3_601_000), SilenceState::Expired);
        let mut labels = Labels::new();
        labels.insert("alertname".into(), "Lagging".into());
        assert!(s.mutes(&labels, 2_000));
        assert!(!s.mutes(&labels, 4_000_000));
        let other = request(&["alertname=Lagging"])
            .into_silence(1_000, 1)
            .unwrap();
        assert_ne!(s.id, other.id);
    }

    #[test]
    fn refuses_bad_requests() {
        assert!(request(&[]).into_silence(0, 0).is_err());
        assert!(
            request(&["a=~.*"]).into_silence(0, 0).is_err(),
            "mutes everything"
        );
        assert!(
            request(&["a=="]).into_silence(0, 0).is_ok(),
            "value '=' is fine"
        );
        assert!(request(&["1=a"]).into_silence(0, 0).is_err());
        let mut r = request(&["a=b"]);
        r.duration = None;
        assert!(r.clone().into_silence(0, 0).is_err());
        r.ends_at_ms = Some(10);
        assert!(r.into_silence(20, 0).is_err(), "ends in the past");
    }
}
