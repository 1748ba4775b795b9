//! Unit tests of [`super`] (image_inspect.rs), kept beside it so the module reads on its own.

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
