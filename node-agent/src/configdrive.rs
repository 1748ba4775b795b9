//! Config drives: the ISO9660 image (volume label `config-2`) carrying a server's metadata
//! files for guests without a metadata service (cloud-init's ConfigDrive source).
//!
//! The files come from the API (`GET .../projects/{p}/servers/{name}/configdrive`, a JSON
//! object path → base64, rendered by the same code as the metadata service); this module
//! fetches them ([`fetch_files`]) and builds the image with `genisoimage` ([`build_iso`]),
//! writing it atomically so a half-built image is never attached.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The volume label cloud-init looks for.
pub const VOLUME_LABEL: &str = "config-2";

/// Why a config drive could not be built or fetched.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    /// A file path is absolute or leaves the drive (`..`).
    #[error("config drive path {0:?} is not a relative path inside the drive")]
    BadPath(String),
    /// Staging files or writing the image failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `genisoimage` failed.
    #[error("genisoimage failed ({status}): {stderr}")]
    Genisoimage {
        /// Exit status.
        status: String,
        /// What it printed.
        stderr: String,
    },
    /// The API did not return the files.
    #[error("cannot fetch the config drive files from {url}: {detail}")]
    Fetch {
        /// The URL asked.
        url: String,
        /// What went wrong.
        detail: String,
    },
}

/// Result of config drive operations.
pub type Result<T> = std::result::Result<T, ConfigDriveError>;

fn check_path(path: &str) -> Result<&Path> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && p.components().next().is_some();
    if ok {
        Ok(p)
    } else {
        Err(ConfigDriveError::BadPath(path.to_string()))
    }
}

/// Builds the config drive image at `output` from `files` (path inside the drive →
/// content). The image is built next to `output` and renamed into place.
#[tracing::instrument(skip(files), fields(files = files.len()))]
pub fn build_iso(files: &BTreeMap<String, Vec<u8>>, output: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigDriveError::Io { path, source }
    };
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".configdrive-")
        .tempdir_in(parent)
        .map_err(io(parent))?;
    let root = staging.path().join("root");
    for (path, content) in files {
        let target = root.join(check_path(path)?);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::write(&target, content).map_err(io(&target))?;
    }
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let image = staging.path().join("config.iso");
    let result = Command::new("genisoimage")
        .arg("-o")
        .arg(&image)
        .args([
            "-V",
            VOLUME_LABEL,
            "-r",
            "-J",
            "-quiet",
            "-input-charset",
            "utf-8",
        ])
        .arg(&root)
        .output()
        .map_err(io(Path::new("genisoimage")))?;
    if !result.status.success() {
        return Err(ConfigDriveError::Genisoimage {
            status: result.status.to_string(),
            stderr: String::from_utf8_lossy(&result.stderr).trim().to_string(),
        });
    }
    std::fs::rename(&image, output).map_err(io(output))?;
    Ok(())
}

/// Decodes the API's answer (a JSON object path → base64 content).
pub fn decode_files(
    value: &serde_json::Value,
) -> std::result::Result<BTreeMap<String, Vec<u8>>, String> {
    let object = value
        .as_object()
        .ok_or_else(|| "the answer is not a JSON object".to_string())?;
    object
        .iter()
        .map(|(path, content)| {
            let text = content
                .as_str()
                .ok_or_else(|| format!("{path}: not a string"))?;
            let bytes = STANDARD
                .decode(text)
                .map_err(|e| format!("{path}: not base64: {e}"))?;
            check_path(path).map_err(|e| e.to_string())?;
            Ok((path.clone(), bytes))
        })
        .collect()
}

/// Fetches the config drive files of server `name` in `project` through `client` (with its
/// node token).
pub async fn fetch_files(
    client: &cirrus_client::Client,
    project: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let segments = [
        "apis",
        "cirrus.dev",
        "v1",
        "projects",
        project,
        "servers",
        name,
        "configdrive",
    ];
    let url = client.url(&segments).map_err(|e| ConfigDriveError::Fetch {
        url: segments.join("/"),
        detail: e.to_string(),
    })?;
    let fail = |detail: String| ConfigDriveError::Fetch {
        url: url.clone(),
        detail,
    };
    let (request, _) = client
        .request(reqwest::Method::GET, &url)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let response = request.send().await.map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(fail(format!("{status}: {body}")));
    }
    let value: serde_json::Value = response.json().await.map_err(|e| fail(e.to_string()))?;
    decode_files(&value).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isoinfo(args: &[&str]) -> String {
        let out = Command::new("isoinfo")
            .args(args)
            .output()
            .expect("isoinfo runs");
        assert!(out.status.success(), "isoinfo {args:?}: {:?}", out);
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn builds_a_config_2_image_with_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("disk.config");
        let files = BTreeMap::from([
            (
                "openstack/latest/meta_data.json".to_string(),
                br#"{"uuid":"u-1","name":"web-0"}"#.to_vec(),
            ),
            (
                "openstack/latest/user_data".to_string(),
                b"#!/bin/sh\necho hi\n".to_vec(),
            ),
            (
                "openstack/latest/network_data.json".to_string(),
                b"{}".to_vec(),
            ),
            (
                "openstack/latest/vendor_data.json".to_string(),
                b"{}".to_vec(),
            ),
            ("ec2/latest/meta-data.json".to_string(), b"{}".to_vec()),
        ]);
        build_iso(&files, &output).unwrap();
        let image = output.to_str().unwrap();
        let info = isoinfo(&["-d", "-i", image]);
        assert!(info.contains("Volume id: config-2"), "{info}");
        let meta = isoinfo(&["-R", "-i", image, "-x", "/openstack/latest/meta_data.json"]);
        assert_eq!(meta, r#"{"uuid":"u-1","name":"web-0"}"#);
        let user = isoinfo(&["-R", "-i", image, "-x", "/openstack/latest/user_data"]);
        assert_eq!(user, "#!/bin/sh\necho hi\n");
        let listing = isoinfo(&["-R", "-f", "-i", image]);
        assert!(listing.contains("/ec2/latest/meta-data.json"), "{listing}");
        // Nothing but the image is left next to it.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn paths_outside_the_drive_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../etc/passwd", "/etc/passwd", "", "a/../../b"] {
            let files = BTreeMap::from([(bad.to_string(), b"x".to_vec())]);
            let err = build_iso(&files, &dir.path().join("d.iso")).unwrap_err();
            assert!(matches!(err, ConfigDriveError::BadPath(_)), "{bad}: {err}");
        }
        assert!(!dir.path().join("d.iso").exists());
    }

    #[test]
    fn decodes_the_apis_answer() {
        let value = serde_json::json!({"openstack/latest/user_data": STANDARD.encode("hi")});
        let files = decode_files(&value).unwrap();
        assert_eq!(files["openstack/latest/user_data"], b"hi");
        assert!(decode_files(&serde_json::json!({"../x": "aGk="})).is_err());
        assert!(decode_files(&serde_json::json!({"x": "***"})).is_err());
    }
}
