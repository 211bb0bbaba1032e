"""Probe inputs that a model's own configuration describes: a Hugging Face config, or timm's
`pretrained_cfg`.

Hugging Face (a model with a `config` and a `main_input_name`): keyword inputs drawn in this
order from one generator seeded with the probe's seed:

1. the main input, by name:
   - `input_ids`: ids in [0, high or the text config's vocab_size), shape [batch, L] with
     L = 16, or fewer when the config allows fewer positions;
   - `pixel_values`: normal noise [batch, num_channels, H, W] at the (vision) config's
     image_size (224 when it gives none);
   - `input_features`: normal noise [batch, num_mel_bins, 2 * max_source_positions] (Whisper's
     log-mel frames, the length its encoder requires);
   - `input_values`: normal noise [batch, samples], samples such that the convolutional
     feature encoder (conv_kernel, conv_stride) makes 16 frames;
2. then, when the forward takes them and the config has the part they feed: `input_ids` for a
   text part (`text_config`, as in CLIP), `pixel_values` for a vision part (`vision_config`), and
   `decoder_input_ids` for an encoder-decoder (ids in the decoder's vocabulary, L as above from
   the decoder's positions).

timm (a model with a `pretrained_cfg` giving `input_size`): one positional input, normal noise
[batch, *input_size].

None when the configuration does not describe the inputs; the probe then infers them from the
first layer. Reading a config runs nothing from it.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

SEQUENCE = 16  # token ids and audio frames per sample
IMAGE_SIZE = 224  # pixels a side when a vision config gives no image_size
_POSITION_LIMITS = ("max_position_embeddings", "n_positions", "n_ctx", "max_target_positions")


def config_inputs(model: torch.nn.Module, batch: int, seed: int, high: int | None) -> Any:
    """The probe inputs `model`'s configuration describes: a dict of keyword inputs (Hugging
    Face) or a tuple of one positional input (timm); None when it describes none."""
    config = getattr(model, "config", None)
    main = getattr(model, "main_input_name", None)
    generator = torch.Generator().manual_seed(seed)
    if config is not None and isinstance(main, str) and hasattr(config, "to_dict"):
        return _hugging_face(model, config, main, batch, generator, high)
    return _timm(model, batch, generator)


def _hugging_face(
    model: torch.nn.Module, config: Any, main: str, batch: int, generator: torch.Generator,
    high: int | None,
) -> dict[str, torch.Tensor] | None:
    taken = _parameters(model)
    names = [main]
    for name, needed in (
        ("input_ids", _has(config, "text_config")),
        ("pixel_values", _has(config, "vision_config")),
        ("decoder_input_ids", bool(getattr(config, "is_encoder_decoder", False))),
    ):
        if needed and name != main and name in taken:
            names.append(name)
    inputs = {}
    for name in names:
        value = _draw(name, config, batch, generator, high)
        if value is None:
            return None
        inputs[name] = value
    return inputs


def _draw(
    name: str, config: Any, batch: int, generator: torch.Generator, high: int | None
) -> torch.Tensor | None:
    if name == "input_ids":
        return _token_ids(_text_config(config), batch, generator, high)
    if name == "decoder_input_ids":
        return _token_ids(_decoder_config(config), batch, generator, high)
    if name == "pixel_values":
        return _pixels(_vision_config(config), batch, generator)
    if name == "input_features":
        return _audio_features(_sub(config, "audio_config", "encoder"), batch, generator)
    if name == "input_values":
        return _waveform(_sub(config, "audio_config", "encoder"), batch, generator)
    return None


def _token_ids(
    config: Any, batch: int, generator: torch.Generator, high: int | None
) -> torch.Tensor | None:
    vocab = getattr(config, "vocab_size", None)
    if not (isinstance(vocab, int) and vocab > 0):
        return None
    limits = [getattr(config, a, None) for a in _POSITION_LIMITS]
    length = min([SEQUENCE] + [n for n in limits if isinstance(n, int) and n > 0])
    return torch.randint(0, high or vocab, (batch, length), generator=generator)


def _pixels(config: Any, batch: int, generator: torch.Generator) -> torch.Tensor:
    size = getattr(config, "image_size", None) or IMAGE_SIZE
    height, width = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    channels = getattr(config, "num_channels", None) or 3
    return torch.randn((batch, channels, height, width), generator=generator)


def _audio_features(config: Any, batch: int, generator: torch.Generator) -> torch.Tensor | None:
    bins = getattr(config, "num_mel_bins", None)
    positions = getattr(config, "max_source_positions", None)
    if not (isinstance(bins, int) and isinstance(positions, int)):
        return None
    # Whisper's encoder takes exactly this many frames: two convolutions, the second strided.
    return torch.randn((batch, bins, 2 * positions), generator=generator)


def _waveform(config: Any, batch: int, generator: torch.Generator) -> torch.Tensor | None:
    kernels = getattr(config, "conv_kernel", None)
    strides = getattr(config, "conv_stride", None)
    if not (kernels and strides and len(kernels) == len(strides)):
        return None
    samples = SEQUENCE  # frames out of the last convolution; walk back to samples in
    for kernel, stride in reversed(list(zip(kernels, strides))):
        samples = (samples - 1) * stride + kernel
    return torch.randn((batch, samples), generator=generator)


def _timm(model: torch.nn.Module, batch: int, generator: torch.Generator) -> Any:
    cfg = getattr(model, "pretrained_cfg", None)
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    if not (isinstance(size, tuple | list) and size and all(isinstance(n, int) for n in size)):
        return None
    return (torch.randn((batch, *size), generator=generator),)


def _text_config(config: Any) -> Any:
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def _decoder_config(config: Any) -> Any:
    return _sub(config, "decoder") if _has(config, "decoder") else _text_config(config)


def _vision_config(config: Any) -> Any:
    return _sub(config, "vision_config", "encoder")


def _sub(config: Any, *names: str) -> Any:
    """The first sub-config among `names` that the config has, else the config itself."""
    for name in names:
        part = getattr(config, name, None)
        if part is not None and hasattr(part, "to_dict"):
            return part
    return config


def _has(config: Any, name: str) -> bool:
    return hasattr(getattr(config, name, None), "to_dict")


def _parameters(model: torch.nn.Module) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()
