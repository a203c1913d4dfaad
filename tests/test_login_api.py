"""The face login app through Flask's test client, on SQLite and on a real PostgreSQL that the tests start.

Frames are the shipped samples (artifacts/samples): the live face T1 enrols and logs in, the printed photo
F1 and the screen replay F2 (the same person as T1, so only liveness stands between them and a login) must
be refused. Every test runs on both databases; PostgreSQL skips with a reason when its binaries are absent.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flask")
pytest.importorskip("sqlalchemy")
pytest.importorskip("dlib", reason="needs the [login] extra (dlib-bin)")
pytest.importorskip("face_recognition_models", reason="needs the [login] extra (face-recognition-models)")

import cv2  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from liveness_edge.login import app as login_app  # noqa: E402
from liveness_edge.login.app import LoginConfig, create_app  # noqa: E402
from liveness_edge.login.bench import jpeg_burst, webcam_frame  # noqa: E402
from liveness_edge.login.store import Attempt, Base, Embedding, User, open_engine, vector_bytes  # noqa: E402
from liveness_edge.login.verify import Verifier  # noqa: E402
from liveness_edge.runtime.manifest import ARTIFACTS_DIR  # noqa: E402

SAMPLES = ARTIFACTS_DIR / "samples"
REAL, PRINT, SCREEN = SAMPLES / "real" / "image_T1.jpg", SAMPLES / "spoof" / "image_F1.jpg", SAMPLES / "spoof" / "image_F2.jpg"


def _encode(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def two_faces(n: int) -> list[bytes]:
    half = webcam_frame(cv2.imread(str(REAL)), 320, 480)
    return [_encode(np.hstack([half, half]))] * n


def no_face(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [_encode(cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), np.uint8), (31, 31), 0))] * n


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier.load()


def _pg_binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """A throw-away PostgreSQL cluster on a unix socket in a temp dir (as user postgres when run as root)."""
    bindir = _pg_binaries()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (Debian package postgresql) are not installed")
    pytest.importorskip("psycopg", reason="needs psycopg from the [login] extra")
    tmp = Path(tempfile.mkdtemp(prefix="login-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root without a postgres user to run initdb as")
        shutil.chown(tmp, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data, sock = tmp / "data", tmp
    user = "postgres" if run_as else os.environ.get("USER", "postgres")
    subprocess.run(run_as + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "--no-sync"],
                   check=True, capture_output=True)
    options = f"-k {sock} -c listen_addresses='' -c fsync=off"
    subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(tmp / "log"),
                             "start"], check=True, capture_output=True)
    try:
        subprocess.run(run_as + [str(bindir / "createdb"), "-h", str(sock), "-U", user, "login"], check=True,
                       capture_output=True)
        yield f"postgresql+psycopg://{user}@/login?host={sock}"
    finally:
        subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'login.sqlite'}"
    url = request.getfixturevalue("postgres_url")
    engine = open_engine(url)
    Base.metadata.drop_all(engine)  # each test starts from empty tables
    engine.dispose()
    return url


class Browser:
    """What the page's script does: read the CSRF token, ask for a nonce, post the burst."""

    def __init__(self, app) -> None:  # noqa: ANN001 - flask app
        self.client = app.test_client()
        self.refresh()

    def refresh(self) -> None:
        """Read the CSRF token from a page (a login starts a new session, with a new token)."""
        page = self.client.get("/login").get_data(as_text=True)
        self.csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    def nonce(self, purpose: str, username: str) -> dict:
        r = self.client.post("/api/nonce", data={"purpose": purpose, "username": username},
                             headers={"X-CSRF-Token": self.csrf})
        return r.get_json()

    def send(self, purpose: str, username: str, frames: list[bytes], nonce: str | None = None,
             password: str = "") -> tuple[int, dict]:
        if nonce is None:
            nonce = self.nonce(purpose, username)["nonce"]
        data = {"username": username, "nonce": nonce, "password": password,
                "frames": [(io.BytesIO(b), f"f{i}.jpg") for i, b in enumerate(frames)]}
        r = self.client.post(f"/api/{purpose}", data=data, headers={"X-CSRF-Token": self.csrf},
                             content_type="multipart/form-data")
        return r.status_code, r.get_json()


def make(db_url: str, verifier: Verifier, **overrides: object) -> tuple[object, Browser]:
    app = create_app(replace(LoginConfig(db_url=db_url), **overrides), verifier)
    return app, Browser(app)


def reasons(app) -> list[str]:  # noqa: ANN001
    with Session(app.extensions["liveness_login"]["engine"]) as s:
        return [a.reason for a in s.scalars(select(Attempt).order_by(Attempt.id))]


def test_enrol_then_login(db_url: str, verifier: Verifier) -> None:
    app, b = make(db_url, verifier)
    status, body = b.send("enrol", "alice", jpeg_burst(REAL, 10))
    assert (status, body["ok"]) == (200, True), body
    with Session(app.extensions["liveness_login"]["engine"]) as s:
        user = s.scalar(select(User).where(User.username == "alice"))
        assert len(user.embeddings) == 5
    status, body = b.send("login", "alice", jpeg_burst(REAL, 10))
    assert (status, body["ok"], body["redirect"]) == (200, True, "/welcome"), body
    assert "alice" in b.client.get("/welcome").get_data(as_text=True)
    with Session(app.extensions["liveness_login"]["engine"]) as s:
        last = s.scalars(select(Attempt).order_by(Attempt.id.desc())).first()
        assert (last.decision, last.kind, last.client) == ("accepted", "login", "127.0.0.1")
        assert last.match is not None and last.match <= verifier.threshold and last.liveness >= 0.5


@pytest.mark.parametrize("spoof", [PRINT, SCREEN], ids=["print", "screen"])
def test_spoof_refused_without_leaking_scores(db_url: str, verifier: Verifier, spoof: Path) -> None:
    app, b = make(db_url, verifier)
    assert b.send("enrol", "alice", jpeg_burst(REAL, 10))[1]["ok"]
    status, body = b.send("login", "alice", jpeg_burst(spoof, 10))
    assert (status, body["ok"], body["reason"]) == (401, False, "not_live")
    assert set(body) == {"ok", "reason", "message"}
    assert b.send("enrol", "mallory", jpeg_burst(spoof, 10))[1]["reason"] == "not_live"
    assert b.client.get("/welcome").status_code == 302


def test_no_face_and_two_faces(db_url: str, verifier: Verifier) -> None:
    app, b = make(db_url, verifier)
    assert b.send("enrol", "alice", no_face(10))[1]["reason"] == "no_face"
    assert b.send("enrol", "alice", two_faces(10))[1]["reason"] == "several_faces"
    assert b.send("enrol", "alice", jpeg_burst(REAL, 10))[1]["ok"]
    assert b.send("login", "alice", two_faces(10))[1]["reason"] == "several_faces"
    assert b.send("login", "alice", no_face(10))[1]["reason"] == "no_face"
    assert reasons(app) == ["no_face", "several_faces", "ok", "several_faces", "no_face"]


def test_wrong_person(db_url: str, verifier: Verifier, shared_data: Path) -> None:
    """Bob is a Replay-Attack client, enrolled from his own live frame; the live T1 face must not open his account."""
    import csv

    rows = [r for r in csv.DictReader(open(shared_data / "replayattack" / "index.csv")) if r["label"] == "real"]
    image = cv2.imread(str(shared_data / "replayattack" / rows[0]["file"]))
    face = verifier.pipeline.detector.detect(image)[0]
    app, b = make(db_url, verifier)
    with Session(app.extensions["liveness_login"]["engine"]) as s:
        s.add(User(username="bob", embeddings=[Embedding(vector=vector_bytes(verifier.embedder.embed(image, face.box)))]))
        s.commit()
    status, body = b.send("login", "bob", jpeg_burst(REAL, 10))
    assert (status, body["reason"]) == (401, "not_same_person")
    assert b.send("login", "nobody", jpeg_burst(REAL, 10))[1]["message"] == body["message"]  # no user enumeration


def test_nonce_expires_and_is_single_use(db_url: str, verifier: Verifier, monkeypatch) -> None:
    app, b = make(db_url, verifier, nonce_ttl_s=30)
    assert b.send("enrol", "alice", jpeg_burst(REAL, 10))[1]["ok"]
    late = b.nonce("login", "alice")["nonce"]
    real_now = login_app.utcnow
    monkeypatch.setattr(login_app, "utcnow", lambda: real_now() + timedelta(seconds=31))  # the server's clock
    assert b.send("login", "alice", jpeg_burst(REAL, 10), nonce=late)[1]["reason"] == "expired"
    monkeypatch.setattr(login_app, "utcnow", real_now)
    used = b.nonce("login", "alice")["nonce"]
    assert b.send("login", "alice", jpeg_burst(REAL, 10), nonce=used)[1]["ok"]
    b.refresh()
    assert b.send("login", "alice", jpeg_burst(REAL, 10), nonce=used)[1]["reason"] == "expired"
    other = b.nonce("login", "mallory")["nonce"]  # a nonce is bound to its username and purpose
    assert b.send("login", "alice", jpeg_burst(REAL, 10), nonce=other)[1]["reason"] == "expired"
    assert b.send("login", "alice", jpeg_burst(REAL, 10), nonce="forged")[1]["reason"] == "expired"


def test_rate_limits_per_user_and_per_client(db_url: str, verifier: Verifier) -> None:
    app, b = make(db_url, verifier, max_failures_user=2, max_failures_client=3)
    assert b.send("enrol", "alice", jpeg_burst(REAL, 10))[1]["ok"]
    for _ in range(2):
        assert b.send("login", "alice", jpeg_burst(PRINT, 10))[1]["reason"] == "not_live"
    assert b.nonce("login", "alice")["reason"] == "too_many_attempts"
    assert b.send("login", "bob", jpeg_burst(PRINT, 10))[1]["reason"] == "not_live"  # 3rd failure of this client
    status, body = b.send("login", "carol", jpeg_burst(REAL, 10), nonce="x")
    assert (status, body["reason"]) == (429, "too_many_attempts")
    other = create_app(LoginConfig(db_url=db_url, max_failures_user=2), verifier)  # a second worker, same DB
    assert Browser(other).nonce("login", "alice")["reason"] == "too_many_attempts"


def test_open_nonces_count_against_the_limit_and_junk_locks_nobody_out(db_url: str, verifier: Verifier) -> None:
    """Nonces fetched ahead could be spent in parallel before any failure is recorded: they count as attempts.
    Requests that run no model (bad frames, spent nonces) do not count, so they cannot lock a user out."""
    app, b = make(db_url, verifier, max_failures_user=3, max_failures_client=50)
    held = [b.nonce("login", "alice") for _ in range(5)]
    assert [h.get("reason") for h in held] == [None, None, None, "too_many_attempts", "too_many_attempts"]
    for h in held[:3]:
        assert b.send("login", "alice", [b"not an image"] * 6, nonce=h["nonce"])[1]["reason"] == "bad_frames"
    for _ in range(5):
        assert b.send("login", "alice", [b"junk"] * 6)[1]["reason"] == "bad_frames"
    assert "nonce" in b.nonce("login", "alice")


def test_unknown_users_and_wrong_passwords_read_as_a_wrong_face(db_url: str, verifier: Verifier) -> None:
    app, b = make(db_url, verifier)
    assert b.send("enrol", "alice", jpeg_burst(REAL, 10), password="s3cret")[1]["ok"]
    b.refresh()
    answers = [b.send("login", user, jpeg_burst(REAL, 10), password=pw)[1]["reason"]
               for user, pw in (("nobody", ""), ("alice", "wrong"))]
    assert answers == ["not_same_person", "not_same_person"]
    assert reasons(app)[-2:] == ["unknown_user", "bad_password"]  # the truth stays in the attempts table


def test_csrf_cookies_and_limits(db_url: str, verifier: Verifier) -> None:
    app, b = make(db_url, verifier)
    assert b.client.post("/api/nonce", data={"purpose": "login", "username": "alice"}).status_code == 400
    assert b.client.post("/api/nonce", data={"purpose": "login", "username": "alice"},
                         headers={"X-CSRF-Token": "wrong"}).status_code == 400
    assert b.client.post("/logout").status_code == 400
    fresh = app.test_client().get("/login")
    cookie = fresh.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert b.send("login", "alice", jpeg_burst(REAL, 11))[1]["reason"] == "bad_frames"
    assert b.send("login", "alice", jpeg_burst(REAL, 2))[1]["reason"] == "bad_frames"
    assert b.send("login", "alice", [b"not an image"] * 6)[1]["reason"] == "bad_frames"
    huge = _encode(np.zeros((2200, 2200, 3), np.uint8))
    assert b.send("login", "alice", [huge] * 6)[1]["reason"] == "bad_frames"
    assert b.nonce("login", "../etc")["reason"] == "bad_username"
    health = b.client.get("/health").get_json()
    assert (health["status"], health["database"]) == ("ok", "ok")
