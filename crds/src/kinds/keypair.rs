//! `Keypair`: a public key injected into servers (Nova's keypair).
//!
//! Only the public key is stored. When a client asks the OpenStack API to generate a pair,
//! the API generates it, stores the public half here and returns the private half once.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::base64_decode;
use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A public key for logging into servers. Project-scoped.
    Keypair {
        spec: KeypairSpec,
        status: KeypairStatus,
        plural: "keypairs",
        singular: "keypair",
        short_names: ["kp"],
        scope: Project,
    }
}

/// Kind of key.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeypairType {
    /// An OpenSSH public key.
    #[default]
    Ssh,
    /// A PEM X.509 certificate (Windows guests).
    X509,
}

/// SSH public key algorithms accepted.
pub const SSH_KEY_TYPES: &[&str] = &[
    "ssh-rsa",
    "ssh-ed25519",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Desired state of a keypair.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeypairSpec {
    /// The public key in OpenSSH format (`ssh-ed25519 AAAA... comment`), or a PEM
    /// certificate for `type: x509`.
    pub public_key: String,
    /// Kind of key.
    #[serde(default, rename = "type")]
    pub type_: KeypairType,
}

/// Observed state of a keypair.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeypairStatus {
    /// MD5 fingerprint of the key, colon-separated hex (`aa:bb:...`), as Nova shows it;
    /// filled in by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Observations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Why `key` is not an OpenSSH public key line, if it is not.
pub fn ssh_public_key_problem(key: &str) -> Option<String> {
    let mut parts = key.split_whitespace();
    let (Some(kind), Some(body)) = (parts.next(), parts.next()) else {
        return Some("must be an OpenSSH public key: \"<type> <base64> [comment]\"".into());
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Some(format!(
            "unsupported key type {kind:?}; use one of {}",
            SSH_KEY_TYPES.join(", ")
        ));
    }
    let blob = match base64_decode(body) {
        Ok(blob) => blob,
        Err(e) => return Some(format!("key body {e}")),
    };
    // The blob starts with the key type as an SSH string (u32 length, bytes).
    let inner = blob.get(..4).and_then(|len| {
        let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        blob.get(4..4 + n)
    });
    if inner != Some(kind.as_bytes()) {
        return Some(format!("key body is not a {kind} key"));
    }
    None
}

impl Validate for Keypair {
    fn validate(&self, errors: &mut FieldErrors) {
        let key = self.spec.public_key.trim();
        match self.spec.type_ {
            KeypairType::Ssh => {
                if key.lines().count() > 1 {
                    errors.add("spec.publicKey", "must be a single line");
                } else if let Some(p) = ssh_public_key_problem(key) {
                    errors.add("spec.publicKey", p);
                }
            }
            KeypairType::X509 => {
                if !key.starts_with("-----BEGIN CERTIFICATE-----")
                    || !key.ends_with("-----END CERTIFICATE-----")
                {
                    errors.add(
                        "spec.publicKey",
                        "must be a PEM certificate (-----BEGIN CERTIFICATE-----)",
                    );
                }
            }
        }
        if self.metadata.name.len() > 255 {
            errors.add("metadata.name", "must be at most 255 characters");
        }
    }
}
