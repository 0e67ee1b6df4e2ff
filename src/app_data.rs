//! AppDataUpdate proposals (draft-ietf-mls-extensions §4.7, proposal type 0x0008) at the hub;
//! feature `app-data-update` (docs/wire-format.md §15.7).
//!
//! An AppDataUpdate changes one entry of the group's `app_data_dictionary` GroupContext
//! extension: `remove` deletes the component's state, `update` carries data whose meaning the
//! **component** defines (the draft leaves it to each component's specification). The new
//! dictionary is part of the next epoch's GroupContext, so the hub must compute exactly what
//! the members compute, or it could neither stage the commit (openmls returns an
//! `UnresolvedAppDataCommit` until the caller supplies the new entries) nor check the
//! committer's GroupInfo against its own state.
//!
//! So the hub accepts AppDataUpdates only for the components the vendor registers in
//! [`crate::DsConfig::app_data_components`], each with its semantics as an
//! [`AppDataComponent`]. [`ReplaceValue`] is the one built in: the update's data is the new
//! state. Everything else is refused with `invalid_proposal`
//! ([`crate::InvalidProposal::AppDataComponentUnknown`]), which is the draft's rule for a
//! component the application does not know.
//!
//! The same code computes a commit's new entries for a member:
//! [`AppDataComponents::updates`] returns the openmls `AppDataUpdates` for
//! `MlsGroup::stage_app_data_commit` and `CommitBuilder::with_app_data_dictionary_updates`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use openmls::extensions::AppDataDictionary;
use openmls::group::{AppDataDictionaryUpdater, AppDataUpdates};
use openmls::prelude::{AppDataUpdateOperation, AppDataUpdateProposal};

use crate::error::InvalidProposal;

/// A component's identifier in the `app_data_dictionary` (draft-ietf-mls-extensions
/// `ComponentID`, uint16).
pub type ComponentId = u16;

/// A component's refusal of an update (rule R-PROP-9, `invalid_proposal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the component refuses this update")]
pub struct UpdateRefused;

/// The semantics of one component's `update` operation.
pub trait AppDataComponent: Send + Sync {
    /// The component's state after `update`, given its state before (`None`: no entry in the
    /// dictionary). Several updates of one component in a commit are applied in the order the
    /// commit lists them, each to the result of the one before. `Err` refuses the proposal.
    /// Must be deterministic: every member computes the same state.
    fn apply(&self, current: Option<&[u8]>, update: &[u8]) -> Result<Vec<u8>, UpdateRefused>;
}

/// The built-in semantics: an update's data is the component's new state, as long as it is at
/// most `max_len` bytes (the dictionary travels in every GroupInfo and Welcome, so its size is
/// bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaceValue {
    /// The longest state accepted, in bytes.
    pub max_len: usize,
}

impl ReplaceValue {
    /// Replaces the state with updates of at most `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Self { max_len }
    }
}

impl AppDataComponent for ReplaceValue {
    fn apply(&self, _current: Option<&[u8]>, update: &[u8]) -> Result<Vec<u8>, UpdateRefused> {
        if update.len() > self.max_len {
            return Err(UpdateRefused);
        }
        Ok(update.to_vec())
    }
}

/// The components the hub knows, by [`ComponentId`]. Empty by default: every AppDataUpdate is
/// then refused.
#[derive(Clone, Default)]
pub struct AppDataComponents {
    by_id: BTreeMap<ComponentId, Arc<dyn AppDataComponent>>,
}

impl AppDataComponents {
    /// No components.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `component` as the semantics of `id`, replacing an earlier registration.
    pub fn register(&mut self, id: ComponentId, component: impl AppDataComponent + 'static) {
        self.by_id.insert(id, Arc::new(component));
    }

    /// [`AppDataComponents::register`], by value.
    pub fn with(mut self, id: ComponentId, component: impl AppDataComponent + 'static) -> Self {
        self.register(id, component);
        self
    }

    /// The registered component IDs, ascending.
    pub fn ids(&self) -> impl Iterator<Item = ComponentId> + '_ {
        self.by_id.keys().copied()
    }

    /// The state of `proposal`'s component after it, given the state before (`current`), or
    /// the rule it breaks: an unregistered component (R-PROP-7), a `remove` of absent state
    /// (R-PROP-8), an update the component refuses (R-PROP-9). `Ok(None)` is a removal.
    pub fn apply(
        &self,
        current: Option<&[u8]>,
        proposal: &AppDataUpdateProposal,
    ) -> Result<Option<Vec<u8>>, InvalidProposal> {
        let component_id = proposal.component_id();
        // Rule R-PROP-7.
        let component = self
            .by_id
            .get(&component_id)
            .ok_or(InvalidProposal::AppDataComponentUnknown { component_id })?;
        match proposal.operation() {
            AppDataUpdateOperation::Remove => match current {
                Some(_) => Ok(None),
                // Rule R-PROP-8.
                None => Err(InvalidProposal::AppDataRemoveOfAbsentState { component_id }),
            },
            AppDataUpdateOperation::Update(update) => component
                .apply(current, update.as_slice())
                .map(Some)
                // Rule R-PROP-9.
                .map_err(|UpdateRefused| InvalidProposal::AppDataUpdateRefused { component_id }),
        }
    }

    /// The dictionary changes of a commit's AppDataUpdate proposals (in the order openmls
    /// lists them: by component, each component's in commit order), applied to `dictionary`,
    /// the GroupContext's before the commit. `Err` names the first proposal that breaks a
    /// rule of [`AppDataComponents::apply`], with its index in `proposals`.
    pub fn updates<'a>(
        &self,
        dictionary: Option<&AppDataDictionary>,
        proposals: impl IntoIterator<Item = &'a AppDataUpdateProposal>,
    ) -> Result<Option<AppDataUpdates>, (usize, InvalidProposal)> {
        let mut state: BTreeMap<ComponentId, Option<Vec<u8>>> = BTreeMap::new();
        for (index, proposal) in proposals.into_iter().enumerate() {
            let id = proposal.component_id();
            let current = match state.get(&id) {
                Some(changed) => changed.as_deref(),
                None => dictionary.and_then(|d| d.get(&id)),
            };
            let next = self
                .apply(current, proposal)
                .map_err(|reason| (index, reason))?;
            state.insert(id, next);
        }
        let mut updater = AppDataDictionaryUpdater::new(dictionary);
        for (id, value) in state {
            match value {
                Some(data) => updater.set(openmls::component::ComponentData::from_parts(
                    id,
                    data.into(),
                )),
                None => updater.remove(&id),
            }
        }
        Ok(updater.changes())
    }
}

impl fmt::Debug for AppDataComponents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_id.keys()).finish()
    }
}

/// Equal when the same IDs map to the same registered components (the same allocations:
/// semantics cannot be compared otherwise).
impl PartialEq for AppDataComponents {
    fn eq(&self, other: &Self) -> bool {
        self.by_id.len() == other.by_id.len()
            && self
                .by_id
                .iter()
                .zip(&other.by_id)
                .all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y))
    }
}

impl Eq for AppDataComponents {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_value_bounds_the_state_and_the_registry_applies_the_rules() {
        let components = AppDataComponents::new().with(0x8001, ReplaceValue::new(3));
        let update = AppDataUpdateProposal::update(0x8001, b"abc".to_vec());
        assert_eq!(components.apply(None, &update), Ok(Some(b"abc".to_vec())));
        let long = AppDataUpdateProposal::update(0x8001, b"abcd".to_vec());
        assert_eq!(
            components.apply(None, &long),
            Err(InvalidProposal::AppDataUpdateRefused {
                component_id: 0x8001
            })
        );
        let remove = AppDataUpdateProposal::remove(0x8001);
        assert_eq!(
            components.apply(None, &remove),
            Err(InvalidProposal::AppDataRemoveOfAbsentState {
                component_id: 0x8001
            })
        );
        assert_eq!(components.apply(Some(b"x"), &remove), Ok(None));
        let unknown = AppDataUpdateProposal::update(0x8002, b"a".to_vec());
        assert_eq!(
            components.apply(None, &unknown),
            Err(InvalidProposal::AppDataComponentUnknown {
                component_id: 0x8002
            })
        );
    }

    #[test]
    fn the_registry_lists_prints_and_compares_its_components() {
        let value = ReplaceValue::new(3);
        let empty = AppDataComponents::new();
        assert_eq!(empty.ids().count(), 0);
        let two = AppDataComponents::new().with(9, value).with(2, value);
        assert_eq!(two.ids().collect::<Vec<_>>(), [2, 9], "ascending");
        assert_eq!(format!("{two:?}"), "{2, 9}");
        // Equal: the same IDs with the same registrations (clones share them).
        assert_eq!(two.clone(), two);
        assert_ne!(two, empty, "other IDs");
        assert_ne!(two, AppDataComponents::new().with(2, value), "a subset");
        let mut other_nine = two.clone();
        other_nine.register(9, value);
        assert_ne!(other_nine, two, "a registration replaced by another");
        // Every registration of `two` shared, and one more.
        let mut longer = two.clone();
        longer.register(10, value);
        assert_ne!(longer, two, "a superset");
    }

    #[test]
    fn updates_chain_within_a_component() {
        /// Appends the update to the state.
        struct Append;
        impl AppDataComponent for Append {
            fn apply(
                &self,
                current: Option<&[u8]>,
                update: &[u8],
            ) -> Result<Vec<u8>, UpdateRefused> {
                Ok([current.unwrap_or_default(), update].concat())
            }
        }
        let components = AppDataComponents::new().with(7, Append);
        let proposals = [
            AppDataUpdateProposal::update(7, b"a".to_vec()),
            AppDataUpdateProposal::update(7, b"b".to_vec()),
        ];
        let mut dictionary = AppDataDictionary::new();
        dictionary.insert(7, b"0".to_vec());
        let updates = components
            .updates(Some(&dictionary), &proposals)
            .unwrap()
            .unwrap();
        let entries: Vec<_> = updates.into_iter().collect();
        assert_eq!(entries, vec![(7, Some(b"0ab".to_vec()))]);
    }
}
