//! Nova's key pairs (`/compute/v2.1/os-keypairs...`) over `Keypair` objects.
//!
//! Key pairs live in the caller's project (Nova keeps them per user; here they are shared
//! by the project's members, like every other object); the user who created one is kept in
//! the annotation [`USER_ANNOTATION`] and shown as `user_id`. A key pair's id is its name.
//!
//! `POST` without `public_key` generates an Ed25519 pair: the public half is stored, the
//! private half (OpenSSH `openssh-key-v1` format, unencrypted) is returned once and never
//! stored. Fingerprints are Nova's: MD5 of the key blob as colon-separated hex, computed
//! from the stored public key. Bodies follow tempest's compute v2.1 schemas (no `type`: that
//! is microversion 2.2).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cirrus_auth::Action;
use cirrus_crds::KindInfo;
use cirrus_crds::Resource as _;
use cirrus_crds::kinds::keypair::ssh_public_key_problem;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common::{self, NAME_ANNOTATION};
use crate::openstack::fault::{Dialect, Fault};

const D: Dialect = Dialect::Compute;

/// Annotation recording the user who created a key pair through the OpenStack API.
pub const USER_ANNOTATION: &str = "openstack.org/user-id";

/// Comment of generated public keys (Nova writes `Generated-by-Nova`).
const GENERATED_COMMENT: &str = "Generated-by-Cirrus";

/// The key pair routes under `/compute/v2.1`.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/compute/v2.1/os-keypairs", get(list).post(create))
        .route("/compute/v2.1/os-keypairs/{name}", get(show).delete(delete))
}

fn kind() -> &'static KindInfo {
    cirrus_crds::Keypair::info()
}

fn api_error(e: crate::error::ApiError) -> Fault {
    Fault::from_api(D, e)
}

fn not_found(name: &str) -> Fault {
    Fault::not_found(D, format!("Keypair {name} not found for this project."))
}

/// The caller's project, after checking it may do `action` there.
fn project(caller: &Caller, action: Action) -> Result<String, Fault> {
    let project = caller.project().ok_or_else(|| {
        Fault::forbidden(
            D,
            "Key pairs belong to a project: use a token scoped to one.",
        )
    })?;
    caller
        .check(action, Some(project))
        .map_err(|r| Fault::refused(D, r, "key pairs"))?;
    Ok(project.to_string())
}

/// Nova's fingerprint of an OpenSSH public key line: MD5 of the decoded key blob, as
/// colon-separated lowercase hex. `None` when the key body is not base64.
pub fn fingerprint(public_key: &str) -> Option<String> {
    use md5::Digest;
    let body = public_key.split_whitespace().nth(1)?;
    let blob = B64.decode(body).ok()?;
    let digest = md5::Md5::digest(&blob);
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// A freshly generated key pair.
#[derive(Debug)]
pub struct GeneratedKey {
    /// `ssh-ed25519 AAAA... comment`.
    pub public_key: String,
    /// The private key, PEM-armoured `openssh-key-v1`, unencrypted.
    pub private_key: String,
}

/// Appends an SSH wire-format string (u32 length, bytes).
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("SSH strings here are small");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Generates an Ed25519 key pair from the operating system's random source.
pub fn generate(comment: &str) -> Result<GeneratedKey, getrandom::Error> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut())?;
    let mut check = [0u8; 4];
    getrandom::fill(&mut check)?;
    Ok(encode(&seed, check, comment))
}

/// The OpenSSH public line and private key file for Ed25519 `seed`, with check integer
/// `check` (random in real keys; fixed in tests).
fn encode(seed: &[u8; 32], check: [u8; 4], comment: &str) -> GeneratedKey {
    let signing = ed25519_dalek::SigningKey::from_bytes(seed);
    let public = signing.verifying_key().to_bytes();
    let mut blob = Vec::new();
    put_string(&mut blob, b"ssh-ed25519");
    put_string(&mut blob, &public);
    let public_key = format!("ssh-ed25519 {} {comment}", B64.encode(&blob));

    // The private section: check ints, key type, public key, seed || public, comment,
    // then padding 1, 2, 3... to the cipher block size (8 for "none").
    let mut section = Zeroizing::new(Vec::with_capacity(256));
    section.extend_from_slice(&check);
    section.extend_from_slice(&check);
    put_string(&mut section, b"ssh-ed25519");
    put_string(&mut section, &public);
    let mut keypair = Zeroizing::new([0u8; 64]);
    keypair[..32].copy_from_slice(seed);
    keypair[32..].copy_from_slice(&public);
    put_string(&mut section, keypair.as_ref());
    put_string(&mut section, comment.as_bytes());
    let mut pad = 1u8;
    while section.len() % 8 != 0 {
        section.push(pad);
        pad += 1;
    }

    let mut file = Zeroizing::new(Vec::with_capacity(section.len() + 128));
    file.extend_from_slice(b"openssh-key-v1\0");
    put_string(&mut file, b"none");
    put_string(&mut file, b"none");
    put_string(&mut file, b"");
    file.extend_from_slice(&1u32.to_be_bytes());
    put_string(&mut file, &blob);
    put_string(&mut file, &section);
    let encoded = Zeroizing::new(B64.encode(file.as_slice()));
    let mut private_key = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for line in encoded.as_bytes().chunks(70) {
        private_key.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        private_key.push('\n');
    }
    private_key.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    GeneratedKey {
        public_key,
        private_key,
    }
}

/// The stored public key of a `Keypair` object.
fn public_key_of(keypair: &Value) -> String {
    keypair["spec"]["publicKey"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn fingerprint_of(keypair: &Value) -> String {
    keypair
        .pointer("/status/fingerprint")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| fingerprint(&public_key_of(keypair)))
        .unwrap_or_default()
}

fn user_of(keypair: &Value, fallback: &str) -> String {
    keypair
        .pointer("/metadata/annotations/openstack.org~1user-id")
        .and_then(Value::as_str)
        .unwrap_or(fallback)
        .to_string()
}

/// A stable integer id for `keypair` (Nova shows its database row id).
fn numeric_id(keypair: &Value) -> u32 {
    let uid = common::uid(keypair);
    uid.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    }) & 0x7fff_ffff
}

/// The key pairs of `project`, by OpenStack name.
async fn all(state: &ApiState, project: &str) -> Result<Vec<Value>, Fault> {
    let mut items = common::list(state, kind(), Some(project))
        .await
        .map_err(api_error)?;
    items.retain(|k| k.pointer("/metadata/deletionTimestamp").is_none());
    items.sort_by_key(common::display_name);
    Ok(items)
}

async fn find(state: &ApiState, project: &str, name: &str) -> Result<Value, Fault> {
    all(state, project)
        .await?
        .into_iter()
        .find(|k| common::display_name(k) == name)
        .ok_or_else(|| not_found(name))
}

/// `GET /os-keypairs`.
async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Response, Fault> {
    let project = project(&caller, Action::Read)?;
    let items: Vec<Value> = all(&state, &project)
        .await?
        .iter()
        .map(|k| {
            json!({"keypair": {
                "name": common::display_name(k),
                "public_key": public_key_of(k),
                "fingerprint": fingerprint_of(k),
            }})
        })
        .collect();
    Ok(Json(json!({ "keypairs": items })).into_response())
}

/// `GET /os-keypairs/{name}`.
async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Fault> {
    let project = project(&caller, Action::Read)?;
    let keypair = find(&state, &project, &name).await?;
    let created = common::openstack_time(
        keypair
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
    );
    Ok(Json(json!({"keypair": {
        "name": common::display_name(&keypair),
        "public_key": public_key_of(&keypair),
        "fingerprint": fingerprint_of(&keypair),
        "user_id": user_of(&keypair, &caller.name()),
        "deleted": false,
        "created_at": created,
        "updated_at": null,
        "deleted_at": null,
        "id": numeric_id(&keypair),
    }}))
    .into_response())
}

/// What `POST /os-keypairs` asks for.
#[derive(Debug, PartialEq)]
struct NewKeypair {
    name: String,
    public_key: Option<String>,
}

/// Validates the create body (Nova 2.1: `name` of letters, digits, spaces, `_` and `-`;
/// optional `public_key`).
fn parse_create(body: &Value) -> Result<NewKeypair, Fault> {
    let keypair = body
        .get("keypair")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            Fault::bad_request(
                D,
                "Invalid input for field/attribute keypair. 'keypair' is a required object",
            )
        })?;
    if let Some(extra) = keypair
        .keys()
        .find(|k| !["name", "public_key", "type"].contains(&k.as_str()))
    {
        return Err(Fault::bad_request(
            D,
            format!(
                "Invalid input for field/attribute keypair. Additional properties are not allowed ('{extra}' was unexpected)"
            ),
        ));
    }
    match keypair.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "ssh" => {}
        Some(other) => {
            return Err(Fault::bad_request(
                D,
                format!(
                    "Invalid input for field/attribute type: {other} is not supported; only \"ssh\" key pairs are"
                ),
            ));
        }
    }
    let name = match keypair.get("name") {
        Some(Value::String(s))
            if !s.is_empty()
                && s.chars().count() <= 255
                && s.trim() == s
                && s.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.' | '@')
                }) =>
        {
            s.clone()
        }
        Some(_) => {
            return Err(Fault::bad_request(
                D,
                "Invalid input for field/attribute name: key pair names are 1 to 255 letters, digits, spaces, '_', '-', '.' and '@', without leading or trailing spaces.",
            ));
        }
        None => {
            return Err(Fault::bad_request(
                D,
                "Invalid input for field/attribute keypair. 'name' is a required property",
            ));
        }
    };
    let public_key = match keypair.get("public_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) => {
            let key = key.trim();
            if key.lines().count() > 1 {
                return Err(Fault::bad_request(
                    D,
                    "Keypair data is invalid: public_key must be a single line",
                ));
            }
            if let Some(problem) = ssh_public_key_problem(key) {
                return Err(Fault::bad_request(
                    D,
                    format!("Keypair data is invalid: public_key {problem}"),
                ));
            }
            Some(key.to_string())
        }
        Some(other) => {
            return Err(Fault::bad_request(
                D,
                format!("Invalid input for field/attribute public_key: {other} is not a string"),
            ));
        }
    };
    Ok(NewKeypair { name, public_key })
}

/// `POST /os-keypairs`: imports `public_key` or generates a pair; `409` when the name is
/// taken in the project.
async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, Fault> {
    let project = project(&caller, Action::Write)?;
    let new = parse_create(&common::json_body(D, &body)?)?;
    if all(&state, &project)
        .await?
        .iter()
        .any(|k| common::display_name(k) == new.name)
    {
        return Err(Fault::conflict(
            D,
            format!("Key pair '{}' already exists.", new.name),
        ));
    }
    let (public_key, private_key) = match new.public_key {
        Some(key) => (key, None),
        None => {
            let generated = generate(GENERATED_COMMENT)
                .map_err(|e| Fault::internal(D, format!("cannot generate a key: {e}")))?;
            (generated.public_key, Some(generated.private_key))
        }
    };
    let fingerprint = fingerprint(&public_key).unwrap_or_default();
    let (object_name, _) =
        common::object_name_for(&state, kind(), Some(&project), "keypair", &new.name)
            .await
            .map_err(api_error)?;
    let user = caller.name();
    let mut annotations = json!({ USER_ANNOTATION: user });
    if object_name != new.name {
        annotations[NAME_ANNOTATION] = json!(new.name);
    }
    let object = json!({
        "apiVersion": cirrus_crds::API_VERSION,
        "kind": "Keypair",
        "metadata": {"name": object_name, "annotations": annotations},
        "spec": {"publicKey": public_key, "type": "ssh"},
    });
    let created = crate::resources::create(
        &state,
        crate::admission::Writer::Caller(&caller),
        kind(),
        Some(&project),
        object,
        false,
    )
    .await
    .map_err(|e| {
        if e.code() == StatusCode::CONFLICT {
            Fault::conflict(D, format!("Key pair '{}' already exists.", new.name))
        } else {
            api_error(e)
        }
    })?;
    // Record the fingerprint for the native API's readers too (best effort: it is derived).
    let patch = json!({"status": {"fingerprint": fingerprint}});
    if let Err(e) = crate::resources::write(
        &state,
        crate::admission::Writer::Api,
        kind(),
        Some(&project),
        &object_name,
        crate::resources::Change::MergePatch(&patch),
        cirrus_store::objects::Part::Status,
        false,
    )
    .await
    {
        tracing::warn!(keypair = %object_name, error = %e.message(), "cannot record the key pair's fingerprint");
    }
    tracing::info!(%project, keypair = %object_name, generated = private_key.is_some(), "key pair created");
    let mut body = json!({
        "name": new.name,
        "public_key": public_key_of(&created),
        "fingerprint": fingerprint,
        "user_id": user,
    });
    if let Some(private_key) = private_key {
        body["private_key"] = json!(private_key);
    }
    Ok(Json(json!({ "keypair": body })).into_response())
}

/// `DELETE /os-keypairs/{name}`: `202`.
async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Fault> {
    let project = project(&caller, Action::Write)?;
    let keypair = find(&state, &project, &name).await?;
    crate::resources::delete(
        &state,
        kind(),
        Some(&project),
        &common::name(&keypair),
        false,
    )
    .await
    .map_err(api_error)?;
    tracing::info!(%project, keypair = %name, "key pair deleted");
    Ok(StatusCode::ACCEPTED.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_md5_of_the_blob_in_colon_hex() {
        // ssh-keygen -l -E md5 of this key prints MD5:... with the same digits.
        let key = encode(&[7u8; 32], [1, 2, 3, 4], "c").public_key;
        let fp = fingerprint(&key).unwrap();
        assert_eq!(fp.len(), 47);
        assert_eq!(fp.matches(':').count(), 15);
        assert_eq!(fingerprint("ssh-ed25519 !!!"), None);
    }

    #[test]
    fn generated_public_key_is_a_valid_openssh_line() {
        let key = generate("test").unwrap();
        assert!(key.public_key.starts_with("ssh-ed25519 "));
        assert!(key.public_key.ends_with(" test"));
        assert_eq!(ssh_public_key_problem(&key.public_key), None);
        assert!(
            key.private_key
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        );
        assert!(
            key.private_key
                .ends_with("-----END OPENSSH PRIVATE KEY-----\n")
        );
        let other = generate("test").unwrap();
        assert_ne!(key.public_key, other.public_key, "keys are random");
    }

    /// ssh-keygen reads the private key back and derives the same public key and the same
    /// MD5 fingerprint (skipped where OpenSSH is not installed).
    #[test]
    fn ssh_keygen_accepts_the_private_key() {
        if std::process::Command::new("ssh-keygen")
            .arg("-?")
            .output()
            .is_err()
        {
            eprintln!("SKIP: ssh-keygen is not installed");
            return;
        }
        let key = generate("probe").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        std::fs::write(&path, &key.private_key).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let out = std::process::Command::new("ssh-keygen")
            .args(["-y", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let derived = String::from_utf8(out.stdout).unwrap();
        let mut ours = key.public_key.split_whitespace();
        let mut theirs = derived.split_whitespace();
        assert_eq!(ours.next(), theirs.next());
        assert_eq!(ours.next(), theirs.next(), "same key blob");
        let out = std::process::Command::new("ssh-keygen")
            .args(["-l", "-E", "md5", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        let listed = String::from_utf8(out.stdout).unwrap();
        let fp = fingerprint(&key.public_key).unwrap();
        assert!(listed.contains(&format!("MD5:{fp}")), "{listed} vs {fp}");
    }

    #[test]
    fn create_body_is_validated() {
        let generated = parse_create(&json!({"keypair": {"name": "k1"}})).unwrap();
        assert_eq!(
            generated,
            NewKeypair {
                name: "k1".into(),
                public_key: None
            }
        );
        let line = encode(&[1u8; 32], [0; 4], "me@host").public_key;
        let imported = parse_create(
            &json!({"keypair": {"name": "My Key", "public_key": format!("{line}\n")}}),
        )
        .unwrap();
        assert_eq!(imported.public_key.as_deref(), Some(line.as_str()));
        for (body, field) in [
            (
                json!({"keypair": {"name": "k", "public_key": "ssh-rsa nope"}}),
                "public_key",
            ),
            (
                json!({"keypair": {"name": "k", "public_key": "hello"}}),
                "public_key",
            ),
            (json!({"keypair": {"name": "bad/name"}}), "name"),
            (json!({"keypair": {}}), "name"),
            (json!({"keypair": {"name": "k", "x": 1}}), "'x'"),
            (json!({"nope": {}}), "keypair"),
        ] {
            let fault = parse_create(&body).unwrap_err();
            assert_eq!(fault.code, StatusCode::BAD_REQUEST);
            assert!(fault.message.contains(field), "{field}: {}", fault.message);
        }
    }

    #[test]
    fn numeric_ids_are_stable() {
        let k = json!({"metadata": {"uid": "0b0e3c4e-1111-2222-3333-444455556666"}});
        assert_eq!(numeric_id(&k), numeric_id(&k.clone()));
        assert!(numeric_id(&k) <= i32::MAX as u32);
    }
}
