//! One seal at a time per runtime: an exclusive `flock` on the runtime dir itself, held for
//! the whole seal. Locking the directory (not a lock file in it) means a refused seal leaves
//! the runtime dir exactly as it was.

use std::fs::File;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::error::{Error, Result};

pub struct RuntimeLock {
    _file: File,
}

impl RuntimeLock {
    /// Waits for the lock when `wait`, else fails at once with [`Error::Busy`].
    pub fn acquire(path: &Path, wait: bool) -> Result<RuntimeLock> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let op = if wait {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::NonBlockingLockExclusive
        };
        match flock(&file, op) {
            Ok(()) => Ok(RuntimeLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Busy { path: path.into() }),
            Err(e) => Err(Error::io(path, e.into())),
        }
    }
}
