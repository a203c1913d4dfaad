"""Verification accuracy of the face embedder on identity-labelled real faces, and the match threshold.

Faces: the bona fide images of NUAA (``subject``) and Replay-Attack (``group`` = client) from their
``index.csv``. Genuine pairs are two images of one person from different sessions (NUAA) or different
videos (Replay-Attack), so near-identical frames of one clip do not inflate the numbers; impostor pairs are
two people of the same data set (harder than pairs across data sets, whose cameras differ). The threshold is
the distance at FAR 0.1 % (a wrong person gets in once in a thousand tries), which is what a login needs.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from time import perf_counter

import cv2
import numpy as np

from ..runtime.detector import DetectorOptions, FaceDetector
from ..runtime.errors import SourceError
from ..runtime.manifest import sha256_of
from .embedding import MODEL_CARD, FaceEmbedder, ModelCard, _models_dir

SOURCES = {"nuaa": ("subject", "session"), "replayattack": ("group", "video")}
TARGET_FARS = (0.01, 0.001)


@dataclass(frozen=True)
class LabelledFace:
    dataset: str
    identity: str
    capture: str  # session or video: genuine pairs must come from different captures
    path: Path


@dataclass(frozen=True)
class VerificationResult:
    """Pairs, error rates and the chosen threshold (distance: accept iff distance <= threshold)."""

    faces: int
    identities: int
    no_face: int
    genuine_pairs: int
    impostor_pairs: int
    eer: float
    eer_threshold: float
    tar_at_far_1: float
    threshold_far_1: float
    tar_at_far_01: float
    threshold_far_01: float
    chosen_threshold: float
    far_at_chosen: float
    frr_at_chosen: float
    ms_per_face: float
    per_dataset: dict


def scan(data_root: str | Path) -> list[LabelledFace]:
    """The real images of the identity-labelled sources under ``data_root``."""
    root = Path(data_root)
    faces: list[LabelledFace] = []
    for name, (id_col, capture_col) in SOURCES.items():
        index = root / name / "index.csv"
        if not index.is_file():
            continue
        with open(index, newline="") as f:
            for row in csv.DictReader(f):
                if row["label"] == "real":
                    faces.append(LabelledFace(name, f"{name}/{row[id_col]}", row[capture_col], root / name / row["file"]))
    if not faces:
        raise SourceError(f"no nuaa/index.csv or replayattack/index.csv under {root}")
    return faces


def _pairs(faces: list[LabelledFace]) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j): genuine (same person, other capture) and impostor (other person, same data set)."""
    ident = np.array([f.identity for f in faces])
    capture = np.array([f.identity + "/" + f.capture for f in faces])
    dataset = np.array([f.dataset for f in faces])
    i, j = np.triu_indices(len(faces), k=1)
    same_person = ident[i] == ident[j]
    genuine = same_person & (capture[i] != capture[j])
    impostor = ~same_person & (dataset[i] == dataset[j])
    return np.stack([i[genuine], j[genuine]], 1), np.stack([i[impostor], j[impostor]], 1)


def _rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(FAR, FRR) when a pair is accepted iff its distance <= threshold."""
    return float(np.mean(impostor <= threshold)), float(np.mean(genuine > threshold))


def _threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The largest distance threshold whose FAR is <= ``far`` (just below the k-th smallest impostor)."""
    d = np.sort(impostor)
    k = int(np.floor(far * d.size))
    return float(np.nextafter(d[k], -np.inf)) if k < d.size else float(d[-1])


def error_rates(genuine: np.ndarray, impostor: np.ndarray) -> dict:
    """EER (with the train metrics' convention: label 1 = genuine, score = -distance) and TAR at each FAR."""
    from ..train.metrics import eer

    y = np.r_[np.ones(genuine.size, int), np.zeros(impostor.size, int)]
    rate, t = eer(y, -np.r_[genuine, impostor])
    out = {"eer": rate, "eer_threshold": -t}
    for far, key in zip(TARGET_FARS, ("1", "01")):
        th = _threshold_at_far(impostor, far)
        out[f"tar_at_far_{key}"] = 1.0 - _rates(genuine, impostor, th)[1]
        out[f"threshold_far_{key}"] = th
    return out


def embed_all(faces: list[LabelledFace], embedder: FaceEmbedder, detector: FaceDetector,
              progress: bool = True) -> tuple[list[LabelledFace], np.ndarray, float, int]:
    """Embed the largest face of each image; images without a face are counted and left out."""
    from tqdm import tqdm

    kept, vectors, seconds, missing = [], [], 0.0, 0
    for face in tqdm(faces, desc="embedding", unit="img", disable=not progress):
        image = cv2.imread(str(face.path), cv2.IMREAD_COLOR)
        found = detector.detect(image) if image is not None else []
        if not found:
            missing += 1
            continue
        best = max(found, key=lambda f: f.width * f.height)
        t0 = perf_counter()
        vectors.append(embedder.embed(image, best.box))
        seconds += perf_counter() - t0
        kept.append(face)
    return kept, np.array(vectors, np.float32), 1e3 * seconds / max(len(kept), 1), missing


def evaluate(data_root: str | Path, out_dir: str | Path, progress: bool = True) -> VerificationResult:
    """Embed, pair, measure; write ``verification.json``, ``verification.md`` and ``verification.png``."""
    faces = scan(data_root)
    current = ModelCard.load(MODEL_CARD)
    folder = _models_dir()
    card = replace(current, recognition_sha256=sha256_of(folder / current.recognition_file),
                   landmarks_sha256=sha256_of(folder / current.landmarks_file))
    embedder = FaceEmbedder(card, folder)
    detector = FaceDetector.from_file(options=DetectorOptions())
    kept, vectors, ms, missing = embed_all(faces, embedder, detector, progress)
    gen_idx, imp_idx = _pairs(kept)
    dist = lambda p: np.linalg.norm(vectors[p[:, 0]] - vectors[p[:, 1]], axis=1)  # noqa: E731
    genuine, impostor = dist(gen_idx), dist(imp_idx)
    rates = error_rates(genuine, impostor)
    chosen = rates["threshold_far_01"]
    far, frr = _rates(genuine, impostor, chosen)
    per_dataset = {}
    for name in SOURCES:
        g = np.array([kept[i].dataset == name for i in gen_idx[:, 0]], bool)
        m = np.array([kept[i].dataset == name for i in imp_idx[:, 0]], bool)
        if g.any() and m.any():
            far_d, frr_d = _rates(genuine[g], impostor[m], chosen)
            per_dataset[name] = {"genuine_pairs": int(g.sum()), "impostor_pairs": int(m.sum()),
                                 "eer": error_rates(genuine[g], impostor[m])["eer"],
                                 "far_at_chosen": far_d, "frr_at_chosen": frr_d}
    result = VerificationResult(
        faces=len(kept), identities=len({f.identity for f in kept}), no_face=missing,
        genuine_pairs=int(genuine.size), impostor_pairs=int(impostor.size), **rates,
        chosen_threshold=chosen, far_at_chosen=far, frr_at_chosen=frr, ms_per_face=ms, per_dataset=per_dataset,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verification.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    (out / "verification.md").write_text(markdown(result))
    _plot(genuine, impostor, result, out / "verification.png")
    return result


def card_with(result: VerificationResult, card: ModelCard) -> ModelCard:
    """The model card carrying this evaluation's threshold, sha256 of the files measured and the numbers."""
    folder = _models_dir()
    summary = {k: v for k, v in asdict(result).items() if k != "per_dataset"}
    return replace(card, recognition_sha256=sha256_of(folder / card.recognition_file),
                   landmarks_sha256=sha256_of(folder / card.landmarks_file),
                   threshold=round(result.chosen_threshold, 4), evaluation=summary)


def markdown(r: VerificationResult) -> str:
    rows = [
        ("faces (identities)", f"{r.faces} ({r.identities}); {r.no_face} images without a detected face left out"),
        ("genuine / impostor pairs", f"{r.genuine_pairs} / {r.impostor_pairs}"),
        ("EER", f"{r.eer:.2%} at distance {r.eer_threshold:.3f}"),
        ("TAR @ FAR 1 %", f"{r.tar_at_far_1:.2%} (distance <= {r.threshold_far_1:.3f})"),
        ("TAR @ FAR 0.1 %", f"{r.tar_at_far_01:.2%} (distance <= {r.threshold_far_01:.3f})"),
        ("chosen threshold", f"{r.chosen_threshold:.3f}: FAR {r.far_at_chosen:.3%}, FRR {r.frr_at_chosen:.2%}"),
        ("ms per face", f"{r.ms_per_face:.1f} (landmarks + embedding, 1 thread)"),
    ]
    lines = ["| | |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    lines += ["", "| data set | genuine | impostor | EER | FAR / FRR at the chosen threshold |", "|---|---|---|---|---|"]
    for name, d in r.per_dataset.items():
        lines.append(f"| {name} | {d['genuine_pairs']} | {d['impostor_pairs']} | {d['eer']:.2%} | "
                     f"{d['far_at_chosen']:.3%} / {d['frr_at_chosen']:.2%} |")
    return "\n".join(lines) + "\n"


def _plot(genuine: np.ndarray, impostor: np.ndarray, r: VerificationResult, path: Path) -> None:
    """Distance histograms of genuine and impostor pairs with the chosen threshold, and the ROC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist, roc) = plt.subplots(1, 2, figsize=(10, 4))
    bins = np.linspace(0.0, max(1.2, float(impostor.max())), 80)
    hist.hist(impostor, bins, density=True, alpha=0.6, label=f"impostor ({impostor.size})")
    hist.hist(genuine, bins, density=True, alpha=0.6, label=f"genuine ({genuine.size})")
    hist.axvline(r.chosen_threshold, color="k", ls="--", label=f"threshold {r.chosen_threshold:.3f}")
    hist.set_xlabel("embedding distance")
    hist.set_title("pair distances")
    hist.legend(fontsize="small")
    t = np.sort(np.r_[genuine, impostor])
    far = np.searchsorted(np.sort(impostor), t, side="right") / impostor.size
    tar = np.searchsorted(np.sort(genuine), t, side="right") / genuine.size
    roc.semilogx(np.clip(far, 1e-5, 1), tar)
    roc.axvline(0.001, color="grey", ls=":")
    roc.axvline(0.01, color="grey", ls=":")
    roc.set_xlabel("FAR (impostor accepted)")
    roc.set_ylabel("TAR (genuine accepted)")
    roc.set_title(f"ROC, EER {r.eer:.2%}")
    roc.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
