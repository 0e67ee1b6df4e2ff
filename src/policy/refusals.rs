//! The named room-policy refusals: [`PolicyViolation`] under code `not_allowed`
//! (`NotAllowed::RoomPolicy`) and [`PolicyDefect`] under code `invalid_group_info`
//! (`InvalidGroupInfo::RoomPolicy`). One variant per rule; the rule IDs `R-POL-n` are in the
//! table of docs/wire-format.md §13 and the rules themselves in §15.3 and §15.4.

/// An operation the room's policy does not allow its sender (code `not_allowed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// Rule R-POL-1: an Add of another user's client, or a participant-list addition, by a
    /// sender whose role lacks `canAddParticipant` (draft-ietf-mimi-room-policy-03
    /// §"Membership capabilities"; wire-format.md §15.3).
    #[error("the sender's role may not add participants")]
    AddParticipant,
    /// Rule R-POL-2: an Add of a client of the sender's own user by a sender whose role lacks
    /// `canAddOwnClient` (draft-ietf-mimi-room-policy-03; wire-format.md §15.3).
    #[error("the sender's role may not add its own clients")]
    AddOwnClient,
    /// Rule R-POL-3: a Remove of another user's client, or a participant-list removal, by a
    /// sender whose role lacks `canRemoveParticipant` (draft-ietf-mimi-room-policy-03;
    /// wire-format.md §15.3).
    #[error("the sender's role may not remove participants")]
    RemoveParticipant,
    /// Rule R-POL-4: a Remove of the sender's own other client, or its own participant-list
    /// removal, by a sender whose role lacks `canRemoveSelf` (draft-ietf-mimi-room-policy-03;
    /// wire-format.md §15.3).
    #[error("the sender's role may not remove itself")]
    RemoveSelf,
    /// Rule R-POL-5: a change of another participant's role that the sender's role lacks
    /// `canChangeUserRole` for, or that its `authorized_role_changes` do not list
    /// (draft-ietf-mimi-room-policy-03; wire-format.md §15.3).
    #[error("the sender's role may not make this role change")]
    ChangeUserRole,
    /// Rule R-POL-6: a change of the sender's own role that its role lacks `canChangeOwnRole`
    /// for, or that its `self_role_changes` do not list (draft-ietf-mimi-room-policy-03;
    /// wire-format.md §15.3).
    #[error("the sender's role may not change its own role this way")]
    ChangeOwnRole,
    /// Rule R-POL-7: a change of the roles list, operational parameters or base policy (or
    /// their removal) by a sender whose role lacks `canChangeRoomPolicy` (wire-format.md
    /// §15.3).
    #[error("the sender's role may not change the room policy")]
    ChangePolicy,
    /// Rule R-POL-8: `delete_group` by a sender whose role lacks `canDestroyRoom`
    /// (draft-ietf-mimi-room-policy-03 §"Disruptive capabilities"; wire-format.md §15.3).
    #[error("the sender's role may not delete the room")]
    DestroyRoom,
    /// Rule R-POL-9: a ReInit proposal by a sender whose role lacks `canSendMLSReinitProposal`
    /// (draft-ietf-mimi-room-policy-03 §"MLS capabilities"; wire-format.md §15.3).
    #[error("the sender's role may not re-initialize the group")]
    ReInit,
    /// Rule R-POL-10: after the commit, a user holding a client is not a participant (unlisted,
    /// role 0 or banned): participant-list additions come with or before the MLS Adds, removals
    /// and bans in the same commit as the MLS Removes (draft-ietf-mimi-protocol-06 hub rule 4;
    /// wire-format.md §15.3).
    #[error("every user with a client in the group must be a participant")]
    ClientOfNonParticipant,
    /// Rule R-POL-11: after the commit, a role has fewer or more participants (or active
    /// participants) than its constraints allow (draft-ietf-mimi-room-policy-03 `Role`;
    /// wire-format.md §15.3).
    #[error("a role's participant count is outside its constraints")]
    RoleCountOutOfBounds,
    /// Rule R-POL-12: a roles-list change shares a commit with a participant-list change
    /// (draft-ietf-mimi-room-policy-03 §"Operational"; wire-format.md §15.3).
    #[error("a roles-list change cannot share a commit with a participant-list change")]
    RolesWithParticipantChange,
    /// Rule R-POL-13: an external commit while `external_commit_allowed` is false
    /// (draft-ietf-mimi-room-policy-03 `OperationalParameters`; wire-format.md §15.4).
    #[error("the room does not allow external commits")]
    ExternalCommit,
    /// Rule R-POL-14: an external commit by a client whose user is not a participant with
    /// `canAddOwnClient` (draft-ietf-mimi-protocol-06 hub rule 7; wire-format.md §15.4).
    #[error("the joiner's user may not add its own client")]
    ExternalJoiner,
    /// Rule R-POL-15: the group would have more clients than `max_clients`
    /// (draft-ietf-mimi-room-policy-03 `BaseRoomPolicy`; wire-format.md §15.4).
    #[error("the room has its maximum number of clients")]
    TooManyClients,
    /// Rule R-POL-16: the group would have more users than `max_users`
    /// (draft-ietf-mimi-room-policy-03 `BaseRoomPolicy`; wire-format.md §15.4).
    #[error("the room has its maximum number of users")]
    TooManyUsers,
    /// Rule R-POL-17: a new or changed leaf does not list a capability the room makes
    /// mandatory (draft-ietf-mimi-room-policy-03 `mandatory_capabilities`; wire-format.md
    /// §15.4).
    #[error("a leaf lacks a mandatory capability")]
    MissingMandatoryCapability,
    /// Rule R-POL-18: a forbidden cipher suite, extension, proposal or credential type is used
    /// (draft-ietf-mimi-room-policy-03 `forbidden_capabilities`; wire-format.md §15.4).
    #[error("a forbidden capability is used")]
    ForbiddenCapability,
    /// Rule R-POL-19: an added KeyPackage's lifetime exceeds `max_kp_lifetime`
    /// (draft-ietf-mimi-room-policy-03 `OperationalParameters`; wire-format.md §15.4).
    #[error("a KeyPackage lifetime exceeds the room's maximum")]
    KeyPackageLifetime,
    /// Rule R-POL-29: an application message, or a commit without an update path, from a leaf
    /// whose node the hub last saw set longer ago than `leaf_node_update_time.maximum_time`
    /// (draft-ietf-mimi-room-policy-03 `OperationalParameters`; wire-format.md §15.4). The
    /// client recovers by committing with an update path.
    #[error("the sender's leaf is older than the room's leaf_node_update_time maximum")]
    StaleLeaf,
    /// Rule R-POL-30: after the commit, a user has two clients in a room whose base policy
    /// does not set `multi_device` (draft-ietf-mimi-room-policy-03 `BaseRoomPolicy`;
    /// wire-format.md §15.4).
    #[error("the room allows one client per user")]
    MultiDeviceNotAllowed,
    /// Rule R-POL-31: a participant-list addition or removal in a room whose base policy sets
    /// `fixed_membership` (draft-ietf-mimi-room-policy-03 `BaseRoomPolicy`; wire-format.md
    /// §15.4).
    #[error("the room's membership is fixed")]
    FixedMembership,
    /// Rule R-POL-32: a leaf holds a pseudonymous credential in a room whose base policy does
    /// not set `pseudonyms_allowed` (draft-ietf-mimi-room-policy-03 `BaseRoomPolicy`;
    /// wire-format.md §14.1, §15.4).
    #[error("the room does not allow pseudonymous participants")]
    PseudonymsNotAllowed,
    /// Rule R-POL-33: an AppDataUpdate proposal (draft-ietf-mls-extensions §4.7) by a sender
    /// whose role lacks `canUpdateAppData` (this crate's capability 0x0301; wire-format.md
    /// §15.2, §15.7). Only with the `app-data-update` feature.
    #[error("the sender's role may not update the room's application data")]
    UpdateAppData,
}

/// A room policy that is malformed or contradicts itself (code `invalid_group_info`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyDefect {
    /// Rule R-POL-20: a room-policy extension does not decode exactly
    /// (wire-format.md §15.1).
    #[error("room-policy extension {extension_type:#06x} is malformed: {detail}")]
    Malformed {
        /// The GroupContext extension type.
        extension_type: u16,
        /// The codec's error.
        detail: String,
    },
    /// Rule R-POL-21: a participant list, operational parameters or base policy without a
    /// roles list (wire-format.md §15.1: the roles list makes a room policed).
    #[error("room-policy extension {extension_type:#06x} needs a roles list")]
    WithoutRoles {
        /// The GroupContext extension type.
        extension_type: u16,
    },
    /// Rule R-POL-22: a role index defined twice, or a user listed twice
    /// (draft-ietf-mimi-protocol-06 hub rule 5; wire-format.md §15.1).
    #[error("a role or participant is listed twice")]
    Duplicate,
    /// Rule R-POL-23: a participant's role, or a role-change target, is not a defined role, or
    /// a participant is listed with role 0 (draft-ietf-mimi-room-policy-03; wire-format.md
    /// §15.1).
    #[error("role {role_index} is unknown")]
    UnknownRole {
        /// The role index.
        role_index: u32,
    },
    /// Rule R-POL-24: a minimum above its maximum: a role's participant constraints, or the
    /// `random_delay` bounds (wire-format.md §15.1).
    #[error("a minimum is above its maximum")]
    MinAboveMax,
    /// Rule R-POL-25: a capability both mandatory and forbidden, or a forbidden group cipher
    /// suite (wire-format.md §15.1).
    #[error("the operational parameters contradict themselves or the group")]
    Contradictory,
    /// Rule R-POL-26: `handshake_formats` does not list `mls_public_message(1)`, the only
    /// handshake format this hub processes (wire-format.md §15.4).
    #[error("handshake_formats must allow PublicMessage")]
    PublicMessageNotAllowed,
}

/// Every [`PolicyViolation`], for the tests that encode every reason (the match has no
/// wildcard, so a new variant must be added here).
#[cfg(test)]
pub(crate) fn every_violation() -> Vec<PolicyViolation> {
    use PolicyViolation::*;
    let all = vec![
        AddParticipant,
        AddOwnClient,
        RemoveParticipant,
        RemoveSelf,
        ChangeUserRole,
        ChangeOwnRole,
        ChangePolicy,
        DestroyRoom,
        ReInit,
        ClientOfNonParticipant,
        RoleCountOutOfBounds,
        RolesWithParticipantChange,
        ExternalCommit,
        ExternalJoiner,
        TooManyClients,
        TooManyUsers,
        MissingMandatoryCapability,
        ForbiddenCapability,
        KeyPackageLifetime,
        StaleLeaf,
        MultiDeviceNotAllowed,
        FixedMembership,
        PseudonymsNotAllowed,
        UpdateAppData,
    ];
    for each in &all {
        match each {
            AddParticipant
            | AddOwnClient
            | RemoveParticipant
            | RemoveSelf
            | ChangeUserRole
            | ChangeOwnRole
            | ChangePolicy
            | DestroyRoom
            | ReInit
            | ClientOfNonParticipant
            | RoleCountOutOfBounds
            | RolesWithParticipantChange
            | ExternalCommit
            | ExternalJoiner
            | TooManyClients
            | TooManyUsers
            | MissingMandatoryCapability
            | ForbiddenCapability
            | KeyPackageLifetime
            | StaleLeaf
            | MultiDeviceNotAllowed
            | FixedMembership
            | PseudonymsNotAllowed
            | UpdateAppData => {}
        }
    }
    all
}

/// Every [`PolicyDefect`], for the tests that encode every reason.
#[cfg(test)]
pub(crate) fn every_defect() -> Vec<PolicyDefect> {
    use PolicyDefect::*;
    let all = vec![
        Malformed {
            extension_type: 0xF1E0,
            detail: "x".into(),
        },
        WithoutRoles {
            extension_type: 0xF1E1,
        },
        Duplicate,
        UnknownRole { role_index: 9 },
        MinAboveMax,
        Contradictory,
        PublicMessageNotAllowed,
    ];
    for each in &all {
        match each {
            Malformed { .. }
            | WithoutRoles { .. }
            | Duplicate
            | UnknownRole { .. }
            | MinAboveMax
            | Contradictory
            | PublicMessageNotAllowed => {}
        }
    }
    all
}
