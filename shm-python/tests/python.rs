//! Builds the Python package with maturin (into `target/python`, so it never waits on
//! this build's lock) and runs its pytest suite (`tests/test_shm.py`) against the wheel,
//! with the Rust demo at hand for the tests that cross languages.
//!
//! Under `CI=true` nothing may be skipped: a missing `python3`, maturin, pytest or numpy,
//! a missing demo binary, or any pytest skip fails this test (`.ci/run` installs the
//! tools). Elsewhere a missing tool is a skip that says why. Either way the pytest
//! summary line is written to `target/python-summary.txt`, which `.ci/run` prints.

use std::path::{Path, PathBuf};
use std::process::Command;

fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A missing tool: a failure in CI, a skip (said on stderr) elsewhere.
fn missing(what: &str) {
    assert!(!in_ci(), "CI=true and {what}: the Python suite cannot run");
    eprintln!("skipped: {what}");
}

#[test]
fn the_python_package_passes_its_tests() {
    if Command::new("python3").arg("--version").output().is_err() {
        return missing("python3 is not installed");
    }
    for m in ["maturin", "pytest", "numpy"] {
        if !python_has(m) {
            return missing(&format!(
                "the Python module {m} is missing (pip install maturin pytest numpy)"
            ));
        }
    }
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let work =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("python-{}", std::process::id()));
    let wheels = work.join("wheels");
    let site = work.join("site");
    std::fs::create_dir_all(&site).unwrap();
    let build = Command::new("python3")
        .args(["-m", "maturin", "build", "--release", "--quiet", "-o"])
        .arg(&wheels)
        .arg("-m")
        .arg(crate_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target.join("python"))
        .output()
        .expect("run maturin");
    assert!(
        build.status.success(),
        "maturin build failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let wheel: PathBuf = std::fs::read_dir(&wheels)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .expect("a wheel");
    let unzip = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&site)
        .status()
        .unwrap();
    assert!(unzip.success());
    let mut pytest = Command::new("python3");
    pytest
        .args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"])
        .arg(crate_dir.join("tests"))
        .env("PYTHONPATH", &site)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    // The demo binary, for the tests that cross languages: `cargo test --workspace` has
    // built it beside this test.
    match ["debug", "release"]
        .iter()
        .map(|p| target.join(p).join("shm-demo"))
        .find(|d| d.exists())
    {
        Some(demo) => {
            pytest.env("SHM_DEMO", demo);
        }
        None => missing("the shm-demo binary is not built (cargo build -p shm-demo)"),
    }
    // The C library, for the test with a C publisher: built here (a test build of shm-c
    // makes only its rlib), in this target directory's debug profile.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--quiet", "-p", "shm-c", "--target-dir"])
        .arg(&target)
        .status()
        .expect("run cargo build -p shm-c");
    assert!(built.success(), "cargo build -p shm-c failed");
    pytest
        .env("SHM_C_LIB", target.join("debug/libshm_c.a"))
        .env("SHM_C_DIR", crate_dir.parent().unwrap().join("shm-c"));
    let out = pytest.output().expect("run pytest");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "pytest failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // pytest's closing line: "N passed[, M skipped] in T s".
    let summary = text
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or("no pytest summary line")
        .trim()
        .to_owned();
    let _ = std::fs::write(
        target.join("python-summary.txt"),
        format!("pytest (shm-python/tests): {summary}\n"),
    );
    assert!(
        !(in_ci() && summary.contains("skipped")),
        "CI=true and pytest skipped tests: {summary}\n{text}"
    );
    assert!(summary.contains(" passed"), "pytest ran no test: {text}");
    let _ = std::fs::remove_dir_all(&work);
}
