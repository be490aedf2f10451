//! Hashing helpers: a fast non-cryptographic hasher for the in-memory domain
//! sets, stable hashes for sender selection, and the keyed SHA-256 digests
//! that keep phone numbers, e-mail addresses and texts out of store keys.

use sha2::{Digest, Sha256};
use std::hash::{BuildHasherDefault, Hasher};

/// The FxHash mixing step (as used by rustc): fast on short keys such as
/// domain names. Not resistant to hash flooding, which is fine for sets whose
/// *contents* are trusted (the blocklist comes from CERT Polska, the lists
/// from configuration): a lookup of an attacker-chosen host cannot add
/// entries, so it cannot make a bucket longer.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // Mix the length in so that "ab" and "ab\0" differ.
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(crate) type FxBuildHasher = BuildHasherDefault<FxHasher>;

/// A stable hash (identical in every process and release, unlike std's
/// randomised `DefaultHasher`) of `parts`, for sticky sender selection:
/// FxHash over the bytes, 8 at a time, with each part's length mixed in,
/// finished with SplitMix64. Changing it would move recipients to other
/// numbers, so the tests pin its values.
pub(crate) fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h = FxHasher::default();
    for part in parts {
        h.write(part);
        h.write_usize(part.len());
    }
    splitmix64(h.finish())
}

/// SplitMix64 finaliser: turns a caller-provided seed into a well-mixed value.
pub(crate) fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hex characters of a digest that go into a key: 80 bits, so that even
/// 10^8 live keys of one kind collide with probability ~10^-8.
pub(crate) const DIGEST_HEX_LEN: usize = 20;

/// Keyed digest of `parts` for use in store keys: SHA-256 over the salt and
/// each part, every one length-prefixed (so part boundaries cannot be
/// shifted), truncated to [`DIGEST_HEX_LEN`] lowercase hex characters.
///
/// With an empty salt the digest of a phone number can be reversed by
/// enumerating the number space; a gateway-wide secret salt prevents that.
pub(crate) fn digest_hex(salt: &[u8], parts: &[&[u8]]) -> HexDigest {
    let mut hasher = Sha256::new();
    hasher.update((salt.len() as u64).to_le_bytes());
    hasher.update(salt);
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut out = [0u8; DIGEST_HEX_LEN];
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
    HexDigest(out)
}

/// A truncated hex digest (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HexDigest([u8; DIGEST_HEX_LEN]);

impl HexDigest {
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn fx(s: &str) -> u64 {
        let mut h = FxHasher::default();
        s.hash(&mut h);
        h.finish()
    }

    #[test]
    fn fx_distinguishes_lengths_and_content() {
        assert_ne!(fx("ab"), fx("ab\0"));
        assert_ne!(fx("evil.pl"), fx("evil.p"));
        assert_ne!(fx("abcdefgh1"), fx("abcdefgh2"));
        assert_eq!(fx("example.com"), fx("example.com"));
    }

    #[test]
    fn stable_hash_is_pinned_and_separates_parts() {
        // Pinned: sticky sender selection must not change between releases.
        assert_eq!(stable_hash(&[]), splitmix64(0));
        assert_eq!(stable_hash(&[b"+48601234567"]), PINNED);
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        assert_ne!(stable_hash(&[b"ab"]), stable_hash(&[b"ab\0"]));
    }

    const PINNED_DIGEST: &str = "cbf71fa32278f3a97e86";
    const PINNED: u64 = 2_510_896_425_461_170_630;

    #[test]
    fn digest_is_keyed_truncated_hex() {
        let a = digest_hex(b"", &[b"+48601234567"]);
        let a = a.as_str();
        assert_eq!(a.len(), DIGEST_HEX_LEN);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(!a.contains("601234567"));
        assert_ne!(a, digest_hex(b"secret", &[b"+48601234567"]).as_str());
        // Pinned: changing the digest would orphan every counter in a store.
        assert_eq!(digest_hex(b"s", &[b"r", b"acme"]).as_str(), PINNED_DIGEST);
        assert_ne!(
            digest_hex(b"", &[b"ab", b"c"]),
            digest_hex(b"", &[b"a", b"bc"])
        );
        assert_ne!(digest_hex(b"a", &[b"b"]), digest_hex(b"", &[b"ab"]));
    }

    #[test]
    fn splitmix_mixes() {
        // The reference SplitMix64 output for state 0.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_ne!(splitmix64(1), splitmix64(2));
    }
}
