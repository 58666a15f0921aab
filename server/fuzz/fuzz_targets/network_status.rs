//! Fuzz target `network_status`: see [`plexus_fuzz::network_status`] for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plexus_fuzz::network_status(data));
