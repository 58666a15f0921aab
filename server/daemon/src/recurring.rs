//! A failure retried in a loop (the containerd watchers): logged as a warning when it first
//! appears or changes, at debug while the same one repeats.

/// The failure seen last, if the last attempt failed.
#[derive(Debug, Default)]
pub(crate) struct Recurring(Option<String>);

impl Recurring {
    /// Notes a failure; true when it is not the one seen last (log it as a warning).
    pub(crate) fn failed(&mut self, text: &str) -> bool {
        let new = self.0.as_deref() != Some(text);
        if new {
            self.0 = Some(text.to_owned());
        }
        new
    }

    /// Notes a success; true when a failure was pending (say it recovered).
    pub(crate) fn cleared(&mut self) -> bool {
        self.0.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::Recurring;

    #[test]
    fn a_failure_is_new_once_until_it_changes_or_clears() {
        let mut r = Recurring::default();
        assert!(!r.cleared());
        assert!(r.failed("refused"));
        assert!(!r.failed("refused"));
        assert!(r.failed("timed out"), "a different failure is new");
        assert!(r.cleared());
        assert!(r.failed("timed out"), "new again after a success");
    }
}
