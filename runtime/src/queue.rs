//! The work queue: which object to reconcile next, and when.
//!
//! A plain data structure (no tasks, no clocks of its own: callers pass `now`), so its rules
//! are unit-tested directly.
//!
//! # Guarantees
//! - **Dedupe**: an object is queued at most once; scheduling it again keeps the earliest due
//!   time (and that entry's reason).
//! - **One at a time**: an object handed out by [`WorkQueue::pop_ready`] is not handed out
//!   again until [`WorkQueue::finish`]; triggers that arrive meanwhile are kept and make it
//!   run once more afterwards.
//! - **Bounded concurrency**: at most `max_running` objects are out at once.

use std::collections::{BTreeSet, HashMap, HashSet};

use tokio::time::Instant;

use super::object_ref::ObjectRef;

/// A queue of objects due for reconciliation; `R` is the trigger reason carried along.
#[derive(Debug)]
pub struct WorkQueue<R> {
    /// Due time, tie-break sequence and reason per queued object.
    pending: HashMap<ObjectRef, (Instant, u64, R)>,
    /// The same entries ordered by due time.
    order: BTreeSet<(Instant, u64, ObjectRef)>,
    running: HashSet<ObjectRef>,
    max_running: usize,
    seq: u64,
}

impl<R> WorkQueue<R> {
    /// An empty queue handing out at most `max_running` objects at once (at least 1).
    pub fn new(max_running: usize) -> Self {
        Self {
            pending: HashMap::new(),
            order: BTreeSet::new(),
            running: HashSet::new(),
            max_running: max_running.max(1),
            seq: 0,
        }
    }

    /// Queues `key` to run at `due`, unless it is already queued to run no later.
    pub fn schedule(&mut self, key: ObjectRef, due: Instant, reason: R) {
        if let Some((existing, seq, _)) = self.pending.get(&key) {
            if *existing <= due {
                return;
            }
            self.order.remove(&(*existing, *seq, key.clone()));
        }
        self.seq += 1;
        self.order.insert((due, self.seq, key.clone()));
        self.pending.insert(key, (due, self.seq, reason));
    }

    /// Takes the earliest object due at `now` that is not running, if a slot is free.
    pub fn pop_ready(&mut self, now: Instant) -> Option<(ObjectRef, R)> {
        if self.running.len() >= self.max_running {
            return None;
        }
        let found = self
            .order
            .iter()
            .take_while(|(due, _, _)| *due <= now)
            .find(|(_, _, key)| !self.running.contains(key))
            .cloned()?;
        self.order.remove(&found);
        let (_, _, key) = found;
        let (_, _, reason) = self.pending.remove(&key).expect("order and pending agree");
        self.running.insert(key.clone());
        Some((key, reason))
    }

    /// When the next object not currently running falls due (`None`: nothing queued).
    /// Returns nothing while every slot is taken: a finish comes first.
    pub fn next_due(&self) -> Option<Instant> {
        if self.running.len() >= self.max_running {
            return None;
        }
        self.order
            .iter()
            .find(|(_, _, key)| !self.running.contains(key))
            .map(|(due, _, _)| *due)
    }

    /// Marks `key` as no longer running; a trigger kept meanwhile becomes eligible.
    pub fn finish(&mut self, key: &ObjectRef) {
        self.running.remove(key);
    }

    /// Drops a queued (not running) entry for `key`, e.g. after the object was deleted.
    pub fn forget(&mut self, key: &ObjectRef) {
        if let Some((due, seq, _)) = self.pending.remove(key) {
            self.order.remove(&(due, seq, key.clone()));
        }
    }

    /// Whether `key` is being reconciled.
    pub fn is_running(&self, key: &ObjectRef) -> bool {
        self.running.contains(key)
    }

    /// How many objects are being reconciled.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// How many objects are queued (running ones excluded unless re-triggered).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(name: &str) -> ObjectRef {
        ObjectRef::cluster(name)
    }

    #[test]
    fn dedupes_and_keeps_the_earliest() {
        let t0 = Instant::now();
        let mut q = WorkQueue::new(10);
        q.schedule(key("a"), t0 + Duration::from_secs(10), "later");
        q.schedule(key("a"), t0 + Duration::from_secs(5), "sooner");
        q.schedule(key("a"), t0 + Duration::from_secs(7), "ignored");
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(5)));
        assert!(q.pop_ready(t0 + Duration::from_secs(4)).is_none());
        assert_eq!(
            q.pop_ready(t0 + Duration::from_secs(5)),
            Some((key("a"), "sooner"))
        );
        assert!(q.is_empty());
    }

    #[test]
    fn pops_in_due_order() {
        let t0 = Instant::now();
        let mut q = WorkQueue::new(10);
        q.schedule(key("b"), t0 + Duration::from_secs(2), ());
        q.schedule(key("a"), t0 + Duration::from_secs(1), ());
        q.schedule(key("c"), t0 + Duration::from_secs(3), ());
        let t = t0 + Duration::from_secs(3);
        let order: Vec<String> =
            std::iter::from_fn(|| q.pop_ready(t).map(|(k, _)| k.name)).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn never_hands_out_a_running_object_but_reruns_it_after() {
        let t0 = Instant::now();
        let mut q = WorkQueue::new(10);
        q.schedule(key("a"), t0, 1);
        assert_eq!(q.pop_ready(t0), Some((key("a"), 1)));
        q.schedule(key("a"), t0, 2);
        q.schedule(key("b"), t0, 3);
        assert_eq!(q.pop_ready(t0), Some((key("b"), 3)), "a is running");
        assert!(q.pop_ready(t0).is_none());
        assert_eq!(q.next_due(), None, "only a is queued, and it is running");
        q.finish(&key("a"));
        assert_eq!(q.next_due(), Some(t0));
        assert_eq!(q.pop_ready(t0), Some((key("a"), 2)), "runs once more");
        assert!(q.pop_ready(t0).is_none());
    }

    #[test]
    fn bounds_concurrency() {
        let t0 = Instant::now();
        let mut q = WorkQueue::new(2);
        for name in ["a", "b", "c"] {
            q.schedule(key(name), t0, ());
        }
        assert!(q.pop_ready(t0).is_some());
        assert!(q.pop_ready(t0).is_some());
        assert!(q.pop_ready(t0).is_none());
        assert_eq!(q.next_due(), None);
        assert_eq!(q.running(), 2);
        q.finish(&key("a"));
        assert_eq!(q.pop_ready(t0), Some((key("c"), ())));
    }

    #[test]
    fn forget_drops_a_queued_entry() {
        let t0 = Instant::now();
        let mut q = WorkQueue::new(2);
        q.schedule(key("a"), t0, ());
        q.forget(&key("a"));
        assert!(q.pop_ready(t0).is_none());
        assert!(q.is_empty());
    }
}
