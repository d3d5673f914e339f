//! Masking what one customer may see of another: a name shortened to the
//! first name and the last name's initial, a number shortened to its last
//! four characters. One place, so statements, recipient look-ups and
//! notifications mask alike.

/// First name and the initial of the last name ("Anna I."); the first name
/// alone when there is no last name.
pub fn name(first: &str, last: &str) -> String {
    let initial: String = last.trim().chars().take(1).collect();
    if initial.is_empty() { first.to_owned() } else { format!("{first} {initial}.") }
}

/// The last four characters of an account or card number: enough to
/// recognise it, never the whole number. Callers add their own prefix
/// ("•••• 0012", "*0012").
pub fn last_four(number: &str) -> String {
    let count = number.chars().count();
    number.chars().skip(count.saturating_sub(4)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_the_first_name_and_an_initial() {
        assert_eq!(name("Anna", "Ivanova"), "Anna I.");
        assert_eq!(name("Иван", "Петров"), "Иван П.");
        assert_eq!(name("Anna", ""), "Anna");
        assert_eq!(name("Anna", "  "), "Anna");
    }

    #[test]
    fn numbers_keep_their_last_four_characters() {
        assert_eq!(last_four("BY20KASS30140000000000000012"), "0012");
        assert_eq!(last_four("12"), "12");
        assert_eq!(last_four(""), "");
        assert_eq!(last_four("ab€def"), "€def");
    }
}
