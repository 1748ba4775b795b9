//! `/identity/v3/auth/tokens`: issue (password login), validate, check and revoke tokens.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use cirrus_auth::token::{self, TokenPayload};
use cirrus_auth::{Role, RoleExt, effective_role, verify_password};
use cirrus_crds::{Project, RoleBinding, User};
use cirrus_store::objects::Api;
use serde_json::{Value, json};

use super::directory;
use super::request::{PasswordAuth, Reference};
use super::throttle::{LoginThrottle, Refusal};
use super::{Identity, KeystoneError};
use crate::ApiState;

/// Header carrying the caller's own token.
pub use cirrus_crds::conventions::AUTH_HEADER;
/// Header carrying the token issued, or the token to validate or revoke.
pub const SUBJECT_HEADER: &str = "x-subject-token";

/// The message of every refused login, whichever part was wrong (user, password, scope).
const REFUSED: &str = "The request you have made requires authentication.";

/// `POST`: a password login → `201` with the token in `X-Subject-Token` and Keystone's body.
///
/// Before the password is checked the login passes [`ApiState::login`]
/// ([`super::throttle`]): a locked user name answers `401` (saying so), an empty rate-limit
/// bucket or no free verification permit `429` with `Retry-After`. A wrong password counts
/// towards the user's lockout (by its id, so logging in by name or by id shares one count;
/// an unknown user's by the text given); a right one clears the count.
#[tracing::instrument(skip_all)]
pub async fn issue(
    State(state): State<ApiState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, KeystoneError> {
    let identity = state.identity.clone();
    let login = PasswordAuth::parse(&body)?;
    let throttle = state.login.clone();
    let source = throttle.source(peer.map(|Extension(ConnectInfo(addr))| addr), &headers);
    if let Err(refusal) = throttle.admit(login.user.text(), source) {
        return Ok(refused(login.user.text(), refusal));
    }
    let user = directory::user(&state.store, &login.user).await?;
    // Failures count against the user, whichever of its name or id the login gave (an
    // unknown user: against what was given).
    let key = user
        .as_ref()
        .map_or(login.user.text(), |u| u.metadata.name.as_str())
        .to_string();
    let key = key.as_str();
    let permit = match throttle.hash_permit(key).await {
        Ok(permit) => permit,
        Err(refusal) => return Ok(refused(key, refusal)),
    };
    if !password_matches(&throttle, permit, user.as_ref(), &login.password).await? {
        throttle.record_failure(key);
        tracing::info!(user = %login.user, "login refused: unknown or disabled user or wrong password");
        return Err(KeystoneError::unauthorized(REFUSED));
    }
    throttle.record_success(key);
    let user = user.expect("a password only matches an existing user");
    let asked = match login.scope {
        Some(scope) => Some(scope.project),
        None => user.spec.default_project.clone().map(Reference::Id),
    };
    let (project, role) = match &asked {
        Some(asked) if user.spec.node.is_none() => {
            let (project, role) = role_in(&state, &user, asked).await?;
            (Some(project), Some(role))
        }
        _ => (None, None),
    };
    let project_id = project.as_ref().map(|p| p.metadata.name.as_str());
    wait_past_cutoff(&identity, &user, project_id).await;
    let payload = identity
        .payload_for(&user, project_id, role)
        .map_err(|e| KeystoneError::internal(e.to_string()))?;
    let sealed = token::issue(&identity.keys, &payload)
        .map_err(|e| KeystoneError::internal(e.to_string()))?;
    tracing::info!(user = %payload.user, project = ?payload.project, audit_id = %payload.audit_id, "token issued");
    let names = TokenNames {
        user: user.keystone_name().to_string(),
        project: project.map(|p| p.keystone_name().to_string()),
    };
    Ok(with_subject(
        StatusCode::CREATED,
        &sealed,
        Some(render(
            &payload,
            &names,
            &super::discovery::base_url(&headers),
        )),
    ))
}

/// The answer to a login the throttle refused (logged at debug level: a flood would
/// otherwise flood the log too; lockouts themselves are logged when they start).
fn refused(user: &str, refusal: Refusal) -> Response {
    tracing::debug!(%user, ?refusal, "login throttled");
    refusal.into_response()
}

/// Tokens carry whole seconds and a user's or project's revocation cut-off revokes
/// everything issued up to its second: a login right after a cut-off (a password change, a
/// re-granted role, a re-enabled project) waits for the next second so that its token is not
/// born revoked.
async fn wait_past_cutoff(identity: &Identity, user: &User, project: Option<&str>) {
    let uid = user.metadata.uid.as_deref().unwrap_or_default();
    let cutoff = {
        let list = identity
            .revoked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.user_cutoff(uid)
            .into_iter()
            .chain(project.and_then(|p| list.project_cutoff(p)))
            .max()
    };
    let Some(cutoff) = cutoff else { return };
    let now = Utc::now();
    if now.timestamp() <= cutoff.timestamp() {
        let next_second =
            chrono::DateTime::from_timestamp(cutoff.timestamp() + 1, 0).unwrap_or(now);
        if let Ok(wait) = (next_second - now).to_std() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// `GET`: the body of a valid `X-Subject-Token` (`404` when invalid, expired or revoked).
pub async fn validate(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, KeystoneError> {
    let (subject, raw) = subject(&state.identity, &headers)?;
    let base = super::discovery::base_url(&headers);
    let names = TokenNames::of(&state.store, &subject).await?;
    Ok(with_subject(
        StatusCode::OK,
        &raw,
        Some(render(&subject, &names, &base)),
    ))
}

/// `HEAD`: `200` when `X-Subject-Token` is valid, `404` otherwise; no body.
pub async fn check(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, KeystoneError> {
    let (_, raw) = subject(&state.identity, &headers)?;
    Ok(with_subject(StatusCode::OK, &raw, None))
}

/// `DELETE`: revokes `X-Subject-Token` at once → `204`.
pub async fn revoke(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<StatusCode, KeystoneError> {
    let (subject, _) = subject(&state.identity, &headers)?;
    super::revocations::revoke_token(
        &state.store,
        &state.identity,
        subject.audit_id,
        subject.expires_at,
    )
    .await
    .map_err(|e| KeystoneError::internal(format!("recording the revocation: {e}")))?;
    tracing::info!(user = %subject.user, audit_id = %subject.audit_id, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Authenticates the caller (`X-Auth-Token` or `Authorization: Bearer`, else `401`), opens
/// `X-Subject-Token` (`404` unless valid) and checks that the caller may see it: its own
/// user's token, or the caller is a cloud admin (Keystone's default policy), else `403`.
fn subject(
    identity: &Identity,
    headers: &HeaderMap,
) -> Result<(TokenPayload, String), KeystoneError> {
    let now = Utc::now();
    let caller = caller_token(headers)
        .ok_or_else(|| KeystoneError::unauthorized(REFUSED))
        .and_then(|t| valid(identity, t, now).map_err(|_| KeystoneError::unauthorized(REFUSED)))?;
    let raw = headers
        .get(SUBJECT_HEADER)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| KeystoneError::bad_request("the X-Subject-Token header is required"))?;
    let subject = valid(identity, raw, now)
        .map_err(|e| KeystoneError::not_found(format!("Could not find token: {e}")))?;
    let cloud_admin =
        caller.project.is_some() && caller.role.is_some_and(|r| r.includes(Role::Admin));
    if caller.user_uid != subject.user_uid && !cloud_admin {
        return Err(KeystoneError::forbidden(
            "only the token's own user or a cloud admin may validate or revoke it",
        ));
    }
    Ok((subject, raw.to_string()))
}

fn caller_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(t) = headers.get(AUTH_HEADER).and_then(|h| h.to_str().ok()) {
        return Some(t);
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
}

fn valid(
    identity: &Identity,
    raw: &str,
    now: DateTime<Utc>,
) -> Result<TokenPayload, token::TokenError> {
    let revoked = identity
        .revoked
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    token::validate(&identity.keys, &revoked, raw, now)
}

/// Whether `password` is `user`'s, for an enabled user with a password. Unknown, disabled
/// and password-less users cost one hash verification too (against a decoy hash), so timing
/// does not tell them apart. The verification runs on the blocking pool holding `permit`.
pub(super) async fn password_matches(
    throttle: &LoginThrottle,
    permit: tokio::sync::OwnedSemaphorePermit,
    user: Option<&User>,
    password: &str,
) -> Result<bool, KeystoneError> {
    let usable = user
        .filter(|u| u.spec.enabled)
        .and_then(|u| u.spec.password_hash.clone());
    let real = usable.is_some();
    let password = password.to_string();
    let verdict = throttle
        .verify(permit, move || {
            let hash = match &usable {
                Some(hash) => hash.as_str(),
                None => cirrus_auth::password::decoy_hash(),
            };
            verify_password(&password, hash)
        })
        .await
        .map_err(|e| KeystoneError::internal(format!("password check failed: {e}")))?;
    match verdict {
        Ok(matches) => Ok(matches && real),
        Err(cirrus_auth::PasswordError::TooLong) => Ok(false),
        Err(e) => {
            tracing::error!(error = %e, "a stored password hash is unusable");
            Err(KeystoneError::internal(format!(
                "the stored password hash is unusable: {e}"
            )))
        }
    }
}

/// The enabled project `asked` names and `user`'s effective role in it; `401` when there is
/// no such enabled project or the user has no role in it.
async fn role_in(
    state: &ApiState,
    user: &User,
    asked: &Reference,
) -> Result<(Project, Role), KeystoneError> {
    let refused = || {
        tracing::info!(user = %user.metadata.name, project = %asked, "login refused: no role in an enabled project");
        KeystoneError::unauthorized(format!(
            "{REFUSED} The user has no role in project {:?}.",
            asked.text()
        ))
    };
    let project = match directory::project(&state.store, asked).await? {
        Some(p) if p.spec.enabled => p,
        _ => return Err(refused()),
    };
    let bindings = Api::<RoleBinding>::all(state.store.clone())
        .list()
        .await
        .map_err(|e| KeystoneError::internal(e.to_string()))?;
    let role = effective_role(
        bindings.iter().map(|b| &b.spec),
        &user.metadata.name,
        &project.metadata.name,
    )
    .ok_or_else(refused)?;
    Ok((project, role))
}

/// The Keystone names a token body shows next to the ids it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenNames {
    /// The user's name.
    pub user: String,
    /// The scoped project's name.
    pub project: Option<String>,
}

impl TokenNames {
    /// The names of `payload`'s user and project as they are now (the ids for what is gone,
    /// and for node identities, which are no Keystone users).
    async fn of(
        store: &cirrus_store::objects::ObjectStore,
        payload: &TokenPayload,
    ) -> Result<Self, KeystoneError> {
        let user = directory::by_id::<User>(store, &payload.user).await?;
        let project = match &payload.project {
            Some(id) => Some(
                directory::by_id::<Project>(store, id)
                    .await?
                    .map_or_else(|| id.clone(), |p| p.keystone_name().to_string()),
            ),
            None => None,
        };
        Ok(Self {
            user: user.map_or_else(|| payload.user.clone(), |u| u.keystone_name().to_string()),
            project,
        })
    }
}

fn with_subject(code: StatusCode, raw: &str, body: Option<Value>) -> Response {
    let mut response = match body {
        Some(body) => (code, Json(body)).into_response(),
        None => code.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(raw) {
        response.headers_mut().insert(SUBJECT_HEADER, value);
    }
    response
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Keystone's token body: the ids the token carries with their `names`; scoped tokens carry
/// the catalog with URLs under `base`.
pub fn render(payload: &TokenPayload, names: &TokenNames, base: &str) -> Value {
    let domain = json!({"id": "default", "name": "Default"});
    let mut token = json!({
        "methods": ["password"],
        "issued_at": timestamp(payload.issued_at),
        "expires_at": timestamp(payload.expires_at),
        "audit_ids": [payload.audit_id.to_string()],
        "user": {
            "id": payload.user,
            "name": names.user,
            "domain": domain,
            "password_expires_at": null,
        },
    });
    if let Some(project) = &payload.project {
        let name = names.project.as_deref().unwrap_or(project);
        token["project"] = json!({"id": project, "name": name, "domain": domain});
        token["is_domain"] = json!(false);
        token["roles"] = payload
            .role_names()
            .into_iter()
            .map(|r| json!({"id": r, "name": r}))
            .collect();
        token["catalog"] = super::catalog::catalog(base, Some(project));
    }
    json!({"token": token})
}
