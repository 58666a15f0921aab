//! The JSON log line format: one object per event with `timestamp`, `level`, `fields`,
//! `target`, the current `span` and the enclosing `spans` (each with its `name` and
//! fields), like tracing-subscriber's JSON format, but always valid for strict parsers:
//! an event that carries a field twice under one key (OpenTelemetry's internal log lines
//! pass an empty message and a `message` field) keeps the first non-empty value under the
//! key and any other under `<key>.<n>`, instead of writing the key twice.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of [`crate::LogFormat::Json`] (with [`JsonFields`] for spans).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct JsonLines;

/// An event's fields, keys unique.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, key: &str, value: Value) {
        match self.0.get(key) {
            None => {
                self.0.insert(key.to_owned(), value);
            }
            Some(Value::String(s)) if s.is_empty() => {
                self.0.insert(key.to_owned(), value);
            }
            Some(_) if value == Value::String(String::new()) => {}
            Some(_) => {
                let n = (1..)
                    .find(|n| !self.0.contains_key(&format!("{key}.{n}")))
                    .unwrap_or(1);
                self.0.insert(format!("{key}.{n}"), value);
            }
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field.name(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field.name(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field.name(), Value::from(format!("{value:?}")));
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::from(timestamp));
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("fields".into(), Value::Object(fields.0));
        line.insert("target".into(), Value::from(meta.target()));
        let spans: Vec<Value> = ctx
            .event_scope()
            .into_iter()
            .flat_map(|scope| scope.from_root())
            .map(|span| {
                let mut object = span
                    .extensions()
                    .get::<FormattedFields<JsonFields>>()
                    .and_then(|f| serde_json::from_str::<Map<String, Value>>(&f.fields).ok())
                    .unwrap_or_default();
                object.insert("name".into(), Value::from(span.name()));
                Value::Object(object)
            })
            .collect();
        if let Some(current) = spans.last() {
            line.insert("span".into(), current.clone());
        }
        line.insert("spans".into(), Value::Array(spans));
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_keeps_the_first_non_empty_value_and_renames_the_rest() {
        let mut f = Fields::default();
        f.put("message", Value::from(""));
        f.put("name", Value::from("TracerProvider.GlobalSet"));
        f.put("message", Value::from("Global tracer provider is set."));
        f.put("message", Value::from("a third"));
        f.put("message", Value::from(""));
        assert_eq!(
            Value::Object(f.0),
            serde_json::json!({
                "message": "Global tracer provider is set.",
                "name": "TracerProvider.GlobalSet",
                "message.1": "a third"
            })
        );
    }
}
