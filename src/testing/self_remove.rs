//! Clients that support RFC 9420 extension proposal SelfRemove (0x000a,
//! draft-ietf-mls-extensions §"SelfRemove"; wire-format.md §15.7): openmls 0.9 builds and
//! processes it without its `extensions-draft` feature, and its external-commit builder takes
//! pending SelfRemoves by reference (`ExternalCommitBuilder::with_proposals`).

use crate::testing::ExternalJoinOptions;
use openmls::prelude::*;

use super::{mls_bytes, TestClient, CIPHERSUITE};
use crate::wire::{DsRequestBody, ExternalCommitInfo, ProposalsRequest, SelfRemoveClientRequest};

impl TestClient {
    /// [`TestClient::capabilities`] plus the SelfRemove proposal type, which every member must
    /// support before anyone may propose it (RFC 9420 §13.4 non-default proposal types).
    pub fn capabilities_with_self_remove() -> Capabilities {
        Capabilities::new(
            None,
            Some(&[CIPHERSUITE]),
            Some(&[
                ExtensionType::Unknown(crate::wire::QUEUE_CONFIG_EXTENSION_TYPE),
                ExtensionType::Unknown(crate::wire::USER_AUTH_KEY_EXTENSION_TYPE),
            ]),
            Some(&[ProposalType::SelfRemove]),
            None,
        )
    }

    /// A KeyPackage like [`TestClient::key_package`], advertising SelfRemove.
    pub fn key_package_with_self_remove(&self) -> KeyPackage {
        self.key_package_with_capabilities(
            self.fixed_lifetime.unwrap_or_else(Self::lifetime),
            Self::capabilities_with_self_remove(),
        )
    }

    /// Creates the MLS group locally like [`TestClient::create_group`], with a leaf that
    /// advertises SelfRemove.
    pub fn create_group_with_self_remove(&mut self, group_id: &[u8], ds: &ExternalSender) {
        self.create_group_with(
            group_id,
            Self::capabilities_with_self_remove(),
            vec![Extension::ExternalSenders(vec![ds.clone()])],
        );
    }

    /// `proposals(15)` with an MLS SelfRemove proposal (openmls
    /// `leave_group_via_self_remove`), a PublicMessage.
    pub fn mls_self_remove_request(&mut self, now_ms: u64) -> Vec<u8> {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self.group.as_mut().expect("client has a group");
        let message = group
            .leave_group_via_self_remove(provider, signer)
            .expect("SelfRemove");
        self.signed(
            DsRequestBody::Proposals(ProposalsRequest {
                proposals: vec![mls_bytes(&message)],
            }),
            now_ms,
        )
    }

    /// `self_remove_client(7)` carrying an MLS SelfRemove proposal (wire-format.md §4.6).
    pub fn mls_self_remove_client_request(&mut self, now_ms: u64) -> Vec<u8> {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self.group.as_mut().expect("client has a group");
        let message = group
            .leave_group_via_self_remove(provider, signer)
            .expect("SelfRemove");
        self.signed(
            DsRequestBody::SelfRemoveClient(SelfRemoveClientRequest {
                proposal: mls_bytes(&message),
            }),
            now_ms,
        )
    }

    /// `external_join` like [`TestClient::external_join_request`], covering the pending
    /// SelfRemove proposals the hub served (`pending_proposals`) by reference, as
    /// draft-ietf-mimi-protocol's slides allow; the leaf advertises SelfRemove.
    pub fn external_join_with_pending_request(&mut self, info: &ExternalCommitInfo) -> Vec<u8> {
        let pending: Vec<PublicMessageIn> = info
            .pending_proposals
            .iter()
            .filter_map(|p| match p.proposal.parse().expect("proposal").extract() {
                MlsMessageBodyIn::PublicMessage(m) => Some(m),
                _ => None,
            })
            .collect();
        self.external_join_request_with(
            info,
            ExternalJoinOptions {
                capabilities: Some(Self::capabilities_with_self_remove()),
                proposals: pending,
                ..ExternalJoinOptions::default()
            },
        )
    }
}
