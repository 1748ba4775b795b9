//! Does KVM really work on this host? Probed, never assumed.
//!
//! `/dev/kvm` existing is not enough: on KVM-PVM hosts (nested in Firecracker, as the CI
//! machines are) it opens fine, but ordinary guests hang or QEMU aborts ("failed to set MSR
//! 0x10a"). So the probe runs real guest code: QEMU with `-accel kvm` starts SeaBIOS, which
//! writes its banner to the debug console (I/O port 0x402); KVM is usable only if that banner
//! appears within a short timeout. The libvirt driver caches the result for its lifetime.
//!
//! `CIRRUS_VIRT_TYPE=kvm|qemu` overrides the probe (for hosts where the operator knows).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The result of a KVM probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmProbe {
    /// Whether domains should use `type='kvm'`.
    pub usable: bool,
    /// Why, in words (shown in the Node's status).
    pub detail: String,
}

impl KvmProbe {
    fn no(detail: impl Into<String>) -> Self {
        Self {
            usable: false,
            detail: detail.into(),
        }
    }
}

/// Environment variable that overrides the probe: `kvm` or `qemu`.
pub const VIRT_TYPE_ENV: &str = "CIRRUS_VIRT_TYPE";

/// Probes whether KVM runs guest code here with the given QEMU binary, waiting at most
/// `timeout` for the firmware banner. Honors [`VIRT_TYPE_ENV`].
pub fn probe_kvm(qemu: &Path, timeout: Duration) -> KvmProbe {
    match std::env::var(VIRT_TYPE_ENV).as_deref() {
        Ok("kvm") => {
            return KvmProbe {
                usable: true,
                detail: format!("{VIRT_TYPE_ENV}=kvm"),
            };
        }
        Ok("qemu") => return KvmProbe::no(format!("{VIRT_TYPE_ENV}=qemu")),
        _ => {}
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return KvmProbe::no(format!("/dev/kvm unusable: {e}"));
    }
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return KvmProbe::no(format!("probe tempdir: {e}")),
    };
    let log = dir.path().join("debugcon.log");
    let child = Command::new(qemu)
        .args([
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-machine",
            "q35",
            "-m",
            "64",
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-global",
            "isa-debugcon.iobase=0x402",
            "-debugcon",
        ])
        .arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return KvmProbe::no(format!("cannot run {}: {e}", qemu.display())),
    };
    let deadline = Instant::now() + timeout;
    let result = loop {
        let banner = std::fs::read(&log)
            .map(|b| b.windows(7).any(|w| w == b"SeaBIOS"))
            .unwrap_or(false);
        if banner {
            break KvmProbe {
                usable: true,
                detail: "KVM probe ran guest firmware".into(),
            };
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read as _;
                    let _ = e.read_to_string(&mut err);
                }
                let first = err.lines().next().unwrap_or("").trim().to_owned();
                break KvmProbe::no(format!("QEMU with KVM exited ({status}): {first}"));
            }
            Ok(None) => {}
            Err(e) => break KvmProbe::no(format!("waiting for the KVM probe: {e}")),
        }
        if Instant::now() >= deadline {
            break KvmProbe::no(format!(
                "QEMU with KVM ran no guest code within {timeout:?} (hung guest, e.g. KVM-PVM)"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Our own child, killed by its handle.
    let _ = child.kill();
    let _ = child.wait();
    result
}
