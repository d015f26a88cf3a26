//! Key files in the data directory: hex-encoded ed25519 seeds, readable by the
//! owner only (0600, in a 0700 directory), written atomically.

use std::fs;
use std::io::Write;
use std::path::Path;

use agora_core::SecretKey;

use crate::{Error, Result};

/// Loads the key at `path`, creating it (with a fresh random key) if absent.
pub(crate) fn load_or_create(path: &Path) -> Result<SecretKey> {
    match fs::read_to_string(path) {
        Ok(text) => {
            restrict_permissions(path)?;
            SecretKey::from_hex(text.trim())
                .map_err(|error| Error::Key { path: path.to_owned(), message: error.to_string() })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            store(path, &key)?;
            tracing::info!(path = %path.display(), public_key = %key.public_key(), "created key");
            Ok(key)
        }
        Err(error) => Err(Error::io(path, error)),
    }
}

/// Writes `key` to `path` atomically with owner-only permissions.
pub(crate) fn store(path: &Path, key: &SecretKey) -> Result<()> {
    write_private(path, &format!("{}\n", key.to_hex()))
}

/// Writes `contents` to `path` atomically, readable by the owner only.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|error| Error::io(dir, error))?;
    set_owner_only(temp.path(), 0o600)?;
    temp.write_all(contents.as_bytes()).map_err(|error| Error::io(temp.path(), error))?;
    temp.as_file().sync_all().map_err(|error| Error::io(temp.path(), error))?;
    temp.persist(path).map_err(|error| Error::io(path, error.error))?;
    Ok(())
}

/// Creates `dir` (and parents) and makes it owner-only.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|error| Error::io(dir, error))?;
    set_owner_only(dir, 0o700)
}

fn restrict_permissions(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).map_err(|error| Error::io(path, error))?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "key file was readable by others; restricting it to 0600");
            set_owner_only(path, 0o600)?;
        }
    }
    Ok(())
}

#[cfg_attr(not(unix), allow(unused_variables))]
fn set_owner_only(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|error| Error::io(path, error))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("publisher.key");
        let first = load_or_create(&path).unwrap();
        let again = load_or_create(&path).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            load_or_create(&path).unwrap();
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_garbled_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("publisher.key");
        fs::write(&path, "not hex").unwrap();
        let error = load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("publisher.key"), "{error}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "not hex");
    }
}
