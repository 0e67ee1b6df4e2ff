//! Clients that support AppDataUpdate proposals (draft-ietf-mls-extensions §4.7, type 0x0008;
//! feature `app-data-update`, wire-format.md §15.7), built with openmls's `extensions-draft`
//! API: `Propose::UpdateAppDataComponent` / `RemoveAppDataComponent`, and commits staged with
//! `CommitBuilder::with_app_data_dictionary_updates`.
//!
//! The harness's clients interpret every component with [`client_components`]: the component
//! [`TEST_COMPONENT`] replaces its value ([`ReplaceValue`]). The hub gets its own registry
//! through `DsConfig::app_data_components`, so a test can give the two different semantics.

use openmls::group::{AppDataDictionaryUpdater, AppDataUpdates};
use openmls::prelude::*;

use super::{commit_body, mls_bytes, TestClient, CIPHERSUITE};
use crate::app_data::{AppDataComponents, ReplaceValue};
use crate::wire::{DsRequestBody, GroupInfoOption, GroupUpdate, ProposalsRequest};

/// The component the harness's clients know: a private-use ID (draft-ietf-mls-extensions
/// §"Component IDs": 0x8000-0xffff).
pub const TEST_COMPONENT: u16 = 0x8001;

/// The longest value of [`TEST_COMPONENT`] the clients accept.
pub const TEST_COMPONENT_MAX_LEN: usize = 64;

/// The clients' registry: [`TEST_COMPONENT`] as a [`ReplaceValue`] of at most
/// [`TEST_COMPONENT_MAX_LEN`] bytes.
pub fn client_components() -> AppDataComponents {
    AppDataComponents::new().with(TEST_COMPONENT, ReplaceValue::new(TEST_COMPONENT_MAX_LEN))
}

/// The dictionary changes of `proposals` under [`ReplaceValue`] semantics, which ignore the
/// state before (`None` without proposals).
pub fn replace_value_updates(proposals: &[AppDataUpdateProposal]) -> Option<AppDataUpdates> {
    let mut updater = AppDataDictionaryUpdater::new(None);
    for proposal in proposals {
        match proposal.operation() {
            AppDataUpdateOperation::Update(data) => {
                updater.set(openmls::component::ComponentData::from_parts(
                    proposal.component_id(),
                    data.clone(),
                ))
            }
            AppDataUpdateOperation::Remove => updater.remove(&proposal.component_id()),
        }
    }
    updater.changes()
}

impl TestClient {
    /// [`TestClient::capabilities`] plus the room-policy extension types
    /// ([`crate::testing::policy::policy_capabilities`]), the AppDataUpdate proposal type and
    /// the `app_data_dictionary` extension type, which every member must support before anyone
    /// may propose one or the GroupContext may carry one (RFC 9420 §7.2, §13.4).
    pub fn capabilities_with_app_data() -> Capabilities {
        let mut extensions = crate::testing::policy::policy_capabilities()
            .extensions()
            .to_vec();
        extensions.push(ExtensionType::AppDataDictionary);
        Capabilities::new(
            None,
            Some(&[CIPHERSUITE]),
            Some(&extensions),
            Some(&[ProposalType::AppDataUpdate]),
            None,
        )
    }

    /// A KeyPackage like [`TestClient::key_package`], advertising AppDataUpdate.
    pub fn key_package_with_app_data(&self) -> KeyPackage {
        self.key_package_with_capabilities(
            self.fixed_lifetime.unwrap_or_else(Self::lifetime),
            Self::capabilities_with_app_data(),
        )
    }

    /// Creates the MLS group locally like [`TestClient::create_group`], with a leaf that
    /// advertises AppDataUpdate and these GroupContext extensions besides the DS as external
    /// sender.
    pub fn create_group_with_app_data(
        &mut self,
        group_id: &[u8],
        ds: &ExternalSender,
        mut context_extensions: Vec<Extension>,
    ) {
        context_extensions.push(Extension::ExternalSenders(vec![ds.clone()]));
        self.create_group_with(
            group_id,
            Self::capabilities_with_app_data(),
            context_extensions,
        );
    }

    /// `proposals(15)` with an AppDataUpdate proposal: `update` with this data, or `remove`
    /// when `None`.
    pub fn propose_app_data_request(
        &mut self,
        component_id: u16,
        update: Option<Vec<u8>>,
        now_ms: u64,
    ) -> Vec<u8> {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self.group.as_mut().expect("client has a group");
        let propose = match update {
            Some(update) => Propose::UpdateAppDataComponent {
                component_id,
                update,
            },
            None => Propose::RemoveAppDataComponent { component_id },
        };
        let (message, _) = group
            .propose(provider, signer, propose, ProposalOrRefType::Reference)
            .expect("AppDataUpdate proposal");
        self.signed(
            DsRequestBody::Proposals(ProposalsRequest {
                proposals: vec![mls_bytes(&message)],
            }),
            now_ms,
        )
    }

    /// `commits` covering the pending proposals and `inline` AppDataUpdates by value, with the
    /// dictionary changes `updates` (`None`: computed with [`client_components`]).
    pub fn commit_app_data_request(
        &mut self,
        inline: Vec<AppDataUpdateProposal>,
        updates: Option<AppDataUpdates>,
        now_ms: u64,
    ) -> Vec<u8> {
        let provider = &self.provider;
        let signer = &self.signer;
        let group = self.group.as_mut().expect("client has a group");
        let dictionary = group
            .extensions()
            .app_data_dictionary()
            .map(|extension| extension.dictionary().clone());
        let mut builder = group
            .commit_builder()
            .add_proposals(
                inline
                    .into_iter()
                    .map(|p| Proposal::AppDataUpdate(Box::new(p))),
            )
            .load_psks(provider.storage())
            .expect("psks");
        let updates = updates.or_else(|| {
            let proposals: Vec<AppDataUpdateProposal> =
                builder.app_data_update_proposals().cloned().collect();
            client_components()
                .updates(dictionary.as_ref(), &proposals)
                .expect("the clients' components accept the update")
        });
        builder.with_app_data_dictionary_updates(updates);
        let bundle = builder
            .create_group_info(true)
            .build(provider.rand(), provider.crypto(), signer, |_| true)
            .expect("commit")
            .stage_commit(provider)
            .expect("stage commit");
        let (commit, _, group_info) = bundle.into_messages();
        let update = GroupUpdate {
            commit: mls_bytes(&commit),
            group_info: GroupInfoOption::Full(mls_bytes(
                &group_info.expect("group info requested"),
            )),
        };
        self.signed(commit_body(update), now_ms)
    }

    /// The group's `app_data_dictionary` entry of `component_id`, as this client holds it.
    pub fn app_data(&self, component_id: u16) -> Option<Vec<u8>> {
        self.group()
            .extensions()
            .app_data_dictionary()
            .and_then(|extension| extension.dictionary().get(&component_id))
            .map(<[u8]>::to_vec)
    }

    /// Stages a received commit that covers AppDataUpdates with [`client_components`].
    pub(super) fn stage_app_data_commit(
        &mut self,
        unresolved: UnresolvedAppDataCommit,
    ) -> Box<StagedCommit> {
        let provider = &self.provider;
        let group = self.group.as_mut().expect("client has a group");
        let proposals: Vec<AppDataUpdateProposal> =
            unresolved.app_data_update_proposals().cloned().collect();
        let dictionary = group
            .extensions()
            .app_data_dictionary()
            .map(|extension| extension.dictionary());
        let updates = client_components()
            .updates(dictionary, &proposals)
            .expect("the clients' components accept the update");
        Box::new(
            group
                .stage_app_data_commit(provider, unresolved, updates)
                .expect("stage AppDataUpdate commit"),
        )
    }
}
