//! RCS content: the API's `rcs` object checked against RBM's rules, and RBM's
//! `contentMessage` built from it.
//!
//! The API's `rcs` object mirrors RBM's `contentMessage` without `text` (the
//! message's own `text` field is the RBM text):
//!
//! ```json
//! { "richCard": { "standaloneCard": { "cardOrientation": "VERTICAL", "cardContent": { … } } },
//!   "suggestions": [ { "reply": { "text": "Zapłacę", "postbackData": "pay" } } ] }
//! ```
//!
//! A message carries exactly one of `text`, `rcs.richCard` (a `standaloneCard`
//! or a `carouselCard` of 2–10 cards) and `rcs.contentInfo` (a file by https
//! URL), plus at most 11 `suggestions`. Limits are RBM's: text 3072 characters,
//! card title 200, description 2000, suggestion text 25, postback data 2048, 4
//! suggestions per card. Unknown keys are refused by name, so a typo is caught
//! at the API instead of by the platform at send time. [`validate`] reports the
//! first problem as a [`ContentError`] naming its JSON path
//! (`rcs.richCard.carouselCard.cardContents[3].title`).

use serde_json::{Map, Value};

/// Most characters of a text message.
pub const MAX_TEXT: usize = 3072;
/// Most characters of a card title.
pub const MAX_TITLE: usize = 200;
/// Most characters of a card description.
pub const MAX_DESCRIPTION: usize = 2000;
/// Most characters of a suggestion's text.
pub const MAX_SUGGESTION_TEXT: usize = 25;
/// Most characters of a suggestion's postback data.
pub const MAX_POSTBACK: usize = 2048;
/// Most suggestions on a message.
pub const MAX_MESSAGE_SUGGESTIONS: usize = 11;
/// Most suggestions on one card.
pub const MAX_CARD_SUGGESTIONS: usize = 4;
/// Fewest and most cards in a carousel.
pub const CAROUSEL_CARDS: std::ops::RangeInclusive<usize> = 2..=10;

/// Content RBM would refuse, with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ContentError {
    /// JSON path of the field, e.g. `rcs.richCard.carouselCard.cardContents[3].title`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn err<T>(field: &str, reason: impl Into<String>) -> Result<T, ContentError> {
    Err(ContentError {
        field: field.to_string(),
        reason: reason.into(),
    })
}

/// Checks a message's RCS content without building it.
pub fn validate(text: Option<&str>, rcs: Option<&Value>) -> Result<(), ContentError> {
    check(text, rcs).map(|_| ())
}

/// RBM's `contentMessage` for a message's `text` and `rcs` object, after the
/// checks of [`validate`]. A suggestion without `postbackData` gets its text as
/// postback data, so the recipient's choice always comes back tagged.
pub fn content_message(text: Option<&str>, rcs: Option<&Value>) -> Result<Value, ContentError> {
    let rcs = check(text, rcs)?;
    let mut out = Map::new();
    if let Some(text) = text {
        out.insert("text".into(), Value::String(text.to_string()));
    }
    if let Some(rcs) = rcs {
        for (key, value) in rcs {
            let mut value = value.clone();
            fill_postbacks(key, &mut value);
            out.insert(key.clone(), value);
        }
    }
    Ok(Value::Object(out))
}

/// Gives suggestions without postback data their text as postback data.
fn fill_postbacks(key: &str, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if (key == "reply" || key == "action") && !map.contains_key("postbackData") {
                if let Some(text) = map.get("text").cloned() {
                    map.insert("postbackData".into(), text);
                }
            }
            for (k, v) in map.iter_mut() {
                fill_postbacks(k, v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| fill_postbacks(key, v)),
        _ => {}
    }
}

/// Validates and returns the `rcs` object (`None` when absent or null).
fn check<'a>(
    text: Option<&str>,
    rcs: Option<&'a Value>,
) -> Result<Option<&'a Map<String, Value>>, ContentError> {
    let rcs = match rcs {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => return err("rcs", "must be an object"),
    };
    if let Some(map) = rcs {
        known_keys("rcs", map, &["richCard", "contentInfo", "suggestions"])?;
    }
    let rich_card = rcs.and_then(|m| m.get("richCard"));
    let content_info = rcs.and_then(|m| m.get("contentInfo"));
    let mut kinds = Vec::new();
    if text.is_some() {
        kinds.push("text");
    }
    if rich_card.is_some() {
        kinds.push("rcs.richCard");
    }
    if content_info.is_some() {
        kinds.push("rcs.contentInfo");
    }
    match kinds.as_slice() {
        [] => {
            return err(
                "text",
                "missing: an RCS message needs `text`, `rcs.richCard` or `rcs.contentInfo`",
            )
        }
        [_] => {}
        [.., last] => {
            return err(
                last,
                format!(
                    "a message carries exactly one of `text`, `rcs.richCard` and \
                     `rcs.contentInfo`; this one has {}",
                    kinds.join(" and ")
                ),
            )
        }
    }
    if let Some(text) = text {
        check_text("text", text, MAX_TEXT)?;
    }
    if let Some(card) = rich_card {
        check_rich_card("rcs.richCard", card)?;
    }
    if let Some(info) = content_info {
        check_content_info("rcs.contentInfo", info)?;
    }
    if let Some(suggestions) = rcs.and_then(|m| m.get("suggestions")) {
        check_suggestions("rcs.suggestions", suggestions, MAX_MESSAGE_SUGGESTIONS)?;
    }
    Ok(rcs)
}

fn object<'a>(path: &str, value: &'a Value) -> Result<&'a Map<String, Value>, ContentError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => err(path, "must be an object"),
    }
}

fn known_keys(path: &str, map: &Map<String, Value>, known: &[&str]) -> Result<(), ContentError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => err(
            &format!("{path}.{key}"),
            format!("unknown key `{key}`; expected {}", list(known)),
        ),
        None => Ok(()),
    }
}

fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Exactly one of `names` is present in `map`; returns it.
fn exactly_one<'a>(
    path: &str,
    map: &'a Map<String, Value>,
    names: &[&'static str],
) -> Result<(&'static str, &'a Value), ContentError> {
    let present: Vec<&'static str> = names
        .iter()
        .copied()
        .filter(|n| map.contains_key(*n))
        .collect();
    match present.as_slice() {
        [one] => Ok((one, &map[*one])),
        [] => err(path, format!("needs one of {}", list(names))),
        [_, second, ..] => err(
            &format!("{path}.{second}"),
            format!("only one of {} may be set", list(names)),
        ),
    }
}

fn string<'a>(path: &str, value: &'a Value) -> Result<&'a str, ContentError> {
    value
        .as_str()
        .map_or_else(|| err(path, "must be a string"), Ok)
}

fn check_text(path: &str, text: &str, max: usize) -> Result<(), ContentError> {
    let len = text.chars().count();
    if text.trim().is_empty() {
        return err(path, "must not be empty");
    }
    if len > max {
        return err(path, format!("{len} characters; at most {max}"));
    }
    Ok(())
}

fn optional_text(path: &str, value: &Value, max: usize) -> Result<(), ContentError> {
    let len = string(path, value)?.chars().count();
    if len > max {
        return err(path, format!("{len} characters; at most {max}"));
    }
    Ok(())
}

fn one_of(path: &str, value: &Value, allowed: &[&str]) -> Result<(), ContentError> {
    let s = string(path, value)?;
    if allowed.contains(&s) {
        Ok(())
    } else {
        err(path, format!("`{s}` is not {}", list(allowed)))
    }
}

fn url(path: &str, value: &Value, https_only: bool) -> Result<(), ContentError> {
    let s = string(path, value)?;
    let parsed = url::Url::parse(s).map_err(|e| ContentError {
        field: path.to_string(),
        reason: format!("not a URL: {e}"),
    })?;
    let scheme_ok = match parsed.scheme() {
        "https" => true,
        "http" => !https_only,
        _ => false,
    };
    if !scheme_ok {
        let want = if https_only {
            "an https:// URL"
        } else {
            "an http:// or https:// URL"
        };
        return err(path, format!("must be {want}"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return err(path, "the URL has no host");
    }
    Ok(())
}

fn check_rich_card(path: &str, value: &Value) -> Result<(), ContentError> {
    let map = object(path, value)?;
    known_keys(path, map, &["standaloneCard", "carouselCard"])?;
    match exactly_one(path, map, &["standaloneCard", "carouselCard"])? {
        ("standaloneCard", card) => check_standalone(&format!("{path}.standaloneCard"), card),
        (_, card) => check_carousel(&format!("{path}.carouselCard"), card),
    }
}

fn check_standalone(path: &str, value: &Value) -> Result<(), ContentError> {
    let map = object(path, value)?;
    known_keys(
        path,
        map,
        &["cardOrientation", "thumbnailImageAlignment", "cardContent"],
    )?;
    let orientation_path = format!("{path}.cardOrientation");
    let Some(orientation) = map.get("cardOrientation") else {
        return err(&orientation_path, "missing; VERTICAL or HORIZONTAL");
    };
    one_of(&orientation_path, orientation, &["VERTICAL", "HORIZONTAL"])?;
    if let Some(alignment) = map.get("thumbnailImageAlignment") {
        let at = format!("{path}.thumbnailImageAlignment");
        one_of(&at, alignment, &["LEFT", "RIGHT"])?;
        if orientation.as_str() != Some("HORIZONTAL") {
            return err(&at, "only for cards with cardOrientation HORIZONTAL");
        }
    }
    match map.get("cardContent") {
        Some(content) => check_card_content(&format!("{path}.cardContent"), content),
        None => err(&format!("{path}.cardContent"), "missing"),
    }
}

fn check_carousel(path: &str, value: &Value) -> Result<(), ContentError> {
    let map = object(path, value)?;
    known_keys(path, map, &["cardWidth", "cardContents"])?;
    match map.get("cardWidth") {
        Some(width) => one_of(&format!("{path}.cardWidth"), width, &["SMALL", "MEDIUM"])?,
        None => return err(&format!("{path}.cardWidth"), "missing; SMALL or MEDIUM"),
    }
    let cards_path = format!("{path}.cardContents");
    let cards = match map.get("cardContents") {
        Some(Value::Array(cards)) => cards,
        Some(_) => return err(&cards_path, "must be an array of cards"),
        None => return err(&cards_path, "missing"),
    };
    if !CAROUSEL_CARDS.contains(&cards.len()) {
        return err(
            &cards_path,
            format!(
                "{} cards; a carousel has {} to {}",
                cards.len(),
                CAROUSEL_CARDS.start(),
                CAROUSEL_CARDS.end()
            ),
        );
    }
    for (i, card) in cards.iter().enumerate() {
        check_card_content(&format!("{cards_path}[{i}]"), card)?;
    }
    Ok(())
}

fn check_card_content(path: &str, value: &Value) -> Result<(), ContentError> {
    let map = object(path, value)?;
    known_keys(path, map, &["title", "description", "media", "suggestions"])?;
    if !["title", "description", "media"]
        .iter()
        .any(|k| map.contains_key(*k))
    {
        return err(
            path,
            "needs at least one of `title`, `description` or `media`",
        );
    }
    if let Some(title) = map.get("title") {
        optional_text(&format!("{path}.title"), title, MAX_TITLE)?;
    }
    if let Some(description) = map.get("description") {
        optional_text(&format!("{path}.description"), description, MAX_DESCRIPTION)?;
    }
    if let Some(media) = map.get("media") {
        let at = format!("{path}.media");
        let media_map = object(&at, media)?;
        known_keys(&at, media_map, &["height", "contentInfo"])?;
        match media_map.get("height") {
            Some(h) => one_of(&format!("{at}.height"), h, &["SHORT", "MEDIUM", "TALL"])?,
            None => return err(&format!("{at}.height"), "missing; SHORT, MEDIUM or TALL"),
        }
        match media_map.get("contentInfo") {
            Some(info) => check_content_info(&format!("{at}.contentInfo"), info)?,
            None => return err(&format!("{at}.contentInfo"), "missing"),
        }
    }
    if let Some(suggestions) = map.get("suggestions") {
        check_suggestions(
            &format!("{path}.suggestions"),
            suggestions,
            MAX_CARD_SUGGESTIONS,
        )?;
    }
    Ok(())
}

fn check_content_info(path: &str, value: &Value) -> Result<(), ContentError> {
    let map = object(path, value)?;
    known_keys(path, map, &["fileUrl", "thumbnailUrl", "forceRefresh"])?;
    match map.get("fileUrl") {
        Some(u) => url(&format!("{path}.fileUrl"), u, true)?,
        None => {
            return err(
                &format!("{path}.fileUrl"),
                "missing; the file's https:// URL",
            )
        }
    }
    if let Some(u) = map.get("thumbnailUrl") {
        url(&format!("{path}.thumbnailUrl"), u, true)?;
    }
    if let Some(force) = map.get("forceRefresh") {
        if !force.is_boolean() {
            return err(&format!("{path}.forceRefresh"), "must be true or false");
        }
    }
    Ok(())
}

fn check_suggestions(path: &str, value: &Value, max: usize) -> Result<(), ContentError> {
    let Value::Array(items) = value else {
        return err(path, "must be an array of suggestions");
    };
    if items.len() > max {
        return err(
            path,
            format!("{} suggestions; at most {max} here", items.len()),
        );
    }
    for (i, item) in items.iter().enumerate() {
        check_suggestion(&format!("{path}[{i}]"), item)?;
    }
    Ok(())
}

fn check_suggestion(path: &str, value: &Value) -> Result<(), ContentError> {
    let map = object(path, value)?;
    known_keys(path, map, &["reply", "action"])?;
    let (kind, body) = exactly_one(path, map, &["reply", "action"])?;
    let at = format!("{path}.{kind}");
    let body = object(&at, body)?;
    if kind == "reply" {
        known_keys(&at, body, &["text", "postbackData"])?;
    } else {
        known_keys(
            &at,
            body,
            &["text", "postbackData", "openUrlAction", "dialAction"],
        )?;
    }
    match body.get("text") {
        Some(t) => check_text(
            &format!("{at}.text"),
            string(&format!("{at}.text"), t)?,
            MAX_SUGGESTION_TEXT,
        )?,
        None => {
            return err(
                &format!("{at}.text"),
                "missing; the label shown to the recipient",
            )
        }
    }
    if let Some(p) = body.get("postbackData") {
        optional_text(&format!("{at}.postbackData"), p, MAX_POSTBACK)?;
    }
    if kind == "action" {
        match exactly_one(&at, body, &["openUrlAction", "dialAction"])? {
            ("openUrlAction", action) => {
                let action_path = format!("{at}.openUrlAction");
                let action = object(&action_path, action)?;
                known_keys(&action_path, action, &["url"])?;
                match action.get("url") {
                    Some(u) => url(&format!("{action_path}.url"), u, false)?,
                    None => return err(&format!("{action_path}.url"), "missing"),
                }
            }
            (_, action) => {
                let action_path = format!("{at}.dialAction");
                let action = object(&action_path, action)?;
                known_keys(&action_path, action, &["phoneNumber"])?;
                let number_path = format!("{action_path}.phoneNumber");
                match action.get("phoneNumber") {
                    Some(n) => {
                        if !super::is_e164(string(&number_path, n)?) {
                            return err(
                                &number_path,
                                "must be an E.164 number such as +48500100200",
                            );
                        }
                    }
                    None => return err(&number_path, "missing"),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fails(text: Option<&str>, rcs: Value) -> ContentError {
        validate(text, Some(&rcs)).expect_err("content should be refused")
    }

    fn card(title: &str) -> Value {
        json!({ "title": title, "description": "Zaległość 120 zł",
                "media": { "height": "MEDIUM", "contentInfo": { "fileUrl": "https://cdn.example/a.png" } },
                "suggestions": [ { "reply": { "text": "Zapłacę", "postbackData": "pay" } } ] })
    }

    #[test]
    fn text_message_with_suggestions() {
        let rcs = json!({ "suggestions": [
            { "reply": { "text": "Tak" } },
            { "action": { "text": "Zapłać", "postbackData": "pay",
                          "openUrlAction": { "url": "https://pay.example/x" } } },
            { "action": { "text": "Zadzwoń", "dialAction": { "phoneNumber": "+48500100200" } } }
        ]});
        let out = content_message(Some("Dzień dobry"), Some(&rcs)).unwrap();
        assert_eq!(out["text"], "Dzień dobry");
        // A reply without postback data answers with its text.
        assert_eq!(out["suggestions"][0]["reply"]["postbackData"], "Tak");
        assert_eq!(out["suggestions"][1]["action"]["postbackData"], "pay");
        assert_eq!(
            content_message(Some("hi"), None).unwrap(),
            json!({ "text": "hi" })
        );
        assert_eq!(
            content_message(Some("hi"), Some(&Value::Null)).unwrap(),
            json!({ "text": "hi" })
        );
    }

    #[test]
    fn standalone_card() {
        let rcs = json!({ "richCard": { "standaloneCard": {
            "cardOrientation": "HORIZONTAL", "thumbnailImageAlignment": "LEFT", "cardContent": card("Faktura") } } });
        let out = content_message(None, Some(&rcs)).unwrap();
        assert_eq!(
            out["richCard"]["standaloneCard"]["cardContent"]["title"],
            "Faktura"
        );
        assert!(out.get("text").is_none());
    }

    #[test]
    fn carousel_card() {
        let rcs = json!({ "richCard": { "carouselCard": {
            "cardWidth": "MEDIUM", "cardContents": [card("A"), card("B"), {"description": "only text"}] } } });
        validate(None, Some(&rcs)).unwrap();
    }

    #[test]
    fn file_message() {
        let rcs = json!({ "contentInfo": { "fileUrl": "https://cdn.example/f.pdf",
                                            "thumbnailUrl": "https://cdn.example/t.png", "forceRefresh": false } });
        let out = content_message(None, Some(&rcs)).unwrap();
        assert_eq!(out["contentInfo"]["fileUrl"], "https://cdn.example/f.pdf");
    }

    #[test]
    fn exactly_one_kind_of_content() {
        let e = validate(None, None).unwrap_err();
        assert_eq!(e.field, "text");
        let e = fails(
            Some("hi"),
            json!({ "contentInfo": { "fileUrl": "https://x.example/f" } }),
        );
        assert_eq!(e.field, "rcs.contentInfo");
        assert!(e.reason.contains("text and rcs.contentInfo"), "{e}");
        assert_eq!(validate(Some("  "), None).unwrap_err().field, "text");
        let long = "a".repeat(MAX_TEXT + 1);
        let e = validate(Some(&long), None).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("text", "3073 characters; at most 3072")
        );
        assert_eq!(validate(Some(&"ą".repeat(MAX_TEXT)), None), Ok(()));
        assert_eq!(fails(Some("x"), json!([1])).field, "rcs");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = fails(Some("x"), json!({ "sugestions": [] }));
        assert_eq!(e.field, "rcs.sugestions");
        assert!(e.reason.contains("unknown key `sugestions`"), "{e}");
        let mut c = card("A");
        c["subtitle"] = json!("x");
        let e = fails(
            None,
            json!({ "richCard": { "carouselCard": { "cardWidth": "SMALL", "cardContents": [card("A"), c] } } }),
        );
        assert_eq!(
            e.field,
            "rcs.richCard.carouselCard.cardContents[1].subtitle"
        );
        let e = fails(
            Some("x"),
            json!({ "suggestions": [ { "reply": { "text": "a", "url": "x" } } ] }),
        );
        assert_eq!(e.field, "rcs.suggestions[0].reply.url");
    }

    #[test]
    fn card_errors() {
        let standalone = |content: Value| json!({ "richCard": { "standaloneCard": { "cardOrientation": "VERTICAL", "cardContent": content } } });
        let e = fails(None, standalone(json!({ "title": "t".repeat(201) })));
        assert_eq!(e.field, "rcs.richCard.standaloneCard.cardContent.title");
        let e = fails(None, standalone(json!({ "description": "d".repeat(2001) })));
        assert_eq!(
            e.field,
            "rcs.richCard.standaloneCard.cardContent.description"
        );
        let e = fails(None, standalone(json!({ "suggestions": [] })));
        assert_eq!(e.field, "rcs.richCard.standaloneCard.cardContent");
        let e = fails(
            None,
            standalone(
                json!({ "media": { "height": "HUGE", "contentInfo": { "fileUrl": "https://x.example/a" } } }),
            ),
        );
        assert_eq!(
            e.field,
            "rcs.richCard.standaloneCard.cardContent.media.height"
        );
        let e = fails(
            None,
            standalone(
                json!({ "media": { "height": "TALL", "contentInfo": { "fileUrl": "http://x.example/a" } } }),
            ),
        );
        assert_eq!(
            e.field,
            "rcs.richCard.standaloneCard.cardContent.media.contentInfo.fileUrl"
        );
        assert!(e.reason.contains("https"), "{e}");
        let five = vec![json!({ "reply": { "text": "a" } }); 5];
        let e = fails(
            None,
            standalone(json!({ "title": "t", "suggestions": five })),
        );
        assert_eq!(
            e.field,
            "rcs.richCard.standaloneCard.cardContent.suggestions"
        );
        let e = fails(
            None,
            json!({ "richCard": { "standaloneCard": { "cardContent": card("a") } } }),
        );
        assert_eq!(e.field, "rcs.richCard.standaloneCard.cardOrientation");
        let e = fails(
            None,
            json!({ "richCard": { "standaloneCard": { "cardOrientation": "VERTICAL", "thumbnailImageAlignment": "LEFT", "cardContent": card("a") } } }),
        );
        assert_eq!(
            e.field,
            "rcs.richCard.standaloneCard.thumbnailImageAlignment"
        );
        let e = fails(None, json!({ "richCard": {} }));
        assert_eq!(e.field, "rcs.richCard");
        let e = fails(
            None,
            json!({ "richCard": { "standaloneCard": {}, "carouselCard": {} } }),
        );
        assert_eq!(e.field, "rcs.richCard.carouselCard");
    }

    #[test]
    fn carousel_errors() {
        let carousel = |cards: Vec<Value>| json!({ "richCard": { "carouselCard": { "cardWidth": "SMALL", "cardContents": cards } } });
        let e = fails(None, carousel(vec![card("a")]));
        assert_eq!(e.field, "rcs.richCard.carouselCard.cardContents");
        let e = fails(None, carousel(vec![card("a"); 11]));
        assert!(e.reason.contains("11 cards"), "{e}");
        let mut cards = vec![card("a"); 4];
        cards[3]["title"] = json!("t".repeat(201));
        let e = fails(None, carousel(cards));
        assert_eq!(e.field, "rcs.richCard.carouselCard.cardContents[3].title");
        let e = fails(
            None,
            json!({ "richCard": { "carouselCard": { "cardWidth": "LARGE", "cardContents": [card("a"), card("b")] } } }),
        );
        assert_eq!(e.field, "rcs.richCard.carouselCard.cardWidth");
    }

    #[test]
    fn suggestion_errors() {
        let with = |s: Value| fails(Some("x"), json!({ "suggestions": [s] }));
        assert_eq!(
            with(json!({ "reply": { "text": "x".repeat(26) } })).field,
            "rcs.suggestions[0].reply.text"
        );
        assert_eq!(
            with(json!({ "reply": {} })).field,
            "rcs.suggestions[0].reply.text"
        );
        assert_eq!(
            with(json!({ "reply": { "text": "a", "postbackData": "p".repeat(2049) } })).field,
            "rcs.suggestions[0].reply.postbackData"
        );
        assert_eq!(with(json!({})).field, "rcs.suggestions[0]");
        assert_eq!(
            with(json!({ "reply": { "text": "a" }, "action": { "text": "b" } })).field,
            "rcs.suggestions[0].action"
        );
        assert_eq!(
            with(json!({ "action": { "text": "a" } })).field,
            "rcs.suggestions[0].action"
        );
        assert_eq!(
            with(json!({ "action": { "text": "a", "openUrlAction": { "url": "ftp://x" } } })).field,
            "rcs.suggestions[0].action.openUrlAction.url"
        );
        assert_eq!(
            with(
                json!({ "action": { "text": "a", "dialAction": { "phoneNumber": "500100200" } } })
            )
            .field,
            "rcs.suggestions[0].action.dialAction.phoneNumber"
        );
        assert_eq!(
            with(
                json!({ "action": { "text": "a", "dialAction": { "phoneNumber": "+48500100200" },
                                     "openUrlAction": { "url": "https://x.example" } } })
            )
            .field,
            "rcs.suggestions[0].action.dialAction"
        );
        let twelve = vec![json!({ "reply": { "text": "a" } }); 12];
        let e = fails(Some("x"), json!({ "suggestions": twelve }));
        assert_eq!(e.field, "rcs.suggestions");
        let e = fails(Some("x"), json!({ "suggestions": {} }));
        assert_eq!(e.field, "rcs.suggestions");
    }

    #[test]
    fn file_errors() {
        assert_eq!(
            fails(None, json!({ "contentInfo": {} })).field,
            "rcs.contentInfo.fileUrl"
        );
        assert_eq!(
            fails(None, json!({ "contentInfo": { "fileUrl": "not a url" } })).field,
            "rcs.contentInfo.fileUrl"
        );
        assert_eq!(
            fails(None, json!({ "contentInfo": { "fileUrl": "https://x.example/f", "forceRefresh": "yes" } })).field,
            "rcs.contentInfo.forceRefresh"
        );
        assert_eq!(
            fails(None, json!({ "contentInfo": { "fileUrl": "https://x.example/f", "thumbnailUrl": "http://x.example/t" } })).field,
            "rcs.contentInfo.thumbnailUrl"
        );
    }
}
