//! The pseudonymous-credential structures of draft-mahy-mimi-metadata-minimization (MIMIMI)
//! §"Pseudonymous credentials" as docs/wire-format.md §14.1 encodes them.

use tls_codec::{Serialize as _, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes};

use crate::destination::check_host_name;
use crate::wire::{decode_exact, DecodeError};

/// The kind of pseudonym, which is the path segment after the provider domain: `u` for a user
/// pseudonym, `d` for a client (device) pseudonym, as in MIMI's `mimi://<domain>/u/<user>` and
/// `mimi://<domain>/d/<user>/<device>` identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PseudonymKind {
    /// `mimi://<domain>/u/<uuid>`.
    User,
    /// `mimi://<domain>/d/<uuid>`.
    Client,
}

impl PseudonymKind {
    fn segment(self) -> &'static str {
        match self {
            Self::User => "u",
            Self::Client => "d",
        }
    }
}

/// Why a pseudonym URI is not canonical (wire-format.md §14.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PseudonymError {
    /// Not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// Not of the form `mimi://<domain>/<kind>/<uuid>` with the expected kind.
    #[error("not mimi://<domain>/{0}/<uuid>")]
    NotPseudonymUri(&'static str),
    /// The domain is not a lowercase DNS host name (wire-format.md §6.3).
    #[error("the domain is not a host name: {0}")]
    Domain(String),
    /// The UUID is not a lowercase, hyphenated RFC 9562 version-4 UUID.
    #[error("not a lowercase hyphenated version-4 UUID")]
    NotUuidV4,
}

/// `struct { opaque uri<V>; } IdentifierUri` (draft-ietf-mimi-protocol), holding a pseudonym
/// `mimi://<provider-domain>/u/<uuid>` or `mimi://<provider-domain>/d/<uuid>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct IdentifierUri {
    /// The URI's bytes (UTF-8).
    pub uri: VLBytes,
}

impl IdentifierUri {
    /// The pseudonym of `kind` for `uuid` (16 random bytes; the version and variant bits are set
    /// here) at `domain`.
    pub fn pseudonym(kind: PseudonymKind, domain: &str, uuid: [u8; 16]) -> Self {
        Self {
            uri: format!(
                "mimi://{domain}/{}/{}",
                kind.segment(),
                format_uuid_v4(uuid)
            )
            .into_bytes()
            .into(),
        }
    }

    /// Splits a canonical pseudonym of `kind` into its domain and UUID text.
    pub fn parse_pseudonym(&self, kind: PseudonymKind) -> Result<(&str, &str), PseudonymError> {
        let uri = std::str::from_utf8(self.uri.as_slice()).map_err(|_| PseudonymError::NotUtf8)?;
        let not_uri = PseudonymError::NotPseudonymUri(kind.segment());
        let rest = uri.strip_prefix("mimi://").ok_or(not_uri.clone())?;
        let mut parts = rest.split('/');
        let (Some(domain), Some(segment), Some(uuid), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(not_uri);
        };
        if segment != kind.segment() {
            return Err(not_uri);
        }
        check_host_name(domain).map_err(|e| PseudonymError::Domain(e.to_string()))?;
        if !is_canonical_uuid_v4(uuid) {
            return Err(PseudonymError::NotUuidV4);
        }
        Ok((domain, uuid))
    }
}

/// RFC 9562 §5.4: version 4 in the high nibble of octet 6, variant `10` in the top bits of
/// octet 8; written as lowercase hex in groups 8-4-4-4-12.
fn format_uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Whether `text` is what [`format_uuid_v4`] writes: one spelling per UUID, so pseudonyms are
/// compared as bytes.
fn is_canonical_uuid_v4(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        })
        && bytes[14] == b'4'
        && matches!(bytes[19], b'8' | b'9' | b'a' | b'b')
}

/// `PseudonymousCredential` (MIMIMI §"Pseudonymous credentials"; wire-format.md §14.1): the
/// content of an MLS `Credential` of type [`super::PSEUDONYMOUS_CREDENTIAL_TYPE`].
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct PseudonymousCredential {
    /// Fresh per credential: `mimi://<domain>/d/<uuid>`.
    pub client_pseudonym: IdentifierUri,
    /// Shared by the user's leaves in one room: `mimi://<domain>/u/<uuid>`.
    pub user_pseudonym: IdentifierUri,
    /// The leaf's signature public key (MIMIMI writes it without a length; encoded `<V>` as
    /// the digest's gap 20 recommends, so post-quantum keys fit).
    pub signature_public_key: VLBytes,
    /// `IdentityLinkTBE` encrypted under the credential's `identity_link_key`.
    pub identity_link_ciphertext: VLBytes,
}

/// `PseudonymousCredentialTBS`: the credential without its ciphertext. It is what the real
/// credential signs, the context of the `identity_link_key` derivation and the AEAD's
/// associated data.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct PseudonymousCredentialTbs {
    /// As in [`PseudonymousCredential`].
    pub client_pseudonym: IdentifierUri,
    /// As in [`PseudonymousCredential`].
    pub user_pseudonym: IdentifierUri,
    /// As in [`PseudonymousCredential`].
    pub signature_public_key: VLBytes,
}

impl PseudonymousCredential {
    /// The signed part.
    pub fn tbs(&self) -> PseudonymousCredentialTbs {
        PseudonymousCredentialTbs {
            client_pseudonym: self.client_pseudonym.clone(),
            user_pseudonym: self.user_pseudonym.clone(),
            signature_public_key: self.signature_public_key.clone(),
        }
    }

    /// Decodes the content of a credential of type [`super::PSEUDONYMOUS_CREDENTIAL_TYPE`]:
    /// exactly one `PseudonymousCredential`.
    pub fn decode(content: &[u8]) -> Result<Self, DecodeError> {
        decode_exact(content)
    }

    /// The encoding, which is the content of the MLS `Credential`.
    pub fn encode(&self) -> Result<Vec<u8>, tls_codec::Error> {
        self.tls_serialize_detached()
    }
}

impl PseudonymousCredentialTbs {
    /// The encoding (the context and associated data wire-format.md §14.1 uses).
    pub fn encode(&self) -> Result<Vec<u8>, tls_codec::Error> {
        self.tls_serialize_detached()
    }
}

/// `IdentityLinkTBE`: what the identity link ciphertext holds. MIMIMI names only the
/// signature and the real credential; `client_signature_key` is added because a credential
/// need not contain its key (a `BasicCredential` does not), and the signature must be verified
/// with it (wire-format.md §14.1). Whoever decrypts it checks, with its identity system, that
/// the key belongs to the credential.
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct IdentityLinkTbe {
    /// `SignWithLabel(real_key, "PseudonymousCredentialTBS", PseudonymousCredentialTBS)`.
    pub pseudonymous_credential_signature: VLBytes,
    /// The client's real MLS `Credential`, encoded (RFC 9420 §5.3).
    pub client_credential: VLBytes,
    /// The real credential's signature public key.
    pub client_signature_key: VLBytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_canonical_and_parse_back() {
        let user = IdentifierUri::pseudonym(PseudonymKind::User, "a.example", [0xff; 16]);
        assert_eq!(
            user.uri.as_slice(),
            b"mimi://a.example/u/ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
        assert_eq!(
            user.parse_pseudonym(PseudonymKind::User),
            Ok(("a.example", "ffffffff-ffff-4fff-bfff-ffffffffffff"))
        );
        assert_eq!(
            user.parse_pseudonym(PseudonymKind::Client),
            Err(PseudonymError::NotPseudonymUri("d"))
        );
        let bad = |uri: &str| IdentifierUri {
            uri: uri.as_bytes().to_vec().into(),
        };
        for (uri, error) in [
            (
                "mimi://a.example/u/FFFFFFFF-FFFF-4FFF-BFFF-FFFFFFFFFFFF",
                PseudonymError::NotUuidV4,
            ),
            (
                "mimi://a.example/u/ffffffff-ffff-1fff-bfff-ffffffffffff",
                PseudonymError::NotUuidV4,
            ),
            (
                "mimi://a.example/u/ffffffff-ffff-4fff-7fff-ffffffffffff",
                PseudonymError::NotUuidV4,
            ),
            (
                "mimi://a.example/u/ffffffff-ffff-4fff-bfff-ffffffffffff/x",
                PseudonymError::NotPseudonymUri("u"),
            ),
            (
                "https://a.example/u/ffffffff-ffff-4fff-bfff-ffffffffffff",
                PseudonymError::NotPseudonymUri("u"),
            ),
        ] {
            assert_eq!(bad(uri).parse_pseudonym(PseudonymKind::User), Err(error));
        }
        assert!(matches!(
            bad("mimi://A.example/u/ffffffff-ffff-4fff-bfff-ffffffffffff")
                .parse_pseudonym(PseudonymKind::User),
            Err(PseudonymError::Domain(_))
        ));
        assert_eq!(
            IdentifierUri {
                uri: vec![0xff].into()
            }
            .parse_pseudonym(PseudonymKind::User),
            Err(PseudonymError::NotUtf8)
        );
    }
}
