"""The single machine's composition roots: `cogplane up` (stack: the API app + pumps + process
dispatcher in one command, what `make up` runs) and the `cogplane` CLI (cli). They sit above the
core (cogplane/) and the packages built on it (functions/, gpu_runner/), and may import all of them;
nothing imports them (tests/unit/test_import_direction.py)."""
