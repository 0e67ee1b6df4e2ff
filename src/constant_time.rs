//! Comparison of secrets (fanout tokens, connection tokens, state keys and their commitments)
//! without an early exit, so that timing does not reveal how long a matching prefix is
//! (docs/decisions.md D17: tokens are compared in constant time). One implementation for the
//! whole crate, so that every caller gets the same tested comparison.

/// Whether `a` and `b` are equal, comparing every byte of equal-length inputs. Lengths are not
/// secret: every token, key and commitment of one kind has a fixed length.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold back into an early-exit comparison.
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_and_unequal_inputs() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(constant_time_eq(b"", b""));
    }

    /// Inputs that differ in two bytes by the same XOR difference: an accumulator that XORs
    /// the byte differences (instead of ORing them) cancels them out and calls the inputs
    /// equal, so any token with such a sibling would be forgeable.
    #[test]
    fn two_equal_differences_do_not_cancel() {
        let a = [0x11u8; 32];
        for d in [0x01u8, 0x80, 0xff] {
            for (i, j) in [(0, 1), (3, 17), (30, 31)] {
                let mut b = a;
                b[i] ^= d;
                b[j] ^= d;
                assert!(!constant_time_eq(&a, &b), "d = {d:#x} at {i}, {j}");
            }
        }
    }
}
