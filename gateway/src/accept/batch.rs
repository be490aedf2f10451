//! The batch envelope, `{"messages": [...]}`, read item by item.

use goniec_core::Problem;
use serde_json::value::RawValue;

use super::invalid::Invalid;
use super::validate::json_error;

/// Read `{"messages": [...]}` item by item, handing each message's JSON to `each`
/// as soon as the parser reaches it (borrowed from the body, no copy): nothing
/// holds every item's text or a tree of it, and a batch of more than `max` items
/// is refused at item `max + 1` without reading further. Shape errors name their
/// field as for single messages.
pub(super) fn parse(json: &str, max: usize, mut each: impl FnMut(&str)) -> Result<(), Invalid> {
    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    /// The envelope: exactly one key, `messages`.
    struct Envelope<'a, F> {
        items: Items<'a, F>,
    }
    /// The array, streamed.
    struct Items<'a, F> {
        max: usize,
        each: &'a mut F,
        /// Set when the array had more than `max` items.
        over: &'a mut bool,
    }

    impl<'de, F: FnMut(&str)> DeserializeSeed<'de> for Envelope<'_, F> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de, F: FnMut(&str)> Visitor<'de> for Envelope<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object with `messages`")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut items = Some(self.items);
            while let Some(key) = map.next_key::<String>()? {
                if key != "messages" {
                    return Err(de::Error::unknown_field(&key, &["messages"]));
                }
                let Some(items) = items.take() else {
                    return Err(de::Error::duplicate_field("messages"));
                };
                map.next_value_seed(items)?;
            }
            if items.is_some() {
                return Err(de::Error::missing_field("messages"));
            }
            Ok(())
        }
    }
    impl<'de, F: FnMut(&str)> DeserializeSeed<'de> for Items<'_, F> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de, F: FnMut(&str)> Visitor<'de> for Items<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of messages")
        }
        fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
            let mut n = 0;
            // Borrowed from the body: an item costs no copy until it is parsed.
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                if n == self.max {
                    *self.over = true;
                    return Err(de::Error::custom("too many messages"));
                }
                n += 1;
                (self.each)(raw.get());
            }
            Ok(())
        }
    }

    let mut over = false;
    let mut track = serde_path_to_error::Track::new();
    let mut de = serde_json::Deserializer::from_str(json);
    let envelope = Envelope {
        items: Items {
            max,
            each: &mut each,
            over: &mut over,
        },
    };
    let parsed = envelope
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .and_then(|()| de.end());
    if over {
        return Err(Invalid::new(
            Problem::BatchTooLarge,
            format!("more than {max} messages in one batch; the most allowed is {max}"),
        )
        .field("messages"));
    }
    parsed.map_err(|e| json_error(&serde_path_to_error::Error::new(track.path(), e)))
}

#[cfg(test)]
mod tests {
    use super::parse as parse_batch;
    use crate::http::error::ApiError;

    fn items(json: &str, max: usize) -> Result<Vec<String>, (u16, &'static str, String)> {
        let mut seen = Vec::new();
        parse_batch(json, max, |item| seen.push(item.to_string()))
            .map(|()| seen)
            .map_err(ApiError::from)
            .map_err(|e| (e.status, e.code, e.field.unwrap_or_default()))
    }

    #[test]
    fn batches_are_read_item_by_item_and_stop_at_the_limit() {
        assert_eq!(
            items(r#"{"messages":[{"a":1}, "x" ,[2]]}"#, 3),
            Ok(vec![r#"{"a":1}"#.into(), r#""x""#.into(), "[2]".into()])
        );
        assert_eq!(items(r#"{"messages":[]}"#, 3), Ok(vec![]));
        // Item 4 of at most 3: refused without handing on more than 3, and without
        // reading on (the rest is not even valid JSON).
        let mut handed = 0;
        let e = ApiError::from(
            parse_batch(r#"{"messages":[1,2,3,4,oops"#, 3, |_| handed += 1).unwrap_err(),
        );
        assert_eq!(
            (e.status, e.code, e.field.as_deref()),
            (422, "batch-too-large", Some("messages"))
        );
        assert_eq!(handed, 3);
    }

    #[test]
    fn batch_shape_errors_name_the_field() {
        let err = |json| items(json, 10).unwrap_err();
        assert_eq!(
            err(r#"{"messages":5}"#),
            (422, "invalid-type", "messages".into())
        );
        assert_eq!(
            err(r#"{"messages":[],"x":1}"#),
            (422, "unknown-field", "x".into())
        );
        assert_eq!(err(r#"{}"#), (422, "missing-field", "messages".into()));
        assert_eq!(err(r#"[{"channel":"sms"}]"#).1, "invalid-type");
        assert_eq!(err(r#"{"messages":[],"messages":[]}"#).1, "invalid-value");
        assert_eq!(err(r#"{"messages":[1,"#).1, "malformed-json");
        assert_eq!(err(r#"{"messages":[]} trailing"#).1, "malformed-json");
    }
}
