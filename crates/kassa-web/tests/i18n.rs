//! Every language file has exactly the same keys, and every key the
//! templates and the code ask for exists: a missing string is a failure
//! here, never an untranslated key on a page.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr, missing_debug_implementations)]

use std::collections::BTreeSet;

fn keys_of(text: &str) -> BTreeSet<String> {
    kassa_web::i18n::parse(text).expect("the language file parses").into_keys().collect()
}

#[test]
fn every_language_has_every_key() {
    let (first, first_text) = kassa_web::i18n::LANGUAGES[0];
    let reference = keys_of(first_text);
    for (code, text) in &kassa_web::i18n::LANGUAGES[1..] {
        let keys = keys_of(text);
        let missing: Vec<_> = reference.difference(&keys).collect();
        let extra: Vec<_> = keys.difference(&reference).collect();
        assert!(missing.is_empty(), "{code} lacks keys {first} has: {missing:?}");
        assert!(extra.is_empty(), "{code} has keys {first} lacks: {extra:?}");
    }
}

/// The literal keys used as `t("…")` in the templates and sources.
fn used_keys() -> BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut used = BTreeSet::new();
    for dir in ["templates", "src"] {
        let mut stack = vec![root.join(dir)];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for marker in ["t(\"", "general(ctx, \"", "message_page(&ctx, StatusCode::FORBIDDEN, \""] {
                for piece in text.split(marker).skip(1) {
                    let key = piece.split('"').next().unwrap_or("");
                    if !key.is_empty() && key.contains('.') && !key.contains(' ') && !key.contains('{') {
                        used.insert(key.to_owned());
                    }
                }
            }
            // Label keys given to fields: `Field::new("name", "field.x", …)` and `.hint("field.y")`.
            for marker in ["\", \"field.", ".hint(\"field."] {
                for piece in text.split(marker).skip(1) {
                    let key = piece.split('"').next().unwrap_or("");
                    used.insert(format!("field.{key}"));
                }
            }
        }
    }
    used
}

#[test]
fn every_key_the_pages_use_exists() {
    let used = used_keys();
    assert!(used.len() > 40, "the scan found the keys: {used:?}");
    for (code, text) in kassa_web::i18n::LANGUAGES {
        let keys = keys_of(text);
        let missing: Vec<_> = used.iter().filter(|key| !keys.contains(*key)).collect();
        assert!(missing.is_empty(), "{code} lacks keys the pages use: {missing:?}");
    }
}
