"""Where a sweep's files live while trials run: DVC's content-addressed layout, by md5. On threads
that is the repository's own DVC cache; on a Dask cluster, the repository's default DVC remote
(a shared folder, S3, SSH...), which workers on other machines reach as the team's machines do.
Only md5s travel with the tasks; each side reads and writes the files it needs here.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Store:
    """DVC's layout at `url` (a folder: `.dvc/cache/files/md5`, or a remote's `<url>/files/md5`):
    the object with md5 `abcdef...` is the file `ab/cdef...`, written once and read-only after."""

    url: str  # a local folder, or a DVC remote's URL (s3://..., ssh://...)
    name: str  # how the sweep names it to the user: "DVC's cache", "the DVC remote 'storage'"

    @property
    def local(self) -> bool:
        return "://" not in self.url

    def _where(self, md5: str) -> str:
        return f"{self.url.rstrip('/')}/{md5[:2]}/{md5[2:]}"

    def path(self, md5: str) -> Path:
        """The object's file, in a local store."""
        return Path(self._where(md5))

    def has(self, md5: str) -> bool:
        if self.local:
            return self.path(md5).is_file()
        fs, where = self._remote(md5)
        return fs.exists(where)

    def get(self, md5: str, dest: Path, link: bool = False) -> None:
        """Bring an object to `dest`: a hard link where `link` and the store is a folder on the
        same disk (instant, no space; only for readers that never write their inputs), else a copy."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self.local:
            if link:
                try:
                    os.link(self.path(md5), dest)
                    return
                except OSError:
                    pass  # another disk, or links not allowed: copy
            shutil.copyfile(self.path(md5), dest)
            return
        fs, where = self._remote(md5)
        fs.get_file(where, str(dest))

    def put(self, path: Path, md5: str) -> None:
        """Store a file (its md5 already known) as DVC stores one: whole or not at all, read-only."""
        if self.has(md5):
            return
        if self.local:
            final = self.path(md5)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f"{final.name}.{uuid.uuid4().hex}.tmp")
            try:
                os.link(path, tmp)
            except OSError:
                shutil.copyfile(path, tmp)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
            return
        fs, where = self._remote(md5)
        fs.makedirs(where.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{where}.{uuid.uuid4().hex}.tmp"
        fs.put_file(str(path), tmp)
        fs.mv(tmp, where)

    def _remote(self, md5: str):
        from kit.dvc_internals import remote_filesystem

        fs, root = remote_filesystem(self.url)
        return fs, f"{root.rstrip('/')}/{md5[:2]}/{md5[2:]}"
