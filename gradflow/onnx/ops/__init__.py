"""Kernel families. Importing this package registers every kernel with the registry."""

from gradflow.onnx.ops import (  # noqa: F401  (imported for their registrations)
    activation,
    arithmetic,
    attention,
    cast,
    control,
    conv,
    dropout,
    generators,
    indexing,
    joining,
    linalg,
    logic,
    loss,
    norm,
    pool,
    rearrange,
    reduce,
    resize,
    shape,
    sorting,
)
