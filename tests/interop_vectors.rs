//! The MLS working group's interop vectors (`messages.json`, mls-implementations
//! `test-vectors`) decoded through the crate's own handling of embedded MLS structures.
//!
//! Every `MLSMessage` field (`mls_welcome`, `mls_group_info`, `mls_key_package`,
//! `public_message_*`, `private_message`) must be accepted by [`MlsMessageBytes::from_bytes`]
//! and kept byte-exact, openmls must report the wire format (and content type) the field name
//! promises, and trailing bytes and truncations must be rejected. `ratchet_tree` gets the same
//! treatment through [`RatchetTreeBytes`]. The remaining fields are bare structs (no
//! `MLSMessage` framing) and must be refused as `MLSMessage`s. Finally the vector messages are
//! embedded in full `DSRequest`s, which must decode and re-encode byte-exactly with the
//! vector bytes appearing verbatim in the request.
//!
//! Truncations must come back as `DecodeError::Malformed`, never as a panic. (tls_codec 0.5 has
//! a `debug_assert` that panics on truncated vectors, RustCrypto/formats#2414; Cargo.toml turns
//! it off for our debug builds, and the tally below asserts it never fires.)

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use mimi_ds::wire::{
    decode_exact, encode, ClientSignature, CreateGroupRequest, DecodeError, DsAuthData, DsRequest,
    DsRequestBody, DsSenderId, GroupInfoOption, GroupUpdate, GroupUpdateRequest,
    MembershipCommitRequest, MlsMessageBytes, ProposalsRequest, RatchetTreeBytes,
    SelfRemoveClientRequest, SendMessageRequest, UpdateClientRequest, PROTOCOL_VERSION_MIMI_DS10,
};
use openmls::prelude::{ContentType, WireFormat};
use tls_codec::{DeserializeBytes, VLBytes};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/messages.json");

/// Messages up to this size get every strict prefix tried; larger ones a sample.
const FULL_PREFIX_SWEEP_MAX: usize = 512;

/// The fields that are `MLSMessage`s, with the wire format and (for framed content) the
/// content type their name promises.
const MLS_MESSAGE_FIELDS: &[(&str, WireFormat, Option<ContentType>)] = &[
    ("mls_welcome", WireFormat::Welcome, None),
    ("mls_group_info", WireFormat::GroupInfo, None),
    ("mls_key_package", WireFormat::KeyPackage, None),
    (
        "public_message_application",
        WireFormat::PublicMessage,
        Some(ContentType::Application),
    ),
    (
        "public_message_proposal",
        WireFormat::PublicMessage,
        Some(ContentType::Proposal),
    ),
    (
        "public_message_commit",
        WireFormat::PublicMessage,
        Some(ContentType::Commit),
    ),
    // The PrivateMessage vectors carry all three content types (in the clear, RFC 9420 §6.3);
    // the name promises none, so the distribution is only printed.
    ("private_message", WireFormat::PrivateMessage, None),
];

/// The fields that are bare structs: `Welcome`-internal `GroupSecrets`, proposal bodies
/// (`Add` etc., without the `Proposal` type tag), `Commit`.
const NON_MESSAGE_FIELDS: &[&str] = &[
    "group_secrets",
    "add_proposal",
    "update_proposal",
    "remove_proposal",
    "pre_shared_key_proposal",
    "re_init_proposal",
    "external_init_proposal",
    "group_context_extensions_proposal",
    "commit",
];

const RATCHET_TREE_FIELD: &str = "ratchet_tree";

type Vector = BTreeMap<String, Vec<u8>>;

/// How a truncated input was refused.
#[derive(Debug, Default)]
struct Refusals {
    /// `Err(DecodeError::Malformed)`, the intended outcome.
    malformed: usize,
    /// The known tls_codec 0.5 debug assertion fired instead (debug builds only).
    tls_codec_debug_panics: usize,
}

/// Whether a panic payload is tls_codec 0.5's `VLBytes::tls_deserialize_bytes`
/// `debug_assert_eq!`, which fires in debug builds when a vector's length prefix exceeds the
/// remaining input, before the `Err` that release builds return (see `tests/malformed.rs`,
/// `a_truncated_vector_is_malformed_not_a_panic`). Every other panic fails the test.
fn is_tls_codec_length_debug_assert(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    cfg!(debug_assertions)
        && message.contains("Expected to read ")
        && message.contains(" were read.")
}

/// Keeps the default panic message for every panic but the tls_codec debug assertion, which a
/// truncation sweep triggers thousands of times.
fn quiet_tls_codec_debug_asserts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let known = info.location().is_some_and(|l| {
                l.file().contains("tls_codec") && l.file().ends_with("quic_vec.rs")
            });
            if !known {
                default(info);
            }
        }));
    });
}

impl Refusals {
    /// Decodes a truncated input, which must be refused as malformed (or, in debug builds, by
    /// the known tls_codec assertion).
    fn expect_malformed<R: std::fmt::Debug>(
        &mut self,
        what: &str,
        decode: impl FnOnce() -> Result<R, DecodeError>,
    ) {
        match catch_unwind(AssertUnwindSafe(decode)) {
            Ok(Err(DecodeError::Malformed { .. })) => self.malformed += 1,
            Err(payload) if is_tls_codec_length_debug_assert(&*payload) => {
                self.tls_codec_debug_panics += 1;
            }
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(other) => panic!("{what}: not refused as malformed: {other:?}"),
        }
    }

    fn total(&self) -> usize {
        self.malformed + self.tls_codec_debug_panics
    }

    fn report(&self, what: &str) {
        println!(
            "{what}: {} truncations refused: {} as Malformed, {} by the tls_codec debug assertion",
            self.total(),
            self.malformed,
            self.tls_codec_debug_panics
        );
        assert_eq!(
            self.tls_codec_debug_panics, 0,
            "tls_codec panicked instead of returning an error"
        );
    }
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex string");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn load_vectors() -> Vec<Vector> {
    let text =
        std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("reading {VECTORS}: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("messages.json is JSON");
    let array = json.as_array().expect("messages.json is an array");
    array
        .iter()
        .map(|entry| {
            entry
                .as_object()
                .expect("each vector is an object")
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        unhex(v.as_str().expect("fields are hex strings")),
                    )
                })
                .collect()
        })
        .collect()
}

fn field<'a>(vector: &'a Vector, name: &str, index: usize) -> &'a [u8] {
    vector
        .get(name)
        .unwrap_or_else(|| panic!("vector {index} lacks field {name}"))
}

/// The prefix lengths to try: all of them for small messages, else every 7th plus the last 16.
fn prefix_lengths(len: usize) -> Vec<usize> {
    if len <= FULL_PREFIX_SWEEP_MAX {
        (0..len).collect()
    } else {
        (0..len).filter(|&n| n % 7 == 0 || n + 16 >= len).collect()
    }
}

/// `from_bytes` accepts `bytes` byte-exactly, rejects one appended byte as trailing, and
/// rejects every (sampled) strict prefix as malformed.
fn check_raw<T: DeserializeBytes>(
    what: &str,
    bytes: &[u8],
    from_bytes: impl Fn(Vec<u8>) -> Result<Vec<u8>, DecodeError>,
    refusals: &mut Refusals,
) {
    let kept = from_bytes(bytes.to_vec()).unwrap_or_else(|e| panic!("{what}: rejected: {e}"));
    assert_eq!(kept, bytes, "{what}: bytes not kept verbatim");

    for extra in [0x00u8, 0xff] {
        let mut longer = bytes.to_vec();
        longer.push(extra);
        match from_bytes(longer) {
            Err(DecodeError::TrailingBytes { count: 1, .. }) => {}
            other => panic!("{what}: trailing byte {extra:#04x} not rejected as such: {other:?}"),
        }
    }

    // Through the `DeserializeBytes` path used when the structure is embedded in a request,
    // the structure must end exactly where the vector ends.
    let mut embedded = bytes.to_vec();
    embedded.extend_from_slice(&[0xAB, 0xCD]);
    let (_, rest) = T::tls_deserialize_bytes(&embedded)
        .unwrap_or_else(|e| panic!("{what}: embedded decode failed: {e:?}"));
    assert_eq!(
        rest,
        [0xAB, 0xCD],
        "{what}: embedded decode consumed the wrong length"
    );

    for n in prefix_lengths(bytes.len()) {
        refusals.expect_malformed(
            &format!("{what}: {n}-byte prefix of {}", bytes.len()),
            || from_bytes(bytes[..n].to_vec()),
        );
    }
}

#[test]
fn mls_messages_and_trees_decode_byte_exactly() {
    let vectors = load_vectors();
    assert_eq!(vectors.len(), 300, "messages.json should hold 300 vectors");

    quiet_tls_codec_debug_asserts();
    let mut parsed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut refusals: BTreeMap<&str, Refusals> = BTreeMap::new();
    let mut private_content_types: BTreeMap<String, usize> = BTreeMap::new();

    for (i, vector) in vectors.iter().enumerate() {
        for &(name, wire_format, content_type) in MLS_MESSAGE_FIELDS {
            let bytes = field(vector, name, i);
            let what = format!("vector {i} {name}");
            // RFC 9420 §6: `ProtocolVersion version = mls10(1); WireFormat wire_format;`.
            assert_eq!(bytes[..2], [0x00, 0x01], "{what}: not an mls10 MLSMessage");
            assert_eq!(
                u16::from_be_bytes([bytes[2], bytes[3]]),
                wire_format as u16,
                "{what}: unexpected wire format"
            );

            check_raw::<MlsMessageBytes>(
                &what,
                bytes,
                |b| MlsMessageBytes::from_bytes(b).map(MlsMessageBytes::into_bytes),
                refusals.entry(name).or_default(),
            );

            let raw = MlsMessageBytes::from_bytes(bytes.to_vec()).expect("accepted above");
            let message = raw
                .parse()
                .unwrap_or_else(|e| panic!("{what}: parse failed: {e}"));
            assert_eq!(
                message.wire_format(),
                wire_format,
                "{what}: openmls wire format"
            );
            if matches!(
                wire_format,
                WireFormat::PublicMessage | WireFormat::PrivateMessage
            ) {
                let protocol = message
                    .try_into_protocol_message()
                    .unwrap_or_else(|e| panic!("{what}: not a protocol message: {e:?}"));
                match content_type {
                    Some(expected) => {
                        assert_eq!(protocol.content_type(), expected, "{what}: content type");
                    }
                    None => {
                        let seen = format!("{:?}", protocol.content_type());
                        *private_content_types.entry(seen).or_default() += 1;
                    }
                }
            }
            *parsed.entry(name).or_default() += 1;
        }

        let tree = field(vector, RATCHET_TREE_FIELD, i);
        let what = format!("vector {i} {RATCHET_TREE_FIELD}");
        check_raw::<RatchetTreeBytes>(
            &what,
            tree,
            |b| RatchetTreeBytes::from_bytes(b).map(RatchetTreeBytes::into_bytes),
            refusals.entry(RATCHET_TREE_FIELD).or_default(),
        );
        RatchetTreeBytes::from_bytes(tree.to_vec())
            .expect("accepted above")
            .parse()
            .unwrap_or_else(|e| panic!("{what}: parse failed: {e}"));
        *parsed.entry(RATCHET_TREE_FIELD).or_default() += 1;

        // Bare structs are not MLSMessages. (`add_proposal` is a KeyPackage body, which starts
        // with version 0x0001 and a ciphersuite that doubles as a plausible wire format, so
        // this is not only a check of the version field.)
        for &name in NON_MESSAGE_FIELDS {
            let bytes = field(vector, name, i);
            assert!(
                MlsMessageBytes::from_bytes(bytes.to_vec()).is_err(),
                "vector {i} {name}: a bare struct was accepted as an MLSMessage"
            );
        }

        let known = MLS_MESSAGE_FIELDS.len() + NON_MESSAGE_FIELDS.len() + 1;
        assert_eq!(
            vector.len(),
            known,
            "vector {i} has fields this test does not know"
        );
    }

    for (name, count) in &parsed {
        println!("{name}: {count} parsed");
    }
    println!("private_message content types: {private_content_types:?}");
    for (name, refusals) in &refusals {
        refusals.report(&format!("{name} prefixes"));
    }
    for &(name, ..) in MLS_MESSAGE_FIELDS {
        assert_eq!(
            parsed[name],
            vectors.len(),
            "{name}: not every vector parsed"
        );
    }
    assert_eq!(parsed[RATCHET_TREE_FIELD], vectors.len());
}

fn mls(bytes: &[u8]) -> MlsMessageBytes {
    MlsMessageBytes::from_bytes(bytes.to_vec()).expect("vector message")
}

/// Encodes, checks the exact layout `version ‖ tag ‖ body ‖ auth`, decodes and re-encodes.
fn check_request(
    what: &str,
    request: &DsRequest,
    tag: u8,
    body: &[u8],
    auth: &[u8],
    refusals: &mut Refusals,
) {
    let encoded = encode(request).unwrap_or_else(|e| panic!("{what}: encode failed: {e:?}"));
    let mut expected = PROTOCOL_VERSION_MIMI_DS10.to_be_bytes().to_vec();
    expected.push(tag);
    expected.extend_from_slice(body);
    expected.extend_from_slice(auth);
    assert!(
        encoded == expected,
        "{what}: encoding differs from the hand-built layout"
    );

    let decoded = decode_exact::<DsRequest>(&encoded)
        .unwrap_or_else(|e| panic!("{what}: decode failed: {e}"));
    assert_eq!(&decoded, request, "{what}: decoded request differs");
    assert_eq!(
        encode(&decoded).expect("re-encode"),
        encoded,
        "{what}: re-encoding differs"
    );

    let mut longer = encoded.clone();
    longer.push(0);
    assert!(
        matches!(
            decode_exact::<DsRequest>(&longer),
            Err(DecodeError::TrailingBytes { count: 1, .. })
        ),
        "{what}: trailing byte accepted"
    );
    // Truncations: dropping the auth tag, and cutting inside the embedded MLS structures.
    for n in [encoded.len() - 1, encoded.len() / 2, 4] {
        refusals.expect_malformed(&format!("{what}: {n}-byte prefix"), || {
            decode_exact::<DsRequest>(&encoded[..n])
        });
    }
}

/// MLS variable-length vector header (RFC 9420 §2.1.2) for `len` bytes.
fn varint(len: usize) -> Vec<u8> {
    let len = u32::try_from(len).expect("small");
    if len < 1 << 6 {
        vec![len as u8]
    } else if len < 1 << 14 {
        (0x4000 | len as u16).to_be_bytes().to_vec()
    } else {
        assert!(len < 1 << 30);
        (0x8000_0000 | len).to_be_bytes().to_vec()
    }
}

fn vl(bytes: &[u8]) -> Vec<u8> {
    let mut out = varint(bytes.len());
    out.extend_from_slice(bytes);
    out
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn vector_messages_round_trip_inside_ds_requests() {
    quiet_tls_codec_debug_asserts();
    let vectors = load_vectors();
    let mut refusals = Refusals::default();
    let unauth = [0u8];
    let mut requests = 0usize;

    for (i, v) in vectors.iter().enumerate() {
        let private = field(v, "private_message", i);
        let proposal = field(v, "public_message_proposal", i);
        let commit = field(v, "public_message_commit", i);
        let group_info = field(v, "mls_group_info", i);
        let welcome = field(v, "mls_welcome", i);
        let tree = field(v, "ratchet_tree", i);
        let request = |body| DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body,
            auth: DsAuthData::Unauthenticated,
        };
        let group_update = || GroupUpdate {
            commit: mls(commit),
            group_info: GroupInfoOption::Full(mls(group_info)),
        };
        // GroupUpdate: commit ‖ GroupInfoOption tag full(1) ‖ GroupInfo.
        let group_update_bytes = concat(&[commit, &[1], group_info]);

        check_request(
            &format!("vector {i} send_message"),
            &request(DsRequestBody::SendMessage(SendMessageRequest {
                application_message: mls(private),
            })),
            10,
            private,
            &unauth,
            &mut refusals,
        );

        check_request(
            &format!("vector {i} proposals"),
            &request(DsRequestBody::Proposals(ProposalsRequest {
                proposals: vec![mls(proposal)],
            })),
            15,
            &vl(proposal),
            &unauth,
            &mut refusals,
        );

        check_request(
            &format!("vector {i} self_remove_client"),
            &request(DsRequestBody::SelfRemoveClient(SelfRemoveClientRequest {
                proposal: mls(proposal),
            })),
            7,
            proposal,
            &unauth,
            &mut refusals,
        );

        check_request(
            &format!("vector {i} commits"),
            &request(DsRequestBody::Commits(MembershipCommitRequest {
                group_update: group_update(),
                welcome_messages: vec![mls(welcome)],
            })),
            16,
            &concat(&[&group_update_bytes, &vl(welcome)]),
            &unauth,
            &mut refusals,
        );

        check_request(
            &format!("vector {i} delete_group"),
            &request(DsRequestBody::DeleteGroup(GroupUpdateRequest {
                group_update: group_update(),
            })),
            2,
            &group_update_bytes,
            &unauth,
            &mut refusals,
        );

        check_request(
            &format!("vector {i} update_client"),
            &request(DsRequestBody::UpdateClient(UpdateClientRequest {
                group_update: group_update(),
                queue_config: None,
            })),
            8,
            &concat(&[&group_update_bytes, &[0]]),
            &unauth,
            &mut refusals,
        );

        let group_id = format!("group-{i}").into_bytes();
        check_request(
            &format!("vector {i} create_group"),
            &request(DsRequestBody::CreateGroup(CreateGroupRequest {
                group_id: VLBytes::from(group_id.clone()),
                group_info: mls(group_info),
                ratchet_tree: RatchetTreeBytes::from_bytes(tree.to_vec()).expect("vector tree"),
            })),
            1,
            &concat(&[&vl(&group_id), group_info, tree]),
            &unauth,
            &mut refusals,
        );

        // The same send_message under a (structurally valid, unverified) client signature.
        let signature = vec![0x5A; 64];
        let signed = DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: DsRequestBody::SendMessage(SendMessageRequest {
                application_message: mls(private),
            }),
            auth: DsAuthData::ClientSignature(ClientSignature {
                group_id: VLBytes::from(group_id.clone()),
                timestamp_ms: 1_700_000_000_000 + i as u64,
                sender_id: DsSenderId::LeafIndex(i as u32),
                signature: VLBytes::from(signature.clone()),
            }),
        };
        let auth = concat(&[
            &[1],
            &vl(&group_id),
            &(1_700_000_000_000 + i as u64).to_be_bytes(),
            &[0],
            &(i as u32).to_be_bytes(),
            &vl(&signature),
        ]);
        check_request(
            &format!("vector {i} signed send_message"),
            &signed,
            10,
            private,
            &auth,
            &mut refusals,
        );

        requests += 8;
    }

    // Several vector messages in one `proposals<V>`, as a client batching proposals would send.
    let batch: Vec<&[u8]> = vectors
        .iter()
        .take(20)
        .map(|v| v["public_message_proposal"].as_slice())
        .collect();
    let body: Vec<u8> = batch.concat();
    check_request(
        "20 batched proposals",
        &DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body: DsRequestBody::Proposals(ProposalsRequest {
                proposals: batch.iter().map(|b| mls(b)).collect(),
            }),
            auth: DsAuthData::Unauthenticated,
        },
        15,
        &vl(&body),
        &unauth,
        &mut refusals,
    );
    requests += 1;
    println!("{requests} DS requests round-tripped");
    refusals.report("DS request prefixes");
}
