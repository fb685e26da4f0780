//! Joblet's runtime forms as its published setup scripts leave them, made here from this
//! machine's own JDK and Python: the registry form (`openjdk-21`, `python-3.11` of
//! `ehsaniara/joblet-runtimes`: the system copied into `isolated/`, `/tmp` and `/proc`
//! mounted, writable package-manager dirs) is adopted, the in-place form (`java-17` of
//! `ehsaniara/joblet`, nested under `java/`) is sealed; each is verified and run, and
//! Joblet's specs find them.

use std::path::Path;
use std::process::Command;

use crate::util::{code, json, text, TestRoot};

const JDK: &str = "/usr/lib/jvm/java-17-openjdk-amd64";

fn sh(script: &str, dir: &Path) {
    let out = Command::new("bash")
        .args(["-euc", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {}", text(&out.stderr));
}

fn seal_verify(t: &TestRoot, spec: &str) -> serde_json::Value {
    let out = t.run(&["--json", "seal", spec]);
    assert_eq!(code(&out), 0, "seal {spec}: {}", text(&out.stderr));
    let report = json(&out);
    let out = t.run(&["validate", spec]);
    assert_eq!(code(&out), 0, "validate {spec}: {}", text(&out.stdout));
    let out = t.run(&["--json", "verify", spec]);
    assert_eq!(
        code(&out),
        0,
        "verify {spec}: {:#}\nseal notes:\n{}",
        json(&out),
        notes(&report)
    );
    report
}

fn notes(report: &serde_json::Value) -> String {
    report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn contains_all(text: &str, wanted: &[&str]) {
    for want in wanted {
        assert!(text.contains(want), "no `{want}` in:\n{text}");
    }
}

/// runtime.yml.original is what Joblet's script wrote, to the byte.
fn original_kept(dir: &Path, yaml: &str) {
    let original = std::fs::read_to_string(dir.join("runtime.yml.original")).unwrap();
    assert_eq!(original, yaml);
}

/// The registry `openjdk-21` shape: a JDK copied with `cp -r` (Debian's `conf` and
/// `cacerts` links into /etc left dangling in the copy), `/usr/bin/java` copied as the
/// ELF it leads to (so its `$ORIGIN/../lib/libjli.so` is nowhere in the copy), a few
/// libraries by pattern, and the published runtime.yml with its version left unexpanded.
fn registry_openjdk(t: &TestRoot) -> (std::path::PathBuf, String) {
    let dir = t.path().join("openjdk-21");
    std::fs::create_dir_all(&dir).unwrap();
    sh(
        &format!(
            "j=isolated{JDK}; mkdir -p $j isolated/usr/bin isolated/lib/x86_64-linux-gnu \
             isolated/lib64 isolated/etc/ssl/certs isolated/var/lib/dpkg isolated/var/cache/apt \
             isolated/var/lib/apt isolated/var/tmp isolated/tmp isolated/proc \
             isolated/usr/lib/x86_64-linux-gnu
             for d in bin lib conf; do cp -r {JDK}/$d $j/; done
             cp /usr/bin/java isolated/usr/bin/java
             cp /usr/bin/dash isolated/usr/bin/sh
             for p in 'libc.so*' 'libz.so*' 'libm.so*' 'libgcc_s.so*'; do
               find /lib/x86_64-linux-gnu -maxdepth 1 -name \"$p\" -exec cp -P {{}} isolated/lib/x86_64-linux-gnu/ \\;
             done
             cp /lib64/ld-linux-x86-64.so.2 isolated/lib64/"
        ),
        &dir,
    );
    let yaml = format!(
        r#"name: openjdk-21
version: "${{RUNTIME_VERSION:-21.0.1}}"
description: "OpenJDK - self-contained"

# All mounts from isolated/ - no host dependencies per design
mounts:
  - source: "isolated/usr/bin"
    target: "/usr/bin"
    readonly: true
  - source: "isolated/sbin"
    target: "/sbin"
    readonly: true
  - source: "isolated/lib"
    target: "/lib"
    readonly: true
  - source: "isolated/lib64"
    target: "/lib64"
    readonly: true
  - source: "isolated/lib/x86_64-linux-gnu"
    target: "/lib/x86_64-linux-gnu"
    readonly: true
  - source: "isolated/usr/lib/x86_64-linux-gnu"
    target: "/usr/lib/x86_64-linux-gnu"
    readonly: true
  - source: "isolated/etc/ssl"
    target: "/etc/ssl"
    readonly: true
  - source: "isolated/usr/lib/jvm"
    target: "/usr/lib/jvm"
    readonly: true
  - source: "isolated/var/lib/dpkg"
    target: "/var/lib/dpkg"
    readonly: false  # dpkg needs write access for package operations
  - source: "isolated/var/cache/apt"
    target: "/var/cache/apt"
    readonly: false
  - source: "isolated/var/lib/apt"
    target: "/var/lib/apt"
    readonly: false
  - source: "isolated/var/tmp"
    target: "/var/tmp"
    readonly: false
  - source: "isolated/tmp"
    target: "/tmp"
    readonly: false  # Java needs write access to temp
  - source: "isolated/proc"
    target: "/proc"
    readonly: true   # Java runtime needs CPU detection

environment:
  JAVA_HOME: "{JDK}"
  PATH: "{JDK}/bin:/usr/bin:/bin"
  JAVA_VERSION: "17"
  LD_LIBRARY_PATH: "{JDK}/lib:{JDK}/lib/server:/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu"
"#
    );
    std::fs::write(dir.join("runtime.yml"), &yaml).unwrap();
    (dir, yaml)
}

#[test]
fn a_joblet_registry_jdk_is_adopted_completed_from_the_host_verified_and_run() {
    let t = sealtest!();
    let (dir, yaml) = registry_openjdk(&t);
    let report = seal_verify(&t, "openjdk-21@latest");
    let notes = notes(&report);
    contains_all(
        &notes,
        &[
            "dropped: the sandbox makes /tmp",
            "dropped: the sandbox makes /proc",
            "dropped: the setup script made no",
            "completed from the host",
            "copy-on-write",
        ],
    );
    original_kept(&dir, &yaml);
    let sealed = std::fs::read_to_string(dir.join("runtime.yml")).unwrap();
    assert!(
        sealed
            .contains("source: isolated/var/lib/dpkg\n  target: /var/lib/dpkg\n  readonly: false"),
        "{sealed}"
    );
    assert!(sealed.contains("${RUNTIME_VERSION:-21.0.1}"), "{sealed}");
    // The gaps the copy left are filled: the loader's libjli.so, the trust store.
    let isolated = dir.join("isolated");
    assert!(isolated.join("etc/ssl/certs/java/cacerts").exists());
    assert!(isolated
        .join("etc/java-17-openjdk/security/java.security")
        .exists());

    let out = t.run(&["run", "--runtime", "java:21", "--", "java", "-version"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("openjdk version \"17"),
        "{}",
        text(&out.stderr)
    );
    let out = t.run(&[
        "run",
        "--runtime",
        "openjdk-21",
        "--",
        "/usr/bin/java",
        "-version",
    ]);
    assert_eq!(code(&out), 0, "/usr/bin/java: {}", text(&out.stderr));
    // A writable mount is the job's own copy: what a job writes there is gone after it,
    // and the sealed tree never changes.
    let write =
        "echo state > /var/lib/dpkg/cow-probe && read x < /var/lib/dpkg/cow-probe && echo $x";
    let out = t.run(&[
        "run",
        "--runtime",
        "openjdk-21",
        "--user",
        "0",
        "--",
        "/usr/bin/sh",
        "-c",
        write,
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "state\n");
    assert!(!isolated.join("var/lib/dpkg/cow-probe").exists());
    let gone = "test ! -e /var/lib/dpkg/cow-probe";
    let out = t.run(&[
        "run",
        "--runtime",
        "openjdk-21",
        "--user",
        "0",
        "--",
        "/usr/bin/sh",
        "-c",
        gone,
    ]);
    assert_eq!(code(&out), 0, "a later job sees an earlier one's writes");
    let out = t.run(&["verify", "openjdk-21"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    // Sealing again changes nothing.
    let out = t.run(&["--json", "seal", "openjdk-21"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
}

#[test]
fn a_joblet_registry_python_is_adopted_and_found_as_python_3_11() {
    let t = sealtest!();
    let dir = t.path().join("python-3.11");
    std::fs::create_dir_all(&dir).unwrap();
    sh(
        "I=isolated
         for d in bin usr/bin usr/lib usr/local/bin usr/local/lib lib lib64 usr/lib64 \
                  usr/local/lib/python3.11/site-packages etc tmp var/log var/cache; do
           mkdir -p $I/$d; done
         for lib_dir in /lib64 /usr/lib64 /lib /usr/lib; do
           for p in 'libc.so*' 'libm.so*' 'ld-linux*.so*' 'libz.so*'; do
             [ -d $lib_dir ] && find $lib_dir -maxdepth 1 -name \"$p\" -exec cp -P {} $I$lib_dir/ \\; || true
           done
         done
         cp /lib64/ld-linux-x86-64.so.2 $I/lib64/
         cp /usr/bin/python3.11 $I/usr/bin/python3.11
         cp /usr/bin/python3.11 $I/usr/bin/python3
         (cd $I/usr/bin && ln -sf python3.11 python)
         mkdir -p $I/usr/lib/python3.11 && cp -r /usr/lib/python3.11/* $I/usr/lib/python3.11/
         printf 'root:x:0:0:root:/root:/bin/bash\\n' > $I/etc/passwd",
        &dir,
    );
    let yaml = r#"name: python-3.11
version: "1.3.4"
description: "Basic Python runtime with essential packages"
type: "language-runtime"

mounts:
  - source: "isolated/bin"
    target: "/bin"
    readonly: true
  - source: "isolated/usr/bin"
    target: "/usr/bin"
    readonly: true
  - source: "isolated/lib"
    target: "/lib"
    readonly: true
  - source: "isolated/lib64"
    target: "/lib64"
    readonly: true
  - source: "isolated/usr/lib"
    target: "/usr/lib"
    readonly: true
  - source: "isolated/usr/local/lib"
    target: "/usr/local/lib"
    readonly: true
  - source: "isolated/etc"
    target: "/etc"
    readonly: true
  - source: "isolated/tmp"
    target: "/tmp"
    readonly: false
  - source: "isolated/var/log"
    target: "/var/log"
    readonly: false
  - source: "isolated/var/cache"
    target: "/var/cache"
    readonly: false

environment:
  PYTHON_HOME: "/usr/local"
  PATH: "/usr/local/bin:/usr/bin:/bin"
  PYTHONPATH: "/usr/local/lib/python3.11/site-packages:/usr/lib/python3.11/site-packages"
  PYTHONUNBUFFERED: "1"
"#;
    std::fs::write(dir.join("runtime.yml"), yaml).unwrap();
    let report = seal_verify(&t, "python:3.11");
    assert!(
        notes(&report).contains("copy-on-write"),
        "{}",
        notes(&report)
    );
    let sealed = std::fs::read_to_string(dir.join("runtime.yml")).unwrap();
    assert!(sealed.contains("type: language-runtime"), "{sealed}");
    assert!(
        sealed.contains("target: /var/log\n  readonly: false"),
        "{sealed}"
    );
    original_kept(&dir, yaml);
    let out = t.run(&[
        "run",
        "--runtime",
        "python:3.11",
        "--",
        "python3",
        "-c",
        "import json, zlib, sys; print(json.dumps([sys.version_info[:2], zlib.crc32(b'x')]))",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "[[3, 11], 2363233923]");
}

#[test]
fn a_joblet_in_place_jdk_nested_under_java_is_sealed_and_found_as_java_17() {
    let t = sealtest!();
    let dir = t.path().join("java/java-17");
    std::fs::create_dir_all(&dir).unwrap();
    sh(
        &format!(
            "cp -a {JDK} jdk
             mkdir -p bin lib
             for b in java javac jar; do ln -sf /usr/local/jdk-bin/$b bin/$b; done
             ln -sf \"$PWD/jdk/lib\" lib/jdk-lib"
        ),
        &dir,
    );
    let yaml = r#"name: "java-17"
type: "system"
version: "17.0.12"
description: "OpenJDK 17 LTS - completely isolated runtime"

mounts:
  - source: "jdk/lib"
    target: "/usr/local/lib"
    readonly: true
  - source: "jdk/conf"
    target: "/usr/local/conf"
    readonly: true
  - source: "jdk/bin"
    target: "/usr/local/jdk-bin"
    readonly: true
  - source: "bin"
    target: "/usr/local/bin"
    readonly: true
    selective: ["java", "javac", "jar"]

environment:
  JAVA_HOME: "/usr/local"
  PATH_PREPEND: "/usr/local/bin"
  LD_LIBRARY_PATH: "/usr/local/lib:/usr/local/lib/server"

package_manager:
  type: "maven"
  cache_volume: "maven-cache"

requirements:
  min_memory: "512MB"
  architectures: ["x86_64", "amd64"]

features:
  - "LTS (Long Term Support)"
"#;
    std::fs::write(dir.join("runtime.yml"), yaml).unwrap();
    seal_verify(&t, "java:17");
    let sealed = std::fs::read_to_string(dir.join("runtime.yml")).unwrap();
    contains_all(
        &sealed,
        &[
            "type: system",
            "package_manager:",
            "cache_volume: maven-cache",
            "min_memory: 512MB",
            "features:",
        ],
    );
    original_kept(&dir, yaml);
    assert!(dir.join("isolated/usr/local/jdk-bin/java").is_file());
    let out = t.run(&[
        "run",
        "--runtime",
        "java:17",
        "--",
        "/usr/local/bin/java",
        "-version",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("openjdk version \"17"));

    // A runtime for another machine is a clear error, not a failed exec.
    let other = std::fs::read_to_string(dir.join("runtime.yml"))
        .unwrap()
        .replace("- x86_64\n  - amd64", "- arm64");
    std::fs::write(dir.join("runtime.yml"), other).unwrap();
    let out = t.run(&["run", "--runtime", "java-17", "--", "/usr/local/bin/java"]);
    assert_ne!(code(&out), 0);
    let err = text(&out.stderr);
    assert!(
        err.contains("requirements.architectures") && err.contains("[arm64]"),
        "{err}"
    );
}
