//! `Image`: a bootable disk image (Glance's image).
//!
//! DESIGN lists public images as cluster-scoped and private ones as project-scoped; one kind
//! cannot have two scopes, so `Image` is **project-scoped** and visibility is a field, as in
//! Glance: `spec.visibility: public` images are listed and usable in every project (the
//! owning project — normally `admin` — manages them), `private` ones only in their own
//! project, `shared` ones also in the projects named in `spec.members` that accepted the share
//! (an [`ImageMember`](crate::ImageMember) in their project; before that they see it by id
//! only), and `community` ones by anyone who names them but are not listed elsewhere. Name lookups from another project
//! (`image: cirros` in a Server) resolve to the project's own image first, then to a public
//! image of that name.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::imagemember::MemberStatus;
use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A disk image servers and volumes boot from. Project-scoped; `spec.visibility`
    /// decides who else sees it.
    Image {
        spec: ImageSpec,
        status: ImageStatus,
        plural: "images",
        singular: "image",
        short_names: ["img"],
        scope: Project,
    }
}

/// Who may see and use an image.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Every project (setting it needs the admin role).
    Public,
    /// Only the owning project.
    #[default]
    Private,
    /// The owning project and those listed in `spec.members`.
    Shared,
    /// Anyone, but listed only for the owner.
    Community,
}

/// Format of the disk inside the image (Glance's `disk_format`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// QEMU copy-on-write v2.
    #[default]
    Qcow2,
    /// Raw bytes.
    Raw,
    /// ISO 9660 optical disc.
    Iso,
    /// VMware disk.
    Vmdk,
    /// VirtualBox disk.
    Vdi,
    /// Hyper-V disk.
    Vhd,
    /// Hyper-V disk, newer format.
    Vhdx,
    /// Virtuozzo loop device.
    Ploop,
    /// Amazon machine image.
    Ami,
    /// Amazon ramdisk image.
    Ari,
    /// Amazon kernel image.
    Aki,
}

/// Wrapper around the disk (Glance's `container_format`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ContainerFormat {
    /// No container: the file is the disk.
    #[default]
    Bare,
    /// Open Virtualization Format descriptor.
    Ovf,
    /// OVF package as a tar archive.
    Ova,
    /// Amazon machine image.
    Ami,
    /// Amazon ramdisk.
    Ari,
    /// Amazon kernel.
    Aki,
    /// Docker tar archive.
    Docker,
    /// Compressed archive.
    Compressed,
}

/// Where the image controller fetches the data from (Glance's `web-download` import).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSource {
    /// `http://`, `https://` or `file://` URL of the image data.
    pub url: String,
    /// Expected SHA-256 of the data, hex; a mismatch makes the image `killed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Desired state of an image.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSpec {
    /// Who may see and use the image.
    #[serde(default)]
    pub visibility: Visibility,
    /// Projects the image is shared with (only with `visibility: shared`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Format of the disk.
    #[serde(default)]
    pub disk_format: DiskFormat,
    /// Container around the disk.
    #[serde(default)]
    pub container_format: ContainerFormat,
    /// Where to download the data from; absent when the data is uploaded through the API
    /// (`PUT /v2/images/{id}/file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ImageSource>,
    /// Smallest root disk, in GiB, a server booting it needs.
    #[serde(default, skip_serializing_if = "crate::kinds::is_zero")]
    pub min_disk: u64,
    /// Smallest RAM, in MiB, a server booting it needs.
    #[serde(default, skip_serializing_if = "crate::kinds::is_zero")]
    pub min_ram: u64,
    /// A protected image cannot be deleted.
    #[serde(default, skip_serializing_if = "crate::kinds::is_false")]
    pub protected: bool,
    /// Free-form properties; `hw_*` and `os_*` ones (`hw_disk_bus`, `hw_firmware_type`,
    /// `os_distro`, `os_type`) guide drivers and the scheduler.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Lifecycle of an image, Glance's image statuses.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ImagePhase {
    /// Created, no data yet.
    Queued,
    /// Data being written.
    Saving,
    /// Data staged through the interoperable import, not yet imported.
    Uploading,
    /// Import in progress (download from `spec.source`).
    Importing,
    /// Usable.
    Active,
    /// Data hidden from non-admins.
    Deactivated,
    /// Upload or import failed.
    Killed,
    /// Deleted; kept for bookkeeping.
    Deleted,
    /// Deleted, data removal pending.
    PendingDelete,
}

/// Observed state of an image.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageStatus {
    /// Where the image is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ImagePhase>,
    /// Size of the image file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Size of the disk the image expands to, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
    /// MD5 of the data, hex (Glance's legacy `checksum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Algorithm of `osHashValue`: `sha256` or `sha512`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_hash_algo: Option<String>,
    /// Secure hash of the data, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_hash_value: Option<String>,
    /// Where the image store keeps the data (internal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observations; `Ready` when the image is active.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Who may see and use an image, written once for every part of Cirrus that resolves one
/// (native authorization, Nova, Glance, Cinder, the scheduler, the node agent).
impl Image {
    /// Whether `project` may see this image by id: its own, a public or community one, or
    /// one shared with it whatever its answer (Glance shows a pending share to the member,
    /// so it can decide).
    pub fn visible_to(&self, project: &str) -> bool {
        self.metadata.project.as_deref() == Some(project)
            || match self.spec.visibility {
                Visibility::Public | Visibility::Community => true,
                Visibility::Shared => self.offered_to(project),
                Visibility::Private => false,
            }
    }

    /// Whether the owner lists `project` as a member (the share offered, not yet answered).
    pub fn offered_to(&self, project: &str) -> bool {
        self.spec.visibility == Visibility::Shared && self.spec.members.iter().any(|m| m == project)
    }

    /// Whether `project` may use this image when it names it exactly (by uid, or by its
    /// owner and name): its own, a public or community one, or one shared with it that it
    /// accepted — `answer` is the project's [`ImageMember`](crate::ImageMember) for this
    /// image, if it has one.
    pub fn usable_by(&self, project: &str, answer: Option<MemberStatus>) -> bool {
        match self.spec.visibility {
            Visibility::Shared if self.metadata.project.as_deref() != Some(project) => {
                self.offered_to(project) && answer == Some(MemberStatus::Accepted)
            }
            _ => self.visible_to(project),
        }
    }

    /// Whether the image appears in `project`'s image list: its own, public ones, and
    /// shares whose `answer` (pending when the project has no `ImageMember`) matches
    /// `member_status` — Glance's `member_status` query, `accepted` unless asked otherwise,
    /// `None` for all answers. Community images are reached by id.
    pub fn listed_for(
        &self,
        project: &str,
        answer: MemberStatus,
        member_status: Option<MemberStatus>,
    ) -> bool {
        if self.metadata.project.as_deref() == Some(project) {
            return true;
        }
        match self.spec.visibility {
            Visibility::Public => true,
            Visibility::Shared if self.offered_to(project) => {
                member_status.is_none_or(|wanted| wanted == answer)
            }
            _ => false,
        }
    }

    /// Whether a lookup by bare name from `project` may pick this image: its own, else a
    /// public one. Names are not unique across projects, so a community image or one shared
    /// into the project could otherwise stand in for the image its user meant (only cloud
    /// admins make images public); those are used by uid.
    pub fn findable_by_name_from(&self, project: &str) -> bool {
        self.metadata.project.as_deref() == Some(project)
            || self.spec.visibility == Visibility::Public
    }

    /// How a server or volume of `project` should name this image in its spec so that every
    /// later lookup finds exactly this one: the name when a by-name lookup finds it, else
    /// the uid.
    pub fn reference_from(&self, project: &str) -> String {
        match (&self.metadata.uid, self.findable_by_name_from(project)) {
            (Some(uid), false) => uid.clone(),
            _ => self.metadata.name.clone(),
        }
    }
}

impl Validate for Image {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        if !spec.members.is_empty() && spec.visibility != Visibility::Shared {
            errors.add(
                "spec.members",
                "only images with visibility \"shared\" have members",
            );
        }
        crate::kinds::check_refs(errors, "spec.members", &spec.members);
        if let Some(source) = &spec.source {
            let ok = ["http://", "https://", "file://"]
                .iter()
                .any(|p| source.url.starts_with(p) && source.url.len() > p.len());
            if !ok {
                errors.add(
                    "spec.source.url",
                    "must be an http://, https:// or file:// URL",
                );
            }
            if let Some(sum) = &source.sha256
                && (sum.len() != 64 || !sum.chars().all(|c| c.is_ascii_hexdigit()))
            {
                errors.add("spec.source.sha256", "must be 64 hex digits");
            }
        }
        crate::kinds::check_metadata(errors, "spec.properties", &spec.properties);
        let mut seen = BTreeSet::new();
        for (i, tag) in spec.tags.iter().enumerate() {
            if tag.is_empty() || tag.chars().count() > 255 {
                errors.add(format!("spec.tags[{i}]"), "tags are 1 to 255 characters");
            }
            if !seen.insert(tag) {
                errors.add(format!("spec.tags[{i}]"), format!("duplicate tag {tag:?}"));
            }
        }
    }
}

#[cfg(test)]
mod visibility_tests {
    use super::*;
    use crate::meta::ObjectMeta;

    /// The visibility × project table every resolver follows.
    #[test]
    fn usable_and_findable_by_name() {
        let image = |visibility: Visibility, members: &[&str]| {
            Image::new(
                ObjectMeta {
                    name: "img".into(),
                    project: Some("owner".into()),
                    uid: Some("0b6c1c9e-3f43-4c1e-9a4e-5d1f0c2b7a10".into()),
                    ..Default::default()
                },
                ImageSpec {
                    visibility,
                    members: members.iter().map(|m| m.to_string()).collect(),
                    ..Default::default()
                },
            )
        };
        use Visibility::*;
        #[rustfmt::skip]
        let table = [
            // visibility, members, project, usable (exact), findable by name
            (Private,   &[][..],        "owner",  true,  true),
            (Private,   &[][..],        "other",  false, false),
            (Public,    &[][..],        "other",  true,  true),
            (Community, &[][..],        "other",  true,  false),
            (Shared,    &["member"][..], "member", true,  false),
            (Shared,    &["member"][..], "other",  false, false),
            (Shared,    &["member"][..], "owner",  true,  true),
        ];
        for (visibility, members, project, usable, findable) in table {
            let i = image(visibility, members);
            let accepted = Some(MemberStatus::Accepted);
            assert_eq!(
                i.usable_by(project, accepted),
                usable,
                "{visibility:?} from {project}"
            );
            assert_eq!(
                i.findable_by_name_from(project),
                findable,
                "{visibility:?} from {project}"
            );
            let reference = i.reference_from(project);
            assert_eq!(
                reference == "img",
                findable,
                "{visibility:?} from {project}: {reference}"
            );
        }
    }

    /// A share is usable and listed only once the member accepted it; it is visible by id
    /// whatever the answer; the owner's answer-free view is unchanged.
    #[test]
    fn shares_need_the_members_acceptance() {
        let image = Image::new(
            ObjectMeta {
                name: "img".into(),
                project: Some("owner".into()),
                ..Default::default()
            },
            ImageSpec {
                visibility: Visibility::Shared,
                members: vec!["member".into()],
                ..Default::default()
            },
        );
        use MemberStatus::*;
        for (answer, usable) in [
            (None, false),
            (Some(Pending), false),
            (Some(Rejected), false),
            (Some(Accepted), true),
        ] {
            assert_eq!(image.usable_by("member", answer), usable, "{answer:?}");
            assert!(image.visible_to("member"), "{answer:?}");
            assert!(!image.usable_by("stranger", answer), "{answer:?}");
            assert!(image.usable_by("owner", answer), "{answer:?}");
        }
        let answer = |a: MemberStatus| a;
        assert!(image.listed_for("member", answer(Accepted), Some(Accepted)));
        assert!(!image.listed_for("member", answer(Pending), Some(Accepted)));
        assert!(image.listed_for("member", answer(Pending), Some(Pending)));
        assert!(image.listed_for("member", answer(Rejected), None));
        assert!(!image.listed_for("stranger", answer(Accepted), None));
        assert!(image.listed_for("owner", answer(Pending), Some(Accepted)));
        assert_eq!(MemberStatus::parse("accepted"), Some(Accepted));
        assert_eq!(MemberStatus::parse("maybe"), None);
    }
}
