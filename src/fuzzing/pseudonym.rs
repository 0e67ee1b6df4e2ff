//! Fuzz body for the MIMIMI codecs (wire-format.md §14): whatever decodes re-encodes to the
//! same bytes, and the hub's and clients' checks of a decoded value never panic.

use openmls_rust_crypto::RustCrypto;

use super::roundtrip;
use crate::pseudonym::link::{authenticate, IdentityLinkKey};
use crate::pseudonym::{
    IdentifierUri, IdentityLinkTbe, PseudonymKind, PseudonymousCredential,
    PseudonymousCredentialTbs,
};
use crate::testing::CIPHERSUITE;
use crate::wire::decode_exact;

/// Fuzz body: `PseudonymousCredential`, its TBS, `IdentityLinkTBE` and `IdentifierUri`
/// decoding; pseudonym parsing and identity-link opening of whatever decodes.
pub fn decode_pseudonymous(data: &[u8]) {
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
