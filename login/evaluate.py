"""Verification accuracy of the face embedder on identity-labelled real faces, and the match threshold.

Faces: the bona fide images of NUAA (``subject``) and Replay-Attack (``group`` = client) from their
``index.csv``. Genuine pairs are two images of one person from different sessions (NUAA) or different
videos (Replay-Attack), so near-identical frames of one clip do not inflate the numbers; impostor pairs are
two people of the same data set (harder than pairs across data sets, whose cameras differ). The threshold is
the login-like template distance at FAR 0.1 % in the data set where that is strictest: dlib's model separates
the (East Asian) NUAA subjects less well than the Replay-Attack clients, and one pooled threshold would let
NUAA impostors in far more often than the pooled FAR says.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from time import perf_counter, process_time

import cv2
import numpy as np

from ..runtime.detector import DetectorOptions, FaceDetector
from ..runtime.errors import SourceError
from ..runtime.manifest import sha256_of
from .embedding import MODEL_CARD, FaceEmbedder, ModelCard, _models_dir
from .verify import FrameLimits

SOURCES = {"nuaa": ("subject", "session"), "replayattack": ("group", "video")}
TARGET_FARS = (0.01, 0.001)


@dataclass(frozen=True)
class LabelledFace:
    dataset: str
    identity: str
    capture: str  # session or video: genuine pairs must come from different captures
    path: Path


@dataclass(frozen=True)
class Protocol:
    """One way of comparing faces: counts, EER, TAR at FAR 1 % / 0.1 % (accept iff distance <= threshold)."""

    genuine: int
    impostor: int
    eer: float
    eer_threshold: float
    tar_at_far_1: float
    threshold_far_1: float
    tar_at_far_01: float
    threshold_far_01: float
    far_at_chosen: float = float("nan")
    frr_at_chosen: float = float("nan")


@dataclass(frozen=True)
class VerificationResult:
    """Single image pairs, login-like templates (5 enrolled vs 2 probe images), per data set, and the
    chosen threshold: the template distance at FAR 0.1 % (the comparison a login makes) of the data set that
    needs the strictest one, so that no population covered here gets a looser threshold than that."""

    faces: int
    identities: int
    no_face: int
    ms_per_face: float
    cpu_ms_per_face: float
    pairs: Protocol
    templates: Protocol
    chosen_threshold: float
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


def _template_distances(faces: list[LabelledFace], vectors: np.ndarray, enrol: int, probe: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances as the login computes them: up to ``enrol`` images of one capture are a user's enrolment,
    up to ``probe`` images of another capture a login burst (median over the probe of the closest enrolled).
    Genuine: same person, other capture; impostor: another person of the same data set."""
    from .verify import match_distance

    captures: dict[tuple[str, str, str], list[int]] = {}
    for i, f in enumerate(faces):
        captures.setdefault((f.dataset, f.identity, f.capture), []).append(i)
    keys = sorted(captures)
    genuine, impostor = [], []
    for a in keys:
        enrolled = vectors[captures[a][:: max(1, len(captures[a]) // enrol)][:enrol]]
        for b in keys:
            if b == a or b[0] != a[0] or (b[1] == a[1] and b[2] == a[2]):
                continue
            d = match_distance(vectors[captures[b][-probe:]], enrolled)
            (genuine if b[1] == a[1] else impostor).append(d)
    return np.array(genuine), np.array(impostor)


def _rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(FAR, FRR) when a pair is accepted iff its distance <= threshold."""
    return float(np.mean(impostor <= threshold)), float(np.mean(genuine > threshold))


def _threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The largest distance threshold whose FAR is <= ``far`` (just below the k-th smallest impostor)."""
    d = np.sort(impostor)
    k = int(np.floor(far * d.size))
    return float(np.nextafter(d[k], -np.inf)) if k < d.size else float(d[-1])


def protocol(genuine: np.ndarray, impostor: np.ndarray, chosen: float | None = None) -> Protocol:
    """EER (the train metrics' convention: label 1 = genuine, score = -distance) and TAR at each FAR."""
    from ..train.metrics import eer

    y = np.r_[np.ones(genuine.size, int), np.zeros(impostor.size, int)]
    rate, t = eer(y, -np.r_[genuine, impostor])
    at = {}
    for far, key in zip(TARGET_FARS, ("1", "01")):
        th = _threshold_at_far(impostor, far)
        at[f"tar_at_far_{key}"] = 1.0 - _rates(genuine, impostor, th)[1]
        at[f"threshold_far_{key}"] = th
    far_c, frr_c = _rates(genuine, impostor, chosen) if chosen is not None else (float("nan"),) * 2
    return Protocol(int(genuine.size), int(impostor.size), rate, -t, far_at_chosen=far_c, frr_at_chosen=frr_c, **at)


def embed_all(faces: list[LabelledFace], embedder: FaceEmbedder, detector: FaceDetector,
              progress: bool = True) -> tuple[list[LabelledFace], np.ndarray, tuple[float, float], int]:
    """Embed the largest face of each image; images without a face are counted and left out. Returns the
    faces kept, their embeddings, (wall, CPU) ms per embedding, and the number left out."""
    from tqdm import tqdm

    kept, vectors, seconds, cpu, missing = [], [], 0.0, 0.0, 0
    for face in tqdm(faces, desc="embedding", unit="img", disable=not progress):
        image = cv2.imread(str(face.path), cv2.IMREAD_COLOR)
        found = detector.detect(image) if image is not None else []
        if not found:
            missing += 1
            continue
        best = max(found, key=lambda f: f.width * f.height)
        t0, c0 = perf_counter(), process_time()
        vectors.append(embedder.embed(image, best.box))
        seconds += perf_counter() - t0
        cpu += process_time() - c0
        kept.append(face)
    n = max(len(kept), 1)
    return kept, np.array(vectors, np.float32), (1e3 * seconds / n, 1e3 * cpu / n), missing


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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "embeddings.npz", vectors=vectors, dataset=np.array([f.dataset for f in kept]),
                        identity=np.array([f.identity for f in kept]), capture=np.array([f.capture for f in kept]))
    limits = FrameLimits()
    gen_t, imp_t = _template_distances(kept, vectors, limits.embed_enrol, limits.embed_login)
    per_set = {}
    for name in SOURCES:
        rows = [i for i, f in enumerate(kept) if f.dataset == name]
        if rows:
            per_set[name] = _template_distances([kept[i] for i in rows], vectors[rows], limits.embed_enrol,
                                                limits.embed_login)
    chosen = min(_threshold_at_far(m, 0.001) for g, m in per_set.values() if g.size and m.size)
    gen_idx, imp_idx = _pairs(kept)
    dist = lambda p: np.linalg.norm(vectors[p[:, 0]] - vectors[p[:, 1]], axis=1)  # noqa: E731
    genuine, impostor = dist(gen_idx), dist(imp_idx)
    per_dataset = {}
    for name, (g_t, m_t) in per_set.items():
        g = np.array([kept[i].dataset == name for i in gen_idx[:, 0]], bool)
        m = np.array([kept[i].dataset == name for i in imp_idx[:, 0]], bool)
        if g.any() and m.any() and g_t.size and m_t.size:
            per_dataset[name] = {"pairs": asdict(protocol(genuine[g], impostor[m], chosen)),
                                 "templates": asdict(protocol(g_t, m_t, chosen))}
    result = VerificationResult(
        faces=len(kept), identities=len({f.identity for f in kept}), no_face=missing, ms_per_face=ms[0], cpu_ms_per_face=ms[1],
        pairs=protocol(genuine, impostor, chosen), templates=protocol(gen_t, imp_t, chosen),
        chosen_threshold=chosen, per_dataset=per_dataset,
    )
    (out / "verification.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    (out / "verification.md").write_text(markdown(result))
    _plot(genuine, impostor, gen_t, imp_t, result, out / "verification.png")
    return result


def card_with(result: VerificationResult, card: ModelCard) -> ModelCard:
    """The model card carrying this evaluation's threshold, the sha256 of the files measured and the numbers."""
    folder = _models_dir()
    summary = {k: v for k, v in asdict(result).items() if k != "per_dataset"}
    return replace(card, recognition_sha256=sha256_of(folder / card.recognition_file),
                   landmarks_sha256=sha256_of(folder / card.landmarks_file),
                   threshold=round(result.chosen_threshold, 4), evaluation=summary)


def markdown(r: VerificationResult) -> str:
    lines = [f"{r.faces} faces of {r.identities} people ({r.no_face} images without a detected face left out); "
             f"{r.cpu_ms_per_face:.1f} ms of CPU per face (landmarks + embedding, 1 thread; "
             f"{r.ms_per_face:.1f} ms wall time on this machine's load); "
             f"chosen threshold {r.chosen_threshold:.3f} (template distance at FAR 0.1 % in the strictest data set).", "",
             "| protocol | genuine | impostor | EER | TAR @ FAR 1 % | TAR @ FAR 0.1 % | FAR / FRR at the chosen threshold |",
             "|---|---|---|---|---|---|---|"]
    rows = [("all, image pairs", r.pairs), ("all, templates (5 enrolled, 2 probe)", r.templates)]
    for name, d in r.per_dataset.items():
        rows += [(f"{name}, image pairs", Protocol(**d["pairs"])), (f"{name}, templates", Protocol(**d["templates"]))]
    for name, p in rows:
        lines.append(f"| {name} | {p.genuine} | {p.impostor} | {p.eer:.2%} | {p.tar_at_far_1:.2%} "
                     f"(d <= {p.threshold_far_1:.3f}) | {p.tar_at_far_01:.2%} (d <= {p.threshold_far_01:.3f}) | "
                     f"{p.far_at_chosen:.3%} / {p.frr_at_chosen:.2%} |")
    return "\n".join(lines) + "\n"


def _plot(genuine: np.ndarray, impostor: np.ndarray, gen_t: np.ndarray, imp_t: np.ndarray,
          r: VerificationResult, path: Path) -> None:
    """Distance histograms of genuine and impostor pairs with the chosen threshold, and both ROCs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist, roc) = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = np.linspace(0.0, max(1.2, float(impostor.max())), 80)
    hist.hist(impostor, bins, density=True, alpha=0.5, label=f"impostor pairs ({impostor.size})")
    hist.hist(genuine, bins, density=True, alpha=0.5, label=f"genuine pairs ({genuine.size})")
    hist.hist(imp_t, bins, density=True, histtype="step", lw=1.5, label=f"impostor templates ({imp_t.size})")
    hist.hist(gen_t, bins, density=True, histtype="step", lw=1.5, label=f"genuine templates ({gen_t.size})")
    hist.axvline(r.chosen_threshold, color="k", ls="--", label=f"threshold {r.chosen_threshold:.3f}")
    hist.set_xlabel("embedding distance")
    hist.set_title("distances")
    hist.legend(fontsize="x-small")
    for name, g, m, p in (("image pairs", genuine, impostor, r.pairs), ("templates", gen_t, imp_t, r.templates)):
        t = np.sort(np.r_[g, m])
        far = np.searchsorted(np.sort(m), t, side="right") / m.size
        tar = np.searchsorted(np.sort(g), t, side="right") / g.size
        roc.semilogx(np.clip(far, 1e-5, 1), tar, label=f"{name}, EER {p.eer:.2%}")
    for x in TARGET_FARS:
        roc.axvline(x, color="grey", ls=":")
    roc.set_xlabel("FAR (impostor accepted)")
    roc.set_ylabel("TAR (genuine accepted)")
    roc.set_title("ROC")
    roc.legend(fontsize="small")
    roc.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
