"""Tests only: make one folder read-only for this process and its kernels (the tests run as root, where
chmod does not stop writes, and a read-only bind mount needs privileges). With KDLIB_TEST_READONLY=<folder>
and this folder first on PYTHONPATH, every Python process started from the test (papermill kernels
included) gets EROFS for writes under <folder>, as on a read-only filesystem; reads work."""
import builtins
import errno
import io
import os
import shutil


def _under(path, prefix: str) -> bool:
    try:
        p = os.path.abspath(os.fsdecode(path))
    except TypeError:
        return False  # a file descriptor
    return p == prefix or p.startswith(prefix + os.sep)


def install(prefix: str, setattr=setattr) -> None:
    """Refuse writes under `prefix`; `setattr` may be pytest's monkeypatch.setattr, to undo it after a test."""
    prefix = os.path.abspath(prefix)

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_open, real_os_open = builtins.open, os.open

    def open_(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and _under(file, prefix):
            refuse(file)
        return real_open(file, mode, *a, **k)

    def os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND) and _under(path, prefix):
            refuse(path)
        return real_os_open(path, flags, *a, **k)

    def guard(fn, exists_error=False):
        def wrapped(path, *a, **k):
            if _under(path, prefix):
                if exists_error and os.path.exists(path):  # Linux: EEXIST wins over EROFS
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))
                refuse(path)
            return fn(path, *a, **k)
        return wrapped

    setattr(builtins, "open", open_)
    setattr(io, "open", open_)
    setattr(os, "open", os_open)
    setattr(os, "mkdir", guard(os.mkdir, exists_error=True))
    for name in ("unlink", "remove", "rmdir", "replace", "rename"):
        setattr(os, name, guard(getattr(os, name)))
    setattr(shutil, "rmtree", guard(shutil.rmtree))


if os.environ.get("KDLIB_TEST_READONLY"):
    install(os.environ["KDLIB_TEST_READONLY"])
