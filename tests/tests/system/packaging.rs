//! The files the packages install beside the programs must not drift from the code:
//! `packaging/agent.toml.example` names every key of the agent's configuration file and no
//! other, each optional one with its real default, and `packaging/easyisp-central.default`
//! documents every flag of `easyisp-central serve`.
//!
//! The example writes optional keys as comments (`# key = default`) and required ones as
//! values, so it loads as shipped; the tests uncomment it to check the rest.

use easyisp_agent::config::{Config, RawAgent, RawCentral, RawConfig, RawRouter};
use easyisp_tests::binaries::workspace_bin;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .join(relative)
}

fn read_repo_file(relative: &str) -> String {
    let path = repo_file(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A line of the example that names a key: `key = …`, or `# key = …` when commented out.
fn key_of(line: &str) -> Option<(&str, bool)> {
    let (commented, rest) = match line.strip_prefix('#') {
        Some(rest) => (true, rest.strip_prefix(' ').unwrap_or(rest)),
        None => (false, line),
    };
    let (key, _) = rest.split_once(" = ")?;
    let is_key = !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    is_key.then_some((key, commented))
}

/// A section header: `[name]`, or `# [name]` when commented out.
fn section_of(line: &str) -> Option<&str> {
    let line = line.strip_prefix("# ").unwrap_or(line);
    line.strip_prefix('[')?.strip_suffix(']')
}

/// Every key of the example by section, commented or not.
fn example_keys(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut section = None;
    for line in text.lines() {
        if let Some(name) = section_of(line) {
            section = Some(name.to_string());
            keys.entry(name.to_string()).or_default();
        } else if let Some((key, _)) = key_of(line) {
            let section = section
                .clone()
                .unwrap_or_else(|| panic!("key {key} before any [section]"));
            assert!(
                keys.entry(section.clone()).or_default().insert(key.into()),
                "[{section}] {key} appears twice"
            );
        }
    }
    keys
}

/// The example with the commented keys (and section headers) of `sections` uncommented.
fn uncomment(text: &str, sections: &[&str]) -> (String, usize) {
    let mut out = String::new();
    let mut section: Option<&str> = None;
    let mut uncommented = 0;
    for line in text.lines() {
        let mut line = line;
        if let Some(name) = section_of(line) {
            section = Some(name);
            if sections.contains(&name) {
                line = line.strip_prefix("# ").unwrap_or(line);
            }
        } else if let Some((_, true)) = key_of(line)
            && section.is_some_and(|s| sections.contains(&s))
        {
            line = line.trim_start_matches('#').trim_start();
            uncommented += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, uncommented)
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The field names a serde-derived struct accepts, as its `Deserialize` impl declares them.
fn field_names<T: serde::de::DeserializeOwned>() -> BTreeSet<String> {
    match T::deserialize(FieldNames) {
        Err(Captured(Some(fields))) => fields.iter().map(|f| f.to_string()).collect(),
        Err(Captured(None)) => panic!("{} is not a struct", std::any::type_name::<T>()),
        Ok(_) => unreachable!("FieldNames never yields a value"),
    }
}

/// A deserializer that answers every request with an error carrying the struct's field list.
struct FieldNames;

#[derive(Debug)]
struct Captured(Option<&'static [&'static str]>);

impl std::fmt::Display for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for Captured {}

impl serde::de::Error for Captured {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Captured(None)
    }
}

impl<'de> serde::Deserializer<'de> for FieldNames {
    type Error = Captured;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Captured> {
        Err(Captured(None))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Captured> {
        Err(Captured(Some(fields)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[test]
fn the_agent_example_config_loads_as_shipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    write_private(&path, &read_repo_file("packaging/agent.toml.example"));
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        config.central.is_none(),
        "[central] is commented out: enroll writes it"
    );
}

#[test]
fn the_agent_example_config_names_every_key_and_no_other() {
    let keys = example_keys(&read_repo_file("packaging/agent.toml.example"));
    let sections: BTreeSet<String> = keys.keys().cloned().collect();
    assert_eq!(sections, field_names::<RawConfig>(), "sections");
    assert_eq!(keys["agent"], field_names::<RawAgent>(), "[agent] keys");
    assert_eq!(keys["router"], field_names::<RawRouter>(), "[router] keys");
    assert_eq!(
        keys["central"],
        field_names::<RawCentral>(),
        "[central] keys"
    );
}

#[test]
fn the_agent_example_config_shows_the_real_defaults() {
    let text = read_repo_file("packaging/agent.toml.example");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    write_private(&path, &text);
    let as_shipped = format!("{:?}", Config::load(&path).unwrap());

    let (explicit, uncommented) = uncomment(&text, &["agent", "router"]);
    assert!(uncommented >= 8, "only {uncommented} defaults found");
    write_private(&path, &explicit);
    let with_defaults_written = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        format!("{with_defaults_written:?}"),
        as_shipped,
        "a commented value in packaging/agent.toml.example differs from the default in agent/src/config.rs"
    );
}

#[test]
fn the_agent_example_central_section_is_well_formed() {
    let text = read_repo_file("packaging/agent.toml.example");
    let (all, uncommented) = uncomment(&text, &["central"]);
    assert!(uncommented >= 4, "only {uncommented} [central] keys found");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    write_private(&path, &all);
    // RawConfig only: the example's CA certificate is a placeholder that Config would refuse.
    let raw = RawConfig::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let central = raw.central.expect("[central] uncommented");
    assert!(central.url.starts_with("https://"));
    assert!(central.mqtt_url.is_some_and(|u| u.starts_with("mqtts://")));
    assert!(central.mqtt_password.is_some() && central.ca_pem.is_some());
}

/// The `--flags` of a help text or a default file: `--word` not inside another word.
fn flags(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        if text[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '-') {
            continue;
        }
        let name: String = text[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '-')
            .collect();
        if !name.is_empty() {
            found.insert(format!("--{name}"));
        }
    }
    found
}

fn serve_help() -> String {
    let output = std::process::Command::new(workspace_bin("easyisp-central"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_central_default_file_documents_every_serve_flag_and_variable() {
    let help = serve_help();
    let default_file = read_repo_file("packaging/easyisp-central.default");
    let mut in_help = flags(&help);
    in_help.remove("--help");
    assert!(
        in_help.contains("--http") && in_help.contains("--mqtt"),
        "{help}"
    );
    let mut documented = flags(&default_file);
    documented.remove("--help");
    let missing: Vec<_> = in_help.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "packaging/easyisp-central.default does not describe {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&in_help).collect();
    assert!(
        stale.is_empty(),
        "packaging/easyisp-central.default describes flags that serve does not have: {stale:?}"
    );
    for word in help.split(|c: char| !(c.is_ascii_uppercase() || c == '_')) {
        if word.starts_with("EASYISP_") {
            assert!(
                default_file.contains(word),
                "packaging/easyisp-central.default does not mention {word}"
            );
        }
    }
}

/// The words of `EASYISP_CENTRAL_ARGS=` in `text`, as systemd splits them: from the unit's
/// `Environment="EASYISP_CENTRAL_ARGS=…"` or the environment file's `EASYISP_CENTRAL_ARGS="…"`.
fn central_args(text: &str) -> Vec<String> {
    let value = text
        .lines()
        .find_map(|l| {
            l.trim_start_matches("Environment=")
                .trim_start_matches('"')
                .strip_prefix("EASYISP_CENTRAL_ARGS=")
        })
        .expect("an EASYISP_CENTRAL_ARGS= line");
    value
        .trim_matches('"')
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn the_default_serve_flags_of_the_unit_and_the_default_file_are_accepted() {
    let from_file = central_args(&read_repo_file("packaging/easyisp-central.default"));
    let from_unit = central_args(&read_repo_file("systemd/easyisp-central.service"));
    assert_eq!(
        from_file, from_unit,
        "the unit's default and the file's differ"
    );
    // Flags are parsed (and their values checked) as they come; --help then stops before
    // anything starts.
    let output = std::process::Command::new(workspace_bin("easyisp-central"))
        .arg("serve")
        .args(&from_file)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "serve {from_file:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
