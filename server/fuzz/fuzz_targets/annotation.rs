//! Fuzz target `annotation`: see [`plexus_fuzz::annotation`] for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plexus_fuzz::annotation(data));
