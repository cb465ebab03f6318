//! Versioned bincode encoding shared by the log, the snapshot file and the
//! peer wire format.
//!
//! Every encoded value starts with one format version byte, so that a later
//! release can keep reading what an earlier one wrote.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Failure to encode or decode a versioned value.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty {value_name}: expected a format version byte")]
    Empty { value_name: &'static str },

    #[error(
        "unsupported {value_name} format version {found}, but this build reads version {supported}"
    )]
    UnsupportedVersion {
        value_name: &'static str,
        found: u8,
        supported: u8,
    },

    #[error("malformed {value_name}: {source}")]
    Bincode {
        value_name: &'static str,
        #[source]
        source: bincode::Error,
    },
}

/// Encodes `value` with bincode 1.3 behind the `version` byte.
pub(crate) fn encode<T: Serialize>(
    value_name: &'static str,
    version: u8,
    value: &T,
) -> Result<Vec<u8>, CodecError> {
    let mut bytes = vec![version];
    bincode::serialize_into(&mut bytes, value)
        .map_err(|source| CodecError::Bincode { value_name, source })?;
    Ok(bytes)
}

/// Decodes a value written by [`encode`] with the same `version`.
pub(crate) fn decode<T: DeserializeOwned>(
    value_name: &'static str,
    version: u8,
    bytes: &[u8],
) -> Result<T, CodecError> {
    match bytes.split_first() {
        Some((&found, body)) if found == version => {
            bincode::deserialize(body).map_err(|source| CodecError::Bincode { value_name, source })
        }
        Some((&found, _)) => Err(CodecError::UnsupportedVersion {
            value_name,
            found,
            supported: version,
        }),
        None => Err(CodecError::Empty { value_name }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_reads_what_encode_wrote() {
        let bytes = encode("test value", 3, &(7_u64, "seven".to_string())).unwrap();
        let value: (u64, String) = decode("test value", 3, &bytes).unwrap();
        assert_eq!(value, (7, "seven".to_string()));
    }

    #[test]
    fn decode_rejects_other_version() {
        let bytes = encode("test value", 2, &7_u64).unwrap();
        let error = decode::<u64>("test value", 1, &bytes).unwrap_err();
        assert!(matches!(
            error,
            CodecError::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            }
        ));
    }

    #[test]
    fn decode_rejects_empty_input() {
        let error = decode::<u64>("test value", 1, &[]).unwrap_err();
        assert!(matches!(error, CodecError::Empty { .. }));
    }
}
