//! A job's output on disk: stdout and stderr interleaved as they come, as records of a
//! stream tag, a length and the bytes, up to a cap. Readers stream from the file, so no
//! output is ever held whole in the daemon's memory, and followers wake as records land.

use std::io::SeekFrom;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;
use utoipa::ToSchema;

/// The most one record holds: one read from a pipe.
const CHUNK: usize = 64 << 10;
const HEADER: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How far the spool has been written; readers never read past `len`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    len: u64,
    /// Output of each stream dropped past the cap.
    dropped: [bool; 2],
    /// Nothing more will be written.
    done: bool,
}

impl Progress {
    /// The bytes the spool holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn truncated(&self) -> bool {
        self.dropped.contains(&true)
    }

    pub fn dropped(&self, stream: Stream) -> bool {
        self.dropped[stream as usize]
    }
}

/// One NDJSON line of an output stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct Frame {
    stream: Stream,
    /// Where this chunk starts in its stream.
    offset: u64,
    /// The chunk, when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    /// The chunk in base64, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    data_b64: Option<String>,
}

/// The writing side, owned by the task that pumps a job's pipes.
pub struct Writer {
    file: tokio::fs::File,
    written: u64,
    cap: u64,
    progress: watch::Sender<Progress>,
}

/// Creates the spool file `path` (0600, new) holding at most `cap` bytes of output.
pub fn create(path: &Path, cap: u64, progress: watch::Sender<Progress>) -> std::io::Result<Writer> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    Ok(Writer {
        file: file.into(),
        written: 0,
        cap,
        progress,
    })
}

impl Writer {
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    async fn append(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let room = usize::try_from(self.cap.saturating_sub(self.written)).unwrap_or(usize::MAX);
        let kept = &data[..data.len().min(room)];
        if kept.len() < data.len() {
            self.progress
                .send_modify(|p| p.dropped[stream as usize] = true);
        }
        if kept.is_empty() {
            return Ok(());
        }
        let mut header = [0u8; HEADER as usize];
        header[0] = stream as u8;
        header[1..].copy_from_slice(&(kept.len() as u32).to_le_bytes());
        self.file.write_all(&header).await?;
        self.file.write_all(kept).await?;
        self.file.flush().await?;
        self.written += kept.len() as u64;
        let len = kept.len() as u64 + HEADER;
        self.progress.send_modify(|p| p.len += len);
        Ok(())
    }

    /// Copies both pipes into the spool until each ends, dropping what passes the cap
    /// (the pipes are still drained, or the job would block on a full one).
    pub async fn pump(
        mut self,
        stdout: impl AsyncRead + Unpin,
        stderr: impl AsyncRead + Unpin,
    ) -> std::io::Result<()> {
        let (mut out, mut err) = (Some(stdout), Some(stderr));
        let (mut out_buf, mut err_buf) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
        let result = async {
            while out.is_some() || err.is_some() {
                tokio::select! {
                    n = read_open(&mut out, &mut out_buf) => match n? {
                        0 => out = None,
                        n => self.append(Stream::Stdout, &out_buf[..n]).await?,
                    },
                    n = read_open(&mut err, &mut err_buf) => match n? {
                        0 => err = None,
                        n => self.append(Stream::Stderr, &err_buf[..n]).await?,
                    },
                }
            }
            Ok(())
        }
        .await;
        self.progress.send_modify(|p| p.done = true);
        result
    }
}

/// Reads from `pipe` while it is open; a closed one never becomes ready.
async fn read_open(
    pipe: &mut Option<impl AsyncRead + Unpin>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.read(buf).await,
        None => std::future::pending().await,
    }
}

/// A reader of one spool, from its start.
pub struct Reader {
    file: tokio::fs::File,
    pos: u64,
    offsets: [u64; 2],
    progress: watch::Receiver<Progress>,
    buf: Vec<u8>,
}

/// Opens `path` for reading; an open reader goes on reading after the file is removed.
pub async fn open(path: PathBuf, progress: watch::Receiver<Progress>) -> std::io::Result<Reader> {
    Ok(Reader {
        file: tokio::fs::File::open(path).await?,
        pos: 0,
        offsets: [0; 2],
        progress,
        buf: Vec::new(),
    })
}

impl Reader {
    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// The next record, waiting for one while `follow` and the writer is not done; `None`
    /// at the end.
    pub async fn next(&mut self, follow: bool) -> std::io::Result<Option<(Stream, u64, &[u8])>> {
        loop {
            let progress = *self.progress.borrow_and_update();
            if self.pos < progress.len {
                return self.record().await.map(Some);
            }
            if progress.done || !follow || self.progress.changed().await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn record(&mut self) -> std::io::Result<(Stream, u64, &[u8])> {
        let mut header = [0u8; HEADER as usize];
        self.file.seek(SeekFrom::Start(self.pos)).await?;
        self.file.read_exact(&mut header).await?;
        let stream = if header[0] == Stream::Stdout as u8 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        self.buf.resize(len.min(CHUNK), 0);
        self.file.read_exact(&mut self.buf).await?;
        self.pos += HEADER + self.buf.len() as u64;
        let offset = self.offsets[stream as usize];
        self.offsets[stream as usize] += self.buf.len() as u64;
        Ok((stream, offset, &self.buf))
    }

    /// The next record as an NDJSON line.
    pub async fn next_line(&mut self, follow: bool) -> std::io::Result<Option<Vec<u8>>> {
        let Some((stream, offset, data)) = self.next(follow).await? else {
            return Ok(None);
        };
        let (data, data_b64) = match std::str::from_utf8(data) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ),
        };
        let frame = Frame {
            stream,
            offset,
            data,
            data_b64,
        };
        let mut line = serde_json::to_vec(&frame)?;
        line.push(b'\n');
        Ok(Some(line))
    }
}
