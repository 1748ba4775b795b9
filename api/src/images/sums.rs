//! What an upload measured (size, SHA-256, MD5) and the checksums its client declared in
//! headers, compared: a mismatch is positive evidence of damaged data.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What a finished transfer measured.
pub(super) struct Received {
    pub(super) size: u64,
    pub(super) sha256: String,
    pub(super) md5: String,
}

/// Checksums the client declared in request headers.
#[derive(Default)]
pub(super) struct ExpectedSums {
    sha256: Option<String>,
    md5: Option<String>,
}

impl ExpectedSums {
    /// The sums `headers` declare (`X-Checksum-Sha256`, `Content-MD5`), or a `400` saying
    /// which is malformed.
    pub(super) fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let get = |name: &str| {
            headers
                .get(name)
                .map(|v| {
                    v.to_str()
                        .map(|s| s.trim().to_ascii_lowercase())
                        .map_err(|_| ApiError::bad_request(format!("{name} is not ASCII")))
                })
                .transpose()
        };
        let sha256 = get(CHECKSUM_SHA256_HEADER)?;
        if let Some(sum) = &sha256
            && !crate::blobs::is_sha256_hex(sum)
        {
            return Err(ApiError::bad_request(format!(
                "{CHECKSUM_SHA256_HEADER} must be 64 hex digits, got {sum:?}"
            )));
        }
        let md5 = match headers.get("content-md5") {
            None => None,
            Some(v) => Some(parse_md5(v.to_str().unwrap_or_default()).ok_or_else(|| {
                ApiError::bad_request(
                    "Content-MD5 must be the MD5 of the data as 32 hex digits or 24 base64 characters",
                )
            })?),
        };
        Ok(Self { sha256, md5 })
    }

    /// `Ok` when `received` matches every declared sum; else the failure that kills the
    /// image (the data is damaged).
    pub(super) fn check(&self, received: &Received) -> Result<(), Failure> {
        for (header, expected, got) in [
            (CHECKSUM_SHA256_HEADER, &self.sha256, &received.sha256),
            ("Content-MD5", &self.md5, &received.md5),
        ] {
            if let Some(expected) = expected
                && expected != got
            {
                return Err(Failure {
                    error: Box::new(ApiError::bad_request(format!(
                        "the data received does not match {header}: expected {expected}, got {got}; the image is now killed"
                    ))),
                    phase: ImagePhase::Killed,
                    reason: "DataCorrupt",
                    message: format!("uploaded data does not match {header} ({expected})"),
                });
            }
        }
        Ok(())
    }
}

/// Content-MD5 as hex (Glance) or base64 (RFC 1864), as lowercase hex.
pub(super) fn parse_md5(value: &str) -> Option<String> {
    let value = value.trim();
    if value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(value.to_ascii_lowercase());
    }
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    (bytes.len() == 16).then(|| hex(&bytes))
}

/// `bytes` as lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
