//! The console's Unix socket file (`console_socket`): created with mode
//! 0660, so the file's owner and group decide who may connect (no `auth`);
//! a stale file left by a driver that was killed is replaced, a socket that
//! a live process still listens on is not; the file is removed on exit.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The socket file's permissions: owner and group may connect.
pub const MODE: u32 = 0o660;

/// The socket file we created; dropping it removes the file, unless
/// something else has been put in its place since.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file of a socket inherited across an upgrade: removed on exit
    /// like one this image created. None if it is no longer there.
    pub fn adopt(path: &Path) -> Option<SocketFile> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(SocketFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the socket at `path`, replacing a stale socket file.
pub fn bind(path: &Path) -> io::Result<(UnixListener, SocketFile)> {
    remove_if_stale(path)?;
    let listener = bind_with_mode(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(MODE))?;
    let meta = std::fs::symlink_metadata(path)?;
    listener.set_nonblocking(true)?;
    let file = SocketFile {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    Ok((listener, file))
}

/// Creates the socket with no permission for others from the first moment
/// (the mask is restored at once; nothing else creates files at start-up).
fn bind_with_mode(path: &Path) -> io::Result<UnixListener> {
    let mask = nix::sys::stat::Mode::from_bits_truncate(0o777 & !MODE);
    let previous = nix::sys::stat::umask(mask);
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(previous);
    bound
}

/// A socket file nobody listens on is left over from a driver that did not
/// exit cleanly: remove it. Anything else at the path stays, and is an error.
fn remove_if_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; not replacing it",
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "a running process listens on it (another gearman-driver?)",
        )),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("replacing the stale console socket {}", path.display());
            std::fs::remove_file(path)
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_0660_and_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let (listener, file) = bind(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        drop(listener);
        drop(file);
        assert!(!path.exists());
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        // Stale: bound and closed without removing the file.
        drop(UnixListener::bind(&path).unwrap());
        let (live, file) = bind(&path).expect("the stale file is replaced");
        let err = bind(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(path.exists(), "the live socket stays");
        drop((live, file));
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        std::fs::write(&path, "precious").unwrap();
        let err = bind(&path).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[test]
    fn a_replaced_file_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let (listener, file) = bind(&path).unwrap();
        drop(listener);
        // Moved away (not deleted, so its inode cannot be reused at once).
        std::fs::rename(&path, dir.path().join("moved.sock")).unwrap();
        std::fs::write(&path, "someone else's").unwrap();
        drop(file);
        assert!(path.exists());
    }
}
