"""Bind and run: the checks made before anything is loaded (the host, the token), the socket
(port 0 picks a free one, printed before serving), and uvicorn until SIGINT / SIGTERM."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from metagui.core.errors import ConfigError

TOKEN_ENV = "METAGUI_SERVE_TOKEN"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def resolve_token(given: str | None) -> str:
    """``--token``, else METAGUI_SERVE_TOKEN, else "" (no token)."""
    token = given if given is not None else os.environ.get(TOKEN_ENV, "")
    return token.strip()


def check_host(host: str, token: str) -> None:
    """A host other machines can reach needs a token."""
    from metagui.serve.deployment import loopback

    if not loopback(host) and not token:
        raise ConfigError(f"--host {host} can be reached from other machines: give --token TOKEN (or set "
                          f"{TOKEN_ENV}) so that clients must send it, or serve on 127.0.0.1")


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(deployment, host: str, port: int, token: str, max_body: int | None = None) -> int:
    """Serve ``deployment`` until interrupted; prints one line with the address first."""
    import uvicorn

    from metagui.serve.app import MAX_BODY_BYTES, create_app

    app = create_app(deployment, token, max_body or MAX_BODY_BYTES)
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    s = deployment.session
    adapted = f"adapted to {len(s.adaptation.names)} intents" if s.adaptation else "not adapted yet (POST /adapt)"
    print(f"metagui: serving run {deployment.run_id} on http://{shown}:{actual} "
          f"({'support set restored' if deployment.restored else 'new support set'}, {adapted}; "
          f"{'bearer token required' if token else 'no token'}; OpenAPI at /docs)", flush=True)
    if deployment.note:
        print(f"metagui: {deployment.note}", file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        deployment.close()
        sock.close()
    return 0


def deployment_for(target: str, db: str | Path | None, start: str, threshold: float | None,
                   encoder: str | None = None):
    """A run id or a ``.metagui`` bundle -> a Deployment (and the card it shows)."""
    from metagui.serve.deployment import Deployment, bundle_run

    if target.isdigit():
        from metagui.core.store import default_db_path

        path = Path(db) if db else default_db_path()
        if not path.is_file():
            raise ConfigError(f"there is no run store at {path}: give --db, or serve a .metagui bundle")
        run_id, card = int(target), None
    else:
        from metagui.core.export import open_bundle

        p = Path(target)
        if not p.exists():
            raise ConfigError(f"{target} is neither a run id (see `metagui runs`) nor a bundle file")
        card = open_bundle(p, encoder).card  # checked before anything is written
        run_id, imported = bundle_run(db, p, encoder)
        if imported:
            print(f"metagui: {p.name} is run {run_id} in the store now (its feedback and support set are kept there)",
                  file=sys.stderr, flush=True)
    return Deployment(db, run_id, start=start, threshold=threshold, card=card)


class ThreadedServer:
    """``serve`` in a thread of this process (tests, embedding): ``start()`` returns once it
    listens; ``url``; ``stop()``."""

    def __init__(self, deployment, host: str = DEFAULT_HOST, port: int = 0, token: str = "",
                 max_body: int | None = None) -> None:
        import threading

        import uvicorn

        from metagui.serve.app import MAX_BODY_BYTES, create_app

        check_host(host, token)
        self.deployment = deployment
        self.app = create_app(deployment, token, max_body or MAX_BODY_BYTES)
        self.sock = bind(host, port)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="metagui-serve")

    def start(self, timeout: float = 30.0) -> ThreadedServer:
        import time

        self.thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > end:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
        self.deployment.close()
