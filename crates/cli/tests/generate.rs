//! `runseal generate`: completion scripts and man pages cover every command `--help` lists,
//! and the man pages render.

use std::process::Command;

use crate::util::{text, TestRoot};

/// The commands `runseal --help` lists (its `Commands:` section), less `help`.
fn commands(t: &TestRoot) -> Vec<String> {
    let out = t.run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    let listed = help
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty());
    let names: Vec<String> = listed
        .filter_map(|line| line.strip_prefix("  "))
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect();
    assert!(names.len() >= 9, "too few commands in --help: {names:?}");
    names
}

fn completions(t: &TestRoot, shell: &str) -> String {
    let out = t.run(&["generate", "completions", shell]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn bash_completes_every_command() {
    let t = TestRoot::new();
    let script = t.path().join("runseal.bash");
    std::fs::write(&script, completions(&t, "bash")).unwrap();
    // As bash calls the function: COMP_WORDS so far, and the word being completed as $2.
    let mut probe = format!("source {}\n", script.display());
    for name in commands(&t) {
        let prefix = &name[..2];
        probe.push_str(&format!(
            "COMP_WORDS=(runseal {prefix}); COMP_CWORD=1; _runseal runseal {prefix} runseal\n\
             printf '{name}:%s\\n' \"${{COMPREPLY[*]}}\"\n"
        ));
    }
    let out = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for line in text(&out.stdout).lines() {
        let (name, offered) = line.split_once(':').unwrap();
        assert!(
            offered.split_whitespace().any(|word| word == name),
            "bash completes `runseal {}` with {offered:?}, not {name}",
            &name[..2]
        );
    }
}

/// Nested commands, their options and `help`'s paths to them complete too: a subcommand's
/// arguments and own subcommands are built only when it runs (clap's `defer`), after the
/// `help` subcommand is made.
#[test]
fn bash_completes_nested_commands_their_options_and_help_paths() {
    let t = TestRoot::new();
    let script = t.path().join("runseal.bash");
    std::fs::write(&script, completions(&t, "bash")).unwrap();
    let offered = |words: &[&str]| -> String {
        let current = words.len() - 1;
        let probe = format!(
            "source {}\nCOMP_WORDS=(runseal {}); COMP_CWORD={}; _runseal runseal {} {}\n\
             printf '%s\\n' \"${{COMPREPLY[*]}}\"\n",
            script.display(),
            words.join(" "),
            current + 1,
            words[current],
            if current == 0 {
                "runseal"
            } else {
                words[current - 1]
            },
        );
        let out = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    assert_eq!(offered(&["jobs", "l"]), "list logs");
    assert_eq!(offered(&["help", "jobs", "l"]), "list logs");
    assert_eq!(offered(&["help", "generate", "m"]), "man");
    assert!(offered(&["jobs", "logs", "--f"]).contains("--follow"));
    assert!(offered(&["run", "--net"]).contains("--network"));
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    let t = TestRoot::new();
    let names = commands(&t);
    for shell in ["zsh", "fish"] {
        let script = completions(&t, shell);
        let words: Vec<&str> = script
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .collect();
        for name in &names {
            assert!(
                words.contains(&name.as_str()),
                "{shell} script lacks {name}"
            );
        }
    }
}

#[test]
fn man_pages_cover_every_command_and_render() {
    let t = TestRoot::new();
    let dir = t.path().join("man1");
    let out = t.run(&["generate", "man", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let main = std::fs::read_to_string(dir.join("runseal.1")).unwrap();
    assert!(main.contains(".TH runseal 1"), "{main}");
    let mut pages = vec![dir.join("runseal.1")];
    for name in commands(&t) {
        assert!(
            main.contains(&format!("runseal\\-{name}(1)")),
            "runseal.1 lacks {name}"
        );
        let page = dir.join(format!("runseal-{name}.1"));
        let roff = std::fs::read_to_string(&page).unwrap();
        assert!(roff.contains(&format!(".TH runseal-{name} 1")), "{roff}");
        pages.push(page);
    }
    for page in pages {
        // -ww: every warning, so that roff groff has to guess at fails here; -P-cbou: plain
        // text, no overstruck bold or underline.
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
            .arg(&page)
            .output()
            .expect("groff (Debian's groff-base, which scripts/setup installs)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}: {}",
            page.display(),
            text(&out.stderr)
        );
        let rendered = text(&out.stdout);
        assert!(
            rendered.contains("NAME") && rendered.contains("SYNOPSIS"),
            "{}: {rendered}",
            page.display()
        );
    }
}
