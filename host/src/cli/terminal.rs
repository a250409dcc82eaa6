//! Text on its way to a terminal: what a guest wrote (an error, a refusal) reaches the user's
//! terminal inside the host's messages, so its control characters are shown escaped, never
//! sent as they are (an escape sequence could rewrite the screen, or the title, or hide lines).

use std::fmt::Write as _;

/// `text` with every control character but newline and tab written as `\u{…}`.
pub fn escaped(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => shown.push(c),
            c if c.is_control() => {
                let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
            }
            c => shown.push(c),
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped_and_the_rest_as_is() {
        let guest = "refused\u{1b}]0;owned\u{7}\u{1b}[2J\rdone\n\tnext \u{9b}31m é";
        assert_eq!(
            escaped(guest),
            "refused\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{d}done\n\tnext \\u{9b}31m é"
        );
    }
}
