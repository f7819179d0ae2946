//! Configuration loading (`mailprobe::config::from_str`) on arbitrary UTF-8: it must
//! never panic, its errors must display, and a configuration it accepts must keep the
//! promises `Config` documents.
//!
//! `from_str` reads the files a configuration names (`tls.ca_file`, `ca_file`,
//! `auth.password_file`) and nothing else, and it never writes. To keep the fuzzer from
//! hanging on `/dev/stdin` or exhausting memory on `/dev/zero`, inputs naming a file
//! that is not a small regular file outside /dev, /proc and /sys are skipped.
#![no_main]

use std::fmt;
use std::path::Path;

use libfuzzer_sys::{Corpus, fuzz_target};
use mailprobe::config::{self, MAX_TARGET_NAME_LEN};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    if names_an_unsafe_file(text) {
        return Corpus::Reject;
    }
    match config::from_str(text, Path::new("fuzz.yaml")) {
        Ok(config) => {
            // `- domain:` shorthands become targets only when discovery runs.
            assert!(
                !config.targets.is_empty() || !config.discover.is_empty(),
                "a config without targets"
            );
            let mut names = std::collections::HashSet::new();
            for target in &config.targets {
                assert!(
                    names.insert(target.name.clone()),
                    "duplicate {}",
                    target.name
                );
                assert!(!target.name.is_empty(), "empty target name");
                assert!(
                    target.name.chars().count() <= MAX_TARGET_NAME_LEN,
                    "{}",
                    target.name
                );
                assert!(
                    target.timeout <= target.interval,
                    "timeout > interval: {target:?}"
                );
                assert!(!target.interval.is_zero(), "zero interval: {target:?}");
            }
            assert!(config.max_concurrent_probes > 0, "no probe may run");
            let _ = config::summary(&config);
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.is_empty(), "an empty error message");
            let _ = format!("{error:?}");
        }
    }
    Corpus::Keep
});

/// Whether any scalar in the YAML (read generically) names something the config code
/// must not be made to read while fuzzing. YAML that does not parse generically reaches
/// no file either: the typed parse fails before validation reads anything.
fn names_an_unsafe_file(text: &str) -> bool {
    let Ok(Scalars(scalars)) = serde_saphyr::from_str::<Scalars>(text) else {
        return false;
    };
    scalars.iter().any(|s| is_unsafe(s))
}

fn is_unsafe(name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let path = Path::new(name);
    let Ok(meta) = std::fs::metadata(path) else {
        return false; // nothing there: reading fails at once
    };
    if meta.is_dir() {
        return false; // reading fails at once (EISDIR)
    }
    if !meta.is_file() || meta.len() > 1 << 20 {
        return true; // FIFO, device, socket, or big
    }
    match std::fs::canonicalize(path) {
        Ok(real) => ["/proc", "/sys", "/dev"]
            .iter()
            .any(|p| real.starts_with(p)),
        Err(_) => true,
    }
}

/// Every scalar of a YAML document, keys included, as text.
struct Scalars(Vec<String>);

impl<'de> Deserialize<'de> for Scalars {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut out = Vec::new();
        deserializer.deserialize_any(Collect(&mut out))?;
        Ok(Scalars(out))
    }
}

struct Collect<'a>(&'a mut Vec<String>);

impl<'de> de::DeserializeSeed<'de> for Collect<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

macro_rules! scalar {
    ($($method:ident: $type:ty),*) => {$(
        fn $method<E: de::Error>(self, v: $type) -> Result<(), E> {
            self.0.push(v.to_string());
            Ok(())
        }
    )*};
}

impl<'de> Visitor<'de> for Collect<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML")
    }
    scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128,
            visit_u128: u128, visit_f64: f64, visit_str: &str, visit_char: char);
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.0.push(String::from_utf8_lossy(v).into_owned());
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Collect(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Collect(self.0))?.is_some() {
            map.next_value_seed(Collect(self.0))?;
        }
        Ok(())
    }
}
