//! Beyond one process: a job's subtasks on `host worker` processes, placed by a scheduler,
//! exchanging record batches as Arrow IPC over TCP (issue 35).
//!
//! # The parts
//! - The **coordinator** stays in `host run`: the same [`crate::runtime::coordinator`] task,
//!   barrier for barrier. It triggers barrier N at the sources, collects one ack per subtask,
//!   writes `_metadata` and publishes the point, then tells the sinks to commit. The only
//!   difference is where its subtasks run: their commands go out over a connection to the
//!   worker running them, and their events (acks, ends, failures) come back over it
//!   ([`remote`]). An ack still means what it meant in one process: the subtask's state file
//!   is durable in the store. So the coordinator publishes a point only when every worker's
//!   state of it is durable in the shared store, and a sink commits only once it is published.
//! - A **worker** ([`worker`]) is a `host worker` process. It connects to the coordinator,
//!   says where its exchange listens, and waits for a *deployment*: the job file, the point to
//!   restore from (a location in the shared store), the subtasks it runs and where every other
//!   subtask runs. It builds its share of the job with the runtime's own code
//!   ([`crate::runtime::build_share`]): modules compiled, instances started, each restored
//!   from the point *read from the store by the worker itself*, every checksum verified. It
//!   says `built`, and starts its subtasks only when the coordinator says `start` (every worker
//!   built: a restored sink reconciles its outside world only once the whole job is built, as
//!   in one process).
//! - The **store** is shared: the local state folder when every worker runs on this machine
//!   (the process scheduler), or the object store (`--store s3://...`) anywhere. Workers write
//!   their subtasks' state files where a single process would, under the checkpoint's
//!   in-progress location; the coordinator alone publishes points, removes aborted ones and
//!   holds the job's lease (the generation fence of [`crate::store::fence`]). After each
//!   publication the coordinator tells every worker where the point is, so that the next
//!   checkpoint links (on an object store: copies) the segments it still holds from there.
//! - **Placement** ([`placement`], pure): subtask *i* of every operator goes to worker
//!   *i mod W*, so that `forward` edges stay inside one worker (as Flink's slot sharing does)
//!   and only re-partitioning edges cross. A scheduler ([`scheduler`]) says how workers come
//!   to be: `local` runs every subtask in the `host run` process, today's path and the default,
//!   with no worker, no socket and nothing added to the hot path; `process` starts N `host
//!   worker` processes on 127.0.0.1 (`host run --workers N`) and watches them; `kubernetes`
//!   creates them as Pods (`--scheduler kubernetes`), labelled by run, with the store on S3.
//!
//! # The exchange ([`exchange`])
//! One TCP connection per channel that crosses workers (upstream subtask to downstream
//! subtask of one edge); edges inside one worker stay the runtime's in-process channels.
//! Inside a worker, the exchange is a bridge between two in-process channels: the upstream
//! subtask sends into a local channel as ever (its partitioning, key groups, credit); an
//! outbound link drains it into the connection, and an inbound link on the other worker feeds
//! the downstream subtask's local channel. Frames are a kind byte, a length and a payload:
//! - a batch is an Arrow IPC stream message (`arrow-ipc`'s `StreamEncoder`, the schema once
//!   per connection): keys and values are Arrow's `Binary` columns, which is our batch's
//!   layout already (the bytes, and the end of each record). Sending moves each column's
//!   `Vec` into an Arrow buffer and writes it as is (only the offsets are rebuilt: Arrow's
//!   start with a 0); receiving copies each column out of the frame once.
//! - barriers, watermarks, idleness and the end marker travel in band, in order with the
//!   batches, so the receiver's [`crate::barrier::Aligner`] and watermark valve see exactly
//!   what they see in one process.
//! - **Credit**, end to end: the receiver grants the sender records (the same window as an
//!   in-process channel, [`crate::runtime::CHANNEL_RECORDS_MAX`]), and grants them again only
//!   once the downstream subtask's own channel took the batch. A slow subtask fills its local
//!   channel, its inbound link stops granting, the outbound link stops draining, and the
//!   upstream subtask waits for credit on its own local channel: back-pressure crosses
//!   processes with at most three windows of records in flight per channel.
//!
//! Every connection (control and exchange) opens with a hello carrying the cluster's token
//! (a random secret the scheduler hands each worker through its environment, never logged or
//! written), the job and the deployment's generation; anything else is refused.
//!
//! # Failures
//! - **A worker dies** (kill -9, a Pod deleted): its control connection closes; the
//!   coordinator fails the run as a subtask failure would, stops every other worker's share
//!   (they drop their subtasks and links, and say so), aborts the checkpoint in flight, and
//!   restarts the job, as its restart strategy allows, from the latest complete checkpoint:
//!   a new deployment, with a new generation, over the workers left (the process scheduler
//!   also starts a replacement, which joins the next deployment). Checkpoints go on numbering
//!   past the aborted one, so nothing a sink prepared then is ever committed: `recover`
//!   discards it.
//! - **A worker falls silent** (a stopped process, a partition: its connections stay open): it
//!   pings its coordinator four times per heartbeat timeout (`--heartbeat-timeout-ms`); once it
//!   said nothing for the timeout, the coordinator takes it for lost ([`remote`]), closes its
//!   connection, and goes on as if it had died. The worker's lease
//!   ([`crate::runtime::lease`]), renewed by the coordinator's answers as of when it pinged, for
//!   three quarters of the timeout, has ended by then: if the worker comes back, its subtasks
//!   refuse every act on the outside world (a sink's write, prepare or commit, a snapshot, a
//!   state file), and the worker stops them all and ends, fenced.
//! - **The coordinator dies**: every worker sees its control connection close and stops at
//!   once: no subtask runs on, no sink commits (only the coordinator says commit). `host run
//!   --from JOB` resumes the job, as after the kill of a single process.
//! - **A stale worker** (of an older generation, or cut off) cannot join a newer deployment's
//!   exchange (its hellos carry its generation), and its sinks commit nothing without the
//!   coordinator; on an object store, a coordinator that was taken over is fenced as before.
//!
//! # What is not here (yet)
//! Live upgrades (`host upgrade`) of a job on workers are refused; take a savepoint and run
//! `--from` it with the new job file. Per-subtask metrics of remote subtasks are not sampled
//! by `host serve`. The Kubernetes scheduler ([`scheduler::kubernetes`]) is tested against a
//! mocked API server only. Workers read the job's modules from the paths of the job file:
//! they must see the same files (one machine, or the same image).

pub mod exchange;
pub mod placement;
pub mod remote;
pub mod scheduler;
pub mod wire;
pub mod worker;
