//! A linear pre-scan that bounds how deeply a YAML or JSON text nests, run before the text
//! reaches a parser.
//!
//! libyaml (under serde_yaml) spends time quadratic in the number of open flow collections
//! (`[[[[…`), and serde_yaml's own recursion limit only applies after the whole document was
//! scanned: a 200 KB manifest took 18 s. This scan looks at each byte once and stops at the
//! first point deeper than the limit, so a hostile document is refused in linear time.
//!
//! The count is conservative, not a YAML parser: depth is the number of open flow
//! collections (`[`/`{` outside quotes and comments) plus the number of open block levels
//! (increasing indentation columns, and each compact `- ` / `? ` indicator on a line). Quoted
//! scalars, comments and the content of block scalars (`|`, `>`) are skipped. It may count a
//! level more than a parser would (a continuation line of a plain scalar), never fewer for
//! flow collections. JSON is read by the same rules (its strings are double-quoted scalars).

/// How deeply a manifest, NAD file or daemon config may nest (maps and lists together).
/// Real Pod and NAD manifests stay well under 20.
pub const MAX_DEPTH: usize = 64;

/// A text nests deeper than the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDeep {
    /// 1-based line where the limit was passed.
    pub line: usize,
    /// The limit.
    pub limit: usize,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "nesting deeper than {} levels at line {}; at most {} nested maps and lists are accepted",
            self.limit, self.line, self.limit
        )
    }
}

/// Checks that `text` (YAML or JSON) nests at most `limit` levels deep.
pub fn check(text: &str, limit: usize) -> Result<(), TooDeep> {
    let mut scan = Scan {
        limit,
        flow: 0,
        block: Vec::new(),
        quote: None,
        block_scalar: None,
        token_start: true,
    };
    for (i, line) in text.split('\n').enumerate() {
        scan.line(line.as_bytes())
            .map_err(|()| TooDeep { line: i + 1, limit })?;
    }
    Ok(())
}

struct Scan {
    limit: usize,
    /// Open flow collections.
    flow: usize,
    /// Columns of open block levels, increasing.
    block: Vec<usize>,
    /// The quote character of a quoted scalar still open at the end of the last line.
    quote: Option<u8>,
    /// Indentation of the line that opened a block scalar whose content may go on.
    block_scalar: Option<usize>,
    /// True where a new token may start (see [`Scan::rest`]).
    token_start: bool,
}

fn indentation(line: &[u8]) -> usize {
    line.iter().take_while(|&&b| b == b' ').count()
}

impl Scan {
    fn depth(&self) -> usize {
        self.block.len() + self.flow
    }

    fn over(&self) -> Result<(), ()> {
        if self.depth() > self.limit {
            Err(())
        } else {
            Ok(())
        }
    }

    fn line(&mut self, line: &[u8]) -> Result<(), ()> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let indent = indentation(line);
        if let Some(parent) = self.block_scalar {
            if indent == line.len() || indent > parent {
                return Ok(());
            }
            self.block_scalar = None;
        }
        let mut at = 0;
        if self.flow == 0 {
            // A quoted scalar in block context is taken to end with its line: counting
            // the next line as structure can only count more, never hide a bracket.
            self.quote = None;
            let rest = &line[indent..];
            if rest.is_empty() || rest[0] == b'#' || rest[0] == b'\t' {
                return Ok(());
            }
            if indent == 0 && (rest.starts_with(b"---") || rest.starts_with(b"...")) {
                self.block.clear();
                at = 3;
            } else {
                while self.block.last().is_some_and(|&c| c >= indent) {
                    self.block.pop();
                }
                self.block.push(indent);
                at = indent;
                // Compact nested collections: `- - - x`, `? - x`.
                while matches!(line.get(at), Some(b'-' | b'?'))
                    && matches!(line.get(at + 1), None | Some(b' '))
                {
                    at += 1;
                    at += indentation(&line[at..]);
                    self.block.push(at);
                    self.over()?;
                }
                self.over()?;
            }
            self.token_start = true;
        }
        self.rest(line, at, indent)
    }

    /// Scans `line[at..]` for quotes, flow collections, comments and block scalar headers.
    /// A quote, a flow collection or a block scalar only starts where a token may start
    /// (`token_start`): at a value, or after `[`, `{`, `,`, `:` in flow context; inside a
    /// plain scalar (`it's [x]`) they are text, as for the parser.
    fn rest(&mut self, line: &[u8], mut at: usize, indent: usize) -> Result<(), ()> {
        let mut prev = b' ';
        while at < line.len() {
            let b = line[at];
            at += 1;
            if let Some(q) = self.quote {
                if q == b'"' && b == b'\\' {
                    at += 1;
                } else if b == q {
                    if q == b'\'' && line.get(at) == Some(&b'\'') {
                        at += 1;
                    } else {
                        self.quote = None;
                        self.token_start = false;
                    }
                }
                prev = b;
                continue;
            }
            let blank = b == b' ' || b == b'\t';
            match b {
                b'#' if prev == b' ' || prev == b'\t' => return Ok(()),
                _ if blank => {}
                b'"' | b'\'' if self.token_start => self.quote = Some(b),
                b'[' | b'{' if self.token_start || self.flow > 0 => {
                    self.flow += 1;
                    self.over()?;
                    self.token_start = true;
                }
                b']' | b'}' if self.flow > 0 => {
                    self.flow -= 1;
                    self.token_start = false;
                }
                b',' if self.flow > 0 => self.token_start = true,
                b'|' | b'>' if self.token_start && self.flow == 0 => {
                    self.block_scalar = Some(indent);
                    return Ok(());
                }
                // `key: value`, and `"key":value` in flow context.
                b':' if matches!(line.get(at), None | Some(b' ' | b'\t'))
                    || (self.flow > 0 && matches!(prev, b'"' | b'\'' | b']' | b'}')) =>
                {
                    self.token_start = true
                }
                // A tag or anchor before a value: the value may still start after it.
                b'!' | b'&' if self.token_start => {
                    while at < line.len() && !matches!(line[at], b' ' | b'\t') {
                        at += 1;
                    }
                }
                _ => self.token_start = false,
            }
            prev = b;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str, limit: usize) -> bool {
        check(text, limit).is_ok()
    }

    #[test]
    fn flow_nesting_is_counted() {
        assert!(depth_ok("a: [[[1]]]\n", 4));
        assert!(!depth_ok("a: [[[1]]]\n", 3));
        assert!(!depth_ok(&"[".repeat(100_000), MAX_DEPTH));
        assert!(!depth_ok(&"{a: ".repeat(1000), MAX_DEPTH));
        let err = check(&format!("x: 1\ny: {}", "[".repeat(100)), 64).unwrap_err();
        assert_eq!(err, TooDeep { line: 2, limit: 64 });
        assert!(err.to_string().contains("deeper than 64 levels at line 2"));
    }

    #[test]
    fn closed_collections_do_not_add_up() {
        let text = "a: [1, [2]]\n".repeat(10_000);
        assert!(depth_ok(&text, 3));
        let json = format!("[{}]", vec!["{\"a\": [1, {\"b\": 2}]}"; 10_000].join(","));
        // The root line counts as one block level.
        assert!(depth_ok(&json, 5));
        assert!(!depth_ok(&json, 4));
    }

    #[test]
    fn block_nesting_is_counted() {
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&" ".repeat(i));
            text.push_str(&format!("k{i}:\n"));
        }
        assert!(!depth_ok(&text, 64));
        assert!(depth_ok(&text, 100));
        assert!(!depth_ok(&"- ".repeat(100_000), MAX_DEPTH));
        assert!(depth_ok("- - - x\n", 4));
        assert!(!depth_ok("- - - x\n", 3));
    }

    #[test]
    fn siblings_and_dedent_pop_levels() {
        let text = "a:\n  b:\n    c: 1\n  d: 2\ne:\n  - f\n  - g\n".repeat(1000);
        assert!(depth_ok(&text, 3));
    }

    #[test]
    fn quotes_comments_and_block_scalars_are_skipped() {
        let text = r#"
a: "[[[[[[[[[["
b: '{{{{{{{{ it''s [[['
c: it's [not [a [flow
d: # [[[[[[[[[[
e: |
  {"x": [[[[[[[[[[[[
  [[[[[[[[[[[[[[[[[
f: >-
    [[[[[[[[[[
g: "multi
  line [[[[[[[[[[[ \" [[[["
"#;
        assert!(depth_ok(text, 2), "{:?}", check(text, 2));
    }

    #[test]
    fn real_manifests_pass() {
        let pod = r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations:
    k8s.v1.cni.cncf.io/networks: '[{"name": "a", "ips": ["10.0.0.1/24"]}]'
spec:
  containers:
  - name: c
    env:
    - name: X
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
"#;
        assert!(depth_ok(pod, 8));
    }
}
