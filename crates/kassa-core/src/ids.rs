//! Identifiers of ledger objects.
//!
//! Accounts get a compact integer id assigned by the database; transfers carry
//! a 128-bit id chosen by the client, which is also the idempotency key: the
//! same id never moves money twice. Time-ordered ids (UUIDv7) keep the unique
//! index append-only and are the fast path; random ids are correct but slower.

use std::fmt;

/// The database id of an account. Account numbers (IBAN, card numbers) are
/// separate, human-facing strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub i64);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A client-chosen transfer id, shown and parsed in the UUID text form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransferId(pub u128);

/// Why a transfer id could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a transfer id is 32 hexadecimal digits, optionally in the 8-4-4-4-12 UUID form")]
pub struct TransferIdError;

impl TransferId {
    /// Reads `0190f3c2-5d1e-7c3a-9b1f-2a4c6e8d0f12` or the same 32 digits
    /// without hyphens.
    pub fn parse(text: &str) -> Result<TransferId, TransferIdError> {
        let bytes = text.as_bytes();
        let digits: Vec<u8> = if bytes.len() == 36 {
            for (index, byte) in bytes.iter().enumerate() {
                let hyphen_here = matches!(index, 8 | 13 | 18 | 23);
                if hyphen_here != (*byte == b'-') {
                    return Err(TransferIdError);
                }
            }
            bytes.iter().copied().filter(|b| *b != b'-').collect()
        } else if bytes.len() == 32 {
            bytes.to_vec()
        } else {
            return Err(TransferIdError);
        };
        let mut value: u128 = 0;
        for byte in digits {
            let nibble = match byte {
                b'0'..=b'9' => byte - b'0',
                b'a'..=b'f' => byte - b'a' + 10,
                b'A'..=b'F' => byte - b'A' + 10,
                _ => return Err(TransferIdError),
            };
            value = (value << 4) | u128::from(nibble);
        }
        Ok(TransferId(value))
    }

    /// The id as 16 big-endian bytes, the storage form: byte order equals
    /// numeric order, so time-ordered ids stay append-only in an index.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> TransferId {
        TransferId(u128::from_be_bytes(bytes))
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = format!("{:032x}", self.0);
        write!(f, "{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
    }
}

impl fmt::Debug for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransferId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_bytes() {
        let id = TransferId(0x0190_f3c2_5d1e_7c3a_9b1f_2a4c_6e8d_0f12);
        let text = id.to_string();
        assert_eq!(text, "0190f3c2-5d1e-7c3a-9b1f-2a4c6e8d0f12");
        assert_eq!(TransferId::parse(&text), Ok(id));
        assert_eq!(TransferId::parse(&text.replace('-', "")), Ok(id));
        assert_eq!(TransferId::from_bytes(id.to_bytes()), id);
    }

    #[test]
    fn refuses_malformed_ids() {
        for bad in ["", "xyz", "0190f3c2-5d1e-7c3a-9b1f-2a4c6e8d0f1g", "0190f3c25-d1e-7c3a-9b1f-2a4c6e8d0f12"] {
            assert_eq!(TransferId::parse(bad), Err(TransferIdError), "{bad}");
        }
    }
}
