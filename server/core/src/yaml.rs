//! The one door to the YAML library (`serde_norway`, the maintained fork of the archived
//! `serde_yaml` 0.9, same API). Every YAML read of plexus — NAD manifests, pod manifests
//! for explain, plexusd's config — goes through here, so changing the library is a change
//! of this file. It parses only: callers bound the input first (size, and nesting with
//! [`crate::nesting::check`]).

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A YAML parse or type error.
pub type Error = serde_norway::Error;
/// A YAML value (for config keys that accept a number or a string).
pub type Value = serde_norway::Value;

/// Parses one YAML document into `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_norway::from_str(text)
}

/// The documents of a `---`-separated YAML stream, each as JSON data, in order. An
/// invalid document yields its error; iteration may go on, callers usually stop there.
pub fn documents(text: &str) -> impl Iterator<Item = Result<serde_json::Value, Error>> + '_ {
    serde_norway::Deserializer::from_str(text).map(serde_json::Value::deserialize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_yields_each_document_as_json() {
        let docs: Vec<_> = documents("a: 1\n---\n- x\n- {y: true}\n")
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            docs,
            [
                serde_json::json!({"a": 1}),
                serde_json::json!(["x", {"y": true}])
            ]
        );
    }

    #[test]
    fn an_invalid_document_is_an_error_naming_the_place() {
        let err = documents("a: [1, 2\n").next().unwrap().unwrap_err();
        assert!(err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn from_str_reads_typed_data() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct C {
            n: u32,
        }
        assert_eq!(from_str::<C>("n: 7").unwrap(), C { n: 7 });
        assert!(from_str::<C>("n: seven").is_err());
    }
}
