//! Golden vectors of the room-policy structures (docs/wire-format.md §15.1), checked in under
//! `tests/vectors/policy/`: one file per GroupContext extension (0xF1E0–0xF1E3) and per
//! `PendingProposalStrategy` arm. The structures carry no keys or randomness, so the values
//! below make the same bytes every time. Each file must decode exactly, re-encode byte for
//! byte, and equal the value built here; a change of the wire format shows up as a changed
//! file. Regenerate with
//!
//! ```text
//! cargo test --all-features --test policy_vectors -- --ignored regenerate
//! ```

use std::path::{Path, PathBuf};

use mimi_ds::policy::capability::*;
use mimi_ds::policy::{
    AppMessagePolicy, BaseRoomPolicy, ExtendedCapabilities, Flag, MinDefaultMaxTime,
    OperationalParameters, ParticipantListData, PendingProposalPolicy, Role, RoleChangeTargets,
    RoleData, UserRolePair,
};
use mimi_ds::wire::{decode_exact, encode};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/policy");
const LINE_WIDTH: usize = 100;

fn roles() -> RoleData {
    RoleData {
        roles: vec![
            Role {
                role_index: 1,
                role_name: b"banned".to_vec().into(),
                role_description: Vec::new().into(),
                role_capabilities: Vec::new(),
                minimum_participants_constraint: 0,
                maximum_participants_constraint: None,
                minimum_active_participants_constraint: 0,
                maximum_active_participants_constraint: Some(0),
                authorized_role_changes: Vec::new(),
                self_role_changes: Vec::new(),
            },
            Role {
                role_index: 3,
                role_name: b"admin".to_vec().into(),
                role_description: b"runs the room".to_vec().into(),
                role_capabilities: vec![
                    CAN_ADD_PARTICIPANT,
                    CAN_REMOVE_PARTICIPANT,
                    CAN_CHANGE_USER_ROLE,
                    CAN_CHANGE_ROOM_POLICY,
                    CAN_DESTROY_ROOM,
                    CAN_SEND_MLS_REINIT_PROPOSAL,
                ],
                minimum_participants_constraint: 1,
                maximum_participants_constraint: Some(5),
                minimum_active_participants_constraint: 0,
                maximum_active_participants_constraint: None,
                authorized_role_changes: vec![RoleChangeTargets {
                    from_role_index: 1,
                    target_role_indexes: vec![3],
                }],
                self_role_changes: vec![RoleChangeTargets {
                    from_role_index: 3,
                    target_role_indexes: vec![1],
                }],
            },
        ],
    }
}

fn participants() -> ParticipantListData {
    ParticipantListData {
        participants: vec![
            UserRolePair {
                user: b"mimi://a.example/u/alice".to_vec().into(),
                role_index: 3,
            },
            UserRolePair {
                user: b"mimi://b.example/u/bob".to_vec().into(),
                role_index: 1,
            },
        ],
    }
}

fn operational(pending: PendingProposalPolicy) -> OperationalParameters {
    OperationalParameters {
        mandatory_capabilities: ExtendedCapabilities {
            versions: vec![1],
            cipher_suites: vec![1],
            extensions: vec![0xF1E0, 0xF1E1],
            proposals: vec![],
            credentials: vec![1],
            wire_formats: vec![1, 2],
            component_ids: vec![0x0022],
            safe_aad_types: vec![0x0020],
            media_types: vec![b"text/markdown".to_vec().into()],
            content_types: vec![1],
        },
        default_capabilities: ExtendedCapabilities::default(),
        forbidden_capabilities: ExtendedCapabilities {
            credentials: vec![2],
            ..ExtendedCapabilities::default()
        },
        handshake_formats: vec![1],
        external_proposal_allowed: Flag(false),
        external_commit_allowed: Flag(true),
        pending_proposal_policy: pending,
        leaf_node_update_time: MinDefaultMaxTime {
            minimum_time: 60,
            default_time: 86_400,
            maximum_time: 604_800,
        },
        app_message_policy: AppMessagePolicy {
            epoch_tolerance: 2,
            pad_to_size: 256,
            max_generations_skipahead: 1000,
        },
        max_kp_lifetime: 7_776_000,
        max_credential_lifetime: 0,
        resumption_psk_lifetime: 3600,
        sender_nonce_keypair_lifetime: MinDefaultMaxTime::default(),
        max_keypairs: 4,
        buffer_incoming_message_time: MinDefaultMaxTime {
            minimum_time: 0,
            default_time: 5000,
            maximum_time: 60_000,
        },
        max_buffered_messages: 100,
    }
}

fn base() -> BaseRoomPolicy {
    BaseRoomPolicy {
        fixed_membership: Flag(false),
        parent_dependant: Flag(false),
        parent_room: Some(b"mimi://a.example/r/parent".to_vec().into()),
        multi_device: Flag(true),
        max_clients: Some(100),
        max_users: None,
        pseudonyms_allowed: Flag(true),
        persistent_room: Flag(true),
        discoverable: Flag(false),
        policy_component_ids: vec![0x0024, 0x0025, 0x0027],
    }
}

/// (file stem, comment, encoding, check that the file decodes to the value).
type Vector = (&'static str, &'static str, Vec<u8>, fn(&[u8]) -> bool);

fn same<T>(value: T) -> impl Fn(&[u8]) -> bool
where
    T: tls_codec::DeserializeBytes + PartialEq,
{
    move |bytes| decode_exact::<T>(bytes).is_ok_and(|decoded| decoded == value)
}

fn vectors() -> Vec<Vector> {
    vec![
        (
            "roles_list",
            "RoleData (extension 0xF1E0): banned and admin",
            encode(&roles()).unwrap(),
            |b| same(roles())(b),
        ),
        (
            "participant_list",
            "ParticipantListData (extension 0xF1E1)",
            encode(&participants()).unwrap(),
            |b| same(participants())(b),
        ),
        (
            "operational_parameters_unspecified",
            "OperationalParameters (extension 0xF1E2), pending_proposal_policy unspecified(0)",
            encode(&operational(PendingProposalPolicy::Unspecified)).unwrap(),
            |b| same(operational(PendingProposalPolicy::Unspecified))(b),
        ),
        (
            "operational_parameters_immediate_commit",
            "OperationalParameters, immediate_commit(1)",
            encode(&operational(PendingProposalPolicy::ImmediateCommit)).unwrap(),
            |b| same(operational(PendingProposalPolicy::ImmediateCommit))(b),
        ),
        (
            "operational_parameters_random_delay",
            "OperationalParameters, random_delay(2) 1000..60000 ms",
            encode(&operational(random_delay())).unwrap(),
            |b| same(operational(random_delay()))(b),
        ),
        (
            "operational_parameters_extension",
            "OperationalParameters, extension(254) naming component 0x8000",
            encode(&operational(extension())).unwrap(),
            |b| same(operational(extension()))(b),
        ),
        (
            "base_room_policy",
            "BaseRoomPolicy (extension 0xF1E3)",
            encode(&base()).unwrap(),
            |b| same(base())(b),
        ),
    ]
}

fn random_delay() -> PendingProposalPolicy {
    PendingProposalPolicy::RandomDelay {
        minimum_delay_ms: 1000,
        maximum_delay_ms: 60_000,
    }
}

fn extension() -> PendingProposalPolicy {
    PendingProposalPolicy::Extension {
        id_of_strategy_params: 0x8000,
    }
}

fn path(stem: &str) -> PathBuf {
    Path::new(DIR).join(format!("{stem}.hex"))
}

fn render(comment: &str, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = format!("# {comment}\n");
    for line in hex.as_bytes().chunks(LINE_WIDTH) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out
}

fn parse(text: &str) -> Vec<u8> {
    let hex: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.trim().chars())
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
#[ignore = "writes tests/vectors/policy/"]
fn regenerate() {
    std::fs::create_dir_all(DIR).unwrap();
    for (stem, comment, bytes, _) in vectors() {
        std::fs::write(path(stem), render(comment, &bytes)).unwrap();
    }
}

#[test]
fn policy_vectors_decode_to_their_values_and_re_encode_byte_for_byte() {
    let vectors = vectors();
    let files = std::fs::read_dir(DIR).unwrap().count();
    assert_eq!(files, vectors.len(), "every file in {DIR} has a vector");
    for (stem, comment, bytes, check) in vectors {
        let text = std::fs::read_to_string(path(stem)).unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(
            text,
            render(comment, &bytes),
            "{stem}: the encoding changed"
        );
        let file = parse(&text);
        assert!(check(&file), "{stem}: does not decode to its value");
    }
}

#[test]
fn a_bool_other_than_zero_or_one_does_not_decode() {
    let mut bytes = encode(&base()).unwrap();
    // fixed_membership is the first octet.
    bytes[0] = 2;
    assert!(decode_exact::<BaseRoomPolicy>(&bytes).is_err());
}

#[test]
fn an_unknown_pending_proposal_strategy_does_not_decode() {
    for strategy in [3u8, 4, 253, 255] {
        assert!(decode_exact::<PendingProposalPolicy>(&[strategy]).is_err());
    }
}
