"""State dicts in safetensors files (`.safetensors`), single or sharded
(`*.safetensors.index.json`), loaded into the module --arch builds.

The format is a JSON header and raw tensor bytes: reading it runs nothing, whoever wrote it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gradflow.errors import SourceError
from gradflow.loaders._text import describe, shorten
from gradflow.loaders.base import LoadedModel, LoadOptions
from gradflow.loaders.registry import register
from gradflow.loaders.state_dict import load_into_arch

INDEX_SUFFIX = ".safetensors.index.json"


@register(
    "safetensors",
    form=".safetensors state dict, or its shards' .safetensors.index.json (with --arch)",
    extensions=(".safetensors",),
    takes_arch=True,
)
def load_safetensors(spec: str, options: LoadOptions) -> LoadedModel:
    """Read every tensor (all shards of an index) and load them strictly into `arch`."""
    path = Path(spec).expanduser()
    if path.name.endswith(INDEX_SUFFIX):
        state_dict = _read_shards(path, spec)
    else:
        state_dict = read_file(path, spec)
    if options.arch is None:
        raise SourceError(
            f"{spec} is a state dict ({len(state_dict)} tensors) and holds no code: pass --arch "
            "with the code that builds the model (file.py[:NAME], package.module:NAME or "
            "timm:NAME)"
        )
    return load_into_arch(state_dict, spec, options.arch, options.seed, format="safetensors")


def read_file(path: Path, spec: str) -> dict[str, Any]:
    """Every tensor in one safetensors file, on the CPU."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # SafetensorError and OSError; the header is checked before any data
        raise SourceError(
            f"cannot read safetensors file {spec}: its header or data is truncated or corrupt, "
            f"or it is not a safetensors file ({describe(e)})"
        ) from e


def _read_shards(index: Path, spec: str) -> dict[str, Any]:
    """The tensors of every shard an index's `weight_map` names, each key from its own shard."""
    weight_map = _weight_map(index, spec)
    folder = index.parent.resolve()
    state_dict: dict[str, Any] = {}
    for shard in sorted(set(weight_map.values())):
        file = (folder / shard).resolve()
        if file.parent != folder:
            raise SourceError(
                f"{spec}: shard {shard!r} is not a file beside the index; an index names its "
                "shards by file name"
            )
        if not file.is_file():
            raise SourceError(f"{spec}: shard {shard} is missing (not found beside the index)")
        tensors = read_file(file, f"{spec} (shard {shard})")
        wanted = [key for key, name in weight_map.items() if name == shard]
        absent = [key for key in wanted if key not in tensors]
        if absent:
            raise SourceError(
                f"{spec}: shard {shard} lacks {len(absent)} tensor(s) the index puts there "
                f"({shorten(absent, 4)}); was it saved completely?"
            )
        state_dict.update({key: tensors[key] for key in wanted})
    return state_dict


def _weight_map(index: Path, spec: str) -> dict[str, str]:
    try:
        document = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(f"cannot read safetensors index {spec}: {describe(e)}") from e
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not (
        isinstance(weight_map, dict)
        and weight_map
        and all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items())
    ):
        raise SourceError(
            f"{spec} is not a safetensors index: it needs a \"weight_map\" from tensor names to "
            "shard files"
        )
    return weight_map
