"""Importing grownet stays light: heavy libraries load only where they are used."""

from __future__ import annotations

import json
import subprocess
import sys

# pandas and matplotlib belong to the report, networkx to the graph: none of them is
# needed to import grownet, to build the command's parser or to count a preset.
HEAVY = ("pandas", "matplotlib", "networkx")

_PROBE = f"""
import json, sys
heavy = {HEAVY!r}
loaded = {{}}
import grownet
loaded["import grownet"] = [m for m in heavy if m in sys.modules]
import grownet.cli
grownet.cli.make_parser()
loaded["make_parser"] = [m for m in heavy if m in sys.modules]
grownet.cli.main(["count", "lenet5", "--in-shape", "1,28,28"])
loaded["count"] = [m for m in heavy if m in sys.modules]
spec = grownet.ArchSpec.preset("lenet5")
grownet.count(spec).to_frame()
grownet.draw_graph(grownet.arch_graph(spec))
loaded["used"] = [m for m in heavy if m in sys.modules]
print(json.dumps(loaded))
"""


def test_import_grownet_loads_no_heavy_library() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["import grownet"] == []
    assert loaded["make_parser"] == []
    assert loaded["count"] == []
    # ...and they do load where they are used (the probe can see them).
    assert loaded["used"] == list(HEAVY)
