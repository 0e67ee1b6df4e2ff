//! [`ConnectionProvider`] over an [`AsyncConnectionStore`] (PostgreSQL): the same calls as
//! the sync ones in provider.rs, each read and write awaited. Every rule is decided by the
//! steps the sync calls use (`open_delivery`, `replay_mark`, `plan_enqueue`, ...), so the two
//! cannot drift apart; only the storage calls differ.

use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::random::OpenMlsRand;

use super::provider::{acknowledge_change, delivery_outcome, known_user};
use super::store::AsyncConnectionStore;
use super::wire::{ConnectionKeyBundle, StoredConnectionRequest};
use super::{ConnectionFailure, ConnectionProvider};
use crate::qs::QsOutcome;
use crate::time::UnixTimeMs;
use crate::ProcessError;

impl<C: OpenMlsCrypto + OpenMlsRand> ConnectionProvider<C> {
    /// [`ConnectionProvider::publish`] over async storage.
    pub async fn publish_async<S: AsyncConnectionStore>(
        &self,
        now: UnixTimeMs,
        store: &mut S,
        user: &[u8],
        ciphersuite: u16,
        connection_establishment_key: &[u8],
    ) -> Result<(), ConnectionFailure<S::Error>> {
        self.check_key(ciphersuite, connection_establishment_key)?;
        let existing = store
            .key_record(user)
            .await
            .map_err(ConnectionFailure::Storage)?;
        let published_at_ms = super::provider::server_publication_time(now, existing.as_ref());
        let change = self.publish_change(
            user,
            existing,
            ciphersuite,
            connection_establishment_key,
            Vec::new(),
            published_at_ms,
        )?;
        if !store
            .apply(now.0, change)
            .await
            .map_err(ConnectionFailure::Storage)?
        {
            // Rule R-CONN-9: a newer publication got in between.
            return Err(super::ConnectionRefusal::StalePublication.into());
        }
        Ok(())
    }

    /// [`ConnectionProvider::fetch`] over async storage.
    pub async fn fetch_async<S: AsyncConnectionStore>(
        &self,
        store: &S,
        user: &[u8],
    ) -> Result<Option<ConnectionKeyBundle>, ConnectionFailure<S::Error>> {
        let record = store
            .key_record(user)
            .await
            .map_err(ConnectionFailure::Storage)?;
        record.map(|record| self.bundle(&record)).transpose()
    }

    /// [`ConnectionProvider::deliver`] over async storage.
    pub async fn deliver_async<S: AsyncConnectionStore>(
        &self,
        now: UnixTimeMs,
        request: &[u8],
        authenticated_sender: Option<&str>,
        store: &mut S,
    ) -> Result<QsOutcome, ProcessError<S::Error>> {
        let result = self
            .try_deliver_async(now, request, authenticated_sender, store)
            .await;
        delivery_outcome(result, request.len())
    }

    async fn try_deliver_async<S: AsyncConnectionStore>(
        &self,
        now: UnixTimeMs,
        bytes: &[u8],
        authenticated_sender: Option<&str>,
        store: &mut S,
    ) -> Result<Vec<u8>, ConnectionFailure<S::Error>> {
        let storage = ConnectionFailure::Storage;
        let opened = self.open_delivery(bytes, authenticated_sender)?;
        let inbox = store.inbox(&opened.inbox_id).await.map_err(storage)?;
        let user = inbox.ok_or(super::ConnectionRefusal::UnknownInbox)?.user;
        let key = store.key_record(&user).await.map_err(storage)?;
        let mark = self.replay_mark(&opened, key)?;
        let mut attempts = 0;
        loop {
            let marked = store
                .has_mark(&opened.inbox_id, &mark, now.0)
                .await
                .map_err(storage)?;
            let inbox = store.inbox(&opened.inbox_id).await.map_err(storage)?;
            let change = self.plan_enqueue(now, &opened, &mark, marked, inbox)?;
            if store.apply(now.0, change).await.map_err(storage)? {
                return Ok(opened.inbox_id);
            }
            attempts += 1;
            self.check_attempts(attempts)?;
        }
    }

    /// [`ConnectionProvider::inbox`] over async storage.
    pub async fn inbox_async<S: AsyncConnectionStore>(
        &self,
        store: &S,
        user: &[u8],
        from_sequence: u64,
        max: usize,
    ) -> Result<Vec<StoredConnectionRequest>, ConnectionFailure<S::Error>> {
        let record = store
            .key_record(user)
            .await
            .map_err(ConnectionFailure::Storage)?;
        let inbox_id = known_user(record)?.inbox_id;
        store
            .requests(&inbox_id, from_sequence, max.min(self.config().max_page))
            .await
            .map_err(ConnectionFailure::Storage)
    }

    /// [`ConnectionProvider::acknowledge`] over async storage.
    pub async fn acknowledge_async<S: AsyncConnectionStore>(
        &self,
        now: UnixTimeMs,
        store: &mut S,
        user: &[u8],
        up_to_sequence: u64,
    ) -> Result<(), ConnectionFailure<S::Error>> {
        let storage = ConnectionFailure::Storage;
        let record = known_user(store.key_record(user).await.map_err(storage)?)?;
        let inbox = store.inbox(&record.inbox_id).await.map_err(storage)?;
        let change = acknowledge_change(record, inbox, up_to_sequence)?;
        store.apply(now.0, change).await.map_err(storage)?;
        Ok(())
    }
}
