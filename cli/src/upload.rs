//! `cirrus upload-image NAME FILE`: puts data into an existing Image (like `openstack image
//! create --file` after the metadata exists), streamed.

use std::path::PathBuf;

use crate::Ctx;

/// Arguments of `cirrus upload-image`.
#[derive(clap::Args, Debug, Clone)]
pub struct UploadArgs {
    /// The Image object (created first, e.g. with `cirrus apply`).
    pub name: String,
    /// The file holding the image data.
    pub file: PathBuf,
}

/// Uploads and prints the recorded size and sha256.
///
/// # Errors
/// The API's refusal (wrong format, backing file, already active, no such image) or I/O.
pub async fn run(ctx: &Ctx, args: UploadArgs) -> anyhow::Result<()> {
    let image = ctx
        .client
        .image_upload_file(&ctx.project, &args.name, &args.file)
        .await?;
    let status = &image["status"];
    println!(
        "Image/{} uploaded: {} bytes, sha256 {}",
        args.name,
        status["size"].as_u64().unwrap_or_default(),
        status["osHashValue"].as_str().unwrap_or("?")
    );
    Ok(())
}
