//! The systemd unit in `examples/` (for installs from source) is the
//! packaged one with `/usr/local/bin` for `/usr/bin`: the two must not drift.

fn directives(path: &str) -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.replace("/usr/local/bin/", "/usr/bin/"))
        .collect()
}

#[test]
fn example_unit_is_the_packaged_one_for_usr_local() {
    let packaged = directives("packaging/gearman-driver.service");
    let example = directives("examples/gearman-driver.service");
    assert_eq!(example, packaged);
    assert!(packaged.contains(&"Type=notify".to_string()));
    assert!(packaged.iter().any(|l| l.starts_with("WatchdogSec=")));
}
