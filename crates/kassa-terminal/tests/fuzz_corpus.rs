//! Replays the committed fuzzing corpus (fuzz/corpus/frames) through the
//! fuzz target's own checking function, so that CI checks every input the
//! fuzzer found interesting without a nightly toolchain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod fuzz_check;

use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/frames")
}

/// Runs every file of `dir` through the fuzz checks; the failures, named.
fn replay(dir: &std::path::Path) -> (usize, Vec<String>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{} cannot be read: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("an input file");
        let name = file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        if let Err(panic) = std::panic::catch_unwind(|| fuzz_check::check(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{name}: {message}"));
        }
    }
    (files.len(), failures)
}

#[test]
fn every_corpus_input_passes_the_fuzz_checks() {
    let (count, failures) = replay(&corpus());
    // A moved or emptied corpus must fail here rather than pass vacuously.
    assert!(count >= 25, "only {count} corpus files in {}", corpus().display());
    assert!(failures.is_empty(), "corpus inputs failed the fuzz checks:\n{}", failures.join("\n"));
}

#[test]
fn the_seed_corpus_covers_every_class_of_frame() {
    // The hand-written seeds (named `seed-*`) stay in the corpus after
    // minimisation, so the classes the brief lists are always replayed.
    for seed in [
        "seed-good-session",
        "seed-not-json",
        "seed-unknown-op",
        "seed-wrong-types",
        "seed-missing-fields",
        "seed-nul",
        "seed-huge-clocks",
        "seed-negative-ids",
        "seed-deep-nesting",
        "seed-16k-line",
        // Found by the checks: a NUL in the value of a 16,300-byte key made
        // a nul_character reply that echoed the key, over 16 KiB (fixed in
        // codec::nul_in, which cuts the name to 64 characters).
        "regression-nul-in-a-long-key",
        "seed-invalid-utf8",
    ] {
        assert!(corpus().join(seed).is_file(), "the seed {seed} is missing from the corpus");
    }
}
