//! Admission: the one layer every write goes through, whichever front end it came from.
//!
//! The native handlers (`crate::resources`) and the OpenStack translations
//! (`crate::openstack`) authorize a request each in their own dialect, then write through
//! [`crate::resources::create`], [`crate::resources::write`] and [`crate::resources::delete`],
//! which call this module. A rule about *what* may be written therefore lives here once:
//!
//! - [`policy`]: who may set which field, who writes status, what is immutable (pure);
//! - [`defaults`]: fields the API fills in on create (mutating admission);
//! - [`delete`] and [`volume_in_use`]: deletions refused while something depends on the
//!   object;
//! - [`identity_names`]: Keystone names unique among projects and among users;
//! - [`network_use`]: another project's network only when it is shared, and not unshared
//!   or deleted while other projects' ports use it;
//! - [`revoke`]: identity writes whose effect must reach tokens at once (a deleted user or
//!   role binding, a disabled user or project), on every path;
//! - quotas ([`crate::quota`]) on create and on updates that grow usage, serialized per
//!   project ([`quota_lock`]).

pub(crate) mod defaults;
pub(crate) mod delete;
pub(crate) mod identity_names;
pub(crate) mod image_use;
pub(crate) mod network_use;
pub(crate) mod policy;
pub(crate) mod quota_lock;
pub(crate) mod revoke;
pub(crate) mod volume_in_use;

pub(crate) use policy::{Writer, admit};
