//! The pages' strings, one TOML file per language under `i18n/`, embedded
//! at build time and parsed once at start. Adding a language is one more
//! file and one more line in [`LANGUAGES`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Every language the pages speak: its code, its own name (for the
/// switch) and its strings. The first is the fallback for a missing key.
pub const LANGUAGES: &[(&str, &str)] =
    &[("en", include_str!("../i18n/en.toml")), ("ru", include_str!("../i18n/ru.toml"))];

/// One language's strings, flattened (`[nav] products = …` is the key
/// `nav.products`).
#[derive(Debug)]
pub struct Strings {
    pub code: &'static str,
    map: HashMap<String, String>,
}

impl Strings {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}

/// All languages, the first being the fallback.
#[derive(Debug)]
pub struct I18n {
    pub languages: Vec<Arc<Strings>>,
}

impl I18n {
    /// Parses the embedded files. A file that does not parse is a build
    /// mistake caught by the tests, so here it only loses that language.
    pub fn load() -> I18n {
        let languages = LANGUAGES
            .iter()
            .filter_map(|(code, text)| match parse(text) {
                Ok(map) => Some(Arc::new(Strings { code, map })),
                Err(error) => {
                    tracing::error!(language = code, %error, "a language file does not parse");
                    None
                }
            })
            .collect();
        I18n { languages }
    }

    pub fn language(&self, code: &str) -> Option<Arc<Strings>> {
        self.languages.iter().find(|strings| strings.code == code).cloned()
    }

    pub fn fallback(&self) -> Option<Arc<Strings>> {
        self.languages.first().cloned()
    }

    /// The language for a request: the switch's cookie if it names one we
    /// have, else the best of `Accept-Language`, else the first.
    pub fn choose(&self, cookie: Option<&str>, accept_language: Option<&str>) -> &'static str {
        let known = |code: &str| self.languages.iter().find(|s| s.code == code).map(|s| s.code);
        if let Some(code) = cookie.and_then(known) {
            return code;
        }
        let mut offers: Vec<(u32, &str)> = accept_language
            .unwrap_or("")
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.trim().split(';');
                let tag = pieces.next()?.trim();
                let quality =
                    pieces.find_map(|p| p.trim().strip_prefix("q=")).map_or(1000, |q| parse_quality(q.trim()));
                Some((quality, tag))
            })
            .collect();
        // A stable sort keeps the browser's order among equal qualities.
        offers.sort_by_key(|offer| std::cmp::Reverse(offer.0));
        offers
            .iter()
            .filter(|(quality, _)| *quality > 0)
            .find_map(|(_, tag)| known(&tag.split('-').next().unwrap_or("").to_ascii_lowercase()))
            .or_else(|| self.languages.first().map(|s| s.code))
            .unwrap_or("en")
    }
}

/// `q=0.8` as thousandths, without floating point.
fn parse_quality(text: &str) -> u32 {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let whole: u32 = whole.parse().unwrap_or(0).min(1);
    let digits: String = fraction.chars().take(3).collect();
    let fraction: u32 = format!("{digits:0<3}").parse().unwrap_or(0);
    (whole * 1000 + fraction).min(1000)
}

/// Parses a language file into flat `section.key` strings.
pub fn parse(text: &str) -> Result<HashMap<String, String>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|error| error.to_string())?;
    let mut flat = BTreeMap::new();
    flatten("", &toml::Value::Table(table), &mut flat)?;
    Ok(flat.into_iter().collect())
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) -> Result<(), String> {
    match value {
        toml::Value::String(text) => {
            out.insert(prefix.to_owned(), text.clone());
            Ok(())
        }
        toml::Value::Table(table) => {
            for (key, value) in table {
                let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&name, value, out)?;
            }
            Ok(())
        }
        _ => Err(format!("{prefix}: only strings and tables belong in a language file")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_wins_then_the_best_accept_language_then_english() {
        let i18n = I18n::load();
        assert_eq!(i18n.choose(Some("ru"), Some("en")), "ru");
        assert_eq!(i18n.choose(Some("xx"), Some("de;q=0.9, ru-RU;q=0.8, en;q=0.1")), "ru");
        assert_eq!(i18n.choose(None, Some("ru;q=0, en")), "en");
        assert_eq!(i18n.choose(None, Some("de")), "en");
        assert_eq!(i18n.choose(None, None), "en");
    }
}
