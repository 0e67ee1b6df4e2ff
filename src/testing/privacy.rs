//! The client side of privacy mode (wire-format.md §17.3): a member derives the state key of
//! its group's current epoch, and a committer the key of the epoch its pending commit creates,
//! with the MLS exporter (RFC 9420 §8.5). The hub never runs this; it only receives the keys.

use openmls::prelude::{ExportSecretError, MlsGroup};
use openmls_traits::crypto::OpenMlsCrypto;

use crate::privacy::{StateKey, STATE_KEY_EXPORTER_LABEL};

/// The state key of the group's current epoch:
/// `MLS-Exporter("MIMI DS state key", "", KDF.Nh)`.
pub fn state_key_of(
    group: &MlsGroup,
    crypto: &impl OpenMlsCrypto,
) -> Result<StateKey, ExportSecretError> {
    let secret = group.export_secret(
        crypto,
        STATE_KEY_EXPORTER_LABEL,
        &[],
        group.ciphersuite().hash_length(),
    )?;
    Ok(StateKey::new(group.epoch().as_u64(), secret))
}

/// The state key of the epoch the group's pending commit creates, which the committer hands
/// to the hub as `next_key` (wire-format.md §17.4), or `None` without a pending commit. An
/// external joiner has none: openmls returns its group already in the epoch its external
/// commit creates, so its `next_key` is [`state_key_of`] that group.
pub fn next_state_key_of(
    group: &MlsGroup,
    crypto: &impl OpenMlsCrypto,
) -> Option<Result<StateKey, ExportSecretError>> {
    let staged = group.pending_commit()?;
    let epoch = staged.group_context().epoch().as_u64();
    Some(
        staged
            .export_secret(
                crypto,
                STATE_KEY_EXPORTER_LABEL,
                &[],
                group.ciphersuite().hash_length(),
            )
            .map(|secret| StateKey::new(epoch, secret)),
    )
}

impl super::TestClient {
    /// The state keys of this member's group (wire-format.md §17.4): the current epoch's key,
    /// and with `with_next` the key of the epoch its pending commit creates.
    ///
    /// # Panics
    /// If the client has no group, or `with_next` and no pending commit.
    pub fn state_keys(&self, with_next: bool) -> crate::privacy::StateKeys {
        use openmls_traits::OpenMlsProvider as _;
        let crypto = self.provider.crypto();
        let current = state_key_of(self.group(), crypto).expect("exporter");
        let next = with_next.then(|| {
            next_state_key_of(self.group(), crypto)
                .expect("a pending commit")
                .expect("exporter")
        });
        crate::privacy::StateKeys::new(
            crate::privacy::StateKeyScheme::ExporterEpochKey,
            current,
            next,
        )
        .expect("the next key is for the next epoch")
    }

    /// `body` wrapped as a keyed request (`with_state_keys(25)`, wire-format.md §17.4) with
    /// [`Self::state_keys`].
    pub fn keyed(
        &self,
        body: crate::wire::DsRequestBody,
        with_next: bool,
    ) -> crate::wire::DsRequestBody {
        keyed_with(self.state_keys(with_next), body)
    }
}

/// `body` wrapped as a keyed request with `keys` (wire-format.md §17.4).
pub fn keyed_with(
    keys: crate::privacy::StateKeys,
    body: crate::wire::DsRequestBody,
) -> crate::wire::DsRequestBody {
    crate::wire::DsRequestBody::WithStateKeys(crate::wire::StateKeyedRequest {
        keys,
        request: Box::new(body),
    })
}

/// The GroupContext extension that puts a group in privacy mode (wire-format.md §17.2).
pub fn privacy_mode_extension() -> openmls::prelude::Extension {
    let data = crate::wire::encode(&crate::privacy::PrivacyModeExtension {
        scheme: crate::privacy::StateKeyScheme::ExporterEpochKey,
    })
    .expect("encode");
    openmls::prelude::Extension::Unknown(
        crate::privacy::PRIVACY_MODE_EXTENSION_TYPE,
        openmls::prelude::UnknownExtension(data),
    )
}

impl super::TestClient {
    /// [`Self::capabilities`] with extension 0xF1E6, which every member of a privacy-mode
    /// group lists (wire-format.md §17.2).
    pub fn privacy_capabilities() -> openmls::prelude::Capabilities {
        use openmls::prelude::ExtensionType;
        let base = Self::capabilities();
        let mut extensions: Vec<ExtensionType> = base.extensions().to_vec();
        extensions.push(ExtensionType::Unknown(
            crate::privacy::PRIVACY_MODE_EXTENSION_TYPE,
        ));
        openmls::prelude::Capabilities::new(
            None,
            Some(&[super::CIPHERSUITE]),
            Some(&extensions),
            None,
            None,
        )
    }

    /// A KeyPackage whose leaf can join a privacy-mode group.
    pub fn privacy_key_package(&self) -> openmls::prelude::KeyPackage {
        self.key_package_with_capabilities(Self::lifetime(), Self::privacy_capabilities())
    }

    /// Creates a privacy-mode group locally: extension 0xF1E6 in its GroupContext, the DS as
    /// external sender, and Welcomes that carry the ratchet tree (wire-format.md §17.3).
    pub fn create_private_group(&mut self, group_id: &[u8], ds: &openmls::prelude::ExternalSender) {
        self.create_group_with(
            group_id,
            Self::privacy_capabilities(),
            vec![
                openmls::prelude::Extension::ExternalSenders(vec![ds.clone()]),
                privacy_mode_extension(),
            ],
        );
        self.put_tree_in_welcomes();
    }

    /// Makes this member's commits put the ratchet tree into their Welcomes' GroupInfo
    /// (RFC 9420 §12.4.3.3), as a committer of a privacy-mode group must (wire-format.md
    /// §17.3: the hub keeps no Welcome snapshot for it).
    ///
    /// openmls 0.9's `CommitBuilder` gives the GroupInfo it exports with a commit the same
    /// extensions as the Welcome's, so from now on every commit's GroupInfo carries the tree as
    /// well, and the hub stores that GroupInfo as signed (a second copy of the tree, until a
    /// commit without it). [`Self::leave_tree_out_of_group_infos`] undoes this for commits that
    /// add nobody.
    pub fn put_tree_in_welcomes(&mut self) {
        self.set_tree_in_group_infos(true);
    }

    /// Makes this member's commits leave the ratchet tree out of their GroupInfo again, as a
    /// committer of a privacy-mode group can for a commit that adds nobody (it sends no
    /// Welcome): the GroupInfo the hub stores is then the small one a plain group's is.
    pub fn leave_tree_out_of_group_infos(&mut self) {
        self.set_tree_in_group_infos(false);
    }

    fn set_tree_in_group_infos(&mut self, tree: bool) {
        let config = Self::join_config_with_tree(tree);
        let storage = openmls_traits::OpenMlsProvider::storage(&self.provider);
        self.group
            .as_mut()
            .expect("client has a group")
            .set_configuration(storage, &config)
            .expect("configuration");
    }

    /// Joins a privacy-mode group from a Welcome that carries the tree: no `welcome_info`.
    pub fn join_from_welcome_with_its_tree(&mut self, welcome: &crate::wire::MlsMessageBytes) {
        use openmls::prelude::{MlsMessageBodyIn, StagedWelcome};
        let MlsMessageBodyIn::Welcome(welcome) = welcome.parse().expect("welcome").extract() else {
            panic!("not a Welcome");
        };
        let group =
            StagedWelcome::new_from_welcome(&self.provider, &Self::join_config(), welcome, None)
                .expect("a Welcome with the tree")
                .into_group(&self.provider)
                .expect("join");
        self.group = Some(group);
        self.put_tree_in_welcomes();
    }

    /// Joins from a Welcome already processed (by [`Self::welcome_info_request`]) with the
    /// tree the Welcome carries.
    pub fn join_processed_with_its_tree(&mut self, processed: openmls::prelude::ProcessedWelcome) {
        let group = openmls::prelude::JoinBuilder::new(&self.provider, processed)
            .build()
            .expect("a Welcome with the tree")
            .into_group(&self.provider)
            .expect("join");
        self.group = Some(group);
        self.put_tree_in_welcomes();
    }

    /// `request` (built by another helper, signed by this client or unauthenticated) as a
    /// keyed request with `keys`, signed again by this client at `now_ms` in its group.
    pub fn keyed_request(
        &self,
        request: &[u8],
        keys: crate::privacy::StateKeys,
        now_ms: u64,
    ) -> Vec<u8> {
        let decoded: crate::wire::DsRequest = crate::wire::decode_exact(request).expect("request");
        let body = keyed_with(keys, decoded.body);
        match decoded.auth {
            crate::wire::DsAuthData::ClientSignature(signature) => self.signed_as(
                body,
                signature.group_id.as_slice(),
                now_ms,
                signature.sender_id,
            ),
            auth => crate::wire::encode(&crate::wire::DsRequest {
                version: decoded.version,
                body,
                auth,
            })
            .expect("encode"),
        }
    }

    /// `request` keyed with this member's current key and, with `with_next`, the key of the
    /// epoch its pending commit creates ([`Self::state_keys`]).
    pub fn keyed_by_member(&self, request: &[u8], with_next: bool, now_ms: u64) -> Vec<u8> {
        self.keyed_request(request, self.state_keys(with_next), now_ms)
    }
}
