//! Fuzz target `native_plan`: see [`plexus_fuzz::native_plan`] for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plexus_fuzz::native_plan(data));
