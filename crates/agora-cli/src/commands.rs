//! The client commands. Each talks to a running node over its HTTP API, except
//! `new`, `publish --list` and `publish --dry-run` (local files only) and `node`
//! (which is the node).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agora::archive;
use agora::{
    ArtifactHasher, IndexChange, PackageName, Published, SearchResults, SignedManifest, Version, VersionEntry,
    VersionReq,
};
use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use reqwest::Method;
use reqwest::header::CONTENT_LENGTH;
use serde_json::json;

use crate::api::{
    FetchLine, ImportBody, KeyBody, OwnersBody, OwnersList, PackageBody, PinBody, StatusBody, TrustBody, YankBody,
};
use crate::cli::{Cli, Command, Global, KeyCommand, OwnerCommand, SearchArgs};
use crate::client::Client;
use crate::output::{date, progress, size, table};

/// Largest archive `agora publish` will pack; the node applies its own limit.
const PACK_LIMIT: u64 = 4 << 30;
const UPLOAD_CHUNK: usize = 64 * 1024;

pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli { global, command } = cli;
    if let Command::Node(args) = &command {
        return crate::daemon::run(&global, args).await;
    }
    init_client_logging();
    match command {
        Command::Node(_) => unreachable!("handled above"),
        Command::New { dir, name } => new(&global, &dir, name),
        Command::Publish { path, dry_run, list } => {
            if list {
                publish_list(&global, &path).await
            } else {
                publish(&global, &path, dry_run).await
            }
        }
        Command::Search(args) => search(&global, &args).await,
        Command::Info { spec } => info(&global, &spec).await,
        Command::Versions { name } => versions(&global, &name).await,
        Command::Fetch { spec, output } => fetch(&global, &spec, output).await,
        Command::Yank { spec, undo } => yank(&global, &spec, undo).await,
        Command::Trust { name, owner } => trust(&global, &name, &owner).await,
        Command::Pin { spec } => pin(&global, &spec, true).await,
        Command::Unpin { spec } => pin(&global, &spec, false).await,
        Command::Status => status(&global).await,
        Command::Peers => peers(&global).await,
        Command::Demo { nodes } => crate::demo::run(nodes, global.json).await,
        Command::Key { command } => key(&global, command).await,
        Command::Owner { command } => owner(&global, command).await,
        Command::Cargo { command } => crate::cargo_commands::run(&global, command).await,
    }
}

fn init_client_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn new(global: &Global, dir: &Path, name: Option<String>) -> anyhow::Result<()> {
    let name = match name {
        Some(name) => name,
        None => dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("cannot take a package name from {}; pass --name", dir.display()))?,
    };
    let name = PackageName::parse(&name).map_err(|error| anyhow!("{error} (pass a valid one with --name)"))?;
    archive::write_skeleton(dir, &name)?;
    if global.json {
        return print_json(&json!({ "name": name, "dir": dir }));
    }
    println!("Created package `{name}` in {}", dir.display());
    println!("Edit {}, then run `agora publish {}`", dir.join(archive::MANIFEST_FILE).display(), dir.display());
    Ok(())
}

async fn publish(global: &Global, path: &Path, dry_run: bool) -> anyhow::Result<()> {
    let (metadata, bytes) = if path.is_file() {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        // The node checks again, against its own limit.
        let limit = archive::unpacked_limit(bytes.len() as u64, agora::Config::default().max_artifact_size);
        (archive::manifest_from_archive(&bytes[..], limit)?, bytes)
    } else {
        let dir = path.to_owned();
        tokio::task::spawn_blocking(move || archive::pack(&dir, PACK_LIMIT)).await??
    };
    warn_about_manifest(&metadata);
    let label = format!("{}@{}", metadata.name, metadata.version);
    if dry_run {
        let digest = agora::Digest::of(&bytes);
        if global.json {
            return print_json(&json!({ "package": label, "size": bytes.len(), "digest": digest }));
        }
        println!("Packed {label}: {} (sha256 {digest}); not uploaded (--dry-run)", size(bytes.len() as u64));
        return Ok(());
    }
    let client = Client::new(global)?;
    let total = bytes.len() as u64;
    // The node's limit, before a byte is sent (it would cut the upload off).
    let StatusBody { status, .. } = client.get("/v1/status").await?;
    if total > status.max_artifact_size {
        bail!(
            "{label} packs to {total} bytes, over the limit of {} bytes of this node (`max_artifact_size`); \
             leave out build output and large assets",
            status.max_artifact_size
        );
    }
    let bar = progress(total, "Uploading");
    let chunks: Vec<Vec<u8>> = bytes.chunks(UPLOAD_CHUNK).map(<[u8]>::to_vec).collect();
    let ticker = bar.clone();
    let stream = futures::stream::iter(chunks).map(move |chunk| {
        ticker.inc(chunk.len() as u64);
        Ok::<_, std::io::Error>(chunk)
    });
    let request = client
        .authorized(Method::POST, "/v1/packages")?
        .header(CONTENT_LENGTH, total)
        .header(reqwest::header::CONTENT_TYPE, "application/gzip")
        .body(reqwest::Body::wrap_stream(stream));
    let result = client.send(request).await;
    bar.finish_and_clear();
    let published: Published = result?.json().await.context("reading the node's reply")?;
    if global.json {
        return print_json(&published);
    }
    let manifest = published.manifest.manifest();
    if published.created {
        println!(
            "Published {}@{} ({}, sha256 {})",
            manifest.name(),
            manifest.version(),
            size(manifest.artifact.size),
            manifest.artifact.digest
        );
    } else {
        println!(
            "{}@{} is already published with identical content; nothing changed",
            manifest.name(),
            manifest.version()
        );
    }
    Ok(())
}

/// `agora publish --list`: what `publish` would pack, without packing (no node).
async fn publish_list(global: &Global, dir: &Path) -> anyhow::Result<()> {
    if dir.is_file() {
        bail!("--list takes a package directory; {} is a file", dir.display());
    }
    let metadata = archive::read_manifest(dir)?;
    warn_about_manifest(&metadata);
    let owned = dir.to_owned();
    let files = tokio::task::spawn_blocking(move || archive::list(&owned)).await??;
    if global.json {
        return print_json(&files);
    }
    let mut stdout = std::io::stdout().lock();
    for file in &files {
        writeln!(stdout, "{file}")?;
    }
    Ok(())
}

/// Warnings about a manifest that is valid but probably not what the author meant
/// to publish (stderr, so `--json` output stays clean).
fn warn_about_manifest(metadata: &agora::PackageMetadata) {
    if archive::is_template_description(metadata) {
        eprintln!(
            "warning: the description in {} is still the template's; say what the package does",
            archive::MANIFEST_FILE
        );
    }
}

async fn search(global: &Global, args: &SearchArgs) -> anyhow::Result<()> {
    let client = Client::new(global)?;
    let (text, offset) = (&args.text, if args.network { 0 } else { args.offset });
    let mut params = vec![("q", text.to_owned())];
    if !args.category.is_empty() {
        params.push(("category", args.category.join(",")));
    }
    if !args.tag.is_empty() {
        params.push(("tag", args.tag.join(",")));
    }
    if let Some(publisher) = &args.publisher {
        params.push(("publisher", publisher.clone()));
    }
    if args.network {
        params.push(("network", "true".to_owned()));
        if let Some(preset) = args.preset {
            params.push(("preset", preset.name().to_owned()));
        }
        for (name, value) in [
            ("timeout_ms", args.timeout_ms),
            ("fan_out", args.fan_out.map(|n| n as u64)),
            ("max_results", args.max_results.map(|n| n as u64)),
        ] {
            if let Some(value) = value {
                params.push((name, value.to_string()));
            }
        }
    } else {
        params.push(("limit", args.limit.to_string()));
        params.push(("offset", args.offset.to_string()));
    }
    let results: SearchResults = client.get_with_query("/v1/search", &params).await?;
    if global.json {
        return print_json(&results);
    }
    let partial_note = || {
        if results.partial {
            eprintln!("note: partial results: some peers did not answer before the deadline (try --timeout-ms)");
        }
    };
    if results.hits.is_empty() {
        println!("no packages match `{text}`");
        partial_note();
        return Ok(());
    }
    let mut rows = vec![vec!["NAME".to_owned(), "VERSION".to_owned(), "DESCRIPTION".to_owned()]];
    for hit in &results.hits {
        let marker = match (hit.contested, hit.equivocated) {
            (_, true) => " (owner equivocated)",
            (true, false) => " (contested)",
            (false, false) => "",
        };
        rows.push(vec![format!("{}{marker}", hit.name), hit.version.to_string(), one_line(&hit.description, 70)]);
    }
    print!("{}", table(&rows));
    let shown = u64::from(offset) + results.hits.len() as u64;
    if shown < results.total && !args.network {
        println!("... and {} more (use --offset {shown} to see them)", results.total - shown);
    }
    partial_note();
    Ok(())
}

fn one_line(text: &str, max: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max { line } else { format!("{}…", line.chars().take(max - 1).collect::<String>()) }
}

/// `name`, `name@1.2.3` or `name@^1.2`.
fn parse_spec(spec: &str) -> anyhow::Result<(PackageName, Option<VersionSpec>)> {
    let (name, version) = match spec.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (spec, None),
    };
    let name = PackageName::parse(name)?;
    let version = match version {
        None => None,
        Some(text) => match agora::parse_version(text) {
            Ok(version) => Some(VersionSpec::Exact(version)),
            Err(_) => Some(VersionSpec::Req(text.parse::<VersionReq>().map_err(|error| {
                anyhow!(
                    "invalid version requirement `{text}` in `{spec}`: {error}; expected a version (`1.2.3`) or a \
                     requirement such as `^1.2`, `~1.2` or `>=1.0, <2`"
                )
            })?)),
        },
    };
    Ok((name, version))
}

enum VersionSpec {
    Exact(Version),
    Req(VersionReq),
}

/// The package and manifest `spec` names. Without a version it is the default
/// version (the highest live one); when every version is yanked, `info` still
/// shows the highest (`yanked_default`), `fetch` refuses, as cargo does.
async fn resolve(client: &Client, spec: &str, yanked_default: bool) -> anyhow::Result<(PackageBody, SignedManifest)> {
    let (name, version) = parse_spec(spec)?;
    let package: PackageBody = client.get(&format!("/v1/packages/{name}")).await?;
    let index = package.index.index();
    let version = match version {
        Some(VersionSpec::Exact(version)) => version,
        Some(VersionSpec::Req(requirement)) => {
            index.matching(&requirement).map(|entry| entry.version.clone()).ok_or_else(|| {
                anyhow!("no live version of `{name}` matches `{requirement}`; see `agora versions {name}`")
            })?
        }
        None => index
            .latest()
            .or_else(
                || if yanked_default { index.versions.iter().max_by(|a, b| a.version.cmp(&b.version)) } else { None },
            )
            .map(|entry| entry.version.clone())
            .ok_or_else(|| {
                anyhow!("every version of `{name}` is yanked; name one explicitly (see `agora versions {name}`)")
            })?,
    };
    let manifest: SignedManifest = client.get(&format!("/v1/packages/{name}/{version}")).await?;
    if let Err(error) = index.check_vouches_for(manifest.manifest()) {
        bail!("the node sent a manifest of {name}@{version} its index does not vouch for: {error}");
    }
    Ok((package, manifest))
}

async fn info(global: &Global, spec: &str) -> anyhow::Result<()> {
    let client = Client::new(global)?;
    let (package, signed) = resolve(&client, spec, true).await?;
    if global.json {
        return print_json(&json!({ "manifest": signed, "index": package.index, "claims": package.claims }));
    }
    let manifest = signed.manifest();
    let metadata = &manifest.metadata;
    let index = package.index.index();
    let yanked = index.entry(manifest.version()).is_some_and(|entry| entry.yanked);
    println!("{} {}{}", metadata.name, metadata.version, if yanked { " (yanked)" } else { "" });
    println!("{}", metadata.description);
    println!();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut field = |label: &str, value: String| {
        if !value.is_empty() {
            rows.push(vec![format!("{label}:"), value]);
        }
    };
    field("license", metadata.license.clone().unwrap_or_default());
    field("authors", metadata.authors.join(", "));
    field("keywords", metadata.keywords.join(", "));
    field("categories", metadata.categories.join(", "));
    field("homepage", metadata.homepage.clone().unwrap_or_default());
    field("repository", metadata.repository.clone().unwrap_or_default());
    field(
        "dependencies",
        metadata.dependencies.iter().map(|(name, req)| format!("{name} {req}")).collect::<Vec<_>>().join(", "),
    );
    field("published", date(manifest.published_at));
    field("publisher", manifest.publisher.to_string());
    if index.current_owners() != [manifest.publisher] {
        field("owners", index.current_owners().iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
    }
    field(
        "artifact",
        format!(
            "{} in {} chunks, sha256 {}",
            size(manifest.artifact.size),
            manifest.artifact.chunks.len(),
            manifest.artifact.digest
        ),
    );
    if let Some(unpacked) = manifest.unpacked_size {
        field("unpacked", size(unpacked));
    }
    let versions: Vec<String> = index
        .versions
        .iter()
        .rev()
        .map(|entry| if entry.yanked { format!("{} (yanked)", entry.version) } else { entry.version.to_string() })
        .collect();
    field("versions", versions.join(", "));
    print!("{}", table(&rows));
    print_claims(&package.claims);
    Ok(())
}

/// What `info` says about who claims the name, when there is anything to say.
fn print_claims(claims: &agora::core::NameClaims) {
    if claims.equivocated.iter().any(|owner| claims.default_claim().is_some_and(|claim| claim.owner == *owner)) {
        println!("\nwarning: this owner signed two different indexes with one sequence (it equivocated)");
    }
    if !claims.contested() {
        return;
    }
    let why = if claims.chosen { "you chose it" } else { "the first claim this node saw" };
    println!(
        "\ncontested: {} keys claim `{}`; this node serves the one marked * ({why})",
        claims.claims.len(),
        claims.name
    );
    let mut rows = Vec::new();
    for claim in &claims.claims {
        let latest = claim.latest.as_ref().map_or_else(|| "all yanked".to_owned(), ToString::to_string);
        let flag = if claims.equivocated.contains(&claim.owner) { " (equivocated)" } else { "" };
        rows.push(vec![
            if claim.default { "*".to_owned() } else { " ".to_owned() },
            claim.owner.to_hex(),
            format!("{latest}, {} version{}{flag}", claim.versions, if claim.versions == 1 { "" } else { "s" }),
        ]);
    }
    print!("{}", table(&rows));
    println!("choose with `agora trust {} OWNER_KEY`", claims.name);
}

async fn trust(global: &Global, name: &str, owner: &str) -> anyhow::Result<()> {
    let name: agora::PackageName = name.parse()?;
    let client = Client::new(global)?;
    let claims: agora::core::NameClaims =
        client.post(&format!("/v1/packages/{name}/trust"), &TrustBody { owner: owner.trim().to_owned() }).await?;
    if global.json {
        return print_json(&claims);
    }
    let others = claims.claims.len().saturating_sub(1);
    println!(
        "{name} now comes from {}; {others} other claim{} kept (see `agora info {name}`)",
        owner.trim(),
        if others == 1 { "" } else { "s" }
    );
    Ok(())
}

async fn versions(global: &Global, name: &str) -> anyhow::Result<()> {
    let name = PackageName::parse(name)?;
    let client = Client::new(global)?;
    let versions: Vec<VersionEntry> = client.get(&format!("/v1/packages/{name}/versions")).await?;
    if global.json {
        return print_json(&versions);
    }
    let mut rows = vec![vec!["VERSION".to_owned(), "SIZE".to_owned(), "SHA256".to_owned(), "STATUS".to_owned()]];
    for entry in versions.iter().rev() {
        rows.push(vec![
            entry.version.to_string(),
            size(entry.size),
            entry.digest.to_hex()[..16].to_owned(),
            if entry.yanked { "yanked".to_owned() } else { String::new() },
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

async fn fetch(global: &Global, spec: &str, output: Option<PathBuf>) -> anyhow::Result<()> {
    // Ctrl-C stops the fetch cleanly: the download's temp file is dropped (deleted)
    // with the future, and an unpack in progress stops at its next read and removes
    // its staging directory, before the process exits.
    let cancel = Arc::new(AtomicBool::new(false));
    let unpacking = Arc::new(tokio::sync::Mutex::new(()));
    tokio::select! {
        result = fetch_into(global, spec, output, cancel.clone(), unpacking.clone()) => result,
        _ = tokio::signal::ctrl_c() => {
            cancel.store(true, Ordering::SeqCst);
            // Wait for a running unpack to see the flag and clean up.
            let _idle = unpacking.lock().await;
            bail!("interrupted; nothing was left behind")
        }
    }
}

async fn fetch_into(
    global: &Global,
    spec: &str,
    output: Option<PathBuf>,
    cancel: Arc<AtomicBool>,
    unpacking: Arc<tokio::sync::Mutex<()>>,
) -> anyhow::Result<()> {
    let client = Client::new(global)?;
    let (_, signed) = resolve(&client, spec, false).await?;
    let manifest = signed.manifest();
    let (name, version) = (manifest.name().clone(), manifest.version().clone());
    // A crate (`crates/serde`) is saved as the `.crate` file cargo would
    // download (`serde-1.0.0.crate`, the name as its publisher spelled it);
    // unpacking it is cargo's job.
    let crate_name = manifest.cargo.as_ref().map(|entry| entry.name.to_string());
    let dest = output.unwrap_or_else(|| match &crate_name {
        Some(crate_name) => PathBuf::from(format!("{crate_name}-{version}.crate")),
        None => PathBuf::from(format!("{name}-{version}")),
    });
    let parent = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    // Refuse before anything is downloaded: a non-empty destination, too little space.
    if crate_name.is_some() {
        if dest.exists() {
            bail!("{} already exists; pass another path with -o", dest.display());
        }
    } else {
        archive::check_unpack_destination(&dest)?;
    }
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    check_free_space(&parent, manifest.artifact.size)?;

    // Unpacked, it may be as large as the node's own rule allows a published one.
    let StatusBody { status, .. } = client.get("/v1/status").await?;
    let unpack_limit = archive::unpacked_limit(manifest.artifact.size, status.max_artifact_size);

    // Make the node hold it (from peers if need be), showing the transfer.
    node_fetch(&client, &name, &version).await?;

    // Download into a temp file next to the destination, hashing as we go.
    let mut body = client.stream_get(&format!("/v1/packages/{name}/{version}/artifact")).await?;
    let mut temp = tempfile::NamedTempFile::new_in(&parent)
        .with_context(|| format!("creating a temp file in {}", parent.display()))?;
    let mut hasher = ArtifactHasher::new(manifest.artifact.chunk_size)?;
    let bar = progress(manifest.artifact.size, "Downloading");
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("download interrupted")?;
        if hasher.size() + chunk.len() as u64 > manifest.artifact.size {
            bar.finish_and_clear();
            bail!(
                "the node sent more than the {} bytes the manifest of {name}@{version} declares",
                manifest.artifact.size
            );
        }
        hasher.update(&chunk);
        temp.write_all(&chunk).context("writing the download")?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let received = hasher.finish()?;
    if received != manifest.artifact {
        bail!(
            "the downloaded artifact of {name}@{version} does not match its signed manifest (expected sha256 {}, got {}); nothing was unpacked",
            manifest.artifact.digest,
            received.digest
        );
    }
    if crate_name.is_some() {
        temp.persist_noclobber(&dest).map_err(|error| anyhow!("saving {}: {}", dest.display(), error.error))?;
        if global.json {
            return print_json(&json!({
                "name": name, "version": version, "digest": manifest.artifact.digest, "size": manifest.artifact.size,
                "file": dest,
            }));
        }
        println!(
            "Fetched {name}@{version} ({}, sha256 {}) into {}",
            size(manifest.artifact.size),
            manifest.artifact.digest,
            dest.display()
        );
        return Ok(());
    }
    let file = Cancellable { inner: temp.reopen().context("reopening the download")?, cancel };
    let target = dest.clone();
    // Held until the unpack ended and its files are cleaned up (see `fetch`).
    let busy = unpacking.lock_owned().await;
    let task = tokio::task::spawn_blocking(move || {
        let summary = archive::unpack(std::io::BufReader::new(file), &target, unpack_limit);
        // The download is deleted on this thread once unpacking ended, however it ended.
        drop(temp);
        drop(busy);
        summary
    });
    let summary = task.await??;
    if global.json {
        return print_json(&json!({
            "name": name, "version": version, "digest": manifest.artifact.digest, "size": manifest.artifact.size,
            "dir": dest, "files": summary.files,
        }));
    }
    println!(
        "Fetched {name}@{version} ({}, sha256 {}) into {} ({} files)",
        size(manifest.artifact.size),
        manifest.artifact.digest,
        dest.display(),
        summary.files
    );
    Ok(())
}

/// A reader that fails once `cancel` is set (Ctrl-C during an unpack).
struct Cancellable<R> {
    inner: R,
    cancel: Arc<AtomicBool>,
}

impl<R: std::io::Read> std::io::Read for Cancellable<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "interrupted"));
        }
        self.inner.read(buf)
    }
}

/// Refuses a download of `needed` bytes into `dir` when the file system holding it
/// has less than twice that free (the archive, then at least as much unpacked).
fn check_free_space(dir: &Path, needed: u64) -> anyhow::Result<()> {
    let Ok(stats) = rustix::fs::statvfs(dir) else { return Ok(()) };
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    let wanted = needed.saturating_mul(2);
    if free < wanted {
        bail!(
            "not enough free space in {}: the download and its unpacked files need about {}, {} is free",
            dir.display(),
            size(wanted),
            size(free)
        );
    }
    Ok(())
}

/// Asks the node to fetch an artifact from the network and follows its progress.
async fn node_fetch(client: &Client, name: &PackageName, version: &Version) -> anyhow::Result<()> {
    let mut body = client.post_stream(&format!("/v1/packages/{name}/{version}/fetch")).await?;
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut buffer: Vec<u8> = Vec::new();
    let mut last: Option<FetchLine> = None;
    while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk.context("the node's progress stream broke")?);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let parsed: FetchLine =
                serde_json::from_slice(&line).context("the node's progress stream did not decode")?;
            let transfer = &parsed.progress;
            if transfer.resumed_bytes < transfer.total_bytes && bar.is_none() {
                let fresh = progress(transfer.total_bytes, "Fetching");
                fresh.set_position(transfer.received_bytes);
                bar = Some(fresh);
            }
            if let Some(bar) = &bar {
                bar.set_position(transfer.received_bytes);
            }
            last = Some(parsed);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match last {
        Some(FetchLine { error: Some(error), .. }) => bail!("{error}"),
        Some(line) if line.progress.state == agora::TransferState::Done => {
            let providers = line.progress.providers.iter().filter(|p| p.chunks > 0).count();
            if providers > 0 {
                eprintln!(
                    "fetched {} from {providers} peer{}",
                    size(line.progress.total_bytes - line.progress.resumed_bytes),
                    if providers == 1 { "" } else { "s" }
                );
            }
            Ok(())
        }
        _ => bail!("the node ended the fetch of {name}@{version} without saying how it went"),
    }
}

async fn pin(global: &Global, spec: &str, pinned: bool) -> anyhow::Result<()> {
    let (name, version) = match parse_spec(spec)? {
        (name, Some(VersionSpec::Exact(version))) => (name, version),
        _ => bail!("name the exact version: `agora {} NAME@VERSION`", if pinned { "pin" } else { "unpin" }),
    };
    let client = Client::new(global)?;
    let answer: serde_json::Value =
        client.post(&format!("/v1/packages/{name}/{version}/pin"), &PinBody { pinned }).await?;
    if global.json {
        return print_json(&answer);
    }
    if pinned {
        println!("Pinned {name}@{version}: it stays on this node");
    } else {
        println!("Unpinned {name}@{version}: it may be evicted when the cache is full");
    }
    Ok(())
}

async fn yank(global: &Global, spec: &str, undo: bool) -> anyhow::Result<()> {
    let (name, version) = match parse_spec(spec)? {
        (name, Some(VersionSpec::Exact(version))) => (name, version),
        _ => bail!("name the exact version to yank: `agora yank NAME@VERSION`"),
    };
    let client = Client::new(global)?;
    let change: IndexChange =
        client.post(&format!("/v1/packages/{name}/{version}/yank"), &YankBody { yanked: !undo }).await?;
    if global.json {
        return print_json(&change);
    }
    match (undo, change.is_empty()) {
        (false, false) => println!("Yanked {name}@{version}"),
        (true, false) => println!("Unyanked {name}@{version}"),
        (false, true) => println!("{name}@{version} was already yanked; nothing changed"),
        (true, true) => println!("{name}@{version} was not yanked; nothing changed"),
    }
    Ok(())
}

async fn status(global: &Global) -> anyhow::Result<()> {
    let client = Client::new(global)?;
    if global.json {
        // The node's JSON as it sent it, not our reading of it.
        let status: serde_json::Value = client.get("/v1/status").await?;
        return print_json(&status);
    }
    let StatusBody { status, api } = client.get("/v1/status").await?;
    let (registry, storage) = (&status.registry, &status.storage);
    let mut rows = vec![
        vec!["version:".to_owned(), status.version.clone()],
        vec!["api:".to_owned(), format!("http://{api}")],
        vec!["data dir:".to_owned(), status.data_dir.display().to_string()],
        vec!["identity:".to_owned(), status.identity.to_string()],
        vec!["publisher:".to_owned(), status.publisher.to_string()],
        vec!["packages:".to_owned(), registry.packages.to_string()],
        vec!["versions:".to_owned(), registry.versions.to_string()],
        vec!["artifacts:".to_owned(), format!("{} ({})", registry.artifacts, size(registry.artifact_bytes))],
        vec!["cache:".to_owned(), format!("{} hits, {} misses", status.cache.hits, status.cache.misses)],
        vec!["max artifact:".to_owned(), size(status.max_artifact_size)],
        vec![
            "storage:".to_owned(),
            format!(
                "{} pinned ({}), {} cached ({} of {})",
                storage.pinned_artifacts,
                size(storage.pinned_bytes),
                storage.cached_artifacts,
                size(storage.cached_bytes),
                size(storage.max_cached_bytes)
            ),
        ],
        vec!["uptime:".to_owned(), format!("{} s", status.uptime_secs)],
    ];
    for (label, stats) in [("searches:", &status.queries.search), ("dht gets:", &status.queries.dht_get)] {
        let ms = |ms: Option<f64>| ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"));
        rows.push(vec![
            label.to_owned(),
            format!(
                "{} ({} ok, {} partial, {} failed, {} running); p50/p95/p99 {}/{}/{} ms",
                stats.total,
                stats.succeeded,
                stats.partial,
                stats.failed,
                stats.in_flight,
                ms(stats.p50_ms),
                ms(stats.p95_ms),
                ms(stats.p99_ms)
            ),
        ]);
    }
    print!("{}", table(&rows));
    match &status.network {
        None => println!("network:       off"),
        Some(network) => {
            let mut rows = vec![vec!["peer id:".to_owned(), network.peer_id.clone()]];
            for address in &network.listen_addrs {
                rows.push(vec!["listening:".to_owned(), address.clone()]);
            }
            rows.push(vec!["reachability:".to_owned(), network.reachability.clone()]);
            for address in &network.external_addrs {
                rows.push(vec!["external:".to_owned(), address.clone()]);
            }
            for address in &network.relay_addrs {
                rows.push(vec!["via relay:".to_owned(), address.clone()]);
            }
            if !network.relay_reservations.is_empty() {
                rows.push(vec!["reservations:".to_owned(), network.relay_reservations.join(", ")]);
            }
            rows.push(vec!["relaying:".to_owned(), if network.relaying { "yes" } else { "no" }.to_owned()]);
            rows.push(vec![
                "peers:".to_owned(),
                format!(
                    "{} connected ({} direct, {} relayed connections)",
                    network.connected_peers.len(),
                    network.direct_connections,
                    network.relayed_connections
                ),
            ]);
            rows.push(vec![
                "hole punches:".to_owned(),
                format!("{} of {} succeeded", network.hole_punch_successes, network.hole_punch_attempts),
            ]);
            rows.push(vec![
                "routing table:".to_owned(),
                format!("{} (dht {})", network.routing_table_size, network.dht_mode),
            ]);
            rows.push(vec![
                "dht:".to_owned(),
                format!("{} records, {} provided", network.dht_records, network.dht_provided),
            ]);
            print!("{}", table(&rows));
        }
    }
    Ok(())
}

async fn peers(global: &Global) -> anyhow::Result<()> {
    let client = Client::new(global)?;
    let peers: Vec<agora::PeerInfo> = client.get("/v1/peers").await?;
    if global.json {
        return print_json(&peers);
    }
    if peers.is_empty() {
        println!("no peers known yet; start another node with --bootstrap <one of this node's listen addresses>");
        return Ok(());
    }
    let mut rows = vec![vec![
        "PEER".to_owned(),
        "STATE".to_owned(),
        "SCORE".to_owned(),
        "STRIKES".to_owned(),
        "LAST SEEN".to_owned(),
        "ADDRESS".to_owned(),
        "WHY".to_owned(),
    ]];
    for peer in &peers {
        let banned = peer.standing.as_ref().is_some_and(|standing| standing.banned_until > 0);
        let relayed = !peer.connections.is_empty() && peer.connections.iter().all(|c| c.kind == "relayed");
        let state = match (banned, peer.connected, relayed) {
            (true, _, _) => "blocked",
            (false, true, true) => "relayed",
            (false, true, false) => "connected",
            (false, false, _) => "known",
        };
        rows.push(vec![
            peer.peer_id.clone(),
            state.to_owned(),
            peer.standing.as_ref().map_or_else(|| "-".to_owned(), |standing| format!("{:.2}", standing.score)),
            peer.strikes.to_string(),
            if peer.last_seen == 0 { "-".to_owned() } else { date(peer.last_seen) },
            peer.connections
                .first()
                .map(|connection| connection.address.clone())
                .or_else(|| peer.addresses.first().cloned())
                .unwrap_or_default(),
            peer.standing.as_ref().map(|standing| standing.reason.clone()).unwrap_or_default(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

async fn key(global: &Global, command: KeyCommand) -> anyhow::Result<()> {
    let client = Client::new(global)?;
    match command {
        KeyCommand::Show => {
            let key: KeyBody = client.get("/v1/key").await?;
            if global.json {
                return print_json(&key);
            }
            println!("{}", key.public_key);
        }
        KeyCommand::Export { output } => {
            let key: KeyBody = client.post("/v1/key/export", &json!({})).await?;
            let secret = key.secret_key.ok_or_else(|| anyhow!("the node did not return a secret key"))?;
            match output {
                Some(path) => {
                    write_owner_only(&path, &format!("{secret}\n"))?;
                    eprintln!("wrote the publisher secret key ({}) to {}", key.public_key, path.display());
                }
                None if global.json => print_json(&json!({ "public_key": key.public_key, "secret_key": secret }))?,
                None => println!("{secret}"),
            }
        }
        KeyCommand::Import { file, force } => {
            let mut text = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text).context("reading the key from standard input")?;
            } else {
                text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            }
            let key: KeyBody =
                client.post("/v1/key/import", &ImportBody { secret_key: text.trim().to_owned(), force }).await?;
            if global.json {
                return print_json(&key);
            }
            println!("Imported publisher key {}", key.public_key);
        }
        KeyCommand::Rotate => {
            let rotation: agora::KeyRotation = client.post("/v1/key/rotate", &json!({})).await?;
            if global.json {
                return print_json(&rotation);
            }
            println!("New publisher key {} (the old key {} stays in the keyring)", rotation.new, rotation.old);
            let names: Vec<String> = rotation.packages.iter().map(ToString::to_string).collect();
            match names.len() {
                0 => println!("the old key owned no packages"),
                count => println!(
                    "handed {count} package{} to the new key: {}",
                    if count == 1 { "" } else { "s" },
                    names.join(", ")
                ),
            }
        }
    }
    Ok(())
}

async fn owner(global: &Global, command: OwnerCommand) -> anyhow::Result<()> {
    let client = Client::new(global)?;
    let (name, list): (String, OwnersList) = match command {
        OwnerCommand::List { name } => {
            let list = client.get(&format!("/v1/packages/{}/owners", name.parse::<agora::PackageName>()?)).await?;
            (name, list)
        }
        OwnerCommand::Add { name, key } => {
            let body = OwnersBody { add: vec![key], ..OwnersBody::default() };
            let list =
                client.post(&format!("/v1/packages/{}/owners", name.parse::<agora::PackageName>()?), &body).await?;
            (name, list)
        }
        OwnerCommand::Remove { name, key } => {
            let body = OwnersBody { remove: vec![key], ..OwnersBody::default() };
            let list =
                client.post(&format!("/v1/packages/{}/owners", name.parse::<agora::PackageName>()?), &body).await?;
            (name, list)
        }
    };
    if global.json {
        return print_json(&list);
    }
    println!("owners of {name}:");
    for owner in &list.owners {
        println!("  {owner}");
    }
    Ok(())
}

fn write_owner_only(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file =
        options.open(path).with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
