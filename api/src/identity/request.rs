//! Parsing of `POST /v3/auth/tokens` bodies, with 400 errors that name the offending field.

use serde_json::Value;

use super::KeystoneError;

/// How a login names a user or a project: Keystone's `id`, or its `name` (in the domain
/// `default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `{"id": …}`: the object's name in the store.
    Id(String),
    /// `{"name": …, "domain": …}`: the Keystone name (`spec.name`, else the id).
    Name(String),
}

impl Reference {
    /// The id or name as the client sent it (the key of the login throttle).
    pub fn text(&self) -> &str {
        match self {
            Reference::Id(s) | Reference::Name(s) => s,
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

/// A password login: which user, their password, and the project scope asked for.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordAuth {
    /// The user, by id or by name.
    pub user: Reference,
    /// The plain password (never logged: `Debug` hides it).
    pub password: String,
    /// The project scope, if any.
    pub scope: Option<ProjectScope>,
}

impl std::fmt::Debug for PasswordAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordAuth")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("scope", &self.scope)
            .finish()
    }
}

/// `auth.scope.project`: the project, by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectScope {
    /// The project asked for.
    pub project: Reference,
}

impl PasswordAuth {
    /// Parses a Keystone v3 password-auth body. Malformed → 400 naming the field; a domain
    /// other than `default` → 401 (Keystone cannot find it either).
    pub fn parse(body: &[u8]) -> Result<Self, KeystoneError> {
        let root: Value = serde_json::from_slice(body)
            .map_err(|e| KeystoneError::bad_request(format!("the body is not JSON: {e}")))?;
        let auth = object(&root, "auth", "")?;
        let identity = object(auth, "identity", "auth")?;
        let methods = identity
            .get("methods")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                KeystoneError::bad_request("auth.identity.methods is required (a list of strings)")
            })?;
        if !methods.iter().any(|m| m == "password") {
            return Err(KeystoneError::bad_request(
                "auth.identity.methods must contain \"password\" (the only method supported)",
            ));
        }
        let password = object(identity, "password", "auth.identity")?;
        let user = object(password, "user", "auth.identity.password")?;
        let user_name = reference(user, "auth.identity.password.user")?;
        let secret = user
            .get("password")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                KeystoneError::bad_request(
                    "auth.identity.password.user.password is required (a string)",
                )
            })?;
        let scope = match auth.get("scope") {
            None | Some(Value::Null) => None,
            Some(scope) => Some(parse_scope(scope)?),
        };
        Ok(Self {
            user: user_name,
            password: secret.to_string(),
            scope,
        })
    }
}

fn parse_scope(scope: &Value) -> Result<ProjectScope, KeystoneError> {
    if scope.get("project").is_none()
        && let Some(other) = ["domain", "system", "OS-TRUST:trust"]
            .into_iter()
            .find(|k| scope.get(*k).is_some())
    {
        return Err(KeystoneError::bad_request(format!(
            "auth.scope.{other}: only project scope is supported"
        )));
    }
    let project = object(scope, "project", "auth.scope")?;
    Ok(ProjectScope {
        project: reference(project, "auth.scope.project")?,
    })
}

/// `parent.key`, which must be a JSON object.
fn object<'a>(parent: &'a Value, key: &str, path: &str) -> Result<&'a Value, KeystoneError> {
    let field = if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    };
    match parent.get(key) {
        Some(v @ Value::Object(_)) => Ok(v),
        Some(_) => Err(KeystoneError::bad_request(format!(
            "{field} must be an object"
        ))),
        None => Err(KeystoneError::bad_request(format!("{field} is required"))),
    }
}

/// A user or project reference: `id`, or `name` with a `domain` that must be `default`.
fn reference(value: &Value, path: &str) -> Result<Reference, KeystoneError> {
    if let Some(id) = value.get("id") {
        return id
            .as_str()
            .filter(|s| !s.is_empty())
            .map(|s| Reference::Id(s.to_string()))
            .ok_or_else(|| KeystoneError::bad_request(format!("{path}.id must be a string")));
    }
    let name = match value.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => {
            return Err(KeystoneError::bad_request(format!(
                "{path}.name must be a non-empty string"
            )));
        }
        None => {
            return Err(KeystoneError::bad_request(format!(
                "{path}.id or {path}.name is required"
            )));
        }
    };
    let domain = object(value, "domain", path)?;
    let default = match (domain.get("id"), domain.get("name")) {
        (Some(Value::String(id)), _) => id == "default",
        (None, Some(Value::String(name))) => name.eq_ignore_ascii_case("default"),
        _ => {
            return Err(KeystoneError::bad_request(format!(
                "{path}.domain needs an id or a name (a string)"
            )));
        }
    };
    if !default {
        return Err(KeystoneError::unauthorized(format!(
            "{path}.domain: no such domain (Cirrus has only \"default\")"
        )));
    }
    Ok(Reference::Name(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<PasswordAuth, KeystoneError> {
        PasswordAuth::parse(v.to_string().as_bytes())
    }

    fn login(user: Value, scope: Value) -> Value {
        json!({"auth": {"identity": {"methods": ["password"], "password": {"user": user}},
                        "scope": scope}})
    }

    #[test]
    fn a_full_password_login_parses() {
        let auth = parse(login(
            json!({"name": "alice", "domain": {"name": "Default"}, "password": "s3cret"}),
            json!({"project": {"name": "demo", "domain": {"id": "default"}}}),
        ))
        .unwrap();
        assert_eq!(auth.user, Reference::Name("alice".into()));
        assert_eq!(auth.password, "s3cret");
        assert_eq!(auth.scope.unwrap().project, Reference::Name("demo".into()));
        assert!(
            !format!(
                "{:?}",
                parse(login(json!({"id": "bob", "password": "x"}), Value::Null)).unwrap()
            )
            .contains("\"x\"")
        );
    }

    #[test]
    fn ids_are_told_from_names_and_scope_is_optional() {
        let auth = parse(login(json!({"id": "alice", "password": "p"}), Value::Null)).unwrap();
        assert_eq!(auth.user, Reference::Id("alice".into()));
        assert_eq!(auth.scope, None);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!([]), "auth is required"),
            (json!({"auth": {}}), "auth.identity is required"),
            (
                json!({"auth": {"identity": {"methods": ["token"]}}}),
                "auth.identity.methods",
            ),
            (
                json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "a", "password": "p"}}}}}),
                "auth.identity.password.user.domain is required",
            ),
            (
                login(
                    json!({"name": "a", "domain": {"id": "default"}}),
                    Value::Null,
                ),
                "auth.identity.password.user.password",
            ),
            (
                login(
                    json!({"id": "a", "password": "p"}),
                    json!({"domain": {"id": "default"}}),
                ),
                "auth.scope.domain",
            ),
            (
                login(
                    json!({"id": "a", "password": "p"}),
                    json!({"project": {"name": 3}}),
                ),
                "auth.scope.project.name",
            ),
        ];
        for (body, field) in cases {
            let err = parse(body.clone()).unwrap_err();
            assert_eq!(err.code.as_u16(), 400, "{body}");
            assert!(err.message.contains(field), "{body}: {}", err.message);
        }
        let err = PasswordAuth::parse(b"{not json").unwrap_err();
        assert_eq!(err.code.as_u16(), 400);
    }

    #[test]
    fn another_domain_is_unauthorized() {
        let err = parse(login(
            json!({"name": "a", "domain": {"id": "other"}, "password": "p"}),
            Value::Null,
        ))
        .unwrap_err();
        assert_eq!(err.code.as_u16(), 401);
    }
}
