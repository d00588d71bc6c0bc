//! The durable half of the job store: every record the [`JobStore`](crate::jobs::store::JobStore)
//! keeps, written to one [redb](https://docs.rs/redb) file in the node's data directory, and the
//! node's last incarnation.
//!
//! Writes are put on a channel and one thread commits them: it takes every write waiting,
//! applies them in one transaction and commits it with redb's default durability (the commit
//! returns after `fsync`), then answers every [`Disk::flushed`] that was waiting behind them. So
//! a burst of submissions costs one `fsync`, not one each (group commit), and a caller that
//! must not go on before its write is on disk — a `202`, the start of a job — awaits
//! [`Disk::flushed`]. A commit that fails (the disk full, the file gone) marks the disk
//! [unhealthy](Disk::trouble) until a later commit succeeds; the API refuses new jobs
//! meanwhile.
//!
//! Records are JSON ([`Stored`]): an outcome's output is any JSON value, which a format that
//! needs the schema (postcard) cannot read back.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread;

use hearsay_shared::{JobId, JobOutcome, JobSpec};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{error, info};

/// Job records by id.
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
/// The node's facts: its last incarnation.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The file in the data directory.
pub const FILE_NAME: &str = "jobs.redb";

/// The most writes one transaction takes: a bound on the work between two commits.
const MAX_BATCH: usize = 4096;

/// What the store keeps of one job: its outcome as the API shows it, and what a restart needs
/// beyond it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// The job as it stands.
    pub outcome: JobOutcome,
    /// What to run, while it has not ended and runs (or is queued) here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<JobSpec>,
    /// The idempotency key it was submitted with here, and its body's SHA-256 in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<(String, String)>,
    /// The peer that holds it, for a job this node follows: its API and incarnation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<(std::net::SocketAddr, u64)>,
    /// When it ended, in milliseconds since the UNIX epoch: retention counts from it across a
    /// restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// The peer it was being given to (a steal, a hand-over) while still queued here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<hearsay_shared::NodeId>,
}

/// Why the store cannot be opened, or cannot write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DiskError(pub String);

enum Write {
    Put(u64, Vec<u8>),
    Delete(u64),
    Incarnation(u64),
    Barrier(oneshot::Sender<Result<(), DiskError>>),
}

/// The node's store file, and the thread that writes it. Cloning gives another handle.
#[derive(Debug, Clone)]
pub struct Disk {
    writes: mpsc::Sender<Write>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    /// Why the last commit failed, while no later one has succeeded.
    trouble: Mutex<Option<String>>,
}

/// What a store file held when it was opened.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every job record, by id.
    pub jobs: Vec<Stored>,
    /// The incarnation the node last had, if it ran before.
    pub incarnation: Option<u64>,
    /// Records that could not be read (written by another version), which were dropped.
    pub unreadable: usize,
}

impl Disk {
    /// Opens (or creates) the store in directory `dir`, reads what it holds, and starts its
    /// writer thread. Fails with one line if the directory cannot be made, the file is held
    /// by another process, or it is not a store redb can open or repair.
    pub fn open(dir: &Path) -> Result<(Disk, Loaded), DiskError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            DiskError(format!(
                "the data directory {} cannot be made: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(FILE_NAME);
        let db = open_db(&path).map_err(|e| {
            DiskError(format!(
                "the job store {} cannot be opened: {e}; if it is damaged, move it away to \
                     start with an empty store (its jobs are then forgotten), or give another \
                     --data-dir",
                path.display()
            ))
        })?;
        let loaded = load(&db).map_err(|e| {
            DiskError(format!(
                "the job store {} cannot be read: {e}; if it is damaged, move it away to start \
                 with an empty store (its jobs are then forgotten)",
                path.display()
            ))
        })?;
        let (writes, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            path: path.clone(),
            trouble: Mutex::new(None),
        });
        let writer = Arc::clone(&shared);
        thread::Builder::new()
            .name("job-store".into())
            .spawn(move || write_loop(db, &rx, &writer))
            .map_err(|e| DiskError(format!("the job store's writer cannot start: {e}")))?;
        info!(
            path = %path.display(),
            jobs = loaded.jobs.len(),
            "job store opened"
        );
        Ok((Disk { writes, shared }, loaded))
    }

    /// Writes job `id`'s record (in the next commit).
    pub fn put(&self, stored: &Stored) {
        match serde_json::to_vec(stored) {
            Ok(bytes) => self.send(Write::Put(stored.outcome.id.0, bytes)),
            Err(e) => error!(id = %stored.outcome.id, "a job record cannot be written: {e}"),
        }
    }

    /// Deletes job `id`'s record (in the next commit).
    pub fn delete(&self, id: JobId) {
        self.send(Write::Delete(id.0));
    }

    /// Writes the node's incarnation (in the next commit).
    pub fn set_incarnation(&self, incarnation: u64) {
        self.send(Write::Incarnation(incarnation));
    }

    /// Resolves once every write put before it is committed to disk, or with why the commit
    /// failed.
    pub async fn flushed(&self) -> Result<(), DiskError> {
        self.barrier().await
    }

    /// [`Disk::flushed`], with its place in the order of writes taken now, when it is called,
    /// not when it is first polled.
    pub fn barrier(&self) -> impl std::future::Future<Output = Result<(), DiskError>> {
        let (tx, rx) = oneshot::channel();
        self.send(Write::Barrier(tx));
        async move {
            rx.await
                .unwrap_or_else(|_| Err(DiskError("the job store's writer stopped".into())))
        }
    }

    /// Why the store cannot write now, if it cannot: its last commit failed.
    pub fn trouble(&self) -> Option<String> {
        self.shared
            .trouble
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn send(&self, write: Write) {
        // The writer stops only when every handle is gone.
        let _ = self.writes.send(write);
    }
}

// redb's own error type, large; these run once at start and once a commit, off the hot path.
#[allow(clippy::result_large_err)]
fn load(db: &Database) -> Result<Loaded, redb::Error> {
    // Created on the first open, so that a read finds them.
    let txn = db.begin_write()?;
    txn.open_table(JOBS)?;
    txn.open_table(META)?;
    txn.commit()?;
    let txn = db.begin_read()?;
    let mut loaded = Loaded {
        incarnation: txn.open_table(META)?.get("incarnation")?.map(|v| v.value()),
        ..Loaded::default()
    };
    for entry in txn.open_table(JOBS)?.iter()? {
        let (_, value) = entry?;
        match serde_json::from_slice::<Stored>(value.value()) {
            Ok(stored) => loaded.jobs.push(stored),
            Err(_) => loaded.unreadable += 1,
        }
    }
    Ok(loaded)
}

fn open_db(path: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder()
        .set_cache_size(16 * 1024 * 1024)
        .create(path)
}

/// Commits what comes in, in batches. A batch that fails is kept and tried again with the
/// next one (writes are whole records, so a later one simply wins), and the database is
/// opened afresh first: after an I/O error redb takes no more writes from the same handle.
/// While in trouble, even a lone [`Disk::flushed`] tries a commit, so that the store notices
/// when the disk has room again.
fn write_loop(db: Database, rx: &mpsc::Receiver<Write>, shared: &Shared) {
    let mut db = Some(db);
    let mut retry: Vec<Write> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let (barriers, fresh): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|w| matches!(w, Write::Barrier(_)));
        let mut writes = std::mem::take(&mut retry);
        writes.extend(fresh);
        let in_trouble = shared
            .trouble
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        let result = if writes.is_empty() && !in_trouble {
            Ok(())
        } else {
            if db.is_none() {
                db = open_db(&shared.path).ok();
            }
            let outcome = match &db {
                Some(open) => commit(open, &writes).map_err(|e| e.to_string()),
                None => Err("the store file cannot be opened again".to_owned()),
            };
            outcome.map_err(|e| DiskError(format!("the job store cannot write: {e}")))
        };
        if result.is_err() {
            retry = writes;
            db = None;
        }
        {
            let mut trouble = shared
                .trouble
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match &result {
                Ok(()) => {
                    if trouble.take().is_some() {
                        info!(path = %shared.path.display(), "the job store writes again");
                    }
                }
                Err(e) => {
                    if trouble.is_none() {
                        error!(path = %shared.path.display(), "{e}");
                    }
                    *trouble = Some(e.0.clone());
                }
            }
        }
        for barrier in barriers {
            if let Write::Barrier(tx) = barrier {
                let _ = tx.send(result.clone());
            }
        }
    }
}

#[allow(clippy::result_large_err)]
fn commit(db: &Database, writes: &[Write]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut jobs = txn.open_table(JOBS)?;
        let mut meta = txn.open_table(META)?;
        for write in writes {
            match write {
                Write::Put(id, bytes) => {
                    jobs.insert(*id, bytes.as_slice())?;
                }
                Write::Delete(id) => {
                    jobs.remove(*id)?;
                }
                Write::Incarnation(incarnation) => {
                    meta.insert("incarnation", *incarnation)?;
                }
                Write::Barrier(_) => {}
            }
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use hearsay_shared::{JobStatus, NodeId};

    use super::*;

    fn stored(id: u64, status: JobStatus) -> Stored {
        let mut outcome = JobOutcome::new(JobId(id), "echo", status, NodeId::new("n1").unwrap());
        // Any JSON: what postcard could not read back.
        outcome.output = Some(serde_json::json!({"a": [1, 2], "b": null}));
        Stored {
            outcome,
            spec: Some(JobSpec::from_json(br#"{"kind":"echo","data":"hi"}"#).unwrap()),
            key: Some(("k".into(), "00".repeat(32))),
            peer: None,
            ended_ms: None,
            moving_to: None,
        }
    }

    #[tokio::test]
    async fn what_is_flushed_is_read_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (disk, loaded) = Disk::open(dir.path()).unwrap();
            assert!(loaded.jobs.is_empty() && loaded.incarnation.is_none());
            for id in 1..=3 {
                disk.put(&stored(id, JobStatus::Queued));
            }
            disk.put(&stored(2, JobStatus::Succeeded));
            disk.delete(JobId(3));
            disk.set_incarnation(42);
            disk.flushed().await.unwrap();
            assert_eq!(disk.trouble(), None);
        }
        // The writer thread lets the file go when the last handle is dropped.
        let mut tries = 0;
        let (disk, mut loaded) = loop {
            match Disk::open(dir.path()) {
                Ok(opened) => break opened,
                Err(e) if tries < 5_000 => {
                    assert!(e.0.contains("already open"), "{e}");
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        };
        loaded.jobs.sort_by_key(|s| s.outcome.id);
        assert_eq!(loaded.incarnation, Some(42));
        assert_eq!(
            loaded.jobs,
            [
                stored(1, JobStatus::Queued),
                stored(2, JobStatus::Succeeded)
            ]
        );
        drop(disk);
    }

    #[test]
    fn a_file_that_is_not_a_store_is_refused_with_one_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            b"this is not a database\n".repeat(300),
        )
        .unwrap();
        let err = Disk::open(dir.path()).unwrap_err();
        assert!(err.0.contains("cannot be opened"), "{err}");
        assert!(!err.0.contains('\n'), "{err}");
    }

    #[test]
    fn a_store_held_by_another_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_disk, _) = Disk::open(dir.path()).unwrap();
        let err = Disk::open(dir.path()).unwrap_err();
        assert!(err.0.contains("cannot be opened"), "{err}");
    }
}
