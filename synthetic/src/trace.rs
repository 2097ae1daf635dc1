//! W3C trace context of probe events, and the stage spans joined back to them.
//!
//! Every probe event starts a fresh trace whose id begins with [`TRACE_ID_PREFIX`] followed by
//! the probe's index (two bytes) and ten random bytes, so the collector's span tap keeps probe
//! spans with one byte comparison and the prober routes them to their probe without a lookup.

/// First four bytes of every probe trace id (`pwpb`).
pub const TRACE_ID_PREFIX: [u8; 4] = *b"pwpb";

/// A span of a stage that carried a probe event's trace context, as the collector saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpan {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Stage name (as the collector names stages).
    pub stage: String,
    /// Start, Unix ns.
    pub start_unix_nano: u64,
    /// End, Unix ns.
    pub end_unix_nano: u64,
}

/// Returns a fresh probe trace id for the probe at `probe_index`.
pub fn new_trace_id(probe_index: u16) -> [u8; 16] {
    let mut id = [0_u8; 16];
    id[..4].copy_from_slice(&TRACE_ID_PREFIX);
    id[4..6].copy_from_slice(&probe_index.to_be_bytes());
    rand::fill(&mut id[6..]);
    id
}

/// Returns a fresh non-zero span id.
pub fn new_span_id() -> [u8; 8] {
    let mut id = [0_u8; 8];
    while id == [0; 8] {
        rand::fill(&mut id);
    }
    id
}

/// Returns the probe index a probe trace id carries, `None` for other trace ids.
pub fn probe_index(trace_id: &[u8]) -> Option<u16> {
    if trace_id.len() != 16 || trace_id[..4] != TRACE_ID_PREFIX {
        return None;
    }
    Some(u16::from_be_bytes([trace_id[4], trace_id[5]]))
}

/// Returns lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Returns the W3C `traceparent` header value (version 00, sampled).
pub fn traceparent(trace_id: &[u8; 16], span_id: &[u8; 8]) -> String {
    format!("00-{}-{}-01", hex(trace_id), hex(span_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_carry_the_prefix_and_the_probe_index() {
        let a = new_trace_id(7);
        let b = new_trace_id(7);
        assert_ne!(a, b);
        assert_eq!(&a[..4], b"pwpb");
        assert_eq!(probe_index(&a), Some(7));
        assert_eq!(probe_index(&[0; 16]), None);
        assert_eq!(probe_index(&a[..8]), None);
        let tp = traceparent(&a, &[0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(tp.len(), 55);
        assert!(tp.starts_with("00-70777062"), "{tp}");
        assert!(tp.ends_with("-0000000000000001-01"), "{tp}");
    }
}
