//! A map keyed by the identity of a shared [`Series`], for the consumers of the collector's
//! points (the detector loop and the store writer) to remember what they resolved for a series
//! without hashing and comparing its key string at every point.
//!
//! The collector's cache of metric series hands out the same `Arc<Series>` for every point of a
//! series, so the address of the allocation names the series. An entry holds a [`Weak`]
//! reference, which keeps the allocation (not the strings) alive, so no other series can take
//! that address while the entry exists. Only a series someone else also holds (more than one
//! strong reference) is worth an entry: a one-off series, such as a derived signal of one window,
//! is dropped with its batch, and its caller goes by key. Bounded: the map starts over when it
//! reaches its limit.

use std::sync::{Arc, Weak};

use foldhash::{HashMap, HashMapExt};
use pipewarden_collector::Series;

/// Values remembered per shared series, at most `max_entries` of them.
#[derive(Debug)]
pub struct SharedSeriesMap<V> {
    entries: HashMap<usize, (Weak<Series>, V)>,
    max_entries: usize,
}

impl<V: Copy> SharedSeriesMap<V> {
    /// An empty map of at most `max_entries` entries (at least one).
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            max_entries: max_entries.max(1),
        }
    }

    /// Returns how many series have an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns whether no series has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns whether `series` is worth an entry: someone else holds it too.
    pub fn is_shared(series: &Arc<Series>) -> bool {
        Arc::strong_count(series) >= 2
    }

    /// Returns the value remembered for `series`.
    pub fn get(&self, series: &Arc<Series>) -> Option<V> {
        self.entries
            .get(&(Arc::as_ptr(series) as usize))
            .map(|&(_, value)| value)
    }

    /// Returns the value remembered for `series`, to change it in place.
    pub fn get_mut(&mut self, series: &Arc<Series>) -> Option<&mut V> {
        self.entries
            .get_mut(&(Arc::as_ptr(series) as usize))
            .map(|(_, value)| value)
    }

    /// Remembers `value` for `series` if it is shared (see [`Self::is_shared`]); starts over
    /// when the map is full.
    pub fn insert(&mut self, series: &Arc<Series>, value: V) {
        if !Self::is_shared(series) {
            return;
        }
        if self.entries.len() >= self.max_entries {
            self.entries.clear();
        }
        self.entries.insert(
            Arc::as_ptr(series) as usize,
            (Arc::downgrade(series), value),
        );
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str) -> Arc<Series> {
        Arc::new(Series::new("svc", name, Vec::new()))
    }

    #[test]
    fn remembers_shared_series_only_and_by_identity() {
        let mut map = SharedSeriesMap::new(10);
        let kept = series("a");
        let held = Arc::clone(&kept);
        map.insert(&kept, 1_i64);
        assert_eq!(map.get(&held), Some(1));
        // An equal series in another allocation is another entry.
        let twin = series("a");
        let twin_held = Arc::clone(&twin);
        assert_eq!(map.get(&twin), None);
        map.insert(&twin, 2);
        assert_eq!((map.get(&kept), map.get(&twin_held)), (Some(1), Some(2)));
        // Changed in place through either holder's handle on the series.
        if let Some(value) = map.get_mut(&held) {
            *value = 5;
        }
        assert_eq!(map.get(&kept), Some(5));
        // A series nobody else holds gets no entry.
        let lone = series("b");
        map.insert(&lone, 3);
        assert_eq!((map.get(&lone), map.len()), (None, 2));
    }

    #[test]
    fn an_address_is_not_reused_while_its_entry_exists() {
        let mut map = SharedSeriesMap::new(10);
        let first = series("a");
        let other = Arc::clone(&first);
        map.insert(&first, 1_i64);
        let address = Arc::as_ptr(&first) as usize;
        drop((first, other));
        // The entry's weak reference keeps the allocation: a new series lands elsewhere.
        let next = series("b");
        assert_ne!(Arc::as_ptr(&next) as usize, address);
        assert_eq!(map.get(&next), None);
    }

    #[test]
    fn stays_within_its_bound() {
        let mut map = SharedSeriesMap::new(3);
        let kept: Vec<_> = (0..10).map(|i| series(&format!("s{i}"))).collect();
        let held: Vec<_> = kept.iter().map(Arc::clone).collect();
        for (i, series) in held.iter().enumerate() {
            map.insert(series, i);
            assert!(map.len() <= 3);
        }
        assert_eq!(map.get(&kept[9]), Some(9));
        map.clear();
        assert!(map.is_empty());
    }
}
