//! Token revocation: what validation checks besides the signature and the expiry.
//!
//! Every token carries a random [`AuditId`] (Keystone's `audit_ids`: 16 bytes, shown as 22
//! base64url characters). `DELETE /v3/auth/tokens` revokes that id until the token would
//! have expired anyway; after that the entry is useless and [`RevocationList::prune`] drops
//! it, so the list only ever holds revocations of still-live tokens.
//!
//! A second kind of entry revokes every token of one user issued at or before an instant
//! ([`RevocationList::revoke_user`]): a password change, a disabled user or a removed role
//! binding invalidates what was issued before, without knowing the tokens.
//!
//! The list is plain data with no locking and no I/O: the API keeps one behind a lock and
//! feeds it from a watch on the (future) revocation objects — [`RevocationList::revoke`] /
//! [`RevocationList::revoke_user`] on add, [`RevocationList::forget`] on delete,
//! [`RevocationList::replace`] after a relist.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// Random identifier of one issued token, used to revoke it (Keystone's audit id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuditId(pub [u8; 16]);

impl AuditId {
    /// A fresh random audit id from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for AuditId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for AuditId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditId({self})")
    }
}

/// An audit id string that is not 22 base64url characters (16 bytes).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an audit id (22 base64url characters)")]
pub struct BadAuditId(pub String);

impl FromStr for AuditId {
    type Err = BadAuditId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| BadAuditId(s.to_string()))?;
        let bytes: [u8; 16] = bytes.try_into().map_err(|_| BadAuditId(s.to_string()))?;
        Ok(Self(bytes))
    }
}

/// A cut-off for all of one user's tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct UserCutoff {
    /// Tokens issued at or before this instant are revoked.
    issued_before: DateTime<Utc>,
    /// When the entry can be dropped (the cut-off plus the longest token lifetime).
    until: DateTime<Utc>,
}

/// Revoked tokens, by audit id and by user, each with the instant after which the entry can
/// be forgotten.
#[derive(Clone, Debug, Default)]
pub struct RevocationList {
    audit: HashMap<AuditId, DateTime<Utc>>,
    users: HashMap<String, UserCutoff>,
    projects: HashMap<String, UserCutoff>,
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Revokes the token with `audit_id`; `expires_at` is that token's own expiry (after
    /// which the entry may be pruned). Revoking twice keeps the later expiry.
    pub fn revoke(&mut self, audit_id: AuditId, expires_at: DateTime<Utc>) {
        let entry = self.audit.entry(audit_id).or_insert(expires_at);
        *entry = (*entry).max(expires_at);
    }

    /// Revokes every token of the user with uid `user_uid` issued at or before
    /// `issued_before`; the entry lives until `until` (pass the cut-off plus the longest
    /// token lifetime). A later cut-off for the same user replaces an earlier one.
    pub fn revoke_user(
        &mut self,
        user_uid: &str,
        issued_before: DateTime<Utc>,
        until: DateTime<Utc>,
    ) {
        let new = UserCutoff {
            issued_before,
            until,
        };
        let entry = self.users.entry(user_uid.to_string()).or_insert(new);
        if new.issued_before >= entry.issued_before {
            *entry = UserCutoff {
                issued_before: new.issued_before,
                until: new.until.max(entry.until),
            };
        }
    }

    /// Revokes every token scoped to `project` issued at or before `issued_before` (the
    /// project was disabled or deleted); the entry lives until `until`. A later cut-off for
    /// the same project replaces an earlier one.
    pub fn revoke_project(
        &mut self,
        project: &str,
        issued_before: DateTime<Utc>,
        until: DateTime<Utc>,
    ) {
        let entry = self
            .projects
            .entry(project.to_string())
            .or_insert(UserCutoff {
                issued_before,
                until,
            });
        if issued_before >= entry.issued_before {
            *entry = UserCutoff {
                issued_before,
                until: until.max(entry.until),
            };
        }
    }

    /// The instant up to which every token scoped to `project` is revoked, if one was set.
    pub fn project_cutoff(&self, project: &str) -> Option<DateTime<Utc>> {
        self.projects.get(project).map(|c| c.issued_before)
    }

    /// Whether a token scoped to `project` and issued at `issued_at` is revoked by a project
    /// cut-off.
    pub fn is_project_revoked(&self, project: &str, issued_at: DateTime<Utc>) -> bool {
        self.projects
            .get(project)
            .is_some_and(|c| issued_at <= c.issued_before)
    }

    /// Removes the revocation of `audit_id` (a watch saw the revocation object deleted).
    pub fn forget(&mut self, audit_id: &AuditId) -> bool {
        self.audit.remove(audit_id).is_some()
    }

    /// Replaces the whole audit-id set (a watch relisted everything).
    pub fn replace(&mut self, entries: impl IntoIterator<Item = (AuditId, DateTime<Utc>)>) {
        self.audit.clear();
        self.extend(entries);
    }

    /// The instant up to which every token of the user with uid `user_uid` is revoked, if
    /// one was set. Tokens carry whole seconds, so a token issued in the same second as the
    /// cut-off is revoked too: issuers wait for the next second (see the API's login).
    pub fn user_cutoff(&self, user_uid: &str) -> Option<DateTime<Utc>> {
        self.users.get(user_uid).map(|c| c.issued_before)
    }

    /// Whether the token with this audit id, user and issue time is revoked.
    pub fn is_revoked(&self, audit_id: &AuditId, user_uid: &str, issued_at: DateTime<Utc>) -> bool {
        self.audit.contains_key(audit_id)
            || self
                .users
                .get(user_uid)
                .is_some_and(|c| issued_at <= c.issued_before)
    }

    /// Drops every entry whose token would be expired at `now`; returns how many went.
    pub fn prune(&mut self, now: DateTime<Utc>) -> usize {
        let before = self.len();
        self.audit.retain(|_, expires_at| *expires_at > now);
        self.users.retain(|_, c| c.until > now);
        self.projects.retain(|_, c| c.until > now);
        before - self.len()
    }

    /// Number of entries (audit ids plus user and project cut-offs).
    pub fn len(&self) -> usize {
        self.audit.len() + self.users.len() + self.projects.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Extend<(AuditId, DateTime<Utc>)> for RevocationList {
    fn extend<T: IntoIterator<Item = (AuditId, DateTime<Utc>)>>(&mut self, iter: T) {
        for (id, expires_at) in iter {
            self.revoke(id, expires_at);
        }
    }
}

impl FromIterator<(AuditId, DateTime<Utc>)> for RevocationList {
    fn from_iter<T: IntoIterator<Item = (AuditId, DateTime<Utc>)>>(iter: T) -> Self {
        let mut list = Self::new();
        list.extend(iter);
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn audit_id_round_trips_as_22_base64url_chars() {
        let id = AuditId::generate().unwrap();
        let s = id.to_string();
        assert_eq!(s.len(), 22);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(s.parse::<AuditId>().unwrap(), id);
        assert_ne!(AuditId::generate().unwrap(), id);
        assert!("short".parse::<AuditId>().is_err());
        assert!("!!!!!!!!!!!!!!!!!!!!!!".parse::<AuditId>().is_err());
    }

    #[test]
    fn revoke_check_forget_and_prune() {
        let a = AuditId([1; 16]);
        let b = AuditId([2; 16]);
        let mut list = RevocationList::new();
        list.revoke(a, t(100));
        list.revoke(b, t(200));
        assert!(list.is_revoked(&a, "u", t(0)));
        assert!(!list.is_revoked(&AuditId([3; 16]), "u", t(0)));
        assert_eq!(list.prune(t(100)), 1, "a's token expired at 100");
        assert!(!list.is_revoked(&a, "u", t(0)));
        assert!(list.is_revoked(&b, "u", t(0)));
        assert!(list.forget(&b));
        assert!(list.is_empty());
    }

    #[test]
    fn revoking_twice_keeps_the_later_expiry() {
        let a = AuditId([1; 16]);
        let mut list: RevocationList = [(a, t(300)), (a, t(100))].into_iter().collect();
        assert_eq!(list.prune(t(200)), 0);
        assert!(list.is_revoked(&a, "u", t(0)));
    }

    #[test]
    fn replace_swaps_the_audit_set() {
        let mut list = RevocationList::new();
        list.revoke(AuditId([1; 16]), t(100));
        list.replace([(AuditId([2; 16]), t(100))]);
        assert!(!list.is_revoked(&AuditId([1; 16]), "u", t(0)));
        assert!(list.is_revoked(&AuditId([2; 16]), "u", t(0)));
    }

    #[test]
    fn user_cutoff_revokes_older_tokens_only_until_it_expires() {
        let mut list = RevocationList::new();
        let id = AuditId([9; 16]);
        list.revoke_user("uid-1", t(50), t(50) + Duration::hours(1));
        assert!(list.is_revoked(&id, "uid-1", t(10)));
        assert!(list.is_revoked(&id, "uid-1", t(50)));
        assert!(
            !list.is_revoked(&id, "uid-1", t(51)),
            "issued after the cut-off"
        );
        assert!(!list.is_revoked(&id, "uid-2", t(10)), "another user");
        // An earlier cut-off does not weaken a later one.
        list.revoke_user("uid-1", t(20), t(20) + Duration::hours(1));
        assert!(list.is_revoked(&id, "uid-1", t(40)));
        // Project cut-offs: tokens of the project up to the cut-off, no others.
        list.revoke_project("demo", t(30), t(30) + Duration::hours(1));
        assert!(list.is_project_revoked("demo", t(30)));
        assert!(!list.is_project_revoked("demo", t(31)));
        assert!(!list.is_project_revoked("other", t(10)));
        assert_eq!(list.project_cutoff("demo"), Some(t(30)));
        assert_eq!(list.prune(t(50) + Duration::hours(1)), 2);
        assert!(list.is_empty());
    }
}
