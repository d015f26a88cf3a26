//! Package directories and package archives: `agora.toml`, `agora new`, `agora publish`
//! and `agora fetch` on disk.
//!
//! A package is a directory holding an [`agora.toml`](MANIFEST_FILE) whose `[package]`
//! and `[dependencies]` tables describe it. This module
//!
//! - parses and validates that file ([`parse_manifest`], [`read_manifest`]),
//! - writes a fresh package skeleton ([`write_skeleton`]),
//! - lists what a package directory packs: everything but `.git`, `target` at the
//!   top and what its `.gitignore` and `.agoraignore` files ignore ([`list`]),
//! - packs a package directory into a deterministic `.tar.gz` whose entries all live
//!   under `<name>-<version>/` ([`pack`]): the same content always gives the same
//!   bytes, whatever the file times, owners, non-exec permissions or directory order,
//! - reads the manifest back out of an archive, as a node does on upload
//!   ([`manifest_from_archive`]),
//! - unpacks an archive into a fresh directory ([`unpack`]).
//!
//! Archives are untrusted input. Reading one never panics, never allocates or writes
//! without bound, and refuses anything that is not a plain file or directory at a
//! plain relative path: absolute paths, `..`, symbolic and hard links, devices and
//! duplicate entries are errors. Extraction goes through a temporary directory next to
//! the destination, so a failed [`unpack`] leaves nothing behind.
//!
//! What this module is not: it does no networking, signing or hashing (the digest of
//! the packed bytes is computed by whoever publishes them), it knows nothing about the
//! registry or the store, and it does not resolve dependencies. It is synchronous; call
//! it from `spawn_blocking` in async code.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use agora_core::{PackageMetadata, PackageName, VersionReq};
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use serde::Deserialize;
use tar::{EntryType, Header};

use crate::bounded::BoundedReader;

/// The name of the manifest file at the root of every package.
pub const MANIFEST_FILE: &str = "agora.toml";

/// The largest `agora.toml` accepted, in bytes.
const MAX_MANIFEST_SIZE: u64 = 64 * 1024;

/// An archive may unpack to at most this many times the node's artifact size
/// limit (`max_artifact_size`): see [`unpacked_limit`].
pub const MAX_UNPACK_FACTOR: u64 = 4;

/// An archive may unpack to at most this many times its own size (a
/// decompression-bomb bound; source code and text compress 3–10×): see
/// [`unpacked_limit`].
pub const MAX_COMPRESSION_RATIO: u64 = 100;

/// Archives smaller than this may unpack to this much whatever their ratio (tiny
/// archives of repetitive text compress far better than big ones).
pub const MIN_UNPACKED_LIMIT: u64 = 1 << 20;

/// The most bytes of uncompressed tar (contents, headers and padding) an archive
/// of `compressed` bytes may unpack to on a node whose artifact limit is
/// `max_artifact_size`: `min(MAX_UNPACK_FACTOR × max_artifact_size,
/// max(MIN_UNPACKED_LIMIT, MAX_COMPRESSION_RATIO × compressed))`. Publishing and
/// fetching both apply it, so what one node accepts another can unpack.
pub fn unpacked_limit(compressed: u64, max_artifact_size: u64) -> u64 {
    let by_ratio = compressed.saturating_mul(MAX_COMPRESSION_RATIO).max(MIN_UNPACKED_LIMIT);
    by_ratio.min(max_artifact_size.saturating_mul(MAX_UNPACK_FACTOR))
}

/// The most entries (files and directories, the top directory included) a package
/// may have. It bounds the memory used to check an archive.
pub const MAX_ENTRIES: usize = 200_000;

/// The package's own ignore file: gitignore syntax, read in every directory of the
/// package like `.gitignore`, and taking precedence over it (so `!pattern` in it
/// packs what `.gitignore` leaves out).
pub const IGNORE_FILE: &str = ".agoraignore";

/// The description [`write_skeleton`] writes: a placeholder to be replaced.
/// `agora publish` warns when a manifest still has it ([`is_template_description`]).
pub const TEMPLATE_DESCRIPTION: &str = "TODO: one paragraph saying what this package is for";

/// Directories left out of a package wherever they appear.
const SKIPPED_EVERYWHERE: &[&str] = &[".git"];

/// Entries left out of a package at its top level only.
const SKIPPED_AT_ROOT: &[&str] = &["target"];

/// The gzip compression level of [`pack`]. Part of the archive format: changing it
/// changes every archive's bytes.
const COMPRESSION_LEVEL: u32 = 6;

/// The gzip "operating system" header byte of [`pack`]: 255, "unknown".
const GZIP_OS_UNKNOWN: u8 = 255;

/// Buffer size for copying entry contents.
const COPY_BUFFER: usize = 64 * 1024;

/// Everything that can go wrong reading a manifest, packing or unpacking.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The package directory has no `agora.toml`.
    #[error(
        "no {MANIFEST_FILE} in {}: create a package with `agora new <name>`, or run this from a package directory",
        .dir.display()
    )]
    MissingManifest {
        /// The directory that was searched.
        dir: PathBuf,
    },
    /// `agora.toml` is not TOML of the expected shape.
    #[error("could not parse {origin}: {message}")]
    MalformedManifest {
        /// Where the text came from: a file path or a place in an archive.
        origin: String,
        /// What is wrong; for syntax and shape errors, TOML's own message with line
        /// and column.
        message: String,
    },
    /// `agora.toml` parsed but breaks the package rules (name, version, description,
    /// keywords, dependency requirements, ...).
    #[error("{MANIFEST_FILE} breaks the package rules: {0}")]
    InvalidManifest(agora_core::Error),
    /// A file operation failed.
    #[error("i/o error on {}: {source}", .path.display())]
    Io {
        /// The file or directory being worked on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading the archive stream itself failed (not its content).
    #[error("could not read the archive: {source}")]
    ReadArchive {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The archive, packed or unpacked, would be larger than allowed.
    #[error(
        "the package is larger than the limit of {limit} bytes (when publishing, leave out \
         build output and large assets; `.git` and `target` are skipped already)"
    )]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The package has more files and directories than [`MAX_ENTRIES`].
    #[error("the package has more than {limit} files and directories")]
    TooManyEntries {
        /// The limit.
        limit: usize,
    },
    /// A `.gitignore` or [`IGNORE_FILE`] in the package has a line that is not a
    /// valid gitignore pattern.
    #[error("could not use the package's ignore files: {0}")]
    IgnoreFile(String),
    /// An entry is not a plain file or directory at a plain relative path.
    #[error(
        "unsafe path in package: {0}; packages hold only plain files and directories at \
         relative paths"
    )]
    UnsafePath(String),
    /// The bytes are not a package archive.
    #[error("not a package archive: {0}")]
    NotAnArchive(String),
    /// The destination exists and is not an empty directory.
    #[error(
        "{} already exists and is not an empty directory; choose another destination or remove it first",
        .0.display()
    )]
    DestinationNotEmpty(PathBuf),
    /// The archive's top directory is not `<name>-<version>/` of its own manifest.
    #[error(
        "the archive's top directory is `{found}/`, but its {MANIFEST_FILE} describes \
         `{expected}`, so it should be `{expected}/`"
    )]
    ManifestMismatch {
        /// `<name>-<version>` from the manifest.
        expected: String,
        /// The top directory found in the archive.
        found: String,
    },
}

/// What [`unpack`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnpackSummary {
    /// Regular files written.
    pub files: usize,
    /// Bytes of file content written.
    pub bytes: u64,
}

// ---------------------------------------------------------------------------------------
// agora.toml
// ---------------------------------------------------------------------------------------

/// The file as written, before any rule is applied.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    package: PackageTable,
    #[serde(default)]
    dependencies: BTreeMap<String, String>,
}

/// The `[package]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageTable {
    name: String,
    version: String,
    description: String,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    license: Option<String>,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    homepage: Option<String>,
    #[serde(default)]
    repository: Option<String>,
}

/// Parses the text of an `agora.toml` and checks it against the package rules.
///
/// The file has a `[package]` table (`name`, `version` and `description` required;
/// `keywords`, `categories`, `license`, `authors`, `homepage` and `repository`
/// optional) and an optional `[dependencies]` table mapping package names to semver
/// requirements (`other = "^1.2"`). Unknown tables and keys are errors, so typos do
/// not pass silently.
///
/// # Errors
///
/// [`ArchiveError::MalformedManifest`] for bad TOML, missing or unknown keys and
/// wrong types; [`ArchiveError::InvalidManifest`] for values that break the rules.
pub fn parse_manifest(text: &str) -> Result<PackageMetadata, ArchiveError> {
    parse_manifest_from(text, MANIFEST_FILE)
}

fn parse_manifest_from(text: &str, origin: &str) -> Result<PackageMetadata, ArchiveError> {
    let file: ManifestFile = toml::from_str(text).map_err(|error| ArchiveError::MalformedManifest {
        origin: origin.to_owned(),
        message: error.to_string().trim_end().to_owned(),
    })?;
    let package = file.package;
    let name = PackageName::parse(&package.name).map_err(|error| ArchiveError::InvalidManifest(error.into()))?;
    let version = agora_core::parse_version(&package.version).map_err(ArchiveError::InvalidManifest)?;
    let mut dependencies = BTreeMap::new();
    for (dependency, requirement) in file.dependencies {
        let dependency =
            PackageName::parse(&dependency).map_err(|error| ArchiveError::InvalidManifest(error.into()))?;
        let parsed = VersionReq::parse(&requirement).map_err(|error| {
            ArchiveError::InvalidManifest(agora_core::Error::InvalidManifest(format!(
                "dependency `{dependency}` has an invalid version requirement `{requirement}`: {error}"
            )))
        })?;
        dependencies.insert(dependency, parsed);
    }
    let metadata = PackageMetadata {
        name,
        version,
        description: package.description,
        keywords: package.keywords,
        categories: package.categories,
        license: package.license,
        authors: package.authors,
        homepage: package.homepage,
        repository: package.repository,
        dependencies,
    };
    metadata.validate().map_err(ArchiveError::InvalidManifest)?;
    Ok(metadata)
}

/// Reads and validates `dir/agora.toml`.
///
/// # Errors
///
/// [`ArchiveError::MissingManifest`] if there is no such file, [`ArchiveError::Io`] if
/// it cannot be read, and the errors of [`parse_manifest`]. A file over 64 KiB or not
/// in UTF-8 is [`ArchiveError::MalformedManifest`].
pub fn read_manifest(dir: &Path) -> Result<PackageMetadata, ArchiveError> {
    let path = dir.join(MANIFEST_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(ArchiveError::MissingManifest { dir: dir.to_owned() });
        }
        Err(source) => return Err(ArchiveError::Io { path, source }),
    };
    let origin = path.display().to_string();
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ArchiveError::Io { path: path.clone(), source })?;
    let text = manifest_text(bytes, &origin)?;
    parse_manifest_from(&text, &origin)
}

/// Checks the size and encoding of manifest bytes.
fn manifest_text(bytes: Vec<u8>, origin: &str) -> Result<String, ArchiveError> {
    if bytes.len() as u64 > MAX_MANIFEST_SIZE {
        return Err(ArchiveError::MalformedManifest {
            origin: origin.to_owned(),
            message: format!("the file is over the limit of {MAX_MANIFEST_SIZE} bytes"),
        });
    }
    String::from_utf8(bytes).map_err(|error| ArchiveError::MalformedManifest {
        origin: origin.to_owned(),
        message: format!("the file is not UTF-8 text ({error})"),
    })
}

/// Creates a new package directory `dir` for `name`, as `agora new` does.
///
/// It holds an `agora.toml` (version 0.1.0, a placeholder description, license
/// `MIT OR Apache-2.0`), a `README.md` and a hello-world `src/main.rs`. The result
/// passes [`read_manifest`] and [`pack`].
///
/// # Errors
///
/// [`ArchiveError::DestinationNotEmpty`] if `dir` exists and is not an empty directory
/// (nothing is overwritten); [`ArchiveError::Io`] if writing fails.
pub fn write_skeleton(dir: &Path, name: &PackageName) -> Result<(), ArchiveError> {
    check_destination(dir)?;
    let manifest = format!(
        "[package]\n\
         name = \"{name}\"\n\
         version = \"0.1.0\"\n\
         description = \"{TEMPLATE_DESCRIPTION}\"\n\
         keywords = []\n\
         license = \"MIT OR Apache-2.0\"\n\
         # authors = [\"Your Name <you@example.org>\"]\n\
         # repository = \"https://example.org/{name}\"\n\
         \n\
         [dependencies]\n\
         # other-package = \"^1.2\"\n"
    );
    let readme = format!("# {name}\n\nTODO: describe {name}.\n\nPublish it with `agora publish`.\n");
    let main = format!("fn main() {{\n    println!(\"Hello from {name}!\");\n}}\n");
    let src = dir.join("src");
    fs::create_dir_all(&src).map_err(|source| ArchiveError::Io { path: src.clone(), source })?;
    for (path, text) in
        [(dir.join(MANIFEST_FILE), manifest), (dir.join("README.md"), readme), (src.join("main.rs"), main)]
    {
        let mut file = File::create_new(&path).map_err(|source| ArchiveError::Io { path: path.clone(), source })?;
        file.write_all(text.as_bytes()).map_err(|source| ArchiveError::Io { path: path.clone(), source })?;
    }
    read_manifest(dir).map(|_| ())
}

/// Fails unless `dest` is missing or an empty directory; returns whether it exists.
/// Checks that [`unpack`] could write to `dest` (absent, or an empty directory),
/// so a caller can refuse before it downloads anything.
///
/// # Errors
///
/// [`ArchiveError::DestinationNotEmpty`], or [`ArchiveError::Io`] if `dest`
/// cannot be inspected.
pub fn check_unpack_destination(dest: &Path) -> Result<(), ArchiveError> {
    check_destination(dest).map(drop)
}

fn check_destination(dest: &Path) -> Result<bool, ArchiveError> {
    match fs::symlink_metadata(dest) {
        Ok(metadata) if metadata.is_dir() => {
            let mut entries =
                fs::read_dir(dest).map_err(|source| ArchiveError::Io { path: dest.to_owned(), source })?;
            match entries.next() {
                None => Ok(true),
                Some(Ok(_)) => Err(ArchiveError::DestinationNotEmpty(dest.to_owned())),
                Some(Err(source)) => Err(ArchiveError::Io { path: dest.to_owned(), source }),
            }
        }
        Ok(_) => Err(ArchiveError::DestinationNotEmpty(dest.to_owned())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ArchiveError::Io { path: dest.to_owned(), source }),
    }
}

// ---------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------

/// True if `name` is a single plain path component on every platform: not empty, not
/// `.` or `..`, no separators, no NUL, no drive prefix.
fn is_plain_component(name: &str) -> bool {
    if name.is_empty() || name.contains(['/', '\\', '\0']) {
        return false;
    }
    let mut components = Path::new(name).components();
    matches!(components.next(), Some(Component::Normal(_))) && components.next().is_none()
}

/// A relative path inside a package, as components.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RelPath(Vec<String>);

impl RelPath {
    fn to_path(&self, base: &Path) -> PathBuf {
        let mut path = base.to_owned();
        path.extend(&self.0);
        path
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

// ---------------------------------------------------------------------------------------
// Packing
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File { executable: bool },
}

/// One thing to put in the archive.
#[derive(Debug)]
struct Item {
    rel: RelPath,
    source: PathBuf,
    kind: Kind,
}

/// An in-memory sink that refuses to grow past `limit` bytes.
#[derive(Debug)]
struct LimitedVec {
    bytes: Vec<u8>,
    limit: u64,
    exceeded: bool,
}

impl Write for LimitedVec {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.bytes.len() as u64 + data.len() as u64 > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("archive size limit reached"));
        }
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads exactly `remaining` bytes from a file, failing if it got shorter meanwhile.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(buf.len());
        let read = self.inner.read(&mut buf[..max])?;
        if read == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file got shorter while it was being packed"));
        }
        self.remaining -= read as u64;
        Ok(read)
    }
}

/// Packs the package in `dir` into a deterministic `.tar.gz`, returning its validated
/// metadata and the archive bytes.
///
/// Every entry lives under `<name>-<version>/`; entries are sorted by path; only
/// regular files and directories are stored, with mtime 0, uid/gid 0, empty owner
/// names and mode 0o755 for directories and owner-executable files, 0o644 for other
/// files (GNU tar format; GNU long-name records for paths over 100 bytes). The gzip
/// header carries no file name, mtime 0 and OS byte 255, at compression level 6. So
/// the same content gives the same bytes whatever the mtimes, owners, non-exec
/// permissions or directory iteration order.
///
/// What goes in is what [`list`] lists: `.git` (anywhere), `target` (at the top) and
/// whatever the package's `.gitignore` and [`IGNORE_FILE`] files ignore are left
/// out; everything else, hidden files included, goes in, and `agora.toml` always.
///
/// # Errors
///
/// The errors of [`read_manifest`] and [`list`]; [`ArchiveError::TooLarge`] as soon
/// as the compressed output would exceed `limit` bytes; [`ArchiveError::Io`] if
/// reading fails.
pub fn pack(dir: &Path, limit: u64) -> Result<(PackageMetadata, Vec<u8>), ArchiveError> {
    let metadata = read_manifest(dir)?;
    let top = format!("{}-{}", metadata.name, metadata.version);
    let items = collect_items(dir)?;

    let sink = LimitedVec { bytes: Vec::new(), limit, exceeded: false };
    let encoder =
        GzBuilder::new().mtime(0).operating_system(GZIP_OS_UNKNOWN).write(sink, Compression::new(COMPRESSION_LEVEL));
    let mut builder = tar::Builder::new(encoder);

    let write_error = |builder: &tar::Builder<GzEncoder<LimitedVec>>, path: &Path, source| {
        if builder.get_ref().get_ref().exceeded {
            ArchiveError::TooLarge { limit }
        } else {
            ArchiveError::Io { path: path.to_owned(), source }
        }
    };

    let mut header = entry_header(Kind::Dir, 0);
    builder
        .append_data(&mut header, format!("{top}/"), io::empty())
        .map_err(|source| write_error(&builder, dir, source))?;
    let mut files = 0usize;
    for item in &items {
        match item.kind {
            Kind::Dir => {
                let mut header = entry_header(item.kind, 0);
                builder
                    .append_data(&mut header, format!("{top}/{}/", item.rel), io::empty())
                    .map_err(|source| write_error(&builder, &item.source, source))?;
            }
            Kind::File { .. } => {
                let io_error = |source| ArchiveError::Io { path: item.source.clone(), source };
                let file = File::open(&item.source).map_err(io_error)?;
                let size = file.metadata().map_err(io_error)?.len();
                let mut header = entry_header(item.kind, size);
                let data = ExactReader { inner: file, remaining: size };
                builder
                    .append_data(&mut header, format!("{top}/{}", item.rel), data)
                    .map_err(|source| write_error(&builder, &item.source, source))?;
                files += 1;
            }
        }
    }
    builder.finish().map_err(|source| write_error(&builder, dir, source))?;
    let mut encoder = builder.into_inner().map_err(|source| ArchiveError::Io { path: dir.to_owned(), source })?;
    let sink_error = |encoder: &GzEncoder<LimitedVec>, source| {
        if encoder.get_ref().exceeded {
            ArchiveError::TooLarge { limit }
        } else {
            ArchiveError::Io { path: dir.to_owned(), source }
        }
    };
    encoder.try_finish().map_err(|source| sink_error(&encoder, source))?;
    // After `try_finish` there is nothing left to write.
    let sink = encoder.finish().map_err(|source| ArchiveError::Io { path: dir.to_owned(), source })?;
    tracing::debug!(package = %top, files, bytes = sink.bytes.len(), "packed");
    Ok((metadata, sink.bytes))
}

/// The files [`pack`] would put in the archive of the package in `dir`, as
/// `/`-separated paths relative to `dir`, sorted (directories are not listed).
///
/// The walk stays inside `dir` and does not follow links. It leaves out `.git`
/// wherever it appears, `target` at the top, and what the `.gitignore` and
/// [`IGNORE_FILE`] files in `dir` and its subdirectories ignore (gitignore syntax;
/// a file's patterns apply to its own directory and below, a deeper file's win over
/// a shallower one's, and an [`IGNORE_FILE`] match wins over any `.gitignore` match,
/// so `!pattern` there re-includes; as in git, nothing inside an ignored directory
/// can be re-included). Ignore files outside `dir`, `.git/info/exclude` and the
/// user's global excludes are not read, so the same directory packs the same
/// wherever it is. [`MANIFEST_FILE`] at the top is always included, even when a
/// pattern matches it.
///
/// # Errors
///
/// [`ArchiveError::MissingManifest`] without an `agora.toml` (its content is not
/// checked here: [`read_manifest`] does that); [`ArchiveError::UnsafePath`] for a
/// symbolic link, a special file or a file name that is not portable UTF-8 (unless
/// ignored); [`ArchiveError::IgnoreFile`] for an ignore file with an invalid
/// pattern; [`ArchiveError::TooManyEntries`] past [`MAX_ENTRIES`];
/// [`ArchiveError::Io`] if reading fails.
pub fn list(dir: &Path) -> Result<Vec<String>, ArchiveError> {
    let items = collect_items(dir)?;
    Ok(items.iter().filter(|item| matches!(item.kind, Kind::File { .. })).map(|item| item.rel.to_string()).collect())
}

/// True if `metadata`'s description is still the placeholder [`write_skeleton`]
/// wrote ([`TEMPLATE_DESCRIPTION`]), surrounding whitespace aside.
pub fn is_template_description(metadata: &PackageMetadata) -> bool {
    metadata.description.trim() == TEMPLATE_DESCRIPTION
}

/// A normalised header for one entry; the path is set by `append_data`.
fn entry_header(kind: Kind, size: u64) -> Header {
    let mut header = Header::new_gnu();
    let (entry_type, mode) = match kind {
        Kind::Dir => (EntryType::Directory, 0o755),
        Kind::File { executable: true } => (EntryType::Regular, 0o755),
        Kind::File { executable: false } => (EntryType::Regular, 0o644),
    };
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Walks `dir` without following links and returns what to pack, sorted by path.
///
/// The walk is ripgrep's (`ignore::WalkBuilder`) limited to the package directory:
/// `.gitignore` and [`IGNORE_FILE`] files in `dir` and below apply, [`IGNORE_FILE`]
/// first, and nothing else does (no parent directories, no `.git/info/exclude`, no
/// global excludes, no `.ignore`), so the result depends on the directory alone.
/// An ignored entry is left out before it is looked at, so an ignored symbolic link
/// or special file is no error. [`MANIFEST_FILE`] at the top is packed even if ignored.
fn collect_items(dir: &Path) -> Result<Vec<Item>, ArchiveError> {
    let mut walk = ignore::WalkBuilder::new(dir);
    walk.standard_filters(false)
        .git_ignore(true)
        .require_git(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|entry| {
            let name = entry.file_name();
            let skipped = SKIPPED_EVERYWHERE.iter().any(|skipped| name == *skipped)
                || (entry.depth() == 1 && SKIPPED_AT_ROOT.iter().any(|skipped| name == *skipped));
            !skipped
        });
    let mut items = Vec::new();
    for entry in walk.build() {
        let entry = entry.map_err(|error| walk_error(dir, error))?;
        if let Some(error) = entry.error() {
            return Err(ArchiveError::IgnoreFile(error.to_string()));
        }
        if entry.depth() == 0 {
            continue;
        }
        let rel = rel_path(dir, entry.path())?;
        // This entry plus the ones so far plus the top directory.
        if items.len() + 2 > MAX_ENTRIES {
            return Err(ArchiveError::TooManyEntries { limit: MAX_ENTRIES });
        }
        items.push(item(rel, entry.into_path())?);
    }
    let manifest = RelPath(vec![MANIFEST_FILE.to_owned()]);
    if !items.iter().any(|item| item.rel == manifest) {
        let source = dir.join(MANIFEST_FILE);
        if let Err(error) = fs::symlink_metadata(&source)
            && error.kind() == io::ErrorKind::NotFound
        {
            return Err(ArchiveError::MissingManifest { dir: dir.to_owned() });
        }
        items.push(item(manifest, source)?);
    }
    items.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(items)
}

/// The package-relative path of `path`, a walked entry below `dir`, checked to be
/// portable.
fn rel_path(dir: &Path, path: &Path) -> Result<RelPath, ArchiveError> {
    let relative = path
        .strip_prefix(dir)
        .map_err(|_| ArchiveError::UnsafePath(format!("`{}` is not inside `{}`", path.display(), dir.display())))?;
    let mut rel = RelPath(Vec::new());
    for component in relative.components() {
        let Component::Normal(name) = component else {
            return Err(ArchiveError::UnsafePath(format!("`{}` is not a plain path", path.display())));
        };
        let Some(name) = name.to_str() else {
            return Err(ArchiveError::UnsafePath(format!("`{}` has a name that is not UTF-8", path.display())));
        };
        if !is_plain_component(name) {
            return Err(ArchiveError::UnsafePath(format!(
                "`{}` has a name that cannot be unpacked on every platform",
                path.display()
            )));
        }
        rel.0.push(name.to_owned());
    }
    Ok(rel)
}

/// What to pack for `source`: a directory or a regular file, never a link or a
/// special file.
fn item(rel: RelPath, source: PathBuf) -> Result<Item, ArchiveError> {
    let metadata =
        fs::symlink_metadata(&source).map_err(|error| ArchiveError::Io { path: source.clone(), source: error })?;
    let file_type = metadata.file_type();
    let kind = if file_type.is_symlink() {
        return Err(ArchiveError::UnsafePath(format!(
            "`{}` is a symbolic link; replace it with the file it points to, or ignore it in {IGNORE_FILE}",
            source.display()
        )));
    } else if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_file() {
        Kind::File { executable: is_executable(&metadata) }
    } else {
        return Err(ArchiveError::UnsafePath(format!(
            "`{}` is neither a regular file nor a directory",
            source.display()
        )));
    };
    Ok(Item { rel, source, kind })
}

/// An error of the walk: an I/O error on the path it names, else an ignore file
/// that could not be used.
fn walk_error(dir: &Path, error: ignore::Error) -> ArchiveError {
    fn named_path(error: &ignore::Error) -> Option<&Path> {
        match error {
            ignore::Error::WithPath { path, .. } => Some(path),
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => named_path(err),
            _ => None,
        }
    }
    let path = named_path(&error).unwrap_or(dir).to_owned();
    let message = error.to_string();
    match error.into_io_error() {
        Some(source) => ArchiveError::Io { path, source },
        None => ArchiveError::IgnoreFile(message),
    }
}

#[cfg(unix)]
fn is_executable(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o100 != 0
}

#[cfg(not(unix))]
fn is_executable(_metadata: &fs::Metadata) -> bool {
    false
}

// ---------------------------------------------------------------------------------------
// Reading archives
// ---------------------------------------------------------------------------------------

/// What went wrong below the tar reader, recorded so that its `io::Error`s can be told
/// apart: a failing source, a size limit, or (neither) corrupt data.
#[derive(Debug, Default)]
struct Fault {
    source: Option<io::Error>,
}

/// Classifies `io::Error`s that come out of the archive reader.
#[derive(Debug, Clone)]
struct Faults {
    shared: Rc<RefCell<Fault>>,
    over_limit: Rc<Cell<bool>>,
    limit: u64,
}

impl Faults {
    fn classify(&self, error: &io::Error) -> ArchiveError {
        let mut fault = self.shared.borrow_mut();
        if self.over_limit.get() {
            ArchiveError::TooLarge { limit: self.limit }
        } else if let Some(source) = fault.source.take() {
            ArchiveError::ReadArchive { source }
        } else {
            ArchiveError::NotAnArchive(format!("the archive is corrupt or truncated ({error})"))
        }
    }
}

/// Wraps the caller's reader and records its errors.
struct SourceReader<R> {
    inner: R,
    shared: Rc<RefCell<Fault>>,
}

impl<R: Read> Read for SourceReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Err(error) if error.kind() != io::ErrorKind::Interrupted => {
                let kind = error.kind();
                self.shared.borrow_mut().source = Some(error);
                Err(io::Error::new(kind, "reading the archive failed"))
            }
            result => result,
        }
    }
}

type ArchiveReader<R> = BoundedReader<GzDecoder<io::BufReader<io::Chain<io::Cursor<Vec<u8>>, SourceReader<R>>>>>;

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads up to the two magic bytes; fewer only at end of input.
fn read_magic(reader: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut magic = Vec::with_capacity(GZIP_MAGIC.len());
    reader.take(GZIP_MAGIC.len() as u64).read_to_end(&mut magic)?;
    Ok(magic)
}

/// An entry that passed the path and type checks.
#[derive(Debug)]
struct CheckedEntry {
    /// The path below the top directory; empty for the top directory itself.
    rel: RelPath,
    kind: Kind,
    size: u64,
}

/// Opens a gzip tar stream, bounded to `limit` uncompressed bytes.
fn open_archive<R: Read>(reader: R, limit: u64) -> Result<(tar::Archive<ArchiveReader<R>>, Faults), ArchiveError> {
    let shared = Rc::new(RefCell::new(Fault::default()));
    let over_limit = Rc::new(Cell::new(false));
    let faults = Faults { shared: Rc::clone(&shared), over_limit: Rc::clone(&over_limit), limit };
    let mut source = SourceReader { inner: reader, shared: Rc::clone(&shared) };
    let magic = read_magic(&mut source).map_err(|error| faults.classify(&error))?;
    if magic.is_empty() {
        return Err(ArchiveError::NotAnArchive("the data is empty".into()));
    }
    if magic != GZIP_MAGIC {
        return Err(ArchiveError::NotAnArchive(
            "the data is not gzip-compressed; expected a .tar.gz made by `agora publish`".into(),
        ));
    }
    // One gzip member only (`bufread::GzDecoder` stops at the end of the first), read
    // through our own buffer so that whatever follows it can be seen and refused.
    let compressed = io::BufReader::with_capacity(COPY_BUFFER, io::Cursor::new(magic).chain(source));
    let stream = BoundedReader::new(GzDecoder::new(compressed), limit, over_limit);
    Ok((tar::Archive::new(stream), faults))
}

/// What the entries seen so far look like.
#[derive(Debug, Default)]
struct Layout {
    top: Option<String>,
    entries: usize,
    /// Paths below the top directory, `/`-joined.
    seen: HashSet<String>,
    files: HashSet<String>,
}

impl Layout {
    /// Checks that an entry fits: under the one top directory, not seen before, not
    /// below a file. Returns false for the top directory's own entry.
    fn admit(&mut self, entry_top: String, entry: &CheckedEntry) -> Result<bool, ArchiveError> {
        let top = match &self.top {
            None => self.top.insert(entry_top),
            Some(top) if *top != entry_top => {
                return Err(ArchiveError::NotAnArchive(format!(
                    "entries under both `{top}/` and `{entry_top}/`; a package archive has one \
                     top directory"
                )));
            }
            Some(top) => top,
        };
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(ArchiveError::TooManyEntries { limit: MAX_ENTRIES });
        }
        if entry.rel.0.is_empty() {
            return match entry.kind {
                Kind::Dir => Ok(false),
                Kind::File { .. } => Err(ArchiveError::NotAnArchive(format!(
                    "`{top}` is a file; a package archive keeps everything under \
                     `<name>-<version>/`"
                ))),
            };
        }
        let path = entry.rel.to_string();
        for (at, _) in path.match_indices('/') {
            let ancestor = &path[..at];
            if self.files.contains(ancestor) {
                return Err(ArchiveError::UnsafePath(format!(
                    "`{top}/{path}` is inside `{top}/{ancestor}`, which is a file"
                )));
            }
        }
        if self.seen.contains(&path) {
            return Err(ArchiveError::UnsafePath(format!("`{top}/{path}` appears more than once")));
        }
        if matches!(entry.kind, Kind::File { .. }) {
            self.files.insert(path.clone());
        }
        self.seen.insert(path);
        Ok(true)
    }
}

/// Reads the archive's `agora.toml` entry into memory, at most 64 KiB.
fn read_manifest_entry(
    entry: &mut dyn Read,
    checked: &CheckedEntry,
    origin: &str,
    faults: &Faults,
) -> Result<Vec<u8>, ArchiveError> {
    let malformed = |message: String| ArchiveError::MalformedManifest { origin: origin.to_owned(), message };
    if checked.kind == Kind::Dir {
        return Err(malformed("it is a directory, not a file".into()));
    }
    if checked.size > MAX_MANIFEST_SIZE {
        return Err(malformed(format!(
            "the file is {} bytes, over the limit of {MAX_MANIFEST_SIZE} bytes",
            checked.size
        )));
    }
    let mut bytes = Vec::new();
    entry.take(MAX_MANIFEST_SIZE + 1).read_to_end(&mut bytes).map_err(|error| faults.classify(&error))?;
    Ok(bytes)
}

/// Reads every entry of a gzip tar, checking paths and types, that all entries share
/// one top directory, that nothing appears twice or below a file, and finally that the
/// top directory's `agora.toml` describes `<top>`; returns that manifest. `visit` is
/// called for every entry below the top directory, with its contents.
fn scan_archive<R: Read>(
    reader: R,
    limit: u64,
    mut visit: impl FnMut(&CheckedEntry, &mut dyn Read, &Faults) -> Result<(), ArchiveError>,
) -> Result<PackageMetadata, ArchiveError> {
    let (mut archive, faults) = open_archive(reader, limit)?;
    let mut layout = Layout::default();
    let mut manifest: Option<String> = None;
    let entries = archive.entries().map_err(|error| faults.classify(&error))?;
    for entry in entries {
        let mut entry = entry.map_err(|error| faults.classify(&error))?;
        let (entry_top, checked) = check_entry(&entry)?;
        if !layout.admit(entry_top, &checked)? {
            continue;
        }
        if checked.rel.0.len() == 1 && checked.rel.0[0] == MANIFEST_FILE {
            let top = layout.top.as_deref().unwrap_or_default();
            let origin = format!("`{top}/{MANIFEST_FILE}` in the archive");
            let bytes = read_manifest_entry(&mut entry, &checked, &origin, &faults)?;
            visit(&checked, &mut bytes.as_slice(), &faults)?;
            manifest = Some(manifest_text(bytes, &origin)?);
        } else {
            visit(&checked, &mut entry, &faults)?;
        }
    }
    check_nothing_after(archive.into_inner(), &faults)?;

    let Some(top) = layout.top else {
        return Err(ArchiveError::NotAnArchive("the archive is empty".into()));
    };
    let Some(text) = manifest else {
        return Err(ArchiveError::NotAnArchive(format!("there is no `{top}/{MANIFEST_FILE}`")));
    };
    let metadata = parse_manifest_from(&text, &format!("`{top}/{MANIFEST_FILE}` in the archive"))?;
    let expected = format!("{}-{}", metadata.name, metadata.version);
    if top != expected {
        return Err(ArchiveError::ManifestMismatch { expected, found: top });
    }
    Ok(metadata)
}

/// After the tar end-of-archive: reads the rest of the gzip member (which verifies
/// its checksum) and refuses anything but zero padding there, and any byte after
/// the member. The bytes a node validates are then exactly the bytes it signs and
/// serves: no second gzip member or appended tar can ride along unchecked.
fn check_nothing_after<R: Read>(mut stream: ArchiveReader<R>, faults: &Faults) -> Result<(), ArchiveError> {
    let trailing = |what: &str| {
        ArchiveError::NotAnArchive(format!(
            "the archive has {what}; a package archive is one gzip member holding one tar \
             (repack it with `agora publish`)"
        ))
    };
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let read = stream.read(&mut buffer).map_err(|error| faults.classify(&error))?;
        if read == 0 {
            break;
        }
        if buffer[..read].iter().any(|byte| *byte != 0) {
            return Err(trailing("data after the tar end-of-archive"));
        }
    }
    let mut rest = stream.into_inner().into_inner();
    let after = io::BufRead::fill_buf(&mut rest).map_err(|error| faults.classify(&error))?;
    if !after.is_empty() {
        return Err(trailing("data after the end of its gzip stream (a second gzip member or appended bytes)"));
    }
    Ok(())
}

/// Checks one entry's path and type; returns its top directory and the rest.
fn check_entry<R: Read>(entry: &tar::Entry<'_, R>) -> Result<(String, CheckedEntry), ArchiveError> {
    let raw = entry.path_bytes();
    let shown = String::from_utf8_lossy(&raw).chars().take(200).collect::<String>();
    let Ok(path) = std::str::from_utf8(&raw) else {
        return Err(ArchiveError::UnsafePath(format!("`{shown}` is not UTF-8")));
    };
    if path.starts_with('/') {
        return Err(ArchiveError::UnsafePath(format!("`{shown}` is absolute")));
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let mut components = Vec::new();
    for component in trimmed.split('/') {
        if component == ".." {
            return Err(ArchiveError::UnsafePath(format!("`{shown}` contains `..`")));
        }
        if !is_plain_component(component) {
            return Err(ArchiveError::UnsafePath(format!("`{shown}` is not a plain relative path")));
        }
        components.push(component.to_owned());
    }
    let header = entry.header();
    let kind = match header.entry_type() {
        EntryType::Regular => {
            let mode = header
                .mode()
                .map_err(|error| ArchiveError::NotAnArchive(format!("`{shown}` has a corrupt mode: {error}")))?;
            Kind::File { executable: mode & 0o100 != 0 }
        }
        EntryType::Directory => Kind::Dir,
        EntryType::Symlink => {
            return Err(ArchiveError::UnsafePath(format!("`{shown}` is a symbolic link")));
        }
        EntryType::Link => return Err(ArchiveError::UnsafePath(format!("`{shown}` is a hard link"))),
        EntryType::Char | EntryType::Block => {
            return Err(ArchiveError::UnsafePath(format!("`{shown}` is a device")));
        }
        EntryType::Fifo => return Err(ArchiveError::UnsafePath(format!("`{shown}` is a FIFO"))),
        other => {
            return Err(ArchiveError::NotAnArchive(format!(
                "`{shown}` has the unsupported entry type {:?}",
                other.as_byte() as char
            )));
        }
    };
    let mut components = components.into_iter();
    let top = components.next().unwrap_or_default();
    let size = if kind == Kind::Dir { 0 } else { entry.size() };
    Ok((top, CheckedEntry { rel: RelPath(components.collect()), kind, size }))
}

/// Reads the `agora.toml` of a package archive, checking the whole archive on the way.
///
/// This is what a node does with an upload: every entry must be a plain file or
/// directory at a safe relative path under one top directory, and that directory must
/// be `<name>-<version>/` of the `agora.toml` inside it. At most
/// `limit` bytes of uncompressed tar (see [`unpacked_limit`]) and [`MAX_ENTRIES`]
/// entries are read. Nothing may follow the tar's end-of-archive but zero padding,
/// and nothing may follow the first gzip member.
///
/// # Errors
///
/// [`ArchiveError::NotAnArchive`] for anything that is not a well-formed gzip tar of
/// one package (never a panic); [`ArchiveError::UnsafePath`] for unsafe entries;
/// [`ArchiveError::ManifestMismatch`] if the top directory does not match; the errors
/// of [`parse_manifest`]; [`ArchiveError::ReadArchive`] if `reader` fails;
/// [`ArchiveError::TooLarge`] and [`ArchiveError::TooManyEntries`] past the bounds.
pub fn manifest_from_archive(reader: impl Read, limit: u64) -> Result<PackageMetadata, ArchiveError> {
    inspect(reader, limit).map(|(metadata, _)| metadata)
}

/// [`manifest_from_archive`], also counting what the archive unpacks to: regular
/// files and their bytes of content (what a publisher's manifest records).
///
/// # Errors
///
/// Those of [`manifest_from_archive`].
pub fn inspect(reader: impl Read, limit: u64) -> Result<(PackageMetadata, UnpackSummary), ArchiveError> {
    let mut contents = UnpackSummary { files: 0, bytes: 0 };
    let metadata = scan_archive(reader, limit, |entry, _, _| {
        if matches!(entry.kind, Kind::File { .. }) {
            contents.files += 1;
            contents.bytes += entry.size;
        }
        Ok(())
    })?;
    Ok((metadata, contents))
}

/// Unpacks a package archive into `dest`, without its `<name>-<version>/` top
/// directory.
///
/// `dest` must not exist or be an empty directory. Entries are written into a
/// temporary directory next to `dest`, which is renamed into place only once the whole
/// archive has been checked (the same checks as [`manifest_from_archive`]), so on any
/// error nothing is left at `dest` (missing parent directories of `dest` are created
/// first and stay). Owner-executable files get their exec bits on Unix; times and
/// owners are not restored.
///
/// `limit` bounds the uncompressed archive: file contents plus tar headers and padding
/// (512 bytes or more per entry), so floods of empty entries are refused as well.
///
/// # Errors
///
/// [`ArchiveError::DestinationNotEmpty`], [`ArchiveError::TooLarge`], the other errors
/// of [`manifest_from_archive`], and [`ArchiveError::Io`] if writing fails.
pub fn unpack(reader: impl Read, dest: &Path, limit: u64) -> Result<UnpackSummary, ArchiveError> {
    let existed = check_destination(dest)?;
    let parent = match dest.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
        Some(parent) => parent,
        None => return Err(ArchiveError::DestinationNotEmpty(dest.to_owned())),
    };
    fs::create_dir_all(parent).map_err(|source| ArchiveError::Io { path: parent.to_owned(), source })?;
    let staging = tempfile::Builder::new()
        .prefix(".agora-unpack-")
        .tempdir_in(parent)
        .map_err(|source| ArchiveError::Io { path: parent.to_owned(), source })?;
    let root = staging.path().join("package");
    fs::create_dir(&root).map_err(|source| ArchiveError::Io { path: dest.to_owned(), source })?;

    let mut summary = UnpackSummary::default();
    let mut buffer = vec![0u8; COPY_BUFFER];
    let metadata = scan_archive(reader, limit, |entry, data, faults| {
        let target = entry.rel.to_path(&root);
        let shown = entry.rel.to_path(dest);
        let io_error = |source| ArchiveError::Io { path: shown.clone(), source };
        let Kind::File { executable } = entry.kind else {
            return fs::create_dir_all(&target).map_err(io_error);
        };
        if summary.bytes.saturating_add(entry.size) > limit {
            return Err(ArchiveError::TooLarge { limit });
        }
        if let Some(dir) = target.parent() {
            fs::create_dir_all(dir).map_err(io_error)?;
        }
        let mut file = match File::create_new(&target) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(ArchiveError::UnsafePath(format!(
                    "`{}` collides with another entry (names may differ only in case)",
                    entry.rel
                )));
            }
            Err(source) => return Err(io_error(source)),
        };
        let mut written = 0u64;
        loop {
            let read = match data.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(faults.classify(&error)),
            };
            written += read as u64;
            if written > entry.size {
                return Err(ArchiveError::NotAnArchive(format!(
                    "`{}` holds more data than its header says",
                    entry.rel
                )));
            }
            file.write_all(&buffer[..read]).map_err(io_error)?;
        }
        if written != entry.size {
            return Err(ArchiveError::NotAnArchive(format!("`{}` is truncated", entry.rel)));
        }
        if executable {
            make_executable(&file).map_err(io_error)?;
        }
        summary.files += 1;
        summary.bytes += written;
        Ok(())
    })?;

    if existed {
        fs::remove_dir(dest).map_err(|source| ArchiveError::Io { path: dest.to_owned(), source })?;
    }
    fs::rename(&root, dest).map_err(|source| ArchiveError::Io { path: dest.to_owned(), source })?;
    drop(staging);
    tracing::debug!(
        package = %metadata.name,
        version = %metadata.version,
        dest = %dest.display(),
        files = summary.files,
        bytes = summary.bytes,
        "unpacked"
    );
    Ok(summary)
}

/// Adds exec bits wherever the file has read bits (so the umask is respected).
#[cfg(unix)]
fn make_executable(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = file.metadata()?.permissions();
    let mode = permissions.mode();
    permissions.set_mode(mode | ((mode & 0o444) >> 2));
    file.set_permissions(permissions)
}

#[cfg(not(unix))]
fn make_executable(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const LIMIT: u64 = 10 * 1024 * 1024;

    /// Path, type, contents and link target of one hand-built tar entry.
    type RawEntry<'a> = (&'a str, EntryType, &'a [u8], Option<&'a str>);

    const MANIFEST: &str = r#"
[package]
name = "demo"
version = "1.2.3"
description = "a demo package"
keywords = ["demo", "test"]
categories = ["templates/rust"]
license = "MIT"
authors = ["Ada <ada@example.org>"]
homepage = "https://example.org"
repository = "https://example.org/demo.git"

[dependencies]
other = "^1.2"
"#;

    fn write(path: &Path, content: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    /// A package with nested, empty, hidden, long-named and skipped content.
    fn sample_package(dir: &Path) {
        write(&dir.join(MANIFEST_FILE), MANIFEST.as_bytes());
        write(&dir.join("README.md"), b"# demo\n");
        write(&dir.join("src/main.rs"), b"fn main() {}\n");
        write(&dir.join("src/lib/deep/mod.rs"), b"pub fn f() {}\n");
        write(&dir.join(".hidden"), b"kept\n");
        write(&dir.join("data.bin"), &(0..=255u8).cycle().take(100_000).collect::<Vec<_>>());
        let long = format!("{}/{}.txt", "d".repeat(60), "f".repeat(80));
        write(&dir.join(long), b"long path\n");
        fs::create_dir_all(dir.join("empty")).unwrap();
        write(&dir.join(".git/HEAD"), b"ref: refs/heads/main\n");
        write(&dir.join("target/debug/demo"), b"binary");
        write(&dir.join("src/target/kept.rs"), b"// only the top-level target is skipped\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let script = dir.join("run.sh");
            write(&script, b"#!/bin/sh\necho hi\n");
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    /// Every file and directory under `dir`, relative, with contents for files.
    fn tree(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        let mut pending = vec![dir.to_owned()];
        while let Some(current) = pending.pop() {
            for entry in fs::read_dir(&current).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
                if path.is_dir() {
                    out.insert(rel, None);
                    pending.push(path);
                } else {
                    out.insert(rel, Some(fs::read(&path).unwrap()));
                }
            }
        }
        out
    }

    /// Builds a gzip tar by hand, writing raw path bytes so unsafe paths get through.
    fn raw_archive(entries: &[RawEntry<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, entry_type, data, link) in entries {
            let mut header = Header::new_gnu();
            let name = &mut header.as_gnu_mut().unwrap().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_entry_type(*entry_type);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn demo_manifest_entry() -> RawEntry<'static> {
        ("demo-1.2.3/agora.toml", EntryType::Regular, MANIFEST.as_bytes(), None)
    }

    /// Names in `dir`, to check nothing was left behind.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn parses_every_field() {
        let metadata = parse_manifest(MANIFEST).unwrap();
        assert_eq!(metadata.name.as_str(), "demo");
        assert_eq!(metadata.version.to_string(), "1.2.3");
        assert_eq!(metadata.keywords, ["demo", "test"]);
        assert_eq!(metadata.license.as_deref(), Some("MIT"));
        assert_eq!(metadata.authors.len(), 1);
        let other: PackageName = "other".parse().unwrap();
        assert_eq!(metadata.dependencies[&other].to_string(), "^1.2");
        let minimal = "[package]\nname = \"x\"\nversion = \"0.1.0\"\ndescription = \"d\"\n";
        assert!(parse_manifest(minimal).unwrap().dependencies.is_empty());
    }

    #[test]
    fn skeleton_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("hello-world");
        let name: PackageName = "hello-world".parse().unwrap();
        write_skeleton(&dir, &name).unwrap();
        let metadata = read_manifest(&dir).unwrap();
        assert_eq!(metadata.name, name);
        assert_eq!(metadata.version.to_string(), "0.1.0");
        assert_eq!(metadata.license.as_deref(), Some("MIT OR Apache-2.0"));
        assert!(metadata.keywords.is_empty());
        assert!(fs::read_to_string(dir.join("src/main.rs")).unwrap().contains("fn main()"));
        assert!(dir.join("README.md").is_file());
        let (packed, bytes) = pack(&dir, LIMIT).unwrap();
        assert_eq!(manifest_from_archive(bytes.as_slice(), LIMIT).unwrap(), packed);

        // An existing empty directory is fine, a non-empty one is refused untouched.
        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        write_skeleton(&empty, &name).unwrap();
        let error = write_skeleton(&dir, &name).unwrap_err();
        assert!(matches!(error, ArchiveError::DestinationNotEmpty(_)), "{error}");
    }

    #[test]
    fn pack_read_unpack_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("source");
        sample_package(&source);
        let (metadata, bytes) = pack(&source, LIMIT).unwrap();
        assert_eq!(metadata, parse_manifest(MANIFEST).unwrap());
        assert_eq!(manifest_from_archive(bytes.as_slice(), LIMIT).unwrap(), metadata);

        let dest = tmp.path().join("out/demo");
        let summary = unpack(bytes.as_slice(), &dest, LIMIT).unwrap();
        let mut expected = tree(&source);
        expected.retain(|path, _| !path.starts_with(".git") && !path.starts_with("target"));
        let unpacked = tree(&dest);
        assert_eq!(unpacked, expected);
        assert!(unpacked.contains_key("empty"));
        assert!(unpacked.contains_key("src/target/kept.rs"));
        let files = expected.values().filter(|v| v.is_some()).count();
        let bytes_total: u64 = expected.values().flatten().map(|v| v.len() as u64).sum();
        assert_eq!(summary, UnpackSummary { files, bytes: bytes_total });
        assert_eq!(names(&tmp.path().join("out")), ["demo"], "no staging directory left");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &str| fs::metadata(dest.join(p)).unwrap().permissions().mode();
            assert_ne!(mode("run.sh") & 0o100, 0);
            assert_eq!(mode("README.md") & 0o111, 0);
        }

        // The archive layout: sorted, under the top directory, normalised headers.
        let mut archive = tar::Archive::new(GzDecoder::new(bytes.as_slice()));
        let mut paths = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(header.mtime().unwrap(), 0);
            assert_eq!(header.uid().unwrap(), 0);
            assert_eq!(header.gid().unwrap(), 0);
            assert!(matches!(header.mode().unwrap(), 0o644 | 0o755));
            assert_eq!(header.username_bytes(), Some(&b""[..]));
            paths.push(String::from_utf8(entry.path_bytes().into_owned()).unwrap());
        }
        assert_eq!(paths[0], "demo-1.2.3/");
        assert!(paths.iter().all(|p| p.starts_with("demo-1.2.3/")));
        assert!(paths.contains(&"demo-1.2.3/agora.toml".to_owned()));
        assert!(!paths.iter().any(|p| p.contains(".git/") || p.starts_with("demo-1.2.3/target")));
        let mut sorted = paths.clone();
        sorted.sort_by_key(|p| p.trim_end_matches('/').split('/').map(str::to_owned).collect::<Vec<_>>());
        assert_eq!(paths, sorted);
    }

    #[test]
    fn unpack_into_an_existing_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("source");
        sample_package(&source);
        let (_, bytes) = pack(&source, LIMIT).unwrap();
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        unpack(bytes.as_slice(), &dest, LIMIT).unwrap();
        assert!(dest.join(MANIFEST_FILE).is_file());
    }

    #[test]
    fn packing_is_deterministic() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pkg");
        sample_package(&dir);
        let (_, first) = pack(&dir, LIMIT).unwrap();

        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for file in ["README.md", "src/main.rs", MANIFEST_FILE] {
            File::options().write(true).open(dir.join(file)).unwrap().set_modified(old).unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.join("README.md"), fs::Permissions::from_mode(0o600)).unwrap();
            fs::set_permissions(dir.join("src"), fs::Permissions::from_mode(0o700)).unwrap();
        }
        let (_, second) = pack(&dir, LIMIT).unwrap();
        assert_eq!(first, second, "mtimes and non-exec permissions must not matter");

        // The same content elsewhere, created in another order, packs the same.
        let other = tmp.path().join("elsewhere");
        let mut files: Vec<_> = tree(&dir).into_iter().collect();
        files.reverse();
        for (path, content) in files {
            match content {
                Some(content) => write(&other.join(&path), &content),
                None => fs::create_dir_all(other.join(&path)).unwrap(),
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(other.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(pack(&other, LIMIT).unwrap().1, first);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.join("run.sh"), fs::Permissions::from_mode(0o644)).unwrap();
            assert_ne!(pack(&dir, LIMIT).unwrap().1, first, "the exec bit is content");
            fs::set_permissions(dir.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        }
        write(&dir.join("README.md"), b"# demo!\n");
        assert_ne!(pack(&dir, LIMIT).unwrap().1, first);
    }

    #[test]
    fn missing_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let error = read_manifest(tmp.path()).unwrap_err();
        assert!(matches!(error, ArchiveError::MissingManifest { .. }), "{error}");
        assert!(error.to_string().contains("agora new"), "{error}");
        let error = pack(tmp.path(), LIMIT).unwrap_err();
        assert!(matches!(error, ArchiveError::MissingManifest { .. }), "{error}");
    }

    #[test]
    fn malformed_manifest_names_the_line() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join(MANIFEST_FILE), b"[package]\nname = \"demo\"\nversion = 1.0\n");
        let error = read_manifest(tmp.path()).unwrap_err();
        assert!(matches!(error, ArchiveError::MalformedManifest { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains(MANIFEST_FILE), "{message}");

        let error = parse_manifest("[package\nname = \"demo\"").unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
        let error = parse_manifest("").unwrap_err();
        assert!(error.to_string().contains("package"), "{error}");

        write(&tmp.path().join(MANIFEST_FILE), &[0xff, 0xfe, b'[']);
        let error = read_manifest(tmp.path()).unwrap_err();
        assert!(error.to_string().contains("UTF-8"), "{error}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let typo = MANIFEST.replace("description", "descripton");
        let error = parse_manifest(&typo).unwrap_err();
        assert!(matches!(error, ArchiveError::MalformedManifest { .. }), "{error}");
        assert!(error.to_string().contains("descripton"), "{error}");
        let extra_table = format!("{MANIFEST}\n[dev-dependencies]\nx = \"1\"\n");
        let error = parse_manifest(&extra_table).unwrap_err();
        assert!(error.to_string().contains("dev-dependencies"), "{error}");
    }

    #[test]
    fn rule_breaking_values_are_invalid() {
        for (from, to, expected) in [
            ("name = \"demo\"", "name = \"Bad Name\"", "Bad Name"),
            ("version = \"1.2.3\"", "version = \"1.2\"", "1.2"),
            ("description = \"a demo package\"", "description = \"  \"", "description"),
            ("keywords = [\"demo\", \"test\"]", "keywords = [\"UPPER\"]", "keywords"),
            ("other = \"^1.2\"", "other = \"not a req\"", "other"),
            ("other = \"^1.2\"", "Other = \"1\"", "Other"),
            ("other = \"^1.2\"", "demo = \"1\"", "itself"),
        ] {
            let text = MANIFEST.replace(from, to);
            let error = parse_manifest(&text).unwrap_err();
            assert!(matches!(error, ArchiveError::InvalidManifest(_)), "{to}: {error}");
            assert!(error.to_string().contains(expected), "{to}: {error}");
        }
    }

    #[test]
    fn pack_over_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        sample_package(tmp.path());
        let error = pack(tmp.path(), 200).unwrap_err();
        assert!(matches!(error, ArchiveError::TooLarge { limit: 200 }), "{error}");
        // Just at the size of the archive is fine, one byte less is not.
        let (_, bytes) = pack(tmp.path(), LIMIT).unwrap();
        let size = bytes.len() as u64;
        assert_eq!(pack(tmp.path(), size).unwrap().1, bytes);
        let error = pack(tmp.path(), size - 1).unwrap_err();
        assert!(matches!(error, ArchiveError::TooLarge { .. }), "{error}");
    }

    #[test]
    fn unpack_over_the_limit_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("source");
        sample_package(&source);
        let (_, bytes) = pack(&source, LIMIT).unwrap();
        let dest = tmp.path().join("dest");
        let error = unpack(bytes.as_slice(), &dest, 50_000).unwrap_err();
        assert!(matches!(error, ArchiveError::TooLarge { limit: 50_000 }), "{error}");
        assert!(!dest.exists());
        assert_eq!(names(tmp.path()), ["source"]);

        // A gzip bomb of zeros behind a valid header is cut off by the stream bound.
        let zeros = vec![0u8; 4 * 1024 * 1024];
        let bomb =
            raw_archive(&[demo_manifest_entry(), ("demo-1.2.3/zeros", EntryType::Regular, zeros.as_slice(), None)]);
        let error = unpack(bomb.as_slice(), &dest, 1024 * 1024).unwrap_err();
        assert!(matches!(error, ArchiveError::TooLarge { .. }), "{error}");
        assert!(!dest.exists());
    }

    #[test]
    fn garbage_is_not_an_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("dest");
        let mut valid = {
            let source = tmp.path().join("source");
            sample_package(&source);
            pack(&source, LIMIT).unwrap().1
        };
        let half = valid.len() / 2;
        let mut gzip_of_garbage = GzEncoder::new(Vec::new(), Compression::fast());
        gzip_of_garbage.write_all(&[0x5a; 3000]).unwrap();
        let gzip_of_garbage = gzip_of_garbage.finish().unwrap();
        let empty_tar = GzEncoder::new(Vec::new(), Compression::fast()).finish().unwrap();
        let inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"definitely not gzip".to_vec(),
            (0..10_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect(),
            valid[..half].to_vec(),
            gzip_of_garbage,
            empty_tar,
            {
                let last = valid.len() - 5;
                valid[last] ^= 0xff; // the gzip trailer's CRC or length
                valid.clone()
            },
        ];
        for input in &inputs {
            let error = manifest_from_archive(input.as_slice(), LIMIT).unwrap_err();
            assert!(matches!(error, ArchiveError::NotAnArchive(_)), "{error}");
            let error = unpack(input.as_slice(), &dest, LIMIT).unwrap_err();
            assert!(matches!(error, ArchiveError::NotAnArchive(_)), "{error}");
            assert!(!dest.exists());
        }
        assert_eq!(names(tmp.path()), ["source"]);
    }

    #[test]
    fn a_failing_reader_is_a_read_error() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer went away"))
            }
        }
        let error = manifest_from_archive(Failing, LIMIT).unwrap_err();
        assert!(matches!(error, ArchiveError::ReadArchive { .. }), "{error}");
        assert!(error.to_string().contains("peer went away"), "{error}");
    }

    #[test]
    fn unsafe_entries_are_refused_and_nothing_is_written() {
        let cases: Vec<Vec<RawEntry<'_>>> = vec![
            vec![demo_manifest_entry(), ("../evil", EntryType::Regular, b"x", None)],
            vec![demo_manifest_entry(), ("demo-1.2.3/../evil", EntryType::Regular, b"x", None)],
            vec![demo_manifest_entry(), ("demo-1.2.3/../../evil", EntryType::Regular, b"x", None)],
            vec![demo_manifest_entry(), ("/tmp/evil", EntryType::Regular, b"x", None)],
            vec![demo_manifest_entry(), ("demo-1.2.3/./x", EntryType::Regular, b"x", None)],
            vec![demo_manifest_entry(), ("demo-1.2.3/evil", EntryType::Symlink, b"", Some("/etc/passwd"))],
            vec![demo_manifest_entry(), ("demo-1.2.3/evil", EntryType::Symlink, b"", Some("../.."))],
            vec![demo_manifest_entry(), ("demo-1.2.3/evil", EntryType::Link, b"", Some("demo-1.2.3/agora.toml"))],
            vec![demo_manifest_entry(), ("demo-1.2.3/evil", EntryType::Char, b"", None)],
            vec![demo_manifest_entry(), ("demo-1.2.3/evil", EntryType::Fifo, b"", None)],
            vec![demo_manifest_entry(), demo_manifest_entry()],
            vec![
                demo_manifest_entry(),
                ("demo-1.2.3/a", EntryType::Regular, b"file", None),
                ("demo-1.2.3/a/b", EntryType::Regular, b"below a file", None),
            ],
        ];
        for entries in cases {
            let tmp = tempfile::tempdir().unwrap();
            let work = tmp.path().join("work");
            fs::create_dir(&work).unwrap();
            let bytes = raw_archive(&entries);
            let shown = entries.last().unwrap().0;
            let error = manifest_from_archive(bytes.as_slice(), LIMIT).unwrap_err();
            assert!(matches!(error, ArchiveError::UnsafePath(_)), "{shown}: {error}");
            let dest = work.join("dest");
            let error = unpack(bytes.as_slice(), &dest, LIMIT).unwrap_err();
            assert!(matches!(error, ArchiveError::UnsafePath(_)), "{shown}: {error}");
            assert!(!dest.exists(), "{shown}");
            assert!(names(&work).is_empty(), "{shown}: {:?}", names(&work));
            assert_eq!(names(tmp.path()), ["work"], "{shown}");
        }
    }

    #[test]
    fn top_directory_must_match_the_manifest() {
        let bytes = raw_archive(&[("other-1.0.0/agora.toml", EntryType::Regular, MANIFEST.as_bytes(), None)]);
        let error = manifest_from_archive(bytes.as_slice(), LIMIT).unwrap_err();
        assert!(matches!(error, ArchiveError::ManifestMismatch { .. }), "{error}");
        assert!(error.to_string().contains("demo-1.2.3"), "{error}");
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("dest");
        let error = unpack(bytes.as_slice(), &dest, LIMIT).unwrap_err();
        assert!(matches!(error, ArchiveError::ManifestMismatch { .. }), "{error}");
        assert!(names(tmp.path()).is_empty());

        let two_tops = raw_archive(&[demo_manifest_entry(), ("demo-1.2.4/x", EntryType::Regular, b"x", None)]);
        let error = manifest_from_archive(two_tops.as_slice(), LIMIT).unwrap_err();
        assert!(matches!(error, ArchiveError::NotAnArchive(_)), "{error}");

        let no_manifest = raw_archive(&[("demo-1.2.3/x", EntryType::Regular, b"x", None)]);
        let error = manifest_from_archive(no_manifest.as_slice(), LIMIT).unwrap_err();
        assert!(error.to_string().contains("agora.toml"), "{error}");
    }

    #[test]
    fn unpack_into_a_non_empty_destination() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("source");
        sample_package(&source);
        let (_, bytes) = pack(&source, LIMIT).unwrap();
        let dest = tmp.path().join("dest");
        write(&dest.join("keep.txt"), b"mine");
        let error = unpack(bytes.as_slice(), &dest, LIMIT).unwrap_err();
        assert!(matches!(error, ArchiveError::DestinationNotEmpty(_)), "{error}");
        assert_eq!(names(&dest), ["keep.txt"]);
        let file = tmp.path().join("file");
        write(&file, b"x");
        let error = unpack(bytes.as_slice(), &file, LIMIT).unwrap_err();
        assert!(matches!(error, ArchiveError::DestinationNotEmpty(_)), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn pack_refuses_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        sample_package(tmp.path());
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("src/passwd")).unwrap();
        let error = pack(tmp.path(), LIMIT).unwrap_err();
        assert!(matches!(error, ArchiveError::UnsafePath(_)), "{error}");
        assert!(error.to_string().contains("src/passwd"), "{error}");
    }

    /// Writes [`MANIFEST`] and `files` (path, content) into `dir`.
    fn package(dir: &Path, files: &[(&str, &[u8])]) {
        write(&dir.join(MANIFEST_FILE), MANIFEST.as_bytes());
        for (path, content) in files {
            write(&dir.join(path), content);
        }
    }

    /// The files in the archive [`pack`] makes of `dir`, as [`list`] spells them.
    fn packed_files(dir: &Path) -> Vec<String> {
        let (_, bytes) = pack(dir, LIMIT).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("out");
        unpack(bytes.as_slice(), &dest, LIMIT).unwrap();
        tree(&dest).into_iter().filter(|(_, content)| content.is_some()).map(|(path, _)| path).collect()
    }

    #[test]
    fn ignore_files_leave_files_out_and_list_shows_what_is_packed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        package(
            dir,
            &[
                (".gitignore", b"*.log\n/build/\nsecret.txt\n"),
                (IGNORE_FILE, b"# publish the changelog git does not track\n!CHANGES.log\nnotes/\n"),
                ("src/main.rs", b"fn main() {}\n"),
                ("src/.gitignore", b"generated.rs\n!keep.log\n"),
                ("src/generated.rs", b"// generated\n"),
                ("src/keep.log", b"a deeper .gitignore wins\n"),
                ("src/debug.log", b"ignored from the top\n"),
                ("src/build/kept.rs", b"// `/build/` is anchored at the top\n"),
                ("build/out.o", b"object"),
                ("secret.txt", b"hunter2"),
                ("docs/secret.txt", b"an unanchored name matches at any depth"),
                ("run.log", b"log"),
                ("CHANGES.log", b"re-included by .agoraignore\n"),
                ("notes/todo.md", b"private\n"),
                ("docs/guide.md", b"# guide\n"),
            ],
        );

        let listed = list(dir).unwrap();
        assert_eq!(
            listed,
            [
                ".agoraignore",
                ".gitignore",
                "CHANGES.log",
                "agora.toml",
                "docs/guide.md",
                "src/.gitignore",
                "src/build/kept.rs",
                "src/keep.log",
                "src/main.rs",
            ]
        );
        assert_eq!(packed_files(dir), listed, "pack packs exactly what list lists");
    }

    #[test]
    fn nothing_inside_an_ignored_directory_comes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        package(dir, &[(".gitignore", b"cache/\n"), (IGNORE_FILE, b"!cache/keep.txt\n"), ("cache/keep.txt", b"x")]);
        assert_eq!(list(dir).unwrap(), [".agoraignore", ".gitignore", "agora.toml"]);
        // Re-including the directory itself brings it back.
        write(&dir.join(IGNORE_FILE), b"!cache/\n");
        assert_eq!(list(dir).unwrap(), [".agoraignore", ".gitignore", "agora.toml", "cache/keep.txt"]);
    }

    #[test]
    fn the_manifest_is_packed_even_when_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        package(dir, &[(".gitignore", b"*.toml\n"), ("src/lib.rs", b""), ("src/nested.toml", b"")]);
        assert_eq!(list(dir).unwrap(), [".gitignore", "agora.toml", "src/lib.rs"]);
        // An allow-list: ignore everything, then bring back directories and sources.
        write(&dir.join(IGNORE_FILE), b"*\n!*/\n!*.rs\n");
        assert_eq!(list(dir).unwrap(), ["agora.toml", "src/lib.rs"]);
        assert_eq!(packed_files(dir), ["agora.toml", "src/lib.rs"]);
        let (metadata, _) = pack(dir, LIMIT).unwrap();
        assert_eq!(metadata, parse_manifest(MANIFEST).unwrap());

        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert!(matches!(list(&empty).unwrap_err(), ArchiveError::MissingManifest { .. }));
    }

    #[test]
    fn only_the_package_directory_decides() {
        let tmp = tempfile::tempdir().unwrap();
        // A repository around the package, with rules of its own.
        write(&tmp.path().join(".gitignore"), b"*.txt\n");
        write(&tmp.path().join(".git/info/exclude"), b"*.md\n");
        write(&tmp.path().join(IGNORE_FILE), b"*.rs\n");
        let dir = tmp.path().join("pkg");
        package(
            &dir,
            &[
                ("a.txt", b""),
                ("b.md", b""),
                ("c.rs", b""),
                // ripgrep's own `.ignore` files are not Agora's.
                (".ignore", b"d.txt\n"),
                ("d.txt", b""),
                // The package is a repository too: its `.git/info/exclude` is local state.
                (".git/info/exclude", b"e.txt\n"),
                ("e.txt", b""),
            ],
        );
        assert_eq!(list(&dir).unwrap(), [".ignore", "a.txt", "agora.toml", "b.md", "c.rs", "d.txt", "e.txt"]);
    }

    #[test]
    fn a_bad_ignore_pattern_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        package(dir, &[("src/.gitignore", b"*.tmp\nbad{a,b\n")]);
        let error = list(dir).unwrap_err();
        assert!(matches!(error, ArchiveError::IgnoreFile(_)), "{error}");
        let shown = error.to_string();
        assert!(shown.contains(".gitignore") && shown.contains("line 2") && shown.contains("bad{a,b"), "{shown}");
        assert!(matches!(pack(dir, LIMIT).unwrap_err(), ArchiveError::IgnoreFile(_)));
    }

    #[cfg(unix)]
    #[test]
    fn ignored_symlinks_and_special_files_are_no_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        package(dir, &[]);
        std::os::unix::fs::symlink("/etc", dir.join("result")).unwrap();
        let socket = std::os::unix::net::UnixListener::bind(dir.join("daemon.sock")).unwrap();
        let error = list(dir).unwrap_err();
        assert!(matches!(error, ArchiveError::UnsafePath(_)), "{error}");
        write(&dir.join(".gitignore"), b"/result\n*.sock\n");
        assert_eq!(list(dir).unwrap(), [".gitignore", "agora.toml"]);
        drop(socket);
    }

    #[test]
    fn the_skeleton_description_is_the_template() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("fresh");
        write_skeleton(&dir, &"fresh".parse().unwrap()).unwrap();
        let metadata = read_manifest(&dir).unwrap();
        assert_eq!(metadata.description, TEMPLATE_DESCRIPTION);
        assert!(is_template_description(&metadata));
        assert!(!is_template_description(&parse_manifest(MANIFEST).unwrap()));
    }

    /// A gzip stream of `bytes`, one member.
    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// The uncompressed tar inside `archive`.
    fn gunzip(archive: &[u8]) -> Vec<u8> {
        let mut tar = Vec::new();
        GzDecoder::new(archive).read_to_end(&mut tar).unwrap();
        tar
    }

    #[test]
    fn only_the_validated_bytes_may_be_in_an_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("source");
        sample_package(&source);
        let (_, packed) = pack(&source, LIMIT).unwrap();
        let evil = b"#!/bin/sh\necho owned\n";
        let hidden = raw_archive(&[("demo-1.2.3/evil.sh", EntryType::Regular, evil.as_slice(), None)]);
        let mut appended_tar = gunzip(&packed);
        appended_tar.extend(gunzip(&hidden));
        let mut stray_byte = gunzip(&packed);
        stray_byte.extend([0, 0, 7]);
        let cases: [(&str, Vec<u8>, &str); 4] = [
            ("a second gzip member", [packed.clone(), hidden.clone()].concat(), "after the end of its gzip stream"),
            ("bytes after the gzip stream", [packed.clone(), b"junk".to_vec()].concat(), "after the end of its gzip"),
            ("a tar after the end-of-archive", gzip(&appended_tar), "after the tar end-of-archive"),
            ("one stray byte after the end-of-archive", gzip(&stray_byte), "after the tar end-of-archive"),
        ];
        for (what, bytes, expected) in cases {
            let error = manifest_from_archive(bytes.as_slice(), LIMIT).unwrap_err();
            assert!(matches!(error, ArchiveError::NotAnArchive(_)), "{what}: {error}");
            assert!(error.to_string().contains(expected), "{what}: {error}");
            let dest = tmp.path().join("out");
            assert!(unpack(bytes.as_slice(), &dest, LIMIT).is_err(), "{what} unpacked");
            assert!(!dest.exists(), "{what} left a directory");
        }
        // Zero padding after the end-of-archive (GNU tar's 10 KiB records) is fine.
        let mut padded = gunzip(&packed);
        padded.extend(vec![0u8; 10 * 1024]);
        assert!(manifest_from_archive(gzip(&padded).as_slice(), LIMIT).is_ok());
        assert!(manifest_from_archive(packed.as_slice(), LIMIT).is_ok());
    }

    #[test]
    fn the_unpacked_limit_follows_the_artifact_limit_and_the_ratio() {
        let max = 256 << 20;
        // A 2 MiB archive may unpack to 200 MiB, not to 2 GiB.
        assert_eq!(unpacked_limit(2 << 20, max), 200 << 20);
        // Tiny archives get the floor; huge ones the artifact-limit bound.
        assert_eq!(unpacked_limit(100, max), MIN_UNPACKED_LIMIT);
        assert_eq!(unpacked_limit(200 << 20, max), MAX_UNPACK_FACTOR * max);
        assert_eq!(unpacked_limit(u64::MAX, u64::MAX), u64::MAX);
        // A small bomb: 8 MiB of zeros compresses to a few KiB and is refused.
        let zeros = vec![0u8; 8 << 20];
        let bomb =
            raw_archive(&[demo_manifest_entry(), ("demo-1.2.3/zeros", EntryType::Regular, zeros.as_slice(), None)]);
        let limit = unpacked_limit(bomb.len() as u64, max);
        assert!(limit < zeros.len() as u64, "{} bytes may unpack to {limit}", bomb.len());
        let error = manifest_from_archive(bomb.as_slice(), limit).unwrap_err();
        assert!(matches!(error, ArchiveError::TooLarge { .. }), "{error}");
    }
}
