//! Fuzz bodies (feature `fuzzing`), so the targets under `fuzz/` are thin shims and the logic
//! is compiled and linted with the library (STYLE §11).

use crate::wire::{
    decode_exact, encode, DsRequest, DsResponse, QueueingServiceRequest, QueueingServiceResponse,
};

/// Decodes `data` as `T`; whatever decodes must re-encode to exactly `data` (strict decoding
/// means every value has one encoding).
fn roundtrip<T: tls_codec::DeserializeBytes + tls_codec::Serialize>(data: &[u8]) {
    if let Ok(value) = decode_exact::<T>(data) {
        let encoded = encode(&value).expect("a decoded value re-encodes");
        assert_eq!(encoded, data, "decode/encode is not the identity");
    }
}

/// Fuzz body: `DSRequest` decoding.
pub fn decode_request(data: &[u8]) {
    roundtrip::<DsRequest>(data);
}

/// Fuzz body: `DSResponse` decoding.
pub fn decode_response(data: &[u8]) {
    roundtrip::<DsResponse>(data);
}

/// Fuzz body: `QueueingServiceRequest` and `QueueingServiceResponse` decoding.
pub fn decode_queueing_service(data: &[u8]) {
    roundtrip::<QueueingServiceRequest>(data);
    roundtrip::<QueueingServiceResponse>(data);
}
