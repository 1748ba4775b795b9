//! Cirrus identity core: the pieces of authentication and authorization that need no store
//! and no HTTP, so that they can be tested exhaustively on their own.
//!
//! - [`password`]: argon2id password hashes (PHC strings) and constant-time verification.
//! - [`token`]: opaque, self-validating, expiring tokens — an authenticated-encrypted payload
//!   (XChaCha20-Poly1305) that any API replica validates with only its [`keys::KeyRing`] and
//!   the in-memory [`revocation::RevocationList`], without a store round trip.
//! - [`keys`]: the token key ring with rotation, kept as files in a directory.
//! - [`revocation`]: revoked audit ids (and per-user cut-offs) with their expiry.
//! - [`roles`]: the role lattice `reader < member < admin` and effective roles from
//!   `RoleBinding`s.
//! - [`authz`]: the pure authorization decision (`Allow`, `Deny`, or `NotFound` for what the
//!   caller may not even see).
//!
//! # Where it is wired in
//! The API (`cirrus-api`) authenticates every request with [`token::validate`] in its
//! middleware, authorizes with [`authorize`] / [`authorize_node`], issues tokens at
//! `POST /identity/v3/auth/tokens`, and keeps revocations as store objects mirrored into a
//! [`RevocationList`]; `cirrus up` keeps the [`KeyRing`] in its data directory. See
//! `docs/identity.md`.

pub mod authz;
pub mod keys;
pub mod password;
pub mod revocation;
pub mod roles;
pub mod token;

pub use authz::{Action, Decision, Subject, UserSubject, authorize, authorize_node};
pub use keys::{KeyError, KeyRing};
pub use password::{PasswordError, hash_password, verify_password};
pub use revocation::{AuditId, RevocationList};
pub use roles::{ADMIN_PROJECT, Role, RoleExt, effective_role, is_cloud_admin};
pub use token::{DEFAULT_TOKEN_TTL, TokenError, TokenPayload};
