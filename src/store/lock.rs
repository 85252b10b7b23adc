//! One writer per SQLite file. SQLite serves one replica: two `serve` processes on one
//! file would both run workers and watchers, each believing it is the only one (the
//! watcher lease and the action claims assume one process). So `serve` and `migrate`
//! hold an exclusive advisory lock on `<database>.lock` for as long as they run; a
//! second process on the same file exits at once, naming the holder's PID. Read-only
//! commands (`export`, `check-config`) take no lock. The lock is the operating system's
//! (`flock`), so it ends with the process however that ends, `kill -9` included.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// Held for as long as the process writes to the file; dropping it releases the lock.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another rollwarden (PID {pid}) already serves this SQLite database (lock {path}): \
         SQLite serves one replica; stop that one, or use PostgreSQL for more"
    )]
    Held { pid: String, path: PathBuf },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The database file of a `sqlite:` URL, or `None` for an in-memory database.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Takes the writer lock of the SQLite database at `url`; `Ok(None)` for an in-memory
/// database or a URL that is not SQLite's.
pub fn lock_sqlite_writer(url: &str) -> Result<Option<WriterLock>, LockError> {
    let Some(database) = sqlite_path(url) else {
        return Ok(None);
    };
    let mut name = database.clone().into_os_string();
    name.push(".lock");
    let path = PathBuf::from(name);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(LockError::Held {
                pid: if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid.into()
                },
                path,
            });
        }
        Err(TryLockError::Error(source)) => return Err(io(source)),
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(Some(WriterLock { _file: file, path }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_comes_from_the_url() {
        assert_eq!(sqlite_path("sqlite:./r.db"), Some("./r.db".into()));
        assert_eq!(
            sqlite_path("sqlite:///var/lib/r.db?mode=rwc"),
            Some("/var/lib/r.db".into())
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://db/rw"), None);
    }

    #[test]
    fn a_second_writer_is_refused_naming_the_first_and_admitted_once_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("r.db").display());
        let first = lock_sqlite_writer(&url).unwrap().expect("a file database");
        let err = lock_sqlite_writer(&url).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("PID {}", std::process::id())),
            "{message}"
        );
        drop(first);
        assert!(lock_sqlite_writer(&url).unwrap().is_some());
    }
}
