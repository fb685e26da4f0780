//! Sealed runtimes as OCI images, against real components the test starts: Debian's
//! docker-registry on a random loopback port, and skopeo as an independent client.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::util::{allow_skip, code, host_yaml, json, text, TestRoot};

/// A docker-registry on 127.0.0.1 with no auth and its storage in a temp dir, stopped when
/// dropped.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(test: &str) -> Option<Registry> {
        Registry::start_with(test, false)
    }

    /// With `tls`, the registry serves HTTPS with a self-signed certificate for 127.0.0.1.
    fn start_with(test: &str, tls: bool) -> Option<Registry> {
        let binary = Path::new("/usr/bin/docker-registry");
        if !binary.exists() || !Path::new("/usr/bin/skopeo").exists() {
            allow_skip(
                test,
                "needs docker-registry and skopeo (apt-get install docker-registry skopeo)",
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // A port free now; the registry binds it a moment later (nothing else here races for
        // loopback ports of this range).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if tls {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let out = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                ])
                .args([
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .expect("openssl is installed");
            ok(&out, "openssl req");
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(registry);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("docker-registry did not listen on 127.0.0.1:{port}");
    }

    fn reference(&self, repo: &str) -> String {
        format!("127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `runseal ARGS` as `t` runs it, started by python3.11 (which `.ci/run` and
/// `scripts/setup` install), which waits for it and prints its
/// peak resident memory (`ru_maxrss`, KiB) on stderr's last line: the output, and that peak
/// in bytes.
fn with_peak_memory(t: &TestRoot, args: &[&str]) -> (std::process::Output, u64) {
    let runseal = t.runseal_std();
    let mut python = Command::new("python3.11");
    python
        .arg("-c")
        .arg(
            "import resource, subprocess, sys\n\
             ended = subprocess.run(sys.argv[1:])\n\
             print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n\
             sys.exit(ended.returncode)",
        )
        .arg(runseal.get_program())
        .args(runseal.get_args())
        .args(args);
    for (key, value) in runseal.get_envs() {
        match value {
            Some(value) => python.env(key, value),
            None => python.env_remove(key),
        };
    }
    let out = python.output().unwrap();
    let peak = text(&out.stderr)
        .lines()
        .last()
        .and_then(|line| line.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no peak memory: {}", text(&out.stderr)));
    (out, peak * 1024)
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn openjdk_goes_through_a_registry_and_back_verified_and_reproducibly() {
    let t = sealtest!();
    let Some(registry) = Registry::start("oci::openjdk_goes_through_a_registry") else {
        return;
    };
    let runtime = t.sealed_openjdk();
    let runtime = runtime.to_str().unwrap();

    // The same sealed runtime, exported twice, gives the same image, byte for byte.
    let layouts = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for name in ["a", "b"] {
        let dest = format!("oci:{}:17", layouts.path().join(name).display());
        let out = t.run(&["--json", "export", runtime, &dest]);
        ok(&out, "export to an oci: dir");
        let report = json(&out);
        assert_eq!(report["image"]["layers"][0]["role"], "shared-library");
        digests.push(report["image"]["manifest"].as_str().unwrap().to_string());
    }
    assert_eq!(digests[0], digests[1], "two exports differ");

    let image = registry.reference("runtimes/openjdk:17");
    let (out, pushing) = with_peak_memory(
        &t,
        &[
            "--json",
            "export",
            runtime,
            &format!("docker://{image}"),
            "--tls-verify=false",
        ],
    );
    ok(&out, "export to the registry");
    let report = json(&out);
    assert_eq!(report["image"]["manifest"], digests[0].as_str());
    // Blobs travel in chunks: neither side holds a layer whole (the JDK's largest is about
    // 140 MB; reading it whole took a push and a pull 165 MB).
    let largest = report["image"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["size"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        pushing < largest / 2,
        "a push of a {largest}-byte layer peaked at {pushing} bytes"
    );

    // skopeo, an independent client, reads what was pushed.
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    ok(&out, "skopeo inspect");
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["Digest"], digests[0].as_str());
    assert_eq!(
        inspected["Labels"]["org.opencontainers.image.title"],
        "openjdk-17"
    );
    assert!(inspected["Labels"]["io.runseal.runtime.yml"]
        .as_str()
        .unwrap()
        .contains("isolated/usr"));
    assert!(inspected["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().starts_with("JAVA_HOME=")));

    // Installed by digest under a second root, it verifies and runs.
    let second = TestRoot::new();
    let by_digest = format!("{}@{}", registry.reference("runtimes/openjdk"), digests[0]);
    let (out, pulling) = with_peak_memory(&second, &["install", &by_digest, "--tls-verify=false"]);
    ok(&out, "install from the registry");
    assert!(
        pulling < largest / 2,
        "a pull of a {largest}-byte layer peaked at {pulling} bytes"
    );
    let out = second.run(&["verify", "openjdk-17"]);
    ok(&out, "verify of the installed runtime");
    let out = second.run(&["run", "--runtime", "openjdk-17", "--", "java", "-version"]);
    ok(&out, "java -version in the installed runtime");
    assert!(
        text(&out.stderr).contains("openjdk version \"17"),
        "{}",
        text(&out.stderr)
    );

    // An image skopeo copied into an archive imports too, to the same tree.
    let archive = layouts.path().join("copied.tar");
    let out = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{image}"))
        .arg(format!("oci-archive:{}:17", archive.display()))
        .output()
        .unwrap();
    ok(&out, "skopeo copy");
    let archive = format!("oci-archive:{}:17", archive.display());
    let out = second.run(&["--json", "import", &archive, "--name", "copied"]);
    ok(&out, "import of skopeo's archive");
    assert_eq!(json(&out)["image"], digests[0].as_str());
    let manifest = |root: &Path, name: &str| {
        let text = std::fs::read_to_string(root.join(name).join("isolated/.runseal-manifest.json"))
            .unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        for entry in value["entries"].as_object_mut().unwrap().values_mut() {
            entry.as_object_mut().unwrap().remove("copy");
        }
        value["entries"].clone()
    };
    assert_eq!(
        manifest(second.path(), "openjdk-17"),
        manifest(second.path(), "copied")
    );

    // A name that exists is never overwritten.
    let out = second.run(&["import", &archive]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("exists"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn podman_runs_an_exported_openjdk_image_under_runc() {
    let t = sealtest!();
    if !Path::new("/usr/bin/podman").exists() || !Path::new("/usr/sbin/runc").exists() {
        allow_skip(
            "oci::podman_runs_an_exported_openjdk_image_under_runc",
            "needs podman and runc (apt-get install podman runc)",
        );
        return;
    }
    let runtime = t.sealed_openjdk();
    let scratch = tempfile::tempdir().unwrap();
    let archive = format!(
        "oci-archive:{}:17",
        scratch.path().join("jdk.tar").display()
    );
    let out = t.run(&["export", runtime.to_str().unwrap(), &archive]);
    ok(&out, "export to an oci-archive");
    let out = Command::new("podman")
        .args(["pull", "--quiet", &archive])
        .output()
        .unwrap();
    ok(&out, "podman pull");
    let image = text(&out.stdout).trim().to_string();
    // crun refuses this host's hybrid cgroups; runc runs. Podman asks for rlimits above the
    // host's own by default, which needs CAP_SYS_RESOURCE (not granted here); lower ones do
    // not.
    let out = Command::new("podman")
        .args(["--runtime", "runc", "run", "--rm"])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .args([&image, "java", "-version"])
        .output()
        .unwrap();
    let removed = Command::new("podman").args(["rmi", &image]).output();
    ok(&out, "podman run");
    assert!(
        text(&out.stderr).contains("openjdk version \"17"),
        "{}",
        text(&out.stderr)
    );
    ok(&removed.unwrap(), "podman rmi");
}

/// Shared libraries are layers of their own: pushed to the same repository, a second and
/// third runtime find them there; pushed to a repository of their own, the registry mounts
/// them from the first (`--mount-from`), and the image it holds is whole.
#[test]
fn runtimes_sealed_on_one_host_push_their_shared_libraries_once() {
    let t = sealtest!();
    let Some(registry) = Registry::start("oci::runtimes_sealed_on_one_host_push") else {
        return;
    };
    t.sealed_openjdk();
    for runtime in ["python-3.11", "node-20"] {
        t.setup(runtime);
        ok(&t.run(&["seal", runtime]), "seal");
    }
    let mut pushes = Vec::new();
    for (runtime, repository, mount_from) in [
        ("openjdk-17", "runtimes:openjdk-17", None),
        ("python-3.11", "runtimes:python-3.11", None),
        ("node-20", "node:20", Some("runtimes")),
    ] {
        let dest = format!("docker://{}", registry.reference(repository));
        let mut args = vec!["--json", "export", runtime, &dest, "--tls-verify=false"];
        args.extend(mount_from.iter().flat_map(|repo| ["--mount-from", repo]));
        let out = t.run(&args);
        ok(&out, "export to the registry");
        let push = json(&out)["push"].clone();
        eprintln!(
            "{runtime} to {repository}: pushed {} blobs, {} bytes; the registry had {} blobs, {} bytes; mounted {} blobs, {} bytes",
            push["pushed_blobs"],
            push["pushed_bytes"],
            push["existing_blobs"],
            push["existing_bytes"],
            push["mounted_blobs"],
            push["mounted_bytes"]
        );
        pushes.push(push);
    }
    assert_eq!(pushes[0]["existing_blobs"], 0);
    // libc, libm, ld-linux, libstdc++, libgcc_s and libz are in all three: the second and
    // third pushes send none of them.
    for (push, reused) in [(&pushes[1], "existing"), (&pushes[2], "mounted")] {
        assert!(
            push[format!("{reused}_blobs")].as_u64().unwrap() >= 6,
            "{push}"
        );
        assert!(
            push[format!("{reused}_bytes")].as_u64().unwrap() > 2_000_000,
            "{push}"
        );
    }
    assert_eq!(
        pushes[2]["existing_blobs"], 0,
        "node:20 is a new repository"
    );

    // The repository that got mounted blobs holds the whole image: skopeo copies it out.
    let copied = tempfile::tempdir().unwrap();
    let out = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}", registry.reference("node:20")))
        .arg(format!("oci:{}:20", copied.path().display()))
        .output()
        .unwrap();
    ok(&out, "skopeo copy of the image with mounted layers");

    let out = t.run(&[
        "export",
        "node-20",
        "oci:/var/tmp/x",
        "--mount-from",
        "runtimes",
    ]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--mount-from is for a push"),
        "{}",
        text(&out.stderr)
    );
}

/// `--tls-verify=false` as skopeo reads it: HTTPS whatever the certificate, plain HTTP only
/// from a registry without TLS; without it, a certificate the system does not trust stops
/// the push and the pull.
#[test]
fn tls_verify_false_accepts_a_self_signed_registry_and_the_default_refuses_it() {
    let t = sealtest!();
    let Some(registry) = Registry::start_with("oci::tls_verify_false", true) else {
        return;
    };
    t.runtime("plain", &host_yaml(&[Path::new("/usr/bin/busybox")]));
    ok(&t.run(&["seal", "plain"]), "seal");
    let dest = format!("docker://{}", registry.reference("plain:1"));
    let out = t.run(&["export", "plain", &dest]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).to_lowercase().contains("certificate"),
        "{}",
        text(&out.stderr)
    );
    ok(
        &t.run(&["export", "plain", &dest, "--tls-verify=false"]),
        "export over HTTPS",
    );
    // skopeo reads it over HTTPS too, so it was not sent in plain HTTP.
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(&dest)
        .output()
        .unwrap();
    ok(&out, "skopeo inspect");
    let second = TestRoot::new();
    let out = second.run(&["install", &registry.reference("plain:1")]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    let out = second.run(&[
        "install",
        &registry.reference("plain:1"),
        "--tls-verify=false",
    ]);
    ok(&out, "install over HTTPS");
    ok(&second.run(&["verify", "fixture"]), "verify");
}

/// An image exported from a root and imported under it again keeps each file's exact mtime
/// (a PAX record), so its files are the sealed runtime's store entries: the import adds
/// only what is each runtime's own (runtime.yml, the manifest, the SBOM).
#[test]
fn an_image_imported_beside_its_sealed_runtime_shares_its_files() {
    use std::os::unix::fs::MetadataExt;
    let t = sealtest!();
    let runtime = t.sealed_openjdk();
    let layout = tempfile::tempdir().unwrap();
    let image = format!("oci:{}:17", layout.path().join("jdk").display());
    ok(
        &t.run(&["export", runtime.to_str().unwrap(), &image]),
        "export",
    );
    let du = |what: &str| {
        let out = t.run(&["--json", "du"]);
        ok(&out, "du");
        let usage = json(&out);
        eprintln!(
            "{what}: logical {} B, physical {} B, store {} entries",
            usage["logical"], usage["physical"], usage["store"]["entries"]
        );
        usage
    };
    let before = du("sealed");
    ok(
        &t.run(&["import", &image, "--name", "imported"]),
        "import under the same root",
    );
    let after = du("sealed and imported");
    let u = |v: &serde_json::Value| v.as_u64().unwrap();
    let imported = after["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dir"].as_str().unwrap().ends_with("/imported"))
        .unwrap();
    eprintln!("imported: {imported}");
    let added = u(&after["physical"]) - u(&before["physical"]);
    // The manifest, runtime.yml and the SBOM, a few MB at most of a runtime of hundreds.
    assert!(
        added < u(&imported["logical"]) / 50 && added == u(&imported["exclusive"]),
        "the import added {added} B: {imported}"
    );
    // One entry more: the import's SBOM, which a seal keeps as the runtime's own.
    assert_eq!(
        u(&after["store"]["entries"]),
        u(&before["store"]["entries"]) + 1
    );
    // Every file is the sealed one's inode, but for what each runtime keeps as its own.
    // Most of a Debian package's files have whole-second mtimes (dpkg unpacks tars); the
    // ones written on the host since (ca-certificates-java's cacerts, say) were copies
    // before the PAX records.
    let imported_tree = t.path().join("imported/isolated");
    let mut compared = 0;
    for entry in walkdir::WalkDir::new(&imported_tree) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(&imported_tree).unwrap();
        let own = [".runseal-manifest.json", ".runseal-sbom.spdx.json"];
        if !entry.file_type().is_file() || own.iter().any(|o| rel == Path::new(o)) {
            continue;
        }
        let sealed = std::fs::metadata(runtime.join("isolated").join(rel)).unwrap();
        assert_eq!(
            entry.metadata().unwrap().ino(),
            sealed.ino(),
            "{} is not shared",
            rel.display()
        );
        compared += 1;
    }
    assert!(compared > 300, "{compared} files compared");
    for name in ["openjdk-17", "imported"] {
        ok(&t.run(&["verify", name]), &format!("verify {name}"));
    }
    // Sharing moved nothing the sealed runtime's manifest records.
    let out = t.run(&["--json", "seal", "openjdk-17"]);
    ok(&out, "seal again");
    assert_eq!(json(&out)["outcome"], "unchanged");
}
