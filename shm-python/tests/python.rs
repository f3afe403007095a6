//! Builds the Python package with maturin (into `target/python`, so it never waits on
//! this build's lock) and runs its pytest suite (`tests/test_shm.py`) against the wheel,
//! with the Rust demo at hand for the tests that cross languages. Skips, saying why,
//! where `python3`, maturin or pytest is missing (`.ci/run` installs them:
//! `pip install maturin pytest numpy`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_python_package_passes_its_tests() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    for m in ["maturin", "pytest"] {
        if !python_has(m) {
            eprintln!(
                "skipped: the Python module {m} is missing (pip install maturin pytest numpy)"
            );
            return;
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
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(crate_dir.join("tests"))
        .env("PYTHONPATH", &site)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for profile in ["debug", "release"] {
        let demo = target.join(profile).join("shm-demo");
        if demo.exists() {
            pytest.env("SHM_DEMO", demo);
            break;
        }
    }
    let out = pytest.output().expect("run pytest");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "pytest failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&work);
}
