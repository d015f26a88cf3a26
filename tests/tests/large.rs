//! One large transfer, alone in its process so its memory figures are its own: a
//! 256 MiB package goes from one node to another, and the fetch must not hold the
//! artifact in memory (peak RSS growth well under its size).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "large/targz.rs"]
mod targz;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use agora::{ArtifactData, ArtifactHasher, ArtifactInfo, Registry, parse_version};
use agora_tests::net::{DEADLINE, TestNet, name, searchable, wait_until};
use agora_tests::xorshift;

const MIB: u64 = 1024 * 1024;
/// The content file of the package.
const CONTENT: u64 = 256 * MIB;
/// The limit on the fetch's peak memory growth.
const MAX_GROWTH: u64 = 96 * MIB;

/// A `/proc/self/status` field, in bytes.
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|line| line.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    let kib: u64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().expect("a number of kB");
    kib * 1024
}

/// Resets the peak RSS (`VmHWM`) to the current RSS; false when the kernel refuses.
fn reset_peak() -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/clear_refs")
        .and_then(|mut file| file.write_all(b"5"))
        .is_ok()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// Writes `len` pseudo-random bytes (xorshift) to `path`, 1 MiB at a time.
fn write_noise(path: &Path, len: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("content file"));
    let mut words = xorshift(0x9E37_79B9_7F4A_7C15);
    let mut buffer = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        for (bytes, word) in buffer.chunks_exact_mut(8).zip(&mut words) {
            bytes.copy_from_slice(&word.to_le_bytes());
        }
        let take = left.min(MIB) as usize;
        file.write_all(&buffer[..take]).expect("write content");
        left -= take as u64;
    }
    file.into_inner().expect("flush").sync_all().expect("sync");
}

/// Hashes a file as an artifact, reading it in pieces.
async fn hash_reader(mut artifact: agora::ArtifactReader, chunk_size: u32) -> ArtifactInfo {
    use futures::io::AsyncReadExt;
    let mut hasher = ArtifactHasher::new(chunk_size).unwrap();
    let mut buffer = vec![0u8; MIB as usize];
    loop {
        let read = artifact.read(&mut buffer).await.expect("read artifact");
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    hasher.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_artifact_is_fetched_without_holding_it_in_memory() {
    let started = Instant::now();
    let net = TestNet::with(2, |builder| builder.max_artifact_size(512 * MIB)).await;
    let (publisher, fetcher) = (net.node(0), net.node(1));

    let package = net.root().join("big-1.0.0");
    std::fs::create_dir_all(&package).unwrap();
    let content = package.join("content.bin");
    write_noise(&content, CONTENT);
    eprintln!("noise written in {:.1?}", started.elapsed());
    let manifest = "[package]\nname = \"big\"\nversion = \"1.0.0\"\ndescription = \"a big package\"\n";
    let archive = net.root().join("big-1.0.0.tar.gz");
    targz::pack_streaming(&archive, "big-1.0.0", manifest, &content).expect("pack");
    std::fs::remove_file(&content).unwrap();
    let size = std::fs::metadata(&archive).unwrap().len();
    assert!(size > CONTENT, "the archive holds the whole content ({size} bytes)");
    let prepared = started.elapsed();

    let published = publisher.publish_archive(ArtifactData::File(archive.clone())).await.expect("publish");
    let info = published.manifest.manifest().artifact.clone();
    assert_eq!(info.size, size);
    std::fs::remove_file(&archive).unwrap();
    let publish_time = started.elapsed() - prepared;
    assert!(wait_until(DEADLINE, || searchable(fetcher, "big")).await, "the fetcher never learned of `big`");

    let publish_peak = proc_status("VmHWM:");
    let reset = reset_peak();
    let before_rss = proc_status("VmRSS:");
    let before_peak = proc_status("VmHWM:");
    let fetch_started = Instant::now();
    let artifact = fetcher.fetch_artifact(&name("big"), &parse_version("1.0.0").unwrap()).await.expect("fetch");
    let fetch_time = fetch_started.elapsed();
    let after_peak = proc_status("VmHWM:");
    let after_rss = proc_status("VmRSS:");
    let growth = after_peak.saturating_sub(before_peak);
    let throughput = size as f64 / 1e6 / fetch_time.as_secs_f64();
    eprintln!(
        "artifact {:.1} MiB in {} chunks; prepared in {prepared:.1?}, published in {publish_time:.1?}",
        mib(size),
        info.chunks.len()
    );
    eprintln!(
        "peak RSS: {:.1} MiB after publishing; peak reset to current: {reset}; before the fetch: RSS {:.1} MiB, \
         peak {:.1} MiB; after: RSS {:.1} MiB, peak {:.1} MiB; growth of the peak {:.1} MiB",
        mib(publish_peak),
        mib(before_rss),
        mib(before_peak),
        mib(after_rss),
        mib(after_peak),
        mib(growth)
    );
    eprintln!("fetched in {fetch_time:.2?}: {throughput:.1} MB/s");

    let hashed = hash_reader(artifact, info.chunk_size).await;
    assert_eq!(hashed.digest, info.digest, "the fetched file's SHA-256 is the published digest");
    assert_eq!(hashed, info);
    assert!(growth < MAX_GROWTH, "the fetch grew the peak RSS by {:.1} MiB", mib(growth));
    let total = started.elapsed();
    eprintln!("whole test: {total:.1?}");
    assert!(total < Duration::from_secs(120), "the test took {total:?}");
}
