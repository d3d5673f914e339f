//! Cryptographic building blocks for sign-in: random tokens, digests, password hashing, access tokens (JWT, HS256)
//! and time-based one-time passwords (TOTP, RFC 6238).
//!
//! Everything here is synchronous and free of IO apart from the operating system's random source. Password hashing
//! is deliberately slow; callers run it on a blocking thread.
//!
//! One HMAC construction (`hmac_with`) serves both SHA-256 and SHA-1. The `hmac` crate would do for SHA-256, but its
//! constructor is fallible in its type (it cannot fail for HMAC, yet offers no infallible way to say so), and TOTP
//! needs HMAC over a SHA-1 written here anyway. The construction is checked against RFC 4231 and RFC 2202 vectors and
//! against the `hmac` crate in the tests below.

use argon2::password_hash::{PasswordHash, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest as _;

/// Failures of the primitives in this module.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the system random source failed")]
    Random,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// `n` random bytes from the OS.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, CryptoError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|_| CryptoError::Random)?;
    Ok(bytes)
}

/// A random opaque token: `bytes` random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> Result<String, CryptoError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes(bytes)?))
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// A transfer id derived from `domain` and `parts`: the first 16 bytes of
/// SHA-256 over `domain`, then each part after a NUL, marked as a version-8
/// (custom) UUID of the RFC 4122 variant. The same inputs give the same id
/// on every node and run, so a repeat is the ledger's replay. `domain`
/// names the use and its version (`kassa idempotency v1`); parts must not
/// contain NUL. Never change the layout: ids already in ledgers depend on it.
pub fn derived_transfer_id(domain: &str, parts: &[&str]) -> kassa_core::TransferId {
    let mut input = String::from(domain);
    for part in parts {
        input.push('\0');
        input.push_str(part);
    }
    let digest = sha256(input.as_bytes());
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    kassa_core::TransferId::from_bytes(bytes)
}

/// HMAC-SHA256 (RFC 2104) of `data` under `key` (any length).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    hmac_with(sha256, key, data)
}

/// Constant-time equality.
///
/// The lengths are not secret (a MAC or code has a fixed, public length), so unequal lengths return at once; equal
/// lengths are compared without an early exit, so the time taken does not reveal where the first difference lies.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // `black_box` stops the optimiser from turning the fold back into an early-exit comparison.
    std::hint::black_box(difference) == 0
}

/// The block size, in bytes, of both SHA-1 and SHA-256, which is what HMAC pads its key to.
const HASH_BLOCK_BYTES: usize = 64;

/// HMAC (RFC 2104) over a hash with a 64-byte block: `H((K0 ^ opad) || H((K0 ^ ipad) || data))`.
fn hmac_with<const N: usize>(hash: fn(&[u8]) -> [u8; N], key: &[u8], data: &[u8]) -> [u8; N] {
    // A key longer than a block is replaced by its digest; shorter keys are padded with zeros.
    let mut block_key = [0u8; HASH_BLOCK_BYTES];
    if key.len() > HASH_BLOCK_BYTES {
        for (slot, byte) in block_key.iter_mut().zip(hash(key)) {
            *slot = byte;
        }
    } else {
        for (slot, byte) in block_key.iter_mut().zip(key) {
            *slot = *byte;
        }
    }
    let mut inner = Vec::with_capacity(HASH_BLOCK_BYTES + data.len());
    inner.extend(block_key.iter().map(|byte| byte ^ 0x36));
    inner.extend_from_slice(data);
    let inner_digest = hash(&inner);
    let mut outer = Vec::with_capacity(HASH_BLOCK_BYTES + N);
    outer.extend(block_key.iter().map(|byte| byte ^ 0x5c));
    outer.extend_from_slice(&inner_digest);
    hash(&outer)
}

/// SHA-1 (FIPS 180-4), only for HMAC-SHA1 in TOTP, which authenticator apps require. SHA-1's collision weakness does
/// not touch HMAC-SHA1 as used there; nothing else in Kassa may use this module.
mod sha1 {
    pub(super) fn digest(data: &[u8]) -> [u8; 20] {
        let mut state: [u32; 5] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476, 0xc3d2_e1f0];
        // The length field is the message length in bits, modulo 2^64.
        let bit_len = u64::try_from(data.len()).unwrap_or(u64::MAX).wrapping_mul(8);
        let mut message = Vec::with_capacity(data.len() + 72);
        message.extend_from_slice(data);
        message.push(0x80);
        while message.len() % 64 != 56 {
            message.push(0);
        }
        message.extend_from_slice(&bit_len.to_be_bytes());

        for chunk in message.chunks_exact(64) {
            let mut w = [0u32; 80];
            for (slot, word) in w.iter_mut().zip(chunk.chunks_exact(4)) {
                *slot = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            }
            for i in 16..80 {
                w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
            }
            let [mut a, mut b, mut c, mut d, mut e] = state;
            for (i, word) in w.iter().enumerate() {
                let (f, k) = match i {
                    0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
                    20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
                    40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
                    _ => (b ^ c ^ d, 0xca62_c1d6),
                };
                let temp = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*word);
                e = d;
                d = c;
                c = b.rotate_left(30);
                b = a;
                a = temp;
            }
            for (slot, value) in state.iter_mut().zip([a, b, c, d, e]) {
                *slot = slot.wrapping_add(value);
            }
        }

        let mut out = [0u8; 20];
        for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    hmac_with(sha1::digest, key, data)
}

// ---------------------------------------------------------------------------------------------------------------------
// Passwords
// ---------------------------------------------------------------------------------------------------------------------

/// argon2id passes over memory.
const PASSWORD_T_COST: u32 = 2;
/// argon2id lanes.
const PASSWORD_P_COST: u32 = 1;
/// Salt length; 16 bytes is what the argon2 and PHC specifications recommend.
const PASSWORD_SALT_BYTES: usize = 16;

/// Limits on the parameters a stored PHC string may ask `verify_password` to use. Verification honours whatever the
/// hash records (so hashes made under older settings keep working), but a corrupted or planted row must not be able
/// to make one sign-in allocate gigabytes or spin for minutes.
const VERIFY_MAX_MEMORY_KIB: u32 = 1024 * 1024;
const VERIFY_MAX_T_COST: u32 = 16;
const VERIFY_MAX_P_COST: u32 = 16;

fn argon2id(memory_kib: u32) -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(memory_kib, PASSWORD_T_COST, PASSWORD_P_COST, None)
        .map_err(|error| CryptoError::Hash(error.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// argon2id, PHC string, with the given memory (KiB), t = 2, p = 1. CPU-heavy: callers run it on a blocking thread.
pub fn hash_password(password: &str, memory_kib: u32) -> Result<String, CryptoError> {
    let hasher = argon2id(memory_kib)?;
    let salt_bytes = random_bytes(PASSWORD_SALT_BYTES)?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|error| CryptoError::Hash(error.to_string()))?;
    let hash =
        hasher.hash_password(password.as_bytes(), &salt).map_err(|error| CryptoError::Hash(error.to_string()))?;
    Ok(hash.to_string())
}

/// Verifies against a PHC string (whatever parameters it records). Returns false on any malformed hash, and on a hash
/// whose parameters exceed the limits above.
pub fn verify_password(phc: &str, password: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > VERIFY_MAX_MEMORY_KIB
        || params.t_cost() > VERIFY_MAX_T_COST
        || params.p_cost() > VERIFY_MAX_P_COST
    {
        return false;
    }
    // The algorithm, version and parameters come from the hash itself; the output comparison is constant-time.
    Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()
}

/// Burns about the same time as a verify, for unknown logins (so timing does not reveal which logins exist).
pub fn dummy_verify(password: &str, memory_kib: u32) {
    // The same work as verifying a hash made by `hash_password(_, memory_kib)`: one argon2id run with the same
    // parameters and output length. The salt is fixed because the result is thrown away.
    const DUMMY_SALT: &[u8; PASSWORD_SALT_BYTES] = b"kassa-dummy-salt";
    let mut output = [0u8; 32];
    if let Ok(hasher) = argon2id(memory_kib) {
        let _ignored = hasher.hash_password_into(password.as_bytes(), DUMMY_SALT, &mut output);
    }
    std::hint::black_box(output);
}

// ---------------------------------------------------------------------------------------------------------------------
// Access tokens (JWT, HS256)
// ---------------------------------------------------------------------------------------------------------------------

/// Access-token claims (JWT, HS256).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// `"customer:12"` or `"staff:3"`.
    pub sub: String,
    /// Session id.
    pub sid: String,
    pub role: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds (exclusive).
    pub exp: i64,
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("bad token signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token for another audience or issuer")]
    Audience,
}

/// The shortest signing key accepted: HS256 keys shorter than the hash output weaken it (RFC 7518 §3.2).
pub const TOKEN_KEY_MIN_BYTES: usize = 32;
/// The longest token `verify` will look at. Ours are a few hundred bytes; the limit bounds the work an attacker can
/// ask of us.
const TOKEN_MAX_BYTES: usize = 4096;
/// How far in the future `iat` may lie, to tolerate clock skew between nodes.
const TOKEN_IAT_LEEWAY_S: i64 = 60;
/// base64url of exactly `{"alg":"HS256","typ":"JWT"}` (a test checks it).
const TOKEN_HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// The signing key and the issuer and audience that tokens must name.
#[derive(Clone)]
pub struct TokenKeys {
    key: Vec<u8>,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("key", &"[redacted]")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl TokenKeys {
    /// `key` must be at least [`TOKEN_KEY_MIN_BYTES`] long (configuration checks this); with a shorter key `sign`
    /// fails and `verify` refuses every token, rather than issuing tokens that are easy to forge.
    pub fn new(key: Vec<u8>, issuer: &str, audience: &str) -> TokenKeys {
        TokenKeys { key, issuer: issuer.to_owned(), audience: audience.to_owned() }
    }

    fn key_is_usable(&self) -> bool {
        self.key.len() >= TOKEN_KEY_MIN_BYTES
    }

    /// A compact JWT with header exactly `{"alg":"HS256","typ":"JWT"}`.
    ///
    /// `CryptoError` has no variant for these; both failures are reported as `Hash`, the error for a failed
    /// derivation.
    pub fn sign(&self, claims: &Claims) -> Result<String, CryptoError> {
        if !self.key_is_usable() {
            return Err(CryptoError::Hash(format!("token signing key is shorter than {TOKEN_KEY_MIN_BYTES} bytes")));
        }
        let payload = serde_json::to_vec(claims).map_err(|error| CryptoError::Hash(error.to_string()))?;
        let mut token = String::with_capacity(TOKEN_HEADER_B64.len() + 2 * payload.len() + 48);
        token.push_str(TOKEN_HEADER_B64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = hmac_sha256(&self.key, token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }

    /// Verifies a compact JWT at `now_s` (unix seconds): rejects tokens longer than 4096 bytes, not three base64url
    /// parts, header alg other than "HS256" (incl. "none", "HS512", "RS256"; any "crit"), bad signature (constant-time
    /// compare), iss/aud mismatch, exp <= now_s, iat more than 60 s in the future. Never panics on any input.
    pub fn verify(&self, token: &str, now_s: i64) -> Result<Claims, TokenError> {
        if token.len() > TOKEN_MAX_BYTES {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };

        // The header decides whether we look any further; nothing from the payload is parsed before the signature
        // has been checked.
        let header_json = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| TokenError::Malformed)?;
        // The header must be a JSON object. Fields other than these three (`kid` and so on) are ignored: only our own
        // key can make a signature verify, so they cannot steer anything. We understand no extensions, so any `crit`
        // at all means refusal (RFC 7515 §4.1.11).
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
        if header.contains_key("crit") || header.get("alg").and_then(serde_json::Value::as_str) != Some("HS256") {
            return Err(TokenError::Algorithm);
        }
        if header.get("typ").is_some_and(|typ| typ.as_str() != Some("JWT")) {
            return Err(TokenError::Malformed);
        }

        if !self.key_is_usable() {
            return Err(TokenError::Signature);
        }
        let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| TokenError::Signature)?;
        // The signed input is the first two parts exactly as received, dot included.
        let signed_len = header_b64.len() + 1 + payload_b64.len();
        let signed = token.get(..signed_len).ok_or(TokenError::Malformed)?;
        let expected = hmac_sha256(&self.key, signed.as_bytes());
        if !ct_eq(&signature, &expected) {
            return Err(TokenError::Signature);
        }

        let payload_json = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload_json).map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer || claims.aud != self.audience {
            return Err(TokenError::Audience);
        }
        if claims.exp <= now_s {
            return Err(TokenError::Expired);
        }
        if claims.iat > now_s.saturating_add(TOKEN_IAT_LEEWAY_S) {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// TOTP
// ---------------------------------------------------------------------------------------------------------------------

/// Time-based one-time passwords (RFC 6238) with the parameters every authenticator app assumes: HMAC-SHA1, six
/// digits, 30-second steps from the unix epoch.
pub mod totp {
    use super::{CryptoError, ct_eq, hmac_sha1, random_bytes};

    /// Secret length: 160 bits, the HMAC-SHA1 output size that RFC 4226 recommends.
    const SECRET_BYTES: usize = 20;
    const STEP_S: i64 = 30;
    const DIGITS: usize = 6;
    const MODULUS: u32 = 1_000_000;
    const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    /// 20 random bytes.
    pub fn new_secret() -> Result<Vec<u8>, CryptoError> {
        random_bytes(SECRET_BYTES)
    }

    /// Reads RFC 4648 base32 (upper case, padding and anything else
    /// skipped), the inverse of [`base32`].
    pub fn base32_decode(text: &str) -> Vec<u8> {
        let mut buffer: u32 = 0;
        let mut pending_bits: u32 = 0;
        let mut out = Vec::with_capacity(text.len() * 5 / 8);
        for c in text.bytes() {
            let value = match c {
                b'A'..=b'Z' => c - b'A',
                b'2'..=b'7' => c - b'2' + 26,
                _ => continue,
            };
            // At most 12 bits are ever pending (7 left over plus 5 new).
            buffer = ((buffer << 5) | u32::from(value)) & 0xfff;
            pending_bits += 5;
            if pending_bits >= 8 {
                pending_bits -= 8;
                out.push((buffer >> pending_bits).to_le_bytes()[0]);
            }
        }
        out
    }

    /// RFC 4648 base32 without padding (what authenticator apps take).
    pub fn base32(secret: &[u8]) -> String {
        let mut out = String::with_capacity(secret.len().div_ceil(5) * 8);
        // At most 12 bits are ever pending (4 left over plus 8 new), so the buffer never overflows.
        let mut buffer: usize = 0;
        let mut pending_bits: u32 = 0;
        for byte in secret {
            buffer = ((buffer << 8) | usize::from(*byte)) & 0xfff;
            pending_bits += 8;
            while pending_bits >= 5 {
                pending_bits -= 5;
                out.push(char::from(BASE32_ALPHABET[(buffer >> pending_bits) & 0x1f]));
            }
        }
        if pending_bits > 0 {
            out.push(char::from(BASE32_ALPHABET[(buffer << (5 - pending_bits)) & 0x1f]));
        }
        out
    }

    fn step_of(unix_s: i64) -> i64 {
        unix_s.div_euclid(STEP_S)
    }

    /// HOTP (RFC 4226) for one step. The counter is the step's 64-bit two's-complement big-endian form, so negative
    /// times (which no real clock produces) still give a well-defined code rather than an error.
    fn code_for_step(secret: &[u8], step: i64) -> String {
        let mac = hmac_sha1(secret, &step.to_be_bytes());
        let offset = usize::from(mac[19] & 0x0f);
        // offset <= 15, so offset + 3 <= 18 stays inside the 20-byte MAC.
        let binary = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]);
        format!("{:0width$}", binary % MODULUS, width = DIGITS)
    }

    /// The 6-digit code for the 30-second step containing `unix_s`.
    pub fn code_at(secret: &[u8], unix_s: i64) -> String {
        code_for_step(secret, step_of(unix_s))
    }

    /// Accepts a code for the current step or one step either side; returns the matched step number so callers can
    /// refuse a code reused within its step. Rejects anything that is not exactly 6 ASCII digits.
    pub fn verify(secret: &[u8], code: &str, unix_s: i64) -> Option<i64> {
        if code.len() != DIGITS || !code.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let current = step_of(unix_s);
        // The current step first, so that in the one-in-a-million case of two steps sharing a code the caller
        // records the latest step it could be.
        [Some(current), current.checked_sub(1), current.checked_add(1)]
            .into_iter()
            .flatten()
            .find(|step| ct_eq(code_for_step(secret, *step).as_bytes(), code.as_bytes()))
    }

    /// `otpauth://totp/{issuer}:{account}?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`, with issuer and
    /// account percent-encoded.
    pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
        let issuer = percent_encode(issuer);
        format!(
            "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_S}",
            account = percent_encode(account),
            secret = base32(secret),
        )
    }

    /// Percent-encodes every byte outside RFC 3986's unreserved set, so `:`, `?`, `&`, `/`, spaces and non-ASCII
    /// text cannot change the URI's structure.
    fn percent_encode(text: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = String::with_capacity(text.len());
        for byte in text.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(byte));
            } else {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    // --- primitives ---------------------------------------------------------------------------------------------

    #[test]
    fn random_bytes_have_the_requested_length_and_differ() {
        let a = random_bytes(32).unwrap();
        let b = random_bytes(32).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(random_bytes(0).unwrap().is_empty());
    }

    #[test]
    fn random_token_is_unpadded_base64url() {
        let token = random_token(32).unwrap();
        assert_eq!(token.len(), 43);
        assert!(token.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'));
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        assert_ne!(token, random_token(32).unwrap());
    }

    #[test]
    fn sha256_matches_fips_vector() {
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test case 1.
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 2: a key shorter than the output.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than a block is hashed first.
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn hmac_sha256_agrees_with_the_hmac_crate_at_every_key_length_around_the_block_size() {
        use hmac::Mac as _;
        for key_len in [0, 1, 31, 32, 63, 64, 65, 200] {
            let key: Vec<u8> = (0..key_len).map(|i| u8::try_from(i % 251).unwrap()).collect();
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
            mac.update(b"kassa");
            let expected: [u8; 32] = mac.finalize().into_bytes().into();
            assert_eq!(hmac_sha256(&key, b"kassa"), expected, "key length {key_len}");
        }
    }

    #[test]
    fn ct_eq_compares_contents_and_lengths() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
    }

    #[test]
    fn sha1_matches_fips_180_vectors() {
        assert_eq!(hex(&sha1::digest(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(&sha1::digest(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        // Two blocks after padding.
        assert_eq!(
            hex(&sha1::digest(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        // Exactly one block of input, so padding needs a block of its own.
        assert_eq!(hex(&sha1::digest(&[b'a'; 64])), "0098ba824b5c16427bd7a1122a5a442a25ec644d");
    }

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        // Test case 1.
        assert_eq!(hex(&hmac_sha1(&[0x0b; 20], b"Hi There")), "b617318655057264e28bc0b6fb378c8ef146be00");
        // Test case 2.
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        // Test case 6: an 80-byte key, longer than a block.
        assert_eq!(
            hex(&hmac_sha1(&[0xaa; 80], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }

    // --- passwords ----------------------------------------------------------------------------------------------

    #[test]
    fn password_round_trip_with_small_memory() {
        let phc = hash_password("correct horse battery staple", 1024).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=2,p=1$"), "{phc}");
        assert!(verify_password(&phc, "correct horse battery staple"));
        assert!(!verify_password(&phc, "correct horse battery stapler"));
        assert!(!verify_password(&phc, ""));
    }

    #[test]
    fn password_hash_records_production_parameters() {
        let phc = hash_password("hunter2", 19456).unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(phc.contains("m=19456,t=2,p=1"), "{phc}");
        assert!(verify_password(&phc, "hunter2"));
        assert!(!verify_password(&phc, "hunter3"));
    }

    #[test]
    fn the_same_password_gets_a_fresh_salt_each_time() {
        assert_ne!(hash_password("pw", 1024).unwrap(), hash_password("pw", 1024).unwrap());
    }

    #[test]
    fn impossible_memory_setting_is_an_error_not_a_panic() {
        assert!(matches!(hash_password("pw", 0), Err(CryptoError::Hash(_))));
        dummy_verify("pw", 0);
    }

    #[test]
    fn malformed_phc_strings_never_verify() {
        let good = hash_password("pw", 1024).unwrap();
        let truncated = &good[..good.len() - 5];
        let too_costly = good.replace("m=1024", "m=4000000");
        let wrong_hash = {
            let (head, _) = good.rsplit_once('$').unwrap();
            format!("{head}$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        };
        for phc in [
            "",
            "pw",
            "$argon2id$",
            "$argon2id$v=19$m=1024,t=2,p=1$",
            "$bcrypt$xyz",
            truncated,
            &too_costly,
            &wrong_hash,
        ] {
            assert!(!verify_password(phc, "pw"), "{phc:?} verified");
        }
    }

    #[test]
    fn dummy_verify_runs_without_a_hash() {
        dummy_verify("whatever", 1024);
    }

    // --- tokens -------------------------------------------------------------------------------------------------

    const NOW: i64 = 1_700_000_000;

    fn keys() -> TokenKeys {
        TokenKeys::new(vec![7; 32], "kassa", "kassa-api")
    }

    fn claims() -> Claims {
        Claims {
            iss: "kassa".into(),
            aud: "kassa-api".into(),
            sub: "customer:12".into(),
            sid: "0190d7a0-0000-7000-8000-000000000001".into(),
            role: "customer".into(),
            iat: NOW,
            exp: NOW + 900,
        }
    }

    /// Builds a token from raw parts, signed with `key` (HS256 over the first two parts), whatever the header says.
    fn forge(header: &str, payload: &[u8], key: &[u8]) -> String {
        let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(key, signed.as_bytes()));
        format!("{signed}.{signature}")
    }

    fn claims_json(claims: &Claims) -> Vec<u8> {
        serde_json::to_vec(claims).unwrap()
    }

    #[test]
    fn header_constant_is_the_exact_header() {
        assert_eq!(URL_SAFE_NO_PAD.decode(TOKEN_HEADER_B64).unwrap(), br#"{"alg":"HS256","typ":"JWT"}"#);
    }

    #[test]
    fn token_round_trip() {
        let keys = keys();
        let token = keys.sign(&claims()).unwrap();
        assert_eq!(token.split('.').count(), 3);
        assert!(token.starts_with(TOKEN_HEADER_B64));
        assert_eq!(keys.verify(&token, NOW), Ok(claims()));
        assert_eq!(keys.verify(&token, NOW + 899), Ok(claims()));
        // A token we forge with the right key and header is equivalent, which shows `forge` signs the same way.
        assert_eq!(
            keys.verify(&forge(r#"{"alg":"HS256","typ":"JWT"}"#, &claims_json(&claims()), &[7; 32]), NOW),
            Ok(claims())
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let payload = URL_SAFE_NO_PAD.encode(claims_json(&claims()));
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        assert_eq!(keys().verify(&format!("{header}.{payload}."), NOW), Err(TokenError::Algorithm));
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(keys().verify(&format!("{header}.{payload}."), NOW), Err(TokenError::Algorithm));
    }

    #[test]
    fn other_algorithms_are_refused_even_when_signed_with_our_key() {
        let payload = claims_json(&claims());
        for header in [
            r#"{"alg":"HS512","typ":"JWT"}"#,
            r#"{"alg":"RS256","typ":"JWT"}"#,
            r#"{"alg":"hs256","typ":"JWT"}"#,
            r#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#,
            r#"{"alg":"HS256","crit":null}"#,
            r#"{"typ":"JWT"}"#,
            r#"{"alg":5}"#,
            r#"{"alg":null}"#,
        ] {
            assert_eq!(keys().verify(&forge(header, &payload, &[7; 32]), NOW), Err(TokenError::Algorithm), "{header}");
        }
    }

    #[test]
    fn headers_that_are_not_ours_are_malformed() {
        let payload = claims_json(&claims());
        for header in
            [r#"["HS256"]"#, r#"{"alg":"HS256","typ":"at+jwt"}"#, r#"{"alg":"HS256","typ":null}"#, r#""HS256""#, "{"]
        {
            assert_eq!(keys().verify(&forge(header, &payload, &[7; 32]), NOW), Err(TokenError::Malformed), "{header}");
        }
    }

    #[test]
    fn token_signed_with_another_key_is_refused() {
        let other = TokenKeys::new(vec![8; 32], "kassa", "kassa-api");
        let token = other.sign(&claims()).unwrap();
        assert_eq!(keys().verify(&token, NOW), Err(TokenError::Signature));
    }

    #[test]
    fn tampered_payload_with_the_old_signature_is_refused() {
        let token = keys().sign(&claims()).unwrap();
        let signature = token.rsplit('.').next().unwrap();
        let mut elevated = claims();
        elevated.role = "admin".into();
        elevated.sub = "staff:1".into();
        let tampered = format!("{TOKEN_HEADER_B64}.{}.{signature}", URL_SAFE_NO_PAD.encode(claims_json(&elevated)));
        assert_eq!(keys().verify(&tampered, NOW), Err(TokenError::Signature));
    }

    #[test]
    fn broken_signatures_are_refused() {
        let token = keys().sign(&claims()).unwrap();
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let truncated = format!("{signed}.{}", &signature[..signature.len() - 2]);
        let padded = format!("{token}=");
        let not_base64 = format!("{signed}.!!!!");
        let empty = format!("{signed}.");
        for bad in [truncated, padded, not_base64, empty] {
            assert_eq!(keys().verify(&bad, NOW), Err(TokenError::Signature), "{bad}");
        }
    }

    #[test]
    fn expired_token_is_refused() {
        let token = keys().sign(&claims()).unwrap();
        assert_eq!(keys().verify(&token, NOW + 900), Err(TokenError::Expired));
        assert_eq!(keys().verify(&token, i64::MAX), Err(TokenError::Expired));
    }

    #[test]
    fn token_issued_in_the_future_is_refused_beyond_the_leeway() {
        let token = keys().sign(&claims()).unwrap();
        assert_eq!(keys().verify(&token, NOW - 60), Ok(claims()));
        assert_eq!(keys().verify(&token, NOW - 61), Err(TokenError::NotYetValid));
        assert_eq!(keys().verify(&token, i64::MIN), Err(TokenError::NotYetValid));
    }

    #[test]
    fn wrong_audience_or_issuer_is_refused() {
        let token = keys().sign(&claims()).unwrap();
        let other_audience = TokenKeys::new(vec![7; 32], "kassa", "kassa-admin");
        let other_issuer = TokenKeys::new(vec![7; 32], "elsewhere", "kassa-api");
        assert_eq!(other_audience.verify(&token, NOW), Err(TokenError::Audience));
        assert_eq!(other_issuer.verify(&token, NOW), Err(TokenError::Audience));
    }

    #[test]
    fn garbage_is_malformed() {
        let huge = format!("{}.{}.{}", "a".repeat(2000), "b".repeat(2000), "c".repeat(100));
        for garbage in [
            "",
            ".",
            "..",
            "...",
            "a.b.c.d",
            "not a token",
            "a.b.c",
            "\u{0}.\u{0}.\u{0}",
            "é.é.é",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.",
            huge.as_str(),
        ] {
            assert_eq!(keys().verify(garbage, NOW), Err(TokenError::Malformed), "{garbage:?}");
        }
        let valid = keys().sign(&claims()).unwrap();
        assert_eq!(keys().verify(&format!("{valid}.{valid}"), NOW), Err(TokenError::Malformed));
        assert_eq!(keys().verify(&format!("{valid}."), NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn oversized_token_is_refused_before_any_parsing() {
        // Correctly signed and well-formed, but too long: the length limit alone refuses it.
        let mut big = claims();
        big.role = "r".repeat(4000);
        let token = keys().sign(&big).unwrap();
        assert!(token.len() > 4096);
        assert_eq!(keys().verify(&token, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn correctly_signed_non_json_payload_is_malformed() {
        for payload in [&b"not json"[..], b"", b"{}", br#"{"iss":"kassa"}"#, b"\xff\xfe"] {
            let token = forge(r#"{"alg":"HS256","typ":"JWT"}"#, payload, &[7; 32]);
            assert_eq!(keys().verify(&token, NOW), Err(TokenError::Malformed));
        }
        // A payload part that is not base64url at all, signed over as received.
        let signed = format!("{TOKEN_HEADER_B64}.@@@@");
        let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(hmac_sha256(&[7; 32], signed.as_bytes())));
        assert_eq!(keys().verify(&token, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn short_keys_neither_sign_nor_verify() {
        let weak = TokenKeys::new(vec![7; 31], "kassa", "kassa-api");
        assert!(matches!(weak.sign(&claims()), Err(CryptoError::Hash(_))));
        let token = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &claims_json(&claims()), &[7; 31]);
        assert_eq!(weak.verify(&token, NOW), Err(TokenError::Signature));
    }

    #[test]
    fn debug_redacts_the_key() {
        let keys = TokenKeys::new(b"super-secret-signing-key-0123456789".to_vec(), "kassa", "kassa-api");
        let shown = format!("{keys:?}");
        assert!(shown.contains("[redacted]") && shown.contains("kassa-api"), "{shown}");
        assert!(!shown.contains("super") && !shown.contains("115"), "{shown}");
    }

    // --- TOTP ---------------------------------------------------------------------------------------------------

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn totp_matches_rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B gives eight digits; six-digit codes are their last six.
        for (t, code) in
            [(59, "287082"), (1_111_111_109, "081804"), (1_234_567_890, "005924"), (2_000_000_000, "279037")]
        {
            assert_eq!(totp::code_at(RFC_SECRET, t), code, "T = {t}");
        }
        // RFC 4226 appendix D, counter 0 and 1 (unix time 0..=29 and 30..=59).
        assert_eq!(totp::code_at(RFC_SECRET, 0), "755224");
        assert_eq!(totp::code_at(RFC_SECRET, 30), "287082");
    }

    #[test]
    fn totp_accepts_one_step_either_side_and_reports_the_step() {
        let t = 1_234_567_890;
        let step = t / 30;
        let code = totp::code_at(RFC_SECRET, t);
        assert_eq!(totp::verify(RFC_SECRET, &code, t), Some(step));
        assert_eq!(totp::verify(RFC_SECRET, &code, t + 30), Some(step));
        assert_eq!(totp::verify(RFC_SECRET, &code, t - 30), Some(step));
        assert_eq!(totp::verify(RFC_SECRET, &totp::code_at(RFC_SECRET, t - 30), t), Some(step - 1));
        assert_eq!(totp::verify(RFC_SECRET, &totp::code_at(RFC_SECRET, t + 30), t), Some(step + 1));
    }

    #[test]
    fn totp_refuses_codes_two_steps_away() {
        let t = 1_234_567_890;
        for offset in [-60, 60, -90, 90] {
            let code = totp::code_at(RFC_SECRET, t + offset);
            assert_eq!(totp::verify(RFC_SECRET, &code, t), None, "offset {offset}");
        }
    }

    #[test]
    fn totp_refuses_anything_but_six_ascii_digits() {
        let t = 59;
        assert_eq!(totp::verify(RFC_SECRET, "287082", t), Some(1));
        for bad in [
            "12345a",
            "1234567",
            "28708",
            "",
            " 287082",
            "287082 ",
            "28708\u{0662}",
            "２８７０８２",
            "-28708",
            "+28708",
        ] {
            assert_eq!(totp::verify(RFC_SECRET, bad, t), None, "{bad:?}");
        }
        // The eight-digit form of a valid code is not accepted either.
        assert_eq!(totp::verify(RFC_SECRET, "94287082", t), None);
    }

    #[test]
    fn totp_handles_extreme_times_without_panicking() {
        for t in [i64::MIN, -1, i64::MAX] {
            let code = totp::code_at(RFC_SECRET, t);
            assert_eq!(code.len(), 6);
            assert!(totp::verify(RFC_SECRET, &code, t).is_some());
        }
    }

    #[test]
    fn base32_decodes_what_it_encodes() {
        for length in 0_u8..=21 {
            let bytes: Vec<u8> = (0..length).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
            assert_eq!(totp::base32_decode(&totp::base32(&bytes)), bytes, "{length} bytes");
        }
        assert_eq!(totp::base32_decode("MZXW6YTBOI======"), b"foobar");
    }

    #[test]
    fn totp_secret_is_twenty_random_bytes() {
        let secret = totp::new_secret().unwrap();
        assert_eq!(secret.len(), 20);
        assert_eq!(totp::base32(&secret).len(), 32);
        assert_ne!(secret, totp::new_secret().unwrap());
    }

    #[test]
    fn base32_matches_rfc_4648_without_padding() {
        for (input, expected) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(totp::base32(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(totp::base32(RFC_SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn otpauth_uri_is_percent_encoded() {
        assert_eq!(
            totp::otpauth_uri(RFC_SECRET, "Kassa Bank", "ana@example.com"),
            "otpauth://totp/Kassa%20Bank:ana%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Kassa%20Bank&algorithm=SHA1&digits=6&period=30"
        );
        let uri = totp::otpauth_uri(b"k", "A&B:C", "x?y=z/é");
        assert_eq!(
            uri,
            "otpauth://totp/A%26B%3AC:x%3Fy%3Dz%2F%C3%A9?secret=NM&issuer=A%26B%3AC&algorithm=SHA1&digits=6&period=30"
        );
    }

    // --- derived transfer ids -----------------------------------------------------------------------------------

    /// Ids derived before the four derivations shared one function: they
    /// name transfers already in ledgers (idempotency keys, interest
    /// postings, approval resolutions), so they must never change.
    #[test]
    fn derived_transfer_ids_are_pinned() {
        let money = crate::money::derived_id("customer:7 POST /api/v1/transfers", "key-1", 0);
        assert_eq!(money.to_string(), "2fdec7f8-fffe-8f42-a493-7c74ad4a93ea");
        let fx = crate::money::derived_id("customer:7 POST /api/v1/exchanges", "key-2", 2);
        assert_eq!(fx.to_string(), "593a8a16-d84c-8f0e-ae5a-4ca74c5aa059");
        let interest = crate::interest::posting_id(42, "2026-10");
        assert_eq!(interest.to_string(), "dda34239-0393-82a1-bfde-499e1556b146");
        let post = crate::approvals::resolution_id(money, true);
        assert_eq!(post.to_string(), "33e6b53c-6f46-8344-9812-8f28cfd66f53");
        let void = crate::approvals::resolution_id(money, false);
        assert_eq!(void.to_string(), "01a6a72e-f982-8578-b581-3981473017ee");
        assert_eq!(derived_transfer_id("kassa interest posting v1", &["42", "2026-10"]), interest);
        assert_ne!(derived_transfer_id("kassa interest posting v1", &["4", "22026-10"]), interest);
    }
}
