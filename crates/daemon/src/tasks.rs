//! Jobs and builds as resources: each runs in a helper process of its own, its output
//! spooled to disk under the state dir, its status kept until it has been finished for
//! `--keep-finished`. At most `--max-jobs` run at once and `--max-queue` wait; past that a
//! request is refused with 429.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use utoipa::ToSchema;

use crate::errors::{internal, not_found, ApiError};
use crate::quota::{PerClient, Place};
use crate::server::Caller;
use crate::spool::{self, Progress};

pub struct Settings {
    /// The daemon's own dir: jobs' spools live in `jobs/` below it.
    pub state_dir: PathBuf,
    /// This binary, started as `--helper run|build`.
    pub helper: PathBuf,
    pub max_jobs: usize,
    pub max_queue: usize,
    /// How many jobs and builds one client other than root may have queued or running.
    pub max_per_client: usize,
    /// The most output one job keeps.
    pub output_cap: u64,
    pub keep_finished: Duration,
    /// The most output all ended tasks keep together: past it, the oldest are forgotten
    /// before their time, so that clients cannot fill the disk with kept output.
    pub kept_output: u64,
    /// How long a job has after SIGTERM before it is killed.
    pub stop_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Exited,
}

/// How to stop a task: SIGTERM with a grace period, or at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Term,
    Kill,
}

/// What a task was asked to do; the kind of resource it is follows from it.
#[derive(Debug, Clone)]
pub enum About {
    Job(crate::jobs::JobAbout),
    Build(crate::builds::BuildAbout),
}

impl About {
    /// About what keeping it costs in memory, for the bound on what ended tasks keep.
    fn weight(&self) -> u64 {
        match self {
            About::Job(job) => job.weight(),
            About::Build(build) => build.weight(),
        }
    }
}

/// Where a task stands, as every view of it shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Status {
    pub state: State,
    /// The exit code, the CLI's: 124 timeout, 125 setup failed, 126/127 cannot run / not
    /// found, 128+N killed by signal N.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Output past the cap was dropped.
    pub truncated: bool,
    /// Stopped by a DELETE, a client gone, or the daemon's shutdown.
    pub cancelled: bool,
    /// RFC 3339.
    pub created: String,
    pub started: Option<String>,
    pub ended: Option<String>,
    /// What the helper reported when it ended, read by the resource's view.
    #[serde(skip)]
    pub report: Option<serde_json::Value>,
}

pub struct Task {
    pub id: String,
    /// The order tasks were made in (`created` has whole seconds only).
    order: u64,
    /// The uid of the client that started it.
    owner: u32,
    pub about: About,
    dir: PathBuf,
    status: watch::Sender<Status>,
    progress: watch::Receiver<Progress>,
    stop: watch::Sender<Option<Stop>>,
    /// Forgotten as soon as it ends: a synchronous run's client has had its answer.
    ephemeral: bool,
    /// A streamed stdin's pipe: the read end until the helper is started with it, the
    /// write end until a client takes it to stream into.
    stdin_reader: Mutex<Option<OwnedFd>>,
    stdin_writer: Mutex<Option<OwnedFd>>,
}

/// Where a task's stdin comes from.
pub enum Stdin<'a> {
    /// End-of-file at once.
    Empty,
    /// These bytes, given with the request.
    Bytes(&'a [u8]),
    /// A pipe a client streams into later ([`Task::take_stdin`]); end-of-file when it is done.
    Stream,
}

/// What the daemon hands a helper, in a 0600 file of the task's dir.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The daemon's pid: a helper whose parent is already another has lost its daemon.
    pub parent: u32,
    /// Where the helper writes its report: its stdout and stderr are the job's, so
    /// anything said there could be the job's own words.
    pub report: PathBuf,
    pub work: T,
}

pub struct Registry {
    settings: Settings,
    jobs_dir: PathBuf,
    tasks: Mutex<HashMap<String, Arc<Task>>>,
    made: std::sync::atomic::AtomicU64,
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    /// Queued and running tasks of each client other than root.
    active: Arc<PerClient>,
}

/// At most this many ended tasks are kept.
const MAX_KEPT: usize = 4096;
/// At most this much of ended tasks' requests (commands, paths: [`About::weight`]) is kept.
const KEPT_REQUESTS: u64 = 64 << 20;

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Creates `path` as a dir only root may enter; an existing one is made so.
fn private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
}

fn private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

/// A fresh, unguessable-enough id: 64 bits from the std hasher's random keys.
fn new_id() -> String {
    use std::hash::BuildHasher;
    format!(
        "{:016x}",
        std::collections::hash_map::RandomState::new().hash_one(SystemTime::now())
    )
}

impl Registry {
    /// Opens the state dir. What an earlier daemon left in it is removed: its helpers died
    /// with it, so its jobs' spools and dirs are orphans, and so are their cgroups.
    pub fn open(settings: Settings) -> std::io::Result<Arc<Registry>> {
        runseal_sandbox::Cgroups::reap_orphans();
        private_dir(&settings.state_dir)?;
        let jobs_dir = settings.state_dir.join("jobs");
        match std::fs::remove_dir_all(&jobs_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        private_dir(&jobs_dir)?;
        Ok(Arc::new(Registry {
            running: Arc::new(Semaphore::new(settings.max_jobs)),
            admitted: Arc::new(Semaphore::new(settings.max_jobs + settings.max_queue)),
            tasks: Mutex::default(),
            active: PerClient::new(settings.max_per_client),
            made: Default::default(),
            jobs_dir,
            settings,
        }))
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Task>>> {
        lock(&self.tasks)
    }

    /// Queues a task: `--helper MODE` with `work` and `stdin`.
    pub fn start(
        self: &Arc<Self>,
        mode: &'static str,
        work: &impl Serialize,
        stdin: Stdin<'_>,
        about: About,
        ephemeral: bool,
        owner: &Caller,
    ) -> Result<Arc<Task>, ApiError> {
        let client = self.client_slot(owner)?;
        let admitted = Arc::clone(&self.admitted).try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "runseald already runs {} jobs and builds and queues {}; try again when one has ended",
                    self.settings.max_jobs, self.settings.max_queue
                ),
            )
        })?;
        let id = new_id();
        let dir = self.jobs_dir.join(&id);
        let prepare = || -> std::io::Result<(spool::Writer, Option<(OwnedFd, OwnedFd)>)> {
            private_dir(&dir)?;
            let envelope = Envelope {
                parent: std::process::id(),
                report: dir.join("report.json"),
                work,
            };
            private_file(&dir.join("input.json"), &serde_json::to_vec(&envelope)?)?;
            let pipe = match stdin {
                Stdin::Empty => None,
                Stdin::Bytes(bytes) => {
                    private_file(&dir.join("stdin"), bytes)?;
                    None
                }
                Stdin::Stream => Some(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?),
            };
            let (progress, _) = watch::channel(Progress::default());
            let writer = spool::create(&dir.join("output"), self.settings.output_cap, progress)?;
            Ok((writer, pipe))
        };
        let (writer, pipe) = prepare().map_err(|e| internal(format!("{}: {e}", dir.display())))?;
        let (stdin_reader, stdin_writer) = pipe.unzip();
        let task = Arc::new(Task {
            id: id.clone(),
            order: self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            owner: owner.uid,
            about,
            status: watch::Sender::new(Status {
                state: State::Queued,
                exit_code: None,
                signal: None,
                truncated: false,
                cancelled: false,
                created: now(),
                started: None,
                ended: None,
                report: None,
            }),
            progress: writer.progress(),
            stop: watch::Sender::new(None),
            dir,
            ephemeral,
            stdin_reader: Mutex::new(stdin_reader),
            stdin_writer: Mutex::new(stdin_writer),
        });
        self.tasks().insert(id, Arc::clone(&task));
        tokio::spawn(Arc::clone(self).drive(Arc::clone(&task), mode, writer, (admitted, client)));
        Ok(task)
    }

    /// Waits for a slot, runs the task, records how it ended, and forgets it when its time
    /// is up.
    async fn drive(
        self: Arc<Self>,
        task: Arc<Task>,
        mode: &'static str,
        writer: spool::Writer,
        admitted: (OwnedSemaphorePermit, Option<Place>),
    ) {
        let mut stop = task.stop.subscribe();
        let slot = tokio::select! {
            slot = Arc::clone(&self.running).acquire_owned() => slot.ok(),
            _ = stop.wait_for(Option::is_some) => None,
        };
        let ended = match slot {
            Some(_slot) => self.execute(&task, mode, writer, stop).await,
            None => Ok((None, None)),
        };
        // A client still streaming stdin into a task that never ran gets EPIPE.
        drop(lock(&task.stdin_reader).take());
        drop(lock(&task.stdin_writer).take());
        // Only the output and the report are kept past the end.
        for input in ["input.json", "stdin"] {
            let _ = std::fs::remove_file(task.dir.join(input));
        }
        let report = std::fs::read(task.dir.join("report.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
        let truncated = task.progress.borrow().truncated();
        task.status.send_modify(|s| {
            s.state = State::Exited;
            s.ended = Some(now());
            s.truncated = truncated;
            s.cancelled = task.stop.borrow().is_some();
            match ended {
                Ok((code, signal)) => {
                    let reported = report.as_ref().and_then(|r| r["signal"].as_i64());
                    s.signal = reported.and_then(|n| i32::try_from(n).ok()).or(signal);
                    s.exit_code = code.or(signal.map(|n| 128 + n));
                }
                Err(e) => {
                    tracing::error!(task = %task.id, "helper failed: {e}");
                    s.exit_code = Some(runseal_sandbox::SETUP_FAILED);
                }
            }
            s.report = report;
        });
        drop(admitted);
        if !task.ephemeral {
            self.evict_past_quota();
            tokio::time::sleep(self.settings.keep_finished).await;
        }
        self.forget(&task.id);
    }

    /// Holds a queued-or-running place of `caller`'s, a client other than root, of the
    /// `--max-per-client` it has: counted and taken under one lock, so that concurrent
    /// requests cannot pass the bound together.
    fn client_slot(&self, caller: &Caller) -> Result<Option<Place>, ApiError> {
        if caller.is_operator() {
            return Ok(None);
        }
        let place = self.active.take(caller.uid).ok_or_else(|| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "uid {} already has {} jobs and builds queued or running, the most --max-per-client allows; try again when one has ended",
                    caller.uid,
                    self.active.bound()
                ),
            )
        })?;
        Ok(Some(place))
    }

    /// Forgets ended tasks, the oldest of the client whose ended tasks weigh most first,
    /// while they keep more than [`Settings::kept_output`] of output together, more than
    /// [`KEPT_REQUESTS`] of requests, or are more than [`MAX_KEPT`]; so that no client can
    /// fill the disk or the daemon's memory, nor push another's results out with its own.
    fn evict_past_quota(&self) {
        let mut ended: Vec<Arc<Task>> = self
            .list()
            .into_iter()
            .filter(|task| task.status.borrow().state == State::Exited)
            .collect();
        let output = |task: &Task| task.progress.borrow().len();
        let mut kept_output: u64 = ended.iter().map(|t| output(t)).sum();
        let mut kept_requests: u64 = ended.iter().map(|t| t.about.weight()).sum();
        while kept_output > self.settings.kept_output
            || kept_requests > KEPT_REQUESTS
            || ended.len() > MAX_KEPT
        {
            let mut weights: HashMap<u32, u64> = HashMap::new();
            for task in &ended {
                *weights.entry(task.owner).or_default() += output(task) + task.about.weight();
            }
            let Some((&heaviest, _)) = weights.iter().max_by_key(|(_, weight)| **weight) else {
                break;
            };
            // `ended` is oldest first.
            let Some(at) = ended.iter().position(|t| t.owner == heaviest) else {
                break;
            };
            let task = ended.remove(at);
            tracing::info!(task = %task.id, owner = task.owner, "forgotten early: ended tasks keep more than runseald's bounds");
            kept_output -= output(&task);
            kept_requests -= task.about.weight();
            self.forget(&task.id);
        }
    }

    /// Runs the helper until it ends: its exit code and the signal that ended it.
    async fn execute(
        &self,
        task: &Task,
        mode: &str,
        writer: spool::Writer,
        mut stop: watch::Receiver<Option<Stop>>,
    ) -> std::io::Result<(Option<i32>, Option<i32>)> {
        let streamed = lock(&task.stdin_reader).take();
        let stdin = match (streamed, std::fs::File::open(task.dir.join("stdin"))) {
            (Some(pipe), _) => Stdio::from(pipe),
            (None, Ok(file)) => Stdio::from(file),
            (None, Err(_)) => Stdio::null(),
        };
        let mut child = tokio::process::Command::new(&self.settings.helper)
            .args(["--helper", mode, "--input"])
            .arg(task.dir.join("input.json"))
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        task.status.send_modify(|s| {
            s.state = State::Running;
            s.started = Some(now());
        });
        let pipes = child.stdout.take().zip(child.stderr.take());
        let pid = child
            .id()
            .and_then(|pid| rustix::process::Pid::from_raw(pid as i32));
        let grace = self.settings.stop_grace;
        let wait = async {
            let mut deadline = None;
            loop {
                match *stop.borrow_and_update() {
                    Some(Stop::Kill) => break,
                    // Like `docker stop`; the helper passes the signal on to the job.
                    Some(Stop::Term) if deadline.is_none() => {
                        if let Some(pid) = pid {
                            let _ =
                                rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                        }
                        deadline = Some(Instant::now() + grace);
                    }
                    _ => {}
                }
                tokio::select! {
                    status = child.wait() => return status,
                    _ = stop.changed() => {}
                    () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => break,
                }
            }
            child.start_kill()?;
            child.wait().await
        };
        let pump = async {
            match pipes {
                Some((stdout, stderr)) => writer.pump(stdout, stderr).await,
                None => Ok(()),
            }
        };
        let (pumped, status) = tokio::join!(pump, wait);
        let status = status?;
        pumped?;
        Ok((status.code(), status.signal()))
    }

    /// The task `id` and its `view`, which is `None` for another kind of task (a `what`).
    pub fn find<V>(
        &self,
        id: &str,
        what: &str,
        view: fn(&Task) -> Option<V>,
        caller: &Caller,
    ) -> Result<(Arc<Task>, V), ApiError> {
        // Another client's task is not there for this one.
        let task = self
            .tasks()
            .get(id)
            .filter(|task| caller.owns(task.owner))
            .cloned();
        let found = task.and_then(|task| Some((view(&task)?, task)));
        let (view, task) = found.ok_or_else(|| not_found(format!("no {what} `{id}`")))?;
        Ok((task, view))
    }

    /// The `view` of every task `caller` may see that has one (a job's or a build's), oldest
    /// first.
    pub fn views<V>(&self, caller: &Caller, view: fn(&Task) -> Option<V>) -> Vec<V> {
        self.list()
            .iter()
            .filter(|task| caller.owns(task.owner))
            .filter_map(|task| view(task))
            .collect()
    }

    /// Every task, oldest first.
    fn list(&self) -> Vec<Arc<Task>> {
        let mut tasks: Vec<_> = self.tasks().values().cloned().collect();
        tasks.sort_by_key(|task| task.order);
        tasks
    }

    /// Forgets a task and removes its dir; a reader that has its spool open keeps reading.
    pub fn forget(&self, id: &str) {
        if let Some(task) = self.tasks().remove(id) {
            if let Err(e) = std::fs::remove_dir_all(&task.dir) {
                tracing::warn!("{}: {e}", task.dir.display());
            }
        }
    }

    /// Stops a task that has not ended; forgets one that has. Whether it was running.
    pub fn delete(&self, task: &Task) -> bool {
        if task.status.borrow().state == State::Exited {
            self.forget(&task.id);
            false
        } else {
            task.stop(Stop::Term);
            true
        }
    }

    /// SIGTERM to every task, the grace period, then SIGKILL to what remains.
    pub async fn shutdown(&self) {
        let tasks: Vec<_> = self.tasks().values().cloned().collect();
        for task in &tasks {
            task.stop(Stop::Term);
        }
        let all_ended = async {
            for task in &tasks {
                task.ended().await;
            }
        };
        if tokio::time::timeout(self.settings.stop_grace, all_ended)
            .await
            .is_err()
        {
            tracing::warn!("jobs still running after the grace period are killed");
            for task in &tasks {
                task.stop(Stop::Kill);
            }
            for task in &tasks {
                task.ended().await;
            }
        }
    }
}

impl Task {
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// What the helper reported, once the task has ended.
    pub fn report<T: serde::de::DeserializeOwned + Default>(&self) -> T {
        let report = self.status.borrow().report.clone();
        report
            .and_then(|r| serde_json::from_value(r).ok())
            .unwrap_or_default()
    }

    pub fn stop(&self, how: Stop) {
        // Never from Kill back to Term.
        self.stop.send_if_modified(|stop| {
            let changed = *stop != Some(Stop::Kill) && *stop != Some(how);
            if changed {
                *stop = Some(how);
            }
            changed
        });
    }

    /// The write end of the task's stdin, to the first client that asks: `None` when stdin
    /// is not streamed, is already taken, or the task has ended.
    pub fn take_stdin(&self) -> Option<OwnedFd> {
        lock(&self.stdin_writer).take()
    }

    pub async fn ended(&self) {
        let _ = self
            .status
            .subscribe()
            .wait_for(|s| s.state == State::Exited)
            .await;
    }

    /// A reader of the task's output from its start.
    pub async fn output(&self) -> std::io::Result<spool::Reader> {
        spool::open(self.dir.join("output"), self.progress.clone()).await
    }
}

/// How a client reads a task's output.
pub enum Reading {
    /// What has been written so far.
    Written,
    /// Frames as they are written, until the task ends.
    Follow,
    /// Follow, from the request that created the task: a `{"start": VIEW}` line first, and
    /// the guard, made before the request's first await, stops the task (SIGTERM, then
    /// SIGKILL after the grace period) if the client goes away before it ends, as nobody is
    /// left to read it.
    Attached(StopOnDrop),
}

/// Stops its task, `how`, when dropped before the task ended: its client went away.
pub struct StopOnDrop(pub Arc<Task>, pub Stop);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if self.0.status.borrow().state != State::Exited {
            tracing::info!(task = %self.0.id, "client gone: stopping");
            self.0.stop(self.1);
        }
    }
}

fn ndjson_line(key: &str, view: serde_json::Value) -> Option<Vec<u8>> {
    let mut line = serde_json::to_vec(&serde_json::json!({ key: view })).ok()?;
    line.push(b'\n');
    Some(line)
}

/// A task's output as NDJSON: a frame a record, then, once the task has ended, one line
/// `{"end": VIEW}`; [`Reading`] says which frames, and whether a start line comes first.
pub async fn ndjson(
    task: Arc<Task>,
    reading: Reading,
    view: fn(&Task) -> serde_json::Value,
) -> Result<Response, ApiError> {
    let reader = task
        .output()
        .await
        .map_err(|_| not_found(format!("`{}` is gone", task.id)))?;
    let (follow, guard) = match reading {
        Reading::Written => (false, None),
        Reading::Follow => (true, None),
        Reading::Attached(guard) => (true, Some(guard)),
    };
    let attached = guard.is_some();
    let start = attached
        .then(|| ndjson_line("start", view(&task)))
        .flatten();
    // The guard lives in the stream's state: the stream is dropped when the client goes.
    let state = (start, Some(reader), guard);
    let lines = futures_util::stream::unfold(state, move |(start, reader, guard)| {
        let task = Arc::clone(&task);
        async move {
            if let Some(line) = start {
                return Some((Ok(line), (None, reader, guard)));
            }
            let mut reader = reader?;
            match reader.next_line(follow).await {
                Ok(Some(line)) => Some((Ok(line), (None, Some(reader), guard))),
                Ok(None) => {
                    if follow {
                        task.ended().await;
                    }
                    if task.status.borrow().state != State::Exited {
                        return None;
                    }
                    let line = ndjson_line("end", view(&task))?;
                    Some((Ok(line), (None, None, guard)))
                }
                Err(e) => Some((Err(e), (None, None, guard))),
            }
        }
    });
    let status = if attached {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(lines),
    )
        .into_response())
}
