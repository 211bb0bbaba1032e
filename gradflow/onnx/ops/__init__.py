"""Kernel families. Importing this package registers every kernel with the registry."""

from gradflow.onnx.ops import (  # noqa: F401  (imported for their registrations)
    activation,
    arithmetic,
    attention,
    cast,
    conv,
    dropout,
    generators,
    indexing,
    joining,
    linalg,
    logic,
    norm,
    pool,
    rearrange,
    reduce,
    shape,
    sorting,
)
