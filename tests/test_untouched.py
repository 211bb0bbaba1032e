"""The model comes back exactly as it was, after success and after a forward pass that raises."""

from __future__ import annotations

import gc

import pytest
import torch

import gradflow
from gradflow.errors import ProbeError
from tests.fixtures import models
from tests.test_measure import _inputs


def _snapshot(model: torch.nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in model.named_modules()},
        "hooks": {
            n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
                len(m._backward_pre_hooks))
            for n, m in model.named_modules()
        },
        "global_hooks": (len(torch.nn.modules.module._global_forward_hooks),
                         len(torch.nn.modules.module._global_forward_pre_hooks)),
        "rng": torch.get_rng_state(),
        # The recorder wraps torch.add and the Tensor add methods during the forward pass only.
        "adds": (torch.add, {k: v for k, v in vars(torch.Tensor).items() if "add" in k}),
        # ... and nn.Module._call_impl, to keep the module stack, and Tensor.requires_grad.
        "call_impl": torch.nn.Module._call_impl,
        # ... and nn.Module.__getattr__, to note the parameters it reads.
        "getattr": torch.nn.Module.__getattr__,
        "requires_grad_property": vars(torch.Tensor).get("requires_grad"),
        # The cyclic garbage collector is paused during a measurement.
        "gc": gc.isenabled(),
    }


def _assert_same(before: dict, after: dict) -> None:
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    for name, grad in before["grads"].items():
        other = after["grads"][name]
        assert (grad is None and other is None) or torch.equal(grad, other), name
    for key in ("requires_grad", "modes", "hooks", "global_hooks", "adds", "call_impl", "getattr",
                "requires_grad_property", "gc"):
        assert before[key] == after[key], key
    assert torch.equal(before["rng"], after["rng"])


def _prepared() -> torch.nn.Module:
    model = models.SmallResNet()
    model.b1.conv1.weight.grad = torch.full_like(model.b1.conv1.weight, 0.5)  # a user's stale grad
    model.b2.eval()  # mixed modes
    model.head.bias.requires_grad_(False)
    model.register_forward_hook(lambda *a: None)
    return model


def test_untouched_after_success() -> None:
    model = _prepared()
    before = _snapshot(model)
    gradflow.inspect(model, _inputs("SmallResNet"), sg_skip=True)
    _assert_same(before, _snapshot(model))


def test_untouched_where_torch_has_no_foreach_clone(monkeypatch) -> None:
    """torch 2.11 has no `torch._foreach_clone`: buffers are then saved one clone each."""
    monkeypatch.delattr(torch, "_foreach_clone", raising=False)
    model = _prepared()
    before = _snapshot(model)
    gradflow.inspect(model, _inputs("SmallResNet"))
    _assert_same(before, _snapshot(model))


def test_untouched_after_forward_raises() -> None:
    model = _prepared()

    def explode(module, args, output):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom in forward")

    handle = model.head.register_forward_hook(explode)  # raises after batch norm ran in train mode
    before = _snapshot(model)
    with pytest.raises(ProbeError, match="boom in forward"):
        gradflow.inspect(model, _inputs("SmallResNet"))
    _assert_same(before, _snapshot(model))
    handle.remove()


def test_untouched_after_backward_raises() -> None:
    class Bad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):  # type: ignore[no-untyped-def]
            return x.clone()

        @staticmethod
        def backward(ctx, g):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom in backward")

    model = _prepared()
    handle = model.head.register_forward_hook(lambda m, a, out: Bad.apply(out))
    before = _snapshot(model)
    with pytest.raises(gradflow.errors.ModelError, match="boom in backward"):
        gradflow.inspect(model, _inputs("SmallResNet"))
    _assert_same(before, _snapshot(model))
    handle.remove()


def test_running_stats_restored_in_train_mode() -> None:
    model = models.SmallResNet()
    mean = model.b1.bn1.running_mean.clone()
    gradflow.inspect(model, _inputs("SmallResNet"), mode="train")
    assert torch.equal(model.b1.bn1.running_mean, mean)
    assert model.b1.bn1.num_batches_tracked.item() == 0


def test_adds_in_another_thread_are_not_recorded() -> None:
    """The add wrappers are process-wide while the probe runs; recording is not."""
    import threading

    from gradflow.engine import sites
    from gradflow.engine.recorder import ForwardRecorder, _adds_recorded

    x = torch.randn(3, requires_grad=True)
    with sites.recording() as recorded, _adds_recorded(ForwardRecorder(torch.nn.Module())):
        thread = threading.Thread(target=lambda: x + x * 2)
        thread.start()
        thread.join()
        assert recorded == {}
        y = x + x * 2
        assert list(recorded) == [y.grad_fn]


def test_module_hooks_run_and_the_collector_is_paused_during_the_forward_pass() -> None:
    model = models.SmallResNet()
    seen: list[bool] = []
    handle = model.b1.register_forward_hook(lambda *a: seen.append(gc.isenabled()))
    try:
        gradflow.inspect(model, _inputs("SmallResNet"))
        assert seen == [False] and gc.isenabled()
        gc.disable()  # a caller that paused it itself finds it paused afterwards
        gradflow.inspect(model, _inputs("SmallResNet"))
        assert not gc.isenabled()
    finally:
        gc.enable()
        handle.remove()


def test_untouched_after_a_check_that_warms_a_copy_up() -> None:
    """The warm-up trains a deep copy: the model, its grads and the RNG are as they were."""
    from tests.fixtures import shapes

    model = shapes.build_zero_head()
    model.blocks[0].fc1.weight.grad = torch.full_like(model.blocks[0].fc1.weight, 0.5)
    before = _snapshot(model)
    result = gradflow.check(model, shapes.example_input())
    assert result.report.warmup is not None  # it did warm up
    _assert_same(before, _snapshot(model))


def test_parameter_reads_in_another_thread_are_not_noted() -> None:
    """The attribute wrapper is process-wide while the probe runs; noting reads is not."""
    import threading

    from gradflow.engine import sites
    from gradflow.engine.recorder import ForwardRecorder, _parameter_reads_noted

    layer = torch.nn.Linear(2, 2)
    recorder = ForwardRecorder(torch.nn.Module())
    original = torch.nn.Module.__getattr__
    with sites.recording(), _parameter_reads_noted(recorder):
        thread = threading.Thread(target=lambda: layer.weight)
        thread.start()
        thread.join()
        assert recorder.read == set()
        layer.bias  # noqa: B018 (a read is what is tested)
        assert recorder.read == {id(layer.bias)}
    assert torch.nn.Module.__getattr__ is original
