//! Spark's `RpcEnvFileServer` and `RpcEnv.openChannel`: an environment serves files, jars and
//! directories on its port's pull lane under URIs that name it
//! (`peerwire://host:port/files/NAME`, `…/jars/NAME`, `…/BASE/RELATIVE/PATH`), and any
//! environment reads such a URI as a stream of chunks (`peerwire-pull`, files by `sendfile`).
//!
//! Files and jars are made ready when added (their CRC32Cs computed once) and served to every
//! reader from that; a directory's files are opened when read. A name that escapes its
//! directory (`..`, a symlink out of it) is refused as not allowed, an unknown one as no such
//! name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use peerwire::connection::PeerInfo;
use peerwire_pull::{OpenError, PreparedSource, Resolving, Source, StreamManager};

/// The scheme of the URIs an environment's file server hands out.
pub const URI_SCHEME: &str = "peerwire";

/// Why a file or directory could not be added.
#[derive(Debug, thiserror::Error)]
pub enum FileServerError {
    /// The environment has no address to name in URIs (client mode, or not bound yet).
    #[error(
        "rpc env `{0}` has no address to serve files from (client mode, or its server has not bound)"
    )]
    NoAddress(String),
    /// The name is taken by another file, or a directory base is taken or reserved.
    #[error("{0}")]
    NameTaken(String),
    /// A name or base that cannot be part of a URI path.
    #[error("{0}")]
    BadName(String),
    /// The file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// What was added.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// Why a URI could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OpenChannelError {
    /// Not a `peerwire://host:port/path` URI.
    #[error("not a {URI_SCHEME}:// URI of an rpc env: {0:?}")]
    BadUri(String),
    /// The serving environment refused or failed: `PullError::NoSuchName` for an unknown
    /// name, `PullError::NotAllowed` for one outside what it serves.
    #[error(transparent)]
    Pull(#[from] peerwire_pull::PullError),
}

/// A parsed file-server URI: the serving environment and the stream's name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUri {
    /// The environment's address.
    pub address: SocketAddr,
    /// The path after the address, without its leading `/`.
    pub name: String,
}

impl FileUri {
    /// Parses `peerwire://host:port/name`.
    pub fn parse(uri: &str) -> Result<Self, OpenChannelError> {
        let bad = || OpenChannelError::BadUri(uri.to_owned());
        let rest = uri
            .strip_prefix(URI_SCHEME)
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(bad)?;
        let (address, name) = rest.split_once('/').ok_or_else(bad)?;
        let address = address.parse().map_err(|_| bad())?;
        if name.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            address,
            name: name.to_owned(),
        })
    }
}

impl std::fmt::Display for FileUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{URI_SCHEME}://{}/{}", self.address, self.name)
    }
}

#[derive(Default)]
struct Served {
    /// `files/NAME` and `jars/NAME`, ready to serve.
    files: HashMap<String, (PathBuf, PreparedSource)>,
    /// Directory bases and their canonical paths.
    dirs: HashMap<String, PathBuf>,
}

/// An environment's file server ([`crate::RpcEnv::file_server`]).
#[derive(Clone)]
pub struct FileServer {
    streams: StreamManager,
    served: Arc<Mutex<Served>>,
    env: String,
    address: Arc<dyn Fn() -> Option<SocketAddr> + Send + Sync>,
}

impl std::fmt::Debug for FileServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileServer")
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl FileServer {
    pub(crate) fn new(
        streams: StreamManager,
        env: String,
        address: Arc<dyn Fn() -> Option<SocketAddr> + Send + Sync>,
    ) -> Self {
        let served = Arc::new(Mutex::new(Served::default()));
        let lookup = served.clone();
        streams
            .set_resolver(move |_: &PeerInfo, name: &str| -> Resolving { resolve(&lookup, name) });
        Self {
            streams,
            served,
            env,
            address,
        }
    }

    fn uri(&self, name: String) -> Result<String, FileServerError> {
        let address =
            (self.address)().ok_or_else(|| FileServerError::NoAddress(self.env.clone()))?;
        Ok(FileUri { address, name }.to_string())
    }

    /// Serves the file at `path` under `files/` and its file name; returns its URI. The file
    /// is read once now for its checksums; serving reads it by `sendfile`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a file whose add was cancelled is not served.
    pub async fn add_file(&self, path: &Path) -> Result<String, FileServerError> {
        self.add_in("files", path).await
    }

    /// As [`FileServer::add_file`], under `jars/`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as `add_file`.
    pub async fn add_jar(&self, path: &Path) -> Result<String, FileServerError> {
        self.add_in("jars", path).await
    }

    async fn add_in(&self, kind: &str, path: &Path) -> Result<String, FileServerError> {
        let io = |source| FileServerError::Io {
            path: path.to_owned(),
            source,
        };
        let file_name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            FileServerError::BadName(format!("{} has no UTF-8 file name", path.display()))
        })?;
        check_segment(file_name)?;
        let name = format!("{kind}/{file_name}");
        let canonical = tokio::fs::canonicalize(path).await.map_err(io)?;
        if let Some((other, _)) = self
            .served
            .lock()
            .expect("served poisoned")
            .files
            .get(&name)
            && *other != canonical
        {
            return Err(FileServerError::NameTaken(format!(
                "{name} already serves {}",
                other.display()
            )));
        }
        let file = std::fs::File::open(&canonical).map_err(io)?;
        let ready = self.streams.prepare(Source::file(file)).await.map_err(io)?;
        let uri = self.uri(name.clone())?;
        self.served
            .lock()
            .expect("served poisoned")
            .files
            .insert(name, (canonical, ready));
        Ok(uri)
    }

    /// Serves the files under directory `path` as `BASE/RELATIVE/PATH`; returns the URI of the
    /// directory (`peerwire://host:port/BASE`). `BASE` is one path segment other than `files`
    /// and `jars`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a directory whose add was cancelled is not served.
    pub async fn add_directory(&self, base: &str, path: &Path) -> Result<String, FileServerError> {
        check_segment(base)?;
        if base == "files" || base == "jars" {
            return Err(FileServerError::NameTaken(format!(
                "`{base}` is reserved for add_file and add_jar"
            )));
        }
        let canonical =
            tokio::fs::canonicalize(path)
                .await
                .map_err(|source| FileServerError::Io {
                    path: path.to_owned(),
                    source,
                })?;
        if !canonical.is_dir() {
            return Err(FileServerError::BadName(format!(
                "{} is not a directory",
                path.display()
            )));
        }
        let uri = self.uri(base.to_owned())?;
        let mut served = self.served.lock().expect("served poisoned");
        if let Some(other) = served.dirs.get(base)
            && *other != canonical
        {
            return Err(FileServerError::NameTaken(format!(
                "{base} already serves {}",
                other.display()
            )));
        }
        served.dirs.insert(base.to_owned(), canonical);
        Ok(uri)
    }
}

/// A file name or directory base: one non-empty segment, no separators, not `.` or `..`.
fn check_segment(segment: &str) -> Result<(), FileServerError> {
    if segment.is_empty() || segment == "." || segment == ".." || segment.contains(['/', '\\']) {
        return Err(FileServerError::BadName(format!(
            "{segment:?} is not a single path segment"
        )));
    }
    Ok(())
}

/// The source a reader's name stands for.
fn resolve(served: &Mutex<Served>, name: &str) -> Resolving {
    let found = {
        let served = served.lock().expect("served poisoned");
        if let Some((_, ready)) = served.files.get(name) {
            Ok(Found::Ready(ready.clone()))
        } else {
            let (base, rest) = name.split_once('/').unwrap_or((name, ""));
            match served.dirs.get(base) {
                Some(dir) => relative(rest).map(|rel| Found::InDir(dir.clone(), rel)),
                None => Err(OpenError::NoSuchName(format!(
                    "nothing is served as {name:?}"
                ))),
            }
        }
    };
    Box::pin(async move {
        match found? {
            Found::Ready(ready) => Ok(Source::from(ready)),
            Found::InDir(dir, rel) => {
                let path = dir.join(&rel);
                let canonical = match tokio::fs::canonicalize(&path).await {
                    Ok(c) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(OpenError::NoSuchName(format!("no file {}", rel.display())));
                    }
                    Err(e) => return Err(OpenError::Io(e)),
                };
                if !canonical.starts_with(&dir) {
                    return Err(OpenError::NotAllowed(format!(
                        "{} leads outside the served directory",
                        rel.display()
                    )));
                }
                if !canonical.is_file() {
                    return Err(OpenError::NoSuchName(format!(
                        "{} is not a file",
                        rel.display()
                    )));
                }
                Ok(Source::file(std::fs::File::open(&canonical)?))
            }
        }
    })
}

enum Found {
    Ready(PreparedSource),
    InDir(PathBuf, PathBuf),
}

/// A path inside a served directory: relative, made of plain segments only.
fn relative(rest: &str) -> Result<PathBuf, OpenError> {
    let path = Path::new(rest);
    if rest.is_empty() {
        return Err(OpenError::NoSuchName("a directory, not a file".into()));
    }
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(OpenError::NotAllowed(format!(
            "{rest:?} is not a plain path inside the served directory"
        )));
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_and_print() {
        let uri = FileUri::parse("peerwire://127.0.0.1:7077/files/app.jar").unwrap();
        assert_eq!(uri.address, "127.0.0.1:7077".parse().unwrap());
        assert_eq!(uri.name, "files/app.jar");
        assert_eq!(uri.to_string(), "peerwire://127.0.0.1:7077/files/app.jar");
        for bad in [
            "spark://127.0.0.1:1/files/x",
            "peerwire://127.0.0.1:1",
            "peerwire://127.0.0.1:1/",
            "peerwire://nohost/files/x",
        ] {
            assert!(FileUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_plain_relative_paths_are_served() {
        assert!(relative("a/b.txt").is_ok());
        for escape in ["../secret", "a/../../x", "/etc/passwd", "./x"] {
            assert!(
                matches!(relative(escape), Err(OpenError::NotAllowed(_))),
                "{escape}"
            );
        }
        assert!(matches!(relative(""), Err(OpenError::NoSuchName(_))));
        assert!(check_segment("a.jar").is_ok());
        for bad in ["", ".", "..", "a/b"] {
            assert!(check_segment(bad).is_err(), "{bad}");
        }
    }
}
