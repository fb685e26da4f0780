/// Progress of long work, reported in bytes; the CLI draws it, libraries only count.
pub trait Progress: Sync {
    fn begin(&self, _message: &str, _total_bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn end(&self) {}
}

pub struct NoProgress;

impl Progress for NoProgress {}
