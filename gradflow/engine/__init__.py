"""The measurement: one job per module, and nothing here knows who calls it.

    recorder.py   what the forward pass did: add sites, module calls, detached copies, in-place
                  adds into views
    values.py     which tensors carry the probe's data (a fork must)
    junctions.py  the search on the autograd graph: fork, skip, block
    naming.py     junction names, and the modules each path runs
    notes.py      what the graph hides from the search, said plainly
    taps.py       hooks on one backward pass, and the norms they take
    state.py      the model-state guard: everything restored in `finally`
    parallel.py   a data-parallel wrapper (DDP, FSDP2) as the measurement sees it
    reduce.py     the ranks' numbers made one: identity on one process, one all-reduce under torchrun
    report.py     build_report: measured numbers in, a frozen Report out
    measure.py    the stages in order, for the drivers (`gradflow.drivers`)

Importing this package does not import torch.
"""
