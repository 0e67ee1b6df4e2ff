//! Groups of real openmls clients for the per-operation rule tests (tests/operations.rs and
//! tests/reinit.rs): groups built with `commits`, commits delivered to every member with the
//! epochs checked, and the refusal check that also pins the named reason.

use mimi_ds::testing::{Received, TestClient, TestDs};
use mimi_ds::wire::{
    ClientQueueConfig, ErrorCode, GroupUpdate, MembershipCommitRequest, MlsMessageBytes,
    RatchetTreeBytes,
};
use mimi_ds::{Outcome, RejectReason};
use openmls::prelude::LeafNodeIndex;

/// The shared refusal check ([`TestDs::reject`]: exact code and error body, no fanout,
/// storage byte-identical) for a named reason ([`mimi_ds::Outcome::refusal`]) that `because`
/// accepts, where another check could refuse with the same code.
pub(super) trait RejectBecause {
    /// Processes a request that must be refused with `code` for a reason `because` accepts
    /// (see [`is`]).
    fn reject_because(
        &mut self,
        request: &[u8],
        code: ErrorCode,
        because: impl Fn(&RejectReason) -> bool,
    );
}

impl RejectBecause for TestDs {
    fn reject_because(
        &mut self,
        request: &[u8],
        code: ErrorCode,
        because: impl Fn(&RejectReason) -> bool,
    ) {
        let reason = self.reject(request, code);
        assert!(because(&reason), "refused for another reason: {reason:?}");
    }
}

/// A check of [`RejectBecause::reject_because`] that the refusal is exactly `expected`.
pub(super) fn is(expected: impl Into<RejectReason>) -> impl Fn(&RejectReason) -> bool {
    let expected = expected.into();
    move |reason| *reason == expected
}

/// The group's current ratchet tree, as an external joiner gets it.
pub(super) fn current_tree(ds: &mut TestDs, member: &TestClient) -> RatchetTreeBytes {
    ds.group_info(member, &member.group_id())
        .ratchet_tree()
        .expect("full tree")
        .clone()
}

/// Delivers an accepted commit: the committer merges its staged commit, `members` process the
/// fanout, `joiners` get their Welcome and join with the tree of the new epoch. Every client
/// still in the group then shares the committer's epoch and epoch authenticator. Returns what
/// each of `members` received.
pub(super) fn deliver(
    ds: &mut TestDs,
    out: &Outcome,
    committer: &mut TestClient,
    members: &mut [&mut TestClient],
    joiners: &mut [&mut TestClient],
) -> Vec<Vec<Received>> {
    committer.confirm_commit();
    {
        let mut everyone: Vec<&mut TestClient> = std::iter::once(&mut *committer)
            .chain(members.iter_mut().map(|c| &mut **c))
            .chain(joiners.iter_mut().map(|c| &mut **c))
            .collect();
        TestDs::route(out, &mut everyone);
    }
    assert!(
        committer.inbox.is_empty(),
        "the committer does not get its own commit"
    );
    let received: Vec<Vec<Received>> = members.iter_mut().map(|m| m.process_inbox()).collect();
    if !joiners.is_empty() {
        let tree = current_tree(ds, committer);
        for joiner in joiners.iter_mut() {
            let Some(Received::Welcome(welcome)) = joiner.process_inbox().pop() else {
                panic!("{} got no Welcome", joiner.name)
            };
            joiner.join_from_welcome(&welcome, &tree);
        }
    }
    let epoch = committer.epoch();
    let authenticator = committer.group().epoch_authenticator().as_slice().to_vec();
    let removed = |got: &[Received]| matches!(got, [Received::Commit { removed: true, .. }]);
    for (member, got) in members.iter().zip(&received) {
        if removed(got) {
            continue;
        }
        assert_eq!(
            got,
            &vec![Received::Commit {
                epoch,
                removed: false
            }],
            "{}",
            member.name
        );
    }
    let staying = members
        .iter()
        .zip(&received)
        .filter(|(_, got)| !removed(got))
        .map(|(m, _)| &**m);
    for client in staying.chain(joiners.iter().map(|j| &**j)) {
        assert_eq!(client.epoch(), epoch, "{} is in sync", client.name);
        assert_eq!(
            client.group().epoch_authenticator().as_slice(),
            authenticator,
            "{} is in sync",
            client.name
        );
    }
    received
}

/// A group created by `creator` alone (epoch 0).
pub(super) fn solo(ds: &mut TestDs, creator: &mut TestClient) {
    let group_id = ds.request_group_id();
    creator.create_group(&group_id, &ds.external_sender);
    let request = creator.create_group_request(ds.now_ms);
    let _ = ds.accept(&request);
}

/// `creator` alone, then `others` added by one `commits` and joined.
pub(super) fn group_of(ds: &mut TestDs, creator: &mut TestClient, others: &mut [&mut TestClient]) {
    solo(ds, creator);
    let key_packages = others.iter().map(|c| c.key_package()).collect();
    let out = ds.accept(&creator.add_request(key_packages, ds.now_ms));
    deliver(ds, &out, creator, &mut [], others);
}

/// A `MembershipCommitRequest` body from a staged commit.
pub(super) fn membership(
    update: GroupUpdate,
    welcome: Option<MlsMessageBytes>,
) -> MembershipCommitRequest {
    MembershipCommitRequest {
        group_update: update,
        welcome_messages: welcome.into_iter().collect(),
    }
}

pub(super) fn leaves(clients: &[&TestClient]) -> Vec<LeafNodeIndex> {
    clients
        .iter()
        .map(|c| LeafNodeIndex::new(c.leaf()))
        .collect()
}

pub(super) fn queue(provider: &str, queue: &str) -> ClientQueueConfig {
    ClientQueueConfig {
        provider_domain: provider.as_bytes().to_vec().into(),
        queue: queue.as_bytes().to_vec().into(),
    }
}
