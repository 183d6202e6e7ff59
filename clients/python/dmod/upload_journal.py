"""Where a large-file upload stands, kept on the client's disk: a rerun of `dmod dataset upload`
after the process was killed (Ctrl-C twice, kill -9, a reboot) resumes the same upload at the
server's committed offset instead of starting again at byte 0 (and leaving the old upload's
parts to expire on the server).

One small file per upload in progress under `$DMOD_HOME/uploads/`, named by a hash of (dataset,
object path, local file, its size and mtime): a changed file never resumes an old upload.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

MAX_AGE_SECONDS = 7 * 86_400  # the server forgets unfinished uploads sooner than this


class UploadJournal:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    @classmethod
    def default(cls) -> UploadJournal:
        from dmod.services.runtime.settings import default_home

        return cls(Path(os.environ.get("DMOD_HOME") or default_home()) / "uploads")

    def _entry(self, dataset: str, path: str, local: Path) -> Path:
        st = local.stat()
        key = json.dumps([dataset, path, str(local.resolve()), st.st_size, st.st_mtime_ns])
        return self.folder / hashlib.sha256(key.encode()).hexdigest()[:40]

    def recall(self, dataset: str, path: str, local: Path) -> str | None:
        entry = self._entry(dataset, path, local)
        try:
            if time.time() - entry.stat().st_mtime > MAX_AGE_SECONDS:
                entry.unlink(missing_ok=True)
                return None
            return json.loads(entry.read_text())["upload_id"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remember(self, dataset: str, path: str, local: Path, upload_id: str) -> None:
        entry = self._entry(dataset, path, local)
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = entry.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"upload_id": upload_id, "dataset": dataset, "path": path, "local": str(local)}, fh)
            tmp.replace(entry)
        except OSError:
            pass  # resuming after a kill is a convenience; the upload itself goes on

    def forget(self, dataset: str, path: str, local: Path) -> None:
        try:
            self._entry(dataset, path, local).unlink(missing_ok=True)
        except OSError:
            pass
