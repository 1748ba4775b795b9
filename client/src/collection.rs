//! The calls on one collection that the typed [`crate::Api`] and the [`crate::DynamicApi`]
//! share: URLs from the kind's [`KindInfo`], list pages, writes and watches, generic over the
//! type the answer is decoded into (a typed kind or a [`serde_json::Value`]).

use cirrus_crds::{KindInfo, Scope};
use futures::Stream;
use serde::de::DeserializeOwned;

use crate::url::{self, Query};
use crate::{Client, ClientError, ListParams, ObjectList, Result, WatchEvent};

/// Content type of a JSON merge patch (RFC 7386).
pub(crate) const MERGE_PATCH: &str = "application/merge-patch+json";
/// Content type of a JSON body.
pub(crate) const JSON: &str = "application/json";

/// One kind's collection, across projects (`project: None`) or inside one project.
#[derive(Clone)]
pub(crate) struct Collection {
    pub(crate) client: Client,
    pub(crate) kind: &'static KindInfo,
    pub(crate) project: Option<String>,
}

/// A list answer as the API sends it.
#[derive(serde::Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct Page<T> {
    #[serde(default)]
    items: Vec<T>,
    #[serde(default)]
    metadata: PageMeta,
}

#[derive(Default, serde::Deserialize)]
struct PageMeta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
    #[serde(default, rename = "continue")]
    continue_token: Option<String>,
}

impl Collection {
    /// The collection of `kind` in `project` (ignored for a cluster-scoped kind), or across
    /// projects.
    pub(crate) fn new(client: Client, kind: &'static KindInfo, project: Option<String>) -> Self {
        let project = project.filter(|_| kind.scope == Scope::Project);
        Self {
            client,
            kind,
            project,
        }
    }

    /// URL of the collection in `project` (or across projects / cluster-wide).
    pub(crate) fn collection_url(&self, project: Option<&str>) -> Result<String> {
        url::collection_url(&self.client.base_url, self.kind, project)
    }

    /// URL of one object in `project` (else this collection's project), with `subresource`
    /// segments after its name.
    pub(crate) fn object_url(
        &self,
        project: Option<&str>,
        name: &str,
        subresource: &[&str],
    ) -> Result<String> {
        let project = project.or(self.project.as_deref());
        url::object_url(&self.client.base_url, self.kind, project, name, subresource)
    }

    /// The project a write of an object carrying `own` goes to: this collection's, else the
    /// object's own; refused for a project-scoped kind when neither is known.
    pub(crate) fn project_for<'a>(&'a self, own: Option<&'a str>) -> Result<Option<&'a str>> {
        let project = self.project.as_deref().or(own);
        if self.kind.scope == Scope::Project && project.is_none() {
            return Err(ClientError::ProjectRequired {
                kind: self.kind.kind,
            });
        }
        Ok(project)
    }

    /// `GET` of one object.
    pub(crate) async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let url = self.object_url(None, name, &[])?;
        self.client
            .send_json(reqwest::Method::GET, &url, None)
            .await
    }

    /// `GET` of one object, `None` when it does not exist.
    pub(crate) async fn get_opt<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self.get(name).await {
            Ok(obj) => Ok(Some(obj)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// One page of the list.
    pub(crate) async fn list<T: DeserializeOwned>(
        &self,
        params: &ListParams,
    ) -> Result<ObjectList<T>> {
        let url = Query::list(params).on(self.collection_url(self.project.as_deref())?);
        let page: Page<T> = self
            .client
            .send_json(reqwest::Method::GET, &url, None)
            .await?;
        let text = |s: Option<String>| s.filter(|s| !s.is_empty());
        Ok(ObjectList {
            items: page.items,
            resource_version: text(page.metadata.resource_version).unwrap_or_else(|| "0".into()),
            continue_token: text(page.metadata.continue_token),
        })
    }

    /// Every object matching the selectors of `selectors`, following continue tokens (pages
    /// of 500, one consistent snapshot).
    pub(crate) async fn list_all<T: DeserializeOwned>(
        &self,
        selectors: &ListParams,
    ) -> Result<ObjectList<T>> {
        let mut params = ListParams {
            limit: Some(500),
            continue_token: None,
            ..selectors.clone()
        };
        let mut all = self.list(&params).await?;
        while let Some(token) = all.continue_token.take() {
            params.continue_token = Some(token);
            let page = self.list(&params).await?;
            all.items.extend(page.items);
            all.continue_token = page.continue_token;
        }
        Ok(all)
    }

    /// Sends `body` with `method` to `url` (plus `?dryRun=All` when `dry_run`) and decodes
    /// the answer.
    pub(crate) async fn write<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<(&'static str, Vec<u8>)>,
        dry_run: bool,
    ) -> Result<T> {
        let mut query = Query::default();
        if dry_run {
            query.push("dryRun", "All");
        }
        self.client.send_json(method, &query.on(url), body).await
    }

    /// The events after `resource_version` (empty: the current objects first, as `Added`).
    pub(crate) fn watch<T>(
        &self,
        resource_version: &str,
        selectors: &ListParams,
    ) -> impl Stream<Item = Result<WatchEvent<T>>> + Send + 'static + use<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let url = self
            .collection_url(self.project.as_deref())
            .map(|url| Query::watch(resource_version, selectors).on(url));
        let client = self.client.clone();
        async_stream::stream! {
            match url {
                Ok(url) => {
                    let mut events = std::pin::pin!(crate::watch::events::<T>(client, url));
                    while let Some(event) = futures::StreamExt::next(&mut events).await {
                        yield event;
                    }
                }
                Err(err) => yield Err(err),
            }
        }
    }
}
