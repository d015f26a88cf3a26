//! `agora::Config::from_toml`, the parser of the node's `config.toml` (and of
//! `agora node --config FILE`).
//!
//! Asserts: errors, never panics; an accepted configuration passes `validate`,
//! serializes back to TOML, and that TOML parses to the same configuration.

#![no_main]

use agora::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let Ok(config) = Config::from_toml(text, "fuzz") else { return };
    config.validate("fuzz").expect("a parsed configuration is valid");
    let written = toml::to_string(&config).expect("a configuration serializes");
    let again = Config::from_toml(&written, "written");
    assert_eq!(again.as_ref().ok(), Some(&config), "does not read back ({again:?}):\n{written}");
});
