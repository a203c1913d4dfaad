"""The Flask app: enrol and login pages, the JSON endpoints their script posts to, and /health.

Security choices, in one place: a CSRF token per session checked on every POST; session cookies
HttpOnly + SameSite=Strict (+ Secure when served over TLS); the CSRF token compared in constant time, nonces
looked up by their sha256 digest and spent atomically; uploads capped by Flask's MAX_CONTENT_LENGTH and per
frame by ``FrameLimits``; failed attempts counted in the database per username and per client address.
Only reason codes reach the browser.
"""
from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

from flask import Flask, abort, jsonify, redirect, render_template, request, session, url_for
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .store import (Attempt, Embedding, Nonce, User, create_tables, open_engine, outstanding_nonces, purge_nonces,
                    recent_failures,
                    token_digest, utcnow, vector_bytes, vectors_of)
from .verify import OK, BurstResult, FrameLimits, Verifier, consistent, decode_frame, match_distance

log = logging.getLogger("liveness_edge.login")
SECRET_ENV = "LIVENESS_LOGIN_SECRET_KEY"  # the same session-signing key on every server of one database
DB_URL_ENV = "LIVENESS_LOGIN_DB_URL"
USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
MESSAGES = {
    "ok": "Done.",
    "no_face": "No face was seen. Look at the camera in good light.",
    "several_faces": "More than one face was seen. Only the person logging in may be in view.",
    "not_live": "The face did not pass the liveness check (photos and screens are refused).",
    "unclear": "The face was not clear enough (too small, too dark, blurred, cut by the edge, or moving too much).",
    "not_same_person": "The face does not match this user.",
    "too_many_attempts": "Too many attempts. Wait a while and try again.",
    "expired": "The capture took too long or was already used. Try again.",
    "bad_frames": "The upload was not a valid burst of camera frames.",
    "taken": "This username is already enrolled.",
    "bad_username": "Usernames are 1-64 letters, digits, dots, dashes or underscores.",
    "inconsistent": "The face changed during the capture. Enrol alone, facing the camera.",
}
# What a client is told: an unknown user and a wrong password read as a wrong face (the attempts table keeps the truth)
ANSWERED_AS = {"unknown_user": "not_same_person", "bad_password": "not_same_person"}


@dataclass(frozen=True)
class LoginConfig:
    """Everything the app needs besides the models. Rates: at most ``max_failures_*`` refused attempts per
    ``window_s``; nonces live ``nonce_ttl_s`` seconds."""

    db_url: str
    secret_key: str = field(default_factory=lambda: secrets.token_hex(32))
    nonce_ttl_s: float = 30.0
    window_s: float = 900.0
    max_failures_user: int = 5
    max_failures_client: int = 20
    secure_cookies: bool = False
    limits: FrameLimits = field(default_factory=FrameLimits)

    def __post_init__(self) -> None:
        if not 0 < self.nonce_ttl_s <= 3600 or not 0 < self.window_s <= 7 * 86400:  # NaN fails both
            raise ValueError("nonce TTL must be in (0, 3600] s and the rate-limit window in (0, 7 days]")
        if self.max_failures_user < 1 or self.max_failures_client < 1:
            raise ValueError("the failure limits must be at least 1 (0 or less would lock everyone out)")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, event and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": round(record.created, 3), "level": record.levelname, "event": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry)


class Refused(Exception):
    """Ends a try with a reason code for the page; the burst and match distance, if any, go to the database."""

    def __init__(self, reason: str, status: int, burst: BurstResult | None = None, match: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status, self.burst, self.match = reason, status, burst, match


def valid_username(name: str) -> bool:
    return 0 < len(name) <= 64 and set(name) <= USERNAME_CHARS


def _client() -> str:
    """The peer address. Behind a reverse proxy, configure ProxyFix so this is the real client, not the proxy."""
    return (request.remote_addr or "unknown")[:64]


def _csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _check_csrf() -> None:
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
    if not sent or not hmac.compare_digest(sent.encode(), session.get("csrf", "").encode()):
        abort(400, "missing or wrong CSRF token")


def create_app(config: LoginConfig, verifier: Verifier | Callable[[], Verifier]) -> Flask:
    """The app on ``config.db_url`` (tables created if missing). ``verifier`` may be a factory, called once."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=config.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=1),
        MAX_CONTENT_LENGTH=config.limits.max_upload_bytes,
    )
    limits = config.limits
    engine = open_engine(config.db_url)
    create_tables(engine)
    state: dict[str, Verifier] = {"v": verifier} if isinstance(verifier, Verifier) else {}

    def get_verifier() -> Verifier:
        if "v" not in state:
            state["v"] = verifier if isinstance(verifier, Verifier) else verifier()
        return state["v"]

    def record(s: Session, kind: str, username: str, reason: str, burst: BurstResult | None = None,
               match: float | None = None) -> None:
        decision = "accepted" if reason == OK else "refused"
        s.add(Attempt(kind=kind, username=username, client=_client(), decision=decision, reason=reason,
                      liveness=burst.p_real_min if burst else None, match=match, ms=burst.ms if burst else None))
        s.commit()
        log.info(f"{kind} {decision}", extra={"fields": {
            "username": username, "client": _client(), "reason": reason, "match": match,
            "liveness": burst.p_real_min if burst else None, "ms": round(burst.ms, 1) if burst else None}})

    def limited(s: Session, username: str, own: int = 0) -> bool:
        """Recent refusals plus nonces still open (attempts that could run at once; ``own`` of them is the
        request's own) reach a limit."""
        now, client = utcnow(), _client()
        since = now - timedelta(seconds=config.window_s)
        return (recent_failures(s, since, username=username) + outstanding_nonces(s, now, username=username) - own
                >= config.max_failures_user
                or recent_failures(s, since, client=client) + outstanding_nonces(s, now, client=client) - own
                >= config.max_failures_client)

    def answer(reason: str, status: int = 200, **extra: object):
        return jsonify(ok=reason == OK, reason=reason, message=MESSAGES[reason], **extra), status

    def open_nonce(purpose: str, username: str) -> tuple | None:
        """The conditions matching this request's nonce while it is valid: issued for this purpose and user,
        unused, unexpired. Only its sha256 is stored and looked up, so the lookup's timing says nothing about it."""
        token = request.form.get("nonce", "")
        if not token or len(token) > 128:
            return None
        return (Nonce.digest == token_digest(token), Nonce.used.is_(False), Nonce.purpose == purpose,
                Nonce.username == username, Nonce.expires >= utcnow())

    def take_nonce(s: Session, purpose: str, username: str) -> bool:
        """True once per valid nonce. One atomic UPDATE, so two workers racing with the same nonce cannot both win."""
        valid = open_nonce(purpose, username)
        if valid is None:
            return False
        done = s.execute(update(Nonce).where(*valid).values(used=True))
        s.commit()
        return done.rowcount == 1

    one_burst = threading.Lock()

    def frames_of(max_frames: int) -> list | None:
        uploads = request.files.getlist("frames")
        if not limits.min_frames <= len(uploads) <= max_frames:
            return None
        frames = [decode_frame(u.stream.read(limits.max_frame_bytes + 1), limits) for u in uploads]
        return None if any(f is None for f in frames) else frames

    @app.before_request
    def _csrf() -> None:
        _csrf_token()
        if request.method == "POST":
            _check_csrf()

    @app.before_request
    def _start_clock() -> None:
        request.environ["liveness_login.t0"] = time.perf_counter()

    @app.after_request
    def _headers(response):  # noqa: ANN001 - flask response
        t0 = request.environ.get("liveness_login.t0", time.perf_counter())
        log.info("request", extra={"fields": {"method": request.method, "path": request.path,
                                              "status": response.status_code, "client": _client(),
                                              "ms": round((time.perf_counter() - t0) * 1e3, 1)}})
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:")
        return response

    @app.errorhandler(413)
    def _too_large(_e):  # noqa: ANN001
        return answer("bad_frames", 413)

    @app.get("/")
    def index():
        return render_template("index.html", user=session.get("user"), csrf=_csrf_token())

    @app.get("/enrol")
    def enrol_page():
        return render_template("capture.html", mode="enrol", frames=limits.enrol_frames, csrf=_csrf_token())

    @app.get("/login")
    def login_page():
        return render_template("capture.html", mode="login", frames=limits.login_frames, csrf=_csrf_token())

    @app.get("/welcome")
    def welcome():
        if "user" not in session:
            return redirect(url_for("login_page"))
        return render_template("welcome.html", user=session["user"], csrf=_csrf_token())

    @app.post("/logout")
    def logout():
        session.pop("user", None)
        return redirect(url_for("index"))

    @app.get("/health")
    def health():
        try:
            with engine.connect() as c:
                c.execute(text("SELECT 1"))
            db = "ok"
        except Exception as e:  # noqa: BLE001 - health reports any database failure
            db = f"error: {type(e).__name__}"
        return jsonify(status="ok" if db == "ok" else "degraded", database=db,
                       models_loaded="v" in state), (200 if db == "ok" else 503)

    @app.post("/api/nonce")
    def nonce():
        purpose, username = request.form.get("purpose", ""), request.form.get("username", "")
        if purpose not in ("login", "enrol"):
            abort(400, "purpose must be login or enrol")
        if not valid_username(username):
            return answer("bad_username", 400)
        token = secrets.token_urlsafe(32)
        with Session(engine) as s:
            if limited(s, username):
                return answer("too_many_attempts", 429)
            purge_nonces(s, utcnow())
            s.add(Nonce(digest=token_digest(token), purpose=purpose, username=username, client=_client(),
                        expires=utcnow() + timedelta(seconds=config.nonce_ttl_s)))
            s.commit()
        return jsonify(ok=True, nonce=token, expires_in=config.nonce_ttl_s)

    def gate(s: Session, kind: str, username: str) -> None:
        """Rate limits first (no model runs for a blocked client; the request's own open nonce not counted),
        then the single-use nonce."""
        valid = open_nonce(kind, username)
        own = s.scalar(select(func.count(Nonce.digest)).where(*valid)) if valid is not None else 0
        if limited(s, username, own=int(own or 0)):
            raise Refused("too_many_attempts", 429)
        if not take_nonce(s, kind, username):
            raise Refused("expired", 400)

    def live_burst(kind: str, max_frames: int, embed: int) -> BurstResult:
        with one_burst:  # decoded frames held by one request at a time (the models run one burst at a time anyway)
            frames = frames_of(max_frames)
            if frames is None:
                raise Refused("bad_frames", 400)
            burst = get_verifier().check(frames, embed)
        if not burst.live:
            raise Refused(burst.reason, 401 if kind == "login" else 422, burst)
        return burst

    def attempt(kind: str, decide: Callable[[Session, str], tuple[BurstResult, float | None]]):
        """Run one try; every outcome, accepted or refused, is recorded. None means accepted."""
        username = request.form.get("username", "")
        if not valid_username(username):
            return answer("bad_username", 400)
        with Session(engine) as s:
            try:
                burst, match = decide(s, username)
            except Refused as r:
                record(s, kind, username, r.reason, r.burst, r.match)  # the true reason, for the admin
                return answer(ANSWERED_AS.get(r.reason, r.reason), r.status)
            record(s, kind, username, OK, burst, match)
        return None

    @app.post("/api/enrol")
    def enrol():
        def decide(s: Session, username: str) -> tuple[BurstResult, None]:
            gate(s, "enrol", username)
            burst = live_burst("enrol", limits.enrol_frames, limits.embed_enrol)
            if s.scalar(select(User.id).where(User.username == username)) is not None:
                raise Refused("taken", 409, burst)  # told only after a live face: no free username probing
            if not consistent(burst.embeddings, get_verifier().threshold):
                raise Refused("inconsistent", 422, burst)
            password = request.form.get("password") or None
            user = User(username=username, password_hash=generate_password_hash(password) if password else None)
            user.embeddings = [Embedding(vector=vector_bytes(e)) for e in burst.embeddings]
            s.add(user)
            return burst, None

        return attempt("enrol", decide) or answer(OK)

    unused_hash = generate_password_hash(secrets.token_hex(16))  # checked when a user has none (same time)

    @app.post("/api/login")
    def login():
        def decide(s: Session, username: str) -> tuple[BurstResult, float]:
            gate(s, "login", username)
            burst = live_burst("login", limits.login_frames, limits.embed_login)
            user = s.scalar(select(User).where(User.username == username))
            stored = user.password_hash if user is not None and user.password_hash else unused_hash
            password_ok = check_password_hash(stored, request.form.get("password", "")) or stored is unused_hash
            if user is None or not user.embeddings:  # the password hash ran anyway: no timing tells a user exists
                raise Refused("unknown_user", 401, burst)
            if not password_ok:
                raise Refused("bad_password", 401, burst)
            d = match_distance(burst.embeddings, vectors_of(user))
            if d > get_verifier().threshold:
                raise Refused("not_same_person", 401, burst, d)
            return burst, d

        refused = attempt("login", decide)
        if refused:
            return refused
        session.clear()
        session["user"] = request.form.get("username", "")
        _csrf_token()
        return answer(OK, redirect=url_for("welcome"))

    app.extensions["liveness_login"] = {"engine": engine, "config": config, "verifier": get_verifier,
                                        "started": time.time()}
    return app


def wsgi_app() -> Flask:
    """For a production WSGI server (several workers or hosts on one database), e.g.
    ``gunicorn -w 2 -b 127.0.0.1:8000 'liveness_edge.login.app:wsgi_app()'`` with the database URL in
    ``LIVENESS_LOGIN_DB_URL`` and the shared session key in ``LIVENESS_LOGIN_SECRET_KEY``."""
    import os

    url, key = os.environ.get(DB_URL_ENV), os.environ.get(SECRET_ENV)
    if not url or not key:
        raise RuntimeError(f"set {DB_URL_ENV} and {SECRET_ENV}")
    return create_app(LoginConfig(db_url=url, secret_key=key), Verifier.load)
