//! `CNI_ARGS`: the `KEY=VALUE;KEY=VALUE` string a runtime passes to a plugin, parsed and
//! rendered with libcni's rules (`pkg/types/args.go`: every pair has exactly one `=`,
//! `IgnoreUnknown=1|true` tells plugins to tolerate keys they do not know).

use super::Error;

/// The key that tells a plugin to ignore keys it does not know.
pub const IGNORE_UNKNOWN: &str = "IgnoreUnknown";

/// An ordered list of `CNI_ARGS` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `K=V;K=V`. The empty string is an empty list; any pair without exactly one
    /// `=` (including an empty pair from a stray `;`) is an error, as in libcni.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.is_empty() {
            return Ok(Self::default());
        }
        let pairs = text
            .split(';')
            .map(|pair| {
                let mut it = pair.split('=');
                match (it.next(), it.next(), it.next()) {
                    (Some(k), Some(v), None) => Ok((k.to_owned(), v.to_owned())),
                    _ => Err(Error::ParseCniArgs {
                        pair: pair.to_owned(),
                    }),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { pairs })
    }

    /// Appends a pair, or replaces the value of an existing key in place.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<(), Error> {
        let (key, value) = (key.into(), value.into());
        if key.is_empty() || key.contains([';', '=']) || value.contains([';', '=']) {
            return Err(Error::RenderCniArgs { key, value });
        }
        match self.pairs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.pairs.push((key, value)),
        }
        Ok(())
    }

    /// The value of `key`, if present (first occurrence).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True when `IgnoreUnknown` is `1` or `true` (any case).
    pub fn ignore_unknown(&self) -> bool {
        self.get(IGNORE_UNKNOWN)
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }

    /// The pairs in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The `K=V;K=V` text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }
}

impl std::fmt::Display for CniArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}
