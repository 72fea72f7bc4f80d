"""`python -m bench` (`make bench`): cogplane's performance targets (docs/DESIGN.md §5), measured side by side.

One run on this machine measures, in this order:

1. cold boot of `examples/hello` and `examples/embeddings` (environments cached beforehand, outside
   the timing) against the model's own setup() time read from cog's health-check;
2. the warm path: sync predictions through cogplane vs the same requests sent straight to a cog
   server for the same model and environment, interleaved so noise hits both;
3. throughput of the single-machine stack with 1 and with 2 runners, and where the time goes.

Every server it starts binds 127.0.0.1 and is stopped (by pid) before it exits; temp folders are
removed. Results are printed as a table and written as JSON (`--json`, default bench/results.json).
"""
