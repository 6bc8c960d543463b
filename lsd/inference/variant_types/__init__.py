"""TensorZero's variant types beyond chat_completion: best_of_n_sampling, mixture_of_n, chain_of_thought, dicl.

Each is a way of building a variant's provider request and reading its answer; `runs.VariantRuns` is what
lsd.inference.run.Engine.infer hands to the one fallback loop (lsd.inference.routing.route) for them.
"""
