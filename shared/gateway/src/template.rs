//! `google.api.http` path templates (`/v1/accounts/{id}/entries`), parsed once at start and matched
//! against every request path.
//!
//! The grammar is the one `google/api/http.proto` defines:
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! `{id}` is short for `{id=*}`: one segment. `**` matches the rest of the path and may only come last.
//! Matching compares percent-decoded segments, so `/v1/users/m%65` is `/v1/users/me`, as axum decodes
//! REST paths. [`PathTemplate::specificity`] ranks templates so that a literal segment beats a variable
//! in the same place, whatever order the rules were declared in.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    Single,
    /// `**`: the rest of the path (zero or more segments); last only.
    Rest,
}

/// A variable: which request field it sets, and which segments (`start..end`) it captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The field path, split at dots: `["id"]`, `["account", "id"]`.
    pub field_path: Vec<String>,
    start: usize,
    end: usize,
}

impl Variable {
    /// The dotted field path, as it appears in the template and in error messages.
    pub fn field(&self) -> String {
        self.field_path.join(".")
    }
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path template {template:?}: {problem}")]
pub struct TemplateError {
    template: String,
    problem: String,
}

/// How well a template fits a path, to choose between templates that both match: compared segment by
/// segment, a literal is more specific than `*`, which is more specific than `**`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity(Vec<u8>);

impl PathTemplate {
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let fail = |problem: &str| TemplateError {
            template: template.to_owned(),
            problem: problem.to_owned(),
        };
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| fail("must start with `/`"))?;
        let (body, verb) = split_verb(rest).map_err(|p| fail(&p))?;
        let mut segments = Vec::new();
        let mut variables = Vec::new();
        for token in split_top_level(body).map_err(|p| fail(&p))? {
            if let Some(inner) = token.strip_prefix('{') {
                let inner = inner
                    .strip_suffix('}')
                    .ok_or_else(|| fail("a variable must end with `}`"))?;
                let (path, pattern) = inner.split_once('=').unwrap_or((inner, "*"));
                let field_path: Vec<String> = path.split('.').map(str::to_owned).collect();
                if field_path.iter().any(|p| !is_ident(p)) {
                    return Err(fail(&format!("`{path}` is not a field path")));
                }
                if variables
                    .iter()
                    .any(|v: &Variable| v.field_path == field_path)
                {
                    return Err(fail(&format!("`{path}` is bound twice")));
                }
                let start = segments.len();
                for part in pattern.split('/') {
                    segments.push(plain_segment(part).map_err(|p| fail(&p))?);
                }
                variables.push(Variable {
                    field_path,
                    start,
                    end: segments.len(),
                });
            } else {
                segments.push(plain_segment(token).map_err(|p| fail(&p))?);
            }
        }
        if let Some(i) = segments.iter().position(|s| *s == Segment::Rest)
            && i + 1 != segments.len()
        {
            return Err(fail("`**` may only be the last segment"));
        }
        Ok(Self {
            source: template.to_owned(),
            segments,
            variables,
            verb,
        })
    }

    /// The template as written in the rule.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// The OpenAPI form: every variable as `{field.path}`, whatever its pattern.
    pub fn openapi_path(&self) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.segments.len() {
            out.push('/');
            if let Some(v) = self.variables.iter().find(|v| v.start == i) {
                out.push('{');
                out.push_str(&v.field());
                out.push('}');
                i = v.end.max(i + 1);
                continue;
            }
            out.push_str(&self.segments[i].to_string());
            i += 1;
        }
        if self.segments.is_empty() {
            out.push('/');
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }

    pub fn specificity(&self) -> Specificity {
        let mut rank: Vec<u8> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 0,
                Segment::Single => 1,
                Segment::Rest => 2,
            })
            .collect();
        // A verb is one more literal.
        rank.push(if self.verb.is_some() { 0 } else { 1 });
        Specificity(rank)
    }

    /// Matches a request path (`uri.path()`, still percent-encoded). On a match, returns each
    /// variable's dotted field path and its decoded value, or [`NotUtf8`] for a variable whose segment
    /// has a broken escape or does not decode to UTF-8: the route is the one asked for and only the value
    /// is wrong, so the caller answers 400 for that field, as REST does, not 404.
    pub fn matches(&self, path: &str) -> Option<Captures> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(verb) => rest.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => rest,
        };
        let raw: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let has_rest = self.segments.last() == Some(&Segment::Rest);
        let fixed = if has_rest {
            self.segments.len() - 1
        } else {
            self.segments.len()
        };
        // Counting first keeps the common miss cheap: nothing is decoded.
        if raw.len() < fixed || (!has_rest && raw.len() != fixed) {
            return None;
        }
        let decoded: Vec<Option<Cow<'_, str>>> = raw.iter().map(|s| percent_decode(s)).collect();
        for ((segment, value), raw) in self.segments.iter().zip(&decoded).zip(&raw) {
            match segment {
                Segment::Literal(l) if value.as_deref() == Some(l.as_str()) => {}
                Segment::Single if !raw.is_empty() => {}
                Segment::Rest => break,
                _ => return None,
            }
        }
        let captures = self
            .variables
            .iter()
            .map(|v| {
                let end = if has_rest && v.end == self.segments.len() {
                    decoded.len()
                } else {
                    v.end
                };
                let value = decoded[v.start..end]
                    .iter()
                    .map(|s| s.as_deref().ok_or(NotUtf8))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|parts| parts.join("/"));
                (v.field(), value)
            })
            .collect();
        Some(captures)
    }
}

/// What [`PathTemplate::matches`] captures: each variable's dotted field path and its value.
pub type Captures = Vec<(String, Result<String, NotUtf8>)>;

/// A captured path segment with a broken `%` escape, or whose bytes are not UTF-8 once decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Literal(l) => f.write_str(l),
            Segment::Single => f.write_str("*"),
            Segment::Rest => f.write_str("**"),
        }
    }
}

impl PartialOrd for PathTemplate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathTemplate {
    /// Most specific first; ties by the text, so that the order is total and stable.
    fn cmp(&self, other: &Self) -> Ordering {
        self.specificity()
            .cmp(&other.specificity())
            .then_with(|| self.source.cmp(&other.source))
    }
}

/// Splits a trailing `:verb` off, ignoring colons inside variables.
fn split_verb(rest: &str) -> Result<(&str, Option<String>), String> {
    let mut depth = 0usize;
    let mut colon = None;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.checked_sub(1).ok_or("unbalanced `}`")?,
            ':' if depth == 0 => colon = Some(i),
            _ => {}
        }
    }
    match colon {
        Some(i) => {
            let verb = &rest[i + 1..];
            if verb.is_empty() || verb.contains('/') {
                return Err("a verb must be a literal after the last segment".into());
            }
            Ok((&rest[..i], Some(verb.to_owned())))
        }
        None => Ok((rest, None)),
    }
}

/// Splits at the slashes that are not inside a variable.
fn split_top_level(body: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in body.char_indices() {
        match c {
            '{' if depth == 0 => depth = 1,
            '{' => return Err("variables do not nest".into()),
            '}' => depth = depth.checked_sub(1).ok_or("unbalanced `}`")?,
            '/' if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced `{`".into());
    }
    parts.push(&body[start..]);
    Ok(parts)
}

fn plain_segment(part: &str) -> Result<Segment, String> {
    match part {
        "" => Err("empty segment".into()),
        "*" => Ok(Segment::Single),
        "**" => Ok(Segment::Rest),
        literal if literal.contains(['{', '}', '*', '=']) => {
            Err(format!("`{literal}` is not a literal segment"))
        }
        literal => Ok(Segment::Literal(literal.to_owned())),
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `%XX` decoding of one path segment; `None` when an escape is broken or the result is not UTF-8.
pub fn percent_decode(segment: &str) -> Option<Cow<'_, str>> {
    if !segment.contains('%') {
        return Some(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> PathTemplate {
        PathTemplate::parse(s).expect("parses")
    }

    #[test]
    fn templates_parse() {
        let simple = t("/v1/accounts/{id}/entries");
        assert_eq!(simple.variables().len(), 1);
        assert_eq!(simple.variables()[0].field_path, ["id"]);
        assert_eq!(simple.openapi_path(), "/v1/accounts/{id}/entries");
        assert_eq!(t("/v1/accounts/{id=*}").openapi_path(), "/v1/accounts/{id}");
        assert_eq!(
            t("/v1/{name=accounts/*}:close").openapi_path(),
            "/v1/{name}:close"
        );
        assert_eq!(t("/v1/{a.b}").variables()[0].field_path, ["a", "b"]);
        for bad in [
            "v1/accounts",
            "/v1/{id",
            "/v1/id}",
            "/v1//x",
            "/v1/{1d}",
            "/v1/**/x",
            "/v1/{id}/{id}",
            "/v1/{a{b}}",
            "/v1/x:",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} must not parse");
        }
    }

    #[test]
    fn templates_match_and_capture() {
        let entries = t("/v1/accounts/{id}/entries");
        assert_eq!(
            entries.matches("/v1/accounts/12/entries"),
            Some(vec![("id".into(), Ok("12".into()))])
        );
        assert_eq!(entries.matches("/v1/accounts//entries"), None);
        assert_eq!(entries.matches("/v1/accounts/12"), None);
        assert_eq!(entries.matches("/v1/accounts/12/entries/"), None);
        assert_eq!(
            t("/v1/accounts/{id}").matches("/v1/accounts/a%20b"),
            Some(vec![("id".into(), Ok("a b".into()))])
        );
        // A variable that cannot be decoded still selects its route; only its value is refused.
        for undecodable in [
            "/v1/accounts/%zz",
            "/v1/accounts/%FF%FE",
            "/v1/accounts/1%C3",
        ] {
            assert_eq!(
                t("/v1/accounts/{id}").matches(undecodable),
                Some(vec![("id".into(), Err(NotUtf8))]),
                "{undecodable}"
            );
        }
        assert_eq!(
            t("/v1/files/{path=**}").matches("/v1/files/a/%FF/c"),
            Some(vec![("path".into(), Err(NotUtf8))])
        );
        assert_eq!(t("/v1/users/me").matches("/v1/users/m%FF"), None);
        assert_eq!(
            t("/v1/files/{path=**}").matches("/v1/files/a/b/c"),
            Some(vec![("path".into(), Ok("a/b/c".into()))])
        );
        assert_eq!(
            t("/v1/{name=accounts/*}:close").matches("/v1/accounts/7:close"),
            Some(vec![("name".into(), Ok("accounts/7".into()))])
        );
        assert_eq!(t("/v1/users/me").matches("/v1/users/m%65"), Some(vec![]));
        assert_eq!(t("/v1/users").matches("/v1/users/"), None);
    }

    #[test]
    fn a_literal_is_more_specific_than_a_variable() {
        let mut templates = [
            t("/v1/users/{id}"),
            t("/v1/users/**"),
            t("/v1/users/me"),
            t("/v1/{collection}/me"),
        ];
        templates.sort();
        let order: Vec<&str> = templates.iter().map(PathTemplate::as_str).collect();
        assert_eq!(
            order,
            [
                "/v1/users/me",
                "/v1/users/{id}",
                "/v1/users/**",
                "/v1/{collection}/me"
            ]
        );
    }
}
