"""Hugging Face sources: directories written by save_pretrained, hub ids from the local cache, the
probe their config describes, and configs that would run code.

Every model is built from a small config with random weights, offline (HF_HUB_OFFLINE). Each
directory's report must equal `gradflow.inspect` on the same model built in Python, as a user
would (`Class.from_pretrained(directory)`, whose weights are checked against the model that was
saved), with inputs drawn here by the documented recipe (gradflow.loaders.config_inputs), not by
gradflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import ROOT
from tests.loader_helpers import api_report, assert_same_measurement, cli_report, one_line_error

transformers = pytest.importorskip("transformers")
huggingface_hub = pytest.importorskip("huggingface_hub")

BATCH = 8  # the CLI's default batch
VOCAB = 97


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """No network, and a Hugging Face cache of this test's own."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def ids(generator: torch.Generator, length: int = 16) -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, length), generator=generator)


# Each case: a model from a small config, and its probe as the recipe says, drawn in order from
# one generator seeded with the probe's seed (0).
def decoder() -> tuple[Any, Callable[[torch.Generator], dict]]:
    config = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=VOCAB, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config), lambda g: {"input_ids": ids(g)}


def encoder() -> tuple[Any, Callable[[torch.Generator], dict]]:
    config = transformers.BertConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2,
                                     intermediate_size=32, vocab_size=VOCAB, max_position_embeddings=12)
    # 12 positions: the ids are as long as the config allows, 12 of the usual 16
    return transformers.BertModel(config), lambda g: {"input_ids": ids(g, 12)}


def encoder_decoder() -> tuple[Any, Callable[[torch.Generator], dict]]:
    config = transformers.T5Config(vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                   decoder_start_token_id=0)
    return (transformers.T5ForConditionalGeneration(config),
            lambda g: {"input_ids": ids(g), "decoder_input_ids": ids(g)})


def vision() -> tuple[Any, Callable[[torch.Generator], dict]]:
    config = transformers.ViTConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2,
                                    intermediate_size=32, image_size=16, patch_size=8, num_labels=5)
    return (transformers.ViTForImageClassification(config),
            lambda g: {"pixel_values": torch.randn((BATCH, 3, 16, 16), generator=g)})


def speech_seq2seq() -> tuple[Any, Callable[[torch.Generator], dict]]:
    config = transformers.WhisperConfig(
        vocab_size=VOCAB, num_mel_bins=8, encoder_layers=1, decoder_layers=1, d_model=16,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=16, max_target_positions=32, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, decoder_start_token_id=1, suppress_tokens=None, begin_suppress_tokens=None)
    # Whisper's encoder takes exactly 2 * max_source_positions frames
    return (transformers.WhisperForConditionalGeneration(config),
            lambda g: {"input_features": torch.randn((BATCH, 8, 32), generator=g), "decoder_input_ids": ids(g)})


def speech_ctc() -> tuple[Any, Callable[[torch.Generator], dict]]:
    config = transformers.Wav2Vec2Config(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2, mask_time_prob=0.0, layerdrop=0.0)
    # 16 frames out of the two convolutions: (16 - 1) * 2 + 3 = 33 samples into the second,
    # (33 - 1) * 5 + 10 = 170 into the first
    return (transformers.Wav2Vec2ForCTC(config),
            lambda g: {"input_values": torch.randn((BATCH, 170), generator=g)})


def multimodal() -> tuple[Any, Callable[[torch.Generator], dict]]:
    config = transformers.CLIPConfig(
        text_config={"vocab_size": VOCAB, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 32, "max_position_embeddings": 32},
        vision_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "intermediate_size": 32, "image_size": 16, "patch_size": 8},
        projection_dim=8)
    return (transformers.CLIPModel(config),
            lambda g: {"input_ids": ids(g), "pixel_values": torch.randn((BATCH, 3, 16, 16), generator=g)})


def image_to_text() -> tuple[Any, Callable[[torch.Generator], dict]]:
    encoder = transformers.ViTConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2,
                                     intermediate_size=32, image_size=16, patch_size=8)
    decoder = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=VOCAB, n_positions=32,
                                      add_cross_attention=True, is_decoder=True, bos_token_id=0, eos_token_id=0)
    config = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = config.pad_token_id = 0
    # The image from the encoder's config, the decoder's ids from the decoder's vocabulary.
    return (transformers.VisionEncoderDecoderModel(config),
            lambda g: {"pixel_values": torch.randn((BATCH, 3, 16, 16), generator=g), "decoder_input_ids": ids(g)})


CASES = {
    "decoder": decoder, "encoder": encoder, "encoder-decoder": encoder_decoder, "vision": vision,
    "speech-seq2seq": speech_seq2seq, "speech-ctc": speech_ctc, "multimodal": multimodal,
    "image-to-text": image_to_text,
}
# wav2vec2's feature encoder sets requires_grad on a view of its input in train mode, which torch
# refuses for the probe's inputs (they require grad, so that a fork at the input is found): it is
# measured in eval mode.
MODES = {"speech-ctc": "eval"}


def saved(build: Callable[[], tuple[Any, Any]], folder: Path) -> tuple[Any, Any]:
    torch.manual_seed(0)
    model, recipe = build()
    model.save_pretrained(folder)
    return model, recipe


def in_python(model: Any, folder: Path) -> Any:
    """The saved model as Python code loads it. (It is not always the object that was saved:
    from_pretrained may, for one, leave a parameter trainable that the constructor froze.)"""
    loaded = type(model).from_pretrained(folder)
    mine, theirs = model.state_dict(), loaded.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    return loaded


def probe(recipe: Callable[[torch.Generator], dict]) -> dict:
    return recipe(torch.Generator().manual_seed(0))


@pytest.mark.parametrize("case", list(CASES))
def test_a_saved_directory_reports_what_the_model_in_python_does(gradflow_cli, tmp_path, case) -> None:  # type: ignore[no-untyped-def]
    model, recipe = saved(CASES[case], tmp_path / case)
    mode = MODES.get(case, "train")
    document = cli_report(gradflow_cli, tmp_path / case, "--mode", mode)
    assert document["model"]["format"] == "huggingface"
    reference = api_report(in_python(model, tmp_path / case), probe(recipe), mode=mode)
    assert_same_measurement(document, reference)


def test_the_loss_is_the_mse_of_the_last_hidden_state_without_logits(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, recipe = saved(encoder, tmp_path / "bert")
    document = cli_report(gradflow_cli, tmp_path / "bert", "--mode", "eval")
    # Independent: torch on the model's own output.
    with torch.no_grad():
        hidden = model.eval()(**probe(recipe)).last_hidden_state
    assert document["probe"]["loss"] == "mse"
    assert document["summary"]["loss"] == pytest.approx(hidden.pow(2).mean().item(), rel=1e-6)


def test_a_clip_style_model_takes_the_loss_on_logits_per_image(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, recipe = saved(multimodal, tmp_path / "clip")
    document = cli_report(gradflow_cli, tmp_path / "clip", "--mode", "eval")
    with torch.no_grad():
        scores = model.eval()(**probe(recipe)).logits_per_image
    labels = torch.randint(0, BATCH, (BATCH,), generator=torch.Generator().manual_seed(0))
    assert document["probe"]["loss"] == "ce"
    assert [i["shape"] for i in document["probe"]["inputs"]] == [[BATCH, 16], [BATCH, 3, 16, 16]]
    assert document["summary"]["loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(scores, labels).item(), rel=1e-6)


def test_sharded_safetensors_and_pytorch_model_bin_load_alike(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, recipe = saved(decoder, tmp_path / "one")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    legacy = tmp_path / "legacy"
    model.save_pretrained(legacy)
    (legacy / "model.safetensors").unlink()
    torch.save(model.state_dict(), legacy / "pytorch_model.bin")  # how older versions saved it
    reference = api_report(in_python(model, tmp_path / "one"), probe(recipe))
    for folder in ("sharded", "legacy"):
        assert_same_measurement(cli_report(gradflow_cli, tmp_path / folder), reference)


def test_a_hub_id_loads_from_the_local_cache(gradflow_cli, tmp_path, offline) -> None:  # type: ignore[no-untyped-def]
    model, recipe = saved(decoder, tmp_path / "dir")
    # The cache layout huggingface_hub writes: a snapshot per commit, refs/main naming it.
    repo = offline / "models--gf-tests--tiny-gpt2"
    commit = "0" * 40
    model.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    document = cli_report(gradflow_cli, "hf:gf-tests/tiny-gpt2")
    assert document["model"]["source"] == "hf:gf-tests/tiny-gpt2"
    assert_same_measurement(document, api_report(in_python(model, tmp_path / "dir"), probe(recipe)))


def test_a_hub_id_not_in_the_cache_is_one_line_offline(gradflow_cli) -> None:  # type: ignore[no-untyped-def]
    result = gradflow_cli("inspect", "hf:gf-tests/not-cached", "--device", "cpu")
    one_line_error(result, "hf:gf-tests/not-cached", "not in the local Hugging Face cache", "HF_HUB_OFFLINE")
    one_line_error(gradflow_cli("inspect", "hf:bad id!"), "not a Hugging Face Hub id")


COMMANDS = ["blocks", "inspect", "compare", "check", "track"]
# What each command needs besides a source to do its work quickly.
EXTRA = {"check": ["--seeds", "1"], "track": ["--steps", "2"], "compare": ["--sg-skip"]}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_a_model_directory(gradflow_cli, tmp_path, command) -> None:  # type: ignore[no-untyped-def]
    saved(decoder, tmp_path / "gpt2")
    result = gradflow_cli(command, tmp_path / "gpt2", "--device", "cpu", *EXTRA.get(command, []))
    assert result.exit_code == 0, result.output
    assert "transformer.h.0#0" in result.stdout


def test_meta_builds_the_directory_from_its_config(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    saved(decoder, tmp_path / "gpt2")
    (tmp_path / "gpt2" / "model.safetensors").unlink()  # no weights are read
    result = gradflow_cli("blocks", tmp_path / "gpt2", "--device", "meta")
    assert result.exit_code == 0, result.output
    assert "transformer.h.1#1" in result.stdout


# --- hostile directories ----------------------------------------------------------------------


def test_a_directory_without_config(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "weights").mkdir()
    torch.save({}, tmp_path / "weights" / "model.pt")
    one_line_error(gradflow_cli("inspect", tmp_path / "weights"), "without config.json",
                   "model.pt: give that file with --arch")


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"architectures": ["GfNoSuchModelForCausalLM"], "model_type": "gpt2"},
         ["'GfNoSuchModelForCausalLM'", "does not have"]),
        ({"architectures": ["logging"], "model_type": "gpt2"}, ["'logging'", "does not have"]),
        ({"architectures": ["GPT2LMHeadModl"], "model_type": "gpt2"}, ["did you mean 'GPT2LMHeadModel'?"]),
        ({"model_type": "gf-no-such-type"}, ["cannot load the Hugging Face model", "gf-no-such-type"]),
        ({"hidden_size": 4}, ["names no model class"]),
        ([1, 2], ["not a JSON object"]),
    ],
    ids=["unknown-class", "not-a-model-class", "misspelt", "unknown-type", "no-class", "not-an-object"],
)
def test_a_config_naming_no_known_class(gradflow_cli, tmp_path, config, words) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    one_line_error(gradflow_cli("inspect", tmp_path / "m"), *words)


def test_a_directory_whose_weights_are_missing(gradflow_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    saved(decoder, tmp_path / "gpt2")
    (tmp_path / "gpt2" / "model.safetensors").unlink()
    one_line_error(gradflow_cli("inspect", tmp_path / "gpt2"), "cannot load the Hugging Face model")


CUSTOM_CONFIG = """
    from transformers import PretrainedConfig

    with open({marker!r}, "a") as log:
        log.write("configuration ran\\n")

    class GfConfig(PretrainedConfig):
        model_type = "gfcustom"

        def __init__(self, width=4, **kwargs):
            self.width = width
            super().__init__(**kwargs)
"""

CUSTOM_MODEL = """
    import torch
    from transformers import PreTrainedModel

    from .configuration_gfcustom import GfConfig

    with open({marker!r}, "a") as log:
        log.write("modeling ran\\n")

    class GfModel(PreTrainedModel):
        config_class = GfConfig
        main_input_name = "x"

        def __init__(self, config):
            super().__init__(config)
            self.block = torch.nn.Linear(config.width, config.width)
            self.post_init()

        def forward(self, x):
            return x + self.block(x)
"""


@pytest.fixture
def custom_code_dir(tmp_path) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A model directory whose config asks for the code beside it; that code leaves a marker."""
    from safetensors.torch import save_file

    marker = tmp_path / "code-ran.txt"
    folder = tmp_path / "custom"
    folder.mkdir()
    for name, text in (("configuration_gfcustom.py", CUSTOM_CONFIG), ("modeling_gfcustom.py", CUSTOM_MODEL)):
        (folder / name).write_text(textwrap.dedent(text.format(marker=str(marker))))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["GfModel"], "model_type": "gfcustom", "width": 4,
        "auto_map": {"AutoConfig": "configuration_gfcustom.GfConfig", "AutoModel": "modeling_gfcustom.GfModel"},
    }))
    save_file({"block.weight": torch.eye(4), "block.bias": torch.zeros(4)}, folder / "model.safetensors",
              metadata={"format": "pt"})
    return folder, marker


@pytest.mark.parametrize("command", COMMANDS)
def test_custom_code_runs_nothing_without_trust(gradflow_cli, custom_code_dir, command) -> None:  # type: ignore[no-untyped-def]
    folder, marker = custom_code_dir
    before = set(sys.modules)
    result = gradflow_cli(command, folder, "--device", "cpu", *EXTRA.get(command, []))
    one_line_error(result, "asks for custom code", "configuration_gfcustom.GfConfig", "--trust")
    assert not marker.exists(), "code from the directory ran"
    assert not [m for m in set(sys.modules) - before if "gfcustom" in m]


def test_custom_code_runs_with_trust(custom_code_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """In a process of its own: transformers copies trusted code into HF_HOME's module cache and
    imports it from there."""
    folder, marker = custom_code_dir
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "gradflow", "inspect", str(folder), "--trust", "--device", "cpu", "-f", "json",
         "--loss", "sum"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "modeling ran" in marker.read_text()
    document = json.loads(out.stdout)
    (junction,) = document["junctions"]
    # Independent: x + (I x + 0) summed: every input element's gradient is 2, grad_out all ones.
    x = torch.randn((BATCH, 4), generator=torch.Generator().manual_seed(0))
    assert document["summary"]["loss"] == pytest.approx((2 * x).sum().item(), rel=1e-5)
    assert junction["grad_out"] == pytest.approx(torch.ones(BATCH, 4).norm().item())
