"""A state dict loaded into the module that --arch builds, whatever wrapper saved it.

Training code often saves the state dict of a wrapper rather than of the model: DDP and
DataParallel prefix every key with `module.`, torch.compile with `_orig_mod.`, a Lightning
module with the attribute that holds the model (`model.`), and a Lightning module may hold more
than the model (a loss with weights). The keys are matched against the module --arch builds
under one prefix mapping: strip a prefix from the checkpoint's keys (keeping only the keys that
have it), or add one. The mapping is taken only when it makes the key sets equal; otherwise the
error shows the closest mapping and the keys it leaves missing and unexpected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gradflow.errors import SourceError
from gradflow.loaders._text import one_line, shorten
from gradflow.loaders.base import LoadedModel

# How many of the model's keys anchor the search for prefix mappings when none fits exactly.
_ANCHORS = 16


@dataclass(frozen=True)
class PrefixMapping:
    """Checkpoint key `k` -> model key `add + k[len(strip):]`, for the keys that start with
    `strip`."""

    strip: str = ""
    add: str = ""

    def apply(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        return {
            self.add + key[len(self.strip) :]: value
            for key, value in state_dict.items()
            if key.startswith(self.strip)
        }

    def describe(self) -> str:
        parts = [f"strip {self.strip!r}"] if self.strip else []
        parts += [f"add {self.add!r}"] if self.add else []
        return " and ".join(parts) or "keys as saved"


def load_into_arch(
    state_dict: Mapping[str, Any], spec: str, arch: str, seed: int | None, *, format: str
) -> LoadedModel:
    """Build `arch`, map the checkpoint's keys onto it and load them strictly.

    Raises:
        SourceError: `arch` cannot build a module, no prefix mapping makes the keys match, or a
            tensor's shape differs from the model's.
    """
    from gradflow.loaders import load_module

    try:
        built = load_module(arch, seed=seed)
    except SourceError as e:
        message = str(e)  # name --arch once, where the message does not begin with it already
        raise SourceError(f"--arch {message if message.startswith(arch) else f'{arch}: {message}'}") from e
    module = built.module
    expected = module.state_dict()
    mapping = match(state_dict, expected, spec, arch)
    if mapping is None:
        raise SourceError(mismatch(state_dict, expected, spec, arch))
    mapped = mapping.apply(state_dict)
    wrong = [
        f"{k} {list(mapped[k].shape)} vs {list(expected[k].shape)}"
        for k in expected
        if mapped[k].shape != expected[k].shape
    ]
    if wrong:
        raise SourceError(
            f"state dict in {spec} does not fit --arch {arch}: shape mismatch "
            f"(checkpoint vs model) for {shorten(wrong, 4)}"
        )
    try:
        module.load_state_dict(mapped, strict=True)
    except Exception as e:
        raise SourceError(
            f"loading the state dict in {spec} into --arch {arch} failed: {one_line(str(e))}"
        ) from e
    return LoadedModel(module=module, source=spec, format=format, example_input=built.example_input)


def match(
    state_dict: Mapping[str, Any], expected: Mapping[str, Any], spec: str, arch: str
) -> PrefixMapping | None:
    """The mapping under which the checkpoint's keys are exactly the model's: the keys as saved
    if they are, else the one candidate that fits, else None.

    Raises:
        SourceError: several mappings fit (a checkpoint holding two copies of the model, say,
            or --arch a part that occurs twice); which is meant cannot be told.
    """
    wanted = set(expected)
    if set(state_dict) == wanted:
        return PrefixMapping()
    anchor = next(iter(expected), None)
    fitting = [
        mapping
        for mapping in candidates(state_dict, [] if anchor is None else [anchor])
        if set(mapping.apply(state_dict)) == wanted
    ]
    if len(fitting) > 1:
        shown = shorten([m.describe() for m in fitting], 3)
        raise SourceError(
            f"state dict in {spec} fits --arch {arch} under {len(fitting)} prefix mappings "
            f"({shown}): it holds the model more than once; save the state dict of the model "
            "itself"
        )
    return fitting[0] if fitting else None


def candidates(state_dict: Mapping[str, Any], anchors: Iterable[str]) -> list[PrefixMapping]:
    """Prefix mappings that turn some checkpoint key into one of the model keys `anchors`, at a
    boundary between dotted names; the keys as saved first."""
    found = {PrefixMapping()}
    for anchor in anchors:
        for key in state_dict:
            if key.endswith("." + anchor):
                found.add(PrefixMapping(strip=key[: -len(anchor)]))
            elif anchor.endswith("." + key):
                found.add(PrefixMapping(add=anchor[: -len(key)]))
    return sorted(found, key=lambda m: (bool(m.strip or m.add), m.strip, m.add))


def closest(state_dict: Mapping[str, Any], expected: Mapping[str, Any]) -> PrefixMapping:
    """The mapping that matches the most model keys (the keys as saved on a tie)."""
    keys = list(expected)
    step = max(1, len(keys) // _ANCHORS)
    wanted = set(keys)
    best, best_score = PrefixMapping(), -1
    for mapping in candidates(state_dict, keys[::step][:_ANCHORS]):
        score = len(set(mapping.apply(state_dict)) & wanted)
        if score > best_score:
            best, best_score = mapping, score
    return best


def mismatch(
    state_dict: Mapping[str, Any], expected: Mapping[str, Any], spec: str, arch: str
) -> str:
    """The one-line error for keys that no mapping matches: the keys missing and unexpected
    under the closest mapping, which is named when it is not the keys as saved."""
    mapping = closest(state_dict, expected)
    mapped = mapping.apply(state_dict)
    missing = [k for k in expected if k not in mapped]
    unexpected = [k for k in mapped if k not in expected]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} ({shorten(missing)})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} ({shorten(unexpected)})")
    message = f"state dict in {spec} does not match --arch {arch}: keys " + "; ".join(parts)
    if mapping.strip or mapping.add:
        matched = len(expected) - len(missing)
        message += (
            f"; closest prefix mapping: {mapping.describe()} ({matched} of {len(expected)} "
            "model keys match)"
        )
    return message
