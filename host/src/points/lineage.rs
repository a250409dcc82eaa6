//! Lineage: which savepoint came from which job and program, as a tree (`host savepoints
//! --tree`).
//!
//! Every point's `_metadata` (format 4 on) records the point its job started from
//! ([`Origin`]) and the module of each operator by SHA-256, so lineage outlives the jobs. A job
//! hangs under the point it started from; its points hang under it. A job whose origin is no
//! longer listed (removed, or another state folder's) is a root that says where it came from.
//! Pure: [`tree`] and [`render`] perform no I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::ids::{CheckpointId, JobId};
use crate::store::{Metadata, Origin};

/// Hex digits of a module hash shown in the tree.
pub const SHORT_HASH_LEN: usize = 8;

/// What the tree shows of one point.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PointFacts {
    /// How to name it: its savepoint id, or `JOB:N` for a checkpoint.
    pub name: String,
    /// Whether it is a savepoint.
    pub savepoint: bool,
    /// The job that wrote it.
    pub job: JobId,
    /// Its checkpoint number.
    pub checkpoint: CheckpointId,
    /// Each operator and the short hash of its module (a connector's name): the program.
    pub program: Vec<(String, String)>,
    /// The point its job started from.
    pub origin: Option<Origin>,
}

impl PointFacts {
    /// The facts of a point named `name` (its savepoint id, if `savepoint`).
    pub fn of(name: String, savepoint: bool, metadata: &Metadata) -> PointFacts {
        let program = metadata.operators.iter().map(|op| {
            let short = match op.module_sha256.get(..SHORT_HASH_LEN) {
                // A connector has no module: its name says what runs it.
                _ if op.module_sha256.is_empty() => op.module_name.as_str(),
                Some(short) => short,
                None => &op.module_sha256,
            };
            (op.id.to_string(), short.to_owned())
        });
        PointFacts {
            name,
            savepoint,
            job: metadata.job.clone(),
            checkpoint: metadata.checkpoint,
            program: program.collect(),
            origin: metadata.resumed_from.clone(),
        }
    }
}

/// A job in the tree, with its points.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct JobNode {
    /// The job.
    pub job: JobId,
    /// Where it started from, when that point is not in the tree above it.
    pub origin_not_listed: Option<Origin>,
    /// Its points, by checkpoint number.
    pub points: Vec<PointNode>,
}

/// A point in the tree, with the jobs started from it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PointNode {
    /// The point.
    pub point: PointFacts,
    /// The jobs started from it.
    pub jobs: Vec<JobNode>,
}

/// The lineage tree of `points`: its roots, oldest job first.
pub fn tree(points: Vec<PointFacts>) -> Vec<JobNode> {
    let mut by_job: BTreeMap<JobId, Vec<PointFacts>> = BTreeMap::new();
    for point in points {
        by_job.entry(point.job.clone()).or_default().push(point);
    }
    for points in by_job.values_mut() {
        points.sort_by_key(|p| (p.checkpoint, p.name.clone()));
    }
    // Each job's parent point, if listed: by savepoint id when its origin names one.
    let parent_of = |origin: &Origin| -> Option<String> {
        let points = by_job.get(&origin.job)?;
        let by_id = origin.savepoint.as_ref().and_then(|id| {
            let found = points.iter().find(|p| p.name == id.as_str());
            found.map(|p| p.name.clone())
        });
        by_id.or_else(|| {
            let found = points.iter().find(|p| p.checkpoint == origin.checkpoint);
            found.map(|p| p.name.clone())
        })
    };
    let mut children: BTreeMap<String, Vec<JobId>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (job, points) in &by_job {
        let origin = points.iter().find_map(|p| p.origin.as_ref());
        match origin.and_then(parent_of) {
            Some(parent) => children.entry(parent).or_default().push(job.clone()),
            None => roots.push(job.clone()),
        }
    }
    roots
        .into_iter()
        .map(|job| node(&job, &mut by_job, &children))
        .collect()
}

/// The node of `job`, its points and, under each, the jobs started from it.
fn node(
    job: &JobId,
    by_job: &mut BTreeMap<JobId, Vec<PointFacts>>,
    children: &BTreeMap<String, Vec<JobId>>,
) -> JobNode {
    // Taken out, so that each job is placed once whatever the origins say.
    let points = by_job.remove(job).unwrap_or_default();
    let origin = points.iter().find_map(|p| p.origin.clone());
    let points = points.into_iter().map(|point| {
        let jobs = children.get(&point.name).into_iter().flatten();
        let jobs = jobs.filter(|child| by_job.contains_key(*child)).cloned();
        let jobs: Vec<JobId> = jobs.collect();
        PointNode {
            jobs: jobs.iter().map(|j| node(j, by_job, children)).collect(),
            point,
        }
    });
    let points: Vec<PointNode> = points.collect();
    let parent_listed = children.values().any(|jobs| jobs.contains(job));
    JobNode {
        job: job.clone(),
        origin_not_listed: origin.filter(|_| !parent_listed),
        points,
    }
}

/// The tree as text: one line per job and per point, drawn with box characters. A job line
/// shows its program (each operator's module, short hash); a point line shows the program
/// again only where it differs from its job's first point's.
pub fn render(roots: &[JobNode]) -> String {
    let mut out = String::new();
    for root in roots {
        render_job(root, "", "", &mut out);
    }
    out
}

fn program_text(program: &[(String, String)]) -> String {
    let parts: Vec<String> = program
        .iter()
        .map(|(op, sha)| format!("{op}={sha}"))
        .collect();
    parts.join(" ")
}

/// The box characters before child `i` of `count`, and before the lines under it.
fn branches(i: usize, count: usize) -> (&'static str, &'static str) {
    match i + 1 == count {
        true => ("└─ ", "   "),
        false => ("├─ ", "│  "),
    }
}

fn render_job(job: &JobNode, lead: &str, rest: &str, out: &mut String) {
    let program = job.points.first().map(|p| p.point.program.clone());
    let _ = write!(out, "{lead}{}", job.job);
    if let Some(origin) = &job.origin_not_listed {
        let _ = write!(
            out,
            "  (from {}:{}, not listed)",
            origin.job, origin.checkpoint
        );
    }
    let _ = writeln!(
        out,
        "  program {}",
        program_text(&program.clone().unwrap_or_default())
    );
    for (i, point) in job.points.iter().enumerate() {
        let (branch, below) = branches(i, job.points.len());
        let p = &point.point;
        let kind = if p.savepoint {
            "savepoint"
        } else {
            "checkpoint"
        };
        let _ = write!(out, "{rest}{branch}{}  {kind} {}", p.name, p.checkpoint);
        if program.as_ref() != Some(&p.program) {
            let _ = write!(out, "  program {}", program_text(&p.program));
        }
        out.push('\n');
        let inner = format!("{rest}{below}");
        for (j, child) in point.jobs.iter().enumerate() {
            let (branch, below) = branches(j, point.jobs.len());
            render_job(
                child,
                &format!("{inner}{branch}"),
                &format!("{inner}{below}"),
                out,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(
        name: &str,
        job: &str,
        n: u64,
        counter: &str,
        origin: Option<(&str, u64, &str)>,
    ) -> PointFacts {
        PointFacts {
            name: name.to_owned(),
            savepoint: name.starts_with("sp-"),
            job: job.parse().unwrap(),
            checkpoint: CheckpointId(n),
            program: vec![("counter".to_owned(), counter.to_owned())],
            origin: origin.map(|(job, n, sp)| Origin {
                job: job.parse().unwrap(),
                checkpoint: CheckpointId(n),
                savepoint: (!sp.is_empty()).then(|| sp.parse().unwrap()),
            }),
        }
    }

    #[test]
    fn jobs_hang_under_the_points_they_started_from() {
        let points = vec![
            point(
                "sp-job-b-9-x",
                "job-b",
                9,
                "33333333",
                Some(("job-a", 4, "sp-job-a-4-x")),
            ),
            point("sp-job-a-4-x", "job-a", 4, "11111111", None),
            point("job-a:6", "job-a", 6, "11111111", None),
            point(
                "job-c:7",
                "job-c",
                7,
                "11111111",
                Some(("job-a", 4, "sp-job-a-4-x")),
            ),
            point("job-d:3", "job-d", 3, "22222222", Some(("job-gone", 2, ""))),
        ];
        let text = render(&tree(points));
        let expected = "\
job-a  program counter=11111111
├─ sp-job-a-4-x  savepoint 4
│  ├─ job-b  program counter=33333333
│  │  └─ sp-job-b-9-x  savepoint 9
│  └─ job-c  program counter=11111111
│     └─ job-c:7  checkpoint 7
└─ job-a:6  checkpoint 6
job-d  (from job-gone:2, not listed)  program counter=22222222
└─ job-d:3  checkpoint 3
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_program_changed_within_a_job_shows_on_its_point() {
        let points = vec![
            point("job-a:1", "job-a", 1, "11111111", None),
            point("job-a:2", "job-a", 2, "22222222", None),
        ];
        let text = render(&tree(points));
        assert_eq!(
            text,
            "job-a  program counter=11111111\n├─ job-a:1  checkpoint 1\n\
             └─ job-a:2  checkpoint 2  program counter=22222222\n"
        );
    }
}
