//! The HTTP API's wire types, shared by the server and the client.
//!
//! Each type is the JSON one route sends or accepts, defined once so that
//! `server` (which builds and parses them) and `client`/`commands` (which read
//! and send them) cannot drift apart. Plain data: no I/O, no axum, no reqwest.
//! Query parameters and the server's own parsing of them stay in `server`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `GET /v1/status`: the node's own report, plus the address the API listens on.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StatusBody {
    #[serde(flatten)]
    pub(crate) status: agora::NodeStatus,
    pub(crate) api: SocketAddr,
}

/// The header every reply carries: the answering node's identity key (hex).
pub(crate) const IDENTITY_HEADER: &str = "x-agora-identity";

/// `GET /v1/identity[?challenge=HEX]`: the node's identity key and, with a
/// challenge (32 bytes, hex), its signature of
/// [`agora::identity_proof_message`]`(challenge)` by that key.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct IdentityBody {
    pub(crate) identity: agora::PublicKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signature: Option<agora::core::Signature>,
}

/// The body of every error reply: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

/// What went wrong: a stable code for programs, a message for people.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorDetail {
    pub(crate) code: String,
    pub(crate) message: String,
}

/// A package as `GET /v1/packages/{name}` returns it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PackageBody {
    pub(crate) index: agora::SignedPackageIndex,
    /// The manifest of the default version, if any version is live.
    pub(crate) latest: Option<agora::SignedManifest>,
    /// Who claims the name, as this node knows it: `index` is the default claim's.
    pub(crate) claims: agora::core::NameClaims,
}

/// One line of the `POST /v1/packages/{name}/{version}/fetch` progress stream.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FetchLine {
    /// Where the transfer stands.
    pub(crate) progress: agora::TransferProgress,
    /// Set on the last line when the fetch failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// `POST /v1/packages/{name}/{version}/yank`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct YankBody {
    pub(crate) yanked: bool,
}

/// `POST /v1/packages/{name}/trust`: serve this owner's claim to the name.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrustBody {
    /// The owner's public key, hex.
    pub(crate) owner: String,
}

/// `POST /v1/packages/{name}/owners`: keys (hex) to add and to remove.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OwnersBody {
    #[serde(default)]
    pub(crate) add: Vec<String>,
    #[serde(default)]
    pub(crate) remove: Vec<String>,
}

/// The owners of a package (`GET` and `POST /v1/packages/{name}/owners`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OwnersList {
    pub(crate) name: agora::PackageName,
    /// Hex public keys, in the index's order.
    pub(crate) owners: Vec<String>,
}

/// `POST /v1/packages/{name}/{version}/pin`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PinBody {
    pub(crate) pinned: bool,
}

/// The reply of the key routes (`GET /v1/key`, `POST /v1/key/export`, `POST /v1/key/import`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KeyBody {
    pub(crate) public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secret_key: Option<String>,
}

/// `POST /v1/key/import`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportBody {
    pub(crate) secret_key: String,
    /// Switch even when the current key owns packages.
    #[serde(default)]
    pub(crate) force: bool,
}
