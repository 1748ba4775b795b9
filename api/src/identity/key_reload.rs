//! Picking up a rotated token key ring while the API runs.
//!
//! `cirrus admin rotate-keys` rewrites the key directory ([`KeyRing::rotate_in`]); an API
//! process whose [`Identity`] names that directory ([`Identity::key_dir`]) re-reads it every
//! [`Identity::key_reload_interval`] (10 s by default) and swaps the new ring in
//! ([`KeyRing::reload`]). Polling rather than a signal: it needs no process id, and every
//! replica sharing the directory (or a copy the operator distributes) converges on its own.
//! Until a process has reloaded it keeps sealing with the previous primary, whose tokens stay
//! valid as long as that key is in the ring. A directory that cannot be read leaves the ring
//! in use as it was (logged once per change of the error).
//!
//! [`KeyRing::rotate_in`]: cirrus_auth::KeyRing::rotate_in
//! [`KeyRing::reload`]: cirrus_auth::KeyRing::reload

use std::sync::Arc;
use std::time::Duration;

use super::Identity;

/// Default time between two reads of the key directory.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Reloads `identity`'s keys from its key directory once; `Ok(true)` when they changed,
/// `Ok(false)` also when it names no directory.
pub fn reload_once(identity: &Identity) -> Result<bool, cirrus_auth::KeyError> {
    match &identity.key_dir {
        Some(dir) => identity.keys.reload(dir),
        None => Ok(false),
    }
}

/// Reloads `identity`'s keys every [`Identity::key_reload_interval`] until dropped; returns
/// at once when it names no key directory.
pub async fn run(identity: Arc<Identity>) {
    if identity.key_dir.is_none() {
        return;
    }
    let mut ticks =
        tokio::time::interval(identity.key_reload_interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut last_error = None;
    loop {
        ticks.tick().await;
        let reloaded = {
            let identity = identity.clone();
            tokio::task::spawn_blocking(move || reload_once(&identity)).await
        };
        match reloaded {
            Ok(Ok(_)) => last_error = None,
            Ok(Err(e)) => {
                let shown = e.to_string();
                if last_error.as_ref() != Some(&shown) {
                    tracing::warn!(error = %shown, "cannot reload the token keys; keeping the current ones");
                    last_error = Some(shown);
                }
            }
            Err(e) => tracing::warn!(error = %e, "the token key reload task failed"),
        }
    }
}
