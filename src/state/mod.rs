//! The records mimi-ds keeps per group (see [`crate::storage::RecordKind`]) and their codecs.
//!
//! Records are mimi-ds's own TLS-encoded structs, except the openmls state, which openmls
//! only exposes through serde (see [`mls_state`]).

pub(crate) mod mls_state;
mod records;
mod tree_diff;
mod welcome;

pub(crate) use records::{
    queue_config_of, Activity, LeafChecks, MemberEntry, PendingProposalRecord, PendingProposals,
    ProposalOrigin, Reservation, Roster, Sequencer,
};
pub(crate) use records::{MESSAGE_DIGEST_BYTES, STATE_TAG_BYTES};
pub(crate) use tree_diff::{Transition, TreeDiff, TreeNodes};
pub(crate) use welcome::{Joiner, StoredTree, WelcomeSnapshot, WelcomeSnapshots, WelcomeTree};
