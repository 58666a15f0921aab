//! Fuzz target `nad_resolve`: see [`plexus_fuzz::nad_resolve`] for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plexus_fuzz::nad_resolve(data));
