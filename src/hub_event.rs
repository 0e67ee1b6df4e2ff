//! [`HubEvent`]: what the embedding server tells the DS about a group. The DS's reaction is in
//! `handlers::hub_events`.

use crate::wire::ClientQueueConfig;

/// Something the embedding server learned that the DS acts on in one group
/// ([`crate::DeliveryService::handle_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubEvent {
    /// A Queueing Service answered `invalid_client_queue_information` for this queue: remove
    /// the clients that use it.
    QueueRejected(ClientQueueConfig),
    /// The server deleted a client, named by its leaf signature key: remove it.
    ClientDeleted {
        /// The client's signature public key.
        signature_key: Vec<u8>,
    },
    /// The server deleted a user (as the credential validator names users): remove all of its
    /// clients.
    UserDeleted {
        /// The user.
        user: Vec<u8>,
    },
    /// Remove every client that has sent nothing for longer than
    /// [`crate::DsConfig::inactivity_limit_ms`].
    InactivitySweep,
    /// Propose replacing the retired DS identity the group names with the current one
    /// ([`crate::DeliveryService::with_retired_identity`]). Nothing to do while the rotation
    /// is already pending; refused (`invalid_proposal`) while a member's GroupContextExtensions
    /// proposal is pending, as a commit may carry only one (RFC 9420 §12.2): retry after the
    /// next commit.
    RotateSigningKey,
}

impl HubEvent {
    /// The event's kind, as [`crate::OutcomeStats::operation`] names it (`hub_event.<kind>`).
    pub(crate) fn operation(&self) -> &'static str {
        match self {
            Self::QueueRejected(_) => "hub_event.queue_rejected",
            Self::ClientDeleted { .. } => "hub_event.client_deleted",
            Self::UserDeleted { .. } => "hub_event.user_deleted",
            Self::InactivitySweep => "hub_event.inactivity_sweep",
            Self::RotateSigningKey => "hub_event.rotate_signing_key",
        }
    }
}
