//! `--host unix:///PATH`: the CLI as a client of runseald, the way `docker` is of `dockerd`.
//!
//! A minimal HTTP/1.1 client over the daemon's Unix socket: one request a connection
//! (`Connection: close`), JSON bodies, and responses read either whole or, for a job's output,
//! as NDJSON lines while the daemon writes them. The daemon is ours and speaks a narrow subset
//! of HTTP, so a few dozen lines serve where a general client would add a dependency tree.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use base64::Engine;
use runseal_seal::SealOptions;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::JobsCommand;
use crate::commands::run::RunOptions;
use crate::commands::{
    du, gc, info, list, remove, run as local_run, seal as local_seal, validate as local_validate,
};

/// The daemon's socket, as `--host` names it.
#[derive(Debug, Clone)]
pub struct Host {
    socket: PathBuf,
}

impl Host {
    /// Parses `unix:///PATH`, the one transport runseald serves.
    pub fn parse(text: &str) -> Result<Host, String> {
        match text.strip_prefix("unix://") {
            Some(path) if path.starts_with('/') => Ok(Host {
                socket: PathBuf::from(path),
            }),
            _ => Err(format!(
                "`{text}` is not unix:///PATH (runseald listens on a Unix socket only)"
            )),
        }
    }
}

/// An error the daemon answered with: its status and `error.message`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DaemonError {
    pub status: u16,
    pub message: String,
}

/// A response whose head has been read; its body is read on demand.
pub struct Response {
    pub status: u16,
    body: Body,
    /// Read of the body but not yet taken as a line.
    pending: Vec<u8>,
}

/// The body's framing: chunked (a stream of unknown length) or up to the connection's end
/// (every other answer, since each request has a connection of its own).
struct Body {
    reader: BufReader<UnixStream>,
    chunked: bool,
    /// Bytes left in the current chunk; `None` once the last chunk has been read.
    left: Option<u64>,
}

impl Host {
    /// Sends `METHOD path` with `body` as JSON and reads the answer's head.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        let mut stream = UnixStream::connect(&self.socket)
            .await
            .with_context(|| format!("connect to runseald at {}", self.socket.display()))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: runseald\r\nConnection: close\r\n");
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(request.as_bytes()).await?;
        let mut reader = BufReader::new(stream);
        let status_line = read_line(&mut reader).await?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("runseald answered `{status_line}`, not HTTP"))?;
        let mut chunked = false;
        loop {
            let line = read_line(&mut reader).await?;
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                chunked |= name.eq_ignore_ascii_case("transfer-encoding")
                    && value.trim().eq_ignore_ascii_case("chunked");
            }
        }
        Ok(Response {
            status,
            body: Body {
                reader,
                chunked,
                left: Some(0),
            },
            pending: Vec::new(),
        })
    }

    /// `METHOD path`, its answer as JSON (`Null` for none); an error answer is a [`DaemonError`].
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut response = self.send(method, path, body).await?.ok().await?;
        let bytes = response.bytes().await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).context("runseald's answer is not JSON")
    }

    /// [`Host::call`] on a new single-threaded runtime, for the commands that make one call.
    pub fn call_blocking(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        runtime()?.block_on(self.call(method, path, body))
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A path segment: `name@1.0` and `java:17` as they are, anything else percent-encoded.
pub fn segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@:+".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn read_line(reader: &mut BufReader<UnixStream>) -> anyhow::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        anyhow::bail!("runseald closed the connection");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

impl Response {
    /// This response, unless the daemon answered with an error: that is read and returned.
    async fn ok(mut self) -> anyhow::Result<Response> {
        if self.status < 400 {
            return Ok(self);
        }
        let body = self.bytes().await?;
        let value: Value = serde_json::from_slice(&body).unwrap_or_default();
        let message = value["error"]["message"].as_str().map_or_else(
            || format!("runseald answered {}", self.status),
            String::from,
        );
        Err(DaemonError {
            status: self.status,
            message,
        }
        .into())
    }

    /// The whole body.
    pub async fn bytes(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut all = Vec::new();
        while self.body.fill(&mut all).await? {}
        Ok(all)
    }

    /// The next NDJSON line of the body, parsed; `None` at its end.
    pub async fn next_line(&mut self) -> anyhow::Result<Option<Value>> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(Some(
                    serde_json::from_slice(&line)
                        .context("runseald sent a line that is not JSON")?,
                ));
            }
            if !self.body.fill(&mut self.pending).await? {
                return Ok(None);
            }
        }
    }
}

impl Body {
    /// Appends what the body has next to `into`; false at its end.
    async fn fill(&mut self, into: &mut Vec<u8>) -> anyhow::Result<bool> {
        let mut buf = [0u8; 64 << 10];
        if !self.chunked {
            let n = self.reader.read(&mut buf).await?;
            into.extend_from_slice(&buf[..n]);
            return Ok(n > 0);
        }
        let left = match self.left {
            None => return Ok(false),
            Some(0) => {
                let line = read_line(&mut self.reader).await?;
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = u64::from_str_radix(size, 16)
                    .with_context(|| format!("runseald sent a bad chunk size `{line}`"))?;
                if size == 0 {
                    self.left = None;
                    return Ok(false);
                }
                size
            }
            Some(left) => left,
        };
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.reader.read(&mut buf[..want]).await?;
        anyhow::ensure!(n > 0, "runseald closed the connection mid-answer");
        into.extend_from_slice(&buf[..n]);
        let left = left - n as u64;
        if left == 0 {
            // The CRLF that closes a chunk.
            read_line(&mut self.reader).await?;
        }
        self.left = Some(left);
        Ok(true)
    }
}

/// A command runseald does not serve.
pub fn local_only(command: &str) -> anyhow::Error {
    anyhow::anyhow!("`runseal {command}` does not take --host: runseald does not serve it; run it where the runtimes are")
}

/// Refuses `option` when it was given: runseald has no such setting.
fn unsupported(given: bool, command: &str, option: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !given,
        "`runseal {command} {option}` does not take --host: runseald's {command} has no such option"
    );
    Ok(())
}

fn runtime_path(runtime: &str) -> String {
    format!("/v1/runtimes/{}", segment(runtime))
}

pub fn list(host: &Host, json: bool) -> anyhow::Result<ExitCode> {
    list::show(
        host.call_blocking("GET", "/v1/runtimes", None)?,
        "runseald's root",
        json,
    )
}

pub fn info(host: &Host, runtime: &str, json: bool) -> anyhow::Result<ExitCode> {
    info::show(
        host.call_blocking("GET", &runtime_path(runtime), None)?,
        json,
    )
}

pub fn validate(
    host: &Host,
    runtime: &str,
    allow_writable: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    unsupported(allow_writable, "validate", "--allow-writable")?;
    let path = format!("{}/validate", runtime_path(runtime));
    local_validate::show(host.call_blocking("POST", &path, None)?, json)
}

pub fn seal(
    host: &Host,
    runtime: &str,
    options: &SealOptions,
    json: bool,
) -> anyhow::Result<ExitCode> {
    unsupported(options.allow_writable, "seal", "--allow-writable")?;
    unsupported(options.no_wait, "seal", "--no-wait")?;
    unsupported(!options.allow_paths.is_empty(), "seal", "--allow-path")?;
    unsupported(options.allow_untrusted_dir, "seal", "--allow-untrusted-dir")?;
    let default_profiles = [PathBuf::from(crate::cli::DEFAULT_PROFILE_DIR)];
    unsupported(
        options.profile_dirs != default_profiles,
        "seal",
        "--profile-dir",
    )?;
    let started = Instant::now();
    let body = json!({ "profiles": options.profiles, "dry_run": options.dry_run });
    let path = format!("{}/seal", runtime_path(runtime));
    local_seal::show(
        host.call_blocking("POST", &path, Some(&body))?,
        started,
        json,
    )
}

pub fn du(host: &Host, json: bool) -> anyhow::Result<ExitCode> {
    let usage = serde_json::from_value(host.call_blocking("GET", "/v1/du", None)?)
        .context("runseald's du is not what this runseal reads")?;
    du::show(&usage, json)
}

pub fn gc(host: &Host, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    let body = json!({ "dry_run": dry_run });
    let report = serde_json::from_value(host.call_blocking("POST", "/v1/gc", Some(&body))?)
        .context("runseald's gc report is not what this runseal reads")?;
    gc::show(&report, json)
}

pub fn remove(host: &Host, runtime: &str, json: bool) -> anyhow::Result<ExitCode> {
    let removed = host.call_blocking("DELETE", &runtime_path(runtime), None)?;
    let dir = removed["removed"]
        .as_str()
        .context("runseald's answer names no removed dir")?;
    remove::show(dir, json)
}

/// Runs the job on the daemon, its output streamed here as it is written; exits as a local
/// `run` does.
pub fn run(
    host: &Host,
    runtime_spec: &str,
    config: Option<&Path>,
    options: RunOptions,
) -> ExitCode {
    let ended = job_body(runtime_spec, config, options)
        .and_then(|body| runtime()?.block_on(follow_job(host, &body)));
    local_run::exit_code(ended)
}

/// The `POST /v1/jobs` body for `options`. Env files and bare `--env NAME`s are read here,
/// where the caller's environment is; paths are made absolute against the caller's dir.
fn job_body(runtime: &str, config: Option<&Path>, options: RunOptions) -> anyhow::Result<Value> {
    unsupported(config.is_some(), "run", "--config (RUNSEAL_CONFIG)")?;
    unsupported(options.mount_table, "run", "--mount-table")?;
    let env: Vec<String> = local_run::job_env(&options)?
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let absolute =
        |path: &Path| std::path::absolute(path).with_context(|| path.display().to_string());
    let volumes = options
        .volumes
        .iter()
        .map(|v| {
            let source = absolute(&v.source)?;
            Ok(json!({ "source": source, "target": v.target, "readonly": v.readonly }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let limits = options.limits;
    Ok(json!({
        "runtime": runtime,
        "command": options.command,
        "env": env,
        "workdir": options.workdir.as_deref().map(absolute).transpose()?,
        "memory": limits.memory_bytes.map(|bytes| bytes.to_string()),
        "tmp_size": limits.tmp_size.map(|bytes| bytes.to_string()),
        "cpus": limits.cpus,
        "pids": limits.pids,
        "timeout_secs": limits.timeout.map(|t| t.as_secs_f64()),
        "network": options.network,
        "user": options.user.map(|u| format!("{}:{}", u.uid, u.gid)),
        "volumes": volumes,
        // This process's stdin follows, as a local job's is this process's.
        "stdin_stream": true,
    }))
}

/// Creates the job attached (a runseal that goes away, even killed, takes its job with it),
/// streams this process's stdin to it, writes its output to this process's stdout and
/// stderr as the daemon spools it, and returns its exit code. SIGINT, SIGTERM and SIGHUP
/// cancel the job (as they stop a local one) and the output is followed to its end.
async fn follow_job(host: &Host, body: &Value) -> anyhow::Result<i32> {
    // Before the job exists: a signal from now on is held for the canceller.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let (mut output, job) = attach(host, "/v1/jobs", body).await?;
    let id = job["id"].as_str().context("runseald's job has no id")?;
    let job_path = format!("/v1/jobs/{}", segment(id));
    stream_stdin(host, &job_path);
    let canceller = {
        let (host, job_path) = (host.clone(), job_path.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                    _ = hangup.recv() => {}
                }
                if let Err(e) = host.call("DELETE", &job_path, None).await {
                    tracing::warn!("cancelling {job_path}: {e:#}");
                }
            }
        })
    };
    let followed = copy_frames(&mut output, &job_path, Frames::AsWritten).await;
    canceller.abort();
    // An ended job is forgotten, its output read; one whose output broke off (stdout
    // closed, the connection lost) is cancelled, as nobody is left to read it.
    if let Err(e) = host.call("DELETE", &job_path, None).await {
        tracing::warn!("deleting {job_path}: {e:#}");
    }
    let end = followed?;
    let code = end["exit_code"]
        .as_i64()
        .context("runseald's ended job has no exit code")?;
    Ok(i32::try_from(code)?)
}

/// `POST path?attach=true` with `body`: the answer, to read frames from, and the task's view
/// from its start line.
async fn attach(host: &Host, path: &str, body: &Value) -> anyhow::Result<(Response, Value)> {
    let mut output = host
        .send("POST", &format!("{path}?attach=true"), Some(body))
        .await?
        .ok()
        .await?;
    let start = output
        .next_line()
        .await?
        .context("runseald ended its answer before the start line")?;
    let view = start
        .get("start")
        .with_context(|| format!("runseald's first line is not a start line: {start}"))?
        .clone();
    Ok((output, view))
}

/// Streams this process's stdin to the job's, from a thread of its own: a read of stdin may
/// block for ever (a terminal nobody types in), and the job must not wait for it. Whatever
/// happens to the stream (the job closed its stdin or ended) is no error of the job's.
fn stream_stdin(host: &Host, job_path: &str) {
    // In the background, a read of the terminal would stop this process (SIGTTIN), as a
    // local job's read would stop that job; the job reads end-of-file instead.
    let stdin = std::io::stdin();
    let background = stdin.is_terminal()
        && rustix::termios::tcgetpgrp(&stdin).ok() != Some(rustix::process::getpgrp());
    let socket = host.socket.clone();
    let path = format!("{job_path}/stdin");
    std::thread::spawn(move || {
        let sent = if background {
            send_stdin(&socket, &path, std::io::empty())
        } else {
            send_stdin(&socket, &path, stdin.lock())
        };
        if let Err(e) = sent {
            tracing::debug!("stdin to {path}: {e}");
        }
    });
}

/// `PUT path` with `input` as a chunked body.
fn send_stdin(socket: &Path, path: &str, mut input: impl std::io::Read) -> std::io::Result<()> {
    let stream = std::os::unix::net::UnixStream::connect(socket)?;
    // MSG_NOSIGNAL: runseal dies of SIGPIPE (as `runseal list | head` should), but a daemon
    // that stops reading a job's stdin is not a reason to.
    let send = |bytes: &[u8]| -> std::io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = rustix::net::send(&stream, rest, rustix::net::SendFlags::NOSIGNAL)?;
            rest = &rest[n..];
        }
        Ok(())
    };
    send(
        format!(
            "PUT {path} HTTP/1.1\r\nHost: runseald\r\nConnection: close\r\n\
             Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        send(format!("{n:x}\r\n").as_bytes())?;
        send(&buf[..n])?;
        send(b"\r\n")?;
    }
    send(b"0\r\n\r\n")?;
    // Read the answer out, so that the daemon sees the body end before the connection.
    std::io::copy(&mut &stream, &mut std::io::sink())?;
    Ok(())
}

/// Where a task's output frames go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Frames {
    /// Each stream to ours: a job's.
    AsWritten,
    /// All to stderr, as a local build prints its script's output: a build's log.
    ToStderr,
}

/// Copies a task's output frames until its end frame, the task's view.
async fn copy_frames(output: &mut Response, what: &str, to: Frames) -> anyhow::Result<Value> {
    while let Some(frame) = output.next_line().await? {
        if let Some(end) = frame.get("end") {
            return Ok(end.clone());
        }
        let bytes = match (frame["data"].as_str(), frame["data_b64"].as_str()) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64)?,
            (None, None) => anyhow::bail!("runseald sent a frame without data: {frame}"),
        };
        if frame["stream"] == "stderr" || to == Frames::ToStderr {
            let mut err = std::io::stderr().lock();
            err.write_all(&bytes)?;
            err.flush()?;
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
    }
    anyhow::bail!("runseald ended {what}'s output before it ended")
}

/// Builds on the daemon, the script's output streamed here; exits 0 only when the runtime
/// was built, sealed and verified, as a local build does.
pub fn build(
    host: &Host,
    script: &Path,
    name: Option<String>,
    profiles: Vec<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    // The daemon checks the path against its --script-dirs; it must name the file the
    // caller means, from wherever the caller is.
    let script = script
        .canonicalize()
        .with_context(|| script.display().to_string())?;
    let body = json!({ "script": script, "name": name, "profiles": profiles });
    let end = runtime()?.block_on(async {
        let (mut output, build) = attach(host, "/v1/builds", &body).await?;
        let id = build["id"].as_str().unwrap_or("the build").to_owned();
        copy_frames(&mut output, &id, Frames::ToStderr).await
    })?;
    let verified = end["verify"]["ok"].as_bool() == Some(true);
    if json {
        crate::output::print_json(&end)?;
    } else if let Some(error) = end["error"].as_str() {
        eprintln!("runseal build: {error}");
    } else {
        println!(
            "built {}: {} files sealed; verify {}",
            end["runtime"].as_str().unwrap_or("?"),
            end["seal"]["files"],
            if verified { "passed" } else { "FAILED" }
        );
        if !verified {
            eprintln!("{:#}", end["verify"]);
        }
    }
    Ok(if verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `runseal jobs ...`: the daemon's jobs.
pub fn jobs(host: &Host, command: JobsCommand, json: bool) -> anyhow::Result<ExitCode> {
    let job_path = |id: &str| format!("/v1/jobs/{}", segment(id));
    match command {
        JobsCommand::List => {
            let jobs = host.call_blocking("GET", "/v1/jobs", None)?;
            if json {
                crate::output::print_json(&jobs)?;
            } else {
                println!(
                    "{:<16}  {:<7}  {:>4}  {:<16}  COMMAND",
                    "ID", "STATE", "EXIT", "RUNTIME"
                );
                for job in jobs.as_array().into_iter().flatten() {
                    println!(
                        "{:<16}  {:<7}  {:>4}  {:<16}  {}",
                        job["id"].as_str().unwrap_or("?"),
                        job["state"].as_str().unwrap_or("?"),
                        job["exit_code"]
                            .as_i64()
                            .map_or("-".into(), |c| c.to_string()),
                        job["runtime"].as_str().unwrap_or("?"),
                        words(&job["command"]),
                    );
                }
            }
        }
        JobsCommand::Show { id } => {
            let job = host.call_blocking("GET", &job_path(&id), None)?;
            if json {
                crate::output::print_json(&job)?;
            } else {
                for (key, value) in job.as_object().into_iter().flatten() {
                    let shown = match value {
                        Value::String(text) => text.clone(),
                        Value::Array(_) => words(value),
                        other => other.to_string(),
                    };
                    println!("{key}: {shown}");
                }
            }
        }
        JobsCommand::Logs { id, follow } => {
            let path = format!("{}/output?follow={follow}", job_path(&id));
            runtime()?.block_on(async {
                let mut output = host.send("GET", &path, None).await?.ok().await?;
                // Without follow, a running job's output ends with what is written so far.
                match copy_frames(&mut output, &id, Frames::AsWritten).await {
                    Ok(_) => Ok(()),
                    Err(_) if !follow => Ok(()),
                    Err(e) => Err(e),
                }
            })?;
        }
        JobsCommand::Cancel { id } => {
            let job = host.call_blocking("DELETE", &job_path(&id), None)?;
            if json {
                crate::output::print_json(&job)?;
            } else if job.is_null() {
                println!("{id} had ended; forgotten");
            } else {
                println!("{id} is being stopped");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A command's words, space-separated, each quoted when it has to be.
fn words(command: &Value) -> String {
    command
        .as_array()
        .into_iter()
        .flatten()
        .map(|word| {
            let word = word.as_str().unwrap_or_default();
            if !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'\'' && b != b'"')
            {
                word.to_owned()
            } else {
                format!("{word:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
