use super::email::{check_attachments, encoded_len};
use super::schedule::parse_time;
use super::*;
use crate::http::error::ApiError;

fn tenant() -> Tenant {
    Tenant {
        name: "acme".into(),
        senders: vec!["ACME".into()],
        ..Default::default()
    }
}

fn rules() -> Rules {
    Rules {
        region: phonenumber::country::Id::from_str("PL").ok(),
        max_segments: 3,
        max_text_chars: 1000,
        max_schedule_ms: 365 * 86_400_000,
        max_attachments_bytes: 1000,
    }
}

fn check(json: &str) -> Result<Valid, ApiError> {
    Ok(validate(
        parse_request(json)?,
        &tenant(),
        &rules(),
        Partitions::new(16),
        1_000,
        None,
    )?)
}

#[test]
fn callback_events_pick_the_changes_posted() {
    let cb = r#""callback_url":"https://acme.example/cb""#;
    let v = check(&format!(
        r#"{{"channel":"sms","to":"501234567","text":"hi",{cb}}}"#
    ))
    .unwrap();
    assert_eq!(v.callbacks, Callbacks::All);
    let v = check(r#"{"channel":"sms","to":"501234567","text":"hi"}"#).unwrap();
    assert_eq!(v.callbacks, Callbacks::None, "no URL, no callbacks");
    let v = check(&format!(
        r#"{{"channel":"sms","to":"501234567","text":"hi",{cb},"callback_events":["delivered","failed"]}}"#
    ))
    .unwrap();
    assert_eq!(
        v.callbacks,
        Callbacks::Only(vec![Status::Delivered, Status::Failed])
    );
    for bad in [r#"[]"#, r#"["accepted"]"#, r#"["delivrd"]"#] {
        let e = check(&format!(
            r#"{{"channel":"sms","to":"501234567","text":"hi",{cb},"callback_events":{bad}}}"#
        ))
        .unwrap_err();
        assert_eq!(
            (e.status, e.code, e.field.as_deref()),
            (422, "invalid-value", Some("callback_events")),
            "{bad}"
        );
    }
    // The tenant's default, and a message's own list winning over it.
    let mut t = tenant();
    t.callback_url = Some("https://acme.example/cb".into());
    t.callback_events = Some(vec!["delivered".into()]);
    let run = |json: &str| {
        validate(
            parse_request(json).unwrap(),
            &t,
            &rules(),
            Partitions::new(16),
            1_000,
            None,
        )
        .unwrap()
        .callbacks
    };
    assert_eq!(
        run(r#"{"channel":"sms","to":"501234567","text":"hi"}"#),
        Callbacks::Only(vec![Status::Delivered])
    );
    assert_eq!(
        run(r#"{"channel":"sms","to":"501234567","text":"hi","callback_events":["read"]}"#),
        Callbacks::Only(vec![Status::Read])
    );
    // Every status a message can move to, and nothing else, can be asked for.
    let movable: Vec<&str> = Status::ALL
        .iter()
        .filter(|s| Status::ALL.iter().any(|f| f.can_move_to(**s)))
        .map(|s| s.as_str())
        .collect();
    assert_eq!(movable, goniec_config::CALLBACK_EVENTS);
}

#[test]
fn normalises_polish_numbers() {
    let v = check(r#"{"channel":"sms","to":"501 234 567","text":"hi"}"#).unwrap();
    assert_eq!(v.data.to, "+48501234567");
    let v = check(r#"{"channel":"sms","to":"+48 (501) 234-567","text":"hi"}"#).unwrap();
    assert_eq!(v.data.to, "+48501234567");
}

#[test]
fn refuses_bad_numbers_with_specific_codes() {
    let e = check(r#"{"channel":"sms","to":"12","text":"hi"}"#).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("invalid-number", Some("to")));
    let e = check(r#"{"channel":"sms","to":"+48abc","text":"hi"}"#).unwrap_err();
    assert_eq!(e.code, "invalid-number");
    // A Warsaw landline.
    let e = check(r#"{"channel":"sms","to":"+48226543210","text":"hi"}"#).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("not-mobile", Some("to")));
}

#[test]
fn json_shape_errors_name_the_field() {
    let e = check(r#"{"channel":"sms","text":"hi"}"#).unwrap_err();
    assert_eq!(
        (e.status, e.code, e.field.as_deref()),
        (422, "missing-field", Some("to"))
    );
    let e =
        check(r#"{"channel":"sms","to":"+48501234567","text":"hi","colour":"red"}"#).unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("unknown-field", Some("colour"))
    );
    let e = check(r#"{"channel":"fax","to":"+48501234567","text":"hi"}"#).unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("invalid-value", Some("channel"))
    );
    let e = check(r#"{"channel":"sms","to":48501234567,"text":"hi"}"#).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), ("invalid-type", Some("to")));
    let e = check(r#"{"channel":"email","to":"a@b.pl","email":{"subject":"x","colour":1}}"#)
        .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("unknown-field", Some("email.colour"))
    );
    let e = check(r#"{"channel":"sms","#).unwrap_err();
    assert_eq!((e.status, e.code), (400, "malformed-json"));
}

#[test]
fn text_rules() {
    let e = check(r#"{"channel":"sms","to":"+48501234567","text":"  "}"#).unwrap_err();
    assert_eq!(e.code, "empty-text");
    let long = "ł".repeat(300);
    let e = check(&format!(
        r#"{{"channel":"sms","to":"+48501234567","text":"{long}"}}"#
    ))
    .unwrap_err();
    assert_eq!(e.code, "too-many-segments");
    assert!(e.detail.contains("transliterate"));
    let v = check(&format!(
        r#"{{"channel":"sms","to":"+48501234567","text":"{long}","transliterate":true}}"#
    ))
    .unwrap();
    assert!(v.data.transliterated);
    assert_eq!(v.data.encoding.as_deref(), Some("gsm7"));
    assert_eq!(v.data.segments, 2);
    let v = check(r#"{"channel":"sms","to":"+48501234567","text":"Zażółć"}"#).unwrap();
    assert_eq!(
        (v.data.encoding.as_deref(), v.data.segments),
        (Some("ucs2"), 1)
    );
}

#[test]
fn templates() {
    let v = check(r#"{"channel":"sms","to":"+48501234567","template":"Dzień dobry {{ first_name }}, {{amount}} zł","vars":{"first_name":"Jan","amount":120.5}}"#).unwrap();
    assert_eq!(v.data.text.as_deref(), Some("Dzień dobry Jan, 120.5 zł"));
    let e =
        check(r#"{"channel":"sms","to":"+48501234567","template":"{{x}}","vars":{}}"#).unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("missing-variable", Some("vars.x"))
    );
    // Numbers as written, never as floats.
    for (raw, shown) in [
        ("18446744073709551616", "18446744073709551616"),
        ("-0", "-0"),
        ("120.50", "120.50"),
        ("1e3", "1e3"),
        ("7", "7"),
    ] {
        let j = format!(
            r#"{{"channel":"sms","to":"+48501234567","template":"Kwota {{{{a}}}}","vars":{{"a":{raw}}}}}"#
        );
        assert_eq!(
            check(&j).unwrap().data.text.unwrap(),
            format!("Kwota {shown}")
        );
    }
    let e = check(r#"{"channel":"sms","to":"+48501234567","template":"{{a}}","vars":{"a":[1]}}"#)
        .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("invalid-type", Some("vars.a"))
    );
}

/// A message with `vars` written from `entries` (name, raw JSON value).
fn with_vars(entries: impl Iterator<Item = (String, String)>) -> String {
    let vars: Vec<String> = entries
        .map(|(name, value)| format!("{}:{value}", serde_json::to_string(&name).unwrap()))
        .collect();
    format!(
        r#"{{"channel":"sms","to":"+48501234567","template":"{{{{v0}}}}","vars":{{{}}}}}"#,
        vars.join(",")
    )
}

#[test]
fn vars_are_bounded_in_count_name_and_size() {
    let code = |json: &str| {
        check(json)
            .map(|v| v.data.text.unwrap_or_default())
            .map_err(|e| (e.code, e.field.unwrap_or_default()))
    };
    let n = |count: usize| (0..count).map(|i| (format!("v{i}"), "1".to_string()));
    assert_eq!(code(&with_vars(n(MAX_VARS))), Ok("1".into()));
    assert_eq!(
        code(&with_vars(n(MAX_VARS + 1))),
        Err(("too-many-vars", "vars".into()))
    );
    // A million entries: refused the same way (the parser skips past the limit).
    assert_eq!(
        code(&with_vars(n(1_000_000))),
        Err(("too-many-vars", "vars".into()))
    );
    // Repeating a name is not a new entry.
    let repeated = n(MAX_VARS).chain(std::iter::repeat_n(("v1".into(), "2".into()), 50));
    assert!(code(&with_vars(repeated)).is_ok());

    let long = "ż".repeat(MAX_VAR_NAME_CHARS + 1);
    assert_eq!(
        code(&with_vars(n(1).chain([(long, "1".into())]))),
        Err(("var-name-too-long", "vars".into()))
    );
    let longest = "ż".repeat(MAX_VAR_NAME_CHARS);
    assert!(code(&with_vars(n(1).chain([(longest, "1".into())]))).is_ok());

    // One value over the byte budget, and many that add up past it.
    let big = format!("\"{}\"", "a".repeat(MAX_VARS_BYTES));
    assert_eq!(
        code(&with_vars(n(1).chain([("big".into(), big)]))),
        Err(("vars-too-large", "vars".into()))
    );
    let quarter = format!("\"{}\"", "a".repeat(MAX_VARS_BYTES / 4));
    let many = n(1).chain((0..4).map(|i| (format!("q{i}"), quarter.clone())));
    assert_eq!(
        code(&with_vars(many)),
        Err(("vars-too-large", "vars".into()))
    );
    let nested = format!("[{}]", vec!["[1,2,3]"; 4000].join(","));
    assert_eq!(
        code(&with_vars(n(1).chain([("deep".into(), nested)]))),
        Err(("vars-too-large", "vars".into()))
    );

    // Shape errors still name the field.
    assert_eq!(
        code(r#"{"channel":"sms","to":"+48501234567","template":"x","vars":5}"#),
        Err(("invalid-type", "vars".into()))
    );
    // The limit is checked before anything else about the message.
    let bad_number = with_vars(n(MAX_VARS + 1)).replace("+48501234567", "+48 123");
    assert_eq!(code(&bad_number), Err(("too-many-vars", "vars".into())));
}

#[test]
fn contract_gaps_are_refused() {
    let code = |json: &str| {
        let e = check(json).unwrap_err();
        (e.code, e.field)
    };
    // An array is not a message (serde would read it as the fields in order).
    assert_eq!(
        parse_request(r#"["sms","+48501234567","x"]"#)
            .unwrap_err()
            .code,
        "invalid-type"
    );
    // Offsets beyond ±23:59.
    for t in ["2030-01-01T09:00:00+25:59", "2030-01-01T09:00:00-24:00"] {
        let j = format!(r#"{{"channel":"sms","to":"+48501234567","text":"x","send_at":"{t}"}}"#);
        assert_eq!(
            code(&j),
            ("invalid-timestamp", Some("send_at".into())),
            "{t}"
        );
    }
    assert!(parse_time("2030-01-01T09:00:00+23:59", "send_at").is_ok());
    assert!(parse_time("2030-01-01T09:00:00-05:00", "send_at").is_ok());
    // Nothing visible, or NUL.
    for text in ["\\u0000", "\\u200b\\u200b", " \\u00ad\\u2060 "] {
        let j = format!(r#"{{"channel":"sms","to":"+48501234567","text":"{text}"}}"#);
        let (c, _) = code(&j);
        assert!(c == "empty-text" || c == "invalid-text", "{text}: {c}");
    }
    assert_eq!(
        code(r#"{"channel":"sms","to":"+48501234567","text":"a\u0000b"}"#),
        ("invalid-text", Some("text".into()))
    );
    assert_eq!(
        code(
            r#"{"channel":"email","to":"jan@example.com","email":{"subject":"s","html":"<p>a\u0000</p>"}}"#
        ),
        ("invalid-text", Some("email.html".into()))
    );
    assert_eq!(
        code(
            r#"{"channel":"email","to":"jan@example.com","email":{"subject":"\u200b","text":"x"}}"#
        ),
        ("empty-text", Some("email.subject".into()))
    );
    // Tabs and line breaks are text.
    assert!(check(r#"{"channel":"sms","to":"+48501234567","text":"a\tb\r\nc"}"#).is_ok());
}

#[test]
fn attachments_count_as_sent() {
    assert_eq!(encoded_len(0), 0);
    assert_eq!(encoded_len(57), 78); // one full line: 76 characters + CRLF
    assert_eq!(encoded_len(3 * 1024 * 1024), 4 * 1024 * 1024 + 2 * 55189);
    use base64::Engine;
    let att = |n: usize| {
        let content = base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        AttachmentData {
            filename: "a.pdf".into(),
            content_type: "application/pdf".into(),
            content,
        }
    };
    // 800 bytes decoded are about 1,100 as sent: over a 1,000-byte limit.
    assert!(check_attachments(&[att(700)], 1000).is_ok());
    assert_eq!(
        check_attachments(&[att(800)], 1000).unwrap_err().code,
        "attachments-too-large"
    );
}

#[test]
fn senders_are_checked_for_shape() {
    // Registration is checked at screening (tests/antifraud.rs); here the shape.
    assert!(check(r#"{"channel":"sms","to":"+48501234567","text":"x","from":"ACME"}"#).is_ok());
    for bad in [
        r#"{"channel":"sms","to":"+48501234567","text":"x","from":"AC\nME"}"#,
        r#"{"channel":"sms","to":"+48501234567","text":"x","from":" "}"#,
        r#"{"channel":"email","to":"jan@example.com","text":"x","email":{"subject":"s"},"from":"a@b.pl\r\nBcc: x@y.pl"}"#,
        r#"{"channel":"email","to":"jan@example.com","text":"x","email":{"subject":"s"},"from":"not an address"}"#,
    ] {
        let e = check(bad).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid-sender", Some("from")),
            "{bad}"
        );
    }
    assert!(check(
        r#"{"channel":"email","to":"jan@example.com","text":"x","email":{"subject":"s"},"from":"ACME Windykacja <windykacja@acme.pl>"}"#
    )
    .is_ok());
}

#[test]
fn email_rules() {
    let v = check(r#"{"channel":"email","to":"Jan@Example.COM","email":{"subject":"Wyciąg","html":"<p>x</p>"}}"#).unwrap();
    assert_eq!(v.data.to, "Jan@example.com");
    for bad in [
        "jan",
        "jan@",
        "@x.pl",
        "jan@localhost",
        "a..b@x.pl",
        "jan@-x.pl",
    ] {
        let e = check(&format!(
            r#"{{"channel":"email","to":"{bad}","email":{{"subject":"s","html":"h"}}}}"#
        ))
        .unwrap_err();
        assert_eq!(e.code, "invalid-email", "{bad}");
    }
    let e = check(r#"{"channel":"email","to":"a@b.pl","email":{"subject":"s"}}"#).unwrap_err();
    assert_eq!(e.code, "empty-text");
}

#[test]
fn times() {
    // `now` is 1970-01-01T00:00:01Z in these tests; retention allows a year ahead.
    let v = check(
        r#"{"channel":"sms","to":"+48501234567","text":"x","send_at":"1970-06-01T10:00:00+01:00"}"#,
    )
    .unwrap();
    assert_eq!(v.data.send_at, Some(13078800000));
    let e = check(
        r#"{"channel":"sms","to":"+48501234567","text":"x","send_at":"2099-01-01T10:00:00+01:00"}"#,
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("invalid-value", Some("send_at"))
    );
    let e = check(r#"{"channel":"sms","to":"+48501234567","text":"x","send_at":"tomorrow"}"#)
        .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("invalid-timestamp", Some("send_at"))
    );
    let e = check(
        r#"{"channel":"sms","to":"+48501234567","text":"x","valid_until":"1970-01-01T00:00:00Z"}"#,
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("valid_until"));
}

#[test]
fn callback_urls_refuse_internal_targets() {
    for bad in [
        "ftp://x.pl/",
        "http://127.0.0.1/",
        "http://10.1.2.3/",
        "http://[::1]/",
        "http://localhost:8080/",
        "http://169.254.169.254/latest",
        "http://user:pw@x.pl/",
        "http://[fd00::1]/",
        "http://100.64.0.1/",
        // IPv4 carried in IPv6 literals (issue 12, item 7).
        "http://[64:ff9b::a9fe:a9fe]/latest",
        "http://[::ffff:127.0.0.1]/",
        "http://[2002:7f00:0001::]/",
        "http://[::7f00:1]/",
        "http://[::ffff:0:a00:1]/",
        "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/",
        "http://[fe80::1]/",
        "http://[fec0::1]/",
        "http://[ff02::1]/",
        "http://[::]/",
        "http://[2001:db8::1]/",
    ] {
        let err = ApiError::from(check_callback_url(bad, false).unwrap_err());
        assert_eq!(
            (err.status, err.code),
            (422, "invalid-callback-url"),
            "{bad}"
        );
    }
    for good in [
        "https://hooks.example.com/goniec",
        "http://8.8.8.8/cb",
        "http://[2001:4860:4860::8888]/cb",
        "http://[64:ff9b::808:808]/cb",
    ] {
        assert!(check_callback_url(good, false).is_ok(), "{good}");
    }
    assert!(check_callback_url("http://127.0.0.1:9000/cb", true).is_ok());
    assert!(check_callback_url("http://[64:ff9b::a9fe:a9fe]/", true).is_ok());
}
