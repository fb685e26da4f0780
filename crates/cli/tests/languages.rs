//! Go, R, PHP and Perl from Debian's packages (golang-go, r-base-core, php-cli, perl),
//! each sealed the way an operator would write its runtime.yml: without a profile or
//! learning (`--profile generic`) each fails in a way no ELF header or `#!` line reveals;
//! with its profile, or with what a learn command opened, it seals, verifies (the smoke
//! tests and learn commands run inside the sandbox) and runs a real job.

use std::path::Path;
use std::process::Output;

use crate::util::{code, json, text, TestRoot};

/// A program using crypto: a digest, the system CA roots (crypto/x509 reads the host's
/// bundle) and a time zone (time.LoadLocation reads the zone files).
const GO_CHECK: &str = r#"package main

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"os"
	"time"
)

func main() {
	roots, err := x509.SystemCertPool()
	if err != nil || len(roots.Subjects()) < 10 {
		fmt.Println("no system CA roots:", err)
		os.Exit(1)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	sum := sha256.Sum256([]byte("x"))
	fmt.Printf("go-ok %x %s\n", sum[:4], time.Unix(0, 0).In(berlin).Format("15:04 MST"))
}
"#;

const GO_OK: &str = "go-ok 2d711642 01:00 CET";

fn entry_kind(manifest: &serde_json::Value, path: &str) -> Option<String> {
    manifest["entries"][path]["kind"].as_str().map(String::from)
}

/// `runseal seal ARGS` must succeed; its stderr.
fn seal(t: &TestRoot, args: &[&str]) -> String {
    let mut all = vec!["seal"];
    all.extend(args);
    let out = t.run(&all);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 0, "{stderr}");
    stderr
}

/// Seals `runtime` with the profile it gets by itself, which must be `profile` (+generic
/// when detected, +base), and verifies it with that profile's smoke tests.
fn sealed_with_its_profile(t: &TestRoot, runtime: &str, profile: &str) {
    let out = t.run(&["--json", "seal", runtime]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let name = json(&out)["profile"].as_str().unwrap().to_string();
    assert!(
        [format!("{profile}+generic+base"), format!("{profile}+base")].contains(&name),
        "{name}"
    );
    t.verified_with(runtime, profile);
}

/// The runtime dir `runtime` holding `yml`, sealed without a profile: `check` fails and
/// says `without`. Sealed with the profile of the same name, found by itself: it verifies,
/// and `check` prints `with`.
fn fails_without_its_profile_and_runs_with_it(
    t: &TestRoot,
    runtime: &str,
    yml: &str,
    work: Option<&Path>,
    check: &[&str],
    without: &str,
    with: &str,
) {
    t.runtime(runtime, yml);
    seal(t, &[runtime, "--profile", "generic"]);
    job_fails_saying(t, runtime, work, check, without);
    sealed_with_its_profile(t, runtime, runtime);
    job_prints(t, runtime, work, check, with);
}

/// A job on `runtime` in `work` (if any) must succeed and print `expected`; its stderr.
fn job_prints(
    t: &TestRoot,
    runtime: &str,
    work: Option<&Path>,
    command: &[&str],
    expected: &str,
) -> String {
    let out = job(t, runtime, work, command);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(code(&out), 0, "{stdout}{stderr}");
    assert_eq!(stdout.trim(), expected, "{stderr}");
    stderr
}

/// A job on `runtime` in `work` (if any) must fail and say `message`.
fn job_fails_saying(
    t: &TestRoot,
    runtime: &str,
    work: Option<&Path>,
    command: &[&str],
    message: &str,
) {
    let out = job(t, runtime, work, command);
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_ne!(code(&out), 0, "{output}");
    assert!(output.contains(message), "{output}");
}

fn job(t: &TestRoot, runtime: &str, work: Option<&Path>, command: &[&str]) -> Output {
    let mut args = vec!["run", "--runtime", runtime];
    if let Some(work) = work {
        args.extend(["--workdir", work.to_str().unwrap()]);
    }
    args.push("--");
    args.extend(command);
    t.run(&args)
}

/// A work dir holding the Go program, as a job's.
fn go_work(t: &TestRoot) -> std::path::PathBuf {
    let work = t.workdir("work");
    std::fs::write(work.join("check.go"), GO_CHECK).unwrap();
    work
}

const GO_YML: &str = "name: go\nversion: \"1.19\"\nmounts:\n\
  - {source: /usr/bin/go, target: /usr/bin/go, readonly: true}\n\
  - {source: /usr/lib/go-1.19, target: /usr/lib/go-1.19, readonly: true}\n";

/// The whole GOROOT mounted, no profile: the toolchain builds, but the program finds no CA
/// roots. Learned from a shell command that writes the program and runs it (as a job
/// would, in its work dir), the runtime holds what the program read and runs it.
#[test]
fn go_run_with_crypto_fails_without_profile_and_learned_seals_verifies_and_runs() {
    let t = sealtest!();
    t.runtime("go", GO_YML);
    let work = go_work(&t);
    seal(&t, &["go", "--profile", "generic"]);
    job_fails_saying(
        &t,
        "go",
        Some(&work),
        &["go", "run", "check.go"],
        "no system CA roots",
    );

    let script = "printf '%s' \"$0\" > check.go && go run check.go";
    let stderr = seal(
        &t,
        &[
            "go",
            "--profile",
            "generic",
            "--learn",
            "--",
            "sh",
            "-c",
            script,
            GO_CHECK,
        ],
    );
    assert!(stderr.contains("learn `sh -c"), "{stderr}");
    let sealed = t.manifest("go");
    for learned in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/usr/share/zoneinfo/Europe/Berlin",
    ] {
        assert!(
            entry_kind(&sealed, learned).is_some(),
            "{learned} not learned"
        );
    }
    t.verified_with("go", "learned");
    job_prints(&t, "go", Some(&work), &["go", "run", "check.go"], GO_OK);
}

/// Only `/usr/bin/go` mounted: without a profile the sealed runtime holds the `go` binary
/// and not its GOROOT; the go profile, detected from the binary, brings GOROOT, the CA
/// bundle and the zone files, and its smoke test `go run`s a program in the sandbox.
#[test]
fn go_with_its_profile_seals_verifies_and_runs_a_program_using_crypto() {
    let t = sealtest!();
    let yml = "name: go\nmounts:\n  - {source: /usr/bin/go, target: /usr/bin/go, readonly: true}\n";
    let work = go_work(&t);
    let check = ["go", "run", "check.go"];
    let without = "package crypto/sha256 is not in GOROOT";
    fails_without_its_profile_and_runs_with_it(&t, "go", yml, Some(&work), &check, without, GO_OK);
}

const R_YML: &str = "name: r\nversion: \"4.2\"\nmounts:\n\
  - {source: /usr/bin/Rscript, target: /usr/bin/Rscript, readonly: true}\n\
  - {source: /usr/lib/R, target: /usr/lib/R, readonly: true}\n";

/// Loads the default packages (utils runs `which` through `system()` as it loads) and
/// stats, which the launcher's helpers must be there for.
const R_CHECK: [&str; 3] = [
    "Rscript",
    "-e",
    "library(stats); cat('r-ok', median(c(1, 5, 9)), '\\n')",
];

/// R's launcher is a bash script that runs `sed` and `uname`: sealed from R_HOME alone it
/// cannot start. Learned from `Rscript -e 1`, the helpers it ran come with it, and so do the
/// names it ran them by (`/bin/sed` through the /bin link, `which` through
/// /etc/alternatives), which fanotify never reports.
#[test]
fn r_sealed_statically_lacks_its_launchers_helpers_and_learned_seals_verifies_and_runs() {
    let t = sealtest!();
    t.runtime("r", R_YML);
    seal(&t, &["r", "--profile", "generic"]);
    job_fails_saying(
        &t,
        "r",
        None,
        &R_CHECK,
        "/bin/sed: No such file or directory",
    );

    let stderr = seal(
        &t,
        &[
            "r",
            "--profile",
            "generic",
            "--learn",
            "--",
            "Rscript",
            "-e",
            "1",
        ],
    );
    assert!(stderr.contains("learn `Rscript -e 1`"), "{stderr}");
    let sealed = t.manifest("r");
    assert_eq!(entry_kind(&sealed, "/usr/bin/sed").as_deref(), Some("file"));
    for link in ["/usr/bin/which", "/etc/alternatives/which", "/bin"] {
        assert_eq!(
            entry_kind(&sealed, link).as_deref(),
            Some("symlink"),
            "{link}"
        );
    }
    t.verified_with("r", "learned");
    let stderr = job_prints(&t, "r", None, &R_CHECK, "r-ok 5");
    assert!(!stderr.contains("not found"), "{stderr}");
}

/// The other route for a shell script's helpers: the base userland. With `base: busybox`
/// and no profile, R's launcher finds `sed`, `uname` and `which` as busybox applets.
#[test]
fn r_with_the_busybox_base_runs_its_launchers_helpers_as_applets() {
    let t = sealtest!();
    t.runtime("r", &format!("{R_YML}base: busybox\n"));
    let out = t.run(&["--json", "seal", "r", "--profile", "generic"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(json(&out)["profile"], "generic+busybox+base");
    let sealed = t.manifest("r");
    assert_eq!(sealed["entries"]["/usr/bin/sed"]["target"], "busybox");
    let stderr = job_prints(&t, "r", None, &R_CHECK, "r-ok 5");
    assert!(!stderr.contains("not found"), "{stderr}");
}

/// Only `/usr/bin/Rscript` mounted: the r profile, detected from it, brings R_HOME, the
/// launcher's helpers and the zone files.
#[test]
fn r_with_its_profile_seals_verifies_and_runs() {
    let t = sealtest!();
    t.runtime(
        "r",
        "name: r\nmounts:\n  - {source: /usr/bin/Rscript, target: /usr/bin/Rscript, readonly: true}\n",
    );
    sealed_with_its_profile(&t, "r", "r");
    job_prints(&t, "r", None, &R_CHECK, "r-ok 5");
}

const PHP_YML: &str =
    "name: php\nmounts:\n  - {source: /usr/bin/php, target: /usr/bin/php, readonly: true}\n";

const PHP_CHECK: [&str; 3] = [
    "php",
    "-r",
    "echo ctype_digit('42') ? 'php-ok' : 'no', PHP_EOL;",
];

const PERL_YML: &str = "name: perl\nlanguage: perl\nmounts:\n  - {source: /usr/bin/perl, target: /usr/bin/perl, readonly: true}\n";

const PERL_CHECK: [&str; 5] = [
    "perl",
    "-MDigest::SHA=sha1_hex",
    "-MJSON::PP",
    "-e",
    "print encode_json([sha1_hex('x')]), qq(\\n)",
];

const PERL_OK: &str = r#"["11f6ad8ec52a2984abaafd7c3b516503785c2072"]"#;

/// PHP without its ini files starts with no extension loaded; with the php profile
/// (detected from `/usr/bin/php8.2` behind Debian's alternatives links) conf.d loads them.
#[test]
fn php_without_its_ini_files_lacks_extensions_and_with_its_profile_runs() {
    let t = sealtest!();
    let without = "undefined function ctype_digit";
    fails_without_its_profile_and_runs_with_it(
        &t, "php", PHP_YML, None, &PHP_CHECK, without, "php-ok",
    );
}

/// Perl's modules are in its @INC dirs, which nothing in `/usr/bin/perl` names; with
/// `language: perl` the profile brings them, pure-Perl and XS alike.
#[test]
fn perl_without_its_inc_dirs_lacks_modules_and_with_its_profile_runs() {
    let t = sealtest!();
    let without = "Can't locate Digest/SHA.pm in @INC";
    fails_without_its_profile_and_runs_with_it(
        &t,
        "perl",
        PERL_YML,
        None,
        &PERL_CHECK,
        without,
        PERL_OK,
    );
}

/// With no profile, learning alone: PHP reads its extensions' ini files through the links
/// in the conf.d it lists, and Perl its modules through the `5.36 -> 5.36.0` links of its
/// @INC dirs; fanotify reports neither name, only the files they lead to.
#[test]
fn php_and_perl_learned_without_a_profile_keep_the_links_they_read_through() {
    let t = sealtest!();
    for (runtime, yml, check, expected, link) in [
        (
            "php",
            PHP_YML,
            &PHP_CHECK[..],
            "php-ok",
            "/etc/php/8.2/cli/conf.d/20-ctype.ini",
        ),
        (
            "perl",
            PERL_YML,
            &PERL_CHECK[..],
            PERL_OK,
            "/usr/lib/x86_64-linux-gnu/perl/5.36",
        ),
    ] {
        t.runtime(runtime, yml);
        let mut args = vec![runtime, "--profile", "generic", "--learn", "--"];
        args.extend(check);
        seal(&t, &args);
        let sealed = t.manifest(runtime);
        assert_eq!(
            entry_kind(&sealed, link).as_deref(),
            Some("symlink"),
            "{link}"
        );
        t.verified_with(runtime, "learned");
        job_prints(&t, runtime, None, check, expected);
    }
}
