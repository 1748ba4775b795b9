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
//! # Not wired in yet (issue 5's next steps)
//! 1. `cirrus up` loads or creates the key ring in its data directory (`KeyRing::load_or_create`)
//!    and bootstraps the `admin` user, the `admin` project and an admin binding, printing the
//!    password once and writing clouds.yaml / openrc (mode 0600).
//! 2. An API middleware takes `X-Auth-Token` / `Authorization: Bearer`, calls
//!    [`token::validate`] (401 on any error), checks that the user and project are still
//!    enabled (informer cache), and [`authorize`]s every request with the object's project
//!    (`Deny` → 403, `NotFound` → 404), filtering lists the same way; node agents get node
//!    subjects checked with [`authorize_node`].
//! 3. Revocations become store objects fed to a [`RevocationList`] by a watch;
//!    `DELETE /v3/auth/tokens` writes one from [`token::open`].
//! 4. `POST /v3/auth/tokens` verifies the password, takes the [`effective_role`] of the scope
//!    and issues a token (`X-Subject-Token`, Keystone's body).

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
