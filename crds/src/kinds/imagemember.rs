//! `ImageMember`: a project's answer to an image shared with it (Glance's member status).
//!
//! The owner of a `shared` image offers it by listing projects in the image's `spec.members`;
//! each of those projects answers in its own project with an `ImageMember` named after the
//! image's uid: `accepted`, `rejected` or `pending` (no object at all also means pending).
//! Only an accepted share makes the image usable by the member (boot a server, make a volume,
//! download the data) and listed among its images; until then the member can only look at
//! it by id. Keeping the answer in the member's own project means each side writes only its
//! own objects: the owner cannot accept on the member's behalf, the member cannot add itself.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A project's answer to an image shared with it; named after the image's uid.
    /// Project-scoped (the member's project).
    ImageMember {
        spec: ImageMemberSpec,
        status: ImageMemberStatus,
        plural: "imagemembers",
        singular: "imagemember",
        short_names: ["imgm"],
        scope: Project,
    }
}

/// A member's answer to a share (Glance's member `status`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// Not answered yet: the image is visible by id but not usable or listed.
    #[default]
    Pending,
    /// Accepted: usable and listed.
    Accepted,
    /// Declined: visible by id only (as pending), until the member changes its mind.
    Rejected,
}

impl MemberStatus {
    /// The word Glance uses.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Pending => "pending",
            MemberStatus::Accepted => "accepted",
            MemberStatus::Rejected => "rejected",
        }
    }

    /// The status Glance's word names, if any.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "pending" => Some(MemberStatus::Pending),
            "accepted" => Some(MemberStatus::Accepted),
            "rejected" => Some(MemberStatus::Rejected),
            _ => None,
        }
    }
}

/// Desired state of a member's answer.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageMemberSpec {
    /// The answer.
    #[serde(default)]
    pub member_status: MemberStatus,
}

/// Observed state (nothing is observed about an answer; kept for the common shape).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageMemberStatus {
    /// Observations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Validate for ImageMember {
    fn validate(&self, errors: &mut FieldErrors) {
        if uuid::Uuid::parse_str(&self.metadata.name).is_err() {
            errors.add(
                "metadata.name",
                "must be the uid of the shared image the answer is about",
            );
        }
    }
}
