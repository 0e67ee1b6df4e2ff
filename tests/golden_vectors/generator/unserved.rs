//! The operations the hub does not serve (real requests, refused), an external join, and the
//! group's deletion.

use mimi_ds::testing::{mls_bytes, TestClient};
use mimi_ds::wire::{
    ConnectionKeyPackagesRequest, DsRequestBody, DsSenderId, ErrorCode, GroupInfoOption,
    GroupUpdateRequest, KeyPackagesRequest, MembershipCommitRequest, SelfRemoveClientRequest,
    UpdateClientRequest,
};
use openmls::prelude::{
    LeafNodeIndex, LeafNodeParameters, MlsGroup, MlsGroupJoinConfig,
    MIXED_PLAINTEXT_WIRE_FORMAT_POLICY,
};
use openmls_traits::OpenMlsProvider as _;

use super::{
    accepted, client, external_commit_info, queue, ref_hash, reinit_proposal, rejected,
    unauthenticated, Hub, Vectors,
};

/// The operations this DS does not serve, each with real openmls messages at epoch 2 (each
/// staged commit is discarded again), then dave-1's external join, the `key_packages` reads and
/// the group's deletion.
pub(super) fn run(v: &mut Vectors, hub: Hub) {
    let Hub {
        mut ds,
        group_id,
        mut alice,
        mut alice2,
        bob,
    } = hub;
    let dave = client("dave", "dave-1", "d.example");
    let alice3 = client("alice", "alice-3", "a.example");
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

    // MIMIMI's identity_link_keys read (wire-format.md §14.2); this group is not pseudonymous,
    // so the answer holds no entries.
    let request = alice.signed(DsRequestBody::IdentityLinkKeys, now);
    let out = ds.process(&request);
    accepted(&out);
    v.add(
        "request_identity_link_keys",
        "identity_link_keys (24) by leaf 0",
        request,
    );
    v.add(
        "response_identity_link_keys",
        "identity_link_keys (24): no entries, the group is not pseudonymous",
        out.response,
    );

    // A keyed request (wire-format.md §17.4): the same read wrapped with alice-1's state key
    // of epoch 2. The group is plain, so the hub refuses the keys (§17.9).
    let request = alice.signed(alice.keyed(DsRequestBody::IdentityLinkKeys, false), now);
    let out = ds.process(&request);
    rejected(&out, ErrorCode::StateKeyUnexpected);
    v.add(
        "request_with_state_keys",
        "with_state_keys (25) by leaf 0: identity_link_keys with the state key of epoch 2",
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
        DsRequestBody::RemoveUsers(GroupUpdateRequest {
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
        DsRequestBody::RemoveClients(GroupUpdateRequest {
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
        DsRequestBody::ReInitializeGroup(GroupUpdateRequest {
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
    let group_info = info.group_info.parse().expect("GroupInfo");
    let join_config = MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .build();
    let leaf = LeafNodeParameters::builder()
        .with_capabilities(TestClient::capabilities())
        .with_extensions(TestClient::queue_extension(&dave.queue))
        .build();
    let (_, bundle) = MlsGroup::external_commit_builder()
        .with_ratchet_tree(
            info.ratchet_tree()
                .expect("full tree")
                .parse()
                .expect("tree"),
        )
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
    let request = unauthenticated(DsRequestBody::ExternalJoin(GroupUpdateRequest {
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
            connection_token: vec![0x11; 32].into(),
            claim_id: b"claim for group 1 (16+ bytes)".to_vec().into(),
        }),
        &group_id,
        now,
        DsSenderId::UserKeyHash(user_key_hash.into()),
    );
    let out = ds.process(&request);
    rejected(&out, ErrorCode::UnsupportedOperation);
    v.add(
        "request_key_packages",
        "key_packages (12): a claim, signed by bob as user_key_hash (the hub refuses it)",
        request,
    );
    v.add(
        "response_error",
        "error (1) unsupported_operation, no details: the answer to request_key_packages",
        out.response,
    );
    let request = unauthenticated(DsRequestBody::ConnectionKeyPackages(
        ConnectionKeyPackagesRequest {
            connection_token: vec![0x22; 32].into(),
            claim_id: b"claim for connection (16+ bytes)".to_vec().into(),
        },
    ));
    v.add(
        "request_connection_key_packages",
        "connection_key_packages (13): a claim, unauthenticated",
        request,
    );

    // delete_group (2): served; the group is gone afterwards. alice-1 first removes alice-2 in
    // a commit of its own, so that the deletion removes one member: openmls orders the Removes
    // of a commit that removes several members by a `HashMap` (its `filter_proposals`), which
    // no seed reaches, and the vector would differ between runs.
    let request = alice.remove_request(&[alice2.leaf()], ds.now_ms);
    accepted(&ds.process(&request));
    alice.confirm_commit();
    assert_eq!(alice.group().members().count(), 2, "alice-1, bob-1");
    let request = alice.delete_group_request(ds.now_ms);
    accepted(&ds.process(&request));
    alice.confirm_commit();
    v.add(
        "request_delete_group",
        "delete_group (2) by leaf 0: commit removing bob-1, the last other member (epoch 3 -> 4)",
        request,
    );
}
