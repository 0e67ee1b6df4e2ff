//! RFC 9420 §5.1.2 `SignWithLabel`/`VerifyWithLabel` and §5.1.3
//! `EncryptWithLabel`/`DecryptWithLabel`, through the caller's [`OpenMlsCrypto`] (which also
//! supplies the HPKE ephemeral keys: randomness is an input).

use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::signatures::Signer;
use openmls_traits::types::{HpkeCiphertext as MlsHpkeCiphertext, HpkeConfig, SignatureScheme};
use tls_codec::{Serialize as _, VLBytes};

use crate::wire::{encrypt_context, HpkeCiphertext};

/// `SignContent { opaque label<V> = "MLS 1.0 " + Label; opaque content<V>; }`.
pub(crate) fn sign_content(label: &str, content: &[u8]) -> Result<Vec<u8>, tls_codec::Error> {
    let mut full = b"MLS 1.0 ".to_vec();
    full.extend_from_slice(label.as_bytes());
    (VLBytes::from(full), VLBytes::from(content.to_vec())).tls_serialize_detached()
}

/// `SignWithLabel(key, label, content)`; `None` if encoding or the signer fails.
pub(crate) fn sign_with_label(
    signer: &impl Signer,
    label: &str,
    content: &[u8],
) -> Option<Vec<u8>> {
    let input = sign_content(label, content).ok()?;
    signer.sign(&input).ok()
}

/// `VerifyWithLabel(key, label, content, signature)`.
pub(crate) fn verify_with_label(
    crypto: &impl OpenMlsCrypto,
    scheme: SignatureScheme,
    public_key: &[u8],
    label: &str,
    content: &[u8],
    signature: &[u8],
) -> bool {
    sign_content(label, content).ok().is_some_and(|input| {
        crypto
            .verify_signature(scheme, &input, public_key, signature)
            .is_ok()
    })
}

/// `EncryptWithLabel(public_key, label, context, plaintext)` as an `HPKECiphertext`; `None`
/// if the key is not a public key of `config`'s KEM.
pub(crate) fn seal_with_label(
    crypto: &impl OpenMlsCrypto,
    config: HpkeConfig,
    public_key: &[u8],
    label: &str,
    context: &[u8],
    plaintext: &[u8],
) -> Option<HpkeCiphertext> {
    let info = encrypt_context(label, context).ok()?;
    let sealed = crypto
        .hpke_seal(config, public_key, &info, &[], plaintext)
        .ok()?;
    Some(HpkeCiphertext {
        kem_output: sealed.kem_output,
        ciphertext: sealed.ciphertext,
    })
}

/// `DecryptWithLabel(private_key, label, context, sealed)`; `None` if it does not open.
pub(crate) fn open_with_label(
    crypto: &impl OpenMlsCrypto,
    config: HpkeConfig,
    private_key: &[u8],
    label: &str,
    context: &[u8],
    sealed: &HpkeCiphertext,
) -> Option<Vec<u8>> {
    let info = encrypt_context(label, context).ok()?;
    crypto
        .hpke_open(
            config,
            &MlsHpkeCiphertext {
                kem_output: sealed.kem_output.clone(),
                ciphertext: sealed.ciphertext.clone(),
            },
            private_key,
            &info,
            &[],
        )
        .ok()
}
