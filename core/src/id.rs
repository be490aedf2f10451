//! Message ids: ULIDs that carry the message's partition.

/// A sortable message id (ULID, 26 characters, Crockford base32) in partition 0;
/// see [`new_message_id_in`].
pub fn new_message_id() -> String {
    new_message_id_in(0)
}

/// Where a message id keeps its partition: the top ten bits of the ULID's random
/// part, which are the 11th and 12th characters of its text form. Ids of one
/// partition stay strictly increasing within this process, even inside one
/// millisecond, so a recipient's history (which lives in one partition) ordered by
/// id is ordered by acceptance.
const PARTITION_SHIFT: u32 = 70;
const PARTITION_MASK: u128 = 0x3FF;

/// A new message id carrying `partition` (below 1024). A process-wide generator
/// is harmless to share between gateways in one process: ids stay unique and
/// ordered.
pub fn new_message_id_in(partition: u16) -> String {
    use std::sync::{Mutex, OnceLock};
    static GENERATOR: OnceLock<Mutex<ulid::Generator>> = OnceLock::new();
    let g = GENERATOR.get_or_init(|| Mutex::new(ulid::Generator::new()));
    let id = {
        let mut g = g.lock().unwrap_or_else(|p| p.into_inner());
        g.generate().unwrap_or_else(|_| ulid::Ulid::new())
    };
    let bits = (id.0 & !(PARTITION_MASK << PARTITION_SHIFT))
        | ((u128::from(partition) & PARTITION_MASK) << PARTITION_SHIFT);
    ulid::Ulid(bits).to_string()
}

/// The partition a message id carries (0 for text that is not an id).
pub fn partition_of(id: &str) -> u16 {
    ulid::Ulid::from_string(id).map_or(0, |u| ((u.0 >> PARTITION_SHIFT) & PARTITION_MASK) as u16)
}

/// True when `s` has the shape of a message id (so a bad path segment is a clean 404).
pub fn is_message_id(s: &str) -> bool {
    s.len() == 26 && ulid::Ulid::from_string(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_increase_within_a_millisecond() {
        let ids: Vec<String> = (0..1000).map(|_| new_message_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn message_ids_are_sortable_ulids() {
        let a = new_message_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_message_id();
        assert!(is_message_id(&a) && is_message_id(&b));
        assert!(a < b);
        assert!(!is_message_id("not-an-id"));
        for p in [0u16, 1, 7, 15, 1023] {
            let ids: Vec<String> = (0..200).map(|_| new_message_id_in(p)).collect();
            assert!(ids.iter().all(|i| partition_of(i) == p && is_message_id(i)));
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "partition {p} ids out of order"
            );
        }
        assert!(!is_message_id("01ARZ3NDEKTSV4RRFFQ69G5FA")); // 25 chars
    }
}
