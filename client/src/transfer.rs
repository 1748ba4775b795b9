//! The native API's routes that carry data rather than objects: an Image's data
//! (`PUT`/`GET .../images/{name}/file`, streamed both ways) and a Server's console log
//! (`GET .../servers/{name}/console`).

use std::path::Path;

use bytes::Bytes;
use cirrus_crds::{Image, Resource, Server};
use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::url::{Query, object_url};
use crate::{Client, ClientError, Result};

impl Client {
    /// `.../projects/{project}/images/{name}/file`.
    fn image_file_url(&self, project: &str, name: &str) -> Result<String> {
        object_url(
            &self.base_url,
            Image::info(),
            Some(project),
            name,
            &["file"],
        )
    }

    /// Uploads `body` (`length` bytes, when known) as the data of the Image `name` in
    /// `project`, and returns the Image as the server recorded it (active, with size and
    /// checksums). The body is streamed, never whole in memory, and so is not re-sent after
    /// a refused token.
    ///
    /// # Errors
    /// The API refuses the data (`400` wrong format or backing file, `409` already active,
    /// `404` no such image), or the connection fails.
    pub async fn image_upload(
        &self,
        project: &str,
        name: &str,
        body: reqwest::Body,
        length: Option<u64>,
    ) -> Result<Value> {
        let url = self.image_file_url(project, name)?;
        let (mut request, _) = self.request(reqwest::Method::PUT, &url).await?;
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(length) = length {
            request = request.header(reqwest::header::CONTENT_LENGTH, length);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(source) => return Err(self.why_upload_broke(project, name, url, source).await),
        };
        let response = Self::answer(&url, reqwest::Method::PUT, response).await?;
        Self::decode(&url, reqwest::Method::PUT, response).await
    }

    /// The error to report for an upload whose connection broke: a server that refuses an
    /// upload (no such image, not allowed) answers before it reads the body and closes the
    /// connection, so the client may see only the broken stream. The Image's own answer
    /// then says why; when it reads fine, the transport error is the reason.
    async fn why_upload_broke(
        &self,
        project: &str,
        name: &str,
        url: String,
        source: reqwest::Error,
    ) -> ClientError {
        match crate::Api::<Image>::in_project(self.clone(), project)
            .get(name)
            .await
        {
            Err(refusal) if refusal.code().is_some() => refusal,
            _ => ClientError::Http {
                method: "PUT".into(),
                url,
                source,
            },
        }
    }

    /// [`Client::image_upload`] of the file at `path`.
    ///
    /// # Errors
    /// [`ClientError::File`] when the file can't be opened; else as [`Client::image_upload`].
    pub async fn image_upload_file(&self, project: &str, name: &str, path: &Path) -> Result<Value> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| ClientError::File {
                path: path.display().to_string(),
                source,
            })?;
        let length = file.metadata().await.map(|m| m.len()).ok();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        self.image_upload(project, name, body, length).await
    }

    /// The data of the Image `name` in `project`, streamed as it arrives.
    ///
    /// # Errors
    /// `404` (no such image), `409` (no data yet); the stream yields
    /// [`ClientError::StreamBroken`] when the connection breaks midway.
    pub async fn image_download(
        &self,
        project: &str,
        name: &str,
    ) -> Result<impl Stream<Item = Result<Bytes>> + Send + 'static + use<>> {
        let url = self.image_file_url(project, name)?;
        let response = self.send(reqwest::Method::GET, &url, None).await?;
        Ok(response.bytes_stream().map(move |chunk| {
            chunk.map_err(|source| ClientError::StreamBroken {
                url: url.clone(),
                source,
            })
        }))
    }

    /// A server's console log (text), optionally only its last `tail_bytes` bytes.
    ///
    /// # Errors
    /// `404` (no such server), `409` (not on a node yet), `503` (node agent unreachable).
    pub async fn server_console(
        &self,
        project: &str,
        name: &str,
        tail_bytes: Option<u64>,
    ) -> Result<String> {
        let mut query = Query::default();
        if let Some(tail) = tail_bytes {
            query.push("tailBytes", &tail.to_string());
        }
        let url = query.on(object_url(
            &self.base_url,
            Server::info(),
            Some(project),
            name,
            &["console"],
        )?);
        let response = self.send(reqwest::Method::GET, &url, None).await?;
        response.text().await.map_err(|source| ClientError::Http {
            method: "GET".into(),
            url,
            source,
        })
    }
}
