//! The node agent's own image format inspector (Nova's and Glance's `format_inspector`, after
//! OSSA-2024-001): every image and volume source is checked here before the agent creates a
//! disk on it or converts it, whatever the API said at upload.
//!
//! # Why
//! A qcow2 (or vmdk, ...) can name other files: a backing file, an external data file, vmdk
//! extents. Opened as that format, such an image reads a host file of the uploader's choosing
//! (the node's token key, `/etc/shadow`) into the tenant's disk. The bytes are only safe when
//! they are opened as the format they really are *and* that format names no other file. So
//! the agent never trusts `spec.diskFormat` (a format switch after upload, a stale or lying
//! spec) and never lets `qemu-img` probe a format.
//!
//! # Rules ([`inspect`], pure parts [`check_header`] and [`check_info`], both [`decide`])
//! 1. The declared format must be one of [`FORMATS`] (`qemu-img` names); anything else is
//!    [`Refusal::UnknownFormat`] before the file is even opened.
//! 2. **Second detection**, ours: the first [`HEADER_BYTES`] are matched against the magic
//!    numbers of every container format `qemu-img` could otherwise find ([`detect`]: qcow2,
//!    qcow, qed, vmdk (binary and text descriptor), vdi, vhd, vhdx, parallels, luks, bochs,
//!    cloop). A recognized format other than the declared one is [`Refusal::Mismatch`] —
//!    in particular qcow2 bytes declared `raw`. A qcow2 header naming a backing file or an
//!    external data file is refused right there, so `qemu-img` never opens such a file.
//! 3. `qemu-img info -U -f <declared> --output=json` (always `-f`: never probing; under
//!    `prlimit --as=1GiB --cpu=30` when it is installed, as Nova runs it): the format it reports
//!    must be the declared one, with no `backing-filename`/`full-backing-filename`/
//!    `backing-filename-format`, no `format-specific.data.data-file`, no child node but its
//!    own `file`, for vmdk only the single-file `monolithicSparse`/`streamOptimized` create
//!    types whose extents are the image itself, and not marked corrupt.
//!
//! A volume file the agent made itself (a qcow2 overlay on a cached image or a snapshot) is
//! checked by [`inspect_volume_file`]: qcow2, no data file, at most one backing file whose
//! format is recorded explicitly, and that backing file passes [`inspect`] as that format.
//!
//! Refusals ([`Refusal`]) are positive evidence about the bytes (the server or volume becomes
//! ERROR with the reason); [`InspectError::Tool`] and [`InspectError::Io`] are not (retried).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The formats an image source may be declared as (`qemu-img` driver names).
pub const FORMATS: &[&str] = &["raw", "qcow2", "vmdk", "vdi", "vpc", "vhdx"];

/// How many bytes of the file's head the second detection reads.
pub const HEADER_BYTES: usize = 64 * 1024;

/// qcow2 incompatible feature bit: the guest data lives in an external data file.
const QCOW2_INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// qcow2 header extension carrying the external data file's name (`"DATA"`).
const QCOW2_EXT_DATA_FILE: u32 = 0x4441_5441;

/// What a clean inspection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The format (`qemu-img` name), the declared one.
    pub format: String,
    /// The size of the disk the image expands to, in bytes.
    pub virtual_size: u64,
}

/// A container format recognized from its header bytes ([`detect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The `qemu-img` driver name of the format the bytes are.
    pub format: &'static str,
    /// For qcow/qcow2: the backing file the header names (its name, or where it is when it
    /// lies beyond the bytes read).
    pub backing: Option<String>,
    /// For qcow2: the external data file the header requires (its name when the header
    /// extension holding it was read, else a description).
    pub data_file: Option<String>,
}

/// Why an image (or volume file) is refused: positive evidence about its bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The declared format is not one the agent makes disks from.
    #[error("disk format {declared:?} is not one of {FORMATS:?}")]
    UnknownFormat {
        /// The declared format.
        declared: String,
    },
    /// The second detection found another container format than the declared one.
    #[error(
        "declared {declared} but the data is a {detected} image: a format mismatch is refused (opened as {detected} it could read host files)"
    )]
    Mismatch {
        /// The declared format.
        declared: String,
        /// What the header bytes are.
        detected: &'static str,
    },
    /// `qemu-img info -f <declared>` reported another format.
    #[error("declared {declared} but qemu-img reports format {reported:?}")]
    WrongFormat {
        /// The declared format.
        declared: String,
        /// What qemu-img reported.
        reported: String,
    },
    /// `qemu-img` could not open the data as the declared format.
    #[error("the data is not a valid {declared} image: {detail}")]
    NotOpenable {
        /// The declared format.
        declared: String,
        /// What qemu-img said.
        detail: String,
    },
    /// The image names a backing file.
    #[error(
        "a {declared} image with a backing file ({backing:?}) is refused: image data must be self-contained"
    )]
    BackingFile {
        /// The declared format.
        declared: String,
        /// The backing file it names.
        backing: String,
    },
    /// The image names an external data file.
    #[error(
        "a {declared} image with an external data file ({data_file:?}) is refused: image data must be self-contained"
    )]
    DataFile {
        /// The declared format.
        declared: String,
        /// The data file it names.
        data_file: String,
    },
    /// Opening the image opens another file (a child node other than its own file, a vmdk
    /// extent elsewhere).
    #[error("a {declared} image that opens another file ({what}: {file:?}) is refused")]
    ExternalFile {
        /// The declared format.
        declared: String,
        /// Which reference (`child data-file`, `vmdk extent`, ...).
        what: String,
        /// The file it names.
        file: String,
    },
    /// A vmdk of a create type that references other files.
    #[error(
        "vmdk create type {create_type:?} is refused: only monolithicSparse and streamOptimized are accepted"
    )]
    VmdkType {
        /// The create type qemu-img reported.
        create_type: String,
    },
    /// The image's own metadata says it is corrupt.
    #[error("the {declared} image is marked corrupt")]
    Corrupt {
        /// The declared format.
        declared: String,
    },
    /// A volume file's backing file has no recorded format (it would be probed).
    #[error("backing file {backing:?} has no recorded format: it would be probed")]
    UnformattedBacking {
        /// The backing file.
        backing: String,
    },
    /// qemu-img answered something that could not be understood.
    #[error("cannot understand qemu-img's answer: {0}")]
    Unparseable(String),
}

/// Why an inspection did not give a verdict, or the verdict.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The data is refused (positive evidence).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// `qemu-img` is missing or could not be run (retry).
    #[error("cannot inspect {path}: {detail}")]
    Tool {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Reading the file failed (retry; `NotFound` when it is absent).
    #[error("cannot read {path} to inspect it")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn be32(h: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_be_bytes(h.get(o..o + 4)?.try_into().ok()?))
}

fn be64(h: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_be_bytes(h.get(o..o + 8)?.try_into().ok()?))
}

/// The name stored at `off..off+len` of `h`, or where it is when that lies beyond `h`.
fn name_at(h: &[u8], off: u64, len: u64) -> String {
    usize::try_from(off)
        .ok()
        .zip(usize::try_from(len).ok())
        .and_then(|(o, l)| h.get(o..o.checked_add(l)?))
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_else(|| format!("a {len}-byte name at byte {off}"))
}

/// The backing file and external data file a qcow/qcow2 header names.
fn qcow_refs(h: &[u8], version: u32) -> (Option<String>, Option<String>) {
    let backing = match (be64(h, 8), be32(h, 16)) {
        (Some(off), Some(len)) if off != 0 => Some(name_at(h, off, u64::from(len))),
        _ => None,
    };
    if version < 3 {
        return (backing, None);
    }
    let incompatible = be64(h, 72).unwrap_or(0);
    let header_len = be32(h, 100).map_or(104, |l| l as usize);
    // Header extensions: type, length, data padded to 8 bytes; type 0 ends them.
    let mut named = None;
    let mut at = header_len;
    while let (Some(kind), Some(len)) = (be32(h, at), be32(h, at + 4)) {
        if kind == 0 {
            break;
        }
        let data = at + 8;
        if kind == QCOW2_EXT_DATA_FILE {
            named = Some(name_at(h, data as u64, u64::from(len)));
        }
        at = data + (len as usize).div_ceil(8) * 8;
    }
    let data_file = if incompatible & QCOW2_INCOMPAT_DATA_FILE != 0 {
        Some(named.unwrap_or_else(|| "named in the qcow2 header".into()))
    } else {
        named
    };
    (backing, data_file)
}

/// The second detection: the container format the header bytes `h` are, by magic number;
/// `None` for bytes no container format claims (a raw disk, an ISO, a partition table).
pub fn detect(h: &[u8]) -> Option<Detected> {
    let format = cirrus_crds::image_magic::container_format(h)?;
    let (backing, data_file) = match format {
        "qcow" | "qcow2" => qcow_refs(h, be32(h, 4).unwrap_or(0)),
        _ => (None, None),
    };
    Some(Detected {
        format,
        backing,
        data_file,
    })
}

/// Rules 1 and 2: the declared format is known and the header bytes `h` are not another
/// container format (nor a qcow2 naming other files).
///
/// # Errors
/// [`Refusal::UnknownFormat`], [`Refusal::Mismatch`], [`Refusal::BackingFile`],
/// [`Refusal::DataFile`].
pub fn check_header(declared: &str, h: &[u8]) -> Result<(), Refusal> {
    if !FORMATS.contains(&declared) {
        return Err(Refusal::UnknownFormat {
            declared: declared.to_string(),
        });
    }
    let Some(found) = detect(h) else {
        return Ok(());
    };
    if found.format != declared {
        return Err(Refusal::Mismatch {
            declared: declared.to_string(),
            detected: found.format,
        });
    }
    if let Some(backing) = found.backing {
        return Err(Refusal::BackingFile {
            declared: declared.to_string(),
            backing,
        });
    }
    if let Some(data_file) = found.data_file {
        return Err(Refusal::DataFile {
            declared: declared.to_string(),
            data_file,
        });
    }
    Ok(())
}

fn parse(json: &str) -> Result<Value, Refusal> {
    serde_json::from_str(json).map_err(|e| Refusal::Unparseable(e.to_string()))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// The references every format must be free of, besides a backing file: an external data
/// file, child nodes other than the image's own `file`.
fn check_references(declared: &str, info: &Value) -> Result<(), Refusal> {
    if let Some(data_file) = str_at(info, "/format-specific/data/data-file") {
        return Err(Refusal::DataFile {
            declared: declared.to_string(),
            data_file: data_file.to_string(),
        });
    }
    for child in info
        .get("children")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = child.get("name").and_then(Value::as_str).unwrap_or("?");
        if name != "file" {
            return Err(Refusal::ExternalFile {
                declared: declared.to_string(),
                what: format!("child {name}"),
                file: str_at(child, "/info/filename").unwrap_or("?").to_string(),
            });
        }
    }
    Ok(())
}

/// Rule 3: the JSON of `qemu-img info -f <declared> --output=json`.
///
/// # Errors
/// The [`Refusal`] the answer shows.
pub fn check_info(declared: &str, json: &str) -> Result<Inspection, Refusal> {
    let info = parse(json)?;
    let reported = info
        .get("format")
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::Unparseable("no \"format\" in qemu-img info".into()))?;
    if reported != declared {
        return Err(Refusal::WrongFormat {
            declared: declared.to_string(),
            reported: reported.to_string(),
        });
    }
    for key in [
        "backing-filename",
        "full-backing-filename",
        "backing-filename-format",
    ] {
        if let Some(backing) = info.get(key).and_then(Value::as_str) {
            return Err(Refusal::BackingFile {
                declared: declared.to_string(),
                backing: backing.to_string(),
            });
        }
    }
    check_references(declared, &info)?;
    if declared == "vmdk" {
        let create_type = str_at(&info, "/format-specific/data/create-type").unwrap_or_default();
        if !matches!(create_type, "monolithicSparse" | "streamOptimized") {
            return Err(Refusal::VmdkType {
                create_type: create_type.to_string(),
            });
        }
        let own = info.get("filename").and_then(Value::as_str);
        for extent in info
            .pointer("/format-specific/data/extents")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let file = extent.get("filename").and_then(Value::as_str);
            if file != own {
                return Err(Refusal::ExternalFile {
                    declared: declared.to_string(),
                    what: "vmdk extent".into(),
                    file: file.unwrap_or("?").to_string(),
                });
            }
        }
    }
    if info
        .pointer("/format-specific/data/corrupt")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(Refusal::Corrupt {
            declared: declared.to_string(),
        });
    }
    let virtual_size = info
        .get("virtual-size")
        .and_then(Value::as_u64)
        .ok_or_else(|| Refusal::Unparseable("no \"virtual-size\" in qemu-img info".into()))?;
    Ok(Inspection {
        format: declared.to_string(),
        virtual_size,
    })
}

/// The whole decision on one image: [`check_header`] on its first bytes, then
/// [`check_info`] on what `qemu-img info -f <declared>` printed.
///
/// # Errors
/// The first [`Refusal`] found.
pub fn decide(declared: &str, info_json: &str, header: &[u8]) -> Result<Inspection, Refusal> {
    check_header(declared, header)?;
    check_info(declared, info_json)
}

/// A backing file a volume file may read from, as its qcow2 header records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backing {
    /// The backing file (absolute when qemu-img could resolve it).
    pub path: PathBuf,
    /// Its recorded format.
    pub format: String,
}

/// The decision on a volume file the agent made: `qemu-img info -f qcow2` JSON of a qcow2
/// with no data file and no other child, whose backing file (if any) has a recorded format of
/// [`FORMATS`]. Returns that backing file, which must then pass [`inspect`] itself.
///
/// # Errors
/// The [`Refusal`] the answer shows.
pub fn check_volume_info(json: &str) -> Result<Option<Backing>, Refusal> {
    let info = parse(json)?;
    let reported = info.get("format").and_then(Value::as_str).unwrap_or("?");
    if reported != "qcow2" {
        return Err(Refusal::WrongFormat {
            declared: "qcow2".into(),
            reported: reported.to_string(),
        });
    }
    check_references("qcow2", &info)?;
    let Some(backing) = info
        .get("full-backing-filename")
        .or_else(|| info.get("backing-filename"))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    let format = info
        .get("backing-filename-format")
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::UnformattedBacking {
            backing: backing.to_string(),
        })?;
    if !FORMATS.contains(&format) {
        return Err(Refusal::UnknownFormat {
            declared: format.to_string(),
        });
    }
    Ok(Some(Backing {
        path: PathBuf::from(backing),
        format: format.to_string(),
    }))
}

/// Reads up to [`HEADER_BYTES`] from the start of `path`.
fn read_header(path: &Path) -> Result<Vec<u8>, InspectError> {
    let io = |source| InspectError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut header = Vec::with_capacity(HEADER_BYTES);
    file.take(HEADER_BYTES as u64)
        .read_to_end(&mut header)
        .map_err(io)?;
    Ok(header)
}

/// Resolves a program name through `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `qemu-img info -U -f <format> --output=json <path>` (under `prlimit` when installed).
fn qemu_img_info(path: &Path, format: &str) -> Result<String, InspectError> {
    let tool = |detail: String| InspectError::Tool {
        path: path.to_path_buf(),
        detail,
    };
    let qemu_img = find_program("qemu-img")
        .ok_or_else(|| tool("qemu-img is not installed: images cannot be checked".into()))?;
    // Resource limits as Nova uses for untrusted images: 1 GiB of address space, 30 s CPU.
    let mut cmd = match find_program("prlimit") {
        Some(prlimit) => {
            let mut c = Command::new(prlimit);
            c.args(["--as=1073741824", "--cpu=30"]).arg(&qemu_img);
            c
        }
        None => Command::new(&qemu_img),
    };
    cmd.args(["info", "-U", "-f", format, "--output=json"])
        .arg(path)
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| tool(format!("cannot run qemu-img: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr)
            .trim()
            .replace(&path.display().to_string(), "<image>")
            .replace(&qemu_img.display().to_string(), "qemu-img");
        return Err(Refusal::NotOpenable {
            declared: format.to_string(),
            detail: if stderr.is_empty() {
                format!("qemu-img info failed ({})", out.status)
            } else {
                stderr
            },
        }
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Inspects the image at `path` declared as `declared` (a `qemu-img` name): the rules of the
/// [module docs](self). Blocking (reads the file, runs `qemu-img`).
///
/// # Errors
/// [`InspectError::Refused`] with the reason; [`InspectError::Tool`] / [`InspectError::Io`]
/// when no verdict could be reached.
pub fn inspect(path: &Path, declared: &str) -> Result<Inspection, InspectError> {
    if !FORMATS.contains(&declared) {
        return Err(Refusal::UnknownFormat {
            declared: declared.to_string(),
        }
        .into());
    }
    let header = read_header(path)?;
    // Our own detection first: a file that is not what it claims never reaches qemu-img.
    check_header(declared, &header)?;
    let json = qemu_img_info(path, declared)?;
    let inspection = check_info(declared, &json)?;
    tracing::debug!(path = %path.display(), format = declared, virtual_size = inspection.virtual_size, "image inspected");
    Ok(inspection)
}

/// [`inspect`] on a blocking thread.
///
/// # Errors
/// As [`inspect`].
pub async fn inspect_async(path: PathBuf, declared: String) -> Result<Inspection, InspectError> {
    let p = path.clone();
    tokio::task::spawn_blocking(move || inspect(&p, &declared))
        .await
        .map_err(|e| InspectError::Tool {
            path,
            detail: format!("inspection task failed: {e}"),
        })?
}

/// Inspects a qcow2 volume file the agent made (a volume, possibly an overlay): its header is
/// qcow2 without a data file, [`check_volume_info`] accepts it, and its backing file (a cached
/// image or a snapshot) passes [`inspect`] as its recorded format. Returns the backing file.
///
/// # Errors
/// As [`inspect`].
pub fn inspect_volume_file(path: &Path) -> Result<Option<Backing>, InspectError> {
    let header = read_header(path)?;
    match detect(&header) {
        Some(Detected {
            format: "qcow2",
            data_file: None,
            ..
        }) => {}
        Some(Detected {
            format: "qcow2",
            data_file: Some(data_file),
            ..
        }) => {
            return Err(Refusal::DataFile {
                declared: "qcow2".into(),
                data_file,
            }
            .into());
        }
        Some(other) => {
            return Err(Refusal::Mismatch {
                declared: "qcow2".into(),
                detected: other.format,
            }
            .into());
        }
        None => {
            return Err(Refusal::NotOpenable {
                declared: "qcow2".into(),
                detail: "no qcow2 header".into(),
            }
            .into());
        }
    }
    let json = qemu_img_info(path, "qcow2")?;
    let backing = check_volume_info(&json)?;
    if let Some(b) = &backing {
        let base = if b.path.is_absolute() {
            b.path.clone()
        } else {
            path.parent().unwrap_or(Path::new("/")).join(&b.path)
        };
        inspect(&base, &b.format)?;
    }
    Ok(backing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::image_magic::QCOW_MAGIC;

    /// `qemu-img info -f qcow2` of a qcow2 overlay on a secret host file (qemu-img 10).
    const QCOW2_BACKING: &str = r#"{
        "children": [{"name": "file", "info": {"children": [], "virtual-size": 197120,
            "filename": "evil.qcow2", "format": "file", "actual-size": 200704,
            "format-specific": {"type": "file", "data": {}}, "dirty-flag": false}}],
        "backing-filename-format": "raw", "virtual-size": 1048576, "filename": "evil.qcow2",
        "cluster-size": 65536, "format": "qcow2", "actual-size": 200704,
        "format-specific": {"type": "qcow2", "data": {"compat": "1.1",
            "compression-type": "zlib", "lazy-refcounts": false, "refcount-bits": 16,
            "corrupt": false, "extended-l2": false}},
        "full-backing-filename": "/etc/shadow", "backing-filename": "/etc/shadow",
        "dirty-flag": false}"#;

    /// The same file read with `-f raw`: raw accepts any bytes.
    const QCOW2_READ_AS_RAW: &str = r#"{
        "children": [{"name": "file", "info": {"children": [], "virtual-size": 197120,
            "filename": "evil.qcow2", "format": "file", "actual-size": 200704,
            "format-specific": {"type": "file", "data": {}}, "dirty-flag": false}}],
        "virtual-size": 197120, "filename": "evil.qcow2", "format": "raw",
        "actual-size": 200704, "dirty-flag": false}"#;

    const QCOW2_DATA_FILE: &str = r#"{
        "children": [{"name": "file", "info": {"filename": "df.qcow2", "format": "file"}}],
        "virtual-size": 1048576, "filename": "df.qcow2", "format": "qcow2",
        "format-specific": {"type": "qcow2", "data": {"compat": "1.1",
            "data-file": "/var/lib/cirrus/token.key", "data-file-raw": false,
            "corrupt": false}},
        "dirty-flag": false}"#;

    const QCOW2_CLEAN: &str = r#"{
        "children": [{"name": "file", "info": {"filename": "clean.qcow2", "format": "file"}}],
        "virtual-size": 1048576, "filename": "clean.qcow2", "cluster-size": 65536,
        "format": "qcow2", "actual-size": 200704,
        "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "corrupt": false}},
        "dirty-flag": false}"#;

    const RAW_CLEAN: &str = r#"{
        "children": [{"name": "file", "info": {"filename": "disk", "format": "file"}}],
        "virtual-size": 1048576, "filename": "disk", "format": "raw",
        "actual-size": 4096, "dirty-flag": false}"#;

    /// A qcow2 v3 header as qemu-img writes it, naming `backing` at byte 0x210.
    fn qcow2_header(backing: Option<&str>) -> Vec<u8> {
        let mut h = vec![0u8; 1024];
        h[0..4].copy_from_slice(QCOW_MAGIC);
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        if let Some(b) = backing {
            h[8..16].copy_from_slice(&0x210u64.to_be_bytes());
            h[16..20].copy_from_slice(&(b.len() as u32).to_be_bytes());
            h[0x210..0x210 + b.len()].copy_from_slice(b.as_bytes());
        }
        h[24..32].copy_from_slice(&(1u64 << 20).to_be_bytes());
        h[100..104].copy_from_slice(&112u32.to_be_bytes());
        h
    }

    fn raw_header() -> Vec<u8> {
        (0..4096u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn backing_file_is_refused_naming_it() {
        let err = decide("qcow2", QCOW2_BACKING, &qcow2_header(None)).unwrap_err();
        assert_eq!(
            err,
            Refusal::BackingFile {
                declared: "qcow2".into(),
                backing: "/etc/shadow".into()
            }
        );
        assert!(err.to_string().contains("backing file"), "{err}");
        // Our own header check finds it before qemu-img is asked.
        let err = check_header("qcow2", &qcow2_header(Some("/etc/shadow"))).unwrap_err();
        assert!(
            matches!(&err, Refusal::BackingFile { backing, .. } if backing == "/etc/shadow"),
            "{err:?}"
        );
    }

    #[test]
    fn data_file_is_refused_naming_it() {
        let err = decide("qcow2", QCOW2_DATA_FILE, &qcow2_header(None)).unwrap_err();
        assert!(
            matches!(&err, Refusal::DataFile { data_file, .. } if data_file == "/var/lib/cirrus/token.key"),
            "{err:?}"
        );
        // The header: the incompatible feature bit and the "DATA" extension naming the file.
        let mut h = qcow2_header(None);
        h[72..80].copy_from_slice(&QCOW2_INCOMPAT_DATA_FILE.to_be_bytes());
        h[112..116].copy_from_slice(&QCOW2_EXT_DATA_FILE.to_be_bytes());
        h[116..120].copy_from_slice(&11u32.to_be_bytes());
        h[120..131].copy_from_slice(b"/etc/shadow");
        assert_eq!(
            detect(&h).unwrap().data_file.as_deref(),
            Some("/etc/shadow")
        );
        assert!(matches!(
            check_header("qcow2", &h),
            Err(Refusal::DataFile { .. })
        ));
    }

    #[test]
    fn qcow2_declared_raw_is_a_mismatch() {
        // qemu-img -f raw is happy (raw accepts any bytes): only the second detection sees it.
        assert!(check_info("raw", QCOW2_READ_AS_RAW).is_ok());
        let err = decide("raw", QCOW2_READ_AS_RAW, &qcow2_header(Some("/etc/shadow"))).unwrap_err();
        assert_eq!(
            err,
            Refusal::Mismatch {
                declared: "raw".into(),
                detected: "qcow2"
            }
        );
        assert!(err.to_string().contains("declared raw"), "{err}");
        // And the other way: qemu-img opened it as declared but reports another format.
        assert!(matches!(
            check_info("qcow2", RAW_CLEAN),
            Err(Refusal::WrongFormat { .. })
        ));
    }

    #[test]
    fn clean_raw_and_clean_qcow2_pass() {
        assert_eq!(
            decide("raw", RAW_CLEAN, &raw_header()),
            Ok(Inspection {
                format: "raw".into(),
                virtual_size: 1 << 20
            })
        );
        assert_eq!(
            decide("qcow2", QCOW2_CLEAN, &qcow2_header(None)),
            Ok(Inspection {
                format: "qcow2".into(),
                virtual_size: 1 << 20
            })
        );
        // An empty (all-zero) or short file is raw too.
        assert!(check_header("raw", &[0u8; 512]).is_ok());
        assert!(check_header("raw", b"").is_ok());
    }

    #[test]
    fn unknown_formats_are_refused_before_anything() {
        for f in ["iso", "qcow", "", "host_device", "file", "luks"] {
            assert!(
                matches!(
                    check_header(f, &raw_header()),
                    Err(Refusal::UnknownFormat { .. })
                ),
                "{f}"
            );
        }
        let err = inspect(Path::new("/nonexistent/image"), "raw ").unwrap_err();
        assert!(
            matches!(err, InspectError::Refused(Refusal::UnknownFormat { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn every_container_magic_is_detected() {
        let at0 = |m: &[u8]| {
            let mut h = m.to_vec();
            h.resize(1024, 0);
            detect(&h).map(|d| d.format)
        };
        assert_eq!(at0(b"QFI\xfb\0\0\0\x01"), Some("qcow"));
        assert_eq!(at0(b"QFI\xfb\0\0\0\x02"), Some("qcow2"));
        assert_eq!(at0(b"QED\0"), Some("qed"));
        assert_eq!(at0(b"KDMV"), Some("vmdk"));
        assert_eq!(at0(b"vhdxfile"), Some("vhdx"));
        assert_eq!(at0(b"conectix"), Some("vpc"));
        assert_eq!(at0(b"WithouFreSpacExt"), Some("parallels"));
        assert_eq!(at0(b"LUKS\xba\xbe"), Some("luks"));
        assert_eq!(at0(b"# Disk DescriptorFile\nversion=1\n"), Some("vmdk"));
        assert_eq!(
            at0(b"# Disk DescriptorFile\r\n   \r\nversion=2\r\n"),
            Some("vmdk")
        );
        assert_eq!(at0(b"#!/bin/sh\nversion=1\n"), Some("vmdk"));
        assert_eq!(at0(b"version=4\n"), None);
        assert_eq!(at0(b"\nversion=1\n"), None);
        let mut vdi = vec![0u8; 128];
        vdi[64..68].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
        assert_eq!(detect(&vdi).map(|d| d.format), Some("vdi"));
        assert_eq!(detect(&raw_header()), None);
        // An ISO 9660 image (signature at 32769) and an MBR are raw disks.
        let mut iso = vec![0u8; 40000];
        iso[32769..32774].copy_from_slice(b"CD001");
        iso[510] = 0x55;
        iso[511] = 0xaa;
        assert_eq!(detect(&iso), None);
        // A vmdk declared vmdk is fine for the header; declared raw it is refused.
        assert!(check_header("vmdk", b"KDMV\x01\0\0\0").is_ok());
        assert!(matches!(
            check_header("raw", b"KDMV\x01\0\0\0"),
            Err(Refusal::Mismatch {
                detected: "vmdk",
                ..
            })
        ));
        assert!(matches!(
            check_header("qcow2", b"vhdxfile"),
            Err(Refusal::Mismatch {
                detected: "vhdx",
                ..
            })
        ));
    }

    #[test]
    fn vmdk_only_single_file_and_its_own_extents() {
        let vmdk = |t: &str, extent: &str| {
            format!(
                r#"{{"virtual-size": 1048576, "filename": "x.vmdk", "format": "vmdk",
                    "children": [{{"name": "file", "info": {{"filename": "x.vmdk"}}}}],
                    "format-specific": {{"type": "vmdk", "data": {{"create-type": "{t}",
                    "extents": [{{"filename": "{extent}", "format": ""}}]}}}}}}"#
            )
        };
        assert!(check_info("vmdk", &vmdk("monolithicSparse", "x.vmdk")).is_ok());
        assert!(check_info("vmdk", &vmdk("streamOptimized", "x.vmdk")).is_ok());
        assert!(matches!(
            check_info("vmdk", &vmdk("monolithicFlat", "x.vmdk")),
            Err(Refusal::VmdkType { .. })
        ));
        assert!(matches!(
            check_info("vmdk", &vmdk("monolithicSparse", "/etc/shadow")),
            Err(Refusal::ExternalFile { .. })
        ));
        let flat_child = r#"{"virtual-size": 1, "filename": "f.vmdk", "format": "vmdk",
            "children": [{"name": "extents.0", "info": {"filename": "/etc/shadow"}},
                         {"name": "file", "info": {"filename": "f.vmdk"}}],
            "format-specific": {"type": "vmdk", "data": {"create-type": "monolithicSparse"}}}"#;
        let err = check_info("vmdk", flat_child).unwrap_err();
        assert!(
            matches!(&err, Refusal::ExternalFile { file, .. } if file == "/etc/shadow"),
            "{err:?}"
        );
    }

    #[test]
    fn corrupt_and_garbage() {
        let corrupt = QCOW2_CLEAN.replace("\"corrupt\": false", "\"corrupt\": true");
        assert_eq!(
            check_info("qcow2", &corrupt),
            Err(Refusal::Corrupt {
                declared: "qcow2".into()
            })
        );
        assert!(matches!(
            check_info("qcow2", "not json"),
            Err(Refusal::Unparseable(_))
        ));
        assert!(matches!(
            check_info("qcow2", "{}"),
            Err(Refusal::Unparseable(_))
        ));
    }

    #[test]
    fn volume_files_may_have_one_formatted_backing() {
        assert_eq!(check_volume_info(QCOW2_CLEAN), Ok(None));
        assert_eq!(
            check_volume_info(QCOW2_BACKING),
            Ok(Some(Backing {
                path: "/etc/shadow".into(),
                format: "raw".into()
            })),
            "the backing file is then inspected itself"
        );
        let unformatted = QCOW2_BACKING.replace("\"backing-filename-format\": \"raw\",", "");
        assert!(matches!(
            check_volume_info(&unformatted),
            Err(Refusal::UnformattedBacking { .. })
        ));
        let host_device = QCOW2_BACKING.replace(
            "\"backing-filename-format\": \"raw\"",
            "\"backing-filename-format\": \"host_device\"",
        );
        assert!(matches!(
            check_volume_info(&host_device),
            Err(Refusal::UnknownFormat { .. })
        ));
        assert!(matches!(
            check_volume_info(QCOW2_DATA_FILE),
            Err(Refusal::DataFile { .. })
        ));
        assert!(matches!(
            check_volume_info(RAW_CLEAN),
            Err(Refusal::WrongFormat { .. })
        ));
    }
}
