//! [`SqliteDirectoryStorage`]: the KeyPackage directory's storage (mimi-ds wire-format.md
//! §14.4).

use std::borrow::Borrow;
use std::path::Path;
use std::sync::Arc;

use mimi_ds::directory::{
    DirectoryAccount, DirectoryStorage, DirectoryWriteOutcome, DirectoryWriteSet, VersionedAccount,
};
use rusqlite::{params, Connection, OptionalExtension as _};

use crate::{
    check_size, enable_wal, hex, length_limit, migrate, sql_u64, Error, WriteTx, WriterQueue,
};

/// The KeyPackage directory's [`DirectoryStorage`] on a SQLite connection you own. A token's
/// account is one row with a version; a write set runs in one `BEGIN IMMEDIATE` transaction
/// (or a savepoint in yours): the account's `UPDATE … WHERE version = ?` (or `INSERT … ON
/// CONFLICT DO NOTHING` for a new account) and one `INSERT … ON CONFLICT DO NOTHING` per new
/// pseudonym; any of them changing no row rolls the whole set back
/// ([`DirectoryWriteOutcome::Conflict`]).
#[derive(Debug)]
pub struct SqliteDirectoryStorage<C: Borrow<Connection> = Connection> {
    connection: C,
    writers: Option<Arc<WriterQueue>>,
}

impl SqliteDirectoryStorage<Connection> {
    /// Opens (or creates) a database file in WAL mode and migrates it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let connection = Connection::open(path)?;
        enable_wal(&connection)?;
        Self::new(connection)
    }
}

impl<C: Borrow<Connection>> SqliteDirectoryStorage<C> {
    /// Uses `connection`, creating or upgrading mimi-ds's tables first ([`crate::migrate`]).
    pub fn new(connection: C) -> Result<Self, Error> {
        migrate(connection.borrow())?;
        Ok(Self {
            connection,
            writers: None,
        })
    }

    /// Uses `connection` without migrating it: for a connection to a database that
    /// [`crate::migrate`] (or another storage's `new`) already set up, e.g. a connection a
    /// [`crate::SqliteQsStorage`] holds, borrowed per request.
    pub fn from_migrated(connection: C) -> Self {
        Self {
            connection,
            writers: None,
        }
    }

    /// Takes a turn of `writers` before each write transaction of its own: share one
    /// [`WriterQueue`] between every storage of this process on the same file
    /// ([`crate::SqliteQsStorage::with_writer_queue`]).
    #[must_use]
    pub fn with_writer_queue(mut self, writers: Arc<WriterQueue>) -> Self {
        self.writers = Some(writers);
        self
    }

    /// The connection, for your own statements.
    pub fn connection(&self) -> &Connection {
        self.connection.borrow()
    }

    /// Gives the connection back.
    pub fn into_inner(self) -> C {
        self.connection
    }

    fn apply(&self, writes: &DirectoryWriteSet) -> Result<bool, Error> {
        let connection = self.connection();
        let bytes = writes.account.to_bytes();
        check_size(
            length_limit(connection)?,
            "directory account",
            "directory",
            &writes.index,
            bytes.len(),
        )?;
        let changed = match writes.expected_version {
            None => connection
                .prepare_cached(
                    "INSERT INTO mimi_ds_directory_account (directory_index, version, account)
                     VALUES (?1, 1, ?2) ON CONFLICT (directory_index) DO NOTHING",
                )?
                .execute(params![writes.index, bytes])?,
            Some(version) => connection
                .prepare_cached(
                    "UPDATE mimi_ds_directory_account SET version = version + 1, account = ?3
                     WHERE directory_index = ?1 AND version = ?2",
                )?
                .execute(params![writes.index, sql_u64(version), bytes])?,
        };
        if changed == 0 {
            return Ok(false);
        }
        for pseudonym in &writes.new_pseudonyms {
            let inserted = connection
                .prepare_cached(
                    "INSERT INTO mimi_ds_directory_pseudonym (pseudonym_hash) VALUES (?1)
                     ON CONFLICT (pseudonym_hash) DO NOTHING",
                )?
                .execute([pseudonym])?;
            if inserted == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl<C: Borrow<Connection>> DirectoryStorage for SqliteDirectoryStorage<C> {
    type Error = Error;

    fn account(&self, index: &[u8]) -> Result<Option<VersionedAccount>, Error> {
        let row: Option<(i64, Vec<u8>)> = self
            .connection()
            .prepare_cached(
                "SELECT version, account FROM mimi_ds_directory_account WHERE directory_index = ?1",
            )?
            .query_row([index], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((version, bytes)) = row else {
            return Ok(None);
        };
        let corrupt = |detail: String| Error::CorruptDirectory {
            index: hex(index),
            detail,
        };
        let version = u64::try_from(version).map_err(|_| corrupt(format!("version {version}")))?;
        let account = DirectoryAccount::from_bytes(&bytes).map_err(corrupt)?;
        Ok(Some(VersionedAccount { version, account }))
    }

    fn pseudonym_registered(&self, pseudonym_hash: &[u8]) -> Result<bool, Error> {
        Ok(self
            .connection()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM mimi_ds_directory_pseudonym WHERE pseudonym_hash = ?1)",
            )?
            .query_row([pseudonym_hash], |row| row.get(0))?)
    }

    fn write(&mut self, writes: &DirectoryWriteSet) -> Result<DirectoryWriteOutcome, Error> {
        let tx = WriteTx::begin(self.connection(), self.writers.as_deref())?;
        if self.apply(writes)? {
            tx.commit()?;
            Ok(DirectoryWriteOutcome::Applied)
        } else {
            tx.rollback()?;
            Ok(DirectoryWriteOutcome::Conflict)
        }
    }
}
