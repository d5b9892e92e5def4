//! Which offset of a partition may be stored: the one after the longest finished prefix of
//! what was dispatched. Records finish out of order (key queues run concurrently), but an offset is
//! only stored once every record before it is durable elsewhere.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    /// Dispatched offsets in dispatch (= offset) order, with whether each has finished.
    outstanding: VecDeque<(i64, bool)>,
    /// Next offset to consume after a restart, not yet handed to the consumer's offset store.
    to_store: Option<i64>,
    /// Last value handed to the offset store; re-stored on drain so a commit carries it.
    stored: Option<i64>,
}

impl OffsetTracker {
    pub(crate) fn dispatched(&mut self, offset: i64) {
        self.outstanding.push_back((offset, false));
    }

    pub(crate) fn finished(&mut self, offset: i64) {
        if let Ok(index) = self.outstanding.binary_search_by_key(&offset, |(o, _)| *o) {
            self.outstanding[index].1 = true;
        }
        while let Some(&(offset, true)) = self.outstanding.front() {
            self.outstanding.pop_front();
            self.to_store = Some(offset + 1);
        }
    }

    /// The offset to store now, if it moved since the last call.
    pub(crate) fn take_to_store(&mut self) -> Option<i64> {
        let next = self.to_store.take()?;
        self.stored = Some(next);
        Some(next)
    }

    /// The highest offset that may be committed, whether or not it was already stored.
    pub(crate) fn committable(&self) -> Option<i64> {
        self.to_store.or(self.stored)
    }

    pub(crate) fn unfinished(&self) -> usize {
        self.outstanding.iter().filter(|(_, done)| !done).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_only_the_finished_prefix() {
        let mut t = OffsetTracker::default();
        for o in [10, 11, 12, 14] {
            t.dispatched(o);
        }
        t.finished(11);
        t.finished(12);
        assert_eq!(t.take_to_store(), None, "10 is still running");
        t.finished(10);
        assert_eq!(t.take_to_store(), Some(13));
        assert_eq!(t.take_to_store(), None, "nothing new");
        assert_eq!(t.committable(), Some(13));
        t.finished(14);
        assert_eq!(t.take_to_store(), Some(15), "gaps (compaction, markers) are skipped");
        assert_eq!(t.unfinished(), 0);
    }

    proptest::proptest! {
        /// Whatever order records finish in, the stored offset never passes one that has not
        /// finished, never goes back, and reaches the end once all have finished.
        #[test]
        fn the_stored_offset_never_passes_an_unfinished_record(
            gaps in proptest::collection::vec(1..4i64, 1..60),
            order in proptest::collection::vec(proptest::num::usize::ANY, 60),
        ) {
            let offsets: Vec<i64> = gaps.iter().scan(100, |o, g| { *o += g; Some(*o) }).collect();
            let mut t = OffsetTracker::default();
            for &o in &offsets {
                t.dispatched(o);
            }
            // A permutation of the dispatched offsets, drawn from `order`.
            let mut left = offsets.clone();
            let mut finished = std::collections::BTreeSet::new();
            let mut last_stored = None;
            for pick in order.iter().take(offsets.len()) {
                let offset = left.remove(pick % left.len());
                t.finished(offset);
                finished.insert(offset);
                if let Some(stored) = t.take_to_store() {
                    proptest::prop_assert!(
                        offsets.iter().filter(|o| **o < stored).all(|o| finished.contains(o)),
                        "stored {stored} passes an unfinished record"
                    );
                    proptest::prop_assert!(last_stored.is_none_or(|l| stored > l));
                    last_stored = Some(stored);
                }
                proptest::prop_assert_eq!(t.unfinished(), offsets.len() - finished.len());
            }
            proptest::prop_assert_eq!(t.committable(), offsets.last().map(|o| o + 1));
        }
    }
}
