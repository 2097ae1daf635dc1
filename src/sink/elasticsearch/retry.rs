//! The retry verdict: one function decides, per HTTP status, whether a request or a bulk item
//! is done, worth retrying, or refused for good; and jittered exponential backoff.

use std::time::Duration;

use rand::Rng;

/// What to do with a request or an item after the cluster answered `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Stored (2xx), or already stored under its deterministic id (409 on `create`).
    Done,
    /// Transient: 429, 5xx, or no answer at all. Retry with backoff.
    Retry,
    /// Permanent: 400 (mapping, parse errors), 404, 413 and the other 4xx. Dead-letter it.
    Permanent,
}

/// Classifies an HTTP status (of a whole request or of one bulk item).
pub fn classify_status(status: u16) -> Verdict {
    match status {
        200..=299 | 409 => Verdict::Done,
        // 401/403 are transient for a writer: credentials and roles get fixed on the cluster
        // side while the spool holds the documents; 408 is a timeout.
        401 | 403 | 408 | 429 => Verdict::Retry,
        500..=599 => Verdict::Retry,
        _ => Verdict::Permanent,
    }
}

/// A failed bulk request (not one item: items are classified from their own status).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No answer: connection refused, reset, timeout.
    #[error("transport error: {0}")]
    Transport(String),
    /// The cluster answered with a non-2xx status for the whole request.
    #[error("status {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// The answer could not be read or did not match the request.
    #[error("bad bulk response: {0}")]
    BadResponse(String),
}

impl SendError {
    /// Returns the retry verdict of this error.
    pub fn verdict(&self) -> Verdict {
        match self {
            SendError::Transport(_) | SendError::BadResponse(_) => Verdict::Retry,
            SendError::Status { status, .. } => match classify_status(*status) {
                // A whole request cannot be "done" with an error status.
                Verdict::Done => Verdict::Retry,
                other => other,
            },
        }
    }

    /// Returns true when retrying may succeed.
    pub fn is_retriable(&self) -> bool {
        self.verdict() == Verdict::Retry
    }

    /// Returns a low-cardinality reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            SendError::Transport(_) => "transport",
            SendError::Status { status: 429, .. } => "too_many_requests",
            SendError::Status {
                status: 401 | 403, ..
            } => "auth",
            SendError::Status { status, .. } if *status >= 500 => "server_error",
            SendError::Status { .. } => "refused",
            SendError::BadResponse(_) => "bad_response",
        }
    }
}

/// Jittered exponential backoff: attempt n waits a random time in `[min, min * 2^n]`, capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at attempt 0.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// Returns the next wait and counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let (lo, hi) = (self.min.as_micros() as u64, ceiling.as_micros() as u64);
        if hi <= lo {
            return ceiling;
        }
        Duration::from_micros(rand::rng().random_range(lo..=hi))
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        for s in [200, 201, 409] {
            assert_eq!(classify_status(s), Verdict::Done, "{s}");
        }
        for s in [429, 500, 502, 503, 504, 401, 403] {
            assert_eq!(classify_status(s), Verdict::Retry, "{s}");
        }
        for s in [400, 404, 405, 413] {
            assert_eq!(classify_status(s), Verdict::Permanent, "{s}");
        }
    }

    #[test]
    fn request_errors_carry_their_verdict() {
        assert!(SendError::Transport("refused".into()).is_retriable());
        let too_many = SendError::Status {
            status: 429,
            body: String::new(),
        };
        assert!(too_many.is_retriable());
        assert_eq!(too_many.reason(), "too_many_requests");
        let bad = SendError::Status {
            status: 400,
            body: String::new(),
        };
        assert_eq!(bad.verdict(), Verdict::Permanent);
    }

    #[test]
    fn backoff_grows_within_bounds_and_resets() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(80));
        let mut b = Backoff::new(min, max);
        for n in 0..10u32 {
            let d = b.next_delay();
            let ceiling = (min * 2u32.pow(n.min(10))).min(max);
            assert!(d >= min && d <= ceiling, "attempt {n}: {d:?}");
        }
        b.reset();
        assert!(b.next_delay() <= min);
    }
}
