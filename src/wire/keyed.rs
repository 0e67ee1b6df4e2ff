//! `StateKeyedRequest`, the body of `with_state_keys(25)` (wire-format.md §17.4): the keys of
//! a privacy-mode group wrapped around the operation's own body.

use tls_codec::{DeserializeBytes, Serialize, Size};

use super::request::{DsRequestBody, DsRequestType};
use crate::privacy::StateKeys;

/// `struct { StateKeys keys; DSRequestBody request; } StateKeyedRequest` (wire-format.md
/// §17.4). The inner `request` is the operation; it is never itself `with_state_keys` nor one
/// of the operations about no group's state ([`StateKeyedRequest::may_wrap`]), which the
/// decoder refuses (`malformed_request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateKeyedRequest {
    /// The group's state keys: the current epoch's, and for a request that creates an epoch
    /// the next one's.
    pub keys: StateKeys,
    /// The operation.
    pub request: Box<DsRequestBody>,
}

impl StateKeyedRequest {
    /// Whether a request of this type may be the inner body of a keyed request
    /// (wire-format.md §17.4): not `with_state_keys` itself, and not `request_group_id`,
    /// `signature_public_key`, `key_packages` or `connection_key_packages`, which concern no
    /// group's state.
    pub fn may_wrap(request_type: u8) -> bool {
        ![
            DsRequestType::WithStateKeys as u8,
            DsRequestType::RequestGroupId as u8,
            DsRequestType::SignaturePublicKey as u8,
            DsRequestType::KeyPackages as u8,
            DsRequestType::ConnectionKeyPackages as u8,
        ]
        .contains(&request_type)
    }
}

impl Size for StateKeyedRequest {
    fn tls_serialized_len(&self) -> usize {
        self.keys.tls_serialized_len() + self.request.tls_serialized_len()
    }
}

impl Serialize for StateKeyedRequest {
    fn tls_serialize<W: std::io::Write>(&self, writer: &mut W) -> Result<usize, tls_codec::Error> {
        Ok(self.keys.tls_serialize(writer)? + self.request.tls_serialize(writer)?)
    }
}

impl DeserializeBytes for StateKeyedRequest {
    fn tls_deserialize_bytes(bytes: &[u8]) -> Result<(Self, &[u8]), tls_codec::Error> {
        let (keys, rest) = StateKeys::tls_deserialize_bytes(bytes)?;
        // The inner type is checked before the inner body is decoded, so a nesting of keyed
        // requests is refused at its first level instead of recursing (wire-format.md §17.4).
        match rest.first() {
            Some(&inner) if !Self::may_wrap(inner) => {
                return Err(tls_codec::Error::DecodingError(format!(
                    "with_state_keys cannot wrap request type {inner} (wire-format.md §17.4)"
                )))
            }
            _ => {}
        }
        let (request, rest) = DsRequestBody::tls_deserialize_bytes(rest)?;
        Ok((
            Self {
                keys,
                request: Box::new(request),
            },
            rest,
        ))
    }
}
