//! Making an environment's image present: found locally, loaded from a tarball, or pulled.
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    CreateImageOptions, ImportImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::{Stream, StreamExt};

use super::engine::Engine;
use super::settings::{DockerSettings, ImageRef};
use crate::error::{clip_path, quote, Error, Result};
use crate::runner::progress::{Progress, Sink};

/// How often a long pull or import reports its bytes.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What an image tarball holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tarball {
    /// `docker save` output (manifest.json, or an OCI layout): loaded as it is.
    Saved,
    /// A root filesystem: imported as one layer, as `docker import` does.
    RootFs,
    /// Compressed, so not looked into: loaded, or imported if it is not an image archive.
    Compressed,
}

impl Engine {
    /// Make `settings.image` present: found locally (one "image" event), else loaded from
    /// `settings.image_tarball`, else pulled, with progress in bytes.
    pub async fn ensure_image(&self, settings: &DockerSettings, progress: Sink<'_>) -> Result<()> {
        let image = ImageRef::parse(&settings.image)?;
        if let Some(id) = self.image_id(&settings.image).await? {
            progress(Progress::line(
                "image",
                format!("image {} is present ({})", settings.image, short(&id)),
            ));
            return Ok(());
        }
        if let Some(tarball) = &settings.image_tarball {
            self.load(&settings.image, &image, tarball, progress)
                .await?;
        } else {
            self.pull(&settings.image, &image, progress).await?;
        }
        match self.image_id(&settings.image).await? {
            Some(id) => {
                progress(Progress::line(
                    "image",
                    format!("image {} is ready ({})", settings.image, short(&id)),
                ));
                Ok(())
            }
            None => Err(Error::FailedPrecondition(format!(
                "image {} is still missing after the engine said it was {}",
                settings.image,
                if settings.image_tarball.is_some() {
                    "loaded"
                } else {
                    "pulled"
                }
            ))),
        }
    }

    /// The local image's id, `None` when it is absent.
    async fn image_id(&self, image: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(image).await {
            Ok(info) => Ok(Some(info.id.unwrap_or_default())),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.error(&format!("inspect image {image}"), e)),
        }
    }

    async fn pull(&self, name: &str, image: &ImageRef<'_>, progress: Sink<'_>) -> Result<()> {
        progress(Progress::line("pull", format!("pulling {name}")));
        let options = CreateImageOptions {
            from_image: Some(image.repo.to_string()),
            tag: Some(image.pull_tag()),
            ..Default::default()
        };
        let mut events = self.docker.create_image(Some(options), None, None);
        // Bytes per layer; their sums are the pull's progress.
        let mut layers: HashMap<String, (u64, u64)> = HashMap::new();
        let mut last = Instant::now();
        let mut status = String::new();
        while let Some(event) = events.next().await {
            let info = match event {
                Ok(info) => info,
                Err(e) => return Err(pull_error(name, e)),
            };
            let line = match (&info.id, &info.status) {
                (Some(id), Some(s)) => format!("{id}: {s}"),
                (None, Some(s)) => s.clone(),
                _ => continue,
            };
            if let Some(id) = &info.id {
                let entry = layers.entry(id.clone()).or_default();
                if let Some(d) = &info.progress_detail {
                    if let (Some(cur), Some(total)) = (d.current, d.total) {
                        if info.status.as_deref() == Some("Downloading") {
                            *entry = (cur.max(0) as u64, total.max(0) as u64);
                        }
                    }
                }
                if matches!(
                    info.status.as_deref(),
                    Some("Download complete" | "Pull complete" | "Already exists")
                ) {
                    entry.0 = entry.1;
                }
            }
            // Status changes always; byte counts at most every PROGRESS_EVERY.
            let changed = info.status.as_deref() != Some("Downloading")
                && info.status.as_deref() != Some("Extracting");
            if changed || last.elapsed() >= PROGRESS_EVERY {
                last = Instant::now();
                let (done, total) = layers
                    .values()
                    .fold((0, 0), |(d, t), (ld, lt)| (d + ld, t + lt));
                progress(Progress {
                    phase: "pull".into(),
                    done,
                    total,
                    unit: if total > 0 { "bytes" } else { "" },
                    message: line.clone(),
                });
            }
            status = line;
        }
        tracing::debug!(image = name, last = %status, "pull finished");
        Ok(())
    }

    async fn load(
        &self,
        name: &str,
        image: &ImageRef<'_>,
        tarball: &Path,
        progress: Sink<'_>,
    ) -> Result<()> {
        let path = tarball.to_path_buf();
        let kind = tokio::task::spawn_blocking(move || sniff(&path))
            .await
            .map_err(|e| Error::Internal(format!("sniff tarball: {e}")))?
            .map_err(|e| {
                Error::FailedPrecondition(format!(
                    "cannot read docker.image_tarball {}: {e}",
                    clip_path(tarball)
                ))
            })?;
        match kind {
            Tarball::RootFs => self.import_rootfs(name, image, tarball, progress).await,
            Tarball::Saved => self.load_saved(name, image, tarball, progress).await,
            Tarball::Compressed => match self.load_saved(name, image, tarball, progress).await {
                Ok(()) => Ok(()),
                Err(load) => {
                    tracing::debug!(error = %load, "not an image archive; importing it as a root filesystem");
                    self.import_rootfs(name, image, tarball, progress)
                        .await
                        .map_err(|import| {
                            Error::FailedPrecondition(format!(
                                "docker.image_tarball {} is neither an image archive (docker \
                                 save: {load}) nor a root filesystem (docker import: {import})",
                                clip_path(tarball)
                            ))
                        })
                }
            },
        }
    }

    /// `docker import`: a root filesystem as a one-layer image, tagged as `name`.
    async fn import_rootfs(
        &self,
        name: &str,
        image: &ImageRef<'_>,
        tarball: &Path,
        progress: Sink<'_>,
    ) -> Result<()> {
        let (body, read, total) = file_body(tarball).await?;
        let options = CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(image.repo.to_string()),
            tag: Some(image.tag.unwrap_or("latest").to_string()),
            ..Default::default()
        };
        let events =
            self.docker
                .create_image(Some(options), Some(bollard::body_try_stream(body)), None);
        let what = format!("import {} as {name}", clip_path(tarball));
        drive(events, &read, total, &what, progress, |_| {})
            .await
            .map_err(|e| tarball_error(&what, e))
    }

    /// `docker load`: an image archive as it was saved; tagged as `name` when it does not
    /// carry that tag itself.
    async fn load_saved(
        &self,
        name: &str,
        image: &ImageRef<'_>,
        tarball: &Path,
        progress: Sink<'_>,
    ) -> Result<()> {
        let (body, read, total) = file_body(tarball).await?;
        let options = ImportImageOptionsBuilder::default().quiet(false).build();
        let events = self
            .docker
            .import_image(options, bollard::body_try_stream(body), None);
        let what = format!("load {}", clip_path(tarball));
        let mut loaded = Vec::new();
        drive(events, &read, total, &what, progress, |line| {
            // "Loaded image: repo:tag" or "Loaded image ID: sha256:…".
            for prefix in ["Loaded image: ", "Loaded image ID: "] {
                if let Some(rest) = line.trim().strip_prefix(prefix) {
                    loaded.push(rest.to_string());
                }
            }
        })
        .await
        .map_err(|e| tarball_error(&what, e))?;
        if self.image_id(name).await?.is_some() {
            return Ok(());
        }
        match loaded.as_slice() {
            [one] => {
                let options = TagImageOptionsBuilder::default()
                    .repo(image.repo)
                    .tag(image.tag.unwrap_or("latest"))
                    .build();
                self.docker
                    .tag_image(one, Some(options))
                    .await
                    .map_err(|e| self.error(&format!("tag {one} as {name}"), e))
            }
            [] => Err(Error::FailedPrecondition(format!(
                "{what}: the engine loaded no image from it"
            ))),
            many => Err(Error::FailedPrecondition(format!(
                "{what}: it holds {}, none of them {name}; set docker.image to one of them",
                many.join(", ")
            ))),
        }
    }
}

/// The tarball's bytes as a stream that counts what it read, and its size.
async fn file_body(
    tarball: &Path,
) -> Result<(
    impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    Arc<AtomicU64>,
    u64,
)> {
    let file = tokio::fs::File::open(tarball).await.map_err(|e| {
        Error::FailedPrecondition(format!(
            "cannot open docker.image_tarball {}: {e}",
            clip_path(tarball)
        ))
    })?;
    let total = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let read = Arc::new(AtomicU64::new(0));
    let counter = read.clone();
    let chunks = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |r| {
        if let Ok(b) = &r {
            counter.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        r
    });
    Ok((chunks, read, total))
}

/// Run a load or import to its end, reporting the bytes read from the tarball every
/// `PROGRESS_EVERY` and handing each line the engine prints to `on_line`.
async fn drive<T: Event>(
    events: impl Stream<Item = std::result::Result<T, BollardError>>,
    read: &AtomicU64,
    total: u64,
    what: &str,
    progress: Sink<'_>,
    mut on_line: impl FnMut(&str),
) -> std::result::Result<(), BollardError> {
    let mut events = std::pin::pin!(events);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let report = |message: &str| {
        progress(Progress {
            phase: "import".into(),
            done: read.load(Ordering::Relaxed),
            total,
            unit: "bytes",
            message: message.to_string(),
        })
    };
    report(what);
    loop {
        tokio::select! {
            event = events.next() => match event {
                None => break,
                Some(Err(e)) => return Err(e),
                Some(Ok(event)) => {
                    if let Some(line) = event.line() {
                        on_line(&line);
                    }
                }
            },
            _ = tick.tick() => report(what),
        }
    }
    report(&format!("{what}: done"));
    Ok(())
}

/// A line of a load's or an import's progress stream.
trait Event {
    fn line(&self) -> Option<String>;
}

impl Event for bollard::models::BuildInfo {
    fn line(&self) -> Option<String> {
        self.stream.clone().or_else(|| self.status.clone())
    }
}

impl Event for bollard::models::CreateImageInfo {
    fn line(&self) -> Option<String> {
        self.status.clone()
    }
}

fn tarball_error(what: &str, e: BollardError) -> Error {
    let why = match e {
        BollardError::DockerResponseServerError { message, .. } => message,
        BollardError::DockerStreamError { error } => error,
        e => e.to_string(),
    };
    Error::FailedPrecondition(format!("{what}: {why}"))
}

/// A failed pull: the image is unknown to its registry (NotFound), or the registry cannot be
/// reached (FailedPrecondition); either way a local tarball is the way out.
fn pull_error(name: &str, e: BollardError) -> Error {
    let why = match e {
        BollardError::DockerResponseServerError { message, .. } => message,
        BollardError::DockerStreamError { error } => error,
        e => e.to_string(),
    };
    let lower = why.to_lowercase();
    let unknown = [
        "not found",
        "manifest unknown",
        "does not exist",
        "pull access denied",
        "repository name must",
    ]
    .iter()
    .any(|s| lower.contains(s));
    let offline = "or give a local image tarball (docker.image_tarball), which works offline";
    if unknown {
        Error::NotFound(format!(
            "image {} was not found: {why}; check its name (and that you are logged in to its \
             registry), {offline}",
            quote(name)
        ))
    } else {
        Error::FailedPrecondition(format!(
            "cannot pull image {}: {why}; check that the engine reaches its registry, {offline}",
            quote(name)
        ))
    }
}

/// `sha256:0123456789ab…` as `0123456789ab`.
fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Tell a saved image archive from a root filesystem by its entries (an uncompressed tar: the
/// headers are walked, the contents skipped).
fn sniff(path: &Path) -> std::io::Result<Tarball> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut header = [0u8; 512];
    let n = file.read_at(&mut header, 0)?;
    let magic: [&[u8]; 4] = [
        &[0x1f, 0x8b],                         // gzip
        b"BZh",                                // bzip2
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00], // xz
        &[0x28, 0xb5, 0x2f, 0xfd],             // zstd
    ];
    if magic.iter().any(|m| header[..n].starts_with(m)) {
        return Ok(Tarball::Compressed);
    }
    let mut offset = 0u64;
    while offset + 512 <= len {
        file.read_exact_at(&mut header, offset)?;
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let name = field(&header[..100]);
        let prefix = field(&header[345..500]);
        let name = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let name = name.trim_start_matches("./");
        if matches!(name, "manifest.json" | "oci-layout" | "repositories") {
            return Ok(Tarball::Saved);
        }
        let size = tar_size(&header[124..136]).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not a tar archive")
        })?;
        offset += 512 + size.div_ceil(512) * 512;
    }
    Ok(Tarball::RootFs)
}

fn field(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// A tar header's size: octal digits, or base-256 when the high bit is set (GNU, for ≥ 8 GiB).
fn tar_size(raw: &[u8]) -> Option<u64> {
    if raw[0] & 0x80 != 0 {
        return Some(raw[1..].iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)));
    }
    let s = field(raw);
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_failures_say_what_to_do() {
        let e = pull_error(
            "nope/nope",
            BollardError::DockerResponseServerError {
                status_code: 404,
                message: "pull access denied for nope/nope, repository does not exist".into(),
            },
        );
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        assert!(e.to_string().contains("docker.image_tarball"), "{e}");
        let e = pull_error(
            "busybox",
            BollardError::DockerResponseServerError {
                status_code: 500,
                message: "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup \
                          registry-1.docker.io: no such host"
                    .into(),
            },
        );
        assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
        assert!(e.to_string().contains("\"busybox\""), "{e}");
    }

    #[test]
    fn tar_sizes_are_octal_or_base_256() {
        assert_eq!(tar_size(b"00000001750\0"), Some(1000));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 7;
        assert_eq!(tar_size(&big), Some(7));
        assert_eq!(tar_size(b"xyz\0\0\0\0\0\0\0\0\0"), None);
    }
}
