"""`gradflow.watch`: gradient flow measured inside the user's own training loop.

session.py holds the Watch (the hooks and the step count), record.py the frozen records, rules.py
the live rules and what a flag does, sinks.py where records go (a JSONL log, TensorBoard, a
callable). Nothing here is named like a public verb: `gradflow.watch` stays the function.
"""
