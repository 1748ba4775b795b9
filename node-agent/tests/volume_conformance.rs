//! The volume backend conformance suite against every implementation:
//! - `fake_volume_conformance` / `fake_without_snapshots_conformance`: the in-memory fake;
//! - `file_volume_conformance`: qcow2 files in a temp dir with the real `qemu-img`;
//! - `real_lvm_volume_conformance`: LVM on a loop-backed volume group the test makes (root,
//!   lvm2, losetup). Without device-mapper (as on CI machines) it runs with activation
//!   disabled and reaches the data through loop devices at the LV's extent offset. It fails
//!   with instructions when the tools or root are missing, unless `CIRRUS_SKIP_LVM=1`.
//!
//! The file and LVM tests also print the create latency against the raw backend command
//! (`bench::measure_create`).

use std::path::PathBuf;
use std::process::Command;

use cirrus_node_agent::volumes::bench::measure_create;
use cirrus_node_agent::volumes::conformance::{self, SuiteConfig};
use cirrus_node_agent::volumes::fake::FakeVolumeBackend;
use cirrus_node_agent::volumes::file::FileBackend;
use cirrus_node_agent::volumes::loopdev;
use cirrus_node_agent::volumes::lvm::{DeviceMapper, LvmBackend, LvmConfig};
use cirrus_node_agent::volumes::{VolumeBackend, VolumeSpec};

const LVM_TEST_CONFIG: &str = "backup/backup=0 backup/archive=0";

#[test]
fn fake_volume_conformance() {
    let scratch = tempfile::tempdir().unwrap();
    let fake = FakeVolumeBackend::new(4 << 30);
    let partial = |s: &VolumeSpec| fake.insert_partial(s.uid, s.size_bytes);
    conformance::run(
        &fake,
        &SuiteConfig {
            scratch: scratch.path(),
            make_partial: &partial,
        },
    );
}

#[test]
fn fake_without_snapshots_conformance() {
    let scratch = tempfile::tempdir().unwrap();
    let fake = FakeVolumeBackend::new(4 << 30).without_snapshots();
    let partial = |s: &VolumeSpec| fake.insert_partial(s.uid, s.size_bytes);
    conformance::run(
        &fake,
        &SuiteConfig {
            scratch: scratch.path(),
            make_partial: &partial,
        },
    );
}

fn require_tool(tool: &str, hint: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "`{tool}` is missing: {hint}");
}

#[test]
fn file_volume_conformance() {
    require_tool("qemu-img", "install qemu-utils (hack/install-deps.sh)");
    require_tool("qemu-io", "install qemu-utils (hack/install-deps.sh)");
    let scratch = tempfile::tempdir().unwrap();
    let pool = tempfile::tempdir().unwrap();
    // Foreign files, some of them named almost like ours: never listed or touched.
    for f in [
        "notes.txt",
        "vol-notauuid.qcow2",
        "snap-x.qcow2",
        "vol-.qcow2",
    ] {
        std::fs::write(pool.path().join(f), b"not a volume").unwrap();
    }
    let backend = FileBackend::new(pool.path()).unwrap();
    let partial = |s: &VolumeSpec| {
        std::fs::write(backend.volume_part_path(s.uid), b"half-written qcow2").unwrap();
    };
    conformance::run(
        &backend,
        &SuiteConfig {
            scratch: scratch.path(),
            make_partial: &partial,
        },
    );
    for f in [
        "notes.txt",
        "vol-notauuid.qcow2",
        "snap-x.qcow2",
        "vol-.qcow2",
    ] {
        assert!(pool.path().join(f).exists(), "{f} was touched");
    }
    let raw = |size| backend.raw_create_timed(size);
    let l = measure_create(&backend, &raw, 20, 1 << 30).unwrap();
    eprintln!(
        "BENCH file: volume create->available p50 {:?} vs qemu-img create p50 {:?} (ratio {:.2}); \
         first volume_info (data path) p50 {:?} (create+path ratio {:.2}); n={}",
        l.volume_p50,
        l.raw_p50,
        l.ratio(),
        l.info_p50,
        l.ratio_with_path(),
        l.samples
    );
    let leftovers: Vec<_> = std::fs::read_dir(pool.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            ![
                "notes.txt",
                "vol-notauuid.qcow2",
                "snap-x.qcow2",
                "vol-.qcow2",
            ]
            .contains(&n.as_str())
        })
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

fn lvm(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A volume group on a loop device over a sparse file; everything (VG, PV, the loop device
/// and any loop device mapped over it) is torn down on drop, even when the test fails.
struct LoopVg {
    _dir: tempfile::TempDir,
    pv: PathBuf,
    vg: String,
    config: String,
}

impl LoopVg {
    fn new(size: u64, dm: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cirrus-lvm-")
            .tempdir()
            .unwrap();
        let file = dir.path().join("pv.img");
        std::fs::File::create(&file).unwrap().set_len(size).unwrap();
        let pv = PathBuf::from(
            lvm(&["losetup", "--find", "--show", file.to_str().unwrap()]).expect("losetup"),
        );
        let vg = format!(
            "cirrus-t{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let config = if dm {
            LVM_TEST_CONFIG.to_owned()
        } else {
            format!("global/activation=0 {LVM_TEST_CONFIG}")
        };
        let me = Self {
            _dir: dir,
            pv,
            vg,
            config,
        };
        let pv = me.pv.to_str().unwrap().to_owned();
        me.run(&["pvcreate", "-q", &pv]).expect("pvcreate");
        me.run(&["vgcreate", "-q", &me.vg.clone(), &pv])
            .expect("vgcreate");
        me
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut v = vec![args[0], "--config", &self.config];
        v.extend(&args[1..]);
        lvm(&v)
    }

    /// Loop devices mapped over our PV (data paths).
    fn mapped(&self) -> Vec<PathBuf> {
        loopdev::list()
            .unwrap()
            .into_iter()
            .filter(|d| d.back_file.as_deref() == Some(self.pv.as_path()))
            .map(|d| d.name)
            .collect()
    }
}

impl Drop for LoopVg {
    fn drop(&mut self) {
        for d in self.mapped() {
            let _ = loopdev::detach(&d);
        }
        let _ = self.run(&["vgremove", "-q", "-f", &self.vg.clone()]);
        let _ = self.run(&["pvremove", "-q", self.pv.to_str().unwrap()]);
        let _ = loopdev::detach(&self.pv);
    }
}

/// Whether the real LVM test can run; panics with instructions when it cannot, unless the
/// caller opted out with `CIRRUS_SKIP_LVM=1`.
fn lvm_available() -> bool {
    if std::env::var("CIRRUS_SKIP_LVM").as_deref() == Ok("1") {
        eprintln!("SKIP: CIRRUS_SKIP_LVM=1: skipping the real LVM test");
        return false;
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "the real LVM test needs root (losetup, pvcreate); run as root or set CIRRUS_SKIP_LVM=1"
    );
    for tool in ["lvcreate", "losetup", "qemu-img", "qemu-io"] {
        let found = Command::new(tool).arg("--help").output().is_ok();
        assert!(
            found,
            "`{tool}` is missing: run `apt-get install lvm2 qemu-utils` (hack/install-deps.sh), \
             or set CIRRUS_SKIP_LVM=1 to skip the real LVM test"
        );
    }
    true
}

#[test]
fn real_lvm_volume_conformance() {
    if !lvm_available() {
        return;
    }
    let (dm, detail) = cirrus_node_agent::volumes::lvm::detect_device_mapper();
    eprintln!("{detail}");
    let vg = LoopVg::new(1 << 30, dm);
    // Foreign LVs: one plain, one with our name pattern but without our tags.
    vg.run(&[
        "lvcreate",
        "-q",
        "-Zn",
        "-Wn",
        "-L",
        "8m",
        "-n",
        "foreign",
        &vg.vg.clone(),
    ])
    .expect("foreign lv");
    let lookalike = format!("cirrus-vol-{}", uuid::Uuid::new_v4());
    vg.run(&[
        "lvcreate",
        "-q",
        "-Zn",
        "-Wn",
        "-L",
        "8m",
        "-n",
        &lookalike,
        &vg.vg.clone(),
    ])
    .expect("lookalike lv");
    let backend = LvmBackend::new(LvmConfig {
        vg: vg.vg.clone(),
        device_mapper: if dm {
            DeviceMapper::Present
        } else {
            DeviceMapper::Absent
        },
        extra_config: Some(LVM_TEST_CONFIG.into()),
    })
    .expect("LVM backend");
    assert_eq!(backend.capabilities().snapshots, dm);
    let scratch = tempfile::tempdir().unwrap();
    // A crash mid-create: the LV exists with the ownership tags but not `cirrus-ready`.
    let partial = |s: &VolumeSpec| {
        let name = format!("cirrus-vol-{}", s.uid);
        vg.run(&[
            "lvcreate",
            "-q",
            "-Zn",
            "-Wn",
            "-L",
            &format!("{}b", s.size_bytes),
            "-n",
            &name,
            "--addtag",
            "cirrus",
            "--addtag",
            &name,
            &vg.vg.clone(),
        ])
        .expect("partial lv");
    };
    conformance::run(
        &backend,
        &SuiteConfig {
            scratch: scratch.path(),
            make_partial: &partial,
        },
    );
    assert!(
        vg.mapped().is_empty(),
        "deleting every volume must leave no loop device: {:?}",
        vg.mapped()
    );
    let lvs = vg
        .run(&["lvs", "--noheadings", "-o", "lv_name", &vg.vg.clone()])
        .unwrap();
    let mut names: Vec<&str> = lvs.split_whitespace().collect();
    names.sort();
    let mut want = vec!["foreign", lookalike.as_str()];
    want.sort();
    assert_eq!(names, want, "only the foreign LVs remain");

    let raw = |size| backend.raw_create_timed(size);
    let l = measure_create(&backend, &raw, 10, 64 << 20).unwrap();
    eprintln!(
        "BENCH lvm ({}): volume create->available p50 {:?} vs lvcreate p50 {:?} (ratio {:.2}); \
         first volume_info (data path) p50 {:?} (create+path ratio {:.2}); n={}",
        if dm {
            "device-mapper"
        } else {
            "no device-mapper, loop data path"
        },
        l.volume_p50,
        l.raw_p50,
        l.ratio(),
        l.info_p50,
        l.ratio_with_path(),
        l.samples
    );
    assert!(vg.mapped().is_empty(), "the benchmark leaked loop devices");
}
