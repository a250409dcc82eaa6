//! Guarantee 5 in depth: every kind of damage to a real savepoint is refused by `host run
//! --from`, `host inspect` and `host check`, with an error naming the file and the problem,
//! before any module's `restore` sees a byte.

use std::path::{Path, PathBuf};

use crate::util::{Dir, WordCount, copy_folder};

/// The folder of a real savepoint of `job`, taken in `dir` after 400 ms.
fn savepoint(dir: &Dir, job: &WordCount) -> PathBuf {
    let job = dir.write_job(job);
    dir.run_then_stop_with_savepoint(&job, 400).1
}

/// Each of `run --from`, `inspect` and `check` must refuse `folder`, naming every needle.
fn refused_everywhere(dir: &Dir, job: &Path, folder: &Path, case: &str, needles: &[&str]) {
    let folder = folder.to_str().unwrap();
    let job = job.to_str().unwrap();
    for args in [
        vec!["run", job, "--from", folder],
        vec!["inspect", folder],
        vec!["check", job, "--from", folder],
    ] {
        let stderr = dir.host_err(&args);
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{case}: `host {args:?}` should say `{needle}`:\n{stderr}"
            );
        }
        assert!(
            !stderr.contains("refused") && !stderr.contains("trapped"),
            "{case}: a module saw the state:\n{stderr}"
        );
    }
}

#[test]
fn every_named_kind_of_damage_is_refused_with_the_file_and_problem() {
    let dir = Dir::new(1_500);
    let original = savepoint(&dir, &WordCount::default());
    let job = dir.write_job(&WordCount::default());
    // Another job, reading at another pace, so that even the operators both jobs share have
    // different states.
    let foreign = {
        let other = Dir::new(1_500);
        let folder = savepoint(
            &other,
            &WordCount {
                counter_id: "count-words",
                lines_per_second: 500,
                ..WordCount::default()
            },
        );
        let copy = dir.path().join("foreign");
        copy_folder(&folder, &copy);
        copy
    };
    type Damage = Box<dyn Fn(&Path)>;
    let flip = |file: &'static str, at: usize| -> Damage {
        Box::new(move |folder: &Path| {
            let path = folder.join(file);
            let mut bytes = std::fs::read(&path).unwrap();
            let at = at.min(bytes.len() - 1);
            bytes[at] ^= 0x04;
            std::fs::write(&path, bytes).unwrap();
        })
    };
    let cases: Vec<(&str, Damage, Vec<&str>)> = vec![
        (
            "flipped bit in a state file",
            flip("counter-0.state", 3),
            vec!["counter-0.state", "checksum mismatch"],
        ),
        (
            "flipped bit in _metadata",
            flip("_metadata", 40),
            vec!["_metadata", "checksum mismatch"],
        ),
        (
            "truncated state file",
            Box::new(|f: &Path| {
                let bytes = std::fs::read(f.join("counter-1.state")).unwrap();
                std::fs::write(f.join("counter-1.state"), &bytes[..bytes.len() / 2]).unwrap();
            }),
            vec!["counter-1.state", "metadata says"],
        ),
        (
            "truncated _metadata",
            Box::new(|f: &Path| {
                let bytes = std::fs::read(f.join("_metadata")).unwrap();
                std::fs::write(f.join("_metadata"), &bytes[..bytes.len() - 7]).unwrap();
            }),
            vec!["_metadata", "checksum mismatch"],
        ),
        (
            "deleted state file",
            Box::new(|f: &Path| std::fs::remove_file(f.join("sink-1.state")).unwrap()),
            vec!["sink-1.state", "No such file"],
        ),
        (
            "_metadata of another job pasted in",
            Box::new(move |f: &Path| {
                std::fs::copy(foreign.join("_metadata"), f.join("_metadata")).unwrap();
            }),
            vec!["count-words"],
        ),
        (
            "unknown format version",
            Box::new(|f: &Path| {
                let mut bytes = std::fs::read(f.join("_metadata")).unwrap();
                bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
                std::fs::write(f.join("_metadata"), bytes).unwrap();
            }),
            vec!["_metadata", "unknown metadata format version 7"],
        ),
        (
            "empty folder",
            Box::new(|f: &Path| {
                for entry in std::fs::read_dir(f).unwrap() {
                    std::fs::remove_file(entry.unwrap().path()).unwrap();
                }
            }),
            vec!["not a checkpoint or savepoint folder"],
        ),
    ];
    for (n, (case, damage, needles)) in cases.into_iter().enumerate() {
        let folder = dir.path().join(format!("case-{n}"));
        copy_folder(&original, &folder);
        damage(&folder);
        refused_everywhere(&dir, &job, &folder, case, &needles);
    }
    // The original was never touched, and still restores.
    assert!(
        dir.host_ok(&[
            "check",
            job.to_str().unwrap(),
            "--from",
            original.to_str().unwrap()
        ])
        .starts_with("ok:")
    );
}

#[test]
fn a_byte_changed_anywhere_in_a_savepoint_is_refused() {
    let dir = Dir::new(1_500);
    let original = savepoint(&dir, &WordCount::default());
    let job = dir.write_job(&WordCount::default());
    let files: Vec<PathBuf> = std::fs::read_dir(&original)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    // Generated cases: a seeded walk over (file, offset, bit); the seed is printed on failure.
    let seed: u64 = 0x5eed_2976;
    let mut state = seed;
    let folder = dir.path().join("damaged");
    for case in 0..40 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let file = &files[(state >> 33) as usize % files.len()];
        let mut bytes = std::fs::read(file).unwrap();
        let offset = (state >> 17) as usize % bytes.len();
        bytes[offset] ^= 1 << ((state >> 7) % 8);
        let _ = std::fs::remove_dir_all(&folder);
        copy_folder(&original, &folder);
        std::fs::write(folder.join(file.file_name().unwrap()), bytes).unwrap();
        let name = file.file_name().unwrap().to_string_lossy();
        let folder = folder.to_str().unwrap();
        let job = job.to_str().unwrap();
        for args in [
            vec!["inspect", folder],
            vec!["run", job, "--from", folder],
            vec!["check", job, "--from", folder],
        ] {
            eprintln!(
                "seed {seed:#x}, case {case}: a bit flipped at {name}:{offset}, `host {args:?}`"
            );
            // Refused with exit code 1, naming the file, and nothing anywhere changed.
            dir.refused(&args, &[&name]);
        }
    }
}
