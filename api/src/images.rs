//! Image data through the native API: `PUT`/`GET
//! /apis/cirrus.dev/v1/projects/{project}/images/{name}/file`, streamed both ways.
//!
//! An upload streams the body to `tmp/<uid>.partial` in the [`BlobStore`] while computing
//! SHA-256, MD5 and the size (never holding the data in memory), syncs it, checks it against
//! `spec.diskFormat` ([`crate::image_format`]: the declared format must be what the bytes are,
//! with no backing or data file), moves it to its content address and records
//! it in the Image's status with a compare-and-swap on `resourceVersion`.
//!
//! Phases (Glance's): the upload sets `saving` first (a CAS); success makes the image `active`
//! with `size`, `virtualSize`, `checksum` (MD5 hex), `osHashAlgo: sha256`, `osHashValue` and
//! `location` (`sha256/<hex>`, relative to the blob directory) and `Ready=True`. A refused or
//! interrupted upload removes its partial file and puts the phase back to `queued`
//! (`Ready=False`, reason `UploadFailed`, the cause in the message), so the user can fix
//! `spec.diskFormat` or the data and upload again. Only positive evidence that the data is
//! damaged makes it `killed` (reason `DataCorrupt`): the bytes received do not match a checksum
//! the client declared (`X-Checksum-Sha256` or `Content-MD5`), or the qcow2 header is marked
//! corrupt. Data is immutable: uploading to an `active` (or `deactivated`, `killed`) image is
//! `409`. A `saving` left by a crashed upload is taken over by the next upload (the upload lock
//! in the blob directory tells a live upload from a dead one).

mod sums;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cirrus_crds::kinds::image::ImagePhase;
use cirrus_crds::{Condition, ConditionStatus, FieldErrors, Image, Resource};
use cirrus_store::objects::{Api, ObjectError, ObjectStore};
use futures::StreamExt;
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::ApiState;
use crate::blobs::{BlobStore, UploadLock};
use crate::error::ApiError;
use crate::image_format::{FormatError, InspectError, format_name};
use sums::{ExpectedSums, Received, hex};

/// Response header carrying the SHA-256 of the data, hex; also accepted on upload as the
/// checksum the client expects.
pub const CHECKSUM_SHA256_HEADER: &str = "x-checksum-sha256";

/// How many times a status write is retried after a resourceVersion conflict.
const CAS_ATTEMPTS: usize = 10;

/// `PUT .../images/{name}/file`: stores the body as the image's data.
///
/// Answers `200` with the updated Image. `400 Invalid` (cause `spec.diskFormat`, the reason in
/// the message) when the data is not the declared format — including data that is another
/// container format than declared, such as qcow2 bytes declared `raw` — or is refused (a
/// backing or external data file), `404` when the image does not exist, `409` when
/// it already has data or another upload is in progress, `413` over the size limit, `415`
/// without `Content-Type: application/octet-stream`, `503` when the server keeps no image data
/// or `qemu-img` is missing.
pub async fn upload(
    State(state): State<ApiState>,
    caller: crate::auth::Caller,
    Path((project, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    crate::resources::authz::authorize(
        &state,
        &caller,
        images_kind(),
        Some(&project),
        Some(&name),
        crate::resources::authz::Op::Update(
            cirrus_store::objects::Part::Main,
            &serde_json::Value::Null,
        ),
    )
    .await?;
    let blobs = blob_store(&state)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.split(';').next().unwrap_or_default().trim() != "application/octet-stream" {
        return Err(ApiError::unsupported_media_type(format!(
            "image data needs Content-Type application/octet-stream, got {content_type:?}"
        )));
    }
    let expected = ExpectedSums::from_headers(&headers)?;
    let max = blobs.max_upload_bytes;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = length
        && length > max
    {
        return Err(too_large(max));
    }
    let quota_left = crate::quota::image_bytes_left(&state.store, &project).await?;
    if let (Some(length), Some(left)) = (length, quota_left)
        && length > left
    {
        return Err(over_quota(&project, left));
    }
    check_room(&blobs, length.unwrap_or(0))?;
    let api = Api::<Image>::in_project(state.store.clone(), project.clone());
    let image = api.get(&name).await?;
    check_uploadable(&image)?;
    let format = image.spec.disk_format;
    blobs
        .inspector
        .ensure_available(format)
        .map_err(inspect_unavailable)?;
    let uid = image.metadata.uid.clone().unwrap_or_default();
    let lock = blobs
        .begin_upload(&uid)
        .map_err(|e| io_error("locking the upload", e))?
        .ok_or_else(|| busy(&name))?;
    let mut upload = Upload {
        lock: Some(lock),
        store: state.store.clone(),
        project,
        name: name.clone(),
        uid: uid.clone(),
        armed: false,
    };
    upload.mark_saving().await?;

    let upload_project = upload.project.clone();
    let limit = Limit {
        bytes: quota_left.map_or(max, |left| left.min(max)),
        over: &|| match quota_left {
            Some(left) if left < max => over_quota(&upload_project, left),
            _ => too_large(max),
        },
        blobs: &blobs,
    };
    let received = match receive(&mut upload, body, &limit).await {
        Ok(received) => received,
        Err(failure) => return Err(upload.fail(failure).await),
    };
    if let Err(failure) = expected.check(&received) {
        return Err(upload.fail(failure).await);
    }
    let partial = upload.partial().to_path_buf();
    let inspection = match blobs
        .inspector
        .inspect(format, &partial, received.size)
        .await
    {
        Ok(inspection) => inspection,
        Err(InspectError::Format(e)) => {
            let failure = Failure::format(&name, e);
            return Err(upload.fail(failure).await);
        }
        Err(e @ (InspectError::Missing(_) | InspectError::Timeout(_))) => {
            let failure = Failure::requeue(inspect_unavailable(e));
            return Err(upload.fail(failure).await);
        }
        Err(InspectError::Io(e)) => {
            let failure = Failure::requeue(io_error("inspecting the image", e));
            return Err(upload.fail(failure).await);
        }
    };
    let committed = {
        let blobs = blobs.clone();
        let hex = received.sha256.clone();
        let size = received.size;
        tokio::task::spawn_blocking(move || blobs.commit(&partial, &hex, size)).await
    };
    match committed {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let failure = Failure::requeue(io_error("storing the image data", e));
            return Err(upload.fail(failure).await);
        }
        Err(e) => {
            let failure = Failure::requeue(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("storing the image data failed: {e}"),
            ));
            return Err(upload.fail(failure).await);
        }
    }
    // The recheck: a concurrent upload of the project may have taken the quota meanwhile.
    // Counting and recording the size are one step per project in this process.
    let _quota = crate::admission::quota_lock::lock(&upload.project).await;
    match crate::quota::image_bytes_left(&state.store, &upload.project).await {
        Ok(Some(left)) if received.size > left => {
            let failure = Failure::requeue(over_quota(&upload.project, left));
            return Err(upload.fail(failure).await);
        }
        Ok(_) => {}
        Err(e) => return Err(upload.fail(Failure::requeue(e)).await),
    }
    let active = upload
        .mark_active(&received, inspection.virtual_size)
        .await?;
    tracing::info!(
        project = %upload.project, image = %name, size = received.size,
        sha256 = %received.sha256, format = format_name(format), "image data stored"
    );
    Ok((StatusCode::OK, axum::Json(active)).into_response())
}

/// `GET .../images/{name}/file`: streams the image's data.
///
/// `200` with `Content-Type: application/octet-stream`, `Content-Length`, `Content-MD5` (MD5
/// hex, as Glance sends it), `X-Checksum-Sha256` and an `ETag` of the SHA-256; `204` while the
/// image has no data (`queued`, `saving`); `403` when it is `deactivated`; `404` when the image
/// or its blob does not exist; `503` when the server keeps no image data. `HEAD` answers the
/// same headers without the body.
pub async fn download(
    State(state): State<ApiState>,
    caller: crate::auth::Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    crate::resources::authz::authorize(
        &state,
        &caller,
        images_kind(),
        Some(&project),
        Some(&name),
        crate::resources::authz::Op::Get,
    )
    .await?;
    let blobs = blob_store(&state)?;
    let image = Api::<Image>::in_project(state.store.clone(), project)
        .get(&name)
        .await?;
    let status = &image.status;
    match status.phase {
        Some(ImagePhase::Active) => {}
        Some(ImagePhase::Deactivated) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("image {name:?} is deactivated: its data cannot be downloaded"),
            ));
        }
        _ => return Ok(StatusCode::NO_CONTENT.into_response()),
    }
    let hex = match (
        status.os_hash_algo.as_deref(),
        status.os_hash_value.as_deref(),
    ) {
        (Some("sha256"), Some(hex)) => hex,
        _ => return Ok(StatusCode::NO_CONTENT.into_response()),
    };
    let missing = || {
        ApiError::not_found(format!(
            "the data of image {name:?} (sha256 {hex}) is not in the blob store"
        ))
    };
    let path = blobs.blob_path(hex).ok_or_else(missing)?;
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(io_error("opening the image data", e)),
    };
    let length = file
        .metadata()
        .await
        .map_err(|e| io_error("reading the image data", e))?
        .len();
    let mut response = Response::new(Body::from_stream(
        tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024),
    ));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        CHECKSUM_SHA256_HEADER,
        HeaderValue::from_str(hex).expect("hex is a valid header"),
    );
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header"),
    );
    if let Some(md5) = status.checksum.as_deref()
        && let Ok(value) = HeaderValue::from_str(md5)
    {
        headers.insert("content-md5", value);
    }
    Ok(response)
}

fn blob_store(state: &ApiState) -> Result<Arc<BlobStore>, ApiError> {
    state.blobs.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "image data is not served: this API server has no image blob directory",
        )
    })
}

/// Refuses uploads to images that cannot take data now.
fn check_uploadable(image: &Image) -> Result<(), ApiError> {
    let name = &image.metadata.name;
    if image.metadata.deletion_timestamp.is_some() {
        return Err(conflict(format!("image {name:?} is being deleted")));
    }
    if image.spec.source.is_some() {
        return Err(conflict(format!(
            "image {name:?} has spec.source: its data is imported from there, not uploaded"
        )));
    }
    match image.status.phase {
        None | Some(ImagePhase::Queued) | Some(ImagePhase::Saving) => Ok(()),
        Some(phase) => Err(conflict(format!(
            "image {name:?} is {}: {}",
            phase_name(phase),
            match phase {
                ImagePhase::Active | ImagePhase::Deactivated => {
                    "image data is immutable; create a new image for new data"
                }
                ImagePhase::Killed => {
                    "its data was found corrupt; delete it and create a new image"
                }
                _ => "it cannot take uploaded data now",
            }
        ))),
    }
}

fn phase_name(phase: ImagePhase) -> String {
    serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "Conflict", message)
}

fn busy(name: &str) -> ApiError {
    conflict(format!(
        "image {name:?} is being uploaded by another request; wait for it to finish"
    ))
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        format!("image data is larger than the limit of {max} bytes"),
    )
}

fn inspect_unavailable(err: InspectError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        err.to_string(),
    )
}

fn io_error(what: &str, err: std::io::Error) -> ApiError {
    tracing::error!(error = %err, "{what} failed");
    if err.kind() == std::io::ErrorKind::StorageFull {
        return ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "InsufficientStorage",
            format!("{what} failed: the image blob directory is full"),
        );
    }
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        format!("{what} failed: {err}"),
    )
}

/// Why an upload failed: the answer, and what the image becomes.
struct Failure {
    error: Box<ApiError>,
    phase: ImagePhase,
    reason: &'static str,
    message: String,
}

impl Failure {
    /// A failure that says nothing about the data: back to `queued`.
    fn requeue(error: ApiError) -> Self {
        let message = error.to_status_json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Self {
            error: Box::new(error),
            phase: ImagePhase::Queued,
            reason: "UploadFailed",
            message,
        }
    }

    /// The data is refused by the format checks.
    fn format(name: &str, err: FormatError) -> Self {
        let mut errors = FieldErrors::default();
        errors.add("spec.diskFormat", err.to_string());
        let error = ApiError::from(ObjectError::Invalid {
            kind: Image::KIND,
            name: name.to_string(),
            errors,
        });
        let corrupt = err.is_corruption();
        Self {
            error: Box::new(error),
            phase: if corrupt {
                ImagePhase::Killed
            } else {
                ImagePhase::Queued
            },
            reason: if corrupt {
                "DataCorrupt"
            } else {
                "UploadRefused"
            },
            message: err.to_string(),
        }
    }
}

/// How much one upload may write, and the refusal beyond it.
struct Limit<'a> {
    /// Most bytes accepted (the size limit or what the quota leaves, the smaller).
    bytes: u64,
    /// The answer to an upload over [`Limit::bytes`].
    over: &'a (dyn Fn() -> ApiError + Send + Sync),
    /// Where the data goes (its file system's reserve is checked as the data comes).
    blobs: &'a BlobStore,
}

/// How often (in bytes received) an upload checks that the file system keeps its reserve.
const ROOM_CHECK_BYTES: u64 = 64 << 20;

/// `507` when writing `more` bytes would eat into the blob file system's reserve.
fn check_room(blobs: &BlobStore, more: u64) -> Result<(), ApiError> {
    match blobs.check_room(more) {
        Ok(Ok(())) => Ok(()),
        Ok(Err((free, reserved))) => Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "InsufficientStorage",
            format!(
                "the image store has {free} bytes free and keeps {reserved} free for the \
                 control plane: {more} more bytes do not fit; delete unused images or ask \
                 the operator for space"
            ),
        )),
        Err(e) => Err(io_error("checking the free space", e)),
    }
}

/// The refusal of an upload that would exceed `image_size_total` (`left` bytes left), as
/// Glance answers it (`413`).
fn over_quota(project: &str, left: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        crate::quota::REASON,
        format!(
            "Quota exceeded for image_size_total: the image data is larger than the {left} \
             bytes ({} MiB) left in project {project:?}",
            left >> 20
        ),
    )
}

/// Streams `body` into the upload's partial file, hashing as it goes.
async fn receive(upload: &mut Upload, body: Body, limit: &Limit<'_>) -> Result<Received, Failure> {
    let write_error = |e| Failure::requeue(io_error("writing the image data", e));
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(upload.partial())
        .await
        .map_err(write_error)?;
    let mut out = tokio::io::BufWriter::with_capacity(1024 * 1024, file);
    let mut sha256 = Sha256::new();
    let mut md5 = Md5::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Failure::requeue(ApiError::bad_request(format!(
                "the upload was interrupted after {size} bytes: {e}"
            )))
        })?;
        let before = size;
        size += chunk.len() as u64;
        if size > limit.bytes {
            return Err(Failure::requeue((limit.over)()));
        }
        if before / ROOM_CHECK_BYTES != size / ROOM_CHECK_BYTES {
            check_room(limit.blobs, 0).map_err(Failure::requeue)?;
        }
        sha256.update(&chunk);
        md5.update(&chunk);
        out.write_all(&chunk).await.map_err(write_error)?;
    }
    out.flush().await.map_err(write_error)?;
    out.into_inner().sync_all().await.map_err(write_error)?;
    Ok(Received {
        size,
        sha256: hex(&sha256.finalize()),
        md5: hex(&md5.finalize()),
    })
}

/// One upload in progress: its lock (and partial file) and the image it writes.
///
/// Dropped without [`Upload::fail`] or success (the client went away and the handler was
/// cancelled), it removes the partial file at once and puts the phase back to `queued` in a
/// background task, releasing the lock only after that.
struct Upload {
    lock: Option<UploadLock>,
    store: ObjectStore,
    project: String,
    name: String,
    uid: String,
    /// Set once the phase is `saving`: a drop must then undo it.
    armed: bool,
}

impl Upload {
    fn partial(&self) -> &std::path::Path {
        self.lock
            .as_ref()
            .expect("the lock is held until the upload ends")
            .partial_path()
    }

    fn api(&self) -> Api<Image> {
        Api::in_project(self.store.clone(), self.project.clone())
    }

    /// Sets the phase to `saving` (compare-and-swap), taking over a `saving` whose upload is
    /// gone (we hold its lock).
    async fn mark_saving(&mut self) -> Result<(), ApiError> {
        let api = self.api();
        for _ in 0..CAS_ATTEMPTS {
            let mut image = api.get(&self.name).await?;
            if image.metadata.uid.as_deref() != Some(self.uid.as_str()) {
                return Err(conflict(format!(
                    "image {:?} was replaced while the upload started; retry",
                    self.name
                )));
            }
            check_uploadable(&image)?;
            if image.status.phase == Some(ImagePhase::Saving) {
                tracing::warn!(project = %self.project, image = %self.name, "taking over a stale upload");
            }
            image.status.phase = Some(ImagePhase::Saving);
            set_condition(
                &mut image,
                ConditionStatus::False,
                "Saving",
                "image data is being uploaded",
            );
            match api.replace_status(&image).await {
                Ok(_) => {
                    self.armed = true;
                    return Ok(());
                }
                Err(ObjectError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(busy(&self.name))
    }

    /// Records the stored data: phase `active` and the sums (compare-and-swap).
    async fn mark_active(
        &mut self,
        received: &Received,
        virtual_size: u64,
    ) -> Result<serde_json::Value, ApiError> {
        let api = self.api();
        for _ in 0..CAS_ATTEMPTS {
            let mut image = match api.get(&self.name).await {
                Ok(image) => image,
                Err(e) => {
                    self.armed = false;
                    return Err(e.into());
                }
            };
            if image.metadata.uid.as_deref() != Some(self.uid.as_str()) {
                self.armed = false;
                return Err(conflict(format!(
                    "image {:?} was deleted during the upload",
                    self.name
                )));
            }
            let status = &mut image.status;
            status.phase = Some(ImagePhase::Active);
            status.size = Some(received.size);
            status.virtual_size = Some(virtual_size);
            status.checksum = Some(received.md5.clone());
            status.os_hash_algo = Some("sha256".into());
            status.os_hash_value = Some(received.sha256.clone());
            status.location = Some(format!("sha256/{}", received.sha256));
            set_condition(
                &mut image,
                ConditionStatus::True,
                "Active",
                "image data is stored",
            );
            match api.replace_status(&image).await {
                Ok(stored) => {
                    self.armed = false;
                    return Ok(serde_json::to_value(stored).expect("images serialize"));
                }
                Err(ObjectError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(format!(
            "image {:?} kept changing while its upload was recorded; retry",
            self.name
        )))
    }

    /// Ends a failed upload: removes the partial file, sets the failure's phase, then releases
    /// the lock. Returns the error to answer with.
    async fn fail(mut self, failure: Failure) -> ApiError {
        self.armed = false;
        let lock = self.lock.take();
        if let Some(lock) = &lock {
            lock.remove_partial();
        }
        revert(
            self.api(),
            &self.name,
            &self.uid,
            failure.phase,
            failure.reason,
            &failure.message,
        )
        .await;
        drop(lock);
        *failure.error
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let Some(lock) = self.lock.take() else {
            return;
        };
        lock.remove_partial();
        if !self.armed {
            return;
        }
        let api = self.api();
        let (name, uid) = (self.name.clone(), self.uid.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            revert(
                api,
                &name,
                &uid,
                ImagePhase::Queued,
                "UploadFailed",
                "the upload was aborted",
            )
            .await;
            drop(lock);
        });
    }
}

/// Puts a `saving` image (still the one with `uid`) into `phase` with a `Ready=False`
/// condition. Best effort: if the store cannot be written, the next upload takes the stale
/// `saving` over.
async fn revert(
    api: Api<Image>,
    name: &str,
    uid: &str,
    phase: ImagePhase,
    reason: &str,
    message: &str,
) {
    for _ in 0..CAS_ATTEMPTS {
        let mut image = match api.get(name).await {
            Ok(image) => image,
            Err(ObjectError::NotFound { .. }) => return,
            Err(e) => {
                tracing::warn!(image = %name, error = %e, "cannot reset the phase of a failed upload");
                return;
            }
        };
        if image.metadata.uid.as_deref() != Some(uid)
            || image.status.phase != Some(ImagePhase::Saving)
        {
            return;
        }
        image.status.phase = Some(phase);
        set_condition(&mut image, ConditionStatus::False, reason, message);
        match api.replace_status(&image).await {
            Ok(_) => return,
            Err(ObjectError::Conflict { .. }) => continue,
            Err(e) => {
                tracing::warn!(image = %name, error = %e, "cannot reset the phase of a failed upload");
                return;
            }
        }
    }
}

/// Sets the `Ready` condition, keeping its transition time when the status does not change.
fn set_condition(image: &mut Image, status: ConditionStatus, reason: &str, message: &str) {
    let generation = image.metadata.generation;
    let conditions = &mut image.status.conditions;
    let now = chrono::Utc::now();
    match conditions.iter_mut().find(|c| c.type_ == "Ready") {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(now);
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message.to_string();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: "Ready".into(),
            status,
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: Some(now),
            observed_generation: generation,
        }),
    }
}

fn images_kind() -> &'static cirrus_crds::KindInfo {
    cirrus_crds::Image::info()
}

#[cfg(test)]
mod tests;
