//! Property tests: validation never panics on arbitrary JSON, and a valid configuration renders
//! to YAML that parses back to the same configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use draas_jobs::domain::config::DrasiConfig;
use draas_jobs::domain::render::{Ports, RenderContext, effective, to_yaml};
use draas_jobs::domain::validate::parse_config;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON, a few levels deep, with keys drawn partly from drasi-server's own.
fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("port".to_owned()),
        Just("host".to_owned()),
        Just("logLevel".to_owned()),
        Just("sources".to_owned()),
        Just("queries".to_owned()),
        Just("reactions".to_owned()),
        Just("id".to_owned()),
        Just("kind".to_owned()),
        ".{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings that YAML would like to misread: specials, quotes, newlines, env references.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("yes".to_owned()),
        Just("~".to_owned()),
        Just("null".to_owned()),
        Just("0x1F".to_owned()),
        Just("${DB_PASSWORD}".to_owned()),
        Just("a: b # c".to_owned()),
        Just("- item".to_owned()),
        Just("*alias".to_owned()),
        Just("&anchor".to_owned()),
        Just("!tag x".to_owned()),
        Just("'single' \"double\"".to_owned()),
        Just("line\nbreak".to_owned()),
        Just("trailing space ".to_owned()),
        "\\PC{0,24}",
    ]
}

fn valid_config() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(tricky_string(), 1..4),
        tricky_string(),
        prop::option::of(1u16..=65535),
        prop::sample::select(vec!["trace", "debug", "info", "warn", "error"]),
    )
        .prop_map(|(props, query, port, level)| {
            let mut source = json!({"kind": "mock", "id": "s1"});
            for (i, p) in props.iter().enumerate() {
                source[format!("p{i}")] = Value::String(p.clone());
            }
            let mut c = json!({
                "logLevel": level,
                "sources": [source],
                "queries": [{"id": "q1", "query": format!("MATCH (n) WHERE n.x = {query:?} RETURN n"), "sources": [{"sourceId": "s1"}]}],
                "reactions": [{"kind": "log", "id": "r1", "queries": ["q1"], "template": query}]
            });
            if let Some(p) = port {
                c["port"] = json!(p);
            }
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn validation_never_panics_on_arbitrary_json(v in arb_json()) {
        let _ = parse_config(v);
    }

    #[test]
    fn a_valid_config_renders_to_yaml_that_parses_back_equal(v in valid_config()) {
        let config = parse_config(v).expect("generated configs are valid");
        let ports = Ports { server: Some(8100), ..Ports::default() };
        let policy = draas_jobs::domain::network::Policy::default();
        let ctx = RenderContext { instance_id: "abc", default_host: "127.0.0.1", ports: &ports, policy };
        let rendered = effective(&config, &ctx);
        let yaml = to_yaml(&rendered).unwrap();
        let back: DrasiConfig = serde_norway::from_str(&yaml).unwrap();
        prop_assert_eq!(back, rendered);
    }
}
