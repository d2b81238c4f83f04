//! Where things are in a bundle's files, so that a report points at the line to edit.
//!
//! Stage: bundle load, only when something is reported. Input: the text of schema files
//! (Cedar syntax) and policy files. Output: byte ranges of declarations: an entity type, one
//! of its attributes, an action, a context attribute; the start of the k-th policy of a file.
//!
//! Cedar's own diagnostics carry their spans; cedargate's checks work on the resolved schema
//! (JSON form, no positions), so the place is found again in the text with a small tokenizer
//! that knows comments and strings. Invariant: a search never fails loudly — when nothing is
//! found, the report simply has no label.

/// A declaration in the schema (names as the resolved schema spells them, namespaced types
/// qualified): what a report about the schema points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaItem {
    EntityType(String),
    Attribute {
        entity: String,
        attr: String,
    },
    Action(String),
    /// An attribute of the routes' context record.
    ContextAttribute(String),
    /// The schema as a whole.
    Nowhere,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok<'a> {
    Ident(&'a str),
    /// A string literal's content, without the quotes (escapes kept as written).
    Str(&'a str),
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token<'a> {
    tok: Tok<'a>,
    /// Byte range in the text, quotes included for strings.
    start: usize,
    end: usize,
}

/// Splits Cedar text (schema or policies) into tokens, skipping whitespace and `//` comments.
fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '/' && chars.peek().is_some_and(|(_, n)| *n == '/') {
            for (_, n) in chars.by_ref() {
                if n == '\n' {
                    break;
                }
            }
            continue;
        }
        if c == '"' {
            let mut end = text.len();
            let mut escaped = false;
            for (j, n) in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if n == '\\' {
                    escaped = true;
                } else if n == '"' {
                    end = j + 1;
                    break;
                }
            }
            let inner = text.get(i + 1..end.saturating_sub(1)).unwrap_or_default();
            out.push(Token {
                tok: Tok::Str(inner),
                start: i,
                end,
            });
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some((j, n)) = chars.peek().copied() {
                if n.is_alphanumeric() || n == '_' {
                    end = j + n.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Token {
                tok: Tok::Ident(text.get(i..end).unwrap_or_default()),
                start: i,
                end,
            });
            continue;
        }
        out.push(Token {
            tok: Tok::Punct(c),
            start: i,
            end: i + c.len_utf8(),
        });
    }
    out
}

/// A place in one file: `(file index, byte offset, byte length)`.
pub type Place = (usize, usize, usize);

fn last_segment(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

fn is_name(t: &Tok<'_>, name: &str) -> bool {
    matches!(t, Tok::Ident(s) | Tok::Str(s) if *s == name)
}

/// The token index of the name in `entity A, B in [..] {..};` for `name`, per file.
fn entity_decl(toks: &[Token<'_>], name: &str) -> Option<usize> {
    let mut i = 0;
    while i < toks.len() {
        if toks.get(i).is_some_and(|t| t.tok == Tok::Ident("entity")) {
            let mut j = i + 1;
            while let Some(t) = toks.get(j) {
                match &t.tok {
                    Tok::Ident(s) if *s == name => return Some(j),
                    Tok::Ident(_) | Tok::Str(_) | Tok::Punct(',') => j += 1,
                    _ => break,
                }
            }
        }
        i += 1;
    }
    None
}

/// The index of the `{` that opens the record after token `from`, and of its matching `}`.
fn record_after(toks: &[Token<'_>], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    loop {
        let t = toks.get(i)?;
        match t.tok {
            Tok::Punct('{') => break,
            Tok::Punct(';') => return None,
            _ => i += 1,
        }
    }
    let open = i;
    let mut depth = 0usize;
    for (k, t) in toks.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some((open, k));
                }
            }
            _ => {}
        }
    }
    None
}

/// The token index of attribute `attr` declared directly in the record `toks[open..close]`.
fn attr_in(toks: &[Token<'_>], open: usize, close: usize, attr: &str) -> Option<usize> {
    let mut depth = 0usize;
    for k in open..close {
        let t = toks.get(k)?;
        match t.tok {
            Tok::Punct('{' | '<' | '[') => depth += 1,
            Tok::Punct('}' | '>' | ']') => depth = depth.saturating_sub(1),
            _ if depth == 1 && is_name(&t.tok, attr) => {
                let next = toks.get(k + 1).map(|n| &n.tok);
                if matches!(next, Some(Tok::Punct('?' | ':'))) {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

/// The token index of the `{` of `type name = {`.
fn common_type(toks: &[Token<'_>], name: &str) -> Option<usize> {
    (0..toks.len()).find(|&i| {
        toks.get(i).is_some_and(|t| t.tok == Tok::Ident("type"))
            && toks.get(i + 1).is_some_and(|t| is_name(&t.tok, name))
            && toks.get(i + 2).is_some_and(|t| t.tok == Tok::Punct('='))
    })
}

fn find_in(toks: &[Token<'_>], item: &SchemaItem) -> Option<usize> {
    match item {
        SchemaItem::EntityType(name) => entity_decl(toks, last_segment(name)),
        SchemaItem::Attribute { entity, attr } => {
            let decl = entity_decl(toks, last_segment(entity))?;
            record_after(toks, decl)
                .and_then(|(open, close)| attr_in(toks, open, close, attr))
                .or(Some(decl))
        }
        SchemaItem::Action(name) => {
            let mut i = 0;
            while i < toks.len() {
                if toks.get(i).is_some_and(|t| t.tok == Tok::Ident("action")) {
                    let mut j = i + 1;
                    while let Some(t) = toks.get(j) {
                        match &t.tok {
                            s if is_name(s, name) => return Some(j),
                            Tok::Ident(_) | Tok::Str(_) | Tok::Punct(',') => j += 1,
                            _ => break,
                        }
                        if matches!(t.tok, Tok::Ident("in" | "appliesTo")) {
                            break;
                        }
                    }
                }
                i += 1;
            }
            None
        }
        SchemaItem::ContextAttribute(attr) => {
            // `context: { … }` inline, or `context: T` with `type T = { … }`.
            for i in 0..toks.len() {
                let is_context = toks.get(i).is_some_and(|t| t.tok == Tok::Ident("context"))
                    && toks.get(i + 1).is_some_and(|t| t.tok == Tok::Punct(':'));
                if !is_context {
                    continue;
                }
                let body = match toks.get(i + 2).map(|t| &t.tok) {
                    Some(Tok::Punct('{')) => record_after(toks, i + 2),
                    Some(Tok::Ident(t)) => {
                        common_type(toks, t).and_then(|at| record_after(toks, at))
                    }
                    _ => None,
                };
                if let Some(found) = body.and_then(|(o, c)| attr_in(toks, o, c, attr)) {
                    return Some(found);
                }
            }
            None
        }
        SchemaItem::Nowhere => None,
    }
}

/// Finds `item` in the schema files `files` (Cedar syntax; JSON schemas are skipped).
pub fn schema_item(files: &[(&str, &str)], item: &SchemaItem) -> Option<Place> {
    for (n, (path, text)) in files.iter().enumerate() {
        if path.ends_with(".json") {
            continue;
        }
        let toks = tokens(text);
        if let Some(t) = find_in(&toks, item).and_then(|k| toks.get(k)) {
            return Some((n, t.start, t.end - t.start));
        }
    }
    None
}

/// The byte range of the effect keyword (`permit` / `forbid`) of each policy or template in a
/// policy file, in source order: the k-th entry is the policy Cedar names `policy{k}`.
pub fn policy_starts(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    for t in tokens(text) {
        match t.tok {
            Tok::Punct('(' | '{' | '[') => depth += 1,
            Tok::Punct(')' | '}' | ']') => depth = depth.saturating_sub(1),
            Tok::Ident("permit" | "forbid") if depth == 0 => out.push((t.start, t.end - t.start)),
            _ => {}
        }
    }
    out
}

/// The `"id"` string of the entity whose `uid` is `type_name::"id"` in an entities JSON file
/// (`{"uid": {"type": …, "id": …}, …}`), as a byte range. Parents have the same shape, so only
/// an object that is the value of a `"uid"` key counts.
pub fn entity_uid(text: &str, type_name: &str, id: &str) -> Option<(usize, usize)> {
    let toks = tokens(text);
    for (i, t) in toks.iter().enumerate() {
        let opens_uid = t.tok == Tok::Str("uid")
            && toks.get(i + 1).is_some_and(|n| n.tok == Tok::Punct(':'))
            && toks.get(i + 2).is_some_and(|n| n.tok == Tok::Punct('{'));
        if !opens_uid {
            continue;
        }
        let (mut ty, mut found) = (None, None);
        let mut k = i + 3;
        while let Some(key) = toks.get(k) {
            if key.tok == Tok::Punct('}') {
                break;
            }
            let value = toks.get(k + 2);
            match (&key.tok, value.map(|v| &v.tok)) {
                (Tok::Str("type"), Some(Tok::Str(v))) => ty = Some(*v),
                (Tok::Str("id"), Some(Tok::Str(v))) if *v == id => {
                    found = value.map(|v| (v.start, v.end - v.start));
                }
                _ => {}
            }
            k += 1;
        }
        if ty == Some(type_name) {
            if let Some(place) = found {
                return Some(place);
            }
        }
    }
    None
}

/// The first entity reference `` `Type::"id"` `` in a message, as (type, id).
pub fn uid_in_message(message: &str) -> Option<(String, String)> {
    message.split('`').skip(1).step_by(2).find_map(|quoted| {
        let (ty, rest) = quoted.rsplit_once("::\"")?;
        let id = rest.strip_suffix('"')?;
        (!ty.is_empty() && !ty.contains(' ')).then(|| (ty.to_owned(), id.to_owned()))
    })
}

/// The byte offset of 1-based `line` and `column` (as serde_json counts them) in `text`.
pub fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(str::len)
        .sum();
    let line_text = text.get(start..)?.split('\n').next()?;
    let col = column.saturating_sub(1).min(line_text.len());
    // Stay on a character boundary whatever the column says.
    (0..=col)
        .rev()
        .find(|c| line_text.is_char_boundary(*c))
        .map(|c| start + c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"// entity User is mentioned in a comment first
@claim("roles")
entity Role;
@claim("sub")
entity User in [Role] {
  @claim("email") email?: String,
  "nick name"?: String,
  nested: { email: Long },
};
entity Api { stage: String };
type Ctx = { sourceIp?: String, stage: String };
action "read";
action "GET /pets" in ["read"] appliesTo { principal: [User], resource: [Api], context: Ctx };
action "POST /x" appliesTo { principal: User, resource: Api, context: { inline?: Long } };
"#;

    fn at(item: SchemaItem) -> Option<&'static str> {
        let (_, start, len) = schema_item(&[("schema/a.cedarschema", SCHEMA)], &item)?;
        SCHEMA.get(start..start + len)
    }

    fn line_of(item: SchemaItem) -> usize {
        let (_, start, _) =
            schema_item(&[("schema/a.cedarschema", SCHEMA)], &item).unwrap_or((0, 0, 0));
        SCHEMA[..start].matches('\n').count() + 1
    }

    #[test]
    fn finds_declarations_not_comments() {
        assert_eq!(at(SchemaItem::EntityType("User".into())), Some("User"));
        assert_eq!(line_of(SchemaItem::EntityType("User".into())), 5);
        assert_eq!(line_of(SchemaItem::EntityType("Ns::Role".into())), 3);
        assert_eq!(
            line_of(SchemaItem::Attribute {
                entity: "User".into(),
                attr: "email".into()
            }),
            6
        );
        assert_eq!(
            at(SchemaItem::Attribute {
                entity: "User".into(),
                attr: "nick name".into()
            }),
            Some("\"nick name\"")
        );
        assert_eq!(
            line_of(SchemaItem::Attribute {
                entity: "Api".into(),
                attr: "stage".into()
            }),
            10
        );
        assert_eq!(
            at(SchemaItem::Action("GET /pets".into())),
            Some("\"GET /pets\"")
        );
        assert_eq!(line_of(SchemaItem::Action("GET /pets".into())), 13);
        assert_eq!(line_of(SchemaItem::ContextAttribute("stage".into())), 11);
        assert_eq!(line_of(SchemaItem::ContextAttribute("inline".into())), 14);
        assert_eq!(at(SchemaItem::Action("DELETE /none".into())), None);
        assert_eq!(at(SchemaItem::Nowhere), None);
    }

    #[test]
    fn an_attribute_not_in_the_body_falls_back_to_the_entity() {
        assert_eq!(
            at(SchemaItem::Attribute {
                entity: "Role".into(),
                attr: "x".into()
            }),
            Some("Role")
        );
    }

    #[test]
    fn the_second_file_is_searched_too() {
        let files = [
            ("schema/a.cedarschema", "entity A;"),
            ("schema/b.cedarschema", "\n\nentity B;"),
        ];
        assert_eq!(
            schema_item(&files, &SchemaItem::EntityType("B".into())),
            Some((1, 9, 1))
        );
    }

    #[test]
    fn policies_are_found_in_order_past_strings_and_comments() {
        let text = "// permit (this is a comment)\n@id(\"permit\")\npermit (principal, action, resource)\nwhen { \"forbid\" == \"x\" };\n\nforbid(principal, action, resource);";
        let starts = policy_starts(text);
        assert_eq!(starts.len(), 2);
        assert_eq!(text[..starts[0].0].matches('\n').count() + 1, 3);
        assert_eq!(text[..starts[1].0].matches('\n').count() + 1, 6);
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for t in [
            "\"abc",
            "entity",
            "entity User {",
            "action \"x",
            "é\"",
            "//",
        ] {
            let _ = tokens(t);
            let _ = policy_starts(t);
            let _ = schema_item(
                &[("s.cedarschema", t)],
                &SchemaItem::EntityType("User".into()),
            );
        }
    }

    #[test]
    fn entity_uids_are_found_but_not_as_parents() {
        let text = "[\n  { \"uid\": { \"type\": \"Role\", \"id\": \"admin\" }, \"parents\": [{ \"type\": \"Role\", \"id\": \"editor\" }] },\n  { \"uid\": {\"id\":\"editor\",\"type\":\"Role\"}, \"attrs\": {} }\n]";
        let (at, len) = entity_uid(text, "Role", "editor").unwrap();
        assert_eq!(&text[at..at + len], "\"editor\"");
        assert_eq!(text[..at].matches('\n').count() + 1, 3);
        assert_eq!(entity_uid(text, "User", "editor"), None);
        assert_eq!(
            uid_in_message("attribute `x` on `Role::\"writer\"` should not exist"),
            Some(("Role".to_owned(), "writer".to_owned()))
        );
        assert_eq!(uid_in_message("no entity here"), None);
    }

    #[test]
    fn line_and_column_to_offset() {
        let text = "ab\ncdé\nf";
        assert_eq!(offset_of(text, 1, 1), Some(0));
        assert_eq!(offset_of(text, 2, 2), Some(4));
        assert_eq!(offset_of(text, 3, 1), Some(8));
        // Past the end of the line: its end; inside a character: its start.
        assert_eq!(offset_of(text, 2, 40), Some(7));
        assert_eq!(offset_of(text, 2, 4), Some(5));
        assert_eq!(offset_of(text, 0, 1), None);
    }
}
