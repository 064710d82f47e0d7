"""Audio: a log-mel front end, the Free Spoken Digit Dataset and Speech Commands v0.02."""
from __future__ import annotations

import io
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np
import torch

from ..config import ConfigError
from .archives import archive_errors, open_tar
from .core import DATASETS, DataError, standardise
from .sources import checksum_note, decoded, fetch

# The log-mel front end's arithmetic. `float32` is the original one, kept so that stored runs' configs
# still describe them; its FFT and matrix products round differently on different CPU instruction sets,
# so the features (and the data fingerprint a student checks its teacher against) depend on the machine.
# `float64` computes the spectrogram, the mel products, the log and the standardisation in double precision
# and rounds once to float32 at the end: two independent float64 implementations (torch.stft and numpy's
# rfft) give bitwise the same float32 features, so they no longer depend on the CPU.
FRONTENDS = {"float32": torch.float32, "float64": torch.float64}


def check_frontend(frontend: str) -> torch.dtype:
    if frontend not in FRONTENDS:
        raise ConfigError(f"unknown audio frontend {frontend!r}; allowed: {', '.join(FRONTENDS)}")
    return FRONTENDS[frontend]


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: Optional[float] = None) -> np.ndarray:
    """Triangular mel filters (HTK mel scale), shape (n_mels, n_fft // 2 + 1)."""
    fmax = fmax or sr / 2
    hz_to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    mel_to_hz = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def log_mel(waves: torch.Tensor, sr: int = 8000, n_fft: int = 256, hop: int = 80, n_mels: int = 40,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Batch of waveforms (B, samples) -> log-mel spectrograms (B, 1, n_mels, frames), computed in `dtype`."""
    spec = torch.stft(waves.to(dtype), n_fft=n_fft, hop_length=hop, win_length=n_fft,
                      window=torch.hann_window(n_fft, dtype=dtype), center=True, return_complex=True).abs() ** 2
    mel = torch.as_tensor(mel_filterbank(sr, n_fft, n_mels)).to(dtype) @ spec
    return torch.log(mel + 1e-6).unsqueeze(1)


def read_wav(raw: bytes, where: str, sr: int, n_samples: int) -> np.ndarray:
    """A mono float32 clip at `sr`, zero-padded or cut to `n_samples`."""
    import soundfile as sf

    try:
        wav, file_sr = sf.read(io.BytesIO(raw), dtype="float32")
    except Exception as e:  # soundfile raises its own error types for a bad header or body
        raise DataError(f"{where} is not a readable WAV file ({e})") from e
    if file_sr != sr:
        raise DataError(f"{where}: expected {sr} Hz, found {file_sr} Hz")
    wav = wav if wav.ndim == 1 else wav.mean(1)
    fixed = np.zeros(n_samples, dtype=np.float32)
    fixed[: min(n_samples, len(wav))] = wav[:n_samples]
    return fixed


# ----------------------------------------------------------------------------------------------------
# Free Spoken Digit Dataset (a local copy)


def read_fsdd(path: Path, n_mels: int, seconds: float, frontend: str = "float32") -> dict:
    sr, n_samples = 8000, int(8000 * seconds)
    waves, labels, is_test = [], [], []
    with archive_errors(path), open_tar(path) as tar:
        for m in tar:
            name = Path(m.name).name
            if not (m.isfile() and name.endswith(".wav")):
                continue
            digit, _speaker, index = name[:-4].split("_")
            waves.append(read_wav(tar.extractfile(m).read(), f"{path}:{m.name}", sr, n_samples))
            labels.append(int(digit))
            is_test.append(int(index) <= 4)  # the conventional FSDD test split: recordings 0-4
    if not waves:
        raise DataError(f"{path} holds no .wav recordings")
    feats = log_mel(torch.as_tensor(np.stack(waves)), sr=sr, n_mels=n_mels, dtype=check_frontend(frontend)).numpy()
    y, test = np.array(labels), np.array(is_test)
    xtr, xte = standardise(feats[~test], feats[test], axis=(0, 2, 3))
    return {"x_train": xtr, "y_train": y[~test], "x_test": xte, "y_test": y[test]}


FSDD_ARCHIVE = "fsdd.tar.gz"  # the name in sources.ARCHIVES


@DATASETS.register("fsdd", n_train=2700, n_test=300, modality="audio", n_classes=10, input_shape=(1, 40, 101), args=("n_mels", "seconds", "frontend"), files=(FSDD_ARCHIVE,),
                   description="Free Spoken Digit Dataset (Jakobovski et al.): 3,000 8 kHz WAVs, log-mel front end; "
                               "CC BY-SA 4.0; a local copy only; `frontend: float64` gives the same features "
                               "on every CPU")
def _fsdd(split_seed: int, data_dir=None, n_mels: int = 40, seconds: float = 1.0, frontend: str = "float32",
          download: bool = True, **_):
    check_frontend(frontend)
    path = fetch(FSDD_ARCHIVE, data_dir, download)
    z = decoded("fsdd", [path], _cache_args({"n_mels": n_mels, "seconds": seconds}, frontend),
                lambda: read_fsdd(path, n_mels, seconds, frontend))
    return z["x_train"], z["y_train"], z["x_test"], z["y_test"], {
        "source": f"local copy {path.name} (FSDD, CC BY-SA 4.0), log-mel {n_mels} bands, 10 ms hop, {seconds:g} s"
                  + _frontend_text(frontend),
        "class_names": list(map(str, range(10)))}


def _cache_args(args: dict, frontend: str) -> dict:
    """The decoded cache's key: the original front end keeps the key its caches were written under."""
    return args if frontend == "float32" else {**args, "frontend": frontend}


def _frontend_text(frontend: str) -> str:
    return "" if frontend == "float32" else ", computed in float64 (the same features on every CPU)"


# ----------------------------------------------------------------------------------------------------
# Speech Commands v0.02

SC_RATE = 16000
SC_FRAMES = {"n_fft": 512, "hop": 160}  # 32 ms windows every 10 ms: 101 frames a second, as for FSDD
SC_LISTS = ("testing_list.txt", "validation_list.txt")
SC_CHUNK = 1024  # clips per feature batch: bounds memory (the archive holds 105,829 clips)


def _relative(name: str) -> str:
    """`./word/x.wav` or `word/x.wav` -> `word/x.wav`, the form the split lists use."""
    return PurePosixPath(*PurePosixPath(name.strip()).parts[-2:]).as_posix()


def read_speech_commands(path: Path, n_mels: int, frontend: str = "float32") -> dict:
    """Log-mel features of every clip; test = testing_list.txt, train = in neither list (validation
    clips dropped); clips sorted by <word>/<file> so the order does not depend on the archive's packing."""
    keys, feats, chunk, lists = [], [], [], {}

    def flush():
        if chunk:
            feats.append(log_mel(torch.as_tensor(np.stack(chunk)), sr=SC_RATE, n_mels=n_mels, dtype=check_frontend(frontend),
                                 **SC_FRAMES).numpy())
            chunk.clear()

    with archive_errors(path), open_tar(path) as tar:
        for m in tar:
            p = PurePosixPath(m.name)
            if not m.isfile():
                continue
            if p.name in SC_LISTS:
                lists[p.name] = {_relative(line) for line in tar.extractfile(m).read().decode().splitlines() if line.strip()}
            elif p.suffix == ".wav" and len(p.parts) >= 2 and p.parts[-2] != "_background_noise_":
                chunk.append(read_wav(tar.extractfile(m).read(), f"{path}:{m.name}", SC_RATE, SC_RATE))
                keys.append(_relative(m.name))
                if len(chunk) == SC_CHUNK:
                    flush()
        flush()
    missing = [n for n in SC_LISTS if n not in lists]
    if missing or not keys:
        raise DataError(f"{path} lacks {', '.join(missing) or '<word>/*.wav clips'}: is it speech_commands_v0.02.tar.gz?")
    order = np.argsort(keys, kind="stable")
    keys, feats = [keys[i] for i in order], in_order(feats, order)
    words = [k.split("/")[0] for k in keys]
    classes = sorted(set(words))
    index = {w: i for i, w in enumerate(classes)}
    y = np.array([index[w] for w in words], dtype=np.int64)
    test = np.array([k in lists["testing_list.txt"] for k in keys])
    train = ~test & ~np.array([k in lists["validation_list.txt"] for k in keys])
    xtr, xte = feats[train], feats[test]
    del feats  # in float64 each copy of the whole set is 3.4 GB: at most two at a time
    xtr, xte = standardise(xtr, xte, axis=(0, 2, 3))
    return {"x_train": xtr, "y_train": y[train], "x_test": xte, "y_test": y[test], "class_names": np.array(classes)}


def in_order(chunks: list, order: np.ndarray) -> np.ndarray:
    """`np.concatenate(chunks)[order]`, each chunk freed once placed (it empties `chunks`): the whole set is held
    about once, not three times."""
    n, first = sum(map(len, chunks)), chunks[0]
    out = np.empty((n, *first.shape[1:]), first.dtype)
    where = np.empty(n, np.int64)
    where[order] = np.arange(n)  # where[i]: the sorted position of clip i
    start = 0
    while chunks:
        chunk = chunks.pop(0)
        out[where[start:start + len(chunk)]] = chunk
        start += len(chunk)
    return out


SPEECHCOMMANDS_ARCHIVE = "speech_commands_v0.02.tar.gz"


@DATASETS.register("speechcommands", n_train=84843, n_test=11005, modality="audio", n_classes=35, input_shape=(1, 40, 101), args=("n_mels", "frontend"),
                   files=(SPEECHCOMMANDS_ARCHIVE,),
                   description="Speech Commands v0.02 (Warden, 2018; download.tensorflow.org): 35 words, 1 s 16 kHz "
                               "clips, official test list, validation clips left out; log-mel front end; CC BY 4.0")
def _speechcommands(split_seed: int, n_mels: int = 40, frontend: str = "float32", data_dir=None, download: bool = True, **_):
    check_frontend(frontend)
    path = fetch(SPEECHCOMMANDS_ARCHIVE, data_dir, download)
    z = decoded("speechcommands", [path], _cache_args({"n_mels": n_mels}, frontend),
                lambda: read_speech_commands(path, n_mels, frontend))
    return z["x_train"], z["y_train"], z["x_test"], z["y_test"], {
        "source": f"{path.name} ({checksum_note(path)}): testing_list.txt as the test set, clips in neither list "
                  f"for training; log-mel {n_mels} bands, 10 ms hop, 1 s, standardised with training statistics"
                  + _frontend_text(frontend),
        "class_names": [str(c) for c in z["class_names"]]}
