"""Where in a Lightning checkpoint a pickled Python object sits, found without unpickling.

`torch.load(weights_only=True)` refuses a checkpoint as soon as it meets a global it may not
load, and says which global, not where. A Lightning checkpoint is a dict whose top-level keys
(`hyper_parameters`, `callbacks`, ...) are pickled just before their values, so the last such
key before the refused global names the part that holds it. The pickle is read with
`pickletools.genops`, which decodes opcodes and runs nothing.
"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path

# The top-level keys of a Lightning checkpoint, in the words the error uses.
_SECTIONS = {
    "hyper_parameters": "hyperparameters",
    "datamodule_hyper_parameters": "datamodule hyperparameters",
    "callbacks": "callback states",
    "optimizer_states": "optimizer states",
    "lr_schedulers": "learning-rate scheduler states",
    "loops": "loop states",
    "state_dict": "state dict",
}
_VERSION_KEY = "pytorch-lightning_version"
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}


def lightning_section(path: Path, refused: str | None) -> str | None:
    """What part of the Lightning checkpoint at `path` holds the global `refused`
    ("module.Name"), in words ("hyperparameters"); "saved objects" when it cannot be told; None
    when `path` is not a Lightning checkpoint (or not a torch.save zip archive)."""
    ops = _pickle_ops(path)
    if ops is None:
        return None
    is_lightning = False
    section: str | None = None
    found: str | None = None
    strings: list[str] = []
    for name, arg in ops:
        if name in _STRINGS and isinstance(arg, str | bytes):
            text = arg.decode("latin-1") if isinstance(arg, bytes) else arg
            is_lightning = is_lightning or text == _VERSION_KEY
            section = text if text in _SECTIONS else section
            strings = [*strings[-1:], text]
        elif name in ("GLOBAL", "STACK_GLOBAL") and found is None:
            qualified = arg.replace(" ", ".") if isinstance(arg, str) else ".".join(strings[-2:])
            if qualified == refused:
                found = section
    if not is_lightning:
        return None
    return _SECTIONS.get(found or "", "saved objects")


def _pickle_ops(path: Path) -> list[tuple[str, object]] | None:
    """The opcodes (name, argument) of the archive's `data.pkl`, or None if there is none."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                return None
            with archive.open(names[0]) as stream:
                return [(op.name, arg) for op, arg, _ in pickletools.genops(stream)]
    except Exception:  # a broken archive: the caller's message stands without the section
        return None
