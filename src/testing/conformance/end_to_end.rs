//! The end-to-end check: real openmls clients through a [`DeliveryService`] on the backend,
//! and crash recovery from the outbox.

use openmls_rust_crypto::RustCrypto;

use super::{ok, NOW};
use crate::storage::{
    DsOutbox, DsStorage, GroupSnapshot, RecordKind, ReplayMark, WriteOutcome, WriteSet,
};
use crate::testing::{decode_response, ds_identity, Received, TestClient};
use crate::wire::{
    encode, DsAuthData, DsRequest, DsRequestBody, DsResponseBody, PROTOCOL_VERSION_MIMI_DS10,
};
use crate::{
    BasicCredentialValidator, DeliveryService, DsConfig, Fanout, Outcome, ProcessError, Status,
    UnixTimeMs,
};

/// Wraps a backend whose write applies and then reports failure, as when the connection
/// drops before the commit's acknowledgement arrives.
struct LosesAcknowledgements<S>(S);

/// The error of [`LosesAcknowledgements`].
#[derive(Debug, thiserror::Error)]
enum LostAcknowledgement<E: std::error::Error + 'static> {
    #[error("backend: {0}")]
    Backend(#[source] E),
    #[error("the write applied, then its acknowledgement was lost")]
    Lost,
}

impl<S: DsStorage> DsStorage for LosesAcknowledgements<S> {
    type Error = LostAcknowledgement<S::Error>;

    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, Self::Error> {
        self.0
            .read(group_id, kinds)
            .map_err(LostAcknowledgement::Backend)
    }

    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, Self::Error> {
        self.0
            .replay_mark(group_id, key, now_ms)
            .map_err(LostAcknowledgement::Backend)
    }

    fn write(&mut self, write_set: &WriteSet) -> Result<WriteOutcome, Self::Error> {
        match self
            .0
            .write(write_set)
            .map_err(LostAcknowledgement::Backend)?
        {
            WriteOutcome::Applied => Err(LostAcknowledgement::Lost),
            WriteOutcome::Conflict => Ok(WriteOutcome::Conflict),
        }
    }
}

/// Delivers fanouts to the clients whose queues they name, as Queueing Services would.
fn deliver(fanouts: &[Fanout], clients: &mut [&mut TestClient]) {
    for fanout in fanouts {
        for queue in &fanout.request.recipients {
            for client in clients.iter_mut() {
                if client.queue.queue == *queue
                    && client.queue.provider_domain == fanout.request.recipient_domain
                {
                    client.inbox.push(fanout.request.message.clone());
                }
            }
        }
    }
}

/// A relay's pass over the outbox: the due fanouts, decoded, and marked delivered.
fn drain<S: DsOutbox>(storage: &mut S) -> Vec<Fanout> {
    let entries = ok(storage.pending(u64::MAX, usize::MAX), "pending");
    entries
        .into_iter()
        .map(|entry| {
            let fanout = entry
                .fanout()
                .unwrap_or_else(|e| panic!("an entry the backend stored decodes: {e}"));
            assert!(ok(storage.mark_delivered(entry.id), "mark_delivered"));
            fanout
        })
        .collect()
}

fn accepted<E: std::error::Error>(result: Result<Outcome, ProcessError<E>>, what: &str) -> Outcome {
    let outcome = result.unwrap_or_else(|e| panic!("{what}: {e:?}"));
    assert_eq!(
        outcome.status,
        Status::Accepted,
        "{what}: {:?}",
        decode_response(&outcome.response)
    );
    outcome
}

/// Real clients through a [`DeliveryService`] on the backend: each accepted request's fanout
/// is in the outbox, exactly; a write that applied and then reported failure (its
/// acknowledgement lost) leaves its commit in the outbox, a byte-identical retry answered
/// `Duplicate` does not hide it, and a relay on a **new handle**, opened after the first was
/// dropped (a restarted process), delivers it: the member who would have missed the commit
/// follows it and keeps talking in the new epoch.
pub fn end_to_end_with_real_clients<S: DsStorage + DsOutbox>(open: &(impl Fn() -> S + Sync)) {
    let config = DsConfig::new("hub.example");
    let (identity, external_sender) = ds_identity(&config.domain);
    let ds = DeliveryService::new(config, identity, RustCrypto::default())
        .with_credential_validator(BasicCredentialValidator::accept_basic_credentials());
    let now = UnixTimeMs(NOW);
    let mut alice = TestClient::new("alice", "a1", "alice.example");
    let mut bob = TestClient::new("bob", "b1", "bob.example");
    let mut storage = open();

    let request_group_id = encode(&DsRequest {
        version: PROTOCOL_VERSION_MIMI_DS10,
        body: DsRequestBody::RequestGroupId,
        auth: DsAuthData::Unauthenticated,
    })
    .expect("encode");
    let out = accepted(
        ds.process(now, &request_group_id, &mut storage),
        "request_group_id",
    );
    let DsResponseBody::GroupId(group_id) = decode_response(&out.response).body else {
        panic!("no group ID");
    };
    let group_id = group_id.as_slice().to_vec();
    alice.create_group(&group_id, &external_sender);
    let _created = accepted(
        ds.process(now, &alice.create_group_request(NOW), &mut storage),
        "create_group",
    );
    assert!(drain(&mut storage).is_empty(), "nothing fanned out yet");

    let add = accepted(
        ds.process(
            now,
            &alice.add_request(vec![bob.key_package()], NOW),
            &mut storage,
        ),
        "add bob",
    );
    alice.confirm_commit();
    let relayed = drain(&mut storage);
    assert!(!add.fanout.is_empty(), "the add fans out the Welcome");
    assert_eq!(
        relayed, add.fanout,
        "the outbox holds exactly the request's fanout"
    );
    deliver(&relayed, &mut [&mut bob]);
    let Some(Received::Welcome(welcome)) = bob.process_inbox().pop() else {
        panic!("bob got no Welcome from the outbox");
    };
    let (request, processed) = bob.welcome_info_request(&welcome, NOW);
    let out = accepted(ds.process(now, &request, &mut storage), "welcome_info");
    let DsResponseBody::WelcomeInfo(info) = decode_response(&out.response).body else {
        panic!("no welcome info");
    };
    bob.join_with_tree(processed, &info.ratchet_tree);

    let message = accepted(
        ds.process(now, &alice.message_request(b"hello", NOW), &mut storage),
        "message",
    );
    let relayed = drain(&mut storage);
    assert_eq!(
        relayed, message.fanout,
        "the outbox holds exactly the message's fanout"
    );
    deliver(&relayed, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Application(b"hello".to_vec())]
    );

    // The commit applies, but the DS only sees an error: no fanout comes back.
    let update = alice.update_request(NOW);
    let mut losing = LosesAcknowledgements(storage);
    match ds.process(now, &update, &mut losing) {
        Err(ProcessError::Storage(LostAcknowledgement::Lost)) => {}
        other => panic!("the lost acknowledgement is a storage error: {other:?}"),
    }
    // Alice retries on the same handle; the DS recognises the applied commit.
    let LosesAcknowledgements(mut storage) = losing;
    let retry = ds.process(now, &update, &mut storage).expect("the retry");
    assert_eq!(
        retry.status,
        Status::Duplicate,
        "a byte-identical retry of an applied commit"
    );
    assert!(
        retry.fanout.is_empty(),
        "a Duplicate answer fans out nothing"
    );
    alice.confirm_commit();
    // The process stops before delivering anything.
    drop(storage);

    let mut restarted = open();
    let relayed = drain(&mut restarted);
    assert!(
        !relayed.is_empty(),
        "the commit's fanout survived in the outbox"
    );
    deliver(&relayed, &mut [&mut bob]);
    assert_eq!(
        bob.process_inbox(),
        vec![Received::Commit {
            epoch: alice.epoch(),
            removed: false
        }],
        "bob follows the commit from the outbox"
    );
    let reply = accepted(
        ds.process(
            now,
            &bob.message_request(b"still here", NOW),
            &mut restarted,
        ),
        "bob in the new epoch",
    );
    deliver(&drain(&mut restarted), &mut [&mut alice]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Application(b"still here".to_vec())]
    );
    assert_eq!(reply.fanout.len(), 1);
}
