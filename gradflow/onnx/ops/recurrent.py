"""Recurrent layers: RNN, GRU, LSTM, stepped in Python so autograd sees every time step.

Shared layout (layout=0): X [seq, batch, input]; W [directions, gates * hidden, input];
R [directions, gates * hidden, hidden]; B [directions, 2 * gates * hidden] (input biases, then
recurrent ones); initial states [directions, batch, hidden]; Y [seq, directions, batch, hidden],
Y_h (and LSTM's Y_c) [directions, batch, hidden]. layout=1 puts batch first in X, Y and the
states. A batch entry with sequence_lens[b] = n steps through its first n inputs only (in reverse,
from its n-th back to its first); its outputs past n are zero, its final state the one at n.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.ops.helpers import output_tuple
from gradflow.onnx.registry import Kernel, NotSupported, register

Activation = Callable[[torch.Tensor], torch.Tensor]

# name -> (default alpha, default beta, function of (x, alpha, beta)); None where unused.
_ACTIVATIONS: dict[str, tuple[float | None, float | None, Callable[..., torch.Tensor]]] = {
    "relu": (None, None, lambda x, a, b: torch.relu(x)),
    "tanh": (None, None, lambda x, a, b: torch.tanh(x)),
    "sigmoid": (None, None, lambda x, a, b: torch.sigmoid(x)),
    "softsign": (None, None, lambda x, a, b: F.softsign(x)),
    "softplus": (None, None, lambda x, a, b: F.softplus(x)),
    "affine": (1.0, 0.0, lambda x, a, b: a * x + b),
    "leakyrelu": (0.01, None, lambda x, a, b: F.leaky_relu(x, a)),
    "thresholdedrelu": (1.0, None, lambda x, a, b: torch.where(x > a, x, torch.zeros_like(x))),
    "scaledtanh": (1.0, 1.0, lambda x, a, b: a * torch.tanh(b * x)),
    "hardsigmoid": (0.2, 0.5, lambda x, a, b: torch.clamp(a * x + b, 0.0, 1.0)),
    "elu": (1.0, None, lambda x, a, b: F.elu(x, a)),
}


def _activations(ctx: NodeContext, defaults: Sequence[str], directions: int) -> list[list[Activation]]:
    """Per direction, the node's activation functions; alphas and betas are consumed in order
    by the functions that take them."""
    k = len(defaults)
    names = list(ctx.attr("activations") or ()) or list(defaults)
    if len(names) == k:
        names = names * directions  # one set for both directions
    if len(names) < k * directions:
        raise NotSupported(f"{len(names)} activations for {directions} direction(s)")
    names = names[: k * directions]  # RNN's schema default lists two, for bidirectional use
    alphas = list(ctx.attr("activation_alpha") or ())
    betas = list(ctx.attr("activation_beta") or ())
    functions: list[Activation] = []
    for name in names:
        key = name.lower()
        if key not in _ACTIVATIONS:
            raise NotSupported(f"activation '{name}'")
        alpha, beta, fn = _ACTIVATIONS[key]
        if alpha is not None and alphas:
            alpha = alphas.pop(0)
        if beta is not None and betas:
            beta = betas.pop(0)
        functions.append(_bound(fn, alpha, beta))
    return [functions[d * k : (d + 1) * k] for d in range(directions)]


def _bound(fn: Callable[..., torch.Tensor], alpha: float | None, beta: float | None) -> Activation:
    return lambda x: fn(x, alpha, beta)


# One step: (input projection x W^T + Wb at t, states) -> new states; the first is the output.
Cell = Callable[[torch.Tensor, list[torch.Tensor]], list[torch.Tensor]]


def _recurrent(
    ctx: NodeContext,
    gates: int,
    defaults: Sequence[str],
    make_cell: Callable[[list[Activation], torch.Tensor, torch.Tensor, Any, Callable], Cell],
    n_states: int,
) -> Kernel:
    direction = ctx.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ctx.unsupported(f"direction '{direction}'")
    directions = 2 if direction == "bidirectional" else 1
    activations = _activations(ctx, defaults, directions)
    clip = ctx.attr("clip")
    batch_first = bool(ctx.attr("layout", 0))

    def limit(x: torch.Tensor) -> torch.Tensor:
        return x if clip is None else torch.clamp(x, -clip, clip)

    def run(x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor | None = None,
            lengths: torch.Tensor | None = None, *initial_and_extra: torch.Tensor | None) -> Any:
        if batch_first:
            x = x.transpose(0, 1)
        steps, batch = x.shape[0], x.shape[1]
        hidden = r.shape[-1]
        initial = list(initial_and_extra[:n_states]) + [None] * n_states
        extra = initial_and_extra[n_states] if len(initial_and_extra) > n_states else None
        ys, finals = [], []
        for d in range(directions):
            bias = b[d] if b is not None else torch.zeros(2 * gates * hidden, dtype=x.dtype, device=x.device)
            projected = x @ w[d].t() + bias[: gates * hidden]
            states = []
            for k in range(n_states):
                given = initial[k]
                if given is not None and batch_first:
                    given = given.transpose(0, 1)
                states.append(given[d] if given is not None
                              else torch.zeros(batch, hidden, dtype=x.dtype, device=x.device))
            cell = make_cell(activations[d], r[d], bias[gates * hidden :],
                             None if extra is None else extra[d], limit)
            reverse = direction == "reverse" or d == 1
            outputs: list[torch.Tensor | None] = [None] * steps
            order = range(steps - 1, -1, -1) if reverse else range(steps)
            for t in order:
                new = cell(projected[t], states)
                if lengths is None:
                    states = new
                    outputs[t] = new[0]
                else:
                    # Steps past a sequence's length change nothing and output zeros.
                    valid = (t < lengths.to(x.device)).reshape(-1, 1)
                    states = [torch.where(valid, n, s) for n, s in zip(new, states)]
                    outputs[t] = torch.where(valid, new[0], torch.zeros_like(new[0]))
            ys.append(torch.stack(outputs))  # type: ignore[arg-type]
            finals.append(states)
        y = torch.stack(ys, 1)  # [seq, directions, batch, hidden]
        state_outputs = [torch.stack([f[k] for f in finals]) for k in range(n_states)]
        if batch_first:
            y = y.permute(2, 0, 1, 3)
            state_outputs = [s.transpose(0, 1) for s in state_outputs]
        return output_tuple(ctx, y, *state_outputs)

    return run


@register("RNN", since=13)
def rnn(ctx: NodeContext) -> Kernel:
    def make_cell(act: list[Activation], r: torch.Tensor, rb: torch.Tensor, _: Any,
                  limit: Callable) -> Cell:
        (f,) = act

        def cell(xw: torch.Tensor, states: list[torch.Tensor]) -> list[torch.Tensor]:
            return [f(limit(xw + states[0] @ r.t() + rb))]

        return cell

    return _recurrent(ctx, 1, ["Tanh"], make_cell, 1)


@register("GRU", since=13)
def gru(ctx: NodeContext) -> Kernel:
    # Gates z (update), r (reset), h (candidate).
    before_reset = bool(ctx.attr("linear_before_reset", 0))

    def make_cell(act: list[Activation], r: torch.Tensor, rb: torch.Tensor, _: Any,
                  limit: Callable) -> Cell:
        f, g = act
        r_zr, r_h = r[: 2 * r.shape[1]], r[2 * r.shape[1] :]
        rb_zr, rb_h = rb[: 2 * r.shape[1]], rb[2 * r.shape[1] :]

        def cell(xw: torch.Tensor, states: list[torch.Tensor]) -> list[torch.Tensor]:
            h = states[0]
            n = h.shape[1]
            zr = f(limit(xw[:, : 2 * n] + h @ r_zr.t() + rb_zr))
            z, reset = zr[:, :n], zr[:, n:]
            if before_reset:
                candidate = g(limit(xw[:, 2 * n :] + reset * (h @ r_h.t() + rb_h)))
            else:
                candidate = g(limit(xw[:, 2 * n :] + (reset * h) @ r_h.t() + rb_h))
            return [(1 - z) * candidate + z * h]

        return cell

    return _recurrent(ctx, 3, ["Sigmoid", "Tanh"], make_cell, 1)


@register("LSTM", since=13)
def lstm(ctx: NodeContext) -> Kernel:
    # Gates i (input), o (output), f (forget), c (cell); peepholes P hold (i, o, f).
    couple = bool(ctx.attr("input_forget", 0))

    def make_cell(act: list[Activation], r: torch.Tensor, rb: torch.Tensor,
                  peephole: torch.Tensor | None, limit: Callable) -> Cell:
        f, g, h_act = act

        def cell(xw: torch.Tensor, states: list[torch.Tensor]) -> list[torch.Tensor]:
            h, c = states
            n = h.shape[1]
            pre = xw + h @ r.t() + rb
            pi, po, pf, pc = pre[:, :n], pre[:, n : 2 * n], pre[:, 2 * n : 3 * n], pre[:, 3 * n :]
            if peephole is not None:
                pi, pf = pi + peephole[:n] * c, pf + peephole[2 * n :] * c
            i = f(limit(pi))
            forget = 1 - i if couple else f(limit(pf))
            c_new = forget * c + i * g(limit(pc))
            if peephole is not None:
                po = po + peephole[n : 2 * n] * c_new
            o = f(limit(po))
            return [o * h_act(c_new), c_new]

        return cell

    return _recurrent(ctx, 4, ["Sigmoid", "Tanh", "Tanh"], make_cell, 2)
