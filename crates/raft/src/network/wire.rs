//! Encoding of peer messages: bincode 1.3 of openraft's types, with the
//! layout version in the message's `format_version` field.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::proto::PeerMessage;

/// Layout version of a peer message body. Version 1 is bincode 1.3 of
/// openraft 0.9 types.
pub const PEER_FORMAT_VERSION: u32 = 1;

/// Failure to encode or decode a peer message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(
        "unsupported peer message format version {found}, but this build reads version {supported}"
    )]
    UnsupportedVersion { found: u32, supported: u32 },

    #[error("malformed peer message body: {0}")]
    Bincode(#[from] bincode::Error),
}

pub fn encode<T: Serialize>(value: &T) -> Result<PeerMessage, WireError> {
    Ok(PeerMessage {
        format_version: PEER_FORMAT_VERSION,
        body: bincode::serialize(value)?,
    })
}

pub fn decode<T: DeserializeOwned>(message: &PeerMessage) -> Result<T, WireError> {
    if message.format_version != PEER_FORMAT_VERSION {
        return Err(WireError::UnsupportedVersion {
            found: message.format_version,
            supported: PEER_FORMAT_VERSION,
        });
    }
    Ok(bincode::deserialize(&message.body)?)
}

#[cfg(test)]
mod tests {
    use openraft::Vote;

    use super::*;

    #[test]
    fn decode_reads_encoded_vote() {
        let vote = Vote::new(3, 2_u64);
        let message = encode(&vote).unwrap();
        let decoded: Vote<u64> = decode(&message).unwrap();
        assert_eq!(decoded, vote);
    }

    #[test]
    fn decode_rejects_unknown_version() {
        let mut message = encode(&Vote::new(3, 2_u64)).unwrap();
        message.format_version = 2;
        let error = decode::<Vote<u64>>(&message).unwrap_err();
        assert!(matches!(
            error,
            WireError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        ));
    }
}
