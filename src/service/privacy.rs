//! Privacy mode in the record layer (wire-format.md §17): the one place where a privacy-mode
//! group's records are opened after the read and sealed before the write, below the handlers,
//! which see plaintext records exactly as in a plain group.
//!
//! [`SealedStore`] is the storage the handlers run against: it reads through the step's
//! [`Prefetched`] answers, decides the group's mode from its `Manifest` record (§17.6), refuses
//! a request whose keys do not fit the mode or the key (§17.9), and opens every record with the
//! request's key. [`Sealer::seal`] turns the handler's plaintext [`WriteSet`] into the one
//! sealed write: every record it puts sealed at the version the write moves the group to, the
//! manifest, and the replay mark's stored answer (§17.7).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use openmls::prelude::Ciphersuite;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;

use super::prefetched::Prefetched;
use crate::error::RejectReason;
use crate::privacy::{
    open_record, seal_record, Manifest, OpenError, PrivacyModeExtension, RecordBinding, StateKey,
    StateKeyScheme, StateKeys, PRIVACY_MODE_EXTENSION_TYPE,
};
use crate::storage::{
    DsStorage, GroupSnapshot, RecordKind, RecordWrite, ReplayMark, VersionGuard, WriteOutcome,
    WriteSet,
};
use crate::wire::{decode_exact, DsRequestType};

/// The records of a privacy-mode group that a keyed request reads whole, whatever its handler
/// asks for: a commit re-seals every record under the next epoch's key (§17.3) and every write
/// lists them all in the manifest (§17.6). Welcome trees are never written in privacy mode.
const SEALED_STATE: [RecordKind; 8] = [
    RecordKind::Roster,
    RecordKind::Sequencer,
    RecordKind::MlsState,
    RecordKind::GroupInfo,
    RecordKind::PendingProposals,
    RecordKind::WelcomeSnapshots,
    RecordKind::IdentityLinks,
    RecordKind::Activity,
];

/// Why the record layer stopped a request: a refusal of the client's keys (wire-format.md
/// §17.9), or stored state that does not open (corrupt state, an internal error).
#[derive(Debug)]
pub(crate) enum SealFailure {
    /// The request's keys do not fit the group: an error response, nothing written.
    Refuse(RejectReason),
    /// A stored record does not open or decode under the key that opened the manifest.
    Corrupt(String),
}

impl std::fmt::Display for SealFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refuse(reason) => write!(f, "refused: {reason}"),
            Self::Corrupt(what) => write!(f, "privacy-mode state: {what}"),
        }
    }
}

impl std::error::Error for SealFailure {}

fn corrupt(what: impl std::fmt::Display) -> SealFailure {
    SealFailure::Corrupt(what.to_string())
}

/// Whether the request creates an epoch and so must carry `next_key` (wire-format.md §17.3).
pub(super) fn creates_epoch(operation: DsRequestType) -> bool {
    matches!(
        operation,
        DsRequestType::DeleteGroup
            | DsRequestType::AddUsers
            | DsRequestType::RemoveUsers
            | DsRequestType::AddClients
            | DsRequestType::RemoveClients
            | DsRequestType::UpdateClient
            | DsRequestType::ExternalJoin
            | DsRequestType::ReInitializeGroup
            | DsRequestType::Commits
    )
}

/// A privacy-mode group as the request opened it.
struct Opened {
    group_id: Vec<u8>,
    ciphersuite: Ciphersuite,
    /// The version of each sealed record, from the manifest.
    versions: BTreeMap<RecordKind, u64>,
    /// Every sealed record, opened.
    plaintexts: BTreeMap<RecordKind, Vec<u8>>,
}

/// The storage the handlers of one run read through (see the module documentation).
pub(super) struct SealedStore<'s, 'a, C> {
    inner: &'s Prefetched,
    crypto: &'a C,
    keys: Option<&'a StateKeys>,
    operation: DsRequestType,
    opened: RefCell<Option<Opened>>,
}

impl<'s, 'a, C: OpenMlsCrypto> SealedStore<'s, 'a, C> {
    pub(super) fn new(
        inner: &'s Prefetched,
        crypto: &'a C,
        keys: Option<&'a StateKeys>,
        operation: DsRequestType,
    ) -> Self {
        Self {
            inner,
            crypto,
            keys,
            operation,
            opened: RefCell::new(None),
        }
    }

    /// What sealing the run's write needs; releases the borrow of the answers.
    pub(super) fn finish(self) -> Sealer<'a, C> {
        Sealer {
            crypto: self.crypto,
            keys: self.keys,
            operation: self.operation,
            opened: self.opened.into_inner(),
        }
    }

    /// Opens a privacy-mode group read with `keys` (wire-format.md §17.5, §17.6, §17.9).
    fn open(
        &self,
        keys: &StateKeys,
        group_id: &[u8],
        snapshot: &GroupSnapshot,
        stored_manifest: &[u8],
    ) -> Result<Opened, SealFailure> {
        // §17.9 order: mode (46/43), then epoch (45), then key (44).
        let creates = creates_epoch(self.operation);
        if creates && keys.next().is_none() {
            return Err(SealFailure::Refuse(RejectReason::NextStateKeyMissing));
        }
        if !creates && keys.next().is_some() {
            return Err(SealFailure::Refuse(RejectReason::NextStateKeyUnexpected));
        }
        let (ciphersuite, sealed) = split_suite(stored_manifest)?;
        let binding = RecordBinding::manifest(group_id, snapshot.version);
        let plaintext = open_record(self.crypto, ciphersuite, keys.current(), &binding, sealed)
            .map_err(|error| match error {
                // §17.5 step 3.
                OpenError::KeyEpoch { .. } => SealFailure::Refuse(RejectReason::StateKeyStale),
                // §17.5 steps 2 and 4.
                OpenError::KeyLength { .. } | OpenError::WrongKey => {
                    SealFailure::Refuse(RejectReason::StateKeyWrong)
                }
                other => corrupt(format!("manifest: {other}")),
            })?;
        let manifest = decode_exact::<Manifest>(&plaintext).map_err(corrupt)?;
        if !manifest.is_canonical() || manifest.epoch != keys.current().epoch() {
            return Err(corrupt(
                "the manifest is not canonical or names another epoch",
            ));
        }
        let mut opened = Opened {
            group_id: group_id.to_vec(),
            ciphersuite,
            versions: BTreeMap::new(),
            plaintexts: BTreeMap::new(),
        };
        let mut listed = 0;
        for (kind, bytes) in &snapshot.records {
            let Some(mut binding) = RecordBinding::for_record(group_id, *kind, 0) else {
                continue; // Reservation, Tombstone: in the clear (§17.5).
            };
            // §17.6: a record present but not listed, or not opening under its listed version,
            // is corrupt state; the key already opened the manifest.
            let version = manifest
                .version_of(binding.kind, &binding.record_key)
                .ok_or_else(|| corrupt(format!("{kind:?} is not in the manifest")))?;
            binding.version = version;
            let plaintext = open_record(self.crypto, ciphersuite, keys.current(), &binding, bytes)
                .map_err(|e| corrupt(format!("{kind:?}: {e}")))?;
            opened.versions.insert(*kind, version);
            opened.plaintexts.insert(*kind, plaintext);
            listed += 1;
        }
        // A keyed read asks for every sealed record (SEALED_STATE): one listed but absent is
        // corrupt state (§17.6).
        if listed != manifest.entries.len() {
            return Err(corrupt("the manifest lists a record that is absent"));
        }
        Ok(opened)
    }
}

impl<C: OpenMlsCrypto> DsStorage for SealedStore<'_, '_, C> {
    type Error = SealFailure;

    fn read(
        &self,
        group_id: &[u8],
        kinds: &[RecordKind],
    ) -> Result<Option<GroupSnapshot>, SealFailure> {
        // Every read also asks for the manifest, the mark of a privacy-mode group (§17.6); a
        // keyed read asks for the whole sealed state.
        let mut expanded = kinds.to_vec();
        if self.keys.is_some() {
            expanded.extend(SEALED_STATE.iter().filter(|kind| !kinds.contains(kind)));
        }
        if !kinds.contains(&RecordKind::Manifest) {
            expanded.push(RecordKind::Manifest);
        }
        let Ok(Some(mut snapshot)) = self.inner.read(group_id, &expanded) else {
            return Ok(None);
        };
        let manifest = take_record(&mut snapshot, RecordKind::Manifest);
        let creating = self.operation == DsRequestType::CreateGroup;
        match (manifest, self.keys) {
            // A create_group reads only its reservation; whether the group it creates is in
            // privacy mode is checked on its write (§17.2), and it creates no epoch (§17.3).
            (_, Some(keys)) if creating && keys.next().is_some() => {
                return Err(SealFailure::Refuse(RejectReason::NextStateKeyUnexpected));
            }
            (_, _) if creating => {}
            // A plain group, unkeyed.
            (None, None) => {}
            // §17.2: a privacy-mode group is never served in the clear.
            (Some(_), None) => return Err(SealFailure::Refuse(RejectReason::StateKeyMissing)),
            // A deleted or only reserved group is the handler's `unknown_group`.
            (None, Some(_)) if snapshot.record(RecordKind::Roster).is_none() => {}
            // §17.2: keys sent to a plain group.
            (None, Some(_)) => return Err(SealFailure::Refuse(RejectReason::KeysForPlainGroup)),
            (Some(stored), Some(keys)) => {
                let mut opened = self.open(keys, group_id, &snapshot, &stored)?;
                for (kind, bytes) in snapshot.records.iter_mut() {
                    if let Some(plaintext) = opened.plaintexts.get(kind) {
                        bytes.clone_from(plaintext);
                    }
                }
                // Each read of the group opens it afresh; the write seals from the last.
                opened.group_id = group_id.to_vec();
                *self.opened.borrow_mut() = Some(opened);
            }
        }
        // Only what the handler asked for; a sealed record it did not open never reaches it.
        snapshot.records.retain(|(kind, _)| kinds.contains(kind));
        Ok(Some(snapshot))
    }

    fn replay_mark(
        &self,
        group_id: &[u8],
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<ReplayMark>, SealFailure> {
        let Ok(mark) = self.inner.replay_mark(group_id, key, now_ms);
        let Some(keys) = self.keys else {
            return Ok(mark);
        };
        let Some(mut mark) = mark else {
            return Ok(None);
        };
        // §17.7: a keyed request's stored answer is sealed under its own current key, which a
        // byte-identical retry carries again.
        if let Some(stored) = mark.response.take() {
            let (ciphersuite, sealed) = split_suite(&stored)?;
            let binding = RecordBinding::replay_response(group_id, key);
            let response = open_record(self.crypto, ciphersuite, keys.current(), &binding, sealed)
                .map_err(|e| corrupt(format!("replay response: {e}")))?;
            mark.response = Some(response);
        }
        Ok(Some(mark))
    }

    fn write(&mut self, _: &WriteSet) -> Result<WriteOutcome, SealFailure> {
        Err(corrupt("a handler wrote to storage"))
    }
}

/// Seals the one write of a run (see the module documentation).
pub(super) struct Sealer<'a, C> {
    crypto: &'a C,
    keys: Option<&'a StateKeys>,
    operation: DsRequestType,
    opened: Option<Opened>,
}

impl<C: OpenMlsCrypto + OpenMlsRand> Sealer<'_, C> {
    /// The write set to store for the handler's plaintext `write_set`.
    pub(super) fn seal(mut self, mut write_set: WriteSet) -> Result<WriteSet, SealFailure> {
        let creating = self.operation == DsRequestType::CreateGroup;
        let Some(keys) = self.keys else {
            // §17.2: a group enters privacy mode only by a keyed create_group.
            if creating && puts_privacy_extension(&write_set)? == Some(true) {
                return Err(SealFailure::Refuse(RejectReason::PrivacyExtensionMismatch));
            }
            return Ok(write_set);
        };
        let (ciphersuite, key, mut plaintexts, mut versions) = match self.opened.take() {
            Some(opened) if opened.group_id == write_set.group_id => {
                // §17.3: a commit seals every record under the key of the epoch it creates.
                let key = match keys.next() {
                    Some(next) => next,
                    None => keys.current(),
                };
                (opened.ciphersuite, key, opened.plaintexts, opened.versions)
            }
            None if creating => {
                let Some(ciphersuite) = roster_suite(&write_set)? else {
                    // The refusal that consumes the reservation writes nothing sealed.
                    return Ok(write_set);
                };
                (
                    ciphersuite,
                    keys.current(),
                    BTreeMap::new(),
                    BTreeMap::new(),
                )
            }
            _ => return Err(corrupt("a keyed write of a group the request did not open")),
        };
        // §17.2: a keyed create_group carries 0xF1E6; no commit drops or changes it.
        if puts_privacy_extension(&write_set)? == Some(false) {
            return Err(SealFailure::Refuse(if creating {
                RejectReason::PrivacyExtensionMismatch
            } else {
                RejectReason::PrivacyModeDropped
            }));
        }
        let new_version = match write_set.guard {
            VersionGuard::Absent => 1,
            VersionGuard::Exactly(version) => version
                .checked_add(1)
                .ok_or_else(|| corrupt("version overflow"))?,
            VersionGuard::ReplayMarkOnly => {
                // A read: the group and its version stay; only the stored answer is sealed.
                self.seal_response(ciphersuite, keys.current(), &mut write_set)?;
                return Ok(write_set);
            }
        };
        let rotate = keys.next().is_some();
        let mut records = Vec::with_capacity(write_set.records.len() + 1);
        let mut written = BTreeSet::new();
        for record in std::mem::take(&mut write_set.records) {
            match record {
                // §17.3: a privacy-mode group keeps no Welcome tree.
                RecordWrite::Put(RecordKind::WelcomeTree { .. }, _) => {}
                RecordWrite::Put(kind, bytes) if is_sealable(kind) => {
                    plaintexts.insert(kind, bytes);
                    written.insert(kind);
                }
                // A deleted record leaves the sealed state and the manifest (a clear kind,
                // such as the reservation a create_group consumes, was in neither).
                RecordWrite::Delete(kind) => {
                    plaintexts.remove(&kind);
                    versions.remove(&kind);
                    records.push(RecordWrite::Delete(kind));
                }
                clear => records.push(clear),
            }
        }
        let group_id = write_set.group_id.clone();
        for (kind, plaintext) in &plaintexts {
            if !(rotate || written.contains(kind)) {
                continue;
            }
            let binding = RecordBinding::for_record(&group_id, *kind, new_version)
                .ok_or_else(|| corrupt(format!("{kind:?} cannot be sealed")))?;
            let sealed = self.seal_one(ciphersuite, key, &binding, plaintext)?;
            records.push(RecordWrite::Put(*kind, sealed));
            versions.insert(*kind, new_version);
        }
        if plaintexts.is_empty() {
            // The group was deleted: only its tombstone is left (in the clear).
            records.push(RecordWrite::Delete(RecordKind::Manifest));
        } else {
            // §17.6: the manifest of every write, bound to the version it moves the group to.
            let entries = versions
                .iter()
                .filter_map(|(kind, version)| {
                    RecordBinding::for_record(&group_id, *kind, *version).map(|b| (b, *version))
                })
                .collect::<Vec<_>>();
            let manifest = Manifest::new(key.epoch(), entries);
            let plaintext = tls_codec::Serialize::tls_serialize_detached(&manifest)
                .map_err(|e| corrupt(e.to_string()))?;
            let binding = RecordBinding::manifest(&group_id, new_version);
            let sealed = self.seal_one(ciphersuite, key, &binding, &plaintext)?;
            records.push(RecordWrite::Put(
                RecordKind::Manifest,
                with_suite(ciphersuite, sealed),
            ));
        }
        write_set.records = records;
        self.seal_response(ciphersuite, keys.current(), &mut write_set)?;
        Ok(write_set)
    }

    /// §17.7: the answer a replay mark keeps, sealed under the request's own current key.
    fn seal_response(
        &self,
        ciphersuite: Ciphersuite,
        key: &StateKey,
        write_set: &mut WriteSet,
    ) -> Result<(), SealFailure> {
        let group_id = write_set.group_id.clone();
        if let Some((replay_key, mark)) = write_set.replay_mark.as_mut() {
            if let Some(response) = mark.response.take() {
                let binding = RecordBinding::replay_response(&group_id, replay_key);
                let sealed = self.seal_one(ciphersuite, key, &binding, &response)?;
                mark.response = Some(with_suite(ciphersuite, sealed));
            }
        }
        Ok(())
    }

    fn seal_one(
        &self,
        ciphersuite: Ciphersuite,
        key: &StateKey,
        binding: &RecordBinding,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealFailure> {
        // §17.5: a fresh salt per seal, from the hub's randomness input.
        let salt = self
            .crypto
            .random_array()
            .map_err(|e| corrupt(format!("randomness: {e:?}")))?;
        seal_record(self.crypto, ciphersuite, key, binding, salt, plaintext).map_err(corrupt)
    }
}

/// Whether a record kind is sealed in a privacy-mode group (wire-format.md §17.5): all but
/// `Reservation` and `Tombstone`, and the manifest, which is sealed on its own.
fn is_sealable(kind: RecordKind) -> bool {
    !matches!(
        kind,
        RecordKind::Reservation | RecordKind::Tombstone | RecordKind::Manifest
    )
}

fn take_record(snapshot: &mut GroupSnapshot, kind: RecordKind) -> Option<Vec<u8>> {
    let index = snapshot.records.iter().position(|(k, _)| *k == kind)?;
    Some(snapshot.records.swap_remove(index).1)
}

/// The stored manifest and replay answers carry the group's ciphersuite in the clear before
/// the sealed record (wire-format.md §17.6): the hub needs it to open anything, and holds no
/// other clear record that names it.
fn with_suite(ciphersuite: Ciphersuite, sealed: Vec<u8>) -> Vec<u8> {
    let mut stored = (ciphersuite as u16).to_be_bytes().to_vec();
    stored.extend(sealed);
    stored
}

fn split_suite(stored: &[u8]) -> Result<(Ciphersuite, &[u8]), SealFailure> {
    let (suite, sealed) = stored
        .split_first_chunk::<2>()
        .ok_or_else(|| corrupt("a sealed record without its ciphersuite"))?;
    let ciphersuite =
        Ciphersuite::try_from(u16::from_be_bytes(*suite)).map_err(|e| corrupt(format!("{e:?}")))?;
    Ok((ciphersuite, sealed))
}

/// The ciphersuite of the roster a write puts (its first field, `state::Roster`).
fn roster_suite(write_set: &WriteSet) -> Result<Option<Ciphersuite>, SealFailure> {
    let Some(roster) = write_set.records.iter().find_map(|record| match record {
        RecordWrite::Put(RecordKind::Roster, bytes) => Some(bytes),
        _ => None,
    }) else {
        return Ok(None);
    };
    let suite = roster
        .first_chunk::<2>()
        .ok_or_else(|| corrupt("a roster without its ciphersuite"))?;
    Ciphersuite::try_from(u16::from_be_bytes(*suite))
        .map(Some)
        .map_err(|e| corrupt(format!("{e:?}")))
}

/// Whether the GroupInfo a write puts marks the group as in privacy mode: `Some(true)` if its
/// GroupContext carries extension 0xF1E6 with the one scheme this hub knows, `Some(false)` if
/// it does not (or carries other data: a changed scheme is a change of the mode, §17.2), `None`
/// if the write puts no GroupInfo.
fn puts_privacy_extension(write_set: &WriteSet) -> Result<Option<bool>, SealFailure> {
    let Some(stored) = write_set.records.iter().find_map(|record| match record {
        RecordWrite::Put(RecordKind::GroupInfo, bytes) => Some(bytes),
        _ => None,
    }) else {
        return Ok(None);
    };
    let message = crate::wire::MlsMessageBytes::from_bytes(stored.clone()).map_err(corrupt)?;
    let info = crate::handlers::verifiable_group_info(&message).map_err(corrupt)?;
    let expected = tls_codec::Serialize::tls_serialize_detached(&PrivacyModeExtension {
        scheme: StateKeyScheme::ExporterEpochKey,
    })
    .map_err(|e| corrupt(e.to_string()))?;
    Ok(Some(
        info.group_context()
            .extensions()
            .unknown(PRIVACY_MODE_EXTENSION_TYPE)
            .is_some_and(|data| data.0 == expected),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sealer seals a write only for the group the request opened: a handler that wrote
    /// another group's records would otherwise seal them under this group's key.
    #[test]
    fn a_write_of_a_group_the_request_did_not_open_is_not_sealed() {
        let crypto = openmls_rust_crypto::RustCrypto::default();
        let keys = StateKeys::new(
            StateKeyScheme::ExporterEpochKey,
            StateKey::new(3, vec![7; 32]),
            None,
        )
        .expect("keys");
        let sealer = |opened: &[u8]| Sealer {
            crypto: &crypto,
            keys: Some(&keys),
            operation: DsRequestType::SendMessage,
            opened: Some(Opened {
                group_id: opened.to_vec(),
                ciphersuite: Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
                versions: BTreeMap::from([(RecordKind::Sequencer, 4)]),
                plaintexts: BTreeMap::from([(RecordKind::Sequencer, vec![1, 2, 3])]),
            }),
        };
        let write = WriteSet {
            group_id: b"group a".to_vec(),
            guard: VersionGuard::Exactly(4),
            records: vec![RecordWrite::Put(RecordKind::Sequencer, vec![4, 5, 6])],
            replay_mark: None,
            now_ms: 0,
            fanout: Vec::new(),
        };
        let sealed = sealer(b"group a").seal(write.clone()).expect("sealed");
        assert_eq!(sealed.records.len(), 2, "the sequencer and the manifest");
        assert!(matches!(
            sealer(b"group b").seal(write),
            Err(SealFailure::Corrupt(_))
        ));
    }

    /// A keyed write of a group the request opened nothing of is sealed only by the
    /// create_group that creates it: any other would seal records under a key no stored state
    /// was checked against.
    #[test]
    fn only_a_create_group_seals_a_group_it_did_not_open() {
        let crypto = openmls_rust_crypto::RustCrypto::default();
        let keys = StateKeys::new(
            StateKeyScheme::ExporterEpochKey,
            StateKey::new(0, vec![7; 32]),
            None,
        )
        .expect("keys");
        let sealer = Sealer {
            crypto: &crypto,
            keys: Some(&keys),
            operation: DsRequestType::SendMessage,
            opened: None,
        };
        let write = WriteSet {
            group_id: b"group a".to_vec(),
            guard: VersionGuard::Exactly(1),
            // The roster's first field is its ciphersuite.
            records: vec![RecordWrite::Put(RecordKind::Roster, vec![0, 1, 0])],
            replay_mark: None,
            now_ms: 0,
            fanout: Vec::new(),
        };
        assert!(matches!(sealer.seal(write), Err(SealFailure::Corrupt(_))));
    }

    /// What a log line of a failed request says (the error of the storage the handlers read).
    #[test]
    fn seal_failures_say_what_failed() {
        assert_eq!(
            SealFailure::Corrupt("the manifest".into()).to_string(),
            "privacy-mode state: the manifest"
        );
        let refusal = SealFailure::Refuse(RejectReason::StateKeyWrong);
        assert_eq!(
            refusal.to_string(),
            format!("refused: {}", RejectReason::StateKeyWrong)
        );
    }
}
