//! `runseal build`: a setup script runs against an overlay, installs a real Debian package,
//! tries to reach past the overlay, and leaves the host exactly as it was.

use std::path::Path;

use crate::util::{code, text};

fn digest(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| blake3::hash(&bytes).to_hex().to_string())
        .unwrap_or_else(|_| "absent".into())
}

#[test]
fn a_setup_script_installs_into_the_overlay_and_the_host_stays_untouched() {
    let t = sealtest!();
    assert!(
        !Path::new("/usr/bin/hello").exists(),
        "this test needs a host without Debian's `hello`"
    );
    let script = t.path().join("setup.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
set -u
root=$1
dir=$root/hello
mkdir -p "$dir"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello >&2 || exit 3
echo host-change > /etc/runseal-build-marker
{
  mknod /tmp/null-copy c 1 3 2>/dev/null; echo "mknod=$?"
  mount -t tmpfs none /mnt 2>/dev/null; echo "mount=$?"
  ls /dev/vda /dev/sda 2>/dev/null | wc -l | sed 's/^/disks=/'
}
cat > "$dir/runtime.yml" <<YAML
name: hello
version: "2"
mounts:
  - {source: usr/bin/hello, target: /usr/bin/hello, readonly: true}
environment:
  PATH: /usr/bin
YAML
echo "$dir"
"#,
    )
    .unwrap();
    let watched = [
        "/var/lib/dpkg/status",
        "/etc/runseal-build-marker",
        "/usr/bin/hello",
    ];
    let before: Vec<String> = watched.iter().map(|p| digest(Path::new(p))).collect();

    let out = t.run(&["build", script.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "build: {}", text(&out.stderr));

    let after: Vec<String> = watched.iter().map(|p| digest(Path::new(p))).collect();
    assert_eq!(before, after, "the build changed the host ({watched:?})");
    // The script's output comes out on runseal's stderr.
    let probe = text(&out.stderr);
    assert!(probe.contains("mknod=1"), "{probe}");
    assert!(
        probe.contains("mount=") && !probe.contains("mount=0"),
        "{probe}"
    );
    assert!(probe.contains("disks=0"), "{probe}");

    let out = t.run(&["run", "--runtime", "hello", "--", "hello"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hello, world!\n");
}

#[test]
fn a_failing_setup_script_fails_the_build_and_seals_nothing() {
    let t = sealtest!();
    let script = t.path().join("setup.sh");
    std::fs::write(&script, "#!/bin/sh\nmkdir -p \"$1/broken\"\necho 'name: broken' > \"$1/broken/runtime.yml\"\nexit 4\n").unwrap();
    let out = t.run(&["build", script.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("exited with 4"),
        "{}",
        text(&out.stderr)
    );
    assert!(!t.path().join("broken/isolated").exists());
}
