//! Cirrus object types, API group `cirrus.dev/v1`.
//!
//! Types only: no async, no I/O. Every kind is a struct with `apiVersion`, `kind`,
//! `metadata` ([`meta::ObjectMeta`]), `spec` (desired, written by users) and `status`
//! (observed, written by controllers, with [`meta::Condition`]s). The generic layers — store,
//! API, CLI — work from [`resource::KindInfo`] entries found through [`all_kinds`] and
//! [`find_kind`], so adding a kind means adding a module and one line to [`all_kinds`].
//!
//! JSON Schemas of every kind are generated into `crds/schemas/` and a test fails when they
//! drift from the code (`cargo test -p cirrus-crds`, regenerate with
//! `CIRRUS_UPDATE_SCHEMAS=1`).

pub mod conventions;
pub mod image_magic;
pub mod keystone;
pub mod kinds;
pub mod meta;
pub mod resource;
pub mod validation;

pub use kinds::applyset::{ApplySet, ApplySetSpec, ApplySetStatus};
pub use kinds::event::{Event, EventSpec, EventStatus};
pub use kinds::flavor::{Flavor, FlavorSpec, FlavorStatus};
pub use kinds::floatingip::{FloatingIP, FloatingIPSpec, FloatingIPStatus};
pub use kinds::image::{Image, ImageSpec, ImageStatus};
pub use kinds::imagemember::{ImageMember, ImageMemberSpec, ImageMemberStatus, MemberStatus};
pub use kinds::ipallocation::{IpAllocation, IpAllocationSpec, IpAllocationStatus};
pub use kinds::keypair::{Keypair, KeypairSpec, KeypairStatus};
pub use kinds::lease::{Lease, LeaseSpec, LeaseStatus};
pub use kinds::network::{Network, NetworkSpec, NetworkStatus};
pub use kinds::node::{Node, NodeSpec, NodeStatus};
pub use kinds::port::{Port, PortSpec, PortStatus};
pub use kinds::project::{Project, ProjectSpec, ProjectStatus};
pub use kinds::rolebinding::{RoleBinding, RoleBindingSpec, RoleBindingStatus};
pub use kinds::router::{Router, RouterSpec, RouterStatus};
pub use kinds::securitygroup::{SecurityGroup, SecurityGroupSpec, SecurityGroupStatus};
pub use kinds::server::{Server, ServerSpec, ServerStatus};
pub use kinds::servergroup::{ServerGroup, ServerGroupSpec, ServerGroupStatus};
pub use kinds::subnet::{Subnet, SubnetSpec, SubnetStatus};
pub use kinds::tokenrevocation::{TokenRevocation, TokenRevocationSpec, TokenRevocationStatus};
pub use kinds::user::{User, UserSpec, UserStatus};
pub use kinds::volume::{Volume, VolumeSpec, VolumeStatus};
pub use kinds::volumesnapshot::{VolumeSnapshot, VolumeSnapshotSpec, VolumeSnapshotStatus};
pub use meta::{Condition, ConditionStatus, ObjectMeta, OwnerReference};
pub use resource::{API_VERSION, KindInfo, Resource, Scope, Validate};
pub use validation::{FieldError, FieldErrors};

/// Registry entries of every kind, in a stable order.
pub fn all_kinds() -> Vec<&'static KindInfo> {
    vec![
        Flavor::info(),
        Node::info(),
        Project::info(),
        User::info(),
        RoleBinding::info(),
        Image::info(),
        ImageMember::info(),
        Server::info(),
        Network::info(),
        Subnet::info(),
        Port::info(),
        IpAllocation::info(),
        Router::info(),
        FloatingIP::info(),
        SecurityGroup::info(),
        Volume::info(),
        VolumeSnapshot::info(),
        Keypair::info(),
        ServerGroup::info(),
        ApplySet::info(),
        Event::info(),
        Lease::info(),
        TokenRevocation::info(),
    ]
}

/// The kind a user means by `name` (kind, plural, singular or short name, any case).
pub fn find_kind(name: &str) -> Option<&'static KindInfo> {
    all_kinds()
        .into_iter()
        .find(|k| k.matches_name(name) || k.kind.eq_ignore_ascii_case(name))
}

/// The kind whose URL plural is exactly `plural`.
pub fn kind_by_plural(plural: &str) -> Option<&'static KindInfo> {
    all_kinds().into_iter().find(|k| k.plural == plural)
}
