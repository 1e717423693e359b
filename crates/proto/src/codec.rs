//! MessagePack encoding with named fields and a version check on decode.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{Error, WIRE_VERSION};

/// A top-level message: it carries the wire version `v` and has a name for errors.
pub trait WireMessage: Serialize + DeserializeOwned {
    /// The message kind as error messages name it, e.g. `event batch`.
    const NAME: &'static str;

    /// The wire version the message was written with.
    fn version(&self) -> u16;
}

/// Encodes a message as a MessagePack map with named fields.
///
/// # Errors
///
/// [`Error::Encode`] if serialization fails, which the types of this crate never do.
pub fn encode<M: WireMessage>(message: &M) -> Result<Vec<u8>, Error> {
    rmp_serde::to_vec_named(message).map_err(|error| Error::Encode {
        message: M::NAME,
        reason: error.to_string(),
    })
}

/// Decodes a message, refusing versions newer than [`WIRE_VERSION`].
///
/// # Errors
///
/// [`Error::UnsupportedVersion`] for a message from a newer shardmesh, and
/// [`Error::Malformed`] for anything else that is not a valid `M`. Never panics,
/// whatever the bytes.
pub fn decode<M: WireMessage>(bytes: &[u8]) -> Result<M, Error> {
    match rmp_serde::from_slice::<M>(bytes) {
        Ok(message) => check_version::<M>(message.version()).map(|()| message),
        Err(error) => {
            // A newer version may have changed the layout: say so rather than
            // reporting the layout change as corruption.
            if let Ok(probe) = rmp_serde::from_slice::<VersionProbe>(bytes) {
                check_version::<M>(probe.v)?;
            }
            Err(Error::Malformed {
                message: M::NAME,
                reason: error.to_string(),
            })
        }
    }
}

fn check_version<M: WireMessage>(found: u16) -> Result<(), Error> {
    if found > WIRE_VERSION {
        return Err(Error::UnsupportedVersion {
            message: M::NAME,
            found,
            supported: WIRE_VERSION,
        });
    }
    Ok(())
}

/// The one field every message shares; unknown fields are skipped.
#[derive(Deserialize)]
struct VersionProbe {
    v: u16,
}
