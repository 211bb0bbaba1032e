"""Matrix products: MatMul, Gemm, Einsum; the determinant, Det."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradflow.onnx.context import NodeContext
from gradflow.onnx.registry import Kernel, register


@register("MatMul", since=13)
def matmul(ctx: NodeContext) -> Kernel:
    return torch.matmul


@register("Gemm", since=13)
def gemm(ctx: NodeContext) -> Kernel:
    alpha = ctx.attr("alpha", 1.0)
    beta = ctx.attr("beta", 1.0)
    trans_a = bool(ctx.attr("transA", 0))
    trans_b = bool(ctx.attr("transB", 0))
    has_c = ctx.has_input(2)
    # The common nn.Linear export: y = a @ b.T + c with a 1-D (or absent) c.
    if trans_b and not trans_a and alpha == 1.0 and (beta == 1.0 or not has_c):
        if not has_c or ctx.input_rank(2) == 1:
            return lambda a, b, c=None: F.linear(a, b, c)

    def run(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if trans_a:
            a = a.t()
        if trans_b:
            b = b.t()
        if c is None:
            product = torch.mm(a, b)
            return product if alpha == 1.0 else product * alpha
        return torch.addmm(c, a, b, beta=beta, alpha=alpha)

    return run


@register("Einsum", since=13)
def einsum(ctx: NodeContext) -> Kernel:
    equation = str(ctx.attr("equation", "")).replace(" ", "")
    return lambda *xs: torch.einsum(equation, *xs)


@register("Det", since=13)
def det(ctx: NodeContext) -> Kernel:
    return torch.linalg.det
