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
//! seals into its `ClientQueueConfig`. For connection establishment (wire-format.md §14.3) it
//! covers every structure (`connection_*`), the acceptance's external commit carrying the
//! sealed response, and the refusal of a replayed request; for the client-facing connection
//! endpoints (§14.3.2) every `ConnectionClientRequestBody` and `ConnectionServiceResponseBody`
//! codepoint and the `ConnectionKeyFetch`.
//!
//! The files are produced from real openmls clients, a real `TestDs` and a real `TestQs` by
//! the generator in `tests/golden_vectors/generator/`, with seeded keys and randomness, so the
//! same code makes the same bytes. Regenerate with
//!
//! ```text
//! cargo test --test golden_vectors -- --ignored regenerate
//! ```
//!
//! and review `git diff tests/vectors`: only what the code changed differs (and one HPKE
//! ciphertext, see the generator's docs). `checked_in_vectors_are_what_the_generator_makes`
//! fails until the files are regenerated after such a change.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mimi_ds::connection::{
    ConnectionClientRequest, ConnectionClientRequestBody, ConnectionInboxAddress,
    ConnectionKeyBundle, ConnectionKeyFetch, ConnectionRequest, ConnectionRequestDelivery,
    ConnectionResponse, ConnectionServiceResponse, ConnectionServiceResponseBody, SafeAad,
    StoredConnectionRequest,
};
use mimi_ds::directory::{
    KeyPackageUploadRequest, KeyPackageUploadResponse, KeyPackageUploadResponseBody,
};
use mimi_ds::wire::{
    decode_exact, encode, DsAuthData, DsErrorDetails, DsRequest, DsRequestBody, DsResponse,
    DsResponseBody, DsSenderId, ErrorCode, GroupInfoOption, LastResort, QsClientRequest,
    QsClientRequestBody, QsClientResponse, QsClientResponseBody, QueueCreated, QueueInfoPlaintext,
    QueueingServiceRequest, QueueingServiceResponse, ReportedMessage,
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
    ConnectionRequest(ConnectionRequest),
    ConnectionResponse(ConnectionResponse),
    ConnectionKeyBundle(ConnectionKeyBundle),
    ConnectionRequestDelivery(ConnectionRequestDelivery),
    StoredConnectionRequest(StoredConnectionRequest),
    ConnectionInboxAddress(ConnectionInboxAddress),
    SafeAad(SafeAad),
    ConnectionKeyFetch(ConnectionKeyFetch),
    ConnectionClientRequest(ConnectionClientRequest),
    ConnectionServiceResponse(ConnectionServiceResponse),
    ReportedMessage(ReportedMessage),
    DirectoryUploadRequest(KeyPackageUploadRequest),
    DirectoryUploadResponse(KeyPackageUploadResponse),
}

/// The wire type a file name selects (`qs_` first: `qs_request_*` also contains `request_`).
fn type_name_for(name: &str) -> &'static str {
    if let Some(connection) = connection_type_name_for(name) {
        connection
    } else if name.starts_with("directory_upload_request") {
        "KeyPackageUploadRequest"
    } else if name.starts_with("directory_upload_response_") {
        "KeyPackageUploadResponse"
    } else if name.starts_with("qs_client_request_") {
        "QsClientRequest"
    } else if name.starts_with("qs_client_response_") {
        "QsClientResponse"
    } else if name.starts_with("queue_info_plaintext") {
        "QueueInfoPlaintext"
    } else if name.starts_with("queue_created_plaintext") {
        "QueueCreated"
    } else if name.starts_with("reported_message") {
        "ReportedMessage"
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
             queue_created_plaintext, reported_message, directory_upload_request,
             directory_upload_response_)"
        )
    }
}

/// The connection structures (wire-format.md §14.3), named `connection_*`.
fn connection_type_name_for(name: &str) -> Option<&'static str> {
    [
        ("connection_request_plaintext", "ConnectionRequest"),
        ("connection_response_plaintext", "ConnectionResponse"),
        ("connection_key_bundle", "ConnectionKeyBundle"),
        ("connection_request_delivery", "ConnectionRequestDelivery"),
        ("connection_stored_request", "StoredConnectionRequest"),
        ("connection_inbox_address", "ConnectionInboxAddress"),
        ("connection_response_aad", "SafeAad"),
        ("connection_key_fetch", "ConnectionKeyFetch"),
        ("connection_client_request_", "ConnectionClientRequest"),
        ("connection_service_response_", "ConnectionServiceResponse"),
    ]
    .into_iter()
    .find(|(prefix, _)| name.starts_with(prefix))
    .map(|(_, type_name)| type_name)
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
        "ConnectionRequest" => Decoded::ConnectionRequest(round_trip(name, bytes)),
        "ConnectionResponse" => Decoded::ConnectionResponse(round_trip(name, bytes)),
        "ConnectionKeyBundle" => Decoded::ConnectionKeyBundle(round_trip(name, bytes)),
        "ConnectionRequestDelivery" => Decoded::ConnectionRequestDelivery(round_trip(name, bytes)),
        "StoredConnectionRequest" => Decoded::StoredConnectionRequest(round_trip(name, bytes)),
        "ConnectionInboxAddress" => Decoded::ConnectionInboxAddress(round_trip(name, bytes)),
        "SafeAad" => Decoded::SafeAad(round_trip(name, bytes)),
        "ConnectionKeyFetch" => Decoded::ConnectionKeyFetch(round_trip(name, bytes)),
        "ConnectionClientRequest" => Decoded::ConnectionClientRequest(round_trip(name, bytes)),
        "ConnectionServiceResponse" => Decoded::ConnectionServiceResponse(round_trip(name, bytes)),
        "ReportedMessage" => Decoded::ReportedMessage(round_trip(name, bytes)),
        "KeyPackageUploadRequest" => Decoded::DirectoryUploadRequest(round_trip(name, bytes)),
        "KeyPackageUploadResponse" => Decoded::DirectoryUploadResponse(round_trip(name, bytes)),
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

/// The body of a `ConnectionClientRequest` that carries an owner key and a signature.
fn conn_req(d: &Decoded) -> Option<&ConnectionClientRequestBody> {
    match d {
        Decoded::ConnectionClientRequest(r)
            if r.owner_key.as_slice().len() == 32 && r.signature.as_slice().len() == 64 =>
        {
            Some(&r.body)
        }
        _ => None,
    }
}

fn conn_resp(d: &Decoded) -> Option<&ConnectionServiceResponseBody> {
    match d {
        Decoded::ConnectionServiceResponse(r) if r.version == 1 => Some(&r.body),
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
        |d| matches!(req(d), Some((DsRequestBody::KeyPackages(b), a)) if by_user_key_hash(a) && b.connection_token.as_slice().len() == 32),
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
    (
        "request_identity_link_keys",
        |d| matches!(req(d), Some((DsRequestBody::IdentityLinkKeys, a)) if by_leaf(a)),
    ),
    ("request_with_state_keys", |d| {
        matches!(req(d), Some((DsRequestBody::WithStateKeys(k), a))
            if by_leaf(a) && k.keys.next().is_none()
                && matches!(*k.request, DsRequestBody::IdentityLinkKeys))
    }),
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
        // draft-ietf-mimi-protocol-06 GroupInfoRatchetTreeTBE: a bare GroupInfo, the full tree,
        // the pending proposals with their hub_accepted_time.
        |d| {
            matches!(resp(d), Some(DsResponseBody::ExternalCommitInfo(i))
            if !i.pending_proposals.is_empty() && i.ratchet_tree().is_some()
                && i.group_info.parse().is_ok()
                && i.pending_proposals.iter().all(|p| p.hub_accepted_time > 0))
        },
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
    ("response_identity_link_keys", |d| {
        matches!(resp(d), Some(DsResponseBody::IdentityLinkKeys(_)))
    }),
    (
        "response_signature_public_key",
        |d| matches!(resp(d), Some(DsResponseBody::SignaturePublicKey(k)) if !k.as_slice().is_empty()),
    ),
    (
        "response_accepted",
        |d| matches!(resp(d), Some(DsResponseBody::Accepted(a)) if a.frank.is_none()),
    ),
    // Franking (wire-format.md §15.5-§15.7).
    (
        "request_send_message_franked",
        |d| matches!(req(d), Some((DsRequestBody::SendMessage(b), a)) if by_leaf(a) && is_private(&b.application_message)),
    ),
    (
        "response_accepted_franked",
        |d| matches!(resp(d), Some(DsResponseBody::Accepted(a)) if a.frank.is_some()),
    ),
    (
        "qs_request_application_message_franked",
        |d| matches!(d, Decoded::QsRequest(r) if is_private(&r.message.message) && r.message.frank.is_some()),
    ),
    (
        "reported_message",
        |d| matches!(d, Decoded::ReportedMessage(r) if !r.application_data.as_slice().is_empty()),
    ),
    // Queueing Service messages.
    (
        "qs_request_welcome",
        |d| matches!(d, Decoded::QsRequest(r) if !r.recipients.is_empty() && is_welcome(&r.message.message)),
    ),
    (
        "qs_request_application_message",
        |d| matches!(d, Decoded::QsRequest(r) if !r.recipients.is_empty() && is_private(&r.message.message) && r.message.frank.is_none()),
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
    // The KeyPackage directory (wire-format.md §14.4).
    ("response_key_packages", |d| {
        matches!(resp(d), Some(DsResponseBody::KeyPackages(set))
            if set.key_packages.len() == 2 && set.last_resort == LastResort::No)
    }),
    ("response_connection_key_packages", |d| {
        matches!(resp(d), Some(DsResponseBody::ConnectionKeyPackages(set))
            if set.key_packages.len() == 2 && set.last_resort == LastResort::Yes)
    }),
    ("directory_upload_request", |d| {
        matches!(d, Decoded::DirectoryUploadRequest(r)
            if r.connection_token.as_slice().len() == 32 && r.uploads.len() == 4)
    }),
    ("directory_upload_response_status", |d| {
        matches!(d, Decoded::DirectoryUploadResponse(KeyPackageUploadResponse {
            body: KeyPackageUploadResponseBody::Status(status), .. }) if status.sets.len() == 2)
    }),
    ("directory_upload_response_error", |d| {
        matches!(d, Decoded::DirectoryUploadResponse(KeyPackageUploadResponse {
            body: KeyPackageUploadResponseBody::Error(e), .. })
            if e.code == ErrorCode::AuthenticationFailed)
    }),
    // The plaintext a client seals into ClientQueueConfig.queue (wire-format.md §10.1).
    ("queue_info_plaintext", |d| {
        matches!(d, Decoded::QueueInfoPlaintext(p)
            if !p.queue_id.as_slice().is_empty() && !p.fanout_auth_token.as_slice().is_empty())
    }),
    // Connection establishment (wire-format.md §14.3).
    (
        "connection_key_bundle",
        |d| matches!(d, Decoded::ConnectionKeyBundle(b) if b.connection_establishment_key.as_slice().len() == 32),
    ),
    (
        "connection_inbox_address",
        |d| matches!(d, Decoded::ConnectionInboxAddress(a) if a.inbox_id.as_slice().len() == 16),
    ),
    ("connection_request_plaintext", |d| {
        matches!(d, Decoded::ConnectionRequest(r)
            if !r.requester_connection_token.as_slice().is_empty() && !r.signature.as_slice().is_empty())
    }),
    (
        "connection_request_delivery",
        |d| matches!(d, Decoded::ConnectionRequestDelivery(r) if r.version == 1),
    ),
    (
        "connection_stored_request",
        |d| matches!(d, Decoded::StoredConnectionRequest(r) if r.sequence_number == 0),
    ),
    ("connection_response_plaintext", |d| {
        matches!(d, Decoded::ConnectionResponse(r)
            if !r.responder_connection_token.as_slice().is_empty() && !r.signature.as_slice().is_empty())
    }),
    ("connection_response_aad", |d| {
        matches!(d, Decoded::SafeAad(a)
            if a.aad_items.len() == 1 && a.aad_items[0].component_id == 0xF1DA)
    }),
    (
        "request_external_join_connection_acceptance",
        |d| matches!(req(d), Some((DsRequestBody::ExternalJoin(_), a)) if unauthenticated(a)),
    ),
    (
        "response_error_connection_request_replayed",
        |d| matches!(resp(d), Some(DsResponseBody::Error(e)) if e.code == ErrorCode::ReplayedMessage),
    ),
    // The client-facing connection endpoints (wire-format.md §14.3.2).
    (
        "connection_key_fetch",
        |d| matches!(d, Decoded::ConnectionKeyFetch(f) if f.version == 1 && f.user.as_slice() == b"carol"),
    ),
    ("connection_client_request_publish", |d| {
        matches!(conn_req(d), Some(ConnectionClientRequestBody::Publish { connection_establishment_key, .. })
            if connection_establishment_key.as_slice().len() == 32)
    }),
    ("connection_client_request_read", |d| {
        matches!(conn_req(d), Some(ConnectionClientRequestBody::Read { from_sequence: 0, max_requests })
            if *max_requests > 0)
    }),
    ("connection_client_request_acknowledge", |d| {
        matches!(
            conn_req(d),
            Some(ConnectionClientRequestBody::Acknowledge { up_to_sequence: 1 })
        )
    }),
    ("connection_service_response_ok", |d| {
        matches!(conn_resp(d), Some(ConnectionServiceResponseBody::Ok))
    }),
    ("connection_service_response_error", |d| {
        matches!(conn_resp(d), Some(ConnectionServiceResponseBody::Error(e))
            if e.code == ErrorCode::UnknownQueue)
    }),
    ("connection_service_response_key_bundle", |d| {
        matches!(conn_resp(d), Some(ConnectionServiceResponseBody::KeyBundle(b))
            if b.connection_establishment_key.as_slice().len() == 32)
    }),
    ("connection_service_response_requests", |d| {
        matches!(conn_resp(d), Some(ConnectionServiceResponseBody::Requests(r))
            if r.len() == 1 && r[0].sequence_number == 0 && r[0].sender_domain.as_slice() == b"a.example")
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

    // Every DSRequestType, 0..=19, MIMIMI's 24 and privacy mode's 25 (wire-format.md §17.4),
    // and nothing the decoder accepts is left out.
    let request_types: BTreeSet<u8> = requests
        .iter()
        .map(|r| r.body.request_type() as u8)
        .collect();
    assert_eq!(
        request_types,
        (0..=19).chain([24, 25]).collect::<BTreeSet<u8>>(),
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

    // Every KeyPackageUploadResponseBody codepoint (wire-format.md §14.4).
    let upload_response_tags: BTreeSet<u8> = vectors
        .iter()
        .filter_map(|(_, d)| match d {
            Decoded::DirectoryUploadResponse(r) => Some(encode(&r.body).expect("encode")[0]),
            _ => None,
        })
        .collect();
    assert_eq!(
        defined_tags::<KeyPackageUploadResponseBody>(),
        upload_response_tags,
        "KeyPackageUploadResponseBody has codepoints without a vector"
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

    // Every ConnectionClientRequestType and ConnectionServiceResponseType (wire-format.md
    // §14.3.2), and nothing the decoders accept is left out.
    let connection_request_types: BTreeSet<u8> = vectors
        .iter()
        .filter_map(|(_, d)| match d {
            Decoded::ConnectionClientRequest(r) => Some(encode(&r.body).expect("encode")[0]),
            _ => None,
        })
        .collect();
    assert_eq!(
        connection_request_types,
        defined_tags::<ConnectionClientRequestBody>(),
        "connection client request types covered"
    );
    let connection_response_types: BTreeSet<u8> = vectors
        .iter()
        .filter_map(|(_, d)| match d {
            Decoded::ConnectionServiceResponse(r) => Some(encode(&r.body).expect("encode")[0]),
            _ => None,
        })
        .collect();
    assert_eq!(
        connection_response_types,
        defined_tags::<ConnectionServiceResponseBody>(),
        "connection service response types covered"
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
// The generator (its own files; its tests check that it is deterministic)
// ---------------------------------------------------------------------------------------------

#[path = "golden_vectors/generator/mod.rs"]
mod generator;

/// The library builds the checked-in connection-response SafeAAD from the sealed response it
/// carries: both sides call `connection_response_aad`, so only a vector pins its layout
/// (wire-format.md §14.3).
#[test]
fn connection_response_aad_is_built_as_the_vector() {
    let name = "connection_response_aad";
    let text = std::fs::read_to_string(vector_path(name)).expect("read vector");
    let bytes = parse_vector_file(name, &text).bytes;
    let aad = mimi_ds::safe_aad::SafeAad::tls_deserialize_exact_bytes(&bytes).expect("SafeAAD");
    let sealed = mimi_ds::wire::HpkeCiphertext::tls_deserialize_exact_bytes(
        aad.aad_items[0].aad_item_data.as_slice(),
    )
    .expect("HpkeCiphertext");
    assert_eq!(
        mimi_ds::connection::connection_response_aad(&sealed).expect("encode"),
        bytes
    );
}
