//! The OpenStack-compatible API: thin translations from what python-openstackclient and
//! openstacksdk send into Cirrus objects, and from objects back into OpenStack's bodies.
//!
//! No second source of truth: every handler reads and writes the same objects as the native
//! API, through the same admission (`crate::resources::create`, `crate::resources::delete`),
//! and authorizes with the token's [`crate::auth::Caller`]. One module per service:
//!
//! | service        | path prefix                      | module       |
//! |----------------|----------------------------------|--------------|
//! | compute (Nova) | `/compute`, `/compute/v2.1`      | [`compute`]  |
//! | image (Glance) | `/image`, `/image/v2`            | [`image`]    |
//! | network        | `/network`, `/network/v2.0`      | [`network`]  |
//! | block-storage  | `/volume`, `/volume/v3/{project}`| [`volume`]   |
//!
//! Conventions shared by all of them live in [`common`]: ids, names, lookups; every list
//! pages with [`paging`] and reads its query string with [`query_string`].

pub mod common;
pub mod compute;
pub mod fault;
pub mod image;
pub mod image_members;
pub mod json_patch;
pub mod network;
pub mod paging;
pub mod query_string;
pub mod request_id;
pub mod volume;

use axum::Router;

use crate::ApiState;

/// All OpenStack service routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .merge(compute::router())
        .merge(image::router())
        .merge(network::router())
        .merge(volume::router())
}
