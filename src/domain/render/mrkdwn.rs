//! Slack mrkdwn. Slack reads only `&`, `<` and `>` as control characters (links
//! `<https://…|label>`, mentions `<!channel>`, `<@U123>`), so every value a message
//! interpolates is escaped to `&amp;`, `&lt;`, `&gt;` (PROTOCOLS.md F.5) and can
//! neither link, nor mention, nor ping. In code spans and blocks a backtick would end
//! the code, so it is shown as `ˋ` (U+02CB); values never break a line there.
//! Emphasis marks (`*`, `_`, `~`) have no escape in mrkdwn and stay cosmetic.

use std::borrow::Cow;

/// `text` with `&`, `<` and `>` escaped (`&` first).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>']) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    )
}

/// `text` as an inline code span: escaped, on one line, unable to close the span.
pub fn code(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("`{}`", escape(&flat).replace('`', "\u{2cb}"))
}

/// Lines as a code block: escaped, unable to close the block.
pub fn code_block<S: AsRef<str>>(lines: &[S]) -> String {
    let body: Vec<String> = lines
        .iter()
        .map(|line| escape(line.as_ref()).replace('`', "\u{2cb}"))
        .collect();
    format!("```\n{}\n```", body.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_mentions_become_text() {
        assert_eq!(
            escape("<!channel> <https://evil.example|Click to approve> & more"),
            "&lt;!channel&gt; &lt;https://evil.example|Click to approve&gt; &amp; more"
        );
        assert_eq!(escape("&lt;"), "&amp;lt;");
        assert!(matches!(escape("prod/checkout"), Cow::Borrowed(_)));
    }

    #[test]
    fn code_cannot_be_closed_from_inside() {
        assert_eq!(code("a`b<c>\nd"), "`a\u{2cb}b&lt;c&gt; d`");
        assert_eq!(
            code_block(&["x ```", "<@U1>"]),
            "```\nx \u{2cb}\u{2cb}\u{2cb}\n&lt;@U1&gt;\n```"
        );
    }
}
