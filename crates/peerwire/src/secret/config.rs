//! Which shared secrets a node holds: the one it connects with, and every one it accepts (so a
//! cluster can rotate: add the new secret everywhere, switch each node to it, drop the old).

use std::path::Path;
use std::sync::Arc;

/// Bytes in a secret (a Noise pre-shared key).
pub const SECRET_LEN: usize = 32;

/// Longest secret name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A named secret.
#[derive(Clone)]
struct Named {
    name: String,
    key: [u8; SECRET_LEN],
}

/// The shared secrets of secret mode ([`ConnectionConfig::secret`]): connections are
/// authenticated and encrypted with a Noise handshake keyed by a secret both sides hold.
/// Cheap to clone; clones share the secrets, so [`SecretConfig::reload`] on any of them
/// changes them for every server and client built with one.
///
/// [`ConnectionConfig::secret`]: crate::ConnectionConfig::secret
#[derive(Clone)]
pub struct SecretConfig {
    /// The secret outgoing connections use, then the others accepted.
    secrets: Arc<std::sync::RwLock<Arc<Vec<Named>>>>,
}

impl std::fmt::Debug for SecretConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: the keys never reach a log.
        let secrets = self.all();
        f.debug_struct("SecretConfig")
            .field(
                "names",
                &secrets.iter().map(|n| &n.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A secret configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretConfigError {
    /// A name that is empty, longer than [`MAX_NAME_LEN`], not printable ASCII, or given twice.
    #[error("bad secret name {0:?}: 1 to 64 printable ASCII characters, each name once")]
    BadName(String),
    /// A key file line that is not `NAME HEX` with 64 hex digits.
    #[error("{path}, line {line}: expected `NAME <64 hex digits>`")]
    BadLine {
        /// The file.
        path: String,
        /// The line (from 1).
        line: usize,
    },
    /// A key file with no secret.
    #[error("{0}: no secret in the file")]
    Empty(String),
    /// The key file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

fn check_name(name: &str) -> Result<(), SecretConfigError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SecretConfigError::BadName(name.to_owned()));
    }
    Ok(())
}

impl SecretConfig {
    /// Connects with (and accepts) the secret `key` named `name`.
    ///
    /// # Errors
    ///
    /// A bad name.
    pub fn new(name: &str, key: [u8; SECRET_LEN]) -> Result<Self, SecretConfigError> {
        check_name(name)?;
        Ok(Self::of(vec![Named {
            name: name.to_owned(),
            key,
        }]))
    }

    fn of(secrets: Vec<Named>) -> Self {
        Self {
            secrets: Arc::new(std::sync::RwLock::new(Arc::new(secrets))),
        }
    }

    fn all(&self) -> Arc<Vec<Named>> {
        self.secrets.read().expect("secrets poisoned").clone()
    }

    /// Replaces the secrets of this configuration (and of every clone) with `from`'s: a new
    /// secret to connect with, secrets accepted or no longer accepted — without a restart.
    /// Handshakes from now on use them; established connections are not touched.
    pub fn reload(&self, from: &Self) {
        let new = from.all();
        *self.secrets.write().expect("secrets poisoned") = new;
    }

    /// Also accepts the secret `key` named `name` (connections keep using the first).
    ///
    /// # Errors
    ///
    /// A bad name, or one already held.
    pub fn accepting(self, name: &str, key: [u8; SECRET_LEN]) -> Result<Self, SecretConfigError> {
        check_name(name)?;
        let mut secrets = (*self.all()).clone();
        if secrets.iter().any(|n| n.name == name) {
            return Err(SecretConfigError::BadName(name.to_owned()));
        }
        secrets.push(Named {
            name: name.to_owned(),
            key,
        });
        Ok(Self::of(secrets))
    }

    /// Reads a key file: one `NAME HEX` line per secret (64 hex digits), the first used to
    /// connect, all accepted; blank lines and lines starting with `#` are skipped.
    ///
    /// # Errors
    ///
    /// An unreadable file, a malformed line, a bad or repeated name, or no secret.
    pub fn from_file(path: &Path) -> Result<Self, SecretConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SecretConfigError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// As [`SecretConfig::from_file`], from the file's text (`origin` names it in errors).
    ///
    /// # Errors
    ///
    /// As `from_file`.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SecretConfigError> {
        let mut config: Option<Self> = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || SecretConfigError::BadLine {
                path: origin.to_owned(),
                line: i + 1,
            };
            let (name, hex) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            let key = decode_hex(hex.trim()).ok_or_else(bad)?;
            config = Some(match config {
                None => Self::new(name, key)?,
                Some(c) => c.accepting(name, key)?,
            });
        }
        config.ok_or_else(|| SecretConfigError::Empty(origin.to_owned()))
    }

    /// A new random secret, from the operating system's random number generator.
    ///
    /// # Errors
    ///
    /// The system's generator failed.
    pub fn generate_key() -> std::io::Result<[u8; SECRET_LEN]> {
        let mut key = [0u8; SECRET_LEN];
        getrandom::fill(&mut key).map_err(std::io::Error::other)?;
        Ok(key)
    }

    /// A key file line for `name` and `key` (what [`SecretConfig::parse`] reads).
    pub fn file_line(name: &str, key: &[u8; SECRET_LEN]) -> String {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        format!("{name} {hex}\n")
    }

    /// The name of the secret outgoing connections use.
    pub fn name(&self) -> String {
        self.all()[0].name.clone()
    }

    /// The secret outgoing connections use.
    pub(crate) fn current(&self) -> (String, [u8; SECRET_LEN]) {
        let all = self.all();
        (all[0].name.clone(), all[0].key)
    }

    /// The accepted secret named `name`.
    pub(crate) fn key(&self, name: &str) -> Option<[u8; SECRET_LEN]> {
        self.all().iter().find(|n| n.name == name).map(|n| n.key)
    }
}

fn decode_hex(hex: &str) -> Option<[u8; SECRET_LEN]> {
    if hex.len() != SECRET_LEN * 2 {
        return None;
    }
    let mut key = [0u8; SECRET_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_bad_lines_are_named() {
        let (a, b) = ([1u8; 32], [0xab; 32]);
        let text = format!(
            "# cluster secrets\n{}\n{}",
            SecretConfig::file_line("new", &a),
            SecretConfig::file_line("old", &b)
        );
        let c = SecretConfig::parse(&text, "keys").unwrap();
        assert_eq!(c.current(), ("new".to_string(), a));
        assert_eq!(c.key("old"), Some(b));
        assert_eq!(c.key("other"), None);
        assert!(!format!("{c:?}").contains("ab"), "no key in Debug: {c:?}");
        let short = SecretConfig::parse("k 00ff", "keys").unwrap_err();
        assert!(
            matches!(short, SecretConfigError::BadLine { line: 1, .. }),
            "{short}"
        );
        let twice = format!(
            "{}{}",
            SecretConfig::file_line("k", &a),
            SecretConfig::file_line("k", &b)
        );
        assert!(matches!(
            SecretConfig::parse(&twice, "keys"),
            Err(SecretConfigError::BadName(_))
        ));
        assert!(matches!(
            SecretConfig::parse("# none\n", "keys"),
            Err(SecretConfigError::Empty(_))
        ));
        assert!(SecretConfig::new("", a).is_err());
        assert!(SecretConfig::new("has space", a).is_err());
    }
}
