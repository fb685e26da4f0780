//! Python, Node.js and runtimes nobody wrote a profile for: sealed from scratch, verified,
//! and doing real work inside `runseal run`.

use std::path::Path;

use crate::util::{code, json, text, TestRoot};

fn seal_and_verify(t: &TestRoot, runtime: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "seal", runtime];
    args.extend_from_slice(extra);
    let out = t.run(&args);
    assert_eq!(code(&out), 0, "seal {runtime}: {}", text(&out.stderr));
    let sealed = json(&out);
    let out = t.run(&["--json", "verify", runtime]);
    let report = json(&out);
    assert_eq!(code(&out), 0, "verify {runtime}: {report:#}");
    assert!(report["smoke_tests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["passed"] == true));
    sealed
}

#[test]
fn python_with_a_pypi_venv_runs_numpy_sqlite_and_tls() {
    let t = sealtest!();
    t.setup("python-3.11");
    let sealed = seal_and_verify(&t, "python-3.11", &[]);
    assert_eq!(sealed["profile"], "python+base");
    let sbom = crate::sbom::sbom(&t, "python-3.11");
    crate::sbom::assert_package(
        &sbom,
        "pkg:pypi/numpy@2.2.6",
        "site-packages/numpy/__init__.py",
    );
    crate::sbom::assert_package(
        &sbom,
        "pkg:pypi/requests@2.32.3",
        "site-packages/requests/api.py",
    );
    let count = |dir: &Path| {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .count()
    };
    let sealed_libs = count(
        &t.path()
            .join("python-3.11/isolated/usr/lib/x86_64-linux-gnu"),
    );
    let host_libs = count(Path::new("/usr/lib/x86_64-linux-gnu"));
    assert!(
        sealed_libs > 5 && sealed_libs * 10 < host_libs,
        "the closure should hold the libraries it needs, not the whole dir: {sealed_libs} of {host_libs}"
    );
    let program = "import ssl, sqlite3, numpy, requests, certifi\n\
                   a = numpy.arange(9.0).reshape(3, 3)\n\
                   print('trace', (a @ a).trace())\n\
                   print('rows', sqlite3.connect(':memory:').execute('select 40 + 2').fetchone()[0])\n\
                   print('certifi', ssl.create_default_context(cafile=certifi.where()).cert_store_stats()['x509_ca'] > 10)\n\
                   print('default', ssl.create_default_context().cert_store_stats()['x509_ca'] > 10)\n\
                   print('requests', requests.__version__)";
    let out = t.run(&[
        "run",
        "--runtime",
        "python:3.11",
        "--",
        "python3",
        "-c",
        program,
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "trace 180.0\nrows 42\ncertifi True\ndefault True\nrequests 2.32.3\n"
    );
}

#[test]
fn a_python_built_from_source_under_its_own_prefix_seals_the_same_way() {
    let t = sealtest!();
    let versions = Path::new("/root/.pyenv/versions");
    let Some(prefix) = ["3.9.18", "3.10.13", "3.11.7"]
        .iter()
        .map(|v| versions.join(v))
        .find(|p| p.is_dir())
    else {
        let why = format!("needs a pyenv-built Python under {}", versions.display());
        crate::util::allow_skip("a_python_built_from_source", &why);
        return;
    };
    // Where an operator would install it: /root is closed to jobs (and to sealing), so the
    // build is copied to a prefix of its own. CPython finds its prefix from where it runs;
    // its RPATH still names the old one, so LD_LIBRARY_PATH names the new lib dir.
    let copy = t.path().join("python").join(prefix.file_name().unwrap());
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&prefix)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    // Its scripts' `#!` lines name the old prefix; an operator moving a build fixes them.
    let relocate = format!(
        "grep -rlIZ '^#!{old}' {new} | xargs -0 -r sed -i '1s|^#!{old}|#!{new}|'",
        old = prefix.display(),
        new = copy.display()
    );
    let status = std::process::Command::new("sh")
        .args(["-c", &relocate])
        .status()
        .unwrap();
    assert!(status.success());
    let prefix = copy;
    let version = prefix.file_name().unwrap().to_str().unwrap();
    let minor = version.rsplit_once('.').unwrap().0.to_string();
    // The whole prefix, as an operator would mount it: its man pages (`python3.9.1`) must
    // not pass for the interpreter.
    let man_page = prefix.join(format!("share/man/man1/python{minor}.1"));
    assert!(man_page.is_file(), "{}", man_page.display());
    let yaml = format!(
        "name: pyenv\nlanguage: python\nversion: \"{minor}\"\nmounts:\n\
         - {{source: {p}, target: {p}, readonly: true}}\n\
         environment:\n  PATH: {bin}:/usr/bin:/bin\n  LD_LIBRARY_PATH: {lib}\n",
        p = prefix.display(),
        bin = prefix.join("bin").display(),
        lib = prefix.join("lib").display()
    );
    t.runtime("pyenv", &yaml);
    seal_and_verify(&t, "pyenv", &[]);
    let program = "import ssl, sqlite3, sys; sqlite3.connect(':memory:'); ssl.create_default_context(); print(sys.prefix)";
    let out = t.run(&[
        "run",
        "--runtime",
        "pyenv",
        "--",
        &format!("python{minor}"),
        "-c",
        program,
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), prefix.to_str().unwrap());
}

#[test]
fn node_with_a_global_npm_package_runs_tsc_crypto_intl_https_and_npm() {
    let t = sealtest!();
    t.setup("node-20");
    let sealed = seal_and_verify(&t, "node-20", &[]);
    assert_eq!(sealed["profile"], "node+base");
    let sbom = crate::sbom::sbom(&t, "node-20");
    let tsc = "/node_modules/typescript/lib/tsc.js";
    crate::sbom::assert_package(&sbom, "pkg:npm/typescript@5.6.3", tsc);
    let work = t.workdir("ts");
    std::fs::write(
        work.join("hello.ts"),
        "const greet = (who: string): string => `hello ${who}`;\nconsole.log(greet(\"sealed\"));\n",
    )
    .unwrap();
    let workdir = work.to_str().unwrap();
    let out = t.run(&[
        "run",
        "--runtime",
        "node-20",
        "--workdir",
        workdir,
        "--",
        "tsc",
        "hello.ts",
    ]);
    assert_eq!(
        code(&out),
        0,
        "tsc: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = t.run(&[
        "run",
        "--runtime",
        "node-20",
        "--workdir",
        workdir,
        "--",
        "node",
        "hello.js",
    ]);
    assert_eq!(text(&out.stdout), "hello sealed\n");
    let script = "const h = require('crypto').createHash('sha256').update('abc').digest('hex');\
                  const d = new Intl.NumberFormat('de-DE').format(1234567.5);\
                  const a = require('https').globalAgent.protocol;\
                  console.log(h.slice(0, 12), d, a)";
    let out = t.run(&["run", "--runtime", "node-20", "--", "node", "-e", script]);
    assert_eq!(
        text(&out.stdout),
        "ba7816bf8f01 1.234.567,5 https:\n",
        "{}",
        text(&out.stderr)
    );
    let out = t.run(&["run", "--runtime", "node-20", "--", "npm", "--version"]);
    assert_eq!(code(&out), 0, "npm: {}", text(&out.stderr));
    assert!(text(&out.stdout).trim().split('.').count() == 3);
}

#[test]
fn generic_programs_seal_from_elf_headers_links_and_shebangs_alone() {
    let t = sealtest!();
    let yaml = "name: tools\nversion: \"1\"\nmounts:\n\
                - {source: /usr/bin/git, target: /usr/bin/git, readonly: true}\n\
                - {source: /usr/bin/curl, target: /usr/bin/curl, readonly: true}\n\
                environment:\n  PATH: /usr/bin\n";
    let dir = t.runtime("tools", yaml);
    let sealed = seal_and_verify(&t, "tools", &[]);
    assert_eq!(sealed["profile"], "generic+base");
    assert!(!dir
        .join("isolated/etc/ssl/certs/ca-certificates.crt")
        .exists());
    for (program, expect) in [("git", "git version"), ("curl", "curl ")] {
        let out = t.run(&["run", "--runtime", "tools", "--", program, "--version"]);
        assert_eq!(code(&out), 0, "{program}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).starts_with(expect),
            "{}",
            text(&out.stdout)
        );
    }
    let sealed = seal_and_verify(
        &t,
        "tools",
        &[
            "--profile",
            "generic",
            "--profile",
            "certs",
            "--profile",
            "nss",
        ],
    );
    assert_eq!(sealed["profile"], "generic+certs+nss+base");
    assert!(dir
        .join("isolated/etc/ssl/certs/ca-certificates.crt")
        .is_file());
    assert!(dir.join("isolated/etc/nsswitch.conf").is_file());
    let out = t.run(&[
        "run",
        "--runtime",
        "tools",
        "--",
        "curl",
        "--silent",
        "--cacert",
        "/etc/ssl/certs/ca-certificates.crt",
        "file:///etc/nsswitch.conf",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hosts:"));
}

#[test]
fn a_profile_file_added_at_test_time_changes_what_is_sealed() {
    let t = sealtest!();
    let app = crate::util::fixture_source(t.path());
    let yaml = crate::util::host_yaml(&[&app]).replace("language: none", "language: cobol");
    let dir = t.runtime("cobol", &yaml);
    let licence = "isolated/usr/share/common-licenses/Apache-2.0";
    assert_eq!(code(&t.run(&["seal", "cobol"])), 0);
    assert!(!dir.join(licence).exists());

    let profiles = t.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("cobol.yml"),
        "name: cobol\nlanguages: [cobol]\ninclude:\n  - path: /usr/share/common-licenses/Apache-2.0\n    why: the licence the cobol runtime ships\n",
    )
    .unwrap();
    let out = t.run(&[
        "--profile-dir",
        profiles.to_str().unwrap(),
        "--json",
        "seal",
        "cobol",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(json(&out)["profile"], "cobol+base");
    assert!(dir.join(licence).is_file());
    let out = t.run(&["info", "cobol"]);
    assert!(
        text(&out.stdout).contains("profile cobol: the licence the cobol runtime ships"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_setup_script_records_its_own_package_not_the_last_one_it_ensured() {
    let t = sealtest!();
    // openjdk-17 ensures busybox-static after its JDK; lib.sh once leaked that name into
    // the script's $package.
    let yml = std::fs::read_to_string(t.openjdk().join("runtime.yml")).unwrap();
    assert!(
        yml.contains("from Debian's openjdk-17-jdk-headless\n")
            && yml.contains("packages:\n  - openjdk-17-jdk-headless\n")
            && !yml.contains("busybox-static"),
        "{yml}"
    );
}
