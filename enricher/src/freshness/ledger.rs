//! What one enricher process knows of the directory topics: how far its tail read each
//! partition, how far the applier applied each, and which changes it read that are not
//! applied yet (by subject: a user, a template). Pure bookkeeping; the callers do the I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A partition of a directory topic.
pub type Partition = (Arc<str>, i32);

/// What a change is about: a user's entry or a template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    User(String),
    Template(String),
}

#[derive(Debug, Default)]
pub struct Ledger {
    /// The next offset the tail will read, per partition.
    position: HashMap<Partition, i64>,
    /// Every record before this offset is applied, per partition.
    applied: HashMap<Partition, i64>,
    /// Each subject's latest change read and not applied yet.
    pending: HashMap<Subject, (Partition, i64)>,
    /// The same changes by partition and offset, every one of them.
    unapplied: HashMap<Partition, BTreeMap<i64, Subject>>,
    count: usize,
}

impl Ledger {
    /// Changes read and not applied yet.
    pub fn unapplied_count(&self) -> usize {
        self.count
    }

    /// Where the tail starts reading `partition`.
    pub fn start(&mut self, partition: Partition, next: i64) {
        self.position.entry(partition).or_insert(next);
    }

    pub fn position(&self, partition: &Partition) -> Option<i64> {
        self.position.get(partition).copied()
    }

    /// Whether the record at `offset` of `partition` is known to be applied.
    pub fn is_applied(&self, partition: &Partition, offset: i64) -> bool {
        self.applied.get(partition).is_some_and(|applied| offset < *applied)
    }

    /// The tail read `subject`'s change at `offset`. True when it is applied already: its
    /// subject is to be dropped from the caches now; otherwise it waits for
    /// [`Ledger::applied`].
    pub fn read(&mut self, partition: &Partition, offset: i64, subject: Subject) -> bool {
        let next = self.position.entry(partition.clone()).or_insert(0);
        *next = (*next).max(offset + 1);
        if self.is_applied(partition, offset) {
            return true;
        }
        let at = self.unapplied.entry(partition.clone()).or_default();
        if at.insert(offset, subject.clone()).is_none() {
            self.count += 1;
        }
        let latest = self.pending.entry(subject).or_insert_with(|| (partition.clone(), offset));
        if latest.0 == *partition && latest.1 < offset {
            latest.1 = offset;
        } else if latest.0 != *partition {
            // One subject's changes in two partitions (producers partitioning differently):
            // whichever was read last is waited for.
            *latest = (partition.clone(), offset);
        }
        false
    }

    /// The tail's consumer stands at `next` in `partition` (past records it does not hand
    /// over, such as transaction markers).
    pub fn moved_to(&mut self, partition: &Partition, next: i64) {
        let position = self.position.entry(partition.clone()).or_insert(next);
        *position = (*position).max(next);
    }

    /// The changes of `partition` that applying up to `next` settles: drop their subjects from
    /// the caches, then call [`Ledger::settle`].
    pub fn settled_by(&self, partition: &Partition, next: i64) -> Vec<Subject> {
        self.unapplied
            .get(partition)
            .map(|at| at.range(..next).map(|(_, subject)| subject.clone()).collect())
            .unwrap_or_default()
    }

    /// Every record of `partition` before `next` is applied, and the caches no longer hold
    /// what [`Ledger::settled_by`] named.
    pub fn settle(&mut self, partition: &Partition, next: i64) {
        let applied = self.applied.entry(partition.clone()).or_insert(next);
        *applied = (*applied).max(next);
        let Some(at) = self.unapplied.get_mut(partition) else { return };
        let rest = at.split_off(&next);
        let done = std::mem::replace(at, rest);
        self.count -= done.len();
        for (offset, subject) in done {
            if self.pending.get(&subject).is_some_and(|(p, o)| p == partition && *o == offset) {
                self.pending.remove(&subject);
            }
        }
    }

    /// Whether the tail has read every partition up to `ends`.
    pub fn caught_up(&self, ends: &HashMap<Partition, i64>) -> bool {
        ends.iter().all(|(partition, end)| self.position(partition).is_some_and(|p| p >= *end))
    }

    pub fn is_pending(&self, subject: &Subject) -> bool {
        self.pending.contains_key(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        (Arc::from("herald.directory.changes"), n)
    }

    fn user(id: &str) -> Subject {
        Subject::User(id.into())
    }

    #[test]
    fn a_change_read_before_it_is_applied_keeps_its_subject_pending_until_then() {
        let mut ledger = Ledger::default();
        ledger.start(p(0), 0);
        assert!(!ledger.read(&p(0), 0, user("a")));
        assert!(!ledger.read(&p(0), 1, user("b")));
        assert!(!ledger.read(&p(0), 2, user("a")));
        assert!(ledger.is_pending(&user("a")) && ledger.is_pending(&user("b")));
        assert_eq!(ledger.unapplied_count(), 3);
        assert_eq!(ledger.settled_by(&p(0), 2), [user("a"), user("b")]);
        ledger.settle(&p(0), 2);
        assert!(!ledger.is_pending(&user("b")));
        assert!(ledger.is_pending(&user("a")), "its later change is not applied yet");
        ledger.settle(&p(0), 3);
        assert!(!ledger.is_pending(&user("a")));
        assert_eq!(ledger.unapplied_count(), 0);
        assert!(ledger.read(&p(0), 1, user("c")), "read again after it was applied");
    }

    #[test]
    fn caught_up_means_every_partition_read_to_its_end() {
        let mut ledger = Ledger::default();
        ledger.start(p(0), 5);
        let ends = HashMap::from([(p(0), 7), (p(1), 0)]);
        assert!(!ledger.caught_up(&ends), "partition 1 not started");
        ledger.start(p(1), 0);
        assert!(!ledger.caught_up(&ends));
        ledger.read(&p(0), 5, user("a"));
        ledger.moved_to(&p(0), 7);
        assert!(ledger.caught_up(&ends), "a marker at 6 is passed by the consumer's position");
        ledger.moved_to(&p(0), 3);
        assert_eq!(ledger.position(&p(0)), Some(7), "positions only move forward");
    }
}
