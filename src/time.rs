//! [`UnixTimeMs`]: the one type of instants in mimi-ds. Durations (the `_ms` settings of
//! [`crate::DsConfig`]) stay plain milliseconds; an instant plus a duration is an instant.

use tls_codec::{TlsDeserializeBytes, TlsSerialize, TlsSize};

/// A point in time: milliseconds since the UNIX epoch. mimi-ds never reads a clock; the caller
/// passes `now` into every call, so every decision can be replayed (docs/decisions.md D20).
///
/// Stored records encode it as the `uint64` of its milliseconds (TLS presentation language),
/// byte for byte what they held before it was typed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    TlsSerialize,
    TlsDeserializeBytes,
    TlsSize,
)]
pub struct UnixTimeMs(pub u64);

impl UnixTimeMs {
    /// Milliseconds since the UNIX epoch, for wire fields and the storage contract, which carry
    /// instants as `uint64`.
    pub(crate) const fn as_millis(self) -> u64 {
        self.0
    }

    /// `ms` milliseconds later, or the last representable instant.
    pub(crate) const fn saturating_add(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// How many milliseconds passed from `earlier` to `self` (0 if `earlier` is later).
    pub(crate) const fn since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// How far apart two instants are, in milliseconds, in either direction.
    pub(crate) const fn abs_diff(self, other: Self) -> u64 {
        self.0.abs_diff(other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_exact, encode};

    /// Records typed with `UnixTimeMs` keep the bytes they had as `u64`.
    #[test]
    fn encodes_as_its_milliseconds() {
        let ms = 0x0102_0304_0506_0708_u64;
        assert_eq!(encode(&UnixTimeMs(ms)).unwrap(), encode(&ms).unwrap());
        assert_eq!(
            encode(&vec![UnixTimeMs(1), UnixTimeMs(ms)]).unwrap(),
            encode(&vec![1_u64, ms]).unwrap()
        );
        assert_eq!(
            encode(&Some(UnixTimeMs(ms))).unwrap(),
            encode(&Some(ms)).unwrap()
        );
        assert_eq!(
            decode_exact::<UnixTimeMs>(&ms.to_be_bytes()).unwrap(),
            UnixTimeMs(ms)
        );
    }
}
