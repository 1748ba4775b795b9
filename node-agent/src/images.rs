//! The per-node image cache: `<state-dir>/images/<sha256>`, each image downloaded once
//! through the API.
//!
//! # Guarantees
//! - A cached file is complete and verified: data is streamed to `<sha256>.part`, hashed on
//!   the way, checked against the Image's `status.osHashValue`, fsynced and renamed atomically
//!   (then the directory is fsynced). A crash leaves at most a `.part` file, which the next
//!   download overwrites.
//! - Concurrent [`ImageCache::ensure`] calls for the same digest wait for one download (a
//!   per-digest async mutex); different digests download in parallel.
//! - Files are content-addressed, so images with identical bytes share one file and a renamed
//!   or re-created Image with the same data is not downloaded again.
//! - A cached file is verified bytes, not a verified format: the cache is content-addressed,
//!   so one file may serve images declaring different `spec.diskFormat`s. Every consumer
//!   inspects it against the format it declares before making a disk or volume of it
//!   ([`crate::image_inspect`]).
//!
//! # Caveats
//! Nothing is evicted yet: the cache grows with every distinct image used on the node.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cirrus_client::{Client, ClientError};
use cirrus_crds::Image;
use cirrus_crds::kinds::image::ImagePhase;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Why an image could not be cached.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The API refused or could not be reached (retry).
    #[error("API request for image {image} failed")]
    Api {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// The image is not `active` (no data yet, or it is being uploaded).
    #[error("image {image} is not active (phase {phase})")]
    NotActive {
        /// The image.
        image: String,
        /// Its phase.
        phase: String,
    },
    /// The image has no `status.osHashValue` (sha256) to verify a download against.
    #[error("image {image} has no sha256 checksum (status.osHashValue)")]
    NoChecksum {
        /// The image.
        image: String,
    },
    /// The download failed on the way (connection, HTTP status): retry.
    #[error("downloading image {image} failed: {reason}")]
    Download {
        /// The image.
        image: String,
        /// What failed.
        reason: String,
    },
    /// The downloaded bytes do not hash to the recorded sha256 (retry; the partial file is
    /// removed).
    #[error("downloaded data of image {image} has sha256 {actual}, expected {expected}")]
    ChecksumMismatch {
        /// The image.
        image: String,
        /// The recorded digest.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// Local file I/O failed.
    #[error("cache file {path} could not be written")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// Positive evidence the image cannot be used as it stands (not a transient failure):
    /// it is killed, deactivated or deleted.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ImageError::NotActive { phase, .. }
            if matches!(phase.as_str(), "killed" | "deactivated" | "deleted" | "pending_delete"))
    }
}

fn phase_name(phase: Option<ImagePhase>) -> String {
    phase
        .and_then(|p| serde_json::to_value(p).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "queued".into())
}

/// Whether `s` is a lowercase hex SHA-256 digest.
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub use cirrus_client::find_image;

/// The node's image cache.
#[derive(Debug)]
pub struct ImageCache {
    client: Client,
    dir: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    downloads: std::sync::atomic::AtomicU64,
}

impl ImageCache {
    /// A cache in `dir` (`<state-dir>/images`), downloading through `client`.
    pub fn new(client: Client, dir: impl Into<PathBuf>) -> Self {
        Self {
            client,
            dir: dir.into(),
            locks: Mutex::new(HashMap::new()),
            downloads: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many downloads completed since this cache was made.
    pub fn downloads(&self) -> u64 {
        self.downloads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the image with this sha256 is (or would be) cached.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    fn lock_for(&self, sha256: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sha256.to_string())
            .or_default()
            .clone()
    }

    /// Makes sure `image`'s data is in the cache and returns its path.
    ///
    /// # Errors
    /// [`ImageError::NotActive`] / [`ImageError::NoChecksum`] when the image has no usable
    /// data; download, checksum and I/O failures (all retryable).
    pub async fn ensure(&self, image: &Image) -> Result<PathBuf, ImageError> {
        let label = format!(
            "{}/{}",
            image.metadata.project.as_deref().unwrap_or(""),
            image.metadata.name
        );
        if image.status.phase != Some(ImagePhase::Active) {
            return Err(ImageError::NotActive {
                image: label,
                phase: phase_name(image.status.phase),
            });
        }
        let sha = match image.status.os_hash_value.as_deref() {
            Some(sha)
                if is_sha256_hex(sha)
                    && image.status.os_hash_algo.as_deref().unwrap_or("sha256") == "sha256" =>
            {
                sha.to_string()
            }
            _ => return Err(ImageError::NoChecksum { image: label }),
        };
        let path = self.path_of(&sha);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let lock = self.lock_for(&sha);
        let _guard = lock.lock().await;
        // Someone else may have finished while we waited.
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        self.download(image, &label, &sha, &path).await?;
        self.downloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(path)
    }

    async fn download(
        &self,
        image: &Image,
        label: &str,
        sha: &str,
        path: &Path,
    ) -> Result<(), ImageError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| ImageError::Io { path: p, source }
        };
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(io(&self.dir))?;
        let project = image.metadata.project.as_deref().unwrap_or_default();
        let failed = |reason: String| ImageError::Download {
            image: label.to_string(),
            reason,
        };
        let url = self
            .client
            .url(&[
                "apis",
                "cirrus.dev",
                "v1",
                "projects",
                project,
                "images",
                &image.metadata.name,
                "file",
            ])
            .map_err(|e| failed(e.to_string()))?;
        let (request, _) = self
            .client
            .request(reqwest::Method::GET, &url)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let response = request.send().await.map_err(|e| failed(e.to_string()))?;
        if response.status().as_u16() != 200 {
            return Err(failed(format!("GET {url} answered {}", response.status())));
        }
        if let Some(header) = response
            .headers()
            .get("x-checksum-sha256")
            .and_then(|v| v.to_str().ok())
            && header != sha
        {
            // The image's data changed under us (or the status is stale): try again later.
            return Err(failed(format!(
                "server sent data with sha256 {header}, the image records {sha}"
            )));
        }
        tracing::info!(image = %label, %sha, "downloading image into the node cache");
        let part = self.dir.join(format!("{sha}.part"));
        let mut file = tokio::fs::File::create(&part).await.map_err(io(&part))?;
        let mut hasher = Sha256::new();
        let mut stream = response.bytes_stream();
        let result: Result<(), ImageError> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| failed(e.to_string()))?;
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(io(&part))?;
            }
            file.flush().await.map_err(io(&part))?;
            file.sync_all().await.map_err(io(&part))?;
            let actual = hex(&hasher.finalize());
            if actual != sha {
                return Err(ImageError::ChecksumMismatch {
                    image: label.to_string(),
                    expected: sha.to_string(),
                    actual,
                });
            }
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
        set_readable(&part).map_err(io(&part))?;
        tokio::fs::rename(&part, path).await.map_err(io(path))?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(io(&self.dir))?;
        Ok(())
    }
}

/// Cached images are read by QEMU, which may run as another user (libvirt-qemu).
fn set_readable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_digest_shape() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert!(is_sha256_hex(&"a".repeat(64)));
        assert!(!is_sha256_hex(&"A".repeat(64)));
        assert!(!is_sha256_hex("abc"));
    }

    #[test]
    fn permanent_only_on_positive_evidence() {
        let e = |phase: &str| ImageError::NotActive {
            image: "p/i".into(),
            phase: phase.into(),
        };
        assert!(e("killed").is_permanent());
        assert!(!e("saving").is_permanent());
        assert!(!e("queued").is_permanent());
        assert_eq!(
            phase_name(Some(ImagePhase::PendingDelete)),
            "pending_delete"
        );
    }
}
