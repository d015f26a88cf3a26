//! `agora cargo …`: import `.crate` files, print the cargo configuration that
//! uses the node, and hand cargo the node's current token.

use std::path::{Path, PathBuf};

use agora::Published;
use anyhow::{Context, bail};
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};

use crate::cli::{CargoCommand, Global};
use crate::client::Client;

/// How deep `agora cargo import DIR` looks for `.crate` files.
const MAX_IMPORT_DEPTH: usize = 4;

pub(crate) async fn run(global: &Global, command: CargoCommand) -> anyhow::Result<()> {
    let client = Client::new(global)?;
    match command {
        CargoCommand::Import { paths } => import(global, &client, &paths).await,
        CargoCommand::Config => {
            print!("{}", config_toml(&client)?);
            Ok(())
        }
        CargoCommand::Token => {
            println!("{}", client.token()?);
            Ok(())
        }
    }
}

/// The `.crate` files `paths` name: files as given, directories searched (to
/// [`MAX_IMPORT_DEPTH`]) for `*.crate`, sorted and without repeats.
fn crate_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
            if path.is_dir() && depth < MAX_IMPORT_DEPTH {
                walk(&path, depth + 1, found)?;
            } else if path.is_file() && path.extension().is_some_and(|extension| extension == "crate") {
                found.push(path);
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if metadata.is_dir() {
            walk(path, 1, &mut found)?;
        } else {
            found.push(path.clone());
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Publishes each file; one failure does not stop the others, but fails the
/// command at the end.
async fn import(global: &Global, client: &Client, paths: &[PathBuf]) -> anyhow::Result<()> {
    let files = crate_files(paths)?;
    if files.is_empty() {
        bail!("no .crate files in {}", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    let (mut created, mut present, mut failed) = (0usize, 0usize, Vec::new());
    let mut results = Vec::new();
    for file in &files {
        let outcome = async {
            let bytes = tokio::fs::read(file).await.with_context(|| format!("reading {}", file.display()))?;
            let request = client
                .authorized(Method::POST, "/v1/cargo/crates")?
                .header(CONTENT_LENGTH, bytes.len())
                .header(CONTENT_TYPE, "application/gzip")
                .body(bytes);
            let published: Published = client.send(request).await?.json().await.context("reading the node's reply")?;
            anyhow::Ok(published)
        }
        .await;
        match outcome {
            Ok(published) => {
                let manifest = published.manifest.manifest();
                let name = manifest.cargo.as_ref().map_or_else(|| manifest.name().to_string(), |e| e.name.to_string());
                if published.created {
                    created += 1;
                } else {
                    present += 1;
                }
                if !global.json {
                    let note = if published.created { "imported" } else { "already present" };
                    println!("{name} {} {note}", manifest.version());
                }
                results.push(published);
            }
            Err(error) => {
                eprintln!("error: {}: {error:#}", file.display());
                failed.push(file.display().to_string());
            }
        }
    }
    if global.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!("{created} crate(s) imported, {present} already present, {} failed", failed.len());
    }
    if !failed.is_empty() {
        bail!("{} of {} .crate file(s) could not be imported", failed.len(), files.len());
    }
    Ok(())
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            character if character.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(character))),
            character => quoted.push(character),
        }
    }
    quoted.push('"');
    quoted
}

/// The configuration for both uses, the token read by running this binary
/// (`agora cargo token`) each time cargo needs it, so a node restart (a new
/// token) needs no new `cargo login`.
fn config_toml(client: &Client) -> anyhow::Result<String> {
    let addr = client.addr();
    let exe = std::env::current_exe().context("finding the agora binary's path")?;
    let data_dir = std::path::absolute(client.data_dir()).unwrap_or_else(|_| client.data_dir().to_owned());
    let provider = ["cargo:token-from-stdout", &exe.to_string_lossy(), "--data-dir", &data_dir.to_string_lossy()]
        .iter()
        .map(|part| toml_string(part))
        .chain(["\"cargo\"".to_owned(), "\"token\"".to_owned()])
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        "# Cargo configuration for the Agora node at {addr} (data dir {data_dir}).
# Paste into .cargo/config.toml of a project, or into $CARGO_HOME/config.toml.

# Agora as an extra registry: `cargo publish --registry agora`,
# `cargo add --registry agora NAME`, `cargo search --registry agora WORDS`.
[registries.agora]
index = \"sparse+http://{addr}/cargo/index/\"
credential-provider = [{provider}]

# Agora as crates.io: builds take crates.io's crates from the node's mirror,
# which holds the crates published or imported by keys the node trusts
# (its own, and [cargo] trusted_publishers in its config.toml).
[source.crates-io]
replace-with = \"agora-mirror\"

[source.agora-mirror]
registry = \"sparse+http://{addr}/cargo/mirror/index/\"
",
        data_dir = data_dir.display()
    ))
}
