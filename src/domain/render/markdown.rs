//! Markdown (CommonMark with GitHub's extensions): the incident report. A value in
//! running text has the characters that start inline syntax backslash-escaped (`\`,
//! `` ` ``, `*`, `_` at a word's edge, `[`, `]`, `<`, `&`, `|`, `~`), so it can make no
//! link, image, emphasis, HTML, entity, strikethrough or table cell; line breaks and
//! other control characters become spaces, so it can start no block (heading, list,
//! quote, fence). A value in code is fenced with more backticks than it holds.
//! Characters that matter only at a line's start (`#`, `>`, `-`, `+`, digits and `.`)
//! stay as they are: a value never starts a line.

/// Whether `c` ends or breaks a line anywhere Markdown is read.
fn breaks(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `value` for running text or a table cell.
pub fn text(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len());
    for (i, &c) in chars.iter().enumerate() {
        match c {
            c if breaks(c) => out.push(' '),
            '\\' | '`' | '*' | '[' | ']' | '<' | '&' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            // Inside a word (`error_rate`) an underscore cannot emphasise.
            '_' => {
                let word = |j: Option<usize>| {
                    j.and_then(|j| chars.get(j))
                        .is_some_and(|c| c.is_alphanumeric())
                };
                if !(word(i.checked_sub(1)) && word(Some(i + 1))) {
                    out.push('\\');
                }
                out.push('_');
            }
            c => out.push(c),
        }
    }
    out
}

/// The longest run of backticks in `s`.
fn longest_backtick_run(s: &str) -> usize {
    s.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// `value` as an inline code span, on one line.
pub fn code(value: &str) -> String {
    let flat: String = value
        .chars()
        .map(|c| if breaks(c) { ' ' } else { c })
        .collect();
    let fence = "`".repeat(longest_backtick_run(&flat) + 1);
    // A span that starts or ends with a backtick (or a space) needs a space of padding,
    // which CommonMark strips.
    let pad = if flat.starts_with(['`', ' ']) || flat.ends_with(['`', ' ']) {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{flat}{pad}{fence}")
}

/// `content` as a fenced code block with the info string `info` (ours, e.g. `bash`).
pub fn code_block(info: &str, content: &str) -> String {
    let fence = "`".repeat(longest_backtick_run(content).max(2) + 1);
    let newline = if content.ends_with('\n') { "" } else { "\n" };
    format!("{fence}{info}\n{content}{newline}{fence}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_values_read_the_same() {
        for value in [
            "us-east-1",
            "kubernetes revision 6 (v2.4.9)",
            "M2: error rate 12.4 % > 5 %",
            "error_rate at 7 %",
            "deploy #41",
        ] {
            assert_eq!(text(value), value);
        }
    }

    #[test]
    fn syntax_in_values_is_escaped_and_lines_cannot_break() {
        for (value, escaped) in [
            (
                "[Click to approve](https://evil.example)",
                "\\[Click to approve\\](https://evil.example)",
            ),
            (
                "![x](https://evil.example/p.png)",
                "!\\[x\\](https://evil.example/p.png)",
            ),
            (
                "<img src=x onerror=alert(1)>",
                "\\<img src=x onerror=alert(1)>",
            ),
            (
                "**bold** _it_ ~~s~~",
                "\\*\\*bold\\*\\* \\_it\\_ \\~\\~s\\~\\~",
            ),
            ("&lt;script&gt;", "\\&lt;script\\&gt;"),
            ("a | b", "a \\| b"),
            ("`code` \\", "\\`code\\` \\\\"),
            ("x\n# Heading\r\n- [x] done", "x # Heading  - \\[x\\] done"),
        ] {
            assert_eq!(text(value), escaped, "{value:?}");
        }
    }

    #[test]
    fn code_is_fenced_longer_than_any_backtick_run_inside() {
        assert_eq!(code("kubectl -n shop"), "`kubectl -n shop`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("``x"), "``` ``x ```");
        assert_eq!(code("a\nb"), "`a b`");
        assert_eq!(code_block("bash", "ls\n"), "```bash\nls\n```\n");
        assert_eq!(code_block("", "x\n````\ny"), "`````\nx\n````\ny\n`````\n");
    }
}
