//! Who and where a job is, as programs nobody profiled look it up: a home, a user name, a
//! resolver. A sealed runtime holds none of it (or the build host's), so npm fails on
//! `uv_os_homedir`, `whoami` finds no user and `--network host` resolves no name. The
//! sandbox gives each job its own: `HOME`, `USER` and `LOGNAME` unless the runtime or the
//! request sets them, and `/etc/passwd`, `/etc/group`, `/etc/hosts` (and the host's
//! `/etc/resolv.conf` on the host's network) laid over whatever the runtime's `/etc` holds,
//! so that a runtime copied from a host shows the job none of the host's users.

use std::io::Read;
use std::path::Path;

use crate::job::{Network, User};

/// The job's host name (set in its UTS namespace) and the name `/etc/hosts` gives it.
pub const HOSTNAME: &str = "runseal";

/// The files of the sandbox's own in the job's `/etc`, by name.
pub type EtcFiles = Vec<(&'static str, Vec<u8>)>;

/// A resolver config larger than this is not the host's usual one; it is not passed on.
const MAX_RESOLV_CONF: u64 = 64 * 1024;

/// The names a job's uid and gid go by: the ones Debian gives them, else `job`.
fn user_name(uid: u32) -> &'static str {
    match uid {
        0 => "root",
        65534 => "nobody",
        _ => "job",
    }
}

fn group_name(gid: u32) -> &'static str {
    match gid {
        0 => "root",
        65534 => "nogroup",
        _ => "job",
    }
}

/// Where the job's home is: its work dir, else its private `/tmp`.
fn home(has_workdir: bool) -> &'static str {
    if has_workdir {
        "/work"
    } else {
        "/tmp"
    }
}

/// `HOME`, `USER` and `LOGNAME` for a job run as `user`.
pub fn environment(user: User, has_workdir: bool) -> [(&'static str, String); 3] {
    let name = user_name(user.uid).to_string();
    [
        ("HOME", home(has_workdir).to_string()),
        ("USER", name.clone()),
        ("LOGNAME", name),
    ]
}

/// The job's `/etc` files. `resolv_conf` is the host's, read only when the job has the
/// host's network.
pub fn etc_files(user: User, has_workdir: bool, resolv_conf: Option<Vec<u8>>) -> EtcFiles {
    let home = home(has_workdir);
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    if user.uid != 0 {
        let name = user_name(user.uid);
        passwd += &format!("{name}:x:{}:{}:{name}:{home}:/bin/sh\n", user.uid, user.gid);
    }
    let mut group = String::from("root:x:0:\n");
    if user.gid != 0 {
        group += &format!("{}:x:{}:\n", group_name(user.gid), user.gid);
    }
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{HOSTNAME}\n"
    );
    let mut files = vec![
        ("passwd", passwd.into_bytes()),
        ("group", group.into_bytes()),
        ("hosts", hosts.into_bytes()),
    ];
    if let Some(resolv_conf) = resolv_conf {
        files.push(("resolv.conf", resolv_conf));
    }
    files
}

/// The host's resolver config when the job has the host's network (the operator's file:
/// read as it is, bounded); none otherwise or if the host has none.
pub fn host_resolv_conf(network: Network) -> Option<Vec<u8>> {
    if network != Network::Host {
        return None;
    }
    let file = std::fs::File::open(Path::new("/etc/resolv.conf")).ok()?;
    let mut content = Vec::new();
    file.take(MAX_RESOLV_CONF).read_to_end(&mut content).ok()?;
    Some(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file<'a>(files: &'a EtcFiles, name: &str) -> &'a str {
        let (_, content) = files.iter().find(|(n, _)| *n == name).unwrap();
        std::str::from_utf8(content).unwrap()
    }

    #[test]
    fn the_job_user_has_a_name_a_group_and_a_home() {
        let user = User {
            uid: 1000,
            gid: 1001,
        };
        let files = etc_files(user, true, None);
        assert_eq!(
            file(&files, "passwd"),
            "root:x:0:0:root:/root:/bin/sh\njob:x:1000:1001:job:/work:/bin/sh\n"
        );
        assert_eq!(file(&files, "group"), "root:x:0:\njob:x:1001:\n");
        assert!(file(&files, "hosts").contains("127.0.0.1\tlocalhost\n"));
        assert!(!files.iter().any(|(n, _)| *n == "resolv.conf"));
        let nobody = User {
            uid: 65534,
            gid: 65534,
        };
        let files = etc_files(nobody, false, Some(b"nameserver 10.0.0.1\n".to_vec()));
        assert!(file(&files, "passwd").ends_with("nobody:x:65534:65534:nobody:/tmp:/bin/sh\n"));
        assert!(file(&files, "group").ends_with("nogroup:x:65534:\n"));
        assert_eq!(file(&files, "resolv.conf"), "nameserver 10.0.0.1\n");
        let root = etc_files(User { uid: 0, gid: 0 }, false, None);
        assert_eq!(file(&root, "passwd").lines().count(), 1);
        assert_eq!(file(&root, "group").lines().count(), 1);
    }

    #[test]
    fn the_environment_names_the_same_user_and_home() {
        let env = environment(
            User {
                uid: 65534,
                gid: 65534,
            },
            true,
        );
        assert_eq!(
            env,
            [
                ("HOME", "/work".to_string()),
                ("USER", "nobody".to_string()),
                ("LOGNAME", "nobody".to_string())
            ]
        );
        assert!(host_resolv_conf(Network::None).is_none());
    }
}
