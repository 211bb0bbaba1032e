"""The performance benchmark: gradflow against one bare forward and backward pass.

    python -m benchmarks.run            # full run (about 5 minutes on 2 quiet CPU cores)
    python -m benchmarks.run --quick    # small sizes, a smoke test of the harness
    python -m benchmarks.breakdown                # fixed and per-junction cost of each stage

See docs/performance.md for the method, the targets and the latest figures.
"""
