//! Line numbers for messages about text ciq reads from outside (test lists, JUnit reports,
//! timing and quarantine files, list commands' output): an error about such text names the
//! line at fault, so whoever wrote it can find it. Every such file is read after
//! [`strip_bom`].

/// `bytes` without a UTF-8 byte order mark at its start: editors on Windows write one, and it
/// would otherwise become part of the first line (a quarantined id that matches no test).
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// The 1-based line holding byte `at` of `bytes` (the last line for a position past the end).
pub fn line_at(bytes: &[u8], at: usize) -> usize {
    let before = bytes.get(..at).unwrap_or(bytes);
    before.iter().filter(|&&byte| byte == b'\n').count() + 1
}

/// `bytes` as UTF-8 text, or the 1-based line of the first byte that is not UTF-8.
pub fn utf8(bytes: &[u8]) -> Result<&str, usize> {
    std::str::from_utf8(bytes).map_err(|err| line_at(bytes, err.valid_up_to()))
}

/// At most 200 characters of `text`, with `...` where it was cut: enough of a line of outside
/// text to recognise it when a message quotes it.
pub fn clip(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// `text` with its control characters (line ends, a terminal's color codes) escaped as Rust
/// writes them (`\n`, `\u{1b}`): quoted in a message, outside text keeps it one plain line.
pub fn one_line(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_at(b"a\nb\nc", 0), 1);
        assert_eq!(line_at(b"a\nb\nc", 2), 2);
        assert_eq!(line_at(b"a\nb\nc", 99), 3);
        assert_eq!(utf8(b"ok\nok\n\xff"), Err(3));
        assert_eq!(utf8(b"ok\n"), Ok("ok\n"));
        assert_eq!(strip_bom(b"\xEF\xBB\xBFa\nb"), b"a\nb");
        assert_eq!(strip_bom(b"a\xEF\xBB\xBF"), b"a\xEF\xBB\xBF");
        assert_eq!(one_line("a\r\n\u{1b}[31mb é"), "a\\r\\n\\u{1b}[31mb é");
    }
}
