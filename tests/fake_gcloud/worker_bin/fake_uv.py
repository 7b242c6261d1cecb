"""The `uv` of a fake TPU worker (see ../fake_gcloud.py): records its calls and stands in for installing.

  uv venv [...] DIR            makes DIR/bin/python a launcher of FAKE_GCLOUD_PYTHON (the test's interpreter)
  uv pip install [...] WHEEL   a recorded no-op: the workers import the checkout (FAKE_GCLOUD_PYTHONPATH)
"""

import json
import os
import sys

args = sys.argv[1:]
with open(os.path.join(os.environ["FAKE_GCLOUD_ROOT"], "worker_calls.jsonl"), "a") as log:
    log.write(json.dumps({"worker": os.environ.get("FAKE_GCLOUD_WORKER"), "argv": ["uv", *args]}) + "\n")

if args[:1] == ["venv"]:
    values = {"--python", "-p"}
    positionals = [a for i, a in enumerate(args[1:], 1) if not a.startswith("-") and args[i - 1] not in values]
    directory = positionals[-1]
    os.makedirs(os.path.join(directory, "bin"), exist_ok=True)
    python = os.path.join(directory, "bin", "python")
    with open(python, "w") as f:
        f.write(f'#!/bin/sh\nexec "{os.environ["FAKE_GCLOUD_PYTHON"]}" "$@"\n')
    os.chmod(python, 0o755)
elif args[:2] == ["pip", "install"]:
    pass
else:
    sys.exit(f"fake uv: unsupported command {args}")
