//! How far past an event's fields libtraceevent may read when it prints one.
//!
//! libtraceevent reads each field at its offset, and the bytes of a `__data_loc` field where its
//! value points, without checking either against the record's size: so a record is handed to it
//! only when every field lies inside the record and every `__data_loc` range too. Its
//! `__print_hex`, `__print_hex_str` and `__print_array` read as many bytes as an argument says,
//! which may be a field's value: those arguments are found in the print format here, and a
//! record is printed only when each is at most [`MAX_LENGTH`], so that the reads stay within the
//! zeros [`crate::Tep`] puts after every record ([`PADDING`] bytes: `MAX_LENGTH` elements of at
//! most 8 bytes, libtraceevent's largest). A strings's end is found in the record or at the
//! first of those zeros.

/// The largest count a print function may be given.
pub const MAX_LENGTH: u64 = 0xffff;

/// Zeros after each record handed to libtraceevent.
pub const PADDING: usize = (MAX_LENGTH as usize + 1) * 8;

/// A count a print function takes from the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Count {
    /// `REC->name`: the field's value.
    Field(String),
}

/// Why a print format's reads cannot be bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unbounded(pub String);

/// The counts `print_fmt` (the text after `print fmt: `) gives its print functions that come
/// from fields; an error for a count this cannot bound.
pub fn counts(print_fmt: &str) -> Result<Vec<Count>, Unbounded> {
    let args = arguments_part(print_fmt);
    let mut counts = Vec::new();
    for (name, count_at) in [("__print_hex_str", 1), ("__print_hex", 1), ("__print_array", 1)] {
        let mut rest = args;
        while let Some(at) = find_call(rest, name) {
            let after = &rest[at + name.len()..];
            let (inner, tail) = parenthesised(after).ok_or_else(|| Unbounded(format!("{name}: unbalanced")))?;
            let args = split_top_level(inner);
            let count = args.get(count_at).map(|a| a.trim()).unwrap_or_default();
            if let Some(field) = bounded(count)? {
                counts.push(Count::Field(field));
            }
            rest = tail;
        }
    }
    Ok(counts)
}

/// The print format's arguments: what follows its quoted format string.
fn arguments_part(print_fmt: &str) -> &str {
    let s = print_fmt.trim_start();
    let Some(body) = s.strip_prefix('"') else { return s };
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return &body[i + 1..],
            _ => escaped = false,
        }
    }
    ""
}

/// Where `name(` is called in `text` (not as the tail of a longer name).
fn find_call(text: &str, name: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = text[from..].find(name).map(|i| i + from) {
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].trim_start();
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if !before.is_some_and(ident) && after.starts_with('(') {
            return Some(at);
        }
        from = at + name.len();
    }
    None
}

/// The text inside the parentheses `text` starts with (after blanks), and what follows them.
fn parenthesised(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start().strip_prefix('(')?;
    let mut depth = 1usize;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' | '{' if !quoted => depth += 1,
            ')' | '}' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some((&text[..i], &text[i + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

/// `text` split at its commas outside parentheses, braces and quotes.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut depth, mut quoted, mut start, mut parts) = (0i32, false, 0, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' | '{' if !quoted => depth += 1,
            ')' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Whether a count argument is bounded: `Ok(None)` if by its form (a small number, a
/// `sizeof`, a `__get_dynamic_array_len` possibly divided), `Ok(Some(field))` if by the value of
/// `REC->field`, to be checked in each record.
fn bounded(count: &str) -> Result<Option<String>, Unbounded> {
    let unbounded = || Unbounded(format!("a count of {count:?}"));
    if let Some(field) = count.strip_prefix("REC->") {
        let field = field.trim();
        return match !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            true => Ok(Some(field.to_string())),
            false => Err(unbounded()),
        };
    }
    let number = match count.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => count.parse().ok(),
    };
    if let Some(n) = number {
        return if n <= MAX_LENGTH { Ok(None) } else { Err(unbounded()) };
    }
    for call in ["sizeof", "__get_dynamic_array_len", "__get_rel_dynamic_array_len"] {
        if let Some(rest) = count.strip_prefix(call) {
            let (_, tail) = parenthesised(rest).ok_or_else(unbounded)?;
            let tail = tail.trim();
            // Dividing only makes it smaller.
            let divided = tail.strip_prefix('/').is_some_and(|d| bounded(d.trim()).is_ok_and(|f| f.is_none()));
            if tail.is_empty() || divided {
                return Ok(None);
            }
        }
    }
    Err(unbounded())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_fields_are_found_and_others_bounded_by_form() {
        let kvm = r#""%x:%llx:%s (%s)%s", REC->csbase, REC->rip, __print_hex(REC->insn, REC->len), __print_symbolic(REC->flags, { 0, "real" }), REC->failed ? " failed" : """#;
        assert_eq!(counts(kvm).unwrap(), [Count::Field("len".into())]);
        let dma = r#""%s", __print_array(__get_dynamic_array(addrs), __get_dynamic_array_len(addrs) / sizeof(u64), sizeof(u64))"#;
        assert_eq!(counts(dma).unwrap(), []);
        let both = r#""%s %s", __print_hex_str(REC->a, REC->a_len), __print_hex(__get_dynamic_array(b), 16)"#;
        assert_eq!(counts(both).unwrap(), [Count::Field("a_len".into())]);
        assert_eq!(counts(r#""a \"__print_hex(x, y)\" b=%d", REC->b"#).unwrap(), [], "inside the format string");
    }

    #[test]
    fn counts_that_cannot_be_bounded_are_errors() {
        assert!(counts(r#""%s", __print_hex(REC->buf, REC->len * 2)"#).is_err());
        assert!(counts(r#""%s", __print_array(REC->buf, 100000, 4)"#).is_err());
        assert!(counts(r#""%s", __print_hex(REC->buf"#).is_err());
        assert!(counts(r#""%s", __print_hex(REC->buf)"#).is_err(), "no count");
    }
}
