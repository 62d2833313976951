//! [`strip`]: a test's output without its terminal escape sequences (colours, cursor moves,
//! window titles), for the files ciq writes. A JUnit view, a JSON reader or a Markdown page
//! shows them as noise (`�[31mRED�[0m`); a terminal, which ciq's own lines go to, keeps them.

use std::borrow::Cow;

const ESC: char = '\u{1b}';
/// The one-character forms of `ESC [`, `ESC ]` and the string terminator.
const CSI: char = '\u{9b}';
const OSC: char = '\u{9d}';
const ST: char = '\u{9c}';
const BEL: char = '\u{7}';

/// `text` without the escape sequences of ECMA-48 (which terminals follow): control sequences
/// (`ESC [` ... a final byte), strings (`ESC ]`, `ESC P`, `ESC X`, `ESC ^`, `ESC _`, up to
/// `ESC \` or BEL) and two-character escapes. Borrowed when it has none.
pub fn strip(text: &str) -> Cow<'_, str> {
    if !text.contains([ESC, CSI, OSC]) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let introducer = match c {
            ESC => chars.next(),
            CSI => Some('['),
            OSC => Some(']'),
            c => {
                out.push(c);
                continue;
            }
        };
        match introducer {
            None => {}
            Some('[') => {
                // Parameters and intermediates, then one final character.
                while chars.next_if(|c| matches!(c, ' '..='?')).is_some() {}
                chars.next_if(|c| matches!(c, '@'..='~'));
            }
            Some(']' | 'P' | 'X' | '^' | '_') => {
                while let Some(c) = chars.next() {
                    if c == BEL || c == ST || (c == ESC && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            Some(' '..='/') => {
                // `ESC ( B` and its kind: intermediates, then one final character.
                while chars.next_if(|c| matches!(c, ' '..='/')).is_some() {}
                chars.next_if(|c| matches!(c, '0'..='~'));
            }
            // A two-character escape (`ESC =`, `ESC c`), or an ESC before ordinary text.
            Some(_) => {}
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_titles_and_cursor_moves_go() {
        assert_eq!(strip("\u{1b}[31mRED\u{1b}[0m plain"), "RED plain");
        assert_eq!(strip("\u{1b}[1;38;5;196mbold\u{1b}[m"), "bold");
        assert_eq!(strip("a\u{1b}]0;title\u{7}b"), "ab");
        assert_eq!(
            strip("a\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\b"),
            "alinkb"
        );
        assert_eq!(strip("\u{1b}[2K\u{1b}[1Gprogress"), "progress");
        assert_eq!(strip("\u{1b}(Bx\u{1b}=y"), "xy");
        assert_eq!(strip("\u{9b}32mgreen\u{9b}0m"), "green");
        assert_eq!(strip("cut at the end \u{1b}["), "cut at the end ");
        assert_eq!(strip("é \t\n [31m"), "é \t\n [31m");
        assert!(matches!(strip("no escapes"), Cow::Borrowed(_)));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::property_testing::config;

    proptest! {
        #![proptest_config(config())]

        /// Whatever the text, no escape is left, and text between sequences stays in order.
        #[test]
        fn no_escape_is_left(parts in prop::collection::vec(("[^\u{1b}\u{9b}\u{9d}]{0,8}", "\u{1b}\\[[0-9;]{0,6}[A-Za-z]"), 0..8), tail in ".{0,16}") {
            let text: String = parts.iter().map(|(plain, sequence)| format!("{plain}{sequence}")).collect::<String>() + &tail;
            let stripped = strip(&text);
            prop_assert!(!stripped.contains([ESC, CSI, OSC]), "{stripped:?}");
            let plain: String = parts.iter().map(|(plain, _)| plain.as_str()).collect();
            prop_assert!(stripped.starts_with(&plain), "{stripped:?} from {text:?}");
        }
    }
}
