"""Hugging Face models: a directory as `save_pretrained` writes it (config.json beside
model.safetensors, its shards' index, or pytorch_model.bin), or a Hub id `hf:ORG/NAME`.

The class comes from the config's `architectures` (else its `model_type`, through AutoModel) and
is built with `from_pretrained`. config.json is read as JSON before anything else: a config that
asks for custom code (`auto_map`) is refused without `--trust`, before transformers sees it, so
no code from the directory or the Hub repository runs. The probe for such a model comes from
its config (gradflow.loaders.config_inputs).
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

from gradflow.errors import SourceError
from gradflow.loaders._code import seed_rng
from gradflow.loaders._quiet import quiet_libraries
from gradflow.loaders._text import describe
from gradflow.loaders.base import LoadedModel, LoadOptions
from gradflow.loaders.registry import register

PREFIX = "hf:"
CONFIG = "config.json"
# A Hub repository id: NAME or ORG/NAME.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*)?")


@register(
    "huggingface",
    form="Hugging Face model directory or hf:ORG/NAME",
    builds_on_meta=True,
)
def load_huggingface(spec: str, options: LoadOptions) -> LoadedModel:
    """`from_pretrained` on the directory or Hub id, with the class its config names; with
    `meta`, the class built from the config alone (no weights read)."""
    transformers = _transformers(spec)
    location, config_file, where = _locate(spec)
    config = _read_config(config_file, spec)
    custom = config.get("auto_map")
    if custom is not None and not options.trust:
        raise SourceError(
            f"{spec}: its config.json asks for custom code (auto_map: {_custom_ref(custom)}), "
            f"and loading it runs Python code from {where}: pass --trust if you trust where it "
            "came from"
        )
    seed_rng(options.seed)  # weights the files lack (a new head) are drawn from torch's RNG
    try:
        with quiet_libraries():
            if custom is not None:
                module = _build_custom(transformers, config, location, options.meta)
            else:
                module = _build(transformers, _model_class(transformers, config, spec), location,
                                options.meta)
    except SourceError:
        raise
    except Exception as e:
        raise SourceError(f"cannot load the Hugging Face model {spec}: {describe(e)}") from e
    return LoadedModel(module=module, source=spec, format="huggingface")


def _transformers(spec: str) -> Any:
    try:
        import transformers
    except ImportError as e:
        raise SourceError(f"{spec} is a Hugging Face model: it needs pip install transformers") from e
    return transformers


def _locate(spec: str) -> tuple[str, Path, str]:
    """(what from_pretrained is given, the config file, where code would come from)."""
    if not spec.startswith(PREFIX):
        folder = Path(spec).expanduser()
        return str(folder), folder / CONFIG, f"the directory {spec}"
    repo = spec[len(PREFIX) :]
    if not HUB_ID.fullmatch(repo):
        raise SourceError(f"{spec}: {repo!r} is not a Hugging Face Hub id (hf:ORG/NAME)")
    return repo, _hub_config(repo, spec), f"the Hub repository {repo}"


def _hub_config(repo: str, spec: str) -> Path:
    """The repository's config.json from the local cache, or downloaded when there is network."""
    import huggingface_hub
    from huggingface_hub import errors

    try:
        with quiet_libraries():
            return Path(huggingface_hub.hf_hub_download(repo, CONFIG))
    except errors.RepositoryNotFoundError as e:
        raise SourceError(
            f"{spec}: no such model on the Hugging Face Hub, or it is private or gated "
            "(log in with `hf auth login` for those)"
        ) from e
    except errors.EntryNotFoundError as e:  # LocalEntryNotFoundError too: offline, not cached
        if huggingface_hub.constants.HF_HUB_OFFLINE:
            raise SourceError(
                f"{spec} is not in the local Hugging Face cache, and HF_HUB_OFFLINE is set so it "
                "cannot be downloaded: download it once with network, or give its directory"
            ) from e
        raise SourceError(
            f"{spec}: cannot get its config.json from the Hugging Face Hub or the local cache "
            f"({describe(e)}); without network the model must already be in the cache"
        ) from e
    except Exception as e:
        raise SourceError(f"{spec}: cannot get its config.json ({describe(e)})") from e


def _read_config(path: Path, spec: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(f"cannot read {CONFIG} of {spec}: {describe(e)}") from e
    if not isinstance(config, dict):
        raise SourceError(f"{CONFIG} of {spec} is not a JSON object: not a Hugging Face config")
    return config


def _model_class(transformers: Any, config: dict[str, Any], spec: str) -> Any:
    """The transformers class `architectures[0]` names, or AutoModel for a config with only a
    `model_type`. Only a PreTrainedModel subclass is accepted, whatever the config says."""
    architectures = config.get("architectures")
    if not architectures:
        if not isinstance(config.get("model_type"), str):
            raise SourceError(
                f"{CONFIG} of {spec} names no model class (\"architectures\") and no "
                "\"model_type\": is it a Hugging Face model config?"
            )
        return transformers.AutoModel
    if not (isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)):
        raise SourceError(f"{CONFIG} of {spec}: \"architectures\" must be a list of class names")
    name = architectures[0]
    try:
        cls = getattr(transformers, name, None)
    except Exception:  # transformers' lazy import of the class failed
        cls = None
    if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
        return cls
    message = (
        f"{CONFIG} of {spec} names the model class {name!r}, which transformers "
        f"{transformers.__version__} does not have"
    )
    close = difflib.get_close_matches(name, [n for n in dir(transformers) if n[:1].isupper()], n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    raise SourceError(message + "; a newer transformers may have it")


def _build(transformers: Any, cls: Any, location: str, meta: bool) -> Any:
    if not meta:
        return cls.from_pretrained(location)
    config = transformers.AutoConfig.from_pretrained(location)
    if cls is transformers.AutoModel:
        return cls.from_config(config)
    return cls(config)


def _build_custom(transformers: Any, config: dict[str, Any], location: str, meta: bool) -> Any:
    """The model class the config's auto_map names, with its code (trusted by the user)."""
    auto = getattr(transformers, _auto_class(config))
    if meta:
        built = transformers.AutoConfig.from_pretrained(location, trust_remote_code=True)
        return auto.from_config(built, trust_remote_code=True)
    return auto.from_pretrained(location, trust_remote_code=True)


def _auto_class(config: dict[str, Any]) -> str:
    """The auto_map entry for the class `architectures[0]` names, else AutoModel."""
    auto_map = config.get("auto_map") or {}
    architectures = config.get("architectures") or []
    wanted = architectures[0] if architectures and isinstance(architectures[0], str) else None
    models = {
        key: value
        for key, value in auto_map.items()
        if isinstance(key, str) and key.startswith("AutoModel") and isinstance(value, str)
    }
    for key, value in models.items():
        if value.rpartition(".")[2] == wanted:
            return key
    return "AutoModel" if "AutoModel" in models or not models else next(iter(models))


def _custom_ref(auto_map: Any) -> str:
    """The code a config's auto_map points at, for the message: `modeling_x.Class`."""
    if isinstance(auto_map, dict):
        for value in auto_map.values():
            if isinstance(value, str):
                return value
            if isinstance(value, list) and value and isinstance(value[0], str):
                return value[0]
    return "custom code"
