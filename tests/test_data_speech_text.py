"""Speech Commands v0.02 and the official IMDB archive, each as a tiny tar.gz in the original layout
(written by tests/datafiles.py)."""
import tarfile

import pytest
import torch

from kdlib.data import DATASETS, DataError, _load_cached, audio, check_available, load_dataset
from tests import datafiles


@pytest.fixture
def data(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("kdlib.paths.REPO_ROOT", tmp_path / "repo")
    _load_cached.cache_clear()
    yield folder
    _load_cached.cache_clear()


def trust(monkeypatch, path):
    """The archive's own sha256 in the checksum table (and no md5)."""
    datafiles.trust(monkeypatch, path, algorithm="sha256")


# word -> clips (speaker, n, seconds); the lists name some of them
CLIPS = {"yes": [("aa11", 0, 1.0), ("bb22", 0, 0.5), ("cc33", 1, 1.2)],
         "no": [("aa11", 0, 1.0), ("dd44", 0, 0.7), ("ee55", 2, 1.0)],
         "up": [("aa11", 0, 0.9), ("ff66", 0, 1.0)]}
TESTING = ["yes/bb22_nohash_0.wav", "no/dd44_nohash_0.wav", "up/ff66_nohash_0.wav"]
VALIDATION = ["yes/cc33_nohash_1.wav"]


def _speech_archive(path, sr=16000, lists=True):
    """Pure tones, one per word, with a background-noise clip, README and LICENSE as in the real archive."""
    datafiles.speechcommands(path.parent, clips={w: CLIPS[w] for w in ("up", "yes", "no")},  # not sorted: the loader sorts
                             testing=TESTING, validation=VALIDATION, freqs={"yes": 500, "no": 1500, "up": 3000},
                             sr=sr, lists=lists, noise=0.0)


def test_speechcommands_split_by_the_lists_log_mel_and_standardised(data, monkeypatch):
    path = data / "speech_commands_v0.02.tar.gz"
    _speech_archive(path)
    trust(monkeypatch, path)
    assert check_available("speechcommands", data_dir=str(data)) == f"speechcommands: local archive {path}"
    d = load_dataset("speechcommands", data_dir=str(data))
    assert d.class_names == ["no", "up", "yes"] and d.input_shape == (1, 40, 101)  # 1 s, 10 ms hop
    assert d.input_shape == DATASETS.meta("speechcommands")["input_shape"]
    # train: in neither list, sorted by word/file; the validation clip yes/cc33 is left out
    assert d.y_train.tolist() == [0, 0, 1, 2] and d.y_test.tolist() == [0, 1, 2]
    assert torch.allclose(d.x_train.mean((0, 2, 3)), torch.zeros(40), atol=1e-4)  # training statistics per band
    short = d.x_test[2, 0]  # yes/bb22: 0.5 s, zero-padded: the frames after it are all alike
    assert torch.equal(short[:, 70], short[:, 95]) and not torch.equal(short[:, 10], short[:, 95])
    assert "sha256 verified" in d.source and "testing_list.txt" in d.source
    # a pure tone lights up its band: 3 kHz ("up") sits above 500 Hz ("yes") in the mel index
    assert int(d.x_train[2, 0, :, 50].argmax()) > int(d.x_train[3, 0, :, 50].argmax())
    # the float64 front end: the same clips and split, its own features (equal to float32's rounding)
    d64 = load_dataset("speechcommands", data_dir=str(data), frontend="float64")
    assert d64.y_train.tolist() == d.y_train.tolist() and "computed in float64" in d64.source
    assert d64.x_train.dtype == torch.float32 and torch.allclose(d64.x_train, d.x_train, atol=1e-3)


def test_speechcommands_cache_and_errors(data, monkeypatch):
    path = data / "speech_commands_v0.02.tar.gz"
    _speech_archive(path)
    with pytest.raises(DataError, match=r"sha256 checksum mismatch: expected af14739ee7dc311471de98f5f9d2c9191b18"):
        load_dataset("speechcommands", data_dir=str(data))
    trust(monkeypatch, path)
    first = load_dataset("speechcommands", data_dir=str(data), n_mels=20)
    assert first.input_shape == (1, 20, 101)
    _load_cached.cache_clear()
    read = audio.read_speech_commands
    monkeypatch.setattr(audio, "read_speech_commands", lambda *a: pytest.fail("re-read the archive"))
    assert torch.equal(load_dataset("speechcommands", data_dir=str(data), n_mels=20).x_test, first.x_test)
    monkeypatch.setattr(audio, "read_speech_commands", read)
    _speech_archive(path, lists=False)
    trust(monkeypatch, path)
    with pytest.raises(DataError, match=r"lacks testing_list.txt, validation_list.txt"):
        load_dataset("speechcommands", data_dir=str(data))
    _speech_archive(path, sr=8000)
    trust(monkeypatch, path)
    with pytest.raises(DataError, match=r"up/aa11_nohash_0.wav: expected 16000 Hz, found 8000 Hz"):
        load_dataset("speechcommands", data_dir=str(data))


# ----------------------------------------------------------------------------------------------------
# IMDB (Large Movie Review Dataset v1.0)

REVIEWS = {
    "train/pos/10_9.txt": "Great fun, great cast.<br />Great!",
    "train/pos/2_8.txt": "fun fun",
    "train/neg/0_1.txt": "Bad and boring. bad",
    "train/neg/7_2.txt": "boring",
    "train/unsup/0_0.txt": "unlabelled words zebra zebra zebra",
    "test/pos/1_10.txt": "great xyzzy fun",
    "test/neg/3_4.txt": "bad bad bad bad bad bad",
}


def _imdb_archive(path):
    """REVIEWS, with imdb.vocab, README and train/urls_pos.txt beside them as in the real archive."""
    datafiles.imdb_full(path.parent, reviews=REVIEWS)


def test_imdb_full_official_split_and_training_vocabulary(data, monkeypatch):
    path = data / "aclImdb_v1.tar.gz"
    _imdb_archive(path)
    trust(monkeypatch, path)
    monkeypatch.setenv("KDLIB_DATA", str(data))
    d = load_dataset("imdb_full", vocab_size=8, max_len=5)
    assert d.class_names == ["negative", "positive"] and d.extra == {"vocab_size": 8, "max_len": 5}
    assert load_dataset("imdb_full").input_shape == DATASETS.meta("imdb_full")["input_shape"]
    assert d.y_train.tolist() == [0, 0, 1, 1] and d.y_test.tolist() == [0, 1]  # unsup/ and urls_*.txt skipped
    # vocabulary of the training reviews only (unsup/ too is left out), by count then alphabet:
    # fun 3, great 3, bad 2, boring 2, and 1, cast 1
    vocab = {"fun": 2, "great": 3, "bad": 4, "boring": 5, "and": 6, "cast": 7}
    assert d.x_train[0].tolist() == [vocab["bad"], vocab["and"], vocab["boring"], vocab["bad"], 0]  # neg/0
    assert d.x_train[1].tolist() == [vocab["boring"], 0, 0, 0, 0]  # neg/7
    assert d.x_train[2].tolist() == [vocab["fun"], vocab["fun"], 0, 0, 0]  # pos/2 before pos/10: ids sort as numbers
    assert d.x_test[1].tolist() == [vocab["great"], 1, vocab["fun"], 0, 0]  # xyzzy (test only) is out of vocabulary
    assert d.x_test[0].tolist() == [vocab["bad"]] * 5  # cut to max_len
    assert "official train/test split" in d.source and "sha256 verified" in d.source


def test_imdb_full_missing_and_corrupt(data, monkeypatch):
    monkeypatch.setenv("KDLIB_DATA", str(data))
    with pytest.raises(DataError, match=r"aclImdb_v1.tar.gz not found; .*https://ai.stanford.edu/~amaas/data/"
                                        r"sentiment/aclImdb_v1.tar.gz"):
        load_dataset("imdb_full", download=False)
    path = data / "aclImdb_v1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        datafiles.add_member(tar, "aclImdb/README", b"no reviews")
    trust(monkeypatch, path)
    with pytest.raises(DataError, match=r"holds no aclImdb/<train\|test>/<pos\|neg>"):
        load_dataset("imdb_full")
    path.write_bytes(path.read_bytes()[:40])  # truncated
    trust(monkeypatch, path)
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_dataset("imdb_full")
