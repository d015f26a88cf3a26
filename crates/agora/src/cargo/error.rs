//! [`CargoError`]: why cargo's input cannot become an Agora publication, in the
//! words a cargo user reads (the HTTP layer sends the Display as
//! `{"errors":[{"detail": …}]}`).

use agora_core::CrateNameError;

/// What can be wrong with a publish request, a `.crate` file or a crate entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CargoError {
    /// The body of `PUT /api/v1/crates/new` is not cargo's framing (lengths and
    /// parts).
    #[error("malformed publish request: {0}")]
    MalformedBody(String),
    /// The publish request's JSON does not parse, or not as cargo's publish
    /// metadata.
    #[error("the publish request's JSON is invalid: {0}")]
    InvalidJson(String),
    /// A part of the input is over its size limit.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What is too large ("the .crate file", "the publish request's JSON", …).
        what: &'static str,
        /// Its size (or as much of it as was read).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The `.crate` file is not a readable gzip-compressed tar.
    #[error("the .crate file is not a valid gzip-compressed tar: {0}")]
    BadCrateFile(String),
    /// An entry of the `.crate` file lies outside its `<name>-<version>/`
    /// directory or has an unusable path.
    #[error("the .crate file has an unsafe path: {0}")]
    UnsafePath(String),
    /// The `.crate` file has more entries than allowed.
    #[error("the .crate file has more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: usize,
    },
    /// The `.crate` file has no `<name>-<version>/Cargo.toml`.
    #[error("the .crate file has no {0}")]
    MissingCargoToml(String),
    /// The `.crate` file's `Cargo.toml` does not parse or has the wrong shape.
    #[error("the .crate file's {origin} is invalid: {message}")]
    InvalidCargoToml {
        /// Where in the `.crate` file (`foo-1.0.0/Cargo.toml`).
        origin: String,
        /// What is wrong; TOML's own message for syntax errors.
        message: String,
    },
    /// A crate name breaks crates.io's naming rules.
    #[error(transparent)]
    InvalidName(#[from] CrateNameError),
    /// A version does not parse as semver.
    #[error("invalid version `{input}`: {reason}")]
    InvalidVersion {
        /// The offending text (at most 80 characters).
        input: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The publish request and the `.crate` file's `Cargo.toml` say different
    /// things; the message names the first difference.
    #[error("{0}")]
    Disagreement(String),
    /// A metadata field Agora requires is missing or empty (description).
    #[error("missing or empty metadata fields: {0}")]
    MissingMetadata(String),
    /// Another spelling of this crate name is already published.
    #[error(
        "crate `{requested}` is already published as `{existing}`; crate names are case-insensitive and treat `-` \
         and `_` alike, so publish it as `{existing}`"
    )]
    NearDuplicate {
        /// The spelling already published.
        existing: String,
        /// The spelling asked for.
        requested: String,
    },
    /// The crate entry or the package metadata breaks Agora's rules.
    #[error("{0}")]
    Invalid(String),
}

impl From<agora_core::Error> for CargoError {
    fn from(error: agora_core::Error) -> Self {
        match error {
            agora_core::Error::InvalidManifest(message) => CargoError::Invalid(message),
            agora_core::Error::InvalidVersion { input, reason } => CargoError::InvalidVersion { input, reason },
            other => CargoError::Invalid(other.to_string()),
        }
    }
}
