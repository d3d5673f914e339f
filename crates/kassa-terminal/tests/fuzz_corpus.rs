//! Replays the committed fuzzing corpus (fuzz/corpus/frames) through the
//! fuzz target's own checking function, so that CI checks every input the
//! fuzzer found interesting without a nightly toolchain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod fuzz_check;

use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/frames")
}

#[test]
fn every_corpus_input_passes_the_fuzz_checks() {
    let dir = corpus();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("the corpus {} cannot be read: {error}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    // A moved or emptied corpus must fail here rather than pass vacuously.
    assert!(files.len() >= 25, "only {} corpus files in {}", files.len(), dir.display());
    for file in &files {
        let data = std::fs::read(file).expect("a corpus file");
        let name = file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        if let Err(panic) = std::panic::catch_unwind(|| fuzz_check::check(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                .unwrap_or_default();
            panic!("corpus input {name} failed the fuzz checks: {message}");
        }
    }
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
        "seed-invalid-utf8",
    ] {
        assert!(corpus().join(seed).is_file(), "the seed {seed} is missing from the corpus");
    }
}
