"""Small but valid copies of the published dataset files, written in each publisher's own format, for tests.

One writer per format; every loader of `kdlib.data` reads these files exactly as it reads the real ones:

    cifar10        cifar-10-python.tar.gz   cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    cifar100       cifar-100-python.tar.gz  cifar-100-python/{train,test,meta}
    cifar10_jpeg   cifar10-jpeg.tar.gz      cifar10-jpeg/{train,test}/<class>/NNNN.jpg (the local re-encoding)
    svhn           train_32x32.mat, test_32x32.mat  X 32x32x3xN uint8, y Nx1 (10 = digit 0)
    tinyimagenet   tiny-imagenet-200.zip    tiny-imagenet-200/{wnids.txt,words.txt,train/<wnid>/images/*.JPEG,
                                            val/images/*.JPEG,val/val_annotations.txt,test/images/*.JPEG}
    speechcommands speech_commands_v0.02.tar.gz  ./<word>/<speaker>_nohash_<n>.wav (16 kHz), the two lists
    imdb_full      aclImdb_v1.tar.gz        aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt, unsup/, imdb.vocab
    fsdd           fsdd.tar.gz              fsdd/recordings/<digit>_<speaker>_<index>.wav (8 kHz)

The defaults are sized for the `smoke` scale of the paper setups in study.yaml (stratified subsets need
every class in both parts) and are not pure noise: each class has its own colour or tone, so a model can
learn something. `write_all(folder)` writes every dataset's files (about 15 MB, in about a second); `trust(monkeypatch, ...)`
puts the files' own checksums in the table the loaders verify against (`kdlib.data.sources.ARCHIVES`).
"""
from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from kdlib.data import ARCHIVES, CIFAR10_CLASSES, file_digest, sources

# ----------------------------------------------------------------------------------------------------
# small helpers


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add `data` to an open tar archive as the file `name`."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def jpeg_bytes(image, size=(32, 32), grey: bool = False, quality: int = 95) -> bytes:
    """A JPEG of a uint8 HxWx3 array, or of one solid RGB colour of `size` (the first channel when grey)."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        img = Image.fromarray(image, "RGB")
        img = img.convert("L") if grey else img
    else:
        img = Image.new("L" if grey else "RGB", size, image[0] if grey else tuple(image))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def wav_bytes(wave: np.ndarray, sr: int) -> bytes:
    """A mono 16-bit PCM WAV file (the format of Speech Commands and FSDD) of a float wave in [-1, 1]."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(wave, dtype=np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def tone(seconds: float, freq: float, sr: int, amplitude: float = 0.5, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A sine at `freq` Hz, with a little white noise when asked (different clips of a class then differ)."""
    t = np.arange(int(round(sr * seconds))) / sr
    wave = amplitude * np.sin(2 * np.pi * freq * t)
    if noise:
        wave = wave + noise * np.random.default_rng(seed).standard_normal(len(t))
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def class_colours(n_classes: int, seed: int = 0) -> np.ndarray:
    """One distinct, well separated RGB colour per class (uint8, n_classes x 3)."""
    rng = np.random.default_rng(seed)
    hues = (np.arange(n_classes) + rng.uniform(0, 0.5, n_classes)) / n_classes
    value = np.where(np.arange(n_classes) % 2 == 0, 220, 140)  # alternate brightness: neighbours differ twice over
    h6 = hues * 6
    x = 1 - np.abs(h6 % 2 - 1)
    sector = h6.astype(int) % 6
    table = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    rgb = np.zeros((n_classes, 3))
    for s, (a, b) in enumerate([(0, 1), (1, 0), (1, 2), (2, 1), (2, 0), (0, 2)]):
        m = sector == s
        rgb[m] = table[a] + x[m, None] * table[b]
    return (30 + rgb * (value[:, None] - 30)).astype(np.uint8)


def grating(k: int, size: int, amplitude: float = 30.0) -> np.ndarray:
    """A size x size stripe pattern of class k: 1-4 cycles (k % 4) at 0/45/90/135 degrees (k // 4 % 4), so
    classes of near colours (there are many with 100 or 200 classes) still look different."""
    theta = (k // 4 % 4) * np.pi / 4
    yy, xx = np.mgrid[0:size, 0:size] / size
    return (amplitude * np.sin(2 * np.pi * (1 + k % 4) * (xx * np.cos(theta) + yy * np.sin(theta)))).astype(np.float32)


def class_images(labels: np.ndarray, n_classes: int, size: int = 32, noise: float = 24.0, seed: int = 0) -> np.ndarray:
    """uint8 N x size x size x 3 images: the class's colour and stripes plus per-pixel noise (learnable, not
    trivial)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    patterns = np.stack([grating(k, size) for k in range(n_classes)])
    x = class_colours(n_classes)[labels].astype(np.float32)[:, None, None, :] + patterns[labels][..., None]
    x += noise * rng.standard_normal((len(labels), size, size, 3)).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def balanced_labels(n: int, n_classes: int) -> np.ndarray:
    """0, 1, ..., n_classes - 1, 0, 1, ...: every class equally often (to within one)."""
    return np.arange(n) % n_classes


# ----------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100: python pickles in a tar.gz


def _cifar_pickle(obj: dict, python2: bool) -> bytes:
    """A batch as the publisher wrote it (python 2: protocol 2, bytes keys, arrays under numpy.core),
    or as python 3 would (str keys, the current protocol)."""
    if not python2:
        return pickle.dumps(obj)
    obj = {k.encode(): v for k, v in obj.items()}
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def _rows(x: np.ndarray) -> np.ndarray:
    """uint8 NHWC images -> the N x 3072 channel-major rows of the CIFAR batches."""
    x = np.asarray(x, dtype=np.uint8)
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise ValueError(f"CIFAR images must be N x 32 x 32 x 3, got {x.shape}")
    return x.transpose(0, 3, 1, 2).reshape(len(x), -1)


def _cifar_arrays(n_classes, n_train, n_test, x_train, y_train, x_test, y_test, seed):
    if y_train is None:
        y_train = balanced_labels(n_train, n_classes)
    if y_test is None:
        y_test = balanced_labels(n_test, n_classes)
    if x_train is None:
        x_train = class_images(y_train, n_classes, seed=seed)
    if x_test is None:
        x_test = class_images(y_test, n_classes, seed=seed + 1)
    return np.asarray(x_train), np.asarray(y_train), np.asarray(x_test), np.asarray(y_test)


def cifar10_folder(root, x_train, y_train, x_test, y_test, class_names: Optional[Sequence[str]] = None,
                   python2: bool = True) -> Path:
    """The extracted layout `root/cifar-10-batches-py/`: the training set cut into data_batch_1..5 in order,
    test_batch and batches.meta. Returns the folder."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rows, labels = _rows(x_train), np.asarray(y_train)
    for i, idx in enumerate(np.array_split(np.arange(len(labels)), 5), start=1):
        (folder / f"data_batch_{i}").write_bytes(_cifar_pickle(
            {"batch_label": f"training batch {i} of 5", "labels": labels[idx].tolist(), "data": rows[idx],
             "filenames": [f"img_{j:05d}.png" for j in idx]}, python2))
    (folder / "test_batch").write_bytes(_cifar_pickle(
        {"batch_label": "testing batch 1 of 1", "labels": np.asarray(y_test).tolist(), "data": _rows(x_test),
         "filenames": [f"test_{j:05d}.png" for j in range(len(y_test))]}, python2))
    names = list(class_names) if class_names is not None else list(CIFAR10_CLASSES)
    (folder / "batches.meta").write_bytes(_cifar_pickle(
        {"num_cases_per_batch": int(np.ceil(len(labels) / 5)), "label_names": names, "num_vis": 3072}, python2))
    return folder


def cifar100_folder(root, x_train, y_train, x_test, y_test, class_names: Optional[Sequence[str]] = None,
                    python2: bool = True) -> Path:
    """The extracted layout `root/cifar-100-python/{train,test,meta}` (fine labels, and coarse ones = fine // 5)."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        y = np.asarray(y)
        (folder / name).write_bytes(_cifar_pickle(
            {"filenames": [f"{name}_{j:05d}.png" for j in range(len(y))], "batch_label": f"{name}ing batch 1 of 1",
             "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(), "data": _rows(x)}, python2))
    names = list(class_names) if class_names is not None else [f"c{i}" for i in range(100)]
    (folder / "meta").write_bytes(_cifar_pickle(
        {"fine_label_names": names, "coarse_label_names": [f"super{i}" for i in range(20)]}, python2))
    return folder


def _tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def cifar10(folder, n_train: int = 100, n_test: int = 100, x_train=None, y_train=None, x_test=None, y_test=None,
            class_names: Optional[Sequence[str]] = None, seed: int = 0, python2: bool = True) -> Path:
    """cifar-10-python.tar.gz in `folder`. Arrays given are written as they are (uint8 NHWC images);
    otherwise balanced labels and class-coloured images of n_train / n_test examples."""
    arrays = _cifar_arrays(10, n_train, n_test, x_train, y_train, x_test, y_test, seed)
    return _cifar_archive(folder, cifar10_folder, arrays, class_names, python2, "cifar-10-python.tar.gz")


def cifar100(folder, n_train: int = 300, n_test: int = 200, x_train=None, y_train=None, x_test=None, y_test=None,
             class_names: Optional[Sequence[str]] = None, seed: int = 0, python2: bool = True) -> Path:
    """cifar-100-python.tar.gz in `folder` (see `cifar10`); the defaults hold 3 training and 2 test images
    per class, enough for the smoke scale's stratified 200 / 100."""
    arrays = _cifar_arrays(100, n_train, n_test, x_train, y_train, x_test, y_test, seed)
    return _cifar_archive(folder, cifar100_folder, arrays, class_names, python2, "cifar-100-python.tar.gz")


def _cifar_archive(folder, write_folder, arrays, class_names, python2: bool, archive: str) -> Path:
    """The python-version folder written by `write_folder`, packed as the archive torchvision downloads."""
    import tempfile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src = write_folder(tmp, *arrays, class_names=class_names, python2=python2)
        return _tar_folder(src, folder / archive)


def cifar10_jpeg(folder, classes: Sequence[str] = tuple(CIFAR10_CLASSES), n_train: int = 2, n_test: int = 1,
                 colour=None) -> Path:
    """cifar10-jpeg.tar.gz (the local JPEG re-encoding, an ImageFolder layout): n_train / n_test solid-colour
    32x32 images per class; `colour(class_index_in_classes) -> (r, g, b)` picks the colours."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    colours = class_colours(10)
    colour = colour or (lambda c: tuple(int(v) for v in colours[CIFAR10_CLASSES.index(classes[c])]))
    path = folder / "cifar10-jpeg.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for split, n in (("train", n_train), ("test", n_test)):
            for c, cls in enumerate(classes):
                for i in range(n):
                    add_member(tar, f"cifar10-jpeg/{split}/{cls}/{i:04d}.jpg", jpeg_bytes(colour(c), (32, 32)))
    return path


# ----------------------------------------------------------------------------------------------------
# SVHN: two MATLAB files


def svhn_mat(path, n: int = 100, seed: int = 0, x=None, y=None) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN .mat file: X 32x32x3xN uint8 and y Nx1 with labels 1..10 (10 meaning digit 0). By default
    the labels cycle 1, 2, ..., 10 and the images are class-coloured; returns (X, y) as written."""
    from scipy.io import savemat

    if y is None:
        y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)
    y = np.asarray(y).reshape(-1, 1)
    if x is None:
        x = class_images(y.ravel() % 10, 10, seed=seed).transpose(1, 2, 3, 0)
    x = np.ascontiguousarray(x, dtype=np.uint8)
    savemat(path, {"X": x, "y": y})
    return x, y


def svhn(folder, n_train: int = 100, n_test: int = 100, seed: int = 0) -> tuple[Path, Path]:
    """train_32x32.mat and test_32x32.mat in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / "train_32x32.mat", folder / "test_32x32.mat")
    svhn_mat(paths[0], n_train, seed)
    svhn_mat(paths[1], n_test, seed + 1)
    return paths


# ----------------------------------------------------------------------------------------------------
# Tiny ImageNet: one zip


def tiny_wnids(n: int = 200) -> list[str]:
    """n WordNet-style ids, in an unsorted order (as in the real wnids.txt)."""
    ids = [f"n{1440000 + 7919 * i:08d}" for i in range(n)]
    return ids[1::2] + ids[::2]


def tinyimagenet(folder, wnids: Optional[Sequence[str]] = None, train_per_class: int = 2,
                 val: Optional[Sequence[tuple]] = None, val_per_class: int = 1, colours: Optional[dict] = None,
                 grey: Iterable[tuple] = (), noise: float = 0.0, stripes: bool = False,
                 val_lines: Optional[Sequence[str]] = None, seed: int = 0) -> Path:
    """tiny-imagenet-200.zip in `folder`, 64x64 JPEGs: `train_per_class` training images per wnid (train/<wnid>/
    images/<wnid>_<i>.JPEG, with the <wnid>_boxes.txt beside), the validation images `val` ((file name, wnid)
    pairs; by default `val_per_class` per wnid as val_<k>.JPEG) labelled in val/val_annotations.txt (or the
    given `val_lines`), wnids.txt, words.txt and one unlabelled test image. Each wnid has a colour
    (`colours`, else distinct ones), with its `stripes` (see `grating`) and per-pixel `noise` if asked; the
    (wnid, i) pairs in `grey` are written as greyscale JPEGs, as some of the real ones are. Defaults: the
    200 classes, 2 + 1 solid-colour images each."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wnids = list(wnids) if wnids is not None else tiny_wnids(200)
    if colours is None:
        table = class_colours(len(wnids))
        colours = {w: table[i] for i, w in enumerate(sorted(wnids))}
    if val is None:
        val = [(f"val_{k}.JPEG", wnids[k % len(wnids)]) for k in range(val_per_class * len(wnids))]
    grey = set(grey)
    rng = np.random.default_rng(seed)

    index = {w: i for i, w in enumerate(sorted(wnids))}

    def image(w, grey_=False):
        if not noise and not stripes:
            return jpeg_bytes(colours[w], (64, 64), grey_)
        x = np.broadcast_to(np.asarray(colours[w], dtype=np.float32), (64, 64, 3)).copy()
        x += grating(index[w], 64)[..., None] if stripes else 0.0
        x += noise * rng.standard_normal((64, 64, 3)) if noise else 0.0
        return jpeg_bytes(np.clip(np.rint(x), 0, 255).astype(np.uint8), grey=grey_)

    path = folder / "tiny-imagenet-200.zip"
    root = "tiny-imagenet-200"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:  # JPEGs do not deflate
        zf.writestr(f"{root}/wnids.txt", "\n".join(wnids) + "\n")
        zf.writestr(f"{root}/words.txt", "".join(f"{w}\tthing {i}\n" for i, w in enumerate(sorted(wnids))))
        for w in wnids:
            zf.writestr(f"{root}/train/{w}/{w}_boxes.txt",
                        "".join(f"{w}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(train_per_class)))
            for i in range(train_per_class):
                zf.writestr(f"{root}/train/{w}/images/{w}_{i}.JPEG", image(w, (w, i) in grey))
        for name, w in val:
            zf.writestr(f"{root}/val/images/{name}", image(w))
        lines = val_lines if val_lines is not None else [f"{name}\t{w}\t0\t0\t63\t63" for name, w in val]
        zf.writestr(f"{root}/val/val_annotations.txt", "\n".join(lines) + "\n")
        zf.writestr(f"{root}/test/images/test_0.JPEG", jpeg_bytes((0, 0, 0), (64, 64)))
    return path


# ----------------------------------------------------------------------------------------------------
# Speech Commands v0.02: one tar.gz of 16 kHz WAVs and two lists

SPEECH_WORDS = ["backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
                "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
                "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero"]  # the 35 of v0.02


def speech_clips(words: Sequence[str] = tuple(SPEECH_WORDS), n_train: int = 2, n_test: int = 1,
                 n_validation: int = 1) -> tuple[dict, list, list]:
    """(word -> [(speaker, n, seconds)], testing list, validation list): 1 s clips by distinct speakers,
    the first n_train of each word for training, then n_test for the test list, then n_validation."""
    clips, testing, validation = {}, [], []
    for word in words:
        clips[word] = []
        for k in range(n_train + n_test + n_validation):
            speaker = f"{(0x1a2b3c4d + 7777 * k) & 0xffffffff:08x}"
            clips[word].append((speaker, 0, 1.0))
            name = f"{word}/{speaker}_nohash_0.wav"
            if n_train <= k < n_train + n_test:
                testing.append(name)
            elif k >= n_train + n_test:
                validation.append(name)
    return clips, testing, validation


def speechcommands(folder, clips: Optional[dict] = None, testing: Optional[Sequence[str]] = None,
                   validation: Optional[Sequence[str]] = None, freqs: Optional[dict] = None, sr: int = 16000,
                   lists: bool = True, noise: float = 0.05) -> Path:
    """speech_commands_v0.02.tar.gz in `folder`, packed as the real one: ./<word>/<speaker>_nohash_<n>.wav
    16-bit WAVs, ./_background_noise_/, README.md, LICENSE and (unless lists=False) ./testing_list.txt and
    ./validation_list.txt. `clips`: word -> [(speaker, n, seconds)] (default: `speech_clips()`, the 35 words,
    4 clips each: 2 train, 1 test, 1 validation); each word is a tone (`freqs`, default 200 Hz apart)."""
    if clips is None:
        clips, default_testing, default_validation = speech_clips()
        testing = default_testing if testing is None else testing
        validation = default_validation if validation is None else validation
    testing, validation = list(testing or []), list(validation or [])
    words = list(clips)
    freqs = freqs or {w: 300.0 + 200.0 * i for i, w in enumerate(sorted(words))}
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / "speech_commands_v0.02.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for j, word in enumerate(words):
            for k, (speaker, n, seconds) in enumerate(clips[word]):
                wave = tone(seconds, freqs[word], sr, amplitude=0.3 + 0.05 * (k % 4), noise=noise, seed=1000 * j + k)
                add_member(tar, f"./{word}/{speaker}_nohash_{n}.wav", wav_bytes(wave, sr))
        add_member(tar, "./_background_noise_/white_noise.wav", wav_bytes(tone(3.0, 100, sr), sr))
        add_member(tar, "./README.md", b"Speech Commands Data Set v0.02\n")
        if lists:
            add_member(tar, "./testing_list.txt", "".join(f"{c}\n" for c in testing).encode())
            add_member(tar, "./validation_list.txt", "".join(f"{c}\n" for c in validation).encode())
        add_member(tar, "./LICENSE", b"Creative Commons BY 4.0\n")
    return path


# ----------------------------------------------------------------------------------------------------
# IMDB (Large Movie Review Dataset v1.0): one tar.gz of text files

POSITIVE = ["great", "wonderful", "superb", "moving", "brilliant", "fun", "loved", "best", "touching", "charming"]
NEGATIVE = ["bad", "boring", "awful", "dull", "worst", "terrible", "waste", "poor", "stupid", "mess"]


def imdb_reviews(n_per_split: int = 40, seed: int = 0, n_filler: int = 600, length: int = 40) -> dict:
    """Reviews keyed by their path under aclImdb/: n_per_split per split, half positive (ratings 7-10),
    half negative (1-4), ids numbered per label as in the real archive, plus a few unsup/ reviews. Each
    review is filler words (a vocabulary of n_filler, so a 500-word vocabulary fills up) with a few
    sentiment words of its label."""
    rng = np.random.default_rng(seed)
    filler = [f"w{i:03d}" for i in range(n_filler)]
    out = {}
    for split in ("train", "test"):
        for label, words, ratings in (("pos", POSITIVE, (7, 8, 9, 10)), ("neg", NEGATIVE, (1, 2, 3, 4))):
            for i in range(n_per_split // 2):
                tokens = list(rng.choice(filler, length)) + list(rng.choice(words, 6))
                rng.shuffle(tokens)
                text = " ".join(tokens[: length // 2]) + ".<br /><br />" + " ".join(tokens[length // 2:]).capitalize() + "."
                out[f"{split}/{label}/{i}_{ratings[i % 4]}.txt"] = text
    for i in range(4):
        out[f"train/unsup/{i}_0.txt"] = " ".join(rng.choice(filler, length))
    return out


def imdb_full(folder, reviews: Optional[dict] = None) -> Path:
    """aclImdb_v1.tar.gz in `folder`: the reviews (path under aclImdb/ -> text; default
    `imdb_reviews()`, 40 per split), imdb.vocab, README and train/urls_pos.txt, as in the real archive."""
    reviews = imdb_reviews() if reviews is None else reviews
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / "aclImdb_v1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in reviews.items():
            add_member(tar, f"aclImdb/{name}", text.encode())
        add_member(tar, "aclImdb/imdb.vocab", b"the\nand\n")
        add_member(tar, "aclImdb/README", b"Large Movie Review Dataset v1.0\n")
        add_member(tar, "aclImdb/train/urls_pos.txt", b"http://www.imdb.com/title/tt0453418/usercomments\n")
    return path


# ----------------------------------------------------------------------------------------------------
# Free Spoken Digit Dataset: a tar.gz of the repository's recordings/ folder, 8 kHz WAVs

FSDD_SPEAKERS = ("george", "jackson", "lucas")


def fsdd(folder, speakers: Sequence[str] = FSDD_SPEAKERS, n_per_digit: int = 16, noise: float = 0.05,
         seed: int = 0) -> Path:
    """fsdd.tar.gz in `folder`: fsdd/recordings/<digit>_<speaker>_<index>.wav, 8 kHz, 0.4 to 0.8 s, index
    0 .. n_per_digit - 1 for every digit and speaker (indices 0-4 are the test split). Each digit is a tone
    (300 Hz + 150 Hz per digit), each speaker shifts it a little. Default: 3 speakers x 16 = 330 training
    and 150 test recordings (the smoke scale takes 300 training ones)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    path = folder / "fsdd.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for s, speaker in enumerate(speakers):
            for digit in range(10):
                for index in range(n_per_digit):
                    wave = tone(float(rng.uniform(0.4, 0.8)), 300.0 + 150.0 * digit + 20.0 * s, 8000,
                                amplitude=float(rng.uniform(0.2, 0.5)), noise=noise, seed=int(rng.integers(1 << 30)))
                    add_member(tar, f"fsdd/recordings/{digit}_{speaker}_{index}.wav", wav_bytes(wave, 8000))
    return path


# ----------------------------------------------------------------------------------------------------
# everything at once, and trusting the files written


def write_all(folder) -> dict[str, tuple[Path, ...]]:
    """Every dataset's files in `folder`, at the defaults (sized for the paper setups' smoke scale):
    dataset name -> the files written (one, or two for svhn). Not cifar10-jpeg: with it present,
    cifar10's source=auto would read it instead of the pickles."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "cifar10": (cifar10(folder),),
        "cifar100": (cifar100(folder),),
        "svhn": svhn(folder),
        "tinyimagenet": (tinyimagenet(folder, noise=16.0, stripes=True),),
        "speechcommands": (speechcommands(folder),),
        "imdb_full": (imdb_full(folder),),
        "fsdd": (fsdd(folder),),
    }


def _flatten(items) -> list[Path]:
    out = []
    for item in items:
        if isinstance(item, (str, Path)):
            out.append(Path(item))
        else:
            out += _flatten(item)
    return out


def trust(monkeypatch, *paths, algorithm: Optional[str] = None) -> None:
    """Put each written file's own checksum in `kdlib.data.sources.ARCHIVES` (the table the loaders verify
    against), with `monkeypatch.setitem` so the real table comes back after the test. An archive gets the
    algorithm the table holds for it (md5 or sha256), or `algorithm` when given; an extracted folder
    (e.g. cifar-10-batches-py/) gets its members' md5s; files the table does not checksum are left as they
    are. Paths may be given one by one or in lists (`trust(monkeypatch, *write_all(folder).values())`).
    `monkeypatch` may be pytest's fixture or a `pytest.MonkeyPatch()` held for a module."""
    for path in _flatten(paths):
        r = sources.entry_for(path)
        if r is None:
            raise KeyError(f"{path.name} is not in the table of dataset files (kdlib.data.sources.ARCHIVES)")
        if path.is_dir():
            new = replace(r, folder_md5=tuple((m, file_digest(path / m, "md5")) for m, _ in r.folder_md5))
        else:
            algo = algorithm or ("sha256" if r.sha256 else "md5" if r.md5 else None)
            if algo is None:
                continue
            new = replace(r, md5=file_digest(path, "md5") if algo == "md5" else None,
                          sha256=file_digest(path, "sha256") if algo == "sha256" else None)
        monkeypatch.setitem(ARCHIVES, r.filename, new)
