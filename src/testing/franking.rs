//! Franked application messages for tests (wire-format.md §15.5): a minimal `mimiContent`
//! message, a client that puts its franking tag in the authenticated data through openmls's
//! `MlsGroup::set_aad`, and a hub that franks.

use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;
use openmls_traits::OpenMlsProvider as _;
use tls_codec::Serialize as _;

use super::{mls_bytes, TestClient, TestDs};
use crate::franking::{franking_tag, FrankingKey};
use crate::wire::{DsRequestBody, SafeAad, SendMessageRequest};

/// A CBOR head (RFC 8949 §3) of major type `major` and argument `len` (below 2^16).
fn cbor_head(major: u8, len: usize) -> Vec<u8> {
    let major = major << 5;
    match len {
        0..=23 => vec![major | len as u8],
        24..=255 => vec![major | 24, len as u8],
        _ => {
            let len = u16::try_from(len).expect("test content below 64 KiB");
            let [hi, lo] = len.to_be_bytes();
            vec![major | 25, hi, lo]
        }
    }
}

/// A minimal draft-ietf-mimi-content `mimiContent` array: `[salt, null (replaces), h''
/// (topicId), null (expires), null (inReplyTo), {} (extensions), [render, "", single part,
/// "text/plain;charset=utf-8", text]]`.
pub fn mimi_content(salt: [u8; 16], text: &str) -> Vec<u8> {
    let mut out = vec![0x87, 0x50];
    out.extend_from_slice(&salt);
    out.extend_from_slice(&[0xf6, 0x40, 0xf6, 0xf6, 0xa0]);
    out.extend_from_slice(&[0x85, 0x01, 0x60, 0x01]);
    let content_type = "text/plain;charset=utf-8";
    out.extend(cbor_head(3, content_type.len()));
    out.extend_from_slice(content_type.as_bytes());
    out.extend(cbor_head(2, text.len()));
    out.extend_from_slice(text.as_bytes());
    out
}

/// A franking key from a one-byte seed.
pub fn test_franking_key(seed: u8) -> FrankingKey {
    FrankingKey::from_bytes([seed; 32])
}

impl<C: OpenMlsCrypto + OpenMlsRand> TestDs<C> {
    /// The same DS, franking with `key`.
    pub fn franking_with(self, key: FrankingKey) -> Self {
        let Self {
            ds,
            storage,
            now_ms,
            external_sender,
        } = self;
        Self {
            ds: ds.with_franking_key(key),
            storage,
            now_ms,
            external_sender,
        }
    }
}

impl TestClient {
    /// `send_message` of `application_data` with `authenticated_data` set through
    /// `MlsGroup::set_aad` (openmls resets it after the message).
    pub fn message_request_with_aad(
        &mut self,
        application_data: &[u8],
        authenticated_data: Vec<u8>,
        now_ms: u64,
    ) -> Vec<u8> {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self.group.as_mut().expect("client has a group");
        group.set_aad(authenticated_data);
        let message = group
            .create_message(provider, signer, application_data)
            .expect("message");
        self.signed(
            DsRequestBody::SendMessage(SendMessageRequest {
                application_message: mls_bytes(&message),
            }),
            now_ms,
        )
    }

    /// `send_message` of an encoded `mimiContent` with its franking tag `HMAC-SHA256(salt,
    /// application_data)` in a SafeAAD `frank_aad` item.
    pub fn franked_message_request(&mut self, application_data: &[u8], now_ms: u64) -> Vec<u8> {
        let tag = franking_tag(self.provider.crypto(), application_data)
            .expect("application data is a mimiContent");
        let aad = SafeAad::with_franking_tag(&tag)
            .tls_serialize_detached()
            .expect("encode SafeAAD");
        self.message_request_with_aad(application_data, aad, now_ms)
    }
}
