"""State dicts as training code leaves them: safetensors files (single and sharded), a real
Lightning Trainer's checkpoint, DDP- and torch.compile-wrapped models' state dicts.

Each file is written by the library that writes it in practice; each report must equal
`gradflow.inspect` on the model object whose weights were saved, on inputs drawn here.
"""

from __future__ import annotations

import json
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from tests.loader_helpers import api_report, assert_same_measurement, cli_report, one_line_error

BATCH = 8

MODEL_CODE = """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, width=4):
            super().__init__()
            self.fc1 = nn.Linear(width, 8)
            self.fc2 = nn.Linear(8, width)

        def forward(self, x):
            return x + self.fc2(torch.relu(self.fc1(x)))

    class Deeper(Net):
        def __init__(self, width=4):
            super().__init__(width)
            self.fc3 = nn.Linear(width, width)

        def forward(self, x):
            return self.fc3(super().forward(x))
"""


@pytest.fixture
def code(tmp_path, monkeypatch) -> Any:  # type: ignore[no-untyped-def]
    """The model code as a file (for --arch) and as an imported module (for the reference)."""
    path = tmp_path / "gf_state_models.py"
    path.write_text(textwrap.dedent(MODEL_CODE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "gf_state_models", raising=False)  # this test's own file
    import gf_state_models

    monkeypatch.setattr(gf_state_models, "path", path, raising=False)
    return gf_state_models


def trained(module: Any, width: int = 6) -> torch.nn.Module:
    """A Net whose weights are not what its constructor draws: the loader must load them."""
    torch.manual_seed(1)
    net = module.Net(width=width)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.5)
    return net


def probe(width: int = 6) -> torch.Tensor:
    """The inferred probe of a model whose first layer is Linear(width, ...)."""
    return torch.randn((BATCH, width), generator=torch.Generator().manual_seed(0))


def arch(module: Any, name: str = "Net(width=6)") -> str:
    return f"{module.path}:{name}"


# --- safetensors ------------------------------------------------------------------------------


def test_a_safetensors_file_with_arch(gradflow_cli, tmp_path, code) -> None:  # type: ignore[no-untyped-def]
    net = trained(code)
    save_file(net.state_dict(), tmp_path / "w.safetensors")
    document = cli_report(gradflow_cli, tmp_path / "w.safetensors", "--arch", arch(code))
    assert document["model"]["format"] == "safetensors"
    assert_same_measurement(document, api_report(net, probe()))


def test_a_sharded_safetensors_state_dict(gradflow_cli, tmp_path, code) -> None:  # type: ignore[no-untyped-def]
    net = trained(code)
    state = net.state_dict()
    names = list(state)
    shards = {"w-00001-of-00002.safetensors": names[:2], "w-00002-of-00002.safetensors": names[2:]}
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, tmp_path / shard)
    index = tmp_path / "w.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {k: s for s, ks in shards.items() for k in ks}}))
    document = cli_report(gradflow_cli, index, "--arch", arch(code))
    assert_same_measurement(document, api_report(net, probe()))
    (tmp_path / "w-00002-of-00002.safetensors").unlink()
    one_line_error(gradflow_cli("inspect", index, "--arch", arch(code)), "shard w-00002-of-00002.safetensors is missing")


def test_a_shard_outside_the_index_folder_is_refused(gradflow_cli, tmp_path, code) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "sub").mkdir()
    save_file({"a": torch.zeros(1)}, tmp_path / "outside.safetensors")
    index = tmp_path / "sub" / "w.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "../outside.safetensors"}}))
    one_line_error(gradflow_cli("inspect", index, "--arch", arch(code)), "not a file beside the index")
    index.write_text(json.dumps({"weights": {}}))
    one_line_error(gradflow_cli("inspect", index, "--arch", arch(code)), "not a safetensors index")


def _corrupt_header(data: bytes) -> bytes:
    length = int.from_bytes(data[:8], "little")
    return data[:8] + b"{]" + data[10 : 8 + length] + data[8 + length :]


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated: the tensors' bytes end early
        lambda data: data[:20],  # truncated inside the header
        lambda data: (2**40).to_bytes(8, "little") + data[8:],  # a header length past the end
        _corrupt_header,  # a header that is not JSON
        lambda data: b"",  # empty
    ],
    ids=["truncated-data", "truncated-header", "header-too-long", "header-not-json", "empty"],
)
def test_a_damaged_safetensors_file_is_one_line(gradflow_cli, tmp_path, code, damage) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "w.safetensors"
    save_file(trained(code).state_dict(), path)
    path.write_bytes(damage(path.read_bytes()))
    words = ["is empty"] if path.stat().st_size == 0 else ["cannot read safetensors file", "corrupt"]
    one_line_error(gradflow_cli("inspect", path, "--arch", arch(code)), *words)


def test_a_safetensors_file_without_arch(gradflow_cli, tmp_path, code) -> None:  # type: ignore[no-untyped-def]
    save_file(trained(code).state_dict(), tmp_path / "w.safetensors")
    one_line_error(gradflow_cli("inspect", tmp_path / "w.safetensors"), "4 tensors", "holds no code", "--arch")


# --- Lightning --------------------------------------------------------------------------------


def lightning_checkpoint(module: Any, folder: Path, **hparams: Any) -> tuple[torch.nn.Module, Path]:
    """A Lightning module holding a Net as `model`, trained one step by a real Trainer, which
    then writes the checkpoint. Returns the trained Net and the checkpoint."""
    lightning = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    class Regressor(lightning.LightningModule):
        def __init__(self, width: int = 6, **extra: Any) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.model = module.Net(width=width)

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            (x,) = batch
            return self.model(x).pow(2).mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(2)
    regressor = Regressor(**hparams)
    path = folder / "last.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and logging
        trainer = lightning.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                                    enable_progress_bar=False, enable_model_summary=False,
                                    accelerator="cpu", default_root_dir=folder)
        trainer.fit(regressor, DataLoader(TensorDataset(torch.randn(8, 6)), batch_size=4))
        trainer.save_checkpoint(path)
    assert trainer.global_step == 1
    return regressor.model, path


def test_a_lightning_checkpoint_loads_its_model_into_arch(gradflow_cli, tmp_path, code) -> None:  # type: ignore[no-untyped-def]
    net, path = lightning_checkpoint(code, tmp_path)
    assert list(torch.load(path, weights_only=True)["state_dict"])[0].startswith("model.")
    document = cli_report(gradflow_cli, path, "--arch", arch(code))
    assert_same_measurement(document, api_report(net, probe()))


def test_the_closest_prefix_mapping_is_named_when_keys_still_differ(gradflow_cli, tmp_path, code) -> None:  # type: ignore[no-untyped-def]
    _, path = lightning_checkpoint(code, tmp_path)
    one_line_error(
        gradflow_cli("inspect", path, "--arch", arch(code, "Deeper(width=6)")),
        "missing 2 (fc3.weight, fc3.bias)", "closest prefix mapping: strip 'model.' (4 of 6 model keys match)")
    one_line_error(gradflow_cli("inspect", path, "--arch", arch(code, "Net(width=5)")),
                   "shape mismatch", "fc1.weight [8, 6] vs [8, 5]")


MARKER_CODE = """
    class Marker:
        def __init__(self, path):
            self.path = path

        def __setstate__(self, state):
            with open(state["path"], "a") as log:
                log.write("unpickled\\n")
            self.__dict__.update(state)
"""


def test_pickled_hyperparameters_ask_for_trust_and_run_nothing(gradflow_cli, tmp_path, code, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "gf_hparam_marker.py").write_text(textwrap.dedent(MARKER_CODE))
    monkeypatch.delitem(sys.modules, "gf_hparam_marker", raising=False)
    import gf_hparam_marker

    marker = tmp_path / "unpickled.txt"
    net, path = lightning_checkpoint(code, tmp_path, note=gf_hparam_marker.Marker(str(marker)))
    marker.unlink(missing_ok=True)  # Lightning copies its hyperparameters, which unpickles them
    result = gradflow_cli("inspect", path, "--arch", arch(code))
    one_line_error(result, "Lightning checkpoint", "hyperparameters hold pickled Python objects",
                   "gf_hparam_marker.Marker", "--trust")
    assert not marker.exists(), "unpickling ran code without --trust"
    document = cli_report(gradflow_cli, path, "--arch", arch(code), "--trust")
    assert marker.exists()
    assert_same_measurement(document, api_report(net, probe()))


# --- DDP and torch.compile --------------------------------------------------------------------


def ddp_state_dict(module: torch.nn.Module, store: Path) -> dict[str, torch.Tensor]:
    """The state dict of the module wrapped by a real DistributedDataParallel (one process)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        return torch.nn.parallel.DistributedDataParallel(module).state_dict()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("wrapping", ["ddp", "compile", "compile-of-ddp"])
def test_wrapped_state_dicts_load_into_the_bare_model(gradflow_cli, tmp_path, code, wrapping) -> None:  # type: ignore[no-untyped-def]
    net = trained(code)
    if wrapping == "ddp":
        state = ddp_state_dict(net, tmp_path / "store")
        prefix = "module."
    elif wrapping == "compile":
        state = torch.compile(net).state_dict()
        prefix = "_orig_mod."
    else:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
        try:
            state = torch.compile(torch.nn.parallel.DistributedDataParallel(net)).state_dict()
        finally:
            dist.destroy_process_group()
        prefix = "_orig_mod.module."
    assert all(k.startswith(prefix) for k in state)
    torch.save(state, tmp_path / "w.pt")
    document = cli_report(gradflow_cli, tmp_path / "w.pt", "--arch", arch(code))
    assert_same_measurement(document, api_report(net, probe()))


def test_a_prefix_is_added_when_arch_wraps_the_saved_model(gradflow_cli, tmp_path, code) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "wrapper.py").write_text(textwrap.dedent("""
        import torch
        from gf_state_models import Net

        class Wrapper(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = Net(width=6)

            def forward(self, x):
                return self.net(x)
    """))
    net = trained(code)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    document = cli_report(gradflow_cli, tmp_path / "w.pt", "--arch", f"{tmp_path / 'wrapper.py'}:Wrapper")
    (junction,) = document["junctions"]
    (reference,) = api_report(net, probe())["junctions"]
    assert junction["name"] == "net"  # the add runs in the wrapper's `net`
    numbers = ("grad_out", "grad_skip", "grad_block", "grad_in", "cosine", "param_grad")
    assert [junction[n] for n in numbers] == [reference[n] for n in numbers]


def test_a_checkpoint_holding_the_model_twice_is_refused(gradflow_cli, tmp_path, code) -> None:  # type: ignore[no-untyped-def]
    state = trained(code).state_dict()
    torch.save({**{f"model.{k}": v for k, v in state.items()}, **{f"ema.{k}": v for k, v in state.items()}},
               tmp_path / "w.pt")
    one_line_error(gradflow_cli("inspect", tmp_path / "w.pt", "--arch", arch(code)),
                   "2 prefix mappings", "strip 'ema.'", "strip 'model.'")


# --- every command --------------------------------------------------------------------------


COMMANDS = ["blocks", "inspect", "compare", "check", "track"]
EXTRA = {"check": ["--seeds", "1"], "track": ["--steps", "2"], "compare": ["--sg-skip"]}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", ["safetensors", "lightning"])
def test_every_command_takes_state_dicts_alike(gradflow_cli, tmp_path, code, command, kind) -> None:  # type: ignore[no-untyped-def]
    if kind == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file(trained(code).state_dict(), path)
    else:
        _, path = lightning_checkpoint(code, tmp_path)
    result = gradflow_cli(command, path, "--arch", arch(code), "--device", "cpu", *EXTRA.get(command, []))
    assert result.exit_code == 0, result.output
    assert "#0" in result.stdout  # the one junction, an add in the root module
