"""Reference numbers from plain torch.autograd.grad on the tensors a LoggingModel exposes."""

from __future__ import annotations

import torch


def reference(model, inputs, loss_fn):  # type: ignore[no-untyped-def]
    """Per junction: grad_out, grad_skip, grad_block, grad_in, param_grad, cosine."""
    model.inplace = False
    try:
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        args = tuple(a.detach().clone().requires_grad_(a.is_floating_point()) for a in args)
        out = model(*args)
        loss = loss_fn(out)
        rows = []
        for rec in model.log:
            g_y = _grad(loss, rec.y)  # zero when a stop upstream cut the junction off the loss
            g_skip = _through(rec.skip, rec.x, g_y)
            g_block = _through(rec.block, rec.x, g_y)
            g_in = _grad(loss, rec.x)
            g_params = torch.autograd.grad(loss, rec.params, retain_graph=True, allow_unused=True)
            # Reductions of bf16/fp16 gradients in float32, as the norms in a report are.
            g_y, g_skip, g_block, g_in = (_wide(g) for g in (g_y, g_skip, g_block, g_in))
            g_params = tuple(None if g is None else _wide(g) for g in g_params)
            param_grad = torch.sqrt(sum((g.pow(2).sum() for g in g_params if g is not None), torch.tensor(0.0)))
            cosine = _cosine(g_skip, g_block)
            rows.append({
                "grad_out": g_y.norm().item(), "grad_skip": g_skip.norm().item(),
                "grad_block": g_block.norm().item(), "grad_in": g_in.norm().item(),
                "param_grad": param_grad.item(), "cosine": cosine.item(),
            })
        return rows
    finally:
        model.inplace = True


def _grad(loss, tensor):  # type: ignore[no-untyped-def]
    (grad,) = torch.autograd.grad(loss, tensor, retain_graph=True, allow_unused=True)
    return torch.zeros_like(tensor) if grad is None else grad


def _through(operand, x, g_y):  # type: ignore[no-untyped-def]
    """The gradient g_y sends to x through one operand of the add; zero through a detached one."""
    if not operand.requires_grad:
        return torch.zeros_like(x)
    (grad,) = torch.autograd.grad(operand, x, g_y.sum_to_size(operand.shape), retain_graph=True, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def _wide(grad):  # type: ignore[no-untyped-def]
    return grad.float() if grad.dtype in (torch.bfloat16, torch.float16) else grad


def _cosine(a, b):  # type: ignore[no-untyped-def]
    """In float64 and without cosine_similarity's floor on the norms' product (1e-8), which
    would shrink the cosine of a block whose gradient is tiny."""
    a, b = a.double().flatten(), b.double().flatten()
    scale = a.norm() * b.norm()
    return torch.dot(a, b) / scale if scale > 0 else torch.tensor(0.0, dtype=torch.float64)
