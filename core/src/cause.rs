//! An error with its causes in one line (`a: b: c`): libraries' top-level
//! messages are often only "error sending request", and the cause that tells
//! "connection refused" from "no public address" sits further down.

use std::error::Error;

/// `e`'s message followed by each cause's that it does not already contain.
pub fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn causes_follow_once_each() {
        let e = E(
            "error sending request",
            Some(Box::new(E(
                "connect: refused",
                Some(Box::new(E("refused", None))),
            ))),
        );
        assert_eq!(chain(&e), "error sending request: connect: refused");
    }
}
