//! Checking that uploaded image data is what its `spec.diskFormat` says, with
//! `qemu-img info -f <declared format> --output=json`.
//!
//! The parsing of qemu-img's answer is a pure function ([`check_info`]) so the rules are unit
//! tested on JSON samples; [`Inspector`] runs the tool (under `prlimit` when available, with a
//! timeout) and feeds it.
//!
//! Rules:
//! - `-f` is always passed, so qemu-img never probes the format: a file it cannot open as the
//!   declared format is refused.
//! - A second detection, ours, runs first on the data's head ([`detect_container`]: the magic
//!   numbers of qcow2, qcow, qed, vmdk (binary and text descriptor), vdi, vhd, vhdx,
//!   parallels, luks, bochs, cloop): data that is a container format other than the declared
//!   one is refused ([`FormatError::Mismatch`]) before qemu-img is run. `raw` would accept any
//!   bytes, so without it a qcow2 declared `raw` (say one whose backing file is the token key)
//!   would be stored, and opened as qcow2 by anything that later trusts another format than
//!   the declared one (a format switch, a lax consumer) — the OSSA-2024-001 class of attack.
//!   The node agent inspects every image again itself before use.
//! - A backing file (`backing-filename`) or an external data file (`format-specific.data.data-file`)
//!   is refused in every format: opening such an image would read a host file of the
//!   uploader's choosing (the classic image-upload attack).
//! - `vmdk` is accepted only as a single-file `monolithicSparse` or `streamOptimized` disk
//!   (the other create types name extent files), as Nova's `vmdk_allowed_types`.
//! - `iso` is checked with `-f raw` plus the ISO 9660 signature `CD001` at byte 32769.
//! - `aki`/`ari` (kernel and ramdisk) are not given to qemu-img; only the container check
//!   above applies to them (a kernel or an initramfs is no disk container).
//! - A qcow2 whose header says `corrupt: true` is refused as [`FormatError::Corrupt`]: the only
//!   case that is positive evidence the data itself is damaged.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cirrus_crds::kinds::image::DiskFormat;
use serde_json::Value;

/// Byte offset of the ISO 9660 primary volume descriptor's standard identifier.
pub const ISO9660_MAGIC_OFFSET: u64 = 32769;
/// The ISO 9660 standard identifier.
pub const ISO9660_MAGIC: &[u8; 5] = b"CD001";
/// How many bytes of the data's head [`detect_container`] is given.
pub const HEADER_BYTES: usize = 64 * 1024;

/// What inspecting valid image data found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// Size of the disk the image expands to, in bytes.
    pub virtual_size: u64,
}

/// Why image data does not match its declared format, or is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// qemu-img could not open the data as the declared format.
    #[error("the data is not a valid {declared} image: {detail}")]
    WrongFormat {
        /// The declared `spec.diskFormat` (Cirrus spelling).
        declared: &'static str,
        /// What qemu-img said.
        detail: String,
    },
    /// The data is another container format than the declared one (our own detection).
    #[error(
        "the data is a {detected} image, not {declared}: a format mismatch is refused (opened as {detected} it could read other files)"
    )]
    Mismatch {
        /// The declared format.
        declared: &'static str,
        /// What the data's header is (qemu-img driver name).
        detected: &'static str,
    },
    /// The image names a backing file.
    #[error(
        "a {declared} image with a backing file ({backing:?}) is refused: image data must be self-contained"
    )]
    BackingFile {
        /// The declared format.
        declared: &'static str,
        /// The backing file it names.
        backing: String,
    },
    /// The image names an external data file.
    #[error(
        "a {declared} image with an external data file ({data_file:?}) is refused: image data must be self-contained"
    )]
    DataFile {
        /// The declared format.
        declared: &'static str,
        /// The data file it names.
        data_file: String,
    },
    /// A vmdk of a create type that references other files.
    #[error(
        "vmdk create type {create_type:?} is refused: only monolithicSparse and streamOptimized are accepted"
    )]
    VmdkType {
        /// The create type qemu-img reported.
        create_type: String,
    },
    /// An ISO declared image without the ISO 9660 signature.
    #[error("the data is not an ISO 9660 image: no \"CD001\" signature at byte 32769")]
    NotIso,
    /// The image's own metadata says it is corrupt.
    #[error("the {declared} image is marked corrupt")]
    Corrupt {
        /// The declared format.
        declared: &'static str,
    },
    /// qemu-img answered something that could not be understood.
    #[error("cannot understand qemu-img's answer: {0}")]
    Unparseable(String),
}

impl FormatError {
    /// True only when the data itself is positively known to be damaged (the image becomes
    /// `killed`); every other refusal leaves the image `queued` for another upload.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Self::Corrupt { .. })
    }
}

/// Why inspection could not be done at all (not the data's fault).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The data is refused.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// `qemu-img` is not installed.
    #[error("qemu-img is not installed (looked for {0:?}): image data cannot be checked")]
    Missing(PathBuf),
    /// qemu-img did not answer in time.
    #[error("qemu-img info did not finish within {0:?}")]
    Timeout(Duration),
    /// Running qemu-img or reading the file failed.
    #[error("inspecting the image failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Cirrus's name of a disk format, as in `spec.diskFormat`.
pub fn format_name(format: DiskFormat) -> &'static str {
    match format {
        DiskFormat::Qcow2 => "qcow2",
        DiskFormat::Raw => "raw",
        DiskFormat::Iso => "iso",
        DiskFormat::Vmdk => "vmdk",
        DiskFormat::Vdi => "vdi",
        DiskFormat::Vhd => "vhd",
        DiskFormat::Vhdx => "vhdx",
        DiskFormat::Ploop => "ploop",
        DiskFormat::Ami => "ami",
        DiskFormat::Ari => "ari",
        DiskFormat::Aki => "aki",
    }
}

/// The qemu-img driver name (`-f`) that checks `format`, or `None` for formats stored without
/// inspection (`aki`, `ari`).
pub fn qemu_format(format: DiskFormat) -> Option<&'static str> {
    match format {
        DiskFormat::Qcow2 => Some("qcow2"),
        DiskFormat::Raw | DiskFormat::Iso | DiskFormat::Ami => Some("raw"),
        DiskFormat::Vmdk => Some("vmdk"),
        DiskFormat::Vdi => Some("vdi"),
        DiskFormat::Vhd => Some("vpc"),
        DiskFormat::Vhdx => Some("vhdx"),
        DiskFormat::Ploop => Some("parallels"),
        DiskFormat::Aki | DiskFormat::Ari => None,
    }
}

/// The container format (qemu-img driver name) the data's head `h` is, by magic number;
/// `None` for bytes no container format claims (a raw disk, an ISO, a kernel). The one
/// detector the node agent's inspection uses too ([`cirrus_crds::image_magic`]).
pub use cirrus_crds::image_magic::container_format as detect_container;

/// The container a declared format's data must be, if any (`None`: no container, the data
/// must not be one).
fn expected_container(declared: DiskFormat) -> Option<&'static str> {
    match declared {
        DiskFormat::Qcow2 => Some("qcow2"),
        DiskFormat::Vmdk => Some("vmdk"),
        DiskFormat::Vdi => Some("vdi"),
        DiskFormat::Vhd => Some("vpc"),
        DiskFormat::Vhdx => Some("vhdx"),
        DiskFormat::Ploop => Some("parallels"),
        DiskFormat::Raw | DiskFormat::Iso | DiskFormat::Ami | DiskFormat::Aki | DiskFormat::Ari => {
            None
        }
    }
}

/// Checks the data's head (up to [`HEADER_BYTES`]) against `declared`: data that is another
/// container format than the declared one — qcow2 declared `raw`, say — is
/// [`FormatError::Mismatch`].
pub fn check_header(declared: DiskFormat, header: &[u8]) -> Result<(), FormatError> {
    match detect_container(header) {
        Some(detected) if Some(detected) != expected_container(declared) => {
            Err(FormatError::Mismatch {
                declared: format_name(declared),
                detected,
            })
        }
        _ => Ok(()),
    }
}

/// Checks the JSON printed by `qemu-img info -f <qemu_format(declared)> --output=json`.
pub fn check_info(declared: DiskFormat, json: &str) -> Result<Inspection, FormatError> {
    let name = format_name(declared);
    let info: Value =
        serde_json::from_str(json).map_err(|e| FormatError::Unparseable(e.to_string()))?;
    let expected = qemu_format(declared).unwrap_or("raw");
    let found = info
        .get("format")
        .and_then(Value::as_str)
        .ok_or_else(|| FormatError::Unparseable("no \"format\" in qemu-img info output".into()))?;
    if found != expected {
        return Err(FormatError::WrongFormat {
            declared: name,
            detail: format!("qemu-img reports format {found:?}"),
        });
    }
    for key in ["backing-filename", "full-backing-filename"] {
        if let Some(backing) = info.get(key).and_then(Value::as_str) {
            return Err(FormatError::BackingFile {
                declared: name,
                backing: backing.to_string(),
            });
        }
    }
    let data = info.pointer("/format-specific/data");
    if let Some(data_file) = data
        .and_then(|d| d.get("data-file"))
        .and_then(Value::as_str)
    {
        return Err(FormatError::DataFile {
            declared: name,
            data_file: data_file.to_string(),
        });
    }
    if data.and_then(|d| d.get("corrupt")).and_then(Value::as_bool) == Some(true) {
        return Err(FormatError::Corrupt { declared: name });
    }
    if declared == DiskFormat::Vmdk {
        let create_type = data
            .and_then(|d| d.get("create-type"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !matches!(create_type, "monolithicSparse" | "streamOptimized") {
            return Err(FormatError::VmdkType {
                create_type: create_type.to_string(),
            });
        }
    }
    let virtual_size = info
        .get("virtual-size")
        .and_then(Value::as_u64)
        .ok_or_else(|| FormatError::Unparseable("no \"virtual-size\" in qemu-img info".into()))?;
    Ok(Inspection { virtual_size })
}

/// Whether `header_at_32769` (the 5 bytes at [`ISO9660_MAGIC_OFFSET`]) is the ISO 9660 signature.
pub fn is_iso9660(header_at_32769: &[u8]) -> bool {
    header_at_32769.starts_with(ISO9660_MAGIC)
}

/// Runs `qemu-img info` on uploaded data.
#[derive(Clone, Debug)]
pub struct Inspector {
    /// The qemu-img program (a name looked up in `PATH`, or a path).
    pub qemu_img: PathBuf,
    /// How long one `qemu-img info` may take before it is killed.
    pub timeout: Duration,
}

impl Default for Inspector {
    fn default() -> Self {
        Self {
            qemu_img: PathBuf::from("qemu-img"),
            timeout: Duration::from_secs(60),
        }
    }
}

impl Inspector {
    /// The resolved qemu-img executable, or [`InspectError::Missing`].
    pub fn qemu_img_path(&self) -> Result<PathBuf, InspectError> {
        find_program(&self.qemu_img).ok_or_else(|| InspectError::Missing(self.qemu_img.clone()))
    }

    /// Whether inspecting `format` needs qemu-img, and it is missing: checked before an upload
    /// starts so a client is not made to send gigabytes first.
    pub fn ensure_available(&self, format: DiskFormat) -> Result<(), InspectError> {
        if qemu_format(format).is_some() {
            self.qemu_img_path()?;
        }
        Ok(())
    }

    /// Checks the file at `path` against `declared`; `size` is its length (the virtual size of
    /// formats qemu-img is not asked about). The container check ([`check_header`]) runs
    /// first, so data that is not what it claims never reaches qemu-img.
    pub async fn inspect(
        &self,
        declared: DiskFormat,
        path: &Path,
        size: u64,
    ) -> Result<Inspection, InspectError> {
        check_header(declared, &read_head(path, HEADER_BYTES).await?)?;
        let Some(driver) = qemu_format(declared) else {
            return Ok(Inspection { virtual_size: size });
        };
        let qemu_img = self.qemu_img_path()?;
        // Resource limits as Nova uses for untrusted images: 1 GiB of address space, 30 s CPU.
        let mut command = match find_program(Path::new("prlimit")) {
            Some(prlimit) => {
                let mut c = tokio::process::Command::new(prlimit);
                c.arg("--as=1073741824").arg("--cpu=30").arg(&qemu_img);
                c
            }
            None => tokio::process::Command::new(&qemu_img),
        };
        command
            .arg("info")
            .arg("-f")
            .arg(driver)
            .arg("--output=json")
            .arg(path)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = tokio::time::timeout(self.timeout, command.output())
            .await
            .map_err(|_| InspectError::Timeout(self.timeout))??;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let detail = stderr
                .trim()
                .replace(&path.display().to_string(), "<data>")
                .replace(&qemu_img.display().to_string(), "qemu-img");
            return Err(FormatError::WrongFormat {
                declared: format_name(declared),
                detail: if detail.is_empty() {
                    format!("qemu-img info failed ({})", output.status)
                } else {
                    detail
                },
            }
            .into());
        }
        let inspection = check_info(declared, &String::from_utf8_lossy(&output.stdout))?;
        if declared == DiskFormat::Iso {
            let mut header = [0u8; 5];
            if !read_at(path, ISO9660_MAGIC_OFFSET, &mut header).await? || !is_iso9660(&header) {
                return Err(FormatError::NotIso.into());
            }
        }
        Ok(inspection)
    }
}

/// Reads up to `max` bytes from the start of the file.
async fn read_head(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await?;
    let mut head = Vec::with_capacity(max);
    file.take(max as u64).read_to_end(&mut head).await?;
    Ok(head)
}

/// Reads exactly `buf.len()` bytes at `offset`; `false` when the file is shorter.
async fn read_at(path: &Path, offset: u64, buf: &mut [u8]) -> std::io::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    if file.metadata().await?.len() < offset + buf.len() as u64 {
        return Ok(false);
    }
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    file.read_exact(buf).await?;
    Ok(true)
}

/// Resolves `program` like a shell: a path with a `/` as is, a bare name through `PATH`.
fn find_program(program: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 || program.is_absolute() {
        return executable(program).then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QCOW2: &str = r#"{
        "children": [{"name": "file", "info": {"format": "file", "virtual-size": 197120}}],
        "virtual-size": 10485760, "filename": "x.qcow2", "cluster-size": 65536,
        "format": "qcow2", "actual-size": 200704,
        "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "compression-type": "zlib",
            "lazy-refcounts": false, "refcount-bits": 16, "corrupt": false, "extended-l2": false}},
        "dirty-flag": false}"#;

    const QCOW2_BACKING: &str = r#"{
        "backing-filename-format": "qcow2", "virtual-size": 10485760, "filename": "over.qcow2",
        "cluster-size": 65536, "format": "qcow2", "actual-size": 200704,
        "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "corrupt": false}},
        "full-backing-filename": "/etc/shadow", "backing-filename": "/etc/shadow",
        "dirty-flag": false}"#;

    const QCOW2_DATA_FILE: &str = r#"{
        "virtual-size": 1048576, "filename": "ext.qcow2", "format": "qcow2",
        "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "data-file": "/dev/sda",
            "data-file-raw": false, "corrupt": false}},
        "dirty-flag": false}"#;

    const RAW: &str = r#"{"virtual-size": 197120, "filename": "x", "format": "raw",
        "actual-size": 200704, "dirty-flag": false}"#;

    #[test]
    fn plain_qcow2_is_accepted_with_its_virtual_size() {
        assert_eq!(
            check_info(DiskFormat::Qcow2, QCOW2),
            Ok(Inspection {
                virtual_size: 10485760
            })
        );
    }

    #[test]
    fn backing_file_is_refused_naming_it() {
        let err = check_info(DiskFormat::Qcow2, QCOW2_BACKING).unwrap_err();
        assert!(
            matches!(&err, FormatError::BackingFile { backing, .. } if backing == "/etc/shadow")
        );
        assert!(err.to_string().contains("backing file"), "{err}");
        assert!(!err.is_corruption());
    }

    #[test]
    fn external_data_file_is_refused() {
        let err = check_info(DiskFormat::Qcow2, QCOW2_DATA_FILE).unwrap_err();
        assert!(matches!(&err, FormatError::DataFile { data_file, .. } if data_file == "/dev/sda"));
        assert!(err.to_string().contains("external data file"), "{err}");
    }

    #[test]
    fn raw_is_raw() {
        assert_eq!(
            check_info(DiskFormat::Raw, RAW),
            Ok(Inspection {
                virtual_size: 197120
            })
        );
        assert!(
            check_info(DiskFormat::Iso, RAW).is_ok(),
            "iso is checked as raw"
        );
    }

    #[test]
    fn format_mismatch_is_refused() {
        let err = check_info(DiskFormat::Qcow2, RAW).unwrap_err();
        assert!(matches!(
            err,
            FormatError::WrongFormat {
                declared: "qcow2",
                ..
            }
        ));
        let err = check_info(DiskFormat::Raw, QCOW2).unwrap_err();
        assert!(matches!(
            err,
            FormatError::WrongFormat {
                declared: "raw",
                ..
            }
        ));
    }

    #[test]
    fn corrupt_flag_is_corruption() {
        let corrupt = QCOW2.replace("\"corrupt\": false", "\"corrupt\": true");
        let err = check_info(DiskFormat::Qcow2, &corrupt).unwrap_err();
        assert_eq!(err, FormatError::Corrupt { declared: "qcow2" });
        assert!(err.is_corruption());
    }

    #[test]
    fn vmdk_only_single_file_types() {
        let vmdk = |t: &str| {
            format!(
                r#"{{"virtual-size": 1048576, "format": "vmdk", "format-specific": {{"type": "vmdk",
                    "data": {{"cid": 1, "parent-cid": 4294967295, "create-type": "{t}",
                    "extents": [{{"filename": "x.vmdk", "format": "SPARSE"}}]}}}}}}"#
            )
        };
        assert!(check_info(DiskFormat::Vmdk, &vmdk("monolithicSparse")).is_ok());
        assert!(check_info(DiskFormat::Vmdk, &vmdk("streamOptimized")).is_ok());
        let err = check_info(DiskFormat::Vmdk, &vmdk("monolithicFlat")).unwrap_err();
        assert!(matches!(err, FormatError::VmdkType { .. }));
    }

    #[test]
    fn garbage_is_unparseable() {
        assert!(matches!(
            check_info(DiskFormat::Qcow2, "not json"),
            Err(FormatError::Unparseable(_))
        ));
        assert!(matches!(
            check_info(DiskFormat::Qcow2, "{}"),
            Err(FormatError::Unparseable(_))
        ));
    }

    #[test]
    fn qemu_driver_names() {
        assert_eq!(qemu_format(DiskFormat::Iso), Some("raw"));
        assert_eq!(qemu_format(DiskFormat::Vhd), Some("vpc"));
        assert_eq!(qemu_format(DiskFormat::Aki), None);
        assert_eq!(qemu_format(DiskFormat::Ari), None);
    }

    /// The head of `qemu-img create -f qcow2 -F raw -b /etc/shadow` (qemu-img 10).
    fn qcow2_head_with_backing() -> Vec<u8> {
        let mut h = vec![0u8; 1024];
        h[0..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[8..16].copy_from_slice(&0x210u64.to_be_bytes());
        h[16..20].copy_from_slice(&11u32.to_be_bytes());
        h[0x210..0x21b].copy_from_slice(b"/etc/shadow");
        h
    }

    #[test]
    fn qcow2_declared_raw_is_a_mismatch() {
        // qemu-img -f raw accepts it (raw is any bytes): only our own detection sees it.
        assert!(check_info(DiskFormat::Raw, RAW).is_ok());
        let err = check_header(DiskFormat::Raw, &qcow2_head_with_backing()).unwrap_err();
        assert_eq!(
            err,
            FormatError::Mismatch {
                declared: "raw",
                detected: "qcow2"
            }
        );
        assert!(err.to_string().contains("qcow2 image, not raw"), "{err}");
        assert!(!err.is_corruption());
        for declared in [
            DiskFormat::Iso,
            DiskFormat::Ami,
            DiskFormat::Aki,
            DiskFormat::Ari,
            DiskFormat::Vmdk,
            DiskFormat::Vhdx,
        ] {
            assert!(
                matches!(
                    check_header(declared, &qcow2_head_with_backing()),
                    Err(FormatError::Mismatch { .. })
                ),
                "{declared:?}"
            );
        }
        assert_eq!(
            check_header(DiskFormat::Qcow2, &qcow2_head_with_backing()),
            Ok(()),
            "declared qcow2: qemu-img then refuses the backing file"
        );
    }

    #[test]
    fn container_magics() {
        let head = |m: &[u8]| {
            let mut h = m.to_vec();
            h.resize(512, 0);
            detect_container(&h)
        };
        assert_eq!(head(b"QFI\xfb\0\0\0\x01"), Some("qcow"));
        assert_eq!(head(b"QFI\xfb\0\0\0\x03"), Some("qcow2"));
        assert_eq!(head(b"KDMV"), Some("vmdk"));
        assert_eq!(head(b"# Disk DescriptorFile\nversion=1\n"), Some("vmdk"));
        assert_eq!(head(b"vhdxfile"), Some("vhdx"));
        assert_eq!(head(b"conectix"), Some("vpc"));
        assert_eq!(head(b"QED\0"), Some("qed"));
        assert_eq!(head(b"LUKS\xba\xbe"), Some("luks"));
        let mut vdi = vec![0u8; 128];
        vdi[64..68].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
        assert_eq!(detect_container(&vdi), Some("vdi"));
        assert_eq!(head(b""), None);
        assert_eq!(head(b"\x7fELF"), None);
        let raw: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(detect_container(&raw), None);
        assert_eq!(check_header(DiskFormat::Raw, &raw), Ok(()));
        assert_eq!(check_header(DiskFormat::Vhd, b"conectix"), Ok(()));
        assert_eq!(check_header(DiskFormat::Ploop, b"WithoutFreeSpace"), Ok(()));
    }

    #[test]
    fn iso_signature() {
        assert!(is_iso9660(b"CD001"));
        assert!(!is_iso9660(b"CD00"));
        assert!(!is_iso9660(b"\0\0\0\0\0"));
    }
}
