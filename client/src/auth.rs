//! Where a [`crate::Client`]'s token comes from.
//!
//! Every API call carries a token. A fixed token ([`StaticToken`]) suits a command-line call;
//! long-running components (controllers, node agents) log in with a password
//! ([`PasswordLogin`]) and get a fresh token before the old one expires (tokens live one hour
//! by default) or after the API answered `401` (revoked, keys rotated).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::ClientError;

/// Renew a password token this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// A supplier of tokens for a client.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A token to send now.
    fn token(&self) -> BoxFuture<'_, Result<String, ClientError>>;
    /// The API refused `token` (`401`): forget it so the next [`TokenSource::token`] gets a
    /// new one. Returns whether a retry may help.
    fn refused(&self, token: &str) -> bool;
}

/// The token of a renewing [`TokenSource`], kept until it is due: every renewing source
/// (password logins, the node agent's metadata tokens, `cirrus up`'s minted tokens) caches
/// through this one type, so the rules are the same everywhere — hand out the cached token
/// while it is fresh, fetch one new token at a time when it is due, forget a refused one.
#[derive(Default)]
pub struct TokenCache {
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCache(<redacted>)")
    }
}

impl TokenCache {
    /// An empty cache (the first [`TokenCache::get_or_renew`] fetches).
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached token while it is fresh, else the token `fetch` returns together with
    /// the instant it is due for renewal (callers waiting meanwhile get that one too).
    pub async fn get_or_renew<F, Fut>(&self, fetch: F) -> Result<String, ClientError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(String, Instant), ClientError>>,
    {
        let mut cached = self.cached.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let (token, renew_at) = fetch().await?;
        *cached = Some((token.clone(), renew_at));
        Ok(token)
    }

    /// Forgets `token` if it is the cached one (the API refused it), so the next
    /// [`TokenCache::get_or_renew`] fetches. A renewal in progress already replaces it.
    pub fn forget(&self, token: &str) {
        if let Ok(mut cached) = self.cached.try_lock()
            && cached.as_ref().is_some_and(|(t, _)| t == token)
        {
            *cached = None;
        }
    }
}

/// One token given by the user; never renewed.
pub struct StaticToken(pub String);

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticToken(<redacted>)")
    }
}

impl TokenSource for StaticToken {
    fn token(&self) -> BoxFuture<'_, Result<String, ClientError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }

    fn refused(&self, _token: &str) -> bool {
        false
    }
}

/// A password login at Keystone's `POST /identity/v3/auth/tokens`, scoped to a project.
pub struct PasswordLogin {
    auth_url: String,
    user: String,
    password: String,
    project: Option<String>,
    http: reqwest::Client,
    cached: TokenCache,
}

impl fmt::Debug for PasswordLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordLogin")
            .field("auth_url", &self.auth_url)
            .field("user", &self.user)
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

impl PasswordLogin {
    /// Logs in as `user` with `password` at `api_base` (the API's base URL; the identity
    /// service is at `/identity/v3`), scoped to `project` when given.
    pub fn new(
        api_base: &str,
        user: impl Into<String>,
        password: impl Into<String>,
        project: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            auth_url: format!("{}/identity/v3/auth/tokens", api_base.trim_end_matches('/')),
            user: user.into(),
            password: password.into(),
            project,
            http: cirrus_tls::default_client(),
            cached: TokenCache::new(),
        })
    }

    async fn login(&self) -> Result<(String, Instant), ClientError> {
        let mut auth = json!({
            "identity": {
                "methods": ["password"],
                "password": {"user": {
                    "name": self.user,
                    "domain": {"id": "default"},
                    "password": self.password,
                }},
            },
        });
        if let Some(project) = &self.project {
            auth["scope"] = json!({"project": {"name": project, "domain": {"id": "default"}}});
        }
        let http_err = |source| ClientError::Http {
            method: "POST".into(),
            url: self.auth_url.clone(),
            source,
        };
        let response = self
            .http
            .post(&self.auth_url)
            .json(&json!({"auth": auth}))
            .send()
            .await
            .map_err(http_err)?;
        let status = response.status();
        let token = response
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let Some(token) = token.filter(|_| status.is_success()) else {
            let message = body
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("login refused")
                .to_string();
            return Err(ClientError::Api {
                code: status.as_u16(),
                reason: "Unauthorized".into(),
                message: format!("logging in as {:?}: {message}", self.user),
            });
        };
        let lifetime = body
            .pointer("/token/expires_at")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .and_then(|d| d.to_std().ok())
            .unwrap_or(Duration::from_secs(3600));
        let renew_at = Instant::now() + lifetime.saturating_sub(RENEW_BEFORE.min(lifetime / 2));
        tracing::debug!(user = %self.user, "logged in");
        Ok((token, renew_at))
    }
}

impl TokenSource for PasswordLogin {
    fn token(&self) -> BoxFuture<'_, Result<String, ClientError>> {
        Box::pin(self.cached.get_or_renew(|| self.login()))
    }

    fn refused(&self, token: &str) -> bool {
        self.cached.forget(token);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A fetch counting its calls, handing out `t<n>` due `after` from now.
    async fn counting(
        calls: &AtomicUsize,
        after: Duration,
    ) -> Result<(String, Instant), ClientError> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        Ok((format!("t{n}"), Instant::now() + after))
    }

    #[tokio::test]
    async fn a_fresh_token_is_reused_a_due_or_refused_one_renewed() {
        let cache = TokenCache::new();
        let calls = AtomicUsize::new(0);
        let hour = Duration::from_secs(3600);
        assert_eq!(
            cache.get_or_renew(|| counting(&calls, hour)).await.unwrap(),
            "t1"
        );
        assert_eq!(
            cache.get_or_renew(|| counting(&calls, hour)).await.unwrap(),
            "t1"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "fresh: no second fetch");
        cache.forget("not-the-cached-one");
        assert_eq!(
            cache.get_or_renew(|| counting(&calls, hour)).await.unwrap(),
            "t1"
        );
        cache.forget("t1");
        assert_eq!(
            cache
                .get_or_renew(|| counting(&calls, Duration::ZERO))
                .await
                .unwrap(),
            "t2"
        );
        // Due at once: every call renews.
        assert_eq!(
            cache.get_or_renew(|| counting(&calls, hour)).await.unwrap(),
            "t3"
        );
        let failing = cache
            .get_or_renew(|| async { Err(ClientError::InvalidObject("no".into())) })
            .await;
        assert_eq!(
            cache.get_or_renew(|| counting(&calls, hour)).await.unwrap(),
            "t3"
        );
        assert!(failing.is_ok(), "a fresh token is served without fetching");
    }
}
