//! The embedded local store: one SQLite database (rusqlite, bundled build) under the data
//! directory.
//!
//! A single writer thread owns the write connection and takes [`StoreBatch`]es from a bounded
//! queue, several per transaction. Readers ([`StoreReader`]) use their own connection; the
//! database runs in WAL mode so reads never wait on writes. When the queue's senders are all
//! dropped the writer commits what it holds, checkpoints and stops: everything sent before is on
//! disk.

mod probe;
mod read;
mod schema;
mod write;

pub use probe::{ProbeCounts, ProbeStore, ProbeSummary};
pub use read::{AnomalyRow, PointRow, SeriesRow, StageRow, StageTotals, StoreReader};
pub use write::{LogChunk, LogChunkEncoder, StoreBatch, StoreLimits, StoreWriter, now_ms};

use std::path::{Path, PathBuf};

/// A store failure, naming the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        /// Directory path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// SQLite refused an operation.
    #[error("store {path}: {source}")]
    Sqlite {
        /// Database path.
        path: PathBuf,
        /// Cause.
        source: rusqlite::Error,
    },
    /// A blocking task failed to complete.
    #[error("store task failed: {0}")]
    Join(String),
}

/// A connection shared by async callers: each call runs on the blocking pool under a mutex.
#[derive(Clone)]
pub struct SharedConnection {
    conn: std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>,
    path: PathBuf,
}

impl SharedConnection {
    /// Wraps an open connection to the database at `path`.
    pub fn new(conn: rusqlite::Connection, path: PathBuf) -> Self {
        Self {
            conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
            path,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    ///
    /// # Errors
    /// What `f` returns (naming the database), or a failed blocking task.
    pub async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = std::sync::Arc::clone(&self.conn);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&guard).map_err(|source| StoreError::Sqlite { path, source })
        })
        .await
        .map_err(|err| StoreError::Join(err.to_string()))?
    }
}

/// Database file inside a data directory.
pub fn database_path(dir: &Path) -> PathBuf {
    dir.join("pipewarden.db")
}

fn open(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open(path).map_err(|source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    })?;
    // A page cache of 1 MiB per connection (SQLite's default is 2 MiB): the writer's working set
    // is the newest pages of a few tables, and a page read again comes from the OS page cache.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;
         PRAGMA cache_size = -1024;",
    )
    .map_err(|source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    })?;
    Ok(conn)
}

/// Opens (creating if needed) the database in `dir` and applies the schema.
///
/// # Errors
/// When the directory cannot be created or SQLite refuses to open or migrate the file.
pub fn open_store(dir: &Path) -> Result<(rusqlite::Connection, PathBuf), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let path = database_path(dir);
    let conn = open(&path)?;
    schema::migrate(&conn).map_err(|source| StoreError::Sqlite {
        path: path.clone(),
        source,
    })?;
    Ok((conn, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_use_wal_and_a_one_mib_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _) = open_store(dir.path()).unwrap();
        let pragma = |name: &str| -> String {
            conn.query_row(&format!("PRAGMA {name}"), [], |row| {
                row.get::<_, rusqlite::types::Value>(0)
            })
            .map(|value| format!("{value:?}"))
            .unwrap()
        };
        assert_eq!(pragma("journal_mode"), "Text(\"wal\")");
        assert_eq!(pragma("cache_size"), "Integer(-1024)");
    }
}
