//! The per-node image cache against the in-process API: concurrent ensures of one image make
//! one download; the cached file is the image's bytes under its sha256.

mod common;

use std::sync::Arc;

use cirrus_crds::kinds::image::DiskFormat;
use cirrus_node_agent::images::{ImageCache, ImageError, find_image};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ensures_download_once() {
    let h = harness().await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let image = h.image("kern", DiskFormat::Aki, &[], data.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(ImageCache::new(h.client.clone(), dir.path().join("images")));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (cache, image) = (cache.clone(), image.clone());
        tasks.push(tokio::spawn(
            async move { cache.ensure(&image).await.unwrap() },
        ));
    }
    let mut paths = Vec::new();
    for t in tasks {
        paths.push(t.await.unwrap());
    }
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(cache.downloads(), 1);
    let sha = image.status.os_hash_value.clone().unwrap();
    assert_eq!(paths[0], dir.path().join("images").join(&sha));
    assert_eq!(std::fs::read(&paths[0]).unwrap(), data);
    assert!(
        !dir.path()
            .join("images")
            .join(format!("{sha}.part"))
            .exists()
    );
    // Cached: no second download.
    cache.ensure(&image).await.unwrap();
    assert_eq!(cache.downloads(), 1);

    // Resolution: own project first; a missing name is positive evidence (None).
    assert!(
        find_image(&h.client, PROJECT, "kern")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        find_image(&h.client, PROJECT, "nope")
            .await
            .unwrap()
            .is_none()
    );
    // An image without data is not active: not an error of the permanent kind.
    let mut queued = image.clone();
    queued.status.phase = None;
    let err = cache.ensure(&queued).await.unwrap_err();
    assert!(matches!(err, ImageError::NotActive { .. }) && !err.is_permanent());
}
