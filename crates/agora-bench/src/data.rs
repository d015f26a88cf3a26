//! Deterministic data sets: signed packages for catalogs, package archives.

use agora::core::{ArtifactInfo, PackageMetadata, Publisher, SecretKey, SignedManifest, SignedPackageIndex};

use crate::stats::Rng;

const WORDS: &[&str] = &[
    "json", "parser", "http", "server", "client", "async", "template", "web", "cli", "tool", "crypto", "hash", "image",
    "audio", "video", "graph", "tree", "queue", "cache", "database", "sql", "orm", "log", "trace", "metric", "config",
    "yaml", "toml", "xml", "csv", "markdown", "html", "css", "game", "engine", "physics", "math", "linear", "matrix",
    "random", "time", "date", "uuid", "regex", "text", "unicode", "compress", "zip", "tar", "archive",
];
const CATEGORIES: &[&str] =
    &["web", "web/api", "cli", "encoding", "data", "graphics", "templates", "templates/rust", "net"];

/// One generated package: its signed index and manifest.
pub(crate) struct Package {
    pub(crate) index: SignedPackageIndex,
    pub(crate) manifest: SignedManifest,
}

/// `count` packages signed by 16 seeded publishers, with names, descriptions,
/// keywords and categories drawn from a fixed vocabulary.
pub(crate) fn packages(count: usize, seed: u64) -> Vec<Package> {
    let publishers: Vec<Publisher> =
        (0..16u8).map(|i| Publisher::new(SecretKey::from_bytes(&[i.wrapping_add(seed as u8).max(1); 32]))).collect();
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let a = WORDS[rng.below(WORDS.len())];
            let b = WORDS[rng.below(WORDS.len())];
            let name = format!("{a}-{b}-{i:06}");
            let description = format!(
                "a {} {} library for {} and {}",
                WORDS[rng.below(WORDS.len())],
                a,
                b,
                WORDS[rng.below(WORDS.len())]
            );
            let mut metadata = PackageMetadata::new(
                name.parse().expect("generated names are valid"),
                agora::parse_version(&format!("1.{}.0", rng.below(20))).expect("valid version"),
                description,
            );
            let mut keywords = vec![a.to_owned(), b.to_owned()];
            keywords.dedup();
            metadata.keywords = keywords;
            metadata.categories = vec![CATEGORIES[rng.below(CATEGORIES.len())].to_owned()];
            let artifact =
                ArtifactInfo::compute(name.as_bytes(), ArtifactInfo::DEFAULT_CHUNK_SIZE).expect("valid chunk size");
            let publisher = &publishers[i % publishers.len()];
            let (manifest, index) = publisher.publish(metadata, artifact, None, 1_700_000_000).expect("valid package");
            Package { index, manifest }
        })
        .collect()
}

/// The search mix: rare words, common words, prefixes, filtered.
pub(crate) fn queries() -> Vec<agora::Query> {
    vec![
        agora::Query::new("json parser"),
        agora::Query::new("archive"),
        agora::Query::new("unicode text"),
        agora::Query::new("pars"),
        agora::Query::new("datab"),
        agora::Query::new("web").category("web"),
        agora::Query::new("cache").tag("cache"),
        agora::Query::new("json-parser-000042"),
        agora::Query::new("server async"),
        agora::Query::new("").category("templates").limit(20),
    ]
}
