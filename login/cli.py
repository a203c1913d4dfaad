"""``liveness-login``: serve the face login app, create its tables, manage users, measure the face matcher.

    liveness-login serve --db login.sqlite            # http://127.0.0.1:8000, tables created on first start
    liveness-login serve --demo                       # temporary database, deleted on exit
    liveness-login init-db --db-url postgresql+psycopg://user@/dbname?host=/run/postgresql
    liveness-login users list --db login.sqlite
    liveness-login users delete NAME --db login.sqlite
    liveness-login evaluate DATA_ROOT --out DIR [--write-card]
    liveness-login latency
"""
from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path

from ..runtime.errors import BackendUnavailable, LivenessEdgeError, UsageError, run_cli, signals_deferred

PROG = "liveness-login"


class DatabaseError(LivenessEdgeError):
    """The database cannot be opened, created or queried (wrong URL, server down, no permission)."""

    exit_code = 12


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Face login with a liveness check (Flask + SQLAlchemy).")
    p.add_argument("--debug", action="store_true", help="re-raise errors with their traceback")
    sub = p.add_subparsers(dest="command", required=True)

    def db_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--db", help="SQLite database file (created on first start)")
        q.add_argument("--db-url", help="SQLAlchemy URL instead, e.g. postgresql+psycopg://user:pw@127.0.0.1/login")

    serve = sub.add_parser("serve", help="run the web app")
    db_args(serve)
    serve.add_argument("--demo", action="store_true", help="use a temporary SQLite database, deleted on exit")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--secure-cookies", action="store_true", help="mark cookies Secure (when served over HTTPS)")
    serve.add_argument("--nonce-ttl", type=float, default=30.0, help="seconds a capture nonce stays valid")
    serve.add_argument("--max-failures-user", type=int, default=5, help="refused attempts per username per window")
    serve.add_argument("--max-failures-client", type=int, default=20, help="refused attempts per client address per window")
    serve.add_argument("--window", type=float, default=900.0, help="rate-limit window in seconds")

    init = sub.add_parser("init-db", help="create the tables (idempotent)")
    db_args(init)

    users = sub.add_parser("users", help="list or delete enrolled users")
    users_sub = users.add_subparsers(dest="action", required=True)
    db_args(users_sub.add_parser("list", help="username, embeddings, enrolment time"))
    delete = users_sub.add_parser("delete", help="delete a user and its embeddings")
    delete.add_argument("username")
    db_args(delete)

    ev = sub.add_parser("evaluate", help="verification accuracy of the face embedder and its threshold")
    ev.add_argument("data", help="data root holding nuaa/index.csv and/or replayattack/index.csv")
    ev.add_argument("--out", required=True, help="folder for verification.json/.md/.png")
    ev.add_argument("--write-card", action="store_true",
                    help="also write the chosen threshold and sha256 into the package's face_model.json")

    lat = sub.add_parser("latency", help="time a login decision on a burst of 640x480 frames")
    lat.add_argument("--frames", type=int, default=10)
    lat.add_argument("--repeats", type=int, default=20)
    return p


def _engine(args: argparse.Namespace):  # noqa: ANN202 - sqlalchemy Engine, imported lazily
    from sqlalchemy.exc import SQLAlchemyError

    from .store import create_tables, database_url, open_engine

    engine = open_engine(database_url(args.db, args.db_url))
    try:
        create_tables(engine)
    except SQLAlchemyError as e:
        raise DatabaseError(f"cannot open the database: {str(e.orig if hasattr(e, 'orig') else e).strip()}") from e
    return engine


def _configure_logging() -> None:
    from .app import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("liveness_edge.login")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _stop(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import run_simple

    from .app import SECRET_ENV, LoginConfig, create_app
    from .verify import Verifier

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1-65535, not {args.port}")
    with tempfile.TemporaryDirectory(prefix="liveness-login-") as tmp:
        if args.demo:
            if args.db or args.db_url:
                raise UsageError("--demo uses a temporary database: leave out --db/--db-url")
            args.db = str(Path(tmp) / "demo.sqlite")
        engine = _engine(args)
        engine.dispose()
        from .store import database_url

        secret = os.environ.get(SECRET_ENV) or secrets.token_hex(32)
        try:
            config = LoginConfig(db_url=database_url(args.db, args.db_url), secret_key=secret,
                                 nonce_ttl_s=args.nonce_ttl, window_s=args.window,
                                 max_failures_user=args.max_failures_user,
                                 max_failures_client=args.max_failures_client, secure_cookies=args.secure_cookies)
        except ValueError as e:
            raise UsageError(str(e)) from e
        _configure_logging()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # requests are logged as JSON by the app
        with signals_deferred():
            verifier = Verifier.load()  # fail now, not at the first request, if a model is missing
        signal.signal(signal.SIGTERM, _stop)  # a normal stop: leave the with-block so --demo's database is removed
        app = create_app(config, verifier)
        where = "a temporary database" if args.demo else (args.db or "the database URL")
        print(f"{PROG}: serving on http://{args.host}:{args.port} with {where} (Ctrl-C stops)", file=sys.stderr)
        run_simple(args.host, args.port, app, threaded=True)
    return 0


def init_db(args: argparse.Namespace) -> int:
    _engine(args).dispose()
    print("tables ready", file=sys.stderr)
    return 0


def users(args: argparse.Namespace) -> int:
    from .store import delete_user, list_users

    engine = _engine(args)
    if args.action == "list":
        rows = list_users(engine)
        for name, n, created in rows:
            print(f"{name}\t{n} embeddings\tenrolled {created:%Y-%m-%d %H:%M:%S} UTC")
        print(f"{len(rows)} user{'s' if len(rows) != 1 else ''}", file=sys.stderr)
        return 0
    if not delete_user(engine, args.username):
        raise UsageError(f"no user named {args.username!r}")
    print(f"deleted {args.username} and its embeddings", file=sys.stderr)
    return 0


def evaluate_cmd(args: argparse.Namespace) -> int:
    from .embedding import MODEL_CARD, ModelCard
    from .evaluate import card_with, evaluate, markdown

    result = evaluate(args.data, args.out)
    print(markdown(result))
    if args.write_card:
        card_with(result, ModelCard.load()).save(MODEL_CARD)
        print(f"threshold {result.chosen_threshold:.4f} written to {MODEL_CARD.name}", file=sys.stderr)
    return 0


def latency_cmd(args: argparse.Namespace) -> int:
    from .bench import measure_latency

    r = measure_latency(args.frames, args.repeats)
    print(f"login decision on {r.frames} frames of 640x480 (decode + liveness + {r.embedded} embeddings + match): "
          f"median {r.median_ms:.0f} ms, p90 {r.p90_ms:.0f} ms over {r.repeats} runs (CPU time {r.cpu_median_ms:.0f} ms); "
          f"liveness alone median {r.liveness_median_ms:.0f} ms, one embedding {r.embed_median_ms:.0f} ms; "
          f"decision {r.decision}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"serve": serve, "init-db": init_db, "users": users, "evaluate": evaluate_cmd, "latency": latency_cmd}

    def body() -> int:
        try:
            from sqlalchemy.exc import SQLAlchemyError
        except ModuleNotFoundError as e:
            raise BackendUnavailable(f"{e.name} is not installed: pip install -e '.[login]'") from e
        try:
            return commands[args.command](args)
        except SQLAlchemyError as e:
            raise DatabaseError(f"database error: {str(getattr(e, 'orig', None) or e).splitlines()[0]}") from e
        except ModuleNotFoundError as e:
            raise BackendUnavailable(f"{e.name} is not installed: pip install -e '.[login]'") from e

    return run_cli(PROG, body, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
