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

/// `error` and its causes, as `{:#}` joins them, each said once: a cause whose words the
/// message before it already holds is left out. object_store's errors, for one, print their
/// causes in their own messages as well as returning them, down to the server's whole answer.
pub fn said_once(error: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&text);
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that prints its cause in its message and returns it too, as object_store's do.
    #[derive(Debug)]
    struct Repeating(std::io::Error);

    impl std::fmt::Display for Repeating {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "PUT /bucket/key failed: {}", self.0)
        }
    }

    impl std::error::Error for Repeating {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn every_cause_is_said_once() {
        let answer = std::io::Error::other("404: <Error>NoSuchKey</Error>");
        let error = anyhow::Error::new(Repeating(answer)).context("cannot keep the module");
        assert_eq!(
            said_once(&error),
            "cannot keep the module: PUT /bucket/key failed: 404: <Error>NoSuchKey</Error>"
        );
        let plain = anyhow::Error::new(std::io::Error::other("disk full")).context("writing x");
        assert_eq!(said_once(&plain), format!("{plain:#}"));
    }

    #[test]
    fn control_characters_are_shown_escaped_and_the_rest_as_is() {
        let guest = "refused\u{1b}]0;owned\u{7}\u{1b}[2J\rdone\n\tnext \u{9b}31m é";
        assert_eq!(
            escaped(guest),
            "refused\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{d}done\n\tnext \\u{9b}31m é"
        );
    }
}
