//! Serializes quota-limited writes per project inside one API process, so that counting
//! usage and writing the object is one step: sixteen racing creates against a limit of ten
//! admit exactly ten (a bench once saw twelve with check → write → recheck alone).
//!
//! Across several API replicas the lock is per process; there the recheck after the write
//! ([`crate::resources::create`]) still removes what a race let through.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::OwnedMutexGuard;

/// One async mutex per project with a quota-limited write in flight.
static LOCKS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// Held while a project's usage is counted and its write is made; dropping it releases the
/// project (and forgets its entry when nobody else waits, so the map stays small).
pub(crate) struct ProjectQuotaGuard {
    project: String,
    guard: Option<OwnedMutexGuard<()>>,
}

/// Waits for `project`'s quota lock.
pub(crate) async fn lock(project: &str) -> ProjectQuotaGuard {
    let mutex = {
        let mut locks = LOCKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(project.to_string()).or_default().clone()
    };
    let guard = mutex.lock_owned().await;
    ProjectQuotaGuard {
        project: project.to_string(),
        guard: Some(guard),
    }
}

impl Drop for ProjectQuotaGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = LOCKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mutex) = locks.get(&self.project)
            && Arc::strong_count(mutex) == 1
        {
            locks.remove(&self.project);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_project_and_entries_forgotten() {
        let a = lock("quota-lock-test-a").await;
        // Another project is not blocked.
        let b = lock("quota-lock-test-b").await;
        let waiting = tokio::spawn(async { lock("quota-lock-test-a").await });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "a second holder of the same project waits"
        );
        drop(a);
        let again = waiting.await.unwrap();
        drop(again);
        drop(b);
        let locks = LOCKS.lock().unwrap();
        assert!(!locks.contains_key("quota-lock-test-a"));
        assert!(!locks.contains_key("quota-lock-test-b"));
    }
}
