//! The documents' links stay inside the repository: each names a file or dir that exists in
//! it, so the README never points readers at something they cannot open.

use crate::util::workspace;

/// The targets of `[text](target)` links in `markdown`.
fn link_targets(markdown: &str) -> Vec<&str> {
    markdown
        .match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &markdown[at + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .collect()
}

#[test]
fn every_link_in_the_docs_names_a_path_in_the_repository() {
    let root = workspace().canonicalize().unwrap();
    let documents = ["README.md", "SECURITY.md", "docs/design.md"];
    for document in documents {
        let path = root.join(document);
        let markdown = std::fs::read_to_string(&path).unwrap();
        for target in link_targets(&markdown) {
            let file = target.split('#').next().unwrap();
            assert!(
                !file.contains("://") && !file.starts_with('/'),
                "{document} links outside the repository: {target}"
            );
            let linked = path.parent().unwrap().join(file).canonicalize();
            assert!(
                linked.as_ref().is_ok_and(|p| p.starts_with(&root)),
                "{document} links to {target}, which is not in the repository"
            );
        }
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(link_targets(&readme).contains(&"docs/design.md"));
}
