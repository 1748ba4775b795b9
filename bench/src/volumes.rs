//! `cirrus bench volumes`: volume create → available on each storage backend of this host,
//! against the raw backend command it runs (`qemu-img create` for the file pool, `lvcreate`
//! for an LVM volume group), interleaved in one run. Target: <= 1.5x the raw command.
//!
//! The file pool is a temporary directory (removed afterwards); LVM runs only with
//! `--lvm-vg <vg>` (an existing volume group with room for one volume at a time).

use anyhow::Context;
use cirrus_node_agent::volumes::VolumeBackend;
use cirrus_node_agent::volumes::bench::{CreateLatency, measure_create};
use cirrus_node_agent::volumes::file::FileBackend;
use cirrus_node_agent::volumes::lvm::{DeviceMapper, LvmBackend, LvmConfig};

fn report(name: &str, raw: &str, l: &CreateLatency) {
    println!(
        "{name}: create -> available p50 {:.1} ms vs {raw} p50 {:.1} ms: {:.2}x (target <= 1.5x: {}); \
         + first attach path p50 {:.1} ms: {:.2}x; n={}",
        l.volume_p50.as_secs_f64() * 1000.0,
        l.raw_p50.as_secs_f64() * 1000.0,
        l.ratio(),
        if l.ratio() <= 1.5 { "met" } else { "MISSED" },
        l.info_p50.as_secs_f64() * 1000.0,
        l.ratio_with_path(),
        l.samples
    );
}

/// Runs the volume benchmark with `samples` volumes of 1 GiB per backend.
///
/// # Errors
/// A backend could not be opened or a create failed.
pub async fn bench_volumes(samples: usize, lvm_vg: Option<String>) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run(samples, lvm_vg))
        .await
        .context("benchmark task")?
}

fn run(samples: usize, lvm_vg: Option<String>) -> anyhow::Result<()> {
    const SIZE: u64 = 1 << 30;
    let dir = tempfile::tempdir().context("temporary file pool")?;
    let file = FileBackend::new(dir.path()).context("opening the file pool")?;
    let raw = |size| file.raw_create_timed(size);
    let l = measure_create(&file, &raw, samples, SIZE).context("file pool")?;
    report("file (qcow2)", "qemu-img create", &l);
    match lvm_vg {
        Some(vg) => {
            let lvm = LvmBackend::new(LvmConfig {
                vg,
                device_mapper: DeviceMapper::Auto,
                extra_config: None,
            })
            .context("opening the LVM volume group")?;
            println!("lvm: {}", lvm.capabilities().detail);
            let raw = |size| lvm.raw_create_timed(size);
            let l = measure_create(&lvm, &raw, samples, SIZE).context("lvm pool")?;
            report("lvm", "lvcreate", &l);
        }
        None => println!("lvm: skipped (give --lvm-vg <volume group>)"),
    }
    Ok(())
}
