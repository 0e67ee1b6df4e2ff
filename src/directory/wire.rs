//! The directory's own upload messages (wire-format.md §14.4). Claims are `DSRequest`s of
//! types 12 and 13 ([`crate::wire::KeyPackageClaimRequest`]) answered by `DSResponse`s
//! ([`crate::wire::ClaimedKeyPackageSet`]); uploads have their own framing, like the Queueing
//! Service's client requests, because they are not a DS operation and carry no `DSAuthData`.

use tls_codec::{TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use crate::wire::{DsError, LastResort, MlsMessageBytes};

/// `SetPurpose` (uint8): which claims a set serves.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    TlsSerialize,
    TlsDeserializeBytes,
    TlsSize,
    serde::Serialize,
    serde::Deserialize,
)]
#[repr(u8)]
pub enum SetPurpose {
    /// `group(0)`: claimed with `key_packages(12)` at `/group_key_packages`, to add the user to
    /// a group.
    Group = 0,
    /// `connection(1)`: claimed with `connection_key_packages(13)` at
    /// `/connection_key_packages`, to add the user to a connection group.
    Connection = 1,
}

impl SetPurpose {
    /// `group` or `connection`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Connection => "connection",
        }
    }
}

/// `KeyPackageUpload`: one client's KeyPackage for one set.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct KeyPackageUpload {
    /// Which claims the set serves.
    pub purpose: SetPurpose,
    /// How many clients the user has, so how many KeyPackages complete the set (1 to the
    /// directory's `max_set_size`).
    pub set_size: u8,
    /// This client's slot in the set, below `set_size`; the user's clients agree on their
    /// indices among themselves.
    pub client_index: u8,
    /// An `MLSMessage` of wire format `mls_key_package`. Its leaf credential is a
    /// pseudonymous credential; its user pseudonym names the set. A `last_resort` extension
    /// makes the set a last-resort set (all its KeyPackages must agree).
    pub key_package: MlsMessageBytes,
}

/// `KeyPackageUploadRequest`, posted to `/key_package_upload`. No session and no identity:
/// the upload proves knowledge of the token's upload secret (wire-format.md §14.4).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct KeyPackageUploadRequest {
    /// `DSProtocolVersion`; only `mimi_ds10(1)`.
    pub version: u16,
    /// The connection token the KeyPackages are claimed with (32 bytes).
    pub connection_token: VLBytes,
    /// The secret the token derives from (32 bytes), known only to the user's clients:
    /// `connection_token = RefHash("MIMIMI ConnectionToken", upload_secret)`.
    pub upload_secret: VLBytes,
    /// The KeyPackages to store; none asks only for the status.
    pub uploads: Vec<KeyPackageUpload>,
}

/// `KeyPackageSetStatus`: what the directory holds of one set of the token.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct KeyPackageSetStatus {
    /// The set's user pseudonym.
    pub user_pseudonym: VLBytes,
    /// Which claims it serves.
    pub purpose: SetPurpose,
    /// KeyPackages that complete it.
    pub set_size: u8,
    /// Whether it is a last-resort set.
    pub last_resort: LastResort,
    /// The client indices that hold a KeyPackage, ascending.
    pub filled: VLBytes,
    /// The earliest `not_after` of its KeyPackages, seconds since the UNIX epoch.
    pub not_after: u64,
}

/// `DirectoryStatus`: every set the token holds, oldest first, so that each client can see
/// which sets lack its KeyPackage (MM-01 pseudonymous KeyPackage sets, upload steps 1 and 2).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct DirectoryStatus {
    /// The sets.
    pub sets: Vec<KeyPackageSetStatus>,
}

/// `KeyPackageUploadResponseBody`, selected by a uint8.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
#[non_exhaustive]
pub enum KeyPackageUploadResponseBody {
    /// `status(0)`: the upload was stored (or was empty); the token's sets afterwards.
    #[tls_codec(discriminant = 0)]
    Status(DirectoryStatus),
    /// `error(1)`: refused; nothing was stored.
    #[tls_codec(discriminant = 1)]
    Error(DsError),
}

/// `KeyPackageUploadResponse { uint16 version; KeyPackageUploadResponseBody body; }`.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct KeyPackageUploadResponse {
    /// `DSProtocolVersion`.
    pub version: u16,
    /// The answer.
    pub body: KeyPackageUploadResponseBody,
}
