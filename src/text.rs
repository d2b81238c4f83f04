//! Text helpers: how far apart two names are, and the "did you mean" suggestion built on it
//! (the reports of validate, test and the template checks); an error and its causes on one
//! line (the logs of the key and policy fetches).
//!
//! Invariant: a suggestion is only made when the nearest candidate is close enough to be a
//! plausible typo.

/// An error and its causes on one line: the outer message alone often says only "streaming
/// error" or "error sending request".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out.replace('\n', " ")
}

/// The Levenshtein distance between `a` and `b`, in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// The candidate nearest to `name`, when it is at most `max` edits away (ties: the first).
pub fn nearest<'a, I>(name: &str, candidates: I, max: usize) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` (did you mean `X`?)` for the candidate nearest to `name`, or nothing.
pub fn did_you_mean<'a, I>(name: &str, candidates: I, max: usize) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    nearest(name, candidates, max)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("GET /pets", "GET /pet"), 1);
        assert_eq!(edit_distance("é", "e"), 1);
        let known = ["CEDARGATE_ISSUER", "CEDARGATE_AUDIENCE"];
        assert_eq!(
            did_you_mean("CEDARGATE_ISUER", known, 3),
            " (did you mean `CEDARGATE_ISSUER`?)"
        );
        assert_eq!(did_you_mean("SOMETHING_ELSE", known, 3), "");
        assert_eq!(nearest("b", ["a", "c"], 5), Some("a"));
    }
}
