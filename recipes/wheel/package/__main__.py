"""``python -m <module>``: what this wheel is (``--json`` for machines, ``--check`` for the
exit status: 0 when this host can run it, 9 when it lacks a required CPU feature)."""

from __future__ import annotations

import json
import sys

from . import describe


def main(argv: list[str]) -> int:
    info = describe()
    missing = info["cpu"]["missing_here"]
    if "--json" in argv:
        print(json.dumps(info, indent=2))
    elif "--check" not in argv:
        print(f"{info['distribution']} {info['version']}: {info['description']}")
        print(f"  target     {info['target']} (backend {info['backend']}, {info['platform']})")
        print(f"  llama.cpp  {info['llama_cpp']['version']} ({info['llama_cpp']['commit']})")
        print(f"  cpu        {info['cpu']['policy']}, requires: "
              f"{' '.join(info['cpu']['required_features']) or '-'}"
              + (f" (missing here: {' '.join(missing)})" if missing else ""))
        print(f"  programs   {info['bin_dir']}")
        for name in info["programs"]:
            print(f"    {name}")
    return 9 if missing else 0


sys.exit(main(sys.argv[1:]))
