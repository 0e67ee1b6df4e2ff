//! Privacy mode (wire-format.md §17): keyed requests of real clients, with their state keys
//! damaged and the requests re-signed, so every damage reaches the record layer.

use std::sync::OnceLock;

use openmls_basic_credential::SignatureKeyPair;

use super::copy_key;
use crate::privacy::{StateKey, StateKeys};
use crate::testing::{decode_response, Received, TestClient, TestDs};
use crate::wire::{
    decode_exact, encode, ClientSignature, DsAuthData, DsRequest, DsRequestBody, ErrorCode,
    StateKeyedRequest,
};
use crate::{Status, UnixTimeMs};

/// Alice and Bob in a privacy-mode group at epoch 1, and two keyed requests of Alice's valid
/// on exactly that state: a `send_message` and an update commit (with `next_key`).
struct PrivacyFixture {
    ds: TestDs,
    requests: [Vec<u8>; 2],
    signer: SignatureKeyPair,
}

fn privacy_fixture() -> &'static PrivacyFixture {
    static FIXTURE: OnceLock<PrivacyFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut ds = TestDs::new("hub.example");
        let mut alice = TestClient::new("alice", "alice-1", "a.example");
        let mut bob = TestClient::new("bob", "bob-1", "b.example");
        let group_id = ds.request_group_id();
        alice.create_private_group(&group_id, &ds.external_sender);
        let request = alice.create_group_request(ds.now_ms);
        let _ = ds.accept(&alice.keyed_by_member(&request, false, ds.now_ms));
        let request = alice.add_request(vec![bob.privacy_key_package()], ds.now_ms);
        let out = ds.accept(&alice.keyed_by_member(&request, true, ds.now_ms));
        alice.confirm_commit();
        TestDs::route(&out, &mut [&mut bob]);
        let Some(Received::Welcome(welcome)) = bob.process_inbox().pop() else {
            panic!("no Welcome delivered")
        };
        bob.join_from_welcome_with_its_tree(&welcome);
        let message = alice.message_request(b"fuzz", ds.now_ms);
        let message = alice.keyed_by_member(&message, false, ds.now_ms);
        let commit = alice.update_request(ds.now_ms);
        let commit = alice.keyed_by_member(&commit, true, ds.now_ms);
        PrivacyFixture {
            ds,
            requests: [message, commit],
            signer: copy_key(&alice.signer),
        }
    })
}

/// The keyed request `request` with its keys replaced by `keys` (or unkeyed with `None`),
/// signed again by `signer`.
fn rekeyed(request: &[u8], keys: Option<StateKeys>, signer: &SignatureKeyPair) -> Vec<u8> {
    let decoded = decode_exact::<DsRequest>(request).expect("a fixture request");
    let DsRequestBody::WithStateKeys(keyed) = decoded.body else {
        panic!("a keyed fixture request")
    };
    let body = match keys {
        Some(keys) => DsRequestBody::WithStateKeys(StateKeyedRequest {
            keys,
            request: keyed.request,
        }),
        None => *keyed.request,
    };
    let DsAuthData::ClientSignature(signature) = decoded.auth else {
        panic!("a signed fixture request")
    };
    let auth = ClientSignature::sign(
        signer,
        decoded.version,
        &body,
        signature.group_id.as_slice(),
        signature.timestamp_ms,
        signature.sender_id,
    )
    .expect("signing");
    encode(&DsRequest {
        version: decoded.version,
        body,
        auth: DsAuthData::ClientSignature(auth),
    })
    .expect("encode")
}

/// Fuzz body: a keyed `send_message` or commit of a privacy-mode group (`data[0]`) with one
/// damage to its keys (`data[1]`, argument `data[2]`): none (accepted), no keys
/// (`state_key_missing`), a byte of the current key flipped or the key shortened
/// (`state_key_wrong`), another epoch (`state_key_stale`), or `next_key` removed from the
/// commit or added to the message (`state_key_missing` / `state_key_unexpected`). Every
/// damaged request is refused with exactly that code, changes no stored byte and fans out
/// nothing (wire-format.md §17.9).
pub fn privacy_keys(data: &[u8]) {
    let [which, damage, arg, ..] = *data else {
        return;
    };
    let fixture = privacy_fixture();
    let is_commit = which % 2 == 1;
    let original = &fixture.requests[usize::from(which % 2)];
    let DsRequestBody::WithStateKeys(keyed) = decode_exact::<DsRequest>(original)
        .expect("a fixture request")
        .body
    else {
        panic!("a keyed fixture request")
    };
    let keys = keyed.keys;
    let current = keys.current();
    let scheme = keys.scheme();
    let with = |current: StateKey, next: Option<StateKey>| StateKeys::new(scheme, current, next);
    let (damaged, expected) = match damage % 6 {
        0 => (Some(keys.clone()), None),
        1 => (None, Some(ErrorCode::StateKeyMissing)),
        2 => {
            let mut secret = current.secret().to_vec();
            let at = usize::from(arg) % secret.len();
            secret[at] ^= 1 << (arg % 8);
            let key = StateKey::new(current.epoch(), secret);
            (
                with(key, keys.next().cloned()),
                Some(ErrorCode::StateKeyWrong),
            )
        }
        3 => {
            let epoch = if arg % 2 == 0 {
                current.epoch().wrapping_sub(1 + u64::from(arg / 2))
            } else {
                current.epoch().wrapping_add(1 + u64::from(arg / 2))
            };
            // A next key must be for the epoch after; keep the commit's, re-dated.
            let next = keys
                .next()
                .map(|n| StateKey::new(epoch.wrapping_add(1), n.secret().to_vec()));
            let key = StateKey::new(epoch, current.secret().to_vec());
            (with(key, next), Some(ErrorCode::StateKeyStale))
        }
        4 if is_commit => (
            with(current.clone(), None),
            Some(ErrorCode::StateKeyMissing),
        ),
        4 => {
            let next = StateKey::new(current.epoch() + 1, vec![arg; current.secret().len()]);
            (
                with(current.clone(), Some(next)),
                Some(ErrorCode::StateKeyUnexpected),
            )
        }
        _ => {
            let length = usize::from(arg) % current.secret().len();
            let key = StateKey::new(current.epoch(), current.secret()[..length].to_vec());
            (
                with(key, keys.next().cloned()),
                Some(ErrorCode::StateKeyWrong),
            )
        }
    };
    if damage % 6 != 1 && damaged.is_none() {
        return; // An epoch at the end of the range: no next epoch to key.
    }
    let request = rekeyed(original, damaged, &fixture.signer);
    let mut storage = fixture.ds.storage.clone();
    let out = fixture
        .ds
        .ds
        .process(UnixTimeMs(fixture.ds.now_ms), &request, &mut storage)
        .expect("in-memory storage cannot fail");
    match expected {
        None => assert_eq!(
            out.status,
            Status::Accepted,
            "{:?}",
            decode_response(&out.response)
        ),
        Some(code) => {
            assert_eq!(
                out.status,
                Status::Rejected(code),
                "{:?}",
                decode_response(&out.response)
            );
            assert!(
                storage == fixture.ds.storage,
                "a refused request changed storage"
            );
            assert!(out.fanout.is_empty(), "a refused request fanned out");
        }
    }
}
