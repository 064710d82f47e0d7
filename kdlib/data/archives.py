"""Opening and reading archives, with errors that say what to do."""
from __future__ import annotations

import tarfile
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

from .core import DataError


def open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable tar archive (corrupt or truncated?): {e}. "
                        "Delete it and copy or download it again.") from e


@contextmanager
def archive_errors(path: Path):
    """Turn a read error part-way through an archive (a truncated download, a bad member) into a DataError."""
    try:
        yield
    except DataError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is corrupt or truncated ({type(e).__name__}: {e}); "
                        "delete it and copy or download it again.") from e
