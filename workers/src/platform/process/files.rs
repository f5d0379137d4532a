//! The files of a process instance under `<data dir>/instances/<id>/` (mode 0700):
//! `server.yaml` (0600, written atomically), `server.log` (stdout and stderr, rotated at a
//! size cap), `exit-status` (how the last server ended, noted by its reaper) and drasi-server's
//! own `./data`.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::model::Exit;

/// How much of a log goes into an error.
pub const LOG_TAIL_BYTES: u64 = 4096;

/// How often a followed log is looked at for more.
const LOG_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Read the complete lines of `path` after byte `from` into `out` (colour codes stripped),
/// moving `offset` past them; with `skip_partial`, the first (cut) line is dropped.
fn read_lines(
    path: &Path,
    from: u64,
    skip_partial: bool,
    offset: &mut Option<u64>,
    out: &mut std::collections::VecDeque<crate::platform::LogItem>,
) -> std::io::Result<()> {
    let mut f = fs::File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.take(1 << 20).read_to_end(&mut buf)?;
    let mut at = from;
    let mut first = true;
    for line in buf.split_inclusive(|b| *b == b'\n').take_while(|l| l.ends_with(b"\n")) {
        at += line.len() as u64;
        if std::mem::take(&mut first) && skip_partial {
            continue;
        }
        let text = draas_jobs::domain::text::plain(String::from_utf8_lossy(line).trim_end());
        out.push_back(crate::platform::LogItem { line: text, cursor: at.to_string() });
    }
    *offset = Some(at);
    if at == from { Err(std::io::ErrorKind::WouldBlock.into()) } else { Ok(()) }
}

/// The instance directories of one node.
#[derive(Debug, Clone)]
pub struct Files {
    root: PathBuf,
}

impl Files {
    /// Directories under `<data_dir>/instances`.
    pub fn new(data_dir: &Path) -> Self {
        Self { root: data_dir.join("instances") }
    }

    /// Directory of an instance.
    pub fn dir(&self, id: &InstanceId) -> PathBuf {
        self.root.join(id.as_str())
    }

    /// The configuration file of an instance.
    pub fn config(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("server.yaml")
    }

    /// The log file of an instance.
    pub fn log(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("server.log")
    }

    fn exit_file(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("exit-status")
    }

    /// Write the YAML (0600) atomically as `name` into the instance directory (0700); its
    /// path. Not synced to disk: every start writes it anew, and the server reads it at once.
    pub fn write_config(&self, id: &InstanceId, name: &str, yaml: &str) -> std::io::Result<PathBuf> {
        let dir = self.dir(id);
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(yaml.as_bytes())?;
        fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// The log, opened for appending (0600): stdout and stderr of a new server.
    pub fn open_log(&self, id: &InstanceId) -> std::io::Result<fs::File> {
        OpenOptions::new().create(true).append(true).mode(0o600).open(self.log(id))
    }

    /// The last few KiB of an instance's log, without colour codes.
    pub fn log_tail(&self, id: &InstanceId) -> String {
        let Ok(mut f) = fs::File::open(self.log(id)) else { return String::new() };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        draas_jobs::domain::text::plain(&String::from_utf8_lossy(&buf))
    }

    /// Follow an instance's log from byte `since` (`None`: its last `LOG_TAIL_BYTES`), a line
    /// at a time, each with the offset after it; a log rotated under it (shorter than where it
    /// was) is read again from its start. It never ends: its reader decides when to stop.
    pub fn follow_log(&self, id: &InstanceId, since: Option<u64>) -> crate::platform::LogStream {
        use futures::StreamExt;

        struct Follow {
            path: PathBuf,
            offset: Option<u64>,
            ready: std::collections::VecDeque<crate::platform::LogItem>,
        }
        let start = Follow { path: self.log(id), offset: since, ready: Default::default() };
        futures::stream::unfold(start, |mut f| async move {
            loop {
                if let Some(item) = f.ready.pop_front() {
                    return Some((item, f));
                }
                let len = fs::metadata(&f.path).map_or(0, |m| m.len());
                let from = match f.offset {
                    Some(o) if o <= len => o,
                    Some(_) => 0,
                    None => len.saturating_sub(LOG_TAIL_BYTES),
                };
                let skip_partial = f.offset.is_none() && from > 0;
                f.offset = Some(from);
                if len > from && read_lines(&f.path, from, skip_partial, &mut f.offset, &mut f.ready).is_ok() {
                    continue;
                }
                tokio::time::sleep(LOG_POLL).await;
            }
        })
        .boxed()
    }

    /// Forget how the last server ended (a new one starts).
    pub fn clear_exit(&self, id: &InstanceId) {
        let _ = fs::remove_file(self.exit_file(id));
    }

    /// Note how the instance's server ended (its reaper calls this).
    pub fn note_exit(&self, id: &InstanceId, exit: Exit) {
        let _ = fs::write(self.exit_file(id), serde_json::to_vec(&exit).unwrap_or_default());
    }

    /// How the instance's last server ended, when this node's worker saw it end.
    pub fn last_exit(&self, id: &InstanceId) -> Option<Exit> {
        fs::read(self.exit_file(id)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Remove an instance's directory (config, log, data); gone already is fine.
    pub fn remove(&self, id: &InstanceId) -> std::io::Result<()> {
        match fs::remove_dir_all(self.dir(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Keep every instance log under `max` bytes: the newest half moves to `server.log.1` and
    /// the log is truncated (the server appends, so it writes on at 0).
    pub fn rotate_logs(&self, max: u64) {
        let Ok(entries) = fs::read_dir(&self.root) else { return };
        for entry in entries.flatten() {
            let log = entry.path().join("server.log");
            if fs::metadata(&log).is_ok_and(|m| m.len() > max)
                && let Err(e) = rotate(&log, max / 2)
            {
                tracing::warn!(log = %log.display(), error = %e, "log rotation failed");
            }
        }
    }
}

fn rotate(log: &Path, keep: u64) -> std::io::Result<()> {
    let mut f = OpenOptions::new().read(true).write(true).open(log)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(keep)))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let mut old =
        OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(log.with_extension("log.1"))?;
    old.write_all(&tail)?;
    f.set_len(0)
}

/// The last `LOG_TAIL_BYTES` of a text, cut at a character boundary.
pub fn tail_str(s: &str) -> String {
    let start = s.len().saturating_sub(LOG_TAIL_BYTES as usize);
    let start = (start..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
    s[start..].to_owned()
}
