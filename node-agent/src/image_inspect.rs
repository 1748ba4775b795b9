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
mod tests;
