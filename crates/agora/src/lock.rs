//! [`DataDirLock`]: one node per data directory.
//!
//! A node takes an exclusive OS lock on `<data dir>/lock` before it touches its
//! keys or opens its store, and holds it for its whole life. The lock is the
//! operating system's (`flock` on Unix, `LockFileEx` on Windows, through
//! `std::fs::File::try_lock`), tied to the open file: it goes away when the file
//! is closed, so a node that crashed or was killed never leaves its data dir
//! locked, and there is no stale lock file to clean up. The file itself stays;
//! it holds the pid of the last node that took it, for the error message only.
//!
//! It is not a pid file: nothing reads the pid to decide anything.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::{Error, Result};

/// The lock file's name in the data dir.
pub(crate) const LOCK_FILE: &str = "lock";

/// An exclusive lock on a data directory, released when dropped (or when the
/// process ends, however it ends).
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock on `data_dir` (which must exist) without waiting, and
    /// writes this process's pid into the lock file. Fails with
    /// [`Error::DataDirLocked`] when another node holds it.
    pub(crate) fn acquire(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(LOCK_FILE);
        // Not truncated on open: until we hold the lock, the pid in it is the holder's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| Error::io(&path, error))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::DataDirLocked { data_dir: data_dir.to_owned(), pid: holder_pid(&mut file) });
            }
            Err(TryLockError::Error(error)) => return Err(Error::io(&path, error)),
        }
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush());
        written.map_err(|error| Error::io(&path, error))?;
        Ok(Self { _file: file })
    }
}

/// The pid the holder wrote, if it wrote one yet (and the platform lets us read
/// a file another process locked).
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_second_lock_fails_naming_the_holder_and_a_dropped_one_is_free_again() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let error = DataDirLock::acquire(dir.path()).expect_err("a second lock on a locked data dir");
        match &error {
            Error::DataDirLocked { data_dir, pid } => {
                assert_eq!(data_dir, dir.path());
                assert_eq!(*pid, Some(std::process::id()));
            }
            other => panic!("expected DataDirLocked, found {other:?}"),
        }
        assert_eq!(
            error.to_string(),
            format!(
                "another agora node (pid {}) is using the data dir {}; stop it first",
                std::process::id(),
                dir.path().display()
            )
        );
        drop(first);
        DataDirLock::acquire(dir.path()).expect("the lock is free once dropped");
    }

    #[test]
    fn a_lock_file_left_behind_does_not_lock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "999999999\nand more text than a pid\n").unwrap();
        let _lock = DataDirLock::acquire(dir.path()).expect("a lock file nobody holds is free");
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
    }
}
