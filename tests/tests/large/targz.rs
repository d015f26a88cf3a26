//! A streaming `.tar.gz` writer for package archives too big to hold in memory
//! (`agora::archive::pack` builds the whole archive in a `Vec`). Headers are
//! normalised like Agora's own archives; gzip stores without compression, since
//! the tests pack incompressible bytes anyway.

use std::io::{self, Write};
use std::path::Path;

/// Writes `<top>/agora.toml` with `manifest` and `<top>/<file name>` with the
/// contents of `file` (streamed) as a `.tar.gz` at `out`.
pub(crate) fn pack_streaming(out: &Path, top: &str, manifest: &str, file: &Path) -> io::Result<()> {
    let sink = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let gzip = flate2::GzBuilder::new().mtime(0).write(sink, flate2::Compression::none());
    let mut tar = tar::Builder::new(gzip);
    let header = |size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        header
    };
    tar.append_data(&mut header(manifest.len() as u64), format!("{top}/agora.toml"), manifest.as_bytes())?;
    let name = file.file_name().and_then(|name| name.to_str()).expect("a file name");
    let size = std::fs::metadata(file)?.len();
    let reader = io::BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
    tar.append_data(&mut header(size), format!("{top}/{name}"), reader)?;
    let mut sink = tar.into_inner()?.finish()?;
    sink.flush()?;
    sink.into_inner().map_err(io::IntoInnerError::into_error)?.sync_all()
}
