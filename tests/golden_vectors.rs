//! Golden wire vectors: one encoded example of every message type, checked in under
//! `tests/vectors/`, so that any change to the wire format shows up in review as a changed or
//! failing vector.
//!
//! `golden_vectors_round_trip` decodes every `tests/vectors/*.hex` file as the type its name
//! prefix selects, re-encodes it byte for byte, and checks it is the variant the table below
//! names. `golden_vectors_cover_every_variant` checks the set covers every `DSRequestBody` and
//! `DSResponseBody` codepoint (found by probing the decoders, so a new codepoint is noticed),
//! every `DSError` details shape, both auth kinds and every `DSSenderID` kind, both
//! `GroupInfoOption`s and every `QueueingServiceResponse`. For the Queueing Service's client
//! protocol (wire-format.md §10) it checks every `QSClientRequestBody` (`create_queue`,
//! `delete_queue`, `fetch`, `acknowledge`) and every `QSClientResponseBody` (`ok`, `error`,
//! `encrypted_queue_created`, `messages`) codepoint of `QSClientRequest` / `QSClientResponse`,
//! the `QueueCreated` plaintext of the encrypted answer, and the `QueueInfoPlaintext` a client
//! seals into its `ClientQueueConfig`.
//!
//! The files are produced from real openmls clients, a real `TestDs` and a real `TestQs` run
//! by the ignored test `regenerate_golden_vectors`:
//!
//! ```text
//! cargo test --test golden_vectors -- --ignored regenerate
//! ```
//!
//! Keys are random, so every regeneration changes the bytes; regenerate only when the wire
//! format changes on purpose. To add the files of a new message type without touching the
//! existing ones, set `GOLDEN_ONLY_MISSING=1`: the generator then runs as usual but writes only
//! the files that do not exist yet (and deletes nothing).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mimi_ds::wire::{
    decode_exact, encode, DsAuthData, DsErrorDetails, DsRequest, DsRequestBody, DsResponse,
    DsResponseBody, DsSenderId, ErrorCode, GroupInfoOption, QsClientRequest, QsClientRequestBody,
    QsClientResponse, QsClientResponseBody, QueueCreated, QueueInfoPlaintext,
    QueueingServiceRequest, QueueingServiceResponse,
};
use openmls::prelude::MlsMessageBodyIn;
use tls_codec::DeserializeBytes;

const VECTORS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

// ---------------------------------------------------------------------------------------------
// File format
// ---------------------------------------------------------------------------------------------

/// Hex characters per line in a vector file.
const LINE_WIDTH: usize = 100;

/// A vector file: `# <type>: <what it is>`, then lowercase hex wrapped at [`LINE_WIDTH`].
struct VectorFile {
    comment: String,
    bytes: Vec<u8>,
}

fn parse_vector_file(name: &str, text: &str) -> VectorFile {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let comment = first
        .strip_prefix("# ")
        .unwrap_or_else(|| panic!("{name}: the first line must be a `# <type>: <what>` comment"))
        .to_owned();
    let mut hex = String::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        hex.push_str(line);
    }
    VectorFile {
        comment,
        bytes: from_hex(name, &hex),
    }
}

fn from_hex(name: &str, hex: &str) -> Vec<u8> {
    assert!(
        hex.len().is_multiple_of(2),
        "{name}: odd number of hex digits"
    );
    assert!(
        hex.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
        "{name}: only lowercase hex digits are allowed"
    );
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn render_vector_file(comment: &str, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut text = format!("# {comment}\n");
    for chunk in hex.as_bytes().chunks(LINE_WIDTH) {
        text.push_str(std::str::from_utf8(chunk).expect("ascii"));
        text.push('\n');
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Decoding by file name
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Decoded {
    Request(DsRequest),
    Response(DsResponse),
    QsRequest(QueueingServiceRequest),
    QsResponse(QueueingServiceResponse),
    QsClientRequest(QsClientRequest),
    QsClientResponse(QsClientResponse),
    QueueInfoPlaintext(QueueInfoPlaintext),
    QueueCreated(QueueCreated),
}

/// The wire type a file name selects (`qs_` first: `qs_request_*` also contains `request_`).
fn type_name_for(name: &str) -> &'static str {
    if name.starts_with("qs_client_request_") {
        "QsClientRequest"
    } else if name.starts_with("qs_client_response_") {
        "QsClientResponse"
    } else if name.starts_with("queue_info_plaintext") {
        "QueueInfoPlaintext"
    } else if name.starts_with("queue_created_plaintext") {
        "QueueCreated"
    } else if name.starts_with("qs_request_") {
        "QueueingServiceRequest"
    } else if name.starts_with("qs_response_") {
        "QueueingServiceResponse"
    } else if name.starts_with("request_") {
        "DsRequest"
    } else if name.starts_with("response_") {
        "DsResponse"
    } else {
        panic!(
            "{name}: unknown prefix (expected request_, response_, qs_request_, qs_response_, \
             qs_client_request_, qs_client_response_, queue_info_plaintext, \
             queue_created_plaintext)"
        )
    }
}

/// Decodes exactly, re-encodes and checks byte equality.
fn round_trip<T>(name: &str, bytes: &[u8]) -> T
where
    T: DeserializeBytes + tls_codec::Serialize,
{
    let value = decode_exact::<T>(bytes).unwrap_or_else(|e| panic!("{name}: does not decode: {e}"));
    let again = encode(&value).unwrap_or_else(|e| panic!("{name}: does not re-encode: {e:?}"));
    assert!(
        again == bytes,
        "{name}: re-encoding differs from the vector"
    );
    value
}

fn decode_vector(name: &str, bytes: &[u8]) -> Decoded {
    match type_name_for(name) {
        "DsRequest" => Decoded::Request(round_trip(name, bytes)),
        "DsResponse" => Decoded::Response(round_trip(name, bytes)),
        "QueueingServiceRequest" => Decoded::QsRequest(round_trip(name, bytes)),
        "QueueingServiceResponse" => Decoded::QsResponse(round_trip(name, bytes)),
        "QsClientRequest" => Decoded::QsClientRequest(round_trip(name, bytes)),
        "QsClientResponse" => Decoded::QsClientResponse(round_trip(name, bytes)),
        "QueueInfoPlaintext" => Decoded::QueueInfoPlaintext(round_trip(name, bytes)),
        "QueueCreated" => Decoded::QueueCreated(round_trip(name, bytes)),
        other => unreachable!("{other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The table: every expected file and what it must decode to
// ---------------------------------------------------------------------------------------------

type Check = fn(&Decoded) -> bool;

fn req(d: &Decoded) -> Option<(&DsRequestBody, &DsAuthData)> {
    match d {
        Decoded::Request(r) => Some((&r.body, &r.auth)),
        _ => None,
    }
}

fn resp(d: &Decoded) -> Option<&DsResponseBody> {
    match d {
        Decoded::Response(r) => Some(&r.body),
        _ => None,
    }
}

fn unauthenticated(auth: &DsAuthData) -> bool {
    matches!(auth, DsAuthData::Unauthenticated)
}

fn by_leaf(auth: &DsAuthData) -> bool {
    matches!(auth, DsAuthData::ClientSignature(s) if matches!(s.sender_id, DsSenderId::LeafIndex(_)))
}

fn by_key_package_ref(auth: &DsAuthData) -> bool {
    matches!(auth, DsAuthData::ClientSignature(s) if matches!(s.sender_id, DsSenderId::KeyPackageRef(_)))
}

fn by_user_key_hash(auth: &DsAuthData) -> bool {
    matches!(auth, DsAuthData::ClientSignature(s) if matches!(s.sender_id, DsSenderId::UserKeyHash(_)))
}

fn qs_req(d: &Decoded) -> Option<&QsClientRequest> {
    match d {
        Decoded::QsClientRequest(r) => Some(r),
        _ => None,
    }
}

fn qs_resp(d: &Decoded) -> Option<&QsClientResponseBody> {
    match d {
        Decoded::QsClientResponse(r) => Some(&r.body),
        _ => None,
    }
}

/// A signed request to an existing queue (every operation but `create_queue`).
fn names_queue(r: &QsClientRequest) -> bool {
    !r.queue_id.as_slice().is_empty() && !r.signature.as_slice().is_empty()
}

fn full(option: &GroupInfoOption) -> bool {
    matches!(option, GroupInfoOption::Full(_))
}

/// The MLS body kind of a message, for checking what a vector carries.
fn is_welcome(message: &mimi_ds::wire::MlsMessageBytes) -> bool {
    matches!(
        message.parse().map(|m| m.extract()),
        Ok(MlsMessageBodyIn::Welcome(_))
    )
}

fn is_private(message: &mimi_ds::wire::MlsMessageBytes) -> bool {
    matches!(
        message.parse().map(|m| m.extract()),
        Ok(MlsMessageBodyIn::PrivateMessage(_))
    )
}

/// Every vector file (stem) and the check its decoded value must pass.
const TABLE: &[(&str, Check)] = &[
    // DSRequest, one per DSRequestBody variant (plus the partial GroupInfo form of `commits`).
    (
        "request_request_group_id",
        |d| matches!(req(d), Some((DsRequestBody::RequestGroupId, a)) if unauthenticated(a)),
    ),
    (
        "request_create_group",
        |d| matches!(req(d), Some((DsRequestBody::CreateGroup(_), a)) if by_leaf(a)),
    ),
    (
        "request_delete_group",
        |d| matches!(req(d), Some((DsRequestBody::DeleteGroup(b), a)) if by_leaf(a) && full(&b.group_update.group_info)),
    ),
    ("request_add_users", |d| {
        matches!(req(d), Some((DsRequestBody::AddUsers(b), a))
            if by_leaf(a) && b.welcome_messages.len() == 1 && is_welcome(&b.welcome_messages[0]))
    }),
    (
        "request_remove_users",
        |d| matches!(req(d), Some((DsRequestBody::RemoveUsers(_), a)) if by_leaf(a)),
    ),
    ("request_add_clients", |d| {
        matches!(req(d), Some((DsRequestBody::AddClients(b), a))
            if by_leaf(a) && b.welcome_messages.len() == 1 && is_welcome(&b.welcome_messages[0]))
    }),
    (
        "request_remove_clients",
        |d| matches!(req(d), Some((DsRequestBody::RemoveClients(_), a)) if by_leaf(a)),
    ),
    (
        "request_self_remove_client",
        |d| matches!(req(d), Some((DsRequestBody::SelfRemoveClient(_), a)) if by_leaf(a)),
    ),
    (
        "request_update_client",
        |d| matches!(req(d), Some((DsRequestBody::UpdateClient(b), a)) if by_leaf(a) && b.queue_config.is_some()),
    ),
    ("request_external_join", |d| {
        matches!(req(d), Some((DsRequestBody::ExternalJoin(b), a))
            if unauthenticated(a) && full(&b.group_update.group_info))
    }),
    (
        "request_send_message",
        |d| matches!(req(d), Some((DsRequestBody::SendMessage(b), a)) if by_leaf(a) && is_private(&b.application_message)),
    ),
    (
        "request_signature_public_key",
        |d| matches!(req(d), Some((DsRequestBody::SignaturePublicKey, a)) if unauthenticated(a)),
    ),
    (
        "request_key_packages",
        |d| matches!(req(d), Some((DsRequestBody::KeyPackages(b), a)) if by_user_key_hash(a) && !b.client_ids.is_empty()),
    ),
    (
        "request_connection_key_packages",
        |d| matches!(req(d), Some((DsRequestBody::ConnectionKeyPackages(_), a)) if unauthenticated(a)),
    ),
    (
        "request_re_initialize_group",
        |d| matches!(req(d), Some((DsRequestBody::ReInitializeGroup(_), a)) if by_leaf(a)),
    ),
    (
        "request_proposals",
        |d| matches!(req(d), Some((DsRequestBody::Proposals(b), a)) if by_leaf(a) && b.proposals.len() == 1),
    ),
    ("request_commits", |d| {
        matches!(req(d), Some((DsRequestBody::Commits(b), a))
            if by_leaf(a) && full(&b.group_update.group_info)
                && b.welcome_messages.len() == 1 && is_welcome(&b.welcome_messages[0]))
    }),
    ("request_commits_partial_group_info", |d| {
        matches!(req(d), Some((DsRequestBody::Commits(b), a))
            if by_leaf(a) && matches!(b.group_update.group_info, GroupInfoOption::Partial(_))
                && b.welcome_messages.is_empty())
    }),
    (
        "request_group_info",
        |d| matches!(req(d), Some((DsRequestBody::GroupInfo(g), a)) if unauthenticated(a) && g.encryption_key.is_none()),
    ),
    (
        "request_welcome_info",
        |d| matches!(req(d), Some((DsRequestBody::WelcomeInfo(_), a)) if by_key_package_ref(a)),
    ),
    (
        "request_update_queue_info",
        |d| matches!(req(d), Some((DsRequestBody::UpdateQueueInfo(_), a)) if by_leaf(a)),
    ),
    // DSResponse, one per DSResponseBody variant and one per DSError details shape.
    ("response_ok", |d| {
        matches!(resp(d), Some(DsResponseBody::Ok))
    }),
    ("response_error", |d| {
        matches!(resp(d), Some(DsResponseBody::Error(e))
            if e.code == ErrorCode::UnsupportedOperation && e.details == DsErrorDetails::None)
    }),
    ("response_error_current_epoch", |d| {
        matches!(resp(d), Some(DsResponseBody::Error(e))
            if e.code == ErrorCode::WrongEpoch && matches!(e.details, DsErrorDetails::CurrentEpoch(_)))
    }),
    ("response_error_proposal_refs", |d| {
        matches!(resp(d), Some(DsResponseBody::Error(e))
            if e.code == ErrorCode::MissingPendingProposals
                && matches!(&e.details, DsErrorDetails::ProposalRefs(refs) if !refs.is_empty()))
    }),
    (
        "response_group_id",
        |d| matches!(resp(d), Some(DsResponseBody::GroupId(id)) if !id.as_slice().is_empty()),
    ),
    ("response_welcome_info", |d| {
        matches!(resp(d), Some(DsResponseBody::WelcomeInfo(_)))
    }),
    (
        "response_external_commit_info",
        |d| matches!(resp(d), Some(DsResponseBody::ExternalCommitInfo(i)) if !i.pending_proposals.is_empty()),
    ),
    (
        "request_group_info_encrypted",
        |d| matches!(req(d), Some((DsRequestBody::GroupInfo(g), DsAuthData::Unauthenticated)) if g.encryption_key.is_some()),
    ),
    ("response_encrypted_external_commit_info", |d| {
        matches!(
            resp(d),
            Some(DsResponseBody::EncryptedExternalCommitInfo(_))
        )
    }),
    (
        "response_signature_public_key",
        |d| matches!(resp(d), Some(DsResponseBody::SignaturePublicKey(k)) if !k.as_slice().is_empty()),
    ),
    ("response_accepted", |d| {
        matches!(resp(d), Some(DsResponseBody::Accepted(_)))
    }),
    // Queueing Service messages.
    (
        "qs_request_welcome",
        |d| matches!(d, Decoded::QsRequest(r) if !r.recipients.is_empty() && is_welcome(&r.message.message)),
    ),
    (
        "qs_request_application_message",
        |d| matches!(d, Decoded::QsRequest(r) if !r.recipients.is_empty() && is_private(&r.message.message)),
    ),
    ("qs_response_ok", |d| {
        matches!(d, Decoded::QsResponse(QueueingServiceResponse::Ok))
    }),
    (
        "qs_response_invalid_client_queue_information",
        |d| matches!(d, Decoded::QsResponse(QueueingServiceResponse::InvalidClientQueueInformation(i)) if !i.is_empty()),
    ),
    ("qs_response_recipients_refused", |d| {
        matches!(d, Decoded::QsResponse(r @ QueueingServiceResponse::RecipientsRefused(_))
            if !r.invalid_recipients().is_empty() && !r.full_recipients().is_empty())
    }),
    // The Queueing Service's client protocol: QSClientRequest, one per QSClientRequestBody.
    ("qs_client_request_create_queue", |d| {
        matches!(qs_req(d), Some(r @ QsClientRequest { body: QsClientRequestBody::CreateQueue { owner_key, response_key }, .. })
            if r.queue_id.as_slice().is_empty() && !owner_key.as_slice().is_empty()
                && response_key.as_slice().len() == 32 && !r.signature.as_slice().is_empty())
    }),
    (
        "qs_client_request_delete_queue",
        |d| matches!(qs_req(d), Some(r) if matches!(r.body, QsClientRequestBody::DeleteQueue) && names_queue(r)),
    ),
    ("qs_client_request_fetch", |d| {
        matches!(qs_req(d), Some(r) if matches!(r.body, QsClientRequestBody::Fetch { max_messages, .. } if max_messages > 0)
            && names_queue(r))
    }),
    ("qs_client_request_acknowledge", |d| {
        matches!(qs_req(d), Some(r) if matches!(r.body, QsClientRequestBody::Acknowledge { up_to_sequence } if up_to_sequence > 0)
            && names_queue(r))
    }),
    // QSClientResponse, one per QSClientResponseBody.
    ("qs_client_response_ok", |d| {
        matches!(qs_resp(d), Some(QsClientResponseBody::Ok))
    }),
    ("qs_client_response_error", |d| {
        matches!(qs_resp(d), Some(QsClientResponseBody::Error(e))
            if e.code == ErrorCode::UnknownQueue && e.details == DsErrorDetails::None)
    }),
    ("qs_client_response_encrypted_queue_created", |d| {
        matches!(qs_resp(d), Some(QsClientResponseBody::EncryptedQueueCreated(c))
            if !c.kem_output.as_slice().is_empty() && !c.ciphertext.as_slice().is_empty())
    }),
    ("qs_client_response_messages", |d| {
        matches!(qs_resp(d), Some(QsClientResponseBody::Messages(page))
            if !page.messages.is_empty()
                && page.messages.iter().all(|m| !m.sender_domain.as_slice().is_empty() && is_private(&m.message.message)))
    }),
    // What the encrypted create_queue answer holds (wire-format.md §10.3).
    ("queue_created_plaintext", |d| {
        matches!(d, Decoded::QueueCreated(c)
            if !c.queue_id.as_slice().is_empty() && !c.fanout_auth_token.as_slice().is_empty()
                && !c.queue_encryption_key.as_slice().is_empty())
    }),
    // The plaintext a client seals into ClientQueueConfig.queue (wire-format.md §10.1).
    ("queue_info_plaintext", |d| {
        matches!(d, Decoded::QueueInfoPlaintext(p)
            if !p.queue_id.as_slice().is_empty() && !p.fanout_auth_token.as_slice().is_empty())
    }),
];

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// The stems of every `*.hex` file in `dir`.
fn hex_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "hex"))
        .map(|path| {
            path.file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn vector_path(name: &str) -> PathBuf {
    Path::new(VECTORS_DIR).join(format!("{name}.hex"))
}

/// Reads, round-trips and checks every vector of the table; fails on missing or extra files.
fn load_all() -> Vec<(&'static str, Decoded)> {
    let table: BTreeSet<String> = TABLE.iter().map(|(name, _)| (*name).to_owned()).collect();
    assert_eq!(table.len(), TABLE.len(), "duplicate names in TABLE");
    let present = hex_files(Path::new(VECTORS_DIR));
    let missing: Vec<_> = table.difference(&present).collect();
    let extra: Vec<_> = present.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "vector files missing (regenerate): {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "vector files not in TABLE (add them or delete them): {extra:?}"
    );

    TABLE
        .iter()
        .map(|(name, check)| {
            let text = std::fs::read_to_string(vector_path(name)).expect("read vector");
            let file = parse_vector_file(name, &text);
            let type_name = type_name_for(name);
            assert!(
                file.comment.starts_with(&format!("{type_name}: ")),
                "{name}: the comment must start with `# {type_name}: `, got `# {}`",
                file.comment
            );
            let decoded = decode_vector(name, &file.bytes);
            assert!(
                check(&decoded),
                "{name}: decoded to the wrong variant: {decoded:?}"
            );
            (*name, decoded)
        })
        .collect()
}

#[test]
fn golden_vectors_round_trip() {
    assert_eq!(load_all().len(), TABLE.len());
}

/// The discriminants a derived `uint8`-tagged enum decoder accepts: every tag whose decoding
/// from the single byte fails with something other than `UnknownValue` (a unit variant decodes,
/// a variant with a payload runs out of bytes).
fn defined_tags<T: DeserializeBytes>() -> BTreeSet<u8> {
    (0..=u8::MAX)
        .filter(|tag| {
            !matches!(
                T::tls_deserialize_bytes(&[*tag]),
                Err(tls_codec::Error::UnknownValue(_))
            )
        })
        .collect()
}

#[test]
fn golden_vectors_cover_every_variant() {
    let vectors = load_all();
    let requests: Vec<&DsRequest> = vectors
        .iter()
        .filter_map(|(_, d)| match d {
            Decoded::Request(r) => Some(r),
            _ => None,
        })
        .collect();
    let responses: Vec<&DsResponse> = vectors
        .iter()
        .filter_map(|(_, d)| match d {
            Decoded::Response(r) => Some(r),
            _ => None,
        })
        .collect();

    // Every DSRequestType, 0..=19, and nothing the decoder accepts is left out.
    let request_types: BTreeSet<u8> = requests
        .iter()
        .map(|r| r.body.request_type() as u8)
        .collect();
    assert_eq!(
        request_types,
        (0..=19).collect::<BTreeSet<u8>>(),
        "request types covered"
    );
    assert_eq!(
        defined_tags::<DsRequestBody>(),
        request_types,
        "DsRequestBody has codepoints without a vector"
    );

    // Every DSResponseBody codepoint the decoder accepts.
    let response_tags: BTreeSet<u8> = responses
        .iter()
        .map(|r| encode(&r.body).expect("encode")[0])
        .collect();
    assert_eq!(
        defined_tags::<DsResponseBody>(),
        response_tags,
        "DsResponseBody has codepoints without a vector"
    );

    // Every DSError details shape.
    let shapes: BTreeSet<&str> = responses
        .iter()
        .filter_map(|r| match &r.body {
            DsResponseBody::Error(e) => Some(match e.details {
                DsErrorDetails::None => "none",
                DsErrorDetails::CurrentEpoch(_) => "current_epoch",
                DsErrorDetails::ProposalRefs(_) => "proposal_refs",
                _ => "unknown",
            }),
            _ => None,
        })
        .collect();
    assert_eq!(
        shapes,
        BTreeSet::from(["none", "current_epoch", "proposal_refs"])
    );

    // Both DSAuthData kinds and every DSSenderID kind.
    let auth_tags: BTreeSet<u8> = requests
        .iter()
        .map(|r| encode(&r.auth).expect("encode")[0])
        .collect();
    assert_eq!(
        defined_tags::<DsAuthData>(),
        auth_tags,
        "DsAuthData kinds covered"
    );
    let sender_tags: BTreeSet<u8> = requests
        .iter()
        .filter_map(|r| match &r.auth {
            DsAuthData::ClientSignature(s) => Some(encode(&s.sender_id).expect("encode")[0]),
            _ => None,
        })
        .collect();
    assert_eq!(
        defined_tags::<DsSenderId>(),
        sender_tags,
        "DsSenderId kinds covered"
    );

    // Both GroupInfoOption forms.
    let group_info_tags: BTreeSet<u8> = requests
        .iter()
        .filter_map(|r| match &r.body {
            DsRequestBody::Commits(b) => {
                Some(encode(&b.group_update.group_info).expect("encode")[0])
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        defined_tags::<GroupInfoOption>(),
        group_info_tags,
        "GroupInfoOption forms covered"
    );

    // Every QueueingServiceResponse variant.
    let qs_tags: BTreeSet<u8> = vectors
        .iter()
        .filter_map(|(_, d)| match d {
            Decoded::QsResponse(r) => Some(encode(r).expect("encode")[0]),
            _ => None,
        })
        .collect();
    assert_eq!(
        defined_tags::<QueueingServiceResponse>(),
        qs_tags,
        "QueueingServiceResponse variants covered"
    );
    assert!(vectors
        .iter()
        .any(|(_, d)| matches!(d, Decoded::QsRequest(_))));

    // Every QSClientRequestBody codepoint the decoder accepts.
    let qs_client_request_tags: BTreeSet<u8> = vectors
        .iter()
        .filter_map(|(_, d)| match d {
            Decoded::QsClientRequest(r) => Some(encode(&r.body).expect("encode")[0]),
            _ => None,
        })
        .collect();
    assert_eq!(
        qs_client_request_tags,
        (0..=3).collect::<BTreeSet<u8>>(),
        "QSClientRequestType covered"
    );
    assert_eq!(
        defined_tags::<QsClientRequestBody>(),
        qs_client_request_tags,
        "QsClientRequestBody has codepoints without a vector"
    );

    // Every QSClientResponseBody codepoint the decoder accepts.
    let qs_client_responses: Vec<&QsClientResponseBody> = vectors
        .iter()
        .filter_map(|(_, d)| match d {
            Decoded::QsClientResponse(r) => Some(&r.body),
            _ => None,
        })
        .collect();
    let qs_client_response_tags: BTreeSet<u8> = qs_client_responses
        .iter()
        .map(|body| encode(*body).expect("encode")[0])
        .collect();
    assert_eq!(
        defined_tags::<QsClientResponseBody>(),
        qs_client_response_tags,
        "QsClientResponseBody has codepoints without a vector"
    );

    // The QueueInfoPlaintext is the one a client builds from the QueueCreated vector.
    let created = vectors
        .iter()
        .find_map(|(_, d)| match d {
            Decoded::QueueCreated(c) => Some(c),
            _ => None,
        })
        .expect("a queue_created_plaintext vector");
    let plaintexts: Vec<&QueueInfoPlaintext> = vectors
        .iter()
        .filter_map(|(_, d)| match d {
            Decoded::QueueInfoPlaintext(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(
        plaintexts,
        vec![&QueueInfoPlaintext {
            queue_id: created.queue_id.clone(),
            fanout_auth_token: created.fanout_auth_token.clone(),
        }],
        "queue_info_plaintext holds queue_created_plaintext's queue ID and token"
    );
}

/// The text format survives a render/parse round trip, including wrapping.
#[test]
fn vector_file_format_round_trips() {
    let bytes: Vec<u8> = (0..=255).collect();
    let text = render_vector_file("DsRequest: test", &bytes);
    assert!(text.lines().skip(1).all(|l| l.len() <= LINE_WIDTH));
    let file = parse_vector_file("test", &text);
    assert_eq!(file.comment, "DsRequest: test");
    assert_eq!(file.bytes, bytes);
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

/// The environment variable that restricts [`regenerate_golden_vectors`] to missing files.
const ONLY_MISSING_VAR: &str = "GOLDEN_ONLY_MISSING";

/// Rebuilds every vector from real openmls clients, a real `TestDs` and a real `TestQs` run,
/// then rewrites `tests/vectors/*.hex` (stale `.hex` files are deleted). With
/// `GOLDEN_ONLY_MISSING=1` it writes only the files that do not exist yet and deletes nothing,
/// so that adding a message type leaves the existing vectors byte-identical.
#[test]
#[ignore = "rewrites tests/vectors; run with `-- --ignored regenerate`"]
fn regenerate_golden_vectors() {
    let only_missing = std::env::var(ONLY_MISSING_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    let generated = generator::generate();
    let names: BTreeSet<String> = generated.iter().map(|v| v.name.to_owned()).collect();
    let table: BTreeSet<String> = TABLE.iter().map(|(name, _)| (*name).to_owned()).collect();
    assert_eq!(names.len(), generated.len(), "a vector was generated twice");
    assert_eq!(names, table, "the generator and TABLE disagree");

    // Check everything before touching the directory.
    for vector in &generated {
        let type_name = type_name_for(vector.name);
        assert!(
            vector.what.starts_with(&format!("{type_name}: ")),
            "{}: comment",
            vector.name
        );
        let decoded = decode_vector(vector.name, &vector.bytes);
        let check = TABLE
            .iter()
            .find(|(n, _)| *n == vector.name)
            .expect("in table")
            .1;
        assert!(
            check(&decoded),
            "{}: generated the wrong variant: {decoded:?}",
            vector.name
        );
    }

    let dir = Path::new(VECTORS_DIR);
    std::fs::create_dir_all(dir).expect("create tests/vectors");
    if !only_missing {
        for stale in hex_files(dir) {
            std::fs::remove_file(vector_path(&stale)).expect("remove stale vector");
        }
    }
    for vector in &generated {
        if only_missing && vector_path(vector.name).exists() {
            continue;
        }
        if only_missing {
            println!("writing {}", vector_path(vector.name).display());
        }
        std::fs::write(
            vector_path(vector.name),
            render_vector_file(&vector.what, &vector.bytes),
        )
        .expect("write vector");
    }
    load_all();
}

mod generator {
    use mimi_ds::qs::{QsOutcome, QsStatus};
    use mimi_ds::testing::{
        commit_body, decode_response, mls_bytes, Received, TestClient, TestDs, TestQs,
    };
    use mimi_ds::wire::{
        decode_exact, encode, ClientQueueConfig, ConnectionKeyPackagesRequest, DeleteGroupRequest,
        DsAuthData, DsErrorDetails, DsRequest, DsRequestBody, DsResponseBody, DsSenderId,
        ErrorCode, ExternalCommitInfo, GroupInfoOption, KeyPackagesRequest,
        MembershipCommitRequest, PartialGroupInfo, QsClientRequestBody, QsClientResponse,
        QsClientResponseBody, QueueInfoPlaintext, QueueingServiceResponse, RecipientRefusal,
        SelfRemoveClientRequest, UpdateClientRequest, WelcomeInfoRequest,
        PROTOCOL_VERSION_MIMI_DS10,
    };
    use mimi_ds::{Outcome, Status};
    use openmls::messages::group_info::VerifiableGroupInfo;
    use openmls::prelude::{
        KeyPackage, LeafNodeIndex, LeafNodeParameters, MlsGroup, MlsGroupJoinConfig,
        MlsMessageBodyIn, Proposal, ReInitProposal, Verifiable as _,
        MIXED_PLAINTEXT_WIRE_FORMAT_POLICY,
    };
    use openmls_rust_crypto::RustCrypto;
    use openmls_traits::crypto::OpenMlsCrypto;
    use openmls_traits::types::HashType;
    use openmls_traits::OpenMlsProvider as _;
    use tls_codec::{DeserializeBytes, Serialize, VLBytes};

    /// One generated vector.
    pub(super) struct Vector {
        pub(super) name: &'static str,
        /// The comment line after `# `: `<type>: <what it is>`.
        pub(super) what: String,
        pub(super) bytes: Vec<u8>,
    }

    #[derive(Default)]
    struct Vectors(Vec<Vector>);

    impl Vectors {
        fn add(&mut self, name: &'static str, what: impl Into<String>, bytes: Vec<u8>) {
            let type_name = super::type_name_for(name);
            self.0.push(Vector {
                name,
                what: format!("{type_name}: {}", what.into()),
                bytes,
            });
        }
    }

    fn accepted(out: &Outcome) {
        assert_eq!(
            out.status,
            Status::Accepted,
            "{:?}",
            decode_response(&out.response)
        );
    }

    fn rejected(out: &Outcome, code: ErrorCode) {
        assert_eq!(
            out.status,
            Status::Rejected(code),
            "{:?}",
            decode_response(&out.response)
        );
    }

    /// The body of a QS answer to a client request, checking the status it came with.
    fn qs_answer(out: &QsOutcome, status: QsStatus) -> QsClientResponseBody {
        let body = decode_exact::<QsClientResponse>(&out.response)
            .expect("the QS produced a decodable QSClientResponse")
            .body;
        assert_eq!(out.status, status, "{body:?}");
        body
    }

    fn unauthenticated(body: DsRequestBody) -> Vec<u8> {
        encode(&DsRequest {
            version: PROTOCOL_VERSION_MIMI_DS10,
            body,
            auth: DsAuthData::Unauthenticated,
        })
        .expect("encode")
    }

    /// The fanout to `provider` of an outcome, encoded.
    fn fanout_to(out: &Outcome, provider: &str) -> Vec<u8> {
        out.fanout
            .iter()
            .find(|f| f.destination == provider)
            .expect("fanout to provider")
            .to_bytes()
    }

    fn external_commit_info(
        ds: &mut TestDs,
        group_id: &[u8],
    ) -> (Vec<u8>, Vec<u8>, ExternalCommitInfo) {
        let request = TestClient::group_info_request(group_id);
        let out = ds.process(&request);
        match decode_response(&out.response).body {
            DsResponseBody::ExternalCommitInfo(info) => (request, out.response, info),
            other => panic!("{other:?}"),
        }
    }

    fn join(client: &mut TestClient, tree: &mimi_ds::wire::RatchetTreeBytes) {
        let Some(Received::Welcome(welcome)) = client.process_inbox().pop() else {
            panic!("no Welcome")
        };
        client.join_from_welcome(&welcome, tree);
    }

    /// The content of a `<V>`-prefixed encoding.
    fn vl_content(value: &impl Serialize) -> VLBytes {
        VLBytes::tls_deserialize_exact_bytes(&value.tls_serialize_detached().expect("encode"))
            .expect("vl")
    }

    /// The PartialGroupInfo a committer sends instead of the full GroupInfo.
    fn to_partial(full: &GroupInfoOption) -> PartialGroupInfo {
        let GroupInfoOption::Full(bytes) = full else {
            panic!("expected a full GroupInfo")
        };
        let MlsMessageBodyIn::GroupInfo(vgi) = bytes.parse().expect("GroupInfo").extract() else {
            panic!()
        };
        let vgi: VerifiableGroupInfo = vgi;
        PartialGroupInfo {
            ratchet_tree_presence: mimi_ds::wire::RatchetTreePresence::NoRatchetTree,
            group_info_extensions: vl_content(vgi.extensions()),
            signature: vl_content(vgi.signature()),
        }
    }

    /// `RefHash(label, value)` (RFC 9420 §5.2) with SHA-256.
    fn ref_hash(label: &[u8], value: &[u8]) -> Vec<u8> {
        let mut input = VLBytes::from(label.to_vec())
            .tls_serialize_detached()
            .expect("encode");
        input.extend(
            VLBytes::from(value.to_vec())
                .tls_serialize_detached()
                .expect("encode"),
        );
        RustCrypto::default()
            .hash(HashType::Sha2_256, &input)
            .expect("hash")
    }

    /// A ReInit proposal to a fresh group ID, same version, suite and no extensions (openmls
    /// keeps the fields private, so it is decoded from its encoding).
    fn reinit_proposal(new_group_id: &[u8]) -> Proposal {
        let mut bytes = VLBytes::from(new_group_id.to_vec())
            .tls_serialize_detached()
            .expect("encode");
        bytes.extend_from_slice(&1u16.to_be_bytes()); // mls10
        bytes.extend_from_slice(&(mimi_ds::testing::CIPHERSUITE as u16).to_be_bytes());
        bytes.push(0); // extensions<V>: empty
        Proposal::ReInit(Box::new(
            ReInitProposal::tls_deserialize_exact_bytes(&bytes).expect("ReInit"),
        ))
    }

    fn queue(provider: &str, queue: &str) -> ClientQueueConfig {
        ClientQueueConfig {
            provider_domain: provider.as_bytes().to_vec().into(),
            queue: queue.as_bytes().to_vec().into(),
        }
    }

    pub(super) fn generate() -> Vec<Vector> {
        let mut v = Vectors::default();
        // The vectors include the unauthenticated reads, which a deployment may allow
        // (wire-format.md §4.11).
        let mut config = mimi_ds::DsConfig::new("hub.example");
        config.group_info_access = mimi_ds::GroupInfoAccess::Anyone;
        let mut ds = TestDs::with_config(config);
        let mut alice = TestClient::new("alice", "alice-1", "a.example");
        let mut alice2 = TestClient::new("alice", "alice-2", "a.example");
        let mut bob = TestClient::new("bob", "bob-1", "b.example");
        let mut carol = TestClient::new("carol", "carol-1", "c.example");

        // request_group_id (0) and signature_public_key (11): unauthenticated, served.
        let request = unauthenticated(DsRequestBody::RequestGroupId);
        let out = ds.process(&request);
        let DsResponseBody::GroupId(group_id) = decode_response(&out.response).body else {
            panic!()
        };
        let group_id = group_id.as_slice().to_vec();
        v.add(
            "request_request_group_id",
            "request_group_id (0), unauthenticated",
            request,
        );
        v.add(
            "response_group_id",
            "group_id (2): the ID reserved for request_request_group_id",
            out.response,
        );

        let request = unauthenticated(DsRequestBody::SignaturePublicKey);
        let out = ds.process(&request);
        accepted(&out);
        v.add(
            "request_signature_public_key",
            "signature_public_key (11), unauthenticated",
            request,
        );
        v.add(
            "response_signature_public_key",
            "signature_public_key (5): the DS's Ed25519 external-sender key",
            out.response,
        );

        // create_group (1).
        alice.create_group(&group_id, &ds.external_sender);
        let request = alice.create_group_request(ds.now_ms);
        accepted(&ds.process(&request));
        v.add(
            "request_create_group",
            "create_group (1) by alice-1 (leaf 0): GroupInfo and ratchet tree at epoch 0",
            request,
        );

        // commits (16) with a full GroupInfo and one Welcome: alice adds bob-1, carol-1, alice-2.
        let bob_key_package: KeyPackage = bob.key_package();
        let bob_key_package_ref = bob_key_package
            .hash_ref(alice.provider.crypto())
            .expect("ref");
        let request = alice.add_request(
            vec![bob_key_package, carol.key_package(), alice2.key_package()],
            ds.now_ms,
        );
        let out = ds.process(&request);
        accepted(&out);
        let DsResponseBody::Accepted(receipt) = decode_response(&out.response).body else {
            panic!()
        };
        assert_eq!((receipt.sequence_number, receipt.epoch), (0, 1));
        alice.confirm_commit();
        v.add(
            "request_commits",
            "commits (16) by leaf 0 adding bob-1, carol-1, alice-2 (epoch 0 -> 1), full GroupInfo, one Welcome",
            request,
        );
        v.add(
            "response_accepted",
            "accepted (8): receipt for request_commits (sequence 0, epoch 1)",
            out.response.clone(),
        );
        v.add(
            "qs_request_welcome",
            "the DS's fanout of request_commits' Welcome to b.example (queue bob-1)",
            fanout_to(&out, "b.example"),
        );
        TestDs::route(&out, &mut [&mut bob, &mut carol, &mut alice2]);
        let (_, _, info) = external_commit_info(&mut ds, &group_id);
        for client in [&mut bob, &mut carol, &mut alice2] {
            join(client, &info.ratchet_tree);
        }

        // welcome_info (18), signed as the KeyPackageRef of bob-1's KeyPackage.
        let request = bob.signed_as(
            DsRequestBody::WelcomeInfo(WelcomeInfoRequest { epoch: 1 }),
            &group_id,
            ds.now_ms,
            DsSenderId::KeyPackageRef(bob_key_package_ref.as_slice().to_vec().into()),
        );
        let out = ds.process(&request);
        accepted(&out);
        v.add(
            "request_welcome_info",
            "welcome_info (18) for epoch 1, signed by bob-1 as key_package_ref",
            request,
        );
        v.add(
            "response_welcome_info",
            "welcome_info (3): the epoch-1 ratchet tree, the answer to request_welcome_info",
            out.response,
        );

        // send_message (10).
        ds.advance(1000);
        let request = alice.message_request(b"hello, group", ds.now_ms);
        let out = ds.process(&request);
        accepted(&out);
        v.add(
            "request_send_message",
            "send_message (10) by leaf 0: a PrivateMessage at epoch 1",
            request,
        );
        v.add(
            "qs_request_application_message",
            "the DS's fanout of request_send_message to c.example (queue carol-1)",
            fanout_to(&out, "c.example"),
        );
        TestDs::route(&out, &mut [&mut bob, &mut carol, &mut alice2]);
        for client in [&mut bob, &mut carol, &mut alice2] {
            client.process_inbox();
        }

        // update_queue_info (19).
        let request = bob.update_queue_request(queue("b.example", "bob-1-new-queue"), ds.now_ms);
        let out = ds.process(&request);
        accepted(&out);
        v.add(
            "request_update_queue_info",
            "update_queue_info (19) by bob-1 (leaf 1)",
            request,
        );
        v.add(
            "response_ok",
            "ok (0): the answer to request_update_queue_info",
            out.response,
        );

        // proposals (15): bob-1 proposes removing carol-1; it stays pending.
        let carol_leaf = carol.leaf();
        let request = bob.propose_remove_request(carol_leaf, ds.now_ms);
        let proposal_out = ds.process(&request);
        accepted(&proposal_out);
        v.add(
            "request_proposals",
            "proposals (15) by leaf 1: a Remove of carol-1 (leaf 2)",
            request,
        );

        // group_info (17) while the proposal is pending.
        let (request, response, info) = external_commit_info(&mut ds, &group_id);
        assert_eq!(info.pending_proposals.len(), 1);
        v.add(
            "request_group_info",
            "group_info (17), unauthenticated",
            request,
        );
        v.add(
            "response_external_commit_info",
            "external_commit_info (4): epoch-1 GroupInfo, tree, and request_proposals' pending Remove",
            response,
        );
        // The same, encrypted to the requester's HPKE key.
        let (request, keys) = TestClient::encrypted_group_info_request(&group_id);
        let out = ds.process(&request);
        accepted(&out);
        let DsResponseBody::EncryptedExternalCommitInfo(sealed) =
            decode_response(&out.response).body
        else {
            panic!("expected an encrypted answer")
        };
        assert_eq!(
            mimi_ds::testing::open_external_commit_info(&sealed, &group_id, &keys).unwrap(),
            info
        );
        v.add(
            "request_group_info_encrypted",
            "group_info (17), unauthenticated, with an HPKE encryption key",
            request,
        );
        v.add(
            "response_encrypted_external_commit_info",
            "encrypted_external_commit_info (9): request_group_info_encrypted's answer",
            out.response,
        );

        // missing_pending_proposals: the hub proposes removing carol-1 too (its own proposals
        // are the mandatory ones, wire-format.md §4.3.3); alice-1 has seen neither proposal and
        // commits without them.
        let hub_out = ds
            .ds
            .handle_event(
                mimi_ds::UnixTimeMs(ds.now_ms),
                &group_id,
                &mimi_ds::HubEvent::ClientDeleted {
                    signature_key: carol.signer.to_public_vec(),
                },
                &mut ds.storage,
            )
            .expect("in-memory storage");
        accepted(&hub_out);
        let (update, _) = alice.stage_commit(|b| b.force_self_update(true));
        let out = ds.process(&alice.signed(commit_body(update), ds.now_ms));
        rejected(&out, ErrorCode::MissingPendingProposals);
        alice.discard_commit();
        v.add(
            "response_error_proposal_refs",
            "error (1) missing_pending_proposals with the ProposalRef of the hub's Remove of carol-1",
            out.response,
        );
        for out in [&proposal_out, &hub_out] {
            TestDs::route(out, &mut [&mut alice, &mut bob, &mut carol, &mut alice2]);
        }
        for client in [&mut alice, &mut bob, &mut carol, &mut alice2] {
            client.process_inbox();
        }

        // bob-1 stages a commit at epoch 1 that will arrive late.
        let (stale_update, _) = bob.stage_commit(|b| b.force_self_update(true));

        // commits (16) with a PartialGroupInfo: alice-1 commits the pending Remove.
        let (mut update, _) = alice.stage_commit(|b| b.force_self_update(true));
        update.group_info = GroupInfoOption::Partial(to_partial(&update.group_info));
        let request = alice.signed(commit_body(update), ds.now_ms);
        let commit_out = ds.process(&request);
        accepted(&commit_out);
        alice.confirm_commit();
        v.add(
            "request_commits_partial_group_info",
            "commits (16) by leaf 0 with a PartialGroupInfo: update path + the hub's pending Remove of carol-1 (epoch 1 -> 2)",
            request,
        );

        // wrong_epoch: bob-1's epoch-1 commit after the group moved to epoch 2.
        let out = ds.process(&bob.signed(commit_body(stale_update), ds.now_ms));
        rejected(&out, ErrorCode::WrongEpoch);
        let DsResponseBody::Error(error) = decode_response(&out.response).body else {
            panic!()
        };
        assert_eq!(error.details, DsErrorDetails::CurrentEpoch(2));
        bob.discard_commit();
        v.add(
            "response_error_current_epoch",
            "error (1) wrong_epoch with current_epoch 2",
            out.response,
        );
        TestDs::route(&commit_out, &mut [&mut bob, &mut alice2]);
        for client in [&mut bob, &mut alice2] {
            client.process_inbox();
        }
        assert_eq!((alice.epoch(), bob.epoch(), alice2.epoch()), (2, 2, 2));

        // The operations this DS does not serve, each with real openmls messages at epoch 2. Each
        // staged commit is discarded again.
        let dave = TestClient::new("dave", "dave-1", "d.example");
        let alice3 = TestClient::new("alice", "alice-3", "a.example");
        let now = ds.now_ms;

        let (update, welcome) = alice.stage_commit(|b| b.propose_adds(vec![dave.key_package()]));
        alice.discard_commit();
        let request = alice.signed(
            DsRequestBody::AddUsers(MembershipCommitRequest {
                group_update: update,
                welcome_messages: welcome.into_iter().collect(),
            }),
            now,
        );
        v.add(
            "request_add_users",
            "add_users (3) by leaf 0: commit adding dave-1, with its Welcome",
            request,
        );

        let (update, welcome) = alice.stage_commit(|b| b.propose_adds(vec![alice3.key_package()]));
        alice.discard_commit();
        let request = alice.signed(
            DsRequestBody::AddClients(MembershipCommitRequest {
                group_update: update,
                welcome_messages: welcome.into_iter().collect(),
            }),
            now,
        );
        v.add(
            "request_add_clients",
            "add_clients (5) by leaf 0: commit adding alice-3, with its Welcome",
            request,
        );

        let bob_leaf = LeafNodeIndex::new(bob.leaf());
        let (update, _) = alice.stage_commit(|b| b.propose_removals(vec![bob_leaf]));
        alice.discard_commit();
        let request = alice.signed(
            DsRequestBody::RemoveUsers(DeleteGroupRequest {
                group_update: update,
            }),
            now,
        );
        v.add(
            "request_remove_users",
            "remove_users (4) by leaf 0: commit removing bob-1",
            request,
        );

        let alice2_leaf = LeafNodeIndex::new(alice2.leaf());
        let (update, _) = alice.stage_commit(|b| b.propose_removals(vec![alice2_leaf]));
        alice.discard_commit();
        let request = alice.signed(
            DsRequestBody::RemoveClients(DeleteGroupRequest {
                group_update: update,
            }),
            now,
        );
        v.add(
            "request_remove_clients",
            "remove_clients (6) by leaf 0: commit removing alice-2",
            request,
        );

        let (update, _) = alice.stage_commit(|b| b.force_self_update(true));
        alice.discard_commit();
        let request = alice.signed(
            DsRequestBody::UpdateClient(UpdateClientRequest {
                group_update: update,
                queue_config: Some(queue("a.example", "alice-1-new-queue")),
            }),
            now,
        );
        v.add(
            "request_update_client",
            "update_client (8) by leaf 0: update-path commit and a new queue config",
            request,
        );

        let (update, _) =
            alice.stage_commit(|b| b.add_proposal(reinit_proposal(b"reinitialized-group")));
        alice.discard_commit();
        let request = alice.signed(
            DsRequestBody::ReInitializeGroup(DeleteGroupRequest {
                group_update: update,
            }),
            now,
        );
        v.add(
            "request_re_initialize_group",
            "re_initialize_group (14) by leaf 0: commit of a ReInit proposal",
            request,
        );

        let proposal = {
            let group = alice2.group.as_mut().expect("group");
            group
                .leave_group(&alice2.provider, &alice2.signer)
                .expect("self remove")
        };
        let request = alice2.signed(
            DsRequestBody::SelfRemoveClient(SelfRemoveClientRequest {
                proposal: mls_bytes(&proposal),
            }),
            now,
        );
        v.add(
            "request_self_remove_client",
            "self_remove_client (7) by alice-2 (leaf 3): Remove of its own leaf",
            request,
        );

        // external_join (9): dave-1 joins by external commit from the DS's epoch-2 GroupInfo.
        let (_, _, info) = external_commit_info(&mut ds, &group_id);
        let MlsMessageBodyIn::GroupInfo(group_info) =
            info.group_info.parse().expect("GroupInfo").extract()
        else {
            panic!("not a GroupInfo")
        };
        let join_config = MlsGroupJoinConfig::builder()
            .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .build();
        let leaf = LeafNodeParameters::builder()
            .with_capabilities(TestClient::capabilities())
            .with_extensions(TestClient::queue_extension(&dave.queue))
            .build();
        let (_, bundle) = MlsGroup::external_commit_builder()
            .with_ratchet_tree(info.ratchet_tree.parse().expect("tree"))
            .with_config(join_config)
            .build_group(&dave.provider, group_info, dave.credential.clone())
            .expect("external commit builder")
            .leaf_node_parameters(leaf)
            .load_psks(dave.provider.storage())
            .expect("psks")
            .create_group_info(true)
            .build(
                dave.provider.rand(),
                dave.provider.crypto(),
                &dave.signer,
                |_| true,
            )
            .expect("external commit")
            .finalize(&dave.provider)
            .expect("finalize");
        let (commit, _, group_info) = bundle.into_messages();
        let request = unauthenticated(DsRequestBody::ExternalJoin(DeleteGroupRequest {
            group_update: mimi_ds::wire::GroupUpdate {
                commit: mls_bytes(&commit),
                group_info: GroupInfoOption::Full(mls_bytes(&group_info.expect("group info"))),
            },
        }));
        v.add(
            "request_external_join",
            "external_join (9), unauthenticated: dave-1's external commit (epoch 2 -> 3)",
            request,
        );

        // key_packages (12), signed as a user key hash; connection_key_packages (13).
        let user_key_hash = ref_hash(b"MIMI DS UserKey", &bob.signer.to_public_vec());
        let request = bob.signed_as(
            DsRequestBody::KeyPackages(KeyPackagesRequest {
                client_ids: vec![
                    b"alice-1@alice".to_vec().into(),
                    b"alice-2@alice".to_vec().into(),
                ],
            }),
            &group_id,
            now,
            DsSenderId::UserKeyHash(user_key_hash.into()),
        );
        let out = ds.process(&request);
        rejected(&out, ErrorCode::UnsupportedOperation);
        v.add(
            "request_key_packages",
            "key_packages (12) for alice-1, alice-2, signed by bob as user_key_hash",
            request,
        );
        v.add(
            "response_error",
            "error (1) unsupported_operation, no details: the answer to request_key_packages",
            out.response,
        );
        let request = unauthenticated(DsRequestBody::ConnectionKeyPackages(
            ConnectionKeyPackagesRequest {
                user_id: b"dave".to_vec().into(),
            },
        ));
        v.add(
            "request_connection_key_packages",
            "connection_key_packages (13) for user dave, unauthenticated",
            request,
        );

        // delete_group (2): served; the group is gone afterwards.
        assert_eq!(
            alice.group().members().count(),
            3,
            "alice-1, bob-1, alice-2"
        );
        let request = alice.delete_group_request(ds.now_ms);
        accepted(&ds.process(&request));
        alice.confirm_commit();
        v.add(
            "request_delete_group",
            "delete_group (2) by leaf 0: commit removing bob-1 and alice-2 (epoch 2 -> 3)",
            request,
        );

        // Queueing Service responses (a QS produces them, not the DS).
        v.add(
            "qs_response_ok",
            "ok (0)",
            encode(&QueueingServiceResponse::Ok).expect("encode"),
        );
        v.add(
            "qs_response_invalid_client_queue_information",
            "invalid_client_queue_information (1) for recipients 0 and 2",
            encode(&QueueingServiceResponse::InvalidClientQueueInformation(
                vec![0, 2],
            ))
            .expect("encode"),
        );
        v.add(
            "qs_response_recipients_refused",
            "recipients_refused (2): recipient 0 unknown_queue (19), recipient 2 queue_full (23)",
            encode(&QueueingServiceResponse::RecipientsRefused(vec![
                RecipientRefusal {
                    recipient: 0,
                    code: ErrorCode::UnknownQueue as u16,
                },
                RecipientRefusal {
                    recipient: 2,
                    code: ErrorCode::QueueFull as u16,
                },
            ]))
            .expect("encode"),
        );

        qs_client_protocol(&mut v);
        v.0
    }

    /// The Queueing Service's client protocol (wire-format.md §10.3), every message made by a
    /// real client and answered by a real `TestQs`: erin-1 creates its queue at q.example and
    /// publishes it sealed, a hub group fans a real message out to it, erin-1 fetches and
    /// acknowledges it, deletes the queue, and a later fetch finds no queue.
    fn qs_client_protocol(v: &mut Vectors) {
        let mut ds = TestDs::new("hub.example");
        let mut qs = TestQs::new("q.example");
        let mut frank = TestClient::new("frank", "frank-1", "f.example");
        let mut erin = TestClient::new("erin", "erin-1", "q.example");

        // create_queue (0) -> encrypted_queue_created (2); erin-1 opens it, seals the queue
        // for hub.example and publishes it.
        let request = erin.create_queue_request(qs.now_ms);
        let out = qs.client_request(&request);
        assert!(matches!(
            qs_answer(&out, QsStatus::Accepted),
            QsClientResponseBody::EncryptedQueueCreated(_)
        ));
        let created = erin.open_queue_created(&out.response);
        erin.use_queue(&out.response, "hub.example");
        v.add(
            "qs_client_request_create_queue",
            "create_queue (0) by erin-1, owned by its MLS signature key, answer sealed to its response_key",
            request,
        );
        v.add(
            "qs_client_response_encrypted_queue_created",
            "encrypted_queue_created (2): erin-1's queue at q.example, the answer to qs_client_request_create_queue",
            out.response,
        );
        v.add(
            "queue_created_plaintext",
            "the QueueCreated inside qs_client_response_encrypted_queue_created",
            encode(&created).expect("encode"),
        );
        v.add(
            "queue_info_plaintext",
            "what erin-1 seals into its ClientQueueConfig: queue_created_plaintext's queue ID and token",
            encode(&QueueInfoPlaintext {
                queue_id: created.queue_id.clone(),
                fanout_auth_token: created.fanout_auth_token.clone(),
            })
            .expect("encode"),
        );

        // A real delivery: frank-1's group with erin-1 (whose leaf carries the sealed queue),
        // and a message the hub fans out to q.example.
        ds.create_group_with(&mut frank, &mut [&mut erin]);
        ds.advance(1000);
        qs.now_ms = ds.now_ms;
        let out = ds.process(&frank.message_request(b"hello, erin", ds.now_ms));
        accepted(&out);
        let fanout = out
            .fanout
            .iter()
            .find(|f| f.destination == "q.example")
            .expect("fanout to q.example");
        let delivered = qs.deliver(fanout);
        assert_eq!(delivered.status, QsStatus::Accepted);
        assert_eq!(
            decode_exact::<QueueingServiceResponse>(&delivered.response).expect("decode"),
            QueueingServiceResponse::Ok
        );
        assert_eq!(
            delivered.enqueued,
            vec![created.queue_id.as_slice().to_vec()]
        );

        // fetch (2) -> messages (3) with that message.
        let request = erin.fetch_request(10, qs.now_ms);
        let out = qs.client_request(&request);
        let QsClientResponseBody::Messages(page) = qs_answer(&out, QsStatus::Accepted) else {
            panic!("expected messages")
        };
        assert_eq!(
            (page.messages.len(), page.next_sequence, page.remaining),
            (1, 1, 0)
        );
        assert_eq!(erin.take_page(&out.response), (1, 0));
        assert_eq!(
            erin.process_inbox(),
            vec![Received::Application(b"hello, erin".to_vec())]
        );
        v.add(
            "qs_client_request_fetch",
            "fetch (2) by erin-1 from sequence 0, at most 10 messages",
            request,
        );
        v.add(
            "qs_client_response_messages",
            "messages (3): hub.example's fanout of frank-1's PrivateMessage, the answer to qs_client_request_fetch",
            out.response,
        );

        // acknowledge (3) -> ok (0).
        let request = erin.ack_request(qs.now_ms);
        let out = qs.client_request(&request);
        assert_eq!(
            qs_answer(&out, QsStatus::Accepted),
            QsClientResponseBody::Ok
        );
        assert_eq!(qs.storage.queued(created.queue_id.as_slice()), 0);
        v.add(
            "qs_client_request_acknowledge",
            "acknowledge (3) by erin-1 up to sequence 1",
            request,
        );
        v.add(
            "qs_client_response_ok",
            "ok (0): the answer to qs_client_request_acknowledge",
            out.response,
        );

        // delete_queue (1); a fetch afterwards is answered unknown_queue.
        let request = erin.qs_request(QsClientRequestBody::DeleteQueue, qs.now_ms);
        let out = qs.client_request(&request);
        assert_eq!(
            qs_answer(&out, QsStatus::Accepted),
            QsClientResponseBody::Ok
        );
        v.add(
            "qs_client_request_delete_queue",
            "delete_queue (1) by erin-1",
            request,
        );
        let out = qs.client_request(&erin.fetch_request(10, qs.now_ms));
        let QsClientResponseBody::Error(error) =
            qs_answer(&out, QsStatus::Rejected(ErrorCode::UnknownQueue))
        else {
            panic!("expected an error")
        };
        assert_eq!(
            (error.code, error.details),
            (ErrorCode::UnknownQueue, DsErrorDetails::None)
        );
        v.add(
            "qs_client_response_error",
            "error (1) unknown_queue: erin-1's fetch after qs_client_request_delete_queue",
            out.response,
        );
    }
}
