//! Fuzz target `cni_result`: see [`plexus_fuzz::cni_result`] for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plexus_fuzz::cni_result(data));
