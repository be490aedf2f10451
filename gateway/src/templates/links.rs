//! Short codes for tracked links: 10 characters of base62 from the
//! operating system's generator (about 59 bits), so a code cannot be guessed
//! from another one or counted through.

use rand::Rng;

/// Characters in a code.
pub const CODE_LEN: usize = 10;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new random code.
pub fn new_code() -> String {
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect()
}

/// Whether `s` can be a code (checked before any store lookup).
pub fn is_code(s: &str) -> bool {
    s.len() == CODE_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The links made while one message is filled: (code, target).
#[derive(Debug, Default)]
pub struct Made {
    pub links: Vec<(String, String)>,
}

impl Made {
    /// A short URL on `base` for `target`, remembered for storing.
    pub fn short(&mut self, base: &str, target: String) -> String {
        let code = new_code();
        let url = format!("{}/{code}", base.trim_end_matches('/'));
        self.links.push((code, target));
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_random_base62() {
        let codes: std::collections::HashSet<String> = (0..10_000).map(|_| new_code()).collect();
        assert_eq!(codes.len(), 10_000);
        assert!(codes.iter().all(|c| is_code(c)));
        // Not sequential: neighbours in generation order share no long prefix.
        let a = new_code();
        let b = new_code();
        assert_ne!(a[..6], b[..6]);
        assert!(!is_code("abc"));
        assert!(!is_code("abcdefghi/"));
    }
}
