//! The OpenStack-compatible API: thin translations from what python-openstackclient and
//! openstacksdk send into Cirrus objects, and from objects back into OpenStack's bodies.
//!
//! No second source of truth: every handler reads and writes the same objects as the native
//! API, through the same admission ([`crate::resources::create`], [`crate::resources::delete`]),
//! and authorizes with the token's [`crate::auth::Caller`].
//!
//! Conventions shared by all services live in [`common`]: ids, names, lookups; error bodies
//! in [`fault`].

pub mod common;
pub mod fault;
pub mod image;
pub mod network;
pub mod volume;

use axum::Router;

use crate::ApiState;

/// All OpenStack service routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .merge(image::router())
        .merge(network::router())
        .merge(volume::router())
}
