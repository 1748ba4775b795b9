//! Listing with label selectors and consistent pagination.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cirrus_crds::KindInfo;
use etcd_client::GetOptions;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ObjectError, ObjectStore, decode, keys};
use crate::fields::FieldSelector;
use crate::selector::LabelSelector;

/// How many keys one internal range read fetches (keeps gRPC messages small).
const BATCH: i64 = 500;

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only objects whose labels match.
    pub selector: LabelSelector,
    /// Only objects whose fields match (`spec.nodeName=node-a`).
    pub fields: FieldSelector,
    /// At most this many items per page; `None` lists everything.
    pub limit: Option<usize>,
    /// The `continue` token of the previous page.
    pub continue_token: Option<String>,
}

/// One page of objects, all as of one store revision.
#[derive(Clone, Debug)]
pub struct ObjectList {
    /// The objects, in key order (project, then name).
    pub items: Vec<Value>,
    /// The revision the page was read at; watch from it to see every later change.
    pub resource_version: i64,
    /// Token for the next page, when there are more objects.
    pub continue_token: Option<String>,
}

/// The position a continue token encodes: a revision and the next key to read.
#[derive(Serialize, Deserialize)]
struct Continue {
    rev: i64,
    start: String,
}

impl ObjectStore {
    /// Lists objects of a kind, in one project or (with `None`) everywhere.
    ///
    /// Every page of one listing is read at the revision of the first page, so paging never
    /// shows an object twice or misses one that existed throughout.
    ///
    /// # Errors
    /// [`ObjectError::Expired`] when a continue token's revision has been compacted,
    /// [`ObjectError::BadRequest`] for a malformed token.
    pub async fn list(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        options: &ListOptions,
    ) -> Result<ObjectList, ObjectError> {
        let prefix = keys::list_prefix(&self.prefix, kind, project)?;
        let end = keys::prefix_end(prefix.as_bytes());
        let (mut revision, mut start) = match &options.continue_token {
            Some(token) => {
                let position = decode_continue(token)?;
                let start = URL_SAFE_NO_PAD
                    .decode(&position.start)
                    .map_err(|_| ObjectError::BadRequest("malformed continue token".into()))?;
                if !start.starts_with(prefix.as_bytes()) {
                    return Err(ObjectError::BadRequest(
                        "continue token belongs to a different listing".into(),
                    ));
                }
                (position.rev, start)
            }
            None => (0, prefix.clone().into_bytes()),
        };
        let limit = options.limit.filter(|l| *l > 0);
        let mut items = Vec::new();
        loop {
            let want = match limit {
                Some(limit) => ((limit - items.len()) as i64).clamp(1, BATCH),
                None => BATCH,
            };
            let mut get = GetOptions::new().with_range(end.clone()).with_limit(want);
            if revision > 0 {
                get = get.with_revision(revision);
            }
            let resp = self
                .client
                .kv_client()
                .get(start.clone(), Some(get))
                .await
                .map_err(|err| {
                    if super::error::is_compacted(&err) {
                        ObjectError::Expired(format!(
                            "the continue token is too old: revision {revision} has been compacted; list again from the start"
                        ))
                    } else {
                        ObjectError::Unavailable(err)
                    }
                })?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            }
            let kvs = resp.kvs();
            for (i, kv) in kvs.iter().enumerate() {
                let object = decode(kv)?;
                if options.selector.matches_object(&object) && options.fields.matches(&object) {
                    items.push(object);
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    let more = i + 1 < kvs.len() || resp.more();
                    let continue_token = more.then(|| {
                        let mut next = kv.key().to_vec();
                        next.push(0);
                        encode_continue(revision, &next)
                    });
                    return Ok(ObjectList {
                        items,
                        resource_version: revision,
                        continue_token,
                    });
                }
            }
            match kvs.last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => {
                    return Ok(ObjectList {
                        items,
                        resource_version: revision,
                        continue_token: None,
                    });
                }
            }
        }
    }
}

fn encode_continue(rev: i64, start: &[u8]) -> String {
    let position = Continue {
        rev,
        start: URL_SAFE_NO_PAD.encode(start),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&position).expect("serializable"))
}

fn decode_continue(token: &str) -> Result<Continue, ObjectError> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Continue>(&bytes).ok())
        .filter(|c| c.rev > 0)
        .ok_or_else(|| ObjectError::BadRequest("malformed continue token".into()))
}
