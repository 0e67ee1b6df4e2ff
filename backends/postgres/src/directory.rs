//! The KeyPackage directory's storage (mimi-ds wire-format.md §14.4):
//! [`PostgresDirectoryStorage`] on a connection it holds.

use mimi_ds::directory::{
    AsyncDirectoryStorage, DirectoryAccount, DirectoryWriteOutcome, DirectoryWriteSet,
    VersionedAccount,
};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::{
    check_size, connect_plain, hex, is_lost_race, lost_to_concurrent_transaction, migrate, sql_u64,
    ClientHandle, Error, DEFAULT_MAX_VALUE_BYTES,
};

/// The KeyPackage directory's [`AsyncDirectoryStorage`] on one PostgreSQL connection. A
/// token's account is one row with a version; a write set runs in one transaction: the
/// account's `UPDATE … WHERE version = $2` (or `INSERT … ON CONFLICT DO NOTHING` for a new
/// account; the row lock serialises racing writers) and one `INSERT … ON CONFLICT DO NOTHING`
/// per new pseudonym. Any of them changing no row, or the database aborting with SQLSTATE
/// 40001/40P01, rolls the set back ([`DirectoryWriteOutcome::Conflict`]).
#[derive(Debug)]
pub struct PostgresDirectoryStorage<C: ClientHandle = Client> {
    client: C,
    max_value_bytes: usize,
}

impl PostgresDirectoryStorage<Client> {
    /// Connects without TLS, runs the connection on the current tokio runtime and migrates
    /// the tables ([`crate::migrate`]), as [`crate::PostgresDsStorage::connect`].
    pub async fn connect(config: &str) -> Result<Self, Error> {
        let mut client = connect_plain(config).await?;
        migrate(&mut client).await?;
        Ok(Self::new(client))
    }
}

impl<C: ClientHandle> PostgresDirectoryStorage<C> {
    /// Uses `client`, whose database [`crate::migrate`] has already set up.
    pub fn new(client: C) -> Self {
        Self {
            client,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }

    /// The connection, for your own statements.
    pub fn client(&self) -> &Client {
        self.client.client()
    }

    /// Gives the connection back.
    pub fn into_inner(self) -> C {
        self.client
    }
}

/// The account filed under `index`, through any client (a transaction included).
pub async fn account<G: GenericClient + Sync>(
    client: &G,
    index: &[u8],
) -> Result<Option<VersionedAccount>, Error> {
    let row = client
        .query_opt(
            "SELECT version, account FROM mimi_ds_directory_account WHERE directory_index = $1",
            &[&index],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let corrupt = |detail: String| Error::CorruptDirectory {
        index: hex(index),
        detail,
    };
    let version: i64 = row.try_get(0)?;
    let version = u64::try_from(version).map_err(|_| corrupt(format!("version {version}")))?;
    let bytes: Vec<u8> = row.try_get(1)?;
    let account = DirectoryAccount::from_bytes(&bytes).map_err(corrupt)?;
    Ok(Some(VersionedAccount { version, account }))
}

/// Whether a user pseudonym hash was ever registered.
pub async fn pseudonym_registered<G: GenericClient + Sync>(
    client: &G,
    pseudonym_hash: &[u8],
) -> Result<bool, Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM mimi_ds_directory_pseudonym WHERE pseudonym_hash = $1)",
            &[&pseudonym_hash],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Every change of the write set; `Ok(false)` at the first guard that fails.
async fn apply(
    tx: &Transaction<'_>,
    writes: &DirectoryWriteSet,
    bytes: &[u8],
) -> Result<bool, Error> {
    let changed = match writes.expected_version {
        None => {
            tx.execute_typed(
                "INSERT INTO mimi_ds_directory_account (directory_index, version, account)
                 VALUES ($1, 1, $2) ON CONFLICT (directory_index) DO NOTHING",
                &[(&writes.index, Type::BYTEA), (&bytes, Type::BYTEA)],
            )
            .await?
        }
        Some(version) => {
            tx.execute_typed(
                "UPDATE mimi_ds_directory_account SET version = version + 1, account = $3
                 WHERE directory_index = $1 AND version = $2",
                &[
                    (&writes.index, Type::BYTEA),
                    (&sql_u64(version), Type::INT8),
                    (&bytes, Type::BYTEA),
                ],
            )
            .await?
        }
    };
    if changed != 1 {
        return Ok(false);
    }
    for pseudonym in &writes.new_pseudonyms {
        let inserted = tx
            .execute_typed(
                "INSERT INTO mimi_ds_directory_pseudonym (pseudonym_hash) VALUES ($1)
                 ON CONFLICT (pseudonym_hash) DO NOTHING",
                &[(pseudonym, Type::BYTEA)],
            )
            .await?;
        if inserted != 1 {
            return Ok(false);
        }
    }
    Ok(true)
}

impl<C: ClientHandle> AsyncDirectoryStorage for PostgresDirectoryStorage<C> {
    type Error = Error;

    async fn account(&self, index: &[u8]) -> Result<Option<VersionedAccount>, Error> {
        account(self.client(), index).await
    }

    async fn pseudonym_registered(&self, pseudonym_hash: &[u8]) -> Result<bool, Error> {
        pseudonym_registered(self.client(), pseudonym_hash).await
    }

    async fn write(&mut self, writes: &DirectoryWriteSet) -> Result<DirectoryWriteOutcome, Error> {
        let bytes = writes.account.to_bytes();
        check_size(
            self.max_value_bytes,
            "directory account",
            "directory",
            &writes.index,
            bytes.len(),
        )?;
        let tx = self.client.client_mut().transaction().await?;
        let applied = match apply(&tx, writes, &bytes).await {
            Ok(applied) => applied,
            Err(error) if is_lost_race(&error) => false,
            Err(error) => return Err(error),
        };
        if !applied {
            tx.rollback().await?;
            return Ok(DirectoryWriteOutcome::Conflict);
        }
        match tx.commit().await {
            Ok(()) => Ok(DirectoryWriteOutcome::Applied),
            // A failed COMMIT rolled the transaction back.
            Err(error) if lost_to_concurrent_transaction(&error) => {
                Ok(DirectoryWriteOutcome::Conflict)
            }
            Err(error) => Err(error.into()),
        }
    }
}
