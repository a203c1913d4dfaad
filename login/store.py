"""Database tables (SQLAlchemy 2): users, their face embeddings, login/enrolment attempts and nonces.

SQLite by default (one file), PostgreSQL by URL for several app servers on one database: rate limits and
nonces live here, not in a process, so they hold across workers. ``create_tables`` is the one
create-tables step (idempotent); there are no migrations yet, the schema is version 1.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import (Boolean, DateTime, Float, ForeignKey, Integer, LargeBinary, String, create_engine,
                        delete, func, select)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from ..runtime.errors import UsageError


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    embeddings: Mapped[list["Embedding"]] = relationship(back_populates="user", cascade="all, delete-orphan")


class Embedding(Base):
    __tablename__ = "embeddings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian, 128 values
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    user: Mapped[User] = relationship(back_populates="embeddings")


class Attempt(Base):
    """Every enrolment and login try, accepted or not: the rate limits count these."""

    __tablename__ = "attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(8))  # login | enrol
    username: Mapped[str] = mapped_column(String(64), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    decision: Mapped[str] = mapped_column(String(8))  # accepted | refused
    reason: Mapped[str] = mapped_column(String(32))
    liveness: Mapped[float | None] = mapped_column(Float, nullable=True)  # lowest P(real) over the burst
    match: Mapped[float | None] = mapped_column(Float, nullable=True)  # embedding distance
    ms: Mapped[float | None] = mapped_column(Float, nullable=True)


class Nonce(Base):
    """A server-issued, single-use, expiring token that ties one burst of frames to one attempt."""

    __tablename__ = "nonces"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the token: tokens are not stored
    purpose: Mapped[str] = mapped_column(String(8))
    username: Mapped[str] = mapped_column(String(64))
    expires: Mapped[datetime] = mapped_column(DateTime, index=True)
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    client: Mapped[str] = mapped_column(String(64), default="")


def database_url(db: str | None, url: str | None) -> str:
    """``--db FILE`` (SQLite) or ``--db-url URL``; exactly one."""
    if bool(db) == bool(url):
        raise UsageError("give exactly one of --db FILE (SQLite) or --db-url URL (e.g. postgresql+psycopg://...)")
    if url:
        return url
    return f"sqlite:///{Path(db).resolve()}"


def open_engine(url: str) -> Engine:
    """An engine; SQLite gets foreign keys switched on so deleting a user deletes its embeddings."""
    from sqlalchemy import event

    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _fk(conn, _record) -> None:  # noqa: ANN001 - DBAPI connection
            conn.execute("PRAGMA foreign_keys=ON")

    return engine


def create_tables(engine: Engine) -> None:
    Base.metadata.create_all(engine)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def vector_bytes(v: np.ndarray) -> bytes:
    return np.asarray(v, "<f4").tobytes()


def vectors_of(user: User) -> np.ndarray:
    return np.stack([np.frombuffer(e.vector, "<f4") for e in user.embeddings])


# Refusals that cost the server no model run and prove nothing about the face: counting them would let anyone
# lock a user out (or keep a lock alive) with junk requests naming that user.
NOT_COUNTED = ("bad_frames", "expired", "too_many_attempts", "bad_username")


def recent_failures(session: Session, since: datetime, username: str | None = None, client: str | None = None) -> int:
    """Refused attempts since ``since`` for a username or a client address (junk requests not counted)."""
    q = select(func.count(Attempt.id)).where(Attempt.time >= since, Attempt.decision == "refused",
                                             Attempt.reason.not_in(NOT_COUNTED))
    if username is not None:
        q = q.where(Attempt.username == username)
    if client is not None:
        q = q.where(Attempt.client == client)
    return int(session.scalar(q) or 0)


def outstanding_nonces(session: Session, now: datetime, username: str | None = None, client: str | None = None) -> int:
    """Nonces issued and not yet used or expired: attempts that may run at once, so they count against the limit
    (otherwise thirty nonces fetched first could be spent in parallel before the first failure is recorded)."""
    q = select(func.count(Nonce.digest)).where(Nonce.used.is_(False), Nonce.expires >= now)
    if username is not None:
        q = q.where(Nonce.username == username)
    if client is not None:
        q = q.where(Nonce.client == client)
    return int(session.scalar(q) or 0)


def purge_nonces(session: Session, now: datetime) -> None:
    """Expired nonces are useless: keep the table small."""
    session.execute(delete(Nonce).where(Nonce.expires < now - timedelta(minutes=5)))


def list_users(engine: Engine) -> list[tuple[str, int, datetime]]:
    """(username, number of embeddings, created) for the admin command."""
    with Session(engine) as s:
        rows = s.execute(
            select(User.username, func.count(Embedding.id), User.created)
            .outerjoin(Embedding).group_by(User.id).order_by(User.username)
        )
        return [(u, int(n), c) for u, n, c in rows]


def delete_user(engine: Engine, username: str) -> bool:
    """Delete a user and (cascade) its embeddings; False if there was no such user."""
    with Session(engine) as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            return False
        s.delete(user)
        s.commit()
        return True
