"""Each loader on its real local files (skipped where absent), the pickle layout torchvision leaves, and errors."""
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from kdlib.data import (DATASETS, DataError, audio, build_vocab, encode, load_dataset, log_mel, mel_filterbank,
                        read_ts, stratified_subset)
from kdlib.data.core import standardise
from kdlib.config import ConfigError
from tests.conftest import shared_file


@pytest.mark.parametrize("name,shape,n_train,n_test,n_classes", [
    ("digits", (1, 8, 8), 898, 899, 10),
    ("breast_cancer", (30,), 284, 285, 2),
    ("mnist5k", (1, 28, 28), 2500, 2500, 10),
    ("japanese_vowels", (12, 29), 270, 370, 9),
])
def test_offline_loaders(name, shape, n_train, n_test, n_classes):
    d = load_dataset(name)
    assert d.input_shape == shape and len(d.y_train) == n_train and len(d.y_test) == n_test
    assert DATASETS.meta(name)["input_shape"] == shape  # declared at default args, for planning without loading
    assert d.n_classes == n_classes and d.y_train.max() == n_classes - 1
    assert d.x_train.dtype == torch.float32 and torch.isfinite(d.x_train).all()
    assert "offline" in d.source and d.modality == DATASETS.meta(name)["modality"]


def test_imdb_split_and_encoding():
    d = load_dataset("imdb", vocab_size=5000, max_len=100)
    assert len(d.y_train) == 20000 and len(d.y_test) == 5000
    assert d.y_test.bincount().tolist() == [2500, 2500]  # stratified
    assert d.x_train.dtype == torch.int64 and d.x_train.shape[1] == 100 and d.x_train.max() < 5000
    assert "split made here" in d.source
    vocab = build_vocab(["a b b c", "b c"], 4)
    assert vocab == {"b": 2, "c": 3}
    np.testing.assert_array_equal(encode(["b a c<br />b"], vocab, 5), [[2, 1, 3, 2, 0]])


def test_subsets_are_stratified_and_seeded():
    d = load_dataset("digits", n_train=100, n_test=50)
    assert len(d.y_train) == 100 and len(d.y_test) == 50
    assert d.y_train.bincount().min() >= 9
    again = load_dataset("digits", n_train=100, n_test=50)
    assert torch.equal(d.x_train, again.x_train)
    other = load_dataset("digits", n_train=100, n_test=50, split_seed=1)
    assert not torch.equal(d.x_train, other.x_train)
    with pytest.raises(ValueError, match=r"subset size must be an integer in \[1, 898\], got 5000"):
        load_dataset("digits", n_train=5000)
    with pytest.raises(ValueError, match="unknown argument"):
        load_dataset("digits", colour=True)
    assert len(stratified_subset(np.repeat(np.arange(3), 10), 30, 0, "x")) == 30


def test_read_ts(tmp_path):
    p = tmp_path / "x.ts"
    p.write_text("#c\n@problemName x\n@classLabel true 1 2\n@data\n1,2,3:4,5,6:1\n7,8:9,10:2\n")
    series, labels = read_ts(p)
    assert series[0].shape == (2, 3) and series[1].tolist() == [[7, 8], [9, 10]] and labels.tolist() == ["1", "2"]


def test_cifar10_local_jpeg_copy():
    shared_file("cifar10-jpeg.tar.gz")
    d = load_dataset("cifar10", source="jpeg")
    assert d.input_shape == (3, 32, 32) and len(d.y_train) == 50000 and len(d.y_test) == 10000
    assert d.y_test.bincount().tolist() == [1000] * 10
    assert abs(float(d.x_train.mean())) < 0.05  # standardised with CIFAR channel statistics
    assert "JPEG" in d.source


def _cifar_pickles(root, n_classes, x, y):
    """The original python-pickle layout that torchvision reads, filled with real images."""
    if n_classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for i, name in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]):
            sl = slice(i * 20, (i + 1) * 20)
            with open(folder / name, "wb") as f:
                pickle.dump({"data": x[sl].transpose(0, 3, 1, 2).reshape(20, -1), "labels": y[sl].tolist()}, f)
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for name, sl in (("train", slice(0, 100)), ("test", slice(100, 120))):
            with open(folder / name, "wb") as f:
                pickle.dump({"data": x[sl].transpose(0, 3, 1, 2).reshape(len(x[sl]), -1),
                             "fine_labels": y[sl].tolist()}, f)
        with open(folder / "meta", "wb") as f:
            pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)


@pytest.mark.parametrize("n_classes", [10, 100])
def test_extracted_pickle_folders_as_torchvision_leaves_them(tmp_path, monkeypatch, n_classes):
    from dataclasses import replace

    from kdlib.data import ARCHIVES

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (120, 32, 32, 3), dtype=np.uint8)
    y = np.arange(120) % n_classes
    _cifar_pickles(tmp_path, n_classes, x, y)
    archive = "cifar-10-python.tar.gz" if n_classes == 10 else "cifar-100-python.tar.gz"
    monkeypatch.setitem(ARCHIVES, archive, replace(ARCHIVES[archive], folder_md5=()))  # md5s of the real files
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    name = "cifar10" if n_classes == 10 else "cifar100"
    args = {"source": "torchvision"} if n_classes == 10 else {}  # the old name of source=pickle still works
    d = load_dataset(name, data_dir=str(tmp_path), download=False, **args)
    assert len(d.y_train) == 100 and len(d.y_test) == 20 and d.input_shape == (3, 32, 32)
    assert d.class_names[1] == "c1" and "original pickled batches" in d.source
    mean = np.array([0.4914, 0.4822, 0.4465] if n_classes == 10 else [0.5071, 0.4865, 0.4409])
    std = np.array([0.2470, 0.2435, 0.2616] if n_classes == 10 else [0.2673, 0.2564, 0.2762])
    expected = (x[0, 5, 7] / 255.0 - mean) / std
    np.testing.assert_allclose(d.x_train[0, :, 5, 7].numpy(), expected, rtol=1e-5)


def test_missing_files_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"cifar-100-python.tar.gz \(or its extracted folder cifar-100-python/\) "
                                        r"not found; searched: .*Downloads are off: pass download=True"):
        load_dataset("cifar100", data_dir=str(tmp_path), download=False)
    monkeypatch.setattr("kdlib.data.cifar.find_local", lambda *a, **k: None)
    monkeypatch.setattr("kdlib.paths.REPO_ROOT", tmp_path / "repo")
    with pytest.raises(DataError, match=r"cifar10-jpeg.tar.gz not found; searched: .*KDLIB_DATA"):
        load_dataset("cifar10", source="jpeg", data_dir=str(tmp_path / "y"))
    with pytest.raises(DataError, match=r"fsdd.tar.gz not found"):
        load_dataset("fsdd", data_dir=str(tmp_path / "z"))


def test_corrupt_archives_fail_clearly(tmp_path):
    (tmp_path / "cifar10-jpeg.tar.gz").write_bytes(b"\x1f\x8b\x08 this is not a gzip stream")
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_dataset("cifar10", source="jpeg", data_dir=str(tmp_path))
    wav_dir = tmp_path / "w"
    wav_dir.mkdir()
    with tarfile.open(wav_dir / "fsdd.tar.gz", "w:gz") as tar:
        data = b"RIFF0000WAVEnot really"
        info = tarfile.TarInfo("fsdd/recordings/3_x_7.wav")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match=r"3_x_7.wav is not a readable WAV"):
        load_dataset("fsdd", data_dir=str(wav_dir))


def test_fsdd_local_copy_log_mel():
    shared_file("fsdd.tar.gz")
    d = load_dataset("fsdd")
    assert d.input_shape == (1, 40, 101) == DATASETS.meta("fsdd")["input_shape"]
    assert len(d.y_train) == 2700 and len(d.y_test) == 300  # recordings 0-4 of each digit and speaker
    assert d.y_test.bincount().tolist() == [30] * 10
    assert torch.isfinite(d.x_train).all()


def _fsdd_waves(path, limit=None):
    """(waves, labels, is_test) of the FSDD archive's clips, in archive order, as kdlib reads them."""
    from kdlib.data.audio import read_wav

    waves, labels, test = [], [], []
    with tarfile.open(path) as tar:
        for m in tar:
            if m.isfile() and m.name.endswith(".wav"):
                digit, _, index = m.name.rsplit("/", 1)[-1][:-4].split("_")
                waves.append(read_wav(tar.extractfile(m).read(), m.name, 8000, 8000))
                labels.append(int(digit))
                test.append(int(index) <= 4)
                if limit and len(waves) == limit:
                    break
    return np.stack(waves), np.array(labels), np.array(test)


def _numpy_log_mel(waves: np.ndarray, n_fft=256, hop=80, n_mels=40) -> np.ndarray:
    """An independent float64 log-mel: reflect-padded Hann frames through numpy's rfft, the mel products
    as an einsum (no torch.stft, no torch matmul)."""
    x = np.pad(waves.astype(np.float64), ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    starts = hop * np.arange((x.shape[1] - n_fft) // hop + 1)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann, as torch.hann_window
    power = np.abs(np.fft.rfft(x[:, starts[:, None] + np.arange(n_fft)] * window, axis=-1)) ** 2
    mel = np.einsum("mf,btf->bmt", mel_filterbank(8000, n_fft, n_mels).astype(np.float64), power)
    return np.log(mel + 1e-6)[:, None]


def test_the_float64_front_end_gives_an_independent_computations_features_bit_for_bit():
    """Why `frontend: float64` makes FSDD's features the same on every CPU: two implementations with different
    FFTs and summation orders agree on every float32 value once both compute in float64; the float32 front
    end's FFT and products round (per instruction set) at the level float32 keeps."""
    waves, _, _ = _fsdd_waves(shared_file("fsdd.tar.gz"), limit=300)
    ours = log_mel(torch.as_tensor(waves), dtype=torch.float64)
    assert ours.dtype == torch.float64 and ours.shape == (300, 1, 40, 101)
    np.testing.assert_array_equal(ours.float().numpy(), _numpy_log_mel(waves).astype(np.float32))
    # the float32 front end is the earlier one, unchanged: stored runs keep their features on their kind of CPU
    old = torch.stft(torch.as_tensor(waves), n_fft=256, hop_length=80, win_length=256, window=torch.hann_window(256),
                     center=True, return_complex=True).abs() ** 2
    old = torch.log(torch.as_tensor(mel_filterbank(8000, 256, 40)) @ old + 1e-6).unsqueeze(1)
    assert torch.equal(log_mel(torch.as_tensor(waves)), old)


def test_fsdd_float64_frontend_is_standardised_in_float64_and_cached_apart(monkeypatch):
    path = shared_file("fsdd.tar.gz")
    d = load_dataset("fsdd", frontend="float64")
    waves, labels, test = _fsdd_waves(path)
    feats = _numpy_log_mel(waves)
    mean = feats[~test].mean(axis=(0, 2, 3), keepdims=True)
    std = feats[~test].std(axis=(0, 2, 3), keepdims=True) + 1e-6
    np.testing.assert_array_equal(d.x_train.numpy(), ((feats[~test] - mean) / std).astype(np.float32))
    np.testing.assert_array_equal(d.x_test.numpy(), ((feats[test] - mean) / std).astype(np.float32))
    assert d.y_train.tolist() == labels[~test].tolist() and "computed in float64" in d.source
    default = load_dataset("fsdd")  # the float32 front end: another cache file, other features
    assert "float64" not in default.source and default.fingerprint != d.fingerprint
    with pytest.raises(ConfigError, match=r"unknown audio frontend 'float16'; allowed: float32, float64"):
        load_dataset("fsdd", frontend="float16")


def test_standardise_in_blocks_gives_the_whole_arrays_bits():
    """The float32 result is written a block of samples at a time (memory): the same bits as the formula on the
    whole arrays, for blocks that do and do not divide the set, in float64 and float32."""
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        xtr, xte = (rng.normal(3.0, 2.0, (n, 1, 4, 5)).astype(dtype) for n in (100, 23))
        mean = xtr.mean(axis=(0, 2, 3), keepdims=True)
        std = xtr.std(axis=(0, 2, 3), keepdims=True) + 1e-6
        for rows in (7, 100, 4096):
            got = standardise(xtr, xte, axis=(0, 2, 3), rows=rows)
            for g, x in zip(got, (xtr, xte)):
                assert g.dtype == np.float32
                np.testing.assert_array_equal(g, ((x - mean) / std).astype(np.float32))
    with pytest.raises(ValueError, match=r"needs the sample axis 0 among the axes, got \(1, 2\)"):
        standardise(xtr, xte, axis=(1, 2))


def test_clips_put_in_order_chunk_by_chunk():
    rng = np.random.default_rng(1)
    chunks = [rng.normal(size=(n, 2, 3)) for n in (4, 4, 3)]
    order = rng.permutation(11)
    want = np.concatenate(chunks)[order]
    got = audio.in_order(chunks, order)
    np.testing.assert_array_equal(got, want)
    assert chunks == [] and got.dtype == want.dtype  # each chunk let go once placed


def test_mel_front_end():
    fb = mel_filterbank(8000, 256, 40)
    assert fb.shape == (40, 129) and (fb >= 0).all() and fb.max() <= 1.0
    assert (fb.sum(1) > 0).all()  # no empty filter
    tone = torch.sin(2 * torch.pi * 1000 * torch.arange(8000) / 8000)[None]
    spec = log_mel(tone)
    assert spec.shape == (1, 1, 40, 101)
    peak = int(spec[0, 0, :, 50].argmax())
    centres = np.argmax(fb, axis=1) * 8000 / 256
    assert abs(centres[peak] - 1000) < 120  # the band holding 1 kHz lights up
