//! The data directory and what the first start puts in it:
//!
//! ```text
//! <root>/                 0700
//!   kassa.db              the SQLite database (when no URL is configured)
//!   admin-password        0600, the first admin's generated password
//!   secrets/token.key     0600, the access-token signing key, hex
//!   secrets/card.key      0600, the card key (PIN hashes, CVVs), hex
//!   tls/ca.pem            the local CA's certificate (give it to ATMs and browsers)
//!   tls/ca-key.pem        0600, the local CA's key
//!   tls/cert.pem          the server's certificate followed by the CA's: a chain
//!   tls/key.pem           0600, the server's key
//! ```
//!
//! Files holding secrets are created with mode 0600 from the start, never
//! chmod-ed afterwards (a window in which another user could open them), and
//! nothing here ever overwrites an existing file.
#![allow(dead_code)]

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

/// The shortest token-signing key accepted: HS256 wants at least the hash's
/// 32 bytes.
pub const TOKEN_KEY_MIN_BYTES: usize = 32;
/// The largest key file read, so a wrong path (a disk image) is refused
/// rather than read into memory.
const TOKEN_KEY_FILE_MAX_BYTES: u64 = 4096;

const DAY: Duration = Duration::from_secs(24 * 3600);
/// The local CA lives ten years: replacing it means redistributing it to
/// every ATM and browser, so it should outlive the servers' certificates.
const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 3600);
/// The server's certificate lives two years (browsers would refuse longer
/// for a public CA; a local one can afford to follow the same rule).
const SERVER_VALIDITY: Duration = Duration::from_secs(730 * 24 * 3600);

const MODE_DIR: u32 = 0o700;
const MODE_SECRET: u32 = 0o600;
const MODE_PUBLIC: u32 = 0o644;

/// The data directory; the paths below are where the server looks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    /// Creates the directory (and its parents, mode 0700 on unix) if it is
    /// missing. An existing directory is used as it is.
    pub fn open_or_create(root: &Path) -> anyhow::Result<DataDir> {
        match std::fs::metadata(root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!("the data directory {} exists but is not a directory", root.display()),
            Err(error) if error.kind() == ErrorKind::NotFound => {
                create_private_dir(root)?;
                tracing::info!(path = %root.display(), "created the data directory");
            }
            Err(error) => {
                return Err(error).with_context(|| format!("reading the data directory {}", root.display()));
            }
        }
        Ok(DataDir { root: root.to_path_buf() })
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }

    pub fn ca_cert_path(&self) -> PathBuf {
        self.tls_dir().join("ca.pem")
    }

    pub fn ca_key_path(&self) -> PathBuf {
        self.tls_dir().join("ca-key.pem")
    }

    /// The server's certificate followed by the CA's certificate.
    pub fn cert_path(&self) -> PathBuf {
        self.tls_dir().join("cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.tls_dir().join("key.pem")
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }

    pub fn token_key_path(&self) -> PathBuf {
        self.secrets_dir().join("token.key")
    }

    pub fn admin_password_path(&self) -> PathBuf {
        self.root.join("admin-password")
    }

    /// Generates a local CA and a server certificate signed by it, only if
    /// `tls/cert.pem` is missing; returns whether it did. The certificate
    /// names `localhost`, `127.0.0.1`, `::1` and `extra_names` (host names
    /// or IP addresses). An operator may instead put their own `cert.pem`
    /// and `key.pem` there; those are then used as they are.
    ///
    /// Existing files are never overwritten: if `cert.pem` is missing but
    /// another of the four files is present (an interrupted first start, or
    /// a half-removed directory) this is an error that says what to do.
    pub fn ensure_tls(&self, bank_name: &str, extra_names: &[String]) -> anyhow::Result<bool> {
        let (cert_path, key_path) = (self.cert_path(), self.key_path());
        if cert_path.exists() {
            if !key_path.exists() {
                bail!("{} exists but its key {} does not", cert_path.display(), key_path.display());
            }
            return Ok(false);
        }
        for path in [self.ca_cert_path(), self.ca_key_path(), key_path.clone()] {
            if path.exists() {
                bail!(
                    "{} exists but {} does not: move the {} directory aside to generate a new CA and certificate",
                    path.display(),
                    cert_path.display(),
                    self.tls_dir().display()
                );
            }
        }

        let tls = generate_tls(bank_name, extra_names)?;
        let tls_dir = self.tls_dir();
        if !tls_dir.is_dir() {
            create_private_dir(&tls_dir)?;
        }
        // Keys first and the chain last: cert.pem is what marks the set as
        // complete, so an interruption leaves a state the check above names.
        write_new(&self.ca_key_path(), tls.ca_key_pem.as_bytes(), MODE_SECRET)?;
        write_new(&key_path, tls.key_pem.as_bytes(), MODE_SECRET)?;
        write_new(&self.ca_cert_path(), tls.ca_cert_pem.as_bytes(), MODE_PUBLIC)?;
        let chain = format!("{}{}", tls.cert_pem, tls.ca_cert_pem);
        write_new(&cert_path, chain.as_bytes(), MODE_PUBLIC)?;
        tracing::info!(ca = %self.ca_cert_path().display(), "generated a local CA and a server certificate");
        Ok(true)
    }

    /// Reads the token-signing key. With no `configured` path the key is
    /// `<root>/secrets/token.key`, created (32 random bytes, hex, mode 0600)
    /// if missing; a configured path must exist. The file holds the key in
    /// hex, or else its raw bytes; a trailing newline is ignored. Keys
    /// shorter than 32 bytes are refused.
    pub fn token_key(&self, configured: Option<&Path>) -> anyhow::Result<Vec<u8>> {
        let path = match configured {
            Some(path) => path.to_path_buf(),
            None => {
                let path = self.token_key_path();
                if !path.exists() {
                    self.create_token_key(&path)?;
                }
                path
            }
        };
        read_token_key(&path)
    }

    pub fn card_key_path(&self) -> PathBuf {
        self.secrets_dir().join("card.key")
    }

    /// Reads the card key (PIN hashes and CVVs are derived from it), made
    /// like the token key: `<root>/secrets/card.key`, created if missing.
    /// It is a key of its own, so a token key that leaks or is rotated
    /// does not change every card's CVV and PIN hash. A `configured` path
    /// (shared by the nodes of one database) must exist.
    pub fn card_key(&self, configured: Option<&Path>) -> anyhow::Result<Vec<u8>> {
        let path = match configured {
            Some(path) => path.to_path_buf(),
            None => {
                let path = self.card_key_path();
                if !path.exists() {
                    self.create_token_key(&path)?;
                }
                path
            }
        };
        read_token_key(&path)
    }

    fn create_token_key(&self, path: &Path) -> anyhow::Result<()> {
        let dir = self.secrets_dir();
        if !dir.is_dir() {
            create_private_dir(&dir)?;
        }
        let mut key = [0_u8; TOKEN_KEY_MIN_BYTES];
        getrandom::fill(&mut key).map_err(|error| anyhow::anyhow!("generating the token key: {error}"))?;
        match write_new(path, format!("{}\n", hex_encode(&key)).as_bytes(), MODE_SECRET) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "generated a key");
                Ok(())
            }
            // Another process sharing the directory made it first; use theirs.
            Err(error) if path.exists() && is_already_exists(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Writes the first admin's generated password, mode 0600. Refuses to
    /// replace an existing file.
    pub fn write_admin_password(&self, password: &str) -> anyhow::Result<()> {
        write_new(&self.admin_password_path(), format!("{password}\n").as_bytes(), MODE_SECRET)
    }
}

/// PEM texts of a freshly generated local CA and server certificate.
struct GeneratedTls {
    ca_cert_pem: String,
    ca_key_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn generate_tls(bank_name: &str, extra_names: &[String]) -> anyhow::Result<GeneratedTls> {
    // The date type is the `time` crate's, which this crate does not name;
    // build "now" from the epoch and the system clock.
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("the system clock is before 1970; certificates need a correct clock")?;
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    // Back-date by a day so a client whose clock is a little behind still
    // accepts a certificate made a moment ago.
    let not_before = now - DAY;

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA certificate parameters")?;
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params.distinguished_name.push(DnType::CommonName, format!("{bank_name} local CA"));
    ca_params.distinguished_name.push(DnType::OrganizationName, bank_name);
    // Path length 0: this CA signs server certificates, never other CAs.
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = not_before;
    ca_params.not_after = now + CA_VALIDITY;
    let ca_cert = ca_params.self_signed(&ca_key).context("signing the CA certificate")?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for name in extra_names {
        let name = name.trim();
        if !is_host_name_or_ip(name) {
            bail!(
                "{name:?} cannot be named in a certificate: give a host name (such as bank.example) or an IP address"
            );
        }
        if !names.iter().any(|known| known.eq_ignore_ascii_case(name)) {
            names.push(name.to_owned());
        }
    }
    let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the server key")?;
    let mut params = CertificateParams::new(names.clone())
        .with_context(|| format!("server certificate names {names:?} (each a host name or an IP address)"))?;
    // Clients match the names above, not the common name; it only labels
    // the certificate, with the first extra name if any.
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, names.get(3).map_or("localhost", String::as_str));
    params.distinguished_name.push(DnType::OrganizationName, bank_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = now + SERVER_VALIDITY;
    let cert = params.signed_by(&server_key, &issuer).context("signing the server certificate")?;

    Ok(GeneratedTls {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem,
        cert_pem: cert.pem(),
        key_pem: server_key.serialize_pem(),
    })
}

/// An IP address, or a DNS name: dot-separated labels of letters, digits
/// and inner hyphens, optionally behind a `*.` wildcard.
fn is_host_name_or_ip(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn read_token_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("opening the token key {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("reading the token key {}", path.display()))?;
    if meta.len() > TOKEN_KEY_FILE_MAX_BYTES {
        bail!(
            "the token key {} is {} bytes; a key file is at most {TOKEN_KEY_FILE_MAX_BYTES}",
            path.display(),
            meta.len()
        );
    }
    warn_if_shared(path, &meta);
    let mut bytes = Vec::new();
    file.take(TOKEN_KEY_FILE_MAX_BYTES)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading the token key {}", path.display()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    let key = hex_decode(&bytes).unwrap_or(bytes);
    if key.len() < TOKEN_KEY_MIN_BYTES {
        bail!(
            "the token key {} is {} bytes; at least {TOKEN_KEY_MIN_BYTES} are needed (64 hex digits)",
            path.display(),
            key.len()
        );
    }
    Ok(key)
}

/// Warns when a secret file can be read by other users: the server still
/// starts (the operator may have reasons), but should not stay silent.
#[cfg(unix)]
fn warn_if_shared(path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt as _;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "a secret file is readable by other users; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path, _meta: &std::fs::Metadata) {}

/// Creates a directory and any missing parents, mode 0700 on unix.
fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(MODE_DIR);
    }
    builder.create(path).with_context(|| format!("creating the directory {}", path.display()))
}

/// Writes a file that must not exist yet, with `mode` from the moment it is
/// created (on unix), and flushes it to disk.
/// Writes a new secret file (mode 0600); an existing file is never
/// overwritten.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_new(path, contents, MODE_SECRET)
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn is_already_exists(error: &anyhow::Error) -> bool {
    error.downcast_ref::<std::io::Error>().is_some_and(|error| error.kind() == ErrorKind::AlreadyExists)
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Decodes hex digits (either case); `None` if `text` is not entirely hex.
fn hex_decode(text: &[u8]) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn data_dir() -> (tempfile::TempDir, DataDir) {
        let temp = tempfile::tempdir().unwrap();
        let dir = DataDir::open_or_create(&temp.path().join("a").join("kassa-data")).unwrap();
        (temp, dir)
    }

    #[test]
    fn creates_the_directory_once() {
        let (temp, dir) = data_dir();
        assert!(dir.root.is_dir());
        #[cfg(unix)]
        assert_eq!(mode(&dir.root), 0o700);
        assert_eq!(DataDir::open_or_create(&dir.root).unwrap(), dir);
        assert_eq!(dir.cert_path(), dir.root.join("tls").join("cert.pem"));

        let file = temp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(DataDir::open_or_create(&file).is_err());
    }

    fn pem_blocks(text: &str, label: &str) -> usize {
        text.matches(&format!("-----BEGIN {label}-----")).count()
    }

    #[test]
    fn ensure_tls_generates_once_a_chain_and_private_keys() {
        let (_temp, dir) = data_dir();
        assert!(dir.ensure_tls("Test Bank", &["bank.example".to_owned(), "10.1.2.3".to_owned()]).unwrap());
        let chain = std::fs::read_to_string(dir.cert_path()).unwrap();
        let ca = std::fs::read_to_string(dir.ca_cert_path()).unwrap();
        assert_eq!(pem_blocks(&chain, "CERTIFICATE"), 2);
        assert_eq!(pem_blocks(&ca, "CERTIFICATE"), 1);
        assert!(chain.ends_with(&ca), "the chain ends with the CA certificate");
        assert_eq!(pem_blocks(&std::fs::read_to_string(dir.key_path()).unwrap(), "PRIVATE KEY"), 1);
        // The key parses back and is the P-256 kind the TLS server expects.
        let key = KeyPair::from_pem(&std::fs::read_to_string(dir.key_path()).unwrap()).unwrap();
        assert_eq!(key.algorithm(), &PKCS_ECDSA_P256_SHA256);
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir.key_path()), 0o600);
            assert_eq!(mode(&dir.ca_key_path()), 0o600);
            assert_eq!(mode(&dir.tls_dir()), 0o700);
        }

        assert!(!dir.ensure_tls("Test Bank", &[]).unwrap());
        assert_eq!(std::fs::read_to_string(dir.cert_path()).unwrap(), chain, "never regenerated");
    }

    #[test]
    fn ensure_tls_refuses_a_half_made_directory() {
        let (_temp, dir) = data_dir();
        assert!(dir.ensure_tls("Test Bank", &[]).unwrap());
        std::fs::remove_file(dir.cert_path()).unwrap();
        let ca_before = std::fs::read_to_string(dir.ca_cert_path()).unwrap();
        let message = format!("{:#}", dir.ensure_tls("Test Bank", &[]).unwrap_err());
        assert!(message.contains("move the"), "{message}");
        assert_eq!(std::fs::read_to_string(dir.ca_cert_path()).unwrap(), ca_before);
    }

    #[test]
    fn ensure_tls_refuses_a_bad_name() {
        let (_temp, dir) = data_dir();
        for bad in ["bad name", "", "-x.example", "a..b", "bank.example/"] {
            let message = format!("{:#}", dir.ensure_tls("Test Bank", &[bad.to_owned()]).unwrap_err());
            assert!(message.contains("host name"), "{bad:?}: {message}");
        }
        assert!(!dir.tls_dir().exists(), "nothing is written when a name is refused");
        assert!(dir.ensure_tls("Test Bank", &["*.bank.example".to_owned(), "fe80::1".to_owned()]).unwrap());
    }

    #[test]
    fn token_key_is_created_once_and_stable() {
        let (_temp, dir) = data_dir();
        let key = dir.token_key(None).unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(dir.token_key(None).unwrap(), key);
        let text = std::fs::read_to_string(dir.token_key_path()).unwrap();
        assert_eq!(text, format!("{}\n", hex_encode(&key)));
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir.token_key_path()), 0o600);
            assert_eq!(mode(&dir.secrets_dir()), 0o700);
        }
        let other = data_dir().1.token_key(None).unwrap();
        assert_ne!(other, key, "each data directory gets its own random key");
    }

    #[test]
    fn card_key_is_its_own_created_once() {
        let (_temp, dir) = data_dir();
        let token = dir.token_key(None).unwrap();
        let card = dir.card_key(None).unwrap();
        assert_eq!(card.len(), 32);
        assert_ne!(card, token, "the card key is not the token key");
        assert_eq!(dir.card_key(None).unwrap(), card);
        #[cfg(unix)]
        assert_eq!(mode(&dir.card_key_path()), 0o600);
    }

    #[test]
    fn configured_token_key_must_exist_and_be_long_enough() {
        let (temp, dir) = data_dir();
        let missing = temp.path().join("missing.key");
        assert!(dir.token_key(Some(&missing)).is_err());
        assert!(!missing.exists(), "a configured key is never created");
        assert!(!dir.token_key_path().exists());

        let short = temp.path().join("short.key");
        std::fs::write(&short, format!("{}\n", hex_encode(&[1; 31]))).unwrap();
        let message = format!("{:#}", dir.token_key(Some(&short)).unwrap_err());
        assert!(message.contains("31 bytes"), "{message}");

        let hex = temp.path().join("hex.key");
        std::fs::write(&hex, hex_encode(&[0xab; 32]).to_uppercase()).unwrap();
        assert_eq!(dir.token_key(Some(&hex)).unwrap(), vec![0xab; 32]);

        let raw = temp.path().join("raw.key");
        std::fs::write(&raw, "a raw passphrase of more than thirty-two bytes\n").unwrap();
        assert_eq!(dir.token_key(Some(&raw)).unwrap(), b"a raw passphrase of more than thirty-two bytes".to_vec());
    }

    #[test]
    fn admin_password_is_private_and_never_replaced() {
        let (_temp, dir) = data_dir();
        dir.write_admin_password("correct horse").unwrap();
        assert_eq!(std::fs::read_to_string(dir.admin_password_path()).unwrap(), "correct horse\n");
        #[cfg(unix)]
        assert_eq!(mode(&dir.admin_password_path()), 0o600);
        assert!(dir.write_admin_password("another").is_err());
        assert_eq!(std::fs::read_to_string(dir.admin_password_path()).unwrap(), "correct horse\n");
    }

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(hex_decode(hex_encode(&bytes).as_bytes()), Some(bytes));
        assert_eq!(hex_decode(b"abc"), None);
        assert_eq!(hex_decode(b"zz"), None);
    }
}
