"""The download helper against a local HTTP server, the checksum table, check_available and the
fingerprint. No internet: every file is written by the test."""
import functools
import hashlib
import threading
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from kdlib.data import (ARCHIVES, DataBundle, DataError, _load_cached, check_available, download, file_digest,
                        load_dataset)
from tests import datafiles


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def isolated(isolated_data):
    return isolated_data


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A static HTTP server on 127.0.0.1 serving tmp_path/www."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_renames_into_place(server, tmp_path, capsys):
    root, url = server
    payload = np.random.default_rng(0).bytes(300_000)
    (root / "blob.bin").write_bytes(payload)
    md5, sha = hashlib.md5(payload).hexdigest(), hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "out" / "blob.bin"
    assert download(f"{url}/blob.bin", dest, md5=md5, sha256=sha) == dest
    assert dest.read_bytes() == payload and not (tmp_path / "out" / "blob.bin.part").exists()
    assert "downloading blob.bin: 0.3 of 0.3 MB (100%) done" in capsys.readouterr().err


def test_download_checksum_mismatch_deletes_the_partial_file(server, tmp_path):
    root, url = server
    (root / "blob.bin").write_bytes(b"not what was published")
    dest = tmp_path / "blob.bin"
    found = hashlib.md5(b"not what was published").hexdigest()
    with pytest.raises(DataError, match=rf"blob.bin: md5 checksum mismatch: expected 0+, found {found}"):
        download(f"{url}/blob.bin", dest, md5="0" * 32)
    assert not dest.exists() and not (tmp_path / "blob.bin.part").exists()
    with pytest.raises(DataError, match=r"sha256 checksum mismatch: expected f+, found"):
        download(f"{url}/blob.bin", dest, sha256="f" * 64)


def test_download_http_error_names_the_url(server, tmp_path):
    _, url = server
    with pytest.raises(DataError, match=rf"could not download {url}/absent.tar.gz .*HTTPError.*404"):
        download(f"{url}/absent.tar.gz", tmp_path / "absent.tar.gz")
    assert not (tmp_path / "absent.tar.gz.part").exists()


def _cifar100_archive(folder, seed=1):
    """A tiny cifar-100-python.tar.gz in the original layout (100 train, 20 test); returns its images and labels."""
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 256, (120, 32, 32, 3), dtype=np.uint8), np.arange(120) % 100
    datafiles.cifar100(folder, x_train=x[:100], y_train=y[:100], x_test=x[100:], y_test=y[100:])
    return x, y


def test_a_loader_downloads_into_the_cache_and_says_so(isolated, server, monkeypatch, tmp_path):
    root, url = server
    _cifar100_archive(root)
    r = ARCHIVES["cifar-100-python.tar.gz"]
    monkeypatch.setitem(ARCHIVES, r.filename, replace(r, url=f"{url}/{r.filename}",
                                                      md5=file_digest(root / r.filename, "md5")))
    cache = tmp_path / "cache" / "downloads"
    assert check_available("cifar100") == f"cifar100: will download {url}/{r.filename} into {cache}"
    d = load_dataset("cifar100")
    assert (cache / r.filename).is_file() and len(d.y_train) == 100 and "md5 verified" in d.source
    assert check_available("cifar100") == f"cifar100: cached download {cache / r.filename}"


def test_check_available_describes_each_kind_of_source(isolated, tmp_path):
    assert check_available("digits") == "digits: offline, inside the installed package sklearn"
    (isolated / "train_32x32.mat").write_bytes(b"x")
    assert check_available("svhn").startswith(f"svhn: train_32x32.mat: local archive {isolated / 'train_32x32.mat'}; "
                                              "test_32x32.mat: will download http://ufldl.stanford.edu/")
    (tmp_path / "x" / "cifar-10-batches-py").mkdir(parents=True)
    assert check_available("cifar10", source="pickle", data_dir=str(tmp_path / "x")) == \
        f"cifar10: local extracted folder {tmp_path / 'x' / 'cifar-10-batches-py'}"
    with pytest.raises(ValueError, match="unknown argument"):
        check_available("svhn", colour=True)
    with pytest.raises(ValueError, match="unknown CIFAR-10 source 'png'"):
        check_available("cifar10", source="png")


@pytest.mark.parametrize("name,filename,url", [
    ("tinyimagenet", "tiny-imagenet-200.zip", "http://cs231n.stanford.edu/tiny-imagenet-200.zip"),
    ("speechcommands", "speech_commands_v0.02.tar.gz", "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"),
    ("imdb_full", "aclImdb_v1.tar.gz", "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"),
    ("cifar10", "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
])
def test_missing_data_fails_early_naming_file_folders_url_and_switch(isolated, tmp_path, name, filename, url):
    extra = tmp_path / "mine"
    with pytest.raises(DataError) as e:
        check_available(name, data_dir=str(extra), download=False)
    msg = str(e.value)
    for expected in (filename, str(extra), str(isolated), str(tmp_path / "repo" / "data"),
                     str(tmp_path / "shared" / "data"), str(tmp_path / "cache" / "downloads"), url, "download=True"):
        assert expected in msg
    with pytest.raises(DataError) as e2:  # load_dataset fails the same way
        load_dataset(name, data_dir=str(extra), download=False)
    assert str(e2.value) == msg


def test_local_only_copies_say_they_cannot_be_downloaded(isolated):
    with pytest.raises(DataError, match=r"fsdd.tar.gz not found; .*It has no download here.*Jakobovski"):
        check_available("fsdd")  # download=True by default, still nothing to fetch


def test_local_archive_with_a_wrong_checksum_is_refused_once_verified_not_again(isolated, monkeypatch):
    _cifar100_archive(isolated)
    path = isolated / "cifar-100-python.tar.gz"
    with pytest.raises(DataError, match=rf"{path}: md5 checksum mismatch: expected eb9058c3a382ffc7106e4002c42a8d85, "
                                        rf"found {file_digest(path, 'md5')}"):
        load_dataset("cifar100")
    r = ARCHIVES[path.name]
    monkeypatch.setitem(ARCHIVES, path.name, replace(r, md5=file_digest(path, "md5")))
    d = load_dataset("cifar100")
    # the decoded cache exists now: a later load neither re-hashes nor re-reads the archive
    monkeypatch.setattr("kdlib.data.sources.file_digest", lambda *a: pytest.fail("archive hashed again"))
    monkeypatch.setattr("kdlib.data.cifar.read_cifar_pickles", lambda *a: pytest.fail("archive read again"))
    _load_cached.cache_clear()
    assert torch.equal(load_dataset("cifar100").x_train, d.x_train)


def test_extracted_folder_members_are_checked_against_the_table(isolated, monkeypatch):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (120, 32, 32, 3), dtype=np.uint8), np.arange(120) % 10
    # python-3 pickles (str keys), as a re-pickled copy would hold
    folder = datafiles.cifar10_folder(isolated, x[:100], y[:100], x[100:], y[100:], python2=False)
    with pytest.raises(DataError, match=r"data_batch_1: md5 checksum mismatch: expected c99cafc152244af753f735de768cd75f"):
        load_dataset("cifar10", source="pickle")
    datafiles.trust(monkeypatch, folder)  # the members' own md5s in the table
    assert "members' md5 verified" in load_dataset("cifar10", source="pickle").source


def _bundle(x, y):
    return DataBundle("t", "tabular", 2, "s", torch.as_tensor(x), torch.as_tensor(y), torch.zeros(1), torch.zeros(1))


def test_fingerprint_identifies_the_training_tensors_in_order(isolated):
    a, b = load_dataset("digits"), load_dataset("digits", test_size=0.5)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 64
    _load_cached.cache_clear()
    assert load_dataset("digits").fingerprint == a.fingerprint  # rebuilt from scratch
    assert load_dataset("digits", n_train=100).fingerprint != a.fingerprint  # a subset
    assert load_dataset("digits", split_seed=1).fingerprint != a.fingerprint  # another split
    assert load_dataset("mnist5k").fingerprint != a.fingerprint  # another source
    assert a.test_fingerprint != a.fingerprint
    x, y = np.arange(12, dtype=np.float32).reshape(6, 2), np.array([0, 1, 0, 1, 0, 1])
    perm = np.array([1, 0, 2, 3, 4, 5])
    assert _bundle(x, y).fingerprint == _bundle(x.copy(), y.copy()).fingerprint
    assert _bundle(x[perm], y[perm]).fingerprint != _bundle(x, y).fingerprint  # a reordering
    assert _bundle(x, y[perm]).fingerprint != _bundle(x, y).fingerprint  # relabelled
    assert _bundle(x.astype(np.float64), y).fingerprint != _bundle(x, y).fingerprint  # same values, other dtype
    assert _bundle(x.reshape(3, 4), y[:3]).fingerprint != _bundle(x.reshape(6, 2), y[:3]).fingerprint  # shape


def test_the_environment_is_part_of_the_load_cache(isolated, tmp_path, monkeypatch):
    """Two data folders with the same args must not share an in-memory bundle."""
    for seed, sub in enumerate(("one", "two")):
        (tmp_path / sub).mkdir()
        _cifar100_archive(tmp_path / sub, seed)
    r = ARCHIVES["cifar-100-python.tar.gz"]
    monkeypatch.setitem(ARCHIVES, r.filename, replace(r, md5=None))
    monkeypatch.setenv("KDLIB_DATA", str(tmp_path / "one"))
    first = load_dataset("cifar100")
    monkeypatch.setenv("KDLIB_DATA", str(tmp_path / "two"))
    second = load_dataset("cifar100")
    assert first.fingerprint != second.fingerprint
    assert "not checksummed" in second.source


def test_parallel_loads_download_once(isolated, server, monkeypatch):
    from kdlib.data.sources import fetch

    root, url = server
    _cifar100_archive(root)
    r = ARCHIVES["cifar-100-python.tar.gz"]
    monkeypatch.setitem(ARCHIVES, r.filename, replace(r, url=f"{url}/{r.filename}",
                                                      md5=file_digest(root / r.filename, "md5")))
    calls = []

    def counted(*a, **k):
        calls.append(a[0])
        return download(*a, **k)

    monkeypatch.setattr("kdlib.data.sources.download", counted)
    results = [None, None]
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, fetch(r.filename))) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == results[1] and results[0].is_file() and len(calls) == 1
