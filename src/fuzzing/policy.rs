//! Fuzz bodies for room policy (wire-format.md §15).
//!
//! * [`decode_room_policy`]: the four policy structures, and the roster's copy of the room
//!   parameters, decode strictly (whatever decodes re-encodes to the same bytes), and a
//!   decoded policy either passes the hub's checks or is refused with `invalid_group_info`,
//!   never a panic.
//! * [`policy_change`]: in a room with an admin (Alice) and a member (Bob), one of them sends a
//!   GroupContextExtensions commit whose policy bytes are mutated. Invariants: no panic; a
//!   refusal changes nothing and fans out nothing; an accepted change leaves a policy that
//!   decodes and passes its checks; and Bob, whose role may change neither roles nor policy nor
//!   anyone's role, never gets a change of the policy accepted.

use openmls::prelude::{Extension, Extensions, GroupContext, UnknownExtension};

use super::roundtrip;
use crate::policy::{
    BaseRoomPolicy, OperationalParameters, ParticipantListData, RoleData, RoomPolicy,
};
use crate::testing::policy::{admin_policy, raw};
use crate::testing::{TestClient, TestDs};
use crate::{RejectReason, Status};

/// Fuzz body: decoding of the room-policy structures, and the hub's checks of whatever
/// decodes (as a GroupContext holding it).
pub fn decode_room_policy(data: &[u8]) {
    roundtrip::<RoleData>(data);
    roundtrip::<ParticipantListData>(data);
    roundtrip::<OperationalParameters>(data);
    roundtrip::<BaseRoomPolicy>(data);
    // The roster's copy of the parameters the message path needs (wire-format.md §15.4).
    roundtrip::<crate::policy::RoomParameters>(data);
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let extension_type = crate::policy::ROOM_POLICY_EXTENSION_TYPES[usize::from(selector % 4)];
    let mut extensions = vec![Extension::Unknown(
        extension_type,
        UnknownExtension(rest.to_vec()),
    )];
    if extension_type != crate::policy::ROLES_LIST_EXTENSION_TYPE {
        let roles = raw(&admin_policy(&[], &[]))[0].clone();
        extensions.push(Extension::Unknown(roles.0, UnknownExtension(roles.1)));
    }
    let Ok(extensions) = Extensions::<GroupContext>::from_vec(extensions) else {
        return;
    };
    match RoomPolicy::from_group_context(&extensions) {
        Ok(_) | Err(RejectReason::InvalidGroupInfo(_)) => {}
        Err(other) => panic!("a policy is refused as a GroupInfo defect, not {other:?}"),
    }
}

/// Fuzz body: `data[0]` picks the sender (even: Alice, the admin; odd: Bob, a member); the rest
/// are `(offset: u16, xor: u8)` mutations of the concatenated policy extension data (roles,
/// then participants), sent in a GroupContextExtensions commit.
pub fn policy_change(data: &[u8]) {
    let Some((&selector, mutations)) = data.split_first() else {
        return;
    };
    let mut ds = TestDs::new("hub.example");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");
    let policy = admin_policy(&[&alice], &[&bob]);
    ds.create_policy_room(&mut alice, &mut [&mut bob], &policy);

    let mut changed = raw(&policy);
    let lengths: Vec<usize> = changed.iter().map(|(_, d)| d.len()).collect();
    let total: usize = lengths.iter().sum();
    for chunk in mutations.chunks_exact(3) {
        let offset = usize::from(u16::from_be_bytes([chunk[0], chunk[1]])) % total;
        let (index, within) = if offset < lengths[0] {
            (0, offset)
        } else {
            (1, offset - lengths[0])
        };
        changed[index].1[within] ^= chunk[2];
    }
    let sender = if selector % 2 == 0 {
        &mut alice
    } else {
        &mut bob
    };
    let request = sender.policy_commit_request(&changed, |b| b, ds.now_ms);
    let before = ds.storage.clone();
    let out = ds.process(&request);
    if out.status != Status::Accepted {
        assert!(ds.storage == before, "a refusal changes nothing");
        assert!(out.fanout.is_empty(), "a refusal fans out nothing");
        return;
    }
    sender.confirm_commit();
    let after = RoomPolicy::from_group_context(sender.group().extensions())
        .expect("an accepted policy passes its checks")
        .expect("an accepted change keeps a policy");
    if selector % 2 == 1 {
        assert_eq!(after, policy, "a member changed the room policy");
    }
}
