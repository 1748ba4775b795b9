//! What every kind has in common: the [`Resource`] trait, the [`KindInfo`] registry entry the
//! generic API and CLI work from, and validation that names the offending field.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::meta::ObjectMeta;
use crate::validation::{FieldError, FieldErrors};

/// The API group and version of every Cirrus kind.
pub const API_VERSION: &str = "cirrus.dev/v1";

/// Whether objects of a kind live in a project or cluster-wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One namespace for the whole cloud (flavors, nodes, projects, ...).
    Cluster,
    /// Names are unique per project (servers, networks, volumes, ...).
    Project,
}

/// Semantic checks beyond what the types express (ranges, formats, cross-field rules).
///
/// Implementations push every problem they find, with a dotted path from the object root
/// (`spec.ram`), so a client learns all mistakes at once.
pub trait Validate {
    /// Appends every problem found in `self` to `errors`.
    fn validate(&self, errors: &mut FieldErrors) {
        let _ = errors;
    }
}

/// A typed Cirrus kind: a struct with `apiVersion`, `kind`, `metadata`, `spec` and `status`.
pub trait Resource:
    Serialize + DeserializeOwned + schemars::JsonSchema + Validate + Clone + Send + Sync + 'static
{
    /// CamelCase kind name, e.g. `Flavor`.
    const KIND: &'static str;
    /// Lowercase plural used in URLs and keys, e.g. `flavors`.
    const PLURAL: &'static str;
    /// Project or cluster scope.
    const SCOPE: Scope;
    /// Extra names the CLI accepts (`fl` for flavors, ...).
    const SHORT_NAMES: &'static [&'static str];
    /// The desired-state part written by users.
    type Spec;
    /// The observed-state part written by controllers.
    type Status;

    /// The object's metadata.
    fn meta(&self) -> &ObjectMeta;
    /// The object's metadata, mutable.
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// The registry entry describing this kind.
    fn info() -> &'static KindInfo;
}

/// Everything the generic layers (store, API, CLI) need to know about one kind, without
/// naming its Rust type.
pub struct KindInfo {
    /// CamelCase kind name.
    pub kind: &'static str,
    /// Lowercase plural (URL segment and key prefix).
    pub plural: &'static str,
    /// Lowercase singular, accepted by the CLI.
    pub singular: &'static str,
    /// Extra short names accepted by the CLI.
    pub short_names: &'static [&'static str],
    /// Project or cluster scope.
    pub scope: Scope,
    /// The JSON Schema of a whole object of this kind.
    pub schema: fn() -> schemars::Schema,
    /// Parses `value` as this kind, runs its semantic checks and returns the normalized
    /// object (defaults filled in), or every problem with its field path.
    pub validate: fn(Value) -> Result<Value, FieldErrors>,
}

impl std::fmt::Debug for KindInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KindInfo")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl KindInfo {
    /// True for names the CLI and API accept for this kind (kind, plural, singular, short
    /// names; case-insensitive).
    pub fn matches_name(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        name == self.plural || name == self.singular || self.short_names.contains(&name.as_str())
    }
}

/// Parses and validates `value` as kind `K`, returning the normalized JSON.
///
/// Unknown fields, wrong types and missing required fields are reported with the dotted path
/// of the field; `apiVersion` and `kind`, when present, must name `K`.
pub fn validate_as<K: Resource>(mut value: Value) -> Result<Value, FieldErrors> {
    let mut errors = FieldErrors::default();
    if let Some(map) = value.as_object_mut() {
        match map.get("apiVersion") {
            None => {
                map.insert("apiVersion".into(), Value::from(API_VERSION));
            }
            Some(Value::String(v)) if v == API_VERSION => {}
            Some(other) => errors.push(FieldError::new(
                "apiVersion",
                format!("must be \"{API_VERSION}\", got {other}"),
            )),
        }
        match map.get("kind") {
            None => {
                map.insert("kind".into(), Value::from(K::KIND));
            }
            Some(Value::String(k)) if k == K::KIND => {}
            Some(other) => errors.push(FieldError::new(
                "kind",
                format!("must be \"{}\", got {other}", K::KIND),
            )),
        }
    } else {
        errors.push(FieldError::new("", "an object must be a JSON/YAML mapping"));
        return Err(errors);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let typed: K = match serde_path_to_error::deserialize(value) {
        Ok(typed) => typed,
        Err(err) => {
            errors.push(FieldError::from_serde(err.path().to_string(), err.inner()));
            return Err(errors);
        }
    };
    crate::validation::validate_meta(typed.meta(), K::SCOPE, &mut errors);
    typed.validate(&mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(serde_json::to_value(&typed).expect("a typed object always serializes"))
}

/// Declares a kind: the object struct (`apiVersion`, `kind`, `metadata`, `spec`, `status`)
/// and its [`Resource`] implementation.
#[macro_export]
macro_rules! kind {
    (
        $(#[$doc:meta])*
        $name:ident {
            spec: $spec:ty,
            status: $status:ty,
            plural: $plural:literal,
            singular: $singular:literal,
            short_names: [$($short:literal),* $(,)?],
            scope: $scope:ident $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            /// Always `cirrus.dev/v1`.
            pub api_version: String,
            /// Always the kind's name.
            pub kind: String,
            /// Name, project, labels and store bookkeeping.
            pub metadata: $crate::meta::ObjectMeta,
            /// Desired state, written by users.
            #[serde(default)]
            pub spec: $spec,
            /// Observed state, written by controllers.
            #[serde(default)]
            pub status: $status,
        }

        impl $name {
            /// A new object with the given metadata and spec and an empty status.
            pub fn new(metadata: $crate::meta::ObjectMeta, spec: $spec) -> Self {
                Self {
                    api_version: $crate::resource::API_VERSION.to_string(),
                    kind: stringify!($name).to_string(),
                    metadata,
                    spec,
                    status: Default::default(),
                }
            }
        }

        impl $crate::resource::Resource for $name {
            const KIND: &'static str = stringify!($name);
            const PLURAL: &'static str = $plural;
            const SCOPE: $crate::resource::Scope = $crate::resource::Scope::$scope;
            const SHORT_NAMES: &'static [&'static str] = &[$($short),*];
            type Spec = $spec;
            type Status = $status;

            fn meta(&self) -> &$crate::meta::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut $crate::meta::ObjectMeta {
                &mut self.metadata
            }
            fn info() -> &'static $crate::resource::KindInfo {
                static INFO: $crate::resource::KindInfo = $crate::resource::KindInfo {
                    kind: stringify!($name),
                    plural: $plural,
                    singular: $singular,
                    short_names: &[$($short),*],
                    scope: $crate::resource::Scope::$scope,
                    schema: || schemars::schema_for!($name),
                    validate: $crate::resource::validate_as::<$name>,
                };
                &INFO
            }
        }
    };
}
