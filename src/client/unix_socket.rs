//! The Unix-socket listener (`--unix-socket DIR`): the first target served at
//! `DIR/.s.PGSQL.<port>`, the name libpq derives from `host=DIR port=PORT`, so
//! `psql -h DIR -p PORT` finds it. A socket file left by a proxy that died is removed at
//! start; the proxy's own is removed when its listener closes.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// The socket file of a listener; removed when dropped.
#[derive(Debug)]
pub struct SocketFile(PathBuf);

impl SocketFile {
    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A socket that cannot be opened; says what to do.
#[derive(Debug, thiserror::Error)]
pub enum UnixSocketError {
    /// The directory is missing or not a directory.
    #[error("--unix-socket {0}: not a directory: create it or name another")]
    NotADirectory(PathBuf),
    /// Another process serves the socket.
    #[error(
        "cannot listen on {0}: another process is serving that socket (another proxy or a PostgreSQL server?): stop it or choose another --unix-socket directory or --port"
    )]
    InUse(PathBuf),
    /// Something that is not a socket has the name.
    #[error("cannot listen on {0}: a file that is not a socket has that name: remove it")]
    NotASocket(PathBuf),
    /// The OS refused.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// libpq's socket name for `port` in `dir`.
pub fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// Binds `DIR/.s.PGSQL.<port>`, first removing a stale socket file nobody answers on.
/// Must be called inside the runtime.
pub fn bind(dir: &Path, port: u16) -> Result<(UnixListener, SocketFile), UnixSocketError> {
    if !dir.is_dir() {
        return Err(UnixSocketError::NotADirectory(dir.to_owned()));
    }
    let path = socket_path(dir, port);
    remove_stale(&path)?;
    let listener = UnixListener::bind(&path).map_err(|source| UnixSocketError::Bind {
        path: path.clone(),
        source,
    })?;
    Ok((listener, SocketFile(path)))
}

/// Removes a socket file whose server is gone: a connection attempt is refused. A live
/// socket, or a file of another kind, is left alone and reported.
fn remove_stale(path: &Path) -> Result<(), UnixSocketError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(UnixSocketError::Bind {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !metadata.file_type().is_socket() {
        return Err(UnixSocketError::NotASocket(path.to_owned()));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(UnixSocketError::InUse(path.to_owned()));
    }
    tracing::info!(socket = %path.display(), "removing a stale socket file");
    std::fs::remove_file(path).map_err(|source| UnixSocketError::Bind {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_replaces_stale_refuses_live_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path(), 5439);
        assert!(path.ends_with(".s.PGSQL.5439"));

        // A stale socket: bound, then its listener dropped without removing the file.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (listener, file) = bind(dir.path(), 5439).unwrap();
        assert_eq!(file.path(), path);

        let err = bind(dir.path(), 5439).unwrap_err();
        assert!(matches!(err, UnixSocketError::InUse(_)), "{err}");

        drop(listener);
        drop(file);
        assert!(!path.exists());

        std::fs::write(&path, "x").unwrap();
        assert!(matches!(
            bind(dir.path(), 5439).unwrap_err(),
            UnixSocketError::NotASocket(_)
        ));
        assert!(matches!(
            bind(&dir.path().join("missing"), 5439).unwrap_err(),
            UnixSocketError::NotADirectory(_)
        ));
    }
}
