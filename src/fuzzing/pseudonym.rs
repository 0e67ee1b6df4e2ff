//! Fuzz body for the MIMIMI codecs (wire-format.md §14): whatever decodes re-encodes to the
//! same bytes, and the hub's and clients' checks of a decoded value never panic.

use openmls_rust_crypto::RustCrypto;

use super::roundtrip;
use crate::pseudonym::group_links::{add_aad_of, SafeAad};
use crate::pseudonym::link::{authenticate, IdentityLinkKey};
use crate::pseudonym::{
    AddAad, EncryptedIdentityLinkKey, IdentifierUri, IdentityLinkKeys, IdentityLinkTbe,
    IdentityLinkWrapperKeyExtension, PseudonymKind, PseudonymousCredential,
    PseudonymousCredentialTbs,
};
use crate::testing::CIPHERSUITE;
use crate::wire::decode_exact;

/// Fuzz body: `PseudonymousCredential`, its TBS, `IdentityLinkTBE`, `IdentifierUri`, and the
/// identity-link structures of §14.2 (`SafeAAD`, `AddAAD`, `EncryptedIdentityLinkKey`, the
/// wrapper-key extension, `IdentityLinkKeys`) decoding; pseudonym parsing, identity-link
/// opening and the hub's reading of a commit's authenticated data never panic.
pub fn decode_pseudonymous(data: &[u8]) {
    roundtrip::<SafeAad>(data);
    roundtrip::<AddAad>(data);
    roundtrip::<EncryptedIdentityLinkKey>(data);
    roundtrip::<IdentityLinkWrapperKeyExtension>(data);
    roundtrip::<IdentityLinkKeys>(data);
    if let Ok(Some(aad)) = add_aad_of(data) {
        // Whatever the hub takes from a commit re-encodes.
        let _ = crate::wire::encode(&aad).expect("a decoded AddAAD re-encodes");
    }
    super::connection::safe_aad_invariants(data);
    roundtrip::<PseudonymousCredential>(data);
    roundtrip::<PseudonymousCredentialTbs>(data);
    roundtrip::<IdentityLinkTbe>(data);
    roundtrip::<IdentifierUri>(data);
    if let Ok(uri) = decode_exact::<IdentifierUri>(data) {
        for kind in [PseudonymKind::User, PseudonymKind::Client] {
            if let Ok((domain, uuid)) = uri.parse_pseudonym(kind) {
                // A canonical pseudonym is exactly what the constructor writes for it.
                assert_eq!(uuid.len(), 36);
                assert!(!domain.is_empty());
            }
        }
    }
    if let Ok(credential) = decode_exact::<PseudonymousCredential>(data) {
        // Nobody holds this key: opening must fail, and never panic.
        let key = IdentityLinkKey(vec![7; CIPHERSUITE.hash_length()]);
        assert!(authenticate(&RustCrypto::default(), CIPHERSUITE, &key, &credential).is_err());
    }
}
