"""``liveness-login`` admin commands, errors, and the verification evaluation's pieces."""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from liveness_edge.login.cli import main  # noqa: E402
from liveness_edge.login.evaluate import LabelledFace, _pairs, _threshold_at_far, protocol  # noqa: E402
from liveness_edge.login.store import Embedding, User, open_engine, vector_bytes  # noqa: E402
from liveness_edge.login.verify import _spread, match_distance  # noqa: E402


def test_users_list_and_delete_removes_embeddings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "login.sqlite"
    assert main(["init-db", "--db", str(db)]) == 0
    engine = open_engine(f"sqlite:///{db}")
    with Session(engine) as s:
        for name in ("alice", "bob"):
            s.add(User(username=name, embeddings=[Embedding(vector=vector_bytes(np.full(128, i, np.float32)))
                                                  for i in range(3)]))
        s.commit()
    capsys.readouterr()
    assert main(["users", "list", "--db", str(db)]) == 0
    out = capsys.readouterr()
    assert [line.split("\t")[:2] for line in out.out.splitlines()] == [["alice", "3 embeddings"], ["bob", "3 embeddings"]]
    assert main(["users", "delete", "alice", "--db", str(db)]) == 0
    assert capsys.readouterr().err == "deleted alice and its embeddings\n"
    with Session(engine) as s:
        assert s.scalar(select(func.count(Embedding.id))) == 3
        assert s.scalars(select(User.username)).all() == ["bob"]
    assert main(["users", "delete", "alice", "--db", str(db)]) == 2
    assert capsys.readouterr().err.strip() == "liveness-login: error: no user named 'alice'"


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["init-db", "--db", str(tmp_path / "no" / "such" / "dir" / "x.sqlite")]) == 12
    err = capsys.readouterr().err
    assert err.startswith("liveness-login: error: ") and err.count("\n") == 1
    assert main(["users", "list"]) == 2
    assert "exactly one of --db" in capsys.readouterr().err
    assert main(["serve", "--demo", "--db", str(tmp_path / "x.sqlite")]) == 2
    assert "--demo" in capsys.readouterr().err
    for bad in (["--port", "99999"], ["--nonce-ttl", "nan"], ["--max-failures-user", "-1"], ["--window", "0"]):
        assert main(["serve", "--demo", *bad]) == 2, bad  # refused before any model is loaded
        err = capsys.readouterr().err
        assert err.startswith("liveness-login: error: ") and err.count("\n") == 1, (bad, err)


def test_pairs_and_rates() -> None:
    faces = [LabelledFace("d", p, c, Path(f"{p}{c}{i}")) for p in "ab" for c in "12" for i in range(2)]
    genuine, impostor = _pairs(faces)
    ident = [f.identity for f in faces]
    capture = [f.capture for f in faces]
    assert all(ident[i] == ident[j] and capture[i] != capture[j] for i, j in genuine)
    assert all(ident[i] != ident[j] for i, j in impostor)
    assert (len(genuine), len(impostor)) == (8, 16)
    rng = np.random.default_rng(1)
    imp = rng.uniform(0.5, 1.0, 5000)
    gen = rng.uniform(0.0, 0.45, 500)
    p = protocol(gen, imp, chosen=0.47)
    assert p.eer == 0.0 and p.tar_at_far_01 == 1.0 and p.far_at_chosen == 0.0 and p.frr_at_chosen == 0.0
    th = _threshold_at_far(imp, 0.01)
    assert np.mean(imp <= th) <= 0.01 < np.mean(imp <= np.nextafter(th, 2) + 1e-3)
    overlap = protocol(rng.uniform(0.3, 0.7, 500), imp)
    assert 0.0 < overlap.eer < 0.5 and overlap.tar_at_far_01 < overlap.tar_at_far_1


def test_match_distance_and_frame_picks() -> None:
    enrolled = np.eye(3, dtype=np.float32)
    probe = np.array([[1, 0, 0], [0, 1, 0.1], [5, 5, 5]], np.float32)
    assert match_distance(probe, enrolled) == pytest.approx(0.1)
    assert _spread(10, 2) == [4, 9] and _spread(3, 5) == [0, 1, 2] and _spread(10, 1) == [9]


@pytest.mark.slow
def test_evaluate_on_replayattack_subset(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Six Replay-Attack clients (symlinked, not copied): the command writes its report and a sane table."""
    pytest.importorskip("dlib", reason="needs the [login] extra (dlib-bin)")
    source = shared_data / "replayattack"
    rows = [r for r in csv.DictReader(open(source / "index.csv")) if r["label"] == "real"]
    clients = sorted({r["group"] for r in rows})[:6]
    root = tmp_path / "data" / "replayattack"
    (root / "real").mkdir(parents=True)
    kept = [r for r in rows if r["group"] in clients]
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(kept)
    for r in kept:
        (root / r["file"]).symlink_to(source / r["file"])
    out = tmp_path / "out"
    assert main(["evaluate", str(tmp_path / "data"), "--out", str(out)]) == 0
    result = json.loads((out / "verification.json").read_text())
    assert result["identities"] == 6 and result["faces"] + result["no_face"] == len(kept)
    assert result["pairs"]["genuine"] > 0 and result["templates"]["impostor"] > 0
    assert 0.0 <= result["pairs"]["eer"] <= 0.2
    assert (out / "verification.png").stat().st_size > 10_000
    assert "| all, image pairs |" in capsys.readouterr().out


def test_model_card_sha_mismatch_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("dlib", reason="needs the [login] extra (dlib-bin)")
    pytest.importorskip("face_recognition_models", reason="needs the [login] extra")
    from liveness_edge.login.embedding import FaceEmbedder, ModelCard
    from liveness_edge.runtime.errors import ModelError

    card = replace(ModelCard.load(), recognition_sha256="0" * 64)
    with pytest.raises(ModelError, match="sha256 does not match"):
        FaceEmbedder(card)


def test_defaults_bind_locally_and_logs_are_json() -> None:
    import logging

    from liveness_edge.login.app import JsonFormatter
    from liveness_edge.login.cli import build_parser

    args = build_parser().parse_args(["serve", "--demo"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    record = logging.LogRecord("liveness_edge.login", logging.INFO, __file__, 1, "login refused", None, None)
    record.fields = {"username": "alice", "reason": "not_live", "match": None}
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["event"], entry["reason"], entry["level"]) == ("login refused", "not_live", "INFO")


def test_frames_are_sized_from_their_header_before_decoding() -> None:
    import struct

    import cv2

    from liveness_edge.login.verify import FrameLimits, decode_frame
    from liveness_edge.runtime.images import image_size

    image = np.zeros((480, 640, 3), np.uint8)
    for ext, extra in ((".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", [])):
        data = cv2.imencode(ext, image, extra)[1].tobytes()
        assert image_size(data) == (640, 480) and decode_frame(data, FrameLimits()).shape == (480, 640, 3)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    assert image_size(bomb) == (30000, 30000) and decode_frame(bomb, FrameLimits()) is None
    assert decode_frame(cv2.imencode(".bmp", image)[1].tobytes(), FrameLimits()) is None
    assert decode_frame(cv2.imencode(".jpg", image)[1].tobytes()[:200], FrameLimits()) is None


def test_a_face_that_jumps_mid_burst_is_not_one_track() -> None:
    """A burst whose face moves across the frame between two frames (a swapped picture, two people taking
    turns) is refused as unclear; the same face held still is accepted."""
    pytest.importorskip("dlib", reason="needs the [login] extra (dlib-bin)")
    pytest.importorskip("face_recognition_models", reason="needs the [login] extra")
    import cv2

    from liveness_edge.login.bench import LIVE_SAMPLE, webcam_frame
    from liveness_edge.login.verify import Verifier

    half = webcam_frame(cv2.imread(str(LIVE_SAMPLE)), 320, 480)
    left, right = np.zeros((480, 640, 3), np.uint8), np.zeros((480, 640, 3), np.uint8)
    left[:, :320], right[:, 320:] = half, half
    verifier = Verifier.load()
    assert verifier.check([left] * 5 + [right] * 5, 2).reason == "unclear"
    still = verifier.check([left] * 10, 2)
    assert still.reason == "ok" and still.embeddings.shape == (2, 128)


def test_face_models_load_from_the_bytes_that_were_checked(tmp_path: Path) -> None:
    """dlib loads from a path: a file swapped right after the sha256 check must not be what it loads."""
    import hashlib

    from liveness_edge.login.embedding import _load_verified

    model = tmp_path / "model.dat"
    model.write_bytes(b"the checked model")

    def swap_then_load(path: str) -> bytes:
        model.write_bytes(b"an attacker's model")  # the original path changes under the loader
        return Path(path).read_bytes()

    loaded = _load_verified(swap_then_load, model, hashlib.sha256(b"the checked model").hexdigest())
    assert loaded == b"the checked model"
