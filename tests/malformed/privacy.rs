//! The sweep's privacy-mode group (wire-format.md §17): keyed requests, damaged like every
//! other case, and the refusals of missing, wrong, stale and unexpected keys and of keyed
//! bodies the codec refuses (§17.4, §17.9), each on its snapshot.

use super::*;
use mimi_ds::privacy::{StateKey, StateKeyScheme, StateKeys};
use mimi_ds::testing::privacy::keyed_with;

/// Frank's privacy-mode group: a keyed `create_group`, a keyed commit adding Grace (who joins
/// from the Welcome's own tree) and a keyed `send_message`; refused on the message's snapshot,
/// the same message without keys, with a wrong, a stale or an extra key, and keyed bodies that
/// wrap what §17.4 forbids.
pub(super) fn privacy_group(s: &mut Scenario) {
    let mut frank = TestClient::new("frank", "frank-1", "f.example");
    let mut grace = TestClient::new("grace", "grace-1", "g.example");
    let outsider = TestClient::new("heidi", "heidi-1", "h.example");
    let group_id = s.ds.request_group_id();
    let now = s.ds.now_ms;

    frank.create_private_group(&group_id, &s.ds.external_sender);
    let request = frank.create_group_request(now);
    let request = frank.keyed_by_member(&request, false, now);
    let mut case = Case::new("keyed_create_group", Kind::CreateGroup, 0, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&outsider]);
    let _ = s.push(case);

    let request = frank.add_request(vec![grace.privacy_key_package()], now);
    let request = frank.keyed_by_member(&request, true, now);
    let mut case = Case::new("keyed_add_commit", Kind::Commit, 0, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&outsider]);
    let out = s.push(case);
    frank.confirm_commit();
    TestDs::route(&out, &mut [&mut grace]);
    let welcome = welcome_of(&mut grace);
    grace.join_from_welcome_with_its_tree(&welcome);

    let plain = frank.message_request(b"sealed at rest", now);
    let request = frank.keyed_by_member(&plain, false, now);
    let mut case = Case::new("keyed_send_message", Kind::Message, 1, request, &s.ds);
    case.wrong_senders = wrong_senders(&case.request, &[&outsider, &grace]);
    let out = s.push_unapplied(case);
    assert_eq!(out.status, Status::Accepted);

    let keys = |current: StateKey, next: Option<StateKey>| {
        StateKeys::new(StateKeyScheme::ExporterEpochKey, current, next).expect("next epoch")
    };
    let epoch = frank.epoch();
    let own = frank.state_keys(false).current().clone();
    let refusals: Vec<(&'static str, ErrorCode, Vec<u8>)> = vec![
        (
            "privacy_message_without_keys",
            ErrorCode::StateKeyMissing,
            plain.clone(),
        ),
        (
            "privacy_message_with_a_wrong_key",
            ErrorCode::StateKeyWrong,
            frank.keyed_request(&plain, keys(StateKey::new(epoch, vec![9; 32]), None), now),
        ),
        (
            "privacy_message_with_a_key_of_the_wrong_length",
            ErrorCode::StateKeyWrong,
            frank.keyed_request(&plain, keys(StateKey::new(epoch, vec![9; 16]), None), now),
        ),
        (
            "privacy_message_with_a_stale_key",
            ErrorCode::StateKeyStale,
            frank.keyed_request(
                &plain,
                keys(StateKey::new(epoch - 1, vec![9; 32]), None),
                now,
            ),
        ),
        (
            "privacy_message_with_a_next_key",
            ErrorCode::StateKeyUnexpected,
            frank.keyed_request(
                &plain,
                keys(own.clone(), Some(StateKey::new(epoch + 1, vec![9; 32]))),
                now,
            ),
        ),
        (
            "privacy_keyed_request_wrapping_a_keyed_request",
            ErrorCode::MalformedRequest,
            frank.signed(
                keyed_with(
                    keys(own.clone(), None),
                    keyed_with(keys(own.clone(), None), body_of(&plain)),
                ),
                now,
            ),
        ),
        (
            "privacy_keyed_request_group_id",
            ErrorCode::MalformedRequest,
            unauthenticated(keyed_with(
                keys(own.clone(), None),
                DsRequestBody::RequestGroupId,
            )),
        ),
        (
            "privacy_keyed_signature_public_key",
            ErrorCode::MalformedRequest,
            unauthenticated(keyed_with(
                keys(own, None),
                DsRequestBody::SignaturePublicKey,
            )),
        ),
    ];
    for (name, code, request) in refusals {
        s.refusals.push(Refusal {
            name,
            code,
            request,
            storage: s.ds.storage.clone(),
            now_ms: now,
        });
    }
}
