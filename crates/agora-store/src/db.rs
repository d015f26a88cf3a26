//! SQLite connections: one writer behind a mutex, a small pool of read-only
//! connections (WAL lets them read while the writer writes), and numbered
//! migrations tracked in `PRAGMA user_version`.
//!
//! Not here: any table's SQL beyond the migrations; the handles own their
//! queries and run them through [`Database::write`] and [`Database::read`].

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::{Error, Result};

/// Migrations in order; migration `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_catalog.sql"),
    include_str!("../migrations/0002_peers.sql"),
    include_str!("../migrations/0003_reputation.sql"),
    include_str!("../migrations/0004_search_indexes.sql"),
    include_str!("../migrations/0005_claims.sql"),
];

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Readers beyond this add little on the machines Agora targets.
const MAX_READERS: usize = 8;

#[derive(Debug)]
pub(crate) struct Database {
    writer: Mutex<Connection>,
    /// Empty for in-memory databases, whose reads go through the writer.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl Database {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        migrate(&mut writer, &path.display().to_string())?;
        let reader_count = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, MAX_READERS);
        let readers = (0..reader_count)
            .map(|_| {
                let reader = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
                )?;
                configure(&reader)?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { writer: Mutex::new(writer), readers, next_reader: AtomicUsize::new(0) })
    }

    pub(crate) fn memory() -> Result<Self> {
        let mut writer = Connection::open_in_memory()?;
        configure(&writer)?;
        migrate(&mut writer, ":memory:")?;
        Ok(Self { writer: Mutex::new(writer), readers: Vec::new(), next_reader: AtomicUsize::new(0) })
    }

    /// Runs `work` in one IMMEDIATE transaction: all of it commits or none of it does.
    pub(crate) fn write<T>(&self, work: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.write_then(work, |_| {})
    }

    /// [`Database::write`], then `committed` with the value once the commit has
    /// succeeded (never after a failed or rolled-back one), still holding the
    /// writer lock, so successive calls of `committed` follow commit order.
    pub(crate) fn write_then<T>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> Result<T>,
        committed: impl FnOnce(&T),
    ) -> Result<T> {
        let mut connection = lock(&self.writer);
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = work(&transaction)?;
        transaction.commit()?;
        committed(&value);
        Ok(value)
    }

    /// Runs `work` on a read connection.
    pub(crate) fn read<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.readers.is_empty() {
            return work(&lock(&self.writer));
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for offset in 0..self.readers.len() {
            if let Ok(reader) = self.readers[(start + offset) % self.readers.len()].try_lock() {
                return work(&reader);
            }
        }
        work(&lock(&self.readers[start % self.readers.len()]))
    }
}

fn lock(mutex: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding a connection leaves no half-done transaction behind
    // (rusqlite rolls back on drop), so the connection is still usable.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn configure(connection: &Connection) -> Result<()> {
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

fn migrate(connection: &mut Connection, path: &str) -> Result<()> {
    let current: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let supported = SCHEMA_VERSION;
    if current > supported {
        return Err(Error::SchemaTooNew { path: path.to_owned(), found: current, supported });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        transaction.execute_batch(sql)?;
        transaction.pragma_update(None, "user_version", version as i64 + 1)?;
        transaction.commit()?;
        tracing::info!(version = version + 1, "applied catalog migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_and_newer_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        drop(Database::open(&path).unwrap());
        drop(Database::open(&path).unwrap());
        let connection = Connection::open(&path).unwrap();
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        connection.pragma_update(None, "user_version", 99).unwrap();
        drop(connection);
        let error = Database::open(&path).unwrap_err();
        assert!(matches!(error, Error::SchemaTooNew { found: 99, .. }), "{error}");
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let database = Database::memory().unwrap();
        let result: Result<()> = database.write(|tx| {
            tx.execute("INSERT INTO artifacts VALUES (x'00', 1, 0, 0, 0)", [])?;
            Err(Error::Corrupt("boom".into()))
        });
        assert!(result.is_err());
        let count: i64 =
            database.read(|c| Ok(c.query_row("SELECT count(*) FROM artifacts", [], |r| r.get(0))?)).unwrap();
        assert_eq!(count, 0);
    }
}
