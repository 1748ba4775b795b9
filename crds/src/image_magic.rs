//! Which container format image bytes are, by magic number: one pure function of the data's
//! head, shared by the API's upload check and the node agent's own inspection (the two must
//! agree on what a format looks like; a second copy drifts).
//!
//! The magic numbers are QEMU's block drivers' probes (`qemu-img info` without `-f`), the
//! ones Glance's and Nova's format inspectors check after OSSA-2024-001.

/// The container format (qemu-img driver name) the head `h` of some image data is; `None`
/// for bytes no container format claims (a raw disk, an ISO, a kernel, a partition table).
pub fn container_format(h: &[u8]) -> Option<&'static str> {
    if h.starts_with(QCOW_MAGIC) {
        return Some(if h.get(4..8) == Some(&[0, 0, 0, 1]) {
            "qcow"
        } else {
            "qcow2"
        });
    }
    if let Some((_, format)) = MAGICS.iter().find(|(m, _)| h.starts_with(m)) {
        return Some(format);
    }
    // vdi: the signature 0xbeda107f (little-endian) at byte 64.
    if h.get(64..68) == Some(&[0x7f, 0x10, 0xda, 0xbe]) {
        return Some("vdi");
    }
    is_vmdk_descriptor(h).then_some("vmdk")
}

/// The magic of qcow (version 1) and qcow2 (`QFI\xfb`, then a big-endian version).
pub const QCOW_MAGIC: &[u8] = b"QFI\xfb";

/// Magic prefixes of the other container formats, with their qemu-img names.
const MAGICS: &[(&[u8], &str)] = &[
    (b"QED\0", "qed"),
    (b"KDMV", "vmdk"),
    (b"COWD", "vmdk"),
    (b"vhdxfile", "vhdx"),
    (b"conectix", "vpc"),
    (b"WithoutFreeSpace", "parallels"),
    (b"WithouFreSpacExt", "parallels"),
    (b"LUKS\xba\xbe", "luks"),
    (b"Bochs Virtual HD Image", "bochs"),
    (b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop", "cloop"),
];

/// Whether `h` is a vmdk text descriptor as QEMU's vmdk probe reads one: comment lines and
/// blank lines, then `version=1|2|3`.
fn is_vmdk_descriptor(h: &[u8]) -> bool {
    let mut p = 0;
    while p < h.len() {
        match h[p] {
            b'#' => {
                while p < h.len() && h[p] != b'\n' {
                    p += 1;
                }
                p += 1;
            }
            b' ' => {
                while p < h.len() && h[p] == b' ' {
                    p += 1;
                }
                if p < h.len() && h[p] == b'\r' {
                    p += 1;
                }
                if p == h.len() || h[p] != b'\n' {
                    return false;
                }
                p += 1;
            }
            _ => {
                let rest = &h[p..];
                return [b'1', b'2', b'3'].iter().any(|v| {
                    let line = [b"version=".as_slice(), &[*v]].concat();
                    rest.starts_with(&[line.as_slice(), b"\n"].concat())
                        || rest.starts_with(&[line.as_slice(), b"\r\n"].concat())
                });
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics_name_their_formats() {
        assert_eq!(container_format(b"QFI\xfb\0\0\0\x03rest"), Some("qcow2"));
        assert_eq!(container_format(b"QFI\xfb\0\0\0\x01rest"), Some("qcow"));
        assert_eq!(container_format(b"conectix...."), Some("vpc"));
        assert_eq!(
            container_format(b"# Disk DescriptorFile\nversion=1\n"),
            Some("vmdk")
        );
        let mut vdi = vec![0u8; 80];
        vdi[64..68].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
        assert_eq!(container_format(&vdi), Some("vdi"));
        assert_eq!(container_format(&[0u8; 512]), None);
        assert_eq!(container_format(b"# a comment\nnot a version\n"), None);
    }
}
